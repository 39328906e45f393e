"""
handgrad autograder: grades any implementation of the layer functions of layers.py,
rnn_layers.py and attention_layers.py against the contract in API.md (Part 1, the
homework's; our Part-2 additions; Part 3's normalization and attention layers), assuming
the submission is hostile.

Usage:
    python autograder.py                      # grade our own modules, next to this file
    python autograder.py --target DIR         # grade a student's folder
    python autograder.py --target DIR --json results.json   # Gradescope results.json
    python autograder.py --assignment cnn-rnn --target DIR --json results.json
                                              # an assignment of grader/assignments.py only
    python autograder.py --release cnn-rnn --out DIR   # handout, solutions, Gradescope zip
    python autograder.py --contract           # only the homework's Part-1 functions
    python autograder.py --only conv,relu     # a subset: substrings of test/function names
    python autograder.py --config grading.toml   # points, visibility, included tests, limits
    python autograder.py --batch DIR --csv grades.csv --jobs 2   # one subfolder per student
    python autograder.py --gradescope-package autograder.zip [--config grading.toml]
    python -m pytest autograder.py            # every graded test as a pytest test, on ours

How a submission is graded (the threat model is in README.md):
- its code runs only in a child process (grader/sandbox.py, grader/child.py) that gets
  the inputs and sends back plain arrays; as root the child is an unprivileged user in
  private namespaces that hold no file of the grader's;
- the grader enforces the limits from outside: a wall-clock limit per test and a budget
  per submission (the child is killed when they pass), memory, processes; nothing the
  submission started survives its grading;
- expected values are computed here, from hand-worked literals and the loop references of
  grader/references.py; gradients are compared with numeric gradients of the references;
- every selected test counts in the maximum, whether or not the module exists;
- only this process prints the results, writes results.json (after every test) and sets
  the exit code: 0 only if every graded test passed.

The tests themselves live in grader/suite_layers.py, grader/suite_normalization.py (the
normalization layers of layers.py), grader/suite_rnn_layers.py and
grader/suite_attention_layers.py; the standard checks of a forward/backward pair in
grader/checks.py.
"""
import argparse
import ast
import concurrent.futures
import hashlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:   # run from elsewhere, or imported by pytest: find our grader/ first
    sys.path.insert(0, HERE)

from grader import config as grading_config  # noqa: E402
# (they register the tests, in this order: layers, rnn_layers, attention_layers)
from grader import suite_layers, suite_normalization  # noqa: E402,F401
from grader import suite_rnn_layers  # noqa: E402,F401
from grader import suite_attention_layers  # noqa: E402,F401
from grader import suite_cnn_rnn  # noqa: E402,F401  (the cnn-rnn homework's own suite)
from grader import assignments  # noqa: E402
from grader.checks import REGISTRY, SUITES, THRESHOLD, GradeFailure, set_hints, set_seed  # noqa: E402,F401  (THRESHOLD re-exported)
from grader.report import (  # noqa: E402
    Grading,
    Result,
    escape,
    printed_section,
    total_line,
    NAME_SHOWN,
    OUTPUT_SHOWN,
    ResultsWriter,
    shown as shown_text,
    write_csv,
    write_results,
)
from grader.runner import StudentError, Submission, Unavailable  # noqa: E402
from grader.sandbox import ChildLost, Limits, Sandbox, SubmissionError, plan_isolation  # noqa: E402
from gradient_check import (  # noqa: E402
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
)

__all__ = ['rel_error', 'eval_numerical_gradient', 'eval_numerical_gradient_array',
           'grade', 'main']

MODULES = list(dict.fromkeys(t.module for t in REGISTRY))   # in order: layers first

# Address space (MiB) the grader process may map beyond what it holds when grading starts
# (RLIMIT_AS, soft limit only, so the sandbox can still set its own). Measured: the grader
# starts at ~150 MB and peaks at ~195 MB on `python autograder.py` and ~195 MB on
# `--assignment cnn-rnn`; 640 MiB more is a ceiling of ~4x that peak.
GRADER_MEMORY_MB = 640


def limit_grader_memory(megabytes=GRADER_MEMORY_MB):
    """Cap this process's address space at what it maps now plus `megabytes` MiB: an answer
    that makes the grader allocate more fails its test with a MemoryError (run_test) instead
    of taking the machine's memory. Returns the ceiling in bytes."""
    import resource
    with open('/proc/self/status') as f:
        size = next(int(line.split()[1]) << 10 for line in f if line.startswith('VmSize:'))
    ceiling = size + (int(megabytes) << 20)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    if soft == resource.RLIM_INFINITY or soft > ceiling:
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    return ceiling
HIDDEN_VISIBILITY = 'after_due_date'   # Gradescope visibility of an assignment's hidden tests

# Our modules that hold (or import) a correct implementation of the graded functions.
REFERENCE_MODULES = ('layers', 'rnn_layers', 'attention_layers', 'kernels', 'cnn', 'rnn',
                     'softmax', 'transformer')


class SetupError(RuntimeError):
    """The grader cannot grade submissions safely as installed (a setup problem of the
    instructor's, not a student's failure)."""


def installed_reference_copies():
    """
    Our reference modules that a submission could import from the Python the sandbox
    runs, outside its own folder: a non-editable `pip install .` of handgrad puts
    layers.py and kernels.py into site-packages, which the sandbox can read. Returns
    their paths (empty if there are none). An editable install (pip install -e .) maps
    the modules to the clone through an import hook instead, and the clone is hidden
    from the sandbox.
    """
    import importlib.machinery
    import subprocess
    probe = subprocess.run([sys.executable, '-I', '-c', 'import sys, json; print(json.dumps(sys.path))'],
                           capture_output=True, text=True, timeout=60, cwd='/')
    # (run from a clone, HERE is not on that path: -I leaves out the script's folder)
    search_path = [p for p in json.loads(probe.stdout) if p and os.path.isdir(p)]
    found = []
    for name in REFERENCE_MODULES:
        spec = importlib.machinery.PathFinder.find_spec(name, search_path)
        if spec is not None and spec.origin:
            found.append(spec.origin)
    return found


def check_installation():
    """Raise SetupError if a submission could import our reference solution."""
    copies = installed_reference_copies()
    if copies:
        raise SetupError(
            f"handgrad's reference modules are installed where the sandbox can import them "
            f"({', '.join(copies)}): a submission could import the reference solution and "
            f"score it as its own. Uninstall them (pip uninstall handgrad) and install with "
            f"`pip install -e .` instead, or grade with a Python that does not have them.")
GRADER_FILES = ['autograder.py', 'fileio.py', 'gradient_check.py'] + sorted(
    os.path.join('grader', f) for f in os.listdir(os.path.join(HERE, 'grader')) if f.endswith('.py'))

# Part 1 of API.md: the homework's functions. `--contract` grades only tests of these,
# so a student's homework is not charged for our extensions (conv2d, dropout, LSTM, ...).
CONTRACT_FUNCTIONS = frozenset("""
    fc_forward fc_backward relu_forward relu_backward conv_forward conv_backward
    max_pool_forward max_pool_backward softmax_loss
    rnn_step_forward rnn_step_backward rnn_forward rnn_backward
    word_embedding_forward word_embedding_backward temporal_fc_forward temporal_fc_backward
    temporal_softmax_loss""".split())


# ------------------------------------------------------------------------- selection

def assignment_tests(assignment):
    """The tests of an assignment: those of its suite that grade only its student work (a
    function, or a class some of whose methods are student work)."""
    work = {name.split('.')[0] for f in assignment.student_files for name in f.student}
    return [t for t in SUITES[assignment.suite] if work.issuperset(t.functions)]


def select(only=(), contract=False, config=None, assignment=None):
    """
    The graded tests with their points and visibility: [(test, points, visibility)].
    `assignment` (grader.assignments.Assignment) grades its own tests, public ones
    visible and hidden ones after the due date; without it, every test of handgrad's own
    suite. `only` holds substrings of test, module or function names; `contract` keeps
    only tests that use nothing but Part-1 functions; `config` (grader.config.Config)
    applies include/exclude patterns, points and visibilities.
    """
    config = config or grading_config.Config()
    patterns = [p.strip() for item in only for p in item.split(',') if p.strip()]
    chosen = []
    for t in (assignment_tests(assignment) if assignment else REGISTRY):
        if (contract or config.contract) and not CONTRACT_FUNCTIONS.issuperset(t.functions):
            continue
        if patterns and not any(p in name for p in patterns for name in (t.name, t.module) + t.functions):
            continue
        if config.include and not grading_config.matches(t, config.include):
            continue
        if config.exclude and grading_config.matches(t, config.exclude):
            continue
        settings = config.tests.get(t.name, {})
        visibility = config.visibility
        if assignment and not assignment.is_public(t.name) and not config.tests.get(t.name, {}).get('visibility'):
            visibility = HIDDEN_VISIBILITY
        chosen.append((t, settings.get('points', t.points), settings.get('visibility', visibility)))
    return chosen


def fingerprint():
    """sha256 of the grader's own files: grading is void if they change meanwhile."""
    digest = hashlib.sha256()
    for name in GRADER_FILES:
        try:
            with open(os.path.join(HERE, name), 'rb') as f:
                digest.update(name.encode() + b'\0' + f.read())
        except OSError:
            digest.update(name.encode() + b'\0missing')
    return digest.hexdigest()


# ------------------------------------------------------------------------- grading

def hints_for(assignment, test):
    """Whether `test`'s failure message may carry its probes' hints: always without an
    assignment; else by the assignment's `hints` ('all', 'public' tests only, 'none')."""
    if assignment is None or assignment.hints == 'all':
        return True
    return assignment.hints == 'public' and assignment.is_public(test.name)


def run_test(test, submission, points, visibility='visible', hints=True, neutral=None):
    """Run one graded test on the submission; never raises (but for Ctrl-C). `neutral`:
    function(text) that replaces the server's paths in what students see (Grading.neutral)."""
    submission.begin_test()
    set_hints(hints)
    try:
        note = test.run(*(submission.function(test.module, f) for f in test.functions))
        score, status, output = points, 'passed', note or ''
    except GradeFailure as e:
        score, status, output = 0, 'failed', str(e)
    except (StudentError, Unavailable, ChildLost) as e:
        score, status, output = 0, 'failed', str(e)
    except MemoryError:   # the grader's own ceiling (limit_grader_memory): the answer's fault
        score, status, output = 0, 'failed', (
            "the grader ran out of memory checking what the submission returned (its memory "
            "ceiling: --grader-memory-mb)")
    except Exception as e:   # what the functions returned confused a check: it fails
        score, status, output = 0, 'failed', (
            f"the grader could not check the returned values ({type(e).__name__}: {e})")
    text, dropped = submission.end_test()
    if neutral is not None:
        output, text = neutral(output), neutral(text)
    printed = printed_section(text, dropped)
    output = '\n'.join(part for part in (output, printed) if part)
    return Result(test.name, test.module, score, points, status, output, visibility)


def regular_file(path):
    """A regular file, not a symbolic link (which the grader never follows)."""
    return os.path.isfile(path) and not os.path.islink(path)


def submitted_folder(directory, modules):
    """
    The folder of `directory` that holds the submitted modules: `directory` itself, or
    its one subfolder that does when none lie at the top (a Gradescope upload zipped
    with its folder). Returns (folder, note or None).
    """
    def holds(folder):
        return any(regular_file(os.path.join(folder, m + '.py')) for m in modules)

    if holds(directory):
        return directory, None
    try:
        subfolders = [os.path.join(directory, d) for d in sorted(os.listdir(directory))
                      if not d.startswith(('.', '__')) and os.path.isdir(os.path.join(directory, d))
                      and not os.path.islink(os.path.join(directory, d))]
    except OSError:
        return directory, None
    holding = [d for d in subfolders if holds(d)]
    if len(holding) == 1:
        return holding[0], (f"The files lie in the subfolder {escape(os.path.basename(holding[0]))}/ "
                            f"of the upload: graded there.")
    return directory, None


def grade(directory=HERE, only=(), verbose=False, contract=False, *, config=None, limits=None,
          seed=None, json_path=None, same_user=False, slot=0, progress=None, assignment=None,
          require_isolation=False):
    """
    Grade the implementation in `directory`.

    Inputs:
    - directory: folder holding the student's files (layers.py, rnn_layers.py, ...), or
      one subfolder that holds them.
    - assignment: None (every test of handgrad's own suite), or the id or
      grader.assignments.Assignment whose tests are graded, and only those.
    - only, contract, config: which tests, with which points (see `select`).
    - limits: grader.sandbox.Limits (default: Limits(), or the config's [limits]).
    - seed: seed of the random inputs; default: derived from the submitted files.
    - json_path: also write Gradescope's results.json there, after every test.
    - same_user: as root, still run the submission as root's own user (the weaker mode
      the grader uses when it is not root; for testing that mode).
    - slot: where the search for a free sandbox uid starts (graders running at once
      reserve different uids whatever their slots: grader.sandbox._reserve_sandbox_uid).
    - require_isolation: raise SetupError rather than grade with less than the private
      root (a sandbox uid in private namespaces); otherwise a weaker isolation is graded
      with, and announced on stderr, in the notes and in results.json.
    - progress: None, or function(item) called with each note (a str) as it is known
      and each Result as its test ends.

    Returns:
    - a grader.report.Grading: results in registry order, score, max_score, seed, notes.

    Raises SetupError (before running anything) if directory is not ours and a
    submission could import our reference modules (installed_reference_copies), and
    with require_isolation, if the private root cannot be set up.
    """
    started = time.monotonic()
    if isinstance(assignment, str):
        assignment = assignments.get(assignment)
    chosen = select(only, contract, config, assignment)
    modules = list(dict.fromkeys(t.module for t, _, _ in chosen))
    limits = limits or Limits()
    directory = os.path.abspath(directory)
    if directory != HERE:
        check_installation()
    grading = Grading(directory, max_score=sum(points for _, points, _ in chosen))
    grading.notes.append(f"Grading {directory}" + (f" as assignment {assignment.id}" if assignment else ""))
    grading.paths += [(HERE, '<grader>'), (directory, ''), (os.path.realpath(directory), '')]
    directory, moved = submitted_folder(directory, modules)
    if moved:
        grading.notes.append(moved)
    present = [m for m in modules if regular_file(os.path.join(directory, m + '.py'))]
    expected_files = ', '.join(m + '.py' for m in modules)
    if not present:
        grading.notes.append(
            f"No graded module ({expected_files}) in {directory}: every test scores 0 of its points.")
    missing = {m: (f"{m}.py not found in the submission: its tests score 0. Expected the files "
                   f"{expected_files} together at the top level of the upload (or in one folder).")
               for m in modules if m not in present}
    isolation = plan_isolation(slot, same_user)
    if require_isolation and not isolation.privileged:
        isolation.release()
        raise SetupError(isolation_refusal(isolation))
    hidden = [HERE, directory] + ([os.path.dirname(os.path.abspath(json_path))] if json_path else [])
    # our own folder holds much more than the graded modules: copy only top-level modules
    # (an assignment's models import our other modules: kernels, fileio, ...)
    ours = directory == HERE
    own_files = (sorted(f for f in os.listdir(HERE) if f.endswith('.py') and f != 'autograder.py')
                 if assignment else own_modules(present))
    before = fingerprint()

    writer = ResultsWriter(json_path) if json_path else None

    def save(final):   # a partial write at most every second or so (ResultsWriter)
        grading.elapsed = time.monotonic() - started
        if writer is not None:
            writer(grading, final)

    try:
        box = Sandbox(directory, limits, isolation, hidden, only_files=own_files if ours else None,
                      graded=modules)
    except SubmissionError as e:
        grading.notes.append(f"Cannot grade this submission: {e}")
        grading.problems.append(f"cannot grade: {e}")
        grading.results = [Result(t.name, t.module, 0, points, 'failed', str(e), visibility)
                           for t, points, visibility in chosen]
        save(True)
        return grading
    if box.ignored:   # names shown escaped, on one line
        listed = '; '.join(escape(path).replace('\n', '\\n') + f" ({why})"
                           for path, why in box.ignored[:20])
        grading.notes.append("Ignored (not copied, never imported): " + listed
                             + (f"; and {len(box.ignored) - 20} more" if len(box.ignored) > 20 else "")
                             + ". Only the regular .py files and data files of the upload are graded.")
    with box:
        grading.seed = box.seed if seed is None else int(seed)
        set_seed(grading.seed)
        submission = Submission(box, present, limits)
        try:
            submission.start()
            grading.isolation = isolation.describe()
        except ChildLost as e:
            grading.isolation = f"the grader could not start its sandbox: {e}"
        grading.isolation_level = isolation.summary()
        if require_isolation and not isolation.private_root:
            raise SetupError(isolation_refusal(isolation, grading.isolation))
        if not isolation.private_root:   # loudly: not only in the notes
            print(f"autograder: WARNING, weaker isolation ({isolation.level}): {grading.isolation}",
                  file=sys.stderr, flush=True)
        grading.notes.append(grading.isolation)
        grading.notes.append(f"seed {grading.seed} (--seed {grading.seed} repeats these inputs)")
        grading.paths += [(box.workdir, '')] + ([('/sandbox', '')] if isolation.private_root else [])
        for note in grading.notes[1:] if progress else ():
            progress(note)
        for test, points, visibility in chosen:
            if test.module in missing:
                result = Result(test.name, test.module, 0, points, 'failed', missing[test.module],
                                visibility)
            else:
                result = run_test(test, submission, points, visibility, hints_for(assignment, test),
                                  neutral=grading.neutral)
            grading.results.append(result)
            if progress:
                progress(result)
            save(False)
        # why points were lost wholesale, for the batch CSV's note column
        grading.problems += [f"{m}.py missing" for m in missing]
        grading.problems += [grading.neutral(why) for why in submission.broken.values()]
    if fingerprint() != before:
        grading.notes.append("The grader's own files changed while this submission was graded: "
                             "its results are void (every test scores 0).")
        if progress:
            progress(grading.notes[-1])
        for r in grading.results:
            r.score, r.status = 0, 'failed'
    save(True)
    return grading


def isolation_refusal(isolation, described=''):
    """The message of --require-isolation's refusal: what failed, what to do."""
    if not isolation.privileged:
        what = ("the grader does not run as root" if os.geteuid() != 0 else "--same-user was given")
    else:
        what = f"the private root could not be set up ({isolation.note or described or 'unknown error'})"
    return (f"refusing to grade: --require-isolation needs the submission in private mount and "
            f"network namespaces as a sandbox uid, but {what}. Run the grader as root with "
            f"CAP_SYS_ADMIN (e.g. docker run --cap-add SYS_ADMIN), or pass "
            f"--allow-weaker-isolation to grade with weaker isolation (it is announced).")


# ------------------------------------------------------------------------- batch

def batch_folders(folder):
    """
    The student folders of a batch: ([(name, real path)], [(name, why refused)]). A
    symbolic link (it could point at another student's folder and get their marks) and a
    folder that resolves outside `folder` are refused, not graded.
    """
    root = os.path.realpath(folder)
    students, refused = [], []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith('.') or not os.path.isdir(path):
            continue
        real = os.path.realpath(path)
        if os.path.islink(path):
            refused.append((name, "refused: a symbolic link, not a folder of its own"))
        elif os.path.dirname(real) != root:
            refused.append((name, "refused: the folder lies outside the batch folder"))
        else:
            students.append((name, real))
    return students, refused


def batch(folder, csv_path, jobs, results_dir, forwarded, time_limit):
    """
    Grade every subfolder of `folder` (one per student) with up to `jobs` graders at a
    time, each a separate `autograder.py --target` process with its own sandbox uid.
    Writes one CSV row per student and each student's results.json under results_dir.
    Returns the exit code: 0 if every student passed every test.
    """
    students, refused = batch_folders(folder)
    if not students and not refused:
        print(f"--batch {shown_text(folder, NAME_SHOWN)}: no student subfolders to grade")
        return 2
    started = time.monotonic()
    free_slots = list(range(jobs))
    import shutil
    import signal
    import subprocess
    import tempfile
    import threading
    from grader.sandbox import become_subreaper, kill_and_reap, parent_pids
    lock = threading.Lock()
    # A grader that runs out of time is killed with its process group; what it started in
    # other sessions (its sandbox child, the submission's daemons) then comes to this
    # process, a child subreaper, and is killed too; its temporary folders (TMPDIR) go.
    become_subreaper()
    me, live = os.getpid(), set()
    existing = {p for p, pp in parent_pids().items() if pp == me}

    def kill_orphans():
        with lock:
            for _ in range(50):
                parents = parent_pids()
                orphans = {p for p, pp in parents.items() if pp == me} - live - existing
                if not orphans:
                    return
                tree, frontier = set(), orphans
                while frontier:
                    tree |= frontier
                    frontier = {p for p, pp in parents.items() if pp in frontier} - tree
                kill_and_reap(tree, orphans)

    def grade_one(entry):
        student, target = entry
        with lock:
            slot = free_slots.pop()
        path = os.path.join(results_dir, student, 'results.json')
        scratch = tempfile.mkdtemp(prefix='handgrad-batch-')
        os.chmod(scratch, 0o711)   # the sandbox user passes through to its own folder
        try:
            if os.path.exists(path):
                os.unlink(path)
            command = [sys.executable, os.path.join(HERE, 'autograder.py'), '--target',
                       target, '--json', path, '--slot', str(slot), '--quiet'] + forwarded
            with lock:
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           start_new_session=True, env={**os.environ, 'TMPDIR': scratch})
                live.add(process.pid)
            try:
                _, stderr = process.communicate(timeout=time_limit)
                stderr = stderr.decode('utf-8', 'replace')
                problem = None if process.returncode in (0, 1) else (
                    f"grader exited with code {process.returncode}: {stderr.strip()[-300:]}")
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.communicate()
                problem = f"grader did not finish within {time_limit:.0f} s (timeout)"
            finally:
                if process.poll() is None:   # interrupted: leave nothing running
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                with lock:
                    live.discard(process.pid)
            kill_orphans()
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                return student, None, None, '', problem or "no results.json written"
            failed = [t['name'] for t in data['tests'] if t['status'] != 'passed']
            extra = data.get('extra_data', {})
            notes = [problem] + list(extra.get('problems', [])) + (
                [] if extra.get('complete') else ['incomplete'])
            note = '; '.join(n for n in notes if n)
            if not note and data['score'] <= 0 < len(data['tests']):
                note = f"{len(failed)} of {len(data['tests'])} tests failed"
            return student, data['score'], data['max_score'], ';'.join(failed), note
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            with lock:
                free_slots.append(slot)

    rows = [(student, None, None, '', why) for student, why in refused]
    for student, _, _, _, why in rows:
        print(f"{shown_text(student, NAME_SHOWN)}: not graded ({why})", flush=True)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for row in pool.map(grade_one, students):
            rows.append(row)
            student, score, max_score, failed, note = row
            print(f"{shown_text(student, NAME_SHOWN)}: {score}/{max_score}"
                  + (f"  ({shown_text(note, 300)})" if note else ''), flush=True)
    rows.sort(key=lambda row: row[0])
    write_csv(csv_path, rows)
    print(f"Graded {len(rows)} submissions in {time.monotonic() - started:.1f} s with "
          f"{jobs} job{'s' if jobs > 1 else ''}: {shown_text(csv_path, OUTPUT_SHOWN)}, "
          f"results in {shown_text(results_dir, OUTPUT_SHOWN)}")
    return 0 if all(r[1] is not None and r[1] == r[2] for r in rows) else 1


# ------------------------------------------------------------------------- Gradescope

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this as root. AUTOGRADER_ROOT (default /autograder) lets a test run it
# in a temporary folder. The grader runs the submission in a sandbox; in a container
# without namespaces, the sandbox user relies on file permissions, so keep the grader
# and the results private first.
set -u
root="${AUTOGRADER_ROOT:-/autograder}"
mkdir -p "$root/results"
chmod -R go-rwx "$root/source" "$root/results" 2>/dev/null || true
cd "$root/source" || exit 1
python3 autograder.py --target "$root/submission" --json "$root/results/results.json" @OPTIONS@
# The exit code says whether every test passed; Gradescope reads results.json either way.
test -s "$root/results/results.json"
"""

SETUP_SH = """#!/usr/bin/env bash
# Gradescope's image set-up (any Ubuntu base image: Python >= 3.9, e.g. 22.04's 3.10).
set -eu
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-numpy >/dev/null
python3 -c "import sys, numpy; assert sys.version_info >= (3, 9)"
"""


def gradescope_package(path, config_path=None, assignment=None, require_isolation=True):
    """
    Write a Gradescope autograder zip: setup.sh, run_autograder and the grader's files
    (no student file: the grader needs no solution). With `assignment` (an id), it grades
    that assignment's tests only. Its run_autograder grades with --require-isolation
    (refusing rather than grading outside private namespaces) unless require_isolation
    is False (--allow-weaker-isolation).
    """
    import zipfile
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
        def add(name, text, mode=0o644):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text)
        add('setup.sh', SETUP_SH, 0o755)
        options = ' '.join((['--assignment', assignment] if assignment else [])
                           + (['--config', 'grading.toml'] if config_path else [])
                           + ['--require-isolation' if require_isolation else '--allow-weaker-isolation'])
        add('run_autograder', RUN_AUTOGRADER.replace('@OPTIONS@', options), 0o755)
        for name in GRADER_FILES:
            with open(os.path.join(HERE, name)) as f:
                add(name, f.read())
        if config_path:
            with open(config_path) as f:
                add('grading.toml', f.read())
    return path


# ------------------------------------------------------------------------- command line

def positive_number(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def main(argv=None):
    """Command line entry point; returns the exit code (0 only if every graded test passed)."""
    parser = argparse.ArgumentParser(
        description="Grade a submission against API.md, running it in a sandbox: by default "
                    "every function of layers.py, rnn_layers.py and attention_layers.py; with "
                    "--assignment, that assignment's files (e.g. cnn-rnn: layers.py, rnn_layers.py, "
                    "softmax.py, cnn.py, rnn.py).")
    parser.add_argument('--target', metavar='DIR', default=HERE,
                        help="folder of the implementation to grade (default: ours)")
    parser.add_argument('--only', metavar='NAME', action='append', default=[],
                        help="run only tests whose test, module or function name contains NAME "
                             "(repeatable, or a comma-separated list)")
    parser.add_argument('--json', metavar='PATH', help="also write Gradescope results.json to PATH")
    parser.add_argument('--assignment', metavar='ID', help="grade an assignment of "
                        "grader/assignments.py (%s): its tests and maximum only" % ', '.join(assignments.ASSIGNMENTS))
    parser.add_argument('--release', metavar='ID', help="release an assignment into --out DIR: "
                        "student/ (the handout and its checker), solutions/, autograder.zip")
    parser.add_argument('--out', metavar='DIR', help="with --release: the folder to write")
    parser.add_argument('--contract', action='store_true',
                        help="grade only the homework's Part-1 functions of API.md, not our "
                             "extensions (conv2d, dropout, log-softmax, LSTM, attention, ...)")
    parser.add_argument('--config', metavar='TOML', help="grading config: points, visibility, "
                        "included tests, limits (see grader/config.py)")
    parser.add_argument('--seed', type=int, help="seed of the random inputs (default: derived "
                        "from the submitted files, so a regrade draws the same inputs)")
    parser.add_argument('--time-limit', type=positive_number(float), metavar='S',
                        help="seconds the submission may take per test (default 10)")
    parser.add_argument('--budget', type=positive_number(float), metavar='S',
                        help="seconds the submission may take in all (default 120)")
    parser.add_argument('--memory-mb', type=positive_number(int), metavar='MB',
                        help="address-space limit of the submission's processes (default 2048)")
    parser.add_argument('--processes', type=positive_number(int), metavar='N',
                        help="processes and threads the submission may run (default 32)")
    parser.add_argument('--grader-memory-mb', type=positive_number(int), metavar='MB',
                        default=GRADER_MEMORY_MB,
                        help="address space the grader process itself may add while it "
                             "grades (a submission's answers that need more fail their test; "
                             "default %(default)s)")
    parser.add_argument('--same-user', action='store_true',
                        help="as root, run the submission as root's own user anyway: the "
                             "weaker isolation of a non-root grader, for testing it")
    parser.add_argument('--require-isolation', action='store_true',
                        help="refuse to grade (exit code 2) unless the submission runs as a "
                             "sandbox uid in private namespaces (root with CAP_SYS_ADMIN), "
                             "instead of grading with weaker isolation; the default of --batch "
                             "and of the Gradescope package")
    parser.add_argument('--allow-weaker-isolation', action='store_true',
                        help="with --batch or --gradescope-package: grade with weaker isolation "
                             "(announced) where the private namespaces cannot be set up")
    parser.add_argument('--batch', metavar='DIR', help="grade every subfolder of DIR (one per "
                        "student); needs --csv")
    parser.add_argument('--csv', metavar='PATH', help="with --batch: write one row per student")
    parser.add_argument('--jobs', type=positive_number(int), default=1,
                        help="with --batch: graders running at once (default 1)")
    parser.add_argument('--results-dir', metavar='DIR', help="with --batch: where each student's "
                        "results.json goes (default: a results/ folder beside the CSV)")
    parser.add_argument('--gradescope-package', metavar='ZIP', help="write a Gradescope "
                        "autograder zip (with --config, it grades with that config) and exit")
    parser.add_argument('--slot', type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument('--quiet', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('-v', '--verbose', action='store_true',
                        help="show notes (worst rel errors) and printed output of every test")
    args = parser.parse_args(argv)
    if args.require_isolation and args.allow_weaker_isolation:
        parser.error("--require-isolation and --allow-weaker-isolation contradict each other")

    assignment = None
    if args.assignment:
        try:
            assignment = assignments.get(args.assignment)
        except assignments.UnknownAssignment as e:
            parser.error(str(e))
    if args.release:
        if not args.out:
            parser.error("--release needs --out DIR")
        from grader import release
        try:
            summary = release.release(args.release, args.out)
        except (release.ReleaseError, assignments.UnknownAssignment) as e:
            print(f"autograder: release failed: {e}", file=sys.stderr)
            return 2
        print(release.describe(summary) if hasattr(release, 'describe') else f"released into {args.out}")
        return 0
    config = None
    if args.config:
        try:
            config = grading_config.load(
                args.config, [t.name for t in (assignment_tests(assignment) if assignment else REGISTRY)])
        except grading_config.ConfigError as e:
            parser.error(str(e))
    if args.gradescope_package:
        gradescope_package(args.gradescope_package, args.config, args.assignment,
                           require_isolation=not args.allow_weaker_isolation)
        print(f"wrote {args.gradescope_package}")
        return 0
    if not select(args.only, args.contract, config, assignment):
        parser.error(f"no test is selected (--only {args.only}, --contract, --config)")
    settings = dict(config.limits if config else {})
    for key, value in (('time_per_test', args.time_limit), ('budget', args.budget),
                       ('memory_mb', args.memory_mb), ('processes', args.processes)):
        if value is not None:
            settings[key] = value
    limits = Limits(**{k: v for k, v in settings.items() if k != 'memory_mb'})
    if 'memory_mb' in settings:
        limits.memory = int(settings['memory_mb']) << 20

    grading_others = args.batch or os.path.abspath(args.target) != HERE
    if grading_others:
        try:
            check_installation()
        except SetupError as e:
            print(f"autograder: {e}", file=sys.stderr)
            return 2
    if args.batch:
        if not args.csv:
            parser.error("--batch needs --csv PATH")
        if not os.path.isdir(args.batch):
            parser.error(f"--batch {args.batch}: not a directory")
        results_dir = args.results_dir or os.path.join(os.path.dirname(os.path.abspath(args.csv)), 'results')
        forwarded = [f for flag, value in (('--config', args.config), ('--seed', args.seed),
                                           ('--time-limit', args.time_limit), ('--budget', args.budget),
                                           ('--memory-mb', args.memory_mb), ('--processes', args.processes))
                     if value is not None for f in (flag, str(value))]
        forwarded += ['--contract'] * args.contract + ['--same-user'] * args.same_user
        forwarded += ['--allow-weaker-isolation' if args.allow_weaker_isolation else '--require-isolation']
        forwarded += ['--grader-memory-mb', str(args.grader_memory_mb)]
        forwarded += ['--assignment', args.assignment] if args.assignment else []
        forwarded += [f for item in args.only for f in ('--only', item)]
        return batch(args.batch, args.csv, args.jobs, results_dir, forwarded,
                     time_limit=2 * limits.budget + 60)
    if not os.path.isdir(args.target):
        parser.error(f"--target {args.target}: not a directory")

    shown = {'module': None}

    def show(result):
        if args.quiet:
            return
        if isinstance(result, str):   # a note: it may hold names the submission chose
            print(shown_text(result, OUTPUT_SHOWN, lines=True), flush=True)
            return
        if result.module != shown['module']:
            shown['module'] = result.module
            print(f"{result.module}.py")
        print(f"  {result.status[:4].upper()}  {result.name:<36} {result.score}/{result.max_score}")
        if result.output and (result.status == 'failed' or args.verbose):
            print('\n'.join('        ' + escape(line) for line in result.output.split('\n')))
        sys.stdout.flush()

    if not args.quiet:
        print(f"Grading {shown_text(os.path.abspath(args.target), OUTPUT_SHOWN)}", flush=True)
    limit_grader_memory(args.grader_memory_mb)
    try:
        grading = grade(args.target, args.only, args.verbose, args.contract, config=config,
                        limits=limits, seed=args.seed, json_path=args.json,
                        same_user=args.same_user, slot=args.slot, progress=show, assignment=assignment,
                        require_isolation=args.require_isolation)
    except SetupError as e:
        print(f"autograder: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(total_line(grading))
    return 0 if grading.passed else 1


# ------------------------------------------------------------------------------------
# pytest: `python -m pytest autograder.py` runs every graded test on our modules
# ------------------------------------------------------------------------------------

_ours = {}


def own_modules(modules):
    """The files of our own graded modules and of the modules of ours they import, at any
    depth (the layer files import their argument checks from validation.py): what grading
    our own folder copies into the sandbox."""
    files, pending = [], [m + '.py' for m in modules]
    while pending:
        name = pending.pop()
        if name in files or not os.path.isfile(os.path.join(HERE, name)):
            continue
        files.append(name)
        with open(os.path.join(HERE, name), encoding='utf-8') as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                pending.append(node.module.split('.')[0] + '.py')
            elif isinstance(node, ast.Import):
                pending += [alias.name.split('.')[0] + '.py' for alias in node.names]
    return sorted(files)


def _our_submission():
    if not _ours:
        import atexit
        present = [m for m in MODULES if os.path.isfile(os.path.join(HERE, m + '.py'))]
        box = Sandbox(HERE, Limits(), plan_isolation(), [HERE], only_files=own_modules(present))
        atexit.register(box.__exit__, None, None, None)
        set_seed(box.seed)
        _ours['submission'] = Submission(box, present, Limits())
    return _ours['submission']


def _as_pytest_function(graded_test):
    def run():
        result = run_test(graded_test, _our_submission(), graded_test.points)
        if result.status != 'passed':
            raise GradeFailure(result.output)
    run.__name__ = run.__qualname__ = 'test_' + graded_test.name
    run.__doc__ = f"Graded test {graded_test.name} of {graded_test.module}.py on our modules."
    return run


for _graded_test in REGISTRY:
    globals()['test_' + _graded_test.name] = _as_pytest_function(_graded_test)
del _graded_test


if __name__ == '__main__':
    sys.exit(main())
