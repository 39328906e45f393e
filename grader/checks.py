"""
The machinery of graded tests: the registry, the comparison helpers, and the standard
checks every forward/backward pair gets (gradients, no mutation, float32, cache).

Trust: every expected value is computed here, in the grader's process, from the
hand-worked literals of a test or from grader/references.py. A backward pass is compared
with the numeric gradient of the *reference* forward, never of the submission's.
Points for no mutation, dtypes, the cache and errors are given only when the same test
also found the function's values right, so a function that returns nothing useful
cannot collect them.

Random inputs come from `rng(name)`, seeded per submission (see `set_seed`): a regrade
of the same files draws the same inputs, another submission different ones.
"""
import copy
import inspect
import re
import zlib
from dataclasses import dataclass
from functools import partial, wraps

import numpy as np

from grader import probes
from gradient_check import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
)

THRESHOLD = 1e-7       # largest relative error accepted between two computations of a value
FLOAT32_THRESHOLD = 1e-4   # the same for float32 inputs against the float64 reference
NOISE_FACTOR = 10          # a numeric gradient's error may be this many times its estimate
CASE_FRACTION = 1e-2       # float32 values are compared at >= this fraction of the case's scale
ZERO_FRACTION = 1e-10      # a gradient that is 0 by the math may be this fraction of the case's scale
STEP = 1e-3            # step h of the numeric gradients (see numeric_gradient_and_noise)


# ------------------------------------------------------------------------ the registry

@dataclass
class GradedTest:
    """One graded test: `run(*functions)` raises GradeFailure or returns a note."""
    name: str
    module: str
    functions: tuple
    points: int
    run: object
    suite: str = 'handgrad'   # the collection it belongs to (an assignment grades one suite)


SUITES = {'handgrad': []}   # suite -> its tests, in registration order
REGISTRY = SUITES['handgrad']   # the default suite: every function of API.md on our modules


class GradeFailure(AssertionError):
    """A check failed; the message says what, on which case, and by how much."""


def graded(module, points=1, suite='handgrad', name=None):
    """
    Register the decorated function as a graded test of `module` in `suite`. Its
    parameter names are the submitted functions (or classes) it calls:
    `def conv_forward_values(conv_forward)`. The test is named `name` or after the
    decorated function.
    """
    def register(run):
        functions = tuple(inspect.signature(run).parameters)
        _register(GradedTest(name or run.__name__, module, functions, points, run, suite))
        return run
    return register


def _register(test):
    """Add a test; names are unique within a suite (results, configs and --only refer to
    tests by name)."""
    tests = SUITES.setdefault(test.suite, [])
    if any(t.name == test.name for t in tests):
        raise ValueError(f"two graded tests of suite {test.suite} are named {test.name}")
    tests.append(test)


# ------------------------------------------------------------------------- the hints

_hints = [True]


def set_hints(enabled):
    """Whether a failing test may add the hints of its probes (grader/probes.py) to its
    message: an assignment can keep them off for hidden tests, so they reveal no hidden case."""
    _hints[0] = bool(enabled)


def hints_enabled():
    return _hints[0]


# -------------------------------------------------------------------------- the seed

_seed = [0]


def set_seed(seed):
    """Seed of this submission's random inputs; clears the expected values computed so far."""
    _seed[0] = int(seed)
    _expected.clear()


def rng(name):
    """A generator for the inputs of `name` (a case family), from the submission's seed."""
    return np.random.default_rng([_seed[0], zlib.crc32(name.encode())])


# ------------------------------------------------------------------------- comparisons

def fail(message, what=None, actual=None, expected=None):
    """Raise GradeFailure(message); a wrong value (`actual` against `expected`, the quantity
    `what` such as 'out' or 'dx') rides along for the probes (grader/probes.py)."""
    failure = GradeFailure(message)
    failure.what, failure.actual, failure.expected = what, actual, expected
    raise failure


def show(a):
    """A small array on one line."""
    return ' '.join(np.array2string(np.asarray(a), precision=4).split())


def charged(check):
    """Run `check` (it reads the submission's answers) inside runner.checking(): the
    grader's time on it counts against the test's time limit and the budget."""
    @wraps(check)
    def run(*args, **kwargs):
        from grader.runner import checking
        with checking(f"checking {check.__name__}'s values" if not args else f"checking {args[0]}"):
            return check(*args, **kwargs)
    return run


def claimed_shape(value):
    """The shape an answer claims, read without converting it: an array's shape, or for
    nested lists/tuples their lengths along the first items."""
    shape = []
    while isinstance(value, (tuple, list)):
        shape.append(len(value))
        if not value:
            return tuple(shape)
        value = value[0]
    return tuple(shape) + (value.shape if isinstance(value, np.ndarray) else ())


@charged
def as_array(what, value, shape=None):
    """
    `value` as a float64 array, failing (not crashing) on what is not numeric data. With
    `shape` (the expected one), an answer of any other shape fails before anything is
    converted or allocated from it.
    """
    if value is None:
        fail(f"{what}: got None")
    if shape is not None and claimed_shape(value) != tuple(shape):
        fail(f"{what}: shape {claimed_shape(value)}, expected {tuple(shape)}")
    if isinstance(value, np.ndarray) and value.dtype.kind in 'biuf':
        return value.astype(np.float64)
    if isinstance(value, (bool, int, float, np.generic)) and not isinstance(value, np.complexfloating):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, (tuple, list)):
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            fail(f"{what}: got a {type(value).__name__} that is not an array of numbers")
        return array
    fail(f"{what}: expected an array of numbers, got {describe_value(value)}")


def describe_value(value):
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return repr(value)[:80] if isinstance(value, (str, int, float)) else type(value).__name__


@charged
def expect_close(what, actual, expected, threshold=THRESHOLD, noise=None, case_scale=0.0):
    """
    Fail unless `actual` has the shape of `expected` and rel_error(actual, expected)
    <= threshold. Returns the relative error.

    - noise: the error estimate of a numeric `expected` (numeric_gradient_and_noise); up
      to NOISE_FACTOR times it is not counted against an entry, so an entry that is ~0 by
      chance is not failed for the numeric gradient's own round-off.
    - At FLOAT32_THRESHOLD and above (float32 results against the float64 reference),
      the error is the largest one relative to the array's largest magnitude, or to
      CASE_FRACTION of case_scale (the largest magnitude of the case's outputs and
      gradients) if that is larger: float32 round-off is relative to the magnitudes the
      computation goes through, so a value that cancellation made tiny (a sum of terms of
      size 1 that comes out at 1e-6) cannot be right to 1e-4 of itself.
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = as_array(what, actual, expected.shape)
    if actual.shape != expected.shape:
        fail(f"{what}: shape {actual.shape}, expected {expected.shape}")
    if not expected.size:
        error = 0.0
    elif threshold >= FLOAT32_THRESHOLD:
        scale = max(1e-8, np.max(np.abs(expected)), CASE_FRACTION * case_scale)
        error = float(np.max(np.abs(actual - expected)) / scale)
    elif noise is not None:
        difference = np.maximum(np.abs(actual - expected) - NOISE_FACTOR * noise, 0)
        error = float(np.max(difference / np.maximum(1e-8, np.abs(actual) + np.abs(expected))))
    else:
        error = rel_error(actual, expected)
    if not error <= threshold:   # also catches NaN
        message = f"{what}: rel error {error:.1e} > {threshold:.0e}"
        if expected.size <= 16:
            message += f"\n  expected {show(expected)}\n  got      {show(actual)}"
        fail(message, what.split(' [')[0].split()[-1], actual, expected)
    return error


@charged
def expect_zero(what, actual, shape, tolerance):
    """Fail unless `actual` has `shape` and every entry is within `tolerance` of 0."""
    actual = as_array(what, actual, shape)
    if actual.shape != tuple(shape):
        fail(f"{what}: shape {actual.shape}, expected {tuple(shape)}")
    largest = float(np.max(np.abs(actual), initial=0))
    if not largest <= tolerance:
        fail(f"{what}: expected 0 (it is 0 by the math), got entries up to {largest:.1e} "
             f"(> {tolerance:.0e})")


def expect_value_error(what, call, *names):
    """Fail unless call() raises ValueError with a message naming one of `names`."""
    from grader.runner import StudentError
    wanted = f"ValueError naming {' or '.join(names)}"
    try:
        call()
    except StudentError as e:
        if not e.value_error:
            fail(f"{what}: expected {wanted}, got {e.type}: {e.message}")
        if not any(re.search(rf'\b{re.escape(n)}\b', e.message) for n in names):
            fail(f"{what}: expected {wanted}, got ValueError({e.message!r})")
        return
    fail(f"{what}: expected {wanted}, nothing was raised")


def pair(name, result):
    """Check that `name` returned a pair, e.g. (out, cache) or (loss, dx)."""
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        fail(f"{name} must return a pair (out, cache) or (loss, dx), got {describe_value(result)}")
    return result


def expect_inputs_unchanged(submission, spec=None):
    """
    At the end of a test: no call of it modified its arguments (as the child holds them),
    except for the documented state updates of spec.state (batch norm's running
    statistics in bn_param), which must have happened, with the right values.
    """
    changes = {(call.id, where): now for call, where, _, now in submission.argument_changes()}
    messages = []
    if spec is not None and spec.state is not None:
        names = list(inspect.signature(spec.reference).parameters)
        for call in submission.calls:
            documented = call.name == spec.forward and spec.state(dict(zip(names, call.args)))
            if documented:
                position = names.index(documented[0])
                now = changes.pop((call.id, position), call.args[position])
                messages += state_problems(call.name, *documented, call.args[position], now)
    for (call_id, where), _ in changes.items():
        call = next(call for call in submission.calls if call.id == call_id)
        messages.append(f"{call.name}: modified its input {argument_name(spec, call, where)}")
    if messages:
        fail('\n'.join(dict.fromkeys(messages)))


def argument_name(spec, call, where):
    """The name of argument `where` (a position or keyword) of a call, for messages: the
    forward's parameter names are the reference's, a backward takes (dout, ..., cache)."""
    if where is None:
        return "its arguments"
    if isinstance(where, str):
        return where
    if spec is not None and call.name == spec.forward and spec.adapt is None:
        names = list(inspect.signature(spec.reference).parameters)
        if len(names) >= len(call.args):
            return names[where]
    if spec is not None and call.name == spec.backward:
        if where == len(call.args) - 1:
            return "cache"
        if where == 0:
            return "dout" if len(call.args) == 2 else "its upstream gradient #1"
    return f"#{where + 1}"


def state_problems(function, argument, expected, sent, now):
    """What is wrong with the state dict `now` that `function` left in `argument` (a dict
    sent as `sent`): only the keys of `expected` may change, to the expected values."""
    if not isinstance(now, dict):
        return [f"{function}: replaced its input {argument} by {describe_value(now)}"]
    problems = [f"{function}: modified {argument}[{key!r}] (only {', '.join(expected)} may change)"
                for key in sent if key not in expected and not (key in now and _same(now[key], sent[key]))]
    problems += [f"{function}: added {argument}[{key!r}]" for key in now if key not in sent and key not in expected]
    for key, value in expected.items():
        try:
            expect_close(f"{function} {argument}[{key!r}] after the call", now.get(key), value)
        except GradeFailure as e:
            problems.append(str(e))
    return problems


def state_after(function, position):
    """Argument `position` of the last call of `function` in this test, as the child holds
    it now (a state dict such as bn_param after batchnorm_forward updated it)."""
    submission = function.submission
    calls = [c for c in submission.calls if c.name == function.name]
    if not calls:
        fail(f"{function.name} was not called")
    for call, where, _, now in submission.argument_changes():
        if call is calls[-1] and where in (position, None):
            return now
    return calls[-1].args[position]


def _same(a, b):
    from grader.runner import same
    return same(a, b)


# -------------------------------------------------------------------- random inputs

def randn(rng, *shape):
    return rng.standard_normal(shape)


def positive(rng, *shape):
    """Values in [0.5, 1.5): sums of products of them stay far from zero (see check_gradients)."""
    return rng.uniform(0.5, 1.5, shape)


def distinct(rng, *shape):
    """Values spaced 0.1 apart in random order: no ties, none within reach of a numeric step."""
    size = int(np.prod(shape))
    return (rng.permutation(size) - size / 2).reshape(shape) * 0.1


def away_from_zero(rng, *shape):
    """Values with |x| >= 0.1: far from 0 (the ReLU kink), relative to a numeric step."""
    return rng.choice([-1.0, 1.0], size=shape) * (0.1 + np.abs(randn(rng, *shape)))


def numeric_gradient_and_noise(f, x, df=None):
    """
    Numeric gradient of f at x and an estimate of its error per entry.

    The value is gradient_check's centered differences refined by Richardson
    extrapolation: a centered difference with step h has error c h^2 + O(h^4), so
    R(h) = (4 g(h) - g(2h)) / 3 cancels the h^2 term; that allows h = STEP = 1e-3, where
    round-off is 100x smaller than at the usual 1e-5, and errors drop to ~1e-12. The
    error estimate is |R(STEP) - R(STEP / 2)|: the two extrapolations differ by their
    truncation and round-off errors, and round-off (~1e-16 |f| / h, absolute) is what
    makes an entry that is ~0 by chance look wrong in an elementwise relative comparison.

    Inputs:
    - f: function of x; a scalar if df is None, else an array of df's shape.
    - x: float64 array, perturbed in place (by up to 2 * STEP) and restored.
    - df: None, or the upstream gradient: then the gradient is that of sum(f(x) * df).

    Returns (R(STEP), its error estimate), both of x's shape.
    """
    if df is None:
        centered = lambda h: eval_numerical_gradient(f, x, verbose=False, h=h)
    else:
        centered = lambda h: eval_numerical_gradient_array(f, x, df, h=h)
    half, whole, double = centered(STEP / 2), centered(STEP), centered(2 * STEP)
    value = (4 * whole - double) / 3
    noise = np.abs(value - (4 * half - whole) / 3)
    # The two extrapolations can agree by chance on one entry while both are off by the
    # round-off every entry has (absolute, ~1e-16 |f| / h): an entry's error estimate is
    # at least the largest of the array's (a correct layer failed 1 seed in ~10^3 for a
    # gradient entry of 1.7e-8 computed 1.2e-13 off, its own estimate ~0).
    return value, np.maximum(noise, noise.max(initial=0))


def flat(out):
    """An output, or a tuple of outputs, as one vector."""
    return np.concatenate([np.ravel(o) for o in (out if isinstance(out, tuple) else (out,))])


def like(out, draw):
    """Draw an array of out's shape, or a tuple of them if out is a tuple of outputs."""
    if isinstance(out, tuple):
        return tuple(draw(*np.shape(o)) for o in out)
    return draw(*np.shape(out))


def as_float32(value):
    """Float arrays, also inside a dict (bn_param's running statistics), as float32."""
    if isinstance(value, dict):
        return {key: as_float32(item) for key, item in value.items()}
    is_float = isinstance(value, np.ndarray) and value.dtype.kind == 'f'
    return value.astype(np.float32) if is_float else value


# ------------------------------------------------------------- forward/backward pairs

@dataclass
class LayerSpec:
    """
    How to exercise a forward/backward pair, or a loss (backward None) that returns
    (loss, dx) itself.

    - cases: function rng -> list of (label, args), args a dict of the forward's
      arguments in positional order, e.g. ('N=2 D=3 M=4', {'x': x, 'w': w, 'b': b}).
    - reference: the forward of grader/references.py, called with the same arguments;
      for a loss, it returns the loss alone.
    - wrt: names of the arguments whose gradients backward returns, in its order
      (for a loss, the one argument its dx belongs to).
    - cache: None, or function (args, out) -> the documented cache: an array, or a dict
      of the cache tuple's entries by name.
    - adapt: None, or function (forward, backward) -> the same pair in the standard form
      forward(*args) -> (out, cache), backward(dout, cache) -> gradients, for layers
      with several outputs (out and dout are then tuples of arrays).
    - expected: None, or function (args, dout, out, grads) that checks the values itself
      (dropout, whose mask is the submission's choice) instead of the reference.
    - state: None, or function args -> None or (argument name, {key: expected value}):
      the documented update of a state dict among the arguments (batch norm's running
      statistics in bn_param, train mode), the only change no_mutation accepts.
    - zero: names in wrt whose gradient is identically 0 by the math (multi-head
      attention's b_k: the softmax ignores a shift of a whole row of scores). A numeric
      gradient of 0 is pure round-off, so these are checked absolutely instead: at most
      ZERO_FRACTION of the case's largest magnitude.
    """
    module: str
    forward: str
    backward: str
    cases: object
    reference: object
    wrt: tuple
    cache: object = None
    adapt: object = None
    expected: object = None
    state: object = None
    label: str = None
    zero: tuple = ()

    @property
    def name(self):
        """The tests' prefix: label, or the forward's name without '_forward'."""
        f = self.forward
        return self.label or (f[:-len('_forward')] if f.endswith('_forward') else f)


SPECS = {}


def layer(module, forward, backward, cases, reference, wrt, cache=None, adapt=None,
          expected=None, points=3, state=None, name=None, zero=()):
    """
    Register the standard checks of a layer: <name>_gradients (worth `points`),
    <name>_no_mutation, <name>_float32 and, when a cache is documented, <name>_cache.
    <name> is `name`, or the forward's name without '_forward' (a loss keeps its name).
    """
    spec = LayerSpec(module, forward, backward, cases, reference, wrt, cache, adapt, expected,
                     state, name, tuple(zero))
    SPECS[spec.name] = spec
    functions = (forward, backward) if backward else (forward,)
    checks = [('gradients', check_gradients, points), ('no_mutation', check_no_mutation, 1),
              ('float32', check_float32, 1)]
    if cache is not None:
        checks.append(('cache', check_cache, 1))
    for suffix, check, pts in checks:
        _register(GradedTest(f'{spec.name}_{suffix}', module, functions, pts, partial(check, spec)))
    return spec


_expected = {}


def reference_values(spec, index, label, args):
    """
    The reference's output and, for each argument in spec.wrt, its gradient for the dout
    that the grader draws for this case; computed once per case and submission.
    """
    key = (spec.name, index)
    if key not in _expected:
        args64 = copy.deepcopy(args)
        call = lambda: spec.reference(*args64.values())
        out = call()
        generator = rng(f'{spec.name} dout {index}')
        dout = None if spec.backward is None else like(out, partial(positive, generator))
        grads, noises = [], []
        for name in spec.wrt:
            if args64[name] is None:
                grad, noise = None, None
            elif name in spec.zero:
                grad, noise = np.zeros(np.shape(args64[name])), None
            elif dout is None:
                grad, noise = numeric_gradient_and_noise(lambda _: call(), args64[name])
            else:
                grad, noise = numeric_gradient_and_noise(lambda _: flat(call()), args64[name],
                                                         flat(dout))
            grads.append(grad)
            noises.append(noise)
        _expected[key] = (out, dout, grads, noises)
    return _expected[key]


def standard(spec, forward, backward):
    """The layer's functions in the standard form (see LayerSpec.adapt)."""
    return spec.adapt(forward, backward) if spec.adapt else (forward, backward)


def grads_tuple(spec, result):
    """The gradients `spec.backward` returned, as a tuple matching spec.wrt."""
    result = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    if len(result) != len(spec.wrt):
        names = ', '.join('d' + a for a in spec.wrt)
        fail(f"{spec.backward} returned {len(result)} values, expected {len(spec.wrt)} ({names})")
    return result


def outputs(out):
    """out as a tuple of arrays (a layer with several outputs, adapted, returns a tuple)."""
    return out if isinstance(out, tuple) else (out,)


def expect_forward_values(spec, label, out, ref_out, threshold=THRESHOLD, case_scale=0.0):
    """The forward's output (a loss, an array or a tuple of arrays) against the reference's."""
    if spec.backward is None:
        return expect_close(f"{spec.forward} loss [{label}]", out, ref_out, threshold,
                            case_scale=case_scale)
    outs, ref_outs = outputs(out), outputs(ref_out)
    if len(outs) != len(ref_outs):
        fail(f"{spec.forward} [{label}]: returned {len(outs)} outputs, expected {len(ref_outs)}")
    worst = 0.0
    for k, (o, r) in enumerate(zip(outs, ref_outs)):
        suffix = f"[{k}]" if len(ref_outs) > 1 else ""
        worst = max(worst, expect_close(f"{spec.forward} out{suffix} [{label}]", o, r, threshold,
                                        case_scale=case_scale))
    return worst


def run_case(spec, forward, backward, index, label, args, threshold=THRESHOLD, cast=None):
    """
    Call the submitted pair on one case and check its values against the reference.
    Returns (out, cache, grads, worst relative error). With `cast` (e.g. as_float32) the
    inputs and dout are cast first and compared with the float64 reference at `threshold`.
    """
    ref_out, ref_dout, ref_grads, noises = reference_values(spec, index, label, args)
    magnitudes = [np.max(np.abs(a), initial=0) for a in (*outputs(ref_out), *ref_grads)
                  if a is not None]
    largest = float(max(magnitudes, default=0))
    case_scale = largest if cast else 0.0
    sent = {k: cast(v) for k, v in args.items()} if cast else copy.deepcopy(args)
    out, cache = pair(spec.forward, forward(*sent.values()))
    worst = 0.0 if spec.expected is not None else expect_forward_values(spec, label, out, ref_out,
                                                                        threshold, case_scale)
    if spec.backward is None:   # a loss: (loss, dx)
        grads = (cache,)
    else:
        dout = ref_dout
        if cast:
            dout = tuple(map(cast, dout)) if isinstance(dout, tuple) else cast(dout)
        else:
            dout = copy.deepcopy(dout)
        grads = grads_tuple(spec, backward(dout, cache))
    if spec.expected is not None:
        spec.expected(label, sent, None if spec.backward is None else dout, out, grads)
        return out, cache, grads, worst
    failures, first = [], None
    for name, grad, expected, noise in zip(spec.wrt, grads, ref_grads, noises):
        what = f"{spec.backward or spec.forward} d{name} [{label}]"
        if expected is None:
            if grad is not None:
                failures.append(f"{what}: expected None ({name} was None)")
            continue
        try:
            if name in spec.zero:
                expect_zero(what, grad, expected.shape,
                            (threshold if cast else ZERO_FRACTION) * largest)
            else:
                worst = max(worst, expect_close(what, grad, expected, threshold, noise, case_scale))
        except GradeFailure as e:
            failures.append(str(e))
            first = first or e
    if failures:
        fail('\n'.join(failures), getattr(first, 'what', None), getattr(first, 'actual', None),
             getattr(first, 'expected', None))
    return out, cache, grads, worst


def check_gradients(spec, forward, backward=None):
    """
    Forward values against the reference, and backward against the numeric gradient of
    the reference, in float64, on every case.

    rel_error is elementwise, so a gradient entry that is ~0 by chance would turn harmless
    round-off into a large relative error. Hence the numeric gradients are accurate to
    ~1e-12 (numeric_gradient_and_noise), dout is positive, and so are the inputs of the layers that
    sum products (fc, conv, rnn, ...): none of their entries can cancel to ~0.
    """
    forward, backward = standard(spec, forward, backward)
    worst, failure, seen = 0.0, None, []
    for index, (label, args) in enumerate(spec.cases(rng(spec.name))):
        # shape factors (N = 1, C = 1, square, ...) read from the arguments' layouts are
        # those of layers.py; the recurrent layers are time-major, so theirs are not named
        factors = probes.array_factors(args) if spec.module == 'layers' else {}
        try:
            worst = max(worst, run_case(spec, forward, backward, index, label, args)[3])
            seen.append(probes.Probe(label, factors, True))
        except GradeFailure as e:
            if not hints_enabled():
                raise
            # the other cases still run: what the failing ones share is the hint
            failure = failure or e
            seen.append(probes.Probe(label, factors, False, getattr(e, 'what', None) or '',
                                     getattr(e, 'actual', None), getattr(e, 'expected', None)))
    if failure is not None:
        fail('\n'.join([str(failure)] + probes.diagnose(seen)))
    return f"worst rel error {worst:.1e}"


def check_no_mutation(spec, forward, backward=None):
    """
    Forward and backward, with right values, must leave their inputs, dout and the cached
    inputs unchanged, as seen at the end of the test; a documented state update
    (spec.state) must be exactly the documented one.
    """
    forward_, backward_ = standard(spec, forward, backward)
    for index, (label, args) in enumerate(spec.cases(rng(spec.name))):
        run_case(spec, forward_, backward_, index, label, args)
    expect_inputs_unchanged(forward.submission, spec)


def check_float32(spec, forward, backward=None):
    """float32 inputs give float32 outputs and gradients (no silent upcast), with right values."""
    forward, backward = standard(spec, forward, backward)
    for index, (label, args) in enumerate(spec.cases(rng(spec.name))):
        out, cache, grads, _ = run_case(spec, forward, backward, index, label, args,
                                        FLOAT32_THRESHOLD, cast=as_float32)
        if spec.backward is None:
            arrays = {f"{spec.forward} d{spec.wrt[0]}": grads[0]}
        else:
            outs = outputs(out)
            arrays = {f"{spec.forward} out{f'[{k}]' if len(outs) > 1 else ''}": o
                      for k, o in enumerate(outs)}
            arrays.update({f"{spec.backward} d{name}": g for name, g in zip(spec.wrt, grads)
                           if args[name] is not None})
        for what, array in arrays.items():
            dtype = getattr(array, 'dtype', type(array).__name__)
            if dtype != np.float32:
                fail(f"{what} [{label}]: dtype {dtype}, expected float32 for float32 inputs")


def check_cache(spec, forward, backward=None):
    """The cache is exactly the documented one (course graders read it), values right."""
    forward_, backward_ = standard(spec, forward, backward)
    for index, (label, args) in enumerate(spec.cases(rng(spec.name))):
        out, cache, _, _ = run_case(spec, forward_, backward_, index, label, args)
        expected = spec.cache(args, reference_values(spec, index, label, args)[0])
        what = f"{spec.forward} cache [{label}]"
        if not isinstance(expected, dict):
            expect_close(what, cache, expected)
            continue
        names = ', '.join(expected)
        if not (isinstance(cache, tuple) and len(cache) == len(expected)):
            fail(f"{what}: expected a tuple ({names}), got {describe_value(cache)}"
                 f"{' of length %d' % len(cache) if isinstance(cache, (tuple, list)) else ''}")
        for (name, value), got in zip(expected.items(), cache):
            if isinstance(value, dict):
                if got != value:
                    fail(f"{what}: entry {name} is {got!r}, expected {value!r}")
            else:
                expect_close(f"{what} entry {name} of ({names})", got, value)


def require_right_values(spec_name, forward, backward=None):
    """
    Gate of the error-handling tests: the function must compute the reference's values on
    a valid input before its errors earn anything (a function that always raises
    ValueError does not).
    """
    spec = SPECS[spec_name]
    forward_, backward_ = standard(spec, forward, backward)
    label, args = spec.cases(rng(spec.name))[0]
    try:
        if backward is None and spec.backward is not None:
            _forward_only(spec, forward_, label, args)
        else:
            run_case(spec, forward_, backward_, 0, label, args)
    except GradeFailure as e:
        fail(f"no points for error handling while the values are wrong:\n{e}")


def _forward_only(spec, forward, label, args):
    ref_out = reference_values(spec, 0, label, args)[0]
    out, _ = pair(spec.forward, forward(*copy.deepcopy(args).values()))
    if spec.expected is None:
        expect_forward_values(spec, label, out, ref_out)
