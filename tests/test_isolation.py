"""
Tests of the sandbox's isolation as root (as CI and Gradescope run the grader): graders
started at the same moment get different sandbox uids and full marks; the private root
holds wherever the grader's Python lives (a venv inside a clone under /tmp, a path with
a space and a non-ASCII name) and shows nothing of that venv but what NumPy needs; a
weaker isolation is announced, and --require-isolation refuses it.

Each test runs a copy of the grader (its Python files), so that edits to the working
tree while the test runs do not void its grading (autograder.fingerprint).
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy
import pytest

ROOT = Path(__file__).resolve().parent.parent
OWN_MODULES = sorted(p.name for p in ROOT.glob('*.py') if p.name != 'autograder.py')

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox uids and namespaces need root")


def copy_grader(destination):
    """The grader's Python files (autograder.py, grader/, our modules) in `destination`."""
    destination = Path(destination)
    (destination / 'grader').mkdir(parents=True)
    for path in ROOT.glob('*.py'):
        shutil.copy(path, destination / path.name)
    for path in (ROOT / 'grader').glob('*.py'):
        shutil.copy(path, destination / 'grader' / path.name)
    return destination


def honest_student(destination):
    """A folder with our own modules: every test should pass."""
    destination = Path(destination)
    destination.mkdir(parents=True)
    for name in OWN_MODULES:
        shutil.copy(ROOT / name, destination / name)
    return destination


def run_grader(python, grader, *args, env=None, timeout=120):
    """(exit code, stdout, stderr, results.json or None) of `python grader/autograder.py args`."""
    json_path = Path(args[args.index('--json') + 1]) if '--json' in args else None
    run = subprocess.run([str(python), str(Path(grader) / 'autograder.py'), *args],
                         capture_output=True, text=True, timeout=timeout, cwd=str(grader),
                         env=dict(os.environ, **(env or {})))
    data = json.loads(json_path.read_text()) if json_path and json_path.exists() else None
    return run.returncode, run.stdout, run.stderr, data


def uid_of(data):
    found = re.search(r'uid (\d+)', data['extra_data']['isolation'])
    return int(found.group(1)) if found else None


def private_root(data):
    return 'private mount and network namespaces' in data['extra_data']['isolation']


@pytest.fixture(scope='module')
def workspace():
    """/tmp/<tmp> x é/: a copy of the grader and an honest student's folder; removed after."""
    base = Path(tempfile.mkdtemp(prefix='handgrad-isolation-', suffix=' x é'))
    try:
        grader = copy_grader(base / 'handgrad')
        student = honest_student(base / 'student')
        yield base, grader, student
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope='module')
def namespaces(workspace):
    """Skip where this machine gives no private root at all (a container without
    CAP_SYS_ADMIN): what these tests check needs it."""
    base, grader, student = workspace
    code, out, err, data = run_grader(sys.executable, grader, '--target', str(student), '--only',
                                      'fc_forward', '--json', str(base / 'probe.json'),
                                      '--allow-weaker-isolation' if _knows_flags(grader) else '--quiet')
    assert data is not None, out + err
    if not private_root(data) and 'HANDGRAD_WEAKEN_ISOLATION' not in os.environ:
        # the system Python itself gets no namespaces here
        pytest.skip(f"no private namespaces on this machine: {data['extra_data']['isolation']}")
    return True


def _knows_flags(grader):
    return '--allow-weaker-isolation' in (Path(grader) / 'autograder.py').read_text()


# ------------------------------------------------------------------------ graders at once

def test_four_graders_started_at_once_get_different_uids_and_full_marks(workspace):
    """Four graders of the cnn-rnn assignment at the same moment, three times: each must
    reserve its own sandbox uid (no process of one killed by another's clean-up, no shared
    process limit) and give our honest copy full marks."""
    base, grader, student = workspace
    started = time.monotonic()
    for round_ in range(3):
        runs = []
        for k in range(4):
            json_path = base / f'round{round_}-{k}.json'
            runs.append((json_path, subprocess.Popen(
                [sys.executable, str(grader / 'autograder.py'), '--assignment', 'cnn-rnn',
                 '--target', str(student), '--json', str(json_path), '--quiet'],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(grader))))
        uids = []
        for json_path, process in runs:
            output, _ = process.communicate(timeout=120)
            data = json.loads(json_path.read_text())
            failed = [(t['name'], t['output'][-1500:]) for t in data['tests'] if t['status'] != 'passed']
            assert data['score'] == data['max_score'] and process.returncode == 0, (
                f"round {round_}: {data['score']}/{data['max_score']}, failed {failed}\n{output[-2000:]}")
            uids.append(uid_of(data))
        assert None not in uids and len(set(uids)) == 4, f"round {round_}: sandbox uids {uids}"
    assert time.monotonic() - started < 60


def test_a_reserved_uid_is_not_given_to_a_second_grader_and_freed_after():
    from grader import sandbox
    first = sandbox.plan_isolation()
    second = sandbox.plan_isolation()
    try:
        assert first.uid != second.uid
        uid = first.uid
        first.release()
        third = sandbox.plan_isolation()   # the search starts at slot 0 again
        assert third.uid <= max(uid, second.uid) and third.uid != second.uid
        third.release()
    finally:
        first.release()
        second.release()


# ------------------------------------------------------------------------ where Python lives

@pytest.fixture(scope='module')
def venv_in_clone(workspace):
    """A venv at <clone>/.venv (README's set-up, in a clone under /tmp whose path has a
    space and a non-ASCII name), made from the base interpreter with a copy of this
    NumPy in its own site-packages, so that what the sandbox needs lies under /tmp; and
    a file of another student's planted in the venv, outside NumPy's directories."""
    base, grader, student = workspace
    venv = grader / '.venv'
    base_python = getattr(sys, '_base_executable', None) or sys.executable
    subprocess.run([base_python, '-m', 'venv', '--without-pip', str(venv)], check=True, timeout=120)
    python = venv / 'bin' / 'python'
    site_packages = Path(subprocess.run(
        [str(python), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
        capture_output=True, text=True, check=True).stdout.strip())
    source = Path(numpy.__file__).parent
    for name in ('numpy', 'numpy.libs'):
        if (source.parent / name).is_dir():
            shutil.copytree(source.parent / name, site_packages / name, symlinks=True)
    assert subprocess.run([str(python), '-c', 'import numpy, sys; assert sys.prefix != sys.base_prefix; '
                           f'assert numpy.__file__.startswith({str(site_packages)!r})'],
                          timeout=120).returncode == 0
    planted = venv / 'students' / 'bob' / 'answers.txt'
    planted.parent.mkdir(parents=True)
    planted.write_text('the answers of bob')
    (venv / 'secret.txt').write_text('the answers of bob')
    return python, planted


def test_a_venv_in_a_clone_under_tmp_keeps_the_private_root_and_full_marks(workspace, namespaces,
                                                                             venv_in_clone):
    base, grader, student = workspace
    python, _ = venv_in_clone
    code, out, err, data = run_grader(python, grader, '--target', str(student),
                                      '--json', str(base / 'venv.json'))
    assert data is not None, out + err
    assert private_root(data), data['extra_data']['isolation']
    failed = [t['name'] for t in data['tests'] if t['status'] != 'passed']
    assert data['score'] == data['max_score'] and code == 0, (failed, out[-3000:], err[-2000:])
    assert 'WARNING' not in err


def test_the_sandbox_sees_nothing_of_the_venv_but_what_numpy_needs(workspace, namespaces,
                                                                   venv_in_clone, tmp_path):
    base, grader, _ = workspace
    python, planted = venv_in_clone
    probe = f'''
import os, sys, numpy
def seen(path):
    try:
        with open(path) as f:
            return "READ " + f.read()
    except OSError as e:
        return type(e).__name__
base_site = os.path.join(sys.base_prefix, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
print("planted:", seen({str(planted)!r}))
print("prefix file:", seen(os.path.join(sys.prefix, "secret.txt")))
print("prefix:", sorted(os.listdir(sys.prefix)) if os.path.isdir(sys.prefix) else "absent")
print("base site-packages:", os.listdir(base_site) if os.path.isdir(base_site) else "absent")
print("grader:", seen({str(grader / 'autograder.py')!r}))
print("numpy:", numpy.__file__.startswith(sys.prefix), bool(numpy.linalg.norm([3., 4.]) == 5))
def relu_forward(x):
    raise RuntimeError("probe done")
'''
    submission = tmp_path / 'hostile'
    submission.mkdir()
    (submission / 'layers.py').write_text(probe)
    code, out, err, data = run_grader(python, grader, '--target', str(submission), '--only',
                                      'relu_forward', '--json', str(tmp_path / 'r.json'))
    assert data is not None, out + err
    assert private_root(data), data['extra_data']['isolation']
    printed = '\n'.join(t['output'] for t in data['tests'])
    assert 'probe done' in printed, printed
    assert 'the answers of bob' not in printed, printed
    assert 'planted: FileNotFoundError' in printed and 'prefix file: FileNotFoundError' in printed
    prefix = re.search(r"prefix: (.*)", printed).group(1)
    assert 'students' not in prefix and 'secret.txt' not in prefix, prefix
    base_site = re.search(r"base site-packages: (.*)", printed).group(1)
    assert base_site in ('[]', 'absent'), base_site   # the base's own packages are hidden
    assert 'grader: FileNotFoundError' in printed, printed
    assert 'numpy: True True' in printed, printed


# ------------------------------------------------------------------------ weaker isolation

WEAKEN = {'HANDGRAD_WEAKEN_ISOLATION': 'no-namespaces'}


def test_a_weaker_isolation_is_announced_on_stderr_and_in_results_json(workspace, tmp_path):
    base, grader, student = workspace
    code, out, err, data = run_grader(sys.executable, grader, '--target', str(student), '--only', 'relu',
                                      '--json', str(tmp_path / 'r.json'), env=WEAKEN)
    assert data is not None, out + err
    assert code == 0 and data['score'] == data['max_score'], out + err
    assert 'WARNING, weaker isolation' in err and 'no private namespaces' in err, err
    level = data['extra_data']['isolation_level']
    assert level['level'] in ('landlock', 'uid-only') and level['full'] is False, level
    assert 'HANDGRAD_WEAKEN_ISOLATION' in level['note'], level
    assert 'isolation WEAKER' in data['extra_data']['isolation']


def test_require_isolation_refuses_to_grade_without_the_private_root(workspace, tmp_path):
    base, grader, student = workspace
    json_path = tmp_path / 'r.json'
    code, out, err, data = run_grader(sys.executable, grader, '--target', str(student), '--only', 'relu',
                                      '--json', str(json_path), '--require-isolation', env=WEAKEN)
    assert code == 2, out + err
    assert 'refusing to grade' in err and 'private root could not be set up' in err, err
    assert '--allow-weaker-isolation' in err and 'CAP_SYS_ADMIN' in err, err
    assert data is None and 'Total' not in out   # nothing graded, no results.json
    # --same-user is weaker too
    code, out, err, _ = run_grader(sys.executable, grader, '--target', str(student), '--only', 'relu',
                                   '--same-user', '--require-isolation')
    assert code == 2 and 'refusing to grade' in err and '--same-user' in err, out + err


def test_batch_and_the_gradescope_package_require_isolation_unless_told_otherwise(workspace, tmp_path):
    base, grader, student = workspace
    submissions = tmp_path / 'submissions'
    shutil.copytree(student, submissions / 'alice')
    csv_path = tmp_path / 'grades.csv'
    code, out, err, _ = run_grader(sys.executable, grader, '--batch', str(submissions), '--csv',
                                   str(csv_path), '--only', 'relu', env=WEAKEN)
    row = next(csv.DictReader(csv_path.open()))
    assert code != 0 and row['score'] == '', (row, out + err)   # the note ends the refusal's:
    assert 'code 2' in row['note'] and '--allow-weaker-isolation' in row['note'], row
    code, out, err, _ = run_grader(sys.executable, grader, '--batch', str(submissions), '--csv',
                                   str(csv_path), '--only', 'relu', '--allow-weaker-isolation', env=WEAKEN)
    row = next(csv.DictReader(csv_path.open()))
    assert code == 0 and row['score'] == row['max_score'] != '', (row, out + err)
    for flags, expected in (((), '--require-isolation'), (('--allow-weaker-isolation',), '--allow-weaker-isolation')):
        package = tmp_path / 'autograder.zip'
        code, out, err, _ = run_grader(sys.executable, grader, '--gradescope-package', str(package), *flags)
        assert code == 0, out + err
        with zipfile.ZipFile(package) as z:
            script = z.read('run_autograder').decode()
        command = next(line for line in script.splitlines() if 'autograder.py' in line and 'python' in line)
        assert expected in command, script
