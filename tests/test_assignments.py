"""
Tests of the assignment manifest (grader/assignments.py) and of grading one assignment
(`autograder.py --assignment ID`): the manifest names real definitions, each assignment's
tests are named after what they grade, our own modules get full marks, public tests are
visible and hidden ones shown after the due date, and a grading config or a batch can
target one assignment. Real-bug students of the cnn-rnn homework are graded in
tests/test_assignment_students.py; the release in tests/test_release.py.
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import autograder
from grader import assignments, checks

ROOT = Path(autograder.__file__).resolve().parent


def definitions(path):
    """{'name', 'Class', 'Class.method'} defined at the top level of a module (and in its classes)."""
    names = set()
    for node in ast.parse((ROOT / path).read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(f"{node.name}.{item.name}" for item in node.body
                         if isinstance(item, ast.FunctionDef))
    return names


def run_cli(*args, timeout=300):
    json_path = Path(args[args.index('--json') + 1]) if '--json' in args else None
    run = subprocess.run([sys.executable, str(ROOT / 'autograder.py'), *args],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    data = json.loads(json_path.read_text()) if json_path and json_path.exists() else None
    return run.returncode, run.stdout + run.stderr, data


@pytest.mark.parametrize('assignment', list(assignments.ASSIGNMENTS.values()), ids=str)
def test_manifest_names_what_exists(assignment):
    assert assignment.suite in checks.SUITES
    for student_file in assignment.student_files:
        defined = definitions(student_file.path)
        for name in student_file.student + student_file.provided:
            assert name in defined, f"{assignment.id}: {student_file.path} has no {name}"
        assert not set(student_file.student) & set(student_file.provided)
    for path in assignment.support_files:
        assert (ROOT / path).exists(), path
    tests = autograder.assignment_tests(assignment)
    assert tests, assignment.id
    for pattern in assignment.public:
        assert any(assignment.is_public(t.name) for t in tests if t.name), pattern
        import fnmatch
        assert fnmatch.filter([t.name for t in tests], pattern), \
            f"{assignment.id}: public pattern {pattern} matches no test"


def test_cnn_rnn_tests_are_named_after_what_they_grade():
    tests = autograder.assignment_tests(assignments.get('cnn-rnn'))
    prefixes = {'SoftmaxClassifier': 'softmax_classifier_', 'ConvNet': 'convnet_',
                'CaptioningRNN': 'captioning_rnn_'}
    for test in tests:
        graded = test.functions[-1]
        assert test.name.startswith(prefixes.get(graded, graded)), (test.name, test.functions)
    assert sum(t.points for t in tests) == 67
    # nothing the course provides is graded, and only the homework's files are read
    provided = {name for f in assignments.get('cnn-rnn').student_files for name in f.provided
                if '.' not in name and name not in prefixes}
    assert not provided & {f for t in tests for f in t.functions}
    assert {t.module for t in tests} == {'layers', 'rnn_layers', 'softmax', 'cnn', 'rnn'}


def test_norm_attention_grades_only_its_student_functions():
    assignment = assignments.get('norm-attention')
    tests = autograder.assignment_tests(assignment)
    work = {name for f in assignment.student_files for name in f.student}
    assert all(work.issuperset(t.functions) for t in tests)
    assert {t.module for t in tests} == {'layers', 'attention_layers'}
    # positional_encoding and causal_mask are provided: their tests are not the student's
    assert not [t for t in tests if 'positional_encoding' in t.functions or 'causal_mask' in t.functions]


def test_unknown_assignment_is_a_clear_error():
    code, output, _ = run_cli('--assignment', 'nope')
    assert code == 2 and "no assignment 'nope' (known: cnn-rnn, norm-attention)" in output


@pytest.mark.parametrize('assignment_id', ['cnn-rnn', 'norm-attention'])
def test_our_modules_get_full_marks_with_public_and_hidden_visibility(tmp_path, assignment_id):
    path = tmp_path / 'results.json'
    code, output, data = run_cli('--assignment', assignment_id, '--json', str(path))
    assignment = assignments.get(assignment_id)
    maximum = sum(t.points for t in autograder.assignment_tests(assignment))
    assert code == 0, output
    assert data['score'] == data['max_score'] == maximum, output
    assert output.strip().splitlines()[-1] == f"Total: {maximum}/{maximum}"
    for test in data['tests']:
        expected = 'visible' if assignment.is_public(test['name']) else autograder.HIDDEN_VISIBILITY
        assert test['visibility'] == expected, test['name']
    assert {t['visibility'] for t in data['tests']} == {'visible', autograder.HIDDEN_VISIBILITY}


def test_config_names_an_assignments_tests(tmp_path):
    config = tmp_path / 'grading.toml'
    config.write_text('[assignment]\ninclude = ["fc_*", "convnet_loss"]\n\n'
                      '[tests.convnet_loss]\npoints = 10\nvisibility = "visible"\n')
    path = tmp_path / 'results.json'
    code, output, data = run_cli('--assignment', 'cnn-rnn', '--config', str(config),
                                 '--json', str(path))
    assert code == 0, output
    assert {t['name']: t['max_score'] for t in data['tests']} == {
        'fc_forward': 3, 'fc_backward': 3, 'convnet_loss': 10}
    # a test of the default suite is not a test of this assignment
    config.write_text('[tests.fc_gradients]\npoints = 2\n')
    code, output, _ = run_cli('--assignment', 'cnn-rnn', '--config', str(config))
    assert code == 2 and 'no such test' in output


def test_stub_submission_scores_zero_without_a_traceback(tmp_path):
    # every student definition raises NotImplementedError, as in a fresh handout
    folder = tmp_path / 'stubs'
    folder.mkdir()
    assignment = assignments.get('cnn-rnn')
    for student_file in assignment.student_files:
        lines = ['import numpy as np', '']
        classes = {}
        for name in student_file.student:
            if '.' in name:
                cls, method = name.split('.')
                classes.setdefault(cls, []).append(method)
            else:
                lines += [f"def {name}(*args, **kwargs):",
                          f"    raise NotImplementedError('{name}')", '']
        for cls, methods in classes.items():
            if '__init__' not in methods:   # a provided constructor: stubbed here too
                methods = ['__init__'] + methods
            lines.append(f"class {cls}:")
            for method in methods:
                lines += [f"    def {method}(self, *args, **kwargs):",
                          f"        raise NotImplementedError('{cls}.{method}')"]
        (folder / student_file.path).write_text('\n'.join(lines) + '\n')
    path = tmp_path / 'results.json'
    code, output, data = run_cli('--assignment', 'cnn-rnn', '--target', str(folder),
                                 '--json', str(path))
    assert code == 1 and data['score'] == 0 and data['max_score'] == 67
    assert 'Traceback' not in output
    assert all('not implemented' in t['output'] for t in data['tests']), \
        [t['output'] for t in data['tests'] if 'not implemented' not in t['output']]


def test_gradescope_package_grades_the_assignment(tmp_path):
    import zipfile
    package = tmp_path / 'autograder.zip'
    code, output, _ = run_cli('--gradescope-package', str(package), '--assignment', 'cnn-rnn')
    assert code == 0, output
    with zipfile.ZipFile(package) as z:
        run_autograder = z.read('run_autograder').decode()
        names = set(z.namelist())
    assert '--assignment cnn-rnn' in run_autograder
    assert 'grader/assignments.py' in names and 'grader/suite_cnn_rnn.py' in names
    assert not names & {'layers.py', 'rnn_layers.py', 'softmax.py', 'cnn.py', 'rnn.py', 'kernels.py'}


def test_batch_grades_every_student_by_the_assignment(tmp_path):
    import csv
    import shutil
    folder = tmp_path / 'students'
    shutil.copytree(ROOT / 'tests' / 'course_student', folder / 'alice')
    (folder / 'bob').mkdir()
    (folder / 'bob' / 'layers.py').write_text('import numpy as np\n\n'
                                              'def fc_forward(x, w, b):\n    return x @ w + b, None\n')
    grades = tmp_path / 'grades.csv'
    code, output, _ = run_cli('--assignment', 'cnn-rnn', '--batch', str(folder), '--csv',
                              str(grades), '--jobs', '2')
    assert code == 1, output
    rows = {row['student']: row for row in csv.DictReader(grades.open())}
    assert rows['alice']['score'] == rows['alice']['max_score'] == '67', rows
    # bob wrote only fc_forward (and returns no usable cache): exactly its 3 points
    assert rows['bob']['score'] == '3' and rows['bob']['max_score'] == '67', rows
