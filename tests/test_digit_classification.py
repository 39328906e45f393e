"""digit_classification.py --quick end to end on the real MNIST (CI sets HANDGRAD_DATA)."""
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
