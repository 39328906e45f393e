"""Tests for data/coco.py, the loader of the course's COCO captioning files.

The tests write tiny files of the same layout (names, HDF5 datasets, JSON keys, URL
lists) into tmp_path. Those that read .h5 files need h5py and skip without it; the
missing-files and missing-h5py errors are tested without h5py.
"""
import json
import os
import sys

import numpy as np
import pytest

from data import DatasetNotFoundError, coco, datasets, find_coco_dir, load_coco_data

KEYS = {'train_captions', 'train_image_idxs', 'val_captions', 'val_image_idxs',
        'train_features', 'val_features', 'idx_to_word', 'word_to_idx',
        'train_urls', 'val_urls'}

IDX_TO_WORD = ['<NULL>', '<START>', '<END>', '<UNK>', 'a', 'cat', 'dog', 'on', 'the', 'mat']
T = 17
PCA_DIM, RAW_DIM = 8, 16            # the course's files: 512 and 4096
SIZES = {'train': (6, 20), 'val': (4, 10)}   # split: (images, captions)


def write_tiny_coco(directory, seed=0, pca=True, raw=True):
    """
    Write a tiny dataset in the course's layout into directory (created if needed).

    Returns the dict load_coco_data should return for it with pca_features=True
    (or False if pca is False), for comparison.
    """
    import h5py
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    expected = {}
    with h5py.File(os.path.join(directory, 'coco2014_captions.h5'), 'w') as f:
        for split, (num_images, num_captions) in SIZES.items():
            captions = np.zeros((num_captions, T), dtype=np.int32)        # <NULL> padding
            for row in captions:
                length = rng.integers(1, T - 1)
                row[0], row[1:length + 1], row[length + 1] = 1, rng.integers(3, 10, length), 2
            image_idxs = rng.integers(0, num_images, num_captions).astype(np.int32)
            f[split + '_captions'] = captions
            f[split + '_image_idxs'] = image_idxs
            expected[split + '_captions'] = captions
            expected[split + '_image_idxs'] = image_idxs
    for split, (num_images, _) in SIZES.items():
        for is_pca, dim, wanted in ((True, PCA_DIM, pca), (False, RAW_DIM, raw)):
            if not wanted:
                continue
            features = rng.standard_normal((num_images, dim)).astype(np.float32)
            with h5py.File(os.path.join(directory, coco.features_file(split, is_pca)), 'w') as f:
                f['features'] = features
            if is_pca == pca:
                expected[split + '_features'] = features
        urls = ['http://images.cocodataset.org/%s2014/%012d.jpg' % (split, i)
                for i in range(num_images)]
        with open(os.path.join(directory, coco.urls_file(split)), 'w') as f:
            f.write('\n'.join(urls) + '\n')
        expected[split + '_urls'] = np.array(urls)
    with open(os.path.join(directory, 'coco2014_vocab.json'), 'w') as f:
        json.dump({'idx_to_word': IDX_TO_WORD,
                   'word_to_idx': {w: i for i, w in enumerate(IDX_TO_WORD)}}, f)
    expected['idx_to_word'] = IDX_TO_WORD
    expected['word_to_idx'] = {w: i for i, w in enumerate(IDX_TO_WORD)}
    return expected


def rewrite_h5(path, name, array):
    import h5py
    with h5py.File(path, 'a') as f:
        del f[name]
        f[name] = array


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No $HANDGRAD_DATA and an empty temp folder as the repo's data/ folder."""
    monkeypatch.delenv('HANDGRAD_DATA', raising=False)
    repo = tmp_path / 'repo_data'
    repo.mkdir()
    monkeypatch.setattr(datasets, 'REPO_DATA_DIR', str(repo))
    return tmp_path


@pytest.fixture
def h5py():
    return pytest.importorskip('h5py', reason='h5py (optional) is needed to write .h5 files')


@pytest.fixture
def tiny(isolated, h5py):
    """(directory, expected data) of a tiny dataset with both feature variants."""
    directory = isolated / 'coco_captioning'
    return str(directory), write_tiny_coco(directory)


def touch_all_files(directory, pca_features=True):
    os.makedirs(directory, exist_ok=True)
    for name in coco.required_files(pca_features):
        open(os.path.join(directory, name), 'w').close()


# ----------------------------------------------------------------------------- without h5py

def test_missing_files_error_lists_directories_missing_files_and_where_to_get_them(
        isolated, monkeypatch):
    root = isolated / 'root'
    folder = root / 'coco_captioning'
    folder.mkdir(parents=True)
    (folder / 'coco2014_captions.h5').touch()
    (folder / 'coco2014_vocab.json').touch()
    monkeypatch.setenv('HANDGRAD_DATA', str(isolated / 'env'))
    with pytest.raises(DatasetNotFoundError) as info:
        load_coco_data(data_dir=str(root))
    message = str(info.value)
    missing = ('train2014_vgg16_fc7_pca.h5, val2014_vgg16_fc7_pca.h5, '
               'train2014_urls.txt, val2014_urls.txt')
    assert '%s  (missing: %s)' % (folder, missing) in message
    assert '%s  (missing: coco2014_captions.h5' % root in message          # root itself
    assert '%s  (no such directory)' % (isolated / 'env' / 'coco_captioning') in message
    assert '%s  (no such directory)' % (isolated / 'repo_data' / 'coco_captioning') in message
    assert 'get_coco_dataset.sh' in message and 'coco_captioning.zip' in message
    # the looked-in directories come in lookup order
    assert message.index(str(folder)) < message.index(str(isolated / 'env'))
    assert isinstance(info.value, FileNotFoundError)


def test_missing_files_error_names_the_raw_feature_files_without_pca(isolated):
    with pytest.raises(DatasetNotFoundError, match=r'train2014_vgg16_fc7\.h5, '
                                                   r'val2014_vgg16_fc7\.h5'):
        find_coco_dir(str(isolated), pca_features=False)


def test_missing_h5py_says_pip_install_h5py_and_why(isolated, monkeypatch):
    touch_all_files(isolated / 'coco_captioning')
    monkeypatch.setitem(sys.modules, 'h5py', None)       # makes `import h5py` fail
    with pytest.raises(ImportError) as info:
        load_coco_data(data_dir=str(isolated))
    message = str(info.value)
    assert 'pip install h5py' in message
    assert 'HDF5' in message and 'optional' in message


def test_lookup_order_data_dir_env_repo(isolated, monkeypatch):
    repo = isolated / 'repo_data' / 'coco_captioning'
    env_root = isolated / 'env'
    arg = isolated / 'arg'
    touch_all_files(repo)
    assert find_coco_dir() == str(repo)
    touch_all_files(env_root)                             # $HANDGRAD_DATA holds files itself
    monkeypatch.setenv('HANDGRAD_DATA', str(env_root))
    assert find_coco_dir() == str(env_root)
    touch_all_files(env_root / 'coco_captioning')         # the subfolder comes first
    assert find_coco_dir() == str(env_root / 'coco_captioning')
    touch_all_files(arg)                                  # data_dir beats everything
    assert find_coco_dir(str(arg)) == str(arg)
    # a folder with only the PCA files is skipped when the raw ones are asked for
    touch_all_files(isolated / 'raw', pca_features=False)
    assert find_coco_dir(str(isolated / 'raw'), pca_features=False) == str(isolated / 'raw')
    assert find_coco_dir(str(isolated / 'raw'), pca_features=True) == str(
        env_root / 'coco_captioning')


def test_max_train_must_be_positive(isolated):
    with pytest.raises(ValueError, match='max_train must be None or >= 1, got 0'):
        load_coco_data(data_dir=str(isolated), max_train=0)


# ----------------------------------------------------------------------------- with h5py

def test_loads_every_key_with_shapes_and_values(tiny):
    directory, expected = tiny
    data = load_coco_data(data_dir=directory)
    assert set(data) == KEYS
    assert data['train_captions'].shape == (SIZES['train'][1], T)
    assert data['val_captions'].shape == (SIZES['val'][1], T)
    assert data['train_image_idxs'].shape == (SIZES['train'][1],)
    assert data['train_features'].shape == (SIZES['train'][0], PCA_DIM)
    assert data['val_features'].shape == (SIZES['val'][0], PCA_DIM)
    assert data['train_urls'].shape == (SIZES['train'][0],)
    for key in KEYS - {'idx_to_word', 'word_to_idx'}:
        assert data[key].dtype == expected[key].dtype, key      # dtypes as stored
        np.testing.assert_array_equal(data[key], expected[key], err_msg=key)
    assert data['idx_to_word'] == IDX_TO_WORD
    assert data['word_to_idx'] == expected['word_to_idx']
    # caption j, its image's features and URL line up through the image index
    j = 3
    image = data['train_image_idxs'][j]
    assert data['train_urls'][image].endswith('%012d.jpg' % image)


def test_found_through_env_and_root_folder(tiny, monkeypatch):
    directory, expected = tiny
    monkeypatch.setenv('HANDGRAD_DATA', os.path.dirname(directory))
    data = load_coco_data()
    np.testing.assert_array_equal(data['val_captions'], expected['val_captions'])


def test_pca_switch_chooses_the_feature_files(tiny):
    directory, _ = tiny
    assert load_coco_data(directory, pca_features=True)['train_features'].shape[1] == PCA_DIM
    raw = load_coco_data(directory, pca_features=False)
    assert raw['train_features'].shape == (SIZES['train'][0], RAW_DIM)
    assert raw['val_features'].shape == (SIZES['val'][0], RAW_DIM)


def test_pca_false_needs_only_the_raw_files(isolated, h5py):
    directory = isolated / 'only_raw'
    expected = write_tiny_coco(directory, pca=False)
    data = load_coco_data(str(directory), pca_features=False)
    np.testing.assert_array_equal(data['train_features'], expected['train_features'])
    with pytest.raises(DatasetNotFoundError, match='train2014_vgg16_fc7_pca.h5'):
        load_coco_data(str(directory))                       # default: PCA files


def test_max_train_subsamples_captions_with_their_image_indices(tiny):
    directory, expected = tiny
    full_captions = expected['train_captions']
    data = load_coco_data(directory, max_train=7, seed=3)
    assert data['train_captions'].shape == (7, T)
    assert data['train_image_idxs'].shape == (7,)
    # each kept caption is a distinct row of the file, in file order, with its own image
    rows = [int(np.flatnonzero((full_captions == c).all(axis=1)
                               & (expected['train_image_idxs'] == i))[0])
            for c, i in zip(data['train_captions'], data['train_image_idxs'])]
    assert rows == sorted(set(rows))
    # features, URLs and val are untouched
    np.testing.assert_array_equal(data['train_features'], expected['train_features'])
    np.testing.assert_array_equal(data['val_captions'], expected['val_captions'])
    # seeded: same seed, same subset; another seed, (here) another subset
    again = load_coco_data(directory, max_train=7, seed=3)
    np.testing.assert_array_equal(again['train_captions'], data['train_captions'])
    other = load_coco_data(directory, max_train=7, seed=4)
    assert not np.array_equal(other['train_captions'], data['train_captions'])
    # more than there are: all of them
    everything = load_coco_data(directory, max_train=1000)
    np.testing.assert_array_equal(everything['train_captions'], full_captions)


def test_caption_word_index_out_of_vocab(tiny):
    directory, expected = tiny
    captions = expected['val_captions'].copy()
    captions[2, 5] = len(IDX_TO_WORD)                       # one past the last word
    path = os.path.join(directory, 'coco2014_captions.h5')
    rewrite_h5(path, 'val_captions', captions)
    with pytest.raises(ValueError, match=r'coco2014_captions\.h5\[val_captions\]: word '
                                         r'indices must be in \[0, 10\).*got range \[0, 10\]'):
        load_coco_data(directory)


def test_image_index_out_of_feature_rows(tiny):
    directory, expected = tiny
    idxs = expected['train_image_idxs'].copy()
    idxs[0] = SIZES['train'][0]                             # 6 feature rows: 0..5
    rewrite_h5(os.path.join(directory, 'coco2014_captions.h5'), 'train_image_idxs', idxs)
    with pytest.raises(ValueError, match=r'\[train_image_idxs\]: image indices must be in '
                                         r'\[0, 6\) for the 6 feature rows of .*'
                                         r'train2014_vgg16_fc7_pca\.h5\[features\]'):
        load_coco_data(directory)


def test_shape_errors_name_file_and_dataset(tiny):
    directory, expected = tiny
    captions_path = os.path.join(directory, 'coco2014_captions.h5')
    rewrite_h5(captions_path, 'train_image_idxs', expected['train_image_idxs'][:-1])
    with pytest.raises(ValueError, match=r'\[train_captions\] has 20 captions but .*'
                                         r'\[train_image_idxs\] has 19 image indices'):
        load_coco_data(directory)
    rewrite_h5(captions_path, 'train_image_idxs', expected['train_image_idxs'])
    rewrite_h5(captions_path, 'train_captions', expected['train_captions'].ravel())
    with pytest.raises(ValueError, match=r'\[train_captions\]: expected integer word '
                                         r'indices of shape \(N_c, T\), got int32 \(340,\)'):
        load_coco_data(directory)
    rewrite_h5(captions_path, 'train_captions', expected['train_captions'].astype(np.float32))
    with pytest.raises(ValueError, match='expected integer word indices'):
        load_coco_data(directory)


def test_feature_errors(tiny):
    directory, expected = tiny
    val_path = os.path.join(directory, 'val2014_vgg16_fc7_pca.h5')
    rewrite_h5(val_path, 'features', np.zeros((SIZES['val'][0], PCA_DIM + 1), np.float32))
    with pytest.raises(ValueError, match=r'has 8-d features but .*val2014_vgg16_fc7_pca\.h5 '
                                         r'has 9-d features'):
        load_coco_data(directory)
    rewrite_h5(val_path, 'features', np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r'val2014_vgg16_fc7_pca\.h5\[features\]: expected '
                                         r'features of shape \(N_img, D\), got shape \(3,\)'):
        load_coco_data(directory)


def test_missing_dataset_and_non_hdf5_file(tiny):
    directory, _ = tiny
    import h5py
    path = os.path.join(directory, 'train2014_vgg16_fc7_pca.h5')
    with h5py.File(path, 'w') as f:
        f['feats'] = np.zeros((SIZES['train'][0], PCA_DIM))
    with pytest.raises(ValueError, match=r'train2014_vgg16_fc7_pca\.h5: missing dataset\(s\) '
                                         r'features; the file has feats'):
        load_coco_data(directory)
    with open(path, 'w') as f:
        f.write('not an HDF5 file')
    with pytest.raises(OSError, match=r'train2014_vgg16_fc7_pca\.h5: cannot be read as an '
                                      r'HDF5 file'):
        load_coco_data(directory)


def test_url_count_must_match_images(tiny):
    directory, _ = tiny
    with open(os.path.join(directory, 'val2014_urls.txt'), 'a') as f:
        f.write('http://example.com/extra.jpg\n\n')           # the blank line is skipped
    with pytest.raises(ValueError, match=r'val2014_urls\.txt has 5 URLs but .*'
                                         r'val2014_vgg16_fc7_pca\.h5\[features\] has 4 images'):
        load_coco_data(directory)


def test_vocab_errors(tiny):
    directory, _ = tiny
    path = os.path.join(directory, 'coco2014_vocab.json')
    with open(path, 'w') as f:
        json.dump({'idx_to_word': IDX_TO_WORD}, f)
    with pytest.raises(ValueError, match=r'coco2014_vocab\.json: expected a JSON object with '
                                         r'keys "idx_to_word"'):
        load_coco_data(directory)
    word_to_idx = {w: i for i, w in enumerate(IDX_TO_WORD)}
    word_to_idx['cat'], word_to_idx['dog'] = word_to_idx['dog'], word_to_idx['cat']
    with open(path, 'w') as f:
        json.dump({'idx_to_word': IDX_TO_WORD, 'word_to_idx': word_to_idx}, f)
    with pytest.raises(ValueError, match='word_to_idx is not the inverse of idx_to_word'):
        load_coco_data(directory)
