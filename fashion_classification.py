"""Fashion-MNIST with the reference exercise's CNN, trained by plain SGD at three learning rates.

    python fashion_classification.py                         # full run: 3 learning rates x 15 epochs
    python fashion_classification.py --quick                 # smoke run on a subset, a few seconds
    python fashion_classification.py --resume --plot-filters # reuse finished runs, draw the kernels

The network (cnn.Sequential; the table printed at the start is model.summary()):

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

Written under --results-dir (default results/), each path printed at the end:
    fashion_loss.png            best run: mean training loss per epoch
    fashion_accuracy.png        best run: validation (and training-subset) accuracy per epoch
    fashion_lr_comparison.png   all learning rates: training loss and validation accuracy
    fashion_cnn_params.npz      the best run's parameters (np.load gives model.params' keys)
    fashion_classification.json every number of the run
    fashion_conv1_filters.png, fashion_conv2_filters.png   with --plot-filters
Checkpoints go to --checkpoint-dir (one series per learning rate); --resume continues
interrupted runs and skips finished ones.

In a notebook:
    from fashion_classification import build_model, plot_filters
    params = dict(np.load("results/fashion_cnn_params.npz"))
    plot_filters(params, "results")
"""
import argparse
import json
import os
import time

# One BLAS thread unless the caller chose otherwise (read when NumPy loads, so set before
# importing it). The matrices of this network are small: on the 2-core machine, with other
# processes running, two OpenBLAS threads took 82 s per epoch and one thread 20 s, since
# OpenBLAS threads spin waiting for a core that is busy elsewhere.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from cnn import (  # noqa: E402
    Affine,
    Conv,
    Dropout,
    LogSoftmax,
    MaxPool,
    ReLU,
    Sequential,
    save_params,
)
from data import load_fashion_mnist, standardized_splits  # noqa: E402
from fileio import write_atomic  # noqa: E402
from plots import plot_accuracy, save_figure  # noqa: E402
from solver import NonFiniteLossError, Solver, epoch_means  # noqa: E402

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None,
                        help="folder holding Fashion-MNIST (else $HANDGRAD_DATA, data/, the "
                             "Debian package's folder; downloaded if absent)")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--resume", action="store_true",
                        help="continue each learning rate's run from its latest checkpoint, if any")
    parser.add_argument("--epochs", type=int, default=15, help="epochs per learning rate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[0.001, 0.01, 0.1],
                        help="plain-SGD learning rates to compare")
    parser.add_argument("--keep-prob", type=float, default=0.75,
                        help="dropout KEEP probability p (a drop probability d is p = 1 - d)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot-filters", action="store_true",
                        help="also save pictures of the conv1 and conv2 kernels of the best run")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2,000 train / 500 val / 1,000 test images, 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 2
    return args


def load_data(data_dir, dtype, quick):
    """Fashion-MNIST as standardized (N, 1, 28, 28) arrays: train 55,000, val 5,000, test 10,000."""
    limits = (2000, 500, 1000) if quick else None
    return standardized_splits(*load_fashion_mnist(data_dir), num_val=5000, dtype=dtype,
                               limits=limits)


def fashion_layers(keep_prob=0.75, num_classes=10):
    """The reference exercise's network as a list of cnn.Sequential layers."""
    return [
        Conv(16, 3, stride=1, pad="same"), ReLU(), MaxPool(2, stride=2),
        Conv(32, 3, stride=1, pad=0), ReLU(), MaxPool(2, stride=2),
        Affine(600), ReLU(), Dropout(keep=keep_prob),
        Affine(120), ReLU(),
        Affine(num_classes), LogSoftmax(),
    ]


def build_model(keep_prob=0.75, dtype=np.float32, seed=0):
    """The network for (1, 28, 28) inputs, He-initialized (weight_scale=None). Each ReLU
    runs after the max pool that follows it (pool_before_relu): the same numbers, on a 4x
    smaller array."""
    return Sequential((1, 28, 28), fashion_layers(keep_prob), weight_scale=None,
                      dtype=dtype, seed=seed, pool_before_relu=True)


def train(lr, data, args):
    """Train one model with plain SGD at learning rate lr; returns (model, solver, record)."""
    model = build_model(args.keep_prob, np.dtype(args.dtype), args.seed)
    train_data = {key: data[key] for key in ("X_train", "y_train", "X_val", "y_val")}
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    checkpoint_name = os.path.join(args.checkpoint_dir, f"fashion_lr{lr:g}")
    solver = Solver(model, train_data, update_rule="sgd", optim_config={"learning_rate": lr},
                    batch_size=args.batch_size, num_epochs=args.epochs, print_every=200,
                    seed=args.seed, checkpoint_name=checkpoint_name)
    latest = args.resume and solver.resume_latest()
    if latest:
        print(f"  resumed from {latest} after epoch {solver.epoch}")
    start_epoch, start = solver.epoch, time.perf_counter()
    diverged = None
    try:
        solver.train()
    except NonFiniteLossError as error:   # report it and go on with the other learning rates
        diverged = str(error)
        print(f"  lr {lr:g} diverged: {error}")
    epochs_run = solver.epoch - start_epoch
    record = {
        "learning_rate": lr,
        "final_val_acc": solver.val_acc_history[-1] if solver.val_acc_history else None,
        "best_val_acc": solver.best_val_acc if solver.val_acc_history else None,
        "best_epoch": int(np.argmax(solver.val_acc_history)) + 1 if solver.val_acc_history else None,
        "val_acc_history": solver.val_acc_history,
        "train_acc_history": solver.train_acc_history,
        "epoch_losses": epoch_means(solver.loss_history, len(data["y_train"]), args.batch_size),
        "seconds_per_epoch": (time.perf_counter() - start) / epochs_run if epochs_run else None,
        "diverged": diverged,
        "checkpoint": latest,
    }
    return model, solver, record


def plot_comparison(records, path, title):
    """Two panels: mean training loss and validation accuracy per epoch, one line per lr."""
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for record in records:
        label = f"lr {record['learning_rate']:g}"
        losses, accs = record["epoch_losses"], record["val_acc_history"]
        ax_loss.plot(np.arange(1, len(losses) + 1), losses, marker="o", label=label)
        ax_acc.plot(np.arange(1, len(accs) + 1), accs, marker="o", label=label)
    ax_loss.set_ylabel("mean training loss (NLL)")
    ax_loss.set_yscale("log")
    ax_acc.set_ylabel("validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def _kernel_mosaic(kernels):
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


def _plot_mosaic(mosaic, tile_shape, path, title, xlabel, ylabel, figsize, label_tiles):
    """Draw a mosaic on a symmetric red-white-blue scale; optionally number the tile rows and columns."""
    import matplotlib.pyplot as plt
    limit = float(np.nanmax(np.abs(mosaic))) or 1.0
    fig, ax = plt.subplots(figsize=figsize)
    # grey gaps (NaN), so that near-zero (white) weights don't merge neighbouring tiles
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.45")
    image = ax.imshow(mosaic, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    kh, kw = tile_shape
    if label_tiles:
        rows, columns = (mosaic.shape[0] + 1) // (kh + 1), (mosaic.shape[1] + 1) // (kw + 1)
        ax.set_xticks(np.arange(columns) * (kw + 1) + (kw - 1) / 2, np.arange(1, columns + 1), fontsize=6)
        ax.set_yticks(np.arange(rows) * (kh + 1) + (kh - 1) / 2, np.arange(1, rows + 1), fontsize=6)
        ax.tick_params(length=0)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="weight (red > 0 > blue)")
    return save_figure(fig, path)


def plot_filters(params, results_dir="results", prefix="fashion"):
    """
    Save pictures of the first two conv layers' kernels; usable from a notebook.

    Inputs:
    - params: dict with 'conv1_W' (F1, C, kh, kw) and 'conv2_W' (F2, F1, kh, kw), e.g.
      model.params or dict(np.load('results/fashion_cnn_params.npz')).
    - results_dir: folder for the PNGs.
    - prefix: file name prefix.

    conv1: one tile per filter (its input has one channel), arranged in a grid.
    conv2: one tile per (output channel, input channel) pair: row f, column c shows
    W[f, c], the 3x3 kernel by which filter f filters input channel c. We show every
    pair rather than averaging over input channels, because a filter's kernels on
    different channels have unrelated signs and an average would cancel them out.
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
        _kernel_mosaic(tiles.reshape(rows, columns, kh, kw)), (kh, kw),
        os.path.join(results_dir, f"{prefix}_conv1_filters.png"),
        f"conv1: the {F1} kernels ({kh}x{kw}) applied to the image,\n"
        f"filter 1..{F1} left to right, top to bottom", "", "", (4.5, 4.5), False)
    F2, C2, kh2, kw2 = conv2.shape
    path2 = _plot_mosaic(
        _kernel_mosaic(conv2), (kh2, kw2),
        os.path.join(results_dir, f"{prefix}_conv2_filters.png"),
        f"conv2: one tile per (output, input) channel pair, W[f, c] ({kh2}x{kw2});\n"
        f"row f = output filter 1..{F2}, column c = input channel 1..{C2} "
        f"(not averaged over c:\nkernels on different channels have unrelated signs "
        f"and would cancel out)", f"input channel c (conv1 filter) 1..{C2}",
        f"output filter f 1..{F2}", (6, 10), True)
    return path1, path2


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    data, normalization = load_data(args.data_dir, np.dtype(args.dtype), args.quick)
    print(f"Fashion-MNIST: {len(data['y_train'])} train, {len(data['y_val'])} val, "
          f"{len(data['y_test'])} test images ({args.dtype}); normalized with training "
          f"pixel mean {normalization['pixel_mean']:.4f}, std {normalization['pixel_std']:.4f}")
    print(f"dropout: keep probability p = {args.keep_prob:g} "
          f"(drops {1 - args.keep_prob:.0%} of the units; PyTorch nn.Dropout({1 - args.keep_prob:g}))")
    summary = build_model(args.keep_prob, np.dtype(args.dtype), args.seed).summary(print_table=True)
    print(f"plain SGD, batch size {args.batch_size}, {args.epochs} epochs per learning rate, "
          f"learning rates {', '.join(f'{lr:g}' for lr in args.learning_rates)}")

    runs = []
    for lr in args.learning_rates:
        print(f"\n=== learning rate {lr:g} ===")
        runs.append(train(lr, data, args))
    finished = [run for run in runs if run[2]["best_val_acc"] is not None]
    if not finished:
        raise SystemExit("every learning rate diverged before finishing an epoch")
    model, solver, best = max(finished, key=lambda run: run[2]["best_val_acc"])
    lr = best["learning_rate"]
    test_acc = solver.check_accuracy(data["X_test"], data["y_test"], batch_size=500)
    wall_time = time.perf_counter() - start

    os.makedirs(args.results_dir, exist_ok=True)
    name = os.path.join(args.results_dir, "fashion")
    files = {
        "loss_plot": plot_accuracy(
            {f"lr {lr:g}": best["epoch_losses"]}, f"{name}_loss.png",
            f"Fashion-MNIST CNN, plain SGD lr {lr:g} (best on validation): training loss",
            ylabel="mean training loss per epoch (NLL)"),
        "accuracy_plot": plot_accuracy(
            {"validation (5,000 images)": best["val_acc_history"],
             "training (fixed 1,000-image subset)": best["train_acc_history"]},
            f"{name}_accuracy.png",
            f"Fashion-MNIST CNN, plain SGD lr {lr:g} (best on validation): accuracy per epoch"),
        "comparison_plot": plot_comparison(
            [run[2] for run in runs], f"{name}_lr_comparison.png",
            f"Fashion-MNIST CNN, plain SGD, batch {args.batch_size}: learning rates compared"),
        "params": f"{name}_cnn_params.npz",
    }
    save_params(model, files["params"])
    if args.plot_filters:
        files["conv1_filters"], files["conv2_filters"] = plot_filters(model.params, args.results_dir)
    files["json"] = os.path.join(args.results_dir, "fashion_classification.json")
    results = {
        "args": vars(args), "normalization": normalization, "dropout_keep_prob": args.keep_prob,
        "model_summary": summary.splitlines(), "runs": [run[2] for run in runs],
        "chosen_learning_rate": lr, "best_val_acc": best["best_val_acc"], "test_acc": test_acc,
        "wall_time_seconds": wall_time, "files": files,
    }
    write_atomic(files["json"], json.dumps(results, indent=2))

    print(f"\n{'learning rate':>13} {'final val acc':>14} {'best val acc':>13} {'best epoch':>11} {'s/epoch':>8}")
    for run in runs:
        r = run[2]
        if r["best_val_acc"] is None:
            print(f"{r['learning_rate']:>13g} {'diverged in epoch 1':>38}")
            continue
        print(f"{r['learning_rate']:>13g} {r['final_val_acc']:>14.4f} {r['best_val_acc']:>13.4f} "
              f"{r['best_epoch']:>11d} {r['seconds_per_epoch'] or float('nan'):>8.1f}"
              + ("  (diverged)" if r["diverged"] else ""))
    print(f"\nbest learning rate {lr:g}: val acc {best['best_val_acc']:.4f} (epoch "
          f"{best['best_epoch']}), test acc {test_acc:.4f} on {len(data['y_test'])} test images")
    print(f"wall time {wall_time:.0f} s")
    for key, path in files.items():
        print(f"{key.replace('_', ' ')}: {path}")
    return results


if __name__ == "__main__":
    main()
