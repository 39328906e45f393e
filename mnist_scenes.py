"""MNIST scenes: a built-in, offline captioning dataset of real digits.

Scenes of 2 to 4 MNIST digits on a 64 x 64 canvas, each with 4 reference captions: this
module draws the scenes, writes their captions and caches both. It trains nothing: the
image features come from a CNN trained on these scenes by scene_encoder.py, a model
above this dataset, whose load_scene_dataset returns the scenes with their features
(what image_captioning.py trains on). It stays a top-level module, as data/ only loads
files that exist, but like data/ it imports no model.

    from mnist_scenes import load_mnist_scenes
    data = load_mnist_scenes()              # first call generates and caches (seconds)
    data = load_mnist_scenes(size='small')  # 1,000 / 200 / 200 scenes, for --quick runs

    data['train_captions'][0]   # int32 (18,): <START> two digits from left to right ...
    data['train_image_idxs']    # int32 (40000,): the scene of each caption
    data['train_images']        # uint8 (10000, 64, 64): the scenes themselves
    data['train_labels'], data['train_boxes']   # what is where, left to right

    from scene_encoder import load_scene_dataset
    data = load_scene_dataset()             # the same scenes, with the encoder's features
    data['train_features']      # float32 (10000, 256): one vector per scene (plain decoders)
    data['train_spatial_features']  # float32 (10000, 64, 64): 8x8 grid x 64 channels (attention)

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
    size='small':   1,000 / 200 / 200 scenes, for smoke runs (--quick); their features
                    are weak (scene_encoder.py says how much): for checking that code
                    runs, not for results.
    size=(n_train, n_val, n_test): any other numbers (e.g. tiny sets in tests).

The first call generates the scenes: a few seconds (on the project's 2-core machine the
22,000 scenes of 'default' and of its encoder's own training set took 11 s together).
Later calls load the cache in about a second.

extra_train_scenes draws more scenes from the train split's MNIST images, as a sequence
of their own: scene_encoder.py trains its encoder on them, so that the captioning train
scenes are as new to it as the val and test scenes.

Cache
-----
The result is written once, atomically, to `mnist_scenes_seed<seed>_<size>.npz` in the
first writable of: `cache_dir` if given, else `<data_dir>/cache` (if data_dir is given),
the repo's `data/cache` (ignored by git); about 53 MB for 'default', 6 MB for 'small'.
Loading also searches `$HANDGRAD_DATA/cache`, which is never written (it is often a
shared, read-only folder, as in CI; put a cache there by hand to share it). The
file stores a key made of CACHE_VERSION and every generation parameter; if it does not
match (the code changed), the data is generated again. Bump CACHE_VERSION when changing
how scenes or captions are made. (scene_encoder.py caches the features the same way, in
a file of its own.)

Returned dict (N = scenes, K = 4 captions per scene, per split train / val / test):

    <split>_images            uint8   (N, 64, 64)     the canvases
    <split>_captions          int32   (N*K, 18)       caption k of scene i in row K*i + k
    <split>_image_idxs        int32   (N*K,)          scene of each caption (= row // K)
    <split>_references        list of N lists of K word lists (for bleu.bleu_scores)
    <split>_labels            int8    (N, 4)   digit classes left to right, -1 padding
    <split>_sizes             int8    (N, 4)   0 small / 1 large, same order, -1 padding
    <split>_boxes             int16   (N, 4, 4) ink boxes (x0, y0, x1, y1), x1/y1 exclusive
    <split>_num_digits        int8    (N,)     2, 3 or 4
    <split>_sources           int32   (N, 4)   MNIST index of each digit, -1 padding
    idx_to_word               list of 35 str;  word_to_idx: dict str -> int
    info                      dict: seed, counts, version, canvas and caption sizes, timings
"""

import hashlib
import json
import os
import sys
import time

import numpy as np

from captions import END_TOKEN, NULL_TOKEN, START_TOKEN
from data.datasets import DATA_ENV, REPO_DATA_DIR, load_mnist
from fileio import atomic_path

# Bump when the scenes, captions or vocabulary change: old caches regenerate.
# 4: the features left this cache for scene_encoder.py's own.
CACHE_VERSION = 4

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
SCENE_KEYS = ('images', 'labels', 'sizes', 'boxes', 'num_digits', 'sources')   # per scene
NUM_VAL_DIGITS = 5000       # the last 5,000 MNIST train images, as in train_val_split
SIZES = {
    'default': (10000, 1000, 1000),
    'small': (1000, 200, 200),
}

CAPTIONS_PER_IMAGE = 4
MAX_CAPTION_WORDS = 16
CAPTION_LENGTH = MAX_CAPTION_WORDS + 2    # with <START> and <END>

NULL, START, END, UNK = NULL_TOKEN, START_TOKEN, END_TOKEN, '<UNK>'
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


def resolve_size(size):
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


def build_mnist_scenes(mnist, seed=0, counts=SIZES['default'], verbose=False):
    """
    Generate the scenes and their captions (no cache; load_mnist_scenes caches).

    Inputs:
    - mnist: (X_train, y_train, X_test, y_test) as returned by data.load_mnist.
    - seed: int, seed of the scenes.
    - counts: (n_train, n_val, n_test) scenes.
    - verbose: print progress to stderr.

    Returns a dict of arrays: per split the keys of the module docstring without the
    `references` (images, labels, sizes, boxes, num_digits, sources, captions,
    image_idxs), plus 'info' (dict).
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    pools = _split_pools(mnist)
    out = {}
    for number, (split, count) in enumerate(zip(SPLITS, counts)):
        images, labels, pool = pools[split]
        _log(verbose, f"MNIST scenes: drawing {count} {split} scenes ...")
        scenes = generate_scenes(images, labels, pool, count, seed, number)
        for key, value in scenes.items():
            out[f'{split}_{key}'] = value
        out[f'{split}_captions'], out[f'{split}_image_idxs'] = caption_scenes(scenes)
    out['info'] = {
        'seed': seed, 'counts': dict(zip(SPLITS, counts)), 'version': CACHE_VERSION,
        'canvas_size': CANVAS_SIZE, 'captions_per_image': CAPTIONS_PER_IMAGE,
        'caption_length': CAPTION_LENGTH,
        'seconds': {'scenes': time.perf_counter() - start},
        'cpu_seconds': time.process_time() - cpu_start,
    }
    return out


def extra_train_scenes(mnist, num_scenes, seed=0):
    """
    Scenes that are not in the dataset, drawn like the train scenes (from the train
    split's MNIST images only, never val or test digits) as a sequence of their own
    (split number len(SPLITS) = 3 of the seed): data for training a model on scenes
    other than the captioning train scenes (scene_encoder.py's encoder). A dict as
    generate_scenes returns, without captions.
    """
    images, labels, pool = _split_pools(mnist)['train']
    return generate_scenes(images, labels, pool, num_scenes, seed, len(SPLITS))


def split_scenes(data, split):
    """The scenes of one split of a loaded dataset, as generate_scenes returns them (the
    keys images, labels, sizes, boxes, num_digits, sources)."""
    return {key: data[f'{split}_{key}'] for key in SCENE_KEYS}


# ----------------------------------------------------------------------------- cache

_ARRAY_KEYS = SCENE_KEYS + ('captions', 'image_idxs')


def cache_key(seed, counts):
    """The key stored in a cache file: a hash of CACHE_VERSION and every parameter of the
    generation. A cache whose key differs is generated again."""
    config = {
        'version': CACHE_VERSION, 'seed': int(seed), 'counts': [int(n) for n in counts],
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


def cache_file_name(seed=0, size='default'):
    """e.g. 'mnist_scenes_seed0_default.npz'."""
    label, _ = resolve_size(size)
    return f'mnist_scenes_seed{int(seed)}_{label}.npz'


def cached_arrays(file_name, key, build, data_dir=None, cache_dir=None, verbose=True,
                  what='MNIST scenes'):
    """
    The arrays of the cache file `file_name` whose stored key is `key`, from the first of
    cache_dirs(data_dir, cache_dir) that has it; if none has, build() (a dict of arrays)
    is called and its arrays, with the key, are written atomically to the first writable
    directory (a message says so if none is). `what` names the data in the messages.
    The cache of this module and of scene_encoder.py.
    """
    directories, stale = cache_dirs(data_dir, cache_dir), []
    for directory in directories:
        path = os.path.join(directory, file_name)
        if os.path.isfile(path):
            arrays = _read_cache(path, key, what)
            if arrays:
                return arrays
            if arrays is None:
                stale.append(path)

    if stale:
        _log(verbose, f"{what}: {', '.join(stale)} was made by another version of the code "
                      f"or with other parameters; generating it again (once)")
    else:
        _log(verbose, f"{what}: no cache {file_name} for this version in "
                      f"{', '.join(directories)}; generating it (once)")
    arrays = dict(build(), cache_key=np.array(key))
    for directory in cache_dirs(data_dir, cache_dir, for_writing=True):
        try:
            os.makedirs(directory, exist_ok=True)
            path = _write_cache(directory, file_name, arrays)
        except OSError:
            continue
        _log(verbose, f"{what}: cached in {path}")
        break
    else:
        print(f"{what}: could not write the cache to any of "
              f"{', '.join(cache_dirs(data_dir, cache_dir, for_writing=True))}; it will be "
              f"generated again next time", file=sys.stderr)
    return arrays


def _read_cache(path, key, what):
    """The stored arrays of a cache file if its key matches, else None; {} if the file
    cannot be read (a message says so)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if 'cache_key' not in npz.files or str(npz['cache_key']) != key:
                return None
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError) as error:   # unreadable: generate again
        print(f"{what}: ignoring unreadable cache {path}: {error}", file=sys.stderr)
        return {}


def _write_cache(directory, file_name, arrays):
    """Write arrays to directory/file_name atomically (fileio.atomic_path)."""
    path = os.path.join(directory, file_name)
    with atomic_path(path) as temporary:
        with open(temporary, 'wb') as f:
            np.savez(f, **arrays)
    return path


def _to_storage(built):
    arrays = {'info_json': np.array(json.dumps(built['info'])),
              'idx_to_word': np.array(IDX_TO_WORD)}
    for split in SPLITS:
        for name in _ARRAY_KEYS:
            arrays[f'{split}_{name}'] = built[f'{split}_{name}']
    return arrays


def _from_storage(arrays):
    data = {f'{split}_{name}': arrays[f'{split}_{name}']
            for split in SPLITS for name in _ARRAY_KEYS}
    data['idx_to_word'] = [str(w) for w in arrays['idx_to_word']]
    data['word_to_idx'] = {w: i for i, w in enumerate(data['idx_to_word'])}
    for split in SPLITS:
        captions = data[f'{split}_captions']
        data[f'{split}_references'] = [
            [decode_caption(c, data['idx_to_word'])
             for c in captions[CAPTIONS_PER_IMAGE * i:CAPTIONS_PER_IMAGE * (i + 1)]]
            for i in range(len(data[f'{split}_images']))]
    data['info'] = json.loads(str(arrays['info_json']))
    return data


def load_mnist_scenes(data_dir=None, seed=0, size='default', cache_dir=None, verbose=True):
    """
    The MNIST scenes captioning dataset (see the module docstring), generated on first use
    and cached; scene_encoder.load_scene_dataset adds the image features.

    Inputs:
    - data_dir: where MNIST is (data.load_mnist's lookup: data_dir, $HANDGRAD_DATA, the
      repo's data/; downloaded if absent); `<data_dir>/cache` is also the first cache
      directory.
    - seed: int, seed of the scenes.
    - size: 'default' (10,000 / 1,000 / 1,000 scenes), 'small' (1,000 / 200 / 200) or a
      tuple (n_train, n_val, n_test).
    - cache_dir: directory of the cache file, instead of the default search (cache_dirs).
    - verbose: print progress while generating.

    Returns a dict with the keys listed in the module docstring.
    """
    _, counts = resolve_size(size)

    def build():
        return _to_storage(build_mnist_scenes(load_mnist(data_dir), seed, counts, verbose))

    return _from_storage(cached_arrays(cache_file_name(seed, size), cache_key(seed, counts),
                                       build, data_dir, cache_dir, verbose))
