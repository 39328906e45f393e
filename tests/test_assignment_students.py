"""
The cnn-rnn assignment graded as the course grades it: `python autograder.py --assignment
cnn-rnn --target DIR --json results.json` on realistic students.

tests/course_student/ is a complete, correct homework written the way a good student of
the course writes it (plain NumPy, nothing of handgrad; its course-provided rnn_layers
functions differ from ours, e.g. rnn_forward caches a dict of step caches). Each buggy
student below is that submission with ONE real mistake, made by substituting text in one
function (the substitution is asserted to have happened). The contract of the assignment
(grader/assignments.py, docs/API.md Part 1) says which mistakes must cost what:

- the correct student gets every point (nothing is charged for provided functions that
  differ from ours);
- a buggy student loses points only in the tests of its buggy function (models are run
  with trusted layer functions, so a layer bug costs only that layer's tests) and loses
  at least one point there;
- a Gradescope upload zipped with its folder (files in one subfolder) is graded as usual;
- a submission without cnn.py gets 0 in exactly the convnet_* tests, told that cnn.py is
  missing.
"""
import ast
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COURSE_STUDENT = os.path.join(ROOT, 'tests', 'course_student')
STUDENT_FILES = ('layers.py', 'rnn_layers.py', 'softmax.py', 'cnn.py', 'rnn.py')

# The graded tests of the assignment and their points (the course's announcement).
POINTS = {
    'fc_forward': 3, 'fc_backward': 3, 'relu_forward': 2, 'relu_backward': 2,
    'conv_forward': 5, 'conv_backward': 5, 'max_pool_forward': 4, 'max_pool_backward': 4,
    'max_pool_backward_ties': 1, 'softmax_loss': 3, 'softmax_loss_large_scores': 1,
    'temporal_fc_forward': 2, 'temporal_fc_backward': 3, 'temporal_softmax_loss': 3,
    'temporal_softmax_loss_large_scores': 1, 'softmax_classifier_init': 2,
    'softmax_classifier_scores': 1, 'softmax_classifier_loss': 4, 'convnet_init': 3,
    'convnet_scores': 1, 'convnet_loss': 5, 'captioning_rnn_loss': 5,
    'captioning_rnn_sample': 4,
}
MAX_SCORE = 67
assert sum(POINTS.values()) == MAX_SCORE


class Bug:
    """One mistake: in `function` of `filename`, `old` becomes `new`. The student may lose
    points only in tests named `prefix...`, must lose some there, and must fail each test
    of `must_fail` (`exactly`: and no other)."""

    def __init__(self, filename, function, old, new, prefix, must_fail=(), exactly=False):
        self.filename, self.function, self.old, self.new = filename, function, old, new
        self.prefix, self.must_fail, self.exactly = prefix, set(must_fail), exactly


BUGS = {
    # exp() of +1000 overflows: right for ordinary scores, inf/nan for large ones
    'softmax_loss_no_max_shift': Bug(
        'layers.py', 'softmax_loss',
        "shifted_logits = x - np.max(x, axis=1, keepdims=True)", "shifted_logits = x",
        prefix='softmax_loss', must_fail={'softmax_loss_large_scores'}, exactly=True),
    # (C, N, ...) back to (N, C, ...) by a reshape: right only when C == 1 (or N == 1)
    'max_pool_forward_reshape_for_transpose': Bug(
        'layers.py', 'max_pool_forward',
        "out = out_rows.reshape(C, N, H_out, W_out).transpose(1, 0, 2, 3)",
        "out = out_rows.reshape(N, C, H_out, W_out)",
        prefix='max_pool_forward', must_fail={'max_pool_forward'}),
    # squeeze() drops the batch axis of a batch of one
    'fc_forward_squeeze': Bug(
        'layers.py', 'fc_forward',
        "out = np.dot(x, w) + b", "out = (np.dot(x, w) + b).squeeze()",
        prefix='fc_forward', must_fail={'fc_forward'}, exactly=True),
    # height and width padding of dout swapped: right only for square kernels
    'conv_backward_pad_swapped': Bug(
        'layers.py', 'conv_backward',
        "((0, 0), (0, 0), (HH - 1, HH - 1), (WW - 1, WW - 1))",
        "((0, 0), (0, 0), (WW - 1, WW - 1), (HH - 1, HH - 1))",
        prefix='conv_backward', must_fail={'conv_backward'}, exactly=True),
    # right values, but the upstream gradient is overwritten
    'relu_backward_in_place': Bug(
        'layers.py', 'relu_backward',
        "dx = dout * (x > 0)", "dout[x <= 0] = 0\n    dx = dout",
        prefix='relu_backward', must_fail={'relu_backward'}, exactly=True),
    # the forward overwrites its input x; its backward, right on the cache it gets, must
    # not be charged for the forward's bug
    'relu_forward_in_place': Bug(
        'layers.py', 'relu_forward',
        "out = np.maximum(x, 0)", "out = np.maximum(x, 0, out=x)",
        prefix='relu_forward', must_fail={'relu_forward'}, exactly=True),
    # the fc input size of the default input (1, 28, 28), filter 7: 11 x 11 after the pool
    'convnet_init_hard_coded_size': Bug(
        'cnn.py', 'ConvNet.__init__',
        "num_filters * H_pool * W_pool", "num_filters * 11 * 11",
        prefix='convnet_'),
    # the caption written before the step: <START> in column 0, every word one late
    'captioning_sample_start_in_column_0': Bug(
        'rnn.py', 'CaptioningRNN.sample',
        "            words = np.argmax(scores[:, 0, :], axis=1)\n"
        "            captions[:, t] = words\n",
        "            captions[:, t] = words\n"
        "            words = np.argmax(scores[:, 0, :], axis=1)\n",
        prefix='captioning_rnn_sample', must_fail={'captioning_rnn_sample'}, exactly=True),
    'temporal_softmax_loss_no_max_shift': Bug(
        'rnn_layers.py', 'temporal_softmax_loss',
        "shifted = x_flat - np.max(x_flat, axis=1, keepdims=True)", "shifted = x_flat",
        prefix='temporal_softmax_loss', must_fail={'temporal_softmax_loss_large_scores'},
        exactly=True),
}


def definition_span(tree, qualified_name):
    """(first line, last line), 1-based, of the function 'name' or method 'Class.name'."""
    *owner, name = qualified_name.split('.')
    body = tree.body
    if owner:
        body = next(node for node in body
                    if isinstance(node, ast.ClassDef) and node.name == owner[0]).body
    node = next(node for node in body
                if isinstance(node, ast.FunctionDef) and node.name == name)
    return node.lineno, node.end_lineno


def substitute(folder, bug):
    """Make `bug` in the copy of the course student in `folder`, inside its function only."""
    path = os.path.join(folder, bug.filename)
    with open(path) as f:
        text = f.read()
    first, last = definition_span(ast.parse(text), bug.function)
    lines = text.splitlines(keepends=True)
    function_text = ''.join(lines[first - 1:last])
    assert function_text.count(bug.old) == 1, \
        f"{bug.old!r} is not (once) in {bug.function} of {bug.filename}"
    changed = ''.join(lines[:first - 1]) + function_text.replace(bug.old, bug.new) \
        + ''.join(lines[last:])
    assert changed != text
    ast.parse(changed)   # still Python
    with open(path, 'w') as f:
        f.write(changed)


def copy_course_student(folder):
    os.makedirs(folder)
    for name in STUDENT_FILES:
        shutil.copy(os.path.join(COURSE_STUDENT, name), folder)


def grade(target, json_path):
    """results.json of `autograder.py --assignment cnn-rnn` on target."""
    run = subprocess.run(
        [sys.executable, 'autograder.py', '--assignment', 'cnn-rnn', '--target', str(target),
         '--json', str(json_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode in (0, 1), f"grader exited with {run.returncode}:\n{run.stdout}\n{run.stderr}"
    with open(json_path) as f:
        results = json.load(f)
    assert results['extra_data']['complete'], results['output']
    return results, run.stdout


def scores_of(results):
    """{test name: (score, max_score, output)}; every test of the assignment, no other."""
    tests = {t['name']: (t['score'], t['max_score'], t['output']) for t in results['tests']}
    assert len(tests) == len(results['tests']), "a test name appears twice"
    assert {name: t[1] for name, t in tests.items()} == POINTS
    assert results['max_score'] == MAX_SCORE
    return tests


def lost(tests):
    return {name for name, (score, max_score, _) in tests.items() if score < max_score}


def describe(tests, names):
    return '\n'.join(f"{name}: {tests[name][0]}/{tests[name][1]}: {tests[name][2][:600]}"
                     for name in sorted(names))


def test_the_course_student_stands_alone():
    """The course student imports only NumPy and its own modules, and they import and run
    from its folder with handgrad's folder off sys.path."""
    for name in STUDENT_FILES:
        with open(os.path.join(COURSE_STUDENT, name)) as f:
            tree = ast.parse(f.read())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert imported <= {'numpy', 'layers', 'rnn_layers'}, (name, imported)
    run = subprocess.run(
        [sys.executable, '-c', (
            "import sys\n"
            "sys.path = [sys.argv[1]] + [p for p in sys.path[1:] if p.rstrip('/') != sys.argv[2]]\n"
            "import numpy as np, layers, rnn_layers, softmax, cnn, rnn\n"
            "for m in (layers, rnn_layers, softmax, cnn, rnn):\n"
            "    assert m.__file__.startswith(sys.argv[1]), m.__file__\n"
            "model = cnn.ConvNet((2, 9, 8), 3, 3, 5, 4, 1e-2, dtype=np.float64)\n"
            "loss, grads = model.loss(np.ones((2, 2, 9, 8)), np.array([0, 3]))\n"
            "assert sorted(grads) == sorted(model.params)\n"),
         COURSE_STUDENT, ROOT],
        cwd=COURSE_STUDENT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_correct_course_student_gets_full_marks(tmp_path):
    results, _ = grade(COURSE_STUDENT, tmp_path / 'results.json')
    tests = scores_of(results)
    assert not lost(tests), describe(tests, lost(tests))
    assert results['score'] == results['max_score'] == MAX_SCORE


@pytest.mark.parametrize('name', sorted(BUGS))
def test_a_buggy_student_loses_points_only_for_its_bug(tmp_path, name):
    bug = BUGS[name]
    student = tmp_path / name
    copy_course_student(student)
    substitute(student, bug)
    results, _ = grade(student, tmp_path / 'results.json')
    tests = scores_of(results)
    failed = lost(tests)
    elsewhere = {test for test in failed if not test.startswith(bug.prefix)}
    assert not elsewhere, (f"{name} (a bug in {bug.function}) lost points outside "
                           f"{bug.prefix}*:\n" + describe(tests, elsewhere))
    assert failed, f"{name} (a bug in {bug.function}) lost no points"
    assert bug.must_fail <= failed, (f"{name} passed {sorted(bug.must_fail - failed)}:\n"
                                     + describe(tests, bug.must_fail - failed))
    if bug.exactly:
        assert failed == bug.must_fail, (f"{name} also lost points in "
                                         + describe(tests, failed - bug.must_fail))
    assert results['score'] == MAX_SCORE - sum(
        max_score - score for score, max_score, _ in tests.values())


def test_an_upload_zipped_with_its_folder_is_graded(tmp_path):
    upload = tmp_path / 'upload'
    copy_course_student(upload / 'hw3_submission')
    results, stdout = grade(upload, tmp_path / 'results.json')
    tests = scores_of(results)
    assert not lost(tests), describe(tests, lost(tests))
    assert results['score'] == MAX_SCORE
    assert 'hw3_submission' in results['output'] + stdout


def test_a_missing_cnn_py_costs_exactly_the_convnet_tests(tmp_path):
    student = tmp_path / 'no_cnn'
    copy_course_student(student)
    os.remove(student / 'cnn.py')
    results, _ = grade(student, tmp_path / 'results.json')
    tests = scores_of(results)
    convnet = {test for test in POINTS if test.startswith('convnet_')}
    assert lost(tests) == convnet, describe(tests, lost(tests) ^ convnet)
    for test in convnet:
        score, _, output = tests[test]
        assert score == 0, describe(tests, {test})
        assert 'cnn.py' in output, describe(tests, {test})
    assert results['score'] == MAX_SCORE - sum(POINTS[test] for test in convnet)
