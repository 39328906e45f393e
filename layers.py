"""Feed-forward layers with hand-derived backward passes.

Every forward function returns (out, cache) and every backward function takes
(dout, cache), where dout is the gradient of the loss with respect to out. Each body
computes the formula of its docstring as plain vectorized NumPy, so this file is meant to
be read; the blocked, cache-friendly versions of the convolution and max pooling that the
models train with live in the kernels module, and tests prove the two equal.

Conventions:
- Inputs are never modified.
- Arrays may be NumPy arrays or nested lists of real numbers. Floating inputs keep
  NumPy's type promotion (float32 in gives float32 out; float16 x with float32 w gives
  float32); integer and bool inputs are treated as float64. Complex, object or string
  data raise TypeError naming the argument.
- A wrong shape raises ValueError naming the argument and both shapes.
- An empty batch (N = 0) gives empty outputs and gradients; the losses of an empty batch
  are 0 (a sum over no samples), with an empty gradient.
- NaN and inf propagate through the layers as IEEE arithmetic says; the losses refuse
  NaN scores (ValueError), since a NaN loss would only surface later as a silent failure.

Part 1 of docs/API.md (fc, relu, conv, max pool, softmax loss) is a drop-in
contract for the cs231n-style homework; strided/padded convolution with bias, dropout,
log-softmax, NLL and flatten are ours (Part 2); the normalization layers at the end
follow Part 3 (cs231n assignment 2's names; bn_param's running statistics are the one
documented exception to "inputs are never modified"). This file imports NumPy and the
argument checks shared with the other layer files (validation.py, itself NumPy only), so
layers.py and validation.py can be dropped next to any course's files. The checks
particular to these layers are at the end of the file, one call per layer.
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from validation import (as_array, check_bn_param, check_conv_arguments, check_dout, check_eps,
                        check_keep_prob, check_ndim, check_pool_arguments, check_scale_shift,
                        checked_groupnorm, real_array, real_dout)

# ----------------------------------------------------------------------------- fully connected

def fc_forward(x, w, b):
    """
    Fully connected (affine) layer: out = x_flat @ w + b.

    Inputs:
    - x: input of shape (N, d_1, ..., d_k); each row is flattened to D = d_1 * ... * d_k.
    - w: weights of shape (D, M).
    - b: biases of shape (M,).

    Returns a tuple of:
    - out: output of shape (N, M).
    - cache: (x, w, b).
    """
    x, w, b = _checked_fc(x, w, b)
    N, D = x.shape[0], math.prod(x.shape[1:])
    out = x.reshape(N, D) @ w + b
    return out, (x, w, b)


def fc_backward(dout, cache, need_dx=True):
    """
    Backward pass of the fully connected layer. With X = x_flat (N, D):
    out[n, m] = sum_d X[n, d] w[d, m] + b[m], so

        dX = dout @ w.T,   dw = X.T @ dout,   db = sum_n dout[n].

    Derivation: docs/derivations.md#fully-connected

    Inputs:
    - dout: upstream gradient of shape (N, M).
    - cache: (x, w, b) from fc_forward.
    - need_dx: False skips dX (for a network's first layer, whose input is the data:
      there dX is a third of the layer's backward work); dx is then None.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, d_1, ..., d_k); None if need_dx is False.
    - dw: gradient with respect to w, of shape (D, M).
    - db: gradient with respect to b, of shape (M,).
    """
    x, w, b = cache
    N = x.shape[0]
    dout = real_dout(dout, (N, w.shape[1]))
    dx = (dout @ w.T).reshape(x.shape) if need_dx else None
    dw = x.reshape(N, w.shape[0]).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


# ----------------------------------------------------------------------------- ReLU

def relu_forward(x):
    """
    Rectified linear unit: out = max(x, 0).

    Inputs:
    - x: input of any shape.

    Returns a tuple of:
    - out: output of the same shape as x.
    - cache: x.
    """
    x = real_array("x", x)
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """
    Backward pass of ReLU: the gradient passes where x > 0 and is 0 elsewhere
    (we take the subgradient 0 at x = 0).

    Derivation: docs/derivations.md#relu

    Inputs:
    - dout: upstream gradient, of the shape of x.
    - cache: x from relu_forward.

    Returns:
    - dx: gradient with respect to x.
    """
    x = cache
    dout = real_dout(dout, x.shape)
    return dout * (x > 0)


# ----------------------------------------------------------------------------- convolution
#
# Notation: Xpad is x zero-padded by `pad` on every side; windows are indexed by the
# output pixel (i, j) and the kernel offset (k, l). "A *filt K" is filtering
# (cross-correlation): (A *filt K)[i, j] = sum_{k, l} A[i + k, j + l] K[k, l]; "A *full K"
# is the full convolution: A zero-padded by HH-1 and WW-1 on each side, filtered by K
# flipped in both axes.


def _pad_spatial(a, top, bottom, left, right):
    """a (N, C, H, W) with zeros added around its last two axes."""
    return np.pad(a, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _filter(x, w, stride=1):
    """Y[n, f, i, j] = sum_{c, k, l} x[n, c, s*i + k, s*j + l] w[f, c, k, l]."""
    windows = sliding_window_view(x, w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    # windows[n, c, i, j, k, l] = x[n, c, s*i + k, s*j + l]
    out = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3]))   # (N, OH, OW, F)
    return out.transpose(0, 3, 1, 2)


def conv_forward(x, w):
    """
    Convolutional layer as *filtering* (cross-correlation: the kernel is not flipped),
    stride 1, no padding, no bias. With indices from 0:

        Y[n, f, i, j] = sum_{c, k, l} X[n, c, i + k, j + l] W[f, c, k, l]

    i.e. Y[n, f] = sum_c X[n, c] *filt W[f, c]. The code takes the HH x WW window of X
    at every output pixel (a view, sliding_window_view) and contracts it with every
    filter over (c, k, l) in one tensordot.

    Inputs:
    - x: input of shape (N, C, H, W).
    - w: filters of shape (F, C, HH, WW).

    Returns a tuple of:
    - out: output of shape (N, F, H - HH + 1, W - WW + 1).
    - cache: (x, w).
    """
    x, w, _ = _checked_conv(x, w)
    out = _filter(x, w)
    return out, (x, w)


def conv_backward(dout, cache):
    """
    Backward pass of conv_forward. Differentiating Y[n,f,i,j] = sum X[n,c,i+k,j+l] W[f,c,k,l]:

    - dW[f, c, k, l] = sum_{n, i, j} X[n, c, i + k, j + l] dY[n, f, i, j]
      i.e. dW[f, c] = sum_n X[n, c] *filt dY[n, f]: filtering of X by dY.
    - dX[n, c, p, q] = sum_{f, k, l} dY[n, f, p - k, q - l] W[f, c, k, l]
      (dY taken as 0 outside its H' x W' extent), i.e. dX[n, c] = sum_f dY[n, f] *full W[f, c]:
      the full convolution of dY with W, which is dY zero-padded by HH-1 and WW-1 and
      filtered by the kernel flipped in both axes.

    The code computes exactly these two: dW by filtering X with dY as the kernel, dX by
    padding dY and filtering it with the flipped kernels (channels and filters swapped).

    Derivation: docs/derivations.md#convolution

    Inputs:
    - dout: upstream gradient of shape (N, F, H', W').
    - cache: (x, w) from conv_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, C, H, W).
    - dw: gradient with respect to w, of shape (F, C, HH, WW).
    """
    x, w = cache
    dout = _checked_conv_dout(dout, x, w)
    F, C, HH, WW = w.shape

    # dW[f, c] = sum_n X[n, c] *filt dY[n, f]: windows of X as large as dY, one per (k, l)
    windows = sliding_window_view(x, dout.shape[2:], axis=(2, 3))
    # windows[n, c, k, l, i, j] = X[n, c, k + i, l + j]
    dw = np.tensordot(dout, windows, axes=([0, 2, 3], [0, 4, 5]))        # (F, C, HH, WW)

    # dX[n, c] = sum_f dY[n, f] *full W[f, c]: pad dY by HH-1, WW-1 and filter it by the
    # flipped kernels, with the filters f as input channels: kernel[c, f] = W[f, c] flipped
    dout_padded = _pad_spatial(dout, HH - 1, HH - 1, WW - 1, WW - 1)
    dx = _filter(dout_padded, w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return dx, dw


def conv2d_forward(x, w, b=None, stride=1, pad=0):
    """
    Convolution (filtering) with stride, zero padding and an optional bias per filter;
    conv_forward is the case stride=1, pad=0, b=None. With Xpad the zero-padded x:

        Y[n, f, i, j] = b[f] + sum_{c, k, l} Xpad[n, c, s*i + k, s*j + l] W[f, c, k, l]

    Inputs:
    - x: input of shape (N, C, H, W).
    - w: filters of shape (F, C, HH, WW).
    - b: biases of shape (F,), or None for no bias.
    - stride: step s between neighbouring windows, an integer >= 1.
    - pad: number of zeros added on each side of H and W.

    Returns a tuple of:
    - out: output of shape (N, F, 1 + (H + 2*pad - HH) // s, 1 + (W + 2*pad - WW) // s).
    - cache: (x, w, b, stride, pad).
    """
    x, w, b = _checked_conv(x, w, b, stride, pad)
    out = _filter(_pad_spatial(x, pad, pad, pad, pad), w, stride)
    if b is not None:
        out = out + b[:, None, None]
    return out, (x, w, b, stride, pad)


def conv2d_backward(dout, cache, need_dx=True):
    """
    Backward pass of conv2d_forward (derivation in conv_backward). With stride s:

    - db[f] = sum_{n, i, j} dY[n, f, i, j].
    - dW[f, c, k, l] = sum_{n, i, j} Xpad[n, c, s*i + k, s*j + l] dY[n, f, i, j]: filtering
      of Xpad by dY with the kernel's entries s apart.
    - dXpad[n, c] = sum_f D[n, f] *full W[f, c], where D is dY dilated by s: s - 1 zeros
      between neighbouring entries, D[n, f, s*i, s*j] = dY[n, f, i, j]. (Output (i, j) saw
      Xpad from (s*i, s*j) on, so its gradient lands there.) Rows and columns of Xpad
      that no window covered get 0; then the padding is cut off: dX = dXpad[pad:-pad].

    Derivation: docs/derivations.md#convolution

    Inputs:
    - dout: upstream gradient of shape (N, F, H', W').
    - cache: (x, w, b, stride, pad) from conv2d_forward.
    - need_dx: False skips computing dx (e.g. for a network's first layer, whose input
      is the data); dx is then None.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, C, H, W); None if need_dx is False.
    - dw: gradient with respect to w, of shape (F, C, HH, WW).
    - db: gradient with respect to b, of shape (F,); None if b was None.
    """
    x, w, b, s, pad = cache
    dout = _checked_conv_dout(dout, x, w, b, s, pad)
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    out_height, out_width = dout.shape[2:]
    db = None if b is None else dout.sum(axis=(0, 2, 3))

    # dilated dY: D[n, f, s*i, s*j] = dY[n, f, i, j], zeros between
    span_height, span_width = s * (out_height - 1) + 1, s * (out_width - 1) + 1
    dilated = np.zeros((N, F, span_height, span_width), dtype=dout.dtype)
    dilated[:, :, ::s, ::s] = dout

    # dW: filter Xpad (channels c as the batch) with D (samples n as the channels)
    xpad = _pad_spatial(x, pad, pad, pad, pad)
    windows = sliding_window_view(xpad, (span_height, span_width), axis=(2, 3))[:, :, :HH, :WW]
    # windows[n, c, k, l, p, q] = Xpad[n, c, k + p, l + q]
    dw = np.tensordot(dilated, windows, axes=([0, 2, 3], [0, 4, 5]))   # (F, C, HH, WW)
    if not need_dx:
        return None, dw, db

    # dXpad: the full convolution of D with W, i.e. pad D by HH-1, WW-1 and filter it by
    # the flipped kernels, with filters f as the input channels: kernel[c, f] = W[f, c] flipped
    full = _filter(_pad_spatial(dilated, HH - 1, HH - 1, WW - 1, WW - 1),
                   w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    # the last (Hp - HH) % s rows (and columns) of Xpad were in no window
    uncovered_height = H + 2 * pad - full.shape[2]
    uncovered_width = W + 2 * pad - full.shape[3]
    dxpad = _pad_spatial(full, 0, uncovered_height, 0, uncovered_width)
    dx = dxpad[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db


# ----------------------------------------------------------------------------- max pooling

def _pool_windows(x, pool_param):
    """The pooling windows of x (N, C, H, W) as a view (N, C, OH, OW, ph * pw), entry
    k*pw + l of window (i, j) being x[n, c, s*i + k, s*j + l] (row-major in the window)."""
    height, width, stride = (pool_param[key] for key in ("pool_height", "pool_width", "stride"))
    windows = sliding_window_view(x, (height, width), axis=(2, 3))[:, :, ::stride, ::stride]
    return windows.reshape(*windows.shape[:4], height * width)


def max_pool_forward(x, pool_param):
    """
    Max pooling: out[n, c, i, j] = max over the window x[n, c, s*i : s*i+ph, s*j : s*j+pw].
    Any window size and stride; windows may overlap (stride < window) or skip pixels.

    Inputs:
    - x: input of shape (N, C, H, W).
    - pool_param: dict with keys
      - 'pool_height': window height ph.
      - 'pool_width': window width pw.
      - 'stride': distance s between neighbouring windows.

    Returns a tuple of:
    - out: output of shape (N, C, 1 + (H - ph) // s, 1 + (W - pw) // s).
    - cache: (x, pool_param).
    """
    x = _checked_pool(x, pool_param)
    out = _pool_windows(x, pool_param).max(axis=-1)
    return out, (x, pool_param)


def max_pool_backward(dout, cache):
    """
    Backward pass of max pooling. The max is locally a selection, so each window's
    gradient goes to the entry that was selected:

        dx[n, c, s*i + k*, s*j + l*] += dout[n, c, i, j],  (k*, l*) = the window's argmax

    taking the first max in row-major order when several entries tie (ties are common
    after ReLU, where many inputs are exactly 0; sending the gradient to every tied entry
    would multiply it). Where windows overlap, an input chosen by several windows
    accumulates their gradients (np.add.at sums repeated indices).

    Derivation: docs/derivations.md#max-pooling

    Inputs:
    - dout: upstream gradient of shape (N, C, OH, OW).
    - cache: (x, pool_param) from max_pool_forward.

    Returns:
    - dx: gradient with respect to x, of shape (N, C, H, W).
    """
    x, pool_param = cache[:2]
    dout = _checked_pool_dout(dout, x, pool_param)
    width, stride = pool_param["pool_width"], pool_param["stride"]
    choice = _pool_windows(x, pool_param).argmax(axis=-1)   # first max: argmax's rule
    n, c, i, j = np.indices(dout.shape, sparse=True)
    rows, columns = stride * i + choice // width, stride * j + choice % width
    dx = np.zeros(x.shape, dtype=np.result_type(x, dout))
    np.add.at(dx, (n, c, rows, columns), dout)
    return dx


# ----------------------------------------------------------------------------- losses

def _log_softmax(x):
    """Row-wise log-softmax, stable: subtracting the row max keeps exp() <= 1."""
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_loss(x, y):
    """
    Softmax (cross-entropy) loss, averaged over the batch. With p = softmax(x[n]),
    loss_n = -log p[y_n] and d loss_n / d x[n, c] = (p[c] - [c == y_n]) / N.

    Derivation: docs/derivations.md#softmax-cross-entropy

    Inputs:
    - x: class scores of shape (N, C); NaN raises ValueError.
    - y: integer labels of shape (N,), each in [0, C).

    Returns a tuple of:
    - loss: scalar loss (mean over N; 0 for an empty batch).
    - dx: gradient of the loss with respect to x, of shape (N, C).
    """
    x, y = _checked_loss("x", x, y)
    N = x.shape[0]
    log_probs = _log_softmax(x)
    rows = np.arange(N)
    loss = -log_probs[rows, y].sum() / max(N, 1)
    dx = np.exp(log_probs)
    dx[rows, y] -= 1
    dx /= max(N, 1)
    return loss, dx


def log_softmax_forward(x):
    """
    Log-softmax over classes: out[n, c] = x[n, c] - log sum_k exp(x[n, k]).

    Inputs:
    - x: scores of shape (N, C).

    Returns a tuple of:
    - out: log-probabilities of shape (N, C).
    - cache: out.
    """
    x = _checked_scores(x)
    out = _log_softmax(x)
    return out, out


def log_softmax_backward(dout, cache):
    """
    Backward pass of log-softmax. d out[n, c] / d x[n, k] = [c == k] - p[n, k] with
    p = exp(out), so dx[n, k] = dout[n, k] - p[n, k] * sum_c dout[n, c].

    Inputs:
    - dout: upstream gradient of shape (N, C).
    - cache: out from log_softmax_forward.

    Returns:
    - dx: gradient with respect to x, of shape (N, C).
    """
    out = cache
    dout = real_dout(dout, out.shape)
    return dout - np.exp(out) * dout.sum(axis=1, keepdims=True)


def nll_loss(log_probs, y):
    """
    Negative log-likelihood loss, averaged over the batch: loss = -mean_n log_probs[n, y_n].
    log_softmax_forward followed by nll_loss equals softmax_loss.

    Inputs:
    - log_probs: log-probabilities of shape (N, C); NaN raises ValueError.
    - y: integer labels of shape (N,), each in [0, C).

    Returns a tuple of:
    - loss: scalar loss (0 for an empty batch).
    - dlog_probs: gradient with respect to log_probs, of shape (N, C): -1/N at
      (n, y_n), 0 elsewhere.
    """
    log_probs, y = _checked_loss("log_probs", log_probs, y)
    N = log_probs.shape[0]
    rows = np.arange(N)
    loss = -log_probs[rows, y].sum() / max(N, 1)
    dlog_probs = np.zeros_like(log_probs)
    dlog_probs[rows, y] = -1 / N if N else 0
    return loss, dlog_probs


# ----------------------------------------------------------------------------- dropout, flatten

def dropout_forward(x, dropout_param):
    """
    Inverted dropout. 'p' is the probability of KEEPING a unit (the cs231n convention;
    PyTorch's nn.Dropout(p) takes the probability of dropping, so its p=0.25 is our
    p=0.75). In training each unit is kept with probability p and scaled by 1/p, so the
    expected output equals x and test mode is the identity.

    Inputs:
    - x: input of any shape.
    - dropout_param: dict with keys
      - 'p': keep probability, in (0, 1].
      - 'mode': 'train' or 'test'.
      - 'seed' (optional): seed of the mask's random generator; the same seed gives the
        same mask (for gradient checks). Without it the mask comes from np.random.

    Returns a tuple of:
    - out: output of the shape of x.
    - cache: (dropout_param, mask); mask (shape of x, values 0 or 1/p) is None in test mode.
    """
    x, p, mode = _checked_dropout(x, dropout_param)
    if mode == "test":
        return x, (dropout_param, None)
    seed = dropout_param.get("seed")
    uniform = np.random.default_rng(seed).random(x.shape) if seed is not None else np.random.random(x.shape)
    mask = (uniform < p).astype(x.dtype) / x.dtype.type(p)
    return x * mask, (dropout_param, mask)


def dropout_backward(dout, cache):
    """
    Backward pass of inverted dropout: dx = dout * mask in training, dout in test mode.

    Inputs:
    - dout: upstream gradient, of the shape of x.
    - cache: (dropout_param, mask) from dropout_forward.

    Returns:
    - dx: gradient with respect to x.
    """
    dropout_param, mask = cache
    dout = _checked_dropout_dout(dout, mask)
    return dout if mask is None else dout * mask


def flatten_forward(x):
    """
    Flatten every sample to a row: (N, d_1, ..., d_k) -> (N, d_1 * ... * d_k).

    Inputs:
    - x: input of shape (N, d_1, ..., d_k).

    Returns a tuple of:
    - out: output of shape (N, D).
    - cache: the shape of x.
    """
    x = _checked_flatten(x)
    return x.reshape(x.shape[0], math.prod(x.shape[1:])), x.shape


def flatten_backward(dout, cache):
    """
    Backward pass of flatten: reshape the gradient back to the input's shape.

    Inputs:
    - dout: upstream gradient of shape (N, D).
    - cache: the shape of x from flatten_forward.

    Returns:
    - dx: gradient of shape (N, d_1, ..., d_k).
    """
    x_shape = cache
    dout = real_dout(dout, (x_shape[0], math.prod(x_shape[1:])))
    return dout.reshape(x_shape)


# ----------------------------------------------------------------------------- normalization
# Batch norm (Ioffe & Szegedy 2015), layer norm (Ba et al. 2016) and group norm (Wu & He
# 2018) all standardize x over some axes and then scale and shift per feature:
#
#     mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps),
#     out = gamma * xhat + beta.
#
# They differ only in the axes the statistics run over: the batch (batch norm), the
# features of one sample (layer norm), or groups of channels of one sample (group norm).
# var is the biased variance (divided by the count m, not m - 1), as in cs231n.

def _standardize(x, axes, eps):
    """(xhat, inv_std) of x standardized over `axes` (inv_std keeps the reduced dims)."""
    centered = x - x.mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + eps)
    return centered * inv_std, inv_std


def _standardize_backward(dxhat, xhat, inv_std, axes):
    """
    The gradient through xhat = (x - mean(x)) / sqrt(var(x) + eps) over `axes`, in closed
    form (derived in batchnorm_backward_alt; here the statistics run over the features of
    a sample, so the means cannot reuse the per-feature sums dgamma and dbeta):

        dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
    """
    return inv_std * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                      - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))


def batchnorm_forward(x, gamma, beta, bn_param):
    """
    Batch normalization: each feature is standardized over the batch, then scaled and
    shifted.

    Train mode uses the batch's statistics, per feature d:

        mu[d] = 1/N sum_n x[n, d],   var[d] = 1/N sum_n (x[n, d] - mu[d])^2,
        xhat[n, d] = (x[n, d] - mu[d]) / sqrt(var[d] + eps),
        out[n, d] = gamma[d] xhat[n, d] + beta[d],

    and updates the running statistics in bn_param (the one documented exception to
    "inputs are never modified": bn_param is the layer's state, as in cs231n):

        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var  = momentum * running_var  + (1 - momentum) * var

    (var is the biased variance, divided by N; PyTorch keeps the unbiased one in its
    running_var). Test mode normalizes with running_mean and running_var instead, so one
    sample's output does not depend on the rest of its batch.

    Inputs:
    - x: data of shape (N, D); train mode needs N >= 1.
    - gamma: scale of shape (D,).
    - beta: shift of shape (D,).
    - bn_param: dict with keys
      - 'mode': 'train' or 'test' (required).
      - 'eps': constant for numeric stability (default 1e-5).
      - 'momentum': decay of the running statistics (default 0.9).
      - 'running_mean', 'running_var': arrays of shape (D,) (zeros when absent). Train
        mode replaces them with the updated arrays (it does not write into the old ones).

    Returns a tuple of:
    - out: output of shape (N, D).
    - cache: (mode, xhat, centered, inv_std, gamma): xhat and centered = x - mu of shape
      (N, D), inv_std = 1 / sqrt(var + eps) of shape (D,).
    """
    x, gamma, beta, (mode, eps, momentum, running_mean, running_var) = _checked_batchnorm(
        x, gamma, beta, bn_param)
    dtype = np.result_type(x, gamma, beta)   # of the running statistics and of out
    if mode == "train":
        mu = x.mean(axis=0)
        centered = x - mu
        var = (centered * centered).mean(axis=0)
        bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mu
        bn_param["running_var"] = momentum * running_var + (1 - momentum) * var
    else:
        centered, var = x - running_mean, running_var
    inv_std = 1 / np.sqrt(var + eps)
    xhat = centered * inv_std
    out = gamma * xhat + beta
    return out.astype(dtype, copy=False), (mode, xhat, centered, inv_std, gamma)


def batchnorm_backward(dout, cache):
    """
    Backward pass of batch normalization, one node of the computational graph at a time.
    The forward pass in train mode, as a graph (per feature; sums run over the batch n):

        mu = 1/N sum x            (1)      var = 1/N sum centered^2       (3)
        centered = x - mu         (2)      inv_std = 1 / sqrt(var + eps)  (4)
        xhat = centered * inv_std (5)      out = gamma * xhat + beta      (6)

    Walking it backwards, each step applies the chain rule to one node; a value used by
    two nodes (centered, in 3 and 5; x, in 1 and 2) sums the gradients of both uses:

        (6) dbeta = sum dout,   dgamma = sum dout * xhat,   dxhat = dout * gamma
        (5) dinv_std = sum dxhat * centered,   dcentered = dxhat * inv_std
        (4) dvar = dinv_std * (-1/2) (var + eps)^(-3/2) = -1/2 dinv_std inv_std^3
        (3) dcentered += dvar * 2 centered / N
        (2) dmu = -sum dcentered,   dx = dcentered
        (1) dx += dmu / N

    In test mode mu and var are the running statistics, constants, so only (6) and
    dx = dxhat * inv_std remain.

    Derivation: docs/derivations.md#batch-normalization

    Inputs:
    - dout: upstream gradient of shape (N, D).
    - cache: from batchnorm_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, D).
    - dgamma: gradient with respect to gamma, of shape (D,).
    - dbeta: gradient with respect to beta, of shape (D,).
    """
    mode, xhat, centered, inv_std, gamma = cache
    dout = real_dout(dout, xhat.shape)
    N = xhat.shape[0]
    dbeta = dout.sum(axis=0)                                 # (6)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    if mode == "test":
        return dxhat * inv_std, dgamma, dbeta
    dinv_std = (dxhat * centered).sum(axis=0)                # (5)
    dcentered = dxhat * inv_std
    dvar = -0.5 * dinv_std * inv_std ** 3                    # (4)
    dcentered = dcentered + dvar * 2 * centered / N          # (3)
    dmu = -dcentered.sum(axis=0)                             # (2)
    dx = dcentered + dmu / N                                 # (1)
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """
    Backward pass of batch normalization in closed form: the graph of batchnorm_backward
    collapsed into one expression that reuses the two sums dgamma and dbeta, so it makes
    fewer passes over the (N, D) arrays.

    Derivation, per feature (sums over the batch n). Substitute the steps of the graph:
    dcentered = dxhat * inv_std + dvar * 2 centered / N with
    dvar = -1/2 inv_std^3 sum(dxhat * centered), and centered = xhat / inv_std:

        dcentered = inv_std * (dxhat - xhat * 1/N sum(dxhat * xhat)).

    Then dx = dcentered - 1/N sum dcentered, and 1/N sum dcentered
    = inv_std * (1/N sum dxhat - (1/N sum xhat) * (...)) = inv_std * 1/N sum dxhat,
    because xhat has mean 0 over the batch. So

        dx = inv_std / N * (N dxhat - sum dxhat - xhat * sum(dxhat * xhat)).

    With dxhat = gamma * dout, the two sums are gamma * dbeta and gamma * dgamma:

        dx = gamma * inv_std / N * (N dout - dbeta - xhat * dgamma).

    Derivation: docs/derivations.md#batch-normalization

    Inputs and outputs: as batchnorm_backward.
    """
    mode, xhat, _, inv_std, gamma = cache
    dout = real_dout(dout, xhat.shape)
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    if mode == "test":
        return dout * (gamma * inv_std), dgamma, dbeta
    N = xhat.shape[0]
    return (gamma * inv_std / N) * (N * dout - dbeta - xhat * dgamma), dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """
    Layer normalization: each sample (row) is standardized over its own features, then
    scaled and shifted per feature. Per sample n (sums over the features d):

        mu[n] = 1/D sum_d x[n, d],   var[n] = 1/D sum_d (x[n, d] - mu[n])^2,
        out[n, d] = gamma[d] (x[n, d] - mu[n]) / sqrt(var[n] + eps) + beta[d].

    The same in training and at test time, and independent of the batch (no running
    statistics).

    Inputs:
    - x: data of shape (N, D).
    - gamma: scale of shape (D,).
    - beta: shift of shape (D,).
    - ln_param: dict with optional key 'eps' (default 1e-5).

    Returns a tuple of:
    - out: output of shape (N, D).
    - cache: (xhat, inv_std, gamma), xhat (N, D) the standardized x and inv_std (N, 1).
    """
    x, gamma, beta, eps = _checked_layernorm(x, gamma, beta, ln_param)
    xhat, inv_std = _standardize(x, 1, eps)
    return gamma * xhat + beta, (xhat, inv_std, gamma)


def layernorm_backward(dout, cache):
    """
    Backward pass of layer normalization: the closed form of batchnorm_backward_alt with
    the statistics taken over the features of each row instead of over the batch,

        dx[n] = inv_std[n] * (dxhat[n] - mean_d dxhat[n] - xhat[n] * mean_d(dxhat[n] * xhat[n]))

    with dxhat = gamma * dout; dgamma = sum_n dout * xhat, dbeta = sum_n dout.

    Derivation: docs/derivations.md#layer-normalization

    Inputs:
    - dout: upstream gradient of shape (N, D).
    - cache: (xhat, inv_std, gamma) from layernorm_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, D).
    - dgamma, dbeta: gradients of shape (D,).
    """
    xhat, inv_std, gamma = cache
    dout = real_dout(dout, xhat.shape)
    dx = _standardize_backward(dout * gamma, xhat, inv_std, 1)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def _channels_last(x):
    """(N, C, H, W) -> (N * H * W, C): one row per pixel, one column per channel."""
    N, C, H, W = x.shape
    return x.transpose(0, 2, 3, 1).reshape(N * H * W, C)


def _channels_first(rows, shape):
    """The inverse of _channels_last, back to `shape` (N, C, H, W)."""
    N, C, H, W = shape
    return rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """
    Spatial batch normalization: batch norm of each channel over the batch and all pixels,
    i.e. batchnorm_forward on x viewed as (N * H * W, C) rows (the statistics of a channel
    are shared by all its positions, as a convolution's weights are).

    Inputs:
    - x: data of shape (N, C, H, W).
    - gamma, beta: scale and shift of shape (C,).
    - bn_param: as in batchnorm_forward (running statistics of shape (C,), updated in
      train mode).

    Returns a tuple of:
    - out: output of shape (N, C, H, W).
    - cache: (batchnorm cache, shape of x).
    """
    x, gamma, beta = _checked_channels(x, gamma, beta)
    rows, cache = batchnorm_forward(_channels_last(x), gamma, beta, bn_param)
    return _channels_first(rows, x.shape), (cache, x.shape)


def spatial_batchnorm_backward(dout, cache):
    """
    Backward pass of spatial batch normalization: batchnorm_backward_alt on the
    (N * H * W, C) view.

    Derivation: docs/derivations.md#batch-normalization

    Inputs:
    - dout: upstream gradient of shape (N, C, H, W).
    - cache: from spatial_batchnorm_forward.

    Returns a tuple of:
    - dx: gradient of shape (N, C, H, W).
    - dgamma, dbeta: gradients of shape (C,).
    """
    rows_cache, shape = cache
    dout = real_dout(dout, shape)
    drows, dgamma, dbeta = batchnorm_backward_alt(_channels_last(dout), rows_cache)
    return _channels_first(drows, shape), dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """
    Spatial group normalization: the C channels of each sample are split into G groups
    of C / G consecutive channels, and each group is standardized over its channels and
    pixels (layer norm per group), then scaled and shifted per channel:

        xhat[n, g] = (x[n, g] - mu[n, g]) / sqrt(var[n, g] + eps),  statistics over the
        group's C/G x H x W values;   out[n, c] = gamma[c] xhat[n, c] + beta[c].

    G = 1 is layer norm over (C, H, W); G = C normalizes each channel alone (instance norm).

    Inputs:
    - x: data of shape (N, C, H, W), C divisible by G.
    - gamma, beta: scale and shift of shape (1, C, 1, 1).
    - G: number of groups, a positive integer dividing C.
    - gn_param: dict with optional key 'eps' (default 1e-5).

    Returns a tuple of:
    - out: output of shape (N, C, H, W).
    - cache: (xhat, inv_std, gamma, G): xhat (N, G, C/G, H, W), inv_std (N, G, 1, 1, 1).
    """
    x, gamma, beta, eps = checked_groupnorm(x, gamma, beta, G, gn_param)
    N, C, H, W = x.shape
    groups = x.reshape(N, G, C // G, H, W)
    xhat, inv_std = _standardize(groups, (2, 3, 4), eps)
    out = gamma * xhat.reshape(x.shape) + beta
    return out, (xhat, inv_std, gamma, G)


def spatial_groupnorm_backward(dout, cache):
    """
    Backward pass of spatial group normalization: the closed form of
    batchnorm_backward_alt over each group's C/G x H x W values.

    Derivation: docs/derivations.md#layer-normalization

    Inputs:
    - dout: upstream gradient of shape (N, C, H, W).
    - cache: (xhat, inv_std, gamma, G) from spatial_groupnorm_forward.

    Returns a tuple of:
    - dx: gradient of shape (N, C, H, W).
    - dgamma, dbeta: gradients of shape (1, C, 1, 1).
    """
    xhat, inv_std, gamma, G = cache
    N, _, group_size, H, W = xhat.shape
    shape = (N, G * group_size, H, W)
    dout = real_dout(dout, shape)
    flat_xhat = xhat.reshape(shape)
    dgamma = (dout * flat_xhat).sum(axis=(0, 2, 3), keepdims=True)
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dxhat = (dout * gamma).reshape(xhat.shape)
    dx = _standardize_backward(dxhat, xhat, inv_std, (2, 3, 4))
    return dx.reshape(shape), dgamma, dbeta


# ----------------------------------------------------------------------------- checks
# The argument checks of the layers above, one call per layer. The rules shared with the
# other layer files and kernels.py (real_array, real_dout, check_conv_arguments,
# check_pool_arguments, check_bn_param...) live in validation.py, so that the reference
# and the fast kernels raise the same errors. Each check raises at once, building its
# message only then: an f-string passed to a helper would be formatted on every call
# (~20 us per training step of a small MLP).


def _check_batch_axis(x):
    """x must have a batch axis (at least one dimension)."""
    if x.ndim < 1:
        raise ValueError(f"x must have a batch axis, got shape {x.shape}")


def _checked_fc(x, w, b):
    """x (N, d_1, ..., d_k), w (D, M) and b (M,) as real arrays, D = d_1 * ... * d_k."""
    x, w, b = real_array("x", x), real_array("w", w), real_array("b", b)
    _check_batch_axis(x)
    check_ndim("w", w, 2, "(D, M)")
    D = math.prod(x.shape[1:])
    if w.shape[0] != D:
        raise ValueError(f"w has shape {w.shape} but x of shape {x.shape} flattens to D={D}: "
                         f"expected w of shape ({D}, M)")
    if b.shape != (w.shape[1],):
        raise ValueError(f"b has shape {b.shape}, expected ({w.shape[1]},) to match w {w.shape}")
    return x, w, b


def _checked_conv(x, w, b=None, stride=1, pad=0):
    """x (N, C, H, W), w (F, C, HH, WW) and b (F,) or None as real arrays; stride and pad
    as check_conv_arguments wants them."""
    x, w = real_array("x", x), real_array("w", w)
    b = None if b is None else real_array("b", b)
    check_conv_arguments(x, w, b, stride, pad)
    return x, w, b


def _checked_conv_dout(dout, x, w, b=None, stride=1, pad=0):
    """dout as a real array of the shape of the convolution's output, (N, F, OH, OW)."""
    dout = real_array("dout", dout)
    check_dout(dout, (x.shape[0], w.shape[0], *check_conv_arguments(x, w, b, stride, pad)))
    return dout


def _checked_pool(x, pool_param):
    """x (N, C, H, W) as a real array, pool_param's window fitting in it."""
    x = real_array("x", x)
    check_pool_arguments(x, pool_param)
    return x


def _checked_pool_dout(dout, x, pool_param):
    """dout as a real array of the shape of the pooling's output, (N, C, OH, OW)."""
    dout = real_array("dout", dout)
    *_, out_height, out_width = check_pool_arguments(x, pool_param)
    check_dout(dout, (*x.shape[:2], out_height, out_width))
    return dout


def _checked_scores(x):
    """x as a real array of scores (N, C)."""
    x = real_array("x", x)
    check_ndim("x", x, 2, "(N, C)")
    return x


def _checked_loss(name, scores, y):
    """scores (N, C) as a real array free of NaN, and y as integer labels (N,) in [0, C)."""
    scores = real_array(name, scores)
    y = _checked_labels(y, scores)
    if np.isnan(scores).any():
        raise ValueError(f"{name} holds NaN at {np.argwhere(np.isnan(scores))[0].tolist()}: "
                         f"the loss of NaN scores is undefined (look for an overflow or a "
                         f"NaN input upstream)")
    return scores, y


def _checked_labels(y, scores):
    """Labels must be integers in [0, C), one per row of scores (N, C)."""
    check_ndim("x", scores, 2, "(N, C)")
    N, C = scores.shape
    y = y if isinstance(y, np.ndarray) else as_array("y", y)
    if y.shape != (N,):
        raise ValueError(f"y has shape {y.shape}, expected ({N},) to match x {scores.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    if not (N == 0 or (y.min() >= 0 and y.max() < C)):
        raise ValueError(f"y has labels in [{y.min()}, {y.max()}], expected them in [0, {C}) "
                         f"for x of shape {scores.shape}")
    return y


def _checked_dropout(x, dropout_param):
    """x as a real array, and dropout_param's keep probability p (a float in (0, 1]) and
    mode ('train' or 'test')."""
    x = real_array("x", x)
    p = check_keep_prob("dropout_param['p']", dropout_param.get("p"))
    mode = dropout_param.get("mode")
    if mode not in ("train", "test"):
        raise ValueError(f"dropout_param['mode'] must be 'train' or 'test', got {mode!r}")
    return x, p, mode


def _checked_dropout_dout(dout, mask):
    """dout as a real array, of the mask's shape in training (test mode kept no mask)."""
    return real_array("dout", dout) if mask is None else real_dout(dout, mask.shape)


def _checked_flatten(x):
    """x as a real array with a batch axis."""
    x = real_array("x", x)
    _check_batch_axis(x)
    return x


def _checked_features(x, gamma, beta):
    """x (N, D), and gamma and beta of one value per feature (D,), as real arrays."""
    x = real_array("x", x)
    check_ndim("x", x, 2, "(N, D)")
    gamma, beta = check_scale_shift(gamma, beta, (x.shape[1],), "one per feature of x (N, D)")
    return x, gamma, beta


def _checked_channels(x, gamma, beta):
    """x (N, C, H, W), and gamma and beta of one value per channel (C,), as real arrays
    (group norm's (1, C, 1, 1) ones: validation.checked_groupnorm)."""
    x = real_array("x", x)
    check_ndim("x", x, 4, "(N, C, H, W)")
    gamma, beta = check_scale_shift(gamma, beta, (x.shape[1],), "one per channel of x (N, C, H, W)")
    return x, gamma, beta


def _checked_batchnorm(x, gamma, beta, bn_param):
    """x, gamma, beta as _checked_features, and bn_param's settings (mode, eps, momentum,
    running_mean, running_var) from check_bn_param, the running statistics in the dtype of
    the output."""
    x, gamma, beta = _checked_features(x, gamma, beta)
    N, D = x.shape
    settings = check_bn_param(bn_param, D, np.result_type(x, gamma, beta), N)
    return x, gamma, beta, settings


def _checked_layernorm(x, gamma, beta, ln_param):
    """x, gamma, beta as _checked_features, and ln_param's eps."""
    x, gamma, beta = _checked_features(x, gamma, beta)
    return x, gamma, beta, check_eps("ln_param", ln_param)

