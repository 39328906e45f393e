"""Scaled dot-product and multi-head attention with hand-derived backward passes.

Shapes follow Part 3 of docs/API.md: queries q (..., T, d) attend over keys k (..., S, d)
and values v (..., S, dv); the leading dimensions (batch, heads) are shared by q, k and v,
and only the mask broadcasts. A mask is a bool array, True where a query may attend to a
key. Multi-head attention takes batch-major sequences (N, T, E).

Conventions as in layers.py: every forward returns (out, cache), every backward takes
(dout, cache); inputs are never modified; float32 in gives float32 out; a wrong shape
raises ValueError naming the argument. The additive (Bahdanau) attention of the
captioning model is with the recurrent layers. Like them, this file needs only NumPy and
the argument checks shared by the layer files (the validation module, NumPy only too), so
that with that module it can be dropped next to any course's files.
"""
import math

import numpy as np

from validation import check_positive_int, real_array, real_dout


def causal_mask(T):
    """
    The mask of a decoder's self-attention: position t may attend to positions 0..t only,
    so no word sees the words after it.

    Returns a bool array of shape (T, T), True on and below the diagonal.
    """
    T = check_positive_int("T", T)
    return np.tril(np.ones((T, T), dtype=bool))


def positional_encoding(T, E, dtype=np.float32):
    """
    The sinusoidal position encoding of "Attention is all you need" (Vaswani et al. 2017):

        PE[t, 2i]     = sin(t / 10000^(2i / E)),
        PE[t, 2i + 1] = cos(t / 10000^(2i / E)),

    one frequency per pair of columns, from 1 down to 1/10000, so that PE[t + k] is a
    fixed rotation of PE[t] for every k (relative positions are linear in the encoding).

    Inputs:
    - T: number of positions (>= 0).
    - E: encoding width, even.
    - dtype: dtype of the result.

    Returns:
    - PE: array of shape (T, E).
    """
    _check_encoding_size(T, E)
    t = np.arange(T)[:, None]
    frequencies = 10000.0 ** (-np.arange(0, E, 2) / E)
    PE = np.empty((T, E))
    PE[:, 0::2] = np.sin(t * frequencies)
    PE[:, 1::2] = np.cos(t * frequencies)
    return PE.astype(dtype)


# ----------------------------------------------------------------------------- attention

def attention_weights(q, k, mask=None):
    """
    Attention probabilities: for each query, a softmax over the keys of their scaled
    dot products,

        P[..., t, s] = exp(z[t, s]) / sum_s' exp(z[t, s']),   z = q k^T / sqrt(d),

    where masked entries (mask False) get probability exactly 0. Stable for large scores:
    the row maximum is subtracted before exp, and masked scores are -inf (exp gives 0).

    Inputs:
    - q: queries of shape (..., T, d).
    - k: keys of shape (..., S, d), the same leading dimensions as q.
    - mask: None, or a bool array broadcastable to (..., T, S), True = may attend. Every
      query must be allowed at least one key.

    Returns:
    - P: array of shape (..., T, S); each row sums to 1.
    """
    q, k, mask = _checked_scores_arguments(q, k, mask)
    scores = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    if scores.size == 0:
        return scores
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def scaled_dot_product_attention_forward(q, k, v, mask=None):
    """
    Scaled dot-product attention: each query's output is the average of the values,
    weighted by its attention probabilities,

        out = P v,   P = attention_weights(q, k, mask).

    Inputs:
    - q: queries of shape (..., T, d).
    - k: keys of shape (..., S, d).
    - v: values of shape (..., S, dv).
    - mask: None, or bool broadcastable to (..., T, S), True = may attend.

    Returns a tuple of:
    - out: output of shape (..., T, dv).
    - cache: (q, k, v, P).
    """
    q, k, v = _checked_qkv(q, k, v)
    P = attention_weights(q, k, mask)   # checks the mask
    return P @ v, (q, k, v, P)


def scaled_dot_product_attention_backward(dout, cache):
    """
    Backward pass of scaled dot-product attention. With z = q k^T / sqrt(d), P = softmax(z)
    over the keys and out = P v:

        dv = P^T dout,   dP = dout v^T,
        dz[t, s] = P[t, s] (dP[t, s] - sum_s' P[t, s'] dP[t, s'])   (softmax Jacobian),
        dq = dz k / sqrt(d),   dk = dz^T q / sqrt(d).

    Masked entries have P = 0, so they get dz = 0 and pass no gradient.

    Derivation: docs/derivations.md#scaled-dot-product-attention

    Inputs:
    - dout: upstream gradient of shape (..., T, dv).
    - cache: (q, k, v, P) from scaled_dot_product_attention_forward.

    Returns a tuple of:
    - dq: gradient of shape (..., T, d).
    - dk: gradient of shape (..., S, d).
    - dv: gradient of shape (..., S, dv).
    """
    q, k, v, P = cache
    dout = real_dout(dout, P.shape[:-1] + v.shape[-1:])
    dv = P.swapaxes(-1, -2) @ dout
    dP = dout @ v.swapaxes(-1, -2)
    dz = P * (dP - (P * dP).sum(axis=-1, keepdims=True)) / math.sqrt(q.shape[-1])
    return dz @ k, dz.swapaxes(-1, -2) @ q, dv


# ----------------------------------------------------------------------------- multi-head

PARAM_NAMES = ("W_q", "b_q", "W_k", "b_k", "W_v", "b_v", "W_o", "b_o")


def _affine(x, W, b):
    """x (N, L, E) @ W + b as one (N*L, E) matrix product (a stack of N small ones is slower)."""
    return (x.reshape(-1, x.shape[-1]) @ W + b).reshape(*x.shape[:-1], W.shape[1])


def _affine_backward(x, W, dy):
    """(dx, dW, db) of y = _affine(x, W, b) for the upstream gradient dy (N, L, M)."""
    rows = dy.reshape(-1, W.shape[1])
    return (rows @ W.T).reshape(x.shape), x.reshape(-1, x.shape[-1]).T @ rows, rows.sum(axis=0)


def _split_heads(x, num_heads):
    """(N, L, E) -> (N, num_heads, L, E / num_heads): head h takes columns h*d .. (h+1)*d."""
    N, L, E = x.shape
    return x.reshape(N, L, num_heads, E // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(x):
    """(N, num_heads, L, d) -> (N, L, num_heads * d): the heads' columns side by side."""
    N, H, L, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(N, L, H * d)


def multi_head_attention_forward(query, key, value, params, num_heads, mask=None):
    """
    Multi-head attention (Vaswani et al. 2017). The inputs are projected,

        Q = query W_q + b_q,   K = key W_k + b_k,   V = value W_v + b_v,

    and split along E into num_heads heads of d = E / num_heads columns (head h uses
    columns h*d .. (h+1)*d). Each head attends on its own,

        head_h = softmax(Q_h K_h^T / sqrt(d)) V_h   (scaled_dot_product_attention_forward),

    and the heads, concatenated in order, are mixed by the output projection:

        out = [head_1, ..., head_H] W_o + b_o.

    With zero biases, head h's probabilities are softmax(query A_h key^T) with
    A_h = W_q^h (W_k^h)^T / sqrt(d), a matrix of rank <= d.
    Self-attention passes the same array as query, key and value.

    Inputs:
    - query: array of shape (N, T, E).
    - key, value: arrays of shape (N, S, E).
    - params: dict with W_q, W_k, W_v, W_o of shape (E, E) and b_q, b_k, b_v, b_o (E,).
    - num_heads: number of heads, dividing E.
    - mask: None, or bool broadcastable to (N, num_heads, T, S), e.g. causal_mask(T) of
      shape (T, T), or (N, 1, T, S) for per-sample padding; True = may attend.

    Returns a tuple of:
    - out: output of shape (N, T, E).
    - cache: for multi_head_attention_backward.
    """
    # attention_demo.py shows the rank <= d of A_h (see the docstring) on trained weights.
    query, key, value, params = _checked_multi_head(query, key, value, params, num_heads)
    Q = _split_heads(_affine(query, params["W_q"], params["b_q"]), num_heads)
    K = _split_heads(_affine(key, params["W_k"], params["b_k"]), num_heads)
    V = _split_heads(_affine(value, params["W_v"], params["b_v"]), num_heads)
    heads, attention_cache = scaled_dot_product_attention_forward(Q, K, V, mask)
    concat = _merge_heads(heads)
    out = _affine(concat, params["W_o"], params["b_o"])
    return out, (query, key, value, params, num_heads, concat, attention_cache)


def multi_head_attention_backward(dout, cache):
    """
    Backward pass of multi-head attention: the forward's steps in reverse. Each affine
    step y = x W + b gives dx = dy W^T, dW = sum over (n, t) of x^T dy, db = sum dy; the
    split and merge of the heads are reshapes, undone on the gradients; the heads go
    through scaled_dot_product_attention_backward.

    Derivation: docs/derivations.md#multi-head-attention

    Inputs:
    - dout: upstream gradient of shape (N, T, E).
    - cache: from multi_head_attention_forward.

    Returns a tuple of:
    - dquery: gradient of shape (N, T, E).
    - dkey, dvalue: gradients of shape (N, S, E). (For self-attention the input's
      gradient is dquery + dkey + dvalue.)
    - grads: dict of the parameters' gradients, with the keys of params. grads['b_k']
      is 0 up to round-off: adding b_k to every key adds the same q . b_k to a whole row
      of scores, which the softmax ignores.
    """
    query, key, value, params, num_heads, concat, attention_cache = cache
    dout = real_dout(dout, query.shape)
    grads = {}
    dconcat, grads["W_o"], grads["b_o"] = _affine_backward(concat, params["W_o"], dout)
    dQ, dK, dV = scaled_dot_product_attention_backward(_split_heads(dconcat, num_heads),
                                                       attention_cache)
    dquery, grads["W_q"], grads["b_q"] = _affine_backward(query, params["W_q"], _merge_heads(dQ))
    dkey, grads["W_k"], grads["b_k"] = _affine_backward(key, params["W_k"], _merge_heads(dK))
    dvalue, grads["W_v"], grads["b_v"] = _affine_backward(value, params["W_v"], _merge_heads(dV))
    return dquery, dkey, dvalue, {name: grads[name] for name in PARAM_NAMES}


# ----------------------------------------------------------------------------- checks
# The argument checks of the layers above, one call per layer. The rules shared with the
# other layer files (real_array, check_dout, check_positive_int) live in the validation
# module.


def _check_encoding_size(T, E):
    for name, value in (("T", T), ("E", E)):
        if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0):
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if E % 2:
        raise ValueError(f"E must be even (sin and cos columns come in pairs), got E={E}")


def _checked_scores_arguments(q, k, mask):
    """q and k as real arrays of matching shapes, mask as a bool array (or None) that
    broadcasts to their scores' shape (..., T, S) and lets every query attend somewhere."""
    q, k = _checked_qkv(q, k)
    return q, k, _check_mask(mask, q.shape[:-1] + k.shape[-2:-1])


def _checked_qkv(q, k, v=None):
    q, k = real_array("q", q), real_array("k", k)
    arrays = {"q": q, "k": k} if v is None else {"q": q, "k": k, "v": real_array("v", v)}
    for name, array in arrays.items():
        if array.ndim < 2:
            raise ValueError(f"{name} must be at least 2-D (..., length, features), got shape "
                             f"{array.shape}")
    if k.shape[:-2] != q.shape[:-2] or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"k has shape {k.shape}, expected (..., S, {q.shape[-1]}) with the "
                         f"leading dimensions {q.shape[:-2]} of q {q.shape}")
    if v is not None:
        v = arrays["v"]
        if v.shape[:-1] != k.shape[:-1]:
            raise ValueError(f"v has shape {v.shape}, expected {k.shape[:-1] + ('dv',)}: the "
                             f"leading dimensions and the S={k.shape[-2]} keys of k {k.shape}")
    return tuple(arrays.values())


def _check_mask(mask, scores_shape):
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"mask must be a bool array (True = may attend), got dtype {mask.dtype}")
    try:
        shape = np.broadcast_shapes(mask.shape, scores_shape)
    except ValueError:
        shape = None
    if shape != tuple(scores_shape):
        raise ValueError(f"mask has shape {mask.shape}, which does not broadcast to the "
                         f"attention scores' shape {tuple(scores_shape)} (..., T, S)")
    if mask.size and not np.broadcast_to(mask, scores_shape).any(axis=-1).all():
        row = np.argwhere(~np.broadcast_to(mask, scores_shape).any(axis=-1))[0].tolist()
        raise ValueError(f"mask lets query {row} attend to no key (a row of all False): its "
                         f"attention weights would be 0 / 0")
    return mask


def _checked_multi_head(query, key, value, params, num_heads):
    query, key, value = real_array("query", query), real_array("key", key), real_array("value", value)
    for name, array in (("query", query), ("key", key), ("value", value)):
        if array.ndim != 3:
            raise ValueError(f"{name} must be 3-D (N, length, E), got shape {array.shape}")
    N, T, E = query.shape
    if key.shape[0] != N or key.shape[2] != E:
        raise ValueError(f"key has shape {key.shape}, expected ({N}, S, {E}) to match query "
                         f"{query.shape}")
    if value.shape != key.shape:
        raise ValueError(f"value has shape {value.shape}, expected key's shape {key.shape}")
    if not (isinstance(num_heads, (int, np.integer)) and not isinstance(num_heads, bool)
            and num_heads >= 1 and E % num_heads == 0):
        raise ValueError(f"num_heads must be a positive integer dividing E={E}, got "
                         f"{num_heads!r}")
    if not isinstance(params, dict) or set(PARAM_NAMES) - set(params):
        missing = sorted(set(PARAM_NAMES) - set(params)) if isinstance(params, dict) else PARAM_NAMES
        raise ValueError(f"params must be a dict with keys {', '.join(PARAM_NAMES)}; missing "
                         f"{', '.join(missing)}")
    checked = {}
    for name in PARAM_NAMES:
        array = real_array(f"params['{name}']", params[name])
        expected = (E, E) if name.startswith("W") else (E,)
        if array.shape != expected:
            raise ValueError(f"params['{name}'] has shape {array.shape}, expected {expected} "
                             f"for E={E}")
        checked[name] = array
    return query, key, value, checked
