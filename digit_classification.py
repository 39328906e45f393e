"""MNIST digit classification with handgrad's two-layer net and CNN.

    python digit_classification.py                 # full run: sweeps, final training, test
    python digit_classification.py --quick         # small subset, under a minute
    python digit_classification.py --models cnn --resume

For each model the script
1. sweeps its hyperparameters (two-layer net: hidden size; CNN: filter size x hidden
   units), training each configuration for --sweep-epochs and measuring validation
   accuracy;
2. trains the best configuration from scratch for --epochs, keeping the parameters of
   the best validation epoch (checkpointed every epoch; --resume reuses the finished
   sweep results and continues a stopped final training — or extends a finished one
   to a larger --epochs, which gives exactly the longer run, as the learning-rate
   decay is per epoch);
   Training images are randomly shifted by up to --max-shift pixels in each direction
   (zero fill), a fresh shift per image per epoch: MNIST digits are roughly centred, so
   small translations are plausible new samples and curb overfitting.
3. reports its test accuracy, and saves plots (training loss per iteration, train/val
   accuracy per epoch) and a JSON of every configuration's result under --results-dir.

Data: MNIST's 60,000 training images are split into the first 55,000 for training and
the last 5,000 for validation; the 10,000 official test images are used once, at the end.
Normalization (the script's job, not the model's): pixels are scaled to [0, 1], then
the mean and standard deviation of all training pixels (one scalar each, computed on the
55,000 training images only) are subtracted and divided out, for every split.
"""
import argparse
import json
import os
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnn import ConvNet
from data import load_mnist, standardized_splits
from fileio import write_atomic
from plots import plot_accuracy, plot_loss
from softmax import SoftmaxClassifier
from solver import Solver

MODELS = {
    "mlp": "two-layer net (fc-relu-fc)",
    "cnn": "CNN (conv-relu-pool-fc-relu-fc)",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["mlp", "cnn"])
    parser.add_argument("--data-dir", default=None,
                        help="folder holding MNIST (else $HANDGRAD_DATA, then data/; downloaded if absent)")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--resume", action="store_true",
                        help="reuse finished sweep results and continue each final training "
                             "from its latest checkpoint, if any")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the final training")
    parser.add_argument("--sweep-epochs", type=int, default=3, help="epochs per sweep configuration")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--lr-decay", type=float, default=0.9, help="learning-rate factor per epoch")
    parser.add_argument("--update-rule", default="adam", choices=["sgd", "sgd_momentum", "rmsprop", "adam"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-shift", type=int, default=2,
                        help="random translation of training images, in pixels (0: none)")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[100, 300, 1000],
                        help="two-layer net: hidden sizes to sweep")
    parser.add_argument("--filter-sizes", type=int, nargs="+", default=[5, 7],
                        help="CNN: filter sizes to sweep")
    parser.add_argument("--cnn-hidden-sizes", type=int, nargs="+", default=[100, 256],
                        help="CNN: hidden fc sizes to sweep")
    parser.add_argument("--num-filters", type=int, default=32)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3,000 train / 500 val / 1,000 test images, tiny sweeps, 1 epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.sweep_epochs = 1, 1
        args.hidden_sizes, args.cnn_hidden_sizes = [32, 64], [32]
        args.filter_sizes, args.num_filters = [3, 5], 8
    return args


def load_data(data_dir, dtype, quick):
    """MNIST as standardized (N, 1, 28, 28) arrays: train 55,000, val 5,000, test 10,000."""
    limits = (3000, 500, 1000) if quick else None
    data, _ = standardized_splits(*load_mnist(data_dir), num_val=5000, dtype=dtype, limits=limits)
    return data


def random_shift(X, rng, max_shift):
    """
    Translate each image of X (N, C, H, W) by its own random (dy, dx) in
    [-max_shift, max_shift], filling with the batch minimum (the background: black
    pixels after normalization).
    Vectorized: every shifted copy is a window of the padded batch, picked per image.
    """
    N, _, H, W = X.shape
    padded = np.pad(X, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)),
                    constant_values=X.min())
    windows = sliding_window_view(padded, (H, W), axis=(2, 3))  # (N, C, 2s+1, 2s+1, H, W)
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, N))
    return windows[np.arange(N), :, dy, dx]


def configurations(kind, args):
    if kind == "mlp":
        return [{"hidden_dim": h} for h in args.hidden_sizes]
    return [{"num_filters": args.num_filters, "filter_size": k, "hidden_dim": h}
            for k in args.filter_sizes for h in args.cnn_hidden_sizes]


def build_model(kind, config, dtype, seed):
    if kind == "mlp":
        return SoftmaxClassifier(weight_scale=None, dtype=dtype, seed=seed, **config)
    return ConvNet(weight_scale=None, dtype=dtype, seed=seed, **config)


def train(kind, config, data, args, epochs, checkpoint_name=None, verbose=False):
    """Train one configuration; returns (model, solver, seconds per epoch)."""
    model = build_model(kind, config, np.dtype(args.dtype), args.seed)
    train_data = {key: data[key] for key in ("X_train", "y_train", "X_val", "y_val")}
    augment = None
    if args.max_shift > 0:
        def augment(X, rng):
            return random_shift(X, rng, args.max_shift)
    solver = Solver(model, train_data, update_rule=args.update_rule, augment=augment,
                    optim_config={"learning_rate": args.learning_rate}, lr_decay=args.lr_decay,
                    batch_size=args.batch_size, num_epochs=epochs, print_every=100,
                    verbose=verbose, seed=args.seed, checkpoint_name=checkpoint_name)
    latest = args.resume and solver.resume_latest()
    if latest:
        print(f"  resumed from {latest} after epoch {solver.epoch}")
    start_epoch, start = solver.epoch, time.perf_counter()
    solver.train()
    seconds_per_epoch = (time.perf_counter() - start) / max(1, solver.epoch - start_epoch)
    return model, solver, seconds_per_epoch


def describe(config):
    return ", ".join(f"{key}={value}" for key, value in config.items())


def sweep_key(config, args):
    """What a sweep result depends on: the configuration and every training setting."""
    settings = {name: getattr(args, name) for name in (
        "sweep_epochs", "batch_size", "learning_rate", "lr_decay", "update_rule", "dtype",
        "seed", "max_shift", "quick")}
    return json.dumps({"config": config, **settings}, sort_keys=True)


def run_sweep(kind, data, args):
    """
    Train every configuration for --sweep-epochs; returns [{config, val_acc, seconds_per_epoch}].
    Each result is saved as soon as it exists, so --resume skips the finished ones.
    """
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    saved_path = os.path.join(args.checkpoint_dir, f"digit_{kind}_sweep.json")
    saved = {}
    if args.resume and os.path.exists(saved_path):
        with open(saved_path) as f:
            saved = json.load(f)
    print(f"\n=== {MODELS[kind]}: sweep of {len(configurations(kind, args))} configurations, "
          f"{args.sweep_epochs} epoch(s) each ===")
    sweep = []
    for config in configurations(kind, args):
        key = sweep_key(config, args)
        if key in saved:
            entry, note = saved[key], "(from the previous run)"
        else:
            _, solver, seconds = train(kind, config, data, args, args.sweep_epochs)
            entry = {"config": config, "val_acc": solver.best_val_acc, "seconds_per_epoch": seconds}
            saved[key], note = entry, f"({seconds:.1f} s/epoch)"
            write_atomic(saved_path, json.dumps(saved, indent=1))
        sweep.append(entry)
        print(f"  {describe(config):<50} val acc {entry['val_acc']:.4f}  {note}")
    return sweep


def run_model(kind, data, args):
    sweep = run_sweep(kind, data, args)
    best = max(sweep, key=lambda entry: entry["val_acc"])["config"]

    print(f"--- final training of {describe(best)} for {args.epochs} epochs ---")
    checkpoint_name = os.path.join(args.checkpoint_dir, f"digit_{kind}")
    model, solver, seconds = train(kind, best, data, args, args.epochs, checkpoint_name, verbose=True)
    test_acc = solver.check_accuracy(data["X_test"], data["y_test"])

    name = os.path.join(args.results_dir, f"digit_{kind}")
    iterations_per_epoch = int(np.ceil(len(data["y_train"]) / args.batch_size))
    plots = [
        plot_loss(solver.loss_history, f"{name}_loss.png",
                  f"MNIST {MODELS[kind]}, {describe(best)}: training loss", iterations_per_epoch),
        plot_accuracy({"train (1,000-image subset)": solver.train_acc_history,
                       "validation": solver.val_acc_history}, f"{name}_accuracy.png",
                      f"MNIST {MODELS[kind]}, {describe(best)}: accuracy per epoch"),
    ]
    return {"model": MODELS[kind], "sweep": sweep, "chosen": best,
            "best_val_acc": solver.best_val_acc, "test_acc": test_acc,
            "epochs": solver.epoch, "seconds_per_epoch": seconds, "plots": plots}


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    data = load_data(args.data_dir, np.dtype(args.dtype), args.quick)
    print(f"MNIST: {len(data['y_train'])} train, {len(data['y_val'])} val, "
          f"{len(data['y_test'])} test images ({args.dtype})")
    results = {kind: run_model(kind, data, args) for kind in args.models}
    wall_time = time.perf_counter() - start

    os.makedirs(args.results_dir, exist_ok=True)
    summary_path = os.path.join(args.results_dir, "digit_classification.json")
    write_atomic(summary_path, json.dumps({"args": vars(args), "wall_time_seconds": wall_time,
                                           "results": results}, indent=2))

    print(f"\n{'model':<34} {'chosen configuration':<46} {'val acc':>8} {'test acc':>9} {'s/epoch':>8}")
    for result in results.values():
        print(f"{result['model']:<34} {describe(result['chosen']):<46} "
              f"{result['best_val_acc']:8.4f} {result['test_acc']:9.4f} {result['seconds_per_epoch']:8.1f}")
    print(f"\nwall time {wall_time:.0f} s; results in {summary_path}")
    for result in results.values():
        for path in result["plots"]:
            print(f"plot: {path}")
    return results


if __name__ == "__main__":
    main()
