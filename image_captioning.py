"""Image captioning with a vanilla RNN, an LSTM, an LSTM with attention and a Transformer, compared by BLEU.

    python image_captioning.py           # full run: rnn, lstm, attention, transformer
    python image_captioning.py --quick   # smoke run, small scenes, about 1 min (2 the first time)
    python image_captioning.py --models lstm attention --keep-prob 0.5 --run-name dropout
    python image_captioning.py --models lstm attention --images 7 42 99
    python image_captioning.py --dataset coco --data-dir PATH     # the course's COCO files

The four decoders (rnn.py, transformer.py) read the same image features and the same
captions:

    rnn          CaptioningRNN(cell_type='rnn'):  h0 from the pooled feature vector, vanilla RNN
    lstm         CaptioningRNN(cell_type='lstm'): the same with an LSTM cell
    attention    AttentionCaptioningRNN: an LSTM that, before every word, looks at the 8 x 8
                 grid of feature vectors with additive attention and reads a weighted mean
    transformer  CaptioningTransformer: a decoder of --layers layers of masked multi-head
                 self-attention over the words so far, multi-head attention from the words
                 to the grid (COCO: to the one feature vector), a feed-forward block,
                 residuals, layer norm and dropout (--transformer-keep-prob)

--keep-prob < 1 gives lstm and attention dropout on the hidden state before the
vocabulary affine (as the reference exercise's decoders have); the default 1 keeps the
course's models.

Each is trained by the Solver (Adam, the same hyperparameters for all three) to predict
every next word of the training captions; after each epoch it captions the validation
images greedily (model.sample) and scores them by corpus BLEU-4 against all of each
image's reference captions. The parameters of the epoch with the best validation BLEU-4
are kept and captioned the test images once, at the end: BLEU-1..4 are reported.

Data (--dataset):
  mnist-scenes (default): the built-in set of mnist_scenes.py, scenes of 2 to 4 MNIST
      digits on a 64 x 64 canvas with 4 reference captions each (10,000 train / 1,000 val /
      1,000 test scenes; --quick: 1,000 / 200 / 200), with the features of
      scene_encoder.py's CNN (scene_encoder.load_scene_dataset). Needs MNIST (--data-dir,
      $HANDGRAD_DATA or data/mnist/); the first run generates the scenes and trains their
      feature encoder (a few minutes), later runs load their caches.
  coco: the course's COCO files (data/coco.py, needs h5py). COCO has a train and a val
      split only, so the val images are halved: the first half (by index) validates, the
      second half is the test set. Its features are one VGG-16 fc7 vector per image, with
      no spatial grid, so the attention model is not available on it: it is left out of
      the default --models, and asking for it is an error (the transformer attends to the
      one vector). There are no pixels either, so
      the caption figure shows the image URLs and there are no attention heatmaps.

How captions go through the Solver: a training sample is one caption (y) and the id of
the image it describes (X); ImageIdCaptioner looks up the image's features by id. The ids
stand for the features so that each image's features are stored once, not once per
caption: the attention features of the default set are 64 x 64 floats per image, and one
copy per caption would be 40,000 x 64 x 64 x 4 bytes = 655 MB; by id they take
11,000 x 64 x 64 x 4 bytes = 180 MB (train and val images). The Solver's metric,
bleu4(captioner, image_ids, _), captions the distinct images among image_ids and scores
them against all of their references, so the per-epoch "train" and "val" values are
BLEU-4 on a fixed subset of training images and on all validation images.

Why the BLEU-4 curves jump on MNIST scenes: every scene has one caption of each of the
four templates, so the first word is a coin toss between "a" (the two relation templates)
and the count word (the two listings), and greedy decoding takes whichever is a hair more
likely. A listing scores a higher BLEU than a relation sentence (its words are easier to
get right), so the share of each template, and with it BLEU-4, can move by several points
from one epoch to the next while the loss falls smoothly.

Written under <--results-dir>/<--run-name> (default results/full/, with --quick
results/quick/), each path printed at the end:
    captioning_loss.png            mean training loss per epoch, one line per model
    captioning_bleu4.png           BLEU-4 per epoch (orange: validation, blue: training subset)
    captioning_examples.png        test images with every model's caption (and how many of
                                   the scene's digits it names) and a reference
    captioning_attention.png       attention model: a heatmap over the image for each digit
                                   its caption names, one colour scale with a colourbar
    captioning_transformer_attention.png   transformer: its last layer's attention of each
                                   head over the image, for each digit named, one colour
                                   scale with a colourbar
    captions_<model>.json          the generated caption of every test image, keyed by id
    image_captioning.json          every number of the run
Checkpoints go to --checkpoint-dir, one series per model and dataset; --resume continues
a stopped run and skips finished ones (and trains a larger --epochs on). It is refused,
before any training, when no model has a checkpoint there, or when one was written with
other flags of that model (--batch-size, --learning-rate, --lr-decay, --grad-clip,
--max-train, --dtype, --seed, and the model's sizes and dropout; the message names the
flag).

Speed: the matrices here are small, and on a busy 2-core machine OpenBLAS threads wait
for each other: the --quick run took 72 s with one BLAS thread and 371 s with two. So the
script runs one BLAS thread unless --threads says otherwise (experiment.py).
"""
import experiment

experiment.apply_thread_policy()   # before NumPy loads

import os  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bleu import bleu_scores, corpus_bleu, decode_captions, group_references  # noqa: E402
from plots import (TRAIN_COLOUR, VAL_COLOUR, epoch_axis, fit_title, legend_outside,  # noqa: E402
                   note_short_run, plot_accuracy, run_style, save_figure)
from rnn import AttentionCaptioningRNN, CaptioningRNN  # noqa: E402
from transformer import CaptioningTransformer  # noqa: E402
from solver import epoch_means  # noqa: E402

MODELS = {
    "rnn": "vanilla RNN decoder on the pooled feature vector",
    "lstm": "LSTM decoder on the pooled feature vector",
    "attention": "LSTM decoder with additive attention over the spatial feature grid",
    "transformer": "Transformer decoder: masked self-attention, attention to the features, feed-forward",
}
DATASETS = ("mnist-scenes", "coco")
NUM_EXAMPLE_IMAGES = 6        # caption figure, when --images is not given
NUM_ATTENTION_IMAGES = 3      # attention heatmaps, when --images is not given


def parse_args(argv=None):
    t = experiment
    parser = t.parser(__doc__.split("\n\n")[0], sweeps=False, data_help=(
        "mnist-scenes: folder holding MNIST (else $HANDGRAD_DATA, data/); coco: the "
        "coco_captioning folder or its parent"))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None,
                        help="decoders to train (default: all four; on COCO all but attention)")
    parser.add_argument("--dataset", choices=DATASETS, default="mnist-scenes",
                        help="the built-in MNIST scenes or the course's COCO files")
    parser.add_argument("--cache-dir", default=None,
                        help="mnist-scenes: folder of the generated scenes' cache (default: "
                             "<data-dir>/cache, $HANDGRAD_DATA/cache, data/cache)")
    parser.add_argument("--max-train", type=t.positive_int, default=None,
                        help="coco: use a random subset of this many training captions "
                             "(default: all; --quick: 2000)")
    parser.add_argument("--raw-features", action="store_true",
                        help="coco: the 4096-d fc7 features instead of the 512-d PCA ones")
    t.add_scaled(parser, "--epochs", 12, 2, "epochs per model", type=t.positive_int)
    parser.add_argument("--batch-size", type=t.positive_int, default=100, help="minibatch size")
    parser.add_argument("--learning-rate", type=t.positive_float, default=2e-3,
                        help="Adam's step size")
    parser.add_argument("--lr-decay", type=t.decay_factor, default=0.85,
                        help="learning-rate factor per epoch")
    parser.add_argument("--grad-clip", type=t.non_negative_float,
                        default=5.0, help="largest global gradient norm (0: no clipping)")
    parser.add_argument("--wordvec-dim", type=t.positive_int, default=128, help="word vector size")
    parser.add_argument("--hidden-dim", type=t.positive_int, default=256, help="hidden state size")
    parser.add_argument("--attention-dim", type=t.positive_int, default=128,
                        help="attention model: size of the attention layer")
    parser.add_argument("--keep-prob", type=t.keep_probability, default=1.0,
                        help="lstm and attention: dropout KEEP probability of the hidden state "
                             "before the vocabulary affine (1: no dropout)")
    parser.add_argument("--heads", type=t.positive_int, default=4,
                        help="transformer: attention heads (must divide --wordvec-dim)")
    parser.add_argument("--layers", type=t.positive_int, default=2, help="transformer: decoder layers")
    parser.add_argument("--transformer-keep-prob", type=t.keep_probability, default=0.9,
                        help="transformer: dropout KEEP probability (1: no dropout)")
    parser.add_argument("--images", type=t.non_negative_int, nargs="+", default=None, metavar="ID",
                        help="test image ids (as in captions_<model>.json) to show in the "
                             f"caption figure and the attention heatmaps (default: the first "
                             f"{NUM_EXAMPLE_IMAGES}, heatmaps for the first {NUM_ATTENTION_IMAGES})")
    args = t.parse(parser, argv)
    if (args.models is None or "transformer" in args.models) and (
            args.wordvec_dim % args.heads or args.wordvec_dim % 2):
        parser.error(f"--wordvec-dim {args.wordvec_dim} must be even and divisible by "
                     f"--heads {args.heads} (the transformer's heads split the word vector)")
    if args.quick and args.dataset == "coco" and args.max_train is None:
        args.max_train = 2000
    models = args.models or [name for name in MODELS   # COCO: no grid, no attention model
                             if name != "attention" or args.dataset != "coco"]
    t.check_resume(args, {checkpoint_name(args, name): run_settings(args, name)
                          for name in models})
    return args


COMMON_SETTINGS = ("batch_size", "learning_rate", "lr_decay", "grad_clip", "max_train", "dtype",
                   "seed")
MODEL_SETTINGS = {
    "rnn": ("wordvec_dim", "hidden_dim"),
    "lstm": ("wordvec_dim", "hidden_dim", "keep_prob"),
    "attention": ("wordvec_dim", "hidden_dim", "attention_dim", "keep_prob"),
    "transformer": ("wordvec_dim", "heads", "layers", "transformer_keep_prob"),
}


def run_settings(args, name):
    """The flags model name's checkpoints are written with; --resume refuses others (the
    dataset, --quick's subset and --raw-features are in the checkpoint's name)."""
    return experiment.run_settings(args, *COMMON_SETTINGS, *MODEL_SETTINGS[name])


def dataset_name(args):
    """'mnist-scenes', 'mnist-scenes-small' (--quick), 'coco' or 'coco-raw' (--raw-features)."""
    if args.dataset == "mnist-scenes":
        return "mnist-scenes" + ("-small" if args.quick else "")
    return "coco" + ("-raw" if args.raw_features else "")


def checkpoint_name(args, name):
    """The checkpoint series of model name: <checkpoint-dir>/captioning_<dataset>_<name>."""
    return os.path.join(args.checkpoint_dir, f"captioning_{dataset_name(args)}_{name}")


# ----------------------------------------------------------------------------- data

def load_data(args):
    """
    The chosen dataset in one layout for both sources.

    Returns a dict with:
    - 'name': str, e.g. 'mnist-scenes' or 'mnist-scenes-small'.
    - 'word_to_idx', 'idx_to_word': the vocabulary.
    - 'grid': (rows, cols) of the spatial features, or None.
    - 'train', 'val', 'test': dicts with, for the N images of the split,
        'features' (N, D) pooled vectors; 'spatial_features' (N, L, D') or None;
        'captions' (N_c, T) int, 'image_idxs' (N_c,) the image of each caption;
        'references': list of N lists of word lists (all captions of each image);
        'ids': (N,) int, the image ids in the dataset's own numbering (JSON keys);
        'images': (N, h, w) uint8 pixels or None; 'urls': (N,) str or None.
    """
    if args.dataset == "mnist-scenes":
        return _load_mnist_scenes(args)
    return _load_coco(args)


def _load_mnist_scenes(args):
    from scene_encoder import load_scene_dataset
    size = "small" if args.quick else "default"
    scenes = load_scene_dataset(args.data_dir, seed=args.seed, size=size, cache_dir=args.cache_dir)
    data = {"name": dataset_name(args),
            "word_to_idx": scenes["word_to_idx"], "idx_to_word": scenes["idx_to_word"],
            "grid": tuple(scenes["info"]["grid"])}
    for split in ("train", "val", "test"):
        data[split] = {
            "features": scenes[f"{split}_features"],
            "spatial_features": scenes[f"{split}_spatial_features"],
            "captions": scenes[f"{split}_captions"],
            "image_idxs": scenes[f"{split}_image_idxs"],
            "references": scenes[f"{split}_references"],
            "ids": np.arange(len(scenes[f"{split}_images"])),
            "images": scenes[f"{split}_images"],
            "urls": None,
        }
    return data


def _load_coco(args):
    from data import load_coco_data
    coco = load_coco_data(args.data_dir, max_train=args.max_train,
                          pca_features=not args.raw_features, seed=args.seed)
    idx_to_word = coco["idx_to_word"]
    data = {"name": dataset_name(args),
            "word_to_idx": coco["word_to_idx"], "idx_to_word": idx_to_word, "grid": None}

    def split_data(features, captions, image_idxs, urls, ids):
        """Images `ids` of a COCO split, renumbered 0..len(ids)-1, with their captions."""
        keep = np.isin(image_idxs, ids)
        new_index = np.full(len(features), -1)
        new_index[ids] = np.arange(len(ids))
        captions, image_idxs = captions[keep], new_index[image_idxs[keep]]
        references = [[] for _ in ids]
        images, refs = group_references(captions, image_idxs, idx_to_word)
        for image, image_refs in zip(images, refs):
            references[image] = image_refs
        features = features[ids]
        return {"features": features if features.ndim == 2 else features.mean(axis=1),
                "spatial_features": features if features.ndim == 3 else None,
                "captions": captions, "image_idxs": image_idxs, "references": references,
                "ids": ids, "images": None, "urls": urls[ids]}

    num_train, num_val = len(coco["train_features"]), len(coco["val_features"])
    half = num_val // 2
    data["train"] = split_data(coco["train_features"], coco["train_captions"],
                               coco["train_image_idxs"], coco["train_urls"], np.arange(num_train))
    for split, ids in (("val", np.arange(half)), ("test", np.arange(half, num_val))):
        data[split] = split_data(coco["val_features"], coco["val_captions"],
                                 coco["val_image_idxs"], coco["val_urls"], ids)
    return data


def choose_models(args, data):
    """--models, or all models the data supports; attention needs (N, L, D) features."""
    has_grid = data["train"]["spatial_features"] is not None
    if args.models is None:
        return [name for name in MODELS if has_grid or name != "attention"]
    if "attention" in args.models and not has_grid:
        raise SystemExit(f"--models attention: the {data['name']} features are one vector per "
                         f"image (no spatial grid of shape (N, L, D)), so there is nothing to "
                         f"attend over; choose from rnn and lstm")
    return list(dict.fromkeys(args.models))


# ----------------------------------------------------------------------------- Solver glue

class ImageIdCaptioner:
    """
    A captioning model whose inputs are image ids instead of image features.

    The Solver treats row i of X and y as one sample. Here a sample is a caption y[i] and
    the id X[i] of the image it describes; loss() looks up that image's features. So every
    image's features are stored once, however many captions it has.

    Ids number the images of all the splits the Solver sees in one table: features[id]
    and references[id] belong to image id (train images first, then val images).

    - model: CaptioningRNN, AttentionCaptioningRNN or CaptioningTransformer.
    - params: the model's params dict itself, so the Solver's updates change the model.
    - the attributes of the model's checkpoint_state (its dropout counter) are read and
      written through to the model, so Solver checkpoints save and restore them.
    """

    def __init__(self, model, features, references, idx_to_word, max_length):
        """
        Inputs:
        - model: a captioning model with params, loss(features, captions), sample(features, T).
        - features: array (N_ids, D) or (N_ids, L, D), the features of image id in row id.
        - references: list of N_ids lists, all reference captions (word lists) of each image.
        - idx_to_word: list of V words, to decode sampled captions.
        - max_length: number of words sample() generates.
        """
        self.model = model
        self.params = model.params
        self.features = features
        self.references = references
        self.idx_to_word = idx_to_word
        self.max_length = max_length

    @property
    def checkpoint_state(self):
        return getattr(self.model, "checkpoint_state", ())

    def __getattr__(self, name):   # only for names the captioner does not have itself
        model = self.__dict__.get("model")
        if model is not None and name in getattr(model, "checkpoint_state", ()):
            return getattr(model, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name, value):
        model = self.__dict__.get("model")
        if model is not None and name in getattr(model, "checkpoint_state", ()):
            setattr(model, name, value)
        else:
            super().__setattr__(name, value)

    def loss(self, image_ids, captions):
        return self.model.loss(self.features[image_ids], captions)

    def sample(self, image_ids):
        return self.model.sample(self.features[image_ids], self.max_length)


def bleu4(captioner, image_ids, _captions=None):
    """
    The Solver's metric (higher is better): corpus BLEU-4 of the greedy captions of the
    distinct images among image_ids, each against all of its reference captions.

    Inputs:
    - captioner: an ImageIdCaptioner.
    - image_ids: int array (N,), ids into the captioner's table; repeats count once (the
      training samples are captions, and an image has several).
    - _captions: the samples' own captions, unused: an image is scored against all of its
      references, not only the one caption that happens to be in the sample.
    """
    image_ids = np.unique(image_ids)
    hypotheses = captioner.sample(image_ids)
    references = [captioner.references[i] for i in image_ids]
    return corpus_bleu(references, hypotheses, idx_to_word=captioner.idx_to_word)


# ----------------------------------------------------------------------------- training

def build_model(name, data, args):
    """A fresh decoder for the data's vocabulary and feature sizes."""
    dtype = np.dtype(args.dtype)
    if name == "attention":
        _, L, D = data["train"]["spatial_features"].shape
        return AttentionCaptioningRNN(data["word_to_idx"], feature_dim=D,
                                      num_positions=data["grid"] or L,
                                      wordvec_dim=args.wordvec_dim, hidden_dim=args.hidden_dim,
                                      attention_dim=args.attention_dim, dtype=dtype,
                                      seed=args.seed, keep_prob=args.keep_prob)
    if name == "transformer":
        features = data["train"][feature_key(name, data)]
        return CaptioningTransformer(data["word_to_idx"], input_dim=features.shape[-1],
                                     wordvec_dim=args.wordvec_dim, num_heads=args.heads,
                                     num_layers=args.layers,
                                     max_length=data["train"]["captions"].shape[1] - 1,
                                     keep_prob=args.transformer_keep_prob, seed=args.seed,
                                     dtype=dtype)
    return CaptioningRNN(data["word_to_idx"], input_dim=data["train"]["features"].shape[1],
                         wordvec_dim=args.wordvec_dim, hidden_dim=args.hidden_dim,
                         cell_type=name, dtype=dtype, seed=args.seed,
                         keep_prob=args.keep_prob if name == "lstm" else 1.0)


def feature_key(name, data):
    """The features a model reads: the grid for attention and (when there is one) the
    transformer, the pooled vector otherwise."""
    if name == "attention" or (name == "transformer"
                               and data["train"]["spatial_features"] is not None):
        return "spatial_features"
    return "features"


def train(name, data, args):
    """
    Train one decoder; returns (model, record). model holds the parameters of the epoch
    with the best validation BLEU-4.
    """
    model = build_model(name, data, args)
    train_split, val_split = data["train"], data["val"]
    key = feature_key(name, data)
    num_train_images = len(train_split[key])
    # One table of train and val images; val image k has id num_train_images + k.
    features = np.concatenate([train_split[key], val_split[key]]).astype(args.dtype, copy=False)
    captioner = ImageIdCaptioner(model, features,
                                 train_split["references"] + val_split["references"],
                                 data["idx_to_word"], train_split["captions"].shape[1] - 1)
    val_ids = num_train_images + np.arange(len(val_split[key]))
    # y_val is not used by bleu4 (the references are in the captioner); the Solver only
    # needs it to have one row per val sample.
    solver_data = {"X_train": train_split["image_idxs"], "y_train": train_split["captions"],
                   "X_val": val_ids, "y_val": val_ids}

    solver, run = experiment.train(
        captioner, solver_data,
        dict(update_rule="adam", optim_config={"learning_rate": args.learning_rate},
             lr_decay=args.lr_decay, batch_size=args.batch_size, num_epochs=args.epochs,
             grad_clip=args.grad_clip or None, metric=bleu4, num_train_samples=1000,
             print_every=200, seed=args.seed),
        checkpoint_name=checkpoint_name(args, name), resume=args.resume, label=name,
        settings=run_settings(args, name))
    history = solver.val_acc_history
    record = {
        "model": name,
        "description": MODELS[name],
        "num_params": int(sum(p.size for p in model.params.values())),
        "dropout_keep_prob": getattr(model, "keep_prob", 1.0),
        "val_bleu4_history": history,
        "train_bleu4_history": solver.train_acc_history,
        "epoch_losses": epoch_means(solver.loss_history, len(train_split["captions"]),
                                    args.batch_size),
        "best_val_bleu4": solver.best_val_acc if history else None,
        "best_epoch": int(np.argmax(history)) + 1 if history else None,
        "seconds_per_epoch": run["seconds_per_epoch"],
        "diverged": run["diverged"],
        "checkpoint": run["resumed_from"],
    }
    return model, record


def caption_test_images(name, model, data):
    """Greedy captions of all test images: (int captions (N, T), attention weights or None):
    (N, T, L) for the attention model, (N, T, heads, L) for the transformer on a grid."""
    max_length = data["train"]["captions"].shape[1] - 1
    key = feature_key(name, data)
    features = data["test"][key]
    if key == "spatial_features":   # a grid to attend over: keep the weights for the figures
        return model.sample(features, max_length, return_attention=True)
    return model.sample(features, max_length), None


# ----------------------------------------------------------------------------- figures

def caption_text(words):
    return " ".join(words) if words else "(empty caption)"


def digits_right(words, references):
    """
    How many of an MNIST scene's digits a caption names: (right, total), with total the
    number of digits in the scene (the digit words of its first reference; every reference
    names them all) and right how many of them the caption names (a digit counts as often
    as it is in both; order ignored). None when the references name no digit (COCO).
    """
    from collections import Counter
    truth = Counter(word for word in references[0] if word.isdigit())
    if not truth:
        return None
    named = Counter(word for word in words if word.isdigit())
    return sum((truth & named).values()), sum(truth.values())


def plot_examples(data, ids, captions_by_model, path):
    """
    One row per test image: the image (or its URL), then each model's caption and the
    image's first reference caption. A caption that equals one of the image's references
    word for word is drawn in green; on MNIST scenes each caption is followed by how many
    of the scene's digits it names (digits_right).

    Inputs:
    - data: the dict of load_data.
    - ids: test image positions (rows of data['test'] arrays) to show.
    - captions_by_model: dict model name -> list of word lists, one per test image.
    - path: PNG file to write.
    """
    import matplotlib.pyplot as plt
    test = data["test"]
    images = test["images"]
    rows = len(ids)
    lines = len(captions_by_model) + 1
    fig = plt.figure(figsize=(10, rows * max(1.5, 0.32 * lines + 0.3)))
    grid = fig.add_gridspec(rows, 2, width_ratios=[1, 5.5], hspace=0.35, wspace=0.05,
                            top=1 - 0.6 / fig.get_figheight())
    for row, i in enumerate(ids):
        ax_image, ax_text = fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1])
        if images is not None:
            ax_image.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        else:
            ax_image.text(0.5, 0.5, "\n".join(textwrap.wrap(str(test["urls"][i]), 22)),
                          ha="center", va="center", fontsize=6)
        ax_image.set_title(f"test image {test['ids'][i]}", fontsize=8)
        references = [caption_text(ref) for ref in test["references"][i]]
        entries = []
        for name, captions in captions_by_model.items():
            right = digits_right(captions[i], test["references"][i])
            entries.append((f"{name}: {caption_text(captions[i])}"
                            + ("" if right is None else f"   ({right[0]} of {right[1]} digits right)"),
                            "tab:green" if caption_text(captions[i]) in references else "black"))
        entries.append((f"reference: {references[0]}", "0.4"))
        for line, (text, color) in enumerate(entries):
            ax_text.text(0, 1 - (line + 0.5) / lines, text, color=color, fontsize=9,
                         va="center")
        for ax in (ax_image, ax_text):
            ax.set_xticks([])
            ax.set_yticks([])
        for spine in ax_text.spines.values():
            spine.set_visible(False)
    fig.suptitle(f"{data['name']}: greedy captions of test images "
                 f"(green: equal to one of the image's {len(test['references'][ids[0]])} "
                 f"references)", fontsize=10, y=1 - 0.15 / fig.get_figheight())
    return save_figure(fig, path)


def upsample_attention(weights, grid, canvas_shape):
    """
    Spread attention weights over the canvas: grid cell (r, c) covers the canvas pixels
    [r * cell_h, (r + 1) * cell_h) x [c * cell_w, (c + 1) * cell_w) and each of them gets
    the cell's weight.

    Inputs:
    - weights: array (L,), L = rows * cols, position l = r * cols + c.
    - grid: (rows, cols).
    - canvas_shape: (height, width), multiples of rows and cols.

    Returns:
    - array (height, width).
    """
    rows, cols = grid
    cell_h, cell_w = canvas_shape[0] // rows, canvas_shape[1] // cols
    return np.kron(np.reshape(weights, grid), np.ones((cell_h, cell_w)))


ATTENTION_PANELS = 6   # heat maps per caption in the attention figures (see attention_positions)


def attention_positions(words, max_panels=ATTENTION_PANELS):
    """
    The positions t of a caption's words that get a heat map: the words that name a digit
    (the steps where the decoder has to find one digit on the canvas), at most max_panels;
    a caption without a digit gets its first max_panels words. A panel per word (17 for a
    four-digit caption) made the figures too wide to read.
    """
    digits = [t for t, word in enumerate(words) if word.isdigit()]
    return (digits or list(range(len(words))))[:max_panels]


def caption_words(captions, i, idx_to_word):
    """The words of caption i of an int array (N, T), up to (without) <END>."""
    words = [idx_to_word[w] for w in captions[i]]
    return words[:words.index("<END>")] if "<END>" in words else words


def draw_attention_maps(data, blocks, path, title, colour_label, gamma=1.0):
    """
    Attention heat maps over the grid, upsampled to the canvas, with the digits drawn on
    top; every panel on one colour scale (0 to the largest weight shown), with a colourbar.

    Inputs:
    - data: the dict of load_data (test images and a grid).
    - blocks: list of (i, words, positions, rows), one per test image: its position i in
      the test split, its caption words, the positions t of the words shown, and rows, a
      list of (row label or None, weights (len(positions), L)).
    - path: PNG file to write; title: figure title; colour_label: the colourbar's label.
    - gamma: 1 for a linear colour scale, 0.5 for a square-root one (small weights visible
      next to a peaked head's large ones); the colourbar is labelled in weights either way.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm
    test, grid = data["test"], data["grid"]
    columns = 1 + max(len(positions) for _, _, positions, _ in blocks)
    heights = []
    for *_, rows in blocks:
        heights += [0.3] + [1.0] * len(rows)        # a line for the caption, then the maps
    labelled = any(len(rows) > 1 for *_, rows in blocks)   # room for the row labels
    height = (1.45 if labelled else 1.75) * sum(heights) + 0.5
    fig = plt.figure(figsize=(1.55 * columns + 0.8, height))
    spec = fig.add_gridspec(len(heights), columns + 1, height_ratios=heights,
                            width_ratios=[1] * columns + [0.07], hspace=0.3,
                            wspace=0.25 if labelled else 0.08,
                            top=1 - 0.45 / height, bottom=0.1 / height)
    vmax = max(float(np.max(weights)) for *_, rows in blocks for _, weights in rows) or 1.0
    norm = PowerNorm(gamma, vmin=0, vmax=vmax)
    row = 0
    for i, words, positions, rows in blocks:
        image = test["images"][i]
        caption = fig.add_subplot(spec[row, :columns])
        caption.axis("off")
        caption.text(0, 0, fit_title(f"test image {test['ids'][i]}, caption: "
                                     f"\"{caption_text(words)}\"", 25 * columns),
                     fontsize=9, va="bottom", transform=caption.transAxes)
        row += 1
        for k, (label, weights) in enumerate(rows):
            if k == 0:
                ax = fig.add_subplot(spec[row, 0])
                ax.imshow(image, cmap="gray", vmin=0, vmax=255)
                ax.set_title("the image", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
            for c, (t, w) in enumerate(zip(positions, weights)):
                ax = fig.add_subplot(spec[row, c + 1])
                shown = ax.imshow(upsample_attention(w, grid, image.shape), cmap="viridis",
                                  norm=norm)
                # the digits on top, white where there is ink, see-through elsewhere
                ax.imshow(np.ones_like(image), cmap="gray", vmin=0, vmax=1,
                          alpha=0.75 * image / 255.0)
                ax.set_xticks([])
                ax.set_yticks([])
                if k == 0:
                    ax.set_title(f"\"{words[t]}\" (word {t + 1})", fontsize=8)
                if c == 0 and label:
                    ax.set_ylabel(label, fontsize=8)
            row += 1
    bar = fig.colorbar(shown, cax=fig.add_subplot(spec[1:, columns]))
    bar.set_label(colour_label, fontsize=8)
    fig.suptitle(fit_title(title, 20 * columns), fontsize=10)
    return save_figure(fig, path)


def plot_attention(data, ids, captions, alphas, path):
    """
    Attention heat maps of the attention model: one block per test image with its caption,
    and a panel for each word that names a digit (attention_positions), showing the
    weights of the context read in the step that generated that word (alphas[:, t] for
    word t). The query of that step is the state before the word, so the model decides
    where to look before it speaks; it may also have read the digit a step early and name
    it from memory, which the map then shows as looking elsewhere.

    Inputs:
    - data: the dict of load_data (needs test images and a grid).
    - ids: test image positions to show.
    - captions: int array (N_test, T), the attention model's test captions.
    - alphas: array (N_test, T, L), the attention weights of every word.
    - path: PNG file to write.

    All panels share one colour scale, shown by the colorbar: a cell's weight (the
    weights of a step sum to 1 over the L cells), so panels can be compared.
    """
    blocks = []
    for i in ids:
        words = caption_words(captions, i, data["idx_to_word"])
        positions = attention_positions(words)
        blocks.append((i, words, positions, [(None, alphas[i, positions])]))
    rows, cols = data["grid"]
    return draw_attention_maps(
        data, blocks, path, f"Attention model: where it looks in the step that generates each "
        f"digit of its caption ({rows} x {cols} grid upsampled to the canvas)",
        "attention weight of a cell (a step's weights sum to 1)")


def plot_transformer_attention(data, ids, captions, weights, path):
    """
    The transformer's attention, per head: for each test image a block of rows, one per
    head of the last decoder layer, and a panel for each word that names a digit
    (attention_positions) with that head's weights over the grid at the position that
    generated the word.

    Inputs:
    - data: the dict of load_data (test images and a grid).
    - ids: test image positions to show.
    - captions: int array (N_test, T), the transformer's test captions.
    - weights: array (N_test, T, heads, L) from CaptioningTransformer.sample.
    - path: PNG file to write.

    All panels share one colour scale, shown by the colourbar (a head's weights over the
    cells sum to 1): a peaked head is bright on one cell, a head that spreads out is dim
    everywhere, and heads can be compared. The scale is a square root, so that the
    spread-out heads' small weights still show.
    """
    blocks = []
    for i in ids:
        words = caption_words(captions, i, data["idx_to_word"])
        positions = attention_positions(words)
        blocks.append((i, words, positions, [(f"head {h + 1}", weights[i, positions, h])
                                             for h in range(weights.shape[2])]))
    grid_rows, grid_cols = data["grid"]
    return draw_attention_maps(
        data, blocks, path, f"Transformer, last layer: each head's attention over the "
        f"{grid_rows} x {grid_cols} grid at the position that generates each digit",
        "attention weight of a cell (a head's weights sum to 1; square-root scale)", gamma=0.5)


def plot_curves(records, data, results_dir):
    """Mean training loss (log scale) and BLEU-4 per epoch: colour is the split (train /
    val), marker and line style the model, the same in both figures."""
    loss_path = plot_accuracy(
        {r["model"]: r["epoch_losses"] for r in records},
        os.path.join(results_dir, "captioning_loss.png"),
        f"{data['name']}: training loss per caption\n(cross-entropy summed over its words)",
        ylabel="mean training loss per epoch", split="train", log_scale=True)
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, r in enumerate(records):
        epochs = np.arange(1, len(r["val_bleu4_history"]) + 1)
        keep = r.get("dropout_keep_prob", 1.0)
        name = r["model"] + (f" (dropout keep {keep:g})" if keep < 1 else "")
        ax.plot(epochs, r["val_bleu4_history"], color=VAL_COLOUR, label=f"{name} val",
                **run_style(k))
        ax.plot(epochs, r["train_bleu4_history"], color=TRAIN_COLOUR, alpha=0.7,
                label=f"{name} train subset", **run_style(k))
    epoch_axis(ax, max((len(r["val_bleu4_history"]) for r in records), default=1))
    note_short_run(ax, {r["model"]: r["val_bleu4_history"] for r in records},
                   colours={r["model"]: VAL_COLOUR for r in records})
    ax.set_ylabel("BLEU-4 (greedy captions)")
    ax.set_title(fit_title(f"{data['name']}: BLEU-4 per epoch"), fontsize=10)
    legend_outside(ax)
    ax.grid(alpha=0.3)
    bleu_path = save_figure(fig, os.path.join(results_dir, "captioning_bleu4.png"))
    return loss_path, bleu_path


# ----------------------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    data = load_data(args)
    models = choose_models(args, data)
    test_ids = data["test"]["ids"].tolist()
    num_test = len(test_ids)
    if args.images is None:
        example_ids = list(range(min(NUM_EXAMPLE_IMAGES, num_test)))
        attention_ids = example_ids[:NUM_ATTENTION_IMAGES]
    else:   # image ids (the keys of captions_<model>.json) to positions in the test split
        position = {image_id: k for k, image_id in enumerate(test_ids)}
        unknown = [i for i in args.images if i not in position]
        if unknown:
            raise SystemExit(f"--images {' '.join(map(str, unknown))}: not a test image id; "
                             f"the test images have ids {test_ids[0]}..{test_ids[-1]}")
        example_ids = attention_ids = [position[i] for i in args.images]

    print(f"{data['name']}: " + ", ".join(
        f"{len(data[s]['features'])} {s} images ({len(data[s]['captions'])} captions)"
        for s in ("train", "val", "test")) + f"; {len(data['idx_to_word'])} words")
    print(f"Adam lr {args.learning_rate:g} (x{args.lr_decay:g} per epoch), batch {args.batch_size}, "
          f"{args.epochs} epochs, grad clip {args.grad_clip:g}; word vectors {args.wordvec_dim}, "
          f"hidden {args.hidden_dim}, attention {args.attention_dim}; {args.dtype}")

    records, test_captions, attention, transformer_attention = [], {}, None, None
    for name in models:
        print(f"\n=== {name}: {MODELS[name]} ===")
        model, record = train(name, data, args)
        records.append(record)
        if record["best_val_bleu4"] is None:
            print(f"  {name}: no finished epoch, nothing to test")
            continue
        captions, alphas = caption_test_images(name, model, data)
        if alphas is not None and name == "attention":
            attention = (captions, alphas)
        elif alphas is not None:
            transformer_attention = (captions, alphas)
        record["test_bleu"] = bleu_scores(data["test"]["references"], captions,
                                          idx_to_word=data["idx_to_word"])
        test_captions[name] = decode_captions(captions, data["idx_to_word"])

    files = {}
    files["loss_plot"], files["bleu4_plot"] = plot_curves(records, data, args.results_dir)
    for name, captions in test_captions.items():
        files[f"captions_{name}"] = os.path.join(args.results_dir, f"captions_{name}.json")
        experiment.write_json(files[f"captions_{name}"], {
            str(image_id): caption_text(words)
            for image_id, words in zip(data["test"]["ids"].tolist(), captions)})
    if test_captions:
        files["examples"] = plot_examples(data, example_ids, test_captions,
                                          os.path.join(args.results_dir, "captioning_examples.png"))
    if attention is not None and data["test"]["images"] is not None:
        files["attention"] = plot_attention(data, attention_ids, *attention,
                                            os.path.join(args.results_dir, "captioning_attention.png"))
    if transformer_attention is not None and data["test"]["images"] is not None:
        files["transformer_attention"] = plot_transformer_attention(
            data, attention_ids[:2], *transformer_attention,
            os.path.join(args.results_dir, "captioning_transformer_attention.png"))
    wall_time = time.perf_counter() - start
    files["json"] = os.path.join(args.results_dir, "image_captioning.json")
    results = {"args": vars(args), "dataset": data["name"],
               "num_images": {s: len(data[s]["features"]) for s in ("train", "val", "test")},
               "models": records, "wall_time_seconds": wall_time, "files": files}
    experiment.write_json(files["json"], results)

    print(f"\ntest BLEU on {num_test} {data['name']} test images (greedy captions, "
          f"parameters of the best validation epoch):")
    print(f"{'model':>10} {'BLEU-1':>7} {'BLEU-2':>7} {'BLEU-3':>7} {'BLEU-4':>7} "
          f"{'best val BLEU-4':>16} {'s/epoch':>8}")
    for r in records:
        if "test_bleu" not in r:
            print(f"{r['model']:>10} {'(no finished epoch)':>30}")
            continue
        b = r["test_bleu"]
        print(f"{r['model']:>10} {b['bleu1']:>7.4f} {b['bleu2']:>7.4f} {b['bleu3']:>7.4f} "
              f"{b['bleu4']:>7.4f} {r['best_val_bleu4']:>8.4f} (ep {r['best_epoch']:>2}) "
              f"{r['seconds_per_epoch'] or float('nan'):>8.1f}"
              + ("  (diverged)" if r["diverged"] else ""))
    print(f"\nwall time {wall_time:.0f} s")
    experiment.print_files(files)
    return results


def cli():
    """The command's entry point: main() with data errors as one message (see experiment.run)."""
    return experiment.run(main)


if __name__ == "__main__":
    sys.exit(cli())
