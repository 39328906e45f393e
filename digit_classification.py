"""MNIST digit classification with handgrad's two-layer net and CNN (or CIFAR-10: --dataset).

    python digit_classification.py                 # full run: sweeps, final training, test
    python digit_classification.py --quick         # small subset, under a minute
    python digit_classification.py --models cnn --resume
    python digit_classification.py --overfit 50    # sanity check: can each model fit 50 images?
    python digit_classification.py --dataset cifar10 --models cnn   # CIFAR-10 photos instead

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

--dataset cifar10 runs the same on CIFAR-10 (data.load_cifar10; nothing is downloaded,
the script says where to put the data if it is missing): 32x32 colour photos, so the
models take (3, 32, 32) inputs (the two-layer net 3,072 numbers); the last 5,000 of the
50,000 training images are the validation set (the last tenth for a smaller folder, as in
the tests); the same normalization (one mean and one standard deviation of all training
pixels, all channels together); shifts pad by mirroring the borders instead of with
black. Its files are named cifar10_* instead of digit_*.

--overfit N is the course's sanity check instead of a run: each model of --models (the
first configuration of its sweep) is trained on the first N training images only,
without augmentation or regularization and at a constant learning rate, until it
classifies all N right or --overfit-epochs have passed; a model that can learn at all
fits them in a few dozen epochs. Prints the epochs it took per model; exit code 1 if a
model did not reach 100%.
"""
import experiment

experiment.apply_thread_policy()   # before NumPy loads

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from checkpoint import checkpoint_epochs  # noqa: E402
from cnn import ConvNet  # noqa: E402
from data import CifarFormatError, DatasetNotFoundError, load_cifar10, load_mnist  # noqa: E402
from data import standardized_splits  # noqa: E402
from plots import plot_accuracy, plot_loss  # noqa: E402
from softmax import SoftmaxClassifier  # noqa: E402

MODELS = {
    "mlp": "two-layer net (fc-relu-fc)",
    "cnn": "CNN (conv-relu-pool-fc-relu-fc)",
}

# per --dataset: its title, the shape of one input, the prefix of its files, and how
# random shifts fill the border (black digits' background; mirrored borders for photos)
DATASETS = {
    "mnist": {"title": "MNIST", "input_dim": (1, 28, 28), "prefix": "digit",
              "padding": "minimum"},
    "cifar10": {"title": "CIFAR-10", "input_dim": (3, 32, 32), "prefix": "cifar10",
                "padding": "reflect"},
}
NUM_VAL = 5000
OVERFIT_EPOCHS = 200


def parse_args(argv=None):
    parser = experiment.parser(
        __doc__.split("\n\n")[0],
        data_help="folder holding MNIST (else $HANDGRAD_DATA, then data/; downloaded if absent), "
                  "or with --dataset cifar10 CIFAR-10's cifar-10-batches-py (or -bin) folder "
                  "or its parent (not downloaded)")
    t = experiment
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mnist",
                        help="MNIST digits, or CIFAR-10 photos (the data must be there: see "
                             "data/cifar10.py)")
    parser.add_argument("--overfit", type=t.positive_int, metavar="N",
                        help="sanity check instead of a run: train each model on N training "
                             "images until 100%% train accuracy, print the epochs it took")
    parser.add_argument("--overfit-epochs", type=t.positive_int, default=OVERFIT_EPOCHS,
                        help="--overfit: the most epochs to train")
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
    args = t.parse(parser, argv)
    # The final trainings are checkpointed; their sweeps are keyed by every setting
    # (sweep_key), so only the final trainings' checkpoints must match the flags.
    finals = {final_checkpoint_name(args, kind): run_settings(args) for kind in args.models}
    if args.resume and any(checkpoint_epochs(name) for name in finals):
        t.check_resume(args, finals)
    return args


RUN_SETTINGS = ("batch_size", "learning_rate", "lr_decay", "update_rule", "max_shift", "dtype",
                "seed", "quick", "dataset")


def run_settings(args):
    """The flags a final training's checkpoints must have been written with to resume."""
    return experiment.run_settings(args, *RUN_SETTINGS)


def final_checkpoint_name(args, kind):
    return os.path.join(args.checkpoint_dir, f"{file_prefix(args)}_{kind}")


def load_data(data_dir, dtype, quick, dataset="mnist"):
    """MNIST as standardized (N, 1, 28, 28) arrays: train 55,000, val 5,000, test 10,000
    (quick: 3,000 / 500 / 1,000); dataset 'cifar10': CIFAR-10 (N, 3, 32, 32), 45,000 /
    5,000 / 10,000 (see load_cifar10_splits)."""
    limits = (3000, 500, 1000) if quick else None
    if dataset == "cifar10":
        return load_cifar10_splits(data_dir, dtype, limits)
    data, _ = standardized_splits(*load_mnist(data_dir), num_val=NUM_VAL, dtype=dtype,
                                  limits=limits)
    return data


def load_cifar10_splits(data_dir, dtype, limits=None):
    """
    CIFAR-10 prepared as MNIST is (standardized_splits): the last 5,000 training images
    (the last tenth of a folder of fewer than 50,000) are the validation set; pixels are
    scaled to [0, 1], minus the mean, divided by the standard deviation of all training
    pixels (one scalar each, from the kept training images only).

    Returns a dict with X_train (N, 3, 32, 32) of dtype, y_train int64 (N,), and the same
    for X_val, y_val, X_test, y_test; limits (num_train, num_val, num_test) keeps only
    the first images of each split.
    """
    X_train, y_train, X_test, y_test = load_cifar10(data_dir)
    num_val = NUM_VAL if len(X_train) >= 10 * NUM_VAL else max(1, len(X_train) // 10)
    data, _ = standardized_splits(X_train, y_train, X_test, y_test, num_val=num_val,
                                  dtype=dtype, limits=limits)
    return data


def cached_data(args):
    """load_data for args, once per process (a --jobs worker loads its own copy)."""
    return experiment.cached(
        (args.data_dir, args.dtype, args.quick, args.dataset),
        lambda: load_data(args.data_dir, np.dtype(args.dtype), args.quick, args.dataset))


def random_shift(X, rng, max_shift, padding="minimum"):
    """X (N, C, H, W) shifted per image by up to max_shift pixels, filled with the batch
    minimum (the background: black pixels after normalization; 'reflect': mirrored
    borders, for CIFAR-10's photos); see experiment.random_shift."""
    return experiment.random_shift(X, rng, max_shift, padding=padding)


def configurations(kind, args):
    if kind == "mlp":
        return [{"hidden_dim": h} for h in args.hidden_sizes]
    return [{"num_filters": args.num_filters, "filter_size": k, "hidden_dim": h}
            for k in args.filter_sizes for h in args.cnn_hidden_sizes]


def build_model(kind, config, dtype, seed, dataset="mnist"):
    input_dim = DATASETS[dataset]["input_dim"]
    if kind == "mlp":
        return SoftmaxClassifier(input_dim=int(np.prod(input_dim)), weight_scale=None,
                                 dtype=dtype, seed=seed, **config)
    return ConvNet(input_dim=input_dim, weight_scale=None, dtype=dtype, seed=seed, **config)


def train(kind, config, data, args, epochs, checkpoint_name=None, verbose=False):
    """Train one configuration; returns (model, solver, seconds per epoch)."""
    model = build_model(kind, config, np.dtype(args.dtype), args.seed, args.dataset)
    train_data = {key: data[key] for key in ("X_train", "y_train", "X_val", "y_val")}
    augment = None
    if args.max_shift > 0:
        def augment(X, rng):
            return random_shift(X, rng, args.max_shift, DATASETS[args.dataset]["padding"])
    solver, record = experiment.train(
        model, train_data,
        dict(update_rule=args.update_rule, augment=augment,
             optim_config={"learning_rate": args.learning_rate}, lr_decay=args.lr_decay,
             batch_size=args.batch_size, num_epochs=epochs, print_every=100, seed=args.seed),
        checkpoint_name=checkpoint_name, resume=args.resume, label=describe(config),
        verbose=verbose, settings=run_settings(args) if checkpoint_name else None)
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
    if args.dataset != "mnist":   # (MNIST's keys stay those of earlier runs)
        settings["dataset"] = args.dataset
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
    saved_path = os.path.join(args.checkpoint_dir, f"{file_prefix(args)}_{kind}_sweep.json")
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
    checkpoint_name = final_checkpoint_name(args, kind)
    model, solver, seconds = train(kind, best, data, args, args.epochs, checkpoint_name,
                                   verbose=True)
    test_acc = solver.check_accuracy(data["X_test"], data["y_test"])

    name = os.path.join(args.results_dir, f"{file_prefix(args)}_{kind}")
    title = DATASETS[args.dataset]["title"]
    iterations_per_epoch = int(np.ceil(len(data["y_train"]) / args.batch_size))
    train_subset = min(1000, len(data["y_train"]))
    plots = [
        plot_loss(solver.loss_history, f"{name}_loss.png",
                  f"{title} {MODELS[kind]}, {describe(best)}: training loss", iterations_per_epoch),
        plot_accuracy({f"train ({train_subset:,}-image subset)": solver.train_acc_history,
                       f"validation ({len(data['y_val']):,} images)": solver.val_acc_history},
                      f"{name}_accuracy.png",
                      f"{title} {MODELS[kind]}, {describe(best)}: accuracy per epoch"),
    ]
    return {"model": MODELS[kind], "sweep": sweep, "chosen": best,
            "best_val_acc": solver.best_val_acc, "test_acc": test_acc,
            "epochs": solver.epoch, "seconds_per_epoch": seconds, "plots": plots}


def file_prefix(args):
    """What this dataset's checkpoints and results are named by: 'digit' for MNIST (the
    names of earlier runs), 'cifar10' for CIFAR-10."""
    return DATASETS[args.dataset]["prefix"]


def overfit(kind, data, args):
    """
    The overfit-a-tiny-subset check of one model: its first sweep configuration trained
    on the first args.overfit training images (no augmentation, no regularization, a
    constant learning rate) until 100% train accuracy or args.overfit_epochs.
    Returns (epochs, train accuracy).
    """
    from solver import overfit_small_subset
    config = configurations(kind, args)[0]
    model = build_model(kind, config, np.dtype(args.dtype), args.seed, args.dataset)
    return overfit_small_subset(
        model, data, num_samples=args.overfit, max_epochs=args.overfit_epochs,
        update_rule=args.update_rule, optim_config={"learning_rate": args.learning_rate},
        batch_size=args.batch_size, seed=args.seed)


def run_overfit(data, args):
    """--overfit N for every model of --models: prints one line each; exit code 0 if all
    reached 100% train accuracy, else 1."""
    if args.overfit > len(data["y_train"]):
        print(f"error: --overfit {args.overfit}: there are only {len(data['y_train'])} "
              f"training images", file=sys.stderr)
        return 2
    all_fit = True
    for kind in args.models:
        config = configurations(kind, args)[0]
        epochs, train_acc = overfit(kind, data, args)
        reached = train_acc >= 1.0
        all_fit = all_fit and reached
        missed = f" (did not reach 100% in --overfit-epochs {args.overfit_epochs})"
        print(f"overfit {args.overfit} examples: {kind} ({describe(config)}) "
              f"{100 * train_acc:.4g}% train accuracy after {epochs} epochs"
              + ("" if reached else missed), flush=True)
    return 0 if all_fit else 1


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    title = DATASETS[args.dataset]["title"]
    try:
        data = cached_data(args)
    except (DatasetNotFoundError, CifarFormatError) as error:
        if args.dataset == "mnist":
            raise   # experiment.run: one message, exit code 1
        # CIFAR-10 is never downloaded: its absence is the user's to fix, as a bad flag is
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{title}: {len(data['y_train'])} train, {len(data['y_val'])} val, "
          f"{len(data['y_test'])} test images ({args.dtype}); run '{args.run_name}'")
    if args.overfit is not None:
        return run_overfit(data, args)
    results = {kind: run_model(kind, data, args) for kind in args.models}
    wall_time = time.perf_counter() - start

    summary_path = os.path.join(args.results_dir, f"{file_prefix(args)}_classification.json")
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
