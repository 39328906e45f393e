"""Load CIFAR-10 (the course's first data set) as uint8 arrays, from either official layout.

    from data import load_cifar10, CIFAR10_CLASSES
    X_train, y_train, X_test, y_test = load_cifar10()
    # X_train: uint8 (50000, 3, 32, 32), channels first; y_train: int64 (50000,) in 0..9
    # X_test:  uint8 (10000, 3, 32, 32);                  y_test:  int64 (10000,)
    CIFAR10_CLASSES[y_train[0]]                           # 'frog'

CIFAR-10 is 60,000 colour photos of 32x32 pixels in 10 classes (CIFAR10_CLASSES), split
into five training batches of 10,000 images and one test batch of 10,000. Its authors
publish two layouts of the same batches, and both are read:

    cifar-10-batches-py/    data_batch_1 ... data_batch_5, test_batch
        (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, 163 MB; what cs231n's
        get_datasets.sh downloads.) Each file is a pickled dict with
        b'data'   uint8 array (N, 3072): each row one image, the 1024 red values, then
                  the 1024 green, then the 1024 blue, each row by row (so a row reshapes
                  to (3, 32, 32));
        b'labels' list of N ints in 0..9.
    cifar-10-batches-bin/   data_batch_1.bin ... data_batch_5.bin, test_batch.bin
        (cifar-10-binary.tar.gz.) Each file is N records of 3073 bytes: the label byte,
        then the image's 3072 bytes in the same order as above.

The official batches hold 10,000 images each, but any number is read (tests use tiny
files). Every batch is checked (sizes, keys, labels in 0..9) and a bad one is refused
with a CifarFormatError naming the file.

Pickles and safety: loading a pickle with pickle.load can run any code the file asks
for. The python batches are therefore read with a restricted unpickler that builds only
what the official files hold, dicts, lists, strings, bytes, numbers and NumPy uint8
arrays: the only globals it hands out are NumPy's array reconstruction
(numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype, under numpy.core or
NumPy 2's numpy._core, and numeric._frombuffer, what an array pickled with protocol 5
asks for). A pickle that asks for anything else (os.system, builtins.eval, ...) is
refused before anything runs, with an error naming the file and what it asked for.

Where the batches are looked for, in this order (the first directory holding all six
files of one layout wins), as for MNIST (data/datasets.py):

  1. the `data_dir` argument (scripts: `--data-dir`): `<data_dir>/cifar-10-batches-py/`,
     `<data_dir>/cifar-10-batches-bin/`, then `<data_dir>/` itself;
  2. $HANDGRAD_DATA: the same three places under it;
  3. the repo's data/ folder: `data/cifar-10-batches-py/`, `data/cifar-10-batches-bin/`.

Nothing is downloaded automatically: unpack the archive into one of these places.
"""

import io
import os
import pickle

import numpy as np

from . import datasets
from .datasets import DatasetNotFoundError

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                   'ship', 'truck')

URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
PY_DIR = 'cifar-10-batches-py'
BIN_DIR = 'cifar-10-batches-bin'
TRAIN_BATCHES = tuple('data_batch_%d' % i for i in range(1, 6))
TEST_BATCH = 'test_batch'
IMAGE_SHAPE = (3, 32, 32)
IMAGE_SIZE = 3 * 32 * 32   # 3072 bytes per image
RECORD_SIZE = 1 + IMAGE_SIZE   # binary layout: the label byte, then the image

# file names of each layout, training batches first
LAYOUTS = {
    PY_DIR: TRAIN_BATCHES + (TEST_BATCH,),
    BIN_DIR: tuple(name + '.bin' for name in TRAIN_BATCHES + (TEST_BATCH,)),
}


class CifarFormatError(ValueError):
    """A CIFAR-10 batch file cannot be read as a batch: malformed, unreadable, or a pickle
    that asks for more than NumPy arrays (that could run code)."""


def _read_bytes(path):
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as error:
        raise CifarFormatError('%s: cannot read the file (%s)' % (path, error)) from None


# ----------------------------------------------------------------------------- finding

def _missing_files(directory, layout):
    return [name for name in LAYOUTS[layout]
            if not os.path.isfile(os.path.join(directory, name))]


def _candidates(data_dir=None):
    """(directory, layout) pairs in lookup order (see the module docstring)."""
    py_dirs = datasets.candidate_dirs(PY_DIR, data_dir)
    bin_dirs = datasets.candidate_dirs(BIN_DIR, data_dir)
    pairs = []
    # both lists are [<root>/<layout dir>, <root>, ...] for the same roots, in one order
    for py_dir, bin_dir in zip(py_dirs, bin_dirs):
        if py_dir == bin_dir:   # a root itself: either layout may be in it
            pairs += [(py_dir, PY_DIR), (py_dir, BIN_DIR)]
        else:
            pairs += [(py_dir, PY_DIR), (bin_dir, BIN_DIR)]
    return pairs


def _not_found_message(data_dir):
    lines = ['CIFAR-10 not found: no directory holds all six batch files of either layout '
             '(%s: %s; or %s: %s).' % (PY_DIR, ', '.join(LAYOUTS[PY_DIR]),
                                        BIN_DIR, ', '.join(LAYOUTS[BIN_DIR])),
             'Looked in (in this order):']
    layouts = {}   # directory -> the layouts looked for in it, in lookup order
    for directory, layout in _candidates(data_dir):
        layouts.setdefault(directory, []).append(layout)
    for directory, looked_for in layouts.items():
        if not os.path.isdir(directory):
            state = 'no such directory'
        else:
            state = '; '.join('missing the %s files %s' % (
                layout, ', '.join(_missing_files(directory, layout))) for layout in looked_for)
        lines.append('  %s  (%s)' % (directory, state))
    lines.append(
        'Get it: download %s (163 MB, what cs231n\'s get_datasets.sh downloads) and unpack '
        'it with `tar -xzf cifar-10-python.tar.gz` in %s (giving %s), or unpack it anywhere '
        'and pass data_dir=<folder holding %s> (scripts: --data-dir <folder>) or set %s='
        '<that folder>.' % (URL, datasets.REPO_DATA_DIR,
                            os.path.join(datasets.REPO_DATA_DIR, PY_DIR), PY_DIR,
                            datasets.DATA_ENV))
    return '\n'.join(lines)


def find_cifar10_dir(data_dir=None):
    """
    Find the directory holding the CIFAR-10 batches.

    Inputs:
    - data_dir: str or None, a `cifar-10-batches-py` or `cifar-10-batches-bin` folder, or
      a root folder holding one of them. Then $HANDGRAD_DATA and the repo's data/ folder
      are tried (see the module docstring).

    Returns a tuple of:
    - directory: str, absolute path of the first directory holding all six batch files
      of a layout.
    - layout: 'cifar-10-batches-py' (pickled batches) or 'cifar-10-batches-bin' (binary).

    Raises DatasetNotFoundError (a FileNotFoundError) listing every directory looked in
    and how to get the data.
    """
    for directory, layout in _candidates(data_dir):
        if os.path.isdir(directory) and not _missing_files(directory, layout):
            return directory, layout
    raise DatasetNotFoundError(_not_found_message(data_dir))


# ----------------------------------------------------------------------------- reading

def _numpy_globals():
    """The globals a pickled NumPy array needs, by the (module, name) pickles write."""
    try:   # NumPy 2 moved numpy.core to numpy._core (pickles may name either)
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    allowed = {('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype}
    for core in ('numpy.core', 'numpy._core'):
        allowed[(core + '.multiarray', '_reconstruct')] = _reconstruct
        allowed[(core + '.numeric', '_frombuffer')] = _frombuffer
    return allowed


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global that a CIFAR-10 batch never holds."""


class BatchUnpickler(pickle.Unpickler):
    """
    An Unpickler that builds only dicts, lists, tuples, strings, bytes, numbers and NumPy
    arrays: find_class, the one way a pickle reaches a function or class (to call it),
    hands out NumPy's array reconstruction and refuses every other name.
    """

    ALLOWED = _numpy_globals()

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal('%s.%s' % (module, name)) from None


def _read_py_batch(path):
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of one pickled batch."""
    raw = _read_bytes(path)
    try:
        # the official files were pickled by Python 2: its strings become bytes
        batch = BatchUnpickler(io.BytesIO(raw), encoding='bytes').load()
    except RefusedGlobal as refused:
        raise CifarFormatError(
            '%s: refused to unpickle: the file asks for %s, which a CIFAR-10 batch never '
            'holds (only dicts, lists, strings and NumPy arrays), and loading it with '
            'pickle.load could run code. Nothing was run. Delete the file and get the '
            'official batches from %s.' % (path, refused, URL)) from None
    except Exception as error:   # truncated or garbled: whatever the parser hit
        raise CifarFormatError(
            '%s: not a readable CIFAR-10 batch (%s: %s); get the official batches from %s.'
            % (path, type(error).__name__, error, URL)) from None
    if not isinstance(batch, dict):
        raise CifarFormatError('%s: a CIFAR-10 batch is a pickled dict, this file holds a %s'
                               % (path, type(batch).__name__))
    # b'data' as Python 2 wrote it; 'data' if someone re-pickled a latin1-decoded dict
    batch = {key.encode('latin1') if isinstance(key, str) else key: value
             for key, value in batch.items()}
    missing = [key for key in (b'data', b'labels') if key not in batch]
    if missing:
        raise CifarFormatError('%s: missing the keys %s (has %s; a CIFAR-10 batch has '
                               "b'data' and b'labels')"
                               % (path, missing, sorted(map(repr, batch))))
    data, labels = batch[b'data'], batch[b'labels']
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == IMAGE_SIZE):
        raise CifarFormatError("%s: b'data' must be a uint8 array of shape (N, %d), got %s"
                               % (path, IMAGE_SIZE, _describe(data)))
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and np.issubdtype(labels.dtype,
                                                                             np.integer):
        labels = labels.astype(np.int64)
    elif isinstance(labels, (list, tuple)) and all(type(v) is int for v in labels):
        labels = np.array(labels, dtype=np.int64).reshape(len(labels))
    else:
        raise CifarFormatError("%s: b'labels' must be a list of ints, got %s"
                               % (path, _describe(labels)))
    if len(labels) != len(data):
        raise CifarFormatError("%s: %d images in b'data' but %d b'labels'"
                               % (path, len(data), len(labels)))
    return _images_labels(data, labels, path)


def _read_bin_batch(path):
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of one binary batch."""
    raw = _read_bytes(path)
    if not raw or len(raw) % RECORD_SIZE:
        raise CifarFormatError(
            '%s: %d bytes, not a whole number of %d-byte records (1 label byte + %d pixel '
            'bytes); the file is truncated or not a CIFAR-10 binary batch.'
            % (path, len(raw), RECORD_SIZE, IMAGE_SIZE))
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_SIZE)
    return _images_labels(records[:, 1:], records[:, 0].astype(np.int64), path)


def _images_labels(data, labels, path):
    if len(data) == 0:
        raise CifarFormatError('%s: the batch holds no images' % path)
    if labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES):
        bad = labels[(labels < 0) | (labels >= len(CIFAR10_CLASSES))]
        raise CifarFormatError('%s: labels must be in 0..%d, found %d'
                               % (path, len(CIFAR10_CLASSES) - 1, bad[0]))
    images = np.ascontiguousarray(data, dtype=np.uint8).reshape((len(data),) + IMAGE_SHAPE)
    return images, labels


def _describe(value):
    if isinstance(value, np.ndarray):
        return 'an array of %s %s' % (value.dtype, value.shape)
    return 'a %s' % type(value).__name__


def load_cifar10(data_dir=None):
    """
    Load CIFAR-10 as raw uint8 arrays, from the python or the binary layout.

    Pixels are returned as stored, 0..255, channels first; converting to float and
    normalizing is the caller's job (as for MNIST). For cs231n's (N, 32, 32, 3) layout,
    use X.transpose(0, 2, 3, 1).

    Inputs:
    - data_dir: str or None, a `cifar-10-batches-py` / `cifar-10-batches-bin` folder or a
      root folder holding one of them; then $HANDGRAD_DATA and the repo's data/ folder
      are tried (see the module docstring).

    Returns a tuple of:
    - X_train: uint8 array of shape (N_train, 3, 32, 32), data_batch_1 ... 5 in order
      (50,000 images for the official files)
    - y_train: int64 array of shape (N_train,), labels in 0..9 (names: CIFAR10_CLASSES)
    - X_test: uint8 array of shape (N_test, 3, 32, 32) (10,000 images)
    - y_test: int64 array of shape (N_test,)

    Raises DatasetNotFoundError if no folder holds the batches (naming every place looked
    in and how to get them), and CifarFormatError naming the file for a malformed batch
    or a pickle that asks for anything but NumPy arrays.
    """
    directory, layout = find_cifar10_dir(data_dir)
    read = _read_py_batch if layout == PY_DIR else _read_bin_batch
    batches = [read(os.path.join(directory, name)) for name in LAYOUTS[layout]]
    X_train = np.concatenate([images for images, _ in batches[:-1]])
    y_train = np.concatenate([labels for _, labels in batches[:-1]])
    X_test, y_test = batches[-1]
    return X_train, y_train, X_test, y_test
