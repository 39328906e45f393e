"""data.load_cifar10 on tiny batch files of both official layouts, written here: values,
shapes and dtypes, both layouts equal, the folder look-up, malformed batches, and a
malicious pickle that is refused without running."""
import os
import pickle
import struct

import numpy as np
import pytest

import data
from data import CIFAR10_CLASSES, CifarFormatError, DatasetNotFoundError, load_cifar10
from data.cifar10 import LAYOUTS

PY_NAMES = LAYOUTS["cifar-10-batches-py"]
BIN_NAMES = LAYOUTS["cifar-10-batches-bin"]


# ----------------------------------------------------------------------------- tiny batches

def tiny_batches(records=3, seed=0):
    """Six (images uint8 (n, 3072), labels) batches: five training batches, then the test
    batch; the labels cover 0..9 and differ between batches."""
    rng = np.random.default_rng(seed)
    batches = []
    for b in range(6):
        images = rng.integers(0, 256, size=(records, 3072), dtype=np.uint8)
        labels = [(3 * b + k) % 10 for k in range(records)]
        batches.append((images, labels))
    return batches


def _string(raw):
    """A Python 2 str in a protocol-2 pickle (SHORT_BINSTRING or BINSTRING)."""
    if len(raw) < 256:
        return b"U" + bytes([len(raw)]) + raw
    return b"T" + struct.pack("<i", len(raw)) + raw


def _int(value):
    if value < 256:
        return b"K" + bytes([value])
    if value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def python2_pickle(images, labels, batch_label=b"training batch 1 of 5"):
    """
    The bytes of a batch as the official cifar-10-batches-py files hold it: a dict pickled
    by Python 2's cPickle with protocol 2 (strings as Python 2 str, the array rebuilt by
    numpy.core.multiarray._reconstruct and a numpy.dtype, pixels as one string), written
    opcode by opcode since Python 3 cannot write Python 2 strings.
    """
    n = len(images)
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" b"cnumpy\nndarray\n"
             + _int(0) + b"\x85" + _string(b"b") + b"\x87R"                 # _reconstruct(...)
             + b"(" + _int(1) + _int(n) + _int(3072) + b"\x86"              # state: shape
             + b"cnumpy\ndtype\n" + _string(b"u1") + _int(0) + _int(1) + b"\x87R"
             + b"(" + _int(3) + _string(b"|") + b"NNN" + b"J\xff\xff\xff\xff" * 2 + _int(0)
             + b"tb"                                                         # dtype state
             + b"\x89" + _string(images.tobytes()) + b"tb")                  # C order, pixels
    return (b"\x80\x02}(" + _string(b"batch_label") + _string(batch_label)
            + _string(b"data") + array
            + _string(b"labels") + b"](" + b"".join(_int(int(v)) for v in labels) + b"e"
            + _string(b"filenames") + b"](" + b"".join(_string(b"img_%d.png" % k)
                                                       for k in range(n)) + b"e"
            + b"u.")


def write_py_layout(folder, batches):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in zip(PY_NAMES, batches):
        (folder / name).write_bytes(python2_pickle(images, labels))
    return folder


def write_bin_layout(folder, batches):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in zip(BIN_NAMES, batches):
        records = np.concatenate([np.array(labels, dtype=np.uint8)[:, None], images], axis=1)
        (folder / name).write_bytes(records.tobytes())
    return folder


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("HANDGRAD_DATA", raising=False)


# ----------------------------------------------------------------------------- reading

@pytest.mark.parametrize("layout", ["cifar-10-batches-py", "cifar-10-batches-bin"])
def test_each_layout_gives_the_images_and_labels_channels_first(tmp_path, no_env, layout):
    batches = tiny_batches(records=3)
    write = write_py_layout if layout.endswith("py") else write_bin_layout
    write(tmp_path / layout, batches)
    X_train, y_train, X_test, y_test = load_cifar10(str(tmp_path))
    assert X_train.shape == (15, 3, 32, 32) and X_test.shape == (3, 3, 32, 32)
    assert X_train.dtype == np.uint8 and X_test.dtype == np.uint8
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert y_train.tolist() == [v for _, labels in batches[:5] for v in labels]
    assert y_test.tolist() == batches[5][1]
    # a row is 1024 red, 1024 green, 1024 blue values, each image row by row
    first = batches[0][0][0]
    assert X_train[0, 0, 0, 0] == first[0] and X_train[0, 0, 0, 31] == first[31]
    assert X_train[0, 0, 1, 0] == first[32]
    assert X_train[0, 1, 0, 0] == first[1024] and X_train[0, 2, 31, 31] == first[3071]
    assert np.array_equal(X_train[3], batches[1][0][0].reshape(3, 32, 32))   # batch order
    assert np.array_equal(X_test[2], batches[5][0][2].reshape(3, 32, 32))


def test_both_layouts_of_the_same_batches_are_equal(tmp_path, no_env):
    batches = tiny_batches(records=4, seed=1)
    from_py = load_cifar10(str(write_py_layout(tmp_path / "a" / "cifar-10-batches-py", batches)))
    from_bin = load_cifar10(str(write_bin_layout(tmp_path / "b" / "cifar-10-batches-bin", batches)))
    for a, b in zip(from_py, from_bin):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_any_number_of_records_per_batch(tmp_path, no_env):
    batches = [(images[:k], labels[:k]) for (images, labels), k
               in zip(tiny_batches(records=5), [1, 5, 2, 3, 4, 2])]
    write_bin_layout(tmp_path / "cifar-10-batches-bin", batches)
    X_train, y_train, X_test, y_test = load_cifar10(str(tmp_path))
    assert len(X_train) == len(y_train) == 15 and len(X_test) == 2


def test_python3_pickles_of_the_same_dict_load_too(tmp_path, no_env):
    """A batch re-saved by Python 3 (protocols 3 to 5) holds the same arrays."""
    batches = tiny_batches(records=2)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for protocol, (name, (images, labels)) in zip([3, 4, 5, 5, 4, 3], zip(PY_NAMES, batches)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": images, b"labels": labels}, f, protocol=protocol)
    X_train, y_train, _, y_test = load_cifar10(str(folder))
    assert np.array_equal(X_train[0], batches[0][0][0].reshape(3, 32, 32))
    assert y_test.tolist() == batches[5][1]


def test_class_names():
    assert len(CIFAR10_CLASSES) == 10
    assert CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[6] == "frog"
    assert CIFAR10_CLASSES[9] == "truck"
    assert "load_cifar10" in data.__all__ and "CIFAR10_CLASSES" in data.__all__


# ----------------------------------------------------------------------------- looking up

def test_lookup_order_data_dir_then_environment(tmp_path, monkeypatch):
    env_batches, dir_batches = tiny_batches(seed=2), tiny_batches(seed=3)
    write_bin_layout(tmp_path / "env" / "cifar-10-batches-bin", env_batches)
    write_py_layout(tmp_path / "dir" / "cifar-10-batches-py", dir_batches)
    monkeypatch.setenv("HANDGRAD_DATA", str(tmp_path / "env"))
    assert np.array_equal(load_cifar10()[0][0], env_batches[0][0][0].reshape(3, 32, 32))
    from_dir = load_cifar10(str(tmp_path / "dir"))
    assert np.array_equal(from_dir[0][0], dir_batches[0][0][0].reshape(3, 32, 32))
    directory, layout = data.find_cifar10_dir(str(tmp_path / "dir"))
    assert (directory, layout) == (str(tmp_path / "dir" / "cifar-10-batches-py"),
                                   "cifar-10-batches-py")


def test_missing_folder_names_every_place_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HANDGRAD_DATA", str(tmp_path / "env"))
    partial = write_py_layout(tmp_path / "mine" / "cifar-10-batches-py", tiny_batches()[:3])
    with pytest.raises(DatasetNotFoundError) as error:
        load_cifar10(str(tmp_path / "mine"))
    message = str(error.value)
    assert message.startswith("CIFAR-10 not found")
    for place in [partial, tmp_path / "mine" / "cifar-10-batches-bin", tmp_path / "mine",
                  tmp_path / "env" / "cifar-10-batches-py", tmp_path / "env",
                  os.path.join(os.path.dirname(data.__file__), "cifar-10-batches-py")]:
        assert "\n  %s  (" % place in message, place
    assert "missing the cifar-10-batches-py files data_batch_4, data_batch_5, test_batch" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "tar -xzf cifar-10-python.tar.gz" in message and "HANDGRAD_DATA" in message


# ----------------------------------------------------------------------------- refusing

def test_a_malicious_pickle_is_refused_and_nothing_runs(tmp_path, no_env):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch %s" % marker,))

    folder = write_py_layout(tmp_path / "cifar-10-batches-py", tiny_batches())
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": [0]}, f, protocol=4)
    with pytest.raises(CifarFormatError) as error:
        load_cifar10(str(folder))
    message = str(error.value)
    assert str(folder / "data_batch_3") in message
    assert "refused to unpickle: the file asks for %s.system" % os.system.__module__ in message
    assert "Nothing was run" in message
    assert not marker.exists()
    # the same file would run the command with plain pickle.load: the test is a real one
    with open(folder / "data_batch_3", "rb") as f:
        pickle.load(f)
    assert marker.exists()


@pytest.mark.parametrize("payload, expected", [
    (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),
    (b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93\x8c\x041+1;\x85R.", "builtins.exec"),
    (b"cnumpy.testing\nassert_\n.", "numpy.testing.assert_"),
])
def test_any_global_outside_numpy_array_reconstruction_is_refused(tmp_path, no_env, payload,
                                                                  expected):
    folder = write_py_layout(tmp_path / "cifar-10-batches-py", tiny_batches())
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(CifarFormatError, match="asks for %s" % expected.replace(".", r"\.")):
        load_cifar10(str(folder))


def write_one_bad_py_batch(tmp_path, batch):
    folder = write_py_layout(tmp_path / "cifar-10-batches-py", tiny_batches())
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump(batch, f, protocol=4)
    return folder


GOOD = np.zeros((3, 3072), dtype=np.uint8)


@pytest.mark.parametrize("batch, expected", [
    ({b"data": GOOD}, r"missing the keys \[b'labels'\]"),
    ({b"labels": [0, 1, 2]}, r"missing the keys \[b'data'\]"),
    ([GOOD, [0, 1, 2]], "a pickled dict, this file holds a list"),
    ({b"data": GOOD[:, :3000], b"labels": [0, 1, 2]},
     r"shape \(N, 3072\), got an array of uint8 \(3, 3000\)"),
    ({b"data": GOOD.astype(np.float32), b"labels": [0, 1, 2]}, "got an array of float32"),
    ({b"data": GOOD, b"labels": [0, 1]}, "3 images in b'data' but 2 b'labels'"),
    ({b"data": GOOD, b"labels": [0, 10, 2]}, r"labels must be in 0\.\.9, found 10"),
    ({b"data": GOOD, b"labels": [0, -1, 2]}, r"labels must be in 0\.\.9, found -1"),
    ({b"data": GOOD, b"labels": ["a", "b", "c"]}, "b'labels' must be a list of ints, got a list"),
    ({b"data": GOOD[:0], b"labels": []}, "holds no images"),
])
def test_malformed_python_batches_are_refused_naming_the_file(tmp_path, no_env, batch, expected):
    folder = write_one_bad_py_batch(tmp_path, batch)
    with pytest.raises(CifarFormatError, match=expected) as error:
        load_cifar10(str(folder))
    assert str(folder / "data_batch_2") in str(error.value)


def test_a_truncated_pickle_is_refused_naming_the_file(tmp_path, no_env):
    folder = write_py_layout(tmp_path / "cifar-10-batches-py", tiny_batches())
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(CifarFormatError, match="not a readable CIFAR-10 batch") as error:
        load_cifar10(str(folder))
    assert str(folder / "test_batch") in str(error.value)


@pytest.mark.parametrize("change, expected", [
    (lambda raw: raw[:-1], r"3072 bytes, not a whole number of 3073-byte records"),
    (lambda raw: b"", "0 bytes, not a whole number"),
    (lambda raw: b"\x0a" + raw[1:], r"labels must be in 0\.\.9, found 10"),
])
def test_malformed_binary_batches_are_refused_naming_the_file(tmp_path, no_env, change, expected):
    folder = write_bin_layout(tmp_path / "cifar-10-batches-bin", tiny_batches(records=1))
    path = folder / "data_batch_5.bin"
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(CifarFormatError, match=expected) as error:
        load_cifar10(str(folder))
    assert str(path) in str(error.value)


def test_a_folder_named_like_a_batch_file_does_not_count(tmp_path, no_env):
    folder = write_bin_layout(tmp_path / "cifar-10-batches-bin", tiny_batches(records=1))
    (folder / "test_batch.bin").unlink()
    (folder / "test_batch.bin").mkdir()
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DatasetNotFoundError,
                       match="missing the cifar-10-batches-bin files test_batch.bin"):
        load_cifar10(str(tmp_path))
