"""
The grader's own (trusted) layer functions, for running a student's model with correct
layers: `submission.function('cnn', 'ConvNet', trusted=TRUSTED)` (grader/runner.py) makes
the model's layer calls come back here, so a bug in the student's layers.py does not also
cost the model's points.

The functions follow Part 1 of docs/API.md (the homework's contract): names, argument
order, shapes, return values, NumPy's type promotion, and caches that are plain tuples
of arrays, dicts and numbers (they travel to the child and back). They are vectorized
NumPy and import nothing else; they do not use layers.py (the reference solution of the
student files, which is not shipped with the grader).

The arguments come from the student's model, so they are hostile input: every function
checks types, shapes, index ranges and that a cache is one its forward could have
produced, and raises ValueError with a clear message instead of computing garbage. It
also refuses work beyond MAX_WORK multiply-adds or temporaries beyond MAX_TEMPORARY
numbers, so a model cannot make the grader compute for long (the runner also bounds the
size of the arguments).
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MAX_WORK = 200_000_000        # multiply-adds (or comparisons) of one call
MAX_TEMPORARY = 25_000_000    # numbers in one intermediate or output array


# ------------------------------------------------------------------------- checks

def _real(name, value):
    """value as an array of real numbers: float arrays as they are, integer and bool ones
    as float64; anything else raises ValueError."""
    if isinstance(value, (bool, int, float, np.generic, list, tuple)) and not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except ValueError:
            raise ValueError(f"{name} is not a rectangular array of numbers") from None
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be an array of real numbers, got {type(value).__name__}")
    if value.dtype.kind == "f":
        return value
    if value.dtype.kind in "biu":
        return value.astype(np.float64)
    raise ValueError(f"{name} must hold real numbers, got dtype {value.dtype}")


def _integers(name, value, size, what, where=None):
    """An integer array whose entries (where `where` is True) lie in [0, size)."""
    if not isinstance(value, (np.ndarray, np.generic, int, list, tuple)) or isinstance(value, bool):
        raise ValueError(f"{name} must be an array of integer {what}, got {type(value).__name__}")
    try:
        value = np.asarray(value)
    except ValueError:
        raise ValueError(f"{name} is not a rectangular array of {what}") from None
    if value.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer {what}, got dtype {value.dtype}")
    checked = value if where is None else value[where]
    if checked.size and not (checked.min() >= 0 and checked.max() < size):
        raise ValueError(f"{name} has {what} in [{checked.min()}, {checked.max()}], expected "
                         f"them in [0, {size})")
    return value


def _ndim(name, array, ndim, layout):
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {array.shape}")


def _shape(name, array, expected, why=""):
    if array.shape != tuple(expected):
        raise ValueError(f"{name} has shape {array.shape}, expected {tuple(expected)}{why}")


def _cache(function, cache, names):
    """The entries of a cache tuple, which must have exactly len(names) of them."""
    if not (isinstance(cache, (tuple, list)) and len(cache) == len(names)):
        raise ValueError(f"cache must be the tuple ({', '.join(names)}) that {function} "
                         f"returned, got {_describe(cache)}")
    return cache


def _describe(value):
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} entries"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return f"a {type(value).__name__}"


def _bound(function, work, temporary=0):
    if work > MAX_WORK:
        raise ValueError(f"{function} would take {work} operations, more than the "
                         f"{MAX_WORK} the grader computes")
    if temporary > MAX_TEMPORARY:
        raise ValueError(f"{function} would need an array of {temporary} numbers, more "
                         f"than the {MAX_TEMPORARY} the grader allocates")


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


# ------------------------------------------------------------------------- layers

def _fc_arguments(x, w, b):
    x, w, b = _real("x", x), _real("w", w), _real("b", b)
    if x.ndim < 1:
        raise ValueError(f"x must have a batch axis, got shape {x.shape}")
    _ndim("w", w, 2, "(D, M)")
    N, D = x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64))
    if w.shape[0] != D:
        raise ValueError(f"w has shape {w.shape} but x of shape {x.shape} flattens to D={D}")
    _shape("b", b, (w.shape[1],), f" to match w {w.shape}")
    _bound("fc", N * D * w.shape[1], N * w.shape[1])
    return x, w, b, N, D


def fc_forward(x, w, b):
    """out = x.reshape(N, D) @ w + b; cache (x, w, b)."""
    x, w, b, N, D = _fc_arguments(x, w, b)
    return x.reshape(N, D) @ w + b, (x, w, b)


def fc_backward(dout, cache, need_dx=True):
    """dx (shape of x; None without need_dx), dw (D, M), db (M,)."""
    x, w, b = _cache("fc_forward", cache, ("x", "w", "b"))
    x, w, b, N, D = _fc_arguments(x, w, b)
    dout = _real("dout", dout)
    _shape("dout", dout, (N, w.shape[1]), " (the forward output's shape)")
    dx = (dout @ w.T).reshape(x.shape) if _flag("need_dx", need_dx) else None
    return dx, x.reshape(N, D).T @ dout, dout.sum(axis=0)


def relu_forward(x):
    """out = max(x, 0); cache x."""
    x = _real("x", x)
    _bound("relu_forward", x.size, x.size)
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0."""
    x, dout = _real("cache", cache), _real("dout", dout)
    _shape("dout", dout, x.shape, " (the shape of the cached x)")
    return dout * (x > 0)


def _conv_arguments(x, w):
    x, w = _real("x", x), _real("w", w)
    _ndim("x", x, 4, "(N, C, H, W)")
    _ndim("w", w, 4, "(F, C, HH, WW)")
    N, C, H, W = x.shape
    F, C2, HH, WW = w.shape
    if C2 != C:
        raise ValueError(f"w has C={C2} channels but x has C={C}: x {x.shape}, w {w.shape}")
    if HH > H or WW > W or HH < 1 or WW < 1:
        raise ValueError(f"w's {HH}x{WW} kernel does not fit x's {H}x{W} input")
    OH, OW = H - HH + 1, W - WW + 1
    _bound("conv", N * F * C * OH * OW * HH * WW, N * max(C, F) * H * W)
    return x, w, (N, F, OH, OW)


# The convolutions loop over the HH x WW kernel offsets (k, l): each adds one product of
# the shifted input (or gradient) with the (F, C) weights of that offset, so no
# temporary is larger than the input.

def conv_forward(x, w):
    """out[n, f, i, j] = sum_{c, k, l} x[n, c, i + k, j + l] w[f, c, k, l]: filtering
    (cross-correlation), stride 1, no padding, no bias; cache (x, w)."""
    x, w, (N, F, OH, OW) = _conv_arguments(x, w)
    out = np.zeros((N, F, OH, OW), dtype=np.result_type(x, w))
    for k in range(w.shape[2]):
        for l in range(w.shape[3]):
            out += np.einsum("ncij,fc->nfij", x[:, :, k:k + OH, l:l + OW], w[:, :, k, l])
    return out, (x, w)


def conv_backward(dout, cache):
    """dx[n, c, i + k, j + l] += dout[n, f, i, j] w[f, c, k, l] (the full convolution of
    dout with w) and dw[f, c, k, l] = sum_{n, i, j} x[n, c, i + k, j + l] dout[n, f, i, j]."""
    x, w = _cache("conv_forward", cache, ("x", "w"))
    x, w, out_shape = _conv_arguments(x, w)
    dout = _real("dout", dout)
    _shape("dout", dout, out_shape, " (the forward output's shape)")
    OH, OW = out_shape[2:]
    dx = np.zeros(x.shape, dtype=np.result_type(x, w, dout))
    dw = np.zeros(w.shape, dtype=np.result_type(x, w, dout))
    for k in range(w.shape[2]):
        for l in range(w.shape[3]):
            dx[:, :, k:k + OH, l:l + OW] += np.einsum("nfij,fc->ncij", dout, w[:, :, k, l])
            dw[:, :, k, l] = np.einsum("nfij,ncij->fc", dout, x[:, :, k:k + OH, l:l + OW])
    return dx, dw


def _pool_arguments(x, pool_param):
    x = _real("x", x)
    _ndim("x", x, 4, "(N, C, H, W)")
    if not (isinstance(pool_param, dict)
            and all(key in pool_param for key in ("pool_height", "pool_width", "stride"))):
        raise ValueError("pool_param must be a dict with keys 'pool_height', 'pool_width' "
                         "and 'stride'")
    values = [pool_param[key] for key in ("pool_height", "pool_width", "stride")]
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 1
               for v in values):
        raise ValueError(f"pool_param values must be positive integers, got {values}")
    height, width, stride = (int(v) for v in values)
    if height > x.shape[2] or width > x.shape[3]:
        raise ValueError(f"pool window {height}x{width} is larger than x's "
                         f"{x.shape[2]}x{x.shape[3]}")
    N, C, H, W = x.shape
    OH, OW = (H - height) // stride + 1, (W - width) // stride + 1
    size = N * C * OH * OW * height * width
    _bound("max_pool", size, size)
    param = {"pool_height": height, "pool_width": width, "stride": stride}
    return x, param, (N, C, OH, OW)


def _windows(x, param, out_shape):
    """(N, C, OH, OW, ph * pw): entry k * pw + l of window (i, j) is x[n, c, s i + k, s j + l]."""
    height, width, stride = param["pool_height"], param["pool_width"], param["stride"]
    view = sliding_window_view(x, (height, width), axis=(2, 3))[:, :, ::stride, ::stride]
    return view.reshape(*out_shape, height * width)


def max_pool_forward(x, pool_param):
    """Max over each window; cache (x, pool_param)."""
    x, param, out_shape = _pool_arguments(x, pool_param)
    return _windows(x, param, out_shape).max(axis=-1), (x, param)


def max_pool_backward(dout, cache):
    """Each window's gradient to its first max (row-major); overlapping windows add up."""
    x, pool_param = _cache("max_pool_forward", cache, ("x", "pool_param"))
    x, param, out_shape = _pool_arguments(x, pool_param)
    dout = _real("dout", dout)
    _shape("dout", dout, out_shape, " (the forward output's shape)")
    choice = _windows(x, param, out_shape).argmax(axis=-1)
    n, c, i, j = np.indices(out_shape, sparse=True)
    rows = param["stride"] * i + choice // param["pool_width"]
    columns = param["stride"] * j + choice % param["pool_width"]
    dx = np.zeros(x.shape, dtype=np.result_type(x, dout))
    np.add.at(dx, (n, c, rows, columns), dout)
    return dx


def softmax_loss(x, y):
    """loss = mean over n of -log softmax(x[n])[y[n]]; dx (N, C)."""
    x = _real("x", x)
    _ndim("x", x, 2, "(N, C)")
    N, C = x.shape
    _bound("softmax_loss", N * C, N * C)
    y = _integers("y", y, C, "labels")
    _shape("y", y, (N,), f" to match x {x.shape}")
    if np.isnan(x).any():
        raise ValueError("x holds NaN: the loss of NaN scores is undefined")
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(N)
    loss = -log_probs[rows, y].sum() / max(N, 1)
    dx = np.exp(log_probs)
    dx[rows, y] -= 1
    return loss, dx / max(N, 1)


# ------------------------------------------------------------------------- rnn_layers

def _cell_arguments(x, layout, h_name, h, Wx, Wh, b):
    """Shapes of a vanilla RNN's inputs: x (..., N, D), h (N, H), Wx (D, H), Wh (H, H), b (H,)."""
    x, h, Wx, Wh, b = (_real(n, v) for n, v in (("x", x), (h_name, h), ("Wx", Wx), ("Wh", Wh), ("b", b)))
    _ndim("x", x, len(layout.split(",")), layout)
    _ndim(h_name, h, 2, "(N, H)")
    N, D = x.shape[-2:]
    H = h.shape[1]
    _shape(h_name, h, (N, H), f" to match N={N} of x {x.shape}")
    _shape("Wx", Wx, (D, H), f" for x {x.shape} and {h_name} {h.shape}")
    _shape("Wh", Wh, (H, H), f" for {h_name} {h.shape}")
    _shape("b", b, (H,), f" for {h_name} {h.shape}")
    steps = x.shape[0] if x.ndim == 3 else 1
    _bound("rnn", steps * N * H * (D + H), steps * N * max(D, H))
    return x, h, Wx, Wh, b


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """next_h = tanh(x @ Wx + prev_h @ Wh + b); cache (Wx, Wh, x, prev_h, h_raw)."""
    x, prev_h, Wx, Wh, b = _cell_arguments(x, "(N, D)", "prev_h", prev_h, Wx, Wh, b)
    h_raw = x @ Wx + prev_h @ Wh + b
    return np.tanh(h_raw), (Wx, Wh, x, prev_h, h_raw)


def rnn_step_backward(dnext_h, cache):
    """dx, dprev_h, dWx, dWh, db of one step."""
    Wx, Wh, x, prev_h, h_raw = _cache("rnn_step_forward", cache, ("Wx", "Wh", "x", "prev_h", "h_raw"))
    x, prev_h, Wx, Wh, _ = _cell_arguments(x, "(N, D)", "prev_h", prev_h, Wx, Wh,
                                           np.zeros(np.shape(Wh)[:1]))
    h_raw, dnext_h = _real("h_raw", h_raw), _real("dnext_h", dnext_h)
    _shape("h_raw", h_raw, prev_h.shape, " (the shape of prev_h)")
    _shape("dnext_h", dnext_h, prev_h.shape, " (the forward output's shape)")
    next_h = np.tanh(h_raw)
    da = dnext_h * (1 - next_h * next_h)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    """h (T, N, H) over a time-major x (T, N, D); cache (x, h0, Wx, Wh, b, h)."""
    x, h0, Wx, Wh, b = _cell_arguments(x, "(T, N, D)", "h0", h0, Wx, Wh, b)
    T, N, D = x.shape
    projected = x @ Wx + b
    h = np.empty((T, N, h0.shape[1]), dtype=np.result_type(x, h0, Wx, Wh, b))
    prev_h = h0
    for t in range(T):
        prev_h = h[t] = np.tanh(projected[t] + prev_h @ Wh)
    return h, (x, h0, Wx, Wh, b, h)


def rnn_backward(dh, cache):
    """dx (T, N, D), dh0, dWx, dWh, db: backpropagation through time."""
    x, h0, Wx, Wh, b, h = _cache("rnn_forward", cache, ("x", "h0", "Wx", "Wh", "b", "h"))
    x, h0, Wx, Wh, b = _cell_arguments(x, "(T, N, D)", "h0", h0, Wx, Wh, b)
    h, dh = _real("h", h), _real("dh", dh)
    T, N, D = x.shape
    _shape("h", h, (T, N, h0.shape[1]), " (the forward output's shape)")
    if np.abs(h).max(initial=0) > 1:
        raise ValueError("h holds values outside [-1, 1]: not the tanh states of rnn_forward")
    _shape("dh", dh, h.shape, " (the forward output's shape)")
    da = np.empty(h.shape, dtype=np.result_type(dh, h, Wh))
    dprev = np.zeros(h0.shape, dtype=da.dtype)
    for t in reversed(range(T)):
        da[t] = (dh[t] + dprev) * (1 - h[t] * h[t])
        dprev = da[t] @ Wh.T
    previous = np.concatenate([h0[None], h[:-1]], axis=0)
    dWx = np.einsum("tnd,tnh->dh", x, da)
    dWh = np.einsum("tnk,tnh->kh", previous, da)
    return da @ Wx.T, dprev, dWx, dWh, da.sum(axis=(0, 1))


def word_embedding_forward(x, W):
    """out[n, t] = W[x[n, t]]; cache (x, W)."""
    W = _real("W", W)
    _ndim("W", W, 2, "(V, D)")
    x = _integers("x", x, W.shape[0], "word indices")
    _bound("word_embedding", x.size * W.shape[1], x.size * W.shape[1])
    return W[x], (x, W)


def word_embedding_backward(dout, cache):
    """dW (V, D): the sum of the gradients of every use of each word."""
    x, W = _cache("word_embedding_forward", cache, ("x", "W"))
    W = _real("W", W)
    _ndim("W", W, 2, "(V, D)")
    x = _integers("x", x, W.shape[0], "word indices")
    _bound("word_embedding", x.size * W.shape[1], W.size + x.size * W.shape[1])
    dout = _real("dout", dout)
    _shape("dout", dout, x.shape + W.shape[1:], " (the forward output's shape)")
    dW = np.zeros(W.shape, dtype=np.result_type(W, dout))
    np.add.at(dW, x, dout)
    return dW


def _temporal_fc_arguments(x, w, b):
    x, w, b = _real("x", x), _real("w", w), _real("b", b)
    _ndim("x", x, 3, "(N, T, D)")
    _ndim("w", w, 2, "(D, M)")
    N, T, D = x.shape
    _shape("w", w, (D, w.shape[1]), f" to match D={D} of x {x.shape}")
    _shape("b", b, (w.shape[1],), f" to match w {w.shape}")
    _bound("temporal_fc", N * T * D * w.shape[1], N * T * w.shape[1])
    return x, w, b


def temporal_fc_forward(x, w, b):
    """out[n, t] = x[n, t] @ w + b; cache exactly (x, w, b, out)."""
    x, w, b = _temporal_fc_arguments(x, w, b)
    out = x @ w + b
    return out, (x, w, b, out)


def temporal_fc_backward(dout, cache):
    """dx (N, T, D), dw (D, M), db (M,)."""
    x, w, b, out = _cache("temporal_fc_forward", cache, ("x", "w", "b", "out"))
    x, w, b = _temporal_fc_arguments(x, w, b)
    out, dout = _real("out", out), _real("dout", dout)
    expected = x.shape[:2] + w.shape[1:]
    _shape("out", out, expected, " (the forward output's shape)")
    _shape("dout", dout, expected, " (the forward output's shape)")
    return dout @ w.T, np.einsum("ntd,ntm->dm", x, dout), dout.sum(axis=(0, 1))


def temporal_softmax_loss(x, y, mask):
    """loss = -(1/N) sum over masked (n, t) of log softmax(x[n, t])[y[n, t]]; dx (N, T, V)."""
    x = _real("x", x)
    _ndim("x", x, 3, "(N, T, V)")
    N, T, V = x.shape
    _bound("temporal_softmax_loss", N * T * V, N * T * V)
    if not isinstance(mask, (np.ndarray, list, tuple)):
        raise ValueError(f"mask must be a boolean array, got {type(mask).__name__}")
    mask = np.asarray(mask)
    _shape("mask", mask, (N, T), f" to match x {x.shape}")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iuf" or not np.all((mask == 0) | (mask == 1)):
            raise ValueError(f"mask must be boolean (or hold only 0 and 1), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    y = _integers("y", y, V, "labels", where=mask if np.shape(y) == (N, T) else None)
    _shape("y", y, (N, T), f" to match x {x.shape}")
    y = np.where(mask, y, 0)
    shifted = x - x.max(axis=2, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    n, t = np.arange(N)[:, None], np.arange(T)
    loss = -np.where(mask, log_probs[n, t, y], 0).sum() / max(N, 1)
    dx = np.exp(log_probs)
    dx[n, t, y] -= 1
    dx = np.where(mask[:, :, None], dx / max(N, 1), 0)
    return loss, dx.astype(log_probs.dtype, copy=False)


TRUSTED = {
    "layers": {f.__name__: f for f in (
        fc_forward, fc_backward, relu_forward, relu_backward, conv_forward, conv_backward,
        max_pool_forward, max_pool_backward, softmax_loss)},
    "rnn_layers": {f.__name__: f for f in (
        rnn_step_forward, rnn_step_backward, rnn_forward, rnn_backward,
        word_embedding_forward, word_embedding_backward, temporal_fc_forward,
        temporal_fc_backward, temporal_softmax_loss)},
}
