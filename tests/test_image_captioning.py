"""image_captioning.py: the Solver glue (image ids, the BLEU-4 metric), the attention
upsampling, the model choice per dataset, a COCO run on tiny files of the course's
layout, and the --quick run of the whole script on the small MNIST scenes (skipped, with
the reason, when MNIST is not found)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import image_captioning as ic
from data import DatasetNotFoundError, find_dataset_dir
from rnn import CaptioningRNN

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ['<NULL>', '<START>', '<END>', 'a', 'cat', 'dog']
WORD_TO_IDX = {w: i for i, w in enumerate(WORDS)}


class FixedCaptions:
    """A stand-in model whose sample() returns stored captions, one per feature row
    (the 'features' are the rows' numbers)."""
    params = {}

    def __init__(self, captions):
        self.captions = np.asarray(captions)

    def sample(self, features, max_length):
        return self.captions[features.astype(int), :max_length]


def test_captioner_looks_up_features_by_image_id_and_shares_params():
    rng = np.random.default_rng(0)
    model = CaptioningRNN(WORD_TO_IDX, input_dim=4, wordvec_dim=3, hidden_dim=5, seed=0)
    features = rng.standard_normal((3, 4)).astype(np.float32)
    captioner = ic.ImageIdCaptioner(model, features, [[['a']]] * 3, WORDS, max_length=4)
    assert captioner.params is model.params   # the Solver's updates must reach the model
    captions = np.array([[1, 3, 4, 2], [1, 3, 5, 2], [1, 4, 2, 0]])
    image_ids = np.array([2, 0, 2])
    loss, grads = captioner.loss(image_ids, captions)
    expected_loss, expected_grads = model.loss(features[image_ids], captions)
    assert loss == expected_loss
    for name in grads:
        np.testing.assert_array_equal(grads[name], expected_grads[name])
    np.testing.assert_array_equal(captioner.sample(np.array([1, 2])),
                                  model.sample(features[[1, 2]], 4))


def test_captioner_passes_the_dropout_counter_through_and_resumes_exactly(tmp_path):
    """The Solver saves and restores the checkpoint_state of the model it trains: through
    ImageIdCaptioner, that must reach the wrapped model's dropout counter."""
    from solver import Solver
    from transformer import CaptioningTransformer
    rng = np.random.default_rng(1)
    features = rng.standard_normal((6, 3, 4)).astype(np.float32)
    captions = np.array([[1, 3, 4, 2], [1, 3, 5, 2], [1, 4, 2, 0]] * 4)
    ids = np.arange(12) % 6
    make = lambda: ic.ImageIdCaptioner(
        CaptioningTransformer(WORD_TO_IDX, input_dim=4, wordvec_dim=8, num_heads=2, num_layers=1,
                              max_length=3, keep_prob=0.7, seed=2), features, [[['a']]] * 6, WORDS, 3)
    captioner = make()
    assert captioner.checkpoint_state == ("training_steps",)
    captioner.training_steps = 7
    assert captioner.model.training_steps == 7 and "training_steps" not in vars(captioner)
    data = {"X_train": ids, "y_train": captions, "X_val": ids[:3], "y_val": captions[:3]}
    kwargs = dict(update_rule="adam", batch_size=4, verbose=False, seed=0,
                  metric=lambda model, X, y: -float(np.mean(model.sample(X) != y[:, 1:])))
    straight = make()
    Solver(straight, data, num_epochs=3, **kwargs).train()
    name = str(tmp_path / "run")
    Solver(make(), data, num_epochs=1, checkpoint_name=name, **kwargs).train()
    resumed = make()
    solver = Solver(resumed, data, num_epochs=3, checkpoint_name=name, **kwargs)
    solver.resume_latest()
    assert resumed.model.training_steps == 3
    solver.train()
    for key in straight.params:
        np.testing.assert_array_equal(resumed.params[key], straight.params[key])


def test_bleu4_scores_each_image_once_against_all_its_references():
    from bleu import corpus_bleu
    sampled = [[3, 4, 3, 5, 2], [3, 5, 3, 5, 2]]      # "a cat a dog", "a dog a dog"
    references = [[['a', 'dog'], ['a', 'cat', 'a', 'dog']],   # image 0: its 2nd reference
                  [['a', 'dog', 'a', 'cat']]]
    captioner = ic.ImageIdCaptioner(FixedCaptions(sampled), np.arange(2.0), references,
                                    WORDS, max_length=5)
    # equal to one of its image's references: 1, however often the image is repeated
    assert ic.bleu4(captioner, np.array([0, 0, 0]), None) == 1.0
    # several images: corpus BLEU-4 over the distinct images, each with all its references
    expected = corpus_bleu(references, [['a', 'cat', 'a', 'dog'], ['a', 'dog', 'a', 'dog']])
    assert 0 < expected < 1
    assert ic.bleu4(captioner, np.array([1, 0, 1, 0]), None) == expected


def test_upsample_attention_gives_each_cell_its_block_of_pixels():
    weights = np.arange(6.0)                 # grid 2 x 3, position l = row * 3 + col
    heat = ic.upsample_attention(weights, (2, 3), (4, 9))
    assert heat.shape == (4, 9)
    np.testing.assert_array_equal(heat[0:2, 0:3], 0.0)
    np.testing.assert_array_equal(heat[0:2, 6:9], 2.0)    # row 0, col 2
    np.testing.assert_array_equal(heat[2:4, 3:6], 4.0)    # row 1, col 1
    assert heat.sum() == weights.sum() * 2 * 3


def test_epoch_means_weight_the_last_smaller_batch():
    assert ic.epoch_means([1.0, 2.0, 4.0, 0.0, 0.0, 1.0], 5, 2) == [
        pytest.approx((2 + 4 + 4) / 5), pytest.approx(1 / 5)]


def fake_data(spatial):
    split = {"spatial_features": np.zeros((2, 4, 3)) if spatial else None}
    return {"name": "fake", "train": split}


def test_attention_needs_a_spatial_grid():
    args = ic.parse_args([])
    assert ic.choose_models(args, fake_data(spatial=True)) == ["rnn", "lstm", "attention", "transformer"]
    assert ic.choose_models(args, fake_data(spatial=False)) == ["rnn", "lstm", "transformer"]
    args = ic.parse_args(["--models", "attention", "rnn"])
    assert ic.choose_models(args, fake_data(spatial=True)) == ["attention", "rnn"]
    with pytest.raises(SystemExit, match="no spatial grid"):
        ic.choose_models(args, fake_data(spatial=False))


def test_coco_run_on_tiny_files(tmp_path, capsys):
    pytest.importorskip("h5py", reason="the COCO files are HDF5: pip install h5py")
    from test_coco import SIZES, write_tiny_coco
    write_tiny_coco(str(tmp_path / "coco_captioning"))
    results = tmp_path / "results"
    num_val = SIZES["val"][0]
    args = ["--dataset", "coco", "--data-dir", str(tmp_path), "--epochs", "2",
            "--batch-size", "4", "--hidden-dim", "8", "--wordvec-dim", "6", "--heads", "2",
            "--results-dir", str(results), "--checkpoint-dir", str(tmp_path / "checkpoints")]
    with pytest.raises(SystemExit, match="not a test image id"):   # val half, not test half
        ic.main(args + ["--images", "0"])
    summary = ic.main(args + ["--images", str(num_val - 1)])
    # no attention model on fc7 vectors; the transformer attends to the one vector
    assert [m["model"] for m in summary["models"]] == ["rnn", "lstm", "transformer"]
    out = capsys.readouterr().out
    assert "captioning_attention.png" not in out and "transformer_attention" not in out
    assert summary["num_images"] == {"train": SIZES["train"][0], "val": num_val // 2,
                                     "test": num_val - num_val // 2}
    with open(results / "full" / "captions_lstm.json") as f:
        captions = json.load(f)
    # keyed by the image's row in COCO's val files: the test set is the second half
    assert list(captions) == [str(i) for i in range(num_val // 2, num_val)]
    assert os.path.getsize(summary["files"]["examples"]) > 1000
    for model in summary["models"]:
        assert len(model["val_bleu4_history"]) == 2
        assert set(model["test_bleu"]) == {"bleu1", "bleu2", "bleu3", "bleu4"}


def mnist_or_skip():
    if not os.environ.get("HANDGRAD_DATA"):
        pytest.skip("the --quick run needs MNIST: $HANDGRAD_DATA is not set (CI sets it to "
                    "the shared data folder holding mnist/)")
    try:
        find_dataset_dir("mnist")
    except DatasetNotFoundError:
        pytest.skip(f"the --quick run needs MNIST: no MNIST files under "
                    f"$HANDGRAD_DATA={os.environ['HANDGRAD_DATA']}")


def run_script(*args):
    # One BLAS thread: with two, on a loaded 2-core machine, the run took 14x longer (see
    # the script's docstring). The caller's own choice wins.
    env = dict(os.environ, MPLBACKEND="Agg")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return subprocess.run([sys.executable, "image_captioning.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def test_quick_run_end_to_end_and_resume_with_chosen_images(tmp_path):
    mnist_or_skip()
    results = tmp_path / "results"
    # the small scenes are generated once (about half a minute) into the repo's
    # git-ignored data/cache, and loaded from there by later runs
    args = ["--quick", "--results-dir", str(results), "--checkpoint-dir",
            str(tmp_path / "checkpoints"), "--cache-dir", os.path.join(REPO, "data", "cache")]
    done = run_script(*args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "val bleu4" in out and "BLEU-4" in out
    with open(results / "quick" / "image_captioning.json") as f:
        summary = json.load(f)
    assert summary["dataset"] == "mnist-scenes-small"
    assert summary["num_images"] == {"train": 1000, "val": 200, "test": 200}
    assert [m["model"] for m in summary["models"]] == ["rnn", "lstm", "attention", "transformer"]
    for model in summary["models"]:
        assert len(model["val_bleu4_history"]) == 2 and len(model["epoch_losses"]) == 2
        assert model["epoch_losses"][1] < model["epoch_losses"][0]
        assert set(model["test_bleu"]) == {"bleu1", "bleu2", "bleu3", "bleu4"}
        # two epochs on 1,000 scenes already get the caption templates' words right
        assert 0.3 < model["test_bleu"]["bleu1"] <= 1.0
        assert 0.0 <= model["test_bleu"]["bleu4"] <= model["test_bleu"]["bleu1"]
        with open(results / "quick" / f"captions_{model['model']}.json") as f:
            captions = json.load(f)
        assert list(captions) == [str(i) for i in range(200)]
        assert all(isinstance(c, str) for c in captions.values())
    for key in ("loss_plot", "bleu4_plot", "examples", "attention", "transformer_attention", "json",
                "captions_rnn", "captions_lstm", "captions_attention", "captions_transformer"):
        path = summary["files"][key]
        assert os.path.isfile(path) and path in out, key

    # --resume: every model is finished, so nothing trains again; --images picks the
    # pictures, and the numbers stay the same.
    again = run_script(*args, "--resume", "--images", "7", "3")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("resumed from") == 4 and "(Epoch" not in again.stdout
    with open(results / "quick" / "image_captioning.json") as f:
        resumed = json.load(f)
    assert [m["test_bleu"] for m in resumed["models"]] == [m["test_bleu"]
                                                           for m in summary["models"]]
    assert resumed["args"]["images"] == [7, 3]
    bad = run_script(*args, "--resume", "--images", "200")
    assert bad.returncode != 0 and "--images 200: not a test image id" in bad.stderr


def run_cli(*args, cwd):
    """image_captioning.py as a command in cwd (exit code and stderr as a user sees them)."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=REPO)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return subprocess.run([sys.executable, os.path.join(REPO, "image_captioning.py"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_resume_on_tiny_coco_refuses_other_flags_warns_in_one_line_and_continues(tmp_path):
    """--resume: refused with nothing to resume (naming what it looked for) and with other
    flags of a model (naming them); an unreadable newest checkpoint is skipped with a
    one-line warning; more --epochs give exactly the uninterrupted run's numbers."""
    pytest.importorskip("h5py", reason="the COCO files are HDF5: pip install h5py")
    from test_coco import write_tiny_coco
    write_tiny_coco(str(tmp_path / "coco_captioning"))
    common = ["--dataset", "coco", "--data-dir", str(tmp_path), "--batch-size", "4",
              "--hidden-dim", "8", "--wordvec-dim", "6", "--heads", "2", "--models", "rnn",
              "transformer"]
    folder = os.path.join("checkpoints", "full")
    nothing = run_cli(*common, "--resume", cwd=tmp_path)
    assert nothing.returncode == 2 and nothing.stdout == ""
    assert nothing.stderr.startswith(f"error: --resume: nothing to resume in {folder} (run "
                                     f"name 'full'): the folder does not exist; run without "
                                     f"--resume")
    first = run_cli(*common, "--epochs", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    other = run_cli(*common[:-2], "lstm", "--resume", cwd=tmp_path)
    assert other.returncode == 2 and other.stderr == (
        f"error: --resume: nothing to resume in {folder} (run name 'full'): no checkpoint "
        f"captioning_coco_lstm_epoch_*.npz there; run without --resume to start afresh, or "
        f"give the --run-name (and --checkpoint-dir) of the run to continue\n")
    rnn, transformer = (os.path.join(folder, f"captioning_coco_{name}_epoch_1.npz")
                        for name in ("rnn", "transformer"))
    for flags, message in (
            (["--batch-size", "8"], f"{rnn} was written with --batch-size 4, this run has "
                                    f"--batch-size 8"),
            (["--heads", "3"], f"{transformer} was written with --heads 2, this run has --heads 3"),
            (["--learning-rate", "0.01", "--keep-prob", "0.5"],
             f"{rnn} was written with --learning-rate 0.002, this run has --learning-rate 0.01")):
        refused = run_cli(*common, "--resume", *flags, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stdout == "", refused.stderr
        assert refused.stderr == (f"error: checkpoint {message}: run without --resume or with "
                                  f"the same flags\n")

    # --heads is no setting of the rnn: resuming only it is fine. Its newest checkpoint is
    # unreadable: skipped with one line of warning, and the run resumes the one before.
    with open(os.path.join(tmp_path, folder, "captioning_coco_rnn_epoch_2.npz"), "wb") as f:
        f.write(b"PK\x03\x04 cut off")
    resumed = run_cli(*common[:-1], "--heads", "3", "--epochs", "2", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {rnn} after epoch 1" in resumed.stdout
    skipped = os.path.join(folder, "captioning_coco_rnn_epoch_2.npz")
    assert resumed.stderr.startswith(f"warning: checkpoint {skipped} is "
                                     f"truncated or corrupt"), resumed.stderr
    assert len(resumed.stderr.splitlines()) == 1 and "warnings.warn" not in resumed.stderr

    # the transformer continues to 2 epochs as well; both equal an uninterrupted run
    resumed = run_cli(*common, "--epochs", "2", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr[-2000:]
    assert resumed.stdout.count("resumed from") == 2
    straight = run_cli(*common, "--epochs", "2", "--run-name", "straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]
    models = []
    for name in ("full", "straight"):
        with open(tmp_path / "results" / name / "image_captioning.json") as f:
            models.append(json.load(f)["models"])
    assert [len(m["epoch_losses"]) for m in models[0]] == [2, 2]
    for key in ("epoch_losses", "val_bleu4_history", "train_bleu4_history", "test_bleu"):
        assert [m[key] for m in models[0]] == [m[key] for m in models[1]], key
