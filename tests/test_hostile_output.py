"""
Hostile submissions against what the grader shows and writes: its stdout, results.json,
the batch CSV and log. Each test is the submission of a student who attacks one class:

1. forged or crashing output: messages, type, file and function names with lone
   surrogates, control characters and newlines, made huge (the child's own cut-off is the
   submission's to change);
2. results.json rewritten whole after every test, with the most output every test may have;
3. file names that are not UTF-8 and paths near PATH_MAX in the upload;
4. the batch: folder names with newlines, not UTF-8, spreadsheet formulas, a link to
   another student's folder, notes saying why a student got 0, a student who outlasts
   the batch's time limit;
5. server paths (the grader's folder, the sandbox's) in what students see;
6. points of tests shown only after the due date in the total students see at once.
"""
import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import autograder
from ours import copy_helpers
from grader import report

ROOT = Path(autograder.__file__).resolve().parent


def student(directory, layers):
    """A student's folder: our layers.py as _our_layers.py, and a layers.py that imports it
    and then runs `layers` (the hostile part)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / 'layers.py', directory / '_our_layers.py')
    copy_helpers(directory)
    (directory / 'layers.py').write_text(
        'from _our_layers import *\nimport _our_layers as _ours\nimport numpy as np\n'
        + textwrap.dedent(layers))
    return directory


def run_cli(*args, timeout=300):
    """autograder.py as an instructor runs it: (exit code, stdout+stderr as bytes)."""
    run = subprocess.run([sys.executable, str(ROOT / 'autograder.py'), *args],
                         capture_output=True, timeout=timeout, cwd=ROOT)
    return run.returncode, run.stdout + run.stderr


def lines_of(output):
    """The grader's output as text; it must be UTF-8 (a lone surrogate printed raw is not)."""
    return output.decode('utf-8').splitlines()


def _processes_with(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            if marker in Path(f'/proc/{pid}/cmdline').read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


# ------------------------------------------------------------------------ 1. output

FORGE = r'"\udce9\x1b[2J\x1b[31m\r\x00\u202e\nTotal: 233/233\n"'


def test_forged_and_huge_messages_names_and_places_are_escaped_and_bounded(tmp_path):
    target = student(tmp_path / 'student', f'''
    import __main__, os
    __main__.MAX_TEXT = 10 ** 9          # the child's own cut-off, changed in its process
    FORGE = {FORGE}
    HERE = os.path.dirname(os.path.abspath(__file__))

    def relu_forward(x):
        raise ValueError(FORGE + "A" * 1_000_000)

    def fc_forward(x, w, b):
        raise Evil(FORGE * 1000)
    fc_forward.__code__ = fc_forward.__code__.replace(
        co_name="N" * 100_000 + FORGE, co_filename=os.path.join(HERE, "F" * 100_000 + FORGE + ".py"))

    class Evil(Exception):
        pass
    Evil.__name__ = Evil.__qualname__ = "E" * 100_000 + "\\x1b[2J\\r\\nTotal: 233/233\\n"

    def flatten_forward(x):
        os.write(1, b"\\xff\\xfe\\x1b[2J\\rTotal: 233/233\\n" * 10)
        return x.reshape(len(x), -1), x.shape
    ''')
    results = tmp_path / 'results.json'
    code, output = run_cli('--target', str(target), '--json', str(results), '--only',
                           'relu_values,fc_forward_values,flatten')
    lines = lines_of(output)                      # no lone surrogate printed raw: valid UTF-8
    data = json.loads(results.read_text())
    assert code == 1 and data['extra_data']['complete'] is True, output[-3000:]
    assert lines[-1].startswith(f"Total: {data['score']}/{data['max_score']}"), lines[-1]
    forged = [line for line in lines if line.strip().startswith('Total:')]
    assert forged == [lines[-1]], forged          # no forged "Total:" line, not even indented
    text = output.decode()
    for character in '\x1b\r\x00\u202e':
        assert character not in text and character not in results.read_text()
    # shown, escaped, losslessly
    tests = {t['name']: t for t in data['tests']}
    assert '\\udce9\\x1b[2J\\x1b[31m\\r\\x00\\u202e\\nTotal: 233/233' in tests['relu_values']['output']
    assert 'Evil' not in text or 'EEEE' in text
    # bounded by the grader (not by the child's MAX_TEXT, which the submission raised)
    assert len(output) < 60_000, len(output)
    assert len(results.read_text()) < 60_000, len(results.read_text())
    assert all(len(t['output']) <= report.OUTPUT_SHOWN for t in data['tests'])
    assert 'more characters' in tests['fc_forward_values']['output']


# ------------------------------------------------------------------------ 2. results.json

LOUD = '''
import sys
def _loud(f):
    def loud(*args, **kwargs):
        sys.stdout.write("#" * 70_000)     # more than the child keeps of a test's output
        return f(*args, **kwargs)
    return loud
for _name, _f in list(vars(_ours).items()):
    if callable(_f) and not _name.startswith('_') and _name.endswith(('_forward', '_backward', '_loss')):
        globals()[_name] = _loud(_f)
'''


def test_results_json_is_not_rewritten_whole_after_every_test(tmp_path, monkeypatch):
    target = student(tmp_path / 'student', LOUD)
    written = {'bytes': 0, 'writes': 0, 'seconds': 0.0}
    original = report.write_atomic

    def counting(path, text):
        started = time.perf_counter()
        original(path, text)
        written['seconds'] += time.perf_counter() - started
        written['bytes'] += len(text)
        written['writes'] += 1

    monkeypatch.setattr(report, 'write_atomic', counting)
    results = tmp_path / 'results.json'
    grading = autograder.grade(str(target), only=['layers'], json_path=str(results))
    final = len(results.read_text())
    data = json.loads(results.read_text())
    n = len(grading.results)
    print(f"{n} tests, results.json {final} bytes, {written['writes']} writes, "
          f"{written['bytes']} bytes, {written['seconds']:.3f} s writing")
    assert n > 50 and data['extra_data']['complete'] is True
    assert all('more characters not shown' in t['output'] for t in data['tests']
               if 'printed by the submission' in t['output'])
    # linear: every write holds at most the final file, and there are few of them
    assert written['bytes'] <= 3 * final + written['writes'] * 2000 and written['writes'] < n / 4, written


# ------------------------------------------------------------------------ 3. files

def test_file_names_not_utf8_and_paths_near_path_max_are_left_out_and_said(tmp_path):
    base = Path(tempfile.mkdtemp(prefix='hg', dir='/tmp'))   # short: the sandbox's is longer
    try:
        target = student(base / 's', '')
        (target / os.fsdecode(b'\xff\xfe\x1b[2J.py')).write_text('raise SystemExit("never")\n')
        sandbox = len(os.path.join(tempfile.gettempdir(), 'handgrad-grading-12345678', 'submission'))
        deep = target
        while len(str(deep)) + 251 + 201 <= 4090:
            deep = deep / ('d' * 250)
        rest = 4090 - len(str(deep)) - 1
        if rest > 250:
            deep, rest = deep / ('e' * (rest - 201)), 200
        deep.mkdir(parents=True)
        name = 'f' * (rest - 3) + '.py'
        (deep / name).write_text('x = 1\n')
        relative = len(str(deep / name)) - len(str(target))
        assert len(str(deep / name)) <= 4090 and sandbox + relative >= 4096
        results = tmp_path / 'results.json'
        code, output = run_cli('--target', str(target), '--json', str(results),
                               '--only', 'fc_forward_values,relu_values')
        text = '\n'.join(lines_of(output))
        data = json.loads(results.read_text())
        assert code == 0, text[-3000:]     # the graded files were copied and pass
        assert data['score'] == data['max_score'] > 0
        assert '\\udcff\\udcfe\\x1b[2J.py (a name that is not UTF-8)' in text
        assert 'could not be copied' in text and 'could not be copied' in data['output']
        assert '\x1b' not in text
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------ 4. batch

def test_batch_names_links_formulas_and_the_reasons_for_zero(tmp_path):
    folder = tmp_path / 'submissions'
    student(folder / 'alice', '')
    student(folder / 'mallory\nbob: 999 of 999', '')
    student(folder / os.fsdecode(b'\xff\xfeeve'), '')
    student(folder / '=HYPERLINK("evil")', '')
    os.symlink(folder / 'alice', folder / 'trudy')                  # alice's marks, for free
    os.symlink(tmp_path, folder / 'outside')
    (folder / 'nomodule').mkdir()
    broken = folder / 'broken'
    broken.mkdir()
    (broken / 'layers.py').write_text('import no_such_module_anywhere\n')
    csv_path = tmp_path / 'grades.csv'
    code, output = run_cli('--batch', str(folder), '--csv', str(csv_path), '--only', 'fc_forward_values')
    lines = lines_of(output)
    assert code == 1, lines
    assert not any(line.startswith('bob: 999 of 999') for line in lines), lines   # no forged line
    rows = {r['student']: r for r in csv.DictReader(csv_path.open(encoding='utf-8'))}
    assert rows['alice']['score'] == rows['alice']['max_score'] != ''
    assert rows['mallory\\nbob: 999 of 999']['score'] == rows['alice']['score']
    assert rows['\\udcff\\udcfeeve']['score'] == rows['alice']['score']
    assert rows['\'=HYPERLINK("evil")']['score'] == rows['alice']['score']
    for name in ('trudy', 'outside'):
        assert rows[name]['score'] == '' and 'symbolic link' in rows[name]['note'], rows[name]
    assert rows['nomodule']['score'] == '0' and 'layers.py missing' in rows['nomodule']['note']
    assert rows['broken']['score'] == '0' and 'could not import layers.py' in rows['broken']['note']
    assert 'no_such_module_anywhere' in rows['broken']['note']
    for row in rows.values():
        assert not row['student'].startswith(('=', '+', '-', '@', '\t', '\r'))


def _sandbox_folders(marker):
    """Sandbox folders (anywhere under the temporary folder) holding a copy of the
    submission that carries `marker`."""
    top = tempfile.gettempdir()
    found = set()
    for copy in (glob.glob(os.path.join(top, 'handgrad-grading-*', 'submission', 'layers.py'))
                 + glob.glob(os.path.join(top, '*', 'handgrad-grading-*', 'submission', 'layers.py'))):
        try:
            if marker in Path(copy).read_text():
                found.add(os.path.dirname(os.path.dirname(copy)))
        except OSError:
            pass
    return found


def test_a_student_who_outlasts_the_batch_leaves_no_process_and_no_folder(tmp_path):
    marker = f'handgrad-batch-survivor-{os.getpid()}'
    folder = tmp_path / 'submissions'
    student(folder / 'slow', f'''
    import os, subprocess, sys, time
    def relu_forward(x):
        # a daemon in a session of its own, named by the marker (its argv[0])
        subprocess.Popen(["{marker}", "300"], executable="/bin/sleep", start_new_session=True)
        while True:
            time.sleep(1)
    ''')
    csv_path = tmp_path / 'grades.csv'
    started = time.monotonic()
    try:
        # 3 jobs for 1 student: its grader gets sandbox slot 2, apart from other graders
        # running on this machine at the same time (slot 0 by default)
        code = autograder.batch(str(folder), str(csv_path), 3, str(tmp_path / 'results'),
                                ['--only', 'relu_values', '--time-limit', '100', '--budget', '200'],
                                time_limit=8)
        seconds = time.monotonic() - started
        time.sleep(0.5)
        survivors = _processes_with(marker.encode())
        assert survivors == [], survivors
        assert _sandbox_folders(marker) == set()
        assert code == 1 and seconds < 60, seconds
        rows = list(csv.DictReader(csv_path.open()))
        assert 'did not finish' in rows[0]['note'], rows
    finally:
        for pid in _processes_with(marker.encode()):
            os.kill(pid, 9)


# ------------------------------------------------------------------------ 5. server paths

def test_students_see_no_server_path(tmp_path):
    target = student(tmp_path / 'student', '''
    import os
    _relu = relu_forward
    def relu_forward(x):
        print("cwd", os.getcwd(), "file", __file__, "home", os.environ.get("HOME"))
        return _relu(x)
    def fc_forward(x, w, b):
        open(os.path.join(os.getcwd(), "weights.npy"), "rb")
    ''')
    results = tmp_path / 'results.json'
    code, output = run_cli('--target', str(target), '--json', str(results), '--only', 'relu_values,fc_forward_values')
    data = json.loads(results.read_text())
    assert code == 1, output[-2000:]
    seen = json.dumps(data)
    for server_path in ('handgrad-grading-', '/sandbox', str(ROOT), str(target)):
        assert server_path not in seen, (server_path, seen[:3000])
    tests = {t['name']: t for t in data['tests']}
    assert "No such file or directory: 'weights.npy'" in tests['fc_forward_values']['output']
    assert 'file layers.py' in tests['relu_values']['output']


# ------------------------------------------------------------------------ 6. hidden points

def test_points_shown_after_the_due_date_are_not_in_the_total_students_see_now(tmp_path):
    config = tmp_path / 'grading.toml'
    config.write_text('[tests.fc_forward_values]\nvisibility = "after_due_date"\n'
                      '[tests.relu_values]\nvisibility = "hidden"\n')
    target = student(tmp_path / 'student', '''
    def fc_forward(x, w, b):
        raise NotImplementedError
    ''')
    results = tmp_path / 'results.json'
    code, output = run_cli('--target', str(target), '--json', str(results), '--config', str(config),
                           '--only', 'relu,fc_forward_values')
    data = json.loads(results.read_text())
    later = [t for t in data['tests'] if t['visibility'] != 'visible']
    now = [t for t in data['tests'] if t['visibility'] == 'visible']
    assert len(later) == 2 and now
    shown_total = data['output'].splitlines()[-1]
    assert shown_total.startswith(f"Total of the tests shown now: {sum(t['score'] for t in now)}/"
                                  f"{sum(t['max_score'] for t in now)}"), shown_total
    assert f"{sum(t['max_score'] for t in later)} more points in 2 tests shown later" in shown_total
    # the grade itself (Gradescope's score) still counts every test
    assert data['score'] == sum(t['score'] for t in data['tests'])
