"""Find, download, verify and load MNIST and Fashion-MNIST.

Both datasets come as the same four official IDX files:

    train-images-idx3-ubyte.gz   60000 images, 28x28 uint8
    train-labels-idx1-ubyte.gz   60000 labels, uint8 in 0..9
    t10k-images-idx3-ubyte.gz    10000 images
    t10k-labels-idx1-ubyte.gz    10000 labels

Uncompressed copies (same names without `.gz`) are accepted too.

Where the files are looked for, in this order (first directory that holds all
four files wins):

  1. the `data_dir` argument (scripts expose it as `--data-dir`):
     `<data_dir>/<name>/`, then `<data_dir>/` itself;
  2. the environment variable HANDGRAD_DATA: `$HANDGRAD_DATA/<name>/`, then
     `$HANDGRAD_DATA/` itself;
  3. this package's folder (the repo's `data/`): `data/<name>/`;
  4. Fashion-MNIST only: `/usr/share/datasets/fashion-mnist/`, installed by the
     Debian package `dataset-fashion-mnist`.

with `<name>` being `mnist` or `fashion-mnist`. If the files are nowhere and
download is allowed, they are downloaded from the official mirrors into the
first writable of `<data_dir>/<name>/`, `$HANDGRAD_DATA/<name>/`, `data/<name>/`.
Every file is checked against its official sha256 before use.

The loaders return raw uint8 pixels (0..255); converting to float and
normalizing (e.g. X / 255.0, mean subtraction) is the caller's job.
"""

import hashlib
import http.client
import operator
import os
import sys
import urllib.error
import urllib.request

import numpy as np

from fileio import WriteError, atomic_path

from .idx import parse_idx, read_idx_bytes

DATA_ENV = 'HANDGRAD_DATA'

# The repo's data/ folder is the folder of this package.
REPO_DATA_DIR = os.path.dirname(os.path.abspath(__file__))

FILE_NAMES = (
    'train-images-idx3-ubyte',
    'train-labels-idx1-ubyte',
    't10k-images-idx3-ubyte',
    't10k-labels-idx1-ubyte',
)

NUM_CLASSES = 10

# Per file: (sha256 of the official .gz, sha256 of its decompressed IDX bytes).
# Downloads must match the .gz hash byte for byte. Files already on disk are
# checked by the decompressed hash, because the same data ships in other
# wrappers: Debian re-gzips Fashion-MNIST (no file name and a new mtime in the
# gzip header, so its .gz hashes differ) and users may gunzip the files.
# The .gz hashes were computed from files whose md5 equals the md5 published
# with each dataset (MNIST: as used by torchvision; Fashion-MNIST: the table
# in its README, rebuilt from the Debian files, whose deflate stream is
# unchanged, by restoring the original gzip header).
DATASETS = {
    'mnist': {
        'title': 'MNIST',
        'mirrors': ('https://ossci-datasets.s3.amazonaws.com/mnist/',
                    'http://yann.lecun.com/exdb/mnist/'),
        'mirror_env': 'HANDGRAD_MNIST_MIRROR',
        'system_dirs': (),
        'sha256': {
            'train-images-idx3-ubyte': (
                '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
                'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db'),
            'train-labels-idx1-ubyte': (
                '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
                '65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5'),
            't10k-images-idx3-ubyte': (
                '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
                '0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7'),
            't10k-labels-idx1-ubyte': (
                'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
                'ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2'),
        },
    },
    'fashion-mnist': {
        'title': 'Fashion-MNIST',
        'mirrors': ('http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',),
        'mirror_env': 'HANDGRAD_FASHION_MNIST_MIRROR',
        'system_dirs': ('/usr/share/datasets/fashion-mnist',),
        'sha256': {
            'train-images-idx3-ubyte': (
                '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84',
                'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888'),
            'train-labels-idx1-ubyte': (
                'a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845',
                'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9'),
            't10k-images-idx3-ubyte': (
                '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073',
                '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b'),
            't10k-labels-idx1-ubyte': (
                '67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5',
                '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34'),
        },
    },
}


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing everywhere and could not be downloaded."""


class ChecksumError(RuntimeError):
    """A dataset file does not have the official sha256."""


def _dataset(name):
    if name not in DATASETS:
        raise ValueError('unknown dataset %r; expected one of %s'
                         % (name, sorted(DATASETS)))
    return DATASETS[name]


def candidate_dirs(subdir, data_dir=None, system_dirs=()):
    """
    Directories that may hold a dataset's files, in lookup order: `<data_dir>/<subdir>`,
    `<data_dir>`, `$HANDGRAD_DATA/<subdir>`, `$HANDGRAD_DATA`, the repo's `data/<subdir>`,
    then `system_dirs`. Every loader of the project finds its files this way.
    """
    dirs = []
    for root in (data_dir, os.environ.get(DATA_ENV)):
        if root:
            dirs += [os.path.join(root, subdir), root]
    dirs.append(os.path.join(REPO_DATA_DIR, subdir))
    dirs += list(system_dirs)
    return [os.path.abspath(d) for d in dirs]


def _candidate_dirs(name, data_dir=None):
    """Directories that may hold the files of dataset `name`, in lookup order."""
    return candidate_dirs(name, data_dir, _dataset(name)['system_dirs'])


def _download_dirs(name, data_dir=None):
    """Directories a download may go to, in order of preference."""
    roots = [data_dir, os.environ.get(DATA_ENV), REPO_DATA_DIR]
    return [os.path.abspath(os.path.join(root, name)) for root in roots if root]


def _find_file(directory, file_name):
    """Path of `file_name`.gz or uncompressed `file_name` in directory, or None."""
    for candidate in (file_name + '.gz', file_name):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def _missing_files(directory):
    return [f for f in FILE_NAMES if _find_file(directory, f) is None]


def _not_found_message(name, data_dir=None, download_tried=False):
    dataset = _dataset(name)
    lines = ['%s not found: no directory holds all four files %s.'
             % (dataset['title'], ', '.join(f + '.gz' for f in FILE_NAMES)),
             'Looked in (in this order):']
    for directory in _candidate_dirs(name, data_dir):
        if not os.path.isdir(directory):
            lines.append('  %s  (no such directory)' % directory)
        else:
            lines.append('  %s  (missing: %s)'
                         % (directory, ', '.join(_missing_files(directory))))
    lines.append(
        'Fix: put the four files (gzipped or not) into %s, or into <root>/%s/ and '
        'set %s=<root> or pass data_dir=<root> (scripts: --data-dir <root>)%s.'
        % (_download_dirs(name, data_dir)[0], name, DATA_ENV,
           '' if download_tried else ', or call with download=True'))
    if dataset['system_dirs']:
        lines.append('On Debian: apt-get install dataset-%s (installs into %s).'
                     % (name, dataset['system_dirs'][0]))
    return '\n'.join(lines)


def find_dataset_dir(name, data_dir=None):
    """
    Find the directory that holds the four IDX files of a dataset.

    The lookup order is described in the module docstring: `data_dir`, then
    $HANDGRAD_DATA, then the repo's data/ folder, then (Fashion-MNIST only)
    /usr/share/datasets/fashion-mnist.

    Inputs:
    - name: str, 'mnist' or 'fashion-mnist'.
    - data_dir: str or None, a directory holding the files directly or a root
      directory holding them in `<data_dir>/<name>/`.

    Returns:
    - directory: str, absolute path of the first directory holding all four
      files (each either `.gz` or uncompressed).

    Raises DatasetNotFoundError (a FileNotFoundError) listing the places looked
    in, the files missing from each, and where to put them.
    """
    for directory in _candidate_dirs(name, data_dir):
        if os.path.isdir(directory) and not _missing_files(directory):
            return directory
    raise DatasetNotFoundError(_not_found_message(name, data_dir))


def _sha256_of_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url, path):
    """Download url into path (a temporary file of fileio.atomic_path)."""
    try:
        print('Downloading %s ...' % url, end=' ', file=sys.stderr, flush=True)
        with open(path, 'wb') as out, urllib.request.urlopen(url, timeout=60) as response:
            size = 0
            for block in iter(lambda: response.read(1 << 20), b''):
                out.write(block)
                size += len(block)
        print('%.1f MB' % (size / 1e6), file=sys.stderr, flush=True)
    except BaseException:
        print('failed', file=sys.stderr, flush=True)
        raise


def _download_file(mirrors, file_name, directory, expected_sha256):
    """
    Download file_name.gz from the first mirror that serves it, check its
    sha256, and move it into directory. Returns a list of (url, error) for the
    mirrors that failed, empty on success.
    """
    gz_name = file_name + '.gz'
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip('/') + '/' + gz_name
        try:
            # the file appears under its name only complete and verified
            with atomic_path(os.path.join(directory, gz_name)) as tmp_path:
                _fetch(url, tmp_path)
                actual = _sha256_of_file(tmp_path)
                if actual != expected_sha256:
                    raise ChecksumError(
                        '%s downloaded from %s has the wrong sha256:\n  expected %s\n'
                        '  actual   %s\nThe download is corrupt or the mirror serves a '
                        'different file; nothing was saved. Try again later or another '
                        'mirror.' % (gz_name, url, expected_sha256, actual))
        except WriteError:
            raise
        except (OSError, http.client.HTTPException) as e:
            # urllib.error.URLError and socket timeouts are OSErrors.
            errors.append((url, e))
            continue
        return []
    return errors


def download_dataset(name, data_dir=None, mirror=None):
    """
    Download the official .gz files of a dataset that are not there yet.

    Files go to the first writable of `<data_dir>/<name>/`,
    `$HANDGRAD_DATA/<name>/` and the repo's `data/<name>/`. Each file is
    written to a temp file in that directory, checked against its official
    sha256, then renamed into place, so a failed or corrupt download never
    leaves a file under the real name.

    Inputs:
    - name: str, 'mnist' or 'fashion-mnist'.
    - data_dir: str or None, root directory to download into (see above).
    - mirror: str or None, base URL to download from (the file name is
      appended). If None, the environment variable HANDGRAD_MNIST_MIRROR
      (MNIST) or HANDGRAD_FASHION_MNIST_MIRROR (Fashion-MNIST) is used if set,
      else the official mirrors are tried in order.

    Returns:
    - directory: str, the directory now holding all four files.

    Raises DatasetNotFoundError if a file could not be downloaded (offline,
    HTTP error) or no directory is writable, and ChecksumError if a download
    has the wrong sha256.
    """
    dataset = _dataset(name)
    mirror = mirror or os.environ.get(dataset['mirror_env'])
    mirrors = (mirror,) if mirror else dataset['mirrors']

    directory, created = None, []
    for candidate in _download_dirs(name, data_dir):
        missing = []   # the folders this makes, to remove again if nothing lands in them
        parent = os.path.abspath(candidate)
        while not os.path.isdir(parent) and parent != os.path.dirname(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        try:
            os.makedirs(candidate, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            directory, created = candidate, missing
            break
        _remove_empty(missing)
    if directory is None:
        raise DatasetNotFoundError(
            'Cannot download %s: none of these directories is writable: %s'
            % (dataset['title'], ', '.join(_download_dirs(name, data_dir))))

    try:
        _download_missing(dataset, directory, mirrors)
    except BaseException:
        _remove_empty(created)   # no empty folders left in the user's data directory
        raise
    return directory


def _remove_empty(folders):
    """Remove the folders (innermost first) that are empty."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            return


def _download_missing(dataset, directory, mirrors):
    for file_name in _missing_files(directory):
        errors = _download_file(mirrors, file_name, directory,
                                dataset['sha256'][file_name][0])
        if errors:
            raise DatasetNotFoundError(
                'Could not download %s (missing: %s):\n%s\nPut the files into %s '
                'by hand, or set %s to a reachable mirror.'
                % (dataset['title'],
                   ', '.join(f + '.gz' for f in _missing_files(directory)),
                   '\n'.join('  %s: %s' % (url, e) for url, e in errors),
                   directory, dataset['mirror_env']))


def _read_verified_idx(path, expected_sha256, verify):
    data = read_idx_bytes(path)
    if verify:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise ChecksumError(
                '%s: wrong sha256 of the decompressed IDX data:\n  expected %s\n'
                '  actual   %s\nThe file is corrupt or not the official file. '
                'Delete it and download it again.' % (path, expected_sha256, actual))
    return parse_idx(data, path)


def _load(name, data_dir, download, verify):
    try:
        directory = find_dataset_dir(name, data_dir)
    except DatasetNotFoundError:
        if not download:
            raise
        try:
            directory = download_dataset(name, data_dir)
        except DatasetNotFoundError as download_failed:
            raise DatasetNotFoundError('%s\nThe download failed too: %s' % (
                _not_found_message(name, data_dir, download_tried=True),
                download_failed)) from None

    paths = [_find_file(directory, f) for f in FILE_NAMES]
    X_train, y_train, X_test, y_test = [
        _read_verified_idx(path, _dataset(name)['sha256'][f][1], verify)
        for path, f in zip(paths, FILE_NAMES)]
    _check_images_labels(X_train, y_train, paths[0], paths[1])
    _check_images_labels(X_test, y_test, paths[2], paths[3])
    return X_train, y_train, X_test, y_test


def _check_images_labels(X, y, x_name, y_name):
    """Catch swapped or mismatched files that would give silently wrong data."""
    if X.ndim != 3 or X.dtype != np.uint8:
        raise ValueError('%s: expected uint8 images of shape (N, H, W), got %s %s'
                         % (x_name, X.dtype, X.shape))
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError('%s: expected integer labels of shape (N,), got %s %s'
                         % (y_name, y.dtype, y.shape))
    if len(X) != len(y):
        raise ValueError('%s has %d images but %s has %d labels'
                         % (x_name, len(X), y_name, len(y)))
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise ValueError('%s: labels must be in [0, %d), got range [%d, %d]'
                         % (y_name, NUM_CLASSES, y.min(), y.max()))


def load_mnist(data_dir=None, download=True, verify=True):
    """
    Load MNIST (handwritten digits) as raw uint8 arrays.

    Pixels are returned as stored, 0..255; normalizing (e.g. X / 255.0) and
    adding a channel axis (X[:, None] for (N, 1, 28, 28)) is the caller's job.

    Inputs:
    - data_dir: str or None, directory holding the four IDX files, or a root
      directory holding them in `<data_dir>/mnist/`. See the module docstring
      for the full lookup order ($HANDGRAD_DATA, the repo's data/ folder).
    - download: bool, download the files from the official mirrors if they are
      found nowhere (mirror overridable via $HANDGRAD_MNIST_MIRROR).
    - verify: bool, check each file's sha256 against the official one.

    Returns a tuple of:
    - X_train: uint8 array of shape (60000, 28, 28)
    - y_train: uint8 array of shape (60000,), labels in 0..9
    - X_test: uint8 array of shape (10000, 28, 28)
    - y_test: uint8 array of shape (10000,), labels in 0..9

    Raises DatasetNotFoundError if the files are missing and cannot be
    downloaded, ChecksumError on a sha256 mismatch, and IdxFormatError for a
    corrupt or truncated file.
    """
    return _load('mnist', data_dir, download, verify)


def load_fashion_mnist(data_dir=None, download=True, verify=True):
    """
    Load Fashion-MNIST (Zalando clothing images) as raw uint8 arrays.

    Same layout, shapes and conventions as load_mnist. Labels: 0 T-shirt/top,
    1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
    8 Bag, 9 Ankle boot.

    Inputs:
    - data_dir: str or None, directory holding the four IDX files, or a root
      directory holding them in `<data_dir>/fashion-mnist/`. Also looked up:
      $HANDGRAD_DATA, the repo's data/ folder, and the Debian package's
      /usr/share/datasets/fashion-mnist.
    - download: bool, download the files from the official mirror if they are
      found nowhere (mirror overridable via $HANDGRAD_FASHION_MNIST_MIRROR).
    - verify: bool, check each file's sha256 against the official one.

    Returns a tuple of:
    - X_train: uint8 array of shape (60000, 28, 28)
    - y_train: uint8 array of shape (60000,), labels in 0..9
    - X_test: uint8 array of shape (10000, 28, 28)
    - y_test: uint8 array of shape (10000,), labels in 0..9
    """
    return _load('fashion-mnist', data_dir, download, verify)


NPZ_KEYS = ('x_train', 'y_train', 'x_test', 'y_test')


def load_mnist_npz(path):
    """
    Load a keras-style `mnist.npz` (keys x_train, y_train, x_test, y_test).

    Inputs:
    - path: str or os.PathLike, path of the .npz file.

    Returns a tuple of:
    - X_train: uint8 array of shape (N_train, H, W), (60000, 28, 28) for MNIST
    - y_train: integer array of shape (N_train,), labels in 0..9
    - X_test: uint8 array of shape (N_test, H, W), (10000, 28, 28) for MNIST
    - y_test: integer array of shape (N_test,), labels in 0..9

    Raises ValueError naming the file if a key is missing or the arrays have
    the wrong dtype, shape or label range. No sha256 check: there is no single
    official mnist.npz to compare against.
    """
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise ValueError('%s: missing keys %s (has %s; expected %s)'
                             % (path, missing, sorted(npz.files), list(NPZ_KEYS)))
        X_train, y_train, X_test, y_test = [npz[k] for k in NPZ_KEYS]
    _check_images_labels(X_train, y_train, path + '[x_train]', path + '[y_train]')
    _check_images_labels(X_test, y_test, path + '[x_test]', path + '[y_test]')
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError('%s: x_train images are %s but x_test images are %s'
                         % (path, X_train.shape[1:], X_test.shape[1:]))
    return X_train, y_train, X_test, y_test


def train_val_split(X, y, num_val=5000):
    """
    Split a training set into train and validation parts, deterministically:
    the LAST num_val samples become the validation set. For MNIST's 60000
    training images the default gives 55000 train / 5000 val.

    No shuffling: the official training files are already in a fixed random
    order, and a fixed split keeps results comparable between runs.

    Inputs:
    - X: array of shape (N, ...), e.g. (60000, 28, 28)
    - y: array of shape (N,)
    - num_val: int, number of validation samples, 0 < num_val < N.

    Returns a tuple of (views into the inputs, not copies):
    - X_train: array of shape (N - num_val, ...)
    - y_train: array of shape (N - num_val,)
    - X_val: array of shape (num_val, ...)
    - y_val: array of shape (num_val,)
    """
    num_val = operator.index(num_val)  # an int; a float would slice wrongly
    if len(X) != len(y):
        raise ValueError('train_val_split: X has %d samples but y has %d'
                         % (len(X), len(y)))
    if not 0 < num_val < len(X):
        raise ValueError('train_val_split: num_val must be in (0, %d), got %r'
                         % (len(X), num_val))
    num_train = len(X) - num_val
    return X[:num_train], y[:num_train], X[num_train:], y[num_train:]


def standardized_splits(X_train, y_train, X_test, y_test, num_val=5000, dtype=np.float32,
                        limits=None):
    """
    The usual preparation of an image dataset for the networks: split the training set
    with train_val_split, scale pixels to [0, 1], then subtract the mean and divide by the
    standard deviation of all TRAINING pixels (one scalar each, so the validation and test
    sets never leak into the statistics), and give grayscale images (N, H, W) a channel
    axis.

    Inputs:
    - X_train: uint8 images of shape (N, H, W) or (N, C, H, W); y_train: labels (N,).
    - X_test: uint8 images of the same layout (N_test, ...); y_test: labels (N_test,).
    - num_val: number of validation images, taken from the end of the training set.
    - dtype: dtype of the returned images.
    - limits: None, or (num_train, num_val, num_test) to keep only the first images of
      each split (smoke runs); the statistics come from the kept training images.

    Returns a tuple of:
    - data: dict with X_train (N - num_val, C, H, W) (C = 1 for grayscale), y_train, X_val, y_val, X_test, y_test
      (labels as int64).
    - stats: dict with the training pixels' 'pixel_mean' and 'pixel_std' (of X / 255).
    """
    X_train, y_train, X_val, y_val = train_val_split(X_train, y_train, num_val=num_val)
    splits = {"train": (X_train, y_train), "val": (X_val, y_val), "test": (X_test, y_test)}
    if limits is not None:
        splits = {name: (X[:n], y[:n]) for (name, (X, y)), n in zip(splits.items(), limits)}
    scaled = splits["train"][0] / 255.0
    mean, std = float(scaled.mean()), float(scaled.std())
    data = {}
    for name, (X, y) in splits.items():
        standardized = ((X / 255.0 - mean) / std).astype(dtype)
        data[f"X_{name}"] = standardized[:, None] if X.ndim == 3 else standardized
        data[f"y_{name}"] = y.astype(np.int64)
    return data, {"pixel_mean": mean, "pixel_std": std}
