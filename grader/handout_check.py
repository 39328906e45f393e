"""
Public checks of this assignment, run on your own files in your own Python process.

    python autograder.py                 # every definition you write
    python autograder.py fc_forward      # only the definitions named (as many as you like)

One line per definition: PASS, FAIL with the reason (which value is off and by how much,
or the exception your code raised and the line of your file it came from), or NOT
IMPLEMENTED while it still raises NotImplementedError. The exit code is 0 only when
every checked definition passes.

How the checks work: checks/cases.json describes the cases and checks/fixtures.npz holds
their inputs and expected values (plain arrays). Forward values and losses are compared
with the stored values. Gradients are compared with numeric gradients of YOUR OWN
forward pass or loss (centered differences, h = 1e-5, in float64), so a backward pass
is checked against the function it differentiates; the forward pass has its own check.
Errors are relative errors, max |a - b| / max(1e-8, |a| + |b|) over the entries (the
rel_error of gradient_check.py). The grader runs more checks than these, on other inputs.

This file needs only Python's standard library and NumPy, and holds no solution.
"""
import copy
import importlib
import json
import os
import signal
import sys
import time
import traceback
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKS = os.path.join(HERE, 'checks')
STEP = 1e-5   # h of the centered differences
NUMERIC_NOISE = 1e-8   # absolute difference (x the gradient's scale) that counts as equal


class CaseFailure(Exception):
    """A check failed; `what`, `actual` and `expected` (when known) feed the probes."""

    def __init__(self, message, what='', actual=None, expected=None):
        super().__init__(message)
        self.what, self.actual, self.expected = what, actual, expected


# ----------------------------------------------------------------------------- helpers

def rel_error(x, y):
    """Largest elementwise relative error max |x - y| / max(1e-8, |x| + |y|): the
    definition of gradient_check.rel_error, repeated here so that this checker does not
    depend on a file you may edit."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def numeric_gradient(f, x, df=None):
    """Centered-difference gradient of sum(f(x) * df) (or of the scalar f(x) when df is
    None) with respect to the float64 array x, perturbed in place and restored. f gets a
    copy: a function that writes into its input (its own test says so) must not spoil the
    gradient of another."""
    grad = np.zeros_like(x, dtype=np.float64)
    for ix in np.ndindex(*x.shape):
        original = x[ix]
        x[ix] = original + STEP
        plus = np.array(f(x.copy()), dtype=np.float64, copy=True)
        x[ix] = original - STEP
        minus = np.array(f(x.copy()), dtype=np.float64, copy=True)
        x[ix] = original
        difference = plus - minus if df is None else (plus - minus) * df
        grad[ix] = np.sum(difference) / (2 * STEP)
    return grad


def decode(spec, fixtures):
    """A case's argument: {'array': key} (a fresh copy from fixtures.npz), {'dict': {}},
    {'list': []}, {'dtype': 'float64'} or {'value': a JSON value}."""
    if 'array' in spec:
        return np.array(fixtures[spec['array']], copy=True)
    if 'dict' in spec:
        return {k: decode(v, fixtures) for k, v in spec['dict'].items()}
    if 'list' in spec:
        return [decode(v, fixtures) for v in spec['list']]
    if 'dtype' in spec:
        return np.dtype(spec['dtype']).type
    return spec['value']


def resolve(module, name):
    """module.name, for names like 'fc_forward' or 'ConvNet.loss' (the class)."""
    value = importlib.import_module(module)
    for part in name.split('.'):
        value = getattr(value, part)
    return value


def as_checked_array(what, value):
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaseFailure(f"{what} is not an array of numbers (got {type(value).__name__})") from None
    return array


def compare(what, actual, expected, tolerance, numeric=False):
    """Raise CaseFailure unless rel_error(actual, expected) <= tolerance. With numeric
    (expected is a numeric gradient), entries that differ by less than NUMERIC_NOISE
    times the gradient's scale count as equal: centered differences carry 1e-11 to 1e-9
    of round-off, which the relative error of an entry that is 0 by the math (e.g. the
    gradient of a key bias, to which softmax is blind) blows up to ~1e-3. Entries of
    the size of a gradient are compared by relative error (< 1e-7 for layers)."""
    actual = as_checked_array(what, actual)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise CaseFailure(f"{what} has shape {actual.shape}, expected {expected.shape}",
                          what, actual, expected)
    if not np.all(np.isfinite(actual)):
        raise CaseFailure(f"{what} holds NaN or inf", what, actual, expected)
    original_actual, original_expected = actual, expected
    if numeric and expected.size:
        noise = NUMERIC_NOISE * max(1.0, float(np.max(np.abs(expected))))
        close = np.abs(actual - expected) <= noise
        actual, expected = actual[~close], expected[~close]
    error = rel_error(actual, expected)
    if error > tolerance:
        raise CaseFailure(f"{what}: relative error {error:.1e} > {tolerance:.0e}",
                          what, original_actual, original_expected)


def pair(name, result):
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CaseFailure(f"{name} should return a tuple (out, cache), got "
                          f"{type(result).__name__}")
    return result


def with_argument(args, index, value):
    """A deep copy of args with args[index] (or args[index][key] for index (i, key))
    replaced by value."""
    args = copy.deepcopy(args)
    if isinstance(index, (list, tuple)):
        args[index[0]][index[1]] = value
    else:
        args[index] = value
    return args


def same_value(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def expect_unchanged(function, names, sent, kept, skip=()):
    """The arguments `sent` to `function` equal their copies `kept` (inputs, dout included,
    must not be modified); `skip`: positions a documented state update may change."""
    for index, (now, before) in enumerate(zip(sent, kept)):
        if index not in skip and not same_value(now, before):
            raise CaseFailure(f"{function} modified its input {names[index]} (work on a copy)")


# ----------------------------------------------------------------------------- case kinds

def check_forward(case, fixtures):
    """Forward values (and the state a layer keeps in a dict argument) vs stored ones."""
    function = resolve(case['module'], case['function'])
    args = [decode(a, fixtures) for a in case['args']]
    kept = copy.deepcopy(args)
    result = function(*args)
    expect_unchanged(case['function'], case['names'], args, kept,
                     skip={state['arg'] for state in case.get('state', ())})
    out = pair(case['function'], result)[0] if case.get('returns', 'tuple') == 'tuple' else result
    compare('out', out, fixtures[case['expected']], case['tolerance'])
    for state in case.get('state', ()):
        holder = args[state['arg']]
        if state['key'] not in holder:
            raise CaseFailure(f"{case['names'][state['arg']]}[{state['key']!r}] is not set "
                              f"after the call")
        compare(f"{case['names'][state['arg']]}[{state['key']!r}] after the call",
                holder[state['key']], fixtures[state['expected']], case['tolerance'])


def check_backward(case, fixtures):
    """A backward pass vs numeric gradients of the student's own forward pass."""
    forward = resolve(case['module'], case['forward'])
    backward = resolve(case['module'], case['backward'])
    args = [decode(a, fixtures) for a in case['args']]
    dout = fixtures[case['dout']]
    _, cache = pair(case['forward'], forward(*copy.deepcopy(args)))
    sent = dout.copy()
    grads = backward(sent, cache)
    expect_unchanged(case['backward'], ['dout'], [sent], [dout])
    wrt = case['wrt']
    if len(wrt) == 1 and not isinstance(grads, tuple):
        grads = (grads,)
    if not isinstance(grads, tuple) or len(grads) != len(wrt):
        raise CaseFailure(f"{case['backward']} should return {len(wrt)} gradient(s) "
                          f"({', '.join('d' + case['names'][i] for i in wrt)}), got "
                          f"{len(grads) if isinstance(grads, tuple) else type(grads).__name__}")
    for index, grad in zip(wrt, grads):
        name = case['names'][index]
        if isinstance(args[index], dict):
            if not isinstance(grad, dict) or set(grad) != set(args[index]):
                raise CaseFailure(f"the gradient of {name} should be a dict with the keys "
                                  f"{sorted(args[index])}")
            for key in sorted(args[index]):
                numeric = numeric_gradient(
                    lambda v, key=key: pair(case['forward'], forward(
                        *with_argument(args, (index, key), v)))[0],
                    args[index][key], dout)
                compare(f"d{name}[{key!r}]", grad[key], numeric, case['tolerance'], numeric=True)
        else:
            numeric = numeric_gradient(
                lambda v: pair(case['forward'], forward(*with_argument(args, index, v)))[0],
                args[index], dout)
            compare(f"d{name}", grad, numeric, case['tolerance'], numeric=True)


def check_loss(case, fixtures):
    """A loss vs its stored value; its dx vs the numeric gradient of the student's own
    loss (or vs stored values, see 'dx' in the case)."""
    function = resolve(case['module'], case['function'])
    args = [decode(a, fixtures) for a in case['args']]
    sent = copy.deepcopy(args)
    result = function(*sent)
    expect_unchanged(case['function'], case.get('names') or [f"#{i + 1}" for i in range(len(args))],
                     sent, args)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CaseFailure(f"{case['function']} should return a tuple (loss, dx)")
    loss, dx = result
    compare('loss', loss, fixtures[case['loss']], case['tolerance'])
    if 'dx' in case:
        compare('dx', dx, fixtures[case['dx']], case['tolerance'])
    else:
        numeric = numeric_gradient(lambda v: function(*with_argument(args, 0, v))[0], args[0])
        compare('dx', dx, numeric, case['tolerance'], numeric=True)


def build_model(case, fixtures, set_params=True):
    cls = resolve(case['module'], case['class'])
    np.random.seed(case.get('seed', 0))
    model = cls(*[decode(a, fixtures) for a in case.get('args', ())],
                **{k: decode(v, fixtures) for k, v in case.get('kwargs', {}).items()})
    if set_params:
        model.params = {k: decode(v, fixtures) for k, v in case['params'].items()}
    return model


def check_init(case, fixtures):
    """A model's parameter names, shapes and dtype, zero biases, weight scale."""
    model = build_model(case, fixtures, set_params=False)
    params = getattr(model, 'params', None)
    if not isinstance(params, dict):
        raise CaseFailure("the model has no dict self.params")
    expected = case['shapes']
    if set(params) != set(expected):
        raise CaseFailure(f"params has the keys {sorted(params)}, expected {sorted(expected)}")
    for name in sorted(expected):
        value = params[name]
        if np.shape(value) != tuple(expected[name]):
            raise CaseFailure(f"params[{name!r}] has shape {np.shape(value)}, expected "
                              f"{tuple(expected[name])}")
        if case.get('dtype') and np.asarray(value).dtype != np.dtype(case['dtype']):
            raise CaseFailure(f"params[{name!r}] has dtype {np.asarray(value).dtype}, expected "
                              f"{case['dtype']}")
    for name in case.get('zero', ()):
        if np.any(np.asarray(params[name]) != 0):
            raise CaseFailure(f"params[{name!r}] should start at zero")
    for name, std in case.get('std', {}).items():
        measured = float(np.std(params[name]))
        # a Gaussian sample of >= 30 values: its std is within a factor 2 of the true one
        if not 0.5 * std < measured < 2 * std:
            raise CaseFailure(f"params[{name!r}] has standard deviation {measured:.2e}, "
                              f"expected about {std:.2e} (weight_scale)")


def check_model_loss(case, fixtures):
    """A model's scores and loss vs stored values with given params; its gradients vs
    numeric gradients of its own loss."""
    model = build_model(case, fixtures)
    if 'scores' in case:
        scores = model.loss(*[decode(a, fixtures) for a in case['score_args']])
        compare('scores', scores, fixtures[case['scores']], case['tolerance'])
    loss_args = [decode(a, fixtures) for a in case['loss_args']]
    result = model.loss(*loss_args)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CaseFailure("loss(...) should return a tuple (loss, grads)")
    loss, grads = result
    compare('loss', loss, fixtures[case['loss']], case['tolerance'])
    if not isinstance(grads, dict) or set(grads) != set(model.params):
        raise CaseFailure(f"grads should be a dict with the keys of params {sorted(model.params)}")
    for name in sorted(model.params):
        numeric = numeric_gradient(lambda _: model.loss(*loss_args)[0], model.params[name])
        compare(f"grads[{name!r}]", grads[name], numeric, case['grad_tolerance'], numeric=True)


def check_sample(case, fixtures):
    """Greedy captions vs the stored ones, given the params."""
    model = build_model(case, fixtures)
    captions = model.sample(*[decode(a, fixtures) for a in case['sample_args']],
                            **{k: decode(v, fixtures) for k, v in case.get('sample_kwargs', {}).items()})
    expected = fixtures[case['expected']]
    captions = np.asarray(captions)
    if captions.shape != expected.shape:
        raise CaseFailure(f"captions have shape {captions.shape}, expected {expected.shape}")
    if not np.issubdtype(captions.dtype, np.integer):
        raise CaseFailure(f"captions should be integer word indices, got dtype {captions.dtype}")
    wrong = int(np.sum(captions != expected))
    if wrong:
        raise CaseFailure(f"{wrong} of {expected.size} words differ from the expected greedy "
                          f"captions (first row {captions[0].tolist()}, expected "
                          f"{expected[0].tolist()})")


KINDS = {'forward': check_forward, 'backward': check_backward, 'loss': check_loss,
         'init': check_init, 'model_loss': check_model_loss, 'sample': check_sample}


# ----------------------------------------------------------------------------- running

def where(error, student_files):
    """'file.py:line' of the deepest frame of the traceback in one of the student's
    files (else in any file but this one), or ''."""
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        if os.path.basename(frame.filename) in student_files:
            return f"{os.path.basename(frame.filename)}:{frame.lineno}"
    for frame in reversed(frames):
        if os.path.abspath(frame.filename) != os.path.abspath(__file__):
            return f"{os.path.basename(frame.filename)}:{frame.lineno}"
    return ''


def one_line(text, limit=160):
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def load_probes(checks=CHECKS):
    """The grader's probes (checks/probes.py), or None: hints are an extra, never a need."""
    import importlib.util
    path = os.path.join(checks, 'probes.py')
    try:
        spec = importlib.util.spec_from_file_location('handout_probes', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except Exception:
        return None


PROBES = load_probes()


def case_factors(case, fixtures):
    """The factors of a case (N = 1, C = 1, square, scores near +-1000, ...) from its args."""
    names = case.get('names')
    if PROBES is None or not names:
        return {}
    try:
        return PROBES.array_factors(dict(zip(names, (decode(a, fixtures) for a in case['args']))))
    except Exception:
        return {}


def check_definition(definition, fixtures, student_files=()):
    """Run a definition's cases: ('PASS' | 'FAIL' | 'NOT IMPLEMENTED', reason). Never
    raises (but for KeyboardInterrupt). After a failure the other cases still run, so
    the probes can tell what the failing ones have in common (the reason then ends with
    their hints, on lines of their own)."""
    verdict, seen = None, []
    for case in definition['cases']:
        label = f" (case {case['label']})" if case.get('label') else ''
        factors = case_factors(case, fixtures)
        try:
            with warnings.catch_warnings(), np.errstate(all='ignore'):
                warnings.simplefilter('ignore')
                KINDS[case['kind']](case, fixtures)
            seen.append(PROBES and PROBES.Probe(case.get('label', ''), factors, True))
        except KeyboardInterrupt:
            raise
        except NotImplementedError as e:
            return 'NOT IMPLEMENTED', one_line(e)
        except CaseFailure as e:
            verdict = verdict or ('FAIL', one_line(str(e) + label))
            seen.append(PROBES and PROBES.Probe(case.get('label', ''), factors, False, e.what,
                                                e.actual, e.expected))
        except BaseException as e:   # anything the student's code raised: one line, no traceback
            place = where(e, student_files)
            verdict = verdict or ('FAIL', one_line(f"{type(e).__name__}: {e}"
                                                   + (f" ({place})" if place else '') + label))
            seen.append(PROBES and PROBES.Probe(case.get('label', ''), factors, False,
                                                error=type(e).__name__))
    if verdict is None:
        return 'PASS', ''
    hints = []
    if PROBES is not None:
        try:
            hints = PROBES.diagnose([p for p in seen if p is not None])
        except Exception:
            hints = []
    return verdict[0], '\n'.join([verdict[1]] + ['    ' + line for hint in hints
                                                  for line in hint.split('\n')])


def load(checks=CHECKS):
    with open(os.path.join(checks, 'cases.json'), encoding='utf-8') as f:
        cases = json.load(f)
    with np.load(os.path.join(checks, 'fixtures.npz'), allow_pickle=False) as data:
        fixtures = {key: data[key] for key in data.files}
    return cases, fixtures


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if HERE not in sys.path:
        sys.path.insert(0, HERE)   # the student's modules, also under python -I
    cases, fixtures = load()
    definitions = cases['definitions']
    known = [d['name'] for d in definitions]
    unknown = [name for name in argv if name not in known]
    if unknown:
        print(f"unknown definition(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return 2
    chosen = [d for d in definitions if not argv or d['name'] in argv]
    started = time.monotonic()
    passed = 0
    for definition in chosen:
        status, reason = check_definition(definition, fixtures, cases['student_files'])
        passed += status == 'PASS'
        print(f"{status:<16}{definition['name']}" + (f"  {reason}" if reason else ''), flush=True)
    print(f"{passed} of {len(chosen)} definitions pass the public checks "
          f"({time.monotonic() - started:.1f} s)")
    return 0 if passed == len(chosen) else 1


if __name__ == '__main__':
    if hasattr(signal, 'SIGPIPE'):   # `python autograder.py | head` ends quietly
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
