"""Freezing, head replacement and .npz save/load (sequential.py, checkpoint.py, solver.py), and
transfer_learning.py: its helpers, and its --quick run end to end (skipped, with the
reason, when Fashion-MNIST, MNIST or the ants-vs-bees folder is missing)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import sequential
import transfer_learning as tl
from checkpoint import load_params, save_params
from data import DatasetNotFoundError, find_dataset_dir, find_hymenoptera_dir
from randomness import init_weights
from sequential import (
    Affine,
    Conv,
    Dropout,
    Flatten,
    LogSoftmax,
    MaxPool,
    ReLU,
    Sequential,
)
from solver import Solver

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_model(seed=0, num_classes=3, dtype=np.float64):
    # input 2x8x8 -> conv1 4x3x3 pad 1 -> pool -> conv2 6x3x3 -> pool -> fc1 10 -> fc2
    return Sequential((2, 8, 8), [Conv(4, 3, pad="same"), ReLU(), MaxPool(2),
                                  Conv(6, 3), ReLU(), MaxPool(2), Affine(10), ReLU(),
                                  Affine(num_classes)], dtype=dtype, seed=seed)


def toy_data(n=60, seed=0):
    """Class = which third of the image's channel 0 is brightest (learnable by a CNN)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2, 8, 8))
    y = np.argmax([X[:, 0, :, :3].sum(axis=(1, 2)), X[:, 0, :, 3:5].sum(axis=(1, 2)) * 1.5,
                   X[:, 0, :, 5:].sum(axis=(1, 2))], axis=0).astype(np.int64)
    k = 2 * n // 3
    return {"X_train": X[:k], "y_train": y[:k], "X_val": X[k:], "y_val": y[k:]}


# ----------------------------------------------------------------------------- freezing

def test_frozen_params_stay_bit_identical_through_training():
    model = small_model(seed=1)
    model.freeze("conv1", "fc1_W")       # a layer's parameters, and a single parameter
    assert model.frozen == {"conv1_W", "conv1_b", "fc1_W"}
    before = {key: value.copy() for key, value in model.params.items()}
    solver = Solver(model, toy_data(), update_rule="adam", optim_config={"learning_rate": 1e-2},
                    num_epochs=3, batch_size=8, verbose=False, seed=0)
    assert solver.trainable == model.trainable_params() == ["conv2_W", "conv2_b", "fc1_b",
                                                            "fc2_W", "fc2_b"]
    solver.train()
    for key in model.params:
        if key in model.frozen:
            assert np.array_equal(model.params[key], before[key]), key
        else:
            assert not np.array_equal(model.params[key], before[key]), key


def test_frozen_params_get_no_gradient_and_no_backward_work(monkeypatch):
    calls = []
    original = sequential.conv2d_backward

    def counting(dout, cache, need_dx=True):
        calls.append(need_dx)
        return original(dout, cache, need_dx)
    monkeypatch.setattr(sequential, "conv2d_backward", counting)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((5, 2, 8, 8)), np.array([0, 1, 2, 0, 1])
    model = small_model()
    _, full = model.loss(X, y)
    assert calls == [True, False]          # conv2 passes dX down, conv1 (data below) does not

    # Only the head trainable: no convolution backward at all, only the head's gradients.
    calls.clear()
    model.freeze()
    model.unfreeze("fc2")
    _, grads = model.loss(X, y)
    assert calls == [] and sorted(grads) == ["fc2_W", "fc2_b"]

    # Frozen bottom: conv2 is the lowest trainable layer, so it computes no dX.
    calls.clear()
    model.unfreeze()
    model.freeze("conv1")
    _, grads = model.loss(X, y)
    assert calls == [False]
    assert set(grads) == set(model.params) - {"conv1_W", "conv1_b"}
    for key in grads:   # freezing changes which gradients are computed, not their values
        np.testing.assert_array_equal(grads[key], full[key])

    # Frozen middle: the gradient still flows through conv2 to conv1, conv2's is dropped.
    calls.clear()
    model.unfreeze()
    model.freeze("conv2")
    _, grads = model.loss(X, y)
    assert calls == [True, False] and "conv2_W" not in grads and "conv2_b" not in grads
    np.testing.assert_array_equal(grads["conv1_W"], full["conv1_W"])


def test_freeze_names_summary_and_solver_checks():
    model = small_model()
    with pytest.raises(ValueError, match=r"'conv9' is neither a parameter .* nor a layer"):
        model.freeze("conv9")
    model.freeze()
    model.unfreeze("fc2")
    table = model.summary()
    assert "conv 4 x 3x3, stride 1, pad 1 (frozen)" in table and "affine 3 (frozen)" not in table
    assert table.splitlines()[-1].split() == ["trainable", "33"]   # fc2: 10 * 3 + 3
    with pytest.raises(ValueError, match=r"\['conv1_W'\] are frozen in the model"):
        Solver(model, toy_data(), trainable=["conv1_W", "fc2_W"])
    assert Solver(model, toy_data()).trainable == ["fc2_W", "fc2_b"]


# ----------------------------------------------------------------------------- head

def test_replace_head_shapes_fresh_init_and_trainable():
    model = Sequential((1, 6, 6), [Conv(3, 3), ReLU(), Affine(5), ReLU(), Dropout(keep=0.5),
                                   Affine(10), LogSoftmax()], seed=0)
    old = {key: value.copy() for key, value in model.params.items()}
    model.freeze()
    assert model.replace_head(4, seed=7) == "fc2"
    assert model.params["fc2_W"].shape == (5, 4) and model.params["fc2_b"].shape == (4,)
    assert model.params["fc2_W"].dtype == np.float32
    # He initialization, as the model was built (weight_scale None), from the given seed
    np.testing.assert_array_equal(model.params["fc2_W"], init_weights((5, 4), None, 7, np.float32))
    np.testing.assert_array_equal(model.params["fc2_b"], np.zeros(4, np.float32))
    for key in ("conv1_W", "conv1_b", "fc1_W", "fc1_b"):
        np.testing.assert_array_equal(model.params[key], old[key])
    assert model.trainable_params() == ["fc2_W", "fc2_b"]
    rows = {name: (shape, count) for name, _, shape, count in model.summary_rows()}
    assert rows["fc2"] == ((4,), 5 * 4 + 4) and rows["logsoftmax1"] == ((4,), 0)
    log_probs = model.loss(np.zeros((2, 1, 6, 6)))
    assert log_probs.shape == (2, 4)
    loss, grads = model.loss(np.zeros((2, 1, 6, 6)), np.array([3, 0]))
    assert sorted(grads) == ["fc2_W", "fc2_b"]
    with pytest.raises(ValueError, match="no Affine layer"):
        Sequential((1, 6, 6), [Conv(3, 6), Flatten()]).replace_head(2)   # no Affine layer


# ----------------------------------------------------------------------------- save / load

def test_save_load_round_trip(tmp_path):
    model = small_model(seed=1, dtype=np.float32)
    path = save_params(model, str(tmp_path / "sub" / "model.npz"))
    assert os.listdir(tmp_path / "sub") == ["model.npz"]         # no temporary file left
    with np.load(path) as npz:
        assert list(npz.files) == list(model.params)
    other = small_model(seed=2, dtype=np.float32)
    assert not np.array_equal(other.params["conv1_W"], model.params["conv1_W"])
    assert load_params(other, path) is other
    for key in model.params:
        np.testing.assert_array_equal(other.params[key], model.params[key])
        assert other.params[key].dtype == np.float32
    # into a float64 model: cast to the model's dtype
    wide = load_params(small_model(dtype=np.float64), path)
    assert wide.params["fc2_W"].dtype == np.float64
    np.testing.assert_array_equal(wide.params["fc2_W"], model.params["fc2_W"])


def test_load_rejects_wrong_shapes_and_names(tmp_path):
    path = save_params(small_model(num_classes=3), str(tmp_path / "three.npz"))
    model = small_model(num_classes=4)
    before = {key: value.copy() for key, value in model.params.items()}
    with pytest.raises(ValueError) as error:
        load_params(model, path)
    message = str(error.value)
    assert "three.npz" in message
    assert r"fc2_W has shape (10, 3) there but (10, 4) in the model" in message
    assert r"fc2_b has shape (3,) there but (4,) in the model" in message
    for key in model.params:   # nothing loaded
        np.testing.assert_array_equal(model.params[key], before[key])

    params = dict(small_model().params)
    del params["conv1_b"]
    params["fc3_W"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"given parameters .*missing conv1_b; extra fc3_W"):
        load_params(small_model(), params)


# ----------------------------------------------------------------------------- the script

def test_pretrained_model_keeps_a_grey_networks_function_on_rgb_input(tmp_path):
    source = tl.build_model((1, 28, 28), 10, dtype=np.float64, seed=3)
    path = save_params(source, str(tmp_path / "source.npz"))
    model, head = tl.pretrained_model(path, (3, 28, 28), 10, dtype=np.float64, seed=0)
    assert head == "fc3" and model.params["conv1_W"].shape == (16, 3, 3, 3)
    np.testing.assert_allclose(model.params["conv1_W"].sum(axis=1), source.params["conv1_W"][:, 0])
    model.params["fc3_W"], model.params["fc3_b"] = source.params["fc3_W"], source.params["fc3_b"]
    grey = np.random.default_rng(0).standard_normal((4, 1, 28, 28))
    np.testing.assert_allclose(model.loss(np.repeat(grey, 3, axis=1)), source.loss(grey),
                               rtol=1e-10, atol=1e-10)
    two, _ = tl.pretrained_model(path, (1, 28, 28), 2, dtype=np.float64, seed=0)
    assert two.params["fc3_W"].shape == (120, 2)
    np.testing.assert_array_equal(two.params["fc1_W"], source.params["fc1_W"])


def test_augment_shifts_and_flips_each_image_on_its_own():
    X = np.arange(2 * 3 * 5 * 6, dtype=np.float64).reshape(2, 3, 5, 6)
    rng = np.random.default_rng(0)
    assert np.array_equal(tl.make_augment(0, flip=False)(X, rng), X)
    out = tl.make_augment(2, flip=True)(np.repeat(X[:1], 400, axis=0), np.random.default_rng(1))
    assert out.shape == (400, 3, 5, 6)
    padded = np.pad(X[0], ((0, 0), (2, 2), (2, 2)), mode="reflect")
    crops = {(dy, dx, flip): padded[:, dy:dy + 5, dx:dx + 6][..., ::-1 if flip else 1]
             for dy in range(5) for dx in range(5) for flip in (False, True)}
    seen = set()
    for image in out:
        matches = [key for key, crop in crops.items() if np.array_equal(image, crop)]
        assert matches, "every output is a shifted (and maybe mirrored) copy"
        seen.add(matches[0])
    assert len(seen) == 50   # all 25 shifts x {mirrored, not}: each image draws its own


def test_few_labels_per_class():
    y = np.repeat(np.arange(4), [5, 7, 9, 11])
    chosen = tl.few_labels(y, 3, np.random.default_rng(0))
    assert np.bincount(y[chosen]).tolist() == [3, 3, 3, 3]
    assert np.all(np.diff(chosen) > 0)


def test_train_model_records_losses_and_keeps_best_weights():
    data = toy_data(90)
    model = small_model(seed=0, dtype=np.float64)
    record = tl.train_model(model, data, num_epochs=4, learning_rate=1e-2, batch_size=10,
                            verbose=False)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert len(record[key]) == 4, key
    best = record["best_epoch"]
    assert record["val_acc"][best - 1] == record["best_val_acc"] == max(record["val_acc"])
    # model.params holds the best epoch's weights: evaluating them gives that epoch's numbers
    loss, acc = tl.evaluate(model, data["X_val"], data["y_val"])
    assert (loss, acc) == (record["val_loss"][best - 1], record["val_acc"][best - 1])
    assert record["trainable"] == model.num_params()


def test_train_model_resume_continues_the_histories(tmp_path):
    data, kwargs = toy_data(90), dict(learning_rate=1e-2, batch_size=10, verbose=False)
    straight = small_model(seed=0)
    expected = tl.train_model(straight, data, num_epochs=4, **kwargs)
    name = str(tmp_path / "run")
    tl.train_model(small_model(seed=0), data, num_epochs=2, checkpoint_name=name, **kwargs)
    resumed = small_model(seed=0)
    record = tl.train_model(resumed, data, num_epochs=4, checkpoint_name=name, resume=True, **kwargs)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "best_epoch"):
        assert record[key] == expected[key], key
    for key in straight.params:
        np.testing.assert_array_equal(resumed.params[key], straight.params[key])


def test_visualize_model_writes_a_png(tmp_path):
    model = small_model(num_classes=2)
    images = np.random.default_rng(0).integers(0, 256, (7, 3, 8, 8), dtype=np.uint8)
    X = images[:, :2] / 255.0
    path = tl.visualize_model(model, X, np.array([0, 1, 0, 1, 0, 1, 1]), images, ["ants", "bees"],
                              str(tmp_path / "grid.png"), num_images=5, title="t")
    assert os.path.getsize(path) > 1000


def require_data():
    for name in ("fashion-mnist", "mnist"):
        try:
            find_dataset_dir(name)
        except DatasetNotFoundError:
            pytest.skip(f"{name} files not found ($HANDGRAD_DATA, data/{name}/)")
    try:
        find_hymenoptera_dir()
    except DatasetNotFoundError:
        pytest.skip("hymenoptera_data not found under $HANDGRAD_DATA or data/")


def test_quick_run_end_to_end(tmp_path):
    require_data()
    results, checkpoints = tmp_path / "results", tmp_path / "checkpoints"
    done = subprocess.run([sys.executable, "transfer_learning.py", "--quick", "--results-dir",
                           str(results), "--checkpoint-dir", str(checkpoints), "--jobs", "2"],
                          cwd=REPO, env=dict(os.environ, MPLBACKEND="Agg"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(results / "quick" / "transfer_learning.json") as f:
        summary = json.load(f)
    assert list(summary["targets"]) == ["digits-10", "ants-bees"]
    for target, head in (("digits-10", 120 * 10 + 10), ("ants-bees", 120 * 2 + 2)):
        scenarios = summary["targets"][target]["scenarios"]
        assert list(scenarios) == ["scratch", "finetune", "freeze"]
        assert scenarios["freeze"]["trainable"] == head
        assert scenarios["finetune"]["trainable"] == scenarios["scratch"]["trainable"] > head
        for record in scenarios.values():
            assert len(record["val_acc"]) == len(record["val_loss"]) == 3
            # both learning rates were tried, and the kept one is the best on validation
            assert list(record["lr_search"]) == ["0.001", "0.01"]
            assert record["best_val_acc"] == max(record["lr_search"].values())
            assert record["lr_search"][f"{record['learning_rate']:g}"] == record["best_val_acc"]
    assert "test_acc" in summary["targets"]["digits-10"]["scenarios"]["freeze"]
    for key, path in summary["files"].items():
        assert os.path.isfile(path) and path in done.stdout, key
    assert "ants-bees  freeze" in done.stdout
    # the freeze run's frozen layers are exactly the source network's
    source = np.load(summary["files"]["source_params"])
    frozen = np.load(summary["files"]["digits-10_freeze_params"])
    for key in ("conv1_W", "conv2_b", "fc1_W", "fc2_W"):
        np.testing.assert_array_equal(frozen[key], source[key])
    assert not np.array_equal(frozen["fc3_W"], source["fc3_W"])


def run_cli(*args):
    return subprocess.run([sys.executable, "transfer_learning.py", *args], cwd=REPO,
                          env=dict(os.environ, MPLBACKEND="Agg"), capture_output=True,
                          text=True, timeout=120)


def test_resume_is_refused_before_loading_anything(tmp_path):
    """--resume continues the source pretraining only: refused without its checkpoint,
    with --source-params, and with other flags of the pretraining (naming them)."""
    folder = tmp_path / "quick"
    folder.mkdir()
    (folder / "fashion_lr0.01_epoch_1.npz").write_bytes(b"")   # another script's checkpoint
    common = ["--quick", "--resume", "--checkpoint-dir", str(tmp_path)]
    cases = [([], f"error: --resume: nothing to resume in {folder} (run name 'quick'): no "
                  f"checkpoint transfer_source_epoch_*.npz there; run without --resume to start "
                  f"afresh, or give the --run-name (and --checkpoint-dir) of the run to continue"),
             (["--source-params", "source.npz"],
              "error: --resume continues the source pretraining, which --source-params skips (the "
              "target trainings are not checkpointed): run without --resume")]
    for flags, message in cases:
        run = run_cli(*common, *flags)
        assert (run.returncode, run.stdout, run.stderr) == (2, "", message + "\n")

    # a source checkpoint written with --source-batch-size 10 (here of a small network:
    # the check reads the settings before any model exists)
    args = tl.parse_args(["--quick", "--checkpoint-dir", str(tmp_path), "--keep-prob", "0.5"])
    tl.train_model(small_model(), toy_data(), 1, batch_size=10, verbose=False,
                   checkpoint_name=tl.source_checkpoint_name(args),
                   settings=tl.source_settings(args))
    with open(folder / "transfer_source_settings.json") as f:
        assert json.load(f)["--keep-prob"] == 0.5
    checkpoint = folder / "transfer_source_epoch_1.npz"
    for flags, message in (
            (["--keep-prob", "0.5", "--source-batch-size", "10"], None),
            (["--keep-prob", "0.5"], "--source-batch-size 10, this run has --source-batch-size 64"),
            (["--source-batch-size", "10", "--seed", "1"],
             "--keep-prob 0.5 and --seed 0, this run has --keep-prob 0.75 and --seed 1")):
        if message is None:   # the same flags: accepted
            assert tl.parse_args(["--checkpoint-dir", str(tmp_path), *common[:2], *flags]).resume
            continue
        run = run_cli(*common, *flags)
        assert (run.returncode, run.stdout) == (2, ""), run.stderr
        assert run.stderr == (f"error: checkpoint {checkpoint} was written with {message}: run "
                              f"without --resume or with the same flags\n")
