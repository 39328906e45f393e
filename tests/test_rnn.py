"""Tests of rnn.py: the homework's expected losses and initialization, numeric gradients of
all three decoders (float64, relative error < 1e-7 for every parameter), layer functions
called through rnn's module globals (graders monkeypatch them), sample() semantics and its
agreement with loss(), and a tiny overfit: five captions learned exactly by each decoder in
float32 through the Solver."""
import numpy as np
import pytest

import rnn
from gradient_check import eval_numerical_gradient, rel_error
from rnn import AttentionCaptioningRNN, CaptioningRNN
from solver import Solver

TOLERANCE = 1e-7
WORST = {}                    # worst relative error per (model, parameter), for reports
WORDS = ['<NULL>', '<START>', '<END>', 'a', 'two', 'three', 'seven', 'left', 'of', 'right',
         'above', 'below', 'the', 'and', 'digit']
WORD_TO_IDX = {w: i for i, w in enumerate(WORDS)}
NULL, START, END = 0, 1, 2
RNN_PARAMS = ['W_embed', 'W_proj', 'b_proj', 'Wx', 'Wh', 'b', 'W_vocab', 'b_vocab']
ATTENTION_PARAMS = ['W_embed', 'W_proj', 'b_proj', 'W_proj_c', 'b_proj_c', 'W_attn_h',
                    'W_attn_a', 'b_attn', 'v_attn', 'Wx', 'Wh', 'b', 'W_vocab', 'b_vocab']


def make_model(kind, rng, N=2, D=3, W=3, H=4, K=3, L=4, dtype=np.float64, seed=0,
               words=WORD_TO_IDX):
    """A tiny model of kind 'rnn', 'lstm' or 'attention' and matching random features."""
    if kind == 'attention':
        model = AttentionCaptioningRNN(words, feature_dim=D, num_positions=L, wordvec_dim=W,
                                       hidden_dim=H, attention_dim=K, dtype=dtype, seed=seed)
        features = rng.standard_normal((N, L, D))
    else:
        model = CaptioningRNN(words, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=kind,
                              dtype=dtype, seed=seed)
        features = rng.standard_normal((N, D))
    return model, features.astype(dtype)


def random_captions(rng, N, T, V):
    """<START> + random words, the first caption padded with <NULL> (masked targets)."""
    captions = rng.integers(3, V, size=(N, T))
    captions[:, 0] = START
    captions[0, -2:] = NULL
    return captions


# ----------------------------------------------------------------------------- homework values

@pytest.mark.parametrize("cell_type, feature_start, expected", [
    ('rnn', -1.5, 9.83235591003), ('lstm', -0.5, 9.82445935443)])
def test_homework_expected_loss(cell_type, feature_start, expected):
    # The cs231n notebooks' check: every parameter set to a linspace, a vocabulary with
    # <NULL> only (no <START>/<END>, and an index 3 >= V = 3 that is never used).
    N, D, W, H, T = 10, 20, 30, 40, 13
    word_to_idx = {'<NULL>': 0, 'cat': 2, 'dog': 3}
    V = len(word_to_idx)
    model = CaptioningRNN(word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H,
                          cell_type=cell_type, dtype=np.float64)
    for k, v in model.params.items():
        model.params[k] = np.linspace(-1.4, 1.3, num=v.size).reshape(*v.shape)
    features = np.linspace(feature_start, feature_start + 1.8 if cell_type == 'rnn' else 1.7,
                           num=N * D).reshape(N, D)
    captions = (np.arange(N * T) % V).reshape(N, T)
    loss, grads = model.loss(features, captions)
    assert isinstance(loss, np.floating) and np.ndim(loss) == 0
    assert abs(loss - expected) < 1e-10
    assert sorted(grads) == sorted(model.params)


@pytest.mark.parametrize("cell_type, G", [('rnn', 1), ('lstm', 4)])
def test_captioning_rnn_params_follow_the_homework(cell_type, G):
    V, D, W, H = len(WORDS), 7, 5, 6
    np.random.seed(231)
    model = CaptioningRNN(WORD_TO_IDX, input_dim=D, wordvec_dim=W, hidden_dim=H,
                          cell_type=cell_type)
    # the homework's draws, in its order, from the same global seed
    np.random.seed(231)
    expected = {'W_embed': np.random.randn(V, W) / 100,
                'W_proj': np.random.randn(D, H) / np.sqrt(D), 'b_proj': np.zeros(H),
                'Wx': np.random.randn(W, G * H) / np.sqrt(W),
                'Wh': np.random.randn(H, G * H) / np.sqrt(H), 'b': np.zeros(G * H),
                'W_vocab': np.random.randn(H, V) / np.sqrt(H), 'b_vocab': np.zeros(V)}
    assert list(model.params) == RNN_PARAMS
    for name, value in expected.items():
        assert model.params[name].dtype == np.float32          # the contract's default
        np.testing.assert_array_equal(model.params[name], value.astype(np.float32))


def test_attention_params_and_seed():
    V, D, W, H, K = len(WORDS), 7, 5, 6, 3
    model = AttentionCaptioningRNN(WORD_TO_IDX, feature_dim=D, num_positions=(2, 3),
                                   wordvec_dim=W, hidden_dim=H, attention_dim=K, seed=5)
    shapes = {'W_embed': (V, W), 'W_proj': (D, H), 'b_proj': (H,), 'W_proj_c': (D, H),
              'b_proj_c': (H,), 'W_attn_h': (H, K), 'W_attn_a': (D, K), 'b_attn': (K,),
              'v_attn': (K,), 'Wx': (W + D, 4 * H), 'Wh': (H, 4 * H), 'b': (4 * H,),
              'W_vocab': (H, V), 'b_vocab': (V,)}
    assert list(model.params) == ATTENTION_PARAMS
    assert {k: v.shape for k, v in model.params.items()} == shapes
    assert all(v.dtype == np.float32 for v in model.params.values())
    assert model.grid_shape == (2, 3) and model.num_positions == 6
    again = AttentionCaptioningRNN(WORD_TO_IDX, feature_dim=D, num_positions=6, wordvec_dim=W,
                                   hidden_dim=H, attention_dim=K, seed=5)
    assert again.grid_shape is None and again.num_positions == 6
    for name in shapes:                       # the seed, not np.random, decides the weights
        np.testing.assert_array_equal(model.params[name], again.params[name])


# ----------------------------------------------------------------------------- gradients

def numeric_gradient(f, x, h=1e-3):
    """
    Fourth-order centered difference (4 D(h) - D(2h)) / 3, D the usual centered difference.

    Why not eval_numerical_gradient(h=1e-5) alone: float64 round-off of the loss (~1e-15)
    divided by 2h leaves every entry of that estimate with an absolute error ~5e-11, and
    some gradient entries are themselves near 1e-6 (e.g. dW_attn_h is a difference:
    the softmax's score gradients sum to 0 over positions; LSTM forget-gate columns see
    small c). Their relative error then sits at 1e-5 whatever the backward pass does.
    This estimate has truncation error O(h^4) ~ 1e-12 and round-off ~ 1e-15 / h ~ 1e-12,
    so the unchanged threshold of 1e-7 holds entry by entry.
    """
    return (4 * eval_numerical_gradient(f, x, verbose=False, h=h)
            - eval_numerical_gradient(f, x, verbose=False, h=2 * h)) / 3


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ['rnn', 'lstm', 'attention'])
def test_numeric_gradients(kind, seed):
    rng = np.random.default_rng(seed)
    model, features = make_model(kind, rng)
    # Weights of order 1 instead of the initial ones (W_embed / 100 makes the gradients of
    # everything after the embedding tiny), 0.8 so the gates are not saturated.
    for name, value in model.params.items():
        model.params[name] = 0.8 * rng.standard_normal(value.shape)
    captions = random_captions(rng, N=2, T=5, V=len(WORDS))
    loss, grads = model.loss(features, captions)
    assert sorted(grads) == sorted(model.params)
    for name in model.params:
        assert grads[name].shape == model.params[name].shape
        # perturbs model.params[name] in place, as the homework's notebook does
        numeric = numeric_gradient(lambda _: model.loss(features, captions)[0],
                                   model.params[name])
        error = rel_error(numeric, grads[name])
        WORST[(kind, name)] = max(WORST.get((kind, name), 0.0), error)
        assert error < TOLERANCE, f"{kind} {name}: relative error {error:.1e}"


@pytest.mark.parametrize("kind", ['rnn', 'lstm', 'attention'])
def test_padding_counts_for_nothing(kind):
    # Steps whose target is <NULL> add nothing: a padded caption scores what it scores
    # alone and unpadded, and words read only at such steps get no embedding gradient.
    rng = np.random.default_rng(3)
    model, features = make_model(kind, rng, dtype=np.float64)
    captions = np.array([[START, 3, 4, END, NULL, NULL], [START, 5, 6, 7, 8, END]])
    loss, grads = model.loss(features, captions)
    alone = [model.loss(features[i:i + 1], captions[i:i + 1, :length])[0]
             for i, length in ((0, 4), (1, 6))]
    assert np.isclose(loss, (alone[0] + alone[1]) / 2, rtol=1e-13)
    read_at_counted_steps = {START, 3, 4, 5, 6, 7, 8}
    for word in range(len(WORDS)):
        assert np.any(grads['W_embed'][word] != 0) == (word in read_at_counted_steps), word


# ----------------------------------------------------------------------------- module globals

def counting(monkeypatch, name):
    """Replace rnn.<name> by a wrapper that counts its calls."""
    original = getattr(rnn, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)
    monkeypatch.setattr(rnn, name, wrapper)
    return calls


@pytest.mark.parametrize("cell_type", ['rnn', 'lstm'])
def test_captioning_rnn_loss_calls_layers_through_module_globals(monkeypatch, cell_type):
    rng = np.random.default_rng(0)
    model, features = make_model(cell_type, rng)
    captions = random_captions(rng, N=2, T=5, V=len(WORDS))
    core = 'rnn' if cell_type == 'rnn' else 'lstm'
    names = ['temporal_fc_forward', 'temporal_fc_backward', 'word_embedding_forward',
             'word_embedding_backward', f'{core}_forward', f'{core}_backward',
             'temporal_softmax_loss', 'fc_forward', 'fc_backward']
    calls = {name: counting(monkeypatch, name) for name in names}
    model.loss(features, captions)
    assert {name: len(c) for name, c in calls.items()} == {name: 1 for name in names}
    x, w, b = calls['temporal_fc_forward'][0]
    assert x.shape == (2, 4, 4) and w is model.params['W_vocab']   # batch-major (N, T, H)
    assert calls[f'{core}_forward'][0][0].shape == (4, 2, 3)         # time-major (T, N, W)


def test_a_patched_temporal_fc_forward_changes_the_loss(monkeypatch):
    # what a grader does: swap in its own function and expect the model to use it
    rng = np.random.default_rng(0)
    model, features = make_model('rnn', rng)
    captions = random_captions(rng, N=2, T=5, V=len(WORDS))
    original = rnn.temporal_fc_forward

    def zero_scores(x, w, b):
        out, cache = original(x, w, b)
        return np.zeros_like(out), cache
    monkeypatch.setattr(rnn, 'temporal_fc_forward', zero_scores)
    loss, _ = model.loss(features, captions)
    # uniform scores: log V per counted target, 2 + 4 targets over N = 2 captions
    assert np.isclose(loss, 6 * np.log(len(WORDS)) / 2)


def test_attention_model_calls_layers_through_module_globals(monkeypatch):
    rng = np.random.default_rng(0)
    model, features = make_model('attention', rng)
    captions = random_captions(rng, N=2, T=5, V=len(WORDS))
    names = ['temporal_fc_forward', 'attention_step_forward', 'attention_step_backward',
             'lstm_step_forward', 'lstm_step_backward', 'temporal_softmax_loss']
    calls = {name: counting(monkeypatch, name) for name in names}
    model.loss(features, captions)
    # scores once, the feature projection once (not once per step), T = 4 steps
    assert {name: len(c) for name, c in calls.items()} == {
        'temporal_fc_forward': 2, 'attention_step_forward': 4, 'attention_step_backward': 4,
        'lstm_step_forward': 4, 'lstm_step_backward': 4, 'temporal_softmax_loss': 1}


# ----------------------------------------------------------------------------- sample

@pytest.mark.parametrize("kind", ['rnn', 'lstm', 'attention'])
def test_sample_shape_dtype_and_first_column(kind):
    rng = np.random.default_rng(0)
    model, features = make_model(kind, rng, N=3, dtype=np.float32)
    captions = model.sample(features, max_length=6)
    assert captions.shape == (3, 6) and np.issubdtype(captions.dtype, np.integer)
    assert model.sample(features, max_length=0).shape == (3, 0)
    assert model.sample(features).shape == (3, 30)
    # a model whose scores always favour 'two' says 'two' from column 0 on: no <START>
    # in front, and no early stop
    model.params['b_vocab'][WORD_TO_IDX['two']] = 100
    assert np.all(model.sample(features, max_length=5) == WORD_TO_IDX['two'])
    # ... and one favouring <END> keeps generating after it (no early stop required)
    model.params['b_vocab'][END] = 1000
    assert np.all(model.sample(features, max_length=5) == END)


@pytest.mark.parametrize("kind", ['rnn', 'lstm', 'attention'])
def test_sample_agrees_with_loss(monkeypatch, kind):
    # Teacher-forcing the sampled words through loss() must give scores whose argmax is
    # the sampled word at every step: sample() and loss() compute the same network.
    rng = np.random.default_rng(1)
    model, features = make_model(kind, rng, N=4, H=6, dtype=np.float64)
    for name, value in model.params.items():
        model.params[name] = rng.standard_normal(value.shape)
    sampled = model.sample(features, max_length=5)
    captions = np.concatenate([np.full((4, 1), START), sampled], axis=1)
    seen = []
    original = rnn.temporal_softmax_loss

    def capture(x, y, mask):
        seen.append(x)
        return original(x, y, mask)
    monkeypatch.setattr(rnn, 'temporal_softmax_loss', capture)
    model.loss(features, captions)
    np.testing.assert_array_equal(seen[0].argmax(axis=2), sampled)


def test_attention_sample_returns_the_weights_of_each_word():
    rng = np.random.default_rng(2)
    model, features = make_model('attention', rng, N=3, L=6, dtype=np.float64)
    captions, alphas = model.sample(features, max_length=4, return_attention=True)
    np.testing.assert_array_equal(captions, model.sample(features, max_length=4))
    assert alphas.shape == (3, 4, 6)
    np.testing.assert_allclose(alphas.sum(axis=2), 1.0)
    # word 0's weights come from the query h0 = mean feature @ W_proj + b_proj
    p = model.params
    h0 = features.mean(axis=1) @ p['W_proj'] + p['b_proj']
    e = np.tanh(features @ p['W_attn_a'] + p['b_attn'] + (h0 @ p['W_attn_h'])[:, None]) \
        @ p['v_attn']
    np.testing.assert_allclose(alphas[:, 0], np.exp(e) / np.exp(e).sum(axis=1, keepdims=True))


def test_captioning_rnn_sample_has_no_attention():
    model, features = make_model('lstm', np.random.default_rng(0))
    assert model.sample(features, max_length=3, return_attention=False).shape == (2, 3)
    with pytest.raises(ValueError, match="attention"):
        model.sample(features, max_length=3, return_attention=True)


# ----------------------------------------------------------------------------- dtypes, inputs, errors

@pytest.mark.parametrize("kind", ['rnn', 'lstm', 'attention'])
def test_dtypes_follow_numpy_promotion_and_inputs_unchanged(kind):
    """float32 model and features: float32 throughout. float32 model with float64
    features: NumPy promotes, so the loss and every gradient are float64 (close to the
    all-float64 computation: only products of two float32 parameters, such as the word
    vectors times Wx, are rounded to float32), and so are the attention weights of sample."""
    rng = np.random.default_rng(0)
    model, features = make_model(kind, rng, dtype=np.float32)
    captions = random_captions(rng, N=2, T=5, V=len(WORDS))
    loss, grads = model.loss(features, captions)
    assert loss.dtype == np.float32 and np.ndim(loss) == 0
    assert all(grads[k].dtype == np.float32 for k in model.params)

    features = features.astype(np.float64)
    copies = features.copy(), captions.copy()
    loss, grads = model.loss(features, captions)
    assert loss.dtype == np.float64 and np.ndim(loss) == 0
    assert all(grads[k].dtype == np.float64 for k in model.params)
    np.testing.assert_array_equal(features, copies[0])
    np.testing.assert_array_equal(captions, copies[1])
    wide, _ = make_model(kind, rng, dtype=np.float64)
    wide.params = {k: v.astype(np.float64) for k, v in model.params.items()}
    wide_loss, wide_grads = wide.loss(features, captions)
    assert loss == pytest.approx(wide_loss, rel=1e-6)
    for k in model.params:
        np.testing.assert_allclose(grads[k], wide_grads[k], rtol=1e-4, atol=1e-7)
    if kind == 'attention':
        captions_out, alphas = model.sample(features, max_length=4, return_attention=True)
        assert alphas.dtype == np.float64
    else:
        captions_out = model.sample(features, max_length=4)
    np.testing.assert_array_equal(captions_out, wide.sample(features, max_length=4))
    assert captions_out.dtype == np.int32
    # integer features are numbers too (float64); strings are refused, naming them
    assert model.loss(np.ones(features.shape, dtype=np.int64), captions)[0].dtype == np.float64
    with pytest.raises(TypeError, match="features must hold real numbers"):
        model.loss(np.full(features.shape, 'x'), captions)


def test_errors():
    with pytest.raises(ValueError, match="<NULL>"):
        CaptioningRNN({'<START>': 0, 'a': 1})
    with pytest.raises(ValueError, match="cell_type"):
        CaptioningRNN(WORD_TO_IDX, cell_type='gru')
    model, features = make_model('rnn', np.random.default_rng(0))
    with pytest.raises(ValueError, match="captions"):
        model.loss(features, np.array([[START], [START]]))          # T = 1: no target
    with pytest.raises(ValueError, match="captions"):
        model.loss(features, np.ones((3, 4), dtype=int))            # N mismatch
    no_start = CaptioningRNN({'<NULL>': 0, 'a': 1}, input_dim=3, wordvec_dim=3, hidden_dim=4)
    with pytest.raises(ValueError, match="<START>"):
        no_start.sample(features)
    attention, grid = make_model('attention', np.random.default_rng(0), L=4)
    with pytest.raises(ValueError, match="features"):
        attention.loss(grid[:, :3], np.ones((2, 4), dtype=int))     # L = 3, expected 4
    with pytest.raises(ValueError, match="features"):
        attention.sample(grid.mean(axis=1))                          # (N, D), not (N, L, D)
    with pytest.raises(ValueError, match="max_length"):
        attention.sample(grid, max_length=-1)


# ----------------------------------------------------------------------------- overfit

OVERFIT_SENTENCES = ['a two left of a three', 'a two right of a three', 'a seven above the two',
                     'a three below a seven and a two', 'the digit two']


def overfit_data():
    """Five captions (N, T) sharing prefixes, so the features must decide the words."""
    T = 2 + max(len(s.split()) for s in OVERFIT_SENTENCES)
    captions = np.full((len(OVERFIT_SENTENCES), T), NULL, dtype=np.int64)
    for i, sentence in enumerate(OVERFIT_SENTENCES):
        tokens = ['<START>'] + sentence.split() + ['<END>']
        captions[i, :len(tokens)] = [WORD_TO_IDX[w] for w in tokens]
    return captions


def exact_match(model, features, captions):
    """Fraction of captions that sample() reproduces up to and including <END>."""
    sampled = model.sample(features, max_length=captions.shape[1] - 1)
    counted = captions[:, 1:] != NULL
    return float(np.mean(np.all((sampled == captions[:, 1:]) | ~counted, axis=1)))


@pytest.mark.parametrize("kind", ['rnn', 'lstm', 'attention'])
def test_tiny_model_learns_five_captions_exactly(kind):
    rng = np.random.default_rng(0)
    model, features = make_model(kind, rng, N=5, D=8, W=16, H=32, K=16, L=4,
                                 dtype=np.float32, seed=0)
    captions = overfit_data()
    solver = Solver(model, {'X_train': features, 'y_train': captions,
                            'X_val': features, 'y_val': captions},
                    update_rule='adam', optim_config={'learning_rate': 1e-2}, batch_size=5,
                    num_epochs=150, metric=exact_match, verbose=False, seed=0)
    solver.train()
    assert solver.best_val_acc == 1.0 and solver.val_acc_history[-1] == 1.0
    assert solver.loss_history[-1] < 0.05        # it keeps fitting after the first exact epoch
    sampled = model.sample(features, max_length=captions.shape[1] - 1)
    counted = captions[:, 1:] != NULL
    np.testing.assert_array_equal(np.where(counted, sampled, NULL), captions[:, 1:])


# ----------------------------------------------------------------------------- hidden dropout

@pytest.mark.parametrize("kind", ['lstm', 'attention'])
def test_hidden_dropout_gradients_masks_and_inference(kind):
    rng = np.random.default_rng(7)
    model, features = make_model(kind, rng)
    model.keep_prob = 0.6
    for name, value in model.params.items():
        model.params[name] = 0.8 * rng.standard_normal(value.shape)
    captions = random_captions(rng, N=2, T=5, V=len(WORDS))

    def loss_with_mask_0(_):
        model.training_steps = 0   # the same dropout mask in every evaluation
        return model.loss(features, captions)[0]

    model.training_steps = 0
    loss, grads = model.loss(features, captions)
    for name in model.params:
        error = rel_error(numeric_gradient(loss_with_mask_0, model.params[name]), grads[name])
        assert error < TOLERANCE, f"{kind} {name} with dropout: relative error {error:.1e}"
    # a new mask per training call, the same one again for the same counter
    model.training_steps = 0
    first, second = model.loss(features, captions)[0], model.loss(features, captions)[0]
    model.training_steps = 0
    assert model.loss(features, captions)[0] == first != second
    assert model.checkpoint_state == ("training_steps",)
    # inference never drops: sample is deterministic and equals the model without dropout
    plain, _ = make_model(kind, np.random.default_rng(7))
    plain.params = model.params
    np.testing.assert_array_equal(model.sample(features, 4), plain.sample(features, 4))


def test_hidden_dropout_is_off_by_default_and_checked():
    model, _ = make_model('lstm', np.random.default_rng(0))
    assert model.keep_prob == 1.0
    with pytest.raises(ValueError, match=r"keep_prob is the dropout KEEP probability"):
        CaptioningRNN(WORD_TO_IDX, input_dim=3, cell_type='lstm', keep_prob=1.5)
