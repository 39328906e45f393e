"""Image folders (the layout of torchvision's ImageFolder) as NumPy arrays; ants vs bees.

    from data import load_hymenoptera
    X_train, y_train, X_val, y_val, classes = load_hymenoptera(image_size=32)
    # X_*: uint8 (N, 3, 32, 32), channels first; y_*: int64; classes == ['ants', 'bees']

An image folder has one subfolder per class, with that class's images inside:

    root/ants/0013035.jpg
    root/ants/ant photos.jpg
    root/bees/16838648_415acd9e3f.jpg

- Classes: the subfolder names in sorted order; class k is the k-th name (as in
  torchvision's ImageFolder, so both give the same labels).
- Files: those whose extension is in IMAGE_EXTENSIONS (any letter case), in sorted
  order of name; hidden files (".DS_Store") and other files are ignored. Names may
  contain spaces.
- Decoding (Pillow): the first frame of animated files (GIF), converted to RGB
  ('L' grey is repeated into 3 channels, palette images go through RGBA, an alpha
  channel is dropped, as torchvision's loader does).
- Size: the shorter side is resized to image_size (bilinear, antialiased when
  shrinking), then the central image_size x image_size square is kept: torchvision's
  Resize(image_size) + CenterCrop(image_size). JPEGs are decoded at 1/2, 1/4 or 1/8
  scale when that is still at least image_size (Pillow's draft mode): all 398 ants
  and bees load in about a second, so nothing is cached.
- A file that Pillow cannot decode raises ValueError naming it; with
  skip_unreadable=True it is skipped with a warning instead.

The loaders return raw uint8 pixels 0..255; normalizing is the caller's job, as for MNIST.

The ants-vs-bees set (hymenoptera_data, from the PyTorch transfer-learning tutorial;
ImageNet photos): train/{ants,bees} 124 + 121 images, val/{ants,bees} 70 + 83. Its
folder is looked for, in this order (first one holding train/ and val/ wins):

  1. the `data_dir` argument (scripts: --data-dir): <data_dir>/hymenoptera/hymenoptera_data,
     <data_dir>/hymenoptera_data, <data_dir>;
  2. $HANDGRAD_DATA: the same three places under it;
  3. the repo's data/ folder: data/hymenoptera/hymenoptera_data, data/hymenoptera_data.

Nothing is downloaded. Two odd files, both loaded as they are, like ImageFolder does:
train/ants/"ant photos.jpg" (a space in the name) and train/ants/imageNotFound.gif, a GIF
that is not an ant but a grey "We're sorry, this image could not be found" placeholder
(one mislabelled training image of 245; kept so the split is the tutorial's).
"""

import os
import warnings

import numpy as np

from .datasets import DATA_ENV, REPO_DATA_DIR, DatasetNotFoundError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.ppm', '.pgm', '.tif',
                    '.tiff', '.webp')

HYMENOPTERA_CLASSES = ('ants', 'bees')


def _pillow():
    try:
        from PIL import Image
    except ImportError:   # pragma: no cover - matplotlib installs Pillow
        raise ImportError("data/images.py needs Pillow: pip install pillow "
                          "(matplotlib installs it too)") from None
    return Image


def load_image(path, image_size):
    """
    One image file as a uint8 array of shape (3, image_size, image_size).

    Shorter side resized to image_size, then center-cropped to a square; RGB. Raises
    ValueError naming the file if Pillow cannot decode it.
    """
    Image = _pillow()
    try:
        with Image.open(path) as image:
            image.draft('RGB', (image_size, image_size))   # JPEG only; others ignore it
            if image.mode == 'P':        # palette (GIF, PNG): its transparency needs RGBA
                image = image.convert('RGBA')
            image = image.convert('RGB')
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow raises UnidentifiedImageError (an OSError) for unknown data and OSError
        # or SyntaxError for truncated or broken files.
        raise ValueError(f"cannot decode image file {path}: {error}") from None
    width, height = image.size
    scale = image_size / min(width, height)
    new_size = (max(image_size, round(width * scale)), max(image_size, round(height * scale)))
    image = image.resize(new_size, Image.Resampling.BILINEAR)
    left, top = (new_size[0] - image_size) // 2, (new_size[1] - image_size) // 2
    image = image.crop((left, top, left + image_size, top + image_size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def image_folder_files(root):
    """
    The classes and image files of an image folder.

    Returns a tuple of:
    - classes: sorted list of the class subfolder names.
    - files: list of (path relative to root, class index), classes in order, files
      sorted by name within a class.

    Raises ValueError if root has no class subfolders.
    """
    if not os.path.isdir(root):
        raise ValueError(f"image folder {root} does not exist")
    classes = sorted(entry.name for entry in os.scandir(root)
                     if entry.is_dir() and not entry.name.startswith('.'))
    if not classes:
        raise ValueError(f"image folder {root} has no class subfolders "
                         f"(expected {root}/<class name>/<image files>)")
    files = []
    for index, name in enumerate(classes):
        for entry in sorted(os.scandir(os.path.join(root, name)), key=lambda e: e.name):
            if (entry.is_file() and not entry.name.startswith('.')
                    and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS):
                files.append((os.path.join(name, entry.name), index))
    return classes, files


def load_image_folder(root, image_size=32, skip_unreadable=False):
    """
    Load every image of an image folder (layout in the module docstring).

    Inputs:
    - root: the folder holding one subfolder per class.
    - image_size: side of the square images returned.
    - skip_unreadable: False: a file Pillow cannot decode raises ValueError; True: it
      is skipped with a warning (and left out of files).

    Returns a tuple of:
    - X: uint8 array of shape (N, 3, image_size, image_size), pixels 0..255.
    - y: int64 array of shape (N,), class indices.
    - classes: list of the class names; y == k means classes[k].
    - files: list of N paths relative to root, row i of X is files[i].

    Raises ValueError if a class folder holds no image (after skipping).
    """
    classes, entries = image_folder_files(root)
    images, labels, files = [], [], []
    for relative, label in entries:
        path = os.path.join(root, relative)
        try:
            images.append(load_image(path, image_size))
        except ValueError as error:
            if not skip_unreadable:
                raise ValueError(f"{error} (pass skip_unreadable=True to skip such files "
                                 f"with a warning)") from None
            warnings.warn(f"skipped {error}", stacklevel=2)
            continue
        labels.append(label)
        files.append(relative)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    empty = [name for name, count in zip(classes, counts) if count == 0]
    if empty:
        raise ValueError(f"image folder {root}: no readable image in class folder(s) "
                         f"{', '.join(empty)} (extensions {', '.join(IMAGE_EXTENSIONS)})")
    X = np.stack(images) if images else np.zeros((0, 3, image_size, image_size), np.uint8)
    return X, np.asarray(labels, dtype=np.int64), classes, files


def _hymenoptera_candidates(data_dir=None):
    """Folders that may be hymenoptera_data, in lookup order."""
    dirs = []
    for root in (data_dir, os.environ.get(DATA_ENV)):
        if root:
            dirs += [os.path.join(root, 'hymenoptera', 'hymenoptera_data'),
                     os.path.join(root, 'hymenoptera_data'), root]
    dirs += [os.path.join(REPO_DATA_DIR, 'hymenoptera', 'hymenoptera_data'),
             os.path.join(REPO_DATA_DIR, 'hymenoptera_data')]
    return [os.path.abspath(d) for d in dirs]


def find_hymenoptera_dir(data_dir=None):
    """
    The hymenoptera_data folder (holding train/ and val/), looked for in the order of
    the module docstring. Raises DatasetNotFoundError listing the places looked in.
    """
    candidates = _hymenoptera_candidates(data_dir)
    for directory in candidates:
        if all(os.path.isdir(os.path.join(directory, split)) for split in ('train', 'val')):
            return directory
    raise DatasetNotFoundError(
        "ants vs bees (hymenoptera_data) not found: no folder holding train/ and val/ "
        "among (in lookup order):\n" + "\n".join(f"  {d}" for d in candidates) +
        f"\nFix: unzip hymenoptera_data.zip (the PyTorch transfer-learning tutorial's data) "
        f"into <root>/hymenoptera/ and set {DATA_ENV}=<root> or pass data_dir=<root> "
        f"(scripts: --data-dir <root>).")


def load_hymenoptera(data_dir=None, image_size=32, skip_unreadable=False):
    """
    The ants-vs-bees images, train and val splits as given by the folder.

    Inputs:
    - data_dir: a root to look in first (see the module docstring), or None.
    - image_size: side of the square images.
    - skip_unreadable: see load_image_folder.

    Returns a tuple of:
    - X_train: uint8 array (245, 3, image_size, image_size) for the official folder.
    - y_train: int64 array (245,), 0 = ants, 1 = bees.
    - X_val: uint8 array (153, 3, image_size, image_size).
    - y_val: int64 array (153,).
    - classes: ['ants', 'bees'].
    """
    root = find_hymenoptera_dir(data_dir)
    X_train, y_train, classes, _ = load_image_folder(os.path.join(root, 'train'), image_size,
                                                     skip_unreadable)
    X_val, y_val, val_classes, _ = load_image_folder(os.path.join(root, 'val'), image_size,
                                                     skip_unreadable)
    if val_classes != classes:
        raise ValueError(f"{root}: train has classes {classes} but val has {val_classes}")
    return X_train, y_train, X_val, y_val, classes
