"""digit_classification.py --quick end to end on the real MNIST (CI sets HANDGRAD_DATA); --dataset
cifar10 on a tiny generated batches folder; the --overfit sanity check."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data import DatasetNotFoundError, find_dataset_dir
from digit_classification import random_shift

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mnist_available():
    try:
        find_dataset_dir("mnist")
        return True
    except DatasetNotFoundError:
        return False


def run_quick(tmp_path, *extra):
    command = [sys.executable, os.path.join(ROOT, "digit_classification.py"), "--quick",
               "--results-dir", str(tmp_path / "results"),
               "--checkpoint-dir", str(tmp_path / "checkpoints"), *extra]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


@pytest.mark.skipif(not mnist_available(),
                    reason="MNIST not found: set HANDGRAD_DATA to a folder holding mnist/")
def test_quick_run_end_to_end_and_resume(tmp_path):
    out = run_quick(tmp_path)
    summary = json.loads((tmp_path / "results" / "quick" / "digit_classification.json").read_text())
    for kind, num_configs in (("mlp", 2), ("cnn", 2)):
        result = summary["results"][kind]
        assert len(result["sweep"]) == num_configs
        assert result["chosen"] == max(result["sweep"], key=lambda e: e["val_acc"])["config"]
        assert 0.5 < result["test_acc"] <= 1.0   # 3,000 images, 1 epoch: far above chance
        for path in result["plots"]:
            assert os.path.getsize(path) > 10_000, path   # a real PNG, not an empty file
    assert "test acc" in out and "wall time" in out
    assert not (tmp_path / "results" / "full").exists()   # a quick run has its own folder

    # --resume reuses every sweep result and the finished final trainings
    again = run_quick(tmp_path, "--resume")
    assert again.count("(from the previous run)") == 4
    assert again.count("resumed from") == 2


def test_random_shift_moves_each_image_within_bounds():
    X = np.zeros((50, 1, 6, 6), dtype=np.float32)
    X[:, 0, 3, 3] = 1.0                              # one bright pixel in the middle
    shifted = random_shift(X, np.random.default_rng(0), max_shift=2)
    assert shifted.shape == X.shape and shifted.dtype == X.dtype
    rows, cols = np.nonzero(shifted[:, 0] == 1.0)[1:]
    assert np.all(np.abs(rows - 3) <= 2) and np.all(np.abs(cols - 3) <= 2)
    assert len(set(zip(rows, cols))) > 5              # shifts differ between images
    assert np.all(shifted.sum(axis=(1, 2, 3)) == 1.0)  # the pixel moved, nothing else


@pytest.mark.skipif(not mnist_available(),
                    reason="MNIST not found: set HANDGRAD_DATA to a folder holding mnist/")
def test_parallel_sweep_gives_the_sequential_results(tmp_path):
    """--jobs 2 trains the sweep's configurations in two worker processes (one BLAS
    thread each); every number must equal the sequential --jobs 1 run's."""
    summaries = []
    for jobs in ("1", "2"):
        run_quick(tmp_path / jobs, "--jobs", jobs, "--models", "cnn", "--filter-sizes", "3", "5",
                  "--cnn-hidden-sizes", "16", "32")
        summary = json.loads((tmp_path / jobs / "results" / "quick" /
                              "digit_classification.json").read_text())
        summaries.append(summary["results"]["cnn"])
    sequential, parallel = summaries
    assert [e["config"] for e in parallel["sweep"]] == [e["config"] for e in sequential["sweep"]]
    assert [e["val_acc"] for e in parallel["sweep"]] == [e["val_acc"] for e in sequential["sweep"]]
    assert len(sequential["sweep"]) == 4
    assert (parallel["chosen"], parallel["test_acc"]) == (sequential["chosen"], sequential["test_acc"])


# ----------------------------------------------------------------------------- --dataset cifar10

def write_tiny_cifar10(folder, records=20, seed=0):
    """A cifar-10-batches-bin folder of six batches of `records` random images, labels
    0..9 in turn: the layout load_cifar10 reads (tests/test_cifar10.py tests both)."""
    from data.cifar10 import LAYOUTS
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name in LAYOUTS["cifar-10-batches-bin"]:
        labels = (np.arange(records) % 10).astype(np.uint8)
        images = rng.integers(0, 256, size=(records, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], images], axis=1).tobytes())
    return folder


def run_script(tmp_path, *args, env=None):
    command = [sys.executable, os.path.join(ROOT, "digit_classification.py"),
               "--results-dir", str(tmp_path / "results"),
               "--checkpoint-dir", str(tmp_path / "checkpoints"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**(os.environ if env is None else env), "MPLBACKEND": "Agg"})


def without_data_env():
    return {k: v for k, v in os.environ.items() if k != "HANDGRAD_DATA"}


def test_cifar10_run_on_a_tiny_batches_folder(tmp_path):
    write_tiny_cifar10(tmp_path / "data" / "cifar-10-batches-bin")
    run = run_script(tmp_path, "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                     "--quick", "--hidden-sizes", "8", "--filter-sizes", "3",
                     "--cnn-hidden-sizes", "8", "--num-filters", "2", "--batch-size", "30")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # 100 training images: the last tenth is the validation set
    assert "CIFAR-10: 90 train, 10 val, 20 test images" in run.stdout
    summary = json.loads((tmp_path / "results" / "quick" / "cifar10_classification.json")
                         .read_text())
    assert summary["args"]["dataset"] == "cifar10"
    for kind in ("mlp", "cnn"):
        assert 0.0 <= summary["results"][kind]["test_acc"] <= 1.0
        assert [os.path.basename(p) for p in summary["results"][kind]["plots"]] == [
            f"cifar10_{kind}_loss.png", f"cifar10_{kind}_accuracy.png"]
    checkpoints = os.listdir(tmp_path / "checkpoints" / "quick")
    assert "cifar10_mlp_sweep.json" in checkpoints and "cifar10_cnn_sweep.json" in checkpoints
    assert not any(name.startswith("digit_") for name in checkpoints)   # MNIST's stay apart


def test_cifar10_models_take_colour_images():
    import digit_classification as dc
    X = np.zeros((2, 3, 32, 32))
    mlp = dc.build_model("mlp", {"hidden_dim": 5}, np.float64, 0, "cifar10")
    cnn = dc.build_model("cnn", {"num_filters": 2, "filter_size": 3, "hidden_dim": 5},
                         np.float64, 0, "cifar10")
    assert mlp.params["W1"].shape == (3072, 5) and cnn.params["W1"].shape == (2, 3, 3, 3)
    assert mlp.loss(X).shape == (2, 10) and cnn.loss(X).shape == (2, 10)


def test_cifar10_splits_are_standardized_with_training_statistics(tmp_path):
    import digit_classification as dc
    folder = write_tiny_cifar10(tmp_path / "cifar-10-batches-bin", records=30)
    data = dc.load_cifar10_splits(str(folder), np.float32)
    assert data["X_train"].shape == (135, 3, 32, 32) and data["X_val"].shape == (15, 3, 32, 32)
    assert data["X_test"].shape == (30, 3, 32, 32) and data["X_train"].dtype == np.float32
    assert data["y_train"].dtype == np.int64
    assert abs(data["X_train"].mean()) < 1e-4 and abs(data["X_train"].std() - 1) < 1e-4
    from data import load_cifar10
    X_train, y_train, _, _ = load_cifar10(str(folder))
    raw = X_train[:135] / 255.0
    expected_val = (X_train[135:] / 255.0 - raw.mean()) / raw.std()
    np.testing.assert_allclose(data["X_val"], expected_val, rtol=1e-5, atol=1e-5)
    assert data["y_val"].tolist() == y_train[135:].tolist()   # the LAST tenth


def test_missing_cifar10_exits_2_with_the_message(tmp_path):
    (tmp_path / "empty").mkdir()
    run = run_script(tmp_path, "--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"),
                     "--quick", env=without_data_env())
    if "CIFAR-10: " in run.stdout:
        pytest.skip("CIFAR-10 was found in the repository's data/ folder")
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("error: CIFAR-10 not found")
    assert str(tmp_path / "empty" / "cifar-10-batches-py") in run.stderr
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in run.stderr
    assert not (tmp_path / "results").exists()


def test_a_malicious_cifar10_pickle_exits_2_and_runs_nothing(tmp_path):
    import pickle
    from data.cifar10 import LAYOUTS
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in LAYOUTS["cifar-10-batches-py"]:
        (folder / name).write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}, protocol=4))
    run = run_script(tmp_path, "--dataset", "cifar10", "--data-dir", str(folder), "--quick",
                     env=without_data_env())
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "refused to unpickle" in run.stderr
    assert not marker.exists()


# ----------------------------------------------------------------------------- --overfit

def synthetic_digits(num_train=60, seed=0):
    """MNIST-shaped standardized splits of random images with random labels (a model
    can only memorize them: what --overfit asks)."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", num_train), ("val", 20), ("test", 20)):
        data[f"X_{split}"] = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
        data[f"y_{split}"] = rng.integers(0, 10, size=n).astype(np.int64)
    return data


def test_overfit_fits_a_tiny_subset_and_reports_the_epochs(capsys):
    import digit_classification as dc
    args = dc.parse_args(["--overfit", "20", "--models", "mlp", "cnn", "--hidden-sizes", "50",
                          "--filter-sizes", "3", "--cnn-hidden-sizes", "50", "--num-filters", "4"])
    assert dc.run_overfit(synthetic_digits(), args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, kind in zip(lines, ("mlp", "cnn")):
        assert line.startswith(f"overfit 20 examples: {kind} (")
        assert " 100% train accuracy after " in line and line.endswith(" epochs")
        assert 1 <= int(line.split()[-2]) <= dc.OVERFIT_EPOCHS


def test_overfit_says_so_when_the_epochs_are_not_enough(capsys):
    import digit_classification as dc
    args = dc.parse_args(["--overfit", "50", "--models", "mlp", "--hidden-sizes", "50",
                          "--overfit-epochs", "1", "--learning-rate", "1e-6"])
    assert dc.run_overfit(synthetic_digits(), args) == 1
    out = capsys.readouterr().out
    assert "after 1 epochs (did not reach 100% in --overfit-epochs 1)" in out


def test_overfit_more_examples_than_training_images_is_refused(capsys):
    import digit_classification as dc
    args = dc.parse_args(["--overfit", "61", "--models", "mlp"])
    assert dc.run_overfit(synthetic_digits(num_train=60), args) == 2
    assert "error: --overfit 61: there are only 60 training images" in capsys.readouterr().err


@pytest.mark.skipif(not mnist_available(),
                    reason="MNIST not found: set HANDGRAD_DATA to a folder holding mnist/")
def test_overfit_50_mnist_digits_from_the_command_line(tmp_path):
    run = run_script(tmp_path, "--overfit", "50", "--models", "mlp")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    line = [line for line in run.stdout.splitlines() if line.startswith("overfit 50 examples")]
    assert len(line) == 1 and " 100% train accuracy after " in line[0], run.stdout
    assert not (tmp_path / "results").exists() and not (tmp_path / "checkpoints").exists()


def test_resume_of_a_final_training_with_other_flags_is_refused_before_training(tmp_path):
    """The final trainings' checkpoints record the flags; --resume with another batch size
    (its loss curve would be converted with the wrong batch count) is refused, exit 2."""
    write_tiny_cifar10(tmp_path / "data" / "cifar-10-batches-bin")
    common = ("--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--quick",
              "--models", "mlp", "--hidden-sizes", "8")
    first = run_script(tmp_path, *common, "--batch-size", "30")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    refused = run_script(tmp_path, *common, "--batch-size", "45", "--resume")
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert refused.stderr.startswith("error: checkpoint ") and "cifar10_mlp_epoch_1.npz was " \
        "written with --batch-size 30, this run has --batch-size 45" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and "sweep" not in refused.stdout
    again = run_script(tmp_path, *common, "--batch-size", "30", "--resume")
    assert again.returncode == 0 and "resumed from" in again.stdout, again.stderr[-2000:]
