"""
Training-curve figures shared by the scripts, saved as PNG files (Agg backend, no screen;
imported where pyplot is already in use, e.g. in a notebook after `%matplotlib inline`, it
keeps that backend, so the notebook still shows its own figures).

One convention for every figure of the project (scripts and notebooks):
- colour is the split: training curves are TRAIN_COLOUR (blue), validation curves
  VAL_COLOUR (orange), in every figure;
- several runs in one figure (learning rates, models, scenarios) differ by marker and line
  style (run_style(k)), the same for a run's training and validation curves;
- loss axes are logarithmic with plain-number ticks, enough of them to read a value
  (log_axis);
- legends sit outside the axes (legend_outside), so they never cover a point;
- the values written next to the points of a short run are stacked, not overlapping
  (note_short_run).
"""

import math
import re
import sys
import textwrap

import matplotlib

if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, Locator, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from fileio import atomic_path  # noqa: E402

TRAIN_COLOUR = "#1f77b4"   # blue: every training curve
VAL_COLOUR = "#ff7f0e"     # orange: every validation curve
SPLIT_COLOURS = {"train": TRAIN_COLOUR, "val": VAL_COLOUR}
RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
RUN_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 3)), (0, (8, 3)))


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


# ----------------------------------------------------------------------------- styles

def split_of(label):
    """'train' or 'val' for a curve label naming its split ('train (1,000-image subset)',
    'validation', 'lstm val', 'training loss'), else None."""
    words = re.findall(r"[a-z]+", str(label).lower())
    if "val" in words or "validation" in words:
        return "val"
    if "train" in words or "training" in words:
        return "train"
    return None


def split_colour(split):
    """TRAIN_COLOUR for 'train', VAL_COLOUR for 'val'."""
    if split not in SPLIT_COLOURS:
        raise ValueError(f"split {split!r}: expected 'train' or 'val'")
    return SPLIT_COLOURS[split]


def run_style(k):
    """Marker and line style of the k-th run of a figure (k from 0): dict for ax.plot."""
    return {"marker": RUN_MARKERS[k % len(RUN_MARKERS)],
            "linestyle": RUN_LINESTYLES[k % len(RUN_LINESTYLES)]}


def legend_outside(ax, where="right", **kwargs):
    """The legend of ax outside its axes (to the right, or below it), so that it covers
    no point; returns the legend (None when ax has no labelled artist)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    if where == "right":
        placement = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}
    elif where == "below":
        placement = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.26),
                     "ncol": min(len(handles), 3)}
    else:
        raise ValueError(f"where={where!r}: expected 'right' or 'below'")
    placement.update(kwargs)
    return ax.legend(handles, labels, fontsize=placement.pop("fontsize", 8), **placement)


# ----------------------------------------------------------------------------- log axes

# tick mantissas, coarse to fine: a finer set is used only if the coarser ones give too few ticks
_MANTISSAS = ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9),
              tuple(np.round(np.arange(1, 10, 0.5), 2)), tuple(np.round(np.arange(1, 10, 0.2), 2)),
              tuple(np.round(np.arange(1, 10, 0.1), 2)), tuple(np.round(np.arange(1, 10, 0.05), 2)))


def log_ticks(low, high, min_ticks=4, max_ticks=9):
    """
    Tick values for a log axis from low to high: round numbers (1, 2, 5, 3, 1.5, ... times
    a power of ten, the roundest first), at least min_ticks of them where the range allows
    it, and none closer than 1 / max_ticks of the axis (labels never overlap).
    """
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        return []
    span = math.log10(high / low)
    gap = span / max_ticks
    kept = []
    for mantissas in _MANTISSAS:
        for exponent in range(math.floor(math.log10(low)), math.floor(math.log10(high)) + 1):
            for m in mantissas:
                value = float(f"{m}e{exponent}")
                if low <= value <= high and all(abs(math.log10(value / k)) >= gap * 0.999
                                                for k in kept):
                    kept.append(value)
        if len(kept) >= min_ticks:
            break
    return sorted(kept)


class ReadableLogLocator(Locator):
    """Major ticks of a log axis from log_ticks, for the axis's current limits."""

    def __init__(self, min_ticks=4, max_ticks=9):
        self.min_ticks, self.max_ticks = min_ticks, max_ticks

    def __call__(self):
        low, high = self.axis.get_view_interval()
        return self.tick_values(low, high)

    def tick_values(self, vmin, vmax):
        low, high = sorted((vmin, vmax))
        return log_ticks(low, high, self.min_ticks, self.max_ticks)


def plain_number(value, _position=None):
    """A tick label without powers of ten: 0.3, 2, 1.5, 1e-05 only for tiny values."""
    return f"{value:g}"


def log_axis(ax, which="y", min_ratio=1.5):
    """
    A logarithmic axis (for losses) with readable ticks: plain numbers (2, 3, 0.5, not
    2x10^0), at least 4 labelled major ticks where the range allows it, unlabelled minor
    ticks, and a range of at least min_ratio (high / low), so that a tiny change does not
    fill the whole axis.
    """
    axis = ax.yaxis if which == "y" else ax.xaxis
    getter, setter = (ax.get_ylim, ax.set_ylim) if which == "y" else (ax.get_xlim, ax.set_xlim)
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    low, high = sorted(getter())
    if 0 < low and high / low < min_ratio:
        middle = math.sqrt(low * high)
        setter(middle / math.sqrt(min_ratio), middle * math.sqrt(min_ratio))
    axis.set_major_locator(ReadableLogLocator())
    axis.set_major_formatter(FuncFormatter(plain_number))
    axis.set_minor_locator(LogLocator(subs="all"))
    axis.set_minor_formatter(NullFormatter())


# ----------------------------------------------------------------------------- epochs

def epoch_axis(ax, num_epochs):
    """Epochs 1..num_epochs on the x axis, with integer ticks only."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.5, max(1, num_epochs) + 0.5)


def note_short_run(ax, curves, min_span=0.05, colours=None):
    """
    For runs of fewer than 3 epochs a curve says little: say so under the plot, label each
    point with its value, and keep the y range at least min_span wide (two points 0.001
    apart would otherwise fill the whole axis and look like a big change).

    The value labels of one epoch are stacked so that they do not overlap (a thin line
    joins a moved label to its point); equal values close together get one label.
    colours: optional dict label -> colour of its curve, for its value labels.
    """
    num_epochs = max((len(v) for v in curves.values()), default=0)
    if num_epochs >= 3:
        return
    colours = colours or {}
    values = [float(x) for v in curves.values() for x in v if x is not None and np.isfinite(x)]
    if values and ax.get_yscale() == "linear":
        low, high = min(values), max(values)
        if high - low < min_span:
            middle = (high + low) / 2
            ax.set_ylim(middle - min_span / 2, middle + min_span / 2)
    ax.get_xlim(), ax.get_ylim()                # settle the autoscaled limits before transData
    pixels_per_point = ax.figure.dpi / 72
    separation = 9 * pixels_per_point          # one 7-point label line and a little air
    for epoch in range(1, num_epochs + 1):
        points = [(float(v[epoch - 1]), colours.get(label, "0.15")) for label, v in curves.items()
                  if len(v) >= epoch and v[epoch - 1] is not None and np.isfinite(v[epoch - 1])]
        placed = []                              # [label pixel y, point pixel y, value, text, colour]
        for value, colour in sorted(points, key=lambda p: p[0]):
            y = ax.transData.transform((epoch, value))[1]
            text = f"{value:.3f}"
            if placed and placed[-1][3] == text and y - placed[-1][0] < separation:
                continue                         # the same number right there already
            label_y = max(y, placed[-1][0] + separation) if placed else y
            placed.append([label_y, y, value, text, colour])
        top = ax.bbox.y1 - separation            # keep the stack inside the axes
        if placed and placed[-1][0] > top:
            shift = placed[-1][0] - top
            for entry in placed:
                entry[0] -= shift
        # left of the first epoch's points and right of the others: away from the lines
        left = epoch == 1 and num_epochs > 1
        for label_y, y, value, text, colour in placed:
            offset = (label_y - y) / pixels_per_point
            ax.annotate(text, (epoch, value), textcoords="offset points",
                        xytext=(-7 if left else 7, offset), ha="right" if left else "left",
                        va="center", fontsize=7, color=colour,
                        arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.5,
                                    "shrinkA": 0, "shrinkB": 3} if abs(offset) > 3 else None)
    ax.annotate(f"only {num_epochs} epoch{'s' if num_epochs != 1 else ''}: too short for a "
                f"curve; the points are the values", (0.5, 0), xycoords="axes fraction",
                xytext=(0, -36), textcoords="offset points", ha="center", va="top",
                fontsize=8, color="0.35")


# ----------------------------------------------------------------------------- figures

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
    window = max(1, len(losses) // 50)
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=0.6, alpha=0.35 if window > 1 else 1.0,
            color=TRAIN_COLOUR, label="per iteration")
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window, len(losses) + 1), smooth, lw=1.5, color=TRAIN_COLOUR,
                label=f"moving average\n({window} iterations)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (log scale)")
    log_axis(ax)
    if iterations_per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda i: i / iterations_per_epoch,
                                                   lambda e: e * iterations_per_epoch))
        top.set_xlabel("epoch")
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(fit_title(title), fontsize=10)
    legend_outside(ax)
    ax.grid(alpha=0.3)
    ax.grid(alpha=0.12, which="minor", axis="y")
    return save_figure(fig, path)


def plot_accuracy(curves, path, title, ylabel="accuracy", split=None, log_scale=False):
    """
    Metric per epoch for one or more runs.

    Inputs:
    - curves: dict mapping a label (e.g. 'train', 'validation (5,000 images)', 'lr 0.01
      val') to per-epoch values.
    - path: PNG file to write.
    - title: figure title.
    - ylabel: name of the metric.
    - split: 'train' or 'val' for every curve (e.g. training losses labelled by learning
      rate); default: read from each label (split_of), which must then name it.
    - log_scale: a logarithmic y axis (for losses).

    Training curves are TRAIN_COLOUR, validation curves VAL_COLOUR; the k-th curve of a
    split has run_style(k).
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    colours, seen = {}, {"train": 0, "val": 0}
    for label, values in curves.items():
        curve_split = split or split_of(label)
        if curve_split is None:
            raise ValueError(f"plot_accuracy: the curve {label!r} does not say whether it is "
                             f"training or validation: name it in the label or pass split=")
        colours[label] = split_colour(curve_split)
        ax.plot(np.arange(1, len(values) + 1), values, color=colours[label], label=label,
                **run_style(seen[curve_split]))
        seen[curve_split] += 1
    epoch_axis(ax, max((len(v) for v in curves.values()), default=1))
    if log_scale:
        log_axis(ax)
    note_short_run(ax, curves, colours=colours)
    ax.set_ylabel(ylabel + (" (log scale)" if log_scale else ""))
    ax.set_title(fit_title(title), fontsize=10)
    legend_outside(ax)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
