"""data/images.py: the ImageFolder-style loader on a tiny folder made here (JPEG, PNG, GIF,
grey and RGBA images, a name with a space, non-image and hidden files, a corrupt file), the
hymenoptera lookup order, and the real ants-vs-bees folder when $HANDGRAD_DATA has it."""
import os

import numpy as np
import pytest
from PIL import Image

from data import (
    DatasetNotFoundError,
    find_hymenoptera_dir,
    load_hymenoptera,
    load_image_folder,
)
from data.images import load_image


def solid(path, colour, size=(40, 30), mode="RGB", **save):
    """Save a one-colour image; returns its path."""
    Image.new(mode, size, colour).save(path, **save)
    return path


def make_folder(root, corrupt=False):
    """root/{bees,ants}/ with five odd images, plus files that must be ignored."""
    ants, bees = root / "ants", root / "bees"
    ants.mkdir(parents=True)
    bees.mkdir()
    solid(ants / "ant photos.jpg", (200, 10, 10), quality=95)        # space in the name
    solid(ants / "b.PNG", (10, 200, 10))                             # upper-case extension
    solid(ants / "c.gif", 0, mode="P")                               # palette GIF
    solid(bees / "grey.jpg", 128, mode="L")                          # 1-channel JPEG
    solid(bees / "alpha.png", (10, 10, 200, 0), mode="RGBA")         # transparent RGBA
    (ants / "notes.txt").write_text("not an image")                  # ignored: extension
    (ants / ".hidden.jpg").write_bytes(b"")                          # ignored: hidden
    (root / ".git").mkdir()                                          # ignored: hidden folder
    if corrupt:
        (bees / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return root


def test_loads_every_kind_of_file_as_rgb_squares(tmp_path):
    X, y, classes, files = load_image_folder(make_folder(tmp_path / "set"), image_size=8)
    assert classes == ["ants", "bees"]                                # sorted folder names
    assert files == ["ants/ant photos.jpg", "ants/b.PNG", "ants/c.gif",
                     "bees/alpha.png", "bees/grey.jpg"]               # sorted within a class
    assert X.shape == (5, 3, 8, 8) and X.dtype == np.uint8
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1])
    assert y.dtype == np.int64
    # one colour per image: every pixel of each channel equals the drawn colour
    # (JPEG: within a few levels)
    means = X.reshape(5, 3, -1).mean(axis=2)
    assert np.abs(means[0] - [200, 10, 10]).max() < 6
    np.testing.assert_array_equal(means[1], [10, 200, 10])
    np.testing.assert_array_equal(means[3], [10, 10, 200])            # alpha dropped
    assert np.abs(means[4] - 128).max() < 2                           # grey -> R = G = B
    assert (X[2] == X[2, :, :1, :1]).all()                            # GIF: one flat colour


def test_corrupt_file_raises_naming_it_or_is_skipped_with_a_warning(tmp_path):
    root = make_folder(tmp_path / "set", corrupt=True)
    with pytest.raises(ValueError, match=r"cannot decode image file .*broken\.jpg.*skip_unreadable"):
        load_image_folder(root, image_size=8)
    with pytest.warns(UserWarning, match=r"skipped .*broken\.jpg"):
        X, y, _, files = load_image_folder(root, image_size=8, skip_unreadable=True)
    assert len(X) == 5 and "bees/broken.jpg" not in files


def test_class_without_images_and_folder_without_classes(tmp_path):
    root = make_folder(tmp_path / "set")
    (root / "wasps").mkdir()
    (root / "wasps" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no readable image in class folder.*wasps"):
        load_image_folder(root, image_size=8)
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        load_image_folder(tmp_path / "flat")
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")


def test_resize_shorter_side_then_centre_crop(tmp_path):
    # 60 x 20 image: left third red, middle green, right third blue. The shorter side
    # (20) becomes 10, so the image becomes 30 x 10, and the central 10 x 10 square is
    # the green middle third.
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, :20, 0] = image[:, 20:40, 1] = image[:, 40:, 2] = 255
    Image.fromarray(image).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 10)
    assert out.shape == (3, 10, 10)
    np.testing.assert_array_equal(out[1, :, 1:-1], 255)   # green inside (edges blend)
    np.testing.assert_array_equal(out[[0, 2], :, 1:-1], 0)


def test_hymenoptera_lookup_order(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    for root, layout in ((first, "hymenoptera_data"), (second, "hymenoptera/hymenoptera_data")):
        for split in ("train", "val"):
            (root / layout / split).mkdir(parents=True)
    monkeypatch.setenv("HANDGRAD_DATA", str(second))
    assert find_hymenoptera_dir() == str(second / "hymenoptera" / "hymenoptera_data")
    assert find_hymenoptera_dir(str(first)) == str(first / "hymenoptera_data")   # data_dir wins
    monkeypatch.setenv("HANDGRAD_DATA", str(tmp_path / "empty"))
    with pytest.raises(DatasetNotFoundError, match=r"(?s)hymenoptera_data.*empty"):
        find_hymenoptera_dir()


def test_load_hymenoptera_on_a_tiny_copy(tmp_path):
    root = tmp_path / "hymenoptera_data"
    make_folder(root / "train")
    make_folder(root / "val")
    X_train, y_train, X_val, y_val, classes = load_hymenoptera(str(tmp_path), image_size=6)
    assert X_train.shape == X_val.shape == (5, 3, 6, 6) and classes == ["ants", "bees"]


def test_real_ants_and_bees_folder():
    if not os.environ.get("HANDGRAD_DATA"):
        pytest.skip("HANDGRAD_DATA is not set (CI sets it to ../shared/data)")
    try:
        find_hymenoptera_dir()
    except DatasetNotFoundError:
        pytest.skip("no hymenoptera_data under $HANDGRAD_DATA")
    X_train, y_train, X_val, y_val, classes = load_hymenoptera(image_size=16)
    assert classes == ["ants", "bees"]
    assert X_train.shape == (245, 3, 16, 16) and X_val.shape == (153, 3, 16, 16)
    assert np.bincount(y_train).tolist() == [124, 121]   # with "ant photos.jpg" and the GIF
    assert np.bincount(y_val).tolist() == [70, 83]
    assert 60 < X_train.mean() < 160                     # real photos, not blank arrays
