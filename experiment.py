"""The scaffold the training scripts share: flags, thread policy, run names, parallel
sweeps, training with the Solver, results files.

A script starts with

    import experiment
    experiment.apply_thread_policy()      # before NumPy loads: see below
    import numpy as np                    # ... then everything else

and builds its command line from `experiment.parser`, which holds the common flags
(--data-dir, --results-dir, --checkpoint-dir, --run-name, --resume, --quick, --dtype,
--seed, --threads, --jobs), plus its own with the argparse types below. Flags whose
default differs between a full run and --quick are added with `add_scaled(parser, name,
full, quick, ...)` and get their value in `parse(parser, argv)`: --quick only fills in
defaults, a flag given explicitly always wins, and --help shows both defaults.

--resume continues a run from its checkpoints; it is refused before any training, in one
line with exit code 2, when there is nothing to resume or the checkpoints were written
with other flags (see "resume" below). Warnings print as one line "warning: ..." (run).

Thread policy. OpenBLAS picks its thread count when NumPy is imported, and on this
2-core machine its threads stall whenever another process keeps a core busy (measured:
`image_captioning.py --quick` took 371 s with OpenBLAS's default two threads beside
another job, 72 s with one). So every script runs one BLAS thread unless --threads says
otherwise, set in the environment before NumPy loads; sweeps use the cores by running
configurations in parallel processes instead (--jobs), one BLAS thread each.

This module imports nothing heavy at import time, so that the policy can run first.
"""
import argparse
import json
import math
import os
import re
import sys
import time
import warnings

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_THREADS = 1
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ----------------------------------------------------------------------------- threads

def apply_thread_policy(argv=None):
    """
    Set the BLAS thread count for this process from --threads N in argv (default
    sys.argv; DEFAULT_THREADS = 1 without the flag), before NumPy is imported; in a
    --jobs worker always 1. Returns the count. A bad value is left for the real parser
    to report.
    """
    argv = sys.argv[1:] if argv is None else argv
    threads = DEFAULT_THREADS
    for index, item in enumerate(argv):
        value = item.split("=", 1)[1] if item.startswith("--threads=") else (
            argv[index + 1] if item == "--threads" and index + 1 < len(argv) else None)
        if value is not None and value.isdigit() and int(value) >= 1:
            threads = int(value)
    if os.environ.get("HANDGRAD_SWEEP_WORKER"):
        threads = 1   # a --jobs worker process: the cores are used by running several
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    # (once NumPy is loaded, e.g. when a notebook imports a script for its functions, this
    # only reaches processes started later: OpenBLAS read its setting at NumPy's import)
    return threads


# ----------------------------------------------------------------------------- argparse types

def _number(kind, test, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    parse.__name__ = what   # argparse shows it in "invalid <name> value"
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a number > 0")
keep_probability = _number(float, lambda v: 0 < v <= 1, "a keep probability in (0, 1]")
decay_factor = _number(float, lambda v: 0 < v <= 1, "a factor in (0, 1]")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")


def run_name(text):
    if not RUN_NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: use letters, digits, '.', '_' and '-' (it names files and folders)")
    return text


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """
    The description as written, and every flag's default once in its help: appended as
    "(default: X)" unless the help text already says it (a help with "default" in it,
    such as add_scaled's "(default: 15; --quick: 2)"). No default is shown for switches
    (store_true), None and empty lists; 0 is shown.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or default == [] or "default" in text.lower()):
            return text
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        return f"{text} (default: {default})"


# ----------------------------------------------------------------------------- the command line

def parser(description, data_help, sweeps=True):
    """An ArgumentParser with the common flags (--jobs only if the script has sweeps to
    run in parallel); the script adds its own."""
    p = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    p.add_argument("--data-dir", help=data_help)
    p.add_argument("--results-dir", default="results",
                   help="where the results JSON and the plots go, in a folder per run name")
    p.add_argument("--checkpoint-dir", default="checkpoints",
                   help="where the Solver's checkpoints go, in a folder per run name")
    p.add_argument("--run-name", type=run_name,
                   help="names this run's output folders, so that runs do not overwrite each "
                        "other (default: 'quick' with --quick, else 'full')")
    p.add_argument("--resume", action="store_true",
                   help="continue from this run name's checkpoints and finished sweep results; "
                        "refused if there are none, or if they were written with other flags")
    p.add_argument("--quick", action="store_true",
                   help="smoke run on a small subset: changes the defaults shown as '--quick: ...'; "
                        "flags given explicitly still win")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="dtype of the parameters and the computation")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the data order, the initial weights and dropout")
    p.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                   help="BLAS threads of this process; sets OPENBLAS_NUM_THREADS, "
                        "OMP_NUM_THREADS and MKL_NUM_THREADS, overriding the environment "
                        f"(default: {DEFAULT_THREADS}, because OpenBLAS threads stall when "
                        "another process keeps a core busy; see experiment.py)")
    if sweeps:
        p.add_argument("--jobs", type=positive_int, default=1,
                       help="configurations of a sweep trained at once, in worker processes "
                            "with one BLAS thread each; the results are those of --jobs 1")
    return p


def add_scaled(p, name, full, quick, help, **kwargs):
    """A flag whose default depends on --quick: help shows both; parse fills it in."""
    shown = (lambda v: " ".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
    p.add_argument(name, default=None, help=f"{help} (default: {shown(full)}; --quick: {shown(quick)})",
                   **kwargs)
    p.set_defaults(**{f"_scaled_{name.lstrip('-').replace('-', '_')}": (full, quick)})


def parse(p, argv=None):
    """
    Parse argv; fill in the flags of add_scaled that were not given from the full or the
    --quick defaults, and the run name. Bad values end in argparse's one-line error and
    exit code 2. With --resume, a run whose checkpoint folder does not exist or is empty
    raises ResumeError (nothing to resume; scripts then check their own checkpoints
    with check_resume).
    """
    args = p.parse_args(argv)
    for key in [k for k in vars(args) if k.startswith("_scaled_")]:
        name = key[len("_scaled_"):]
        full, quick = getattr(args, key)
        delattr(args, key)
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.run_name is None:
        args.run_name = "quick" if args.quick else "full"
    args.results_dir = os.path.join(args.results_dir, args.run_name)
    args.checkpoint_dir = os.path.join(args.checkpoint_dir, args.run_name)
    if args.resume:
        _check_resume_folder(args)
    return args


# ----------------------------------------------------------------------------- parallel sweeps

def run_sweep(function, items, jobs):
    """
    [function(item) for item in items], computed by `jobs` worker processes when jobs
    > 1. Each worker is a fresh Python (spawn) with one BLAS thread, so a sweep's result
    does not depend on --jobs; function must be a module-level function of the script.
    Yields (item, result) in the order of items as they are ready.
    """
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            yield item, function(item)
        return
    import concurrent.futures
    import multiprocessing
    saved = {name: os.environ.get(name) for name in ("HANDGRAD_SWEEP_WORKER", *THREAD_VARIABLES)}
    os.environ.update({"HANDGRAD_SWEEP_WORKER": "1", **{name: "1" for name in THREAD_VARIABLES}})
    try:
        with concurrent.futures.ProcessPoolExecutor(
                max_workers=min(jobs, len(items)),
                mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_in_worker, function, item) for item in items]
            for item, future in zip(items, futures):
                yield item, future.result()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _in_worker(function, item):
    """function(item) in a --jobs worker process, its warnings shown as in the main one."""
    warnings.showwarning = show_warning
    return function(item)


# ----------------------------------------------------------------------------- data, once

_cached = {}


def cached(key, load):
    """
    load() for this key, computed once per process and kept until another key is asked
    for: the main process and each --jobs worker load a dataset once, however many
    configurations they train on it.
    """
    if key not in _cached:
        _cached.clear()
        _cached[key] = load()
    return _cached[key]


# ----------------------------------------------------------------------------- training

def train(model, data, solver_options, checkpoint_name=None, resume=False, label="",
          verbose=True, settings=None):
    """
    Train model with a Solver(model, data, **solver_options, checkpoint_name=...):
    resumed from the newest checkpoint if resume, timed, and stopped cleanly if the
    loss or a metric stops being finite. settings (run_settings: the flags that define
    this run) are written beside the checkpoints, for check_resume. Returns (solver,
    record), record a dict with epochs_run, seconds, seconds_per_epoch, resumed_from (a
    path or None) and diverged (the error message, or None). Raises ResumeError if the
    checkpoint does not fit the model.
    """
    from solver import NonFiniteLossError, Solver
    solver = Solver(model, data, checkpoint_name=checkpoint_name, verbose=verbose,
                    **solver_options)
    resumed_from = resume and checkpoint_name and resume_latest(solver)
    if checkpoint_name and settings is not None:
        save_settings(checkpoint_name, settings)
    if resumed_from and verbose:
        print(f"  resumed from {resumed_from} after epoch {solver.epoch}")
    start_epoch, start = solver.epoch, time.perf_counter()
    diverged = None
    try:
        solver.train()
    except NonFiniteLossError as error:
        diverged = str(error)
        print(f"  {label or 'training'} diverged: {error}")
    seconds = time.perf_counter() - start
    epochs_run = solver.epoch - start_epoch
    return solver, {"epochs_run": epochs_run, "seconds": seconds,
                    "seconds_per_epoch": seconds / epochs_run if epochs_run else None,
                    "resumed_from": resumed_from or None, "diverged": diverged}


# ----------------------------------------------------------------------------- resume
#
# --resume continues a run from its checkpoints in <--checkpoint-dir>/<--run-name>. It is
# refused before any training (ResumeError: one line "error: ...", exit code 2) when
# - there is nothing to resume: the folder does not exist or is empty (parse), or it
#   holds no checkpoint of this run's series (check_resume, which names the file
#   patterns it looked for);
# - a checkpoint was written with other settings than this run's flags: the flags a
#   script lists as the settings of a series are saved beside its checkpoints as
#   '<checkpoint name>_settings.json' (train, save_settings), and the batch size is also
#   read from the checkpoint itself (which records the Solver's settings), so a
#   checkpoint written before settings files existed is checked for it too. A resumed
#   run takes over the checkpoint's weights, optimizer state and counters, so with other
#   flags its results would belong to neither setting; with another batch size the
#   per-epoch mean losses computed from the Solver's per-iteration loss history would be
#   wrong;
# - the checkpoint does not fit the model (parameter names or shapes), e.g. from a
#   script version with another network (resume_latest).
# Free to change on resume: --epochs (more epochs continue the run: the result equals
# an uninterrupted run of that length), --threads, --jobs, --data-dir, --results-dir,
# and the flags that only choose what is shown or drawn. Fix a refused run by resuming
# with the flags it names, or run without --resume to start it afresh.

SETTINGS_SUFFIX = "_settings.json"
RESUME_HINT = ("run without --resume to start afresh, or give the --run-name (and "
               "--checkpoint-dir) of the run to continue")


class ResumeError(ValueError):
    """--resume cannot continue this run (see above). experiment.run prints it as one
    line "error: ..." with exit code 2."""


def run_settings(args, *names):
    """The flags `names` (attribute names of args) that define a checkpointed run, as
    {'--flag': value}: what train saves beside its checkpoints and check_resume compares."""
    return {"--" + name.replace("_", "-"): plain(getattr(args, name)) for name in names}


def settings_path(checkpoint_name):
    """The settings file of a checkpoint series: '<checkpoint_name>_settings.json'."""
    return checkpoint_name + SETTINGS_SUFFIX


def save_settings(checkpoint_name, settings):
    """Write a series' settings (run_settings) beside its checkpoints. Returns the path."""
    return write_json(settings_path(checkpoint_name), settings)


def _check_resume_folder(args):
    """ResumeError if args.checkpoint_dir does not exist or holds no file."""
    folder = args.checkpoint_dir
    if os.path.isdir(folder) and any(not name.startswith(".") for name in os.listdir(folder)):
        return
    state = "is empty" if os.path.isdir(folder) else "does not exist"
    raise ResumeError(f"--resume: nothing to resume in {folder} (run name '{args.run_name}'): "
                      f"the folder {state}; {RESUME_HINT}")


def check_resume(args, runs, batch_flag="--batch-size"):
    """
    With --resume (else it does nothing), before any training: raise ResumeError unless
    at least one of the checkpoint series `runs` has a checkpoint to resume, and each
    that has one was written with this run's settings (see the comment above).

    Inputs:
    - args: the parsed flags (resume, checkpoint_dir, run_name).
    - runs: dict {checkpoint_name: settings}: each series this run trains, named as for
      train (a path in args.checkpoint_dir), with its settings from run_settings.
    - batch_flag: the flag among the settings that is the Solver's batch_size; it is
      also compared with the batch size recorded in the checkpoint itself.

    Returns the list of checkpoint names that have a checkpoint to resume.
    """
    if not args.resume:
        return []
    from checkpoint import (CheckpointError, checkpoint_epochs, epoch_checkpoint_path,
                            read_checkpoint)
    resumable, unreadable = [], []
    for name, settings in runs.items():
        for epoch in reversed(checkpoint_epochs(name)):   # the newest readable, as the Solver
            path = epoch_checkpoint_path(name, epoch)
            try:
                recorded = read_checkpoint(path)["kwargs"]
            except CheckpointError:
                unreadable.append(path)
                continue
            resumable.append(name)
            _check_settings(path, _saved_settings(name), recorded, settings, batch_flag)
            break
    if not resumable:
        patterns = [os.path.basename(name) + "_epoch_*.npz" for name in runs]
        patterns = ", ".join(patterns[:-1]) + " or " * (len(patterns) > 1) + patterns[-1]
        found = f"readable checkpoint {patterns} there (unreadable: {', '.join(unreadable)})" \
            if unreadable else f"checkpoint {patterns} there"
        raise ResumeError(f"--resume: nothing to resume in {args.checkpoint_dir} (run name "
                          f"'{args.run_name}'): no {found}; {RESUME_HINT}")
    return resumable


def _saved_settings(checkpoint_name):
    """The settings file of a series as a dict, {} if there is none (or it is unreadable)."""
    try:
        with open(settings_path(checkpoint_name)) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _check_settings(path, saved, recorded, settings, batch_flag):
    """ResumeError naming every flag whose value differs from the checkpoint's."""
    saved = dict(saved)
    if batch_flag in settings and recorded.get("batch_size") is not None:
        saved[batch_flag] = recorded["batch_size"]   # the checkpoint's own record wins
    changed = [flag for flag in settings if flag in saved and saved[flag] != settings[flag]]
    if changed:
        raise ResumeError(
            f"checkpoint {path} was written with "
            f"{' and '.join(_flag_text(flag, saved[flag]) for flag in changed)}, this run has "
            f"{' and '.join(_flag_text(flag, settings[flag]) for flag in changed)}: run without "
            f"--resume or with the same flags")


def _flag_text(flag, value):
    """A flag and its value as typed: '--batch-size 64', '--batchnorm', 'no --batchnorm'."""
    if value is True:
        return flag
    if value is False or value is None:
        return f"no {flag}"
    if isinstance(value, list):
        return f"{flag} {' '.join(map(str, value))}"
    return f"{flag} {value}"


def resume_latest(solver):
    """solver.resume_latest(), with a checkpoint that does not fit the model (the
    Solver's CheckpointError: other parameter names or shapes) as a ResumeError."""
    from checkpoint import CheckpointError
    try:
        return solver.resume_latest()
    except CheckpointError as error:
        raise ResumeError(f"{error}: run without --resume or with the same flags") from None


# ----------------------------------------------------------------------------- augmentation

def random_shift(X, rng, max_shift, padding="minimum"):
    """
    Translate each image of X (N, C, H, W) by its own random (dy, dx) in
    [-max_shift, max_shift]: pad by max_shift (padding 'minimum': the batch minimum, the
    background of normalized digits; 'reflect': mirrored borders, for photos), then crop
    the original size at a random offset. Vectorized: every shifted copy is a window of
    the padded batch, picked per image. Draws the offsets from rng (the Solver's).
    """
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view
    N, _, H, W = X.shape
    pad = ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift))
    padded = (np.pad(X, pad, mode="reflect") if padding == "reflect"
              else np.pad(X, pad, constant_values=X.min()))
    windows = sliding_window_view(padded, (H, W), axis=(2, 3))   # (N, C, 2s+1, 2s+1, H, W)
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, N))
    return windows[np.arange(N), :, dy, dx]


# ----------------------------------------------------------------------------- results

def plain(value):
    """value as strict-JSON data: NumPy numbers to Python ones, NaN and inf to None
    (JSON has no such numbers), tuples to lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, results):
    """Write results as strict JSON (no NaN or Infinity), atomically. Returns path."""
    from fileio import write_atomic
    return write_atomic(path, json.dumps(plain(results), indent=2, allow_nan=False))


def print_table(headers, rows):
    """Print rows (lists of cells) under headers, columns aligned; numbers right-aligned."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.rjust(w) if right else cell.ljust(w)
                        for cell, w, right in zip(row, widths, numeric)).rstrip())


def _is_number(text):
    try:
        float(text.rstrip("%s"))
        return True
    except ValueError:
        return text in ("-", "")


def print_files(files):
    """The files a run wrote, one per line."""
    print("\nfiles:")
    for key, path in files.items():
        print(f"  {key:<22} {path}")


def show_warning(message, category, filename, lineno, file=None, line=None):
    """
    warnings.showwarning for the scripts: "warning: <message>" on one line of stderr,
    with the category's name unless it is a plain UserWarning, instead of Python's
    "<file>:<line>: UserWarning: <message>" and the source line that warned (which point
    into handgrad's code, not at anything the user can change).
    """
    text = " ".join(str(message).split())
    if category is not UserWarning:
        text += f" ({category.__name__})"
    print(f"warning: {text}", file=sys.stderr if file is None else file, flush=True)


def run(main):
    """
    Run a script's main() for the command line: an int it returns is the exit code
    (anything else, e.g. the results dict a notebook gets, means 0); a
    missing or corrupt dataset ends in one clear message (what is missing, where it was
    looked for, what to do) and exit code 1 instead of a traceback; a --resume that
    cannot continue (ResumeError) in one message and exit code 2; Ctrl-C in exit code
    130 with a hint that --resume continues. Warnings print as one line each
    (show_warning).
    """
    from data import ChecksumError, DatasetNotFoundError, IdxFormatError
    shown = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        result = main()
        return result if isinstance(result, int) else 0
    except (DatasetNotFoundError, ChecksumError, IdxFormatError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ResumeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run again with --resume to continue from the last checkpoint",
              file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
