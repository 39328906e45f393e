"""Dataset loading for handgrad: MNIST, Fashion-MNIST, CIFAR-10, COCO captions, image folders.

    from data import load_mnist, train_val_split
    X_train, y_train, X_test, y_test = load_mnist()      # uint8, raw 0..255
    X_train, y_train, X_val, y_val = train_val_split(X_train, y_train)  # 55000 / 5000
    X_train = X_train.astype(np.float32) / 255.0          # normalizing is yours

Files are looked up in `data_dir`, then $HANDGRAD_DATA, then this folder
(data/mnist/, data/fashion-mnist/), then /usr/share/datasets/fashion-mnist
(Fashion-MNIST only), and downloaded with sha256 verification if missing.
See data/datasets.py for details.
"""

from .datasets import (
    ChecksumError,
    DatasetNotFoundError,
    download_dataset,
    find_dataset_dir,
    load_fashion_mnist,
    load_mnist,
    load_mnist_npz,
    standardized_splits,
    train_val_split,
)
from .idx import IdxFormatError, read_idx, write_idx

__all__ = [
    'load_mnist', 'load_fashion_mnist', 'load_mnist_npz', 'train_val_split',
    'standardized_splits',
    'find_dataset_dir', 'download_dataset', 'read_idx', 'write_idx',
    'DatasetNotFoundError', 'ChecksumError', 'IdxFormatError',
]

# CIFAR-10 from its python (pickled, read by a restricted unpickler) or binary batches: cifar10.py
from .cifar10 import CIFAR10_CLASSES, CifarFormatError, find_cifar10_dir, load_cifar10  # noqa: E402

__all__ += ['load_cifar10', 'find_cifar10_dir', 'CIFAR10_CLASSES', 'CifarFormatError']

# COCO captioning in the course's format (the .h5 files need the optional h5py): coco.py
from .coco import find_coco_dir, load_coco_data  # noqa: E402

__all__ += ['load_coco_data', 'find_coco_dir']

# Image folders (torchvision ImageFolder layout) and the ants-vs-bees set: images.py
from .images import find_hymenoptera_dir, load_hymenoptera, load_image_folder  # noqa: E402

__all__ += ['load_image_folder', 'load_hymenoptera', 'find_hymenoptera_dir']

# The MNIST-scenes captioning set: its scenes and captions are built from MNIST by
# mnist_scenes.py (load_mnist_scenes, at the top level); its image features come from a
# small CNN trained on them in scene_encoder.py (load_scene_dataset), a model above the data.
