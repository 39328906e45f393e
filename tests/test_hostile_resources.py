"""
Hostile submissions against the grader's own resources and against what it imports:

1. answers that take the grader's process long to read (the largest the wire allows, in
   every call): the grader's time on them counts, and answers are capped in bytes;
2. answers of a wrong, huge or broadcastable shape: nothing is converted or allocated from
   them before their shape is checked;
3. the grader's process has a memory ceiling, and running into it fails the test whose
   answer needed the memory, not the grading;
4. packages, compiled modules, bytecode and symbolic links named like a graded module
   neither shadow nor replace the submitted .py file, and the notes say what was ignored.

Each submission is written as a hostile student would; the grader runs as an instructor
runs it (a separate `autograder.py` process).
"""
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest

import autograder
from ours import copy_helpers

ROOT = Path(autograder.__file__).resolve().parent

# Runs autograder.py's main in this process and reports the process's peak memory on
# stderr: the grader's own peak, not the sandboxed child's.
MEASURED = """
import runpy, sys
sys.argv = [sys.argv[1]] + sys.argv[2:]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    code = e.code
# VmHWM is this image's own peak; ru_maxrss would keep the forking parent's (pytest's)
# high-water mark across fork and exec
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
sys.stderr.write("GRADER_PEAK_KB %d\\n" % peak)
sys.exit(code)
"""


def folder(directory, **modules):
    """A student's folder: for each module, our copy as _our_<module>.py and <module>.py
    = `from _our_<module> import *` + the given code (None: no such file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    copy_helpers(directory)
    for module in ('layers', 'rnn_layers', 'attention_layers'):
        shutil.copy(ROOT / f'{module}.py', directory / f'_our_{module}.py')
        code = modules.get(module)
        if code is not None:
            (directory / f'{module}.py').write_text(
                f'from _our_{module} import *\nimport _our_{module} as _ours\nimport numpy as np\n'
                + textwrap.dedent(code))
    return directory


def grade(target, *args, tmp_path, timeout=300, measure=False):
    """(exit code, output, results.json, seconds, grader's peak KB or None)."""
    path = tmp_path / 'results.json'
    command = [sys.executable] + (['-c', MEASURED] if measure else []) + [
        str(ROOT / 'autograder.py'), '--target', str(target), '--json', str(path), *args]
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    seconds = time.monotonic() - started
    peak = None
    for line in run.stderr.splitlines():
        if line.startswith('GRADER_PEAK_KB '):
            peak = int(line.split()[1])
    data = json.loads(path.read_text()) if path.exists() else None
    return run.returncode, run.stdout + run.stderr, data, seconds, peak


def graded_by_the_grader(code, output, data):
    """The grader finished: complete results.json, last line its total, exit code 1."""
    assert data is not None, output[-3000:]
    assert data['extra_data']['complete'] is True
    last = [line for line in output.rstrip().splitlines() if not line.startswith('GRADER_PEAK_KB')][-1]
    assert last.startswith(f"Total: {data['score']}/{data['max_score']}"), output[-3000:]
    assert code == 1, (code, output[-3000:])
    return {t['name']: t for t in data['tests']}


# ------------------------------------------------------------ 1. reading answers costs time

# Every answer the child sends (its serve loop's `pack`, patched) is one prebuilt message:
# a list of tiny arrays, all on one 8-byte buffer, as many as SIZE bytes of JSON hold. It
# costs the child nothing per call; reading it is the grader's work.
SLOW_ANSWERS = '''
import __main__, struct
NODE = '{"array": 0, "dtype": "<f8", "shape": []}'
header = ('{"ok": true, "value": {"list": [' + ", ".join([NODE] * (SIZE // (len(NODE) + 2)))
          + ']}}').encode()
body = struct.pack("<QI", len(header), 1) + header + struct.pack("<Q", 8) + bytes(8)
MESSAGE = struct.pack("<Q", len(body)) + body
_pack = __main__.pack
def pack(header, buffers=()):
    return MESSAGE if "value" in header else _pack(header, buffers)
__main__.pack = pack
'''


@pytest.mark.parametrize('size, limit, budget', [
    (60 << 20, 2, 30),   # what the wire allowed before: ~10 s of the grader's time per call
    (7 << 20, 1, 6),     # just under the cap: ~1 s per call, all of it charged
])
def test_answers_that_are_slow_to_read_are_capped_and_charged(tmp_path, size, limit, budget):
    target = folder(tmp_path / 'student', layers=f'SIZE = {size}\n' + SLOW_ANSWERS)
    code, output, data, seconds, _ = grade(target, '--only', 'fc', '--time-limit', str(limit),
                                           '--budget', str(budget), tmp_path=tmp_path)
    tests = graded_by_the_grader(code, output, data)
    assert data['score'] == 0
    assert seconds < 25, (seconds, output[-3000:])   # before: 130 s for the 60 MiB answers
    if size > 8 << 20:
        assert any('more than the 8 MiB allowed' in t['output'] for t in tests.values()), output
    else:   # a test's second of time runs out while the grader reads an answer
        assert any('while the grader was reading what fc_forward returned' in t['output']
                   for t in tests.values()), output


# ----------------------------------------------------------- 2. shapes before allocations

def test_answers_of_a_wrong_or_broadcastable_shape_allocate_nothing(tmp_path):
    target = folder(tmp_path / 'student', layers='''
        _fc = fc_forward
        def fc_forward(x, w, b):
            out, cache = _fc(x, w, b)
            return np.ones((2800, 2800), dtype=bool), cache   # 7.8 MB here, 63 MB as float64
        ''', attention_layers='''
        _backward = multi_head_attention_backward
        def multi_head_attention_backward(dout, cache):
            dquery, dkey, dvalue, grads = _backward(dout, cache)
            n = 600   # 3 x 4.8 kB that broadcast to 600 ** 3 numbers (1.7 GB)
            return np.ones((n, 1, 1)), np.ones((1, n, 1)), np.ones((1, 1, n)), grads
        ''')
    code, output, data, _, peak = grade(target, '--only', 'fc_forward_values,multi_head_self_attention',
                                        tmp_path=tmp_path, measure=True)
    tests = graded_by_the_grader(code, output, data)
    assert tests['fc_forward_values']['score'] == 0
    assert 'shape (2800, 2800), expected' in tests['fc_forward_values']['output']
    assert tests['multi_head_self_attention_gradient']['score'] == 0
    assert 'shape (600, 1, 1), expected' in tests['multi_head_self_attention_gradient']['output']
    assert peak is not None and peak < 110_000, (peak, output[-2000:])   # KB; ~50 MB idle


# --------------------------------------------------------- 3. the grader's memory ceiling

def test_the_grader_has_a_memory_ceiling_and_reaching_it_fails_only_that_test(tmp_path):
    # An answer whose reading needs ~50 MB (a list of 2.4 million numbers in 7 MB), with
    # the grader allowed 24 MiB more than it holds at the start.
    target = folder(tmp_path / 'student', layers='''
        import time
        _relu = relu_forward
        def relu_forward(x):
            out, cache = _relu(x)
            return out, [0] * 2_400_000
        _relu_backward = relu_backward
        def relu_backward(dout, cache):
            time.sleep(0.5)
            return _relu_backward(dout, cache)
        ''')
    code, output, data, _, _ = grade(target, '--only', 'relu_values,fc', '--grader-memory-mb', '24',
                                     tmp_path=tmp_path)
    tests = graded_by_the_grader(code, output, data)
    assert tests['relu_values']['score'] == 0
    assert 'ran out of memory' in tests['relu_values']['output'], output
    assert all(t['status'] == 'passed' for name, t in tests.items() if name.startswith('fc')), output

    # and by default the grader's process runs under an address-space limit of its own
    path = tmp_path / 'limits.json'
    process = subprocess.Popen([sys.executable, str(ROOT / 'autograder.py'), '--target', str(target),
                                '--json', str(path), '--only', 'relu_gradients'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        limit = None
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            lines = Path(f'/proc/{process.pid}/limits').read_text().splitlines()
            limit = next(line for line in lines if line.startswith('Max address space')).split()[3]
            if limit != 'unlimited':
                break
            time.sleep(0.05)
    finally:
        process.wait(timeout=120)
    assert limit not in (None, 'unlimited'), limit
    assert int(limit) < 4 << 30


# ---------------------------------------------------------------- 4. what gets imported

EXTENSION = r'''
#include <Python.h>
/* a compiled "rnn_layers" that is someone else's implementation, imported whole */
static struct PyModuleDef definition = {PyModuleDef_HEAD_INIT, "rnn_layers", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_rnn_layers(void) {
    PyObject *module = PyModule_Create(&definition), *done;
    if (module == NULL) return NULL;
    PyObject *names = PyModule_GetDict(module);
    PyDict_SetItemString(names, "__builtins__", PyEval_GetBuiltins());
    done = PyRun_String("from _our_rnn_layers import *", Py_file_input, names, names);
    if (done == NULL) { Py_DECREF(module); return NULL; }
    Py_DECREF(done);
    return module;
}
'''

# layers.py of the student: none of its own functions, but it leaves bytecode of someone
# else's attention_layers where Python would look for it (unchecked: the source is not
# compared), before the grader imports attention_layers.py.
LEAVES_BYTECODE = '''
import importlib.util, os, py_compile
with open("_stale.py", "w") as f:
    f.write("from _our_attention_layers import *\\n")
py_compile.compile("_stale.py", importlib.util.cache_from_source(os.path.abspath("attention_layers.py")),
                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
'''


def test_only_the_submitted_source_of_a_graded_module_is_imported(tmp_path):
    target = folder(tmp_path / 'student')
    (target / 'layers.py').write_text(LEAVES_BYTECODE)
    (target / 'rnn_layers.py').write_text('# my rnn_layers: nothing yet\n')
    (target / 'attention_layers.py').write_text('# my attention_layers: nothing yet\n')
    # a package named like layers.py, which Python would import instead of it
    (target / 'layers').mkdir()
    (target / 'layers' / '__init__.py').write_text('from _our_layers import *\n' + LEAVES_BYTECODE)
    # bytecode of someone else's layers, in the upload
    (target / '__pycache__').mkdir()
    py_source = tmp_path / 'someone.py'
    py_source.write_text('from _our_layers import *\n')
    import py_compile
    for pyc in (target / '__pycache__' / f'layers.{sys.implementation.cache_tag}.pyc', target / 'layers.pyc'):
        py_compile.compile(str(py_source), str(pyc),
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    # a compiled module named like rnn_layers.py, which Python would import instead of it
    extension = target / f'rnn_layers{importlib.machinery.EXTENSION_SUFFIXES[0]}'
    if shutil.which('gcc'):
        (tmp_path / 'ext.c').write_text(EXTENSION)
        subprocess.run(['gcc', '-shared', '-fPIC', '-o', str(extension), str(tmp_path / 'ext.c'),
                        '-I', sysconfig.get_paths()['include']], check=True)
    else:
        extension.write_bytes(b'\x7fELF not really')
    # links named like a graded module or a helper, pointing at the grader's reference
    (target / 'kernels.py').symlink_to(ROOT / 'kernels.py')
    (target / 'reference').symlink_to(ROOT)

    code, output, data, _, _ = grade(target, '--only', 'relu_values,rnn_step_forward_values,causal_mask_values',
                                     tmp_path=tmp_path)
    tests = graded_by_the_grader(code, output, data)
    assert data['score'] == 0, {n: t['output'] for n, t in tests.items() if t['score']}
    notes = output
    for ignored in ('layers/ (a folder named like the graded module layers.py)', '__pycache__/ (bytecode)',
                    'layers.pyc (bytecode)', f'{extension.name} (a compiled module)',
                    'kernels.py (a symbolic link', 'reference/ (a symbolic link'):
        assert ignored in notes, (ignored, notes)


def test_a_helper_package_and_data_files_are_still_imported_and_copied(tmp_path):
    target = folder(tmp_path / 'student', layers='''
        from helpers.relu import relu_forward
        with open("weights.txt") as f:
            assert f.read() == "1 2 3"
        ''')
    (target / 'helpers').mkdir()
    (target / 'helpers' / '__init__.py').write_text('')
    (target / 'helpers' / 'relu.py').write_text('from _our_layers import relu_forward\n')
    (target / 'weights.txt').write_text('1 2 3')
    code, output, data, _, _ = grade(target, '--only', 'relu_values', tmp_path=tmp_path)
    assert code == 0, output[-3000:]
    assert data['score'] == data['max_score'] > 0
    assert 'Ignored' not in output
