"""Training-curve figures shared by the scripts, saved as PNG files (Agg backend, no screen)."""

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fileio import atomic_path  # noqa: E402


def save_figure(fig, path):
    """Save fig as a PNG to path atomically (creating its folder), close it, and return
    the path."""
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def fit_title(title, width=72):
    """title wrapped onto lines of at most width characters, so that it fits a 7-inch figure."""
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def epoch_axis(ax, num_epochs):
    """Epochs 1..num_epochs on the x axis, with integer ticks only."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.5, max(1, num_epochs) + 0.5)


def note_short_run(ax, curves, min_span=0.05):
    """
    For runs of fewer than 3 epochs a curve says little: say so on the plot, label each
    point with its value, and keep the y range at least min_span wide (two points 0.001
    apart would otherwise fill the whole axis and look like a big change).
    """
    num_epochs = max((len(v) for v in curves.values()), default=0)
    if num_epochs >= 3:
        return
    values = [float(x) for v in curves.values() for x in v if x is not None and np.isfinite(x)]
    if values:
        low, high = min(values), max(values)
        if high - low < min_span:
            middle = (high + low) / 2
            ax.set_ylim(middle - min_span / 2, middle + min_span / 2)
        for v in curves.values():
            for epoch, x in enumerate(v, start=1):
                if x is not None and np.isfinite(x):
                    ax.annotate(f"{x:.3f}", (epoch, x), textcoords="offset points",
                                xytext=(4, 4), fontsize=7)
    ax.text(0.5, 0.02, f"only {num_epochs} epoch{'s' if num_epochs != 1 else ''}: "
            f"too short for a curve; the points are the values",
            transform=ax.transAxes, ha="center", fontsize=8, color="0.35")


def plot_loss(loss_history, path, title, iterations_per_epoch=None):
    """
    Training loss per iteration, with a moving average, and epoch boundaries if given.

    Inputs:
    - loss_history: sequence of per-iteration losses.
    - path: PNG file to write.
    - title: figure title.
    - iterations_per_epoch: if given, a second x axis in epochs.
    """
    losses = np.asarray(loss_history, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=0.5, alpha=0.4, label="per iteration")
    window = max(1, len(losses) // 50)
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window, len(losses) + 1), smooth, lw=1.5,
                label=f"moving average ({window} iterations)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    if iterations_per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda i: i / iterations_per_epoch,
                                                   lambda e: e * iterations_per_epoch))
        top.set_xlabel("epoch")
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(fit_title(title), fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_accuracy(curves, path, title, ylabel="accuracy"):
    """
    Metric per epoch for one or more runs.

    Inputs:
    - curves: dict mapping a label (e.g. 'train', 'val', 'lr 0.01 val') to per-epoch values.
    - path: PNG file to write.
    - title: figure title.
    - ylabel: name of the metric.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=label)
    epoch_axis(ax, max((len(v) for v in curves.values()), default=1))
    note_short_run(ax, curves)
    ax.set_ylabel(ylabel)
    ax.set_title(fit_title(title), fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
