"""MNIST scenes: a built-in, offline captioning dataset of real digits and our own features.

The scenes are drawn from MNIST digits; their features come from a CNN trained here with
handgrad's models (scene_encoder.py). So it lives beside the models, not in data/, which
only loads files.

    from mnist_scenes import load_mnist_scenes
    data = load_mnist_scenes()              # first call generates and caches (~2.6 min)
    data = load_mnist_scenes(size='small')  # 1,000 / 200 / 200 scenes, for --quick runs

    data['train_captions'][0]   # int32 (18,): <START> two digits from left to right ...
    data['train_image_idxs']    # int32 (40000,): the scene of each caption
    data['train_features']      # float32 (10000, 256): one vector per scene (plain decoders)
    data['train_spatial_features']  # float32 (10000, 64, 64): 8x8 grid x 64 channels (attention)
    data['train_images']        # uint8 (10000, 64, 64): the scenes themselves, for figures

Scenes
------
Each scene is a 64 x 64 grayscale canvas (uint8, black background, as MNIST) holding 2, 3
or 4 real MNIST digits (each count equally likely). A digit is cut to the bounding box of
its ink (pixels > 0) and resized, keeping its aspect ratio, to an ink height of

    small: 12 to 16 px        large: 22 to 28 px

(each drawn with probability 1/2, but a layout that does not fit is redrawn with new
sizes, so fewer digits end up large: 43% overall, 36% in 4-digit scenes)

with a bilinear resize computed at twice the resolution and averaged 2x2 (antialiased;
NumPy only). Digits are placed at uniformly random positions, at least 2 px from the
canvas border, and never overlap: any two ink boxes are at least 2 px apart along x or
along y. Also, any two digits' box centres differ by at least 4 px along x AND along y, so
that the left-to-right and the top-to-bottom orders are never a tie. (Placement tries
random positions until all of that holds; after many failures it draws new sizes.)

Splits and leakage: MNIST's 60,000 training images are split as in data.train_val_split:
train scenes use only the first 55,000, val scenes only the last 5,000, and test scenes
only MNIST's 10,000 test images. `<split>_sources` records, per scene, the MNIST index of
each digit (into the MNIST train array for train and val, into the MNIST test array for
test), so this can be checked; tests/test_mnist_scenes.py does. Digits are drawn uniformly
with replacement from their split's images, so classes are roughly balanced and a scene
may hold the same class twice.

Everything is deterministic given `seed`: scene i of a split comes from its own random
generator, np.random.default_rng([seed, split number, i]), so the 'small' scenes are
exactly the first scenes of the 'default' ones for the same seed.

Captions
--------
Every scene has exactly 4 reference captions, one per template (lower case, space
separated tokens; ':' and ',' are tokens). Digits are written as numerals "0".."9"; counts
as words ("two digits"), so the two never share a token. Example for a small 3 at the
left, half-way down, a large 7 at the top right and a small 1 below the 7, a bit taller
than the 3:

    1. listing left to right:   three digits from left to right : 3 , 7 and 1
    2. listing top to bottom:   three digits from top to bottom : 7 , 3 and 1
    3. relation of the two tallest digits, then the others from left to right:
                                a large 7 above a small 1 and a 3
    4. the same relation the other way round:
                                a small 1 below a large 7 and a 3

- Orders: "left to right" sorts the digits by the x of their box centre, "top to bottom"
  by the y (never tied, see above).
- Relation (templates 3 and 4): the pair is the two tallest digits (on equal height the
  one further left first). Their boxes are separated along x or y (they do not overlap);
  the axis with the larger gap is described: "A to the left of B" means A's box ends
  left of where B's box starts (x1_A <= x0_B), "A above B" means y1_A <= y0_B, and
  "to the right of" / "below" are the mirror images. Template 3 names the left (or top)
  digit first, template 4 the other. Sizes are the size classes "small" / "large". The
  remaining digits follow in left-to-right order: "and a 3" or ", a 3 and an 8"
  ("an" before 8 only there: elsewhere a size word follows the article).
- Length: at most 16 words, so captions are (18,) with <START> and <END>, then <NULL>
  padding. The vocabulary is fixed: <NULL>=0, <START>=1, <END>=2, <UNK>=3 (never used
  by these captions, present for models that expect it), "0".."9" at 4..13, then 21
  words in alphabetical order: 35 words.

Sizes and timing
----------------
    size='default': 10,000 train / 1,000 val / 1,000 test scenes (40,000 / 4,000 / 4,000
                    captions). Chosen so that training the three decoders (rnn, lstm,
                    attention) takes roughly a quarter of an hour on 2 cores: an
                    epoch of all 40,000 captions took about 20 s for an LSTM decoder
                    and 40 s for the attention decoder (hidden size 256, batches of 100).
    size='small':   1,000 / 200 / 200 scenes, for smoke runs (--quick). Its encoder gets
                    only 25 s of training, so its features are weak (on test scenes 30%
                    of the digit cells and 37% of the reading slots right, against 83% and
                    74% for 'default'): for checking that code runs, not for results.
    size=(n_train, n_val, n_test): any other numbers (e.g. tiny sets in tests).

The first call generates the scenes, trains the encoder and extracts the features. On the
project's 2-core machine, for 'default': 11 s of scenes, 128 s of encoder training, 16 s
of features, 2.6 minutes in all (about 150 s of CPU time; up to 3.2 minutes while other
processes shared the machine); for 'small' 28 s. Later calls load
the cache in about a second. (The convolutions run as many small BLAS matrix products;
with OpenBLAS's default 2 threads on a machine that other processes keep busy they can
get several times slower: OPENBLAS_NUM_THREADS=1 avoids that.)

Image features
--------------
A small convolutional network, built with cnn.Sequential and trained here by handgrad
(Solver, Adam), encodes each scene; scene_encoder.py describes it. It is trained on
proxy tasks, not on captions, and then frozen, like the VGG features of the course's COCO
data: first its conv layers learn to tell, for each cell of an 8 x 8 grid over the
canvas, which digit (and size) is centred around there, if any; then its fully connected
layers learn, from that grid, to read the digits left to right (with sizes) and top to
bottom.

- `<split>_spatial_features` (N, 64, 64): the output of its last convolutional block, an
  8 x 8 grid of 64 channels, flattened row-major: position l = row * 8 + col covers canvas
  pixels [8 row, 8 row + 8) x [8 col, 8 col + 8). For attention decoders.
- `<split>_features` (N, 256): its fully connected hidden layer (after the ReLU), the
  analogue of VGG's fc7 vector, computed from the whole grid, so it knows what is where.
  For the plain rnn / lstm decoders.

Each kind is divided by one scalar so that its root-mean-square value over the train
scenes is 1 (a convenient scale for decoders; nothing else is normalized). The cache
stores them as float16 (half the size; relative rounding below 1e-3); they are returned
as float32.

The encoder is trained on scenes of its own: as many as there are train scenes, drawn
like them from the first 55,000 MNIST train images but as another sequence (split number
3 of the seed), never from val or test digits; the val scenes pick its best epochs. So
the captioning train scenes are as new to it as the val and test scenes, and their
features are as good (no better): trained on the captioning train scenes themselves, its
reader got 94% of the slots right there against 73% on val, and decoders would learn
from cleaner features than they are tested on. Its proxy-task accuracies on its own
scenes ('encoder_train') and on each split are in data['encoder_accuracy'].

Determinism: scenes and captions depend only on the seed (and MNIST). The features are
bit-identical for a seed on one machine with one BLAS thread count; other BLAS builds or
thread counts round float32 sums differently, which changes them slightly.

Cache
-----
The result is written once, atomically, to `mnist_scenes_seed<seed>_<size>.npz` in the
first writable of: `cache_dir` if given, else `<data_dir>/cache` (if data_dir is given),
the repo's `data/cache` (ignored by git); about 160 MB for 'default', 20 MB for 'small'.
Loading also searches `$HANDGRAD_DATA/cache`, which is never written (it is often a
shared, read-only folder, as in CI; put a cache there by hand to share it). The
file stores a key made of CACHE_VERSION and every generation parameter; if it does not
match (the code changed), the data is generated again. Bump CACHE_VERSION when changing
how scenes, captions or features are made.

Returned dict (N = scenes, K = 4 captions per scene, per split train / val / test):

    <split>_images            uint8   (N, 64, 64)     the canvases
    <split>_captions          int32   (N*K, 18)       caption k of scene i in row K*i + k
    <split>_image_idxs        int32   (N*K,)          scene of each caption (= row // K)
    <split>_references        list of N lists of K word lists (for bleu.bleu_scores)
    <split>_features          float32 (N, 256)
    <split>_spatial_features  float32 (N, 64, 64)     (N, L, D'), L = 8 x 8 positions
    <split>_labels            int8    (N, 4)   digit classes left to right, -1 padding
    <split>_sizes             int8    (N, 4)   0 small / 1 large, same order, -1 padding
    <split>_boxes             int16   (N, 4, 4) ink boxes (x0, y0, x1, y1), x1/y1 exclusive
    <split>_num_digits        int8    (N,)     2, 3 or 4
    <split>_sources           int32   (N, 4)   MNIST index of each digit, -1 padding
    idx_to_word               list of 35 str;  word_to_idx: dict str -> int
    encoder_accuracy          dict: proxy-task accuracies of the encoder, per split and
                              on its own training scenes ('encoder_train')
    encoder_params            dict of arrays: scene_encoder.SceneEncoder(params=...)
                              rebuilds the encoder (e.g. to encode new canvases)
    info                      dict: seed, counts, grid (8, 8), version, encoder epochs,
                              its accuracy history and summary, feature scales, timings
"""

import hashlib
import json
import os
import sys
import time

import numpy as np

import scene_encoder
from data.datasets import DATA_ENV, REPO_DATA_DIR, load_mnist
from fileio import atomic_path

# Bump when the scenes, captions, vocabulary or features change: old caches regenerate.
CACHE_VERSION = 3

CANVAS_SIZE = 64
MAX_DIGITS = 4
DIGIT_COUNTS = (2, 3, 4)
SIZE_WORDS = ('small', 'large')
SIZE_HEIGHTS = ((12, 16), (22, 28))    # ink height range (inclusive) of each size class
BORDER = 2           # min distance of a digit's ink box from the canvas edge
GAP = 2              # min distance of two ink boxes along x or y
ORDER_MARGIN = 4     # min distance of two box centres along x and along y
PLACEMENT_CANDIDATES = 64   # random layouts tried at once
PLACEMENT_ROUNDS = 8        # batches of candidates before new sizes are drawn

SPLITS = ('train', 'val', 'test')
ENCODER_SPLIT = 'encoder_train'   # scenes the encoder is trained on (train-split digits)
NUM_VAL_DIGITS = 5000       # the last 5,000 MNIST train images, as in train_val_split
SIZES = {
    'default': (10000, 1000, 1000),
    'small': (1000, 200, 200),
}
ENCODER_EPOCHS = {'default': (6, 15), 'small': (10, 15)}   # other sizes: default

CAPTIONS_PER_IMAGE = 4
MAX_CAPTION_WORDS = 16
CAPTION_LENGTH = MAX_CAPTION_WORDS + 2    # with <START> and <END>

NULL, START, END, UNK = '<NULL>', '<START>', '<END>', '<UNK>'
COUNT_WORDS = {2: 'two', 3: 'three', 4: 'four'}
RELATION_WORDS = {'left': ('to', 'the', 'left', 'of'), 'right': ('to', 'the', 'right', 'of'),
                  'above': ('above',), 'below': ('below',)}
OPPOSITE = {'left': 'right', 'right': 'left', 'above': 'below', 'below': 'above'}
_WORDS = sorted({'a', 'an', 'and', 'digits', 'from', 'to', 'top', 'bottom', 'left', 'right', ':',
                 ',', *SIZE_WORDS, *COUNT_WORDS.values(),
                 *(w for words in RELATION_WORDS.values() for w in words)})
IDX_TO_WORD = [NULL, START, END, UNK] + [str(d) for d in range(10)] + _WORDS
WORD_TO_IDX = {word: i for i, word in enumerate(IDX_TO_WORD)}


# ----------------------------------------------------------------------------- drawing

def resize_image(image, height, width):
    """
    Resize a grayscale image with bilinear interpolation, antialiased: the image is
    sampled bilinearly at twice the target resolution (pixel centres at (i + 0.5) *
    scale - 0.5, edges clamped) and each 2 x 2 block averaged.

    Inputs:
    - image: array of shape (h, w).
    - height, width: ints >= 1, the output size.

    Returns:
    - out: float32 array of shape (height, width), in the input's value range.
    """
    image = np.asarray(image, dtype=np.float32)

    def sample_points(n_out, n_in):
        s = (np.arange(2 * n_out) + 0.5) * (n_in / (2 * n_out)) - 0.5
        s = np.clip(s, 0, n_in - 1)
        i0 = np.floor(s).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (s - i0).astype(np.float32)

    y0, y1, fy = sample_points(height, image.shape[0])
    x0, x1, fx = sample_points(width, image.shape[1])
    rows = image[y0] * (1 - fy)[:, None] + image[y1] * fy[:, None]      # (2 height, w)
    fine = rows[:, x0] * (1 - fx) + rows[:, x1] * fx                   # (2 height, 2 width)
    return fine.reshape(height, 2, width, 2).mean(axis=(1, 3))


def ink_box(image):
    """(top, bottom, left, right) of the pixels > 0 of an image, bottom/right exclusive;
    the whole image if it is blank."""
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    if rows.size == 0:
        return 0, image.shape[0], 0, image.shape[1]
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _digit_sprite(image, height, width):
    top, bottom, left, right = ink_box(image)
    return resize_image(image[top:bottom, left:right], height, width)


def render_scene(digit_images, boxes, canvas_size=CANVAS_SIZE):
    """
    Draw digits on a black canvas.

    Inputs:
    - digit_images: sequence of k MNIST images (28, 28), uint8.
    - boxes: int array (k, 4) of (x0, y0, x1, y1), x1 and y1 exclusive: digit j's ink
      is cropped and resized to fill box j.

    Returns:
    - canvas: uint8 array (canvas_size, canvas_size). Overlaps would keep the brighter
      pixel; the scenes of this module never overlap.
    """
    canvas = np.zeros((canvas_size, canvas_size), dtype=np.float32)
    for image, (x0, y0, x1, y1) in zip(digit_images, boxes):
        sprite = _digit_sprite(image, y1 - y0, x1 - x0)
        np.maximum(canvas[y0:y1, x0:x1], sprite, out=canvas[y0:y1, x0:x1])
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def _layout_ok(x0, y0, widths, heights):
    """Which candidate layouts (rows of x0, y0: (C, k)) satisfy GAP and ORDER_MARGIN."""
    x1, y1 = x0 + widths, y0 + heights
    # pairwise (C, k, k): separation of box i from box j along each axis
    sep_x = np.maximum(x0[:, None, :] - x1[:, :, None], x0[:, :, None] - x1[:, None, :])
    sep_y = np.maximum(y0[:, None, :] - y1[:, :, None], y0[:, :, None] - y1[:, None, :])
    cx2, cy2 = 2 * x0 + widths, 2 * y0 + heights     # twice the centres: integers
    dcx = np.abs(cx2[:, None, :] - cx2[:, :, None])
    dcy = np.abs(cy2[:, None, :] - cy2[:, :, None])
    good = (((sep_x >= GAP) | (sep_y >= GAP))
            & (dcx >= 2 * ORDER_MARGIN) & (dcy >= 2 * ORDER_MARGIN))
    k = widths.shape[-1]
    pairs = np.triu(np.ones((k, k), dtype=bool), 1)
    return good[:, pairs].all(axis=1)


def sample_layout(rng, ink_shapes):
    """
    Random sizes and non-overlapping positions for k digits (see the module docstring).

    Inputs:
    - rng: np.random.Generator.
    - ink_shapes: int array (k, 2), (height, width) of each digit's ink box in its image.

    Returns a tuple of:
    - boxes: int array (k, 4) of (x0, y0, x1, y1), x1/y1 exclusive.
    - size_classes: int array (k,), 0 small / 1 large.
    """
    ink_shapes = np.asarray(ink_shapes)
    k = len(ink_shapes)
    lows, highs = np.array(SIZE_HEIGHTS).T
    while True:
        size_classes = rng.integers(0, len(SIZE_WORDS), k)
        heights = rng.integers(lows[size_classes], highs[size_classes] + 1)
        widths = np.rint(ink_shapes[:, 1] * heights / ink_shapes[:, 0]).astype(np.int64)
        widths = np.clip(widths, 1, CANVAS_SIZE - 2 * BORDER)
        for _ in range(PLACEMENT_ROUNDS):
            shape = (PLACEMENT_CANDIDATES, k)
            x0 = rng.integers(BORDER, CANVAS_SIZE - BORDER - widths + 1, shape)
            y0 = rng.integers(BORDER, CANVAS_SIZE - BORDER - heights + 1, shape)
            ok = np.flatnonzero(_layout_ok(x0, y0, widths, heights))
            if ok.size:
                c = ok[0]
                boxes = np.stack([x0[c], y0[c], x0[c] + widths, y0[c] + heights], axis=1)
                return boxes, size_classes


def generate_scenes(mnist_images, mnist_labels, pool, num_scenes, seed, split_number):
    """
    Generate scenes from the MNIST images whose indices are in `pool`.

    Inputs:
    - mnist_images: uint8 array (M, 28, 28); mnist_labels: int array (M,).
    - pool: int array of the indices into mnist_images that this split may use.
    - num_scenes: number of scenes.
    - seed, split_number: scene i is drawn from np.random.default_rng([seed,
      split_number, i]).

    Returns a dict of arrays, digits of each scene sorted left to right by box centre:
    images uint8 (N, 64, 64), labels int8 (N, 4), sizes int8 (N, 4), boxes int16 (N, 4, 4),
    num_digits int8 (N,), sources int32 (N, 4) (indices into mnist_images); -1 pads.
    """
    pool = np.asarray(pool)
    N = int(num_scenes)
    out = {
        'images': np.zeros((N, CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8),
        'labels': np.full((N, MAX_DIGITS), -1, dtype=np.int8),
        'sizes': np.full((N, MAX_DIGITS), -1, dtype=np.int8),
        'boxes': np.full((N, MAX_DIGITS, 4), -1, dtype=np.int16),
        'num_digits': np.zeros(N, dtype=np.int8),
        'sources': np.full((N, MAX_DIGITS), -1, dtype=np.int32),
    }
    for i in range(N):
        rng = np.random.default_rng([seed, split_number, i])
        k = int(rng.choice(DIGIT_COUNTS))
        sources = pool[rng.integers(0, len(pool), k)]
        ink = np.array([ink_box(mnist_images[s]) for s in sources])
        boxes, size_classes = sample_layout(rng, np.stack([ink[:, 1] - ink[:, 0],
                                                           ink[:, 3] - ink[:, 2]], axis=1))
        order = np.argsort(boxes[:, 0] * 2 + (boxes[:, 2] - boxes[:, 0]), kind='stable')
        sources, boxes, size_classes = sources[order], boxes[order], size_classes[order]
        out['images'][i] = render_scene(mnist_images[sources], boxes)
        out['labels'][i, :k] = mnist_labels[sources]
        out['sizes'][i, :k] = size_classes
        out['boxes'][i, :k] = boxes
        out['num_digits'][i] = k
        out['sources'][i, :k] = sources
    return out


# ----------------------------------------------------------------------------- captions

def spatial_relation(box_a, box_b):
    """
    How box a lies relative to box b: 'left', 'right', 'above' or 'below'.

    Boxes are (x0, y0, x1, y1) with exclusive x1, y1 and must not overlap. The axis along
    which they are further apart is used (x on a tie); 'left' means x1_a <= x0_b, 'above'
    means y1_a <= y0_b (image y grows downwards).
    """
    ax0, ay0, ax1, ay1 = (int(v) for v in box_a)
    bx0, by0, bx1, by1 = (int(v) for v in box_b)
    gap_x = max(bx0 - ax1, ax0 - bx1)
    gap_y = max(by0 - ay1, ay0 - by1)
    if max(gap_x, gap_y) < 0:
        raise ValueError(f"boxes {tuple(box_a)} and {tuple(box_b)} overlap")
    if gap_x >= gap_y:
        return 'left' if ax1 <= bx0 else 'right'
    return 'above' if ay1 <= by0 else 'below'


def _listing(digits):
    """['3', '7', '1'] -> ['3', ',', '7', 'and', '1']"""
    words = []
    for j, digit in enumerate(digits):
        if j:
            words.append('and' if j == len(digits) - 1 else ',')
        words.append(digit)
    return words


def scene_captions(labels, sizes, boxes):
    """
    The 4 reference captions of one scene (templates in the module docstring).

    Inputs (k digits, in left-to-right order as generate_scenes stores them; -1 padding
    is ignored):
    - labels: ints (k,), the digit classes.
    - sizes: ints (k,), 0 small / 1 large.
    - boxes: ints (k, 4), (x0, y0, x1, y1).

    Returns:
    - captions: list of 4 lists of words (without <START> / <END>).
    """
    labels, sizes, boxes = np.asarray(labels), np.asarray(sizes), np.asarray(boxes)
    keep = labels >= 0
    labels, sizes, boxes = labels[keep], sizes[keep], boxes[keep]
    k = len(labels)
    digits = [str(d) for d in labels]
    centre_x = boxes[:, 0] + boxes[:, 2]
    centre_y = boxes[:, 1] + boxes[:, 3]
    left_to_right = [digits[j] for j in np.argsort(centre_x, kind='stable')]
    top_to_bottom = [digits[j] for j in np.argsort(centre_y, kind='stable')]
    head = [COUNT_WORDS[k], 'digits', 'from']
    captions = [head + ['left', 'to', 'right', ':'] + _listing(left_to_right),
                head + ['top', 'to', 'bottom', ':'] + _listing(top_to_bottom)]

    heights = boxes[:, 3] - boxes[:, 1]
    a, b = sorted(np.argsort(-heights, kind='stable')[:2])       # the two tallest
    relation = spatial_relation(boxes[a], boxes[b])
    if relation in ('right', 'below'):      # name the left / top digit first
        a, b, relation = b, a, OPPOSITE[relation]
    rest = [digits[j] for j in np.argsort(centre_x, kind='stable') if j not in (a, b)]
    # the others: 'and a 3' (one) or ', a 1 and an 8' (two)
    rest_words = []
    for j, digit in enumerate(rest):
        rest_words += [('and' if len(rest) == 1 else ',') if j == 0 else 'and',
                       'an' if digit == '8' else 'a', digit]

    def phrase(j):
        return ['a', SIZE_WORDS[sizes[j]], digits[j]]

    captions.append(phrase(a) + list(RELATION_WORDS[relation]) + phrase(b) + rest_words)
    captions.append(phrase(b) + list(RELATION_WORDS[OPPOSITE[relation]]) + phrase(a)
                    + rest_words)
    return captions


def encode_caption(words, word_to_idx=None, length=CAPTION_LENGTH):
    """Words -> int32 (length,): <START> words <END> <NULL>...; unknown words -> <UNK>."""
    word_to_idx = WORD_TO_IDX if word_to_idx is None else word_to_idx
    if len(words) + 2 > length:
        raise ValueError(f"caption of {len(words)} words does not fit length {length}: "
                         f"{' '.join(words)}")
    out = np.full(length, word_to_idx[NULL], dtype=np.int32)
    unk = word_to_idx[UNK]
    out[:len(words) + 2] = ([word_to_idx[START]] + [word_to_idx.get(w, unk) for w in words]
                            + [word_to_idx[END]])
    return out


def decode_caption(caption, idx_to_word=None):
    """int caption -> list of words, without <NULL>/<START>, cut at <END>."""
    idx_to_word = IDX_TO_WORD if idx_to_word is None else idx_to_word
    words = []
    for index in np.asarray(caption).tolist():
        word = idx_to_word[index]
        if word == END:
            break
        if word not in (NULL, START):
            words.append(word)
    return words


def caption_scenes(scenes):
    """Captions of generated scenes: (captions int32 (N*4, 18), image_idxs int32 (N*4,))."""
    N = len(scenes['labels'])
    captions = np.zeros((N * CAPTIONS_PER_IMAGE, CAPTION_LENGTH), dtype=np.int32)
    for i in range(N):
        for k, words in enumerate(scene_captions(scenes['labels'][i], scenes['sizes'][i],
                                                 scenes['boxes'][i])):
            captions[CAPTIONS_PER_IMAGE * i + k] = encode_caption(words)
    image_idxs = np.repeat(np.arange(N, dtype=np.int32), CAPTIONS_PER_IMAGE)
    return captions, image_idxs


# ----------------------------------------------------------------------------- building

def _split_pools(mnist):
    """Per split: (MNIST images, labels, indices this split may use)."""
    X_train, y_train, X_test, y_test = mnist
    num_train = len(X_train) - NUM_VAL_DIGITS
    return {'train': (X_train, y_train, np.arange(num_train)),
            'val': (X_train, y_train, np.arange(num_train, len(X_train))),
            'test': (X_test, y_test, np.arange(len(X_test)))}


def _resolve_size(size):
    """'default' / 'small' / (n_train, n_val, n_test) -> (label for file names, counts)."""
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)} or a tuple (n_train, "
                             f"n_val, n_test), got {size!r}")
        return size, SIZES[size]
    counts = tuple(int(n) for n in size)
    if len(counts) != 3 or min(counts) < 1:
        raise ValueError(f"size as a tuple must be three positive counts (n_train, n_val, "
                         f"n_test), got {size!r}")
    return '-'.join(str(n) for n in counts), counts


def _log(verbose, message):
    if verbose:
        print(message, file=sys.stderr, flush=True)


def build_mnist_scenes(mnist, seed=0, counts=SIZES['default'], encoder_epochs=ENCODER_EPOCHS['default'],
                       verbose=False):
    """
    Generate the scenes, captions and features (no cache; load_mnist_scenes caches).

    Inputs:
    - mnist: (X_train, y_train, X_test, y_test) as returned by data.load_mnist.
    - seed: int, seed of the scenes and of the encoder.
    - counts: (n_train, n_val, n_test) scenes.
    - encoder_epochs: (detection epochs, reading epochs) of the encoder's two stages.
    - verbose: print progress to stderr (and the encoder's training to stdout).

    Returns a dict of arrays: per split the keys of the module docstring without the
    `references` (images, labels, sizes, boxes, num_digits, sources, captions,
    image_idxs, features, spatial_features), plus 'encoder_params' (dict), 'info' (dict).
    """

    start, cpu_start = time.perf_counter(), time.process_time()
    pools = _split_pools(mnist)
    out, scenes = {}, {}
    for number, (split, count) in enumerate(zip(SPLITS, counts)):
        images, labels, pool = pools[split]
        _log(verbose, f"MNIST scenes: drawing {count} {split} scenes ...")
        scenes[split] = generate_scenes(images, labels, pool, count, seed, number)
        for key, value in scenes[split].items():
            out[f'{split}_{key}'] = value
        out[f'{split}_captions'], out[f'{split}_image_idxs'] = caption_scenes(scenes[split])
    # the encoder's own training scenes: other scenes of the train split's MNIST images
    images, labels, pool = pools['train']
    scenes[ENCODER_SPLIT] = generate_scenes(images, labels, pool, counts[0], seed,
                                            len(SPLITS))
    scenes_seconds = time.perf_counter() - start

    _log(verbose, f"MNIST scenes: training the encoder on {counts[0]} scenes of its own "
                  f"({encoder_epochs[0]} + {encoder_epochs[1]} epochs) ...")
    start = time.perf_counter()
    encoder, history = scene_encoder.train_encoder(scenes[ENCODER_SPLIT], scenes['val'],
                                                   encoder_epochs, seed, verbose)
    encoder_seconds = time.perf_counter() - start

    start = time.perf_counter()
    accuracy = {}
    for split in (ENCODER_SPLIT,) + SPLITS:
        encoded = encoder.encode(scenes[split]['images'])
        accuracy[split] = encoder.accuracy(scenes[split], encoded)
        if split != ENCODER_SPLIT:
            out[f'{split}_features'] = encoded['pooled']
            out[f'{split}_spatial_features'] = encoded['spatial']
    scales = {}
    for name in ('features', 'spatial_features'):      # RMS 1 over the train scenes
        scales[name] = float(np.sqrt(np.mean(out['train_' + name].astype(np.float64) ** 2)))
        for split in SPLITS:
            out[f'{split}_{name}'] /= np.float32(scales[name])
    features_seconds = time.perf_counter() - start

    out['encoder_params'] = encoder.params
    out['info'] = {
        'seed': seed, 'counts': dict(zip(SPLITS, counts)), 'version': CACHE_VERSION,
        'encoder_scenes': counts[0],
        'canvas_size': CANVAS_SIZE, 'grid': [scene_encoder.GRID, scene_encoder.GRID],
        'captions_per_image': CAPTIONS_PER_IMAGE, 'caption_length': CAPTION_LENGTH,
        'encoder_epochs': list(encoder_epochs), 'encoder_accuracy': accuracy,
        'encoder_history': history, 'encoder_summary': encoder.summary(),
        'feature_scales': scales,
        'seconds': {'scenes': scenes_seconds, 'encoder': encoder_seconds,
                    'features': features_seconds},
        'cpu_seconds': time.process_time() - cpu_start,
    }
    _log(verbose, f"MNIST scenes: done; encoder val accuracy: "
                  f"{json.dumps(accuracy['val'])}")
    return out


# ----------------------------------------------------------------------------- cache

_ARRAY_KEYS = ('images', 'labels', 'sizes', 'boxes', 'num_digits', 'sources', 'captions',
               'image_idxs', 'features', 'spatial_features')
_FLOAT16_KEYS = ('features', 'spatial_features')    # stored as float16, returned float32


def cache_key(seed, counts, encoder_epochs):
    """The key stored in a cache file: a hash of CACHE_VERSION and every parameter of the
    generation. A cache whose key differs is generated again."""
    config = {
        'version': CACHE_VERSION, 'seed': int(seed), 'counts': [int(n) for n in counts],
        'encoder_epochs': [int(e) for e in encoder_epochs],
        'canvas': CANVAS_SIZE, 'counts_per_scene': DIGIT_COUNTS, 'heights': SIZE_HEIGHTS,
        'border': BORDER, 'gap': GAP, 'order_margin': ORDER_MARGIN,
        'placement': [PLACEMENT_CANDIDATES, PLACEMENT_ROUNDS], 'val_digits': NUM_VAL_DIGITS,
        'vocabulary': IDX_TO_WORD, 'caption_length': CAPTION_LENGTH,
    }
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:20]


def cache_dirs(data_dir=None, cache_dir=None, for_writing=False):
    """
    Directories of the cache, in order: `cache_dir` alone if given, else
    `<data_dir>/cache` (if data_dir is given), `$HANDGRAD_DATA/cache` (searched only, never
    written: it is often a shared, read-only data folder, as in CI) and the repo's
    `data/cache`. Loading searches all of them; the cache is written to the first
    writable one of those with for_writing=True.
    """
    if cache_dir is not None:
        return [os.path.abspath(cache_dir)]
    roots = [data_dir, None if for_writing else os.environ.get(DATA_ENV), REPO_DATA_DIR]
    return [os.path.abspath(os.path.join(root, 'cache')) for root in roots if root]


def cache_file_name(seed=0, size='default', encoder_epochs=None):
    """e.g. 'mnist_scenes_seed0_default.npz'; non-default encoder epochs are added."""
    label, _ = _resolve_size(size)
    name = f'mnist_scenes_seed{int(seed)}_{label}'
    if encoder_epochs is not None and tuple(encoder_epochs) != _default_epochs(size):
        name += '_encoder{}-{}'.format(*encoder_epochs)
    return name + '.npz'


def _default_epochs(size):
    return ENCODER_EPOCHS.get(size, ENCODER_EPOCHS['default']) if isinstance(size, str) \
        else ENCODER_EPOCHS['default']


def _read_cache(path, key):
    """The stored arrays of a cache file if its key matches, else None."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if 'cache_key' not in npz.files or str(npz['cache_key']) != key:
                return None
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError) as error:   # unreadable: generate again
        print(f"MNIST scenes: ignoring unreadable cache {path}: {error}", file=sys.stderr)
        return None


def _write_cache(directory, file_name, arrays):
    """Write arrays to directory/file_name atomically (fileio.atomic_path)."""
    path = os.path.join(directory, file_name)
    with atomic_path(path) as temporary:
        with open(temporary, 'wb') as f:
            np.savez(f, **arrays)
    return path


def _to_storage(built, key):
    arrays = {'cache_key': np.array(key), 'info_json': np.array(json.dumps(built['info'])),
              'idx_to_word': np.array(IDX_TO_WORD)}
    for split in SPLITS:
        for name in _ARRAY_KEYS:
            value = built[f'{split}_{name}']
            arrays[f'{split}_{name}'] = value.astype(np.float16) if name in _FLOAT16_KEYS \
                else value
    for name, value in built['encoder_params'].items():
        arrays['encoder__' + name] = value
    return arrays


def _from_storage(arrays):
    data = {}
    for split in SPLITS:
        for name in _ARRAY_KEYS:
            value = arrays[f'{split}_{name}']
            data[f'{split}_{name}'] = value.astype(np.float32) if name in _FLOAT16_KEYS \
                else value
    data['idx_to_word'] = [str(w) for w in arrays['idx_to_word']]
    data['word_to_idx'] = {w: i for i, w in enumerate(data['idx_to_word'])}
    for split in SPLITS:
        captions = data[f'{split}_captions']
        data[f'{split}_references'] = [
            [decode_caption(c, data['idx_to_word'])
             for c in captions[CAPTIONS_PER_IMAGE * i:CAPTIONS_PER_IMAGE * (i + 1)]]
            for i in range(len(data[f'{split}_images']))]
    data['encoder_params'] = {name[len('encoder__'):]: value for name, value in arrays.items()
                              if name.startswith('encoder__')}
    data['info'] = json.loads(str(arrays['info_json']))
    data['encoder_accuracy'] = data['info']['encoder_accuracy']
    return data


def load_mnist_scenes(data_dir=None, seed=0, size='default', cache_dir=None,
                      encoder_epochs=None, verbose=True):
    """
    The MNIST scenes captioning dataset (see the module docstring), generated on first use
    and cached.

    Inputs:
    - data_dir: where MNIST is (data.load_mnist's lookup: data_dir, $HANDGRAD_DATA, the
      repo's data/; downloaded if absent); `<data_dir>/cache` is also the first cache
      directory.
    - seed: int, seed of the scenes and the encoder.
    - size: 'default' (10,000 / 1,000 / 1,000 scenes), 'small' (1,000 / 200 / 200) or a
      tuple (n_train, n_val, n_test).
    - cache_dir: directory of the cache file, instead of the default search (cache_dirs).
    - encoder_epochs: (detection epochs, reading epochs) of the encoder training, or None
      for the size's default (ENCODER_EPOCHS).
    - verbose: print progress while generating.

    Returns a dict with the keys listed in the module docstring.
    """
    label, counts = _resolve_size(size)
    encoder_epochs = tuple(int(e) for e in (encoder_epochs or _default_epochs(size)))
    key = cache_key(seed, counts, encoder_epochs)
    file_name = cache_file_name(seed, size, encoder_epochs)
    directories = cache_dirs(data_dir, cache_dir)
    for directory in directories:
        path = os.path.join(directory, file_name)
        if os.path.isfile(path):
            arrays = _read_cache(path, key)
            if arrays is not None:
                return _from_storage(arrays)

    _log(verbose, f"MNIST scenes: no cache {file_name} for this version in "
                  f"{', '.join(directories)}; generating it (once)")
    built = build_mnist_scenes(load_mnist(data_dir), seed, counts, encoder_epochs, verbose)
    arrays = _to_storage(built, key)
    for directory in cache_dirs(data_dir, cache_dir, for_writing=True):
        try:
            os.makedirs(directory, exist_ok=True)
            path = _write_cache(directory, file_name, arrays)
        except OSError:
            continue
        _log(verbose, f"MNIST scenes: cached in {path}")
        break
    else:
        print(f"MNIST scenes: could not write the cache to any of "
              f"{', '.join(cache_dirs(data_dir, cache_dir, for_writing=True))}; it will be "
              f"generated again next time", file=sys.stderr)
    return _from_storage(arrays)
