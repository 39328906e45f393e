"""The figures people read: log loss axes with enough plain-number ticks, one train/val
palette in every figure, legends and value labels that cover nothing, heat maps on one
colour scale with a colourbar, and attention figures of a readable size. Each figure is
captured before it is saved (the module's save_figure is replaced) and drawn with Agg."""
import itertools
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure  # noqa: E402
import matplotlib.text  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fashion_classification as fc  # noqa: E402
import image_captioning as ic  # noqa: E402
import plots  # noqa: E402
import transfer_learning as tl  # noqa: E402


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions would save, drawn, in order; closed afterwards."""
    captured = []

    def keep(fig, path):
        fig.canvas.draw()
        captured.append(fig)
        return path

    for module in (plots, fc, ic, tl):
        monkeypatch.setattr(module, "save_figure", keep)
    yield captured
    for fig in captured:
        plt.close(fig)


@pytest.fixture
def colourbars(monkeypatch):
    """The mappables of every colourbar made while the test runs."""
    made = []
    original = matplotlib.figure.FigureBase.colorbar

    def colorbar(self, mappable, *args, **kwargs):
        made.append(mappable)
        return original(self, mappable, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.FigureBase, "colorbar", colorbar)
    return made


def labelled_major_ticks(ax, which="y"):
    """(value, label text) of the labelled major ticks inside the axis's view."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    low, high = sorted(axis.get_view_interval())
    return [(tick.get_loc(), tick.label1.get_text()) for tick in axis.get_major_ticks()
            if low <= tick.get_loc() <= high and tick.label1.get_visible()
            and tick.label1.get_text()]


def extents(artists, fig):
    """Window extents of texts (an annotation's text only, without its leader line)."""
    renderer = fig.canvas.get_renderer()
    return [matplotlib.text.Text.get_window_extent(artist, renderer) for artist in artists]


def assert_disjoint(boxes, what, gap=0.0):
    """No two boxes overlap, nor come closer than gap pixels (a visible space between words)."""
    boxes = [box.padded(gap / 2) for box in boxes]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), f"{what} overlap or touch: {a} and {b}"


def line_points(ax):
    """Display coordinates of every plotted point of ax's lines."""
    return np.concatenate([line.get_transform().transform(np.column_stack(line.get_data()))
                           for line in ax.get_lines()])


# ----------------------------------------------------------------------------- log axes

@pytest.mark.parametrize("low, high", [(2.0, 3.0), (1.3, 1.95), (6.5, 9.75), (0.3, 4.5),
                                       (0.02, 2.3), (1e-4, 3.0)])
def test_loss_axis_has_enough_plain_labelled_ticks(figures, low, high):
    """At least 3 labelled major ticks (4 here) even over a 1.5x range, plain numbers (no
    2x10^0), increasing, their labels not overlapping."""
    losses = np.geomspace(high, low, 200)
    plots.plot_loss(losses, "unused.png", "loss", iterations_per_epoch=50)
    ax = figures[-1].axes[0]
    assert ax.get_yscale() == "log"
    ticks = labelled_major_ticks(ax)
    assert len(ticks) >= 3, ticks
    for value, text in ticks:
        assert "10^" not in text and "times" not in text and "\\" not in text, text
        assert float(text) == pytest.approx(value, rel=1e-9), (value, text)
    assert_disjoint(extents([t.label1 for t in ax.yaxis.get_major_ticks()
                             if t.label1.get_text() and ax.get_ylim()[0] <= t.get_loc() <= ax.get_ylim()[1]],
                            figures[-1]), "tick labels")


def test_log_ticks_prefers_round_numbers_and_keeps_its_gap():
    assert plots.log_ticks(0.01, 4) == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    assert plots.log_ticks(2, 3) == [2.0, 2.2, 2.5, 2.8, 3.0]
    for low, high in [(1.01, 1.5), (0.3, 300), (5e-6, 0.2)]:
        ticks = plots.log_ticks(low, high)
        assert len(ticks) >= 4
        gaps = np.diff(np.log10(ticks))
        assert gaps.min() >= np.log10(high / low) / 9 * 0.999
    assert plots.log_ticks(0, 1) == [] and plots.log_ticks(2, 1) == []


def test_a_tiny_loss_change_does_not_fill_the_axis(figures):
    plots.plot_loss([1.000, 0.999, 0.998], "unused.png", "loss")
    low, high = figures[-1].axes[0].get_ylim()
    assert high / low >= 1.5 * 0.999


def test_loss_curves_of_every_script_are_on_a_log_axis(figures):
    record = {"learning_rate": 0.01, "epoch_losses": [2.1, 1.4, 0.9], "val_acc_history": [0.5, 0.6, 0.7]}
    fc.plot_comparison([record, dict(record, learning_rate=0.1)], "unused.png", "lr")
    tl.plot_curves(transfer_records(), "unused.png", "transfer")
    plots.plot_accuracy({"lr 0.01 train": [2.0, 1.5, 1.1]}, "unused.png", "loss",
                        ylabel="loss", log_scale=True)
    for ax in (figures[0].axes[0], figures[1].axes[0], figures[2].axes[0]):
        assert ax.get_yscale() == "log"
        assert len(labelled_major_ticks(ax)) >= 3


# ----------------------------------------------------------------------------- palette

def transfer_records():
    return {scenario: {"train_loss": [1.2, 0.9, 0.7], "val_loss": [1.3, 1.0, 0.9],
                       "train_acc": [0.5, 0.6, 0.7], "val_acc": [0.45, 0.55, 0.6]}
            for scenario in ("scratch", "finetune", "freeze")}


def caption_records():
    return [{"model": name, "epoch_losses": [30.0 - k, 12.0 - k], "val_bleu4_history": [0.3, 0.45],
             "train_bleu4_history": [0.32, 0.5], "dropout_keep_prob": 1.0}
            for k, name in enumerate(("rnn", "lstm", "attention", "transformer"))]


def colours_by_split(ax):
    """{'train': set of colours, 'val': set of colours} of ax's labelled lines."""
    found = {"train": set(), "val": set()}
    for line in ax.get_lines():
        split = plots.split_of(line.get_label())
        if split:
            found[split].add(matplotlib.colors.to_hex(line.get_color()))
    return found


def test_train_and_val_have_the_same_colours_in_every_figure(figures):
    train, val = matplotlib.colors.to_hex(plots.TRAIN_COLOUR), matplotlib.colors.to_hex(plots.VAL_COLOUR)
    assert train != val
    plots.plot_accuracy({"train (1,000-image subset)": [0.5, 0.7, 0.8],
                         "validation (500 images)": [0.4, 0.6, 0.7]}, "unused.png", "acc")
    plots.plot_accuracy({"validation": [0.4, 0.6], "training (fixed subset)": [0.5, 0.7]},
                        "unused.png", "acc, validation first")
    tl.plot_curves(transfer_records(), "unused.png", "transfer")
    ic.plot_curves(caption_records(), {"name": "scenes"}, "unused")
    record = {"learning_rate": 0.01, "epoch_losses": [2.1, 1.4], "val_acc_history": [0.5, 0.6]}
    fc.plot_comparison([record], "unused.png", "lr")
    axes = [figures[0].axes[0], figures[1].axes[0], *figures[2].axes[:2], figures[4].axes[0]]
    for ax in axes:
        found = colours_by_split(ax)
        assert found["train"] == {train} and found["val"] == {val}, (ax.get_title(), found)
    bleu = figures[4].axes[0]
    assert {plots.split_of(line.get_label()) for line in bleu.get_lines()} == {"train", "val"}
    loss_panel, accuracy_panel = figures[5].axes[:2]
    assert colours_by_split(loss_panel)["train"] == {train}
    assert colours_by_split(accuracy_panel)["val"] == {val}
    # the captioning loss curves (training losses labelled by model) are train-coloured too
    assert {matplotlib.colors.to_hex(line.get_color()) for line in figures[3].axes[0].get_lines()} == {train}


def test_runs_differ_by_marker_and_line_style(figures):
    ic.plot_curves(caption_records(), {"name": "scenes"}, "unused")
    bleu = figures[1].axes[0]
    styles = {(line.get_marker(), str(line.get_linestyle())) for line in bleu.get_lines()
              if plots.split_of(line.get_label()) == "val"}
    assert len(styles) == 4


def test_a_curve_that_names_no_split_is_refused():
    with pytest.raises(ValueError, match="training or validation"):
        plots.plot_accuracy({"lr 0.01": [1.0, 0.5]}, "unused.png", "loss")
    assert plots.split_of("rnn train subset") == "train"
    assert plots.split_of("lr 0.1 val") == "val"
    assert plots.split_of("validation (5,000 images)") == "val"
    assert plots.split_of("interval") is None


# ----------------------------------------------------------------------------- legends, labels

def test_legends_cover_no_point(figures):
    plots.plot_accuracy({"train": [0.2, 0.9, 0.95, 0.97], "validation": [0.1, 0.85, 0.9, 0.95]},
                        "unused.png", "acc")
    ic.plot_curves(caption_records(), {"name": "scenes"}, "unused")
    plots.plot_loss(np.geomspace(3, 0.1, 300), "unused.png", "loss")
    for fig, ax in ((figures[0], figures[0].axes[0]), (figures[2], figures[2].axes[0]),
                    (figures[3], figures[3].axes[0])):
        legend = ax.get_legend()
        assert legend is not None
        box = legend.get_window_extent(fig.canvas.get_renderer())
        points = line_points(ax)
        inside = (points[:, 0] >= box.x0) & (points[:, 0] <= box.x1) & \
                 (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1)
        assert not inside.any(), f"{ax.get_title()}: the legend covers {inside.sum()} points"


def test_value_labels_of_a_short_run_do_not_overlap(figures):
    """Equal and nearly equal values at one epoch (as in the BLEU figure's 0.265 and 0.266)."""
    curves = {"a val": [0.265, 0.47], "b val": [0.266, 0.465], "c val": [0.2655, 0.36],
              "d val": [0.323, 0.356]}
    plots.plot_accuracy(curves, "unused.png", "short run")
    ax = figures[-1].axes[0]
    labels = [t for t in ax.texts if t.get_text().startswith("0.")]
    assert {"0.265", "0.266", "0.323", "0.470", "0.465", "0.360", "0.356"} <= {t.get_text() for t in labels}
    assert_disjoint(extents(labels, figures[-1]), "value labels")


# ----------------------------------------------------------------------------- heat maps

def scene_data(num_images=2, words=("a", "large", "7", "to", "the", "right", "of", "a", "3",
                                    ",", "a", "2", "and", "a", "8")):
    vocabulary = ["<NULL>", "<START>", "<END>"] + sorted(set(words))
    index = {w: i for i, w in enumerate(vocabulary)}
    captions = np.array([[index[w] for w in words] + [index["<END>"], 0]] * num_images)
    rng = np.random.default_rng(0)
    data = {"grid": (8, 8), "idx_to_word": vocabulary, "word_to_idx": index, "name": "scenes",
            "test": {"images": rng.integers(0, 256, (num_images, 64, 64)).astype(np.uint8),
                     "ids": np.arange(num_images)}}
    return data, captions


def test_transformer_heads_share_one_colour_scale_with_a_colourbar(figures, colourbars):
    data, captions = scene_data(2)
    weights = np.random.default_rng(1).dirichlet(np.ones(64), size=(2, captions.shape[1], 4))
    weights[0, 2, 0] = 0
    weights[0, 2, 0, 5] = 1.0          # one peaked head: the scale must reach 1 for every panel
    ic.plot_transformer_attention(data, [0, 1], captions, weights, "unused.png")
    fig = figures[-1]
    heat = [image for ax in fig.axes for image in ax.get_images() if image.get_cmap().name == "viridis"]
    assert len(heat) == 2 * 4 * 4      # 2 images x 4 heads x the 4 digits of the caption
    assert {(image.norm.vmin, image.norm.vmax) for image in heat} == {(0, 1.0)}
    assert len(colourbars) == 1 and colourbars[0].norm.vmax == 1.0


def test_attention_maps_share_one_colour_scale_with_a_colourbar(figures, colourbars):
    data, captions = scene_data(3)
    alphas = np.random.default_rng(2).dirichlet(np.ones(64), size=(3, captions.shape[1]))
    ic.plot_attention(data, [0, 1, 2], captions, alphas, "unused.png")
    fig = figures[-1]
    heat = [image for ax in fig.axes for image in ax.get_images() if image.get_cmap().name == "viridis"]
    shown = alphas[:3][:, [2, 8, 11, 14]]          # the positions of the digits 7, 3, 2, 8
    assert len(heat) == 12
    assert {(image.norm.vmin, image.norm.vmax) for image in heat} == {(0, float(shown.max()))}
    assert len(colourbars) == 1


def test_attention_figures_show_the_digit_words_only():
    words = "a large 1 to the right of a large 4 , a 2 and a 3".split()
    assert ic.attention_positions(words) == [2, 9, 12, 15]
    assert ic.attention_positions("a cat on a mat".split()) == [0, 1, 2, 3, 4]
    assert len(ic.attention_positions([str(d) for d in range(10)])) == ic.ATTENTION_PANELS
    data, captions = scene_data(1)
    assert ic.caption_words(captions, 0, data["idx_to_word"])[-1] == "8"   # stops before <END>


def test_digits_right_counts_the_scene_digits_a_caption_names():
    references = [["three", "digits", ":", "3", ",", "5", "and", "7"], ["a", "5", "below", "a", "3"]]
    assert ic.digits_right("three digits : 5 , 5 and 1".split(), references) == (1, 3)
    assert ic.digits_right("three digits : 7 , 3 and 5".split(), references) == (3, 3)
    assert ic.digits_right(["a", "dog"], [["a", "dog", "runs"]]) is None


def test_conv2_filter_titles_do_not_overlap(figures, colourbars):
    """The longest titles: two-digit channels (the later ones are the strongest) in every
    panel, as in the fashion_classification.py figure whose titles ran into each other."""
    channel_scale = np.arange(1, 17)[None, :, None, None]
    weights = np.random.default_rng(0).standard_normal((32, 16, 3, 3)) * channel_scale
    fc.plot_strongest_channels(weights, "unused.png")
    fig = figures[-1]
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert len(titles) == 32
    assert_disjoint(extents(titles, fig), "conv2 panel titles", gap=4 * fig.dpi / 72)
    assert len(colourbars) == 1


# ----------------------------------------------------------------------------- backend

@pytest.mark.parametrize("first, backend", [
    ("", "agg"), ("import matplotlib.pyplot; matplotlib.use('svg'); ", "svg")])
def test_plots_keeps_a_backend_already_in_use(first, backend):
    """Scripts get Agg; a notebook that imported pyplot (%matplotlib inline) keeps its
    backend, so that importing plots does not hide the notebook's own figures."""
    code = f"import matplotlib; {first}import plots; print(matplotlib.get_backend().lower())"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(backend)
