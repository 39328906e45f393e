"""Bad input anywhere in the layer API (layers.py, kernels.py, rnn_layers.py): lists,
integer, bool and float16 arrays give the right answer by the documented promotion;
complex, object and string arrays raise TypeError naming the argument; an empty batch
(N = 0) works forward and backward; losses refuse NaN scores and give 0 for N = 0."""
import numpy as np
import pytest

import kernels
import layers
import rnn_layers

rng = np.random.default_rng(0)
POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}


def randn(*shape):
    return rng.standard_normal(shape)


# (name, forward, inputs by name, backward taking (dout, cache) -> gradients)
def cases(N):
    return [
        ("fc", layers.fc_forward, dict(x=randn(N, 2, 3), w=randn(6, 4), b=randn(4)),
         layers.fc_backward),
        ("relu", layers.relu_forward, dict(x=randn(N, 5)), layers.relu_backward),
        ("conv", layers.conv_forward, dict(x=randn(N, 2, 5, 5), w=randn(3, 2, 3, 3)),
         layers.conv_backward),
        ("conv2d", lambda x, w, b: layers.conv2d_forward(x, w, b, 2, 1),
         dict(x=randn(N, 2, 5, 5), w=randn(3, 2, 3, 3), b=randn(3)), layers.conv2d_backward),
        ("fast conv2d", lambda x, w, b: kernels.conv2d_forward(x, w, b, 2, 1),
         dict(x=randn(N, 2, 5, 5), w=randn(3, 2, 3, 3), b=randn(3)), kernels.conv2d_backward),
        ("max pool", lambda x: layers.max_pool_forward(x, POOL), dict(x=randn(N, 2, 4, 4)),
         layers.max_pool_backward),
        ("fast max pool", lambda x: kernels.max_pool_forward(x, POOL, keep_choices=True),
         dict(x=randn(N, 2, 4, 4)), kernels.max_pool_backward),
        ("log softmax", layers.log_softmax_forward, dict(x=randn(N, 4)),
         layers.log_softmax_backward),
        ("dropout", lambda x: layers.dropout_forward(x, {"p": 0.5, "mode": "train", "seed": 0}),
         dict(x=randn(N, 6)), layers.dropout_backward),
        ("flatten", layers.flatten_forward, dict(x=randn(N, 2, 3)), layers.flatten_backward),
        ("rnn", rnn_layers.rnn_forward,
         dict(x=randn(3, N, 2), h0=randn(N, 4), Wx=randn(2, 4), Wh=randn(4, 4), b=randn(4)),
         rnn_layers.rnn_backward),
        ("lstm", rnn_layers.lstm_forward,
         dict(x=randn(3, N, 2), h0=randn(N, 4), Wx=randn(2, 16), Wh=randn(4, 16), b=randn(16)),
         rnn_layers.lstm_backward),
        ("temporal fc", rnn_layers.temporal_fc_forward,
         dict(x=randn(N, 3, 2), w=randn(2, 5), b=randn(5)), rnn_layers.temporal_fc_backward),
        ("attention", rnn_layers.attention_forward,
         dict(h=randn(N, 4), A=randn(N, 6, 3), W_h=randn(4, 5), W_a=randn(3, 5), v=randn(5)),
         lambda dout, cache: rnn_layers.attention_backward(dout, cache)),
    ]


def unpack(result):
    out, cache = result[0], result[-1]
    return (out[0] if isinstance(out, tuple) else out), cache   # attention: (context, alpha)


def run(forward, inputs, backward):
    out, cache = unpack(forward(**inputs))
    grads = backward(np.ones(out.shape, out.dtype), cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return out, [g for g in grads if g is not None]


NAMES = [case[0] for case in cases(2)]


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_lists_and_integers_give_the_float64_answer(index):
    name, forward, inputs, backward = cases(2)[index]
    integers = {k: np.round(3 * v).astype(np.int64) for k, v in inputs.items()}
    floats = {k: v.astype(np.float64) for k, v in integers.items()}
    expected_out, expected_grads = run(forward, floats, backward)
    for converted in (integers, {k: v.tolist() for k, v in integers.items()},
                      {k: v.astype(np.int8) for k, v in integers.items()}):
        out, grads = run(forward, converted, backward)
        assert out.dtype == np.float64 and all(g.dtype == np.float64 for g in grads), name
        np.testing.assert_allclose(out, expected_out)
        for grad, expected in zip(grads, expected_grads):
            np.testing.assert_allclose(grad, expected)
    booleans = {k: v > 0 for k, v in integers.items()}
    out, _ = run(forward, booleans, backward)
    np.testing.assert_allclose(out, run(forward, {k: v.astype(float) for k, v in booleans.items()},
                                        backward)[0])


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_complex_object_and_string_arrays_raise_type_error_naming_the_argument(index):
    name, forward, inputs, backward = cases(2)[index]
    for argument in inputs:
        for bad in (inputs[argument].astype(complex), inputs[argument].astype(object),
                    np.full(inputs[argument].shape, "x")):
            with pytest.raises(TypeError, match=rf"^{argument} must hold real numbers"):
                forward(**{**inputs, argument: bad})


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_float16_inputs_with_float32_weights_promote(index):
    name, forward, inputs, backward = cases(2)[index]
    first, *rest = inputs
    mixed = {k: v.astype(np.float16 if k == first else np.float32) for k, v in inputs.items()}
    out, grads = run(forward, mixed, backward)
    expected = np.float16 if not rest else np.float32
    assert out.dtype == expected, name
    assert all(np.isfinite(g).all() for g in grads), name


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_empty_batch_works_forward_and_backward(index):
    name, forward, inputs, backward = cases(0)[index]
    out, grads = run(forward, inputs, backward)
    assert 0 in out.shape
    for grad, (key, value) in zip(grads, inputs.items()):
        assert np.isfinite(grad).all()
    assert all(not np.any(g) for g in grads), name   # no samples: zero gradients


def test_losses_of_an_empty_batch_are_zero():
    for loss_function in (layers.softmax_loss, layers.nll_loss):
        loss, dx = loss_function(np.zeros((0, 4)), np.zeros(0, dtype=np.int64))
        assert loss == 0 and dx.shape == (0, 4)
    loss, dx = rnn_layers.temporal_softmax_loss(np.zeros((0, 3, 4)), np.zeros((0, 3), int),
                                                np.ones((0, 3), bool))
    assert loss == 0 and dx.shape == (0, 3, 4)


def test_nan_scores_are_refused_by_the_losses():
    scores = np.zeros((3, 4))
    scores[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"x holds NaN at \[1, 2\]"):
        layers.softmax_loss(scores, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"log_probs holds NaN at \[1, 2\]"):
        layers.nll_loss(scores, np.array([0, 1, 2]))


def test_nll_loss_of_integer_log_probabilities_keeps_the_gradient():
    """Integer log-probabilities (e.g. 0 for a certain class) must not truncate -1/N to 0."""
    loss, dlog_probs = layers.nll_loss(np.array([[0, -3], [-2, 0]]), np.array([1, 0]))
    assert loss == 2.5
    np.testing.assert_array_equal(dlog_probs, [[0, -0.5], [-0.5, 0]])


def test_ragged_lists_name_the_argument():
    with pytest.raises(ValueError, match="x is not a rectangular array"):
        layers.relu_forward([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="W is not a rectangular array"):
        rnn_layers.word_embedding_forward(np.array([[0]]), [[1.0, 2.0], [3.0]])
