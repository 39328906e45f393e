"""sequential.Sequential: summary counts derived by hand, numeric gradients (float64), dropout
train/test modes and reproducibility, equivalence with ConvNet, bad configurations."""
import numpy as np
import pytest

from checkpoint import load_params, save_params
from cnn import ConvNet
from gradient_check import eval_numerical_gradient, rel_error
from layers import softmax_loss
from sequential import (
    Affine,
    BatchNorm,
    Conv,
    Dropout,
    Flatten,
    Layer,
    LogSoftmax,
    MaxPool,
    ReLU,
    Sequential,
)
from solver import Solver


def rows_of(model):
    """{layer name: (output shape, parameter count)} from the summary."""
    return {name: (shape, count) for name, _, shape, count in model.summary_rows()}


# ----------------------------------------------------------------------------- summary

def test_summary_conv_pool_affine_softmax():
    # input 3x28x28 -> conv 8 kernels 5x5x3, stride 1, no pad -> max pool 4x4 stride 2
    # -> affine 10 -> softmax (here LogSoftmax; the loss is softmax cross-entropy)
    model = Sequential((3, 28, 28), [Conv(8, 5), MaxPool(4, stride=2), Affine(10), LogSoftmax()])
    # conv: each of the 8 kernels has 5*5*3 = 75 weights and 1 bias: 8 * 75 + 8 = 608.
    #       output side 28 - 5 + 1 = 24, so 8 x 24 x 24.
    # pool: no parameters; side (24 - 4) // 2 + 1 = 11, so 8 x 11 x 11.
    # affine: input 8 * 11 * 11 = 968 numbers (it flattens), 968 * 10 weights + 10 biases = 9690.
    # softmax: no parameters, 10 outputs.
    # total: 608 + 9690 = 10298.
    assert rows_of(model) == {"conv1": ((8, 24, 24), 608), "pool1": ((8, 11, 11), 0),
                              "fc1": ((10,), 9690), "logsoftmax1": ((10,), 0)}
    assert model.num_params() == 10298
    assert set(model.params) == {"conv1_W", "conv1_b", "fc1_W", "fc1_b"}
    assert model.params["conv1_W"].shape == (8, 3, 5, 5)
    assert model.params["fc1_W"].shape == (968, 10)
    table = model.summary()
    lines = table.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "params"]
    assert any(line.startswith("conv1") and line.endswith("608") and "8 x 24 x 24" in line
               for line in lines)
    assert any(line.startswith("pool1") and "8 x 11 x 11" in line for line in lines)
    assert any(line.startswith("fc1") and line.endswith("9,690") for line in lines)
    assert lines[-1].split() == ["total", "10,298"]


def test_summary_two_affine_layers():
    # input 3x28x28 -> affine 100 -> affine 10
    model = Sequential((3, 28, 28), [Affine(100), Affine(10)])
    # affine 100: input 3 * 28 * 28 = 2352 numbers: 2352 * 100 + 100 = 235300.
    # affine 10: 100 * 10 + 10 = 1010.
    # total: 235300 + 1010 = 236310.
    assert rows_of(model) == {"fc1": ((100,), 235300), "fc2": ((10,), 1010)}
    assert model.num_params() == 236310
    assert model.summary().splitlines()[-1].split() == ["total", "236,310"]


def test_summary_fashion_network(capsys):
    model = Sequential((1, 28, 28), [
        Conv(16, 3, pad="same"), ReLU(), MaxPool(2), Conv(32, 3), ReLU(), MaxPool(2),
        Affine(600), ReLU(), Dropout(keep=0.75), Affine(120), ReLU(), Affine(10), LogSoftmax()])
    # conv1: 16 * (3*3*1) + 16 = 160; pad 1 keeps 28x28 -> 16 x 28 x 28; pool -> 16 x 14 x 14.
    # conv2: 32 * (3*3*16) + 32 = 4640; 14 - 3 + 1 = 12 -> 32 x 12 x 12; pool -> 32 x 6 x 6.
    # fc1: 32*6*6 = 1152 inputs: 1152 * 600 + 600 = 691800; fc2: 600 * 120 + 120 = 72120;
    # fc3: 120 * 10 + 10 = 1210. Total 160 + 4640 + 691800 + 72120 + 1210 = 769930.
    rows = rows_of(model)
    assert rows["conv1"] == ((16, 28, 28), 160) and rows["pool1"] == ((16, 14, 14), 0)
    assert rows["conv2"] == ((32, 12, 12), 4640) and rows["pool2"] == ((32, 6, 6), 0)
    assert rows["fc1"] == ((600,), 691800) and rows["dropout1"] == ((600,), 0)
    assert rows["fc2"] == ((120,), 72120) and rows["fc3"] == ((10,), 1210)
    assert model.num_params() == 769930
    assert list(rows) == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3",
                          "dropout1", "fc2", "relu4", "fc3", "logsoftmax1"]
    table = model.summary(print_table=True)
    assert capsys.readouterr().out == table + "\n"
    assert "keep p=0.75 (drop 0.25)" in table


def test_summary_strided_padded_rectangular():
    # input 2x9x7 -> conv 4 kernels 3x2, stride 2, pad 1 -> pool 2x3 stride 1 -> flatten -> affine 5
    model = Sequential((2, 9, 7), [Conv(4, (3, 2), stride=2, pad=1), MaxPool((2, 3), stride=1),
                                   Flatten(), Affine(5)])
    # conv: 4 * (3*2*2) + 4 = 52; height 1 + (9 + 2 - 3) // 2 = 5, width 1 + (7 + 2 - 2) // 2 = 4.
    # pool: height 1 + (5 - 2) // 1 = 4, width 1 + (4 - 3) // 1 = 2 -> 4 x 4 x 2.
    # flatten: 32. affine: 32 * 5 + 5 = 165. Total 52 + 165 = 217.
    assert rows_of(model) == {"conv1": ((4, 5, 4), 52), "pool1": ((4, 4, 2), 0),
                              "flatten1": ((32,), 0), "fc1": ((5,), 165)}
    assert model.num_params() == 217
    X = np.random.default_rng(0).standard_normal((3, 2, 9, 7))
    assert model.loss(X).shape == (3, 5)


# ----------------------------------------------------------------------------- gradients

def check_gradients(model, X, y, tolerance=1e-7):
    """Every parameter's gradient against centered differences; dropout masks held fixed."""
    def loss_at_step_0(_):
        model.training_steps = 0   # the same dropout masks in every evaluation
        return model.loss(X, y)[0]

    model.training_steps = 0
    loss, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    for name, param in model.params.items():
        assert grads[name].shape == param.shape, name
        numeric = eval_numerical_gradient(loss_at_step_0, param, verbose=False)
        assert rel_error(numeric, grads[name]) < tolerance, name
    return loss


def randomize_biases(model, rng):
    """Nonzero biases, so that no pre-activation sits exactly at a ReLU kink."""
    for name in model.params:
        if name.endswith("_b"):
            model.params[name] = 0.1 * rng.standard_normal(model.params[name].shape)


def test_gradients_conv_net_with_dropout_and_log_softmax():
    rng = np.random.default_rng(0)
    model = Sequential((2, 8, 8), [
        Conv(3, 3, pad="same"), ReLU(), MaxPool(2),           # 3 x 4 x 4
        Conv(4, 2, stride=1), ReLU(), MaxPool(3, stride=1),   # 4 x 3 x 3 -> 4 x 1 x 1
        Affine(6), ReLU(), Dropout(keep=0.6), Affine(5), LogSoftmax()],
        weight_scale=0.5, dtype=np.float64, seed=1)
    randomize_biases(model, rng)
    X = rng.standard_normal((3, 2, 8, 8))
    loss = check_gradients(model, X, np.array([0, 4, 2]))
    assert np.isfinite(loss)


def test_gradients_strided_conv_overlapping_pool_and_scores_output():
    # No LogSoftmax: the last layer's outputs are scores and softmax_loss is used.
    rng = np.random.default_rng(1)
    model = Sequential((1, 9, 9), [
        Conv(3, 3, stride=2, pad=1), ReLU(),                  # 3 x 5 x 5
        MaxPool(3, stride=2), Flatten(),                      # 3 x 2 x 2 -> 12
        Affine(7), ReLU(), Affine(3)],
        weight_scale=0.4, dtype=np.float64, seed=2)
    randomize_biases(model, rng)
    check_gradients(model, rng.standard_normal((4, 1, 9, 9)), np.array([2, 0, 1, 1]))


def test_gradients_conv_without_bias_and_affine_first():
    rng = np.random.default_rng(2)
    mlp = Sequential((3, 2, 2), [Affine(5), ReLU(), Dropout(keep=0.5), Affine(4), LogSoftmax()],
                     weight_scale=0.5, dtype=np.float64, seed=3)
    randomize_biases(mlp, rng)
    check_gradients(mlp, rng.standard_normal((5, 3, 2, 2)), np.array([0, 1, 2, 3, 0]))
    conv = Sequential((1, 5, 5), [Conv(2, 3, bias=False), ReLU(), Affine(3)],
                      weight_scale=0.5, dtype=np.float64, seed=4)
    assert set(conv.params) == {"conv1_W", "fc1_W", "fc1_b"}
    check_gradients(conv, rng.standard_normal((2, 1, 5, 5)), np.array([1, 2]))


def test_matches_convnet_with_the_same_parameters():
    # The contract's ConvNet, described as layers: conv (no bias) - relu - pool - fc - relu - fc.
    rng = np.random.default_rng(3)
    convnet = ConvNet(input_dim=(2, 9, 8), num_filters=3, filter_size=3, hidden_dim=6,
                      num_classes=4, weight_scale=0.3, dtype=np.float64, seed=5)
    model = Sequential((2, 9, 8), [Conv(3, 3, bias=False), ReLU(), MaxPool(2),
                                   Affine(6), ReLU(), Affine(4)], dtype=np.float64)
    names = {"W1": "conv1_W", "W2": "fc1_W", "b2": "fc1_b", "W3": "fc2_W", "b3": "fc2_b"}
    assert {model.params[ours].shape for ours in names.values()} == \
           {convnet.params[theirs].shape for theirs in names}
    for theirs, ours in names.items():
        convnet.params[theirs] = rng.standard_normal(convnet.params[theirs].shape)
        model.params[ours] = convnet.params[theirs].copy()
    X, y = rng.standard_normal((3, 2, 9, 8)), np.array([3, 0, 1])
    np.testing.assert_allclose(model.loss(X), convnet.loss(X), rtol=1e-12)
    loss, grads = model.loss(X, y)
    convnet_loss, convnet_grads = convnet.loss(X, y)
    assert loss == pytest.approx(convnet_loss, rel=1e-12)
    for theirs, ours in names.items():
        np.testing.assert_allclose(grads[ours], convnet_grads[theirs], rtol=1e-10, atol=1e-14)


def test_layers_run_in_the_written_order():
    """ReLU written before MaxPool runs before it (the model computes what was written),
    and forward/backward composed by hand equal loss()."""
    rng = np.random.default_rng(8)
    layers_ = [Conv(3, 3, pad=1), ReLU(), MaxPool(2), MaxPool(2, stride=1), Affine(5), ReLU(),
               Affine(4)]
    model = Sequential((2, 8, 8), layers_, dtype=np.float64, seed=1)
    assert model.execution_order() == list(range(7))
    X, y = rng.standard_normal((3, 2, 8, 8)), np.array([0, 3, 1])
    out, caches = model.forward(X, train=True)
    assert [index for index, _ in caches] == list(range(7))
    pool_input = caches[2][1][0]
    assert (pool_input == 0).mean() > 0.3 and (pool_input >= 0).all()   # the ReLU's output
    loss, dout = softmax_loss(out, y)
    dX, grads = model.backward(dout, caches)
    assert dX.shape == X.shape
    assert (loss, grads.keys()) == (model.loss(X, y)[0], model.loss(X, y)[1].keys())

    # dX, on a network without max-pool near-ties within the numeric step
    model = Sequential((2, 6, 6), [Conv(3, 3), ReLU(), Affine(5), ReLU(), Affine(4)],
                       dtype=np.float64, seed=2)
    randomize_biases(model, rng)
    X = rng.standard_normal((3, 2, 6, 6))
    out, caches = model.forward(X, train=True)
    dX, _ = model.backward(softmax_loss(out, y)[1], caches)
    numeric = eval_numerical_gradient(lambda X: softmax_loss(model.forward(X)[0], y)[0], X,
                                      verbose=False)
    assert rel_error(numeric, dX) < 1e-7


def test_pool_before_relu_is_an_explicit_option_with_identical_results():
    """pool_before_relu=True runs a ReLU followed by MaxPool after the pool (cheaper, same
    math): loss and gradients equal the written order's, with many exact ties at 0."""
    rng = np.random.default_rng(8)
    layers_ = [Conv(3, 3, pad=1), ReLU(), MaxPool(2), MaxPool(2, stride=1), Affine(5), ReLU(),
               Affine(4)]
    written = Sequential((2, 8, 8), layers_, dtype=np.float64, seed=1)
    swapped = Sequential((2, 8, 8), layers_, dtype=np.float64, seed=1, pool_before_relu=True)
    assert swapped.execution_order() == [0, 2, 3, 1, 4, 5, 6]
    X, y = rng.standard_normal((3, 2, 8, 8)), np.array([0, 3, 1])
    loss, grads = written.loss(X, y)
    swapped_loss, swapped_grads = swapped.loss(X, y)
    assert loss == swapped_loss
    assert grads.keys() == swapped_grads.keys()
    for key in grads:
        np.testing.assert_array_equal(grads[key], swapped_grads[key])
    # hidden features stop where asked, in either order
    for name in ("relu1", "pool1", "pool2"):
        np.testing.assert_array_equal(written.forward(X, stop_after=name)[0],
                                      swapped.forward(X, stop_after=name)[0])


# ----------------------------------------------------------------------------- modes, dtype, seeds

def small_dropout_model(seed=0, keep=0.5):
    return Sequential((1, 6, 6), [Conv(2, 3), ReLU(), Affine(20), ReLU(), Dropout(keep=keep),
                                  Affine(3), LogSoftmax()], dtype=np.float64, seed=seed)


def test_dropout_active_in_training_only():
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((8, 1, 6, 6)), rng.integers(0, 3, 8)
    model = small_dropout_model()
    # Inference: dropout is the identity, so it equals the same network without dropout.
    no_dropout = Sequential((1, 6, 6), [Conv(2, 3), ReLU(), Affine(20), ReLU(), Affine(3),
                                        LogSoftmax()], dtype=np.float64)
    assert set(no_dropout.params) == set(model.params)   # dropout has no parameters
    no_dropout.params.update(model.params)
    np.testing.assert_array_equal(model.loss(X), no_dropout.loss(X))
    np.testing.assert_array_equal(model.loss(X), model.loss(X))
    assert model.training_steps == 0   # inference calls don't count
    # Training: the loss differs from the dropout-free one, and each call has new masks.
    inference_loss = no_dropout.loss(X, y)[0]
    first, second = model.loss(X, y)[0], model.loss(X, y)[0]
    assert model.training_steps == 2
    assert first != inference_loss and second != inference_loss and first != second
    # keep=1: training equals inference.
    keep_all = small_dropout_model(keep=1.0)
    keep_all.params.update(model.params)
    assert keep_all.loss(X, y)[0] == pytest.approx(inference_loss, rel=1e-13)


def test_seeded_model_is_reproducible():
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((8, 1, 6, 6)), rng.integers(0, 3, 8)
    a, b = small_dropout_model(seed=7), small_dropout_model(seed=7)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert [a.loss(X, y)[0] for _ in range(3)] == [b.loss(X, y)[0] for _ in range(3)]
    other = small_dropout_model(seed=8)
    assert not np.array_equal(other.params["fc1_W"], a.params["fc1_W"])
    # Two layers of the same shape start with different weights.
    twins = Sequential((4,), [Affine(4), ReLU(), Affine(4)], seed=0)
    assert not np.array_equal(twins.params["fc1_W"], twins.params["fc2_W"])


def test_float32_by_default_and_he_init():
    model = Sequential((1, 28, 28), [Conv(16, 3, pad="same"), ReLU(), MaxPool(2),
                                     Affine(600), Affine(10)], seed=0)
    assert all(value.dtype == np.float32 for value in model.params.values())
    assert model.params["conv1_W"].std() == pytest.approx(np.sqrt(2 / 9), rel=0.1)
    assert model.params["fc1_W"].std() == pytest.approx(np.sqrt(2 / (16 * 14 * 14)), rel=0.02)
    assert not model.params["fc1_b"].any()
    X = np.random.default_rng(0).standard_normal((2, 1, 28, 28))   # float64 in: cast
    loss, grads = model.loss(X, np.array([1, 2]))
    assert np.asarray(loss).dtype == np.float32
    assert all(grad.dtype == np.float32 for grad in grads.values())
    assert model.loss(X).dtype == np.float32


# ----------------------------------------------------------------------------- L2 penalty

def small_regularized_model(reg, **kwargs):
    """2 -> fc 2 -> relu -> batch norm -> fc 2, with hand-chosen parameters."""
    model = Sequential((2,), [Affine(2), ReLU(), BatchNorm(), Affine(2)], dtype=np.float64,
                       seed=0, reg=reg, **kwargs)
    model.params.update(fc1_W=np.array([[1.0, 2.0], [3.0, -1.0]]), fc1_b=np.array([0.5, -0.5]),
                        fc2_W=np.array([[0.5, 0.0], [0.0, -2.0]]), fc2_b=np.array([1.0, 2.0]),
                        batchnorm1_gamma=np.array([3.0, 4.0]),
                        batchnorm1_beta=np.array([1.0, -1.0]))
    return model


def test_reg_adds_half_reg_times_squared_weights_and_reg_w_to_their_gradients():
    X, y = np.array([[1.0, 0.5], [-0.5, 2.0], [0.3, 0.1]]), np.array([0, 1, 1])
    plain_loss, plain = small_regularized_model(0.0).loss(X, y)
    loss, grads = small_regularized_model(0.5).loss(X, y)
    # sum of squared weights: fc1_W 1 + 4 + 9 + 1 = 15, fc2_W 0.25 + 4 = 4.25 -> 19.25;
    # penalty 0.5 * 0.5 * 19.25 = 4.8125. Biases, gamma and beta are not penalized.
    assert loss - plain_loss == pytest.approx(4.8125, abs=1e-12)
    np.testing.assert_allclose(grads["fc1_W"] - plain["fc1_W"], [[0.5, 1.0], [1.5, -0.5]],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["fc2_W"] - plain["fc2_W"], [[0.25, 0.0], [0.0, -1.0]],
                               rtol=0, atol=1e-12)
    for name in ("fc1_b", "fc2_b", "batchnorm1_gamma", "batchnorm1_beta"):
        np.testing.assert_array_equal(grads[name], plain[name])
    assert small_regularized_model(0.5).regularized_params() == ["fc1_W", "fc2_W"]


def test_reg_zero_is_the_unregularized_model():
    X, y = np.array([[1.0, 0.5], [-0.5, 2.0], [0.3, 0.1]]), np.array([0, 1, 1])
    model = small_regularized_model(0.0)
    loss, grads = model.loss(X, y)
    out, caches = small_regularized_model(0.0).forward(X, train=True)
    expected_loss, dout = softmax_loss(out, y)
    assert loss == expected_loss
    assert Sequential((2,), [Affine(2)]).reg == 0.0
    assert "L2" not in model.summary()


def test_regularized_gradients_match_numeric_ones():
    rng = np.random.default_rng(3)
    model = Sequential((2, 6, 6), [
        Conv(3, 3, pad="same"), BatchNorm(), ReLU(), MaxPool(2), Affine(5), ReLU(),
        Dropout(keep=0.7), Affine(4)], weight_scale=0.5, dtype=np.float64, seed=5, reg=0.3)
    randomize_biases(model, rng)
    check_gradients(model, rng.standard_normal((4, 2, 6, 6)), np.array([0, 3, 1, 2]))


def test_reg_skips_frozen_weights_and_covers_a_replaced_head():
    X, y = np.array([[1.0, 0.5], [-0.5, 2.0]]), np.array([0, 1])
    model = small_regularized_model(0.5)
    model.freeze("fc1")
    loss, grads = model.loss(X, y)
    plain_loss, _ = small_regularized_model(0.0).loss(X, y)
    assert model.regularized_params() == ["fc2_W"]
    assert loss - plain_loss == pytest.approx(0.5 * 0.5 * 4.25, abs=1e-12)
    assert "fc1_W" not in grads
    model.replace_head(3, seed=0)
    assert model.regularized_params() == ["fc2_W"] and model.params["fc2_W"].shape == (2, 3)
    assert model.summary().splitlines()[-1] == "L2 regularization reg = 0.5 on fc2_W"


def test_reg_keeps_float32():
    model = Sequential((3,), [Affine(4), ReLU(), Affine(2)], seed=0, reg=1e-3)
    loss, grads = model.loss(np.ones((2, 3)), np.array([0, 1]))
    assert np.asarray(loss).dtype == np.float32
    assert all(grad.dtype == np.float32 for grad in grads.values())


@pytest.mark.parametrize("reg", [-0.1, float("nan"), float("inf"), "0.1", None, True])
def test_bad_reg_is_refused(reg):
    with pytest.raises(ValueError, match=r"reg must be a finite number >= 0, got"):
        Sequential((3,), [Affine(2)], reg=reg)


def test_solver_trains_it_and_resume_is_exact(tmp_path):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((200, 1, 6, 6))
    # class 1 if the left half of the image is brighter than the right half
    y = (X[:, 0, :, :3].sum(axis=(1, 2)) > X[:, 0, :, 3:].sum(axis=(1, 2))).astype(np.int64)
    data = {"X_train": X[:160], "y_train": y[:160], "X_val": X[160:], "y_val": y[160:]}
    kwargs = dict(optim_config={"learning_rate": 0.1}, batch_size=16, verbose=False, seed=0)

    straight = small_dropout_model(seed=1)
    Solver(straight, data, num_epochs=4, **kwargs).train()

    name = str(tmp_path / "run")
    interrupted = small_dropout_model(seed=1)
    Solver(interrupted, data, num_epochs=2, checkpoint_name=name, **kwargs).train()
    resumed = small_dropout_model(seed=1)
    solver = Solver(resumed, data, num_epochs=4, checkpoint_name=name, **kwargs)
    assert solver.resume_latest() == name + "_epoch_2.npz"
    assert resumed.training_steps == solver.iteration   # restored from the checkpoint
    solver.train()
    assert solver.best_val_acc > 0.75   # chance: about 0.5
    for key in straight.params:
        np.testing.assert_array_equal(resumed.params[key], straight.params[key])


# ----------------------------------------------------------------------------- layer state

class RunningMean(Layer):
    """A layer with a state buffer, as a normalization layer has: out = x - mean, where
    mean is the running mean of the training inputs (updated after use, so training
    and inference see the same constant and dx = dout)."""

    kind = "center"

    def init_state(self, input_shape, dtype):
        return {"running_mean": np.zeros(input_shape, dtype=dtype)}

    def forward(self, x, params, state, train, seed):
        out = x - state["running_mean"]
        if train:
            state["running_mean"] = 0.9 * state["running_mean"] + 0.1 * x.mean(axis=0)
        return out, None

    def backward(self, dout, cache, need_dx=True):
        return dout, {}


def stateful_model(seed=1):
    return Sequential((5,), [Affine(6), ReLU(), RunningMean(), Affine(3)], dtype=np.float64,
                      seed=seed)


def test_layer_state_is_kept_saved_loaded_and_checkpointed(tmp_path):
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((80, 5)), rng.integers(0, 3, 80)
    data = {"X_train": X[:60], "y_train": y[:60], "X_val": X[60:], "y_val": y[60:]}
    model = stateful_model()
    assert list(model.state) == ["center1_running_mean"]
    model.forward(X[:4])                                   # inference: state unchanged
    assert not model.state["center1_running_mean"].any()
    hidden = model.forward(X[:4], train=True, stop_after="relu1")[0]
    np.testing.assert_allclose(model.state["center1_running_mean"], 0)   # not reached
    model.forward(X[:4], train=True)
    np.testing.assert_allclose(model.state["center1_running_mean"], 0.1 * hidden.mean(axis=0))

    # save_params / load_params carry the state; a file without it leaves it alone
    path = save_params(model, str(tmp_path / "model.npz"))
    with np.load(path) as npz:
        assert sorted(npz.files) == sorted([*model.params, "state/center1_running_mean"])
    other = load_params(stateful_model(seed=2), path)
    np.testing.assert_array_equal(other.state["center1_running_mean"],
                                  model.state["center1_running_mean"])
    with pytest.raises(ValueError, match=r"state/center1_running_mean has shape \(3,\) there"):
        load_params(other, {**model.params, "state/center1_running_mean": np.zeros(3)})

    # Solver checkpoints carry it: a resumed run equals an uninterrupted one, state included
    kwargs = dict(update_rule="adam", batch_size=16, verbose=False, seed=0)
    straight = stateful_model()
    Solver(straight, data, num_epochs=3, **kwargs).train()
    name = str(tmp_path / "run")
    Solver(stateful_model(), data, num_epochs=1, checkpoint_name=name, **kwargs).train()
    resumed = stateful_model(seed=5)
    solver = Solver(resumed, data, num_epochs=3, checkpoint_name=name, **kwargs)
    solver.resume_latest()
    np.testing.assert_array_equal(resumed.state["center1_running_mean"],
                                  np.load(name + "_epoch_1.npz")["state/center1_running_mean"])
    solver.train()
    np.testing.assert_array_equal(resumed.state["center1_running_mean"],
                                  straight.state["center1_running_mean"])
    for key in straight.params:
        np.testing.assert_array_equal(resumed.params[key], straight.params[key])


def test_load_params_refuses_non_finite_values_and_overflow(tmp_path):
    model = Sequential((4,), [Affine(3)], seed=0)            # float32
    good = {key: value.astype(np.float64) for key, value in model.params.items()}
    for bad, message in ((np.nan, r"fc1_W holds non-finite values \(NaN or inf\)$"),
                         (1e300, r"fc1_W holds non-finite values \(NaN or inf\) after the "
                                 r"cast to float32")):
        params = dict(good, fc1_W=np.full((4, 3), bad))
        with pytest.raises(ValueError, match=message):
            load_params(model, params)
    assert not np.isnan(model.params["fc1_W"]).any()     # left unchanged
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match=r"cannot read parameters from .*broken.npz"):
        load_params(model, str(broken))


# ----------------------------------------------------------------------------- bad configurations

@pytest.mark.parametrize("input_shape, layers, message", [
    ((1, 4, 4), [Conv(2, 5), Affine(3)],
     r"conv1 \(layer 0, conv 2 x 5x5.*\) cannot take the output of the input: its 5x5 kernel "
     r"does not fit its input of shape 1 x 4 x 4 padded by 0"),
    ((3, 28, 28), [Conv(8, 5), MaxPool(4, stride=2), Conv(4, 12), Affine(10)],
     r"conv2 \(layer 2.*\) cannot take the output of pool1: its 12x12 kernel does not fit "
     r"its input of shape 8 x 11 x 11"),
    ((1, 6, 6), [Conv(2, 3), MaxPool(5), Affine(3)],
     r"pool1 .* cannot take the output of conv1: its 5x5 window does not fit its input of "
     r"shape 2 x 4 x 4"),
    ((1, 6, 6), [Affine(10), MaxPool(2)],
     r"pool1 .* cannot take the output of fc1: needs an input of shape \(C, H, W\), got \(10\)"),
    ((1, 6, 6), [LogSoftmax(), Affine(3)], r"logsoftmax1 \(layer 0\): LogSoftmax must be the last"),
    ((1, 6, 6), [Conv(2, 3), LogSoftmax()], r"logsoftmax1 .*needs class scores of shape \(C,\)"),
    ((1, 6, 6), [Conv(2, 3), ReLU()], r"the last layer, relu1, outputs shape \(2 x 4 x 4\) .* "
                                      r"must end in class scores"),
    ((1, 6, 6), [], r"layers is empty"),
    ((1, 6, 6), [Affine(3), "relu"], r"layer 1 is 'relu', not a layer description"),
])
def test_bad_configurations_raise_clear_errors(input_shape, layers, message):
    with pytest.raises(ValueError, match=message):
        Sequential(input_shape, layers)


@pytest.mark.parametrize("make, message", [
    (lambda: Conv(0, 3), r"Conv filters must be a positive int, got 0"),
    (lambda: Conv(4, (3, 0)), r"Conv kernel_size must be a positive int or a pair"),
    (lambda: Conv(4, 4, pad="same"), r"pad='same' needs stride 1 and a square kernel of odd size"),
    (lambda: Conv(4, 3, pad=-1), r"Conv pad must be a non-negative int or 'same'"),
    (lambda: MaxPool(2, stride=0), r"MaxPool stride must be a positive int"),
    (lambda: Affine(2.5), r"Affine units must be a positive int"),
    (lambda: Dropout(keep=0), r"Dropout keep is the dropout KEEP probability and must be in \(0, 1\]"),
    (lambda: Dropout(keep=1.5), r"must be in \(0, 1\], got 1.5"),
])
def test_bad_layer_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_input_shape():
    model = Sequential((1, 6, 6), [Affine(3)])
    with pytest.raises(ValueError, match=r"X has shape \(2, 1, 5, 6\), expected \(N, 1 x 6 x 6\)"):
        model.loss(np.zeros((2, 1, 5, 6)))


def test_conv2d_backward_without_dx():
    # The first layer's input is the data: Sequential asks conv2d_backward for no dx.
    from layers import conv2d_backward, conv2d_forward
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    out, cache = conv2d_forward(x, w, b, stride=2, pad=1)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)
    no_dx, dw_only, db_only = conv2d_backward(dout, cache, need_dx=False)
    assert dx.shape == x.shape and no_dx is None
    np.testing.assert_array_equal(dw_only, dw)
    np.testing.assert_array_equal(db_only, db)
