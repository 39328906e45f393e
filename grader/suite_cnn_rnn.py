"""
Graded tests of the course homework `cnn-rnn` (grader/assignments.py), by its contract and
no other: each test grades one student function or model method and is named after it.

The homework's rules, and what follows for the tests:
- Every forward returns (out, cache) and its backward takes that cache, whose layout the
  homework leaves to the student: a backward test calls the student's own forward for
  the cache and checks only the backward's gradients, so a wrong forward costs only the
  forward's tests.
- fc takes x (N, D_in); no rules on error messages or on keeping float32.
- Max-pool ties: any split of a window's gradient among its tied maxima (weights >= 0
  summing to 1) is right; the first-max routing of API.md is one of them.
- Inputs are never modified (dout included): each test checks the arguments of every
  call it makes, right after the call, and names the argument.
- Softmax-type losses are also tested at scores of +-1000 (their own small tests).
- The models are graded through their public interface with the grader's parameters
  set into `model.params`, against the models of grader/references.py, and they run
  with the grader's trusted layer functions (grader/trusted.py) in place of the
  student's layers.py / rnn_layers.py: a layer bug costs the layer's tests only.

Expected values come from grader/references.py; expected gradients are numeric gradients
of those references (grader/checks.py numeric_gradient_and_noise).
"""
import functools

import numpy as np

from grader import probes
from grader import references as ref
from grader.checks import (
    GradeFailure,
    THRESHOLD,
    hints_enabled,
    away_from_zero,
    describe_value,
    distinct,
    expect_close,
    fail,
    graded,
    numeric_gradient_and_noise,
    pair,
    positive,
    randn,
    rng,
)

from grader.runner import StudentError, Unavailable  # noqa: E402
from grader.sandbox import ChildLost  # noqa: E402

SUITE = 'cnn-rnn'


def homework(module, points, probe=None):
    """
    Register a graded test of the cnn-rnn suite. `probe`: None, or function(*functions) ->
    [probes.Probe], run only when the test fails (and hints are on for it): its hints
    (grader/probes.py) are added to the failure's message.
    """
    def register(test):
        if probe is None:
            return graded(module, points, suite=SUITE)(test)

        @functools.wraps(test)
        def run(*functions):
            try:
                return test(*functions)
            except (GradeFailure, StudentError) as failure:
                if not hints_enabled() or getattr(failure, 'not_implemented', False):
                    raise
                hints = probes.diagnose(run_probes(probe, functions))
                if not hints:
                    raise
                raise GradeFailure('\n'.join([str(failure)] + hints)) from None
        return graded(module, points, suite=SUITE)(run)
    return register


def run_probes(probe, functions):
    """The probes of a failing test; a probe that cannot finish (the submission's time is
    up, its process died) ends the probing with what was found so far."""
    found = []
    try:
        for item in probe(*functions):
            found.append(item)
    except (ChildLost, Unavailable):
        pass
    return found


# ------------------------------------------------------------------ calls and mutation

class Calls:
    """
    Calls the submission's functions with named arguments and checks, right after each
    call, that no argument sent so far has changed: a change is blamed on the call after
    which it appeared ("relu_backward modified dout", or "modified x, the input of
    relu_forward, through the cache"). A backward's own cache argument may change.
    """

    def __init__(self, submission):
        self.submission, self.names, self.reported = submission, {}, set()

    def __call__(self, function, blame=True, **arguments):
        """function(*arguments.values()); blame=False: what this call changes is another
        test's to judge (a backward test's call of the forward), only remembered."""
        value = function(*arguments.values())
        call = self.submission.calls[-1]
        self.names[call.id] = (function.name, list(arguments))
        self.check(function.name, blame)
        return value

    def check(self, caller, blame=True):
        problems = []
        for call, where, _, _ in self.submission.argument_changes():
            if (call.id, where) in self.reported:
                continue
            self.reported.add((call.id, where))
            if not blame:
                continue
            name, names = self.names.get(call.id, (call.name, []))
            argument = names[where] if isinstance(where, int) and where < len(names) else where
            if argument == 'cache':
                continue
            if argument is None:
                problems.append(f"after {caller}, the submission's process did not send back the "
                                f"arguments of {name} in the form they were sent")
            elif name == caller:
                problems.append(f"{caller} modified its input {argument}")
            else:
                problems.append(f"{caller} modified {argument}, the input of {name} (through "
                                f"the cache); a backward pass must not write into its cache")
        if problems:
            fail('\n'.join(problems) + " (inputs must be left unchanged: work on a copy)")


def gradient_failures(function, label, grads, expected):
    """Compare gradients {name: value} with {name: (numeric gradient, noise)}; collect failures."""
    failures = []
    for name, (grad, noise) in expected.items():
        try:
            expect_close(f"{function} d{name} [{label}]", grads[name], grad, noise=noise)
        except GradeFailure as e:
            failures.append(str(e))
    if failures:
        fail('\n'.join(failures))


def numeric(reference, args, wrt, dout=None):
    """{name: (numeric gradient, noise)} of reference(**args) (times dout) for each name in wrt."""
    args = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    f = (lambda _: reference(**args)) if dout is None else (lambda _: np.ravel(reference(**args)))
    flat_dout = None if dout is None else np.ravel(dout)
    return {name: numeric_gradient_and_noise(f, args[name], flat_dout) for name in wrt}


def forward_values(calls, forward, reference, cases):
    """The student's forward on each (label, args) case against the reference's output."""
    for label, args in cases:
        out, _ = pair(forward.name, calls(forward, **copies(args)))
        expect_close(f"{forward.name} out [{label}]", out, reference(**args))


def backward_case(calls, forward, backward, reference, label, args, wrt, generator):
    """
    The student's backward on the cache of the student's own forward, against the numeric
    gradient of the reference; the forward's output itself is not judged here.
    """
    ref_out = reference(**args)
    dout = positive(generator, *np.shape(ref_out))
    try:
        _, cache = pair(forward.name, calls(forward, blame=False, **copies(args)))
    except GradeFailure as e:
        fail(f"{backward.name} [{label}] needs the cache of your {forward.name}, which failed: {e}")
    result = calls(backward, dout=dout.copy(), cache=cache)
    grads = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    if len(grads) != len(wrt):
        fail(f"{backward.name} returned {len(grads)} value{'s' * (len(grads) != 1)}, expected "
             f"{len(wrt)} ({', '.join('d' + n for n in wrt)})")
    gradient_failures(backward.name, label, dict(zip(wrt, grads)), numeric(reference, args, wrt, dout))


def copies(args):
    return {k: v.copy() if isinstance(v, np.ndarray) else dict(v) if isinstance(v, dict) else v
            for k, v in args.items()}


# ------------------------------------------------------------------------------ probes
# When a layer's test fails, its function runs again on a base case and on the same case
# with one factor changed (grader/probes.py turns what differs into a hint). The probes'
# calls skip the mutation checks: a mutation has its own message already.

def matches(got, expected):
    try:
        expect_close('probe', got, expected)
        return True
    except GradeFailure:
        return False


def probe_forward(forward, reference, label, args):
    factors, expected = probes.array_factors(args), reference(**args)
    try:
        out, _ = pair(forward.name, forward(*copies(args).values()))
    except (StudentError, GradeFailure) as e:
        return probes.Probe(label, factors, False, 'out', None, expected, type(e).__name__)
    ok = matches(out, expected)
    return probes.Probe(label, factors, ok, 'out', out, expected)


def probe_backward(forward, backward, reference, wrt, generator, label, args):
    factors = probes.array_factors(args)
    dout = positive(generator, *np.shape(reference(**args)))
    try:
        _, cache = pair(forward.name, forward(*copies(args).values()))
        result = backward(dout.copy(), cache)
    except (StudentError, GradeFailure) as e:
        return probes.Probe(label, factors, False, 'gradients', error=type(e).__name__)
    grads = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    if len(grads) != len(wrt):
        return probes.Probe(label, factors, False, 'gradients')
    expected = numeric(reference, args, wrt, dout)
    for name, grad in zip(wrt, grads):
        if not matches_numeric(grad, *expected[name]):
            return probes.Probe(label, factors, False, f"d{name}", grad, expected[name][0])
    return probes.Probe(label, factors, True)


def matches_numeric(grad, value, noise):
    try:
        expect_close('probe', grad, value, noise=noise)
        return True
    except GradeFailure:
        return False


def probe_loss(loss_fn, reference, label, args):
    factors = probes.array_factors(args)
    expected_loss = reference(**args)
    try:
        loss, dx = pair(loss_fn.name, loss_fn(*copies(args).values()))
    except (StudentError, GradeFailure) as e:
        return probes.Probe(label, factors, False, 'loss', None, expected_loss, type(e).__name__)
    if not matches(loss, expected_loss):
        return probes.Probe(label, factors, False, 'loss', loss, expected_loss)
    value, noise = numeric(reference, args, ('x',))['x']
    if not matches_numeric(dx, value, noise):
        return probes.Probe(label, factors, False, 'dx', dx, value)
    return probes.Probe(label, factors, True)


def variants(base, changes):
    """[(label, shape parameters)]: the base case, then the base with one factor changed."""
    return [(f"base ({describe_case(base)})", base)] + [
        (what, {**base, **change}) for what, change in changes]


def describe_case(case):
    return ' '.join(f"{k}={v}" for k, v in case.items() if k != 'large')


def layer_probes(kind, build, base, changes, reference, wrt=()):
    """A probe function for a test: runs `kind` ('forward', 'backward' or 'loss') on the
    base case and its variants, each built by build(generator, **shape)."""
    def run(*functions):
        generator = rng(f"probes {functions[-1].name}")
        for label, shape in variants(base, changes):
            args = build(generator, **shape)
            if kind == 'forward':
                yield probe_forward(functions[0], reference, label, args)
            elif kind == 'backward':
                yield probe_backward(functions[0], functions[1], reference, wrt, generator, label, args)
            else:
                yield probe_loss(functions[0], reference, label, args)
    return run


def fc_build(generator, N, D, M):
    return dict(x=positive(generator, N, D), w=positive(generator, D, M), b=positive(generator, M))


FC_PROBES = dict(build=fc_build, base=dict(N=3, D=5, M=4), changes=[('N=1', dict(N=1))],
                 reference=ref.fc)


def relu_build(generator, N, D):
    return dict(x=away_from_zero(generator, N, D))


RELU_PROBES = dict(build=relu_build, base=dict(N=3, D=4), changes=[('N=1', dict(N=1))],
                   reference=ref.relu)


def conv_build(generator, N, C, H, W, F, HH, WW):
    return dict(x=positive(generator, N, C, H, W), w=positive(generator, F, C, HH, WW))


CONV_PROBES = dict(build=conv_build, base=dict(N=2, C=2, H=5, W=5, F=2, HH=2, WW=2),
                   changes=[('C=1', dict(C=1)), ('N=1', dict(N=1)), ('F=1', dict(F=1)),
                            ('non-square input', dict(W=7)), ('non-square kernel', dict(WW=3))],
                   reference=ref.conv)


def pool_build(generator, N, C, H, W, ph, pw, s):
    return dict(x=distinct(generator, N, C, H, W), pool_param=pool(ph, pw, s))


POOL_PROBES = dict(build=pool_build, base=dict(N=2, C=3, H=6, W=6, ph=2, pw=2, s=2),
                   changes=[('C=1', dict(C=1)), ('N=1', dict(N=1)), ('non-square input', dict(W=8)),
                            ('non-square window', dict(pw=3, s=3)),
                            ('overlapping windows', dict(ph=3, pw=3, s=1))],
                   reference=ref.max_pool)


def scores_build(generator, N, C, large=False):
    x = large_scores(generator, N, C) if large else randn(generator, N, C) / 2
    return dict(x=x, y=generator.integers(C, size=N))


SOFTMAX_PROBES = dict(build=scores_build, base=dict(N=4, C=5),
                      changes=[('N=1', dict(N=1)), ('scores near +-1000', dict(large=True))],
                      reference=ref.softmax_loss)


def temporal_fc_build(generator, N, T, D, M):
    return dict(x=positive(generator, N, T, D), w=positive(generator, D, M), b=positive(generator, M))


TEMPORAL_FC_PROBES = dict(build=temporal_fc_build, base=dict(N=2, T=3, D=4, M=5),
                          changes=[('N=1', dict(N=1)), ('T=1', dict(T=1))], reference=ref.temporal_fc)


def temporal_scores_build(generator, N, T, V, large=False):
    mask = generator.random((N, T)) < 0.7
    mask[0, 0] = True
    x = large_scores(generator, N, T, V) if large else randn(generator, N, T, V) / 2
    return dict(x=x, y=generator.integers(V, size=(N, T)), mask=mask)


TEMPORAL_SOFTMAX_PROBES = dict(
    build=temporal_scores_build, base=dict(N=2, T=3, V=5),
    changes=[('N=1', dict(N=1)), ('T=1', dict(T=1)), ('scores near +-1000', dict(large=True))],
    reference=ref.temporal_softmax_loss)


# ---- fully connected ----------------------------------------------------------------

FC_SHAPES = [(1, 3, 4), (3, 5, 3), (2, 7, 1), (4, 4, 5), (5, 1, 2)]   # N, D, M


def fc_cases(generator):
    return [(f"N={N} D={D} M={M}", dict(x=positive(generator, N, D), w=positive(generator, D, M),
                                         b=positive(generator, M)))
            for N, D, M in FC_SHAPES]


@homework('layers', 3, probe=layer_probes('forward', **FC_PROBES))
def fc_forward(fc_forward):
    calls = Calls(fc_forward.submission)
    # rows [1, 2] and [3, -1]: out = x w + b
    x = np.array([[1., 2.], [3., -1.]])
    w = np.array([[1., 0., -1.], [2., 1., 0.]])
    b = np.array([0.5, -1., 2.])
    out, _ = pair('fc_forward', calls(fc_forward, x=x, w=w, b=b))
    expect_close("fc_forward out [2x2 example]", out, [[5.5, 1., 1.], [1.5, -2., -1.]])
    forward_values(calls, fc_forward, ref.fc, fc_cases(rng('fc_forward')))


@homework('layers', 3, probe=layer_probes('backward', wrt=('x', 'w', 'b'), **FC_PROBES))
def fc_backward(fc_forward, fc_backward):
    calls, generator = Calls(fc_forward.submission), rng('fc_backward')
    for label, args in fc_cases(generator):
        backward_case(calls, fc_forward, fc_backward, ref.fc, label, args, ('x', 'w', 'b'), generator)


# ---- ReLU ---------------------------------------------------------------------------

def relu_cases(generator):
    return [(f"x={'x'.join(map(str, s))}", dict(x=away_from_zero(generator, *s)))
            for s in [(1, 5), (3, 4), (2, 3, 4, 5)]]


@homework('layers', 2, probe=layer_probes('forward', **RELU_PROBES))
def relu_forward(relu_forward):
    calls = Calls(relu_forward.submission)
    out, _ = pair('relu_forward', calls(relu_forward, x=np.array([[-2., -0.5, 0., 0.5, 3.]])))
    expect_close("relu_forward out [example]", out, [[0., 0., 0., 0.5, 3.]])
    forward_values(calls, relu_forward, ref.relu, relu_cases(rng('relu_forward')))


@homework('layers', 2, probe=layer_probes('backward', wrt=('x',), **RELU_PROBES))
def relu_backward(relu_forward, relu_backward):
    calls, generator = Calls(relu_forward.submission), rng('relu_backward')
    for label, args in relu_cases(generator):
        backward_case(calls, relu_forward, relu_backward, ref.relu, label, args, ('x',), generator)


# ---- convolution (filtering, stride 1, no padding, no bias) -------------------------

CONV_SHAPES = [(1, 1, 3, 3, 1, 2, 2), (2, 3, 5, 7, 2, 2, 3), (1, 2, 4, 4, 3, 1, 1),
               (3, 1, 6, 5, 1, 3, 2), (2, 2, 5, 4, 2, 3, 3), (1, 3, 7, 6, 2, 4, 2)]
# N, C, H, W, F, HH, WW: N = 1, C = 1, F = 1, non-square inputs and kernels, 1x1 kernels


def conv_cases(generator):
    return [(f"N={N} C={C} H={H} W={W} F={F} k={HH}x{WW}",
             dict(x=positive(generator, N, C, H, W), w=positive(generator, F, C, HH, WW)))
            for N, C, H, W, F, HH, WW in CONV_SHAPES]


@homework('layers', 5, probe=layer_probes('forward', **CONV_PROBES))
def conv_forward(conv_forward):
    calls = Calls(conv_forward.submission)
    # Y[i, j] = X[i, j] + 2 X[i, j+1] - X[i+1, j+1]: filtering, the kernel is not flipped
    x = np.array([[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]])[None, None]
    w = np.array([[1., 2.], [0., -1.]])[None, None]
    out, _ = pair('conv_forward', calls(conv_forward, x=x, w=w))
    expect_close("conv_forward out [3x3 input, 2x2 kernel example]", out, [[[[0., 2.], [6., 8.]]]])
    forward_values(calls, conv_forward, ref.conv, conv_cases(rng('conv_forward')))


@homework('layers', 5, probe=layer_probes('backward', wrt=('x', 'w'), **CONV_PROBES))
def conv_backward(conv_forward, conv_backward):
    calls, generator = Calls(conv_forward.submission), rng('conv_backward')
    for label, args in conv_cases(generator):
        backward_case(calls, conv_forward, conv_backward, ref.conv, label, args, ('x', 'w'), generator)


# ---- max pooling --------------------------------------------------------------------

def pool(ph, pw, stride):
    return dict(pool_height=ph, pool_width=pw, stride=stride)


POOL_SHAPES = [(1, 1, 4, 4, 2, 2, 2), (2, 3, 5, 7, 3, 2, 2), (1, 2, 5, 5, 3, 3, 1),
               (2, 1, 6, 4, 2, 3, 1), (1, 1, 7, 5, 2, 2, 3), (3, 4, 6, 8, 2, 2, 2)]
# N, C, H, W, pool height, pool width, stride: C > 1, non-square, overlapping windows


def max_pool_cases(generator):
    return [(f"N={N} C={C} H={H} W={W} pool={ph}x{pw} stride={s}",
             dict(x=distinct(generator, N, C, H, W), pool_param=pool(ph, pw, s)))
            for N, C, H, W, ph, pw, s in POOL_SHAPES]


@homework('layers', 4, probe=layer_probes('forward', **POOL_PROBES))
def max_pool_forward(max_pool_forward):
    calls = Calls(max_pool_forward.submission)
    x = np.array([[1., 3., -2., -4.],
                  [5., 4., -1., -7.],
                  [-5., -2., 9., 8.],
                  [-6., -3., 3., 3.]])[None, None]
    out, _ = pair('max_pool_forward', calls(max_pool_forward, x=x, pool_param=pool(2, 2, 2)))
    expect_close("max_pool_forward out [4x4 example, pool=2x2 stride=2]", out,
                 [[[[5., -1.], [-2., 9.]]]])
    forward_values(calls, max_pool_forward, ref.max_pool, max_pool_cases(rng('max_pool_forward')))


@homework('layers', 4, probe=layer_probes('backward', wrt=('x',), **POOL_PROBES))
def max_pool_backward(max_pool_forward, max_pool_backward):
    # distinct values (no ties): every window has one max, which gets its gradient;
    # overlapping windows (stride < pool) add up
    calls, generator = Calls(max_pool_forward.submission), rng('max_pool_backward')
    for label, args in max_pool_cases(generator):
        dout = positive(generator, *ref.max_pool(**args).shape)
        _, cache = pair('max_pool_forward', calls(max_pool_forward, blame=False, **copies(args)))
        dx = calls(max_pool_backward, dout=dout.copy(), cache=cache)
        expect_close(f"max_pool_backward dx [{label}]", dx,
                     ref.max_pool_backward(args['x'], args['pool_param'], dout))


@homework('layers', 1)
def max_pool_backward_ties(max_pool_forward, max_pool_backward):
    """
    Windows with tied maxima (values rounded, as after a ReLU), not overlapping: each
    window's gradient may be split among its tied maxima in any proportions >= 0 that
    sum to 1; every other entry gets 0.
    """
    calls, generator = Calls(max_pool_forward.submission), rng('max_pool_backward_ties')
    for shape, p in [((2, 3, 6, 6), pool(2, 2, 2)), ((1, 2, 7, 5), pool(3, 2, 3)),
                     ((1, 1, 2, 4), pool(2, 2, 2))]:
        x = np.maximum(np.round(randn(generator, *shape)), 0)
        if shape == (1, 1, 2, 4):
            x = np.array([[[[1., 3., 3., 3.], [3., 0., 3., 3.]]]])
        label = f"x={'x'.join(map(str, shape))} pool={p['pool_height']}x{p['pool_width']} stride={p['stride']}"
        dout = positive(generator, *ref.max_pool(x, p).shape)
        _, cache = pair('max_pool_forward', calls(max_pool_forward, blame=False, x=x.copy(),
                                                  pool_param=dict(p)))
        dx = calls(max_pool_backward, dout=dout.copy(), cache=cache)
        check_tie_split(f"max_pool_backward dx with ties [{label}]", x, p, dout, dx)


def check_tie_split(what, x, p, dout, dx):
    from grader.checks import as_array
    dx = as_array(what, dx, x.shape)   # the shape is checked before dx is converted
    if dx.shape != x.shape:
        fail(f"{what}: shape {dx.shape}, expected {x.shape}")
    ph, pw, s = p['pool_height'], p['pool_width'], p['stride']
    routed = np.zeros(x.shape, dtype=bool)
    for n, c, i, j in np.ndindex(*dout.shape):
        window = (n, c, slice(i * s, i * s + ph), slice(j * s, j * s + pw))
        is_max = x[window] == x[window].max()
        routed[window] |= is_max
        got = dx[window][is_max]
        if not (np.all(got >= -1e-12 * dout[n, c, i, j])
                and abs(got.sum() - dout[n, c, i, j]) <= 1e-9 * dout[n, c, i, j]):
            fail(f"{what}: window ({n}, {c}, {i}, {j}) with maxima {x[window][is_max].tolist()}: "
                 f"its tied maxima got {np.round(got, 6).tolist()}, which should be >= 0 and sum "
                 f"to its gradient {dout[n, c, i, j]:.6g}")
    stray = np.abs(dx[~routed])
    if stray.size and stray.max() > 1e-12 * np.abs(dout).max():
        fail(f"{what}: entries that are no window's maximum got gradient (up to {stray.max():.2g})")


# ---- softmax loss -------------------------------------------------------------------

def loss_case(calls, loss_fn, reference, label, args, wrt):
    """(loss, dx) of the student's loss against the reference and its numeric gradient."""
    loss, dx = pair(loss_fn.name, calls(loss_fn, **copies(args)))
    expect_close(f"{loss_fn.name} loss [{label}]", loss, reference(**args))
    gradient_failures(loss_fn.name, label, {wrt: dx}, numeric(reference, args, (wrt,)))


def scores_cases(generator):
    return [(f"N={N} C={C}", dict(x=randn(generator, N, C) / 2, y=generator.integers(C, size=N)))
            for N, C in [(1, 2), (4, 5), (3, 10), (6, 3), (2, 1)]]


@homework('layers', 3, probe=layer_probes('loss', **SOFTMAX_PROBES))
def softmax_loss(softmax_loss):
    calls = Calls(softmax_loss.submission)
    # equal scores: p = 1/4 for every class, loss = log 4, dx = (p - onehot(y)) / N
    loss, dx = pair('softmax_loss', calls(softmax_loss, x=np.ones((2, 4)), y=np.array([0, 3])))
    expect_close("softmax_loss loss [equal scores, C=4]", loss, np.log(4))
    expect_close("softmax_loss dx [equal scores, C=4]", dx,
                 [[-0.375, 0.125, 0.125, 0.125], [0.125, 0.125, 0.125, -0.375]])
    for label, args in scores_cases(rng('softmax_loss')):
        loss_case(calls, softmax_loss, ref.softmax_loss, label, args, 'x')


def large_scores(generator, *shape):
    """Scores near +1000 in some rows and -1000 in others, a few units apart within a row:
    exp overflows (or underflows to 0 for the whole row) unless the row's max is subtracted."""
    rows = np.where(generator.random(shape[:-1]) < 0.5, 1000.0, -1000.0)
    return rows[..., None] + 2 * randn(generator, *shape)


@homework('layers', 1, probe=layer_probes('loss', **SOFTMAX_PROBES))
def softmax_loss_large_scores(softmax_loss):
    calls, generator = Calls(softmax_loss.submission), rng('softmax_loss_large_scores')
    for N, C in [(4, 5), (1, 3)]:
        args = dict(x=large_scores(generator, N, C), y=generator.integers(C, size=N))
        loss_case(calls, softmax_loss, ref.softmax_loss, f"N={N} C={C}, scores near +-1000",
                  args, 'x')


# ---- temporal fully connected -------------------------------------------------------

TEMPORAL_SHAPES = [(1, 1, 3, 2), (2, 3, 4, 5), (3, 2, 1, 4), (2, 5, 3, 3)]   # N, T, D, M


def temporal_fc_cases(generator):
    return [(f"N={N} T={T} D={D} M={M}",
             dict(x=positive(generator, N, T, D), w=positive(generator, D, M), b=positive(generator, M)))
            for N, T, D, M in TEMPORAL_SHAPES]


@homework('rnn_layers', 2, probe=layer_probes('forward', **TEMPORAL_FC_PROBES))
def temporal_fc_forward(temporal_fc_forward):
    calls = Calls(temporal_fc_forward.submission)
    forward_values(calls, temporal_fc_forward, ref.temporal_fc, temporal_fc_cases(rng('temporal_fc_forward')))


@homework('rnn_layers', 3, probe=layer_probes('backward', wrt=('x', 'w', 'b'), **TEMPORAL_FC_PROBES))
def temporal_fc_backward(temporal_fc_forward, temporal_fc_backward):
    calls, generator = Calls(temporal_fc_forward.submission), rng('temporal_fc_backward')
    for label, args in temporal_fc_cases(generator):
        backward_case(calls, temporal_fc_forward, temporal_fc_backward, ref.temporal_fc, label,
                      args, ('x', 'w', 'b'), generator)


# ---- temporal softmax loss ----------------------------------------------------------

def temporal_scores_cases(generator, draw=None):
    cases = []
    for N, T, V in [(1, 1, 3), (2, 4, 5), (3, 2, 6), (4, 3, 2)]:
        mask = generator.random((N, T)) < 0.7
        mask[0, 0] = True                  # at least one word counts
        x = draw(generator, N, T, V) if draw else randn(generator, N, T, V) / 2
        cases.append((f"N={N} T={T} V={V}, {int(mask.sum())} of {N * T} words unmasked",
                      dict(x=x, y=generator.integers(V, size=(N, T)), mask=mask)))
    return cases


@homework('rnn_layers', 3, probe=layer_probes('loss', **TEMPORAL_SOFTMAX_PROBES))
def temporal_softmax_loss(temporal_softmax_loss):
    calls = Calls(temporal_softmax_loss.submission)
    for label, args in temporal_scores_cases(rng('temporal_softmax_loss')):
        loss_case(calls, temporal_softmax_loss, ref.temporal_softmax_loss, label, args, 'x')


@homework('rnn_layers', 1, probe=layer_probes('loss', **TEMPORAL_SOFTMAX_PROBES))
def temporal_softmax_loss_large_scores(temporal_softmax_loss):
    calls, generator = Calls(temporal_softmax_loss.submission), rng('temporal_softmax_loss_large')
    for label, args in temporal_scores_cases(generator, large_scores)[1:3]:
        loss_case(calls, temporal_softmax_loss, ref.temporal_softmax_loss,
                  label + ", scores near +-1000", args, 'x')


# ------------------------------------------------------------------------------ models

def trusted_view(cls):
    """The student's model class, from its file imported with the grader's trusted layer
    functions in place of the student's layers.py / rnn_layers.py ones."""
    from grader.trusted import TRUSTED
    return cls.submission.function(cls.module, cls.name, trusted=TRUSTED)


def model_params(submission, model, label, shapes):
    """The model's params dict (a reference into the child), checked against `shapes`."""
    params = submission.attribute(model, 'params')
    if not isinstance(params, dict):
        fail(f"{label}: model.params is {describe_value(params)}, expected a dict")
    missing = [k for k in shapes if k not in params]
    extra = [k for k in params if k not in shapes]
    if missing or extra:
        fail(f"{label}: model.params has keys {sorted(map(str, params))}, expected "
             f"{sorted(shapes)}" + (f" (missing {', '.join(missing)})" if missing else "")
             + (f" (unexpected {', '.join(map(str, extra))})" if extra else ""))
    for key, shape in shapes.items():
        shape_now = np.shape(params[key]) if isinstance(params[key], np.ndarray) else None
        if shape_now != tuple(shape):
            fail(f"{label}: params[{key!r}] has shape {shape_now}, expected {tuple(shape)}")
    return params


def expect_model_inputs_unchanged(submission, method_name, names):
    """No loss/sample call of this test changed the inputs it was given (X, y, ...)."""
    problems = []
    for call, where, _, _ in submission.argument_changes():
        if call.name.endswith('__setitem__'):
            continue
        argument = names[where] if isinstance(where, int) and where < len(names) else where
        problems.append(f"{method_name} modified its input {argument}" if argument is not None else
                        f"after {method_name}, the submission's process did not send back its "
                        f"arguments in the form they were sent")
    if problems:
        fail('\n'.join(dict.fromkeys(problems)) + " (inputs must be left unchanged)")


def set_params(submission, params, values):
    for key, value in values.items():
        submission.method(params, '__setitem__', key, value.copy())


def check_init_statistics(label, params, weight_scale, weights, biases):
    """Biases 0; weights Gaussian with std weight_scale (checked where there are >= 400)."""
    for key in biases:
        if np.any(params[key] != 0):
            fail(f"{label}: {key} must start at 0")
    for key in weights:
        w = np.asarray(params[key], dtype=np.float64)
        if w.size >= 400:
            std = w.std()
            if not abs(std / weight_scale - 1) < 0.2:
                fail(f"{label}: {key} has standard deviation {std:.3g}, expected weight_scale = "
                     f"{weight_scale:g} (Gaussian weights)")


def scores_case(submission, model, params, label, class_name, reference, values, X):
    """Set the params, then model.loss(X) (no labels) must return the reference's scores."""
    set_params(submission, params, values)
    scores = submission.method(model, 'loss', X.copy())
    expect_close(f"{class_name}.loss(X) scores [{label}]", scores, reference(values, X))
    expect_model_inputs_unchanged(submission, f"{class_name}.loss", ('X',))


def input_names(method_name):
    return ('features', 'captions') if method_name.startswith('Captioning') else ('X', 'y')


def model_loss_case(submission, model, params, label, method_name, reference, values, inputs,
                    wrt_names):
    """
    Set the params, run model.loss(*inputs) -> (loss, grads), and compare with the
    reference model's loss and the numeric gradient of that loss in each parameter.
    """
    set_params(submission, params, values)
    result = submission.method(model, 'loss', *[v.copy() for v in inputs])
    loss, grads = pair(method_name, result)
    expected_loss = reference(values, *inputs)
    expect_close(f"{method_name} loss [{label}]", loss, expected_loss)
    if not isinstance(grads, dict):
        fail(f"{method_name} [{label}]: grads is {describe_value(grads)}, expected a dict")
    if set(map(str, grads)) != set(values):
        fail(f"{method_name} [{label}]: grads has keys {sorted(map(str, grads))}, expected the "
             f"keys of params {sorted(values)}")
    expect_model_inputs_unchanged(submission, method_name, input_names(method_name))
    expected = {}
    work = {k: v.copy() for k, v in values.items()}
    for name in wrt_names:
        expected[name] = numeric_gradient_and_noise(lambda _: reference(work, *inputs), work[name])
    gradient_failures(method_name, label, grads, expected)


# ---- probes of the models: built with their default sizes and with others

# (input_dim, filter_size) of the probes: the default, then even and odd conv outputs
CONVNET_PROBE_SIZES = [(None, None), ((1, 12, 12), 3), ((2, 9, 9), 2), ((1, 12, 12), 2),
                       ((1, 10, 9), 2)]


def convnet_probes(ConvNet):
    """ConvNet built with its default sizes and with others (conv outputs even and odd):
    are its parameter shapes right?"""
    submission, cls = ConvNet.submission, trusted_view(ConvNet)
    for input_dim, k in CONVNET_PROBE_SIZES:
        default = input_dim is None
        input_dim, k = input_dim or (1, 28, 28), k or 7
        F, H, C = (32, 100, 10) if default else (2, 5, 3)
        conv_h, conv_w = input_dim[1] - k + 1, input_dim[2] - k + 1
        factors = {'default sizes': default, 'odd conv output': conv_h % 2 == 1 or conv_w % 2 == 1}
        label = 'default sizes' if default else f"input_dim={input_dim} filter_size={k}"
        try:
            model = (cls(dtype=np.float64) if default else
                     cls(input_dim=input_dim, num_filters=F, filter_size=k, hidden_dim=H,
                         num_classes=C, dtype=np.float64))
            model_params(submission, model, label, convnet_shapes(input_dim, F, k, H, C))
        except (StudentError, GradeFailure) as e:
            yield probes.Probe(label, factors, False, 'params', error=type(e).__name__)
            continue
        yield probes.Probe(label, factors, True)


def classifier_probes(SoftmaxClassifier):
    """SoftmaxClassifier with its default sizes and with others: parameter shapes right?"""
    submission, cls = SoftmaxClassifier.submission, trusted_view(SoftmaxClassifier)
    for D, H, C in [(None, None, None), (6, 5, 4), (30, 7, 3)]:
        default = D is None
        label = 'default sizes' if default else f"input_dim={D} hidden_dim={H} num_classes={C}"
        try:
            model = cls() if default else cls(input_dim=D, hidden_dim=H, num_classes=C)
            model_params(submission, model, label, classifier_shapes(*((784, 100, 10) if default
                                                                       else (D, H, C))))
        except (StudentError, GradeFailure) as e:
            yield probes.Probe(label, {'default sizes': default}, False, 'params',
                               error=type(e).__name__)
            continue
        yield probes.Probe(label, {'default sizes': default}, True)


# ---- SoftmaxClassifier

def classifier_values(generator, D, H, C):
    return {'W1': randn(generator, D, H) / np.sqrt(D), 'b1': randn(generator, H) / 4,
            'W2': randn(generator, H, C) / np.sqrt(H), 'b2': randn(generator, C) / 4}


def classifier_shapes(D, H, C):
    return {'W1': (D, H), 'b1': (H,), 'W2': (H, C), 'b2': (C,)}


@homework('softmax', 2, probe=classifier_probes)
def softmax_classifier_init(SoftmaxClassifier):
    submission, cls = SoftmaxClassifier.submission, trusted_view(SoftmaxClassifier)
    for D, H, C, scale in [(60, 50, 10, 1e-2), (7, 3, 2, 1e-3)]:
        label = f"SoftmaxClassifier(input_dim={D}, hidden_dim={H}, num_classes={C}, weight_scale={scale:g})"
        model = cls(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=scale)
        params = model_params(submission, model, label, classifier_shapes(D, H, C))
        check_init_statistics(label, params, scale, ('W1', 'W2'), ('b1', 'b2'))


CLASSIFIER_CASES = [(6, 5, 4, 3), (3, 4, 2, 1), (8, 3, 5, 2)]   # D, H, C, N


def classifier_model(cls, submission, D, H, C, N):
    """The student's SoftmaxClassifier for one case, its params checked: (model, params, label)."""
    label = f"D={D} H={H} C={C} N={N}"
    model = cls(input_dim=D, hidden_dim=H, num_classes=C)
    return model, model_params(submission, model, label, classifier_shapes(D, H, C)), label


@homework('softmax', 1, probe=classifier_probes)
def softmax_classifier_scores(SoftmaxClassifier):
    submission, generator = SoftmaxClassifier.submission, rng('softmax_classifier_scores')
    cls = trusted_view(SoftmaxClassifier)
    for D, H, C, N in CLASSIFIER_CASES:
        model, params, label = classifier_model(cls, submission, D, H, C, N)
        scores_case(submission, model, params, label, 'SoftmaxClassifier', ref.softmax_classifier,
                    classifier_values(generator, D, H, C), randn(generator, N, D))


@homework('softmax', 4, probe=classifier_probes)
def softmax_classifier_loss(SoftmaxClassifier):
    submission, generator = SoftmaxClassifier.submission, rng('softmax_classifier_loss')
    cls = trusted_view(SoftmaxClassifier)
    for D, H, C, N in CLASSIFIER_CASES:
        model, params, label = classifier_model(cls, submission, D, H, C, N)
        inputs = (randn(generator, N, D), generator.integers(C, size=N))
        model_loss_case(submission, model, params, label, 'SoftmaxClassifier.loss',
                        ref.softmax_classifier, classifier_values(generator, D, H, C), inputs,
                        ('W1', 'b1', 'W2', 'b2'))


# ---- ConvNet

def convnet_shapes(input_dim, F, k, H, C):
    channels, height, width = input_dim
    flat = F * ((height - k + 1) // 2) * ((width - k + 1) // 2)
    return {'W1': (F, channels, k, k), 'W2': (flat, H), 'b2': (H,), 'W3': (H, C), 'b3': (C,)}


def convnet_values(generator, shapes):
    return {k: randn(generator, *s) / (np.sqrt(np.prod(s[1:]) if k == 'W1' else s[0]) if k[0] == 'W'
                                        else 4.0)
            for k, s in shapes.items()}


# input_dim, num_filters, filter_size, hidden_dim, num_classes, N: non-square images, odd
# conv outputs (the pool floors them), one channel and several, N = 1
CONVNET_CASES = [((2, 9, 8), 3, 3, 5, 4, 2), ((1, 7, 10), 2, 2, 4, 3, 1), ((3, 8, 8), 2, 4, 3, 2, 2)]


@homework('cnn', 3, probe=convnet_probes)
def convnet_init(ConvNet):
    submission, cls = ConvNet.submission, trusted_view(ConvNet)
    for input_dim, F, k, H, C in [((1, 28, 28), 32, 7, 100, 10), ((3, 11, 8), 2, 4, 6, 5),
                                   ((2, 9, 7), 4, 3, 5, 3)]:
        label = (f"ConvNet(input_dim={input_dim}, num_filters={F}, filter_size={k}, "
                 f"hidden_dim={H}, num_classes={C}, dtype=float64)")
        model = cls(input_dim=input_dim, num_filters=F, filter_size=k, hidden_dim=H,
                    num_classes=C, weight_scale=1e-2, dtype=np.float64)
        params = model_params(submission, model, label, convnet_shapes(input_dim, F, k, H, C))
        for key, value in params.items():
            if value.dtype != np.float64:
                fail(f"{label}: params[{key!r}] has dtype {value.dtype}, expected the dtype "
                     f"given (float64)")
        check_init_statistics(label, params, 1e-2, ('W1', 'W2', 'W3'), ('b2', 'b3'))


def convnet_model(cls, submission, input_dim, F, k, H, C, N):
    """The student's ConvNet (float64) for one case, its params checked: (model, params, shapes, label)."""
    label = f"input_dim={input_dim} F={F} k={k} hidden={H} C={C} N={N}"
    model = cls(input_dim=input_dim, num_filters=F, filter_size=k, hidden_dim=H,
                num_classes=C, dtype=np.float64)
    shapes = convnet_shapes(input_dim, F, k, H, C)
    return model, model_params(submission, model, label, shapes), shapes, label


@homework('cnn', 1, probe=convnet_probes)
def convnet_scores(ConvNet):
    submission, generator = ConvNet.submission, rng('convnet_scores')
    cls = trusted_view(ConvNet)
    for input_dim, F, k, H, C, N in CONVNET_CASES:
        model, params, shapes, label = convnet_model(cls, submission, input_dim, F, k, H, C, N)
        scores_case(submission, model, params, label, 'ConvNet', ref.convnet,
                    convnet_values(generator, shapes), randn(generator, N, *input_dim))


@homework('cnn', 5, probe=convnet_probes)
def convnet_loss(ConvNet):
    submission, generator = ConvNet.submission, rng('convnet_loss')
    cls = trusted_view(ConvNet)
    for input_dim, F, k, H, C, N in CONVNET_CASES:
        model, params, shapes, label = convnet_model(cls, submission, input_dim, F, k, H, C, N)
        inputs = (randn(generator, N, *input_dim), generator.integers(C, size=N))
        model_loss_case(submission, model, params, label, 'ConvNet.loss', ref.convnet,
                        convnet_values(generator, shapes), inputs, tuple(shapes))


# ---- CaptioningRNN

def vocabulary(generator, words, null_index):
    """word_to_idx with <NULL> at null_index (not always 0), <START>, <END> and `words` others."""
    tokens = ['<START>', '<END>'] + [f"w{i}" for i in range(words)]
    order = list(generator.permutation(len(tokens)))
    indices = [i for i in range(len(tokens) + 1) if i != null_index]
    word_to_idx = {tokens[t]: int(indices[j]) for j, t in enumerate(order)}
    word_to_idx['<NULL>'] = null_index
    return word_to_idx


def captioning_shapes(V, D, W, H):
    return {'W_embed': (V, W), 'W_proj': (D, H), 'b_proj': (H,), 'Wx': (W, H), 'Wh': (H, H),
            'b': (H,), 'W_vocab': (H, V), 'b_vocab': (V,)}


def captioning_values(generator, shapes):
    return {k: randn(generator, *s) * (0.5 if k[0] == 'b' else 1 / np.sqrt(s[0]))
            for k, s in shapes.items()}


def captions_with_null(generator, word_to_idx, N, T):
    """<START> first, then words, each row padded with <NULL> after a random length >= 1."""
    words = [i for w, i in word_to_idx.items() if not w.startswith('<')] + [word_to_idx['<END>']]
    captions = generator.choice(words, size=(N, T))
    captions[:, 0] = word_to_idx['<START>']
    for row, length in zip(captions, generator.integers(2, T + 1, size=N)):
        row[length:] = word_to_idx['<NULL>']
    return captions


# words, null index, input_dim, wordvec_dim, hidden_dim, N, T
CAPTIONING_CASES = [(4, 0, 5, 4, 3, 2, 5), (3, 4, 3, 2, 4, 1, 4), (5, 2, 4, 3, 3, 3, 3)]


def captioning_model(cls, submission, generator, case):
    words, null, D, W, H, N, T = case
    word_to_idx = vocabulary(generator, words, null)
    V = len(word_to_idx)
    label = f"V={V} (<NULL> = {null}) D={D} W={W} H={H} N={N}"
    model = cls(word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type='rnn',
                dtype=np.float64)
    shapes = captioning_shapes(V, D, W, H)
    params = model_params(submission, model, label, shapes)
    return model, params, shapes, word_to_idx, label


@homework('rnn', 5)
def captioning_rnn_loss(CaptioningRNN):
    submission, generator = CaptioningRNN.submission, rng('captioning_rnn_loss')
    cls = trusted_view(CaptioningRNN)
    for case in CAPTIONING_CASES:
        model, params, shapes, word_to_idx, label = captioning_model(cls, submission, generator, case)
        N, T, D = case[5], case[6], case[2]
        captions = captions_with_null(generator, word_to_idx, N, T)
        null = word_to_idx['<NULL>']
        model_loss_case(submission, model, params, f"{label} T={T}", 'CaptioningRNN.loss',
                        lambda values, f, c: ref.captioning_rnn_loss(values, f, c, null),
                        captioning_values(generator, shapes),
                        (randn(generator, N, D), captions), tuple(shapes))


@homework('rnn', 4)
def captioning_rnn_sample(CaptioningRNN):
    submission, generator = CaptioningRNN.submission, rng('captioning_rnn_sample')
    cls = trusted_view(CaptioningRNN)
    for case, max_length in zip(CAPTIONING_CASES, (6, 1, 4)):
        model, params, shapes, word_to_idx, label = captioning_model(cls, submission, generator, case)
        values = {k: v * 3 for k, v in captioning_values(generator, shapes).items()}
        set_params(submission, params, values)
        features = randn(generator, case[5], case[2])
        got = submission.method(model, 'sample', features.copy(), max_length)
        expected = ref.captioning_rnn_sample(values, features, max_length,
                                             word_to_idx['<START>'], word_to_idx['<NULL>'])
        what = f"CaptioningRNN.sample(features, max_length={max_length}) [{label}]"
        if not (isinstance(got, np.ndarray) and got.dtype.kind in 'iu'):
            fail(f"{what}: expected an integer array, got {describe_value(got)}")
        if got.shape != expected.shape:
            fail(f"{what}: shape {got.shape}, expected {expected.shape}")
        if not np.array_equal(got, expected):
            hints = probes.diagnose([probes.Probe(label, ok=False, what='captions', got=got,
                                                  expected=expected)]) if hints_enabled() else []
            unfed = ref.captioning_rnn_sample(values, features, max_length,
                                              word_to_idx['<START>'], word_to_idx['<NULL>'],
                                              feed_back=False)
            if hints_enabled() and not hints and np.array_equal(got, unfed):
                hints = ["Hint: these are the captions of a sampler that reads <START> at every "
                         "step: the chosen word is probably not fed back as the next input.\n"
                         "  evidence: equal to greedy decoding without feeding words back"]
            fail('\n'.join([f"{what}: captions differ\n  expected {expected.tolist()}\n"
                             f"  got      {got.tolist()}"] + hints))
        expect_model_inputs_unchanged(submission, 'CaptioningRNN.sample', ('features', 'max_length'))


__all__ = ['SUITE', 'THRESHOLD']
