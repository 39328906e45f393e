"""Tests of layers.py: hand-computed forward values, numeric gradients (float64,
relative error < 1e-7), inputs never mutated, float32 preserved, shape errors."""
import numpy as np
import pytest

import layers
from grader import references
from gradient_check import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
)

TOLERANCE = 1e-7


def spaced(rng, shape, spacing=0.05):
    """Distinct values at least `spacing` apart, none near 0: no ReLU kink or max-pool
    near-tie lies within the numeric-gradient step."""
    values = (rng.permutation(int(np.prod(shape))) - np.prod(shape) / 2 + 0.5) * spacing
    return values.reshape(shape)


def assert_numeric_gradient(forward, x, dout, analytic):
    numeric = eval_numerical_gradient_array(forward, x, dout)
    assert rel_error(numeric, analytic) < TOLERANCE


def assert_unchanged(arrays, copies):
    for array, copy in zip(arrays, copies):
        np.testing.assert_array_equal(array, copy)


# ----------------------------------------------------------------------------- fc

def test_fc_forward_hand_computed():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    w = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    b = np.array([0.5, 0.0, -0.5])
    out, cache = layers.fc_forward(x, w, b)
    np.testing.assert_allclose(out, [[5.5, 2.0, -1.5], [11.5, 4.0, -3.5]])
    assert cache[0] is x and cache[1] is w and cache[2] is b


@pytest.mark.parametrize("x_shape, M", [((3, 5), 4), ((1, 2, 3), 2), ((4, 2, 3, 2), 3)])
def test_fc_gradients(x_shape, M):
    rng = np.random.default_rng(0)
    D = int(np.prod(x_shape[1:]))
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal((D, M)), rng.standard_normal(M)
    copies = [a.copy() for a in (x, w, b)]
    out, cache = layers.fc_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = layers.fc_backward(dout, cache)
    assert_unchanged((x, w, b), copies)
    assert_numeric_gradient(lambda x: layers.fc_forward(x, w, b)[0], x, dout, dx)
    assert_numeric_gradient(lambda w: layers.fc_forward(x, w, b)[0], w, dout, dw)
    assert_numeric_gradient(lambda b: layers.fc_forward(x, w, b)[0], b, dout, db)


def test_fc_shape_errors():
    x = np.zeros((2, 3, 2))
    with pytest.raises(ValueError, match=r"w has shape \(5, 4\).*D=6"):
        layers.fc_forward(x, np.zeros((5, 4)), np.zeros(4))
    with pytest.raises(ValueError, match=r"b has shape \(3,\), expected \(4,\)"):
        layers.fc_forward(x, np.zeros((6, 4)), np.zeros(3))
    _, cache = layers.fc_forward(x, np.zeros((6, 4)), np.zeros(4))
    with pytest.raises(ValueError, match=r"dout has shape \(2, 5\).*\(2, 4\)"):
        layers.fc_backward(np.zeros((2, 5)), cache)


# ----------------------------------------------------------------------------- relu

def test_relu_forward_and_backward_hand_computed():
    x = np.array([[-1.0, 0.0, 2.0], [3.0, -0.5, 0.25]])
    out, cache = layers.relu_forward(x)
    np.testing.assert_array_equal(out, [[0, 0, 2], [3, 0, 0.25]])
    dx = layers.relu_backward(np.full(x.shape, 7.0), cache)
    np.testing.assert_array_equal(dx, [[0, 0, 7], [7, 0, 7]])


def test_relu_gradient_and_no_mutation():
    rng = np.random.default_rng(1)
    x = spaced(rng, (3, 4, 5))
    copy = x.copy()
    out, cache = layers.relu_forward(x)
    dout = rng.standard_normal(out.shape)
    dx = layers.relu_backward(dout, cache)
    assert_unchanged([x], [copy])
    assert_numeric_gradient(lambda x: layers.relu_forward(x)[0], x, dout, dx)


# ----------------------------------------------------------------------------- conv

IMAGE = np.array([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]])
KERNEL = np.array([[[[1.0, 2.0], [0.0, -1.0]]]])


def test_conv_forward_is_filtering_hand_computed():
    out, cache = layers.conv_forward(IMAGE, KERNEL)
    # out[i, j] = x[i, j] + 2 x[i, j+1] - x[i+1, j+1]; a flipped kernel would give 12 at (0, 0)
    np.testing.assert_array_equal(out, [[[[0.0, 2.0], [6.0, 8.0]]]])
    assert len(cache) == 2 and cache[0] is IMAGE and cache[1] is KERNEL


def test_conv_backward_hand_computed():
    _, cache = layers.conv_forward(IMAGE, KERNEL)
    dx, dw = layers.conv_backward(np.ones((1, 1, 2, 2)), cache)
    # dW[k, l] = sum of the 2x2 block of x starting at (k, l)
    np.testing.assert_array_equal(dw, [[[[12.0, 16.0], [24.0, 28.0]]]])
    # dX[p, q] = sum_{k,l} W[k, l] over the outputs (p-k, q-l) that exist
    np.testing.assert_array_equal(dx, [[[[1.0, 3.0, 2.0], [1.0, 2.0, 1.0], [0.0, -1.0, -1.0]]]])


CONV_CASES = [  # N, C, H, W, F, HH, WW
    (2, 3, 5, 7, 4, 2, 3),
    (1, 1, 4, 4, 1, 4, 4),
    (3, 2, 6, 5, 2, 1, 1),
    (1, 4, 7, 7, 3, 3, 3),
]


@pytest.mark.parametrize("N, C, H, W, F, HH, WW", CONV_CASES)
def test_conv_gradients_and_no_mutation(N, C, H, W, F, HH, WW):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, HH, WW))
    copies = [x.copy(), w.copy()]
    out, cache = layers.conv_forward(x, w)
    assert out.shape == (N, F, H - HH + 1, W - WW + 1)
    dout = rng.standard_normal(out.shape)
    dx, dw = layers.conv_backward(dout, cache)
    assert_unchanged((x, w), copies)
    assert_numeric_gradient(lambda x: layers.conv_forward(x, w)[0], x, dout, dx)
    assert_numeric_gradient(lambda w: layers.conv_forward(x, w)[0], w, dout, dw)


@pytest.mark.parametrize("N, C, H, W, F, HH, WW", CONV_CASES)
def test_conv_backward_is_full_convolution_and_filtering(N, C, H, W, F, HH, WW):
    """dX = sum_f W[f, c] *full dY[n, f] and dW = sum_n X[n, c] *filt dY[n, f], both
    computed here with conv_forward itself (filtering) on rearranged arrays."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, HH, WW))
    out, cache = layers.conv_forward(x, w)
    dout = rng.standard_normal(out.shape)
    dx, dw = layers.conv_backward(dout, cache)
    # full convolution = zero-pad dY by HH-1, WW-1 and filter with the flipped kernel
    dout_padded = np.pad(dout, ((0, 0), (0, 0), (HH - 1, HH - 1), (WW - 1, WW - 1)))
    flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, F, HH, WW): channels out
    full_convolution, _ = layers.conv_forward(dout_padded, flipped)
    np.testing.assert_allclose(dx, full_convolution, rtol=1e-12, atol=1e-12)
    # filtering of X by dY: treat samples as channels, summed over by the filtering
    filtering, _ = layers.conv_forward(x.transpose(1, 0, 2, 3), dout.transpose(1, 0, 2, 3))
    np.testing.assert_allclose(dw, filtering.transpose(1, 0, 2, 3), rtol=1e-12, atol=1e-12)


CONV2D_CASES = [  # N, C, H, W, F, HH, WW, stride, pad
    (2, 3, 5, 7, 4, 3, 2, 2, 1),
    (1, 2, 7, 6, 3, 3, 3, 2, 0),
    (2, 1, 6, 6, 2, 3, 2, 3, 2),
    (1, 3, 4, 4, 2, 3, 3, 1, 1),
]


@pytest.mark.parametrize("N, C, H, W, F, HH, WW, stride, pad", CONV2D_CASES)
def test_conv2d_matches_loops_and_numeric_gradients(N, C, H, W, F, HH, WW, stride, pad):
    rng = np.random.default_rng(4)
    x, w, b = (rng.standard_normal(s) for s in ((N, C, H, W), (F, C, HH, WW), (F,)))
    copies = [a.copy() for a in (x, w, b)]
    out, cache = layers.conv2d_forward(x, w, b, stride, pad)
    np.testing.assert_allclose(out, references.conv(x, w, b, stride, pad), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = layers.conv2d_backward(dout, cache)
    assert_unchanged((x, w, b), copies)
    forward = lambda x, w, b: layers.conv2d_forward(x, w, b, stride, pad)[0]
    assert_numeric_gradient(lambda x: forward(x, w, b), x, dout, dx)
    assert_numeric_gradient(lambda w: forward(x, w, b), w, dout, dw)
    assert_numeric_gradient(lambda b: forward(x, w, b), b, dout, db)


def test_conv2d_empty_batch():
    x, w, b = np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3)), np.zeros(3)
    out, cache = layers.conv2d_forward(x, w, b, 1, 1)
    assert out.shape == (0, 3, 5, 5)
    dx, dw, db = layers.conv2d_backward(out, cache)
    assert dx.shape == x.shape and not dw.any() and not db.any()


def test_conv2d_without_bias_equals_conv_forward():
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2))
    out, cache = layers.conv2d_forward(x, w)
    out_contract, cache_contract = layers.conv_forward(x, w)
    np.testing.assert_array_equal(out, out_contract)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = layers.conv2d_backward(dout, cache)
    assert db is None
    for ours, contract in zip((dx, dw), layers.conv_backward(dout, cache_contract)):
        np.testing.assert_array_equal(ours, contract)


def test_conv_shape_errors():
    x = np.zeros((2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"w has C=4.*x has C=3.*\(2, 3, 5, 5\).*\(2, 4, 3, 3\)"):
        layers.conv_forward(x, np.zeros((2, 4, 3, 3)))
    with pytest.raises(ValueError, match=r"x must be 4-D"):
        layers.conv_forward(np.zeros((3, 5, 5)), np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"kernel is larger"):
        layers.conv_forward(x, np.zeros((2, 3, 6, 3)))
    with pytest.raises(ValueError, match=r"b has shape \(3,\), expected \(2,\)"):
        layers.conv2d_forward(x, np.zeros((2, 3, 3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"stride"):
        layers.conv2d_forward(x, np.zeros((2, 3, 3, 3)), stride=0)
    _, cache = layers.conv_forward(x, np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"dout has shape \(2, 2, 2, 2\).*\(2, 2, 3, 3\)"):
        layers.conv_backward(np.zeros((2, 2, 2, 2)), cache)


# ----------------------------------------------------------------------------- max pool

def test_max_pool_forward_hand_computed():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out, cache = layers.max_pool_forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    np.testing.assert_array_equal(out, [[[[5, 7], [13, 15]]]])
    assert cache[0] is x
    overlapping, _ = layers.max_pool_forward(x, {"pool_height": 3, "pool_width": 3, "stride": 1})
    np.testing.assert_array_equal(overlapping, [[[[10, 11], [14, 15]]]])
    skipping, _ = layers.max_pool_forward(-x, {"pool_height": 1, "pool_width": 2, "stride": 3})
    np.testing.assert_array_equal(skipping, [[[[0], [-12]]]])  # rows 0 and 3, columns 0-1


def test_max_pool_backward_routes_ties_to_first_max():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, :, 2:] = [[1.0, 3.0], [3.0, 3.0]]
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    _, cache = layers.max_pool_forward(x, pool_param)
    dx = layers.max_pool_backward(np.array([[[[5.0, 7.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[5, 0, 0, 7], [0, 0, 0, 0]]]])


def test_max_pool_backward_overlapping_windows_accumulate():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the max of all four 2x2 windows
    _, cache = layers.max_pool_forward(x, {"pool_height": 2, "pool_width": 2, "stride": 1})
    dx = layers.max_pool_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    assert dx[0, 0, 1, 1] == 10.0 and dx.sum() == 10.0


POOL_CASES = [  # N, C, H, W, pool_height, pool_width, stride
    (2, 3, 4, 4, 2, 2, 2),
    (1, 2, 5, 7, 3, 2, 1),
    (2, 2, 7, 7, 3, 3, 2),
    (1, 1, 6, 5, 2, 1, 3),
]


@pytest.mark.parametrize("N, C, H, W, ph, pw, stride", POOL_CASES)
def test_max_pool_gradient_and_no_mutation(N, C, H, W, ph, pw, stride):
    rng = np.random.default_rng(6)
    x = spaced(rng, (N, C, H, W))
    copy = x.copy()
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    out, cache = layers.max_pool_forward(x, pool_param)
    assert out.shape == (N, C, 1 + (H - ph) // stride, 1 + (W - pw) // stride)
    dout = rng.standard_normal(out.shape)
    dx = layers.max_pool_backward(dout, cache)
    assert_unchanged([x], [copy])
    assert_numeric_gradient(lambda x: layers.max_pool_forward(x, pool_param)[0], x, dout, dx)


def test_max_pool_shape_errors():
    with pytest.raises(ValueError, match=r"pool window 5x2.*larger than x's 4x4"):
        layers.max_pool_forward(np.zeros((1, 1, 4, 4)), {"pool_height": 5, "pool_width": 2, "stride": 1})
    with pytest.raises(ValueError, match=r"pool_param must be a dict with keys"):
        layers.max_pool_forward(np.zeros((1, 1, 4, 4)), {"pool_height": 2, "stride": 2})
    with pytest.raises(ValueError, match=r"x must be 4-D"):
        layers.max_pool_forward(np.zeros((4, 4)), {"pool_height": 2, "pool_width": 2, "stride": 2})


# ----------------------------------------------------------------------------- losses

def test_softmax_loss_hand_computed():
    loss, dx = layers.softmax_loss(np.zeros((2, 4)), np.array([1, 3]))
    assert loss == pytest.approx(np.log(4))
    expected = np.full((2, 4), 0.25 / 2)
    expected[[0, 1], [1, 3]] = (0.25 - 1) / 2
    np.testing.assert_allclose(dx, expected)


def test_softmax_loss_is_stable_for_huge_scores():
    loss, dx = layers.softmax_loss(np.array([[1000.0, 0.0], [0.0, -1000.0]]), np.array([1, 0]))
    assert loss == pytest.approx(500.0) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("N, C", [(1, 2), (5, 7), (8, 3)])
def test_softmax_loss_gradient(N, C):
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((N, C)), rng.integers(0, C, N)
    copy = x.copy()
    _, dx = layers.softmax_loss(x, y)
    assert_unchanged([x], [copy])
    numeric = eval_numerical_gradient(lambda x: layers.softmax_loss(x, y)[0], x, verbose=False)
    assert rel_error(numeric, dx) < TOLERANCE


def test_log_softmax_and_nll_hand_computed():
    out, _ = layers.log_softmax_forward(np.array([[0.0, np.log(3.0)]]))
    np.testing.assert_allclose(out, [[np.log(0.25), np.log(0.75)]])
    loss, dlog_probs = layers.nll_loss(np.log([[0.25, 0.75], [0.5, 0.5]]), np.array([1, 0]))
    assert loss == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2)
    np.testing.assert_array_equal(dlog_probs, [[0, -0.5], [-0.5, 0]])


@pytest.mark.parametrize("N, C", [(1, 3), (4, 6)])
def test_log_softmax_nll_gradients_and_equivalence_to_softmax_loss(N, C):
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((N, C)), rng.integers(0, C, N)
    copy = x.copy()
    out, cache = layers.log_softmax_forward(x)
    dout = rng.standard_normal(out.shape)
    dx = layers.log_softmax_backward(dout, cache)
    assert_numeric_gradient(lambda x: layers.log_softmax_forward(x)[0], x, dout, dx)
    loss, dlog_probs = layers.nll_loss(out, y)
    numeric = eval_numerical_gradient(lambda p: layers.nll_loss(p, y)[0], out.copy(), verbose=False)
    assert rel_error(numeric, dlog_probs) < TOLERANCE
    softmax_loss, softmax_dx = layers.softmax_loss(x, y)
    assert loss == pytest.approx(softmax_loss, rel=1e-12)
    np.testing.assert_allclose(layers.log_softmax_backward(dlog_probs, cache), softmax_dx, atol=1e-14)
    assert_unchanged([x], [copy])


@pytest.mark.parametrize("loss_function", [layers.softmax_loss, layers.nll_loss])
def test_label_errors(loss_function):
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"labels in \[0, 4\].*expected them in \[0, 4\)"):
        loss_function(x, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"labels in \[-1, 1\]"):
        loss_function(x, np.array([0, 1, -1]))
    with pytest.raises(ValueError, match=r"integer class labels, got dtype float64"):
        loss_function(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"y has shape \(2,\), expected \(3,\)"):
        loss_function(x, np.array([0, 1]))


# ----------------------------------------------------------------------------- dropout, flatten

def test_dropout_keep_probability_and_modes():
    x = np.ones((200, 500))
    out, cache = layers.dropout_forward(x, {"p": 0.8, "mode": "train", "seed": 0})
    assert set(np.unique(out)) == {0.0, 1.25}
    assert abs((out > 0).mean() - 0.8) < 0.01  # p is the KEEP probability
    assert abs(out.mean() - 1.0) < 0.01        # inverted dropout keeps the expectation
    dx = layers.dropout_backward(np.full(x.shape, 2.0), cache)
    np.testing.assert_array_equal(dx, 2.0 * (out > 0) * 1.25)
    test_out, test_cache = layers.dropout_forward(x, {"p": 0.8, "mode": "test"})
    np.testing.assert_array_equal(test_out, x)
    np.testing.assert_array_equal(layers.dropout_backward(x, test_cache), x)
    same, _ = layers.dropout_forward(x, {"p": 0.8, "mode": "train", "seed": 0})
    np.testing.assert_array_equal(same, out)


def test_dropout_gradient_with_fixed_seed():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 6))
    copy = x.copy()
    param = {"p": 0.6, "mode": "train", "seed": 123}
    out, cache = layers.dropout_forward(x, param)
    dout = rng.standard_normal(out.shape)
    dx = layers.dropout_backward(dout, cache)
    assert_unchanged([x], [copy])
    assert_numeric_gradient(lambda x: layers.dropout_forward(x, param)[0], x, dout, dx)


def test_dropout_errors():
    with pytest.raises(ValueError, match=r"KEEP probability"):
        layers.dropout_forward(np.ones(3), {"p": 0.0, "mode": "train"})
    with pytest.raises(ValueError, match=r"'train' or 'test'"):
        layers.dropout_forward(np.ones(3), {"p": 0.5, "mode": "eval"})


def test_flatten_round_trip_and_errors():
    x = np.arange(24.0).reshape(2, 3, 4)
    out, cache = layers.flatten_forward(x)
    np.testing.assert_array_equal(out, [np.arange(12.0), np.arange(12.0, 24.0)])
    np.testing.assert_array_equal(layers.flatten_backward(out, cache), x)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 11\).*\(2, 12\)"):
        layers.flatten_backward(np.zeros((2, 11)), cache)


# ----------------------------------------------------------------------------- float32

def test_float32_in_float32_out():
    rng = np.random.default_rng(10)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    x, w, b = f32(2, 3, 6, 6), f32(4, 3, 3, 3), f32(4)
    results = []
    out, cache = layers.conv_forward(x, w)
    results += [out, *layers.conv_backward(out, cache)]
    out, cache = layers.conv2d_forward(x, w, b, stride=2, pad=1)
    results += [out, *layers.conv2d_backward(out, cache)]
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out, cache = layers.max_pool_forward(x, pool_param)
    results += [out, layers.max_pool_backward(out, cache)]
    out, cache = layers.relu_forward(x)
    results += [out, layers.relu_backward(out, cache)]
    out, cache = layers.fc_forward(x, f32(108, 5), f32(5))
    results += [out, *layers.fc_backward(out, cache)]
    out, cache = layers.dropout_forward(x, {"p": 0.5, "mode": "train", "seed": 1})
    results += [out, layers.dropout_backward(out, cache)]
    scores, y = f32(4, 5), np.array([0, 1, 2, 4])
    results += list(layers.softmax_loss(scores, y))
    out, cache = layers.log_softmax_forward(scores)
    results += [out, layers.log_softmax_backward(out, cache), *layers.nll_loss(out, y)]
    assert [np.asarray(r).dtype for r in results] == [np.float32] * len(results)


def test_fc_backward_without_dx_gives_the_same_parameter_gradients():
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((4, 3, 2)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    out, cache = layers.fc_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = layers.fc_backward(dout, cache)
    no_dx, dw_only, db_only = layers.fc_backward(dout, cache, need_dx=False)
    assert no_dx is None
    np.testing.assert_array_equal(dw_only, dw)
    np.testing.assert_array_equal(db_only, db)
