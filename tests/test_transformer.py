"""transformer.CaptioningTransformer: numeric gradients of every parameter (float64, with
and without dropout), the conventions of rnn.CaptioningRNN (masking, sampling), the
causal mask, reproducible dropout, training by the Solver with an exact resume."""
import numpy as np
import pytest

from grader.checks import expect_close, numeric_gradient_and_noise
from solver import Solver
from transformer import CaptioningTransformer

WORDS = ['<NULL>', '<START>', '<END>', 'a', 'b', 'c']
WORD_TO_IDX = {w: i for i, w in enumerate(WORDS)}
CAPTIONS = np.array([[1, 3, 4, 2, 0], [1, 5, 4, 4, 2]])


def small_model(seed=0, keep_prob=1.0, dtype=np.float64, **kwargs):
    settings = dict(input_dim=5, wordvec_dim=8, num_heads=2, num_layers=2, max_length=6, ffn_dim=12)
    settings.update(kwargs)
    return CaptioningTransformer(WORD_TO_IDX, keep_prob=keep_prob, seed=seed, dtype=dtype, **settings)


def perturbed(seed, keep_prob):
    """A small float64 model with weights of order 1 (not the initial 1 and 0 of the layer
    norms, or the zero biases) and grid features (N=2, L=3, D=5)."""
    model = small_model(seed, keep_prob)
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((2, 3, 5))
    for name in model.params:
        model.params[name] = model.params[name] + 0.3 * rng.standard_normal(model.params[name].shape)
    return model, features


def ffn_margin(model, features, captions):
    """The smallest |pre-activation| of the feed-forward ReLUs in the first training call:
    a numeric step must not cross a ReLU kink."""
    model.training_steps = 0
    _, caches, _ = model._forward(features, captions[:, :-1], train=True,
                                  rng=np.random.default_rng([model.seed, 0]))
    return min(np.abs(blocks[2][0][0][3]).min() for blocks in caches[3])   # fc1 out


@pytest.mark.parametrize("seed, keep_prob", [(0, 1.0), (0, 0.7), (5, 0.7)])
def test_numeric_gradients_of_every_parameter(seed, keep_prob):
    model, features = perturbed(seed, keep_prob)
    # These seeds keep every ReLU input > 0.01 away from 0, five times the largest step
    # of the numeric gradient (2e-3 times inputs of order 1).
    assert ffn_margin(model, features, CAPTIONS) > 0.01
    model.training_steps = 0
    loss, grads = model.loss(features, CAPTIONS)
    assert list(grads) == list(model.params)

    def loss_with_the_same_dropout_masks(_):
        model.training_steps = 0
        return model.loss(features, CAPTIONS)[0]

    for name, value in model.params.items():
        assert grads[name].shape == value.shape and grads[name].dtype == np.float64
        if name.endswith("_b_k"):
            # a key bias shifts a whole row of scores: the softmax ignores it, so its
            # gradient is 0 up to round-off
            assert np.abs(grads[name]).max() < 1e-12
            continue
        # Richardson-refined differences (error ~1e-12); entries that are ~1e-6 by chance
        # are allowed their estimated round-off (grader/checks.py explains)
        numeric, noise = numeric_gradient_and_noise(loss_with_the_same_dropout_masks, value)
        expect_close(f"{name} (seed {seed}, keep {keep_prob})", grads[name], numeric, noise=noise)


def test_parameters_and_shapes():
    model = small_model(dtype=np.float32)
    p = model.params
    assert p["W_embed"].shape == (6, 8) and p["W_proj"].shape == (5, 8)
    assert p["layer1_self_W_q"].shape == (8, 8) and p["layer0_cross_b_o"].shape == (8,)
    assert p["layer0_ffn_W1"].shape == (8, 12) and p["layer0_ffn_W2"].shape == (12, 8)
    assert p["layer1_norm_ffn_gamma"].shape == (8,) and p["W_vocab"].shape == (8, 6)
    # per layer: 2 attentions x (4 E^2 + 4 E) + FFN (2 E F + F + E) + 3 norms x 2 E
    per_layer = 2 * (4 * 64 + 32) + (2 * 8 * 12 + 12 + 8) + 3 * 16
    assert sum(v.size for v in p.values()) == 6 * 8 + 5 * 8 + 8 + 2 * per_layer + 8 * 6 + 6
    assert all(v.dtype == np.float32 for v in p.values())
    loss, grads = model.loss(np.zeros((2, 5), np.float32), CAPTIONS)   # one feature vector per image
    assert np.ndim(loss) == 0 and all(g.dtype == np.float32 for g in grads.values())
    np.testing.assert_array_equal(small_model(seed=3).params["W_vocab"], small_model(seed=3).params["W_vocab"])


def test_words_see_only_earlier_words():
    model, features = perturbed(1, 1.0)
    words = CAPTIONS[:, :-1]
    scores, _, _ = model._forward(features, words)
    changed = words.copy()
    changed[:, 2] = 5
    scores_changed, _, _ = model._forward(features, changed)
    np.testing.assert_array_equal(scores[:, :2], scores_changed[:, :2])   # before the change
    assert not np.allclose(scores[:, 2:], scores_changed[:, 2:])


def test_null_targets_count_nothing():
    model, features = perturbed(2, 1.0)
    short = np.array([[1, 3, 2, 0, 0]])
    loss, _ = model.loss(features[:1], short)
    loss_cut, _ = model.loss(features[:1], short[:, :3])
    np.testing.assert_allclose(loss, loss_cut, rtol=1e-12)


def test_sample_conventions_and_attention():
    model, features = perturbed(3, 0.5)
    captions, weights = model.sample(features, max_length=4, return_attention=True)
    assert captions.shape == (2, 4) and captions.dtype == np.int32
    assert weights.shape == (2, 4, 2, 3)   # (N, words, heads, L)
    np.testing.assert_allclose(weights.sum(axis=-1), 1, rtol=1e-12)
    # greedy: word t is the argmax of the decoder on <START> and words 0..t-1 (no dropout)
    prefix = np.concatenate([np.full((2, 1), 1), captions[:, :3]], axis=1)
    scores, _, _ = model._forward(features, prefix)
    np.testing.assert_array_equal(scores.argmax(axis=-1), captions)
    np.testing.assert_array_equal(model.sample(features, 4), captions)   # no randomness
    assert model.sample(features, 0).shape == (2, 0)
    with pytest.raises(ValueError, match="max_length=7 is longer than the model's max_length=6"):
        model.sample(features, 7)


def test_dropout_masks_follow_the_training_counter():
    model, features = perturbed(4, 0.6)
    model.training_steps = 5
    first = model.loss(features, CAPTIONS)[0]
    assert model.training_steps == 6
    second = model.loss(features, CAPTIONS)[0]
    model.training_steps = 5
    assert model.loss(features, CAPTIONS)[0] == first != second
    no_dropout, _ = perturbed(4, 1.0)
    assert no_dropout.loss(features, CAPTIONS)[0] == no_dropout.loss(features, CAPTIONS)[0]


def test_without_a_seed_the_masks_come_from_numpys_global_state():
    model, features = perturbed(4, 0.6)
    model.seed = None      # as rnn's decoders: np.random.seed makes the masks reproducible
    np.random.seed(0)
    first = model.loss(features, CAPTIONS)[0]
    np.random.seed(0)
    assert model.loss(features, CAPTIONS)[0] == first
    np.random.seed(1)
    assert model.loss(features, CAPTIONS)[0] != first


def first_word_accuracy(model, X, y):
    return float(np.mean(model.sample(X, 1)[:, 0] == y[:, 1]))


def test_solver_learns_captions_and_resumes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    # the caption names the strongest of three feature directions: "<START> a|b|c <END>"
    X = rng.standard_normal((240, 3))
    y = np.zeros((240, 4), dtype=np.int64)
    y[:, 0], y[:, 1], y[:, 2] = 1, 3 + X.argmax(axis=1), 2
    data = {"X_train": X[:200], "y_train": y[:200], "X_val": X[200:], "y_val": y[200:]}
    kwargs = dict(update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=20,
                  verbose=False, seed=0, metric=first_word_accuracy)
    make = lambda: small_model(seed=1, keep_prob=0.9, dtype=np.float32, input_dim=3, max_length=4)
    straight = make()
    solver = Solver(straight, data, num_epochs=6, **kwargs)
    solver.train()
    assert solver.best_val_acc >= 0.9   # chance: 1/3
    assert solver.loss_history[-1] < solver.loss_history[0] / 3
    name = str(tmp_path / "run")
    Solver(make(), data, num_epochs=3, checkpoint_name=name, **kwargs).train()
    resumed = make()
    again = Solver(resumed, data, num_epochs=6, checkpoint_name=name, **kwargs)
    again.resume_latest()
    assert resumed.training_steps == again.iteration
    again.train()
    for key in straight.params:
        np.testing.assert_array_equal(resumed.params[key], straight.params[key])


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_heads=3), r"wordvec_dim=8 must be divisible by num_heads=3"),
    (dict(wordvec_dim=9, num_heads=3), r"wordvec_dim=9 must be even"),
    (dict(keep_prob=0), r"keep_prob is the dropout KEEP probability"),
    (dict(num_layers=0), r"num_layers must be a positive integer"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_model(**kwargs)


def test_bad_inputs():
    model = small_model()
    with pytest.raises(ValueError, match=r"features must have shape \(N, 5\) or \(N, L, 5\)"):
        model.loss(np.zeros((2, 4)), CAPTIONS)
    with pytest.raises(ValueError, match=r"captions must have shape \(N, T\) = \(2, T\)"):
        model.loss(np.zeros((2, 5)), CAPTIONS[:1])
    with pytest.raises(ValueError, match=r"captions of 8 tokens need 7 positions.*max_length=6"):
        model.loss(np.zeros((2, 5)), np.ones((2, 8), dtype=int))
    with pytest.raises(TypeError, match="features must hold real numbers"):
        model.sample(np.array([["a"] * 5]), 2)
