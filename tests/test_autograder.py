"""
Tests of autograder.py: our modules get full marks, and deliberately broken
implementations (written to tmp_path, built on ours) lose exactly the tests they should.
"""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import autograder

ROOT = Path(autograder.__file__).resolve().parent

# A student's module that starts as a copy of ours (loaded by path under another name)
# and then overrides some functions.
PREAMBLE = '''
import importlib.util
import numpy as np
_spec = importlib.util.spec_from_file_location("handgrad_original_{module}", {path!r})
_ours = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ours)
globals().update({{k: v for k, v in vars(_ours).items() if not k.startswith("__")}})
'''
HAVE_RNN_LAYERS = (ROOT / 'rnn_layers.py').exists()


def student(directory, overrides='', module='layers'):
    """Write directory/<module>.py = ours + `overrides`; return the directory."""
    preamble = PREAMBLE.format(module=module, path=str(ROOT / f'{module}.py'))
    (directory / f'{module}.py').write_text(preamble + textwrap.dedent(overrides))
    return str(directory)


def failed(results):
    return {r.test.name for r in results if r.status == 'failed'}


def uses(function):
    return {t.name for t in autograder.REGISTRY if function in t.functions}


def test_our_modules_get_full_marks_and_valid_gradescope_json(tmp_path):
    path = tmp_path / 'results.json'
    run = subprocess.run([sys.executable, str(ROOT / 'autograder.py'), '--json', str(path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(path.read_text())
    assert isinstance(data['score'], int) and data['score'] == data['max_score'] > 0
    assert data['score'] == sum(t['score'] for t in data['tests'])
    assert isinstance(data['output'], str) and data['visibility'] == 'visible'
    names = [t['name'] for t in data['tests']]
    assert len(names) == len(set(names))
    for t in data['tests']:
        assert set(t) >= {'name', 'score', 'max_score', 'status', 'output', 'visibility'}
        assert isinstance(t['name'], str) and isinstance(t['output'], str)
        assert t['status'] == 'passed' and t['score'] == t['max_score'] > 0
        assert t['visibility'] == 'visible'
    assert f"Total: {data['score']}/{data['max_score']}" in run.stdout


def test_gradient_checks_leave_a_wide_margin_on_our_modules():
    # A correct implementation must not fail by round-off: our worst relative error in
    # every gradient check is at least 100x below the threshold.
    results = autograder.grade(only=['_gradients'])
    assert results
    for r in results:
        if r.status != 'skipped':
            assert r.status == 'passed', r.output
            assert float(r.output.split()[-1]) <= autograder.THRESHOLD / 100, (r.test.name, r.output)


def test_pytest_functions_are_generated_for_every_graded_test():
    for t in autograder.REGISTRY:
        assert callable(getattr(autograder, 'test_' + t.name))


def test_helpers_are_reexported_from_gradient_check():
    import gradient_check
    for name in ('rel_error', 'eval_numerical_gradient', 'eval_numerical_gradient_array'):
        assert getattr(autograder, name) is getattr(gradient_check, name)


def test_wrong_sign_in_conv_dw_fails_exactly_the_conv_backward_checks(tmp_path, capsys):
    target = student(tmp_path, '''
        def conv_backward(dout, cache):
            dx, dw = _ours.conv_backward(dout, cache)
            return dx, -dw
    ''')
    results = autograder.grade(target)
    assert failed(results) == {'conv_gradients', 'conv_backward_values',
                               'conv_backward_full_convolution'}
    gradients = next(r for r in results if r.test.name == 'conv_gradients')
    assert 'conv_backward dw [N=2 C=3 H=5 W=7 F=2 k=2x3]: rel error 1.0e+00 > 1e-07' in gradients.output
    assert 'conv_backward dx' not in gradients.output
    # No rnn_layers.py in the target: its suite is skipped and left out of the maximum.
    assert {r.test.module for r in results if r.status == 'skipped'} == {'rnn_layers'}

    assert autograder.main(['--target', target]) == 1
    out = capsys.readouterr().out
    assert 'FAIL  conv_gradients' in out and 'rnn_layers.py: module not found — skipped' in out
    layers_points = sum(t.points for t in autograder.REGISTRY if t.module == 'layers')
    assert f"Total: {layers_points - 3 - 2 - 2}/{layers_points}" in out

    # Grading the broken copy did not leak into a later grading of ours.
    assert not failed(autograder.grade(only=['conv']))


def test_not_implemented_function_scores_zero_and_the_run_completes(tmp_path):
    target = student(tmp_path, '''
        def conv_forward(x, w):
            raise NotImplementedError
    ''')
    results = autograder.grade(target)
    assert failed(results) == uses('conv_forward')
    for r in results:
        if r.test.name in uses('conv_forward'):
            assert r.score == 0 and 'NotImplementedError' in r.output
    assert any(r.status == 'passed' for r in results)


def test_missing_function_scores_zero_with_a_clear_message(tmp_path):
    target = student(tmp_path, 'del conv2d_backward\n')
    results = autograder.grade(target)
    assert failed(results) == uses('conv2d_backward')
    assert all('layers.py has no function conv2d_backward' in r.output
               for r in results if r.status == 'failed')


@pytest.mark.parametrize('source, message', [
    ('def relu_forward(x)\n    return x\n', 'SyntaxError'),
    ('raise SystemExit(3)\n', 'SystemExit'),
])
def test_module_that_does_not_import_scores_zero_and_the_run_completes(tmp_path, source, message):
    (tmp_path / 'layers.py').write_text(source)
    results = autograder.grade(str(tmp_path))
    graded = [r for r in results if r.test.module == 'layers']
    assert graded and all(r.score == 0 and r.status == 'failed' for r in graded)
    assert all(r.output.startswith('could not import layers.py') and message in r.output
               for r in graded)
    assert autograder.main(['--target', str(tmp_path)]) == 1


def test_max_pool_routing_gradient_to_every_tied_max_fails_the_tie_test(tmp_path):
    target = student(tmp_path, '''
        def max_pool_backward(dout, cache):
            x, p = cache
            ph, pw, s = p['pool_height'], p['pool_width'], p['stride']
            dx = np.zeros_like(x)
            for n, c, i, j in np.ndindex(*dout.shape):
                window = x[n, c, i * s:i * s + ph, j * s:j * s + pw]
                ties = window == window.max()
                dx[n, c, i * s:i * s + ph, j * s:j * s + pw] += ties * dout[n, c, i, j]
            return dx
    ''')
    assert failed(autograder.grade(target)) == {'max_pool_ties'}


def test_mutating_relu_fails_the_no_mutation_test(tmp_path):
    target = student(tmp_path, '''
        def relu_forward(x):
            np.maximum(x, 0, out=x)
            return x, x
    ''')
    results = autograder.grade(target)
    assert failed(results) == {'relu_no_mutation'}
    assert 'relu_forward [x=1x5]: modified its input x' in next(
        r.output for r in results if r.status == 'failed')


def test_float64_upcasting_fc_fails_the_dtype_test(tmp_path):
    target = student(tmp_path, '''
        def fc_forward(x, w, b):
            return _ours.fc_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    ''')
    results = autograder.grade(target)
    assert failed(results) == {'fc_float32'}
    assert 'dtype float64, expected float32' in next(r.output for r in results if r.status == 'failed')


@pytest.mark.skipif(not HAVE_RNN_LAYERS, reason="no rnn_layers.py in the repo yet")
def test_attention_backward_ignoring_dalpha_fails_its_gradient_check(tmp_path):
    target = student(tmp_path, '''
        def attention_backward(dcontext, cache, dalpha=None):
            return _ours.attention_backward(dcontext, cache)
    ''', module='rnn_layers')
    results = autograder.grade(target)
    assert failed(results) == {'attention_gradients'}
    assert {r.test.module for r in results if r.status == 'skipped'} == {'layers'}


def test_hanging_function_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(autograder, 'TIME_LIMIT', 0.2)
    target = student(tmp_path, '''
        def flatten_forward(x):
            while True:
                pass
    ''')
    results = autograder.grade(target, only=['flatten'])
    assert failed(results) == uses('flatten_forward')
    assert all('TimeoutError' in r.output for r in results)


def test_student_rnn_layers_gets_the_students_layers(tmp_path):
    (tmp_path / 'layers.py').write_text('WHOSE = "student"\n')
    (tmp_path / 'rnn_layers.py').write_text('import layers\nWHOSE = layers.WHOSE\n')
    before = sys.modules.get('layers')
    modules = autograder.load_modules(str(tmp_path))
    assert modules['rnn_layers'].WHOSE == 'student'
    assert sys.modules.get('layers') is before


def test_target_without_layers_cannot_import_ours(tmp_path):
    (tmp_path / 'rnn_layers.py').write_text('import layers\n')
    results = autograder.grade(str(tmp_path))
    assert {r.status for r in results if r.test.module == 'layers'} == {'skipped'}
    rnn = [r for r in results if r.test.module == 'rnn_layers']
    assert rnn and all(r.output.startswith('could not import rnn_layers.py') for r in rnn)


def test_only_selects_a_subset(tmp_path, capsys):
    path = tmp_path / 'results.json'
    assert autograder.main(['--only', 'fc_forward_values,max_pool_ties', '--only', 'relu',
                            '--json', str(path)]) == 0
    names = {t['name'] for t in json.loads(path.read_text())['tests']}
    assert names == {'fc_forward_values', 'max_pool_ties'} | {
        t.name for t in autograder.REGISTRY if 'relu' in t.name}
    assert 'conv_gradients' not in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        autograder.main(['--only', 'no_such_test'])
    assert exit_info.value.code == 2


def test_contract_grades_a_homework_only_student_fully(tmp_path):
    """A student who wrote only the homework's Part-1 functions gets full marks with
    --contract, and loses our extension tests without it."""
    import layers as our_layers
    part1 = sorted(f for f in autograder.CONTRACT_FUNCTIONS if hasattr(our_layers, f))
    keep = ", ".join(repr(f) for f in part1)
    student(tmp_path, f'''
    for _name in [k for k in list(globals()) if k.endswith(("_forward", "_backward", "_loss"))]:
        if _name not in ({keep},):
            del globals()[_name]
    ''')
    (tmp_path / 'rnn_layers.py').unlink(missing_ok=True)
    results = autograder.grade(str(tmp_path), contract=True)
    counted = [r for r in results if r.status != 'skipped']
    assert counted and all(r.status == 'passed' for r in counted)
    assert {r.test.name for r in counted} >= {'conv_gradients', 'max_pool_ties', 'fc_float32'}
    assert not any('dropout' in r.test.name or 'conv2d' in r.test.name for r in results)
    everything = autograder.grade(str(tmp_path))
    assert {'dropout_gradients', 'conv2d_gradients'} <= failed(everything)
