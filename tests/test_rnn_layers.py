"""Tests of rnn_layers.py: hand-computed forward values, numeric gradients (float64,
relative error < 1e-7), sequence functions against loops of the step functions, the
contract's cache tuples, inputs never mutated, float32 preserved, shape and index errors."""
import numpy as np
import pytest

import rnn_layers as rl
from gradient_check import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
)

TOLERANCE = 1e-7
LOG2, LOG3 = np.log(2.0), np.log(3.0)   # tanh(log 2) = 3/5, tanh(log(3) / 2) = 1/2
WORST = {}                              # worst relative error per function (for reports)


def assert_numeric_gradient(name, forward, x, dout, analytic):
    numeric = eval_numerical_gradient_array(forward, x, dout)
    error = rel_error(numeric, analytic)
    WORST[name] = max(WORST.get(name, 0.0), error)
    assert error < TOLERANCE, f"{name}: relative error {error:.1e}"


def assert_unchanged(arrays, copies):
    for array, copy in zip(arrays, copies):
        np.testing.assert_array_equal(array, copy)


def randn(rng, *shape, scale=1.0):
    return scale * rng.standard_normal(shape)


# ----------------------------------------------------------------------------- RNN step

def rnn_step_example():
    Wx, Wh = np.eye(2), np.array([[1.0, 0.0], [0.0, -1.0]])
    b = np.array([0.25, -0.25])
    prev_h = np.array([[0.5, 0.0], [0.0, 1.0]])
    # prev_h @ Wh + b = [[0.75, -0.25], [0.25, -1.25]]; x is chosen so that
    # h_raw = [[0, log(3)/2], [log 2, 0]] and next_h = tanh(h_raw) = [[0, 1/2], [3/5, 0]].
    x = np.array([[-0.75, LOG3 / 2 + 0.25], [LOG2 - 0.25, 1.25]])
    return x, prev_h, Wx, Wh, b


def test_rnn_step_forward_hand_computed_and_cache():
    x, prev_h, Wx, Wh, b = rnn_step_example()
    next_h, cache = rl.rnn_step_forward(x, prev_h, Wx, Wh, b)
    np.testing.assert_allclose(next_h, [[0.0, 0.5], [0.6, 0.0]], atol=1e-15)
    assert isinstance(cache, tuple) and len(cache) == 5
    assert cache[0] is Wx and cache[1] is Wh and cache[2] is x and cache[3] is prev_h
    np.testing.assert_allclose(cache[4], [[0.0, LOG3 / 2], [LOG2, 0.0]], atol=1e-15)


def test_rnn_step_backward_hand_computed():
    x, prev_h, Wx, Wh, b = rnn_step_example()
    _, cache = rl.rnn_step_forward(x, prev_h, Wx, Wh, b)
    dx, dprev_h, dWx, dWh, db = rl.rnn_step_backward(np.ones((2, 2)), cache)
    da = np.array([[1.0, 0.75], [0.64, 1.0]])   # 1 - next_h^2
    np.testing.assert_allclose(db, [1.64, 1.75])
    np.testing.assert_allclose(dx, da)                          # Wx = I
    np.testing.assert_allclose(dprev_h, da * [1.0, -1.0])       # Wh = diag(1, -1)
    np.testing.assert_allclose(dWx, x.T @ da)
    np.testing.assert_allclose(dWh, [[0.5, 0.375], [0.64, 1.0]])


@pytest.mark.parametrize("N, D, H", [(1, 1, 1), (1, 3, 2), (3, 4, 5), (2, 1, 3), (5, 3, 3)])
def test_rnn_step_gradients_and_no_mutation(N, D, H):
    rng = np.random.default_rng(N * 100 + D * 10 + H)
    args = [randn(rng, N, D), randn(rng, N, H, scale=0.5), randn(rng, D, H, scale=0.5),
            randn(rng, H, H, scale=0.5), randn(rng, H, scale=0.2)]
    copies = [a.copy() for a in args]
    next_h, cache = rl.rnn_step_forward(*args)
    dnext_h = randn(rng, N, H)
    dnext_h_copy = dnext_h.copy()
    grads = rl.rnn_step_backward(dnext_h, cache)
    assert_unchanged(args + [dnext_h], copies + [dnext_h_copy])
    for k, (name, grad) in enumerate(zip(("x", "prev_h", "Wx", "Wh", "b"), grads)):
        assert grad.shape == args[k].shape

        def forward(value, k=k):
            return rl.rnn_step_forward(*args[:k], value, *args[k + 1:])[0]
        assert_numeric_gradient("rnn_step_backward", forward, args[k], dnext_h, grad)


# ----------------------------------------------------------------------------- RNN sequence

def test_rnn_forward_hand_computed_time_major():
    # T=2, N=1, D=H=1; Wx = 1, Wh = 2, b = 0, h0 = 0:
    # h1 = tanh(log(3)/2) = 1/2, h2 = tanh(log 2 - 1 + 2 * 1/2) = 3/5.
    x = np.array([[[LOG3 / 2]], [[LOG2 - 1.0]]])
    h, _ = rl.rnn_forward(x, np.zeros((1, 1)), np.ones((1, 1)), np.full((1, 1), 2.0), np.zeros(1))
    np.testing.assert_allclose(h, [[[0.5]], [[0.6]]])
    # time-major: x (T=3, N=2, D=4) gives h (T, N, H); sample 1 is independent of sample 0
    rng = np.random.default_rng(0)
    x, h0 = randn(rng, 3, 2, 4), randn(rng, 2, 5)
    Wx, Wh, b = randn(rng, 4, 5), randn(rng, 5, 5, scale=0.3), randn(rng, 5)
    h, _ = rl.rnn_forward(x, h0, Wx, Wh, b)
    assert h.shape == (3, 2, 5)
    h_alone, _ = rl.rnn_forward(x[:, 1:], h0[1:], Wx, Wh, b)
    np.testing.assert_allclose(h[:, 1:], h_alone, rtol=1e-12)


def rnn_args(rng, T, N, D, H):
    return [randn(rng, T, N, D), randn(rng, N, H, scale=0.5), randn(rng, D, H, scale=0.5),
            randn(rng, H, H, scale=0.5), randn(rng, H, scale=0.2)]


SEQUENCE_SHAPES = [(1, 1, 1, 1), (1, 2, 3, 2), (3, 1, 2, 3), (4, 3, 5, 4), (5, 2, 3, 3)]


@pytest.mark.parametrize("T, N, D, H", SEQUENCE_SHAPES)
def test_rnn_sequence_equals_loop_of_steps(T, N, D, H):
    rng = np.random.default_rng(T * 1000 + N * 100 + D * 10 + H)
    x, h0, Wx, Wh, b = rnn_args(rng, T, N, D, H)
    h, cache = rl.rnn_forward(x, h0, Wx, Wh, b)
    prev_h, step_caches = h0, []
    for t in range(T):
        prev_h, step_cache = rl.rnn_step_forward(x[t], prev_h, Wx, Wh, b)
        step_caches.append(step_cache)
        np.testing.assert_allclose(h[t], prev_h, rtol=1e-12, atol=1e-14)
    dh = randn(rng, T, N, H)
    dx, dh0, dWx, dWh, db = rl.rnn_backward(dh, cache)
    dprev_h = np.zeros((N, H))
    totals = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
    for t in reversed(range(T)):
        dx_t, dprev_h, *weights = rl.rnn_step_backward(dh[t] + dprev_h, step_caches[t])
        np.testing.assert_allclose(dx[t], dx_t, rtol=1e-12, atol=1e-14)
        totals = [total + w for total, w in zip(totals, weights)]
    np.testing.assert_allclose(dh0, dprev_h, rtol=1e-12, atol=1e-14)
    for ours, looped in zip((dWx, dWh, db), totals):
        np.testing.assert_allclose(ours, looped, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("T, N, D, H", SEQUENCE_SHAPES)
def test_rnn_gradients_and_no_mutation(T, N, D, H):
    rng = np.random.default_rng(T * 1000 + N * 100 + D * 10 + H + 1)
    args = rnn_args(rng, T, N, D, H)
    copies = [a.copy() for a in args]
    h, cache = rl.rnn_forward(*args)
    dh = randn(rng, T, N, H)
    dh_copy = dh.copy()
    grads = rl.rnn_backward(dh, cache)
    assert_unchanged(args + [dh], copies + [dh_copy])
    for k, grad in enumerate(grads):
        assert grad.shape == args[k].shape

        def forward(value, k=k):
            return rl.rnn_forward(*args[:k], value, *args[k + 1:])[0]
        assert_numeric_gradient("rnn_backward", forward, args[k], dh, grad)


def test_rnn_shape_errors():
    x, h, Wx, Wh, b = np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((3, 4)), np.zeros((4, 4)), np.zeros(4)
    with pytest.raises(ValueError, match=r"Wx has shape \(5, 4\), expected .*\(3, 4\).*x \(2, 3\)"):
        rl.rnn_step_forward(x, h, np.zeros((5, 4)), Wh, b)
    with pytest.raises(ValueError, match=r"Wh has shape \(4, 3\), expected .*\(4, 4\)"):
        rl.rnn_step_forward(x, h, Wx, np.zeros((4, 3)), b)
    with pytest.raises(ValueError, match=r"b has shape \(3,\), expected \(4,\)"):
        rl.rnn_step_forward(x, h, Wx, Wh, np.zeros(3))
    with pytest.raises(ValueError, match=r"prev_h has shape \(3, 4\), expected \(2, H\).*x \(2, 3\)"):
        rl.rnn_step_forward(x, np.zeros((3, 4)), Wx, Wh, b)
    with pytest.raises(ValueError, match=r"x must be 3-D \(T, N, D\), got shape \(2, 3\)"):
        rl.rnn_forward(x, h, Wx, Wh, b)
    with pytest.raises(ValueError, match=r"h0 has shape \(3, 4\), expected \(2, H\)"):
        rl.rnn_forward(np.zeros((5, 2, 3)), np.zeros((3, 4)), Wx, Wh, b)
    _, cache = rl.rnn_step_forward(x, h, Wx, Wh, b)
    with pytest.raises(ValueError, match=r"dnext_h has shape \(2, 5\).*\(2, 4\)"):
        rl.rnn_step_backward(np.zeros((2, 5)), cache)
    _, cache = rl.rnn_forward(np.zeros((5, 2, 3)), h, Wx, Wh, b)
    with pytest.raises(ValueError, match=r"dh has shape \(2, 5, 4\).*\(5, 2, 4\)"):
        rl.rnn_backward(np.zeros((2, 5, 4)), cache)


# ----------------------------------------------------------------------------- LSTM step

def test_lstm_step_zero_weights_hand_computed():
    # a = 0: i = f = o = 1/2, g = 0, so next_c = prev_c / 2 and next_h = tanh(next_c) / 2.
    # prev_c = [log 3, 0, -2 log 3] gives tanh(next_c) = [1/2, 0, -4/5].
    N, D, H = 2, 3, 3
    prev_c = np.tile([LOG3, 0.0, -2 * LOG3], (N, 1))
    next_h, next_c, cache = rl.lstm_step_forward(
        np.ones((N, D)), np.ones((N, H)), prev_c, np.zeros((D, 4 * H)), np.zeros((H, 4 * H)),
        np.zeros(4 * H))
    np.testing.assert_allclose(next_c, np.tile([LOG3 / 2, 0.0, -LOG3], (N, 1)))
    np.testing.assert_allclose(next_h, np.tile([0.25, 0.0, -0.4], (N, 1)), atol=1e-15)
    gates = cache[6]
    np.testing.assert_allclose(gates, np.tile([0.5] * 9 + [0.0] * 3, (N, 1)))


def test_lstm_step_gate_order_hand_computed():
    # Zero weights, b = [log 3, -log 3, log 4, log 2] in the order i, f, o, g:
    # i = 3/4, f = 1/4, o = 4/5, g = tanh(log 2) = 3/5. With prev_c = 4 (log 2 - 0.45),
    # next_c = prev_c / 4 + 0.45 = log 2 and next_h = o tanh(log 2) = 0.48.
    b = np.array([LOG3, -LOG3, np.log(4.0), LOG2])
    prev_c = np.array([[4 * (LOG2 - 0.45)]])
    next_h, next_c, cache = rl.lstm_step_forward(
        np.ones((1, 2)), np.ones((1, 1)), prev_c, np.zeros((2, 4)), np.zeros((1, 4)), b)
    np.testing.assert_allclose(next_c, [[LOG2]])
    np.testing.assert_allclose(next_h, [[0.48]])
    np.testing.assert_allclose(cache[6], [[0.75, 0.25, 0.8, 0.6]])
    # backward with dnext_h = 1, dnext_c = 0: dc = o (1 - tanh^2) = 0.8 * 0.64 = 0.512
    # da = [dc g i(1-i), dc prev_c f(1-f), tanh(c) o(1-o), dc i (1-g^2)]
    dx, dprev_h, dprev_c, dWx, dWh, db = rl.lstm_step_backward(np.ones((1, 1)), np.zeros((1, 1)), cache)
    dc = 0.512
    expected = [dc * 0.6 * 0.1875, dc * prev_c[0, 0] * 0.1875, 0.6 * 0.16, dc * 0.75 * 0.64]
    np.testing.assert_allclose(db, expected)
    np.testing.assert_allclose(dprev_c, [[dc * 0.25]])
    np.testing.assert_allclose(dWx, np.ones((2, 1)) * expected)
    np.testing.assert_array_equal(dx, np.zeros((1, 2)))   # Wx = 0


def lstm_step_args(rng, N, D, H):
    return [randn(rng, N, D), randn(rng, N, H, scale=0.5), randn(rng, N, H, scale=0.5),
            randn(rng, D, 4 * H, scale=0.5), randn(rng, H, 4 * H, scale=0.5),
            randn(rng, 4 * H, scale=0.3)]


@pytest.mark.parametrize("N, D, H", [(1, 1, 1), (1, 3, 2), (3, 4, 5), (2, 1, 3), (4, 5, 3)])
def test_lstm_step_gradients_and_no_mutation(N, D, H):
    rng = np.random.default_rng(N * 100 + D * 10 + H + 2)
    args = lstm_step_args(rng, N, D, H)
    copies = [a.copy() for a in args]
    next_h, next_c, cache = rl.lstm_step_forward(*args)
    dnext_h, dnext_c = randn(rng, N, H), randn(rng, N, H)
    douts = [dnext_h.copy(), dnext_c.copy()]
    grads = rl.lstm_step_backward(dnext_h, dnext_c, cache)
    assert_unchanged(args + [dnext_h, dnext_c], copies + douts)
    # the gradient of sum(next_h * dnext_h + next_c * dnext_c): both outputs side by side
    dboth = np.concatenate([dnext_h, dnext_c], axis=1)
    for k, grad in enumerate(grads):
        assert grad.shape == args[k].shape

        def forward(value, k=k):
            out_h, out_c, _ = rl.lstm_step_forward(*args[:k], value, *args[k + 1:])
            return np.concatenate([out_h, out_c], axis=1)
        assert_numeric_gradient("lstm_step_backward", forward, args[k], dboth, grad)


def test_lstm_step_saturated_gates_are_finite():
    # pre-activations of +-1000: the sigmoid must not overflow, gradients stay finite
    b = np.array([1000.0, -1000.0, 1000.0, -1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        next_h, next_c, cache = rl.lstm_step_forward(
            np.ones((1, 1)), np.ones((1, 1)), np.ones((1, 1)), np.zeros((1, 4)), np.zeros((1, 4)), b)
        grads = rl.lstm_step_backward(np.ones((1, 1)), np.ones((1, 1)), cache)
    np.testing.assert_allclose(cache[6], [[1.0, 0.0, 1.0, -1.0]])
    np.testing.assert_allclose(next_c, [[-1.0]])
    assert all(np.all(np.isfinite(g)) for g in grads)


# ----------------------------------------------------------------------------- LSTM sequence

def test_lstm_forward_hand_computed_time_major():
    # Zero weights and b as in test_lstm_step_gate_order_hand_computed: every step has
    # i = 3/4, f = 1/4, o = 4/5, g = 3/5, so c[t] = c[t-1] / 4 + 0.45 from c0 = 0.
    b = np.array([LOG3, -LOG3, np.log(4.0), LOG2])
    h, cache = rl.lstm_forward(np.ones((3, 2, 1)), np.ones((2, 1)), np.zeros((1, 4)),
                               np.zeros((1, 4)), b)
    c = np.array([0.45, 0.5625, 0.590625])
    np.testing.assert_allclose(h, np.broadcast_to((0.8 * np.tanh(c))[:, None, None], (3, 2, 1)))
    np.testing.assert_allclose(cache[6], np.broadcast_to(c[:, None, None], (3, 2, 1)))


def lstm_args(rng, T, N, D, H):
    return [randn(rng, T, N, D), randn(rng, N, H, scale=0.5), randn(rng, D, 4 * H, scale=0.5),
            randn(rng, H, 4 * H, scale=0.5), randn(rng, 4 * H, scale=0.3)]


@pytest.mark.parametrize("T, N, D, H", SEQUENCE_SHAPES)
def test_lstm_sequence_equals_loop_of_steps(T, N, D, H):
    rng = np.random.default_rng(T * 1000 + N * 100 + D * 10 + H + 3)
    x, h0, Wx, Wh, b = lstm_args(rng, T, N, D, H)
    h, cache = rl.lstm_forward(x, h0, Wx, Wh, b)
    prev_h, prev_c, step_caches = h0, np.zeros((N, H)), []
    for t in range(T):
        prev_h, prev_c, step_cache = rl.lstm_step_forward(x[t], prev_h, prev_c, Wx, Wh, b)
        step_caches.append(step_cache)
        np.testing.assert_allclose(h[t], prev_h, rtol=1e-12, atol=1e-14)
    dh = randn(rng, T, N, H)
    dx, dh0, dWx, dWh, db = rl.lstm_backward(dh, cache)
    dprev_h, dprev_c = np.zeros((N, H)), np.zeros((N, H))
    totals = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
    for t in reversed(range(T)):
        dx_t, dprev_h, dprev_c, *weights = rl.lstm_step_backward(dh[t] + dprev_h, dprev_c,
                                                                  step_caches[t])
        np.testing.assert_allclose(dx[t], dx_t, rtol=1e-12, atol=1e-14)
        totals = [total + w for total, w in zip(totals, weights)]
    np.testing.assert_allclose(dh0, dprev_h, rtol=1e-12, atol=1e-14)
    for ours, looped in zip((dWx, dWh, db), totals):
        np.testing.assert_allclose(ours, looped, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("T, N, D, H", SEQUENCE_SHAPES)
def test_lstm_gradients_and_no_mutation(T, N, D, H):
    rng = np.random.default_rng(T * 1000 + N * 100 + D * 10 + H + 4)
    args = lstm_args(rng, T, N, D, H)
    copies = [a.copy() for a in args]
    h, cache = rl.lstm_forward(*args)
    dh = randn(rng, T, N, H)
    dh_copy = dh.copy()
    grads = rl.lstm_backward(dh, cache)
    assert_unchanged(args + [dh], copies + [dh_copy])
    for k, grad in enumerate(grads):
        assert grad.shape == args[k].shape

        def forward(value, k=k):
            return rl.lstm_forward(*args[:k], value, *args[k + 1:])[0]
        assert_numeric_gradient("lstm_backward", forward, args[k], dh, grad)


def test_lstm_shape_errors():
    x, h = np.zeros((2, 3)), np.zeros((2, 4))
    Wx, Wh, b = np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16)
    with pytest.raises(ValueError, match=r"Wx has shape \(3, 4\), expected \(D, 4H\) = \(3, 16\)"):
        rl.lstm_step_forward(x, h, h, np.zeros((3, 4)), Wh, b)
    with pytest.raises(ValueError, match=r"prev_c has shape \(2, 3\).*\(2, 4\)"):
        rl.lstm_step_forward(x, h, np.zeros((2, 3)), Wx, Wh, b)
    with pytest.raises(ValueError, match=r"b has shape \(4,\), expected \(16,\)"):
        rl.lstm_forward(np.zeros((1, 2, 3)), h, Wx, Wh, np.zeros(4))
    _, cache = rl.lstm_forward(np.zeros((5, 2, 3)), h, Wx, Wh, b)
    with pytest.raises(ValueError, match=r"dh has shape \(5, 2, 3\).*\(5, 2, 4\)"):
        rl.lstm_backward(np.zeros((5, 2, 3)), cache)
    _, _, cache = rl.lstm_step_forward(x, h, h, Wx, Wh, b)
    with pytest.raises(ValueError, match=r"dnext_c has shape \(1, 4\).*\(2, 4\)"):
        rl.lstm_step_backward(h, np.zeros((1, 4)), cache)


# ----------------------------------------------------------------------------- word embedding

def test_word_embedding_hand_computed_duplicates_accumulate():
    W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    x = np.array([[0, 2, 2], [3, 2, 0]])
    out, cache = rl.word_embedding_forward(x, W)
    np.testing.assert_array_equal(out, [[[1, 2], [5, 6], [5, 6]], [[7, 8], [5, 6], [1, 2]]])
    assert len(cache) == 2 and cache[0] is x and cache[1] is W
    dout = np.arange(12.0).reshape(2, 3, 2)
    dW = rl.word_embedding_backward(dout, cache)
    # word 2 at (0,1), (0,2), (1,1): [2+4+8, 3+5+9]; word 0 at (0,0), (1,2); word 1 unused
    np.testing.assert_array_equal(dW, [[0 + 10, 1 + 11], [0, 0], [14, 17], [6, 7]])


@pytest.mark.parametrize("N, T, V, D", [(1, 1, 3, 2), (2, 4, 3, 5), (3, 2, 6, 1), (4, 5, 2, 3)])
def test_word_embedding_gradient_and_no_mutation(N, T, V, D):
    rng = np.random.default_rng(N * 1000 + T * 100 + V * 10 + D)
    x, W = rng.integers(V, size=(N, T)), randn(rng, V, D)
    copies = [x.copy(), W.copy()]
    out, cache = rl.word_embedding_forward(x, W)
    assert out.shape == (N, T, D)
    dout = randn(rng, N, T, D)
    dout_copy = dout.copy()
    dW = rl.word_embedding_backward(dout, cache)
    assert_unchanged([x, W, dout], copies + [dout_copy])
    assert_numeric_gradient("word_embedding_backward",
                            lambda W: rl.word_embedding_forward(x, W)[0], W, dout, dW)


def test_word_embedding_one_step_of_words():
    # a sampling loop embeds one word per sample, x of shape (N,): out (N, D)
    W = np.arange(6.0).reshape(3, 2)
    out, cache = rl.word_embedding_forward(np.array([2, 0, 2]), W)
    np.testing.assert_array_equal(out, [[4, 5], [0, 1], [4, 5]])
    np.testing.assert_array_equal(rl.word_embedding_backward(np.ones((3, 2)), cache),
                                  [[1, 1], [0, 0], [2, 2]])


def test_word_embedding_errors():
    W = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"x has word indices in \[0, 3\], expected them in \[0, 3\)"):
        rl.word_embedding_forward(np.array([[0, 3]]), W)
    with pytest.raises(ValueError, match=r"x has word indices in \[-1, 1\]"):
        rl.word_embedding_forward(np.array([[1, -1]]), W)
    with pytest.raises(ValueError, match=r"x must hold integer word indices, got dtype float64"):
        rl.word_embedding_forward(np.array([[0.0, 1.0]]), W)
    with pytest.raises(ValueError, match=r"W must be 2-D \(V, D\)"):
        rl.word_embedding_forward(np.array([[0, 1]]), np.zeros(3))
    _, cache = rl.word_embedding_forward(np.array([[0, 1]]), W)
    with pytest.raises(ValueError, match=r"dout has shape \(1, 2, 3\).*\(1, 2, 2\)"):
        rl.word_embedding_backward(np.zeros((1, 2, 3)), cache)


# ----------------------------------------------------------------------------- temporal fc

def test_temporal_fc_hand_computed_and_cache():
    x = np.array([[[1.0, 2.0], [3.0, 4.0]], [[0.0, -1.0], [1.0, 1.0]]])   # N=2, T=2, D=2
    w = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]])
    b = np.array([0.0, 1.0, 0.0])
    out, cache = rl.temporal_fc_forward(x, w, b)
    np.testing.assert_array_equal(out, [[[1, 3, -1], [3, 5, -1]], [[0, 0, 1], [1, 2, 0]]])
    assert isinstance(cache, tuple) and len(cache) == 4
    assert cache[0] is x and cache[1] is w and cache[2] is b and cache[3] is out
    dx, dw, db = rl.temporal_fc_backward(np.ones((2, 2, 3)), cache)
    np.testing.assert_array_equal(db, [4, 4, 4])
    np.testing.assert_array_equal(dw, [[5, 5, 5], [6, 6, 6]])
    np.testing.assert_array_equal(dx, np.broadcast_to([2.0, 0.0], (2, 2, 2)))   # row sums of w


@pytest.mark.parametrize("N, T, D, M", [(1, 1, 1, 1), (1, 1, 2, 3), (2, 3, 4, 5), (3, 2, 1, 2)])
def test_temporal_fc_gradients_and_no_mutation(N, T, D, M):
    rng = np.random.default_rng(N * 1000 + T * 100 + D * 10 + M)
    args = [randn(rng, N, T, D), randn(rng, D, M), randn(rng, M)]
    copies = [a.copy() for a in args]
    out, cache = rl.temporal_fc_forward(*args)
    dout = randn(rng, N, T, M)
    dout_copy = dout.copy()
    grads = rl.temporal_fc_backward(dout, cache)
    assert_unchanged(args + [dout], copies + [dout_copy])
    for k, grad in enumerate(grads):
        def forward(value, k=k):
            return rl.temporal_fc_forward(*args[:k], value, *args[k + 1:])[0]
        assert_numeric_gradient("temporal_fc_backward", forward, args[k], dout, grad)


def test_temporal_fc_errors():
    with pytest.raises(ValueError, match=r"w has shape \(5, 6\), expected \(4, M\).*x \(2, 3, 4\)"):
        rl.temporal_fc_forward(np.zeros((2, 3, 4)), np.zeros((5, 6)), np.zeros(6))
    with pytest.raises(ValueError, match=r"b has shape \(5,\), expected \(6,\)"):
        rl.temporal_fc_forward(np.zeros((2, 3, 4)), np.zeros((4, 6)), np.zeros(5))
    with pytest.raises(ValueError, match=r"x must be 3-D \(N, T, D\)"):
        rl.temporal_fc_forward(np.zeros((3, 4)), np.zeros((4, 6)), np.zeros(6))
    _, cache = rl.temporal_fc_forward(np.zeros((2, 3, 4)), np.zeros((4, 6)), np.zeros(6))
    with pytest.raises(ValueError, match=r"dout has shape \(2, 3, 5\).*\(2, 3, 6\)"):
        rl.temporal_fc_backward(np.zeros((2, 3, 5)), cache)


# ----------------------------------------------------------------------------- temporal softmax loss

def test_temporal_softmax_loss_uniform_scores_with_mask():
    # equal scores over V=5: each of the 4 unmasked positions costs log 5; N=3
    y = np.array([[0, 1, 2], [3, 4, 0], [1, 1, 1]])
    mask = np.array([[True, True, False], [False, True, False], [True, False, False]])
    loss, dx = rl.temporal_softmax_loss(np.zeros((3, 3, 5)), y, mask)
    assert loss == pytest.approx(4 * np.log(5) / 3, rel=1e-14)
    expected = np.where(mask[:, :, None], (0.2 - np.eye(5)[y]) / 3, 0.0)
    np.testing.assert_allclose(dx, expected, atol=1e-16)


def test_temporal_softmax_loss_ignores_masked_positions():
    rng = np.random.default_rng(11)
    N, T, V = 3, 4, 6
    x, y = randn(rng, N, T, V), rng.integers(V, size=(N, T))
    mask = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1]], dtype=bool)
    loss, dx = rl.temporal_softmax_loss(x, y, mask)
    assert np.all(dx[~mask] == 0)
    changed, garbage_y = x.copy(), y.copy()
    changed[~mask] = 1e6 * randn(rng, int((~mask).sum()), V)
    garbage_y[~mask] = -1                          # padding labels are not used
    changed_loss, changed_dx = rl.temporal_softmax_loss(changed, garbage_y, mask)
    assert changed_loss == loss
    np.testing.assert_array_equal(changed_dx, dx)
    changed[0, 3] = np.nan
    changed[1, 1, 2] = np.inf
    with np.errstate(invalid="ignore"):
        nan_loss, nan_dx = rl.temporal_softmax_loss(changed, garbage_y, mask)
    assert nan_loss == loss
    np.testing.assert_array_equal(nan_dx, dx)
    # integer 0/1 mask behaves like the boolean one
    int_loss, int_dx = rl.temporal_softmax_loss(x, y, mask.astype(int))
    assert int_loss == loss
    np.testing.assert_array_equal(int_dx, dx)


def test_temporal_softmax_loss_is_stable_for_huge_scores():
    x = np.array([[[1000.0, 0.0], [0.0, -1000.0]]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dx = rl.temporal_softmax_loss(x, np.array([[1, 0]]), np.ones((1, 2), bool))
    assert loss == pytest.approx(1000.0) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("N, T, V", [(1, 1, 2), (2, 4, 5), (3, 2, 3), (5, 3, 7)])
def test_temporal_softmax_loss_gradient_and_no_mutation(N, T, V):
    rng = np.random.default_rng(N * 100 + T * 10 + V)
    x, y = randn(rng, N, T, V), rng.integers(V, size=(N, T))
    mask = rng.random((N, T)) < 0.7
    mask[0, 0] = True
    copies = [x.copy(), y.copy(), mask.copy()]
    loss, dx = rl.temporal_softmax_loss(x, y, mask)
    assert_unchanged([x, y, mask], copies)
    numeric = eval_numerical_gradient(lambda x: rl.temporal_softmax_loss(x, y, mask)[0], x,
                                      verbose=False)
    error = rel_error(numeric, dx)
    WORST["temporal_softmax_loss"] = max(WORST.get("temporal_softmax_loss", 0.0), error)
    assert error < TOLERANCE


def test_temporal_softmax_loss_errors():
    x, y, mask = np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=int), np.ones((2, 3), bool)
    with pytest.raises(ValueError, match=r"y has labels in \[4, 4\], expected them in \[0, 4\)"):
        rl.temporal_softmax_loss(x, y + 4, mask)
    with pytest.raises(ValueError, match=r"y has labels in \[-1, 0\]"):
        rl.temporal_softmax_loss(x, y - (np.arange(3) == 1), mask)
    with pytest.raises(ValueError, match=r"y must hold integer labels, got dtype float64"):
        rl.temporal_softmax_loss(x, y.astype(float), mask)
    with pytest.raises(ValueError, match=r"mask has shape \(2, 2\), expected \(2, 3\).*x \(2, 3, 4\)"):
        rl.temporal_softmax_loss(x, y, np.ones((2, 2), bool))
    with pytest.raises(ValueError, match=r"y has shape \(3, 2\), expected \(2, 3\)"):
        rl.temporal_softmax_loss(x, y.T, mask)
    with pytest.raises(ValueError, match=r"mask must be boolean"):
        rl.temporal_softmax_loss(x, y, np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match=r"x must be 3-D \(N, T, V\)"):
        rl.temporal_softmax_loss(np.zeros((2, 3)), y, mask)


# ----------------------------------------------------------------------------- attention

def test_attention_equal_scores_give_uniform_weights_and_mean_context():
    rng = np.random.default_rng(12)
    N, L, D, H, K = 3, 5, 4, 2, 3
    h, A = randn(rng, N, H), randn(rng, N, L, D)
    W_h, W_a = randn(rng, H, K), randn(rng, D, K)
    (context, alpha), _ = rl.attention_forward(h, A, W_h, W_a, np.zeros(K))   # v = 0: e = 0
    np.testing.assert_allclose(alpha, np.full((N, L), 1 / L))
    np.testing.assert_allclose(context, A.mean(axis=1), rtol=1e-14, atol=1e-15)


def test_attention_hand_computed():
    # K=1, W_h = 0, W_a = [1, 0]: z[n, i] = A[n, i, 0] = [0, log(3)/2], so tanh(z) = [0, 1/2];
    # v = 2 log 3 makes e = [0, log 3] and alpha = [1/4, 3/4].
    A = np.array([[[0.0, 4.0], [LOG3 / 2, 8.0]]])
    (context, alpha), cache = rl.attention_forward(
        np.ones((1, 2)), A, np.zeros((2, 1)), np.array([[1.0], [0.0]]), np.array([2 * LOG3]))
    np.testing.assert_allclose(alpha, [[0.25, 0.75]])
    np.testing.assert_allclose(context, [[0.75 * LOG3 / 2, 7.0]])
    # with a bias b = log(3)/2 the scores become [log 3, v tanh(log 3)] = [log 3, 1.6 log 3]
    (_, alpha_b), _ = rl.attention_forward(
        np.ones((1, 2)), A, np.zeros((2, 1)), np.array([[1.0], [0.0]]), np.array([2 * LOG3]),
        np.array([LOG3 / 2]))
    e = np.array([LOG3, 1.6 * LOG3])
    np.testing.assert_allclose(alpha_b, [np.exp(e) / np.exp(e).sum()])


def test_attention_is_stable_for_huge_scores():
    A = np.array([[[1.0], [-1.0], [0.5]]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        (context, alpha), cache = rl.attention_forward(
            np.zeros((1, 1)), A, np.zeros((1, 1)), np.ones((1, 1)), np.array([1e4]))
        grads = rl.attention_backward(np.ones((1, 1)), cache, dalpha=np.ones((1, 3)))
    np.testing.assert_allclose(alpha, [[1.0, 0.0, 0.0]], atol=1e-300)
    np.testing.assert_allclose(context, [[1.0]])
    assert all(g is None or np.all(np.isfinite(g)) for g in grads)


ATTENTION_SHAPES = [(1, 1, 1, 1, 1), (1, 3, 2, 2, 3), (3, 4, 5, 2, 3), (2, 7, 3, 4, 5)]


def attention_args(rng, N, L, D, H, K):
    return [randn(rng, N, H), randn(rng, N, L, D), randn(rng, H, K, scale=0.7),
            randn(rng, D, K, scale=0.7), randn(rng, K), randn(rng, K, scale=0.3)]


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("with_dalpha", [True, False])
@pytest.mark.parametrize("N, L, D, H, K", ATTENTION_SHAPES)
def test_attention_gradients_and_no_mutation(N, L, D, H, K, with_bias, with_dalpha):
    rng = np.random.default_rng(N * 10000 + L * 1000 + D * 100 + H * 10 + K)
    args = attention_args(rng, N, L, D, H, K)
    if not with_bias:
        args[5] = None
    copies = [None if a is None else a.copy() for a in args]
    (context, alpha), cache = rl.attention_forward(*args)
    assert context.shape == (N, D) and alpha.shape == (N, L)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0)
    dcontext = randn(rng, N, D)
    dalpha = randn(rng, N, L) if with_dalpha else None
    douts = [dcontext.copy(), None if dalpha is None else dalpha.copy()]
    grads = rl.attention_backward(dcontext, cache, dalpha=dalpha)
    assert len(grads) == 6
    if not with_bias:
        assert grads[5] is None
    assert_unchanged([a for a in args + [dcontext, dalpha] if a is not None],
                     [c for c in copies + douts if c is not None])
    # the numeric gradient of sum(context * dcontext + alpha * dalpha)
    dboth = np.concatenate([dcontext, np.zeros((N, L)) if dalpha is None else dalpha], axis=1)
    for k, grad in enumerate(grads):
        if args[k] is None:
            continue
        assert grad.shape == args[k].shape

        def forward(value, k=k):
            (c, a), _ = rl.attention_forward(*args[:k], value, *args[k + 1:])
            return np.concatenate([c, a], axis=1)
        assert_numeric_gradient("attention_backward", forward, args[k], dboth, grad)


@pytest.mark.parametrize("N, L, D, H, K", ATTENTION_SHAPES)
def test_attention_step_with_projection_equals_attention(N, L, D, H, K):
    """A decoder's way: project A once (temporal_fc), attention_step at each step, sum the
    step gradients, backpropagate the projection once. Two steps here, h1 and h2."""
    rng = np.random.default_rng(N * 10000 + L * 1000 + D * 100 + H * 10 + K + 5)
    h1, A, W_h, W_a, v, b = attention_args(rng, N, L, D, H, K)
    h2 = randn(rng, N, H)
    A_proj, fc_cache = rl.temporal_fc_forward(A, W_a, b)
    dA_total, dA_proj_total = np.zeros_like(A), np.zeros_like(A_proj)
    dW_h_total, dv_total = np.zeros_like(W_h), np.zeros_like(v)
    reference = [np.zeros_like(a) for a in (A, W_h, W_a, v, b)]
    for h in (h1, h2):
        (context, alpha), cache = rl.attention_step_forward(h, A, A_proj, W_h, v)
        (context_ref, alpha_ref), cache_ref = rl.attention_forward(h, A, W_h, W_a, v, b)
        np.testing.assert_allclose(context, context_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(alpha, alpha_ref, rtol=1e-12, atol=1e-14)
        dcontext, dalpha = randn(rng, N, D), randn(rng, N, L)
        dh, dA, dA_proj, dW_h, dv = rl.attention_step_backward(dcontext, cache, dalpha)
        dh_ref, *grads_ref = rl.attention_backward(dcontext, cache_ref, dalpha)
        np.testing.assert_allclose(dh, dh_ref, rtol=1e-12, atol=1e-14)
        dA_total += dA
        dA_proj_total += dA_proj
        dW_h_total += dW_h
        dv_total += dv
        reference = [r + g for r, g in zip(reference, grads_ref)]
    dA_fc, dW_a, db = rl.temporal_fc_backward(dA_proj_total, fc_cache)
    for ours, ref in zip((dA_total + dA_fc, dW_h_total, dW_a, dv_total, db), reference):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-13)


def test_attention_step_gradient_of_projection():
    rng = np.random.default_rng(13)
    h, A, W_h, W_a, v, _ = attention_args(rng, 2, 3, 4, 2, 3)
    A_proj = randn(rng, 2, 3, 3, scale=0.5)
    dcontext, dalpha = randn(rng, 2, 4), randn(rng, 2, 3)
    _, cache = rl.attention_step_forward(h, A, A_proj, W_h, v)
    _, dA, dA_proj, _, _ = rl.attention_step_backward(dcontext, cache, dalpha)
    dboth = np.concatenate([dcontext, dalpha], axis=1)

    def forward(A_proj):
        (c, a), _ = rl.attention_step_forward(h, A, A_proj, W_h, v)
        return np.concatenate([c, a], axis=1)
    assert_numeric_gradient("attention_step_backward", forward, A_proj, dboth, dA_proj)

    def forward_A(A):   # A only through the context: A_proj held fixed
        (c, a), _ = rl.attention_step_forward(h, A, A_proj, W_h, v)
        return np.concatenate([c, a], axis=1)
    assert_numeric_gradient("attention_step_backward", forward_A, A, dboth, dA)


def test_attention_errors():
    h, A, W_h, W_a, v = np.zeros((2, 3)), np.zeros((2, 5, 4)), np.zeros((3, 6)), np.zeros((4, 6)), np.zeros(6)
    with pytest.raises(ValueError, match=r"A has shape \(3, 5, 4\), expected \(2, L, D\).*h \(2, 3\)"):
        rl.attention_forward(h, np.zeros((3, 5, 4)), W_h, W_a, v)
    with pytest.raises(ValueError, match=r"W_h has shape \(2, 6\), expected \(3, K\)"):
        rl.attention_forward(h, A, np.zeros((2, 6)), W_a, v)
    with pytest.raises(ValueError, match=r"W_a has shape \(5, 6\), expected \(4, 6\)"):
        rl.attention_forward(h, A, W_h, np.zeros((5, 6)), v)
    with pytest.raises(ValueError, match=r"v has shape \(5,\), expected \(6,\)"):
        rl.attention_forward(h, A, W_h, W_a, np.zeros(5))
    with pytest.raises(ValueError, match=r"b has shape \(5,\), expected \(6,\)"):
        rl.attention_forward(h, A, W_h, W_a, v, np.zeros(5))
    with pytest.raises(ValueError, match=r"A must be 3-D \(N, L, D\)"):
        rl.attention_forward(h, np.zeros((2, 4)), W_h, W_a, v)
    with pytest.raises(ValueError, match=r"A_proj has shape \(2, 5, 4\), expected \(2, 5, 6\)"):
        rl.attention_step_forward(h, A, np.zeros((2, 5, 4)), W_h, v)
    _, cache = rl.attention_forward(h, A, W_h, W_a, v)
    with pytest.raises(ValueError, match=r"dcontext has shape \(2, 3\).*\(2, 4\)"):
        rl.attention_backward(np.zeros((2, 3)), cache)
    with pytest.raises(ValueError, match=r"dalpha has shape \(2, 4\).*\(2, 5\)"):
        rl.attention_backward(np.zeros((2, 4)), cache, dalpha=np.zeros((2, 4)))


# ----------------------------------------------------------------------------- float32

def test_float32_in_float32_out():
    rng = np.random.default_rng(14)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    T, N, D, H, V, L, K = 3, 2, 4, 5, 6, 7, 3
    results = []
    next_h, cache = rl.rnn_step_forward(f32(N, D), f32(N, H), f32(D, H), f32(H, H), f32(H))
    results += [next_h, *cache[4:], *rl.rnn_step_backward(f32(N, H), cache)]
    h, cache = rl.rnn_forward(f32(T, N, D), f32(N, H), f32(D, H), f32(H, H), f32(H))
    results += [h, *rl.rnn_backward(f32(T, N, H), cache)]
    next_h, next_c, cache = rl.lstm_step_forward(f32(N, D), f32(N, H), f32(N, H), f32(D, 4 * H),
                                                 f32(H, 4 * H), f32(4 * H))
    results += [next_h, next_c, *rl.lstm_step_backward(f32(N, H), f32(N, H), cache)]
    h, cache = rl.lstm_forward(f32(T, N, D), f32(N, H), f32(D, 4 * H), f32(H, 4 * H), f32(4 * H))
    results += [h, *cache[5:], *rl.lstm_backward(f32(T, N, H), cache)]
    out, cache = rl.word_embedding_forward(rng.integers(V, size=(N, T)).astype(np.int32), f32(V, D))
    results += [out, rl.word_embedding_backward(f32(N, T, D), cache)]
    out, cache = rl.temporal_fc_forward(f32(N, T, D), f32(D, V), f32(V))
    results += [out, *rl.temporal_fc_backward(f32(N, T, V), cache)]
    results += list(rl.temporal_softmax_loss(f32(N, T, V), rng.integers(V, size=(N, T)),
                                             rng.random((N, T)) < 0.5))
    (context, alpha), cache = rl.attention_forward(f32(N, H), f32(N, L, D), f32(H, K), f32(D, K),
                                                   f32(K), f32(K))
    results += [context, alpha, *rl.attention_backward(f32(N, D), cache, f32(N, L))]
    (context, alpha), cache = rl.attention_step_forward(f32(N, H), f32(N, L, D), f32(N, L, K),
                                                        f32(H, K), f32(K))
    results += [context, alpha, *rl.attention_step_backward(f32(N, D), cache)]
    dtypes = [np.asarray(r).dtype for r in results]
    assert dtypes == [np.float32] * len(results), dtypes
