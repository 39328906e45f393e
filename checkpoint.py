"""Saving and loading: a model's parameters, and a Solver's training state.

    save_params(model, "net.npz")                 # model.params (and model.state)
    load_params(model, "net.npz")                 # names, shapes and finite values checked
    write_checkpoint("ckpt/net_epoch_3.npz", contents)   # what Solver.save_checkpoint writes
    contents = read_checkpoint("ckpt/net_epoch_3.npz")   # what Solver.resume reads

Every file is an .npz archive of plain arrays, written atomically (write_arrays, through
fileio.write_atomic: a file holds its old content or the complete new one, never a
mixture) and read with allow_pickle=False (read_arrays): nothing in a file is pickled or
executed.

- A model file holds one array per parameter name and one per state buffer under
  'state/<name>' (see model_arrays).
- A Solver checkpoint holds the arrays of a run under 'params/', 'best_params/',
  'state/', 'best_state/' and 'optim/' and its numbers as JSON in 'checkpoint.json'
  (see write_checkpoint). A run's checkpoints are '<checkpoint_name>_epoch_<k>.npz'.
"""
import io
import json
import math
import os
import zipfile
from collections.abc import Mapping

import numpy as np

from fileio import check_writable, remove_temporaries, write_atomic

STATE_PREFIX = "state/"                          # a model file's state buffers
CHECKPOINT_FORMAT = 'handgrad-solver-checkpoint-2'
CHECKPOINT_META = 'checkpoint.json'              # a checkpoint's numbers, as JSON bytes


class ArchiveError(ValueError):
    """A file is not a readable .npz archive of plain arrays; `reason` says why."""

    def __init__(self, path, reason):
        super().__init__(path, reason)   # (picklable: a --jobs worker may raise it)
        self.path = path
        self.reason = reason

    def __str__(self):
        return f"cannot read {self.path}: {self.reason}"


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: unreadable, truncated, foreign or not fitting the
    model. The message names the file."""


# ============================================================================= .npz files

def write_arrays(path, arrays):
    """Write arrays (a dict name -> array) to the .npz file path, atomically. Returns
    path; raises fileio.WriteError naming the file if it cannot be written."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return write_atomic(path, buffer.getvalue())


def read_arrays(path):
    """The arrays of the .npz file path as a dict, read with allow_pickle=False (an array
    of Python objects is refused); ArchiveError naming the file if it cannot be read."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ArchiveError(path, error) from None


# ============================================================================= model files
#
# Any model of the project keeps its parameters in the dict model.params (ConvNet,
# Sequential, softmax.SoftmaxClassifier), and a Sequential its state buffers in
# model.state, so one .npz file holds a trained model: one array per parameter name, and
# one per state buffer under 'state/<name>'.

def model_state(model):
    """The model's state buffers (a dict of arrays), or {} for a model without them."""
    return getattr(model, "state", None) or {}


def model_arrays(model):
    """model.params and model.state (under 'state/<name>') in one dict: what save_params
    writes and load_params takes."""
    arrays = dict(model.params)
    arrays.update({STATE_PREFIX + name: value for name, value in model_state(model).items()})
    return arrays


def save_params(model, path):
    """
    Write model.params (and model.state, if the model has state buffers) to the .npz
    file path, one array per name, atomically: path holds either its old content or the
    complete new file. Returns path.
    """
    return write_arrays(path, model_arrays(model))


def load_params(model, source):
    """
    Load parameters (and state buffers) into the model from source: the path of an .npz
    file written by save_params (or np.savez(path, **model.params)), or a dict of arrays
    (e.g. one adapted from such a file). They must fit:
    - there must be exactly the names of model.params (and, under 'state/<name>', of
      model.state: a file without them leaves the model's state as it is);
    - each array must have the shape of the model's array of that name;
    - every value must be finite, also after the cast to the model's dtype (1e300 would
      overflow float32 to inf).
    Otherwise ValueError names every missing and extra name, every shape mismatch with
    both shapes and every array holding non-finite values, and the model is left
    unchanged. Arrays are cast to the dtype of the model's array. Returns model.
    """
    if isinstance(source, Mapping):
        loaded = {name: np.asarray(value) for name, value in source.items()}
        where = "The given parameters"
    else:
        try:
            loaded = read_arrays(source)
        except ArchiveError as error:
            raise ValueError(f"cannot read parameters from {error.path}: {error.reason} "
                             f"(expected an .npz file written by save_params)") from None
        where = f"The parameters in {os.fspath(source)}"
    state = model_state(model)
    ours = dict(model.params)
    if any(name.startswith(STATE_PREFIX) for name in loaded) or not state:
        ours.update({STATE_PREFIX + name: value for name, value in state.items()})
    problems = []
    missing = [name for name in ours if name not in loaded]
    extra = [name for name in loaded if name not in ours]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if extra:
        problems.append(f"extra {', '.join(extra)} (not parameters of the model)")
    cast = {}
    for name, value in loaded.items():
        if name not in ours:
            continue
        if value.shape != ours[name].shape:
            problems.append(f"{name} has shape {value.shape} there but "
                            f"{ours[name].shape} in the model")
        elif value.dtype.kind not in "biuf":
            problems.append(f"{name} has dtype {value.dtype}, not real numbers")
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                cast[name] = value.astype(ours[name].dtype)
            if not np.isfinite(cast[name]).all():
                overflow = " after the cast to " + str(ours[name].dtype) \
                    if np.isfinite(value).all() else ""
                problems.append(f"{name} holds non-finite values (NaN or inf){overflow}")
    if problems:
        raise ValueError(f"{where} do not fit the model: " + "; ".join(problems))
    for name, value in cast.items():
        if name.startswith(STATE_PREFIX):
            state[name[len(STATE_PREFIX):]] = value
        else:
            model.params[name] = value
    return model


# ============================================================================= Solver checkpoints
#
# A Solver's training state ("contents", a dict) is everything needed to continue a run
# bit-identically:
#   params, best_params, state, best_state   dicts of arrays: model.params, model.state
#                                            and their copies at the best validation metric
#   optim_configs       {parameter name: the update rule's config}, arrays (adam's m, v)
#                       and numbers (learning rate, adam's t) mixed
#   train_sample_idx, val_sample_idx         the fixed metric subsets (None: all rows)
#   epoch, iteration, best_val_acc (-inf before the first epoch), loss_history,
#   train_acc_history, val_acc_history, rng_state (the generator's state dict),
#   kwargs (the Solver's settings as plain data), model_attributes ({name: number} of the
#   model's optional `checkpoint_state`, e.g. the counter that seeds dropout masks).

def write_checkpoint(path, contents):
    """
    Write a Solver's training state `contents` (see above) to the .npz file path,
    atomically (Solver.save_checkpoint). Returns path.

    The file holds plain arrays only:
    - 'params/<name>', 'best_params/<name>': model.params and the best parameters;
    - 'optim/<name>/<key>': array state of the update rule (adam's m and v, ...);
    - 'state/<name>', 'best_state/<name>': the model's state buffers (model.state, if
      it has one) and their copies at the best validation metric;
    - 'train_sample_idx', 'val_sample_idx': the fixed metric subsets (absent = all);
    - 'checkpoint.json': UTF-8 JSON as uint8 bytes, with 'format' (CHECKPOINT_FORMAT),
      'epoch', 'iteration', 'optim_configs' (the scalar entries: learning rate, adam's
      t, ...), 'best_val_acc' (null before the first epoch), the three histories,
      'rng_state' (the random generator's state as plain numbers), 'kwargs' (the
      Solver's settings, checked on resume) and 'model_attributes' (the model's
      attributes named in its optional `checkpoint_state`, e.g. the counter that
      seeds dropout masks).

    Raises TypeError naming the entry if a config entry, the generator state or a model
    attribute is not plain data (numbers, strings, lists, dicts), and fileio.WriteError
    naming the file if it cannot be written.
    """
    arrays, optim_scalars = {}, {}
    for p, config in contents['optim_configs'].items():
        optim_scalars[p] = {}
        for key, value in config.items():
            if isinstance(value, np.ndarray):
                arrays[f"optim/{p}/{key}"] = value
            else:
                optim_scalars[p][key] = plain_data(value, f"optim_configs[{p!r}][{key!r}]")
    for group in ("params", "best_params", "state", "best_state"):
        arrays.update({f"{group}/{name}": value for name, value in contents[group].items()})
    for name in ("train_sample_idx", "val_sample_idx"):
        if contents[name] is not None:
            arrays[name] = contents[name]
    best = contents['best_val_acc']
    meta = {
        'format': CHECKPOINT_FORMAT,
        'epoch': contents['epoch'],
        'iteration': contents['iteration'],
        'optim_configs': optim_scalars,
        'best_val_acc': best if math.isfinite(best) else None,
        'loss_history': [float(v) for v in contents['loss_history']],
        'train_acc_history': [float(v) for v in contents['train_acc_history']],
        'val_acc_history': [float(v) for v in contents['val_acc_history']],
        'rng_state': plain_data(contents['rng_state'], "rng_state"),
        'kwargs': contents['kwargs'],
        'model_attributes': {name: plain_data(value, name)
                             for name, value in contents['model_attributes'].items()},
    }
    arrays[CHECKPOINT_META] = np.frombuffer(json.dumps(meta, allow_nan=False).encode(),
                                            dtype=np.uint8)
    return write_arrays(path, arrays)


def read_checkpoint(path):
    """
    The training state (a dict as write_checkpoint takes, 'best_state' {} when the file
    has none) of a checkpoint file, read without unpickling anything; raises
    CheckpointError naming the file if it cannot be read, is truncated or corrupt, is a
    pickle (an old handgrad checkpoint) or another foreign file.
    """
    arrays, meta = _read_checkpoint_file(path)

    def group(prefix):
        return {key[len(prefix):]: value for key, value in arrays.items()
                if key.startswith(prefix)}
    optim_configs = {p: dict(config) for p, config in meta['optim_configs'].items()}
    for key, value in group("optim/").items():
        p, name = key.rsplit("/", 1)
        optim_configs[p][name] = value
    best = meta['best_val_acc']
    return {
        'params': group("params/"), 'best_params': group("best_params/"),
        'state': group("state/"), 'best_state': group("best_state/"),
        'optim_configs': optim_configs,
        'train_sample_idx': arrays.get("train_sample_idx"),
        'val_sample_idx': arrays.get("val_sample_idx"),
        'epoch': meta['epoch'],
        'iteration': meta['iteration'],
        'best_val_acc': -np.inf if best is None else best,
        'loss_history': list(meta['loss_history']),
        'train_acc_history': list(meta['train_acc_history']),
        'val_acc_history': list(meta['val_acc_history']),
        'rng_state': meta['rng_state'],
        'kwargs': meta.get('kwargs', {}),
        'model_attributes': meta.get('model_attributes', {}),
    }


def _read_checkpoint_file(path):
    """(arrays, meta) of a checkpoint file; CheckpointError naming the file otherwise."""
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            head = f.read(4)
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    if head[:1] == b'\x80' or head[:1] in (b'(', b']', b'}'):
        raise CheckpointError(
            f"{path} is a pickle, not a handgrad checkpoint (.npz). Older handgrad versions "
            f"wrote pickled checkpoints; they are not loaded, because unpickling a file can "
            f"run any code in it. Retrain, or resume with the version that wrote it.")
    if head != b'PK\x03\x04':
        raise CheckpointError(f"{path} is not a handgrad checkpoint (an .npz archive written "
                              f"by Solver.save_checkpoint); it starts with {head!r}")

    def corrupt(reason):
        return CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason}); resume "
                               f"from an earlier one")
    try:
        arrays = read_arrays(path)
    except ArchiveError as error:
        raise corrupt(error.reason) from None
    if CHECKPOINT_META not in arrays:
        raise CheckpointError(f"{path} is an .npz archive but not a Solver checkpoint: it "
                              f"has no {CHECKPOINT_META}")
    try:
        meta = json.loads(arrays.pop(CHECKPOINT_META).tobytes().decode())
    except ValueError as error:   # not UTF-8, not JSON
        raise corrupt(error) from None
    if not isinstance(meta, dict) or meta.get('format') != CHECKPOINT_FORMAT:
        found = meta.get('format') if isinstance(meta, dict) else None
        raise CheckpointError(f"{path} has format {found!r}, expected {CHECKPOINT_FORMAT!r}")
    return arrays, meta


def epoch_checkpoint_path(checkpoint_name, epoch):
    """The file of epoch's checkpoint: '<checkpoint_name>_epoch_<epoch>.npz'."""
    return f"{checkpoint_name}_epoch_{epoch}.npz"


def checkpoint_epochs(checkpoint_name):
    """Epochs that have a checkpoint file under checkpoint_name, ascending."""
    prefix = os.path.basename(checkpoint_name) + "_epoch_"
    directory = os.path.dirname(os.path.abspath(checkpoint_name))
    epochs = []
    for name in (os.listdir(directory) if os.path.isdir(directory) else ()):
        number = name[len(prefix):-len(".npz")]
        if name.startswith(prefix) and name.endswith(".npz") and number.isdigit():
            epochs.append(int(number))
    return sorted(epochs)


def prune_checkpoints(checkpoint_name, keep, best_epoch, epoch):
    """Delete the checkpoints of the epochs before `epoch` except the newest `keep`
    checkpoint files and best_epoch's."""
    for old in checkpoint_epochs(checkpoint_name)[:-keep]:
        if old != best_epoch and old < epoch:
            os.unlink(epoch_checkpoint_path(checkpoint_name, old))


def prepare_checkpoint_directory(checkpoint_name):
    """Before the first epoch: the checkpoint folder must be writable (fileio.WriteError
    naming it otherwise), and temporary files of killed writes are removed."""
    check_writable(os.path.dirname(os.path.abspath(checkpoint_name)))
    remove_killed_writes(checkpoint_name)


def remove_killed_writes(checkpoint_name):
    """Remove the temporary files that killed writes of checkpoints left behind."""
    remove_temporaries(f"{checkpoint_name}_epoch_*.npz")


def shape_mismatch(theirs, ours):
    """'' if the two dicts of arrays have the same names and shapes, else what differs."""
    theirs = {k: np.shape(v) for k, v in theirs.items()}
    ours = {k: np.shape(v) for k, v in ours.items()}
    return "; ".join(f"{k}: checkpoint {theirs.get(k, 'missing')}, model {ours.get(k, 'missing')}"
                     for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k))


def plain_data(value, name):
    """value as JSON-able plain data (NumPy scalars to Python numbers); TypeError naming
    it for anything else (an array in a place that takes scalars, an object, ...)."""
    if isinstance(value, (bool, str, type(None))):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise TypeError(f"{name} is {value}, which a checkpoint cannot hold")
        return float(value)
    if isinstance(value, dict):
        return {str(k): plain_data(v, f"{name}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v, f"{name}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{name} is a {type(value).__name__}, which a checkpoint cannot hold "
                    f"as plain data")
