"""Tests for the data/ package: IDX reading, lookup, verified download, loaders.

Everything runs on tiny IDX files generated here, except the two tests that
load the real MNIST (from $HANDGRAD_DATA) and Fashion-MNIST (Debian package);
those skip with a reason when the data is not there.
"""

import functools
import gzip
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

import data
from data import (
    ChecksumError,
    DatasetNotFoundError,
    IdxFormatError,
    datasets,
    download_dataset,
    find_dataset_dir,
    load_fashion_mnist,
    load_mnist,
    load_mnist_npz,
    read_idx,
    train_val_split,
    write_idx,
)

FILE_NAMES = datasets.FILE_NAMES


def sha256(raw):
    return hashlib.sha256(raw).hexdigest()


def make_tiny_dataset(directory, seed=0, gz=True, n_train=6, n_test=4):
    """
    Write the four IDX files of a tiny MNIST-like dataset into directory.

    Returns (arrays, checksums): arrays is (X_train, y_train, X_test, y_test);
    checksums maps each file name to (sha256 of the .gz, sha256 of the IDX
    bytes), the layout of datasets.DATASETS[...]['sha256'].
    """
    os.makedirs(directory, exist_ok=True)
    rng = np.random.RandomState(seed)
    arrays = (rng.randint(0, 256, (n_train, 28, 28)).astype(np.uint8),
              rng.randint(0, 10, n_train).astype(np.uint8),
              rng.randint(0, 256, (n_test, 28, 28)).astype(np.uint8),
              rng.randint(0, 10, n_test).astype(np.uint8))
    checksums = {}
    for name, array in zip(FILE_NAMES, arrays):
        path = os.path.join(directory, name + ('.gz' if gz else ''))
        write_idx(path, array)
        with open(path, 'rb') as f:
            raw = f.read()
        idx_bytes = gzip.decompress(raw) if gz else raw
        checksums[name] = (sha256(gzip.compress(idx_bytes, mtime=0)),
                           sha256(idx_bytes))
    return arrays, checksums


def assert_arrays_equal(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_array_equal(g, e)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No HANDGRAD_* env vars, a temp repo data/ folder, no system folders."""
    for var in ('HANDGRAD_DATA', 'HANDGRAD_MNIST_MIRROR',
                'HANDGRAD_FASHION_MNIST_MIRROR'):
        monkeypatch.delenv(var, raising=False)
    repo = tmp_path / 'repo_data'
    repo.mkdir()
    monkeypatch.setattr(datasets, 'REPO_DATA_DIR', str(repo))
    monkeypatch.setitem(datasets.DATASETS['fashion-mnist'], 'system_dirs', ())
    return tmp_path


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving the folder tmp_path/'mirror'."""
    served = tmp_path / 'mirror'
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d/' % server.server_address[1], served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---------------------------------------------------------------- IDX format

@pytest.mark.parametrize('suffix', ['.gz', ''])
@pytest.mark.parametrize('dtype', [np.uint8, np.int8, np.int16, np.int32,
                                   np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    rng = np.random.RandomState(1)
    array = (rng.randn(3, 5, 7) * 100).astype(dtype)
    path = str(tmp_path / ('x.idx' + suffix))
    write_idx(path, array)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.shape == (3, 5, 7)
    np.testing.assert_array_equal(got, array)
    got[0, 0, 0] = 1  # writable


def test_idx_header_is_big_endian_by_hand(tmp_path):
    # Written with struct by hand, independent of write_idx.
    import struct
    values = np.array([[1, 256], [-2, 70000]], dtype='>i4')
    raw = struct.pack('>BBBBII', 0, 0, 0x0C, 2, 2, 2) + values.tobytes()
    (tmp_path / 'h.idx').write_bytes(raw)
    (tmp_path / 'h.idx.gz').write_bytes(gzip.compress(raw))
    for name in ('h.idx', 'h.idx.gz'):
        got = read_idx(str(tmp_path / name))
        np.testing.assert_array_equal(got, [[1, 256], [-2, 70000]])
        assert got.dtype == np.int32


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(str(tmp_path / 'a.gz'), array)
    os.rename(tmp_path / 'a.gz', tmp_path / 'renamed')
    np.testing.assert_array_equal(read_idx(str(tmp_path / 'renamed')), array)


def test_corrupt_gzip_names_the_file(tmp_path):
    array = np.random.RandomState(0).randint(0, 256, (50, 28, 28)).astype(np.uint8)
    path = tmp_path / 'bad.gz'
    write_idx(str(path), array)
    raw = bytearray(path.read_bytes())
    for i in range(20, 60):  # garble the deflate stream
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IdxFormatError, match='corrupt or incomplete gzip') as e:
        read_idx(str(path))
    assert str(path) in str(e.value)


def test_cut_off_gzip_names_the_file(tmp_path):
    path = tmp_path / 'cut.gz'
    write_idx(str(path), np.zeros((100, 28, 28), np.uint8) + 7)
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(IdxFormatError, match='gzip') as e:
        read_idx(str(path))
    assert str(path) in str(e.value)


@pytest.mark.parametrize('suffix', ['.gz', ''])
def test_truncated_idx_reports_expected_and_actual_size(tmp_path, suffix):
    raw = b'\x00\x00\x08\x03' + (10).to_bytes(4, 'big') + (28).to_bytes(4, 'big') \
        * 2 + bytes(10 * 28 * 28 - 5)
    path = tmp_path / ('short' + suffix)
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(IdxFormatError) as e:
        read_idx(str(path))
    message = str(e.value)
    assert str(path) in message
    assert 'truncated' in message
    assert str(16 + 10 * 28 * 28) in message        # expected bytes
    assert str(16 + 10 * 28 * 28 - 5) in message    # actual bytes
    assert 'download it again' in message


def test_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / 'long'
    write_idx(str(path), np.zeros(5, np.uint8))
    path.write_bytes(path.read_bytes() + b'\x00')
    with pytest.raises(IdxFormatError, match='trailing bytes'):
        read_idx(str(path))


@pytest.mark.parametrize('header', [b'\x01\x00\x08\x01', b'\x00\x00\x07\x01',
                                    b'\x00\x00\x08\x00', b'PK\x03\x04'])
def test_wrong_magic(tmp_path, header):
    path = tmp_path / 'magic'
    path.write_bytes(header + (5).to_bytes(4, 'big') + bytes(5))
    with pytest.raises(IdxFormatError, match='magic') as e:
        read_idx(str(path))
    assert str(path) in str(e.value)


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match='dtype'):
        write_idx(str(tmp_path / 'x'), np.zeros(3, np.int64))


# ---------------------------------------------------------------- lookup

def test_missing_files_without_download_says_what_and_where(isolated):
    partial = isolated / 'partial'
    make_tiny_dataset(str(partial))
    os.remove(partial / 't10k-labels-idx1-ubyte.gz')
    with pytest.raises(DatasetNotFoundError) as e:
        load_mnist(data_dir=str(partial), download=False)
    message = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    for name in FILE_NAMES:
        assert name + '.gz' in message
    assert str(partial) in message                              # looked here
    assert 'missing: t10k-labels-idx1-ubyte' in message         # what is missing
    assert os.path.join(datasets.REPO_DATA_DIR, 'mnist') in message
    assert 'HANDGRAD_DATA' in message and 'download=True' in message  # what to do
    assert not (partial / 'mnist').exists()  # download=False touches nothing


def test_lookup_order_data_dir_then_env_then_repo(isolated, monkeypatch):
    arrays = {}
    sha = {}
    # data_dir holds the files directly, HANDGRAD_DATA and the repo folder in
    # <root>/mnist/ - the two accepted layouts.
    places = {'arg': isolated / 'arg', 'env': isolated / 'env' / 'mnist',
              'repo': isolated / 'repo_data' / 'mnist'}
    for seed, (key, directory) in enumerate(places.items()):
        arrays[key], checksums = make_tiny_dataset(str(directory), seed=seed)
        sha[key] = checksums
    monkeypatch.setenv('HANDGRAD_DATA', str(isolated / 'env'))

    assert find_dataset_dir('mnist', str(places['arg'])) == str(places['arg'])
    monkeypatch.setitem(datasets.DATASETS['mnist'], 'sha256', sha['arg'])
    assert_arrays_equal(load_mnist(str(places['arg']), download=False), arrays['arg'])

    assert find_dataset_dir('mnist') == str(places['env'])
    monkeypatch.setitem(datasets.DATASETS['mnist'], 'sha256', sha['env'])
    assert_arrays_equal(load_mnist(download=False), arrays['env'])

    # An explicit data_dir without the files falls through to the next place.
    assert find_dataset_dir('mnist', str(isolated / 'empty')) == str(places['env'])

    monkeypatch.delenv('HANDGRAD_DATA')
    assert find_dataset_dir('mnist') == str(places['repo'])
    monkeypatch.setitem(datasets.DATASETS['mnist'], 'sha256', sha['repo'])
    assert_arrays_equal(load_mnist(download=False), arrays['repo'])


def test_root_subdir_beats_files_directly_in_root(isolated):
    # MNIST and Fashion-MNIST use the same file names, so a root's
    # <root>/<name>/ must win over files lying in the root itself.
    make_tiny_dataset(str(isolated / 'root'), seed=1)
    make_tiny_dataset(str(isolated / 'root' / 'fashion-mnist'), seed=2)
    assert find_dataset_dir('fashion-mnist', str(isolated / 'root')) == \
        str(isolated / 'root' / 'fashion-mnist')
    assert find_dataset_dir('mnist', str(isolated / 'root')) == str(isolated / 'root')


def test_fashion_system_dir_is_last_and_mnist_never_uses_it(isolated, monkeypatch):
    system = isolated / 'usr_share'
    make_tiny_dataset(str(system))
    monkeypatch.setitem(datasets.DATASETS['fashion-mnist'], 'system_dirs',
                        (str(system),))
    assert find_dataset_dir('fashion-mnist') == str(system)
    make_tiny_dataset(str(isolated / 'repo_data' / 'fashion-mnist'))
    assert find_dataset_dir('fashion-mnist') == \
        str(isolated / 'repo_data' / 'fashion-mnist')
    with pytest.raises(DatasetNotFoundError):
        find_dataset_dir('mnist')


def test_unknown_dataset_name(isolated):
    with pytest.raises(ValueError, match='unknown dataset'):
        find_dataset_dir('cifar10')


def test_uncompressed_files_are_accepted(isolated, monkeypatch):
    arrays, sha = make_tiny_dataset(str(isolated / 'raw'), gz=False)
    monkeypatch.setitem(datasets.DATASETS['mnist'], 'sha256', sha)
    assert_arrays_equal(load_mnist(str(isolated / 'raw'), download=False), arrays)


# ---------------------------------------------------------------- verification

def test_existing_file_with_wrong_checksum(isolated, monkeypatch):
    directory = isolated / 'd'
    arrays, sha = make_tiny_dataset(str(directory))
    bad = dict(sha)
    bad['train-labels-idx1-ubyte'] = (sha['train-labels-idx1-ubyte'][0], 'ab' * 32)
    monkeypatch.setitem(datasets.DATASETS['mnist'], 'sha256', bad)
    with pytest.raises(ChecksumError) as e:
        load_mnist(str(directory), download=False)
    message = str(e.value)
    assert str(directory / 'train-labels-idx1-ubyte.gz') in message
    assert 'ab' * 32 in message                             # expected
    assert sha['train-labels-idx1-ubyte'][1] in message    # actual
    # verify=False is the explicit way to use modified data.
    assert_arrays_equal(load_mnist(str(directory), download=False, verify=False),
                        arrays)


def test_label_out_of_range_is_an_error(isolated, monkeypatch):
    directory = isolated / 'd'
    make_tiny_dataset(str(directory))
    write_idx(str(directory / 't10k-labels-idx1-ubyte.gz'),
              np.array([0, 3, 12, 1], np.uint8))
    with pytest.raises(ValueError, match=r'labels must be in \[0, 10\)'):
        load_mnist(str(directory), download=False, verify=False)


def test_image_label_count_mismatch_is_an_error(isolated):
    directory = isolated / 'd'
    make_tiny_dataset(str(directory))
    write_idx(str(directory / 'train-labels-idx1-ubyte.gz'), np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match='6 images but .* 5 labels'):
        load_mnist(str(directory), download=False, verify=False)


# ---------------------------------------------------------------- download

def test_download_from_local_mirror(isolated, monkeypatch, mirror, capsys):
    url, served = mirror
    arrays, sha = make_tiny_dataset(str(served))
    monkeypatch.setitem(datasets.DATASETS['mnist'], 'sha256', sha)
    monkeypatch.setenv('HANDGRAD_MNIST_MIRROR', url)
    root = isolated / 'root'

    assert_arrays_equal(load_mnist(str(root)), arrays)
    target = root / 'mnist'
    assert sorted(os.listdir(target)) == sorted(n + '.gz' for n in FILE_NAMES)
    for name in FILE_NAMES:
        assert (target / (name + '.gz')).read_bytes() == \
            (served / (name + '.gz')).read_bytes()
    assert capsys.readouterr().err.count('Downloading ' + url) == 4

    # Second load uses the files on disk: no download.
    assert_arrays_equal(load_mnist(str(root)), arrays)
    assert 'Downloading' not in capsys.readouterr().err


def test_download_goes_to_env_dir_and_fetches_only_missing(isolated, monkeypatch,
                                                           mirror, capsys):
    url, served = mirror
    arrays, sha = make_tiny_dataset(str(served))
    monkeypatch.setitem(datasets.DATASETS['fashion-mnist'], 'sha256', sha)
    monkeypatch.setenv('HANDGRAD_DATA', str(isolated / 'env'))
    target = isolated / 'env' / 'fashion-mnist'
    target.mkdir(parents=True)
    (target / 'train-images-idx3-ubyte.gz').write_bytes(
        (served / 'train-images-idx3-ubyte.gz').read_bytes())

    assert download_dataset('fashion-mnist', mirror=url) == str(target)
    err = capsys.readouterr().err
    assert err.count('Downloading') == 3 and 'train-images' not in err
    assert_arrays_equal(load_fashion_mnist(download=False), arrays)


def test_download_checksum_mismatch_leaves_no_file(isolated, monkeypatch, mirror):
    url, served = mirror
    _, sha = make_tiny_dataset(str(served))
    bad = dict(sha)
    bad['train-labels-idx1-ubyte'] = ('cd' * 32, sha['train-labels-idx1-ubyte'][1])
    monkeypatch.setitem(datasets.DATASETS['mnist'], 'sha256', bad)
    monkeypatch.setenv('HANDGRAD_MNIST_MIRROR', url)

    with pytest.raises(ChecksumError) as e:
        load_mnist(str(isolated / 'root'))
    message = str(e.value)
    assert 'train-labels-idx1-ubyte.gz' in message
    assert 'cd' * 32 in message                              # expected
    assert sha['train-labels-idx1-ubyte'][0] in message      # actual
    left = os.listdir(isolated / 'root' / 'mnist')
    assert 'train-labels-idx1-ubyte.gz' not in left
    assert not [f for f in left if f.endswith('.part')]


def test_download_http_error_says_what_is_missing(isolated, monkeypatch, mirror):
    url, served = mirror  # serves an empty folder: every file is a 404
    monkeypatch.setenv('HANDGRAD_MNIST_MIRROR', url)
    with pytest.raises(DatasetNotFoundError) as e:
        load_mnist(str(isolated / 'root'), download=True)
    message = str(e.value)
    assert url + 'train-images-idx3-ubyte.gz' in message and '404' in message
    for name in FILE_NAMES:
        assert name + '.gz' in message                         # what is missing
    assert str(isolated / 'root' / 'mnist') in message         # where to put them
    assert 'Looked in' in message                              # where we looked
    assert 'The download failed too' in message
    assert 'download=True' not in message                      # not after it failed
    # the folders made for the download were removed again: no empty folders left behind
    assert not (isolated / 'root').exists()


# ---------------------------------------------------------------- npz, split

def test_load_mnist_npz(tmp_path):
    arrays, _ = make_tiny_dataset(str(tmp_path / 'd'))
    path = str(tmp_path / 'mnist.npz')
    np.savez(path, **dict(zip(datasets.NPZ_KEYS, arrays)))
    assert_arrays_equal(load_mnist_npz(path), arrays)


def test_load_mnist_npz_missing_key(tmp_path):
    arrays, _ = make_tiny_dataset(str(tmp_path / 'd'))
    path = str(tmp_path / 'mnist.npz')
    np.savez(path, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2])
    with pytest.raises(ValueError, match=r"missing keys \['y_test'\]") as e:
        load_mnist_npz(path)
    assert path in str(e.value)


def test_load_mnist_npz_bad_shapes(tmp_path):
    arrays, _ = make_tiny_dataset(str(tmp_path / 'd'))
    path = str(tmp_path / 'mnist.npz')
    np.savez(path, x_train=arrays[0].reshape(6, -1), y_train=arrays[1],
             x_test=arrays[2], y_test=arrays[3])
    with pytest.raises(ValueError, match=r'x_train.*\(N, H, W\)'):
        load_mnist_npz(path)
    np.savez(path, x_train=arrays[0], y_train=arrays[1][:5],
             x_test=arrays[2], y_test=arrays[3])
    with pytest.raises(ValueError, match='6 images but .* 5 labels'):
        load_mnist_npz(path)


def test_train_val_split_takes_the_last_samples():
    X = np.arange(60000 * 2).reshape(60000, 2)
    y = np.arange(60000) % 10
    X_train, y_train, X_val, y_val = train_val_split(X, y)
    assert X_train.shape == (55000, 2) and y_train.shape == (55000,)
    assert X_val.shape == (5000, 2) and y_val.shape == (5000,)
    np.testing.assert_array_equal(X_val, X[55000:])
    np.testing.assert_array_equal(y_train, y[:55000])
    X_train, y_train, X_val, y_val = train_val_split(X[:10], y[:10], num_val=3)
    np.testing.assert_array_equal(y_val, [7, 8, 9])


@pytest.mark.parametrize('num_val', [0, 10, -1])
def test_train_val_split_rejects_bad_num_val(num_val):
    with pytest.raises(ValueError, match='num_val'):
        train_val_split(np.zeros((10, 2)), np.zeros(10), num_val=num_val)


def test_train_val_split_rejects_float_and_mismatch():
    with pytest.raises(TypeError):
        train_val_split(np.zeros((10, 2)), np.zeros(10), num_val=3.0)
    with pytest.raises(ValueError, match='9'):
        train_val_split(np.zeros((10, 2)), np.zeros(9), num_val=3)


def test_public_api_is_exported():
    for name in ('load_mnist', 'load_fashion_mnist', 'load_mnist_npz',
                 'read_idx', 'find_dataset_dir', 'train_val_split'):
        assert callable(getattr(data, name)) and getattr(data, name).__doc__


# ---------------------------------------------------------------- real data

def _official_gz_checksums_match(directory, name):
    for file_name, (gz_sha, _) in datasets.DATASETS[name]['sha256'].items():
        path = os.path.join(directory, file_name + '.gz')
        if os.path.isfile(path):
            with open(path, 'rb') as f:
                yield file_name, sha256(f.read()) == gz_sha


def test_real_mnist_from_handgrad_data():
    root = os.environ.get('HANDGRAD_DATA')
    if not root:
        pytest.skip('HANDGRAD_DATA is not set (CI sets it to the shared data folder)')
    try:
        directory = find_dataset_dir('mnist', root)
    except DatasetNotFoundError:
        pytest.skip('MNIST files not found under HANDGRAD_DATA=%s' % root)
    # verify=True: raises ChecksumError unless every file has the official data.
    X_train, y_train, X_test, y_test = load_mnist(root, download=False, verify=True)
    assert X_train.shape == (60000, 28, 28) and X_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert X_test.shape == (10000, 28, 28) and X_test.dtype == np.uint8
    assert y_test.shape == (10000,) and y_test.dtype == np.uint8
    assert y_train.min() == 0 and y_train.max() == 9
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892,
                                            958, 1028, 974, 1009]
    assert X_train.max() == 255 and X_train.min() == 0
    for file_name, matches in _official_gz_checksums_match(directory, 'mnist'):
        assert matches, file_name


def test_real_fashion_mnist_from_debian_package(monkeypatch):
    system_dir = datasets.DATASETS['fashion-mnist']['system_dirs'][0]
    if not os.path.isdir(system_dir):
        pytest.skip('%s missing: apt-get install dataset-fashion-mnist' % system_dir)
    monkeypatch.delenv('HANDGRAD_DATA', raising=False)
    monkeypatch.setattr(datasets, 'REPO_DATA_DIR', '/nonexistent')
    assert find_dataset_dir('fashion-mnist') == system_dir
    X_train, y_train, X_test, y_test = load_fashion_mnist(download=False)
    assert X_train.shape == (60000, 28, 28) and X_test.shape == (10000, 28, 28)
    assert X_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10


def test_standardized_splits_uses_training_pixels_only():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (20, 4, 4), dtype=np.uint8)
    X[15:] = 255                                   # the validation images: all white
    X_test = np.zeros((6, 4, 4), dtype=np.uint8)
    y, y_test = np.arange(20) % 10, np.arange(6)
    data_, stats = data.standardized_splits(X, y, X_test, y_test, num_val=5, dtype=np.float32)
    assert data_["X_train"].shape == (15, 1, 4, 4) and data_["X_val"].shape == (5, 1, 4, 4)
    assert data_["X_train"].dtype == np.float32 and data_["y_val"].dtype == np.int64
    assert stats["pixel_mean"] == pytest.approx((X[:15] / 255.0).mean())
    np.testing.assert_allclose(data_["X_train"].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(data_["X_train"].std(), 1, atol=1e-5)
    np.testing.assert_allclose(data_["X_test"], -stats["pixel_mean"] / stats["pixel_std"], rtol=1e-6)
    small, _ = data.standardized_splits(X, y, X_test, y_test, num_val=5, limits=(3, 2, 1))
    assert [len(small[k]) for k in ("X_train", "X_val", "X_test")] == [3, 2, 1]
    np.testing.assert_array_equal(small["y_train"], y[:3])
