"""
Tests of the autograder: our modules get full marks, broken copies of them lose exactly
the tests they should, and hostile submissions (written here, one per threat class of
README's threat model) get 0 for what they attack while the grader finishes within its
budget, writes results.json itself, prints a last "Total:" line equal to it and exits
non-zero.

A student's folder starts as a copy of our modules under other names (_our_layers.py),
which its layers.py imports and then overrides: the sandboxed child cannot read ours.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

import autograder
from ours import copy_helpers
from grader import checks
from grader import config as grading_config
from grader import references as ref

ROOT = Path(autograder.__file__).resolve().parent
ROOT_USER = os.geteuid() == 0
MAX = sum(t.points for t in checks.REGISTRY)
BASE = {'layers': 'from _our_layers import *\nimport _our_layers as _ours\nimport numpy as np\n',
        'rnn_layers': 'from _our_rnn_layers import *\nimport _our_rnn_layers as _ours\nimport numpy as np\n',
        'attention_layers': 'from _our_attention_layers import *\nimport _our_attention_layers as _ours\n'
                            'import numpy as np\n'}


def student(directory, layers=None, rnn_layers=None, ours=True, attention_layers=None):
    """
    A student's folder: layers.py / rnn_layers.py / attention_layers.py = ours + the given
    overrides (None: ours unchanged, False: no such file). Returns the folder as a str.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for module, override in (('layers', layers), ('rnn_layers', rnn_layers),
                             ('attention_layers', attention_layers)):
        if override is False:
            continue
        if ours:
            shutil.copy(ROOT / f'{module}.py', directory / f'_our_{module}.py')
            copy_helpers(directory)
        (directory / f'{module}.py').write_text(
            (BASE[module] if ours else '') + textwrap.dedent(override or ''))
    return str(directory)


def uses(function):
    return {t.name for t in checks.REGISTRY if function in t.functions}


def failed(grading):
    return {r.name for r in grading.results if r.status == 'failed'}


def run_cli(*args, timeout=120):
    """Run autograder.py as an instructor would; returns (exit code, stdout, results.json)."""
    json_path = Path(args[args.index('--json') + 1]) if '--json' in args else None
    # stderr merged into stdout as they are written (the grader's warnings, such as a
    # weaker isolation's, come before its last line, as on a terminal)
    run = subprocess.run([sys.executable, str(ROOT / 'autograder.py'), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=timeout, cwd=ROOT)
    data = json.loads(json_path.read_text()) if json_path and json_path.exists() else None
    return run.returncode, run.stdout, data


def assert_graded_by_the_grader(code, output, data, expect_pass=False):
    """The grader, not the submission, produced the exit code, the last line and results.json."""
    assert data is not None, output
    assert data['score'] == sum(t['score'] for t in data['tests'])
    assert data['max_score'] == sum(t['max_score'] for t in data['tests'])
    assert data['extra_data']['complete'] is True
    last = output.rstrip().splitlines()[-1]
    assert last.startswith(f"Total: {data['score']}/{data['max_score']}"), last
    assert (code == 0) == expect_pass, (code, output[-2000:])
    return {t['name']: t for t in data['tests']}


# ------------------------------------------------------------------------ honest runs

def test_our_modules_get_full_marks_and_valid_gradescope_json(tmp_path):
    path = tmp_path / 'results.json'
    code, output, data = run_cli('--json', str(path))
    tests = assert_graded_by_the_grader(code, output, data, expect_pass=True)
    assert data['score'] == data['max_score'] == MAX
    assert len(tests) == len(checks.REGISTRY)
    for t in data['tests']:
        assert set(t) >= {'name', 'score', 'max_score', 'status', 'output', 'visibility'}
        assert t['status'] == 'passed' and t['score'] == t['max_score'] > 0
    assert isinstance(data['extra_data']['seed'], int)
    assert 'isolation' in output


@pytest.mark.parametrize("seed", [1, 11])
def test_round_off_on_entries_cancelled_to_near_zero_fails_nothing(seed):
    """Seed 1 draws an attention_step case whose float32 dh is one entry of 7.5e-7 (terms
    of size ~1 cancel); seed 11 one whose float64 dW_h has an entry of 1.1e-7. Compared
    at their own size they failed a correct implementation (by float32 round-off, and by
    the numeric gradient's own round-off); they must not."""
    grading = autograder.grade(only=['attention_step'], seed=seed)
    assert grading.results and grading.passed, [r.output for r in grading.results if not r.passed]


def test_gradient_checks_leave_a_wide_margin_on_our_modules():
    # A correct implementation must not fail by round-off: our worst relative error in
    # every gradient check is at least 100x below the threshold.
    grading = autograder.grade(only=['_gradients'])
    assert grading.results and grading.passed
    for r in grading.results:
        if r.name.endswith('_gradients') and r.output.startswith('worst'):
            assert float(r.output.split()[3]) <= checks.THRESHOLD / 100, (r.name, r.output)


def test_pytest_functions_are_generated_for_every_graded_test():
    for t in checks.REGISTRY:
        assert callable(getattr(autograder, 'test_' + t.name))


def test_helpers_are_reexported_from_gradient_check():
    import gradient_check
    for name in ('rel_error', 'eval_numerical_gradient', 'eval_numerical_gradient_array',
                 'grade', 'main'):
        assert hasattr(autograder, name)
    for name in ('rel_error', 'eval_numerical_gradient', 'eval_numerical_gradient_array'):
        assert getattr(autograder, name) is getattr(gradient_check, name)


def test_a_copy_of_our_modules_in_a_student_folder_gets_full_marks(tmp_path):
    grading = autograder.grade(student(tmp_path))
    assert grading.passed and grading.score == grading.max_score == MAX


# ------------------------------------------------------------------------ broken copies

def test_wrong_sign_in_conv_dw_fails_exactly_the_conv_backward_checks(tmp_path):
    target = student(tmp_path, '''
        def conv_backward(dout, cache):
            dx, dw = _ours.conv_backward(dout, cache)
            return dx, -dw
    ''', rnn_layers=False)
    grading = autograder.grade(target)
    rnn_tests = {t.name for t in checks.REGISTRY if t.module == 'rnn_layers'}
    assert failed(grading) == {'conv_gradients', 'conv_backward_values', 'conv_backward_full_convolution',
                               'conv_no_mutation', 'conv_float32', 'conv_cache'} | rnn_tests
    gradients = next(r for r in grading.results if r.name == 'conv_gradients')
    assert 'conv_backward dw [N=1 C=1 H=3 W=3 F=1 k=2x2]: rel error 1.0e+00 > 1e-07' in gradients.output
    assert 'conv_backward dx' not in gradients.output
    # No rnn_layers.py: its tests score 0 of their points, and the maximum stays the full one.
    assert grading.max_score == MAX
    assert all('rnn_layers.py not found' in r.output for r in grading.results if r.module == 'rnn_layers')


def test_not_implemented_function_scores_zero_and_the_run_completes(tmp_path):
    grading = autograder.grade(student(tmp_path, '''
        def conv_forward(x, w):
            raise NotImplementedError
    '''))
    assert failed(grading) == uses('conv_forward')
    for r in grading.results:
        if r.name in uses('conv_forward'):
            assert r.score == 0 and 'not implemented' in r.output and 'layers.py:' in r.output


def test_missing_function_scores_zero_with_a_clear_message(tmp_path):
    grading = autograder.grade(student(tmp_path, 'del conv2d_backward\n'))
    assert failed(grading) == uses('conv2d_backward')
    assert all('layers.py has no function conv2d_backward' in r.output
               for r in grading.results if r.status == 'failed')


@pytest.mark.parametrize('source, message', [
    ('def relu_forward(x)\n    return x\n', 'SyntaxError'),
    ('raise SystemExit(3)\n', 'SystemExit'),
    ('import os\nos._exit(0)\n', 'exited with code 0'),
])
def test_module_that_does_not_import_scores_zero_and_the_run_completes(tmp_path, source, message):
    (tmp_path / 'layers.py').write_text(source)
    grading = autograder.grade(str(tmp_path), only=['fc_', 'relu'])
    results = [r for r in grading.results if r.module == 'layers']
    assert results and all(r.score == 0 and r.status == 'failed' for r in grading.results)
    assert all(r.output.startswith('could not import layers.py') and message in r.output
               for r in results), results[0].output


def test_max_pool_routing_gradient_to_every_tied_max_fails_the_tie_test(tmp_path):
    grading = autograder.grade(student(tmp_path, '''
        def max_pool_backward(dout, cache):
            x, p = cache
            ph, pw, s = p['pool_height'], p['pool_width'], p['stride']
            dx = np.zeros_like(x)
            for n, c, i, j in np.ndindex(*dout.shape):
                window = x[n, c, i * s:i * s + ph, j * s:j * s + pw]
                ties = window == window.max()
                dx[n, c, i * s:i * s + ph, j * s:j * s + pw] += ties * dout[n, c, i, j]
            return dx
    ''', rnn_layers=False), only=['max_pool'])
    assert failed(grading) == {'max_pool_ties'}


def test_mutating_relu_fails_the_no_mutation_test(tmp_path):
    grading = autograder.grade(student(tmp_path, '''
        def relu_forward(x):
            np.maximum(x, 0, out=x)
            return x, x
    '''), only=['relu'])
    assert failed(grading) == {'relu_no_mutation', 'relu_cache'}   # the cached x is no longer x
    assert 'relu_forward: modified its input x' in next(r.output for r in grading.results if r.status == 'failed')


def test_backward_that_changes_the_cached_input_later_fails_no_mutation(tmp_path):
    # The forward is clean; the backward writes into the x the cache holds: seen at the
    # end of the test, as the caller's x.
    grading = autograder.grade(student(tmp_path, '''
        def fc_backward(dout, cache):
            grads = _ours.fc_backward(dout, cache)
            cache[0][...] = 0
            return grads
    '''), only=['fc_no_mutation'])
    assert failed(grading) == {'fc_no_mutation'}
    assert 'fc_forward: modified its input x' in grading.results[0].output


def test_float64_upcasting_fc_fails_the_dtype_test(tmp_path):
    grading = autograder.grade(student(tmp_path, '''
        def fc_forward(x, w, b):
            return _ours.fc_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    '''), only=['fc'])
    assert failed(grading) == {'fc_float32'}
    assert 'dtype float64, expected float32' in next(r.output for r in grading.results if r.status == 'failed')


def test_attention_backward_ignoring_dalpha_fails_its_gradient_checks(tmp_path):
    grading = autograder.grade(student(tmp_path, layers=False, rnn_layers='''
        def attention_backward(dcontext, cache, dalpha=None):
            return _ours.attention_backward(dcontext, cache)
    '''), only=['attention'])
    assert failed(grading) == {'attention_gradients', 'attention_no_mutation', 'attention_float32'}


# The student who wants batch norm's points without keeping its running statistics,
# or who keeps them wrong, or who changes more of bn_param than its statistics.
@pytest.mark.parametrize('override, message', [
    ("""
        def batchnorm_forward(x, gamma, beta, bn_param):
            return _ours.batchnorm_forward(x, gamma, beta, dict(bn_param))   # never updates bn_param
     """, "bn_param['running_mean'] after the call"),
    ("""
        def batchnorm_forward(x, gamma, beta, bn_param):
            out, cache = _ours.batchnorm_forward(x, gamma, beta, bn_param)
            if bn_param['mode'] == 'train':   # torch's unbiased running variance
                N = len(x)
                bn_param['running_var'] = bn_param['running_var'] + (1 - bn_param.get('momentum', 0.9)) * (
                    np.var(x, axis=0) * N / (N - 1) - np.var(x, axis=0))
            return out, cache
     """, "bn_param['running_var'] after the call"),
    ("""
        def batchnorm_forward(x, gamma, beta, bn_param):
            result = _ours.batchnorm_forward(x, gamma, beta, bn_param)
            bn_param['eps'] = 1e-5
            return result
     """, "modified bn_param['eps']"),
])
def test_batchnorm_running_statistics_must_be_the_documented_update(tmp_path, override, message):
    grading = autograder.grade(student(tmp_path, override, rnn_layers=False, attention_layers=False),
                               only=['batchnorm'])
    assert {'batchnorm_no_mutation', 'batchnorm_alt_no_mutation'} <= failed(grading)
    assert 'batchnorm_gradients' not in failed(grading)
    outputs = '\n'.join(r.output for r in grading.results if r.name == 'batchnorm_no_mutation')
    assert message in outputs, outputs


def test_batchnorm_test_mode_must_leave_bn_param_alone(tmp_path):
    grading = autograder.grade(student(tmp_path, """
        def batchnorm_forward(x, gamma, beta, bn_param):
            result = _ours.batchnorm_forward(x, gamma, beta, bn_param)
            bn_param['running_mean'] = bn_param.get('running_mean', 0) * 1.0 + 0.0   # a fresh array
            if bn_param['mode'] == 'test':
                bn_param['running_var'] = bn_param['running_var'] * 0.5
            return result
    """, rnn_layers=False, attention_layers=False), only=['batchnorm'])
    assert failed(grading) == {'batchnorm_no_mutation', 'batchnorm_alt_no_mutation'}
    output = next(r.output for r in grading.results if r.name == 'batchnorm_no_mutation')
    assert 'batchnorm_forward: modified its input bn_param' in output


def test_attention_that_ignores_the_mask_fails_its_values_and_gradients(tmp_path):
    grading = autograder.grade(student(tmp_path, layers=False, rnn_layers=False, attention_layers="""
        def attention_weights(q, k, mask=None):
            return _ours.attention_weights(q, k)
        def scaled_dot_product_attention_forward(q, k, v, mask=None):
            return _ours.scaled_dot_product_attention_forward(q, k, v)
    """), only=['attention_layers'])
    assert {'attention_weights_values', 'attention_weights_reference', 'scaled_dot_product_attention_values',
            'scaled_dot_product_attention_gradients', 'scaled_dot_product_attention_float32',
            'dot_product_attention_bad_shapes'} <= failed(grading)
    assert 'causal_mask_values' not in failed(grading)
    # multi-head attention imports nothing of the student's: it stays right
    assert not {r.name for r in grading.results if r.name.startswith('multi_head')} & failed(grading)


def test_multi_head_backward_with_missing_or_wrong_gradients_fails(tmp_path):
    grading = autograder.grade(student(tmp_path, layers=False, rnn_layers=False, attention_layers="""
        def multi_head_attention_backward(dout, cache):
            dquery, dkey, dvalue, grads = _ours.multi_head_attention_backward(dout, cache)
            del grads['W_o']
            return dquery, dkey, dvalue, grads
        def scaled_dot_product_attention_backward(dout, cache):
            dq, dk, dv = _ours.scaled_dot_product_attention_backward(dout, cache)
            return dq, dk, dv * 2
    """), only=['multi_head', 'scaled_dot'])
    assert {'multi_head_attention_gradients', 'multi_head_attention_float32',
            'scaled_dot_product_attention_gradients', 'scaled_dot_product_attention_values'} <= failed(grading)
    # (its input gradients come from our own attention, which the override does not reach)
    assert 'multi_head_self_attention_gradient' not in failed(grading)
    output = next(r.output for r in grading.results if r.name == 'multi_head_attention_gradients')
    assert "grads has keys" in output and "W_o" in output


def test_student_rnn_layers_gets_the_students_layers(tmp_path):
    (tmp_path / 'layers.py').write_text('def relu_forward(x):\n    return "student", x\n')
    (tmp_path / 'rnn_layers.py').write_text(
        'import layers\n'
        'def rnn_step_forward(x, prev_h, Wx, Wh, b):\n'
        '    raise ValueError("Wx " + layers.relu_forward(0)[0])\n')
    grading = autograder.grade(str(tmp_path), only=['rnn_step_forward_values'])
    assert 'ValueError: Wx student' in grading.results[0].output


def test_only_selects_a_subset(tmp_path):
    path = tmp_path / 'results.json'
    code, output, data = run_cli('--only', 'fc_forward_values,max_pool_ties', '--only', 'relu',
                                 '--json', str(path))
    assert code == 0, output
    names = {t['name'] for t in data['tests']}
    assert names == {'fc_forward_values', 'max_pool_ties'} | {
        t.name for t in checks.REGISTRY if 'relu' in t.name}
    assert 'conv_gradients' not in output
    code, output, _ = run_cli('--only', 'no_such_test')
    assert code == 2 and 'no test is selected' in output


def test_contract_grades_a_homework_only_student_fully(tmp_path):
    """A student who wrote only the homework's Part-1 functions gets full marks with
    --contract, and loses our extension tests without it."""
    import layers as our_layers
    keep = sorted(f for f in autograder.CONTRACT_FUNCTIONS if hasattr(our_layers, f))
    target = student(tmp_path, f'''
    for _name in [k for k in list(globals()) if k.endswith(("_forward", "_backward", "_loss"))]:
        if _name not in {keep!r}:
            del globals()[_name]
    ''', rnn_layers=False)
    grading = autograder.grade(target, contract=True)
    results = [r for r in grading.results if r.module == 'layers']
    assert results and all(r.status == 'passed' for r in results)
    assert {r.name for r in results} >= {'conv_gradients', 'max_pool_ties', 'fc_float32'}
    assert not any('dropout' in r.name or 'conv2d' in r.name for r in grading.results)
    everything = autograder.grade(target, only=['dropout', 'conv2d'])
    assert {'dropout_gradients', 'conv2d_gradients'} <= failed(everything)


# ------------------------------------------------------------------------ honest maximum

def test_empty_folder_scores_zero_of_the_full_maximum(tmp_path):
    path = tmp_path / 'results.json'
    (tmp_path / 'empty').mkdir()
    code, output, data = run_cli('--target', str(tmp_path / 'empty'), '--json', str(path))
    assert_graded_by_the_grader(code, output, data)
    assert data['score'] == 0 and data['max_score'] == MAX
    assert 'No graded module (layers.py, rnn_layers.py, attention_layers.py)' in output


def test_deleting_an_unfinished_module_does_not_raise_the_percentage(tmp_path):
    half = autograder.grade(student(tmp_path / 'a', rnn_layers='''
        def lstm_forward(x, h0, Wx, Wh, b):
            raise NotImplementedError
    '''))
    deleted = autograder.grade(student(tmp_path / 'b', rnn_layers=False))
    assert half.max_score == deleted.max_score == MAX
    assert deleted.score < half.score < MAX


# ------------------------------------------------------------------------ hostile submissions

ZEROS = '''
def _zeros(value):
    if isinstance(value, np.ndarray):
        return np.zeros_like(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_zeros(v) for v in value)
    if isinstance(value, dict):
        return {k: _zeros(v) for k, v in value.items()}
    return 0.0 if isinstance(value, (float, np.floating)) else value

def _as_zeros(f):
    def zeros(*args, **kwargs):
        return _zeros(f(*args, **kwargs))
    return zeros

for _name, _f in list(vars(_ours).items()):
    if callable(_f) and not _name.startswith('_') and (
            _name.endswith(('_forward', '_backward', '_loss'))
            or _name in ('attention_weights', 'causal_mask', 'positional_encoding')):
        globals()[_name] = _as_zeros(_f)
'''


def test_zeros_of_the_right_shapes_score_zero(tmp_path):
    path = tmp_path / 'results.json'
    code, output, data = run_cli('--target', student(tmp_path / 's', ZEROS, ZEROS, attention_layers=ZEROS),
                                 '--json', str(path))
    tests = assert_graded_by_the_grader(code, output, data)
    assert data['score'] == 0, [n for n, t in tests.items() if t['score']]


def hostile(tmp_path, layers_code, *extra, rnn_layers=False, timeout=120):
    """Grade a hostile layers.py (on top of ours unless it replaces the whole file)."""
    path = tmp_path / 'results.json'
    target = student(tmp_path / 'student', layers_code, rnn_layers, attention_layers=False)
    started = time.monotonic()
    code, output, data = run_cli('--target', target, '--json', str(path), *extra, timeout=timeout)
    return code, output, data, time.monotonic() - started


def test_patching_the_grader_from_the_submission_changes_nothing(tmp_path):
    # In-process graders fell to this: replace the grader's checks at import time.
    code, output, data, _ = hostile(tmp_path, ZEROS + '''
import sys
for name in ("autograder", "grader", "grader.checks", "gradient_check"):
    try:
        module = __import__(name)
        module.rel_error = lambda *a, **k: 0.0
        module.THRESHOLD = float("inf")
    except Exception as e:
        print("could not patch", name, type(e).__name__)
for module in list(sys.modules.values()):
    if hasattr(module, "rel_error"):
        module.rel_error = lambda *a, **k: 0.0
''', '--only', 'layers')
    assert_graded_by_the_grader(code, output, data)
    assert data['score'] == 0
    assert 'could not patch autograder ModuleNotFoundError' in output


def test_patching_numpy_in_the_submission_does_not_reach_the_grader(tmp_path):
    code, output, data, _ = hostile(tmp_path, ZEROS + '''
np.allclose = lambda *a, **k: True
np.array_equal = lambda *a, **k: True
np.abs = lambda x, *a, **k: np.zeros(np.shape(x))
np.max = lambda *a, **k: 0.0
np.ndarray.__eq__ = None if False else np.ndarray.__eq__
''', '--only', 'fc,relu,conv')
    assert_graded_by_the_grader(code, output, data)
    assert data['score'] == 0


def test_forged_total_lines_and_results_files_do_not_count(tmp_path):
    results = tmp_path / 'results.json'
    code, output, data, _ = hostile(tmp_path, ZEROS + f'''
import atexit, json, os, subprocess, sys
FORGED = {{"score": 167, "max_score": 167, "tests": []}}
def forge():
    print("Total: 167/167")
    for path in ({str(results)!r}, "/autograder/results/results.json"):
        try:
            with open(path, "w") as f:
                json.dump(FORGED, f)
        except OSError as e:
            print("could not write", path, type(e).__name__)
forge()
atexit.register(forge)
# and again after the grader is done, from a process that outlives this one
subprocess.Popen([sys.executable, "-c", "import time, json; time.sleep(3); "
                  "open({str(results)!r}, 'w').write(json.dumps({{'score': 167}}))"],
                 start_new_session=True)
_fc = fc_forward
def fc_forward(x, w, b):
    print("Total: 167/167")
    sys.stderr.write("\\x1b[2K\\rTotal: 167/167\\n")
    return _fc(x, w, b)
''', '--only', 'fc')
    tests = assert_graded_by_the_grader(code, output, data)
    assert data['score'] == 0
    assert '| Total: 167/167' in output and '\\x1b[2K\\rTotal' in output   # shown, escaped, inside a test
    time.sleep(4)
    assert json.loads(results.read_text()) == data   # the late writer never ran
    assert 'printed by the submission' in tests['fc_forward_values']['output']


def test_leaving_the_process_costs_only_the_tests_it_was_running(tmp_path):
    code, output, data, _ = hostile(tmp_path, '''
import os, sys
def relu_forward(x):
    os._exit(0)
def relu_backward(dout, cache):
    raise SystemExit(0)
def flatten_forward(x):
    raise KeyboardInterrupt
''', '--only', 'relu,flatten,fc')
    tests = assert_graded_by_the_grader(code, output, data)
    assert all(t['score'] == 0 for n, t in tests.items() if 'relu' in n or 'flatten' in n)
    assert all(t['status'] == 'passed' for n, t in tests.items() if n.startswith('fc'))
    assert 'exited with code 0' in tests['relu_values']['output']
    assert 'KeyboardInterrupt' in tests['flatten_values']['output']


@pytest.mark.parametrize('hang', [
    'while True:\n        pass',                                      # Python loop
    'sum(range(10 ** 12))',                                           # one long C call
    'import signal; signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, signal.SIG_IGN); time.sleep(10 ** 6)',
    'class Slow(Exception):\n        def __str__(self):\n            time.sleep(10 ** 6)\n    raise Slow()',
])
def test_hanging_functions_are_killed_and_the_budget_holds(tmp_path, hang):
    code, output, data, seconds = hostile(tmp_path, f'''
import time
def relu_forward(x):
    {hang}
def fc_forward(x, w, b):
    {hang}
''', '--only', 'relu,fc', '--time-limit', '1', '--budget', '4', timeout=60)
    tests = assert_graded_by_the_grader(code, output, data)
    assert data['score'] == 0
    assert any('time limit of 1 s per test exceeded' in t['output'] for t in tests.values())
    assert any("time budget of 4 s is used up" in t['output'] for t in tests.values())
    assert seconds < 30, seconds


def test_memory_hog_is_stopped_by_the_memory_limit(tmp_path):
    code, output, data, _ = hostile(tmp_path, '''
_fc = fc_forward
def fc_forward(x, w, b):
    hog = np.ones(20 * 2 ** 30 // 8)   # 20 GB
    return _fc(x, w, b)
''', '--only', 'fc', '--memory-mb', '1024')
    tests = assert_graded_by_the_grader(code, output, data)
    assert tests['fc_forward_values']['score'] == 0
    assert 'MemoryError' in tests['fc_forward_values']['output']
    assert all(t['status'] == 'passed' for n, t in tests.items() if 'fc' not in n)


def _processes_with(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            if marker in Path(f'/proc/{pid}/cmdline').read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.mark.parametrize('same_user', [False, True])
def test_no_process_started_by_the_submission_survives(tmp_path, same_user):
    if same_user and ROOT_USER:
        limit = "forks = 40"   # root ignores RLIMIT_NPROC: a bounded number of forks
    else:
        limit = "forks = 1000"
    marker = f'handgrad-survivor-{os.getpid()}-{same_user}'
    # The marker is the sleeps' argv[0] (an extra argument would make sleep exit at once,
    # and the test could not fail). Check first that such a process is found while it lives.
    control = subprocess.Popen([marker + '-control', '30'], executable='/bin/sleep')
    try:
        deadline = time.monotonic() + 5   # until the fork has exec'd sleep
        while not _processes_with((marker + '-control').encode()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_with((marker + '-control').encode()) == [str(control.pid)]
    finally:
        control.kill()
        control.wait()
    code, output, data, _ = hostile(tmp_path, f'''
import os, subprocess, sys, time
{limit}
def relu_forward(x):
    # double fork + setsid: the grandchild is nobody's child
    subprocess.Popen(["/bin/sh", "-c", "setsid " + sys.executable + " -c 'import os; "
                      "os.execv(\\"/bin/sleep\\", [\\"{marker}\\", \\"300\\"])' >/dev/null 2>&1 &"])
    spawned = 0
    for _ in range(forks):
        try:
            if os.fork() == 0:
                os.setsid()
                os.execv("/bin/sleep", ["{marker}", "301"])
            spawned += 1
        except OSError as e:
            print("fork refused after", spawned, type(e).__name__)
            break
    time.sleep(0.5)
    raise RuntimeError(f"spawned {{spawned}}")
''', '--only', 'relu', *(['--same-user'] if same_user else []), '--processes', '16')
    assert_graded_by_the_grader(code, output, data)
    assert data['score'] == 0
    assert any(f'RuntimeError: spawned {n}' in output for n in range(1, 10)), output[-2000:]
    if not same_user and ROOT_USER:
        assert 'fork refused after' in output   # the process limit of the sandbox uid held
    time.sleep(0.5)
    assert _processes_with(marker.encode()) == []


@pytest.mark.skipif(not ROOT_USER, reason="the privileged sandbox needs root")
def test_reading_the_reference_or_the_grader_from_disk_fails(tmp_path):
    code, output, data, _ = hostile(tmp_path, f'''
import glob, os
for path in ({str(ROOT / 'layers.py')!r}, {str(ROOT / 'grader' / 'references.py')!r},
             "/autograder/source/grader/references.py"):
    try:
        exec(open(path).read())
        print("READ", path)
    except OSError as e:
        print("no", path, type(e).__name__)
print("visible:", sorted(os.listdir("/")))
print("found:", [p for depth in range(1, 6) for p in glob.glob("/*" * depth + "/references.py")
                 if "site-packages" not in p])
def fc_forward(x, w, b):
    raise NotImplementedError
''', '--only', 'fc_forward_values', rnn_layers=False)
    assert_graded_by_the_grader(code, output, data)
    assert 'READ' not in output and 'found: []' in output
    assert data['score'] == 0


@pytest.mark.skipif(not ROOT_USER, reason="the privileged sandbox needs root")
def test_tampering_with_the_grader_for_the_next_run_fails(tmp_path):
    before = autograder.fingerprint()
    code, output, data, _ = hostile(tmp_path, f'''
for path in ({str(ROOT / 'autograder.py')!r}, {str(ROOT / 'grader' / 'checks.py')!r}):
    try:
        with open(path, "a") as f:
            f.write("\\nTHRESHOLD = float('inf')\\n")
        print("WROTE", path)
    except OSError as e:
        print("no", path, type(e).__name__)
''' + ZEROS, '--only', 'fc')
    assert_graded_by_the_grader(code, output, data)
    assert 'WROTE' not in output and autograder.fingerprint() == before


def test_the_weaker_same_user_mode_says_so_and_still_confines_files(tmp_path):
    code, output, data, _ = hostile(tmp_path, f'''
try:
    open({str(ROOT / 'grader' / 'references.py')!r}).read()
    print("READ the reference")
except OSError as e:
    print("no reference:", type(e).__name__)
try:
    open({str(ROOT / 'gradient_check.py')!r}, "a").close()
    print("WROTE the grader")
except OSError as e:
    print("no writing:", type(e).__name__)
''', '--only', 'fc', '--same-user', rnn_layers=None)
    tests = assert_graded_by_the_grader(code, output, data, expect_pass=True)
    assert 'isolation WEAKER' in output and 'WEAKER' in data['extra_data']['isolation']
    assert data['score'] == data['max_score']
    printed = tests['fc_forward_values']['output']
    if 'Landlock allowlist' in output:   # the kernel has Landlock: files stay out of reach
        assert 'no reference: PermissionError' in printed and 'no writing: PermissionError' in printed


LYING_RETURNS = '''
class Liar(np.ndarray):
    def __eq__(self, other): return np.ones(np.shape(other), bool)
    def __sub__(self, other): return np.zeros(np.shape(other))
    def __rsub__(self, other): return np.zeros(np.shape(other))
    def __abs__(self): return np.zeros(self.shape)

class Clever:
    shape = (2, 3)
    def __array__(self, *args, **kwargs):
        import inspect
        for frame in inspect.stack():   # look for the grader's expected values
            for value in frame.frame.f_locals.values():
                if isinstance(value, np.ndarray) and value.shape == self.shape:
                    return value
        return np.zeros(self.shape)
    def __float__(self): return 0.0

def fc_forward(x, w, b):
    out = np.zeros((x.shape[0], w.shape[1])).view(Liar)
    return out, (x, w, b)

def fc_backward(dout, cache):
    return Clever(), Clever(), Clever()

def relu_forward(x):
    return Clever(), x
'''


def test_lying_return_values_are_read_as_plain_data(tmp_path):
    code, output, data, _ = hostile(tmp_path, LYING_RETURNS, '--only', 'fc,relu')
    assert_graded_by_the_grader(code, output, data)
    assert data['score'] == 0


def test_reading_expected_values_from_memory_finds_nothing(tmp_path):
    # The child holds only its inputs: no module of the grader, no expected value.
    code, output, data, _ = hostile(tmp_path, '''
import gc, sys
print("grader modules:", sorted(m for m in sys.modules if "grader" in m or m in ("autograder", "gradient_check")))
def relu_forward(x):
    arrays = [o for o in gc.get_objects() if isinstance(o, np.ndarray) and o is not x and o.shape == x.shape]
    return (arrays[-1] if arrays else np.zeros_like(x)), x
''', '--only', 'relu')
    assert_graded_by_the_grader(code, output, data)
    assert data['score'] == 0 and 'grader modules: []' in output


def test_behaving_differently_on_repeated_calls_or_under_numeric_differentiation(tmp_path):
    code, output, data, _ = hostile(tmp_path, '''
_calls = [0]
_fc = fc_forward
def fc_forward(x, w, b):
    _calls[0] += 1
    out, cache = _fc(x, w, b)
    return (out if _calls[0] == 1 else out * 0), cache
_seen = {}
def conv_forward(x, w):
    # the old attack: answer a perturbed input with the unperturbed output, so the
    # numeric gradient of this forward is zero, like the backward below
    key = (x.shape, w.shape)
    if key not in _seen:
        _seen[key] = _ours.conv_forward(x, w)[0]
    return _seen[key], (x, w)
def conv_backward(dout, cache):
    x, w = cache
    return np.zeros_like(x), np.zeros_like(w)
''', '--only', 'fc,conv')
    tests = assert_graded_by_the_grader(code, output, data)
    # conv_forward answers each first-seen input shape correctly (the hand example), so only
    # conv_forward_values may score; everything that needs its gradients gets 0
    assert {n for n, t in tests.items() if n.startswith('conv_') and t['score']} <= {'conv_forward_values'}
    assert sum(t['score'] for n, t in tests.items() if n.startswith('fc_')) <= 2   # its first call only


def test_always_raising_value_error_earns_no_error_handling_points(tmp_path):
    code, output, data, _ = hostile(tmp_path, '''
def fc_forward(*args, **kwargs):
    raise ValueError("x w b y pool_param pool_height x mask Wx h0 W_a W_h prev_c gamma beta G")
softmax_loss = nll_loss = conv_forward = max_pool_forward = conv2d_forward = fc_forward
batchnorm_forward = layernorm_forward = spatial_batchnorm_forward = spatial_groupnorm_forward = fc_forward
''', '--only', 'bad')
    tests = assert_graded_by_the_grader(code, output, data)
    assert {n for n in tests if n.startswith(('fc_', 'conv', 'max_pool', 'softmax', 'nll'))}
    assert all(t['score'] == 0 for n, t in tests.items() if not n.startswith(('rnn', 'lstm', 'attention', 'word', 'temporal')))


def test_breaking_the_protocol_costs_the_test_and_a_fresh_child_goes_on(tmp_path):
    code, output, data, _ = hostile(tmp_path, '''
import os
def relu_forward(x):
    os.write(4, b"\\xff" * 64)          # garbage where the answer should be
    return x, x
def flatten_forward(x):
    os.write(4, (10 ** 12).to_bytes(8, "little"))   # an absurd message size
    return x.reshape(len(x), -1), x.shape
''', '--only', 'relu,flatten,fc')
    tests = assert_graded_by_the_grader(code, output, data)
    assert all(t['score'] == 0 for n, t in tests.items() if 'relu' in n or 'flatten' in n)
    assert all(t['status'] == 'passed' for n, t in tests.items() if n.startswith('fc'))


def test_flooding_the_output_is_cut(tmp_path):
    code, output, data, _ = hostile(tmp_path, '''
import sys
_relu = relu_forward
def relu_forward(x):
    sys.stdout.write("spam " * 2_000_000)
    return _relu(x)
''', '--only', 'relu_values')
    tests = assert_graded_by_the_grader(code, output, data, expect_pass=True)
    assert 'more characters not shown' in tests['relu_values']['output']
    assert len(tests['relu_values']['output']) < 5000


# ------------------------------------------------------------------------ seeds, config

def test_seed_comes_from_the_files_and_can_be_set(tmp_path):
    a = autograder.grade(student(tmp_path / 'a'), only=['fc_gradients'])
    b = autograder.grade(student(tmp_path / 'b'), only=['fc_gradients'])
    c = autograder.grade(student(tmp_path / 'c', '# another submission\n'), only=['fc_gradients'])
    assert a.seed == b.seed != c.seed
    path = tmp_path / 'results.json'
    code, _, data = run_cli('--target', str(tmp_path / 'a'), '--only', 'fc_gradients',
                            '--seed', '12345', '--json', str(path))
    assert code == 0 and data['extra_data']['seed'] == 12345


def test_random_inputs_depend_on_the_seed():
    checks.set_seed(1)
    first = checks.SPECS['fc'].cases(checks.rng('fc'))[0][1]['x']
    checks.set_seed(2)
    second = checks.SPECS['fc'].cases(checks.rng('fc'))[0][1]['x']
    checks.set_seed(1)
    again = checks.SPECS['fc'].cases(checks.rng('fc'))[0][1]['x']
    assert not (first == second).all() and (first == again).all()


def test_config_sets_points_visibility_and_the_included_tests(tmp_path):
    config = tmp_path / 'grading.toml'
    config.write_text(textwrap.dedent('''
        [assignment]
        include = ["fc_*", "relu_values"]
        exclude = ["fc_cache"]
        visibility = "after_due_date"

        [limits]
        time_per_test = 5

        [tests.fc_gradients]
        points = 10
        visibility = "hidden"
    '''))
    path = tmp_path / 'results.json'
    code, output, data = run_cli('--config', str(config), '--json', str(path))
    tests = assert_graded_by_the_grader(code, output, data, expect_pass=True)
    assert set(tests) == {'fc_forward_values', 'fc_bad_shapes', 'fc_gradients', 'fc_no_mutation',
                          'fc_float32', 'relu_values'}
    assert tests['fc_gradients']['max_score'] == 10 and tests['fc_gradients']['visibility'] == 'hidden'
    assert tests['relu_values']['visibility'] == 'after_due_date'
    assert data['max_score'] == 2 + 1 + 10 + 1 + 1 + 1


@pytest.mark.parametrize('text, message', [
    ('[tests.fc_gradient]\npoints = 2\n', 'no such test'),
    ('[tests.fc_gradients]\npoints = -1\n', 'must be >= 0'),
    ('[tests.fc_gradients]\nvisibility = "secret"\n', 'must be one of'),
    ('[assignment]\ncontracts = true\n', 'unknown key assignment.contracts'),
    ('[limits]\nbudget = 0\n', 'must be > 0'),
    ('[assignment\n', 'not valid TOML'),
])
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    config = tmp_path / 'grading.toml'
    config.write_text(text)
    code, output, _ = run_cli('--config', str(config))
    assert code == 2 and message in output, output


# ------------------------------------------------------------------------ batch, Gradescope

def test_batch_grades_every_student_folder_in_parallel(tmp_path):
    submissions = tmp_path / 'submissions'
    student(submissions / 'alice')
    student(submissions / 'bob', ZEROS, ZEROS)
    student(submissions / 'carol', rnn_layers=False)
    (submissions / 'dave').mkdir()
    csv_path = tmp_path / 'grades.csv'
    code, output, _ = run_cli('--batch', str(submissions), '--csv', str(csv_path), '--jobs', '2',
                              '--only', 'fc,lstm_step', timeout=300)
    assert code == 1, output   # not everyone passed
    import csv
    rows = {r['student']: r for r in csv.DictReader(csv_path.open())}
    assert set(rows) == {'alice', 'bob', 'carol', 'dave'}
    graded = {t.name for t in checks.REGISTRY if 'fc' in t.name or 'lstm_step' in t.name}
    maximum = sum(t.points for t in checks.REGISTRY if t.name in graded)
    assert rows['alice']['score'] == rows['alice']['max_score'] == str(maximum)
    assert rows['bob']['score'] == '0' and rows['dave']['score'] == '0'
    assert rows['carol']['failed_tests'].split(';') == [   # no rnn_layers.py
        t.name for t in checks.REGISTRY if t.name in graded and t.module == 'rnn_layers']
    for name in rows:
        data = json.loads((tmp_path / 'results' / name / 'results.json').read_text())
        assert str(data['score']) == rows[name]['score']


def test_gradescope_package_grades_a_submission_in_its_root(tmp_path):
    config = tmp_path / 'grading.toml'
    config.write_text('[assignment]\ninclude = ["layers"]\n')
    package = tmp_path / 'autograder.zip'
    code, output, _ = run_cli('--gradescope-package', str(package), '--config', str(config))
    assert code == 0, output
    root = tmp_path / 'autograder'
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        z.extractall(root / 'source')
    assert {'setup.sh', 'run_autograder', 'autograder.py', 'gradient_check.py',
            'grader/sandbox.py', 'grading.toml'} <= names
    assert not names & {'layers.py', 'rnn_layers.py'}   # no reference solution ships
    student(root / 'submission', rnn_layers=False)
    os.chmod(root / 'source' / 'run_autograder', 0o755)
    run = subprocess.run(['bash', str(root / 'source' / 'run_autograder')], capture_output=True,
                         text=True, env=dict(os.environ, AUTOGRADER_ROOT=str(root)), timeout=120)
    data = json.loads((root / 'results' / 'results.json').read_text())
    assert run.returncode == 0, run.stdout + run.stderr
    layers_points = sum(t.points for t in checks.REGISTRY if t.module == 'layers')
    assert data['score'] == data['max_score'] == layers_points


# ------------------------------------------------------------------------ references

def test_references_follow_the_definitions_on_a_hand_example():
    import numpy as np
    x = np.arange(9.).reshape(1, 1, 3, 3)
    w = np.array([[[[1., 2.], [0., -1.]]]])
    assert ref.conv(x, w).tolist() == [[[[-2., 0.], [4., 6.]]]]
    dx, dw = ref.conv_backward(x, w, np.ones((1, 1, 2, 2)))
    assert dx.tolist() == [[[[1., 3., 2.], [1., 2., 1.], [0., -1., -1.]]]]
    assert ref.max_pool(x, dict(pool_height=2, pool_width=2, stride=1)).tolist() == [[[[4., 5.], [7., 8.]]]]
    assert np.isclose(ref.softmax_loss(np.zeros((2, 4)), np.array([0, 3])), np.log(4))


def test_config_module_lists_its_keys():
    assert set(grading_config.SECTIONS['assignment']) == {'contract', 'include', 'exclude', 'visibility'}


def test_a_gradient_entry_that_is_near_zero_by_chance_is_not_failed_for_round_off():
    """Seed 521922386503361136 (a submission's digest) draws an attention step whose dA_proj
    has an entry of 1.7e-8; the numeric gradient is 1.2e-13 off there while its own error
    estimate at that entry is ~0. A correct layer must pass: the estimate of an entry is at
    least the array's largest (checks.numeric_gradient_and_noise)."""
    import rnn_layers
    checks.set_seed(521922386503361136)
    try:
        checks.check_gradients(checks.SPECS['attention_step'], rnn_layers.attention_step_forward,
                               rnn_layers.attention_step_backward)
    finally:
        checks.set_seed(0)
