"""The normalization layers of sequential.Sequential (BatchNorm, LayerNorm, GroupNorm): numeric
gradients through whole networks (float64), running statistics as layer state (train
vs inference), saved, loaded and resumed; bad configurations."""
import numpy as np
import pytest

from checkpoint import load_params, save_params
from fashion_classification import fashion_cnn_layers
from layers import batchnorm_forward
from sequential import (
    Affine,
    BatchNorm,
    Conv,
    GroupNorm,
    LayerNorm,
    MaxPool,
    ReLU,
    Sequential,
)
from solver import Solver
from test_sequential import check_gradients, randomize_biases, rows_of


def normalized_model(seed=0, dtype=np.float64):
    # No parameter here has a gradient that is 0 by construction (a bias right before a
    # batch norm would: the normalization removes any shift), so every one is checked.
    return Sequential((2, 6, 6), [
        Conv(4, 3, bias=False), BatchNorm(momentum=0.8), ReLU(), MaxPool(2),
        GroupNorm(2), Affine(5), LayerNorm(), ReLU(), Affine(6), ReLU(), BatchNorm(), Affine(3)],
        dtype=dtype, seed=seed)


def test_gradients_through_batch_layer_and_group_norm():
    rng = np.random.default_rng(0)
    model = normalized_model()
    randomize_biases(model, rng)
    for name in model.params:   # scales and shifts away from their 1 and 0
        if name.endswith(("_gamma", "_beta")):
            model.params[name] = model.params[name] + 0.3 * rng.standard_normal(model.params[name].shape)
    X, y = rng.standard_normal((6, 2, 6, 6)), rng.integers(0, 3, 6)
    check_gradients(model, X, y)


def test_summary_counts_and_state_names():
    model = normalized_model()
    rows = rows_of(model)
    assert rows["batchnorm1"] == ((4, 4, 4), 8)       # gamma, beta (4,)
    assert rows["groupnorm1"] == ((4, 2, 2), 8)       # gamma, beta (1, 4, 1, 1)
    assert rows["layernorm1"] == ((5,), 10)
    assert rows["batchnorm2"] == ((6,), 12)
    assert model.params["groupnorm1_gamma"].shape == (1, 4, 1, 1)
    assert sorted(model.state) == ["batchnorm1_running_mean", "batchnorm1_running_var",
                                   "batchnorm2_running_mean", "batchnorm2_running_var"]
    np.testing.assert_array_equal(model.state["batchnorm2_running_var"], np.ones(6))


def test_training_updates_running_statistics_and_inference_uses_them():
    rng = np.random.default_rng(1)
    model = Sequential((3,), [BatchNorm(momentum=0.5), Affine(2)], dtype=np.float64, seed=0)
    X = rng.normal([1.0, -2.0, 4.0], [1.0, 3.0, 0.5], size=(32, 3))
    before = model.loss(X[:1])
    assert np.array_equal(model.state["batchnorm1_running_mean"], np.zeros(3))   # inference: no update
    model.forward(X, train=True)
    np.testing.assert_allclose(model.state["batchnorm1_running_mean"], 0.5 * X.mean(axis=0))
    np.testing.assert_allclose(model.state["batchnorm1_running_var"], 0.5 + 0.5 * X.var(axis=0))
    # inference normalizes with the running statistics: one sample's scores do not depend
    # on the rest of its batch, and equal batchnorm_forward in test mode
    alone, in_batch = model.loss(X[:1]), model.loss(X)[:1]
    np.testing.assert_allclose(alone, in_batch, rtol=1e-12)
    assert not np.allclose(alone, before)
    out, _ = batchnorm_forward(X[:1], model.params["batchnorm1_gamma"], model.params["batchnorm1_beta"],
                               {"mode": "test", "running_mean": model.state["batchnorm1_running_mean"],
                                "running_var": model.state["batchnorm1_running_var"]})
    np.testing.assert_allclose(alone, out @ model.params["fc1_W"] + model.params["fc1_b"], rtol=1e-12)


def test_float32_model_keeps_float32_state_and_outputs():
    model = normalized_model(dtype=np.float32)
    X = np.random.default_rng(2).standard_normal((4, 2, 6, 6))
    loss, grads = model.loss(X, np.array([0, 1, 2, 0]))
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(s.dtype == np.float32 for s in model.state.values())
    assert model.loss(X).dtype == np.float32


def test_running_statistics_are_saved_loaded_and_resumed_exactly(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((96, 2, 6, 6))
    y = (X[:, 0].mean(axis=(1, 2)) > X[:, 1].mean(axis=(1, 2))).astype(np.int64)
    data = {"X_train": X[:72], "y_train": y[:72], "X_val": X[72:], "y_val": y[72:]}
    kwargs = dict(update_rule="adam", batch_size=12, verbose=False, seed=0)
    straight = normalized_model(seed=1)
    Solver(straight, data, num_epochs=3, **kwargs).train()
    name = str(tmp_path / "run")
    Solver(normalized_model(seed=1), data, num_epochs=1, checkpoint_name=name, **kwargs).train()
    resumed = normalized_model(seed=7)
    solver = Solver(resumed, data, num_epochs=3, checkpoint_name=name, **kwargs)
    solver.resume_latest()
    solver.train()
    for key in straight.state:
        np.testing.assert_array_equal(resumed.state[key], straight.state[key])
    for key in straight.params:
        np.testing.assert_array_equal(resumed.params[key], straight.params[key])
    path = save_params(straight, str(tmp_path / "model.npz"))
    loaded = load_params(normalized_model(seed=9), path)
    np.testing.assert_array_equal(loaded.loss(X[:5]), straight.loss(X[:5]))


def test_fashion_network_with_batchnorm_after_each_conv():
    plain = Sequential((1, 28, 28), fashion_cnn_layers(), seed=0)
    normalized = Sequential((1, 28, 28), fashion_cnn_layers(batchnorm=True), seed=0)
    rows = rows_of(normalized)
    assert [name for name in normalized.names[:3]] == ["conv1", "batchnorm1", "relu1"]
    assert rows["conv1"][1] == 16 * 9 and rows["batchnorm1"][1] == 32           # conv bias dropped
    assert rows["conv2"][1] == 32 * 16 * 9 and rows["batchnorm2"][1] == 64
    assert normalized.num_params() == plain.num_params() - 16 - 32 + 32 + 64


@pytest.mark.parametrize("layers, message", [
    ([Affine(4), LayerNorm(), Affine(2)], None),
    ([LayerNorm(), Affine(2)], r"layernorm1 .*needs an input of shape \(D,\).*GroupNorm\(1\)"),
    ([GroupNorm(3), Affine(2)], r"groupnorm1 .*its 3 groups do not divide the 2 channels"),
    ([Affine(4), GroupNorm(2), Affine(2)], r"groupnorm1 .*needs an input of shape \(C, H, W\)"),
])
def test_bad_configurations(layers, message):
    if message is None:
        Sequential((4,), layers, seed=0)
        return
    with pytest.raises(ValueError, match=message):
        Sequential((2, 4, 4), layers, seed=0)


@pytest.mark.parametrize("make, message", [
    (lambda: BatchNorm(momentum=1.0), r"BatchNorm momentum must be in \[0, 1\)"),
    (lambda: BatchNorm(eps=0), r"BatchNorm eps must be a positive number"),
    (lambda: GroupNorm(0), r"GroupNorm groups must be a positive int"),
    (lambda: LayerNorm(eps=-1), r"LayerNorm eps must be a positive number"),
])
def test_bad_layer_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_solver_restores_the_running_statistics_of_the_best_epoch(tmp_path):
    """train() leaves model.params at the best validation epoch; the batch-norm statistics
    must come from that epoch too, or the best parameters are evaluated with others."""
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((60, 2, 6, 6)), rng.integers(0, 3, 60)
    data = {"X_train": X[:48], "y_train": y[:48], "X_val": X[48:], "y_val": y[48:]}
    calls = []

    def decreasing_metric(model, X, y):   # the best validation value is the first epoch's
        calls.append(1)
        return 1.0 / len(calls)

    model = normalized_model(seed=2)
    name = str(tmp_path / "run")
    solver = Solver(model, data, num_epochs=3, batch_size=12, verbose=False, seed=0,
                    metric=decreasing_metric, checkpoint_name=name, checkpoint_keep=3,
                    optim_config={"learning_rate": 0.05})
    solver.train()
    with np.load(name + "_epoch_1.npz") as first, np.load(name + "_epoch_3.npz") as last:
        for key in model.state:
            np.testing.assert_array_equal(model.state[key], first[f"state/{key}"])
            assert not np.array_equal(model.state[key], last[f"state/{key}"])
        for key in model.params:
            np.testing.assert_array_equal(model.params[key], first[f"params/{key}"])
    # a resumed Solver knows the best epoch's statistics too
    resumed = normalized_model(seed=3)
    again = Solver(resumed, data, num_epochs=3, batch_size=12, verbose=False, seed=0,
                   metric=decreasing_metric, checkpoint_name=name, optim_config={"learning_rate": 0.05})
    again.resume(name + "_epoch_3.npz")
    again.train()   # nothing left to train: restores the best
    for key in model.state:
        np.testing.assert_array_equal(resumed.state[key], model.state[key])
