"""experiment.py, the scripts' shared scaffold: validated flags (exit code 2, one line,
no traceback), --quick filling in defaults only, run names, --help with each default once,
--resume refused when there is nothing to resume or the flags differ, warnings on one
line, strict JSON, thread policy, parallel sweeps in order."""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import digit_classification
import experiment
import fashion_classification
import image_captioning
import transfer_learning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["digit_classification.py", "fashion_classification.py", "transfer_learning.py",
           "image_captioning.py"]


def run_script(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MPLBACKEND": "Agg"})


@pytest.mark.parametrize("script, flags, message", [
    ("digit_classification.py", ["--epochs", "-3"], "argument --epochs: must be a positive integer, got -3"),
    ("digit_classification.py", ["--epochs", "0"], "must be a positive integer, got 0"),
    ("digit_classification.py", ["--learning-rate", "-1"], "must be a number > 0, got -1"),
    ("digit_classification.py", ["--learning-rate", "nan"], "must be a number > 0, got nan"),
    ("digit_classification.py", ["--lr-decay", "1.5"], "must be a factor in (0, 1]"),
    ("digit_classification.py", ["--hidden-sizes"], "expected at least one argument"),
    ("digit_classification.py", ["--batch-size", "ten"], "'ten' is not a number"),
    ("digit_classification.py", ["--run-name", "../x"], "use letters, digits"),
    ("digit_classification.py", ["--threads", "0"], "must be a positive integer"),
    ("fashion_classification.py", ["--keep-prob", "1.5"], "must be a keep probability in (0, 1]"),
    ("fashion_classification.py", ["--keep-prob", "0"], "must be a keep probability in (0, 1]"),
    ("fashion_classification.py", ["--learning-rates"], "expected at least one argument"),
    ("fashion_classification.py", ["--epochs", "-3"], "must be a positive integer, got -3"),
    ("transfer_learning.py", ["--learning-rates", "0"], "must be a number > 0, got 0"),
    ("transfer_learning.py", ["--labels-per-class", "-1"], "must be a positive integer"),
    ("image_captioning.py", ["--grad-clip", "-1"], "must be a number >= 0"),
    ("image_captioning.py", ["--jobs", "2"], "unrecognized arguments: --jobs 2"),
])
def test_bad_flags_end_in_one_line_and_exit_code_2(script, flags, message):
    run = run_script(script, *flags)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    error_lines = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0], run.stderr


def test_quick_fills_in_defaults_and_explicit_flags_win():
    full = digit_classification.parse_args([])
    quick = digit_classification.parse_args(["--quick"])
    mixed = digit_classification.parse_args(["--quick", "--epochs", "5", "--hidden-sizes", "7"])
    assert (full.epochs, quick.epochs, mixed.epochs) == (15, 1, 5)
    assert (full.hidden_sizes, quick.hidden_sizes, mixed.hidden_sizes) == ([100, 300, 1000], [32, 64], [7])
    assert mixed.sweep_epochs == 1 and mixed.num_filters == 8   # the other quick defaults
    assert full.results_dir == os.path.join("results", "full")
    assert quick.results_dir == os.path.join("results", "quick")
    named = digit_classification.parse_args(["--quick", "--run-name", "try2", "--results-dir", "out"])
    assert (named.results_dir, named.checkpoint_dir) == (os.path.join("out", "try2"),
                                                         os.path.join("checkpoints", "try2"))


MODULES = {"digit_classification.py": digit_classification,
           "fashion_classification.py": fashion_classification,
           "transfer_learning.py": transfer_learning, "image_captioning.py": image_captioning}


def help_blocks(text):
    """{'--flag': its help text on one line} of an argparse --help output."""
    blocks, flag = {}, None
    for line in text.split("options:")[1].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            blocks[flag] = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
        elif flag and line.strip():
            blocks[flag] += " " + line.strip()
    return {flag: " ".join(block.split()) for flag, block in blocks.items()}


def shown(value):
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_every_default_once(script):
    """Each flag's default appears once in its help (a help text that says its default
    is not given a second one), 0 included; the --quick default beside the full one."""
    run = run_script(script, "--help")
    assert run.returncode == 0
    blocks = help_blocks(run.stdout)
    assert len(blocks) > 10
    text = " ".join(run.stdout.split())
    assert re.search(r"epochs[^(]*\(default: \d+; --quick: \d+\)", text)
    assert "(default: results)" in text and "(default: float32)" in text
    assert blocks["--seed"].endswith("(default: 0)")
    assert "(default: 1, because OpenBLAS threads stall" in blocks["--threads"]
    full = MODULES[script].parse_args([])
    quick = MODULES[script].parse_args(["--quick"])
    for flag, block in blocks.items():
        assert block.lower().count("default") <= 1, (flag, block)
        dest = flag[2:].replace("-", "_")
        if dest in ("help", "results_dir", "checkpoint_dir") or not hasattr(full, dest):
            continue
        value = getattr(full, dest)
        if value not in (None, False, []):
            assert "default" in block and shown(value) in block, (flag, block)
        if getattr(quick, dest) != value and dest not in ("run_name", "quick"):
            assert f"--quick: {shown(getattr(quick, dest))}" in block, (flag, block)


def test_results_json_is_strict(tmp_path):
    path = experiment.write_json(str(tmp_path / "r.json"),
                                 {"best": -math.inf, "loss": [1.0, math.nan], "t": (1, 2)})
    text = open(path).read()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"best": None, "loss": [1.0, None], "t": [1, 2]}


def test_thread_policy_sets_one_blas_thread_unless_told(monkeypatch):
    for name in experiment.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HANDGRAD_SWEEP_WORKER", raising=False)
    assert experiment.apply_thread_policy([]) == 1
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert experiment.apply_thread_policy(["--quick", "--threads", "2"]) == 2
    assert experiment.apply_thread_policy(["--threads=3"]) == 3
    assert os.environ["OMP_NUM_THREADS"] == "3"
    monkeypatch.setenv("HANDGRAD_SWEEP_WORKER", "1")
    assert experiment.apply_thread_policy(["--threads", "2"]) == 1


def square(x):
    return x * x


def test_run_sweep_returns_results_in_order_with_workers():
    assert list(experiment.run_sweep(square, [3, 1, 2], jobs=2)) == [(3, 9), (1, 1), (2, 4)]
    assert list(experiment.run_sweep(square, [3, 1], jobs=1)) == [(3, 9), (1, 1)]
    assert "HANDGRAD_SWEEP_WORKER" not in os.environ


def test_missing_data_ends_in_one_message_without_traceback(tmp_path):
    """No MNIST anywhere and an unreachable mirror: what is missing, where it looked and
    what to do, exit code 1, no traceback, and no empty folders left behind."""
    env = {k: v for k, v in os.environ.items() if k != "HANDGRAD_DATA"}
    env.update(MPLBACKEND="Agg", HANDGRAD_MNIST_MIRROR="http://127.0.0.1:9/")
    root = tmp_path / "data"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "digit_classification.py"), "--quick",
                          "--data-dir", str(root), "--results-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    if "MNIST: " in run.stdout:
        pytest.skip("MNIST was found in the repository's data/ folder")
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert "\nerror: MNIST not found" in "\n" + run.stderr
    assert "Looked in" in run.stderr and "--data-dir" in run.stderr
    assert not root.exists()


# ----------------------------------------------------------------------------- --resume

def tiny_data():
    rng = np.random.default_rng(0)
    return {"X_train": rng.standard_normal((12, 5)), "y_train": rng.integers(0, 3, 12),
            "X_val": rng.standard_normal((6, 5)), "y_val": rng.integers(0, 3, 6)}


def tiny_run(name, batch_size=4, settings=None, epochs=1, resume=False, hidden_dim=4):
    """experiment.train of a tiny two-layer net, checkpointed under name."""
    from softmax import SoftmaxClassifier
    model = SoftmaxClassifier(input_dim=5, hidden_dim=hidden_dim, num_classes=3, seed=0)
    return experiment.train(model, tiny_data(), dict(batch_size=batch_size, num_epochs=epochs,
                                                     seed=0),
                            checkpoint_name=name, resume=resume, settings=settings, verbose=False)


def resume_args(folder, resume=True):
    """What check_resume reads of the parsed flags."""
    return argparse.Namespace(resume=resume, checkpoint_dir=str(folder), run_name="r")


def test_resume_with_no_checkpoint_folder_is_refused_naming_it(tmp_path):
    args = ["--resume", "--checkpoint-dir", str(tmp_path / "none"), "--run-name", "try1"]
    with pytest.raises(experiment.ResumeError) as error:
        digit_classification.parse_args(args)
    assert str(error.value) == (
        f"--resume: nothing to resume in {tmp_path / 'none' / 'try1'} (run name 'try1'): "
        f"the folder does not exist; {experiment.RESUME_HINT}")
    (tmp_path / "none" / "try1").mkdir(parents=True)
    with pytest.raises(experiment.ResumeError, match="the folder is empty"):
        digit_classification.parse_args(args)
    (tmp_path / "none" / "try1" / "digit_mlp_sweep.json").write_text("{}")
    assert digit_classification.parse_args(args).resume   # something there: the script's turn
    assert not digit_classification.parse_args(args[1:]).resume   # without --resume: no check


def test_check_resume_names_the_patterns_it_looked_for(tmp_path):
    args = resume_args(tmp_path)
    (tmp_path / "digit_mlp_sweep.json").write_text("{}")   # another script's file
    runs = {str(tmp_path / "a"): {}, str(tmp_path / "b"): {}}
    with pytest.raises(experiment.ResumeError) as error:
        experiment.check_resume(args, runs)
    assert str(error.value) == (
        f"--resume: nothing to resume in {tmp_path} (run name 'r'): no checkpoint "
        f"a_epoch_*.npz or b_epoch_*.npz there; {experiment.RESUME_HINT}")
    (tmp_path / "a_epoch_3.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(experiment.ResumeError, match=r"no readable checkpoint a_epoch_\*.npz or "
                       r"b_epoch_\*.npz there \(unreadable: .*a_epoch_3.npz\)"):
        experiment.check_resume(args, runs)
    tiny_run(str(tmp_path / "b"))
    assert experiment.check_resume(args, runs) == [str(tmp_path / "b")]
    assert experiment.check_resume(resume_args(tmp_path / "none", resume=False), runs) == []


def test_resume_with_other_settings_is_refused_naming_the_flags(tmp_path):
    name = str(tmp_path / "net")
    settings = {"--batch-size": 4, "--keep-prob": 0.75, "--batchnorm": False, "--dtype": "float32",
                "--hidden-sizes": [8, 16]}
    tiny_run(name, batch_size=4, settings=settings)
    with open(name + "_settings.json") as f:
        assert json.load(f) == settings
    args = resume_args(tmp_path)
    assert experiment.check_resume(args, {name: settings}) == [name]
    changed = dict(settings, **{"--keep-prob": 0.5, "--batchnorm": True, "--hidden-sizes": [8]})
    with pytest.raises(experiment.ResumeError) as error:
        experiment.check_resume(args, {name: changed})
    assert str(error.value) == (
        f"checkpoint {name}_epoch_1.npz was written with --keep-prob 0.75 and no --batchnorm "
        f"and --hidden-sizes 8 16, this run has --keep-prob 0.5 and --batchnorm and "
        f"--hidden-sizes 8: run without --resume or with the same flags")
    # the batch size is read from the checkpoint itself: checked without a settings file
    # (a checkpoint of an older handgrad) and against a settings file of another run
    for settings_file in ("deleted", "stale"):
        if settings_file == "deleted":
            os.remove(name + "_settings.json")
        else:
            experiment.save_settings(name, dict(settings, **{"--batch-size": 128}))
        with pytest.raises(experiment.ResumeError) as error:
            experiment.check_resume(args, {name: dict(settings, **{"--batch-size": 128})})
        assert str(error.value) == (
            f"checkpoint {name}_epoch_1.npz was written with --batch-size 4, this run has "
            f"--batch-size 128: run without --resume or with the same flags")
    assert experiment.check_resume(args, {name: {"--source-batch-size": 4}},
                                   batch_flag="--source-batch-size") == [name]
    with pytest.raises(experiment.ResumeError, match="--source-batch-size 4, this run has "
                                                     "--source-batch-size 5"):
        experiment.check_resume(args, {name: {"--source-batch-size": 5}},
                                batch_flag="--source-batch-size")


def test_resume_continues_to_more_epochs_exactly(tmp_path):
    straight, _ = tiny_run(str(tmp_path / "straight"), epochs=3)
    name = str(tmp_path / "net")
    tiny_run(name, epochs=1)
    resumed, record = tiny_run(name, epochs=3, resume=True)
    assert record["resumed_from"] == name + "_epoch_1.npz" and record["epochs_run"] == 2
    assert resumed.loss_history == straight.loss_history
    assert resumed.val_acc_history == straight.val_acc_history


def test_checkpoint_of_another_model_is_a_resume_error(tmp_path):
    name = str(tmp_path / "net")
    tiny_run(name)
    with pytest.raises(experiment.ResumeError, match=r"does not match the model's parameters: "
                       r"W1: checkpoint \(5, 4\), model \(5, 6\).*: run without --resume or "
                       r"with the same flags"):
        tiny_run(name, resume=True, hidden_dim=6)


def test_run_prints_a_resume_error_as_one_line_with_exit_code_2(capsys):
    def main():
        raise experiment.ResumeError("--resume: nothing to resume in x")
    assert experiment.run(main) == 2
    assert capsys.readouterr().err == "error: --resume: nothing to resume in x\n"


@pytest.mark.parametrize("script, flags, message", [
    ("digit_classification.py", [], "nothing to resume in {dir}/full (run name 'full'): the "
                                     "folder does not exist"),
    ("fashion_classification.py", ["--quick"], "nothing to resume in {dir}/quick (run name "
                                               "'quick'): the folder does not exist"),
    ("image_captioning.py", ["--run-name", "a"], "nothing to resume in {dir}/a (run name 'a')"),
    ("transfer_learning.py", [], "nothing to resume in {dir}/full (run name 'full')"),
])
def test_every_script_refuses_resume_without_checkpoints(tmp_path, script, flags, message):
    run = run_script(script, "--resume", "--checkpoint-dir", str(tmp_path), *flags)
    assert run.returncode == 2 and run.stdout == ""   # refused before loading anything
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"error: --resume: {message.format(dir=tmp_path)}")
    assert run.stderr.endswith(f"; {experiment.RESUME_HINT}\n")


# ----------------------------------------------------------------------------- warnings

def test_warnings_print_as_one_line(capsys):
    def main():
        warnings.warn("skipping x.npz: it is truncated")
        warnings.warn("overflow\n   in exp", RuntimeWarning)
        return 0
    shown = warnings.showwarning
    assert experiment.run(main) == 0
    assert capsys.readouterr().err == ("warning: skipping x.npz: it is truncated\n"
                                       "warning: overflow in exp (RuntimeWarning)\n")
    assert warnings.showwarning is shown   # restored for whoever called run


def warn_and_square(x):
    warnings.warn(f"item {x} warns")
    return x * x


def test_warnings_of_sweep_workers_print_as_one_line(capfd):
    assert list(experiment.run_sweep(warn_and_square, [3, 2], jobs=2)) == [(3, 9), (2, 4)]
    err = capfd.readouterr().err
    assert sorted(err.splitlines()) == ["warning: item 2 warns", "warning: item 3 warns"]
