"""
handgrad autograder: checks every layer function of layers.py and rnn_layers.py against
the contract in API.md (Part 1, and for our additions - conv2d, dropout, log-softmax,
NLL, flatten, LSTM, attention - the signatures documented in those files).

Usage:
    python autograder.py                      # grade our modules, next to this file
    python autograder.py --target DIR         # grade another implementation (a student's)
    python autograder.py --contract           # only the homework's Part-1 functions of API.md
    python autograder.py --only conv,relu     # a subset: substrings of test/function names
    python autograder.py --json results.json  # also write a Gradescope results.json
    python -m pytest autograder.py            # every graded test as a pytest test

For each layer the grader checks:
- forward values on small examples whose expected outputs were worked out by hand and
  are written below as literals (and, for convolution, pooling, LSTM and attention,
  against simple loop references on random shapes);
- backward against numeric gradients, in float64, on several random shapes: every
  relative error must be <= 1e-7 (inputs keep away from ReLU kinks and max-pool ties;
  see check_gradients for how the check stays far from round-off);
- inputs (and dout) are never modified; float32 in -> float32 out and gradients;
  the documented cache; bad shapes and labels raise ValueError naming the argument.

Each test is worth a few points and passes or fails as a whole. A module whose file is
missing from the graded directory is skipped and left out of the maximum score; a missing
function, an exception (NotImplementedError included), a test running longer than
TIME_LIMIT seconds or a module that does not import scores 0 for the tests concerned.

Adding tests: decorate a function whose parameters are named after the layer functions
it needs with @graded(module, points), and have it raise GradeFailure (through fail or
expect_close) when something is wrong; or call layer(...) to register the standard
gradient / no-mutation / float32 / cache checks of a forward-backward pair. A new
module's suite is just tests that name it.
"""
import argparse
import copy
import importlib
import inspect
import io
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from functools import partial

import numpy as np

import gradient_check
from gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error

__all__ = ['rel_error', 'eval_numerical_gradient', 'eval_numerical_gradient_array',
           'grade', 'main']

HERE = os.path.dirname(os.path.abspath(__file__))
THRESHOLD = 1e-7   # largest relative error accepted between two computations of a value
STEP = 1e-3        # step h of the numeric gradients (see numeric_gradient)
TIME_LIMIT = 10    # seconds per test (and per module import), where signals allow it


# ------------------------------------------------------------------------------------
# The registry
# ------------------------------------------------------------------------------------

@dataclass
class GradedTest:
    """One graded test: `run(*functions)` raises GradeFailure or returns a note."""
    name: str
    module: str
    functions: tuple
    points: int
    run: object


@dataclass
class Result:
    test: GradedTest
    score: int
    status: str        # 'passed', 'failed' or 'skipped' (module not found)
    output: str


REGISTRY = []


class GradeFailure(AssertionError):
    """A check failed; the message says what, on which case, and by how much."""


def graded(module, points=1):
    """
    Register the decorated function as a graded test of `module`.

    The function's parameter names are the names of the layer functions it needs:
    `def conv_forward_values(conv_forward)` receives the graded module's conv_forward.
    """
    def register(run):
        functions = tuple(inspect.signature(run).parameters)
        REGISTRY.append(GradedTest(run.__name__, module, functions, points, run))
        return run
    return register


@dataclass
class LayerSpec:
    """
    How to exercise a forward/backward pair, or a loss (backward None) that returns
    (loss, dx) itself.

    - cases: function rng -> list of (label, args), args a dict of the forward's
      arguments in positional order, e.g. ('N=2 D=3 M=4', {'x': x, 'w': w, 'b': b}).
    - wrt: names of the arguments whose gradients backward returns, in its order
      (for a loss, the one argument its dx belongs to).
    - cache: None, or function (args, out) -> the documented cache: an array, or a dict
      of the cache tuple's entries by name.
    - adapt: None, or function (forward, backward) -> the same pair in the standard form
      forward(*args) -> (out, cache), backward(dout, cache) -> gradients, for layers
      with several outputs (out and dout are then tuples of arrays).
    """
    module: str
    forward: str
    backward: str
    cases: object
    wrt: tuple
    cache: object = None
    adapt: object = None


def layer(module, forward, backward, cases, wrt, cache=None, adapt=None, points=3):
    """
    Register the standard checks of a layer: <name>_gradients (worth `points`),
    <name>_no_mutation, <name>_float32 and, when a cache is documented, <name>_cache.
    <name> is the forward's name without '_forward' (a loss keeps its name).
    """
    spec = LayerSpec(module, forward, backward, cases, wrt, cache, adapt)
    name = forward[:-len('_forward')] if forward.endswith('_forward') else forward
    functions = (forward, backward) if backward else (forward,)
    checks = [('gradients', check_gradients, points), ('no_mutation', check_no_mutation, 1),
              ('float32', check_float32, 1)]
    if cache is not None:
        checks.append(('cache', check_cache, 1))
    for suffix, check, pts in checks:
        REGISTRY.append(GradedTest(f'{name}_{suffix}', module, functions, pts,
                                   partial(check, spec)))


# ------------------------------------------------------------------------------------
# Checking helpers
# ------------------------------------------------------------------------------------

def fail(message):
    raise GradeFailure(message)


def show(a):
    """A small array on one line."""
    return ' '.join(np.array2string(np.asarray(a), precision=4).split())


def expect_close(what, actual, expected, threshold=THRESHOLD):
    """
    Fail unless `actual` has the shape of `expected` and rel_error(actual, expected)
    <= threshold. Returns the relative error.
    """
    if actual is None:
        fail(f"{what}: got None")
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        fail(f"{what}: shape {actual.shape}, expected {expected.shape}")
    error = rel_error(actual, expected)
    if not error <= threshold:   # also catches NaN
        message = f"{what}: rel error {error:.1e} > {threshold:.0e}"
        if expected.size <= 16:
            message += f"\n  expected {show(expected)}\n  got      {show(actual)}"
        fail(message)
    return error


def expect_value_error(what, call, *names):
    """Fail unless call() raises ValueError with a message naming one of `names`."""
    wanted = f"ValueError naming {' or '.join(names)}"
    try:
        call()
    except ValueError as e:
        if not any(re.search(rf'\b{re.escape(n)}\b', str(e)) for n in names):
            fail(f"{what}: expected {wanted}, got ValueError({str(e)!r})")
        return
    except Exception as e:
        fail(f"{what}: expected {wanted}, got {type(e).__name__}: {e}")
    fail(f"{what}: expected {wanted}, nothing was raised")


def pair(name, result):
    """Check that `name` returned a pair, e.g. (out, cache) or (loss, dx)."""
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        fail(f"{name} must return a pair (out, cache) or (loss, dx), got {type(result).__name__}")
    return result


def grads_tuple(spec, result):
    """The gradients `spec.backward` returned, as a tuple matching spec.wrt."""
    result = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    if len(result) != len(spec.wrt):
        names = ', '.join('d' + a for a in spec.wrt)
        fail(f"{spec.backward} returned {len(result)} values, expected {len(spec.wrt)} ({names})")
    return result


def randn(rng, *shape):
    return rng.standard_normal(shape)


def numeric_gradient(f, x, df=None):
    """
    Numeric gradient of f at x: gradient_check's centered differences, refined by
    Richardson extrapolation. A centered difference with step h has error c h^2 + O(h^4),
    so (4 g(h) - g(2h)) / 3 cancels the h^2 term; that allows h = STEP = 1e-3, where
    round-off is 100x smaller than at the usual 1e-5, and errors drop to ~1e-12.

    Inputs:
    - f: function of x; a scalar if df is None, else an array of df's shape.
    - x: array, perturbed in place (by up to 2 * STEP) and restored.
    - df: None, or the upstream gradient: then the gradient is that of sum(f(x) * df).
    """
    if df is None:
        centered = lambda h: eval_numerical_gradient(f, x, verbose=False, h=h)
    else:
        centered = lambda h: eval_numerical_gradient_array(f, x, df, h=h)
    return (4 * centered(STEP) - centered(2 * STEP)) / 3


def positive(rng, *shape):
    """Values in [0.5, 1.5): sums of products of them stay far from zero (see check_gradients)."""
    return rng.uniform(0.5, 1.5, shape)


def distinct(rng, *shape):
    """Values spaced 0.1 apart in random order: no ties, none within reach of a numeric step."""
    return (rng.permutation(int(np.prod(shape))) - np.prod(shape) / 2).reshape(shape) * 0.1


def away_from_zero(rng, *shape):
    """Values with |x| >= 0.1: far from 0 (the ReLU kink), relative to a numeric step."""
    return rng.choice([-1.0, 1.0], size=shape) * (0.1 + np.abs(randn(rng, *shape)))


def like(out, draw):
    """Draw an array of out's shape, or a tuple of them if out is a tuple of outputs."""
    if isinstance(out, tuple):
        return tuple(draw(*np.shape(o)) for o in out)
    return draw(*np.shape(out))


def flat(out):
    """An output, or a tuple of outputs, as one vector."""
    return np.concatenate([np.ravel(o) for o in (out if isinstance(out, tuple) else (out,))])


def same(a, b):
    """Exact equality of arrays, tuples, dicts and scalars (NaN equals NaN)."""
    if isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in b)
    if isinstance(b, tuple):
        return isinstance(a, tuple) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def standard(spec, forward, backward):
    """The layer's functions in the standard form (see LayerSpec.adapt)."""
    return spec.adapt(forward, backward) if spec.adapt else (forward, backward)


def as_float32(value):
    is_float = isinstance(value, np.ndarray) and value.dtype.kind == 'f'
    return value.astype(np.float32) if is_float else value


# ------------------------------------------------------------------------------------
# The standard checks of a layer (registered by layer())
# ------------------------------------------------------------------------------------

def check_gradients(spec, forward, backward=None):
    """
    Compare the analytic gradients with numeric ones, in float64, on every case.

    rel_error is elementwise, so a gradient entry that is ~0 by chance would turn harmless
    round-off into a large relative error. Hence the numeric gradients are accurate to
    ~1e-12 (numeric_gradient), dout is positive, and so are the inputs of the layers that
    sum products (fc, conv, rnn, ...): none of their entries can cancel to ~0.
    Every call gets fresh copies of the inputs: mutation is checked separately.
    """
    forward, backward = standard(spec, forward, backward)
    rng = np.random.default_rng(0)
    failures, worst = [], 0.0
    for label, args in spec.cases(rng):
        def f(_):   # the numeric gradient perturbs an array of args in place
            return forward(*copy.deepcopy(args).values())[0]
        out, cache = pair(spec.forward, forward(*copy.deepcopy(args).values()))
        if backward is None:   # a loss: (loss, dx)
            dout, grads = None, (cache,)
        else:
            dout = like(out, partial(positive, rng))
            grads = grads_tuple(spec, backward(copy.deepcopy(dout), cache))
        for name, grad in zip(spec.wrt, grads):
            what = f"{spec.backward or spec.forward} d{name} [{label}]"
            if args[name] is None:
                if grad is not None:
                    failures.append(f"{what}: expected None ({name} was None)")
                continue
            if dout is None:
                numeric = numeric_gradient(f, args[name])
            else:
                numeric = numeric_gradient(lambda x: flat(f(x)), args[name], flat(dout))
            try:
                worst = max(worst, expect_close(what, grad, numeric))
            except GradeFailure as e:
                failures.append(str(e))
    if failures:
        fail('\n'.join(failures))
    return f"worst rel error {worst:.1e}"


def expect_unchanged(what, now, before):
    for name in before:
        if not same(now[name], before[name]):
            fail(f"{what}: modified its input {name}")


def check_no_mutation(spec, forward, backward=None):
    """Forward must leave its inputs unchanged; backward its dout and the cached inputs."""
    forward, backward = standard(spec, forward, backward)
    rng = np.random.default_rng(0)
    for label, args in spec.cases(rng):
        before = copy.deepcopy(args)
        out, cache = pair(spec.forward, forward(*args.values()))
        expect_unchanged(f"{spec.forward} [{label}]", args, before)
        if backward is not None:
            dout = like(out, partial(randn, rng))
            dout_before = copy.deepcopy(dout)
            backward(dout, cache)
            expect_unchanged(f"{spec.backward} [{label}]", dict(args, dout=dout),
                             dict(before, dout=dout_before))


def check_float32(spec, forward, backward=None):
    """float32 inputs give float32 outputs and gradients (no silent upcast to float64)."""
    forward, backward = standard(spec, forward, backward)
    rng = np.random.default_rng(0)
    for label, args in spec.cases(rng):
        args = {name: as_float32(value) for name, value in args.items()}
        out, cache = pair(spec.forward, forward(*args.values()))
        if backward is None:   # a loss: (loss, dx)
            arrays = {f"{spec.forward} d{spec.wrt[0]}": cache}
        else:
            dout = like(out, lambda *shape: randn(rng, *shape).astype(np.float32))
            grads = grads_tuple(spec, backward(dout, cache))
            outs = out if isinstance(out, tuple) else (out,)
            arrays = {f"{spec.forward} out{f'[{k}]' if len(outs) > 1 else ''}": o
                      for k, o in enumerate(outs)}
            arrays.update({f"{spec.backward} d{name}": g for name, g in zip(spec.wrt, grads)
                           if args[name] is not None})
        for what, array in arrays.items():
            dtype = getattr(array, 'dtype', type(array).__name__)
            if dtype != np.float32:
                fail(f"{what} [{label}]: dtype {dtype}, expected float32 for float32 inputs")


def check_cache(spec, forward, backward=None):
    """The cache is exactly the documented one (course graders read it)."""
    rng = np.random.default_rng(0)
    for label, args in spec.cases(rng):
        out, cache = pair(spec.forward, forward(*args.values()))
        expected = spec.cache(args, out)
        what = f"{spec.forward} cache [{label}]"
        if not isinstance(expected, dict):
            expect_close(what, cache, expected)
            continue
        names = ', '.join(expected)
        if not (isinstance(cache, tuple) and len(cache) == len(expected)):
            fail(f"{what}: expected a tuple ({names}), got {type(cache).__name__}"
                 f"{' of length %d' % len(cache) if isinstance(cache, (tuple, list)) else ''}")
        for (name, value), got in zip(expected.items(), cache):
            if isinstance(value, dict):
                if got != value:
                    fail(f"{what}: entry {name} is {got!r}, expected {value!r}")
            else:
                expect_close(f"{what} entry {name} of ({names})", got, value)


# ------------------------------------------------------------------------------------
# Simple references: loops that follow the definitions in API.md
# ------------------------------------------------------------------------------------

def filter2d(a, k):
    """Filtering (cross-correlation), valid part: out[i, j] = sum(a[i:i+kh, j:j+kw] * k)."""
    kh, kw = k.shape
    out = np.zeros((a.shape[0] - kh + 1, a.shape[1] - kw + 1))
    for i, j in np.ndindex(*out.shape):
        out[i, j] = np.sum(a[i:i + kh, j:j + kw] * k)
    return out


def full_convolution(a, k):
    """Full 2-D convolution: zero-pad a by kh-1 / kw-1 on every side, filter with the flipped k."""
    kh, kw = k.shape
    return filter2d(np.pad(a, ((kh - 1, kh - 1), (kw - 1, kw - 1))), k[::-1, ::-1])


def conv_reference(x, w, b=None, stride=1, pad=0):
    """Y[n, f] = sum_c X[n, c] *filt W[f, c] (+ b[f]) on the zero-padded X, every stride-th position."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    N, C = x.shape[:2]
    F = w.shape[0]
    y = np.array([[sum(filter2d(x[n, c], w[f, c]) for c in range(C)) for f in range(F)]
                  for n in range(N)])[:, :, ::stride, ::stride]
    return y if b is None else y + b[None, :, None, None]


def max_pool_reference(x, ph, pw, stride):
    N, C, H, W = x.shape
    out = np.zeros((N, C, 1 + (H - ph) // stride, 1 + (W - pw) // stride))
    for n, c, i, j in np.ndindex(*out.shape):
        out[n, c, i, j] = x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw].max()
    return out


# ====================================================================================
# layers.py
# ====================================================================================

# ---- fully connected ----------------------------------------------------------------

@graded('layers', points=2)
def fc_forward_values(fc_forward):
    # x (2, 1, 2) is flattened to rows [1, 2] and [3, -1]; out = x w + b.
    x = np.array([[[1., 2.]], [[3., -1.]]])
    w = np.array([[1., 0., -1.], [2., 1., 0.]])
    b = np.array([0.5, -1., 2.])
    out, _ = fc_forward(x, w, b)
    expect_close("fc_forward out", out, [[5.5, 1., 1.], [1.5, -2., -1.]])


@graded('layers')
def fc_bad_shapes(fc_forward):
    x = np.zeros((2, 3, 2))
    expect_value_error("fc_forward with x (2, 3, 2), w (5, 4)",
                       lambda: fc_forward(x, np.zeros((5, 4)), np.zeros(4)), 'w', 'x')
    expect_value_error("fc_forward with w (6, 4), b (3,)",
                       lambda: fc_forward(x, np.zeros((6, 4)), np.zeros(3)), 'b')


def fc_cases(rng, draw=positive):
    return [(f"N={N} x={'x'.join(map(str, d))} M={M}",
             dict(x=draw(rng, N, *d), w=draw(rng, int(np.prod(d)), M), b=draw(rng, M)))
            for N, d, M in [(1, (3,), 4), (3, (2, 5), 3), (2, (3, 1, 3), 1)]]


layer('layers', 'fc_forward', 'fc_backward', fc_cases, wrt=('x', 'w', 'b'),
      cache=lambda a, out: dict(x=a['x'], w=a['w'], b=a['b']))


# ---- ReLU ---------------------------------------------------------------------------

@graded('layers')
def relu_values(relu_forward, relu_backward):
    out, _ = relu_forward(np.array([[-2., -0.5, 0., 0.5, 3.]]))
    expect_close("relu_forward out", out, [[0., 0., 0., 0.5, 3.]])
    _, cache = relu_forward(np.array([[-2., -0.5, 0.25, 3.]]))
    dx = relu_backward(np.array([[1., 2., 3., 4.]]), cache)
    expect_close("relu_backward dx", dx, [[0., 0., 3., 4.]])


def relu_cases(rng):
    return [(f"x={'x'.join(map(str, s))}", dict(x=away_from_zero(rng, *s)))
            for s in [(1, 5), (3, 4, 2), (2, 3, 4, 5)]]


layer('layers', 'relu_forward', 'relu_backward', relu_cases, wrt=('x',),
      cache=lambda a, out: a['x'])


# ---- convolution (filtering, stride 1, no padding, no bias) -------------------------

X3 = np.array([[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]])[None, None]   # (1, 1, 3, 3)
K2 = np.array([[1., 2.], [0., -1.]])[None, None]                        # (1, 1, 2, 2)


@graded('layers', points=2)
def conv_forward_values(conv_forward):
    # Y[i, j] = X[i, j] + 2 X[i, j+1] - X[i+1, j+1]: kernel not flipped.
    out, _ = conv_forward(X3, K2)
    expect_close("conv_forward out [1x1x3x3, k=2x2]", out, [[[[0., 2.], [6., 8.]]]])
    # C=2 channels summed, F=2 filters, a 2x1 kernel on a 2x3 input:
    # Y[0] = X[0, 0, j] + 2 X[0, 1, j] + X[1, 1, j],  Y[1] = -X[0, 0, j] + X[1, 0, j] + X[1, 1, j]
    x = np.array([[[[1., 0., 2.], [0., 1., 0.]], [[3., 1., 0.], [1., 0., 2.]]]])
    w = np.array([[[[1.], [2.]], [[0.], [1.]]], [[[-1.], [0.]], [[1.], [1.]]]])
    out, _ = conv_forward(x, w)
    expect_close("conv_forward out [1x2x2x3, F=2, k=2x1]", out, [[[[2., 2., 4.]], [[3., 1., 0.]]]])


@graded('layers', points=2)
def conv_backward_values(conv_forward, conv_backward):
    # dout = 1 everywhere: dX[i, j] sums the kernel entries that touch X[i, j],
    # dW[p, q] sums the 2x2 block of X starting at (p, q).
    _, cache = conv_forward(X3, K2)
    dx, dw = conv_backward(np.ones((1, 1, 2, 2)), cache)
    expect_close("conv_backward dx", dx, [[[[1., 3., 2.], [1., 2., 1.], [0., -1., -1.]]]])
    expect_close("conv_backward dw", dw, [[[[12., 16.], [24., 28.]]]])


CONV_SHAPES = [(1, 1, 3, 3, 1, 2, 2), (2, 3, 5, 7, 2, 2, 3), (1, 2, 4, 4, 3, 1, 1),
               (3, 1, 6, 5, 1, 3, 2)]   # N, C, H, W, F, HH, WW


def conv_cases(rng, draw=positive):
    return [(f"N={N} C={C} H={H} W={W} F={F} k={HH}x{WW}",
             dict(x=draw(rng, N, C, H, W), w=draw(rng, F, C, HH, WW)))
            for N, C, H, W, F, HH, WW in CONV_SHAPES]


@graded('layers', points=2)
def conv_forward_reference(conv_forward):
    for label, a in conv_cases(np.random.default_rng(1), randn):
        out, _ = conv_forward(a['x'], a['w'])
        expect_close(f"conv_forward out [{label}]", out, conv_reference(a['x'], a['w']))


@graded('layers', points=2)
def conv_backward_full_convolution(conv_forward, conv_backward):
    # dX[n, c] = sum_f W[f, c] *full dY[n, f];  dW[f, c] = sum_n X[n, c] *filt dY[n, f]
    rng = np.random.default_rng(2)
    for label, a in conv_cases(rng, randn):
        x, w = a['x'], a['w']
        out, cache = conv_forward(x, w)
        dy = randn(rng, *np.shape(out))
        dx, dw = conv_backward(dy, cache)
        (N, C), F = x.shape[:2], w.shape[0]
        full = np.array([[sum(full_convolution(dy[n, f], w[f, c]) for f in range(F))
                          for c in range(C)] for n in range(N)])
        filt = np.array([[sum(filter2d(x[n, c], dy[n, f]) for n in range(N))
                          for c in range(C)] for f in range(F)])
        expect_close(f"conv_backward dx vs full convolution [{label}]", dx, full)
        expect_close(f"conv_backward dw vs filtering [{label}]", dw, filt)


@graded('layers')
def conv_bad_shapes(conv_forward):
    x = np.zeros((2, 3, 5, 5))
    expect_value_error("conv_forward with x (2, 3, 5, 5), w (2, 4, 3, 3)",
                       lambda: conv_forward(x, np.zeros((2, 4, 3, 3))), 'w', 'x')
    expect_value_error("conv_forward with a 6x6 kernel on a 5x5 x",
                       lambda: conv_forward(x, np.zeros((2, 3, 6, 6))), 'w', 'x')
    expect_value_error("conv_forward with x (3, 5, 5)",
                       lambda: conv_forward(np.zeros((3, 5, 5)), np.zeros((2, 3, 3, 3))), 'x')


layer('layers', 'conv_forward', 'conv_backward', conv_cases, wrt=('x', 'w'),
      cache=lambda a, out: dict(x=a['x'], w=a['w']))


# ---- max pooling --------------------------------------------------------------------

def pool(ph, pw, stride):
    return dict(pool_height=ph, pool_width=pw, stride=stride)


@graded('layers', points=2)
def max_pool_forward_values(max_pool_forward):
    x = np.array([[1., 3., -2., -4.],
                  [5., 4., -1., -7.],
                  [-5., -2., 9., 8.],
                  [-6., -3., 3., 3.]])[None, None]
    out, _ = max_pool_forward(x, pool(2, 2, 2))
    expect_close("max_pool_forward out [4x4, pool=2x2 stride=2]", out, [[[[5., -1.], [-2., 9.]]]])


@graded('layers', points=2)
def max_pool_overlap(max_pool_forward, max_pool_backward):
    # 2x2 windows, stride 1: the 7 is the max of two windows and gets both gradients.
    x = np.array([[1., 5., 2.], [3., 4., 6.], [0., 7., 1.]])[None, None]
    out, cache = max_pool_forward(x, pool(2, 2, 1))
    expect_close("max_pool_forward out [3x3, pool=2x2 stride=1]", out, [[[[5., 6.], [7., 7.]]]])
    dx = max_pool_backward(np.array([[[[1., 2.], [3., 4.]]]]), cache)
    expect_close("max_pool_backward dx [3x3, pool=2x2 stride=1]", dx,
                 [[[[0., 1., 0.], [0., 0., 2.], [0., 7., 0.]]]])


@graded('layers', points=2)
def max_pool_ties(max_pool_forward, max_pool_backward):
    # Window 1 [[1, 3], [3, 0]]: first max in row-major order is at (0, 1), not (1, 0).
    # Window 2 all 3s: the gradient goes to its first entry (0, 2) only.
    x = np.array([[1., 3., 3., 3.], [3., 0., 3., 3.]])[None, None]
    _, cache = max_pool_forward(x, pool(2, 2, 2))
    dx = max_pool_backward(np.array([[[[1., 10.]]]]), cache)
    expect_close("max_pool_backward dx with ties", dx, [[[[0., 1., 10., 0.], [0., 0., 0., 0.]]]])


POOL_SHAPES = [(1, 1, 4, 4, 2, 2, 2), (2, 3, 5, 7, 3, 2, 2), (1, 2, 5, 5, 3, 3, 1),
               (2, 1, 6, 4, 2, 3, 1), (1, 1, 7, 5, 2, 2, 3)]   # N, C, H, W, ph, pw, stride


def max_pool_cases(rng):
    return [(f"N={N} C={C} H={H} W={W} pool={ph}x{pw} stride={s}",
             dict(x=distinct(rng, N, C, H, W), pool_param=pool(ph, pw, s)))
            for N, C, H, W, ph, pw, s in POOL_SHAPES]


@graded('layers', points=2)
def max_pool_forward_reference(max_pool_forward):
    for label, a in max_pool_cases(np.random.default_rng(1)):
        out, _ = max_pool_forward(a['x'], a['pool_param'])
        p = a['pool_param']
        expected = max_pool_reference(a['x'], p['pool_height'], p['pool_width'], p['stride'])
        expect_close(f"max_pool_forward out [{label}]", out, expected)


@graded('layers')
def max_pool_bad_shapes(max_pool_forward):
    expect_value_error("max_pool_forward with a 4x4 window on a 3x3 x",
                       lambda: max_pool_forward(np.zeros((1, 1, 3, 3)), pool(4, 4, 1)),
                       'pool_param', 'pool_height', 'pool_width', 'x')


layer('layers', 'max_pool_forward', 'max_pool_backward', max_pool_cases, wrt=('x',),
      cache=lambda a, out: dict(x=a['x'], pool_param=a['pool_param']))


# ---- softmax loss -------------------------------------------------------------------

@graded('layers', points=2)
def softmax_loss_values(softmax_loss):
    # Equal scores: p = 1/4 for every class, loss = log 4, dx = (p - onehot(y)) / N.
    loss, dx = softmax_loss(np.array([[1., 1., 1., 1.], [-3., -3., -3., -3.]]), np.array([0, 3]))
    expect_close("softmax_loss loss [equal scores, C=4]", loss, np.log(4))
    expect_close("softmax_loss dx [equal scores, C=4]", dx,
                 [[-0.375, 0.125, 0.125, 0.125], [0.125, 0.125, 0.125, -0.375]])
    # Scores [0, log 3]: p = [1/4, 3/4], loss = -log(3/4).
    loss, dx = softmax_loss(np.array([[0., np.log(3)]]), np.array([1]))
    expect_close("softmax_loss loss [scores 0, log 3]", loss, np.log(4 / 3))
    expect_close("softmax_loss dx [scores 0, log 3]", dx, [[0.25, -0.25]])
    # Large scores must not overflow: p = [1/2, 1/2].
    loss, _ = softmax_loss(np.array([[1000., 1000.], [-1000., -1000.]]), np.array([0, 1]))
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


@graded('layers')
def softmax_loss_bad_labels(softmax_loss):
    label_checks(softmax_loss, 'softmax_loss', np.zeros((3, 4)))


def scores_cases(rng):
    return [(f"N={N} C={C}", dict(x=randn(rng, N, C) / 2, y=rng.integers(C, size=N)))
            for N, C in [(1, 2), (4, 5), (3, 10)]]


layer('layers', 'softmax_loss', None, scores_cases, wrt=('x',))


# ---- convolution with stride, padding and bias (Part 2) -----------------------------

@graded('layers', points=2)
def conv2d_forward_values(conv2d_forward):
    # Defaults (b=None, stride=1, pad=0) are conv_forward.
    out, _ = conv2d_forward(X3, K2)
    expect_close("conv2d_forward out [defaults]", out, [[[[0., 2.], [6., 8.]]]])
    # pad=1 makes X3 5x5 with a zero border; stride=2 keeps positions (0|2, 0|2); b=10:
    # out[0, 0] = 0 + 0 - 1 + 10,  out[0, 1] = 0 + 0 - 3 + 10,
    # out[1, 0] = 0 + 2*4 - 7 + 10, out[1, 1] = 5 + 2*6 - 9 + 10.
    out, _ = conv2d_forward(X3, K2, b=np.array([10.]), stride=2, pad=1)
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


@graded('layers', points=2)
def conv2d_forward_reference(conv2d_forward):
    for label, a in conv2d_cases(np.random.default_rng(1), randn):
        out, _ = conv2d_forward(**a)
        expect_close(f"conv2d_forward out [{label}]", out, conv_reference(**a))


@graded('layers')
def conv2d_bad_shapes(conv2d_forward):
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((2, 3, 3, 3))
    expect_value_error("conv2d_forward with x (2, 3, 5, 5), w (2, 4, 3, 3)",
                       lambda: conv2d_forward(x, np.zeros((2, 4, 3, 3))), 'w', 'x')
    expect_value_error("conv2d_forward with F=2 filters and b (3,)",
                       lambda: conv2d_forward(x, w, b=np.zeros(3)), 'b')


layer('layers', 'conv2d_forward', 'conv2d_backward', conv2d_cases, wrt=('x', 'w', 'b'))


# ---- dropout (p = KEEP probability, inverted dropout) --------------------------------

@graded('layers')
def dropout_test_mode(dropout_forward, dropout_backward):
    x = np.array([[1., -2., 3.], [0.5, 0., -1.]])
    out, cache = dropout_forward(x, dict(p=0.5, mode='test', seed=0))
    expect_close("dropout_forward out in test mode (identity)", out, x)
    dx = dropout_backward(np.array([[1., 2., 3.], [4., 5., 6.]]), cache)
    expect_close("dropout_backward dx in test mode", dx, [[1., 2., 3.], [4., 5., 6.]])


@graded('layers', points=2)
def dropout_train_mode(dropout_forward, dropout_backward):
    x, p = np.ones((200, 50)), 0.3
    out, cache = dropout_forward(x, dict(p=p, mode='train', seed=1))
    out = np.asarray(out)
    kept = np.mean(out != 0)
    if not abs(kept - p) < 0.03:
        fail(f"dropout_forward p={p}: kept {kept:.3f} of the units, expected about {p} "
             "(p is the KEEP probability)")
    if not np.all((out == 0) | np.isclose(out, 1 / p)):
        fail(f"dropout_forward p={p}: kept units must be x / p (inverted dropout)")
    dout = np.random.default_rng(0).standard_normal(x.shape)
    expect_close(f"dropout_backward dx [p={p}]", dropout_backward(dout, cache), dout * out)
    again, _ = dropout_forward(x, dict(p=p, mode='train', seed=1))
    other, _ = dropout_forward(x, dict(p=p, mode='train', seed=2))
    if not np.array_equal(again, out):
        fail("dropout_forward: the same seed must give the same mask")
    if np.array_equal(other, out):
        fail("dropout_forward: seeds 1 and 2 gave the same mask")
    dropout_forward(x, dict(p=p, mode='train'))   # seed is optional
    out, _ = dropout_forward(x, dict(p=1.0, mode='train', seed=3))
    expect_close("dropout_forward out [p=1, train mode]", out, x)


def dropout_cases(rng):
    return [(f"x={'x'.join(map(str, s))} p={p}",
             dict(x=randn(rng, *s), dropout_param=dict(p=p, mode='train', seed=seed)))
            for s, p, seed in [((1, 7), 0.3, 0), ((4, 5), 0.5, 1), ((2, 3, 4, 5), 0.8, 2)]]


layer('layers', 'dropout_forward', 'dropout_backward', dropout_cases, wrt=('x',))


# ---- log-softmax and NLL loss (Part 2) ----------------------------------------------

@graded('layers', points=2)
def log_softmax_values(log_softmax_forward, log_softmax_backward):
    # [0, log 3] -> softmax [1/4, 3/4]; equal scores -> 1/C; large scores must not overflow.
    x = np.array([[0., np.log(3)]])
    out, cache = log_softmax_forward(x)
    expect_close("log_softmax_forward out [0, log 3]", out, [[np.log(0.25), np.log(0.75)]])
    # dx = dout - softmax * sum(dout)
    dx = log_softmax_backward(np.array([[1., 0.]]), cache)
    expect_close("log_softmax_backward dx [0, log 3]", dx, [[0.75, -0.75]])
    out, _ = log_softmax_forward(np.array([[2., 2., 2., 2.], [1000., 1000., 1000., 1000.]]))
    expect_close("log_softmax_forward out [equal scores, C=4]", out, np.full((2, 4), -np.log(4)))


def log_softmax_cases(rng):
    return [(f"N={N} C={C}", dict(x=randn(rng, N, C))) for N, C in [(1, 2), (3, 5), (2, 10)]]


layer('layers', 'log_softmax_forward', 'log_softmax_backward', log_softmax_cases, wrt=('x',))


@graded('layers')
def nll_loss_values(nll_loss):
    # loss = -(log_probs[0, 2] + log_probs[1, 0]) / 2 = (3 + 0.5) / 2
    loss, d = nll_loss(np.array([[-1., -2., -3.], [-0.5, -4., -2.]]), np.array([2, 0]))
    expect_close("nll_loss loss", loss, 1.75)
    expect_close("nll_loss dlog_probs", d, [[0., 0., -0.5], [-0.5, 0., 0.]])


@graded('layers')
def nll_loss_bad_labels(nll_loss):
    label_checks(nll_loss, 'nll_loss', -np.ones((3, 4)))


def nll_cases(rng):
    return [(f"N={N} C={C}", dict(log_probs=randn(rng, N, C), y=rng.integers(C, size=N)))
            for N, C in [(1, 3), (5, 4)]]


layer('layers', 'nll_loss', None, nll_cases, wrt=('log_probs',))


# ---- flatten (Part 2) ---------------------------------------------------------------

@graded('layers')
def flatten_values(flatten_forward, flatten_backward):
    x = np.arange(12.).reshape(2, 2, 3)
    out, cache = flatten_forward(x)
    expect_close("flatten_forward out [2x2x3]", out, np.arange(12.).reshape(2, 6))
    dx = flatten_backward(np.arange(12.).reshape(2, 6) * 10, cache)
    expect_close("flatten_backward dx [2x2x3]", dx, x * 10)
    out, _ = flatten_forward(np.ones((1, 3, 1, 2)))
    expect_close("flatten_forward out [N=1, 3x1x2]", out, np.ones((1, 6)))


def flatten_cases(rng):
    return [(f"x={'x'.join(map(str, s))}", dict(x=randn(rng, *s)))
            for s in [(1, 3, 1, 2), (2, 5), (3, 2, 3, 4)]]


layer('layers', 'flatten_forward', 'flatten_backward', flatten_cases, wrt=('x',))


# ====================================================================================
# rnn_layers.py
# ====================================================================================

@graded('rnn_layers', points=2)
def rnn_step_forward_values(rnn_step_forward):
    # x Wx = [0, 1], prev_h Wh = [-2, 1], so h_raw = [0, log(3) / 2] and tanh(h_raw) = [0, 1/2].
    x, prev_h = np.array([[1., 2., -1.]]), np.array([[1., -1.]])
    Wx = np.array([[1., 0.], [0., 1.], [1., 1.]])
    Wh = np.array([[0., 1.], [2., 0.]])
    b = np.array([2., -2. + np.log(3) / 2])
    next_h, _ = rnn_step_forward(x, prev_h, Wx, Wh, b)
    expect_close("rnn_step_forward next_h", next_h, [[0., 0.5]])


def rnn_step_cases(rng):
    return [(f"N={N} D={D} H={H}",
             dict(x=positive(rng, N, D), prev_h=positive(rng, N, H) / 2,
                  Wx=positive(rng, D, H) / (2 * D), Wh=positive(rng, H, H) / (2 * H),
                  b=positive(rng, H) / 4))
            for N, D, H in [(1, 3, 2), (3, 4, 5), (2, 1, 3)]]


@graded('rnn_layers')
def rnn_step_bad_shapes(rnn_step_forward):
    x, h = np.zeros((2, 3)), np.zeros((2, 4))
    expect_value_error("rnn_step_forward with x (2, 3), Wx (5, 4)",
                       lambda: rnn_step_forward(x, h, np.zeros((5, 4)), np.zeros((4, 4)),
                                                np.zeros(4)), 'Wx', 'x')


layer('rnn_layers', 'rnn_step_forward', 'rnn_step_backward', rnn_step_cases,
      wrt=('x', 'prev_h', 'Wx', 'Wh', 'b'),
      cache=lambda a, out: dict(Wx=a['Wx'], Wh=a['Wh'], x=a['x'], prev_h=a['prev_h'],
                                h_raw=a['x'] @ a['Wx'] + a['prev_h'] @ a['Wh'] + a['b']))


@graded('rnn_layers', points=2)
def rnn_forward_values(rnn_forward):
    # Time-major x (T=2, N=1, D=1), Wx = Wh = 1, b = 0, h0 = 0:
    # h1 = tanh(log(3)/2) = 1/2, h2 = tanh(log(3)/2 - 1/2 + h1) = 1/2.
    x = np.array([[[np.log(3) / 2]], [[np.log(3) / 2 - 0.5]]])
    h, _ = rnn_forward(x, np.zeros((1, 1)), np.ones((1, 1)), np.ones((1, 1)), np.zeros(1))
    expect_close("rnn_forward h [T=2 N=1 D=1 H=1]", h, [[[0.5]], [[0.5]]])
    rng = np.random.default_rng(0)
    h, _ = rnn_forward(randn(rng, 3, 2, 4), np.zeros((2, 5)), randn(rng, 4, 5),
                       randn(rng, 5, 5), np.zeros(5))
    if np.shape(h) != (3, 2, 5):
        fail(f"rnn_forward h [T=3 N=2 D=4 H=5]: shape {np.shape(h)}, expected (3, 2, 5) (T, N, H)")


@graded('rnn_layers')
def rnn_bad_shapes(rnn_forward):
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


layer('rnn_layers', 'rnn_forward', 'rnn_backward', rnn_cases, wrt=('x', 'h0', 'Wx', 'Wh', 'b'))


@graded('rnn_layers', points=2)
def word_embedding_values(word_embedding_forward, word_embedding_backward):
    # Word 2 appears twice: its rows of dW accumulate both gradients.
    W = np.array([[1., 2.], [3., 4.], [5., 6.]])
    out, cache = word_embedding_forward(np.array([[0, 2], [2, 1]]), W)
    expect_close("word_embedding_forward out", out, [[[1., 2.], [5., 6.]], [[5., 6.], [3., 4.]]])
    dW = word_embedding_backward(np.ones((2, 2, 2)), cache)
    expect_close("word_embedding_backward dW", dW, [[1., 1.], [1., 1.], [2., 2.]])


@graded('rnn_layers')
def word_embedding_bad_indices(word_embedding_forward):
    expect_value_error("word_embedding_forward with index 3 for V=3",
                       lambda: word_embedding_forward(np.array([[0, 3]]), np.zeros((3, 2))), 'x')


def word_embedding_cases(rng):
    return [(f"N={N} T={T} V={V} D={D}", dict(x=rng.integers(V, size=(N, T)), W=randn(rng, V, D)))
            for N, T, V, D in [(1, 1, 3, 2), (2, 4, 3, 5), (3, 2, 6, 1)]]


layer('rnn_layers', 'word_embedding_forward', 'word_embedding_backward', word_embedding_cases,
      wrt=('W',), cache=lambda a, out: dict(x=a['x'], W=a['W']))


@graded('rnn_layers')
def temporal_fc_values(temporal_fc_forward):
    x = np.array([[[1., 2.], [3., 4.]]])   # N=1, T=2, D=2
    w = np.array([[1., 0., 1.], [0., 1., -1.]])
    out, _ = temporal_fc_forward(x, w, np.array([0., 1., 0.]))
    expect_close("temporal_fc_forward out", out, [[[1., 3., -1.], [3., 5., -1.]]])


@graded('rnn_layers')
def temporal_fc_bad_shapes(temporal_fc_forward):
    expect_value_error("temporal_fc_forward with x (2, 3, 4), w (5, 6)",
                       lambda: temporal_fc_forward(np.zeros((2, 3, 4)), np.zeros((5, 6)),
                                                   np.zeros(6)), 'w', 'x')


def temporal_fc_cases(rng):
    return [(f"N={N} T={T} D={D} M={M}",
             dict(x=positive(rng, N, T, D), w=positive(rng, D, M), b=positive(rng, M)))
            for N, T, D, M in [(1, 1, 2, 3), (2, 3, 4, 5), (3, 2, 1, 2)]]


layer('rnn_layers', 'temporal_fc_forward', 'temporal_fc_backward', temporal_fc_cases,
      wrt=('x', 'w', 'b'), cache=lambda a, out: dict(x=a['x'], w=a['w'], b=a['b'], out=out))


@graded('rnn_layers', points=2)
def temporal_softmax_loss_values(temporal_softmax_loss):
    # Equal scores over V=4 words; 3 unmasked positions, N=2: loss = 3 log(4) / 2,
    # dx = (1/4 - onehot(y)) / N where the mask is on, 0 elsewhere.
    y = np.array([[0, 1, 2], [3, 0, 1]])
    mask = np.array([[True, True, False], [True, False, False]])
    loss, dx = temporal_softmax_loss(np.zeros((2, 3, 4)), y, mask)
    expect_close("temporal_softmax_loss loss", loss, 1.5 * np.log(4))
    expect_close("temporal_softmax_loss dx", dx,
                 np.where(mask[:, :, None], (0.25 - np.eye(4)[y]) / 2, 0.))


@graded('rnn_layers')
def temporal_softmax_loss_bad_inputs(temporal_softmax_loss):
    x, y = np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=int)
    expect_value_error("temporal_softmax_loss with a label 4 for V=4",
                       lambda: temporal_softmax_loss(x, y + 4, np.ones((2, 3), bool)), 'y')
    expect_value_error("temporal_softmax_loss with mask (2, 2) for N=2 T=3",
                       lambda: temporal_softmax_loss(x, y, np.ones((2, 2), bool)), 'mask')


def temporal_softmax_cases(rng):
    return [(f"N={N} T={T} V={V}", dict(x=randn(rng, N, T, V) / 2, y=rng.integers(V, size=(N, T)),
                                        mask=rng.random((N, T)) < 0.7))
            for N, T, V in [(1, 1, 2), (2, 4, 5), (3, 2, 3)]]


layer('rnn_layers', 'temporal_softmax_loss', None, temporal_softmax_cases, wrt=('x',))


# ---- LSTM (Part 2; signatures as in rnn_layers.py, the cs231n ones, time-major) ------

def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_step_reference(x, prev_h, prev_c, Wx, Wh, b):
    """a = x Wx + prev_h Wh + b; gates i, f, o, g = its four blocks of H columns, in order."""
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    return o * np.tanh(next_c), next_c


@graded('rnn_layers', points=2)
def lstm_step_forward_values(lstm_step_forward):
    # Zero weights, so a = b: i = sigmoid(0) = 1/2, f = o = sigmoid(log 3) = 3/4,
    # g = tanh(log(3)/2) = 1/2. With prev_c = (2 log(3) - 1)/3: next_c = 3/4 prev_c + 1/4
    # = log(3)/2 and next_h = 3/4 tanh(log(3)/2) = 3/8.
    b = np.array([0., np.log(3), np.log(3), np.log(3) / 2])
    next_h, next_c, _ = lstm_step_forward(np.ones((1, 1)), np.zeros((1, 1)),
                                          np.array([[(2 * np.log(3) - 1) / 3]]),
                                          np.zeros((1, 4)), np.zeros((1, 4)), b)
    expect_close("lstm_step_forward next_c", next_c, [[np.log(3) / 2]])
    expect_close("lstm_step_forward next_h", next_h, [[3 / 8]])


def lstm_step_cases(rng, draw=positive):
    return [(f"N={N} D={D} H={H}",
             dict(x=draw(rng, N, D), prev_h=draw(rng, N, H) / 2, prev_c=draw(rng, N, H) / 2,
                  Wx=draw(rng, D, 4 * H) / (2 * D), Wh=draw(rng, H, 4 * H) / (2 * H),
                  b=draw(rng, 4 * H) / 4))
            for N, D, H in [(1, 3, 2), (3, 4, 5), (2, 1, 3)]]


@graded('rnn_layers', points=2)
def lstm_step_forward_reference(lstm_step_forward):
    for label, a in lstm_step_cases(np.random.default_rng(1), randn):
        next_h, next_c, _ = lstm_step_forward(*a.values())
        expected_h, expected_c = lstm_step_reference(*a.values())
        expect_close(f"lstm_step_forward next_h [{label}]", next_h, expected_h)
        expect_close(f"lstm_step_forward next_c [{label}]", next_c, expected_c)


@graded('rnn_layers')
def lstm_step_bad_shapes(lstm_step_forward):
    x, h = np.zeros((2, 3)), np.zeros((2, 4))
    Wx, Wh, b = np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16)
    expect_value_error("lstm_step_forward with prev_h (2, 4), prev_c (2, 5)",
                       lambda: lstm_step_forward(x, h, np.zeros((2, 5)), Wx, Wh, b), 'prev_c')
    expect_value_error("lstm_step_forward with H=4 and Wx (3, 12)",
                       lambda: lstm_step_forward(x, h, h, np.zeros((3, 12)), Wh, b), 'Wx')


def lstm_step_as_pair(forward, backward):
    """lstm_step in the standard form: out = (next_h, next_c), dout = (dnext_h, dnext_c)."""
    def pair_forward(*args):
        next_h, next_c, cache = forward(*args)
        return (next_h, next_c), cache
    return pair_forward, lambda dout, cache: backward(*dout, cache)


layer('rnn_layers', 'lstm_step_forward', 'lstm_step_backward', lstm_step_cases,
      wrt=('x', 'prev_h', 'prev_c', 'Wx', 'Wh', 'b'), adapt=lstm_step_as_pair)


def lstm_cases(rng, draw=positive):
    return [(f"T={T} N={N} D={D} H={H}",
             dict(x=draw(rng, T, N, D), h0=draw(rng, N, H) / 2, Wx=draw(rng, D, 4 * H) / (2 * D),
                  Wh=draw(rng, H, 4 * H) / (2 * H), b=draw(rng, 4 * H) / 4))
            for T, N, D, H in [(1, 1, 2, 3), (3, 2, 4, 5), (4, 3, 2, 2)]]


@graded('rnn_layers', points=2)
def lstm_forward_reference(lstm_forward):
    # Time-major x (T, N, D); h[t] = the step on x[t], from (h0, c0 = 0).
    for label, a in lstm_cases(np.random.default_rng(1), randn):
        h, c, expected = a['h0'], np.zeros_like(a['h0']), []
        for x_t in a['x']:
            h, c = lstm_step_reference(x_t, h, c, a['Wx'], a['Wh'], a['b'])
            expected.append(h)
        expect_close(f"lstm_forward h [{label}]", lstm_forward(*a.values())[0], np.array(expected))


layer('rnn_layers', 'lstm_forward', 'lstm_backward', lstm_cases,
      wrt=('x', 'h0', 'Wx', 'Wh', 'b'))


# ---- additive (Bahdanau) attention (Part 2; signatures as in rnn_layers.py) -----------

def attention_reference(h, A, A_proj, W_h, v):
    """
    e[n, i] = v . tanh(h[n] W_h + A_proj[n, i]);  alpha[n] = softmax(e[n]);
    context[n] = alpha[n] A[n].
    """
    N, L, D = A.shape
    context, alpha = np.zeros((N, D)), np.zeros((N, L))
    for n in range(N):
        e = np.array([v @ np.tanh(h[n] @ W_h + A_proj[n, i]) for i in range(L)])
        alpha[n] = np.exp(e) / np.sum(np.exp(e))
        context[n] = alpha[n] @ A[n]
    return context, alpha


@graded('rnn_layers')
def attention_values(attention_forward):
    # v = 0: every position scores 0, so alpha is uniform and context is the mean of A.
    A = np.array([[[1., 2.], [3., 6.]]])
    (context, alpha), _ = attention_forward(np.ones((1, 1)), A, np.array([[1., -1.]]),
                                            np.eye(2), np.zeros(2))
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


@graded('rnn_layers', points=2)
def attention_forward_reference(attention_forward):
    for label, a in attention_cases(np.random.default_rng(1)):
        (context, alpha), _ = attention_forward(*a.values())
        A_proj = a['A'] @ a['W_a'] + (0 if a['b'] is None else a['b'])
        expected_context, expected_alpha = attention_reference(a['h'], a['A'], A_proj, a['W_h'], a['v'])
        expect_close(f"attention_forward alpha [{label}]", alpha, expected_alpha)
        expect_close(f"attention_forward context [{label}]", context, expected_context)


@graded('rnn_layers')
def attention_bad_shapes(attention_forward):
    h, A, W_h, v = np.zeros((2, 3)), np.zeros((2, 4, 5)), np.zeros((3, 6)), np.zeros(6)
    expect_value_error("attention_forward with A (2, 4, 5), W_a (4, 6)",
                       lambda: attention_forward(h, A, W_h, np.zeros((4, 6)), v), 'W_a', 'A')
    expect_value_error("attention_forward with h (2, 3), W_h (2, 6)",
                       lambda: attention_forward(h, A, np.zeros((2, 6)), np.zeros((5, 6)), v),
                       'W_h', 'h')


def attention_as_pair(forward, backward):
    """attention in the standard form: dout = (dcontext, dalpha) -> backward(dcontext, cache, dalpha)."""
    return forward, lambda dout, cache: backward(dout[0], cache, dout[1])


layer('rnn_layers', 'attention_forward', 'attention_backward', attention_cases,
      wrt=('h', 'A', 'W_h', 'W_a', 'v', 'b'), adapt=attention_as_pair)


def attention_step_cases(rng):
    # A_proj as a decoder computes it once per sequence: A W_a + b.
    return [(label, dict(h=a['h'], A=a['A'],
                         A_proj=a['A'] @ a['W_a'] + (0 if a['b'] is None else a['b']),
                         W_h=a['W_h'], v=a['v']))
            for label, a in attention_cases(rng)]


@graded('rnn_layers', points=2)
def attention_step_forward_reference(attention_step_forward):
    for label, a in attention_step_cases(np.random.default_rng(1)):
        (context, alpha), _ = attention_step_forward(*a.values())
        expected_context, expected_alpha = attention_reference(*a.values())
        expect_close(f"attention_step_forward alpha [{label}]", alpha, expected_alpha)
        expect_close(f"attention_step_forward context [{label}]", context, expected_context)


layer('rnn_layers', 'attention_step_forward', 'attention_step_backward', attention_step_cases,
      wrt=('h', 'A', 'A_proj', 'W_h', 'v'), adapt=attention_as_pair)


# ====================================================================================
# Running the tests
# ====================================================================================

MODULES = list(dict.fromkeys(t.module for t in REGISTRY))   # in order: layers first
GRADER_FILES = {os.path.abspath(__file__), os.path.abspath(gradient_check.__file__)}


@contextmanager
def time_limit(seconds):
    """Raise TimeoutError after `seconds` (Unix main thread only; elsewhere no limit)."""
    if not hasattr(signal, 'setitimer') or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def describe(error, directory):
    """One line on an exception: what, raised in which function, where in the graded files."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if os.path.abspath(f.filename) not in GRADER_FILES]
    if not frames:   # the grader itself choked on what a function returned
        line = traceback.extract_tb(error.__traceback__)[-1].lineno
        return f"{type(error).__name__}: {error} (checking the returned values, autograder.py:{line})"
    ours = [f for f in frames if os.path.dirname(os.path.abspath(f.filename)) == directory]
    where = (ours or frames)[-1]
    place = f"{frames[0].name}, {os.path.basename(where.filename)}:{where.lineno}"
    if isinstance(error, NotImplementedError):
        return f"not implemented (NotImplementedError in {place})"
    return f"{type(error).__name__}: {error} (in {place})"


def load_modules(directory):
    """
    Import the graded modules from `directory`, isolated from modules of the same names
    imported before (ours, or another target's).

    While importing, `directory` comes first on sys.path and the graded modules it lacks
    are blocked, so a target's `import layers` gets the target's layers.py or fails.

    Returns:
    - {module name: the module, None if there is no such file, or an error message}
    """
    directory = os.path.abspath(directory)
    present = {name: os.path.exists(os.path.join(directory, name + '.py')) for name in MODULES}
    shadowed = set(MODULES) | {f[:-3] for f in os.listdir(directory) if f.endswith('.py')}
    saved_modules = {n: sys.modules.pop(n) for n in shadowed if n in sys.modules}
    saved_path, saved_bytecode = sys.path[:], sys.dont_write_bytecode
    sys.path.insert(0, directory)
    sys.dont_write_bytecode = True   # leave no __pycache__ in a student's directory
    sys.modules.update({name: None for name in MODULES if not present[name]})   # blocked
    importlib.invalidate_caches()
    loaded = {}
    try:
        for name in MODULES:
            if not present[name]:
                loaded[name] = None
                continue
            try:
                with redirect_stdout(io.StringIO()), time_limit(TIME_LIMIT):
                    loaded[name] = importlib.import_module(name)
            except KeyboardInterrupt:
                raise
            except BaseException as e:
                loaded[name] = f"could not import {name}.py: " + (
                    f"{type(e).__name__}: {e}" if isinstance(e, SyntaxError) else describe(e, directory))
    finally:
        for name in [n for n in sys.modules if n in shadowed]:
            del sys.modules[name]
        sys.modules.update(saved_modules)
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_bytecode
    return loaded


def run_test(test, modules, directory=HERE, verbose=False):
    """Run one graded test against loaded modules; never raises (but for Ctrl-C)."""
    module = modules.get(test.module)
    if module is None:
        return Result(test, 0, 'skipped', f"{test.module}.py not found")
    if isinstance(module, str):
        return Result(test, 0, 'failed', module)
    missing = [f for f in test.functions if not callable(getattr(module, f, None))]
    if missing:
        return Result(test, 0, 'failed', f"{test.module}.py has no function {', '.join(missing)}")
    captured = io.StringIO()
    try:
        with redirect_stdout(captured), time_limit(TIME_LIMIT), np.errstate(all='ignore'):
            note = test.run(*(getattr(module, f) for f in test.functions))
        score, status, output = test.points, 'passed', note or ''
    except KeyboardInterrupt:
        raise
    except GradeFailure as e:
        score, status, output = 0, 'failed', str(e)
    except BaseException as e:
        score, status, output = 0, 'failed', describe(e, os.path.abspath(directory))
    if verbose and captured.getvalue():
        output += '\nprinted:\n' + captured.getvalue().rstrip()
    return Result(test, score, status, output)


# Part 1 of API.md: the homework's functions. `--contract` grades only tests of these,
# so a student's homework is not charged for our extensions (conv2d, dropout, LSTM, ...).
CONTRACT_FUNCTIONS = frozenset("""
    fc_forward fc_backward relu_forward relu_backward conv_forward conv_backward
    max_pool_forward max_pool_backward softmax_loss
    rnn_step_forward rnn_step_backward rnn_forward rnn_backward
    word_embedding_forward word_embedding_backward temporal_fc_forward temporal_fc_backward
    temporal_softmax_loss""".split())


def select(only=(), contract=False):
    """
    The registered tests whose name, module or functions contain one of the substrings
    (all tests if there are none); with contract=True, only tests that use nothing but
    Part-1 contract functions.
    """
    patterns = [p.strip() for item in only for p in item.split(',') if p.strip()]
    tests = [t for t in REGISTRY if not contract or CONTRACT_FUNCTIONS.issuperset(t.functions)]
    if not patterns:
        return tests
    return [t for t in tests
            if any(p in name for p in patterns for name in (t.name, t.module) + t.functions)]


def grade(directory=HERE, only=(), verbose=False, contract=False):
    """
    Grade the implementation in `directory`.

    Inputs:
    - directory: folder holding layers.py (and possibly rnn_layers.py).
    - only: substrings selecting tests by test, module or function name.
    - contract: grade only the Part-1 (homework) functions of API.md.

    Returns:
    - results: list of Result, in registry order.
    """
    modules = load_modules(directory)
    return [run_test(t, modules, directory, verbose) for t in select(only, contract)]


def summary(results):
    """Total score, the skipped modules and the failure count, as text lines."""
    counted = [r for r in results if r.status != 'skipped']
    lines = [f"{m}.py: module not found — skipped"
             for m in dict.fromkeys(r.test.module for r in results if r.status == 'skipped')]
    failed = sum(r.status == 'failed' for r in counted)
    lines.append(f"Total: {sum(r.score for r in counted)}/{sum(r.test.points for r in counted)}"
                 + (f"  ({failed} of {len(counted)} tests failed)" if failed else ''))
    return lines


def report(results, verbose=False):
    """The results as printed: one line per test, failure details indented below."""
    lines, module = [], None
    for r in results:
        if r.status == 'skipped':
            continue
        if r.test.module != module:
            module = r.test.module
            lines.append(f"{module}.py")
        lines.append(f"  {r.status[:4].upper()}  {r.test.name:<36} {r.score}/{r.test.points}")
        if r.output and (r.status == 'failed' or verbose):
            lines += ['        ' + line for line in r.output.splitlines()]
    return lines + summary(results)


def results_json(results, elapsed):
    """Gradescope's results.json contents; skipped modules are left out of max_score."""
    counted = [r for r in results if r.status != 'skipped']
    return {
        "score": sum(r.score for r in counted),
        "max_score": sum(r.test.points for r in counted),
        "execution_time": round(elapsed, 2),
        "output": '\n'.join(summary(results)),
        "visibility": "visible",
        "stdout_visibility": "visible",
        "tests": [{"name": r.test.name, "score": r.score, "max_score": r.test.points,
                   "status": r.status, "output": r.output, "visibility": "visible"}
                  for r in counted],
    }


def main(argv=None):
    """Command line entry point; returns the exit code (0 only if every graded test passed)."""
    parser = argparse.ArgumentParser(
        description="Grade the layer functions of layers.py (and rnn_layers.py) against API.md.")
    parser.add_argument('--target', metavar='DIR', default=HERE,
                        help="directory of the implementation to grade (default: ours)")
    parser.add_argument('--only', metavar='NAME', action='append', default=[],
                        help="run only tests whose test, module or function name contains NAME "
                             "(repeatable, or a comma-separated list)")
    parser.add_argument('--json', metavar='PATH', help="also write Gradescope results.json to PATH")
    parser.add_argument('--contract', action='store_true',
                        help="grade only the homework's Part-1 functions of API.md, not our "
                             "extensions (conv2d, dropout, log-softmax, LSTM, attention, ...)")
    parser.add_argument('-v', '--verbose', action='store_true',
                        help="show notes (worst rel errors) and printed output of every test")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.target):
        parser.error(f"--target {args.target}: not a directory")
    if not select(args.only, args.contract):
        parser.error(f"no test or function name contains any of {args.only}")

    print(f"Grading {os.path.abspath(args.target)}")
    start = time.perf_counter()
    results = grade(args.target, args.only, args.verbose, args.contract)
    print('\n'.join(report(results, args.verbose)))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results_json(results, time.perf_counter() - start), f, indent=2)
    counted = [r for r in results if r.status != 'skipped']
    if not counted:
        print("Nothing was graded: no graded module found in the target directory.")
    return 0 if counted and all(r.status == 'passed' for r in counted) else 1


# ------------------------------------------------------------------------------------
# pytest: `python -m pytest autograder.py` runs every graded test on our modules
# ------------------------------------------------------------------------------------

_our_modules = {}


def _as_pytest_function(graded_test):
    def run():
        if not _our_modules:
            _our_modules.update(load_modules(HERE))
        result = run_test(graded_test, _our_modules)
        if result.status == 'skipped':
            import pytest
            pytest.skip(result.output)
        if result.status != 'passed':
            raise GradeFailure(result.output)
    run.__name__ = run.__qualname__ = 'test_' + graded_test.name
    run.__doc__ = f"Graded test {graded_test.name} of {graded_test.module}.py on our modules."
    return run


for _graded_test in REGISTRY:
    globals()['test_' + _graded_test.name] = _as_pytest_function(_graded_test)
del _graded_test


if __name__ == '__main__':
    sys.exit(main())
