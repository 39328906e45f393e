"""Image captioning models: a vanilla RNN / LSTM decoder (CaptioningRNN, the cs231n
homework's model, drop-in contract of ../shared/API.md) and an LSTM decoder with additive
attention over a spatial feature map (AttentionCaptioningRNN, "Show, Attend and Tell").

Both models have the interface the Solver expects and share it with each other:

- model.params: dict of parameter arrays.
- model.loss(features, captions) -> (loss, grads), grads with exactly the keys of params.
- model.sample(features, max_length=30, return_attention=False) -> captions (N, max_length)
  of word indices, greedy decoding, column 0 the first generated word (never <START>),
  pre-filled with <NULL>; no early stop (decode with bleu.decode_captions, which cuts at
  <END>). AttentionCaptioningRNN can also return the attention weights of every word.

Captions are int arrays (N, T): <START> w_1 ... w_k <END> <NULL> ... <NULL>. At training
time step t reads captions[:, t] and is scored on predicting captions[:, t + 1]; positions
whose target is <NULL> do not count (the mask of temporal_softmax_loss). captions.py holds
these conventions, with the checks of the captions and lengths the models are given.

The layer functions are imported by name at module level and called as bare names, so
that course graders can monkeypatch e.g. `rnn.temporal_fc_forward` and see it used. The
LSTM over the whole sequence is kernels.py's fast version of rnn_layers.py's (equal to it:
tests/test_fast_lstm.py); everything else is rnn_layers.py's.
"""
import numpy as np

from captions import check_captions, check_max_length, special_tokens, start_words
from kernels import lstm_backward, lstm_forward
from layers import dropout_backward, dropout_forward, fc_backward, fc_forward
from randomness import dropout_rng, gaussian, train_dropout_param
from rnn_layers import (
    attention_step_backward,
    attention_step_forward,
    lstm_step_backward,
    lstm_step_forward,
    rnn_backward,
    rnn_forward,
    rnn_step_forward,
    temporal_fc_backward,
    temporal_fc_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)
from validation import check_keep_prob, real_array


# ----------------------------------------------------------------------------- RNN / LSTM

class CaptioningRNN:
    """
    Captions images with a vanilla RNN or an LSTM, from one feature vector per image:

        h0 = features @ W_proj + b_proj                          (N, H)
        x[t] = W_embed[captions_in[:, t]]                        (N, W)
        h[t] = rnn or lstm step of (x[t], h[t-1])  (LSTM: c0 = 0)
        scores[t] = h[t] @ W_vocab + b_vocab                     (N, V)
        loss = temporal softmax loss of scores against captions_out, <NULL> masked

    with V words, input features of dimension D, word vectors of dimension W and hidden
    state of dimension H. No regularization, unless keep_prob < 1: then training applies
    dropout to h[t] before the vocabulary affine (inference never does).

    Parameters (self.params), G = H for 'rnn' and 4H for 'lstm' (gates i, f, o, g):
    - W_embed (V, W): word vectors, randn / 100.
    - W_proj (D, H), b_proj (H,): features to initial hidden state, randn / sqrt(D), 0.
    - Wx (W, G), Wh (H, G), b (G,): the recurrent cell, randn / sqrt(W), randn / sqrt(H), 0.
    - W_vocab (H, V), b_vocab (V,): hidden state to word scores, randn / sqrt(H), 0.
    """

    checkpoint_state = ("training_steps",)   # saved and restored by Solver checkpoints

    def __init__(self, word_to_idx, input_dim=512, wordvec_dim=128, hidden_dim=128,
                 cell_type='rnn', dtype=np.float32, seed=None, keep_prob=1.0):
        """
        Inputs:
        - word_to_idx: dict mapping each of the V words to an integer in [0, V); must
          contain '<NULL>'; sample() also needs '<START>' ('<END>' is only a word here).
        - input_dim: dimension D of the image features.
        - wordvec_dim: dimension W of the word vectors.
        - hidden_dim: dimension H of the hidden state.
        - cell_type: 'rnn' or 'lstm'.
        - dtype: dtype of the parameters: float32 for training, float64 for gradient checks.
        - seed: None draws the initial weights from np.random's global state (the
          homework's behaviour and draw order); an int uses np.random.default_rng(seed).
        - keep_prob: dropout keep probability of the hidden states before the vocabulary
          affine, in training; 1.0 (the default, the homework's model) = no dropout.
        """
        if cell_type not in ('rnn', 'lstm'):
            raise ValueError(f"Invalid cell_type {cell_type!r}; expected 'rnn' or 'lstm'")
        self.cell_type = cell_type
        self.dtype = dtype
        self.seed, self.keep_prob = seed, check_keep_prob('keep_prob', keep_prob)
        self.training_steps = 0   # training calls so far: the hidden dropout's mask counter
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self._null, self._start, self._end = special_tokens(word_to_idx)

        V, D, W, H = len(word_to_idx), input_dim, wordvec_dim, hidden_dim
        G = {'rnn': 1, 'lstm': 4}[cell_type] * H
        rng = None if seed is None else np.random.default_rng(seed)
        # Insertion (= draw) order is the homework's; the values are drawn in float64 and
        # cast, so a seeded np.random gives the homework's weights in any dtype.
        params = {
            'W_embed': gaussian(rng, (V, W), 1 / 100),
            'W_proj': gaussian(rng, (D, H), 1 / np.sqrt(D)),
            'b_proj': np.zeros(H),
            'Wx': gaussian(rng, (W, G), 1 / np.sqrt(W)),
            'Wh': gaussian(rng, (H, G), 1 / np.sqrt(H)),
            'b': np.zeros(G),
            'W_vocab': gaussian(rng, (H, V), 1 / np.sqrt(H)),
            'b_vocab': np.zeros(V),
        }
        self.params = {name: value.astype(dtype) for name, value in params.items()}

    def loss(self, features, captions):
        """
        Training loss and gradients (backpropagation through time).

        Inputs:
        - features: image features of shape (N, D).
        - captions: integer captions of shape (N, T), T >= 2, each entry in [0, V).

        Returns a tuple of:
        - loss: NumPy scalar, the masked cross-entropy summed over time, averaged over N.
        - grads: dict with the keys of self.params, grads[k] of the shape of params[k].
        """
        p = self.params
        features = real_array("features", features)   # NumPy promotion, as the layers
        captions = check_captions(captions, features.shape[0])
        # step t reads word t and predicts word t + 1
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        mask = captions_out != self._null
        recurrent_forward, recurrent_backward = {
            'rnn': (rnn_forward, rnn_backward), 'lstm': (lstm_forward, lstm_backward),
        }[self.cell_type]

        h0, h0_cache = fc_forward(features, p['W_proj'], p['b_proj'])
        x, embed_cache = word_embedding_forward(captions_in, p['W_embed'])    # (N, T, W)
        # the recurrent core is time-major, the layers around it batch-major
        h, core_cache = recurrent_forward(x.transpose(1, 0, 2), h0, p['Wx'], p['Wh'], p['b'])
        hs, drop_cache = _drop_hidden(self, h.transpose(1, 0, 2))
        scores, scores_cache = temporal_fc_forward(hs, p['W_vocab'], p['b_vocab'])  # (N, T, V)
        loss, dscores = temporal_softmax_loss(scores, captions_out, mask)

        grads = {}
        dhs, grads['W_vocab'], grads['b_vocab'] = temporal_fc_backward(dscores, scores_cache)
        dh = _drop_hidden_backward(dhs, drop_cache)
        dx, dh0, grads['Wx'], grads['Wh'], grads['b'] = recurrent_backward(
            dh.transpose(1, 0, 2), core_cache)
        grads['W_embed'] = word_embedding_backward(dx.transpose(1, 0, 2), embed_cache)
        _, grads['W_proj'], grads['b_proj'] = fc_backward(dh0, h0_cache)
        return loss, grads

    def sample(self, features, max_length=30, return_attention=False):
        """
        Greedy decoding: start from <START>, and at each step feed back the word with the
        highest score. Runs all max_length steps (no early stop at <END>).

        Inputs:
        - features: image features of shape (N, D).
        - max_length: number of words T to generate.
        - return_attention: accepted for the interface of AttentionCaptioningRNN.sample;
          must be False (this model has no attention).

        Returns:
        - captions: int32 array of shape (N, max_length), pre-filled with <NULL>;
          captions[:, t] is the t-th generated word (column 0 is the first word after
          <START>, not <START> itself).
        """
        if return_attention:
            raise ValueError("CaptioningRNN has no attention weights to return; "
                             "use AttentionCaptioningRNN for return_attention=True")
        max_length = check_max_length(max_length)
        p = self.params
        features = real_array("features", features)
        N = features.shape[0]
        captions = np.full((N, max_length), self._null, dtype=np.int32)
        words = start_words(self._start, N, type(self).__name__)
        h, _ = fc_forward(features, p['W_proj'], p['b_proj'])
        c = np.zeros_like(h)
        for t in range(max_length):
            x, _ = word_embedding_forward(words, p['W_embed'])                  # (N, W)
            if self.cell_type == 'rnn':
                h, _ = rnn_step_forward(x, h, p['Wx'], p['Wh'], p['b'])
            else:
                h, c, _ = lstm_step_forward(x, h, c, p['Wx'], p['Wh'], p['b'])
            scores, _ = fc_forward(h, p['W_vocab'], p['b_vocab'])              # (N, V)
            words = captions[:, t] = scores.argmax(axis=1)
        return captions


# ----------------------------------------------------------------------------- attention

class AttentionCaptioningRNN:
    """
    Captions images with an LSTM that attends to a spatial grid of L feature vectors per
    image ("Show, Attend and Tell", Xu et al. 2015, with deterministic soft attention):

        a = features                                             (N, L, D)
        h0 = mean_i a[:, i] @ W_proj + b_proj                    (N, H)
        c0 = mean_i a[:, i] @ W_proj_c + b_proj_c                (N, H)
        for t = 0 .. T-1:
            alpha[t] = softmax_i(v_attn . tanh(a[:, i] @ W_attn_a + b_attn
                                               + h[t-1] @ W_attn_h))      (N, L)
            context[t] = sum_i alpha[t][:, i] a[:, i]                        (N, D)
            x[t] = [W_embed[captions_in[:, t]] ; context[t]]                 (N, W + D)
            h[t], c[t] = lstm step of (x[t], h[t-1], c[t-1])
            scores[t] = h[t] @ W_vocab + b_vocab                             (N, V)
        loss = temporal softmax loss of scores against captions_out, <NULL> masked

    The query of step t is the previous state h[t-1]: the model decides where to look
    before it reads the context. Scores depend on h[t] only (no "deep output" from the
    context); h[t] already sees context[t] through the LSTM input, and W_vocab keeps the
    shape (H, V) of CaptioningRNN. With keep_prob < 1, training applies dropout to h[t]
    before the vocabulary affine (the reference exercise's decoders; inference never does).

    Feature maps from a CNN, (N, D, H', W') channels first, become
    features = fmap.reshape(N, D, H' * W').transpose(0, 2, 1), position i = row * W' + col.

    Parameters (self.params), K the attention dimension:
    - W_embed (V, W): word vectors, randn / 100.
    - W_proj (D, H), b_proj (H,): mean feature to h0, randn / sqrt(D), 0.
    - W_proj_c (D, H), b_proj_c (H,): mean feature to c0, randn / sqrt(D), 0.
    - W_attn_h (H, K): query projection, randn / sqrt(H).
    - W_attn_a (D, K), b_attn (K,): feature projection, randn / sqrt(D), 0.
    - v_attn (K,): scoring vector, randn / sqrt(K).
    - Wx (W + D, 4H), Wh (H, 4H), b (4H,): the LSTM (gates i, f, o, g; rows of Wx: the word
      vector's W first, then the context's D), randn / sqrt(W + D), randn / sqrt(H), 0.
    - W_vocab (H, V), b_vocab (V,): hidden state to word scores, randn / sqrt(H), 0.
    """

    checkpoint_state = ("training_steps",)   # saved and restored by Solver checkpoints

    def __init__(self, word_to_idx, feature_dim=512, num_positions=None, wordvec_dim=128,
                 hidden_dim=128, attention_dim=128, dtype=np.float32, seed=None, keep_prob=1.0):
        """
        Inputs:
        - word_to_idx: dict mapping each of the V words to an integer in [0, V); must
          contain '<NULL>'; sample() also needs '<START>'.
        - feature_dim: dimension D of the feature vector at each position.
        - num_positions: number L of positions, or the grid shape (H', W') with
          L = H' * W' (kept as self.grid_shape, e.g. to draw attention maps), or None to
          accept any L. The parameters do not depend on L; it only checks the features.
        - wordvec_dim: dimension W of the word vectors.
        - hidden_dim: dimension H of the LSTM state.
        - attention_dim: dimension K of the attention's hidden layer.
        - dtype: dtype of the parameters: float32 for training, float64 for gradient checks.
        - seed: None draws the initial weights from np.random's global state; an int uses
          np.random.default_rng(seed).
        - keep_prob: dropout keep probability of the hidden states before the vocabulary
          affine, in training; 1.0 (the default) = no dropout.
        """
        self.dtype = dtype
        self.seed, self.keep_prob = seed, check_keep_prob('keep_prob', keep_prob)
        self.training_steps = 0   # training calls so far: the hidden dropout's mask counter
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self._null, self._start, self._end = special_tokens(word_to_idx)
        self.num_positions, self.grid_shape = _positions(num_positions)

        V, D, W, H, K = len(word_to_idx), feature_dim, wordvec_dim, hidden_dim, attention_dim
        rng = None if seed is None else np.random.default_rng(seed)
        params = {
            'W_embed': gaussian(rng, (V, W), 1 / 100),
            'W_proj': gaussian(rng, (D, H), 1 / np.sqrt(D)),
            'b_proj': np.zeros(H),
            'W_proj_c': gaussian(rng, (D, H), 1 / np.sqrt(D)),
            'b_proj_c': np.zeros(H),
            'W_attn_h': gaussian(rng, (H, K), 1 / np.sqrt(H)),
            'W_attn_a': gaussian(rng, (D, K), 1 / np.sqrt(D)),
            'b_attn': np.zeros(K),
            'v_attn': gaussian(rng, (K,), 1 / np.sqrt(K)),
            'Wx': gaussian(rng, (W + D, 4 * H), 1 / np.sqrt(W + D)),
            'Wh': gaussian(rng, (H, 4 * H), 1 / np.sqrt(H)),
            'b': np.zeros(4 * H),
            'W_vocab': gaussian(rng, (H, V), 1 / np.sqrt(H)),
            'b_vocab': np.zeros(V),
        }
        self.params = {name: value.astype(dtype) for name, value in params.items()}

    def _initial_state(self, features):
        """h0, c0 (N, H) from the mean feature, with the fc caches."""
        p = self.params
        mean = features.mean(axis=1)                                         # (N, D)
        h0, h0_cache = fc_forward(mean, p['W_proj'], p['b_proj'])
        c0, c0_cache = fc_forward(mean, p['W_proj_c'], p['b_proj_c'])
        return h0, c0, h0_cache, c0_cache

    def loss(self, features, captions):
        """
        Training loss and gradients (backpropagation through time, through the LSTM and
        the attention at every step).

        Inputs:
        - features: feature grids of shape (N, L, D).
        - captions: integer captions of shape (N, T), T >= 2, each entry in [0, V).

        Returns a tuple of:
        - loss: NumPy scalar, the masked cross-entropy summed over time, averaged over N.
        - grads: dict with the keys of self.params, grads[k] of the shape of params[k].
        """
        p = self.params
        features = _check_grid(features, self.params['W_attn_a'].shape[0],
                               self.num_positions)
        captions = check_captions(captions, features.shape[0])
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        mask = captions_out != self._null
        N, T = captions_in.shape
        W = p['W_embed'].shape[1]
        H = p['Wh'].shape[0]

        h, c, h0_cache, c0_cache = self._initial_state(features)
        x_words, embed_cache = word_embedding_forward(captions_in, p['W_embed'])  # (N, T, W)
        # The feature projection does not depend on the step: once per sequence, not T times.
        a_proj, proj_cache = temporal_fc_forward(features, p['W_attn_a'], p['b_attn'])
        hs = np.empty((N, T, H), dtype=np.result_type(h, p['Wh']))
        step_caches = []
        for t in range(T):
            (context, _), attn_cache = attention_step_forward(h, features, a_proj,
                                                              p['W_attn_h'], p['v_attn'])
            x = np.concatenate([x_words[:, t], context], axis=1)             # (N, W + D)
            h, c, lstm_cache = lstm_step_forward(x, h, c, p['Wx'], p['Wh'], p['b'])
            hs[:, t] = h
            step_caches.append((attn_cache, lstm_cache))
        dropped, drop_cache = _drop_hidden(self, hs)
        scores, scores_cache = temporal_fc_forward(dropped, p['W_vocab'], p['b_vocab'])
        loss, dscores = temporal_softmax_loss(scores, captions_out, mask)

        # sums over steps, in the promoted type (float64 features give float64 gradients)
        grads = {name: np.zeros(value.shape, np.result_type(value, features))
                 for name, value in p.items()}
        ddropped, grads['W_vocab'], grads['b_vocab'] = temporal_fc_backward(dscores, scores_cache)
        dhs = _drop_hidden_backward(ddropped, drop_cache)
        dx_words = np.empty_like(x_words, dtype=dhs.dtype)
        da_proj = np.zeros_like(a_proj, dtype=dhs.dtype)
        dh = np.zeros_like(dhs[:, 0])          # gradient reaching h[t] from steps after t
        dc = np.zeros_like(dh)
        for t in reversed(range(T)):
            attn_cache, lstm_cache = step_caches[t]
            dx, dh, dc, dWx, dWh, db = lstm_step_backward(dhs[:, t] + dh, dc, lstm_cache)
            grads['Wx'] += dWx
            grads['Wh'] += dWh
            grads['b'] += db
            dx_words[:, t] = dx[:, :W]
            # h[t-1] also reached the loss as step t's attention query; the gradient of the
            # features through the context (second output) is not needed: they are inputs.
            dh_query, _, da_proj_t, dW_attn_h, dv_attn = attention_step_backward(
                dx[:, W:], attn_cache)
            dh = dh + dh_query
            da_proj += da_proj_t
            grads['W_attn_h'] += dW_attn_h
            grads['v_attn'] += dv_attn
        # summed over steps, the projection's gradient needs one backward pass, not T
        _, grads['W_attn_a'], grads['b_attn'] = temporal_fc_backward(da_proj, proj_cache)
        grads['W_embed'] = word_embedding_backward(dx_words, embed_cache)
        _, grads['W_proj'], grads['b_proj'] = fc_backward(dh, h0_cache)
        _, grads['W_proj_c'], grads['b_proj_c'] = fc_backward(dc, c0_cache)
        return loss, grads

    def sample(self, features, max_length=30, return_attention=False):
        """
        Greedy decoding: start from <START>, and at each step feed back the word with the
        highest score. Runs all max_length steps (no early stop at <END>).

        Inputs:
        - features: feature grids of shape (N, L, D).
        - max_length: number of words T to generate.
        - return_attention: also return the attention weights.

        Returns:
        - captions: int32 array of shape (N, max_length), pre-filled with <NULL>;
          captions[:, t] is the t-th generated word (column 0 is the first word after
          <START>, not <START> itself).
        - alphas (only if return_attention): array of shape (N, max_length, L), alphas[:, t]
          the weights over the L positions of the context that went into word t (each row
          sums to 1; reshape to (N, max_length, H', W') with self.grid_shape for maps).
        """
        max_length = check_max_length(max_length)
        p = self.params
        features = _check_grid(features, self.params['W_attn_a'].shape[0],
                               self.num_positions)
        N, L, _ = features.shape
        captions = np.full((N, max_length), self._null, dtype=np.int32)
        words = start_words(self._start, N, type(self).__name__)
        h, c, _, _ = self._initial_state(features)
        alphas = np.zeros((N, max_length, L), dtype=h.dtype)
        a_proj, _ = temporal_fc_forward(features, p['W_attn_a'], p['b_attn'])
        for t in range(max_length):
            (context, alphas[:, t]), _ = attention_step_forward(h, features, a_proj,
                                                                p['W_attn_h'], p['v_attn'])
            x_word, _ = word_embedding_forward(words, p['W_embed'])              # (N, W)
            x = np.concatenate([x_word, context], axis=1)
            h, c, _ = lstm_step_forward(x, h, c, p['Wx'], p['Wh'], p['b'])
            scores, _ = fc_forward(h, p['W_vocab'], p['b_vocab'])               # (N, V)
            words = captions[:, t] = scores.argmax(axis=1)
        return (captions, alphas) if return_attention else captions


# ----------------------------------------------------------------------------- hidden dropout

def _drop_hidden(model, hs):
    """
    Dropout on the hidden states hs (N, T, H) before the vocabulary affine (the reference
    exercise's LSTM decoders), in training: (hs, cache), the identity at keep_prob = 1.
    Counts the call: training call k of a model draws its mask from
    np.random.default_rng([seed, k]) (np.random's global state if seed is None); the
    counter training_steps is in checkpoint_state, so a resumed Solver run draws the masks
    of an uninterrupted one.
    """
    step = model.training_steps
    model.training_steps += 1
    if model.keep_prob == 1.0:
        return hs, None
    return dropout_forward(hs, train_dropout_param(model.keep_prob,
                                                   dropout_rng(model.seed, step)))


def _drop_hidden_backward(dhs, cache):
    return dhs if cache is None else dropout_backward(dhs, cache)


# ----------------------------------------------------------------------------- checks

def _positions(num_positions):
    """(L or None, grid shape (H', W') or None) of AttentionCaptioningRNN's num_positions."""
    if num_positions is None or np.ndim(num_positions) == 0:
        return (None if num_positions is None else int(num_positions)), None
    grid_shape = tuple(int(n) for n in num_positions)
    if len(grid_shape) != 2:
        raise ValueError(f"num_positions must be L or a grid shape (H', W'), "
                         f"got {num_positions!r}")
    return grid_shape[0] * grid_shape[1], grid_shape


def _check_grid(features, D, L):
    """Feature grids (N, L, D) as a real array (any L if L is None); ValueError otherwise."""
    features = real_array("features", features)   # NumPy promotion, as the layers
    if features.ndim != 3 or features.shape[2] != D or (L is not None
                                                          and features.shape[1] != L):
        raise ValueError(f"features must have shape (N, L, D) = (N, {L or 'L'}, {D}), "
                         f"got shape {features.shape}")
    return features
