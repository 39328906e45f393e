"""
Graded tests of rnn_layers.py: vanilla RNN (time-major), word embedding, temporal affine
layer and masked temporal softmax loss (Part 1 of API.md), LSTM and additive attention
(Part 2). Hand-worked examples, loop references on random shapes (grader/references.py)
and the standard checks of each pair (grader/checks.py).
"""
import numpy as np

from grader import references as ref
from grader.checks import (
    away_from_zero,
    expect_close,
    expect_value_error,
    fail,
    graded,
    layer,
    pair,
    positive,
    randn,
    require_right_values,
    rng,
)

MODULE = 'rnn_layers'


def returned(name, result, count):
    """Check that `name` returned a tuple of `count` values."""
    if not (isinstance(result, tuple) and len(result) == count):
        fail(f"{name} must return a tuple of {count} values")
    return result


# ---- vanilla RNN --------------------------------------------------------------------

@graded(MODULE, points=2)
def rnn_step_forward_values(rnn_step_forward):
    # x Wx = [0, 1], prev_h Wh = [-2, 1], so h_raw = [0, log(3) / 2] and tanh(h_raw) = [0, 1/2].
    x, prev_h = np.array([[1., 2., -1.]]), np.array([[1., -1.]])
    Wx = np.array([[1., 0.], [0., 1.], [1., 1.]])
    Wh = np.array([[0., 1.], [2., 0.]])
    b = np.array([2., -2. + np.log(3) / 2])
    next_h, _ = pair('rnn_step_forward', rnn_step_forward(x, prev_h, Wx, Wh, b))
    expect_close("rnn_step_forward next_h", next_h, [[0., 0.5]])


def rnn_step_cases(rng):
    return [(f"N={N} D={D} H={H}",
             dict(x=positive(rng, N, D), prev_h=positive(rng, N, H) / 2,
                  Wx=positive(rng, D, H) / (2 * D), Wh=positive(rng, H, H) / (2 * H),
                  b=positive(rng, H) / 4))
            for N, D, H in [(1, 3, 2), (3, 4, 5), (2, 1, 3)]]


@graded(MODULE)
def rnn_step_bad_shapes(rnn_step_forward):
    require_right_values('rnn_step', rnn_step_forward)
    x, h = np.zeros((2, 3)), np.zeros((2, 4))
    expect_value_error("rnn_step_forward with x (2, 3), Wx (5, 4)",
                       lambda: rnn_step_forward(x, h, np.zeros((5, 4)), np.zeros((4, 4)),
                                                np.zeros(4)), 'Wx', 'x')


layer(MODULE, 'rnn_step_forward', 'rnn_step_backward', rnn_step_cases, ref.rnn_step,
      wrt=('x', 'prev_h', 'Wx', 'Wh', 'b'),
      cache=lambda a, out: dict(Wx=a['Wx'], Wh=a['Wh'], x=a['x'], prev_h=a['prev_h'],
                                h_raw=a['x'] @ a['Wx'] + a['prev_h'] @ a['Wh'] + a['b']))


@graded(MODULE, points=2)
def rnn_forward_values(rnn_forward):
    # Time-major x (T=2, N=1, D=1), Wx = Wh = 1, b = 0, h0 = 0:
    # h1 = tanh(log(3)/2) = 1/2, h2 = tanh(log(3)/2 - 1/2 + h1) = 1/2.
    x = np.array([[[np.log(3) / 2]], [[np.log(3) / 2 - 0.5]]])
    h, _ = pair('rnn_forward', rnn_forward(x, np.zeros((1, 1)), np.ones((1, 1)), np.ones((1, 1)),
                                           np.zeros(1)))
    expect_close("rnn_forward h [T=2 N=1 D=1 H=1]", h, [[[0.5]], [[0.5]]])
    # T=3, N=2: (T, N, H) out, each step the reference step
    generator = rng('rnn_forward_values')
    args = (randn(generator, 3, 2, 4), np.zeros((2, 5)), randn(generator, 4, 5) / 2,
            randn(generator, 5, 5) / 2, np.zeros(5))
    h, _ = pair('rnn_forward', rnn_forward(*args))
    if np.shape(h) != (3, 2, 5):
        fail(f"rnn_forward h [T=3 N=2 D=4 H=5]: shape {np.shape(h)}, expected (3, 2, 5) (T, N, H)")
    expect_close("rnn_forward h [T=3 N=2 D=4 H=5]", h, ref.rnn(*args))


@graded(MODULE)
def rnn_bad_shapes(rnn_forward):
    require_right_values('rnn', rnn_forward)
    Wx, Wh, b = np.zeros((4, 5)), np.zeros((5, 5)), np.zeros(5)
    expect_value_error("rnn_forward with h0 (3, 5) for N=2",
                       lambda: rnn_forward(np.zeros((3, 2, 4)), np.zeros((3, 5)), Wx, Wh, b),
                       'h0', 'x')
    expect_value_error("rnn_forward with x (2, 4) (expected (T, N, D))",
                       lambda: rnn_forward(np.zeros((2, 4)), np.zeros((2, 5)), Wx, Wh, b), 'x')


def rnn_cases(rng):
    return [(f"T={T} N={N} D={D} H={H}",
             dict(x=positive(rng, T, N, D), h0=positive(rng, N, H) / 2,
                  Wx=positive(rng, D, H) / (2 * D), Wh=positive(rng, H, H) / (2 * H),
                  b=positive(rng, H) / 4))
            for T, N, D, H in [(1, 1, 2, 3), (3, 2, 4, 5), (4, 3, 2, 2)]]


layer(MODULE, 'rnn_forward', 'rnn_backward', rnn_cases, ref.rnn, wrt=('x', 'h0', 'Wx', 'Wh', 'b'))


# ---- word embedding, temporal affine, temporal softmax loss --------------------------

@graded(MODULE, points=2)
def word_embedding_values(word_embedding_forward, word_embedding_backward):
    # Word 2 appears twice: its rows of dW accumulate both gradients.
    W = np.array([[1., 2.], [3., 4.], [5., 6.]])
    out, cache = pair('word_embedding_forward', word_embedding_forward(np.array([[0, 2], [2, 1]]), W))
    expect_close("word_embedding_forward out", out, [[[1., 2.], [5., 6.]], [[5., 6.], [3., 4.]]])
    dW = word_embedding_backward(np.ones((2, 2, 2)), cache)
    expect_close("word_embedding_backward dW", dW, [[1., 1.], [1., 1.], [2., 2.]])


@graded(MODULE)
def word_embedding_bad_indices(word_embedding_forward):
    require_right_values('word_embedding', word_embedding_forward)
    expect_value_error("word_embedding_forward with index 3 for V=3",
                       lambda: word_embedding_forward(np.array([[0, 3]]), np.zeros((3, 2))), 'x')


def word_embedding_cases(rng):
    return [(f"N={N} T={T} V={V} D={D}", dict(x=rng.integers(V, size=(N, T)), W=randn(rng, V, D)))
            for N, T, V, D in [(1, 1, 3, 2), (2, 4, 3, 5), (3, 2, 6, 1)]]


layer(MODULE, 'word_embedding_forward', 'word_embedding_backward', word_embedding_cases,
      ref.word_embedding, wrt=('W',), cache=lambda a, out: dict(x=a['x'], W=a['W']))


@graded(MODULE)
def temporal_fc_values(temporal_fc_forward):
    x = np.array([[[1., 2.], [3., 4.]]])   # N=1, T=2, D=2
    w = np.array([[1., 0., 1.], [0., 1., -1.]])
    out, _ = pair('temporal_fc_forward', temporal_fc_forward(x, w, np.array([0., 1., 0.])))
    expect_close("temporal_fc_forward out", out, [[[1., 3., -1.], [3., 5., -1.]]])


@graded(MODULE)
def temporal_fc_bad_shapes(temporal_fc_forward):
    require_right_values('temporal_fc', temporal_fc_forward)
    expect_value_error("temporal_fc_forward with x (2, 3, 4), w (5, 6)",
                       lambda: temporal_fc_forward(np.zeros((2, 3, 4)), np.zeros((5, 6)),
                                                   np.zeros(6)), 'w', 'x')


def temporal_fc_cases(rng):
    return [(f"N={N} T={T} D={D} M={M}",
             dict(x=positive(rng, N, T, D), w=positive(rng, D, M), b=positive(rng, M)))
            for N, T, D, M in [(1, 1, 2, 3), (2, 3, 4, 5), (3, 2, 1, 2)]]


layer(MODULE, 'temporal_fc_forward', 'temporal_fc_backward', temporal_fc_cases, ref.temporal_fc,
      wrt=('x', 'w', 'b'), cache=lambda a, out: dict(x=a['x'], w=a['w'], b=a['b'], out=out))


@graded(MODULE, points=2)
def temporal_softmax_loss_values(temporal_softmax_loss):
    # Equal scores over V=4 words; 3 unmasked positions, N=2: loss = 3 log(4) / 2,
    # dx = (1/4 - onehot(y)) / N where the mask is on, 0 elsewhere.
    y = np.array([[0, 1, 2], [3, 0, 1]])
    mask = np.array([[True, True, False], [True, False, False]])
    loss, dx = pair('temporal_softmax_loss', temporal_softmax_loss(np.zeros((2, 3, 4)), y, mask))
    expect_close("temporal_softmax_loss loss", loss, 1.5 * np.log(4))
    expect_close("temporal_softmax_loss dx", dx,
                 np.where(mask[:, :, None], (0.25 - np.eye(4)[y]) / 2, 0.))
    # The same equal scores at +1000 (first caption) and -1000 (second): the same loss and
    # dx, unless exp overflows (no max subtracted) or underflows to 0 / 0.
    large = np.zeros((2, 3, 4)) + np.array([1000., -1000.])[:, None, None]
    loss, dx = pair('temporal_softmax_loss', temporal_softmax_loss(large, y, mask))
    expect_close("temporal_softmax_loss loss [scores +-1000]", loss, 1.5 * np.log(4))
    expect_close("temporal_softmax_loss dx [scores +-1000]", dx,
                 np.where(mask[:, :, None], (0.25 - np.eye(4)[y]) / 2, 0.))


@graded(MODULE)
def temporal_softmax_loss_bad_inputs(temporal_softmax_loss):
    require_right_values('temporal_softmax_loss', temporal_softmax_loss)
    x, y = np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=int)
    expect_value_error("temporal_softmax_loss with a label 4 for V=4",
                       lambda: temporal_softmax_loss(x, y + 4, np.ones((2, 3), bool)), 'y')
    expect_value_error("temporal_softmax_loss with mask (2, 2) for N=2 T=3",
                       lambda: temporal_softmax_loss(x, y, np.ones((2, 2), bool)), 'mask')


def temporal_softmax_cases(rng):
    return [(f"N={N} T={T} V={V}", dict(x=randn(rng, N, T, V) / 2, y=rng.integers(V, size=(N, T)),
                                        mask=np.arange(N * T).reshape(N, T) % 3 != 2))
            for N, T, V in [(1, 1, 2), (2, 4, 5), (3, 2, 3)]]


layer(MODULE, 'temporal_softmax_loss', None, temporal_softmax_cases, ref.temporal_softmax_loss,
      wrt=('x',))


# ---- LSTM (Part 2; signatures as in rnn_layers.py, the cs231n ones, time-major) ------

@graded(MODULE, points=2)
def lstm_step_forward_values(lstm_step_forward):
    # Zero weights, so a = b: i = sigmoid(0) = 1/2, f = o = sigmoid(log 3) = 3/4,
    # g = tanh(log(3)/2) = 1/2. With prev_c = (2 log(3) - 1)/3: next_c = 3/4 prev_c + 1/4
    # = log(3)/2 and next_h = 3/4 tanh(log(3)/2) = 3/8.
    b = np.array([0., np.log(3), np.log(3), np.log(3) / 2])
    next_h, next_c, _ = returned('lstm_step_forward', lstm_step_forward(
        np.ones((1, 1)), np.zeros((1, 1)), np.array([[(2 * np.log(3) - 1) / 3]]),
        np.zeros((1, 4)), np.zeros((1, 4)), b), 3)
    expect_close("lstm_step_forward next_c", next_c, [[np.log(3) / 2]])
    expect_close("lstm_step_forward next_h", next_h, [[3 / 8]])


def lstm_step_cases(rng, draw=positive):
    return [(f"N={N} D={D} H={H}",
             dict(x=draw(rng, N, D), prev_h=draw(rng, N, H) / 2, prev_c=draw(rng, N, H) / 2,
                  Wx=draw(rng, D, 4 * H) / (2 * D), Wh=draw(rng, H, 4 * H) / (2 * H),
                  b=draw(rng, 4 * H) / 4))
            for N, D, H in [(1, 3, 2), (3, 4, 5), (2, 1, 3)]]


@graded(MODULE, points=2)
def lstm_step_forward_reference(lstm_step_forward):
    for label, a in lstm_step_cases(rng('lstm_step_forward_reference'), randn):
        next_h, next_c, _ = returned('lstm_step_forward', lstm_step_forward(*a.values()), 3)
        expected_h, expected_c = ref.lstm_step(*a.values())
        expect_close(f"lstm_step_forward next_h [{label}]", next_h, expected_h)
        expect_close(f"lstm_step_forward next_c [{label}]", next_c, expected_c)


def lstm_step_as_pair(forward, backward):
    """lstm_step in the standard form: out = (next_h, next_c), dout = (dnext_h, dnext_c)."""
    def pair_forward(*args):
        next_h, next_c, cache = returned('lstm_step_forward', forward(*args), 3)
        return (next_h, next_c), cache
    return pair_forward, lambda dout, cache: backward(*dout, cache)


@graded(MODULE)
def lstm_step_bad_shapes(lstm_step_forward):
    require_right_values('lstm_step', lstm_step_forward)
    x, h = np.zeros((2, 3)), np.zeros((2, 4))
    Wx, Wh, b = np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16)
    expect_value_error("lstm_step_forward with prev_h (2, 4), prev_c (2, 5)",
                       lambda: lstm_step_forward(x, h, np.zeros((2, 5)), Wx, Wh, b), 'prev_c')
    expect_value_error("lstm_step_forward with H=4 and Wx (3, 12)",
                       lambda: lstm_step_forward(x, h, h, np.zeros((3, 12)), Wh, b), 'Wx')


layer(MODULE, 'lstm_step_forward', 'lstm_step_backward', lstm_step_cases, ref.lstm_step,
      wrt=('x', 'prev_h', 'prev_c', 'Wx', 'Wh', 'b'), adapt=lstm_step_as_pair)


def lstm_cases(rng, draw=positive):
    return [(f"T={T} N={N} D={D} H={H}",
             dict(x=draw(rng, T, N, D), h0=draw(rng, N, H) / 2, Wx=draw(rng, D, 4 * H) / (2 * D),
                  Wh=draw(rng, H, 4 * H) / (2 * H), b=draw(rng, 4 * H) / 4))
            for T, N, D, H in [(1, 1, 2, 3), (3, 2, 4, 5), (4, 3, 2, 2)]]


@graded(MODULE, points=2)
def lstm_forward_reference(lstm_forward):
    # Time-major x (T, N, D); h[t] = the step on x[t], from (h0, c0 = 0).
    for label, a in lstm_cases(rng('lstm_forward_reference'), randn):
        h, _ = pair('lstm_forward', lstm_forward(*a.values()))
        expect_close(f"lstm_forward h [{label}]", h, ref.lstm(*a.values()))


layer(MODULE, 'lstm_forward', 'lstm_backward', lstm_cases, ref.lstm,
      wrt=('x', 'h0', 'Wx', 'Wh', 'b'))


# ---- additive (Bahdanau) attention (Part 2; signatures as in rnn_layers.py) -----------

@graded(MODULE)
def attention_values(attention_forward):
    # v = 0: every position scores 0, so alpha is uniform and context is the mean of A.
    A = np.array([[[1., 2.], [3., 6.]]])
    result, _ = pair('attention_forward', attention_forward(np.ones((1, 1)), A, np.array([[1., -1.]]),
                                                            np.eye(2), np.zeros(2)))
    context, alpha = pair('attention_forward', result)
    expect_close("attention_forward alpha [v=0]", alpha, [[0.5, 0.5]])
    expect_close("attention_forward context [v=0]", context, [[2., 4.]])


ATTENTION_SHAPES = [(1, 3, 2, 1, 2, True), (2, 4, 3, 2, 5, False),
                    (3, 2, 2, 4, 3, True)]   # N, L, D, H, K, bias


def attention_cases(rng):
    # Each column k of dA_proj is proportional to v[k]: keep v's entries away from 0.
    return [(f"N={N} L={L} D={D} H={H} K={K}{'' if bias else ' b=None'}",
             dict(h=randn(rng, N, H), A=randn(rng, N, L, D), W_h=randn(rng, H, K) / np.sqrt(H),
                  W_a=randn(rng, D, K) / np.sqrt(D), v=away_from_zero(rng, K) / np.sqrt(K),
                  b=randn(rng, K) if bias else None))
            for N, L, D, H, K, bias in ATTENTION_SHAPES]


def attention_as_pair(forward, backward):
    """attention in the standard form: dout = (dcontext, dalpha) -> backward(dcontext, cache, dalpha)."""
    def pair_forward(*args):
        result, cache = pair('attention forward', forward(*args))
        return tuple(pair('attention forward (context, alpha)', result)), cache
    return pair_forward, lambda dout, cache: backward(dout[0], cache, dout[1])


def expect_attention_like_reference(name, forward, cases, reference):
    """((context, alpha), cache) = forward(*case) against the reference on every case."""
    for label, a in cases:
        result, _ = pair(name, forward(*a.values()))
        context, alpha = pair(name, result)
        expected_context, expected_alpha = reference(*a.values())
        expect_close(f"{name} alpha [{label}]", alpha, expected_alpha)
        expect_close(f"{name} context [{label}]", context, expected_context)


@graded(MODULE, points=2)
def attention_forward_reference(attention_forward):
    expect_attention_like_reference('attention_forward', attention_forward,
                                    attention_cases(rng('attention_forward_reference')), ref.attention)


@graded(MODULE)
def attention_bad_shapes(attention_forward):
    require_right_values('attention', attention_forward)
    h, A, W_h, v = np.zeros((2, 3)), np.zeros((2, 4, 5)), np.zeros((3, 6)), np.zeros(6)
    expect_value_error("attention_forward with A (2, 4, 5), W_a (4, 6)",
                       lambda: attention_forward(h, A, W_h, np.zeros((4, 6)), v), 'W_a', 'A')
    expect_value_error("attention_forward with h (2, 3), W_h (2, 6)",
                       lambda: attention_forward(h, A, np.zeros((2, 6)), np.zeros((5, 6)), v),
                       'W_h', 'h')


layer(MODULE, 'attention_forward', 'attention_backward', attention_cases, ref.attention,
      wrt=('h', 'A', 'W_h', 'W_a', 'v', 'b'), adapt=attention_as_pair)


def attention_step_cases(rng):
    # A_proj as a decoder computes it once per sequence: A W_a + b.
    return [(label, dict(h=a['h'], A=a['A'],
                         A_proj=a['A'] @ a['W_a'] + (0 if a['b'] is None else a['b']),
                         W_h=a['W_h'], v=a['v']))
            for label, a in attention_cases(rng)]


@graded(MODULE, points=2)
def attention_step_forward_reference(attention_step_forward):
    expect_attention_like_reference('attention_step_forward', attention_step_forward,
                                    attention_step_cases(rng('attention_step_forward_reference')),
                                    ref.attention_step)


layer(MODULE, 'attention_step_forward', 'attention_step_backward', attention_step_cases,
      ref.attention_step, wrt=('h', 'A', 'A_proj', 'W_h', 'v'), adapt=attention_as_pair)
