"""
Graded tests of layers.py: hand-worked examples (expected values written as literals,
with the arithmetic in the comments), the loop references of grader/references.py on
random shapes, and the standard checks of each forward/backward pair (grader/checks.py).
"""
import numpy as np

from grader import references as ref
from grader.checks import (
    away_from_zero,
    distinct,
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

MODULE = 'layers'


# ---- fully connected ----------------------------------------------------------------

@graded(MODULE, points=2)
def fc_forward_values(fc_forward):
    # x (2, 1, 2) is flattened to rows [1, 2] and [3, -1]; out = x w + b.
    x = np.array([[[1., 2.]], [[3., -1.]]])
    w = np.array([[1., 0., -1.], [2., 1., 0.]])
    b = np.array([0.5, -1., 2.])
    out, _ = pair('fc_forward', fc_forward(x, w, b))
    expect_close("fc_forward out", out, [[5.5, 1., 1.], [1.5, -2., -1.]])


@graded(MODULE)
def fc_bad_shapes(fc_forward):
    require_right_values('fc', fc_forward)
    x = np.zeros((2, 3, 2))
    expect_value_error("fc_forward with x (2, 3, 2), w (5, 4)",
                       lambda: fc_forward(x, np.zeros((5, 4)), np.zeros(4)), 'w', 'x')
    expect_value_error("fc_forward with w (6, 4), b (3,)",
                       lambda: fc_forward(x, np.zeros((6, 4)), np.zeros(3)), 'b')


def fc_cases(rng, draw=positive):
    shapes = [(1, (3,), 4), (3, (2, 5), 3), (2, (3, 1, 3), 1), (4, (2, 2), 5)]
    return [(f"N={N} x={'x'.join(map(str, d))} M={M}",
             dict(x=draw(rng, N, *d), w=draw(rng, int(np.prod(d)), M), b=draw(rng, M)))
            for N, d, M in shapes]


layer(MODULE, 'fc_forward', 'fc_backward', fc_cases, ref.fc, wrt=('x', 'w', 'b'),
      cache=lambda a, out: dict(x=a['x'], w=a['w'], b=a['b']))


# ---- ReLU ---------------------------------------------------------------------------

@graded(MODULE)
def relu_values(relu_forward, relu_backward):
    out, _ = pair('relu_forward', relu_forward(np.array([[-2., -0.5, 0., 0.5, 3.]])))
    expect_close("relu_forward out", out, [[0., 0., 0., 0.5, 3.]])
    _, cache = pair('relu_forward', relu_forward(np.array([[-2., -0.5, 0.25, 3.]])))
    dx = relu_backward(np.array([[1., 2., 3., 4.]]), cache)
    expect_close("relu_backward dx", dx, [[0., 0., 3., 4.]])


def relu_cases(rng):
    return [(f"x={'x'.join(map(str, s))}", dict(x=away_from_zero(rng, *s)))
            for s in [(1, 5), (3, 4, 2), (2, 3, 4, 5)]]


layer(MODULE, 'relu_forward', 'relu_backward', relu_cases, ref.relu, wrt=('x',),
      cache=lambda a, out: a['x'])


# ---- convolution (filtering, stride 1, no padding, no bias) -------------------------

X3 = np.array([[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]])[None, None]   # (1, 1, 3, 3)
K2 = np.array([[1., 2.], [0., -1.]])[None, None]                        # (1, 1, 2, 2)


@graded(MODULE, points=2)
def conv_forward_values(conv_forward):
    # Y[i, j] = X[i, j] + 2 X[i, j+1] - X[i+1, j+1]: kernel not flipped.
    out, _ = pair('conv_forward', conv_forward(X3, K2))
    expect_close("conv_forward out [1x1x3x3, k=2x2]", out, [[[[0., 2.], [6., 8.]]]])
    # C=2 channels summed, F=2 filters, a 2x1 kernel on a 2x3 input:
    # Y[0] = X[0, 0, j] + 2 X[0, 1, j] + X[1, 1, j],  Y[1] = -X[0, 0, j] + X[1, 0, j] + X[1, 1, j]
    x = np.array([[[[1., 0., 2.], [0., 1., 0.]], [[3., 1., 0.], [1., 0., 2.]]]])
    w = np.array([[[[1.], [2.]], [[0.], [1.]]], [[[-1.], [0.]], [[1.], [1.]]]])
    out, _ = pair('conv_forward', conv_forward(x, w))
    expect_close("conv_forward out [1x2x2x3, F=2, k=2x1]", out, [[[[2., 2., 4.]], [[3., 1., 0.]]]])


@graded(MODULE, points=2)
def conv_backward_values(conv_forward, conv_backward):
    # dout = 1 everywhere: dX[i, j] sums the kernel entries that touch X[i, j],
    # dW[p, q] sums the 2x2 block of X starting at (p, q).
    _, cache = pair('conv_forward', conv_forward(X3, K2))
    grads = conv_backward(np.ones((1, 1, 2, 2)), cache)
    if not (isinstance(grads, tuple) and len(grads) == 2):
        fail("conv_backward must return (dx, dw)")
    expect_close("conv_backward dx", grads[0], [[[[1., 3., 2.], [1., 2., 1.], [0., -1., -1.]]]])
    expect_close("conv_backward dw", grads[1], [[[[12., 16.], [24., 28.]]]])


CONV_SHAPES = [(1, 1, 3, 3, 1, 2, 2), (2, 3, 5, 7, 2, 2, 3), (1, 2, 4, 4, 3, 1, 1),
               (3, 1, 6, 5, 1, 3, 2), (2, 2, 5, 4, 2, 3, 3)]   # N, C, H, W, F, HH, WW


def conv_cases(rng, draw=positive):
    return [(f"N={N} C={C} H={H} W={W} F={F} k={HH}x{WW}",
             dict(x=draw(rng, N, C, H, W), w=draw(rng, F, C, HH, WW)))
            for N, C, H, W, F, HH, WW in CONV_SHAPES]


@graded(MODULE, points=2)
def conv_forward_reference(conv_forward):
    for label, a in conv_cases(rng('conv_forward_reference'), randn):
        out, _ = pair('conv_forward', conv_forward(a['x'], a['w']))
        expect_close(f"conv_forward out [{label}]", out, ref.conv(a['x'], a['w']))


@graded(MODULE, points=2)
def conv_backward_full_convolution(conv_forward, conv_backward):
    # dX[n, c] = sum_f W[f, c] *full dY[n, f];  dW[f, c] = sum_n X[n, c] *filt dY[n, f]
    generator = rng('conv_backward_full_convolution')
    for label, a in conv_cases(generator, randn):
        x, w = a['x'], a['w']
        out, cache = pair('conv_forward', conv_forward(x, w))
        expect_close(f"conv_forward out [{label}]", out, ref.conv(x, w))
        dy = randn(generator, *np.shape(out))
        grads = conv_backward(dy, cache)
        if not (isinstance(grads, tuple) and len(grads) == 2):
            fail("conv_backward must return (dx, dw)")
        full, filt = ref.conv_backward(x, w, dy)
        expect_close(f"conv_backward dx vs full convolution [{label}]", grads[0], full)
        expect_close(f"conv_backward dw vs filtering [{label}]", grads[1], filt)


@graded(MODULE)
def conv_bad_shapes(conv_forward):
    require_right_values('conv', conv_forward)
    x = np.zeros((2, 3, 5, 5))
    expect_value_error("conv_forward with x (2, 3, 5, 5), w (2, 4, 3, 3)",
                       lambda: conv_forward(x, np.zeros((2, 4, 3, 3))), 'w', 'x')
    expect_value_error("conv_forward with a 6x6 kernel on a 5x5 x",
                       lambda: conv_forward(x, np.zeros((2, 3, 6, 6))), 'w', 'x')
    expect_value_error("conv_forward with x (3, 5, 5)",
                       lambda: conv_forward(np.zeros((3, 5, 5)), np.zeros((2, 3, 3, 3))), 'x')


layer(MODULE, 'conv_forward', 'conv_backward', conv_cases, ref.conv, wrt=('x', 'w'),
      cache=lambda a, out: dict(x=a['x'], w=a['w']))


# ---- max pooling --------------------------------------------------------------------

def pool(ph, pw, stride):
    return dict(pool_height=ph, pool_width=pw, stride=stride)


@graded(MODULE, points=2)
def max_pool_forward_values(max_pool_forward):
    x = np.array([[1., 3., -2., -4.],
                  [5., 4., -1., -7.],
                  [-5., -2., 9., 8.],
                  [-6., -3., 3., 3.]])[None, None]
    out, _ = pair('max_pool_forward', max_pool_forward(x, pool(2, 2, 2)))
    expect_close("max_pool_forward out [4x4, pool=2x2 stride=2]", out, [[[[5., -1.], [-2., 9.]]]])


@graded(MODULE, points=2)
def max_pool_overlap(max_pool_forward, max_pool_backward):
    # 2x2 windows, stride 1: the 7 is the max of two windows and gets both gradients.
    x = np.array([[1., 5., 2.], [3., 4., 6.], [0., 7., 1.]])[None, None]
    out, cache = pair('max_pool_forward', max_pool_forward(x, pool(2, 2, 1)))
    expect_close("max_pool_forward out [3x3, pool=2x2 stride=1]", out, [[[[5., 6.], [7., 7.]]]])
    dx = max_pool_backward(np.array([[[[1., 2.], [3., 4.]]]]), cache)
    expect_close("max_pool_backward dx [3x3, pool=2x2 stride=1]", dx,
                 [[[[0., 1., 0.], [0., 0., 2.], [0., 7., 0.]]]])


@graded(MODULE, points=2)
def max_pool_ties(max_pool_forward, max_pool_backward):
    # Window 1 [[1, 3], [3, 0]]: first max in row-major order is at (0, 1), not (1, 0).
    # Window 2 all 3s: the gradient goes to its first entry (0, 2) only.
    x = np.array([[1., 3., 3., 3.], [3., 0., 3., 3.]])[None, None]
    out, cache = pair('max_pool_forward', max_pool_forward(x, pool(2, 2, 2)))
    # a wrong forward is named as the forward, not as a backward tie failure
    expect_close("max_pool_forward out [2x4 with ties, pool=2x2 stride=2]", out, [[[[3., 3.]]]])
    dx = max_pool_backward(np.array([[[[1., 10.]]]]), cache)
    expect_close("max_pool_backward dx with ties", dx, [[[[0., 1., 10., 0.], [0., 0., 0., 0.]]]])
    # Random ties (rounded values, as after a ReLU) against the reference routing.
    generator = rng('max_pool_ties')
    x = np.maximum(np.round(randn(generator, 2, 3, 6, 6)), 0)
    for p in (pool(2, 2, 2), pool(3, 3, 1), pool(2, 3, 2)):
        out, cache = pair('max_pool_forward', max_pool_forward(x, p))
        expect_close(f"max_pool_forward out with ties [pool={p['pool_height']}x{p['pool_width']} "
                     f"stride={p['stride']}]", out, ref.max_pool(x, p))
        dout = positive(generator, *np.shape(out))
        expect_close(f"max_pool_backward dx with ties [pool={p['pool_height']}x{p['pool_width']} "
                     f"stride={p['stride']}]", max_pool_backward(dout, cache),
                     ref.max_pool_backward(x, p, dout))


POOL_SHAPES = [(1, 1, 4, 4, 2, 2, 2), (2, 3, 5, 7, 3, 2, 2), (1, 2, 5, 5, 3, 3, 1),
               (2, 1, 6, 4, 2, 3, 1), (1, 1, 7, 5, 2, 2, 3)]   # N, C, H, W, ph, pw, stride


def max_pool_cases(rng):
    return [(f"N={N} C={C} H={H} W={W} pool={ph}x{pw} stride={s}",
             dict(x=distinct(rng, N, C, H, W), pool_param=pool(ph, pw, s)))
            for N, C, H, W, ph, pw, s in POOL_SHAPES]


@graded(MODULE, points=2)
def max_pool_forward_reference(max_pool_forward):
    for label, a in max_pool_cases(rng('max_pool_forward_reference')):
        out, _ = pair('max_pool_forward', max_pool_forward(a['x'], a['pool_param']))
        expect_close(f"max_pool_forward out [{label}]", out, ref.max_pool(a['x'], a['pool_param']))


@graded(MODULE)
def max_pool_bad_shapes(max_pool_forward):
    require_right_values('max_pool', max_pool_forward)
    expect_value_error("max_pool_forward with a 4x4 window on a 3x3 x",
                       lambda: max_pool_forward(np.zeros((1, 1, 3, 3)), pool(4, 4, 1)),
                       'pool_param', 'pool_height', 'pool_width', 'x')


layer(MODULE, 'max_pool_forward', 'max_pool_backward', max_pool_cases, ref.max_pool, wrt=('x',),
      cache=lambda a, out: dict(x=a['x'], pool_param=a['pool_param']))


# ---- softmax loss -------------------------------------------------------------------

@graded(MODULE, points=2)
def softmax_loss_values(softmax_loss):
    # Equal scores: p = 1/4 for every class, loss = log 4, dx = (p - onehot(y)) / N.
    loss, dx = pair('softmax_loss', softmax_loss(np.array([[1., 1., 1., 1.], [-3., -3., -3., -3.]]),
                                                 np.array([0, 3])))
    expect_close("softmax_loss loss [equal scores, C=4]", loss, np.log(4))
    expect_close("softmax_loss dx [equal scores, C=4]", dx,
                 [[-0.375, 0.125, 0.125, 0.125], [0.125, 0.125, 0.125, -0.375]])
    # Scores [0, log 3]: p = [1/4, 3/4], loss = -log(3/4).
    loss, dx = pair('softmax_loss', softmax_loss(np.array([[0., np.log(3)]]), np.array([1])))
    expect_close("softmax_loss loss [scores 0, log 3]", loss, np.log(4 / 3))
    expect_close("softmax_loss dx [scores 0, log 3]", dx, [[0.25, -0.25]])
    # Large scores must not overflow: p = [1/2, 1/2].
    loss, _ = pair('softmax_loss', softmax_loss(np.array([[1000., 1000.], [-1000., -1000.]]),
                                                np.array([0, 1])))
    expect_close("softmax_loss loss [scores +-1000]", loss, np.log(2))


def label_checks(loss_fn, name, x):
    """Labels out of range, negative, fractional or of the wrong length raise ValueError."""
    N, C = x.shape
    bad = {f"y = {C} (C={C})": np.array([0] * (N - 1) + [C]),
           "y = -1": np.array([0] * (N - 1) + [-1]),
           "fractional y": np.array([0.5] * N),
           f"y of length {N + 1}": np.zeros(N + 1, dtype=int)}
    for what, y in bad.items():
        expect_value_error(f"{name} with {what}", lambda: loss_fn(x, y), 'y')


@graded(MODULE)
def softmax_loss_bad_labels(softmax_loss):
    require_right_values('softmax_loss', softmax_loss)
    label_checks(softmax_loss, 'softmax_loss', np.zeros((3, 4)))


def scores_cases(rng):
    return [(f"N={N} C={C}", dict(x=randn(rng, N, C) / 2, y=rng.integers(C, size=N)))
            for N, C in [(1, 2), (4, 5), (3, 10), (6, 3)]]


layer(MODULE, 'softmax_loss', None, scores_cases, ref.softmax_loss, wrt=('x',))


# ---- convolution with stride, padding and bias (Part 2) -----------------------------

@graded(MODULE, points=2)
def conv2d_forward_values(conv2d_forward):
    # Defaults (b=None, stride=1, pad=0) are conv_forward.
    out, _ = pair('conv2d_forward', conv2d_forward(X3, K2))
    expect_close("conv2d_forward out [defaults]", out, [[[[0., 2.], [6., 8.]]]])
    # pad=1 makes X3 5x5 with a zero border; stride=2 keeps positions (0|2, 0|2); b=10:
    # out[0, 0] = 0 + 0 - 1 + 10,  out[0, 1] = 0 + 0 - 3 + 10,
    # out[1, 0] = 0 + 2*4 - 7 + 10, out[1, 1] = 5 + 2*6 - 9 + 10.
    out, _ = pair('conv2d_forward', conv2d_forward(X3, K2, b=np.array([10.]), stride=2, pad=1))
    expect_close("conv2d_forward out [stride=2 pad=1 b=10]", out, [[[[9., 7.], [11., 18.]]]])


CONV2D_SHAPES = [(2, 3, 5, 7, 2, 3, 2, 2, 1, True), (1, 2, 6, 6, 3, 3, 3, 3, 0, False),
                 (1, 1, 4, 5, 2, 2, 3, 1, 2, True), (2, 2, 7, 5, 1, 3, 3, 2, 1, False),
                 (1, 1, 3, 3, 1, 2, 2, 1, 0, True)]   # N, C, H, W, F, HH, WW, stride, pad, bias


def conv2d_cases(rng, draw=positive):
    return [(f"N={N} C={C} H={H} W={W} F={F} k={HH}x{WW} stride={s} pad={p}"
             f"{'' if bias else ' b=None'}",
             dict(x=draw(rng, N, C, H, W), w=draw(rng, F, C, HH, WW),
                  b=draw(rng, F) if bias else None, stride=s, pad=p))
            for N, C, H, W, F, HH, WW, s, p, bias in CONV2D_SHAPES]


@graded(MODULE, points=2)
def conv2d_forward_reference(conv2d_forward):
    for label, a in conv2d_cases(rng('conv2d_forward_reference'), randn):
        out, _ = pair('conv2d_forward', conv2d_forward(**a))
        expect_close(f"conv2d_forward out [{label}]", out, ref.conv(**a))


@graded(MODULE)
def conv2d_bad_shapes(conv2d_forward):
    require_right_values('conv2d', conv2d_forward)
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((2, 3, 3, 3))
    expect_value_error("conv2d_forward with x (2, 3, 5, 5), w (2, 4, 3, 3)",
                       lambda: conv2d_forward(x, np.zeros((2, 4, 3, 3))), 'w', 'x')
    expect_value_error("conv2d_forward with F=2 filters and b (3,)",
                       lambda: conv2d_forward(x, w, b=np.zeros(3)), 'b')


layer(MODULE, 'conv2d_forward', 'conv2d_backward', conv2d_cases, ref.conv, wrt=('x', 'w', 'b'))


# ---- dropout (p = KEEP probability, inverted dropout) --------------------------------

def check_dropout_mask(what, x, p, out):
    """Inverted dropout: every output is 0 or x / p, and about a fraction p of them is kept."""
    if not (isinstance(out, np.ndarray) and out.shape == x.shape):   # before converting out
        fail(f"{what}: expected an array of shape {x.shape}")
    out = np.asarray(out, dtype=np.float64)
    kept = out != 0
    if not np.allclose(out[kept], x[kept] / p, rtol=1e-6, atol=0):
        fail(f"{what}: kept units must be x / p (inverted dropout, p = {p} the KEEP probability)")
    if x.size >= 1000:
        # binomial: within 5 standard deviations of p
        fraction, sigma = kept.mean(), np.sqrt(p * (1 - p) / x.size)
        if not abs(fraction - p) <= 5 * sigma + 1e-12:
            fail(f"{what}: kept {fraction:.3f} of the units, expected about {p} "
                 "(p is the KEEP probability)")
    return kept


@graded(MODULE)
def dropout_test_mode(dropout_forward, dropout_backward):
    x = np.array([[1., -2., 3.], [0.5, 0., -1.]])
    out, cache = pair('dropout_forward', dropout_forward(x, dict(p=0.5, mode='test', seed=0)))
    expect_close("dropout_forward out in test mode (identity)", out, x)
    dx = dropout_backward(np.array([[1., 2., 3.], [4., 5., 6.]]), cache)
    expect_close("dropout_backward dx in test mode", dx, [[1., 2., 3.], [4., 5., 6.]])


@graded(MODULE, points=2)
def dropout_train_mode(dropout_forward, dropout_backward):
    generator = rng('dropout_train_mode')
    x, p = away_from_zero(generator, 200, 50), 0.3
    out, cache = pair('dropout_forward', dropout_forward(x, dict(p=p, mode='train', seed=1)))
    kept = check_dropout_mask(f"dropout_forward [p={p}]", x, p, out)
    dout = randn(generator, *x.shape)
    expect_close(f"dropout_backward dx [p={p}]", dropout_backward(dout, cache), dout * kept / p)
    again, _ = pair('dropout_forward', dropout_forward(x, dict(p=p, mode='train', seed=1)))
    other, _ = pair('dropout_forward', dropout_forward(x, dict(p=p, mode='train', seed=2)))
    if not (isinstance(again, np.ndarray) and np.array_equal(again, out)):
        fail("dropout_forward: the same seed must give the same mask")
    if not isinstance(other, np.ndarray) or np.array_equal(other, out):
        fail("dropout_forward: seeds 1 and 2 gave the same mask")
    check_dropout_mask("dropout_forward [seed 2]", x, p, other)
    unseeded, _ = pair('dropout_forward', dropout_forward(x, dict(p=p, mode='train')))
    check_dropout_mask("dropout_forward [no seed]", x, p, unseeded)
    out, _ = pair('dropout_forward', dropout_forward(x, dict(p=1.0, mode='train', seed=3)))
    expect_close("dropout_forward out [p=1, train mode]", out, x)


def dropout_cases(rng):
    return [(f"x={'x'.join(map(str, s))} p={p}",
             dict(x=away_from_zero(rng, *s), dropout_param=dict(p=p, mode='train', seed=seed)))
            for s, p, seed in [((1, 7), 0.3, 0), ((4, 5), 0.5, 1), ((2, 3, 4, 5), 0.8, 2),
                               ((40, 50), 0.6, 3)]]


def dropout_expected(label, args, dout, out, grads):
    """The mask is the submission's: out must be a valid mask of x, dx = dout * mask / p."""
    x, p = args['x'].astype(np.float64), args['dropout_param']['p']
    output = out[0] if isinstance(out, tuple) else out
    kept = check_dropout_mask(f"dropout_forward [{label}]", x, p, output)
    expect_close(f"dropout_backward dx [{label}]", grads[0], dout * kept / p,
                 1e-6 if args['x'].dtype == np.float32 else 1e-7)


layer(MODULE, 'dropout_forward', 'dropout_backward', dropout_cases, lambda x, dropout_param: x,
      wrt=('x',), expected=dropout_expected)


# ---- log-softmax and NLL loss (Part 2) ----------------------------------------------

@graded(MODULE, points=2)
def log_softmax_values(log_softmax_forward, log_softmax_backward):
    # [0, log 3] -> softmax [1/4, 3/4]; equal scores -> 1/C; large scores must not overflow.
    x = np.array([[0., np.log(3)]])
    out, cache = pair('log_softmax_forward', log_softmax_forward(x))
    expect_close("log_softmax_forward out [0, log 3]", out, [[np.log(0.25), np.log(0.75)]])
    # dx = dout - softmax * sum(dout)
    dx = log_softmax_backward(np.array([[1., 0.]]), cache)
    expect_close("log_softmax_backward dx [0, log 3]", dx, [[0.75, -0.75]])
    out, _ = pair('log_softmax_forward',
                  log_softmax_forward(np.array([[2., 2., 2., 2.], [1000., 1000., 1000., 1000.]])))
    expect_close("log_softmax_forward out [equal scores, C=4]", out, np.full((2, 4), -np.log(4)))


def log_softmax_cases(rng):
    return [(f"N={N} C={C}", dict(x=randn(rng, N, C))) for N, C in [(1, 2), (3, 5), (2, 10)]]


layer(MODULE, 'log_softmax_forward', 'log_softmax_backward', log_softmax_cases, ref.log_softmax,
      wrt=('x',))


@graded(MODULE)
def nll_loss_values(nll_loss):
    # loss = -(log_probs[0, 2] + log_probs[1, 0]) / 2 = (3 + 0.5) / 2
    loss, d = pair('nll_loss', nll_loss(np.array([[-1., -2., -3.], [-0.5, -4., -2.]]), np.array([2, 0])))
    expect_close("nll_loss loss", loss, 1.75)
    expect_close("nll_loss dlog_probs", d, [[0., 0., -0.5], [-0.5, 0., 0.]])


@graded(MODULE)
def nll_loss_bad_labels(nll_loss):
    require_right_values('nll_loss', nll_loss)
    label_checks(nll_loss, 'nll_loss', -np.ones((3, 4)))


def nll_cases(rng):
    # log_probs of real distributions: the numeric gradient is -1/N at y, 0 elsewhere
    return [(f"N={N} C={C}", dict(log_probs=ref.log_softmax(randn(rng, N, C)),
                                  y=rng.integers(C, size=N)))
            for N, C in [(1, 3), (5, 4), (3, 6)]]


layer(MODULE, 'nll_loss', None, nll_cases, ref.nll_loss, wrt=('log_probs',))


# ---- flatten (Part 2) ---------------------------------------------------------------

@graded(MODULE)
def flatten_values(flatten_forward, flatten_backward):
    x = np.arange(12.).reshape(2, 2, 3)
    out, cache = pair('flatten_forward', flatten_forward(x))
    expect_close("flatten_forward out [2x2x3]", out, np.arange(12.).reshape(2, 6))
    dx = flatten_backward(np.arange(12.).reshape(2, 6) * 10, cache)
    expect_close("flatten_backward dx [2x2x3]", dx, x * 10)
    out, _ = pair('flatten_forward', flatten_forward(np.ones((1, 3, 1, 2))))
    expect_close("flatten_forward out [N=1, 3x1x2]", out, np.ones((1, 6)))


def flatten_cases(rng):
    return [(f"x={'x'.join(map(str, s))}", dict(x=randn(rng, *s)))
            for s in [(1, 3, 1, 2), (2, 5), (3, 2, 3, 4)]]


layer(MODULE, 'flatten_forward', 'flatten_backward', flatten_cases, ref.flatten, wrt=('x',))
