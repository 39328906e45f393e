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
   accuracy per epoch) and a JSON of every configuration's result under
   <--results-dir>/<--run-name> (results/full/, or results/quick/ with --quick).

Data: MNIST's 60,000 training images are split into the first 55,000 for training and
the last 5,000 for validation; the 10,000 official test images are used once, at the end.
Normalization (the script's job, not the model's): pixels are scaled to [0, 1], then
the mean and standard deviation of all training pixels (one scalar each, computed on the
55,000 training images only) are subtracted and divided out, for every split.
"""
import experiment

experiment.apply_thread_policy()   # before NumPy loads

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from cnn import ConvNet  # noqa: E402
from data import load_mnist, standardized_splits  # noqa: E402
from plots import plot_accuracy, plot_loss  # noqa: E402
from softmax import SoftmaxClassifier  # noqa: E402

MODELS = {
    "mlp": "two-layer net (fc-relu-fc)",
    "cnn": "CNN (conv-relu-pool-fc-relu-fc)",
}


def parse_args(argv=None):
    parser = experiment.parser(
        __doc__.split("\n\n")[0],
        data_help="folder holding MNIST (else $HANDGRAD_DATA, then data/; downloaded if absent)")
    t = experiment
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["mlp", "cnn"],
                        help="which models to sweep, train and test")
    t.add_scaled(parser, "--epochs", 15, 1, "epochs of the final training", type=t.positive_int)
    t.add_scaled(parser, "--sweep-epochs", 3, 1, "epochs per sweep configuration",
                 type=t.positive_int)
    parser.add_argument("--batch-size", type=t.positive_int, default=100, help="minibatch size")
    parser.add_argument("--learning-rate", type=t.positive_float, default=1e-3,
                        help="initial learning rate")
    parser.add_argument("--lr-decay", type=t.decay_factor, default=0.9,
                        help="learning-rate factor per epoch")
    parser.add_argument("--update-rule", default="adam",
                        choices=["sgd", "sgd_momentum", "rmsprop", "adam"], help="optimizer")
    parser.add_argument("--max-shift", type=t.non_negative_int, default=2,
                        help="random translation of training images, in pixels (0: none)")
    t.add_scaled(parser, "--hidden-sizes", [100, 300, 1000], [32, 64],
                 "two-layer net: hidden sizes to sweep", type=t.positive_int, nargs="+")
    t.add_scaled(parser, "--filter-sizes", [5, 7], [3, 5], "CNN: filter sizes to sweep",
                 type=t.positive_int, nargs="+")
    t.add_scaled(parser, "--cnn-hidden-sizes", [100, 256], [32], "CNN: hidden fc sizes to sweep",
                 type=t.positive_int, nargs="+")
    t.add_scaled(parser, "--num-filters", 32, 8, "CNN: number of conv filters", type=t.positive_int)
    return t.parse(parser, argv)


def load_data(data_dir, dtype, quick):
    """MNIST as standardized (N, 1, 28, 28) arrays: train 55,000, val 5,000, test 10,000
    (quick: 3,000 / 500 / 1,000)."""
    limits = (3000, 500, 1000) if quick else None
    data, _ = standardized_splits(*load_mnist(data_dir), num_val=5000, dtype=dtype, limits=limits)
    return data


def cached_data(args):
    """load_data for args, once per process (a --jobs worker loads its own copy)."""
    return experiment.cached((args.data_dir, args.dtype, args.quick),
                             lambda: load_data(args.data_dir, np.dtype(args.dtype), args.quick))


def random_shift(X, rng, max_shift):
    """X (N, C, H, W) shifted per image by up to max_shift pixels, filled with the batch
    minimum (the background: black pixels after normalization); see experiment.random_shift."""
    return experiment.random_shift(X, rng, max_shift, padding="minimum")


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
    solver, record = experiment.train(
        model, train_data,
        dict(update_rule=args.update_rule, augment=augment,
             optim_config={"learning_rate": args.learning_rate}, lr_decay=args.lr_decay,
             batch_size=args.batch_size, num_epochs=epochs, print_every=100, seed=args.seed),
        checkpoint_name=checkpoint_name, resume=args.resume, label=describe(config),
        verbose=verbose)
    if record["diverged"]:
        raise SystemExit(f"{describe(config)} diverged; lower --learning-rate")
    return model, solver, record["seconds_per_epoch"] or 0.0


def describe(config):
    return ", ".join(f"{key}={value}" for key, value in config.items())


def sweep_key(config, args):
    """What a sweep result depends on: the configuration and every training setting."""
    settings = {name: getattr(args, name) for name in (
        "sweep_epochs", "batch_size", "learning_rate", "lr_decay", "update_rule", "dtype",
        "seed", "max_shift", "quick")}
    return json.dumps({"config": config, **settings}, sort_keys=True)


def sweep_one(task):
    """One sweep configuration, trained for --sweep-epochs (a --jobs worker's job)."""
    kind, config, args = task
    _, solver, seconds = train(kind, config, cached_data(args), args, args.sweep_epochs)
    return {"config": config, "val_acc": solver.best_val_acc, "seconds_per_epoch": seconds}


def run_sweep(kind, args):
    """
    Train every configuration for --sweep-epochs (--jobs at a time); returns
    [{config, val_acc, seconds_per_epoch}] in the order of the configurations. Each
    result is saved as soon as it exists, so --resume skips the finished ones.
    """
    saved_path = os.path.join(args.checkpoint_dir, f"digit_{kind}_sweep.json")
    saved = {}
    if args.resume and os.path.exists(saved_path):
        with open(saved_path) as f:
            saved = json.load(f)
    configs = configurations(kind, args)
    print(f"\n=== {MODELS[kind]}: sweep of {len(configs)} configurations, "
          f"{args.sweep_epochs} epoch(s) each, {args.jobs} at a time ===")
    todo = [config for config in configs if sweep_key(config, args) not in saved]
    for config in configs:
        if config not in todo:
            entry = saved[sweep_key(config, args)]
            print(f"  {describe(config):<50} val acc {entry['val_acc']:.4f}  (from the previous run)")
    for config, entry in experiment.run_sweep(sweep_one, [(kind, c, args) for c in todo], args.jobs):
        saved[sweep_key(config[1], args)] = entry
        experiment.write_json(saved_path, saved)
        print(f"  {describe(config[1]):<50} val acc {entry['val_acc']:.4f}  "
              f"({entry['seconds_per_epoch']:.1f} s/epoch)", flush=True)
    return [saved[sweep_key(config, args)] for config in configs]


def run_model(kind, data, args):
    sweep = run_sweep(kind, args)
    best = max(sweep, key=lambda entry: entry["val_acc"])["config"]

    print(f"--- final training of {describe(best)} for {args.epochs} epochs ---")
    checkpoint_name = os.path.join(args.checkpoint_dir, f"digit_{kind}")
    model, solver, seconds = train(kind, best, data, args, args.epochs, checkpoint_name, verbose=True)
    test_acc = solver.check_accuracy(data["X_test"], data["y_test"])

    name = os.path.join(args.results_dir, f"digit_{kind}")
    iterations_per_epoch = int(np.ceil(len(data["y_train"]) / args.batch_size))
    train_subset = min(1000, len(data["y_train"]))
    plots = [
        plot_loss(solver.loss_history, f"{name}_loss.png",
                  f"MNIST {MODELS[kind]}, {describe(best)}: training loss", iterations_per_epoch),
        plot_accuracy({f"train ({train_subset:,}-image subset)": solver.train_acc_history,
                       f"validation ({len(data['y_val']):,} images)": solver.val_acc_history},
                      f"{name}_accuracy.png",
                      f"MNIST {MODELS[kind]}, {describe(best)}: accuracy per epoch"),
    ]
    return {"model": MODELS[kind], "sweep": sweep, "chosen": best,
            "best_val_acc": solver.best_val_acc, "test_acc": test_acc,
            "epochs": solver.epoch, "seconds_per_epoch": seconds, "plots": plots}


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    data = cached_data(args)
    print(f"MNIST: {len(data['y_train'])} train, {len(data['y_val'])} val, "
          f"{len(data['y_test'])} test images ({args.dtype}); run '{args.run_name}'")
    results = {kind: run_model(kind, data, args) for kind in args.models}
    wall_time = time.perf_counter() - start

    summary_path = os.path.join(args.results_dir, "digit_classification.json")
    experiment.write_json(summary_path, {"args": vars(args), "wall_time_seconds": wall_time,
                                         "results": results})
    print()
    experiment.print_table(
        ["model", "chosen configuration", "val acc", "test acc", "s/epoch"],
        [[r["model"], describe(r["chosen"]), f"{r['best_val_acc']:.4f}", f"{r['test_acc']:.4f}",
          f"{r['seconds_per_epoch']:.1f}"] for r in results.values()])
    print(f"\nwall time {wall_time:.0f} s")
    experiment.print_files({"results": summary_path, **{
        f"{kind} {os.path.basename(path).split('_')[-1][:-4]}": path
        for kind, result in results.items() for path in result["plots"]}})
    return results


def cli():
    """The command's entry point: main() with data errors as one message (see experiment.run)."""
    return experiment.run(main)


if __name__ == "__main__":
    sys.exit(cli())
