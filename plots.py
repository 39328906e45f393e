"""Training-curve figures shared by the scripts, saved as PNG files (Agg backend, no screen)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fileio import atomic_path  # noqa: E402


def save_figure(fig, path):
    """Save fig as a PNG to path atomically (creating its folder), close it, and return
    the path."""
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


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
    ax.set_title(title)
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
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
