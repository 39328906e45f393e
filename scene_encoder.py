"""The image encoder of the MNIST scenes (mnist_scenes.py): a small CNN trained by
handgrad, whose hidden layers give the captioning features, and the dataset with those
features (load_scene_dataset), which image_captioning.py and notebooks/04 train on.

    from scene_encoder import load_scene_dataset
    data = load_scene_dataset()             # first call trains the encoder and caches (~2.6 min)
    data = load_scene_dataset(size='small')  # 1,000 / 200 / 200 scenes, for --quick runs

    data['train_features']      # float32 (10000, 256): one vector per scene (plain decoders)
    data['train_spatial_features']  # float32 (10000, 64, 64): 8x8 grid x 64 channels (attention)
    data['train_captions'], data['train_images'], ...   # mnist_scenes.load_mnist_scenes's keys

Architecture (sequential.Sequential; input one 64 x 64 canvas scaled to [0, 1]):

    trunk   conv1  16 filters 5x5, stride 2, pad 2, ReLU        16 x 32 x 32
            conv2  32 filters 3x3, pad 1, ReLU, max pool 2      32 x 16 x 16
            conv3  64 filters 3x3, pad 1, ReLU, max pool 2      64 x 8 x 8  -> spatial features
    reader  conv   32 filters 3x3, pad 1, ReLU, max pool 2      32 x 4 x 4
            fc1    256, ReLU                                    256         -> pooled features
            fc2    128 scores (8 slots, below)

It is trained in two stages, each by the Solver on the train scenes only (Adam, learning
rate 2e-3 decayed by 0.9 per epoch, batches of 50), keeping the epoch with the best
accuracy on the val scenes; deterministic for a seed.

1. Detection, for the trunk (6 epochs by default). On top of conv3's 8 x 8 grid, a 3x3
   conv with 21 filters (a head used only for this stage) classifies every grid cell
   (8 x 8 canvas pixels): digit * 2 + size (size 0 small, 1 large) of the digit whose
   core reaches into the cell, or 20 = none. A digit's core is its ink box shrunk to half
   its width and height around the same centre, so a digit marks 1 to 9 cells around its
   centre (if two cores reach one cell, which is rare, the digit further right wins).
   Loss: the 64 cells' softmax cross-entropies, summed. A local task: the conv layers
   learn it quickly, and their grid then says what is where.
2. Reading, for the reader (15 epochs by default), on the frozen trunk's output divided
   by its RMS over the train scenes: 8 softmax classifications ("slots") of the 128
   fc2 scores:
       slots 1-4 (21 classes): the 1st..4th digit from left to right, as digit * 2 + size,
                               or 20 = no such digit;
       slots 5-8 (11 classes): the 1st..4th digit from top to bottom, or 10 = none.
   To solve it, the fc1 vector must hold which digits there are, how large, and their
   order along x and along y: what the captions talk about, though the encoder never sees
   a caption. (Trained end to end from the start, this task learned far more slowly: 53%
   of the slots right after 6 epochs, against about 74% this way.)

SceneEncoder.accuracy reports both tasks; data['encoder_accuracy'] holds it per split.

Image features
--------------
The encoder is trained on proxy tasks, not on captions, and then frozen, like the VGG
features of the course's COCO data: first its conv layers learn to tell, for each cell
of an 8 x 8 grid over the canvas, which digit (and size) is centred around there, if
any; then its fully connected layers learn, from that grid, to read the digits left to
right (with sizes) and top to bottom. load_scene_dataset adds to every split:

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

The encoder is trained on scenes of its own (mnist_scenes.extra_train_scenes): as many as
there are train scenes, drawn like them from the first 55,000 MNIST train images but as
another sequence (split number 3 of the seed), never from val or test digits; the val
scenes pick its best epochs. So the captioning train scenes are as new to it as the val
and test scenes, and their features are as good (no better): trained on the captioning
train scenes themselves, its reader got 94% of the slots right there against 73% on val,
and decoders would learn from cleaner features than they are tested on. Its proxy-task
accuracies on its own scenes ('encoder_train') and on each split are in
data['encoder_accuracy'].

Determinism: the features are bit-identical for a seed on one machine with one BLAS
thread count; other BLAS builds or thread counts round float32 sums differently, which
changes them slightly.

Sizes and timing: the sizes are mnist_scenes.SIZES. For size='small' the encoder gets
only 25 s of training, so its features are weak (on test scenes 30% of the digit cells
and 37% of the reading slots right, against 83% and 74% for 'default'): for checking
that code runs, not for results. The first call for 'default' took, on the project's
2-core machine, 11 s of scenes (mnist_scenes.py, with the encoder's own), 128 s of encoder
training and 16 s of features: 2.6 minutes in all (about 150 s of CPU time; up to 3.2
minutes while other processes shared the machine); for 'small' 28 s. Later calls load
both caches in about a second. (The convolutions run as many small BLAS matrix products;
with OpenBLAS's default 2 threads on a machine that other processes keep busy they can
get several times slower: OPENBLAS_NUM_THREADS=1 avoids that.)

Cache: the features, the encoder's parameters and its accuracies are written once to
`scene_features_seed<seed>_<size>.npz` (`_encoder<a>-<b>` added for non-default encoder
epochs), in the directories of the scenes' cache and the same way
(mnist_scenes.cached_arrays): about 105 MB for 'default', 13 MB for 'small'. Its key
covers CACHE_VERSION below, the encoder epochs and the scenes' own key, so new scenes
give new features. Bump CACHE_VERSION when changing how the encoder or the features are
made.

load_scene_dataset returns mnist_scenes.load_mnist_scenes's dict and, per split
train / val / test (N scenes):

    <split>_features          float32 (N, 256)
    <split>_spatial_features  float32 (N, 64, 64)     (N, L, D'), L = 8 x 8 positions
    encoder_accuracy          dict: proxy-task accuracies of the encoder, per split and
                              on its own training scenes ('encoder_train')
    encoder_params            dict of arrays: SceneEncoder(params=...) rebuilds the
                              encoder (e.g. to encode new canvases)
    info                      the scenes' info, with: grid (8, 8), encoder epochs, its
                              accuracy history and summary, feature scales, timings
"""

import hashlib
import json
import sys
import time

import numpy as np

import mnist_scenes
from data.datasets import load_mnist
from layers import softmax_loss
from sequential import Affine, Conv, Flatten, MaxPool, ReLU, Sequential
from solver import Solver

# Bump when the encoder, its training or the features change: old feature caches regenerate.
CACHE_VERSION = 1
ENCODER_EPOCHS = {'default': (6, 15), 'small': (10, 15)}   # other sizes: default
ENCODER_SPLIT = 'encoder_train'   # the scenes the encoder is trained on (train-split digits)

CANVAS_SIZE = 64
GRID = 8                       # the trunk's output is GRID x GRID cells of CELL px
CELL = CANVAS_SIZE // GRID
CHANNELS = 64                  # channels of the trunk's output
READER_CHANNELS = 32           # the reader's conv, before its 2x2 pool
HIDDEN = 256                   # the reader's hidden layer: the pooled feature vector
NUM_SLOTS = 4                  # digits per scene at most
SIZED_CLASSES = 21             # digit * 2 + size, or 20 = none (cells, left-to-right slots)
DIGIT_CLASSES = 11             # digit, or 10 = none (top-to-bottom slots)
POOLED_LAYER = 'relu2'         # the reader's layer whose output is the pooled vector
LEARNING_RATE = 2e-3           # Adam, both stages
LR_DECAY = 0.9                 # per epoch
BATCH_SIZE = 50
TRUNK_LAYERS = 8               # conv1 .. pool2 of the detector network


def cell_targets(labels, sizes, boxes):
    """
    Detection targets of scenes (stage 1).

    Inputs (as stored by mnist_scenes.generate_scenes, left to right, -1 padding):
    - labels: int array (N, 4), digit classes; sizes: int array (N, 4), 0 small / 1 large;
      boxes: int array (N, 4, 4), (x0, y0, x1, y1).

    Returns:
    - targets: int64 array (N, 64): for cell l = row * 8 + col (canvas pixels
      [8 row, 8 row + 8) x [8 col, 8 col + 8)), digit * 2 + size of the digit whose
      core (its ink box shrunk to half its width and height around the same centre)
      reaches into the cell, else 20.
    """
    labels, sizes, boxes = (np.asarray(a, dtype=np.int64) for a in (labels, sizes, boxes))
    N = len(labels)
    targets = np.full((N, GRID, GRID), SIZED_CLASSES - 1, dtype=np.int64)
    cells = np.arange(GRID) * CELL                 # first pixel of each cell row / column
    for j in range(labels.shape[1]):     # left to right: if two cores reach a cell, the
        x0, y0, x1, y1 = (boxes[:, j, k, None] for k in range(4))   # right one wins
        # the core [x0 + w/4, x1 - w/4) x [y0 + h/4, y1 - h/4), in quarter pixels
        core_x0, core_x1 = 3 * x0 + x1, x0 + 3 * x1
        core_y0, core_y1 = 3 * y0 + y1, y0 + 3 * y1
        in_x = (4 * (cells + CELL) > core_x0) & (4 * cells < core_x1)      # (N, GRID)
        in_y = (4 * (cells + CELL) > core_y0) & (4 * cells < core_y1)
        hit = in_y[:, :, None] & in_x[:, None, :] & (labels[:, j, None, None] >= 0)
        targets = np.where(hit, (labels[:, j] * 2 + sizes[:, j])[:, None, None], targets)
    return targets.reshape(N, GRID * GRID)


def reading_targets(labels, sizes, boxes):
    """
    Reading targets of scenes (stage 2); inputs as for cell_targets.

    Returns:
    - targets: int64 array (N, 8): columns 0-3 left to right (digit * 2 + size, or 20),
      columns 4-7 top to bottom (digit, or 10).
    """
    labels, sizes, boxes = (np.asarray(a, dtype=np.int64) for a in (labels, sizes, boxes))
    present = labels >= 0
    left_to_right = np.where(present, labels * 2 + sizes, SIZED_CLASSES - 1)
    # top to bottom: sort by twice the box centre's y, absent digits last
    centre_y = np.where(present, boxes[:, :, 1] + boxes[:, :, 3], np.iinfo(np.int64).max)
    order = np.argsort(centre_y, axis=1, kind='stable')
    top_to_bottom = np.where(np.take_along_axis(present, order, 1),
                             np.take_along_axis(labels, order, 1), DIGIT_CLASSES - 1)
    return np.concatenate([left_to_right, top_to_bottom], axis=1)


def to_input(images):
    """uint8 canvases (N, 64, 64) -> float32 network input (N, 1, 64, 64) in [0, 1]."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[:, None]


class SlotClassifier:
    """
    A sequential.Sequential whose output vector holds several independent softmax
    classifications ("slots"), with the summed cross-entropy loss; the interface the
    Solver expects.

    - groups: list of (num_slots, num_classes, channels_first). The network's output is
      cut into consecutive blocks, one per group, of num_slots * num_classes scores: laid
      out (num_classes, num_slots) if channels_first (a flattened conv map: class maps
      over grid cells), else (num_slots, num_classes).
    - loss(X, y=None): y (N, total slots) integer targets. Returns scores (N, M) if y is
      None, else (loss, grads): the sum over slots of the softmax cross-entropy, averaged
      over the batch, and the gradients of every parameter of the network.
    - predict(X): the argmax class of every slot, (N, total slots).
    """

    def __init__(self, net, groups):
        self.net = net
        self.params = net.params
        self.groups = [(int(s), int(c), bool(first)) for s, c, first in groups]
        if sum(s * c for s, c, _ in self.groups) != net.output_shapes[-1][0]:
            raise ValueError(f"groups {groups} do not add up to the network's "
                             f"{net.output_shapes[-1][0]} outputs")

    def slot_scores(self, scores):
        """Network outputs (N, M) -> list of per-group scores (N, num_slots, num_classes)."""
        N, blocks, start = scores.shape[0], [], 0
        for slots, classes, channels_first in self.groups:
            block = scores[:, start:start + slots * classes]
            start += slots * classes
            blocks.append(block.reshape(N, classes, slots).transpose(0, 2, 1)
                          if channels_first else block.reshape(N, slots, classes))
        return blocks

    def loss(self, X, y=None):
        if y is None:
            return self.net.forward(X)[0]
        scores, caches = self.net.forward(X, train=True)
        y = np.asarray(y)
        N, loss, dblocks, first_slot = scores.shape[0], 0.0, [], 0
        for (slots, classes, channels_first), block in zip(self.groups,
                                                          self.slot_scores(scores)):
            targets = y[:, first_slot:first_slot + slots].reshape(-1)
            first_slot += slots
            # softmax_loss averages over its N * slots rows; times slots: summed over
            # slots, averaged over N
            group_loss, dblock = softmax_loss(block.reshape(N * slots, classes), targets)
            loss += slots * group_loss
            dblock = slots * dblock.reshape(N, slots, classes)
            dblocks.append((dblock.transpose(0, 2, 1) if channels_first else dblock)
                           .reshape(N, -1))
        _, grads = self.net.backward(np.concatenate(dblocks, axis=1), caches, need_dx=False)
        return loss, grads

    def predict(self, X, batch_size=500):
        predictions = []
        for i in range(0, len(X), batch_size):
            blocks = self.slot_scores(self.loss(X[i:i + batch_size]))
            predictions.append(np.concatenate([b.argmax(2) for b in blocks], axis=1))
        return np.concatenate(predictions)


def build_detector(seed=0, dtype=np.float32):
    """Stage 1 network: the trunk, a 3x3 conv to 21 class maps, flattened (1344,)."""
    net = Sequential((1, CANVAS_SIZE, CANVAS_SIZE), [
        Conv(16, 5, stride=2, pad=2), ReLU(),
        Conv(32, 3, pad='same'), ReLU(), MaxPool(2),
        Conv(CHANNELS, 3, pad='same'), ReLU(), MaxPool(2),
        Conv(SIZED_CLASSES, 3, pad='same'), Flatten()], dtype=dtype, seed=seed)
    return SlotClassifier(net, [(GRID * GRID, SIZED_CLASSES, True)])


def build_reader(seed=0, dtype=np.float32):
    """Stage 2 network on the trunk's output (64, 8, 8): conv 32 3x3, ReLU, max pool 2,
    fc1 256, ReLU, fc2 128 (8 slots)."""
    net = Sequential((CHANNELS, GRID, GRID), [
        Conv(READER_CHANNELS, 3, pad='same'), ReLU(), MaxPool(2),
        Affine(HIDDEN), ReLU(), Affine(NUM_SLOTS * (SIZED_CLASSES + DIGIT_CLASSES))],
        dtype=dtype, seed=seed)
    return SlotClassifier(net, [(NUM_SLOTS, SIZED_CLASSES, False),
                                (NUM_SLOTS, DIGIT_CLASSES, False)])


def slot_accuracy(model, X, y):
    """The Solver's metric: fraction of slots predicted right."""
    return float((model.predict(X) == np.asarray(y)).mean())


def _train(model, X_train, y_train, X_val, y_val, epochs, seed, verbose):
    solver = Solver(model, {'X_train': X_train, 'y_train': y_train,
                            'X_val': X_val, 'y_val': y_val},
                    update_rule='adam', optim_config={'learning_rate': LEARNING_RATE},
                    lr_decay=LR_DECAY, batch_size=BATCH_SIZE, num_epochs=epochs,
                    metric=slot_accuracy, num_train_samples=1000, print_every=10 ** 9,
                    verbose=verbose, seed=seed)
    solver.train()
    return solver


class SceneEncoder:
    """
    The encoder: the trunk (the detector's conv1..pool2) and the reader.

    - detector, reader: the two SlotClassifiers; the trunk is the detector's first
      TRUNK_LAYERS layers (the rest is its stage-1 head, conv4).
    - params: a dict of every parameter (the arrays themselves), keys
      'detector_<layer>_<param>' (detector_conv1_W, ...), 'reader_<layer>_<param>'
      (reader_conv1_W, ..., reader_fc2_b), and 'grid_scale'; SceneEncoder(params=...)
      rebuilds the encoder from it.
    - encode(images), features(images), accuracy(scenes): see below.
    """

    def __init__(self, seed=0, params=None):
        self.detector = build_detector(seed)
        self.reader = build_reader(seed)
        self.grid_scale = 1.0     # the trunk's output is divided by it (its train RMS)
        if params is not None:
            self.grid_scale = float(params.get('grid_scale', 1.0))
            for prefix, model in (('detector_', self.detector), ('reader_', self.reader)):
                for key in model.params:
                    model.params[key][...] = params[prefix + key]

    @property
    def params(self):
        out = {'detector_' + key: value for key, value in self.detector.params.items()}
        out.update({'reader_' + key: value for key, value in self.reader.params.items()})
        out['grid_scale'] = np.array(self.grid_scale, dtype=np.float32)
        return out

    def summary(self):
        return ('trunk (stage 1 detector; its last conv is the detection head, not used '
                'for features):\n' + self.detector.net.summary()
                + '\n\nreader (stage 2, on the trunk output):\n' + self.reader.net.summary())

    def trunk_output(self, X, batch_size=500):
        """The trunk's output divided by grid_scale, (N, 64, 8, 8), for network inputs
        X (N, 1, 64, 64)."""
        last = self.detector.net.names[TRUNK_LAYERS - 1]
        grid = np.concatenate([self.detector.net.forward(X[i:i + batch_size], stop_after=last)[0]
                               for i in range(0, len(X), batch_size)])
        return grid / np.float32(self.grid_scale)

    def encode(self, images, batch_size=500):
        """
        Everything the encoder computes for uint8 canvases (N, 64, 64), in one pass per
        batch: a dict of
        - 'pooled': float32 (N, 256), the reader's fc1 output after its ReLU;
        - 'spatial': float32 (N, 64, 64) = (N, L, C), the trunk's 8 x 8 grid of 64
          channels divided by grid_scale, position l = row * 8 + col;
        - 'cells': (N, 64) the detection head's class for every cell;
        - 'reading': (N, 8) the reader's class for every slot.
        """
        trunk_end = self.detector.net.names[TRUNK_LAYERS - 1]
        parts = {'pooled': [], 'spatial': [], 'cells': [], 'reading': []}
        detector, reader = self.detector.net, self.reader.net
        for i in range(0, len(images), batch_size):
            trunk, _ = detector.forward(to_input(images[i:i + batch_size]), stop_after=trunk_end)
            head, _ = detector.forward(trunk, start_after=trunk_end)
            parts['cells'].append(self.detector.slot_scores(head)[0].argmax(2))
            grid = trunk / np.float32(self.grid_scale)                    # (n, C, 8, 8)
            pooled, _ = reader.forward(grid, stop_after=POOLED_LAYER)
            scores, _ = reader.forward(pooled, start_after=POOLED_LAYER)
            blocks = self.reader.slot_scores(scores)
            parts['reading'].append(np.concatenate([b.argmax(2) for b in blocks], axis=1))
            parts['pooled'].append(pooled.astype(np.float32))
            n = len(grid)
            parts['spatial'].append(
                grid.reshape(n, CHANNELS, GRID * GRID).transpose(0, 2, 1).astype(np.float32))
        return {key: np.concatenate(value) for key, value in parts.items()}

    def features(self, images, batch_size=500):
        """(pooled (N, 256), spatial (N, 64, 64)) of uint8 canvases (N, 64, 64); see encode."""
        encoded = self.encode(images, batch_size)
        return encoded['pooled'], encoded['spatial']

    def accuracy(self, scenes, encoded=None):
        """
        Proxy-task accuracies on scenes (a dict of images, labels, sizes, boxes), from
        `encoded` = self.encode(scenes['images']) if given (else computed), as a dict:
        - 'cells': fraction of the 64 cells whose detection class is right;
        - 'digit_cells': the same over the cells that some digit's core reaches only;
        - 'reading_slots': fraction of the 8 reading slots right;
        - 'left_to_right', 'top_to_bottom': fraction of scenes whose 4 slots of that
          order are all right (digits, sizes, count);
        - 'digits_left_to_right': the same as left_to_right, ignoring sizes.
        """
        encoded = self.encode(scenes['images']) if encoded is None else encoded
        cells = cell_targets(scenes['labels'], scenes['sizes'], scenes['boxes'])
        reading = reading_targets(scenes['labels'], scenes['sizes'], scenes['boxes'])
        right_cells = encoded['cells'] == cells
        right = encoded['reading'] == reading

        def digits(t):
            return np.where(t == SIZED_CLASSES - 1, -1, t // 2)

        return {
            'cells': float(right_cells.mean()),
            'digit_cells': float(right_cells[cells != SIZED_CLASSES - 1].mean()),
            'reading_slots': float(right.mean()),
            'left_to_right': float(right[:, :NUM_SLOTS].all(1).mean()),
            'top_to_bottom': float(right[:, NUM_SLOTS:].all(1).mean()),
            'digits_left_to_right': float((digits(encoded['reading'][:, :NUM_SLOTS])
                                           == digits(reading[:, :NUM_SLOTS])).all(1).mean()),
        }


def train_encoder(train_scenes, val_scenes, epochs=(6, 15), seed=0, verbose=False):
    """
    Train a SceneEncoder in the two stages of the module docstring.

    Inputs:
    - train_scenes, val_scenes: dicts with images, labels, sizes, boxes (as returned by
      mnist_scenes.generate_scenes).
    - epochs: (detection epochs, reading epochs).
    - seed: seed of the initial weights and of the Solvers (sample order).
    - verbose: print the Solvers' progress.

    Returns a tuple (encoder, history): history holds each stage's validation accuracy
    (cells, reading slots) after every epoch.
    """
    encoder = SceneEncoder(seed)
    X_train, X_val = to_input(train_scenes['images']), to_input(val_scenes['images'])

    def targets(kind, scenes):
        return kind(scenes['labels'], scenes['sizes'], scenes['boxes'])

    detection = _train(encoder.detector, X_train, targets(cell_targets, train_scenes),
                       X_val, targets(cell_targets, val_scenes), epochs[0], seed, verbose)
    grid_train = encoder.trunk_output(X_train)
    encoder.grid_scale = float(np.sqrt(np.mean(grid_train.astype(np.float64) ** 2)))
    grid_train /= np.float32(encoder.grid_scale)
    grid_val = encoder.trunk_output(X_val)
    reading = _train(encoder.reader, grid_train, targets(reading_targets, train_scenes),
                     grid_val, targets(reading_targets, val_scenes), epochs[1], seed, verbose)
    history = {'detection_val_cells': detection.val_acc_history,
               'reading_val_slots': reading.val_acc_history}
    return encoder, history


# ----------------------------------------------------------------------------- scenes + features

def build_scene_features(data, encoder_scenes, seed=0, encoder_epochs=ENCODER_EPOCHS['default'],
                         verbose=False):
    """
    Train the encoder and compute the features of every split (no cache;
    load_scene_dataset caches).

    Inputs:
    - data: the scenes, as mnist_scenes.load_mnist_scenes or build_mnist_scenes return them.
    - encoder_scenes: the encoder's own training scenes (mnist_scenes.extra_train_scenes).
    - seed: int, seed of the encoder (its initial weights and sample order).
    - encoder_epochs: (detection epochs, reading epochs) of the encoder's two stages.
    - verbose: print progress to stderr (and the encoder's training to stdout).

    Returns a dict: per split train / val / test 'features' and 'spatial_features'
    (float32, RMS 1 over the train scenes), 'encoder_params' (dict), 'info' (dict).
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    scenes = {split: mnist_scenes.split_scenes(data, split) for split in mnist_scenes.SPLITS}
    scenes[ENCODER_SPLIT] = encoder_scenes
    _log(verbose, f"Scene encoder: training on {len(encoder_scenes['images'])} scenes of its "
                  f"own ({encoder_epochs[0]} + {encoder_epochs[1]} epochs) ...")
    encoder, history = train_encoder(scenes[ENCODER_SPLIT], scenes['val'], encoder_epochs,
                                     seed, verbose)
    encoder_seconds = time.perf_counter() - start

    start = time.perf_counter()
    out, accuracy = {}, {}
    for split in (ENCODER_SPLIT,) + mnist_scenes.SPLITS:
        encoded = encoder.encode(scenes[split]['images'])
        accuracy[split] = encoder.accuracy(scenes[split], encoded)
        if split != ENCODER_SPLIT:
            out[f'{split}_features'] = encoded['pooled']
            out[f'{split}_spatial_features'] = encoded['spatial']
    scales = {}
    for name in _FLOAT16_KEYS:     # RMS 1 over the train scenes
        scales[name] = float(np.sqrt(np.mean(out['train_' + name].astype(np.float64) ** 2)))
        for split in mnist_scenes.SPLITS:
            out[f'{split}_{name}'] /= np.float32(scales[name])
    features_seconds = time.perf_counter() - start

    out['encoder_params'] = encoder.params
    out['info'] = {
        'encoder_version': CACHE_VERSION, 'encoder_scenes': len(encoder_scenes['images']),
        'grid': [GRID, GRID], 'encoder_epochs': list(encoder_epochs),
        'encoder_accuracy': accuracy, 'encoder_history': history,
        'encoder_summary': encoder.summary(), 'feature_scales': scales,
        'seconds': {'encoder': encoder_seconds, 'features': features_seconds},
        'cpu_seconds': time.process_time() - cpu_start,
    }
    _log(verbose, f"Scene encoder: done; val accuracy: {json.dumps(accuracy['val'])}")
    return out


def load_scene_dataset(data_dir=None, seed=0, size='default', cache_dir=None,
                       encoder_epochs=None, verbose=True):
    """
    The MNIST scenes with their image features (see the module docstring): the scenes
    from mnist_scenes.load_mnist_scenes, the features from an encoder trained on first
    use; both cached.

    Inputs:
    - data_dir: where MNIST is (data.load_mnist's lookup: data_dir, $HANDGRAD_DATA, the
      repo's data/; downloaded if absent); `<data_dir>/cache` is also the first cache
      directory.
    - seed: int, seed of the scenes and the encoder.
    - size: 'default' (10,000 / 1,000 / 1,000 scenes), 'small' (1,000 / 200 / 200) or a
      tuple (n_train, n_val, n_test).
    - cache_dir: directory of the cache files, instead of the default search
      (mnist_scenes.cache_dirs).
    - encoder_epochs: (detection epochs, reading epochs) of the encoder training, or None
      for the size's default (ENCODER_EPOCHS).
    - verbose: print progress while generating.

    Returns mnist_scenes.load_mnist_scenes's dict with the keys listed in the module
    docstring added.
    """
    label, counts = mnist_scenes.resolve_size(size)
    default_epochs = ENCODER_EPOCHS.get(label, ENCODER_EPOCHS['default'])
    encoder_epochs = tuple(int(e) for e in (encoder_epochs or default_epochs))
    data = mnist_scenes.load_mnist_scenes(data_dir, seed, size, cache_dir, verbose)

    def build():
        encoder_scenes = mnist_scenes.extra_train_scenes(load_mnist(data_dir), counts[0], seed)
        return _to_storage(build_scene_features(data, encoder_scenes, seed, encoder_epochs,
                                                verbose))

    file_name = f'scene_features_seed{int(seed)}_{label}'
    if encoder_epochs != default_epochs:
        file_name += '_encoder{}-{}'.format(*encoder_epochs)
    key = _features_cache_key(mnist_scenes.cache_key(seed, counts), encoder_epochs)
    arrays = mnist_scenes.cached_arrays(file_name + '.npz', key, build, data_dir, cache_dir,
                                        verbose, what='Scene features')
    features = _from_storage(arrays)
    scenes_info, features_info = data['info'], features.pop('info')
    data.update(features)
    data['info'] = dict(scenes_info, **features_info)
    data['info']['seconds'] = dict(scenes_info['seconds'], **features_info['seconds'])
    data['info']['cpu_seconds'] = scenes_info['cpu_seconds'] + features_info['cpu_seconds']
    return data


# ----------------------------------------------------------------------------- cache

_FLOAT16_KEYS = ('features', 'spatial_features')    # stored as float16, returned float32


def _features_cache_key(scenes_key, encoder_epochs):
    """A hash of CACHE_VERSION, the encoder epochs and the key of the scenes the features
    are computed from: a features cache whose key differs is generated again."""
    config = {'version': CACHE_VERSION, 'scenes': scenes_key,
              'encoder_epochs': [int(e) for e in encoder_epochs]}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:20]


def _to_storage(built):
    arrays = {'info_json': np.array(json.dumps(built['info']))}
    for split in mnist_scenes.SPLITS:
        for name in _FLOAT16_KEYS:
            arrays[f'{split}_{name}'] = built[f'{split}_{name}'].astype(np.float16)
    for name, value in built['encoder_params'].items():
        arrays['encoder__' + name] = value
    return arrays


def _from_storage(arrays):
    data = {f'{split}_{name}': arrays[f'{split}_{name}'].astype(np.float32)
            for split in mnist_scenes.SPLITS for name in _FLOAT16_KEYS}
    data['encoder_params'] = {name[len('encoder__'):]: value for name, value in arrays.items()
                              if name.startswith('encoder__')}
    data['info'] = json.loads(str(arrays['info_json']))
    data['encoder_accuracy'] = data['info']['encoder_accuracy']
    return data


def _log(verbose, message):
    if verbose:
        print(message, file=sys.stderr, flush=True)
