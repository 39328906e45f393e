"""Transfer learning with handgrad's own networks: from scratch vs fine-tune vs freeze.

    python transfer_learning.py                     # full run: pretrain, then both targets
    python transfer_learning.py --quick             # smoke run on subsets, well under a minute
    python transfer_learning.py --targets ants-bees --source-params results/full/transfer_source.npz

The reference exercise fine-tunes and freezes a network pretrained on ImageNet. No
pretrained weights exist here, so the script first makes its own SOURCE network:

    the Fashion-MNIST CNN of fashion_classification.py (conv 16 - pool - conv 32 - pool -
    affine 600 - dropout - affine 120 - affine 10, 769,930 parameters), trained with Adam
    for --source-epochs epochs on the 55,000 Fashion-MNIST training images, keeping the
    epoch best on the 5,000 validation images. Saved as results/full/transfer_source.npz;
    --source-params PATH uses saved weights instead (e.g. fashion_classification.py's
    results/full/fashion_cnn_params.npz: same keys and shapes).

Then, for each TARGET, three networks of that architecture are trained on the same split,
for the same --epochs, with the same optimizer (Adam, learning rate times --lr-decay after
every epoch), batch size, augmentation and seed (so the same batches in the same order):

    scratch    fresh He-initialized weights, every parameter trained
    finetune   the source weights with a new head (the last affine layer, freshly
               initialized for the target's classes), every parameter trained
    freeze     the same start, but only the new head is trained; the rest is frozen
               (model.freeze(): no gradient is computed for it, and none flows below
               the head, so a training step costs little more than a forward pass)

Each scenario is trained once per learning rate in --learning-rates (1e-3, 3e-3, 1e-2) and
keeps the one best on validation: a new head alone needs larger steps than a whole
network (at 1e-3 it is still underfitted after 25 epochs), so one shared rate would
handicap one scenario or another.

Targets:
    digits-N   MNIST with few labels: N training images per class (--labels-per-class,
               default 100 and 10: 1,000 and 100 images, drawn with --seed from MNIST's
               first 55,000 training images), validated on the last 5,000, and tested
               once on the 10,000 test images with the chosen weights.
    ants-bees  hymenoptera_data (data/images.py): 245 training and 153 validation photos,
               RGB, shorter side resized to 28 and centre-cropped to 28x28. The source
               network saw grey images: its first conv layer's weights W (16, 1, 3, 3)
               become (16, 3, 3, 3) with W / 3 on each colour channel, so on a grey image
               (R = G = B) it computes exactly what it computed before, and fine-tuning can
               learn to use colour. Frozen, it sees (R + G + B) / 3.

Preprocessing: the source network's own, for every target and channel: pixels / 255,
minus the mean of the 55,000 Fashion-MNIST training images' pixels (0.2858), divided by
their standard deviation (0.3529). (The PyTorch tutorial likewise feeds ants and bees with ImageNet's statistics.)
Augmentation, training batches only: a random shift of up to 2 pixels (reflection
padding by 2, then a random 28x28 crop) for both targets, and a random horizontal flip
for ants-bees (a mirrored ant is an ant; a mirrored digit is not a digit).

train_model records after every epoch, with the same weights and without dropout or
augmentation, the loss (mean cross-entropy) and accuracy on the whole training set and
on the validation set, and keeps the weights of the best validation accuracy (the
Solver's best_params; ties keep the earlier epoch). The best validation accuracy is an
optimistic estimate, since the epoch and the learning rate were chosen on it; the table
also shows the last epoch's, and for digits the test accuracy.

Written under <--results-dir>/<--run-name> (default results/full/, with --quick
results/quick/), each path printed at the end:
    transfer_source.npz                       the source network's parameters (unless given)
    transfer_<target>_curves.png              loss and accuracy per epoch, the 3 scenarios
    transfer_<target>_<scenario>_predictions.png   visualize_model: validation images,
                                              predicted vs true label (green right, red wrong)
    transfer_<target>_<scenario>.npz          the trained target networks' parameters
    transfer_learning.json                    every number of the run
The source pretraining is checkpointed in --checkpoint-dir; --resume continues it (or
reuses it when finished; the target trainings are not checkpointed and run again). It is
refused, before any training, when there is no source checkpoint there, with
--source-params (which skips the pretraining), or when the checkpoint was written with
another --source-batch-size, --learning-rate, --keep-prob, --dtype, --seed or --quick
(the message names the flag).
"""
import experiment

experiment.apply_thread_policy()   # before NumPy loads

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from checkpoint import load_params, save_params  # noqa: E402
from data import load_fashion_mnist, load_hymenoptera, load_mnist, train_val_split  # noqa: E402
from fashion_classification import fashion_cnn_layers  # noqa: E402
from fileio import write_atomic  # noqa: E402
from layers import log_softmax_forward  # noqa: E402
from plots import (VAL_COLOUR, epoch_axis, fit_title, log_axis, note_short_run,  # noqa: E402
                   run_style, save_figure, split_colour)
from sequential import Sequential  # noqa: E402
from solver import NonFiniteLossError, Solver  # noqa: E402

SCENARIOS = ("scratch", "finetune", "freeze")
TARGETS = ("digits", "ants-bees")
IMAGE_SIZE = 28   # the source network's input size; target images are brought to it
SOURCE_CLASSES = 10


def parse_args(argv=None):
    t = experiment
    parser = t.parser(__doc__.split("\n\n")[0], data_help=(
        "root holding the datasets (else $HANDGRAD_DATA, data/, the Debian package's "
        "Fashion-MNIST folder)"))
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS),
                        help="target tasks")
    parser.add_argument("--source-params", default=None,
                        help=".npz of a trained source network (skips the pretraining)")
    t.add_scaled(parser, "--source-epochs", 5, 1, "epochs of the source pretraining",
                 type=t.positive_int)
    parser.add_argument("--source-batch-size", type=t.positive_int, default=64,
                        help="batch size of the source pretraining")
    t.add_scaled(parser, "--epochs", 25, 3, "epochs of every target training", type=t.positive_int)
    parser.add_argument("--batch-size", type=t.positive_int, default=32,
                        help="batch size of the targets")
    parser.add_argument("--learning-rate", type=t.positive_float, default=1e-3,
                        help="Adam learning rate of the source pretraining")
    t.add_scaled(parser, "--learning-rates", [1e-3, 3e-3, 1e-2], [1e-3, 1e-2],
                 "Adam learning rates tried for every target scenario (the best on validation "
                 "is kept)", type=t.positive_float, nargs="+")
    parser.add_argument("--lr-decay", type=t.decay_factor, default=0.9,
                        help="learning-rate factor per epoch")
    t.add_scaled(parser, "--labels-per-class", [100, 10], [10],
                 "digits target: labelled training images per class (one target digits-<n> "
                 "per value)", type=t.positive_int, nargs="+")
    parser.add_argument("--keep-prob", type=t.keep_probability, default=0.75,
                        help="dropout KEEP probability of the network (PyTorch's p is 1 - this)")
    args = t.parse(parser, argv)
    if args.resume and args.source_params:
        raise t.ResumeError("--resume continues the source pretraining, which --source-params "
                            "skips (the target trainings are not checkpointed): run without "
                            "--resume")
    t.check_resume(args, {source_checkpoint_name(args): source_settings(args)},
                   batch_flag="--source-batch-size")
    return args


SOURCE_SETTINGS = ("source_batch_size", "learning_rate", "keep_prob", "dtype", "seed", "quick")


def source_settings(args):
    """The flags the source pretraining's checkpoints are written with; --resume refuses
    others."""
    return experiment.run_settings(args, *SOURCE_SETTINGS)


def source_checkpoint_name(args):
    """The source pretraining's checkpoint series: <checkpoint-dir>/transfer_source."""
    return os.path.join(args.checkpoint_dir, "transfer_source")


# ----------------------------------------------------------------------------- data

def pixel_normalization(data_dir=None):
    """(mean, std) of the Fashion-MNIST training pixels scaled to [0, 1] (the first 55,000)."""
    X_train, _, _, _ = load_fashion_mnist(data_dir)
    scaled = X_train[:55000] / 255.0
    return float(scaled.mean()), float(scaled.std())


def normalize(X, normalization, dtype):
    """uint8 images (N, C, H, W) -> (X / 255 - mean) / std, one mean and std for all channels."""
    mean, std = normalization
    return ((X / 255.0 - mean) / std).astype(dtype)


def source_data(data_dir, normalization, dtype, quick):
    """Fashion-MNIST, 55,000 train / 5,000 val (quick: 2,000 / 500), normalized (N, 1, 28, 28)."""
    X, y, _, _ = load_fashion_mnist(data_dir)
    X_train, y_train, X_val, y_val = train_val_split(X, y, num_val=5000)
    if quick:
        X_train, y_train, X_val, y_val = X_train[:2000], y_train[:2000], X_val[:500], y_val[:500]
    return {"X_train": normalize(X_train[:, None], normalization, dtype),
            "y_train": y_train.astype(np.int64),
            "X_val": normalize(X_val[:, None], normalization, dtype),
            "y_val": y_val.astype(np.int64)}


def few_labels(y, per_class, rng):
    """Sorted indices of per_class samples of every class of y, drawn without replacement."""
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                                   for c in np.unique(y)]))


def digits_data(data_dir, normalization, dtype, labels_per_class, seed, quick):
    """
    MNIST with labels_per_class training images per class (from the first 55,000), the last
    5,000 training images for validation and the 10,000 test images (quick: 500 val, 1,000
    test). Returns (data, raw) with data normalized (N, 1, 28, 28) and raw the uint8 images.
    """
    X, y, X_test, y_test = load_mnist(data_dir)
    X_pool, y_pool, X_val, y_val = train_val_split(X, y, num_val=5000)
    if quick:
        X_val, y_val, X_test, y_test = X_val[:500], y_val[:500], X_test[:1000], y_test[:1000]
    chosen = few_labels(y_pool, labels_per_class, np.random.default_rng(seed))
    raw = {"X_train": X_pool[chosen][:, None], "X_val": X_val[:, None], "X_test": X_test[:, None]}
    data = {key: normalize(value, normalization, dtype) for key, value in raw.items()}
    data.update(y_train=y_pool[chosen].astype(np.int64), y_val=y_val.astype(np.int64),
                y_test=y_test.astype(np.int64))
    return data, raw


def ants_bees_data(data_dir, normalization, dtype):
    """hymenoptera_data as (N, 3, 28, 28): returns (data, raw, class names)."""
    X_train, y_train, X_val, y_val, classes = load_hymenoptera(data_dir, image_size=IMAGE_SIZE)
    raw = {"X_train": X_train, "X_val": X_val}
    data = {"X_train": normalize(X_train, normalization, dtype), "y_train": y_train,
            "X_val": normalize(X_val, normalization, dtype), "y_val": y_val}
    return data, raw, classes


def make_augment(max_shift, flip):
    """
    An augment(X, rng) for the Solver: every image (N, C, H, W) of the batch is shifted by
    its own random (dy, dx) in [-max_shift, max_shift] (reflection padding, then a crop of
    the original size) and, if flip, mirrored left-right with probability 1/2.
    """
    def augment(X, rng):
        N = len(X)
        out = experiment.random_shift(X, rng, max_shift, padding="reflect")   # a copy
        if flip:
            mirror = rng.random(N) < 0.5
            out[mirror] = out[mirror, :, :, ::-1]
        return out
    return augment


# ----------------------------------------------------------------------------- models

def build_model(input_shape, num_classes, keep_prob=0.75, dtype=np.float32, seed=0):
    """The source architecture (fashion_classification.fashion_cnn_layers), He-initialized,
    each ReLU run after its max pool (pool_before_relu: the same numbers, less work)."""
    return Sequential(input_shape, fashion_cnn_layers(keep_prob, num_classes), weight_scale=None,
                      dtype=dtype, seed=seed, pool_before_relu=True)


def pretrained_model(source_params, input_shape, num_classes, keep_prob=0.75,
                     dtype=np.float32, seed=0):
    """
    A network with the source network's weights and a new head for num_classes classes.

    source_params: .npz path (or dict) of a source network for (1, 28, 28) inputs and
    SOURCE_CLASSES classes. For C > 1 input channels its first conv layer's weights W
    (F, 1, k, k) are repeated over the channels and divided by C: on an image whose
    channels are equal the network computes what the source network computed.
    Returns (model, head): head is the name of the new last affine layer.
    """
    params = dict(np.load(source_params)) if isinstance(source_params, (str, os.PathLike)) \
        else dict(source_params)
    channels = input_shape[0]
    if channels != params["conv1_W"].shape[1]:
        params["conv1_W"] = np.repeat(params["conv1_W"], channels, axis=1) / channels
    model = build_model(input_shape, SOURCE_CLASSES, keep_prob, dtype, seed)
    load_params(model, params)   # checks every name and shape
    head = model.replace_head(num_classes, seed=seed)
    return model, head


# ----------------------------------------------------------------------------- training

def evaluate(model, X, y, batch_size=500):
    """(mean cross-entropy loss, accuracy) of model on (X, y), without dropout."""
    log_probs = np.concatenate([log_softmax_forward(model.loss(X[i:i + batch_size]))[0]
                                for i in range(0, len(X), batch_size)])
    # log_softmax of log-probabilities changes nothing, so this works whether the network
    # ends in LogSoftmax or in class scores.
    loss = -np.mean(log_probs[np.arange(len(y)), y], dtype=np.float64)
    return float(loss), float(np.mean(np.argmax(log_probs, axis=1) == y))


def train_model(model, data, num_epochs, learning_rate=1e-3, lr_decay=1.0, batch_size=32,
                augment=None, seed=0, verbose=True, checkpoint_name=None, resume=False,
                settings=None):
    """
    Train model.trainable_params() (all parameters not frozen) with Adam via the Solver.

    Inputs:
    - model: a sequential.Sequential; its frozen parameters are not trained.
    - data: dict with X_train, y_train, X_val, y_val (normalized).
    - num_epochs, learning_rate, lr_decay (factor per epoch), batch_size, seed: as for
      the Solver; augment: the Solver's augment hook for training batches, or None.
    - checkpoint_name, resume: Solver checkpoints after every epoch (and the losses so
      far in '<checkpoint_name>_losses.json'); resume continues from
      the newest complete '<checkpoint_name>_epoch_<k>.npz' if there is one
      (experiment.ResumeError if it does not fit the model).
    - settings: the flags that define this run (experiment.run_settings), written
      beside the checkpoints for the --resume check (experiment.check_resume), or None.

    After every epoch the Solver calls the metric below on the whole training set and on
    the validation set; it returns the accuracy (which the Solver uses to keep the best
    weights) and records the loss of the same forward pass.

    Returns a dict (model.params is left at the best validation accuracy's weights):
    - train_loss, train_acc, val_loss, val_acc: one entry per epoch;
    - best_epoch (from 1), best_val_acc, final_val_acc, seconds (wall time of training),
      epochs, trainable (number of trained parameters).
    """
    losses = {"train": [], "val": []}
    X_val = data["X_val"]
    losses_file = f"{checkpoint_name}_losses.json" if checkpoint_name else None

    def acc(model, X, y):   # the Solver passes data['X_val'] itself: num_val_samples=None
        loss, accuracy = evaluate(model, X, y)
        losses["val" if X is X_val else "train"].append(loss)
        if losses_file and X is X_val:   # the losses so far, beside the checkpoints
            write_atomic(losses_file, json.dumps(losses))
        return accuracy

    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": learning_rate},
                    lr_decay=lr_decay, batch_size=batch_size, num_epochs=num_epochs,
                    print_every=10**9, verbose=verbose, metric=acc, num_train_samples=None,
                    num_val_samples=None, augment=augment, seed=seed,
                    checkpoint_name=checkpoint_name)
    latest = resume and checkpoint_name and experiment.resume_latest(solver)
    if checkpoint_name and settings is not None:
        experiment.save_settings(checkpoint_name, settings)
    if latest:
        if os.path.exists(losses_file):   # written before the checkpoint: may be ahead
            with open(losses_file) as f:
                saved = json.load(f)
            losses.update({key: saved[key][:solver.epoch] for key in losses})
        if verbose:
            print(f"  resumed from {latest} after epoch {solver.epoch}")
    start = time.perf_counter()
    solver.train()
    seconds = time.perf_counter() - start
    best = int(np.argmax(solver.val_acc_history)) + 1
    return {"epochs": num_epochs, "trainable": int(sum(model.params[p].size for p in solver.trainable)),
            "train_loss": losses["train"], "train_acc": solver.train_acc_history,
            "val_loss": losses["val"], "val_acc": solver.val_acc_history,
            "best_epoch": best, "best_val_acc": solver.best_val_acc,
            "final_val_acc": solver.val_acc_history[-1], "seconds": seconds}


def finetune(source_params, data, num_classes, learning_rate, args, augment=None):
    """Start from the source weights with a new head; train every parameter."""
    model, _ = pretrained_model(source_params, data["X_train"].shape[1:], num_classes,
                                args.keep_prob, np.dtype(args.dtype), args.seed)
    return model, _train(model, data, learning_rate, args, augment)


def freeze(source_params, data, num_classes, learning_rate, args, augment=None):
    """Start from the source weights with a new head; train only the head."""
    model, head = pretrained_model(source_params, data["X_train"].shape[1:], num_classes,
                                   args.keep_prob, np.dtype(args.dtype), args.seed)
    model.freeze()
    model.unfreeze(head)
    return model, _train(model, data, learning_rate, args, augment)


def from_scratch(data, num_classes, learning_rate, args, augment=None):
    """A freshly initialized network of the same architecture; train every parameter."""
    model = build_model(data["X_train"].shape[1:], num_classes, args.keep_prob,
                        np.dtype(args.dtype), args.seed)
    return model, _train(model, data, learning_rate, args, augment)


def _train(model, data, learning_rate, args, augment):
    """train_model with the script's settings: args.epochs, lr_decay, batch_size, seed."""
    train_data = {key: data[key] for key in ("X_train", "y_train", "X_val", "y_val")}
    record = train_model(model, train_data, args.epochs, learning_rate, args.lr_decay,
                         args.batch_size, augment, args.seed)
    record["learning_rate"] = learning_rate
    return record


def pretrain_source(args, normalization):
    """Train the source network on Fashion-MNIST; returns (params path, its record)."""
    dtype = np.dtype(args.dtype)
    data = source_data(args.data_dir, normalization, dtype, args.quick)
    model = build_model((1, IMAGE_SIZE, IMAGE_SIZE), SOURCE_CLASSES, args.keep_prob, dtype, args.seed)
    print(f"Source: Fashion-MNIST, {len(data['y_train'])} train / {len(data['y_val'])} val "
          f"images, Adam lr {args.learning_rate:g}, batch {args.source_batch_size}, "
          f"{args.source_epochs} epochs")
    model.summary(print_table=True)
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    record = train_model(model, data, args.source_epochs, args.learning_rate, 1.0,
                         args.source_batch_size, make_augment(2, flip=False), args.seed,
                         checkpoint_name=source_checkpoint_name(args), resume=args.resume,
                         settings=source_settings(args))
    path = save_params(model, os.path.join(args.results_dir, "transfer_source.npz"))
    return path, record


# ----------------------------------------------------------------------------- pictures

def visualize_model(model, X, y, images, class_names, path, num_images=12, seed=0, title=""):
    """
    Save a grid of num_images validation images (drawn with seed) with the model's
    predicted and the true label: green titles are right, red ones wrong.

    Inputs:
    - model: a classifier (model.loss(X) gives scores or log-probabilities).
    - X: the model's inputs (N, C, H, W); y: true labels (N,).
    - images: the same images for display, uint8 (N, C, H, W) with C = 1 or 3.
    - class_names: names of the classes; path: the PNG to write.
    Returns path.
    """
    import matplotlib.pyplot as plt
    pick = np.sort(np.random.default_rng(seed).choice(len(X), min(num_images, len(X)),
                                                      replace=False))
    predicted = np.argmax(model.loss(X[pick]), axis=1)
    columns = min(6, len(pick))
    rows = int(np.ceil(len(pick) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index, guess in zip(axes.flat, pick, predicted):
        image = images[index]
        if image.shape[0] == 1:
            ax.imshow(image[0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image.transpose(1, 2, 0))
        right = guess == y[index]
        ax.set_title(f"pred: {class_names[guess]}\ntrue: {class_names[y[index]]}",
                     fontsize=8, color="green" if right else "red")
    correct = int(np.sum(predicted == y[pick]))
    fig.suptitle(f"{title}\n{correct} of {len(pick)} shown are right (green)", fontsize=9, y=1.03)
    return save_figure(fig, path)


def plot_curves(records, path, title):
    """Loss (log scale) and accuracy per epoch: colour is the split (TRAIN_COLOUR,
    VAL_COLOUR), marker and line style the scenario; one legend under both panels."""
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for k, (scenario, record) in enumerate(records.items()):
        epochs = np.arange(1, len(record["val_acc"]) + 1)
        for split in ("train", "val"):
            style = dict(color=split_colour(split), label=f"{scenario} {split}", **run_style(k))
            ax_loss.plot(epochs, record[f"{split}_loss"], **style)
            ax_acc.plot(epochs, record[f"{split}_acc"], **style)
    ax_loss.set_ylabel("mean cross-entropy loss (log scale)")
    ax_acc.set_ylabel("accuracy")
    num_epochs = max(len(r["val_acc"]) for r in records.values())
    for ax in (ax_loss, ax_acc):
        epoch_axis(ax, num_epochs)
        ax.grid(alpha=0.3)
    log_axis(ax_loss)
    note_short_run(ax_acc, {s: r["val_acc"] for s, r in records.items()},
                   colours={s: VAL_COLOUR for s in records})
    handles, labels = ax_loss.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.06),
               ncol=len(records), fontsize=8)
    fig.suptitle(fit_title(title, 110), fontsize=11)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- main

def target_data(target, normalization, args):
    """(data, raw, classes, augment, description) of a target, once per process (a --jobs
    worker loads its own copy)."""
    key = (target, tuple(normalization), args.data_dir, args.dtype, args.seed, args.quick)
    return experiment.cached(key, lambda: _load_target(target, normalization, args))


def _load_target(target, normalization, args):
    dtype = np.dtype(args.dtype)
    if target.startswith("digits-"):
        per_class = int(target[len("digits-"):])
        data, raw = digits_data(args.data_dir, normalization, dtype, per_class, args.seed,
                                args.quick)
        classes = [str(d) for d in range(10)]
        augment = make_augment(2, flip=False)
        description = (f"MNIST, {per_class} labels per class: "
                       f"{len(data['y_train'])} train / {len(data['y_val'])} val / "
                       f"{len(data['y_test'])} test images")
    else:
        data, raw, classes = ants_bees_data(args.data_dir, normalization, dtype)
        augment = make_augment(2, flip=True)
        description = (f"ants vs bees (hymenoptera_data), RGB {IMAGE_SIZE}x{IMAGE_SIZE}: "
                       f"{len(data['y_train'])} train / {len(data['y_val'])} val images")
    return data, raw, classes, augment, description


def train_candidate(task):
    """
    One (scenario, learning rate) of a target (a --jobs worker's job). Returns (record,
    params) of its best validation epoch, or (None, message) if it diverged.
    """
    target, scenario, lr, source_path, normalization, args = task
    data, _, classes, augment, _ = target_data(target, normalization, args)
    print(f"--- {target}: {scenario}, learning rate {lr:g} ---", flush=True)
    train = {"scratch": lambda: from_scratch(data, len(classes), lr, args, augment),
             "finetune": lambda: finetune(source_path, data, len(classes), lr, args, augment),
             "freeze": lambda: freeze(source_path, data, len(classes), lr, args, augment)}
    try:
        model, record = train[scenario]()
    except NonFiniteLossError as error:   # too large a step: the other rates may do
        message = str(error).split(". ")[0]
        print(f"  {target}, {scenario}, lr {lr:g} diverged: {message}")
        return None, message
    return record, model.params


def run_target(target, source_path, normalization, args):
    """
    The three scenarios on one target ('digits-<labels per class>' or 'ants-bees'), each
    with every learning rate of args.learning_rates (--jobs at a time), keeping the best
    on validation. Returns the target's JSON record and its files.
    """
    data, raw, classes, _, description = target_data(target, normalization, args)
    print(f"\n=== target {target}: {description} ===")
    tasks = [(target, scenario, lr, source_path, normalization, args)
             for scenario in SCENARIOS for lr in args.learning_rates]
    outcomes = dict(((task[1], task[2]), result)
                    for task, result in experiment.run_sweep(train_candidate, tasks, args.jobs))
    records, files = {}, {}
    for scenario in SCENARIOS:
        candidates = [(lr, *outcomes[(scenario, lr)]) for lr in args.learning_rates]
        search = {f"{lr:g}": (record["best_val_acc"] if record else None)
                  for lr, record, _ in candidates}
        finished = [(lr, record, params) for lr, record, params in candidates if record]
        if not finished:
            raise SystemExit(f"{target}, {scenario}: every learning rate diverged")
        lr, record, params = max(finished, key=lambda c: c[1]["best_val_acc"])  # first on ties
        record["lr_search"] = search
        record["search_seconds"] = sum(r["seconds"] for _, r, _ in finished)
        model = load_params(build_model(data["X_train"].shape[1:], len(classes), args.keep_prob,
                                        np.dtype(args.dtype), args.seed), params)
        if "X_test" in data:
            record["test_loss"], record["test_acc"] = evaluate(model, data["X_test"], data["y_test"])
        name = os.path.join(args.results_dir, f"transfer_{target}_{scenario}")
        files[f"{scenario}_params"] = save_params(model, f"{name}.npz")
        files[f"{scenario}_predictions"] = visualize_model(
            model, data["X_val"], data["y_val"], raw["X_val"], classes, f"{name}_predictions.png",
            seed=args.seed, title=f"{target}, {scenario} (best val acc "
                                  f"{record['best_val_acc']:.3f}, epoch {record['best_epoch']})")
        records[scenario] = record
    files["curves"] = plot_curves(records, os.path.join(args.results_dir, f"transfer_{target}_curves.png"),
                                  f"{target}: from scratch vs fine-tune vs freeze\n"
                                  f"(source: Fashion-MNIST CNN)")
    return {"description": description, "classes": classes, "scenarios": records}, files


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    normalization = pixel_normalization(args.data_dir)
    print(f"normalization of every input: (pixel / 255 - {normalization[0]:.4f}) / "
          f"{normalization[1]:.4f} (Fashion-MNIST training pixels)")
    files, source = {}, None
    if args.source_params:
        source_path = args.source_params
        print(f"Source network: {source_path}")
    else:
        source_path, source = pretrain_source(args, normalization)
        files["source_params"] = source_path
    results = {"args": vars(args), "normalization": {"mean": normalization[0], "std": normalization[1]},
               "source": {"params": source_path, "training": source}, "targets": {}}
    targets = [name for target in args.targets for name in
               ([f"digits-{n}" for n in args.labels_per_class] if target == "digits" else [target])]
    for target in targets:
        results["targets"][target], target_files = run_target(target, source_path, normalization, args)
        files.update({f"{target}_{key}": path for key, path in target_files.items()})
    results["wall_time_seconds"] = time.perf_counter() - start
    files["json"] = os.path.join(args.results_dir, "transfer_learning.json")
    results["files"] = files
    experiment.write_json(files["json"], results)

    if source:
        print(f"\nsource (Fashion-MNIST): best val acc {source['best_val_acc']:.4f} "
              f"(epoch {source['best_epoch']} of {source['epochs']}), {source['seconds']:.0f} s")
    print(f"\n{'target':<10} {'scenario':<9} {'trained params':>14} {'lr':>6} {'epochs':>6} "
          f"{'best val acc (epoch)':>20} {'last val acc':>12} {'test acc':>8} {'time':>6} "
          f"{'all lrs':>7}")
    for target, record in results["targets"].items():
        for scenario, r in record["scenarios"].items():
            test = f"{r['test_acc']:.4f}" if "test_acc" in r else "-"
            print(f"{target:<10} {scenario:<9} {r['trainable']:>14,} {r['learning_rate']:>6g} "
                  f"{r['epochs']:>6} {r['best_val_acc']:>13.4f} ({r['best_epoch']:>3}) "
                  f"{r['final_val_acc']:>12.4f} {test:>8} {r['seconds']:>5.0f}s "
                  f"{r['search_seconds']:>6.0f}s")
    print(f"wall time {results['wall_time_seconds']:.0f} s")
    experiment.print_files(files)
    return results


def cli():
    """The command's entry point: main() with data errors as one message (see experiment.run)."""
    return experiment.run(main)


if __name__ == "__main__":
    sys.exit(cli())
