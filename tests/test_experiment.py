"""experiment.py, the scripts' shared scaffold: validated flags (exit code 2, one line,
no traceback), --quick filling in defaults only, run names, strict JSON, thread policy,
parallel sweeps in order."""
import json
import math
import os
import re
import subprocess
import sys

import pytest

import digit_classification
import experiment

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


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_every_default(script):
    run = run_script(script, "--help")
    assert run.returncode == 0
    text = " ".join(run.stdout.split())
    assert re.search(r"epochs[^(]*\(default: \d+; --quick: \d+\)", text)
    assert "(default: 1)" in text                      # --threads and --jobs
    assert "(default: results)" in text and "(default: float32)" in text
    options = [line.split()[0] for line in run.stdout.splitlines() if line.startswith("  --")]
    assert len(options) > 10


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
