"""A Transformer decoder that captions images, every gradient derived by hand.

CaptioningTransformer (API.md Part 3) has the interface of rnn.CaptioningRNN:
loss(features, captions) -> (loss, grads) with grads keyed like params, and
sample(features, max_length) -> greedy captions (N, max_length), column 0 the first
generated word, pre-filled with <NULL>. The Solver trains it like the RNNs.

The model (Vaswani et al. 2017, decoder only, post-norm as in the paper; E = wordvec_dim):

    memory = features @ W_proj + b_proj                     (N, L, E); features (N, D) count as L = 1
    x = dropout(W_embed[captions_in] + PE[:T])              (N, T, E), PE the sinusoidal encoding
    each of num_layers decoder layers:
        x = layernorm(x + dropout(self-attention(x, causal mask)))     words see earlier words only
        x = layernorm(x + dropout(attention(x, memory)))               words look at the image
        x = layernorm(x + dropout(W_2 relu(x W_1 + b_1) + b_2))        position-wise feed-forward
    scores = x @ W_vocab + b_vocab                          (N, T, V)
    loss = temporal softmax loss of scores against captions_out, <NULL> targets masked

No padding mask is needed: <NULL>s only follow a caption's <END>, and the causal mask
already keeps every real word from seeing the positions after it; the loss ignores the
positions whose target is <NULL>.

Dropout uses layers.dropout_forward with keep probability keep_prob (1.0: none). Its
masks for training call k come from np.random.default_rng([seed, k]) (np.random's global
state if seed is None); the counter training_steps is in checkpoint_state, so a resumed
Solver run draws the masks of an uninterrupted one. The caption conventions (tokens,
checks of captions and lengths) are those of captions.py, shared with rnn.py.
"""
import numpy as np

from attention_layers import PARAM_NAMES as ATTENTION_PARAMS
from attention_layers import (
    causal_mask,
    multi_head_attention_backward,
    multi_head_attention_forward,
    positional_encoding,
)
from captions import check_captions, check_max_length, special_tokens, start_words
from kernels import layernorm_backward, layernorm_forward
from layers import dropout_backward, dropout_forward, relu_backward, relu_forward
from randomness import dropout_rng, train_dropout_param
from rnn_layers import (
    temporal_fc_backward,
    temporal_fc_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)
from validation import check_keep_prob, check_positive_int, real_array

SUBLAYERS = ("self", "cross", "ffn")   # the three residual blocks of a decoder layer, in order
FFN_PARAMS = ("W1", "b1", "W2", "b2")  # the feed-forward block's parameters, in order


class CaptioningTransformer:
    """
    Parameters (self.params), E = wordvec_dim, F = ffn_dim, V words, D = input_dim;
    layer l (from 0) has the prefix 'layer{l}_':
    - W_embed (V, E): word vectors, randn / sqrt(E).
    - W_proj (D, E), b_proj (E,): image features to memory tokens, randn / sqrt(D), 0.
    - layer{l}_self_<W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o>: masked self-attention
      (attention_layers.multi_head_attention_forward's params), W randn / sqrt(E), b 0.
    - layer{l}_cross_<...>: attention from the words (queries) to the memory (keys, values).
    - layer{l}_ffn_W1 (E, F), _b1 (F,), _W2 (F, E), _b2 (E,): randn / sqrt(fan in), 0.
    - layer{l}_norm_<self|cross|ffn>_gamma, _beta (E,): the three layer norms, 1 and 0.
    - W_vocab (E, V), b_vocab (V,): randn / sqrt(E), 0.
    """

    checkpoint_state = ("training_steps",)   # saved and restored by Solver checkpoints

    def __init__(self, word_to_idx, input_dim, wordvec_dim, num_heads=4, num_layers=2,
                 max_length=50, ffn_dim=None, keep_prob=0.9, seed=0, dtype=np.float32):
        """
        Inputs:
        - word_to_idx: dict mapping each of the V words to an integer in [0, V); must
          contain '<NULL>'; sample() also needs '<START>'.
        - input_dim: dimension D of the image features: one vector (N, D) or a grid of L
          vectors (N, L, D) per image.
        - wordvec_dim: model width E, divisible by num_heads.
        - num_heads: attention heads per attention block.
        - num_layers: decoder layers.
        - max_length: longest sequence (positions of the positional encoding).
        - ffn_dim: width of the feed-forward blocks (default 4 * wordvec_dim).
        - keep_prob: dropout keep probability in training, in (0, 1]; 1.0 = no dropout.
        - seed: seed of the initial weights and of the dropout masks (None: masks from
          np.random's global state).
        - dtype: dtype of the parameters (float32 to train, float64 for gradient checks).
        """
        _check_sizes(input_dim, wordvec_dim, num_heads, num_layers, max_length)
        E = wordvec_dim
        F = 4 * E if ffn_dim is None else ffn_dim
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self._null, self._start, self._end = special_tokens(word_to_idx)
        self.num_heads, self.num_layers, self.max_length = num_heads, num_layers, max_length
        self.keep_prob, self.seed, self.dtype = check_keep_prob('keep_prob', keep_prob), seed, dtype
        self.training_steps = 0
        self.positions = positional_encoding(max_length, E, dtype)

        V, D = len(word_to_idx), input_dim
        rng = np.random.default_rng(seed)
        normal = lambda *shape: rng.standard_normal(shape) / np.sqrt(shape[0])   # / sqrt(fan in)
        params = {"W_embed": rng.standard_normal((V, E)) / np.sqrt(E),
                  "W_proj": normal(D, E), "b_proj": np.zeros(E)}
        for layer in range(num_layers):
            prefix = f"layer{layer}_"
            for block in ("self", "cross"):
                for name in ATTENTION_PARAMS:
                    params[f"{prefix}{block}_{name}"] = normal(E, E) if name[0] == "W" else np.zeros(E)
            params.update({f"{prefix}ffn_W1": normal(E, F), f"{prefix}ffn_b1": np.zeros(F),
                           f"{prefix}ffn_W2": normal(F, E), f"{prefix}ffn_b2": np.zeros(E)})
            for block in SUBLAYERS:
                params[f"{prefix}norm_{block}_gamma"] = np.ones(E)
                params[f"{prefix}norm_{block}_beta"] = np.zeros(E)
        params.update({"W_vocab": normal(E, V), "b_vocab": np.zeros(V)})
        self.params = {name: value.astype(dtype) for name, value in params.items()}

    def loss(self, features, captions):
        """
        Training loss and gradients (dropout active).

        Inputs:
        - features: image features (N, D) or (N, L, D).
        - captions: integer captions (N, T + 1), 2 <= T + 1 <= max_length + 1.

        Returns a tuple of:
        - loss: NumPy scalar, the masked cross-entropy summed over time, averaged over N.
        - grads: dict with the keys of self.params.
        """
        features = _check_features(features, self.params["W_proj"].shape[0])
        captions = check_captions(captions, features.shape[0])
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        rng = dropout_rng(self.seed, self.training_steps)
        self.training_steps += 1
        scores, caches, _ = self._forward(features, captions_in, train=True, rng=rng)
        loss, dscores = temporal_softmax_loss(scores, captions_out, captions_out != self._null)
        return loss, self._backward(dscores, caches)

    def sample(self, features, max_length=30, return_attention=False):
        """
        Greedy decoding without dropout: step t runs the decoder on <START> and the t
        words so far, and appends the best-scoring word at the last position.

        Inputs:
        - features: image features (N, D) or (N, L, D).
        - max_length: number of words to generate, at most the model's max_length.
        - return_attention: also return the last layer's cross-attention weights.

        Returns:
        - captions: int32 array (N, max_length), pre-filled with <NULL>; column 0 is the
          first generated word.
        - weights (only if return_attention): array (N, max_length, num_heads, L),
          weights[:, t, h] head h's attention over the L feature positions at the step
          that generated word t (each row sums to 1).
        """
        max_length = check_max_length(max_length)
        if max_length > self.max_length:
            raise ValueError(f"max_length={max_length} is longer than the model's "
                             f"max_length={self.max_length}")
        features = _check_features(features, self.params["W_proj"].shape[0])
        N, L, _ = features.shape
        captions = np.full((N, max_length), self._null, dtype=np.int32)
        words = start_words(self._start, N, type(self).__name__)[:, None]
        weights = np.zeros((N, max_length, self.num_heads, L))
        for t in range(max_length):
            scores, _, cross = self._forward(features, words)
            captions[:, t] = scores[:, -1].argmax(axis=1)
            weights[:, t] = cross[-1][:, :, -1]
            words = np.concatenate([words, captions[:, t:t + 1]], axis=1)
        return (captions, weights.astype(scores.dtype)) if return_attention else captions

    # ------------------------------------------------------------------ the decoder

    def _forward(self, features, words, train=False, rng=None):
        """
        The decoder on word indices (N, T): scores (N, T, V), caches, and each layer's
        cross-attention weights (N, heads, T, L). train: apply dropout, each mask seeded by
        the next draw of rng (np.random's global state if rng is None).
        """
        p = self.params
        T = words.shape[1]
        if T > self.max_length:
            raise ValueError(f"captions of {T + 1} tokens need {T} positions, but the model "
                             f"was built with max_length={self.max_length}")
        memory, memory_cache = temporal_fc_forward(features, p["W_proj"], p["b_proj"])
        embedded, embed_cache = word_embedding_forward(words, p["W_embed"])
        x, input_drop = self._dropout(embedded + self.positions[:T], train, rng)
        mask = causal_mask(T)
        layer_caches, cross_weights = [], []
        for layer in range(self.num_layers):
            prefix = f"layer{layer}_"
            blocks = []
            for block in SUBLAYERS:
                if block == "ffn":
                    out, sub_cache = _feed_forward(x, *(p[f"{prefix}ffn_{n}"] for n in FFN_PARAMS))
                else:
                    source = x if block == "self" else memory
                    out, sub_cache = multi_head_attention_forward(
                        x, source, source, self._attention_params(layer, block), self.num_heads,
                        mask if block == "self" else None)
                    if block == "cross":
                        cross_weights.append(sub_cache[-1][3])
                out, drop_cache = self._dropout(out, train, rng)
                x, norm_cache = _layernorm_3d(x + out, p[f"{prefix}norm_{block}_gamma"],
                                              p[f"{prefix}norm_{block}_beta"])
                blocks.append((sub_cache, drop_cache, norm_cache))
            layer_caches.append(blocks)
        scores, scores_cache = temporal_fc_forward(x, p["W_vocab"], p["b_vocab"])
        caches = (memory_cache, embed_cache, input_drop, layer_caches, scores_cache)
        return scores, caches, cross_weights

    def _backward(self, dscores, caches):
        """Gradients of every parameter from dscores (N, T, V)."""
        memory_cache, embed_cache, input_drop, layer_caches, scores_cache = caches
        grads = {}
        dx, grads["W_vocab"], grads["b_vocab"] = temporal_fc_backward(dscores, scores_cache)
        dmemory = 0
        for layer in reversed(range(self.num_layers)):
            prefix = f"layer{layer}_"
            for block, (sub_cache, drop_cache, norm_cache) in zip(
                    reversed(SUBLAYERS), reversed(layer_caches[layer])):
                # x_out = layernorm(x_in + sublayer(x_in)): the residual passes dsum straight on
                dsum, grads[f"{prefix}norm_{block}_gamma"], grads[f"{prefix}norm_{block}_beta"] = \
                    _layernorm_3d_backward(dx, norm_cache)
                dout = self._dropout_backward(dsum, drop_cache)
                if block == "ffn":
                    dinput, *ffn_grads = _feed_forward_backward(dout, sub_cache)
                    grads.update({f"{prefix}ffn_{n}": g for n, g in zip(FFN_PARAMS, ffn_grads)})
                else:
                    dquery, dkey, dvalue, attention_grads = multi_head_attention_backward(dout, sub_cache)
                    grads.update({f"{prefix}{block}_{name}": g for name, g in attention_grads.items()})
                    if block == "self":   # query, key and value are all x
                        dinput = dquery + dkey + dvalue
                    else:                 # key and value are the memory
                        dinput = dquery
                        dmemory = dmemory + dkey + dvalue
                dx = dsum + dinput
        dembedded = self._dropout_backward(dx, input_drop)
        grads["W_embed"] = word_embedding_backward(dembedded, embed_cache)
        _, grads["W_proj"], grads["b_proj"] = temporal_fc_backward(dmemory, memory_cache)
        return {name: grads[name] for name in self.params}

    def _attention_params(self, layer, block):
        prefix = f"layer{layer}_{block}_"
        return {name: self.params[prefix + name] for name in ATTENTION_PARAMS}

    def _dropout(self, x, train, rng):
        """(out, cache) of dropout in training, the identity otherwise."""
        if not train or self.keep_prob == 1.0:
            return x, None
        return dropout_forward(x, train_dropout_param(self.keep_prob, rng))

    @staticmethod
    def _dropout_backward(dout, cache):
        return dout if cache is None else dropout_backward(dout, cache)


# ----------------------------------------------------------------------------- blocks

def _layernorm_3d(x, gamma, beta):
    """layernorm_forward (kernels.py's fast version of layers.py's) over the last axis of (N, T, E)."""
    out, cache = layernorm_forward(x.reshape(-1, x.shape[-1]), gamma, beta, {})
    return out.reshape(x.shape), cache


def _layernorm_3d_backward(dout, cache):
    dx, dgamma, dbeta = layernorm_backward(dout.reshape(-1, dout.shape[-1]), cache)
    return dx.reshape(dout.shape), dgamma, dbeta


def _feed_forward(x, W1, b1, W2, b2):
    """The position-wise feed-forward block W2 relu(x W1 + b1) + b2 on (N, T, E)."""
    hidden, fc1_cache = temporal_fc_forward(x, W1, b1)
    activated, relu_cache = relu_forward(hidden)
    out, fc2_cache = temporal_fc_forward(activated, W2, b2)
    return out, (fc1_cache, relu_cache, fc2_cache)


def _feed_forward_backward(dout, cache):
    """dx, dW1, db1, dW2, db2 of the feed-forward block."""
    fc1_cache, relu_cache, fc2_cache = cache
    dactivated, dW2, db2 = temporal_fc_backward(dout, fc2_cache)
    dx, dW1, db1 = temporal_fc_backward(relu_backward(dactivated, relu_cache), fc1_cache)
    return dx, dW1, db1, dW2, db2


# ----------------------------------------------------------------------------- checks

def _check_sizes(input_dim, wordvec_dim, num_heads, num_layers, max_length):
    """The sizes of a CaptioningTransformer (ValueError naming the argument otherwise)."""
    for name, value in (("input_dim", input_dim), ("wordvec_dim", wordvec_dim),
                        ("num_heads", num_heads), ("num_layers", num_layers),
                        ("max_length", max_length)):
        check_positive_int(name, value)
    if wordvec_dim % num_heads:
        raise ValueError(f"wordvec_dim={wordvec_dim} must be divisible by num_heads={num_heads}")
    if wordvec_dim % 2:
        raise ValueError(f"wordvec_dim={wordvec_dim} must be even (the positional encoding's "
                         f"sin and cos columns come in pairs)")


def _check_features(features, D):
    """Features (N, D) or (N, L, D) as a real array (N, L, D), one vector counting as L = 1."""
    features = real_array("features", features)
    if features.ndim == 2:
        features = features[:, None, :]
    if features.ndim != 3 or features.shape[2] != D:
        raise ValueError(f"features must have shape (N, {D}) or (N, L, {D}), got shape "
                         f"{features.shape}")
    return features
