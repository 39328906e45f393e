"""Recurrent layers with hand-derived backward passes: vanilla RNN, LSTM, word embedding,
temporal affine layer, masked temporal softmax loss, and additive (Bahdanau) attention.

Layout (the cs231n homework's): the recurrent core is TIME-MAJOR, x (T, N, D) and
h (T, N, H); word embeddings, the temporal affine layer and the loss are BATCH-MAJOR,
(N, T, ...). A captioning model therefore transposes between the two (x.transpose(1, 0, 2)).

Every forward returns (out, cache) and every backward takes (dout, cache), where dout is the
gradient of the loss with respect to out. Two take more: lstm_step_backward(dnext_h,
dnext_c, cache) gets the gradients of both outputs, and the attention backward passes,
(dcontext, cache, dalpha=None), an optional gradient of the attention weights. Inputs are
never modified. Arrays may be nested lists; floating inputs keep NumPy's type promotion
(float32 in gives float32 out), integer and bool inputs are treated as float64, other
dtypes raise TypeError naming the argument. An empty batch (N = 0) works forward and
backward (the loss of an empty batch is 0). A wrong shape raises ValueError naming the
argument and both shapes; a word index or label out of range raises ValueError naming
the argument.

Part 1 of docs/API.md (rnn_step_*, rnn_*, word_embedding_*, temporal_fc_*,
temporal_softmax_loss) is a drop-in contract for the cs231n-style homework: names, argument
order, shapes, cache tuples and return values are fixed. The rest (lstm_*, attention_*) is
ours. This file needs only NumPy and the argument checks shared by the layer files (the
validation module, NumPy only too), so with that module it can be dropped next to any
layers.py.

Notation: sigma(a) = 1 / (1 + exp(-a)) with sigma' = sigma (1 - sigma); tanh' = 1 - tanh^2;
"@" is the matrix product and "*" the elementwise one.
"""
import numpy as np

from validation import (check_cell_shapes, check_dout, check_ndim, checked_cell, real_array,
                        real_dout)

# ----------------------------------------------------------------------------- vanilla RNN

def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """
    One time step of a vanilla RNN with tanh activation:

        h_raw = x @ Wx + prev_h @ Wh + b,     next_h = tanh(h_raw)

    i.e. next_h[n, j] = tanh(sum_d x[n, d] Wx[d, j] + sum_k prev_h[n, k] Wh[k, j] + b[j]).

    Inputs:
    - x: input of shape (N, D).
    - prev_h: hidden state of the previous time step, of shape (N, H).
    - Wx: input-to-hidden weights of shape (D, H).
    - Wh: hidden-to-hidden weights of shape (H, H).
    - b: biases of shape (H,).

    Returns a tuple of:
    - next_h: next hidden state, of shape (N, H).
    - cache: (Wx, Wh, x, prev_h, h_raw), h_raw (N, H) the pre-tanh value (contract order).
    """
    x, prev_h, Wx, Wh, b = checked_cell(x, "(N, D)", "prev_h", prev_h, Wx, Wh, b, gates=1)
    h_raw = x @ Wx + prev_h @ Wh + b
    next_h = np.tanh(h_raw)
    return next_h, (Wx, Wh, x, prev_h, h_raw)


def rnn_step_backward(dnext_h, cache):
    """
    Backward pass of one RNN step. With next_h = tanh(h_raw), tanh' = 1 - tanh^2:

        da[n, j]   = dnext_h[n, j] (1 - next_h[n, j]^2)          (gradient of h_raw)
        dx         = da @ Wx.T       dx[n, d] = sum_j da[n, j] Wx[d, j]
        dprev_h    = da @ Wh.T       dprev_h[n, k] = sum_j da[n, j] Wh[k, j]
        dWx        = x.T @ da        dWx[d, j] = sum_n x[n, d] da[n, j]
        dWh        = prev_h.T @ da   dWh[k, j] = sum_n prev_h[n, k] da[n, j]
        db[j]      = sum_n da[n, j]

    Derivation: docs/derivations.md#vanilla-rnn-backpropagation-through-time

    Inputs:
    - dnext_h: upstream gradient of next_h, of shape (N, H).
    - cache: (Wx, Wh, x, prev_h, h_raw) from rnn_step_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, D).
    - dprev_h: gradient with respect to prev_h, of shape (N, H).
    - dWx: gradient with respect to Wx, of shape (D, H).
    - dWh: gradient with respect to Wh, of shape (H, H).
    - db: gradient with respect to b, of shape (H,).
    """
    Wx, Wh, x, prev_h, h_raw = cache
    dnext_h = real_dout(dnext_h, h_raw.shape, "dnext_h")
    next_h = np.tanh(h_raw)
    da = dnext_h * (1 - next_h * next_h)
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def _float_type(*arrays):
    """The inputs' promoted type, at least a floating one (integer inputs give float64,
    so tanh values stored into a preallocated array are never truncated)."""
    return np.result_type(*arrays, np.float16)


def rnn_forward(x, h0, Wx, Wh, b):
    """
    Vanilla RNN over a whole sequence, TIME-MAJOR: the same result as calling
    rnn_step_forward for t = 0, ..., T-1 with prev_h = h[t-1] (h0 at t = 0):

        h[t] = tanh(x[t] @ Wx + h[t-1] @ Wh + b)

    Only the recurrent term h[t-1] @ Wh has to wait for the previous step, so the input
    projection x[t] @ Wx + b of every step is one matrix product (T*N, D) @ (D, H) before
    the loop, instead of T small ones.

    Inputs:
    - x: input sequence of shape (T, N, D) — time first.
    - h0: initial hidden state of shape (N, H).
    - Wx: input-to-hidden weights of shape (D, H).
    - Wh: hidden-to-hidden weights of shape (H, H).
    - b: biases of shape (H,).

    Returns a tuple of:
    - h: hidden states of every time step, of shape (T, N, H).
    - cache: (x, h0, Wx, Wh, b, h).
    """
    x, h0, Wx, Wh, b = checked_cell(x, "(T, N, D)", "h0", h0, Wx, Wh, b, gates=1)
    T, N, D = x.shape
    H = h0.shape[1]
    projected = (x.reshape(T * N, D) @ Wx + b).reshape(T, N, H)
    h = np.empty((T, N, H), dtype=_float_type(x, h0, Wx, Wh, b))
    prev_h = h0
    for t in range(T):
        prev_h = h[t] = np.tanh(projected[t] + prev_h @ Wh)
    return h, (x, h0, Wx, Wh, b, h)


def rnn_backward(dh, cache):
    """
    Backward pass of rnn_forward: backpropagation through time. It computes what calling
    rnn_step_backward for t = T-1, ..., 0 and summing the weight gradients would, where
    the gradient reaching h[t] is dh[t] (from the layers above) plus dprev_h of step t+1:

        dh_t   = dh[t] + da[t+1] @ Wh.T                 (da[T] @ Wh.T taken as 0)
        da[t]  = dh_t * (1 - h[t]^2)                     (gradient of step t's h_raw)
        dh0    = da[0] @ Wh.T

    Only dh_t is sequential. With the per-step da stacked into (T, N, H), the rest is one
    matrix product over all T*N rows each, after the loop:

        dx[t]  = da[t] @ Wx.T                 ->  dx  = (da.reshape(T*N, H) @ Wx.T).reshape(T, N, D)
        dWx    = sum_t x[t].T @ da[t]         ->  dWx = x.reshape(T*N, D).T @ da.reshape(T*N, H)
        dWh    = sum_t h[t-1].T @ da[t]       ->  the same with h[t-1] (h0 at t = 0)
        db[j]  = sum_{t, n} da[t, n, j]

    Derivation: docs/derivations.md#vanilla-rnn-backpropagation-through-time

    Inputs:
    - dh: upstream gradients of every hidden state, of shape (T, N, H).
    - cache: (x, h0, Wx, Wh, b, h) from rnn_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (T, N, D).
    - dh0: gradient with respect to h0, of shape (N, H).
    - dWx: gradient with respect to Wx, of shape (D, H).
    - dWh: gradient with respect to Wh, of shape (H, H).
    - db: gradient with respect to b, of shape (H,).
    """
    x, h0, Wx, Wh, b, h = cache
    dh = real_dout(dh, h.shape, "dh")
    T, N, D = x.shape
    H = h0.shape[1]
    da = np.empty(h.shape, dtype=np.result_type(dh, h, Wh))
    dprev_h = np.zeros_like(h0, dtype=da.dtype)
    for t in reversed(range(T)):
        da[t] = (dh[t] + dprev_h) * (1 - h[t] * h[t])
        dprev_h = da[t] @ Wh.T
    prev_h = np.concatenate([h0[None], h[:-1]], axis=0) if T else h
    da_rows = da.reshape(T * N, H)
    dx = (da_rows @ Wx.T).reshape(T, N, D)
    dWx = x.reshape(T * N, D).T @ da_rows
    dWh = prev_h.reshape(T * N, H).T @ da_rows
    db = da_rows.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


# ----------------------------------------------------------------------------- LSTM

def _sigmoid(a):
    """
    Logistic function through the identity sigma(a) = (1 + tanh(a / 2)) / 2: tanh never
    overflows, and one tanh is ~6x faster than the usual exp(-|a|) two-branch form. The
    absolute error stays at machine precision; only values below ~eps (a < -38 in float64,
    a < -17 in float32) round to 0, where the gate is closed anyway.
    """
    return 0.5 * (1 + np.tanh(0.5 * a))


def _lstm_gates(a, H):
    """Split the (N, 4H) pre-activations into i, f, o (sigmoid) and g (tanh), in that order."""
    return _sigmoid(a[:, :3 * H]), np.tanh(a[:, 3 * H:])


def _lstm_cell_backward(dnext_h, dnext_c, prev_c, ifo, g, tanh_c):
    """
    Gradients of one LSTM cell update with respect to its pre-activations and prev_c:
    lstm_step_backward's formulas (derived there), with the three sigmoid gates handled
    as one (N, 3H) block ifo = [i, f, o] for speed (fewer, larger array operations).

    Returns da (N, 4H) in the order i, f, o, g, and dprev_c (N, H).
    """
    H = g.shape[1]
    i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
    dc = dnext_c + dnext_h * o * (1 - tanh_c * tanh_c)
    d_ifo = np.concatenate([dc * g, dc * prev_c, dnext_h * tanh_c], axis=1)
    da = np.concatenate([d_ifo * ifo * (1 - ifo), dc * i * (1 - g * g)], axis=1)
    return da, dc * f


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """
    One time step of an LSTM. One matrix product gives all four gates' pre-activations,

        a = x @ Wx + prev_h @ Wh + b                            (N, 4H)
        a[n, k] = sum_d x[n, d] Wx[d, k] + sum_j prev_h[n, j] Wh[j, k] + b[k]

    split along the second axis into four blocks of H in the order i, f, o, g (cs231n):

        i = sigma(a[:, 0:H])      input gate
        f = sigma(a[:, H:2H])     forget gate
        o = sigma(a[:, 2H:3H])    output gate
        g = tanh(a[:, 3H:4H])     candidate cell values
        next_c = f * prev_c + i * g      (elementwise: next_c[n, j] = f[n, j] prev_c[n, j] + ...)
        next_h = o * tanh(next_c)

    Inputs:
    - x: input of shape (N, D).
    - prev_h: previous hidden state, of shape (N, H).
    - prev_c: previous cell state, of shape (N, H).
    - Wx: input-to-gates weights of shape (D, 4H).
    - Wh: hidden-to-gates weights of shape (H, 4H).
    - b: biases of shape (4H,).

    Returns a tuple of:
    - next_h: next hidden state, of shape (N, H).
    - next_c: next cell state, of shape (N, H).
    - cache: (x, prev_h, prev_c, Wx, Wh, b, gates, next_c), where gates (N, 4H) holds
      the activated gates [i, f, o, g] side by side.
    """
    x, prev_h, prev_c, Wx, Wh, b = _checked_lstm_step(x, prev_h, prev_c, Wx, Wh, b)
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    gates = np.concatenate([i, f, o, g], axis=1)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, b, gates, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """
    Backward pass of one LSTM step. next_c reaches the loss directly (dnext_c, from the
    next step) and through next_h = o * tanh(next_c), so its total gradient is

        dc = dnext_c + dnext_h * o * (1 - tanh(next_c)^2)

    and then, from next_c = f * prev_c + i * g and next_h = o * tanh(next_c):

        di = dc * g,   df = dc * prev_c,   dg = dc * i,   do = dnext_h * tanh(next_c)
        dprev_c = dc * f

    Through the activations (sigma' = sigma (1 - sigma), tanh' = 1 - tanh^2):

        da = [di * i (1 - i),  df * f (1 - f),  do * o (1 - o),  dg * (1 - g^2)]   (N, 4H)

    and a = x @ Wx + prev_h @ Wh + b is an affine map, as in rnn_step_backward:

        dx = da @ Wx.T,   dprev_h = da @ Wh.T,   dWx = x.T @ da,   dWh = prev_h.T @ da,
        db[j] = sum_n da[n, j].

    Derivation: docs/derivations.md#lstm

    Inputs:
    - dnext_h: upstream gradient of next_h, of shape (N, H).
    - dnext_c: upstream gradient of next_c, of shape (N, H).
    - cache: from lstm_step_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, D).
    - dprev_h: gradient with respect to prev_h, of shape (N, H).
    - dprev_c: gradient with respect to prev_c, of shape (N, H).
    - dWx: gradient with respect to Wx, of shape (D, 4H).
    - dWh: gradient with respect to Wh, of shape (H, 4H).
    - db: gradient with respect to b, of shape (4H,).
    """
    x, prev_h, prev_c, Wx, Wh, b, gates, next_c = cache
    dnext_h, dnext_c = _checked_douts(next_c.shape, dnext_h=dnext_h, dnext_c=dnext_c)
    H = next_c.shape[1]
    i, f, o, g = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    tanh_c = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tanh_c * tanh_c)
    di, df, do, dg = dc * g, dc * prev_c, dnext_h * tanh_c, dc * i
    dprev_c = dc * f
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g * g)],
                        axis=1)
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    """
    LSTM over a whole sequence, TIME-MAJOR like rnn_forward, with initial cell state
    c0 = 0. The same result as calling lstm_step_forward for t = 0, ..., T-1 with
    (prev_h, prev_c) = (h[t-1], c[t-1]), (h0, 0) at t = 0:

        a[t] = x[t] @ Wx + h[t-1] @ Wh + b;   gates, c[t], h[t] as in lstm_step_forward

    The input part x[t] @ Wx + b of every step is one matrix product (T*N, D) @ (D, 4H)
    before the loop; only h[t-1] @ Wh is computed per step.

    Inputs:
    - x: input sequence of shape (T, N, D) — time first.
    - h0: initial hidden state of shape (N, H).
    - Wx: input-to-gates weights of shape (D, 4H).
    - Wh: hidden-to-gates weights of shape (H, 4H).
    - b: biases of shape (4H,).

    Returns a tuple of:
    - h: hidden states of every time step, of shape (T, N, H).
    - cache: (x, h0, Wx, Wh, b, gates, c, h), with gates (T, N, 4H) the activated
      [i, f, o, g] of every step and c (T, N, H) the cell states.
    """
    x, h0, Wx, Wh, b = checked_cell(x, "(T, N, D)", "h0", h0, Wx, Wh, b, gates=4)
    T, N, D = x.shape
    H = h0.shape[1]
    projected = (x.reshape(T * N, D) @ Wx + b).reshape(T, N, 4 * H)
    dtype = _float_type(x, h0, Wx, Wh, b)
    h = np.empty((T, N, H), dtype=dtype)
    c = np.empty((T, N, H), dtype=dtype)
    gates = np.empty((T, N, 4 * H), dtype=dtype)
    prev_h, prev_c = h0, np.zeros_like(h0, dtype=dtype)
    for t in range(T):
        ifo, g = _lstm_gates(projected[t] + prev_h @ Wh, H)
        gates[t, :, :3 * H], gates[t, :, 3 * H:] = ifo, g
        prev_c = c[t] = ifo[:, H:2 * H] * prev_c + ifo[:, :H] * g
        prev_h = h[t] = ifo[:, 2 * H:] * np.tanh(prev_c)
    return h, (x, h0, Wx, Wh, b, gates, c, h)


def lstm_backward(dh, cache):
    """
    Backward pass of lstm_forward: backpropagation through time. It computes what calling
    lstm_step_backward for t = T-1, ..., 0 and summing the weight gradients would: the
    gradients reaching step t are

        dnext_h = dh[t] + da[t+1] @ Wh.T,    dnext_c = dprev_c of step t+1

    (both 0 beyond the last step; no gradient flows into c0 = 0). Per step the loop only
    computes the gate gradients da[t] (N, 4H) and dprev_c, dprev_h (see
    lstm_step_backward); with da stacked into (T, N, 4H) the rest is one matrix product
    over all T*N rows each, after the loop:

        dx  = (da.reshape(T*N, 4H) @ Wx.T).reshape(T, N, D)
        dWx = x.reshape(T*N, D).T @ da.reshape(T*N, 4H)       (= sum_t x[t].T @ da[t])
        dWh = hprev.reshape(T*N, H).T @ da.reshape(T*N, 4H)   (hprev[t] = h[t-1], h0 at t=0)
        db  = sum over t and n of da
        dh0 = da[0] @ Wh.T

    Derivation: docs/derivations.md#lstm

    Inputs:
    - dh: upstream gradients of every hidden state, of shape (T, N, H).
    - cache: (x, h0, Wx, Wh, b, gates, c, h) from lstm_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (T, N, D).
    - dh0: gradient with respect to h0, of shape (N, H).
    - dWx: gradient with respect to Wx, of shape (D, 4H).
    - dWh: gradient with respect to Wh, of shape (H, 4H).
    - db: gradient with respect to b, of shape (4H,).
    """
    x, h0, Wx, Wh, b, gates, c, h = cache
    dh = real_dout(dh, h.shape, "dh")
    T, N, D = x.shape
    H = h0.shape[1]
    dtype = np.result_type(dh, h, Wh)
    da = np.empty((T, N, 4 * H), dtype=dtype)
    dprev_h = np.zeros_like(h0, dtype=dtype)
    dprev_c = np.zeros_like(h0, dtype=dtype)
    tanh_c = np.tanh(c)
    zero_c = np.zeros_like(h0, dtype=c.dtype)
    for t in reversed(range(T)):
        prev_c = c[t - 1] if t > 0 else zero_c
        da[t], dprev_c = _lstm_cell_backward(dh[t] + dprev_h, dprev_c, prev_c,
                                             gates[t, :, :3 * H], gates[t, :, 3 * H:], tanh_c[t])
        # dprev_h = da[t] @ Wh.T, computed as (Wh @ da[t].T).T: the same product, but
        # OpenBLAS runs it ~30% faster with the wide (H, 4H) weights on the left
        dprev_h = (Wh @ da[t].T).T
    prev_h = np.concatenate([h0[None], h[:-1]], axis=0) if T else h
    da_rows = da.reshape(T * N, 4 * H)
    dx = (da_rows @ Wx.T).reshape(T, N, D)
    dWx = x.reshape(T * N, D).T @ da_rows
    dWh = prev_h.reshape(T * N, H).T @ da_rows
    db = da_rows.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


# ----------------------------------------------------------------------------- word embedding

def word_embedding_forward(x, W):
    """
    Word embedding: a table lookup, out[n, t] = W[x[n, t]], i.e.
    out[n, t, d] = W[x[n, t], d].

    Inputs:
    - x: integer word indices of shape (N, T), each in [0, V). (Any integer array works:
      out has shape x.shape + (D,), e.g. (N, D) for the words of one step, x (N,).)
    - W: word vectors of shape (V, D), row v the vector of word v.

    Returns a tuple of:
    - out: word vectors of shape (N, T, D).
    - cache: (x, W).
    """
    indices, W = _checked_embedding(x, W)
    return W[indices], (x, W)


def word_embedding_backward(dout, cache):
    """
    Backward pass of the word embedding. out[n, t, d] = W[x[n, t], d] reads row x[n, t]
    of W, so

        dW[v, d] = sum over all (n, t) with x[n, t] = v of dout[n, t, d]

    A word used several times gets the sum of all its gradients: the scatter-add is
    np.add.at, because dW[x] += dout would keep only one of the duplicates. x is not
    differentiable (integers), so there is no dx.

    Inputs:
    - dout: upstream gradient of shape (N, T, D).
    - cache: (x, W) from word_embedding_forward.

    Returns:
    - dW: gradient with respect to W, of shape (V, D).
    """
    x, W = cache
    indices = np.asarray(x)
    dout = real_dout(dout, indices.shape + W.shape[1:])
    dW = np.zeros(W.shape, dtype=np.result_type(W, dout))
    np.add.at(dW, indices, dout)
    return dW


# ----------------------------------------------------------------------------- temporal affine

def temporal_fc_forward(x, w, b):
    """
    Affine layer applied at every time step: out[n, t] = x[n, t] @ w + b, i.e.
    out[n, t, m] = sum_d x[n, t, d] w[d, m] + b[m]. Computed as one (N*T, D) @ (D, M)
    matrix product.

    Inputs:
    - x: input of shape (N, T, D).
    - w: weights of shape (D, M).
    - b: biases of shape (M,).

    Returns a tuple of:
    - out: output of shape (N, T, M).
    - cache: exactly (x, w, b, out) (contract).
    """
    x, w, b = _checked_temporal_fc(x, w, b)
    N, T, D = x.shape
    out = (x.reshape(N * T, D) @ w + b).reshape(N, T, w.shape[1])
    return out, (x, w, b, out)


def temporal_fc_backward(dout, cache):
    """
    Backward pass of the temporal affine layer: the fc backward with the N*T time steps
    as rows. From out[n, t, m] = sum_d x[n, t, d] w[d, m] + b[m]:

        dx[n, t, d] = sum_m dout[n, t, m] w[d, m]
        dw[d, m]    = sum_{n, t} x[n, t, d] dout[n, t, m]
        db[m]       = sum_{n, t} dout[n, t, m]

    each one matrix product (or sum) over the (N*T)-row reshapes of x and dout.

    Inputs:
    - dout: upstream gradient of shape (N, T, M).
    - cache: (x, w, b, out) from temporal_fc_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, T, D).
    - dw: gradient with respect to w, of shape (D, M).
    - db: gradient with respect to b, of shape (M,).
    """
    x, w, b, out = cache
    dout = real_dout(dout, out.shape)
    N, T, D = x.shape
    M = w.shape[1]
    dout_rows = dout.reshape(N * T, M)
    dx = (dout_rows @ w.T).reshape(N, T, D)
    dw = x.reshape(N * T, D).T @ dout_rows
    db = dout_rows.sum(axis=0)
    return dx, dw, db


# ----------------------------------------------------------------------------- loss

def temporal_softmax_loss(x, y, mask):
    """
    Softmax (cross-entropy) loss at every time step where mask is True, summed over
    time and averaged over the batch: with p[n, t] = softmax(x[n, t]),

        loss = -(1/N) sum_{n, t} mask[n, t] log p[n, t, y[n, t]]
        dx[n, t, v] = mask[n, t] (p[n, t, v] - [v == y[n, t]]) / N

    The log-softmax subtracts each row's max first, so exp() never overflows. Masked
    positions contribute exactly nothing: their loss term and dx are 0 whatever x holds
    there (even inf or nan), and their labels are not used (nor checked), so padding may
    hold any integer.

    Derivation: docs/derivations.md#softmax-cross-entropy

    Inputs:
    - x: scores of shape (N, T, V).
    - y: integer labels of shape (N, T); where mask is True each in [0, V).
    - mask: boolean array of shape (N, T), True where the loss counts (0/1 integers are
      accepted too).

    Returns a tuple of:
    - loss: scalar loss (a NumPy scalar of x's dtype; 0 for an empty batch).
    - dx: gradient of the loss with respect to x, of shape (N, T, V).
    """
    x, y, mask = _checked_loss(x, y, mask)
    N, T, V = x.shape
    y = np.where(mask, y, 0)   # any valid index at masked positions: their terms are dropped

    shifted = x - x.max(axis=2, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    picked = log_probs[np.arange(N)[:, None], np.arange(T), y]          # (N, T)
    loss = -np.where(mask, picked, 0).sum() / max(N, 1)   # an empty batch: 0
    dx = np.exp(log_probs)
    dx[np.arange(N)[:, None], np.arange(T), y] -= 1
    dx = np.where(mask[:, :, None], dx / max(N, 1), 0)
    return loss, dx.astype(log_probs.dtype, copy=False)


# ----------------------------------------------------------------------------- attention

def _attention_core(h, A, A_proj, W_h, v):
    """Scores, weights and context from the projected features (see attention_forward)."""
    s = np.tanh(A_proj + (h @ W_h)[:, None, :])               # (N, L, K)
    e = s @ v                                                  # (N, L)
    p = np.exp(e - e.max(axis=1, keepdims=True))
    alpha = p / p.sum(axis=1, keepdims=True)                   # (N, L)
    context = (alpha[:, None, :] @ A)[:, 0, :]                 # (N, D)
    return context, alpha, s


def _attention_core_backward(dcontext, dalpha, h, A, W_h, v, s, alpha):
    """Returns dh, dA (through the context only), dz = dA_proj, dW_h, dv (see attention_backward)."""
    N, L, D = A.shape
    dalpha_total = (A @ dcontext[:, :, None])[:, :, 0]        # (N, L)
    if dalpha is not None:
        dalpha_total = dalpha_total + dalpha
    dA = alpha[:, :, None] * dcontext[:, None, :]              # (N, L, D)
    de = alpha * (dalpha_total - (alpha * dalpha_total).sum(axis=1, keepdims=True))
    K = v.shape[0]
    dv = de.reshape(N * L) @ s.reshape(N * L, K)
    dz = de[:, :, None] * v * (1 - s * s)                      # (N, L, K)
    dh_proj = dz.sum(axis=1)                                   # (N, K)
    dh = dh_proj @ W_h.T
    dW_h = h.T @ dh_proj
    return dh, dA, dz, dW_h, dv


def attention_forward(h, A, W_h, W_a, v, b=None):
    """
    Additive (Bahdanau) attention of one query per sample over L positions, e.g. the
    L = H' * W' cells of a CNN feature map. A decoder calls it once per time step with its
    state h; attention_step_forward is the same with the feature projection A @ W_a done
    once per sequence instead. That projection, N*L*D*K multiply-adds, dominates the cost:
    at N=100, L=49, D=K=256 a step here takes ~10x longer than attention_step_forward.

        z[n, i, k] = sum_j h[n, j] W_h[j, k] + sum_d A[n, i, d] W_a[d, k] + b[k]   (N, L, K)
        s = tanh(z)
        e[n, i]    = sum_k v[k] s[n, i, k]                 score of position i
        alpha[n, i] = exp(e[n, i]) / sum_l exp(e[n, l])    (the max over l subtracted first)
        context[n, d] = sum_i alpha[n, i] A[n, i, d]

    Vectorized over N and L (matrix products, no Python loops).

    Inputs:
    - h: queries (decoder states) of shape (N, H).
    - A: encoder features of shape (N, L, D), A[n, i] the feature vector at position i.
    - W_h: query projection of shape (H, K).
    - W_a: feature projection of shape (D, K).
    - v: scoring vector of shape (K,).
    - b: bias of shape (K,), or None for no bias.

    Returns a tuple of:
    - (context, alpha): context vectors of shape (N, D) and attention weights of shape
      (N, L), each row of alpha summing to 1.
    - cache: (h, A, W_h, W_a, v, b, s, alpha), s = tanh(z) of shape (N, L, K).
    """
    h, A, W_h, W_a, v, b = _checked_attention(h, A, W_h, W_a, v, b)
    N, L, D = A.shape
    K = W_h.shape[1]
    A_proj = (A.reshape(N * L, D) @ W_a).reshape(N, L, K)
    if b is not None:
        A_proj = A_proj + b
    context, alpha, s = _attention_core(h, A, A_proj, W_h, v)
    return (context, alpha), (h, A, W_h, W_a, v, b, s, alpha)


def attention_backward(dcontext, cache, dalpha=None):
    """
    Backward pass of attention_forward. dalpha is optional: pass the gradient of a loss
    term on the weights themselves, e.g. the doubly stochastic regularization
    lambda * sum_i (1 - sum_t alpha_t[n, i])^2 of "Show, Attend and Tell"; None means 0.

    Context: context[n, d] = sum_i alpha[n, i] A[n, i, d] gives
        dA[n, i, d]    = alpha[n, i] dcontext[n, d]                      (direct path)
        ga[n, i]       = sum_d dcontext[n, d] A[n, i, d] + dalpha[n, i]  (total dL/dalpha)
    Softmax: d alpha[n, i] / d e[n, l] = alpha[n, i] ([i == l] - alpha[n, l]), so
        de[n, i]       = alpha[n, i] (ga[n, i] - sum_l alpha[n, l] ga[n, l])
    Scores: e[n, i] = sum_k v[k] s[n, i, k], s = tanh(z):
        dv[k]          = sum_{n, i} de[n, i] s[n, i, k]
        dz[n, i, k]    = de[n, i] v[k] (1 - s[n, i, k]^2)
    z = (h @ W_h)[n, k] + (A @ W_a)[n, i, k] + b[k], h's term shared by all positions:
        dh[n]          = (sum_i dz[n, i]) @ W_h.T,   dW_h = h.T @ sum_i dz[:, i]
        dA[n, i]      += dz[n, i] @ W_a.T,           dW_a = sum_{n, i} A[n, i].T dz[n, i]
        db[k]          = sum_{n, i} dz[n, i, k]

    Derivation: docs/derivations.md#additive-attention

    Inputs:
    - dcontext: upstream gradient of context, of shape (N, D).
    - cache: from attention_forward.
    - dalpha: upstream gradient of alpha, of shape (N, L), or None.

    Returns a tuple of:
    - dh: gradient with respect to h, of shape (N, H).
    - dA: gradient with respect to A, of shape (N, L, D) (both paths: context and scores).
    - dW_h: gradient with respect to W_h, of shape (H, K).
    - dW_a: gradient with respect to W_a, of shape (D, K).
    - dv: gradient with respect to v, of shape (K,).
    - db: gradient with respect to b, of shape (K,); None if b was None.
    """
    h, A, W_h, W_a, v, b, s, alpha = cache
    dcontext, dalpha = _checked_attention_douts(dcontext, dalpha, A.shape, alpha.shape)
    dh, dA, dz, dW_h, dv = _attention_core_backward(dcontext, dalpha, h, A, W_h, v, s, alpha)
    N, L, D = A.shape
    dz_rows = dz.reshape(N * L, W_a.shape[1])
    dA = dA + (dz_rows @ W_a.T).reshape(N, L, D)
    dW_a = A.reshape(N * L, D).T @ dz_rows
    db = None if b is None else dz_rows.sum(axis=0)
    return dh, dA, dW_h, dW_a, dv, db


def attention_step_forward(h, A, A_proj, W_h, v):
    """
    Additive attention for one decoder step, with the features already projected:
    A_proj = A @ W_a + b does not depend on the decoder state, so a decoder computes it
    once per sequence (e.g. A_proj, proj_cache = temporal_fc_forward(A, W_a, b), with
    b = np.zeros(K) for no bias) instead
    of at each of its T steps, and calls this at every step. With z = A_proj + h @ W_h
    (broadcast over the L positions) the rest is attention_forward:

        s = tanh(A_proj[n, i] + h[n] @ W_h),  e[n, i] = s[n, i] . v,
        alpha = softmax_i(e),                 context[n] = sum_i alpha[n, i] A[n, i]

    Inputs:
    - h: queries (decoder states) of shape (N, H).
    - A: encoder features of shape (N, L, D).
    - A_proj: projected features A @ W_a (+ b), of shape (N, L, K).
    - W_h: query projection of shape (H, K).
    - v: scoring vector of shape (K,).

    Returns a tuple of:
    - (context, alpha): context (N, D) and attention weights (N, L).
    - cache: (h, A, W_h, v, s, alpha), s of shape (N, L, K).
    """
    h, A, A_proj, W_h, v = _checked_attention_step(h, A, A_proj, W_h, v)
    context, alpha, s = _attention_core(h, A, A_proj, W_h, v)
    return (context, alpha), (h, A, W_h, v, s, alpha)


def attention_step_backward(dcontext, cache, dalpha=None):
    """
    Backward pass of attention_step_forward; the derivation is attention_backward's with
    dA_proj = dz. The decoder sums dA and dA_proj over its steps, then backpropagates the
    summed dA_proj once through the projection (temporal_fc_backward gives dA, dW_a, db;
    add that dA to the summed one).

    Derivation: docs/derivations.md#additive-attention

    Inputs:
    - dcontext: upstream gradient of context, of shape (N, D).
    - cache: (h, A, W_h, v, s, alpha) from attention_step_forward.
    - dalpha: upstream gradient of alpha, of shape (N, L), or None for 0.

    Returns a tuple of:
    - dh: gradient with respect to h, of shape (N, H).
    - dA: gradient with respect to A through the context, of shape (N, L, D).
    - dA_proj: gradient with respect to A_proj, of shape (N, L, K).
    - dW_h: gradient with respect to W_h, of shape (H, K).
    - dv: gradient with respect to v, of shape (K,).
    """
    h, A, W_h, v, s, alpha = cache
    dcontext, dalpha = _checked_attention_douts(dcontext, dalpha, A.shape, alpha.shape)
    return _attention_core_backward(dcontext, dalpha, h, A, W_h, v, s, alpha)


# ----------------------------------------------------------------------------- checks
# The argument checks of the layers above, one call per layer. The rules shared with the
# other layer files (real_array, check_ndim, check_dout) live in the validation module.
# Each check raises at once, building its message only then: an f-string passed to a
# helper would be formatted on every call (~20 us per training step of a small MLP).


def _reals(**named):
    """Each named argument as real_array(name, value), in order."""
    return [real_array(name, value) for name, value in named.items()]


def _checked_douts(expected_shape, **named):
    """Several upstream gradients (all converted first, then their shapes checked)."""
    douts = _reals(**named)
    for name, dout in zip(named, douts):
        check_dout(dout, expected_shape, name)
    return douts


def _checked_lstm_step(x, prev_h, prev_c, Wx, Wh, b):
    x, prev_h, prev_c, Wx, Wh, b = _reals(x=x, prev_h=prev_h, prev_c=prev_c, Wx=Wx, Wh=Wh, b=b)
    check_cell_shapes(x, "(N, D)", "prev_h", prev_h, Wx, Wh, b, 4)
    if np.shape(prev_c) != prev_h.shape:
        raise ValueError(f"prev_c has shape {np.shape(prev_c)}, expected the shape of prev_h "
                         f"{prev_h.shape}")
    return x, prev_h, prev_c, Wx, Wh, b


def _checked_embedding(x, W):
    """(indices, W): x as an integer array of rows of W, W as a real (V, D) array."""
    W = real_array("W", W)
    check_ndim("W", W, 2, "(V, D)")
    return _check_indices("x", x, W.shape[0], "word indices", "W", W.shape), W


def _check_indices(name, indices, size, what, table_name, table_shape, where=None):
    """Integer array with every entry (every entry where `where` is True) in [0, size)."""
    indices = np.asarray(indices)
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"{name} must hold integer {what}, got dtype {indices.dtype}")
    checked = indices if where is None else indices[where]
    if checked.size:
        low, high = checked.min(), checked.max()
        if not (low >= 0 and high < size):
            raise ValueError(f"{name} has {what} in [{low}, {high}], expected them in [0, {size}) "
                             f"for {table_name} of shape {table_shape}")
    return indices


def _checked_temporal_fc(x, w, b):
    x, w, b = _reals(x=x, w=w, b=b)
    check_ndim("x", x, 3, "(N, T, D)")
    check_ndim("w", w, 2, "(D, M)")
    D = x.shape[2]
    if w.shape[0] != D:
        raise ValueError(f"w has shape {w.shape}, expected ({D}, M) to match D={D} of x {x.shape}")
    if np.shape(b) != (w.shape[1],):
        raise ValueError(f"b has shape {np.shape(b)}, expected ({w.shape[1]},) to match w "
                         f"{w.shape}")
    return x, w, b


def _checked_loss(x, y, mask):
    """x real (N, T, V); y integer (N, T), in [0, V) where mask is True; mask bool (N, T)."""
    x = real_array("x", x)
    check_ndim("x", x, 3, "(N, T, V)")
    N, T, V = x.shape
    if np.shape(y) != (N, T):
        raise ValueError(f"y has shape {np.shape(y)}, expected ({N}, {T}) to match x {x.shape}")
    if np.shape(mask) != (N, T):
        raise ValueError(f"mask has shape {np.shape(mask)}, expected ({N}, {T}) to match x "
                         f"{x.shape}")
    mask = np.asarray(mask)
    if mask.dtype != bool:
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError(f"mask must be boolean (or hold only 0 and 1), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    y = _check_indices("y", y, V, "labels", "x", x.shape, where=mask)
    return x, y, mask


def _checked_attention(h, A, W_h, W_a, v, b):
    h, A, W_h, W_a, v = _reals(h=h, A=A, W_h=W_h, W_a=W_a, v=v)
    b = None if b is None else real_array("b", b)
    K = _check_attention_shapes(h, A, W_h, v)
    check_ndim("W_a", W_a, 2, "(D, K)")
    if np.shape(W_a) != (A.shape[2], K):
        raise ValueError(f"W_a has shape {np.shape(W_a)}, expected ({A.shape[2]}, {K}) to match D="
                         f"{A.shape[2]} of A {A.shape} and K={K} of W_h {W_h.shape}")
    if not (b is None or np.shape(b) == (K,)):
        raise ValueError(f"b has shape {np.shape(b)}, expected ({K},) to match W_h {W_h.shape}")
    return h, A, W_h, W_a, v, b


def _checked_attention_step(h, A, A_proj, W_h, v):
    h, A, A_proj, W_h, v = _reals(h=h, A=A, A_proj=A_proj, W_h=W_h, v=v)
    K = _check_attention_shapes(h, A, W_h, v)
    N, L, _ = A.shape
    if np.shape(A_proj) != (N, L, K):
        raise ValueError(f"A_proj has shape {np.shape(A_proj)}, expected ({N}, {L}, {K}) = "
                         f"(N, L, K) for "
                         f"A {A.shape} and W_h {W_h.shape}")
    return h, A, A_proj, W_h, v


def _check_attention_shapes(h, A, W_h, v):
    check_ndim("h", h, 2, "(N, H)")
    check_ndim("A", A, 3, "(N, L, D)")
    if A.shape[0] != h.shape[0]:
        raise ValueError(f"A has shape {A.shape}, expected ({h.shape[0]}, L, D) to match "
                         f"N={h.shape[0]} of h {h.shape}")
    check_ndim("W_h", W_h, 2, "(H, K)")
    if W_h.shape[0] != h.shape[1]:
        raise ValueError(f"W_h has shape {W_h.shape}, expected ({h.shape[1]}, K) to match "
                         f"H={h.shape[1]} of h {h.shape}")
    K = W_h.shape[1]
    if np.shape(v) != (K,):
        raise ValueError(f"v has shape {np.shape(v)}, expected ({K},) to match W_h {W_h.shape}")
    return K


def _checked_attention_douts(dcontext, dalpha, A_shape, alpha_shape):
    """dcontext (N, D) and dalpha (N, L) or None as real arrays, for A of shape (N, L, D)."""
    dcontext = real_array("dcontext", dcontext)
    dalpha = None if dalpha is None else real_array("dalpha", dalpha)
    check_dout(dcontext, (A_shape[0], A_shape[2]), "dcontext")
    if dalpha is not None:
        check_dout(dalpha, alpha_shape, "dalpha")
    return dcontext, dalpha
