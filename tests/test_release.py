"""grader/release.py: an assignment's handout, its checker, solutions, Gradescope zip, leak scan."""
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
import textwrap
import time
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from grader import assignments, release  # noqa: E402

CNN_RNN = assignments.get('cnn-rnn')
NORM_ATTENTION = assignments.get('norm-attention')


def student_definitions(assignment):
    return [n for f in assignment.student_files for n in f.student]


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp('release') / 'cnn-rnn'
    summary = release.release('cnn-rnn', str(out))
    return out, summary


def run_checker(folder, *names):
    started = time.monotonic()
    run = subprocess.run([sys.executable, 'autograder.py', *names], cwd=folder,
                         capture_output=True, text=True, timeout=120)
    return run.returncode, run.stdout + run.stderr, time.monotonic() - started


def definition_lines(output, assignment):
    """{definition: its line of the checker's output}."""
    names = set(student_definitions(assignment))
    lines = {}
    for line in output.splitlines():
        parts = line.replace('NOT IMPLEMENTED', 'NOT_IMPLEMENTED').split()
        if len(parts) >= 2 and parts[1] in names:
            lines[parts[1]] = line
    return lines


def copy_handout(out, destination, with_solutions=False):
    shutil.copytree(out / 'student', destination)
    if with_solutions:
        for name in os.listdir(out / 'solutions'):
            shutil.copyfile(out / 'solutions' / name, destination / name)
    return destination


def grade(target, json_path):
    run = subprocess.run([sys.executable, os.path.join(REPO, 'autograder.py'), '--assignment',
                          'cnn-rnn', '--target', str(target), '--json', str(json_path)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    with open(json_path) as f:
        return json.load(f), run.stdout + run.stderr


# ----------------------------------------------------------------------------- the handout

def test_handout_holds_the_stubbed_student_files_and_no_solution(released):
    out, summary = released
    student = out / 'student'
    assert sorted(summary['student']) == release.walk_files(str(student))
    for f in CNN_RNN.student_files:
        tree = ast.parse((student / f.path).read_text())
        for name in f.student:
            top, _, method = name.partition('.')
            node = next(n for n in tree.body if getattr(n, 'name', None) == top)
            if method:
                node = next(n for n in node.body if getattr(n, 'name', None) == method)
            body = node.body[1:]   # after the docstring
            assert len(body) == 1 and isinstance(body[0], ast.Raise), name
            assert f'"{name} is not implemented yet"' in ast.get_source_segment(
                (student / f.path).read_text(), body[0])
    assert not any(p.endswith(('.pyc', 'kernels.py')) or '__pycache__' in p for p in summary['student'])
    readme = (student / 'README.md').read_text()
    assert CNN_RNN.title in readme and CNN_RNN.contract in readme and 'collect_submission.py' in readme
    assert all(f"`{n}`" in readme for n in student_definitions(CNN_RNN))


def test_checker_on_the_stubs_says_not_implemented_for_every_definition(released):
    out, _ = released
    code, output, seconds = run_checker(out / 'student')
    assert code == 1
    assert 'Traceback' not in output
    lines = definition_lines(output, CNN_RNN)
    assert sorted(lines) == sorted(student_definitions(CNN_RNN))
    assert all(line.startswith('NOT IMPLEMENTED') for line in lines.values()), output
    assert seconds < 20


def test_checker_passes_the_solutions(released, tmp_path):
    out, _ = released
    handout = copy_handout(out, tmp_path / 'solved', with_solutions=True)
    code, output, seconds = run_checker(handout)
    lines = definition_lines(output, CNN_RNN)
    assert code == 0, output
    assert sorted(lines) == sorted(student_definitions(CNN_RNN))
    assert all(line.startswith('PASS') for line in lines.values()), output
    assert seconds < 20
    code, output, _ = run_checker(handout, 'fc_forward')
    assert code == 0 and list(definition_lines(output, CNN_RNN)) == ['fc_forward']


def splice(solution_text, handout_text, keep):
    """The solution's layers.py with every student definition but `keep` stubbed as in
    the handout (the solution's helpers stay, so the kept bodies run)."""
    solution, stub = ast.parse(solution_text), ast.parse(handout_text)
    stub_lines, lines = handout_text.splitlines(), solution_text.splitlines()
    stubs = {n.name: n for n in stub.body if isinstance(n, ast.FunctionDef)}
    targets = [n for n in solution.body if isinstance(n, ast.FunctionDef)
               and n.name in stubs and n.name not in keep
               and ('layers.py', n.name) in assignments.student_work()]
    for node in sorted(targets, key=lambda n: -n.lineno):
        s = stubs[node.name]
        lines[node.lineno - 1:node.end_lineno] = stub_lines[s.lineno - 1:s.end_lineno]
    return '\n'.join(lines) + '\n'


@pytest.fixture(scope='module')
def partial(released, tmp_path_factory):
    """A handout with only fc_forward and fc_backward implemented."""
    out, _ = released
    handout = copy_handout(out, tmp_path_factory.mktemp('partial') / 'handout')
    text = splice((out / 'solutions' / 'layers.py').read_text(), (handout / 'layers.py').read_text(),
                  keep={'fc_forward', 'fc_backward'})
    (handout / 'layers.py').write_text(text)
    return handout


def test_checker_on_a_partial_handout_passes_exactly_what_is_written(partial):
    code, output, _ = run_checker(partial)
    lines = definition_lines(output, CNN_RNN)
    assert code == 1 and 'Traceback' not in output
    assert sorted(n for n, line in lines.items() if line.startswith('PASS')) == ['fc_backward', 'fc_forward']
    assert all(line.startswith('NOT IMPLEMENTED') for n, line in lines.items()
               if not n.startswith('fc_')), output


def test_a_failing_definition_gets_one_line_with_the_error_and_no_traceback(partial, tmp_path):
    handout = tmp_path / 'broken'
    shutil.copytree(partial, handout)
    text = (handout / 'layers.py').read_text()
    # fc_backward returns dw twice the right size; fc_forward divides by a missing name
    text = text.replace('dw = x.reshape(N, w.shape[0]).T @ dout', 'dw = 2 * (x.reshape(N, w.shape[0]).T @ dout)')
    text = text.replace('out = x.reshape(N, D) @ w + b', 'out = x.reshape(N, D) @ w + b / missing_name')
    (handout / 'layers.py').write_text(text)
    code, output, _ = run_checker(handout, 'fc_forward', 'fc_backward')
    lines = definition_lines(output, CNN_RNN)
    assert code == 1 and 'Traceback' not in output
    assert lines['fc_forward'].startswith('FAIL') and "NameError" in lines['fc_forward']
    assert 'layers.py:' in lines['fc_forward']
    assert lines['fc_backward'].startswith('FAIL')


def test_checker_fails_a_backward_that_writes_into_dout(released, tmp_path):
    handout = copy_handout(released[0], tmp_path / 'in-place', with_solutions=True)
    text = (handout / 'layers.py').read_text()
    start = text.index('def relu_backward')
    end = text.index('\ndef ', start + 10)
    (handout / 'layers.py').write_text(text[:start] + textwrap.dedent("""\
        def relu_backward(dout, cache):
            dout[cache <= 0] = 0
            return dout
        """) + text[end:])
    code, output, _ = run_checker(handout, 'relu_backward', 'relu_forward')
    lines = definition_lines(output, CNN_RNN)
    assert code == 1 and 'Traceback' not in output
    assert lines['relu_backward'].startswith('FAIL') and 'modified its input dout' in lines['relu_backward']
    assert lines['relu_forward'].startswith('PASS')


def test_checker_passes_a_course_students_complete_homework(released, tmp_path):
    # the public checks hold the homework's rules only: a correct submission written in the
    # course's own style (fc on (N, D) only, its own caches, its own provided functions)
    # passes every one of them
    handout = copy_handout(released[0], tmp_path / 'course')
    for path in (Path(REPO) / 'tests' / 'course_student').glob('*.py'):
        shutil.copyfile(path, handout / path.name)
    code, output, _ = run_checker(handout)
    assert code == 0 and 'Traceback' not in output, output
    lines = definition_lines(output, CNN_RNN)
    assert len(lines) == len(student_definitions(CNN_RNN))
    assert all(line.startswith('PASS') for line in lines.values()), output


# ----------------------------------------------------------------------------- leak scan

def test_leak_scan_passes_the_handout_and_finds_a_planted_leak(released, tmp_path):
    out, _ = released
    assert release.leak_scan(str(out / 'student')) == []
    handout = copy_handout(out, tmp_path / 'leaky')
    secret = release.forbidden_lines(REPO, release.tracked_files(REPO))
    line = next(line for line, what in sorted(secret.items()) if 'conv_backward' in what)
    with open(handout / 'optim.py', 'a') as f:
        f.write(f"\n# {line}\n")
    (handout / 'kernels.py').write_text('"""fast layers"""\n')
    os.makedirs(handout / '__pycache__')
    (handout / '__pycache__' / 'layers.cpython-312.pyc').write_bytes(b'\0')
    problems = release.leak_scan(str(handout))
    assert any(p.startswith('optim.py:') and 'conv_backward' in p for p in problems), problems
    assert any(p.startswith('kernels.py') for p in problems)
    assert any('__pycache__' in p for p in problems)


def test_a_handout_text_naming_a_module_it_does_not_ship_is_refused():
    problems = release.foreign_module_references(
        'cnn.py', '"""Runs the convolution of kernels.py (see layers.py)."""\n', {'layers.py', 'cnn.py'})
    assert problems == ["cnn.py:1: names kernels.py, which the handout does not ship: "
                        "\"\"\"Runs the convolution of kernels.py (see layers.py).\"\"\""]


def test_release_refuses_a_folder_that_is_not_a_git_checkout(tmp_path):
    with pytest.raises(release.ReleaseError, match='not a git checkout'):
        release.release('cnn-rnn', str(tmp_path / 'out'), repo=str(tmp_path))


def test_notebooks_ship_without_outputs():
    notebook = {'cells': [{'cell_type': 'code', 'execution_count': 3, 'source': ['1 + 1'],
                           'outputs': [{'output_type': 'execute_result', 'data': {'text/plain': '2'}}],
                           'metadata': {}}], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}
    cleared = json.loads(release.clear_notebook(json.dumps(notebook), 'x.ipynb'))
    assert cleared['cells'][0]['outputs'] == [] and cleared['cells'][0]['execution_count'] is None
    assert cleared['cells'][0]['source'] == ['1 + 1']


# ----------------------------------------------------------------------------- determinism

def test_two_releases_of_one_commit_are_byte_identical(released, tmp_path):
    out, _ = released
    again = tmp_path / 'again'
    release.release('cnn-rnn', str(again))
    files = release.walk_files(str(out))
    assert files == release.walk_files(str(again))
    for name in files:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    for name in files:
        assert str(out) not in (out / name).read_bytes().decode('latin-1'), name


# ----------------------------------------------------------------------------- submission

def test_collect_submission_zips_exactly_the_student_files(released, tmp_path):
    out, _ = released
    handout = copy_handout(out, tmp_path / 'handout', with_solutions=True)
    run = subprocess.run([sys.executable, 'collect_submission.py'], cwd=handout, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    with zipfile.ZipFile(handout / 'submission.zip') as z:
        assert sorted(z.namelist()) == sorted(f.path for f in CNN_RNN.student_files)
    os.unlink(handout / 'rnn.py')
    run = subprocess.run([sys.executable, 'collect_submission.py'], cwd=handout, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1 and 'missing rnn.py' in run.stdout


# ----------------------------------------------------------------------------- grading

def test_grader_gives_the_stubs_nothing_and_a_partial_handout_the_points_of_fc(released, partial, tmp_path):
    out, _ = released
    results, output = grade(out / 'student', tmp_path / 'stubs.json')
    assert results['score'] == 0 and results['max_score'] > 0 and 'Traceback' not in output
    results, output = grade(partial, tmp_path / 'partial.json')
    fc_points = sum(t['max_score'] for t in results['tests'] if t['name'].startswith('fc_'))
    assert fc_points > 0
    assert results['score'] == fc_points, output


def test_gradescope_zip_holds_no_student_file_and_grades_in_an_autograder_layout(released, tmp_path):
    out, summary = released
    with zipfile.ZipFile(out / 'autograder.zip') as z:
        names = z.namelist()
        student_files = {f.path for a in assignments.ASSIGNMENTS.values() for f in a.student_files}
        assert not student_files & set(names) and 'kernels.py' not in names
        assert 'run_autograder' in names
        z.extractall(tmp_path / 'source')

    def run(submission_files):
        shutil.rmtree(tmp_path / 'submission', ignore_errors=True)
        shutil.rmtree(tmp_path / 'results', ignore_errors=True)
        os.makedirs(tmp_path / 'submission')
        for path in submission_files:
            shutil.copyfile(path, tmp_path / 'submission' / os.path.basename(path))
        done = subprocess.run(['bash', str(tmp_path / 'source' / 'run_autograder')],
                              env=dict(os.environ, AUTOGRADER_ROOT=str(tmp_path)),
                              capture_output=True, text=True, timeout=300)
        with open(tmp_path / 'results' / 'results.json') as f:
            return json.load(f), done.stdout + done.stderr

    results, output = run(sorted((out / 'solutions' / f.path) for f in CNN_RNN.student_files))
    assert results['score'] == results['max_score'] > 0, output
    if summary['max_points'] is not None:
        assert results['max_score'] == summary['max_points']
    results, output = run(sorted((out / 'student' / f.path) for f in CNN_RNN.student_files))
    assert results['score'] == 0 and 'Traceback' not in output


# ----------------------------------------------------------------------------- norm-attention

def test_norm_attention_releases_and_its_checker_runs(tmp_path):
    out = tmp_path / 'norm-attention'
    summary = release.release('norm-attention', str(out))
    assert summary['stubbed']['attention_layers.py'] == list(NORM_ATTENTION.student_file('attention_layers').student)
    code, output, seconds = run_checker(out / 'student')
    lines = definition_lines(output, NORM_ATTENTION)
    assert code == 1 and 'Traceback' not in output and seconds < 20
    assert sorted(lines) == sorted(student_definitions(NORM_ATTENTION))
    assert all(line.startswith('NOT IMPLEMENTED') for line in lines.values()), output
    solved = copy_handout(out, tmp_path / 'solved', with_solutions=True)
    code, output, seconds = run_checker(solved)
    lines = definition_lines(output, NORM_ATTENTION)
    assert code == 0 and seconds < 20, output
    assert all(line.startswith('PASS') for line in lines.values()) and len(lines) == len(
        student_definitions(NORM_ATTENTION))


# ----------------------------------------------------------------------------- the reduction

LAYERS = '''"""Layers of a toy course."""
import math

import numpy as np
from fast import quick

SCALE = 2.0   # used by a kept helper
UNUSED = 3


def _helper(x):
    """Scale x."""
    return SCALE * np.asarray(x)


def fc_forward(x, w, b):
    """Affine layer."""
    # secret note about the solution
    out = _helper(x) @ w + b * math.pi
    return out, (x, w, b)
    # trailing note, still in the body


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch norm (another assignment's student work)."""
    return _helper(x) * gamma + beta, None


def uses_bn(x):
    """Provided, but needs batchnorm_forward."""
    # keep this comment: it is provided code
    return batchnorm_forward(_helper(x), 1.0, 0.0, {})[0]


def fast_path(x):
    """Provided, but needs a module the handout does not ship."""
    return quick(x)


def dropped(x):
    return UNUSED * x
'''


def toy_repo(tmp_path):
    repo = tmp_path / 'repo'
    repo.mkdir()
    (repo / 'layers.py').write_text(LAYERS)
    (repo / 'fast.py').write_text('def quick(x):\n    return x\n')
    for command in (['git', 'init', '-q'], ['git', 'add', 'layers.py', 'fast.py']):
        subprocess.run(command, cwd=repo, check=True)
    return str(repo)


def test_reduction_keeps_the_closure_stubs_student_work_of_any_assignment_and_drops_the_rest(tmp_path):
    repo = toy_repo(tmp_path)
    toy = assignments.Assignment(id='toy', title='Toy', suite='toy', student_files=(
        assignments.StudentFile('layers.py', student=('fc_forward',), provided=('uses_bn',)),))
    reduced = release.reduce_sources(toy, repo, release.tracked_files(repo))
    text = reduced.texts['layers.py']
    # math: only the stub used it; fast: only a definition the handout leaves out
    assert text.startswith('"""Layers of a toy course."""\n\nimport numpy as np\n\nSCALE = 2.0')
    assert 'SCALE = 2.0   # used by a kept helper' in text and 'def _helper(x):' in text
    assert 'UNUSED' not in text and 'def dropped' not in text and 'fast' not in text
    assert 'secret note' not in text and 'trailing note' not in text and 'math.pi' not in text
    assert '    """Affine layer."""\n    raise NotImplementedError("fc_forward is not implemented yet")' in text
    # batchnorm_forward is norm-attention's student work: kept (uses_bn needs it) but stubbed
    assert 'raise NotImplementedError("batchnorm_forward is not implemented yet")' in text
    assert '# keep this comment: it is provided code' in text
    assert reduced.stubbed['layers.py'] == ['fc_forward', 'batchnorm_forward']
    compile(text, 'layers.py', 'exec')
    solved = release.reduce_sources(toy, repo, release.tracked_files(repo), stub_own=False)
    assert 'out = _helper(x) @ w + b * math.pi' in solved.texts['layers.py']
    assert 'import math' in solved.texts['layers.py']
    assert 'raise NotImplementedError("batchnorm_forward' in solved.texts['layers.py']


def test_reduction_refuses_kept_code_that_needs_a_module_the_handout_does_not_ship(tmp_path):
    repo = toy_repo(tmp_path)
    toy = assignments.Assignment(id='toy', title='Toy', suite='toy', student_files=(
        assignments.StudentFile('layers.py', student=('fc_forward',), provided=('fast_path',)),))
    with pytest.raises(release.ReleaseError, match=r'layers.py:5: .*fast_path.* needs quick from fast.py'):
        release.reduce_sources(toy, repo, release.tracked_files(repo))
