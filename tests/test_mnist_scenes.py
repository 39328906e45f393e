"""Tests for mnist_scenes.py (the MNIST scenes captioning dataset) and scene_encoder.py
(its image encoder, and the scenes with its features).

Most tests run on a synthetic MNIST made here (rectangles of ink, labels at random), so
they need no data and run in seconds. The tests marked `real MNIST` load MNIST through
$HANDGRAD_DATA (CI sets it) and skip with a reason when it is not there.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import mnist_scenes
import scene_encoder
from data import datasets
from gradient_check import eval_numerical_gradient, rel_error
from mnist_scenes import (
    CANVAS_SIZE,
    CAPTION_LENGTH,
    CAPTIONS_PER_IMAGE,
    IDX_TO_WORD,
    MAX_CAPTION_WORDS,
    SIZE_HEIGHTS,
    WORD_TO_IDX,
    load_mnist_scenes,
)
from scene_encoder import load_scene_dataset
from sequential import Affine, Conv, Flatten, ReLU, Sequential

TINY = (24, 8, 8)              # train / val / test scenes of the end-to-end tests
TINY_EPOCHS = (1, 1)           # encoder epochs of the end-to-end tests
COUNT_OF = {'two': 2, 'three': 3, 'four': 4}


def synthetic_mnist(seed=0, n_train=5100, n_test=300):
    """MNIST-shaped arrays: each image one random rectangle of ink (values 1..255) in a
    black 28x28 frame, labels at random; 5,100 train images so that the split's last
    5,000 (val) and first 100 (train) are both there."""
    rng = np.random.default_rng(seed)

    def images(n):
        X = np.zeros((n, 28, 28), dtype=np.uint8)
        heights, widths = rng.integers(8, 21, n), rng.integers(3, 19, n)
        tops, lefts = rng.integers(0, 28 - heights + 1), rng.integers(0, 28 - widths + 1)
        for x, t, l, h, w in zip(X, tops, lefts, heights, widths):
            x[t:t + h, l:l + w] = rng.integers(1, 256, (h, w))
        return X

    return (images(n_train), rng.integers(0, 10, n_train).astype(np.uint8),
            images(n_test), rng.integers(0, 10, n_test).astype(np.uint8))


@pytest.fixture(scope='module')
def fake_mnist():
    return synthetic_mnist()


@pytest.fixture(scope='module')
def scenes(fake_mnist):
    X, y, _, _ = fake_mnist
    return mnist_scenes.generate_scenes(X, y, np.arange(100), 300, seed=3, split_number=0)


@pytest.fixture
def patched_mnist(monkeypatch, fake_mnist):
    """load_mnist_scenes and load_scene_dataset read the synthetic MNIST instead of the
    real one."""
    monkeypatch.setattr(mnist_scenes, 'load_mnist', lambda data_dir=None: fake_mnist)
    monkeypatch.setattr(scene_encoder, 'load_mnist', lambda data_dir=None: fake_mnist)


def real_mnist():
    if not os.environ.get(datasets.DATA_ENV):
        pytest.skip('real MNIST: $HANDGRAD_DATA is not set (CI sets it to the shared data)')
    try:
        datasets.find_dataset_dir('mnist')
    except datasets.DatasetNotFoundError:
        pytest.skip('real MNIST: no MNIST files under $HANDGRAD_DATA')
    return datasets.load_mnist()


def valid(scenes, i):
    """Digits of scene i: labels, sizes, boxes without the -1 padding."""
    k = scenes['num_digits'][i]
    return scenes['labels'][i, :k], scenes['sizes'][i, :k], scenes['boxes'][i, :k]


# ----------------------------------------------------------------------------- drawing

def test_resize_keeps_constants_and_shapes():
    image = np.full((20, 9), 200, dtype=np.uint8)
    for height, width in [(12, 5), (28, 13), (20, 9), (1, 1)]:
        out = mnist_scenes.resize_image(image, height, width)
        assert out.shape == (height, width) and out.dtype == np.float32
        np.testing.assert_allclose(out, 200, rtol=1e-6)
    # halving a 2x2 checkerboard of 2x2 blocks averages each block
    board = np.kron([[0, 255], [255, 0]], np.ones((2, 2)))
    np.testing.assert_allclose(mnist_scenes.resize_image(board, 2, 2), [[0, 255], [255, 0]])


def test_layouts_respect_border_gap_order_margin_and_sizes(scenes):
    assert set(np.unique(scenes['num_digits'])) == {2, 3, 4}
    for i in range(len(scenes['images'])):
        labels, sizes, boxes = valid(scenes, i)
        x0, y0, x1, y1 = boxes.T.astype(int)
        assert (x0 >= mnist_scenes.BORDER).all() and (y0 >= mnist_scenes.BORDER).all()
        assert (x1 <= CANVAS_SIZE - mnist_scenes.BORDER).all()
        assert (y1 <= CANVAS_SIZE - mnist_scenes.BORDER).all()
        for j, size in enumerate(sizes):
            low, high = SIZE_HEIGHTS[size]
            assert low <= y1[j] - y0[j] <= high
        centre_x, centre_y = x0 + x1, y0 + y1          # twice the centres
        assert (np.diff(centre_x) > 0).all(), 'digits are stored left to right'
        for a in range(len(labels)):
            for b in range(a + 1, len(labels)):
                gap_x = max(x0[b] - x1[a], x0[a] - x1[b])
                gap_y = max(y0[b] - y1[a], y0[a] - y1[b])
                assert max(gap_x, gap_y) >= mnist_scenes.GAP
                assert abs(centre_x[a] - centre_x[b]) >= 2 * mnist_scenes.ORDER_MARGIN
                assert abs(centre_y[a] - centre_y[b]) >= 2 * mnist_scenes.ORDER_MARGIN
        # ink only inside the boxes
        inside = np.zeros((CANVAS_SIZE, CANVAS_SIZE), dtype=bool)
        for bx0, by0, bx1, by1 in boxes:
            inside[by0:by1, bx0:bx1] = True
        assert not scenes['images'][i][~inside].any()
        assert all(scenes['images'][i][by0:by1, bx0:bx1].any() for bx0, by0, bx1, by1 in boxes)
    assert (scenes['labels'][scenes['labels'] >= 0] == np.asarray(
        [l for i in range(len(scenes['images'])) for l in valid(scenes, i)[0]])).all()


def test_scenes_are_deterministic_and_prefix_stable(fake_mnist):
    X, y, _, _ = fake_mnist
    a = mnist_scenes.generate_scenes(X, y, np.arange(100), 12, seed=5, split_number=0)
    b = mnist_scenes.generate_scenes(X, y, np.arange(100), 12, seed=5, split_number=0)
    prefix = mnist_scenes.generate_scenes(X, y, np.arange(100), 4, seed=5, split_number=0)
    other = mnist_scenes.generate_scenes(X, y, np.arange(100), 12, seed=6, split_number=0)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a[key][:4], prefix[key])
    assert not np.array_equal(a['images'], other['images'])


def test_sources_come_from_the_pool_and_render_the_scene(fake_mnist):
    X, y, _, _ = fake_mnist
    pool = np.arange(5000, 5100)
    scenes = mnist_scenes.generate_scenes(X, y, pool, 20, seed=0, split_number=1)
    for i in range(20):
        k = scenes['num_digits'][i]
        sources = scenes['sources'][i, :k]
        assert np.isin(sources, pool).all() and (scenes['sources'][i, k:] == -1).all()
        np.testing.assert_array_equal(scenes['labels'][i, :k], y[sources])
        np.testing.assert_array_equal(
            mnist_scenes.render_scene(X[sources], scenes['boxes'][i, :k]), scenes['images'][i])


# ----------------------------------------------------------------------------- captions

def test_vocabulary_is_small_fixed_and_round_trips(scenes):
    assert IDX_TO_WORD[:4] == ['<NULL>', '<START>', '<END>', '<UNK>']
    assert IDX_TO_WORD[4:14] == [str(d) for d in range(10)]
    assert len(IDX_TO_WORD) == len(set(IDX_TO_WORD)) < 100
    assert all(WORD_TO_IDX[w] == i for i, w in enumerate(IDX_TO_WORD))
    captions, image_idxs = mnist_scenes.caption_scenes(scenes)
    assert captions.shape == (len(scenes['images']) * CAPTIONS_PER_IMAGE, CAPTION_LENGTH)
    assert captions.dtype == np.int32 and image_idxs.dtype == np.int32
    np.testing.assert_array_equal(image_idxs, np.arange(len(captions)) // CAPTIONS_PER_IMAGE)
    assert WORD_TO_IDX['<UNK>'] not in captions
    for i in range(len(scenes['images'])):
        words = mnist_scenes.scene_captions(*valid(scenes, i))
        for k, caption in enumerate(words):
            encoded = captions[CAPTIONS_PER_IMAGE * i + k]
            assert mnist_scenes.decode_caption(encoded) == caption
            np.testing.assert_array_equal(mnist_scenes.encode_caption(caption), encoded)
    assert (mnist_scenes.encode_caption(['a', 'zebra'])[1:4]
            == [WORD_TO_IDX['a'], WORD_TO_IDX['<UNK>'], WORD_TO_IDX['<END>']]).all()
    with pytest.raises(ValueError, match='does not fit'):
        mnist_scenes.encode_caption(['a'] * (MAX_CAPTION_WORDS + 1))


def test_captions_are_start_end_null_padded(scenes):
    captions, _ = mnist_scenes.caption_scenes(scenes)
    assert (captions[:, 0] == WORD_TO_IDX['<START>']).all()
    for row in captions:
        end = np.flatnonzero(row == WORD_TO_IDX['<END>'])
        assert len(end) == 1 and 3 <= end[0] <= MAX_CAPTION_WORDS + 1
        assert (row[end[0] + 1:] == WORD_TO_IDX['<NULL>']).all()
        assert (row[1:end[0]] >= 4).all()            # words only, no special tokens


def relation_holds(relation, box_a, box_b):
    """Independent check of 'a <relation> b' on (x0, y0, x1, y1) boxes."""
    ax0, ay0, ax1, ay1 = box_a
    bx0, by0, bx1, by1 = box_b
    return {'left': ax1 <= bx0, 'right': bx1 <= ax0,
            'above': ay1 <= by0, 'below': by1 <= ay0}[relation]


def parse_caption(words):
    """Read a caption back: ('list', axis, count, digits) or
    ('relation', (size, digit), relation, (size, digit), other digits)."""
    if words[1] == 'digits':
        assert words[2] == 'from' and words[4] == 'to' and words[6] == ':'
        axis = {('left', 'right'): 'x', ('top', 'bottom'): 'y'}[(words[3], words[5])]
        listed = words[7:]
        assert listed[1::2] == [','] * (len(listed) // 2 - 1) + ['and']
        return 'list', axis, COUNT_OF[words[0]], listed[0::2]
    assert words[0] == 'a'
    first = (words[1], words[2])
    if words[3] == 'to':
        assert words[4] == 'the' and words[6] == 'of'
        relation, rest = words[5], words[7:]
    else:
        relation, rest = words[3], words[4:]
    assert rest[0] == 'a'
    second, rest = (rest[1], rest[2]), rest[3:]
    others = [w for w in rest if w.isdigit()]
    articles = ['an' if digit == '8' else 'a' for digit in others]
    assert rest == ([] if not others else ['and', articles[0], others[0]] if len(others) == 1
                    else [',', articles[0], others[0], 'and', articles[1], others[1]])
    return 'relation', first, relation, second, others


def test_captions_mention_exactly_the_digits_and_a_true_relation(scenes):
    size_of = {'small': 0, 'large': 1}
    seen_relations = set()
    for i in range(len(scenes['images'])):
        labels, sizes, boxes = valid(scenes, i)
        digits = sorted(str(d) for d in labels)
        captions = mnist_scenes.scene_captions(labels, sizes, boxes)
        assert len({' '.join(c) for c in captions}) >= 3, 'at least 3 distinct captions'
        assert all(len(c) <= MAX_CAPTION_WORDS for c in captions)
        for words in captions:
            assert sorted(w for w in words if w.isdigit()) == digits, (words, labels)
            parsed = parse_caption(words)
            if parsed[0] == 'list':
                _, axis, count, listed = parsed
                assert count == len(labels)
                centre = boxes[:, 0] + boxes[:, 2] if axis == 'x' else boxes[:, 1] + boxes[:, 3]
                assert len(set(centre.tolist())) == len(labels), 'order is never a tie'
                assert listed == [str(labels[j]) for j in np.argsort(centre)]
            else:
                _, (size_a, digit_a), relation, (size_b, digit_b), _ = parsed
                seen_relations.add(relation)
                assert any(
                    labels[a] == int(digit_a) and sizes[a] == size_of[size_a]
                    and labels[b] == int(digit_b) and sizes[b] == size_of[size_b]
                    and relation_holds(relation, boxes[a], boxes[b])
                    for a in range(len(labels)) for b in range(len(labels)) if a != b), words
    assert seen_relations == {'left', 'right', 'above', 'below'}


def test_spatial_relation_cases():
    left, right = (0, 0, 10, 10), (14, 2, 20, 12)
    assert mnist_scenes.spatial_relation(left, right) == 'left'
    assert mnist_scenes.spatial_relation(right, left) == 'right'
    top, bottom = (0, 0, 10, 10), (3, 20, 12, 30)
    assert mnist_scenes.spatial_relation(top, bottom) == 'above'
    assert mnist_scenes.spatial_relation(bottom, top) == 'below'
    # diagonal: apart by 4 along x and by 9 along y -> the larger gap, y
    assert mnist_scenes.spatial_relation((0, 0, 10, 10), (14, 19, 20, 25)) == 'above'
    with pytest.raises(ValueError, match='overlap'):
        mnist_scenes.spatial_relation((0, 0, 10, 10), (5, 5, 15, 15))


def test_captions_of_a_hand_made_scene():
    # a small 3 at the left, a large 7 at the top right, a small 1 below the 7; the 7
    # and the 1 are the tallest (26 and 16 px; the 3 is 14 px) and apart along y only
    labels, sizes = [3, 7, 1], [0, 1, 0]
    boxes = [[4, 30, 12, 44], [30, 4, 46, 30], [36, 38, 42, 54]]
    assert mnist_scenes.scene_captions(labels, sizes, boxes) == [
        'three digits from left to right : 3 , 7 and 1'.split(),
        'three digits from top to bottom : 7 , 3 and 1'.split(),
        'a large 7 above a small 1 and a 3'.split(),
        'a small 1 below a large 7 and a 3'.split()]


# ----------------------------------------------------------------------------- encoder

def test_encoder_targets_by_hand():
    labels = np.array([[3, 7, -1, -1]])
    sizes = np.array([[0, 1, -1, -1]])
    # 3: box x 4..16, y 4..18 -> core x [7, 13), y [7.5, 14.5) -> cells rows 0-1, cols 0-1
    # 7: box x 30..50, y 20..48 -> core x [35, 45), y [27, 41) -> rows 3-5, cols 4-5
    boxes = np.array([[[4, 4, 16, 18], [30, 20, 50, 48], [-1] * 4, [-1] * 4]])
    expected = np.full((8, 8), 20)
    expected[0:2, 0:2] = 3 * 2 + 0
    expected[3:6, 4:6] = 7 * 2 + 1
    np.testing.assert_array_equal(scene_encoder.cell_targets(labels, sizes, boxes),
                                  expected.reshape(1, 64))
    # left to right: 3 small, 7 large, none, none; top to bottom: 3 (centre y 11), 7 (34)
    np.testing.assert_array_equal(scene_encoder.reading_targets(labels, sizes, boxes),
                                  [[6, 15, 20, 20, 3, 7, 10, 10]])


@pytest.mark.parametrize('kind', ['grid', 'vector'])
def test_slot_classifier_gradients(kind):
    if kind == 'grid':      # class maps over grid cells, as the detector
        net = Sequential((2, 4, 4), [Conv(3, 3, pad='same'), Flatten()], dtype=np.float64,
                         seed=0)
        groups = [(16, 3, True)]
    else:                   # two groups of slots, as the reader
        net = Sequential((2, 4, 4), [Affine(5), ReLU(), Affine(2 * 3 + 2 * 4)],
                         dtype=np.float64, seed=0)
        groups = [(2, 3, False), (2, 4, False)]
    model = scene_encoder.SlotClassifier(net, groups)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 2, 4, 4))
    y = np.concatenate([rng.integers(0, c, (3, s)) for s, c, _ in groups], axis=1)
    loss, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    for name, param in model.params.items():
        numeric = eval_numerical_gradient(lambda _: model.loss(X, y)[0], param, verbose=False)
        assert rel_error(numeric, grads[name]) < 1e-6, name
    # the loss is the sum over slots of the cross-entropies, averaged over the batch
    scores = model.loss(X)
    blocks = model.slot_scores(scores)
    expected, first = 0.0, 0
    for (slots, _, _), block in zip(groups, blocks):
        log_p = block - np.log(np.exp(block).sum(2, keepdims=True))
        expected -= np.take_along_axis(log_p, y[:, first:first + slots, None], 2).sum() / 3
        first += slots
    assert np.isclose(loss, expected)


# ----------------------------------------------------------------------------- loading

SCENES_FILE = 'mnist_scenes_seed{}_24-8-8.npz'
FEATURES_FILE = 'scene_features_seed{}_24-8-8_encoder1-1.npz'


def no_generation(*args, **kwargs):
    raise AssertionError('the cache should have been used')


def assert_scenes(data, counts):
    """The keys, shapes and dtypes of load_mnist_scenes's dict (scenes and captions)."""
    K, T = CAPTIONS_PER_IMAGE, CAPTION_LENGTH
    for split, N in zip(mnist_scenes.SPLITS, counts):
        expected = {
            'images': ((N, 64, 64), np.uint8), 'captions': ((N * K, T), np.int32),
            'image_idxs': ((N * K,), np.int32), 'labels': ((N, 4), np.int8),
            'sizes': ((N, 4), np.int8), 'boxes': ((N, 4, 4), np.int16),
            'num_digits': ((N,), np.int8), 'sources': ((N, 4), np.int32)}
        for name, (shape, dtype) in expected.items():
            value = data[f'{split}_{name}']
            assert value.shape == shape and value.dtype == dtype, (split, name, value.shape)
        np.testing.assert_array_equal(data[f'{split}_image_idxs'], np.repeat(np.arange(N), K))
        references = data[f'{split}_references']
        assert len(references) == N and all(len(r) == K for r in references)
        assert references[0][0] == mnist_scenes.decode_caption(data[f'{split}_captions'][0])
    assert data['idx_to_word'] == IDX_TO_WORD and data['word_to_idx'] == WORD_TO_IDX


def assert_dataset(data, counts):
    """The scenes and the features of load_scene_dataset's dict."""
    assert_scenes(data, counts)
    for split, N in zip(mnist_scenes.SPLITS, counts):
        for name, shape in (('features', (N, 256)), ('spatial_features', (N, 64, 64))):
            value = data[f'{split}_{name}']
            assert value.shape == shape and value.dtype == np.float32, (split, name, value.shape)
            assert np.isfinite(value).all()
    # the feature scale: root mean square 1 on the train scenes (float16 storage rounds)
    for name in ('features', 'spatial_features'):
        rms = np.sqrt(np.mean(data['train_' + name].astype(np.float64) ** 2))
        assert abs(rms - 1) < 1e-2, (name, rms)
    assert set(data['encoder_accuracy']) == {'encoder_train', *mnist_scenes.SPLITS}
    assert 0 <= data['encoder_accuracy']['test']['reading_slots'] <= 1
    assert data['info']['grid'] == [8, 8] and data['info']['seed'] == 0
    # the stored parameters rebuild the encoder: same features, same accuracies
    encoder = scene_encoder.SceneEncoder(params=data['encoder_params'])
    test_scenes = {key: data['test_' + key] for key in ('images', 'labels', 'sizes', 'boxes')}
    assert encoder.accuracy(test_scenes) == data['encoder_accuracy']['test']
    pooled, spatial = encoder.features(data['test_images'][:3])
    scales = data['info']['feature_scales']
    np.testing.assert_allclose(pooled / scales['features'], data['test_features'][:3],
                               rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(spatial / scales['spatial_features'],
                               data['test_spatial_features'][:3], rtol=2e-3, atol=2e-3)


def test_the_dataset_trains_nothing(tmp_path, patched_mnist, monkeypatch):
    """mnist_scenes.py only draws and captions: loading it imports no model, and the
    scenes of load_scene_dataset are exactly load_mnist_scenes's."""
    code = ("import sys, mnist_scenes\n"
            "print(sorted(m for m in ('scene_encoder', 'solver', 'sequential', 'cnn', 'layers')"
            " if m in sys.modules))")
    run = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert run.returncode == 0 and run.stdout.strip() == '[]', run.stdout + run.stderr
    train_encoder = scene_encoder.train_encoder
    monkeypatch.setattr(scene_encoder, 'train_encoder', no_generation)
    scenes = load_mnist_scenes(size=TINY, cache_dir=tmp_path, verbose=False)
    assert_scenes(scenes, TINY)
    assert not any('features' in key or 'encoder' in key for key in scenes)
    assert os.listdir(tmp_path) == [SCENES_FILE.format(0)]
    monkeypatch.setattr(scene_encoder, 'train_encoder', train_encoder)
    monkeypatch.setattr(mnist_scenes, 'build_mnist_scenes', no_generation)   # cached above
    data = load_scene_dataset(size=TINY, cache_dir=tmp_path, encoder_epochs=TINY_EPOCHS,
                              verbose=False)
    for key, value in scenes.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(data[key], value, err_msg=key)
    assert data['train_references'] == scenes['train_references']


def test_load_shapes_dtypes_and_determinism(tmp_path, patched_mnist):
    first = load_scene_dataset(size=TINY, cache_dir=tmp_path / 'a', encoder_epochs=TINY_EPOCHS,
                               verbose=False)
    assert_dataset(first, TINY)
    second = load_scene_dataset(size=TINY, cache_dir=tmp_path / 'b',
                                encoder_epochs=TINY_EPOCHS, verbose=False)
    for key, value in first.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, second[key], err_msg=key)
    assert first['train_references'] == second['train_references']
    other = load_scene_dataset(seed=1, size=TINY, cache_dir=tmp_path / 'a',
                               encoder_epochs=TINY_EPOCHS, verbose=False)
    assert not np.array_equal(other['train_images'], first['train_images'])
    assert sorted(os.listdir(tmp_path / 'a')) == [
        SCENES_FILE.format(0), SCENES_FILE.format(1), FEATURES_FILE.format(0),
        FEATURES_FILE.format(1)]


def test_splits_use_disjoint_mnist_images(tmp_path, patched_mnist, fake_mnist):
    data = load_mnist_scenes(size=TINY, cache_dir=tmp_path, verbose=False)
    X_train, _, X_test, _ = fake_mnist
    num_train = len(X_train) - mnist_scenes.NUM_VAL_DIGITS
    ranges = {'train': (0, num_train), 'val': (num_train, len(X_train)),
              'test': (0, len(X_test))}
    for split, (low, high) in ranges.items():
        sources = data[f'{split}_sources']
        used = sources[sources >= 0]
        assert ((low <= used) & (used < high)).all(), split
        source_images = X_test if split == 'test' else X_train
        for i in range(3):
            k = data[f'{split}_num_digits'][i]
            np.testing.assert_array_equal(
                mnist_scenes.render_scene(source_images[sources[i, :k]],
                                          data[f'{split}_boxes'][i, :k]),
                data[f'{split}_images'][i])
    # the encoder's own scenes: train-split digits, none of the dataset's scenes
    extra = mnist_scenes.extra_train_scenes(fake_mnist, 30, seed=0)
    used = extra['sources'][extra['sources'] >= 0]
    assert ((0 <= used) & (used < num_train)).all()
    assert not any((image == data['train_images']).all(axis=(1, 2)).any()
                   for image in extra['images'])


def test_second_call_loads_the_cache(tmp_path, patched_mnist, monkeypatch):
    first = load_scene_dataset(size=TINY, cache_dir=tmp_path, encoder_epochs=TINY_EPOCHS,
                               verbose=False)
    for module, name in ((mnist_scenes, 'build_mnist_scenes'), (mnist_scenes, 'load_mnist'),
                         (scene_encoder, 'build_scene_features'), (scene_encoder, 'load_mnist')):
        monkeypatch.setattr(module, name, no_generation)
    again = load_scene_dataset(size=TINY, cache_dir=tmp_path, encoder_epochs=TINY_EPOCHS,
                               verbose=False)
    np.testing.assert_array_equal(again['test_spatial_features'], first['test_spatial_features'])
    assert again['info'] == first['info']
    assert [name for name in os.listdir(tmp_path) if name.endswith('.part')] == []


def test_a_cache_in_handgrad_data_is_used(tmp_path, patched_mnist, monkeypatch):
    load_scene_dataset(size=TINY, cache_dir=tmp_path / 'cache', encoder_epochs=TINY_EPOCHS,
                       verbose=False)
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(mnist_scenes, 'build_mnist_scenes', no_generation)
    monkeypatch.setattr(scene_encoder, 'build_scene_features', no_generation)
    data = load_scene_dataset(size=TINY, encoder_epochs=TINY_EPOCHS, verbose=False)
    assert len(data['test_images']) == TINY[2]


def counting(monkeypatch, module, name):
    """Replace module.name by a wrapper that records its calls; returns the record."""
    calls, real = [], getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_cache_is_regenerated_when_the_version_changes(tmp_path, patched_mnist, monkeypatch,
                                                       capsys):
    def load():
        load_scene_dataset(size=TINY, cache_dir=tmp_path, encoder_epochs=TINY_EPOCHS,
                           verbose=True)

    load()
    scene_builds = counting(monkeypatch, mnist_scenes, 'build_mnist_scenes')
    feature_builds = counting(monkeypatch, scene_encoder, 'build_scene_features')
    load()
    assert scene_builds == [] and feature_builds == []
    # new scenes: both caches are made again (the features' key holds the scenes' key)
    monkeypatch.setattr(mnist_scenes, 'CACHE_VERSION', mnist_scenes.CACHE_VERSION + 1)
    capsys.readouterr()
    load()
    assert len(scene_builds) == 1 and len(feature_builds) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / SCENES_FILE.format(0)} was made by another version" in err
    assert f"{tmp_path / FEATURES_FILE.format(0)} was made by another version" in err
    # a new encoder: the features only
    monkeypatch.setattr(scene_encoder, 'CACHE_VERSION', scene_encoder.CACHE_VERSION + 1)
    load()
    assert len(scene_builds) == 1 and len(feature_builds) == 2
    load()
    assert len(scene_builds) == 1 and len(feature_builds) == 2, \
        'the regenerated caches replaced the old ones'
    assert sorted(os.listdir(tmp_path)) == [SCENES_FILE.format(0), FEATURES_FILE.format(0)]


def test_an_unreadable_cache_is_generated_again(tmp_path, patched_mnist, capsys):
    (tmp_path / SCENES_FILE.format(0)).write_bytes(b'not an npz file')
    data = load_mnist_scenes(size=TINY, cache_dir=tmp_path, verbose=True)
    err = capsys.readouterr().err
    assert f"ignoring unreadable cache {tmp_path / SCENES_FILE.format(0)}" in err
    assert "no cache" in err and "another version" not in err
    np.testing.assert_array_equal(
        load_mnist_scenes(size=TINY, cache_dir=tmp_path, verbose=False)['train_images'],
        data['train_images'])


def test_cache_directories_and_read_only_fallback(tmp_path, monkeypatch, patched_mnist):
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / 'env'))
    repo_cache = os.path.join(datasets.REPO_DATA_DIR, 'cache')
    assert mnist_scenes.cache_dirs() == [str(tmp_path / 'env' / 'cache'), repo_cache]
    assert mnist_scenes.cache_dirs(for_writing=True) == [repo_cache], \
        '$HANDGRAD_DATA (shared data in CI) is searched, never written'
    assert mnist_scenes.cache_dirs(data_dir=tmp_path / 'd') == [
        str(tmp_path / 'd' / 'cache'), str(tmp_path / 'env' / 'cache'), repo_cache]
    assert mnist_scenes.cache_dirs(data_dir=tmp_path / 'd', for_writing=True) == [
        str(tmp_path / 'd' / 'cache'), repo_cache]
    for for_writing in (False, True):
        assert mnist_scenes.cache_dirs(cache_dir=tmp_path / 'c', for_writing=for_writing) \
            == [str(tmp_path / 'c')]
    # a first directory that cannot be written (here a file where a directory should
    # be; in CI the shared data folder is read-only): the caches go to the next one
    blocked, writable = tmp_path / 'blocked', tmp_path / 'rw'
    blocked.write_text('not a directory')
    monkeypatch.setattr(mnist_scenes, 'cache_dirs', lambda data_dir=None, cache_dir=None,
                        for_writing=False: [str(blocked), str(writable)])
    load_scene_dataset(size=TINY, encoder_epochs=TINY_EPOCHS, verbose=False)
    assert sorted(os.listdir(writable)) == [SCENES_FILE.format(0), FEATURES_FILE.format(0)]


def test_bad_sizes_are_rejected():
    for load in (load_mnist_scenes, load_scene_dataset):
        with pytest.raises(ValueError, match='size must be one of'):
            load(size='huge')
        with pytest.raises(ValueError, match='three positive counts'):
            load(size=(10, 0, 5))


# ----------------------------------------------------------------------------- real MNIST

def test_real_mnist_scenes_do_not_leak(tmp_path):
    """real MNIST: test scenes are drawn with MNIST test images, train and val scenes with
    the first 55,000 and the last 5,000 MNIST train images."""
    X_train, _, X_test, _ = real_mnist()
    data = load_scene_dataset(size=TINY, cache_dir=tmp_path, encoder_epochs=TINY_EPOCHS,
                              verbose=False)
    assert_dataset(data, TINY)
    assert data['train_sources'].max() < 55000
    val_sources = data['val_sources'][data['val_sources'] >= 0]
    assert (val_sources >= 55000).all() and (val_sources < 60000).all()
    for split, images in (('train', X_train), ('val', X_train), ('test', X_test)):
        for i in range(len(data[f'{split}_images'])):
            k = data[f'{split}_num_digits'][i]
            sources = data[f'{split}_sources'][i, :k]
            np.testing.assert_array_equal(
                mnist_scenes.render_scene(images[sources], data[f'{split}_boxes'][i, :k]),
                data[f'{split}_images'][i])
    # and the same indices into the other MNIST array would draw other digits
    k = data['test_num_digits'][0]
    assert not np.array_equal(
        mnist_scenes.render_scene(X_train[data['test_sources'][0, :k]],
                                  data['test_boxes'][0, :k]), data['test_images'][0])
