"""Load the course's COCO captioning data (the format of cs231n's `load_coco_data`).

    from data import load_coco_data
    data = load_coco_data()                      # 512-d PCA features
    data = load_coco_data(pca_features=False)    # raw 4096-d VGG-16 fc7 features
    data['train_captions']                       # (N_c, 17) word indices

The data is Microsoft COCO 2014 preprocessed by the course: captions as word indices,
images as VGG-16 fc7 feature vectors. Its folder `coco_captioning/` holds

    coco2014_captions.h5           train_captions (N_c, 17) int, train_image_idxs (N_c,),
                                   val_captions (M_c, 17) int, val_image_idxs (M_c,)
    train2014_vgg16_fc7.h5         features (N_img, 4096)   } pca_features=False
    val2014_vgg16_fc7.h5           features (M_img, 4096)   }
    train2014_vgg16_fc7_pca.h5     features (N_img, 512)    } pca_features=True (default)
    val2014_vgg16_fc7_pca.h5       features (M_img, 512)    }
    coco2014_vocab.json            {"idx_to_word": [V words], "word_to_idx": {word: index}}
    train2014_urls.txt             N_img lines, the URL of image i on line i
    val2014_urls.txt               M_img lines

Caption j describes image train_image_idxs[j], whose features are
train_features[train_image_idxs[j]] and whose URL is train_urls[train_image_idxs[j]].
A caption is `<START> w_1 ... w_k <END>` padded with `<NULL>` to 17 tokens.

To get it, run the course's download script `get_coco_dataset.sh` (in the assignment's
`cs231n/datasets/` folder; it downloads and unzips coco_captioning.zip, about 1 GB), or
download http://cs231n.stanford.edu/coco_captioning.zip and unzip it yourself.

Where the folder is looked for, in this order (first directory holding every needed
file wins), as for MNIST in data/datasets.py:

  1. the `data_dir` argument (scripts: `--data-dir`): `<data_dir>/coco_captioning/`,
     then `<data_dir>/` itself;
  2. $HANDGRAD_DATA: `$HANDGRAD_DATA/coco_captioning/`, then `$HANDGRAD_DATA/`;
  3. the repo's data/ folder: `data/coco_captioning/`.

Nothing is downloaded automatically. The .h5 files need h5py, an optional dependency
(`pip install h5py`); it is imported only when the data is loaded.
"""

import json
import operator
import os

import numpy as np

from . import datasets
from .datasets import DatasetNotFoundError

DIR_NAME = 'coco_captioning'
CAPTIONS_FILE = 'coco2014_captions.h5'
VOCAB_FILE = 'coco2014_vocab.json'
SPLITS = ('train', 'val')
SPECIAL_TOKENS = ('<NULL>', '<START>', '<END>')

DOWNLOAD_HINT = (
    "Get the data with the course's download script get_coco_dataset.sh (in the "
    "assignment's cs231n/datasets/ folder), which downloads and unzips "
    "http://cs231n.stanford.edu/coco_captioning.zip (about 1 GB) into coco_captioning/.")


def features_file(split, pca_features=True):
    """File name of a split's image features, e.g. 'train2014_vgg16_fc7_pca.h5'."""
    return '%s2014_vgg16_fc7%s.h5' % (split, '_pca' if pca_features else '')


def urls_file(split):
    """File name of a split's image URLs, e.g. 'train2014_urls.txt'."""
    return '%s2014_urls.txt' % split


def required_files(pca_features=True):
    """The file names load_coco_data needs, for the chosen feature files."""
    return ([CAPTIONS_FILE, VOCAB_FILE]
            + [features_file(split, pca_features) for split in SPLITS]
            + [urls_file(split) for split in SPLITS])


# ----------------------------------------------------------------------------- finding

def _missing_files(directory, pca_features):
    return [f for f in required_files(pca_features)
            if not os.path.isfile(os.path.join(directory, f))]


def find_coco_dir(data_dir=None, pca_features=True):
    """
    Find the directory holding the course's COCO captioning files.

    Inputs:
    - data_dir: str or None, the `coco_captioning` folder itself or a root directory
      holding it as `<data_dir>/coco_captioning/`. Then $HANDGRAD_DATA and the repo's
      data/ folder are tried (see the module docstring).
    - pca_features: bool, whether the 512-d `_pca` feature files (True) or the 4096-d
      ones (False) are needed; only those have to be present.

    Returns:
    - directory: str, absolute path of the first directory holding every needed file.

    Raises DatasetNotFoundError (a FileNotFoundError) listing each directory looked in
    with the files missing from it, and how to get the data.
    """
    candidates = datasets.candidate_dirs(DIR_NAME, data_dir)
    for directory in candidates:
        if os.path.isdir(directory) and not _missing_files(directory, pca_features):
            return directory

    lines = ['COCO captioning data not found: no directory holds all of %s.'
             % ', '.join(required_files(pca_features)),
             'Looked in (in this order):']
    for directory in candidates:
        if not os.path.isdir(directory):
            lines.append('  %s  (no such directory)' % directory)
        else:
            lines.append('  %s  (missing: %s)'
                         % (directory, ', '.join(_missing_files(directory, pca_features))))
    lines.append(DOWNLOAD_HINT)
    lines.append('Then pass data_dir=<folder> (scripts: --data-dir <folder>), set %s=<root> '
                 'with the files in <root>/%s/, or put them into %s.'
                 % (datasets.DATA_ENV, DIR_NAME,
                    os.path.join(datasets.REPO_DATA_DIR, DIR_NAME)))
    raise DatasetNotFoundError('\n'.join(lines))


# ----------------------------------------------------------------------------- reading

def _import_h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError(
            'Loading the COCO captioning data needs h5py: its captions and image features '
            'are stored in HDF5 (.h5) files, which NumPy cannot read. Install it with\n'
            '    pip install h5py\n'
            'h5py is an optional dependency of handgrad: only this loader uses it.') from e
    return h5py


def _read_h5(h5py, path, names):
    """Read the named datasets of an HDF5 file into NumPy arrays."""
    try:
        f = h5py.File(path, 'r')
    except OSError as e:
        raise OSError('%s: cannot be read as an HDF5 file (%s)' % (path, e)) from e
    with f:
        missing = [name for name in names if name not in f]
        if missing:
            raise ValueError('%s: missing dataset(s) %s; the file has %s'
                             % (path, ', '.join(missing), ', '.join(sorted(f.keys())) or 'none'))
        return {name: f[name][()] for name in names}


def _read_vocab(path):
    with open(path, encoding='utf-8') as f:
        vocab = json.load(f)
    if not isinstance(vocab, dict) or not {'idx_to_word', 'word_to_idx'} <= set(vocab):
        raise ValueError('%s: expected a JSON object with keys "idx_to_word" (a list) and '
                         '"word_to_idx" (an object), got %s'
                         % (path, sorted(vocab) if isinstance(vocab, dict) else type(vocab).__name__))
    idx_to_word, word_to_idx = vocab['idx_to_word'], vocab['word_to_idx']
    if not isinstance(idx_to_word, list) or not isinstance(word_to_idx, dict):
        raise ValueError('%s: idx_to_word must be a list and word_to_idx an object'
                         % path)
    if len(word_to_idx) != len(idx_to_word) or any(
            word_to_idx.get(word) != i for i, word in enumerate(idx_to_word)):
        raise ValueError('%s: word_to_idx is not the inverse of idx_to_word (%d and %d '
                         'entries): word_to_idx[idx_to_word[i]] must be i for every i'
                         % (path, len(word_to_idx), len(idx_to_word)))
    missing = [token for token in SPECIAL_TOKENS if token not in word_to_idx]
    if missing:
        raise ValueError('%s: the vocabulary lacks the special token(s) %s'
                         % (path, ', '.join(missing)))
    return idx_to_word, word_to_idx


def _read_urls(path):
    with open(path, encoding='utf-8') as f:
        return np.asarray([line.strip() for line in f if line.strip()])


# ----------------------------------------------------------------------------- checks

def _check_split(split, data, paths, vocab_size):
    """Shapes and index ranges of one split, with errors naming file and dataset."""
    captions = data['%s_captions' % split]
    image_idxs = data['%s_image_idxs' % split]
    features = data['%s_features' % split]
    urls = data['%s_urls' % split]
    captions_name = '%s[%s_captions]' % (paths['captions'], split)
    idxs_name = '%s[%s_image_idxs]' % (paths['captions'], split)
    features_name = '%s[features]' % paths[split + '_features']

    if captions.ndim != 2 or not np.issubdtype(captions.dtype, np.integer):
        raise ValueError('%s: expected integer word indices of shape (N_c, T), got %s %s'
                         % (captions_name, captions.dtype, captions.shape))
    if image_idxs.ndim != 1 or not np.issubdtype(image_idxs.dtype, np.integer):
        raise ValueError('%s: expected integer image indices of shape (N_c,), got %s %s'
                         % (idxs_name, image_idxs.dtype, image_idxs.shape))
    if len(image_idxs) != len(captions):
        raise ValueError('%s has %d captions but %s has %d image indices'
                         % (captions_name, len(captions), idxs_name, len(image_idxs)))
    if features.ndim != 2:
        raise ValueError('%s: expected features of shape (N_img, D), got shape %s'
                         % (features_name, features.shape))
    if captions.size and (captions.min() < 0 or captions.max() >= vocab_size):
        raise ValueError('%s: word indices must be in [0, %d) for the %d words of %s, got '
                         'range [%d, %d]' % (captions_name, vocab_size, vocab_size,
                                            paths['vocab'], captions.min(), captions.max()))
    num_images = len(features)
    if image_idxs.size and (image_idxs.min() < 0 or image_idxs.max() >= num_images):
        raise ValueError('%s: image indices must be in [0, %d) for the %d feature rows of '
                         '%s, got range [%d, %d]' % (idxs_name, num_images, num_images,
                                                    features_name, image_idxs.min(),
                                                    image_idxs.max()))
    if len(urls) != num_images:
        raise ValueError('%s has %d URLs but %s has %d images (rows); URL i belongs to '
                         'image i' % (paths[split + '_urls'], len(urls), features_name,
                                      num_images))


# ----------------------------------------------------------------------------- loading

def load_coco_data(data_dir=None, max_train=None, pca_features=True, seed=0):
    """
    Load the course's COCO captioning data (cs231n's `load_coco_data`).

    Inputs:
    - data_dir: str or None, the `coco_captioning` folder or a root directory holding it;
      see the module docstring for the lookup order ($HANDGRAD_DATA, the repo's data/).
    - max_train: int or None. If given, keep a random subset of max_train training
      captions (with their image indices), drawn without replacement and kept in file
      order; all of them if there are fewer. Features, URLs and validation data are
      not subsampled.
    - pca_features: bool, True for the 512-d PCA-reduced VGG-16 fc7 features (the
      `_pca` files, the course's default), False for the raw 4096-d ones.
    - seed: int or None, seed of the max_train subsample (None: different every call).

    Returns a dict with (N_c train captions of N_img train images, M_c / M_img for val,
    D = 512 or 4096, T = 17 in the course's files, V words):
    - 'train_captions': int array (N_c, T), word indices.
    - 'train_image_idxs': int array (N_c,), the image of each caption, in [0, N_img).
    - 'val_captions': int array (M_c, T).
    - 'val_image_idxs': int array (M_c,), in [0, M_img).
    - 'train_features': float array (N_img, D).
    - 'val_features': float array (M_img, D).
    - 'idx_to_word': list of V str.
    - 'word_to_idx': dict str -> int.
    - 'train_urls': str array (N_img,), the image URLs.
    - 'val_urls': str array (M_img,).
    Arrays keep the dtypes stored in the files.

    Differences from the course's loader: max_train draws without replacement (the
    course's draws with replacement, so it repeats captions) and is seeded; blank lines
    in the URL files are skipped; everything is validated (below).

    Raises:
    - DatasetNotFoundError (a FileNotFoundError) if no directory holds all the files,
      naming the directories and missing files and how to get the data.
    - ImportError if h5py is not installed, saying `pip install h5py`.
    - ValueError naming the file and dataset on a missing dataset, a wrong shape or
      dtype, a word index outside the vocabulary, an image index outside the feature
      rows, a URL count that differs from the image count, or feature sizes that
      differ between train and val.
    """
    if max_train is not None:
        max_train = operator.index(max_train)
        if max_train < 1:
            raise ValueError('max_train must be None or >= 1, got %d' % max_train)
    directory = find_coco_dir(data_dir, pca_features)
    h5py = _import_h5py()

    paths = {'captions': os.path.join(directory, CAPTIONS_FILE),
             'vocab': os.path.join(directory, VOCAB_FILE)}
    for split in SPLITS:
        paths[split + '_features'] = os.path.join(directory, features_file(split, pca_features))
        paths[split + '_urls'] = os.path.join(directory, urls_file(split))

    data = _read_h5(h5py, paths['captions'],
                    ['%s_%s' % (split, key) for split in SPLITS
                     for key in ('captions', 'image_idxs')])
    for split in SPLITS:
        path = paths[split + '_features']
        data[split + '_features'] = _read_h5(h5py, path, ['features'])['features']
    data['idx_to_word'], data['word_to_idx'] = _read_vocab(paths['vocab'])
    for split in SPLITS:
        data[split + '_urls'] = _read_urls(paths[split + '_urls'])

    for split in SPLITS:
        _check_split(split, data, paths, len(data['idx_to_word']))
    train_dim, val_dim = data['train_features'].shape[1], data['val_features'].shape[1]
    if train_dim != val_dim:
        raise ValueError('%s has %d-d features but %s has %d-d features'
                         % (paths['train_features'], train_dim, paths['val_features'], val_dim))

    if max_train is not None and max_train < len(data['train_captions']):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(data['train_captions']), size=max_train, replace=False))
        data['train_captions'] = data['train_captions'][keep]
        data['train_image_idxs'] = data['train_image_idxs'][keep]
    return data
