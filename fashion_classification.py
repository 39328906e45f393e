"""Fashion-MNIST with the reference exercise's CNN, trained by plain SGD at three learning rates.

    python fashion_classification.py                         # full run: 3 learning rates x 15 epochs
    python fashion_classification.py --quick                 # smoke run on a subset, a few seconds
    python fashion_classification.py --resume --plot-filters # reuse finished runs, draw the kernels
    python fashion_classification.py --batchnorm --run-name batchnorm   # batch norm after each conv

The network (sequential.Sequential; the table printed at the start is model.summary()):

    conv 16 x 3x3, stride 1, pad 1 (keeps 28x28) -> ReLU -> max pool 2x2 stride 2   16x14x14
    conv 32 x 3x3, stride 1, no pad              -> ReLU -> max pool 2x2 stride 2   32x6x6
    affine 600 -> ReLU -> dropout -> affine 120 -> ReLU -> affine 10 -> log-softmax, NLL loss

Dropout: our p is the probability of KEEPING a unit. We keep p = 0.75, i.e. drop 25% of
the 600 units in training, which is PyTorch's nn.Dropout(0.25) (drop probability
d = 1 - p). Change it with --keep-prob.

Protocol: for each learning rate in {0.001, 0.01, 0.1} a fresh model (He initialization,
the same seed, so the same initial weights) is trained for 15 epochs with plain SGD
(w -= lr * dw: no momentum, no learning-rate decay, no weight decay) on minibatches of 64.
The Solver keeps each run's parameters from its epoch of best validation accuracy. The
learning rate whose run has the best validation accuracy is chosen, and only that model
is evaluated on the test set. Batch size 64: the usual size for this exercise; it gives
860 updates per epoch (plain SGD needs many steps) and per image it is as fast as larger
batches here.

Data: Fashion-MNIST from --data-dir, $HANDGRAD_DATA, data/fashion-mnist/ or the Debian
package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), else downloaded. The
first 55,000 training images are for training, the last 5,000 for validation, and the
10,000 official test images for the final test. Normalization: pixels are scaled to
[0, 1], then the mean and standard deviation of all training pixels (one scalar each,
computed on the 55,000 training images only) are subtracted and divided out, for every
split.

Written under <--results-dir>/<--run-name> (default results/full/, with --quick
results/quick/), each path printed at the end:
    fashion_loss.png            best run: mean training loss per epoch
    fashion_accuracy.png        best run: validation (and training-subset) accuracy per epoch
    fashion_lr_comparison.png   all learning rates: training loss and validation accuracy
    fashion_cnn_params.npz      the best run's parameters (np.load gives model.params' keys)
    fashion_classification.json every number of the run
    fashion_conv1_filters.png, fashion_conv2_filters.png   with --plot-filters
Checkpoints go to --checkpoint-dir (one series per learning rate); --resume continues
interrupted runs and skips finished ones (and trains a larger --epochs on). It is refused,
before any training, when no learning rate has a checkpoint there, or when one was written
with another --batch-size, --keep-prob, --batchnorm, --dtype, --seed or --quick (the
message names the flag): a resumed run continues the checkpoint's weights and optimizer
state, and its per-epoch losses are computed with the checkpoint's batch size.

In a notebook:
    from fashion_classification import build_model, plot_filters
    params = dict(np.load("results/full/fashion_cnn_params.npz"))
    plot_filters(params, "results")
"""
import experiment

experiment.apply_thread_policy()   # before NumPy loads

import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from checkpoint import load_params, model_arrays, save_params  # noqa: E402
from data import load_fashion_mnist, standardized_splits  # noqa: E402
from plots import (TRAIN_COLOUR, VAL_COLOUR, epoch_axis, fit_title, legend_outside, log_axis,  # noqa: E402
                   note_short_run, plot_accuracy, run_style, save_figure)
from sequential import (  # noqa: E402
    Affine, BatchNorm, Conv, Dropout, LogSoftmax, MaxPool, ReLU, Sequential)
from solver import epoch_means  # noqa: E402

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def parse_args(argv=None):
    t = experiment
    parser = t.parser(__doc__.split("\n\n")[0], data_help=(
        "folder holding Fashion-MNIST (else $HANDGRAD_DATA, data/, the Debian package's "
        "folder; downloaded if absent)"))
    t.add_scaled(parser, "--epochs", 15, 2, "epochs per learning rate", type=t.positive_int)
    parser.add_argument("--batch-size", type=t.positive_int, default=64, help="minibatch size")
    parser.add_argument("--learning-rates", type=t.positive_float, nargs="+",
                        default=[0.001, 0.01, 0.1], help="plain-SGD learning rates to compare")
    parser.add_argument("--keep-prob", type=t.keep_probability, default=0.75,
                        help="dropout KEEP probability p (a drop probability d is p = 1 - d)")
    parser.add_argument("--batchnorm", action="store_true",
                        help="put a batch norm after each conv (before its ReLU; the convs then "
                             "have no bias), to compare with the plain network")
    parser.add_argument("--plot-filters", action="store_true",
                        help="also save pictures of the conv1 and conv2 kernels of the best run")
    args = t.parse(parser, argv)
    t.check_resume(args, {checkpoint_name(args, lr): run_settings(args)
                          for lr in args.learning_rates})
    return args


RUN_SETTINGS = ("batch_size", "keep_prob", "batchnorm", "dtype", "seed", "quick")


def run_settings(args):
    """The flags a learning rate's checkpoints are written with; --resume refuses others."""
    return experiment.run_settings(args, *RUN_SETTINGS)


def checkpoint_name(args, lr):
    """The checkpoint series of learning rate lr: <checkpoint-dir>/fashion_lr<lr>."""
    return os.path.join(args.checkpoint_dir, f"fashion_lr{lr:g}")


def load_data(data_dir, dtype, quick):
    """Fashion-MNIST as standardized (N, 1, 28, 28) arrays: train 55,000, val 5,000, test
    10,000 (quick: 2,000 / 500 / 1,000); returns (data, normalization)."""
    limits = (2000, 500, 1000) if quick else None
    return standardized_splits(*load_fashion_mnist(data_dir), num_val=5000, dtype=dtype,
                               limits=limits)


def cached_data(args):
    """load_data for args, once per process (a --jobs worker loads its own copy)."""
    return experiment.cached((args.data_dir, args.dtype, args.quick),
                             lambda: load_data(args.data_dir, np.dtype(args.dtype), args.quick))


def fashion_cnn_layers(keep_prob=0.75, num_classes=10, batchnorm=False):
    """
    The reference exercise's Fashion-MNIST network as a list of layers for Sequential
    (used here and by transfer_learning.py):

        conv 16 x 3x3 pad 1 - ReLU - max pool 2 - conv 32 x 3x3 - ReLU - max pool 2 -
        affine 600 - ReLU - dropout (keep keep_prob) - affine 120 - ReLU -
        affine num_classes - log-softmax

    batchnorm=True puts a BatchNorm after each conv (before its ReLU), as Ioffe and
    Szegedy do; the convs then need no bias (beta shifts each channel), so they have none.
    """
    def conv(filters, pad):
        if batchnorm:
            return [Conv(filters, 3, stride=1, pad=pad, bias=False), BatchNorm()]
        return [Conv(filters, 3, stride=1, pad=pad)]

    return [
        *conv(16, "same"), ReLU(), MaxPool(2, stride=2),
        *conv(32, 0), ReLU(), MaxPool(2, stride=2),
        Affine(600), ReLU(), Dropout(keep=keep_prob),
        Affine(120), ReLU(),
        Affine(num_classes), LogSoftmax(),
    ]


def build_model(keep_prob=0.75, dtype=np.float32, seed=0, batchnorm=False):
    """The network for (1, 28, 28) inputs, He-initialized (weight_scale=None), with a batch
    norm after each conv if batchnorm. Each ReLU runs after the max pool that follows it
    (pool_before_relu): the same numbers, on a 4x smaller array."""
    return Sequential((1, 28, 28), fashion_cnn_layers(keep_prob, batchnorm=batchnorm),
                      weight_scale=None,
                      dtype=dtype, seed=seed, pool_before_relu=True)


def train(task):
    """
    Train one model with plain SGD at learning rate lr, task = (lr, args) (a --jobs
    worker's job). Returns (record, arrays): the run's numbers and the parameters (and
    batch-norm statistics, with --batchnorm) of its best validation epoch.
    """
    lr, args = task
    data, _ = cached_data(args)
    model = build_model(args.keep_prob, np.dtype(args.dtype), args.seed, args.batchnorm)
    train_data = {key: data[key] for key in ("X_train", "y_train", "X_val", "y_val")}
    print(f"\n=== learning rate {lr:g} ===", flush=True)
    solver, run = experiment.train(
        model, train_data,
        dict(update_rule="sgd", optim_config={"learning_rate": lr}, batch_size=args.batch_size,
             num_epochs=args.epochs, print_every=200, seed=args.seed),
        checkpoint_name=checkpoint_name(args, lr), resume=args.resume, label=f"lr {lr:g}",
        settings=run_settings(args))
    history = solver.val_acc_history
    record = {
        "learning_rate": lr,
        "final_val_acc": history[-1] if history else None,
        "best_val_acc": solver.best_val_acc if history else None,
        "best_epoch": int(np.argmax(history)) + 1 if history else None,
        "val_acc_history": history,
        "train_acc_history": solver.train_acc_history,
        "epoch_losses": epoch_means(solver.loss_history, len(data["y_train"]), args.batch_size),
        "seconds_per_epoch": run["seconds_per_epoch"],
        "diverged": run["diverged"],
        "checkpoint": run["resumed_from"],
    }
    return record, model_arrays(model)


def accuracy(model, X, y, batch_size=500):
    """Fraction of X classified as y (argmax of the model's outputs)."""
    predictions = np.concatenate([model.loss(X[i:i + batch_size]).argmax(axis=1)
                                  for i in range(0, len(X), batch_size)])
    return float(np.mean(predictions == y))


def plot_comparison(records, path, title):
    """Two panels: mean training loss (log scale, TRAIN_COLOUR) and validation accuracy
    (VAL_COLOUR) per epoch; each learning rate has its own marker and line style."""
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for k, record in enumerate(records):
        label = f"lr {record['learning_rate']:g}"
        losses, accs = record["epoch_losses"], record["val_acc_history"]
        ax_loss.plot(np.arange(1, len(losses) + 1), losses, color=TRAIN_COLOUR,
                     label=f"{label} train", **run_style(k))
        ax_acc.plot(np.arange(1, len(accs) + 1), accs, color=VAL_COLOUR,
                    label=f"{label} val", **run_style(k))
    ax_loss.set_ylabel("mean training loss (NLL, log scale)")
    ax_acc.set_ylabel("validation accuracy")
    num_epochs = max((len(r["val_acc_history"]) for r in records), default=1)
    for ax in (ax_loss, ax_acc):
        epoch_axis(ax, num_epochs)
        ax.grid(alpha=0.3)
        legend_outside(ax, "below")
    log_axis(ax_loss)
    note_short_run(ax_acc, {r["learning_rate"]: r["val_acc_history"] for r in records},
                   colours={r["learning_rate"]: VAL_COLOUR for r in records})
    fig.suptitle(fit_title(title, 110), fontsize=11)
    return save_figure(fig, path)


def kernel_mosaic(kernels):
    """
    Tile kernels (rows, cols, kh, kw) into one image with a 1-pixel gap (NaN, drawn grey)
    between tiles; returns an array of shape (rows * (kh + 1) - 1, cols * (kw + 1) - 1).
    """
    rows, cols, kh, kw = kernels.shape
    mosaic = np.full((rows * (kh + 1) - 1, cols * (kw + 1) - 1), np.nan)
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (kh + 1):r * (kh + 1) + kh, c * (kw + 1):c * (kw + 1) + kw] = kernels[r, c]
    return mosaic


def _plot_mosaic(mosaic, path, title, figsize):
    """Draw a mosaic of kernels on a symmetric red-white-blue scale, with a colorbar."""
    import matplotlib.pyplot as plt
    limit = float(np.nanmax(np.abs(mosaic))) or 1.0
    fig, ax = plt.subplots(figsize=figsize)
    # grey gaps (NaN), so that near-zero (white) weights don't merge neighbouring tiles
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.45")
    image = ax.imshow(mosaic, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="weight (red > 0 > blue)")
    return save_figure(fig, path)


def plot_strongest_channels(weights, path, per_filter=4, columns=8):
    """
    conv2's kernels (F, C, kh, kw) as one panel per output filter f, holding the
    per_filter kernels W[f, c] of largest L2 norm in a 2 x 2 block, strongest first
    (row-major), with their input channels c (from 1) in the panel title. One symmetric
    colour scale for the figure. Returns path.
    """
    import matplotlib.pyplot as plt
    F, C, kh, kw = weights.shape
    per_filter = min(per_filter, C)
    side = int(np.ceil(np.sqrt(per_filter)))
    norms = np.sqrt((weights ** 2).sum(axis=(2, 3)))                 # (F, C)
    strongest = np.argsort(-norms, axis=1, kind="stable")[:, :per_filter]
    limit = float(np.abs(weights).max()) or 1.0
    rows = int(np.ceil(F / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.25 * columns + 1, 1.7 * rows), squeeze=False)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.45")
    for f, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if f >= F:
            ax.axis("off")
            continue
        tiles = np.full((side * side, kh, kw), np.nan)
        tiles[:per_filter] = weights[f, strongest[f]]
        image = ax.imshow(kernel_mosaic(tiles.reshape(side, side, kh, kw)), cmap=cmap,
                          vmin=-limit, vmax=limit, interpolation="nearest")
        # two short lines: one line of 4 channel numbers ran into the neighbour's title
        ax.set_title(f"f{f + 1}\nc {' '.join(str(c + 1) for c in strongest[f])}", fontsize=7,
                     linespacing=1.1)
    fig.suptitle(f"conv2: the {per_filter} strongest of each filter's {C} input-channel kernels "
                 f"({kh}x{kw}),\nfilter f1..f{F}; under f: their input channels c (conv1 "
                 f"filters), strongest first", fontsize=9)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="weight (red > 0 > blue)")
    return save_figure(fig, path)


def plot_filters(params, results_dir="results", prefix="fashion"):
    """
    Save pictures of the first two conv layers' kernels; usable from a notebook.

    Inputs:
    - params: dict with 'conv1_W' (F1, C, kh, kw) and 'conv2_W' (F2, F1, kh, kw), e.g.
      model.params or dict(np.load('results/full/fashion_cnn_params.npz')).
    - results_dir: folder for the PNGs.
    - prefix: file name prefix.

    conv1: one tile per filter (its input has one channel), arranged in a grid.
    conv2: one panel per output filter f, showing its 4 strongest kernels W[f, c] (the
    input channels c with the largest L2 norm, labelled in the panel's title): all 16 x 32
    kernels in one grid are too dense to read, and averaging over the input channels would
    cancel kernels of unrelated signs.
    Colours are the raw weights on one symmetric scale per figure (white = 0, grey lines
    separate the tiles).

    Returns the two PNG paths.
    """
    conv1, conv2 = np.asarray(params["conv1_W"], np.float64), np.asarray(params["conv2_W"], np.float64)
    F1, C1, kh, kw = conv1.shape
    columns = int(np.ceil(np.sqrt(F1 * C1)))
    rows = int(np.ceil(F1 * C1 / columns))
    tiles = np.full((rows * columns, kh, kw), np.nan)
    tiles[:F1 * C1] = conv1.reshape(F1 * C1, kh, kw)
    path1 = _plot_mosaic(
        kernel_mosaic(tiles.reshape(rows, columns, kh, kw)),
        os.path.join(results_dir, f"{prefix}_conv1_filters.png"),
        f"conv1: the {F1} kernels ({kh}x{kw}) applied to the image,\n"
        f"filter 1..{F1} left to right, top to bottom", (4.5, 4.5))
    path2 = plot_strongest_channels(conv2, os.path.join(results_dir, f"{prefix}_conv2_filters.png"))
    return path1, path2


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    data, normalization = cached_data(args)
    print(f"Fashion-MNIST: {len(data['y_train'])} train, {len(data['y_val'])} val, "
          f"{len(data['y_test'])} test images ({args.dtype}); normalized with training "
          f"pixel mean {normalization['pixel_mean']:.4f}, std {normalization['pixel_std']:.4f}")
    print(f"dropout: keep probability p = {args.keep_prob:g} "
          f"(drops {1 - args.keep_prob:.0%} of the units; PyTorch nn.Dropout({1 - args.keep_prob:g}))")
    summary = build_model(args.keep_prob, np.dtype(args.dtype), args.seed, args.batchnorm).summary(print_table=True)
    print(f"plain SGD, batch size {args.batch_size}, {args.epochs} epochs per learning rate, "
          f"learning rates {', '.join(f'{lr:g}' for lr in args.learning_rates)}")

    runs = [result for _, result in experiment.run_sweep(
        train, [(lr, args) for lr in args.learning_rates], args.jobs)]
    records = [record for record, _ in runs]
    finished = [run for run in runs if run[0]["best_val_acc"] is not None]
    if not finished:
        raise SystemExit("every learning rate diverged before finishing an epoch")
    best, params = max(finished, key=lambda run: run[0]["best_val_acc"])
    lr = best["learning_rate"]
    model = load_params(build_model(args.keep_prob, np.dtype(args.dtype), args.seed, args.batchnorm), params)
    test_acc = accuracy(model, data["X_test"], data["y_test"])
    wall_time = time.perf_counter() - start

    name = os.path.join(args.results_dir, "fashion")
    train_subset = min(1000, len(data["y_train"]))
    network = "Fashion-MNIST CNN with batch norm" if args.batchnorm else "Fashion-MNIST CNN"
    files = {
        "loss_plot": plot_accuracy(
            {f"lr {lr:g} train": best["epoch_losses"]}, f"{name}_loss.png",
            f"{network}, plain SGD lr {lr:g} (best on validation):\ntraining loss",
            ylabel="mean training loss per epoch (NLL)", split="train", log_scale=True),
        "accuracy_plot": plot_accuracy(
            {f"validation ({len(data['y_val']):,} images)": best["val_acc_history"],
             f"training (fixed {train_subset:,}-image subset)": best["train_acc_history"]},
            f"{name}_accuracy.png",
            f"{network}, plain SGD lr {lr:g} (best on validation):\naccuracy per epoch"),
        "comparison_plot": plot_comparison(
            records, f"{name}_lr_comparison.png",
            f"{network}, plain SGD, batch {args.batch_size}: learning rates compared"),
        "params": save_params(model, f"{name}_cnn_params.npz"),
    }
    if args.plot_filters:
        files["conv1_filters"], files["conv2_filters"] = plot_filters(model.params, args.results_dir)
    files["json"] = os.path.join(args.results_dir, "fashion_classification.json")
    results = {
        "args": vars(args), "normalization": normalization, "dropout_keep_prob": args.keep_prob,
        "model_summary": summary.splitlines(), "runs": records,
        "chosen_learning_rate": lr, "best_val_acc": best["best_val_acc"], "test_acc": test_acc,
        "wall_time_seconds": wall_time, "files": files,
    }
    experiment.write_json(files["json"], results)

    print()
    experiment.print_table(
        ["learning rate", "final val acc", "best val acc", "best epoch", "s/epoch"],
        [[f"{r['learning_rate']:g}", "diverged in epoch 1", "", "", ""] if r["best_val_acc"] is None
         else [f"{r['learning_rate']:g}", f"{r['final_val_acc']:.4f}", f"{r['best_val_acc']:.4f}",
               r["best_epoch"], "-" if r["seconds_per_epoch"] is None else f"{r['seconds_per_epoch']:.1f}"]
         + (["(diverged)"] if r["diverged"] else []) for r in records])
    print(f"\nbest learning rate {lr:g}: val acc {best['best_val_acc']:.4f} (epoch "
          f"{best['best_epoch']}), test acc {test_acc:.4f} on {len(data['y_test'])} test images")
    print(f"wall time {wall_time:.0f} s")
    experiment.print_files(files)
    return results


def cli():
    """The command's entry point: main() with data errors as one message (see experiment.run)."""
    return experiment.run(main)


if __name__ == "__main__":
    sys.exit(cli())
