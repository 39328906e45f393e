"""fashion_classification.py: the network, helpers, filter pictures, and the --quick smoke
run of the whole script (skipped, with the reason, when Fashion-MNIST is not installed)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fashion_classification as fc
from data import DatasetNotFoundError, find_dataset_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fashion_mnist_dir():
    try:
        return find_dataset_dir("fashion-mnist")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST files not found ($HANDGRAD_DATA, data/fashion-mnist/, "
                    "/usr/share/datasets/fashion-mnist): apt-get install dataset-fashion-mnist")


def test_network_is_the_issues_network():
    model = fc.build_model(keep_prob=0.75, seed=0)
    rows = {name: (shape, count) for name, _, shape, count in model.summary_rows()}
    # block 1 keeps 28x28 (pad 1), pools to 14x14; block 2: 14 - 3 + 1 = 12, pooled to 6x6;
    # so the first affine layer takes 32 * 6 * 6 = 1152 inputs.
    assert [name for name in rows] == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                                       "fc1", "relu3", "dropout1", "fc2", "relu4", "fc3",
                                       "logsoftmax1"]
    assert rows["pool1"][0] == (16, 14, 14) and rows["pool2"][0] == (32, 6, 6)
    assert model.params["fc1_W"].shape == (1152, 600)
    assert rows["fc2"][0] == (120,) and rows["fc3"][0] == (10,)
    assert model.layers[8].keep == 0.75
    assert model.num_params() == 769930   # derived in tests/test_sequential.py


def test_epoch_means_weight_the_last_smaller_batch():
    # 5 samples, batch 2: batches of 2, 2, 1 per epoch.
    losses = [1.0, 2.0, 4.0, 0.0, 0.0, 1.0]
    assert fc.epoch_means(losses, 5, 2) == [pytest.approx((2 + 4 + 4) / 5),
                                            pytest.approx(1 / 5)]


def test_kernel_mosaic_layout():
    kernels = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    mosaic = fc.kernel_mosaic(kernels)
    assert mosaic.shape == (2 * 3 - 1, 3 * 3 - 1)
    np.testing.assert_array_equal(mosaic[3:5, 6:8], kernels[1, 2])   # row 1, column 2
    assert np.isnan(mosaic[2]).all() and np.isnan(mosaic[:, 2]).all()


def test_plot_filters_from_params(tmp_path):
    params = fc.build_model(seed=0).params
    paths = fc.plot_filters(params, str(tmp_path), prefix="x")
    assert [os.path.basename(p) for p in paths] == ["x_conv1_filters.png", "x_conv2_filters.png"]
    assert all(os.path.getsize(p) > 1000 for p in paths)


def run_script(*args):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "fashion_classification.py", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_quick_smoke_run_and_resume(tmp_path):
    fashion_mnist_dir()
    results, checkpoints = tmp_path / "results", tmp_path / "checkpoints"
    args = ["--quick", "--plot-filters", "--results-dir", str(results),
            "--checkpoint-dir", str(checkpoints)]
    done = run_script(*args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "dropout: keep probability p = 0.75" in out and "nn.Dropout(0.25)" in out
    assert "total" in out and "769,930" in out
    with open(results / "quick" / "fashion_classification.json") as f:
        summary = json.load(f)
    assert [run["learning_rate"] for run in summary["runs"]] == [0.001, 0.01, 0.1]
    assert all(len(run["val_acc_history"]) == 2 and len(run["epoch_losses"]) == 2
               for run in summary["runs"])
    assert summary["chosen_learning_rate"] == max(
        summary["runs"], key=lambda run: run["best_val_acc"])["learning_rate"]
    assert 0.3 < summary["test_acc"] <= 1.0   # 2 epochs on 2,000 images: far above chance
    for key in ("loss_plot", "accuracy_plot", "comparison_plot", "params", "conv1_filters",
                "conv2_filters", "json"):
        path = summary["files"][key]
        assert os.path.isfile(path) and path in out, key
        assert os.path.dirname(path) == str(results / "quick"), path
    params = np.load(summary["files"]["params"])
    assert params["conv1_W"].shape == (16, 1, 3, 3) and params["fc3_b"].shape == (10,)

    # --resume: every run is finished, so nothing is trained again and the result is the same.
    again = run_script(*args, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("resumed from") == 3 and "(Epoch" not in again.stdout
    with open(results / "quick" / "fashion_classification.json") as f:
        assert json.load(f)["test_acc"] == summary["test_acc"]

    # --jobs 2: the three learning rates in two worker processes, the same numbers
    parallel = run_script(*args, "--run-name", "parallel", "--jobs", "2")
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    with open(results / "parallel" / "fashion_classification.json") as f:
        runs = json.load(f)["runs"]
    assert [r["val_acc_history"] for r in runs] == [r["val_acc_history"] for r in summary["runs"]]
    assert [r["epoch_losses"] for r in runs] == [r["epoch_losses"] for r in summary["runs"]]


def test_resume_without_a_checkpoint_of_these_learning_rates_is_refused(tmp_path):
    (tmp_path / "quick").mkdir()
    (tmp_path / "quick" / "fashion_lr0.5_epoch_1.npz").write_bytes(b"")   # another lr's
    run = run_script("--quick", "--resume", "--checkpoint-dir", str(tmp_path),
                     "--learning-rates", "0.01", "0.1")
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr == (
        f"error: --resume: nothing to resume in {tmp_path / 'quick'} (run name 'quick'): no "
        f"checkpoint fashion_lr0.01_epoch_*.npz or fashion_lr0.1_epoch_*.npz there; run "
        f"without --resume to start afresh, or give the --run-name (and --checkpoint-dir) of "
        f"the run to continue\n")


def test_resume_refuses_other_flags_and_continues_to_more_epochs_exactly(tmp_path):
    """The epoch losses are computed from the per-iteration losses with the batch size, so
    a resumed run must have the checkpoint's: another one is refused (also when only the
    checkpoint records it), as are other flags of the network; more --epochs continue
    the run to exactly the numbers of an uninterrupted one (float64: in float32 the conv
    weights' memory layout changes the last bit, see the report of issue 25)."""
    fashion_mnist_dir()
    common = ["--quick", "--learning-rates", "0.01", "--dtype", "float64", "--results-dir",
              str(tmp_path / "results"), "--checkpoint-dir", str(tmp_path / "checkpoints")]
    first = run_script(*common, "--epochs", "1")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    checkpoint = tmp_path / "checkpoints" / "quick" / "fashion_lr0.01_epoch_1.npz"
    for flags, message in (
            (["--batch-size", "128"], "--batch-size 64, this run has --batch-size 128"),
            (["--keep-prob", "0.5", "--batchnorm"],
             "--keep-prob 0.75 and no --batchnorm, this run has --keep-prob 0.5 and --batchnorm"),
            (["--dtype", "float32"], "--dtype float64, this run has --dtype float32")):
        refused = run_script(*common, "--resume", "--epochs", "2", *flags)
        assert refused.returncode == 2 and refused.stdout == "", refused.stderr
        assert refused.stderr == (f"error: checkpoint {checkpoint} was written with {message}: "
                                  f"run without --resume or with the same flags\n")
    os.remove(tmp_path / "checkpoints" / "quick" / "fashion_lr0.01_settings.json")
    refused = run_script(*common, "--resume", "--batch-size", "128")
    assert refused.returncode == 2 and "--batch-size 64, this run has --batch-size 128" in refused.stderr

    resumed = run_script(*common, "--resume", "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {checkpoint} after epoch 1" in resumed.stdout
    straight = run_script(*common, "--epochs", "2", "--run-name", "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    runs = []
    for name in ("quick", "straight"):
        with open(tmp_path / "results" / name / "fashion_classification.json") as f:
            runs.append(json.load(f)["runs"][0])
    assert len(runs[0]["epoch_losses"]) == 2
    for key in ("epoch_losses", "val_acc_history", "train_acc_history"):
        assert runs[0][key] == runs[1][key], key
