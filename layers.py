"""Feed-forward layers with hand-derived backward passes.

Every forward function returns (out, cache) and every backward function takes
(dout, cache), where dout is the gradient of the loss with respect to out. Inputs are
never modified. Outputs follow NumPy's type promotion of the inputs, so float32 in gives
float32 out. A wrong shape raises ValueError naming the argument and both shapes.

Part 1 of ../shared/API.md (fc, relu, conv, max pool, softmax loss) is a drop-in
contract for the cs231n-style homework; the rest (strided/padded convolution with bias,
dropout, log-softmax, NLL, flatten) is ours.
"""
import math
import numbers

import numpy as np
from numpy.lib.stride_tricks import as_strided


# ----------------------------------------------------------------------------- checks
# Each check raises at once, building its message only then: an f-string passed to a
# helper would be formatted on every call (~20 us per training step of a small MLP).


def _check_ndim(name, array, ndim, layout):
    if np.ndim(array) != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {np.shape(array)}")


def _check_dout(dout, expected_shape):
    if np.shape(dout) != tuple(expected_shape):
        raise ValueError(f"dout has shape {np.shape(dout)}, expected the forward output's "
                         f"shape {tuple(expected_shape)}")


def _check_labels(y, scores):
    """Labels must be integers in [0, C), one per row of scores (N, C)."""
    _check_ndim("x", scores, 2, "(N, C)")
    N, C = scores.shape
    y = np.asarray(y)
    if y.shape != (N,):
        raise ValueError(f"y has shape {y.shape}, expected ({N},) to match x {scores.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    if not (N == 0 or (y.min() >= 0 and y.max() < C)):
        raise ValueError(f"y has labels in [{y.min()}, {y.max()}], expected them in [0, {C}) "
                         f"for x of shape {scores.shape}")
    return y


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
    if np.ndim(x) < 1:
        raise ValueError(f"x must have a batch axis, got shape {np.shape(x)}")
    _check_ndim("w", w, 2, "(D, M)")
    N, D = x.shape[0], math.prod(x.shape[1:])
    if w.shape[0] != D:
        raise ValueError(f"w has shape {w.shape} but x of shape {x.shape} flattens to D={D}: "
                         f"expected w of shape ({D}, M)")
    if np.shape(b) != (w.shape[1],):
        raise ValueError(f"b has shape {np.shape(b)}, expected ({w.shape[1]},) to match w "
                         f"{w.shape}")
    out = x.reshape(N, D) @ w + b
    return out, (x, w, b)


def fc_backward(dout, cache, need_dx=True):
    """
    Backward pass of the fully connected layer. With X = x_flat (N, D):
    out[n, m] = sum_d X[n, d] w[d, m] + b[m], so

        dX = dout @ w.T,   dw = X.T @ dout,   db = sum_n dout[n].

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
    _check_dout(dout, (N, w.shape[1]))
    dx = (dout @ w.T).reshape(x.shape) if need_dx else None
    dw = x.reshape(N, -1).T @ dout
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
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """
    Backward pass of ReLU: the gradient passes where x > 0 and is 0 elsewhere
    (we take the subgradient 0 at x = 0).

    Inputs:
    - dout: upstream gradient, of the shape of x.
    - cache: x from relu_forward.

    Returns:
    - dx: gradient with respect to x.
    """
    x = cache
    _check_dout(dout, x.shape)
    return dout * (x > 0)


# ----------------------------------------------------------------------------- convolution

def _flat_padded(x, pad):
    """
    x (N, C, H, W) zero-padded by `pad` on every side, plus one more row of zeros at the
    bottom, with each channel's image flattened: shape (N, C, (Hp + 1) * Wp) for the
    padded size Hp x Wp, pixel (r, q) of the padded image at entry r * Wp + q. (The
    discarded outputs of the last row, see _conv_geometry, read into the extra row.)
    """
    N, C, H, W = x.shape
    flat = np.zeros((N, C, H + 2 * pad + 1, W + 2 * pad), dtype=x.dtype)
    flat[:, :, pad:pad + H, pad:pad + W] = x
    return flat.reshape(N, C, flat.shape[2] * flat.shape[3])


def _windows(flat, kernel_height, kernel_width, geometry, writeable=False):
    """
    View of flat (N, C, L) from _flat_padded as the convolution's windows, shape
    (N, C, KH, KW, OH, Wq) with geometry = (stride s, Wp, OH, Wq) from _conv_geometry:

        windows[n, c, k, l, i, j] = Xpad[n, c, s*i + k, s*j + l] = flat[n, c, (s*i + k)*Wp + s*j + l]

    No data is copied. Windows of neighbouring outputs share entries, so a writeable view
    must only be added to one kernel offset (k, l) at a time.
    """
    stride, padded_width, out_height, row_width = geometry
    N, C, _ = flat.shape
    sN, sC, s1 = flat.strides
    return as_strided(flat, shape=(N, C, kernel_height, kernel_width, out_height, row_width),
                      strides=(sN, sC, padded_width * s1, s1, stride * padded_width * s1,
                               stride * s1), writeable=writeable)


# Samples are processed in blocks whose im2col columns and outputs take at most this
# many bytes, so that the column copy, the matrix product and the scatter of dX find
# them in cache. Measured fwd+bwd on N=64, float32 (bench/compare_torch.py): 3x32x32
# F32 k3 pad 1 9.6 -> 5.9 ms, 1x28x28 F32 k5 4.8 -> 3.6 ms; no change on the others.
BLOCK_BYTES = 4 << 20


def _sample_blocks(N, bytes_per_sample):
    """The batch 0..N-1 as consecutive slices of at most BLOCK_BYTES / bytes_per_sample
    samples (at least one), all of about the same size, and the largest size."""
    count = max(1, -(-N // max(1, BLOCK_BYTES // bytes_per_sample)))   # ceil division
    size = max(1, -(-N // count))
    return [slice(start, min(N, start + size)) for start in range(0, N, size)], size


def _column_buffer(block_size, windows, ones_row):
    """
    Room for the im2col columns of block_size samples: shape (block_size, C*KH*KW [+ 1],
    OH*Wq) for windows (N, C, KH, KW, OH, Wq). Column p = i*Wq + j of a sample will hold
    the C*KH*KW inputs that output pixel (i, j) sees, so that the convolution becomes one
    matrix product per sample; with ones_row, a last row of ones (set here, once) is the
    input that a bias multiplies.
    """
    _, C, KH, KW, OH, Wq = windows.shape
    K = C * KH * KW
    columns = np.empty((block_size, K + ones_row, OH * Wq), dtype=windows.dtype)
    if ones_row:
        columns[:, K] = 1
    return columns


def _fill_columns(columns, windows):
    """im2col for one block: copy windows (n, C, KH, KW, OH, Wq) into the first n samples
    of a _column_buffer; returns that part of it."""
    n, C, KH, KW = windows.shape[:4]
    block = columns[:n]
    block[:, :C * KH * KW].reshape(windows.shape)[...] = windows   # the one copy
    return block


def _check_conv_inputs(x, w, b, stride, pad):
    _check_ndim("x", x, 4, "(N, C, H, W)")
    _check_ndim("w", w, 4, "(F, C, HH, WW)")
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w has C={w.shape[1]} input channels but x has C={x.shape[1]}: "
                         f"x shape {x.shape}, w shape {w.shape}")
    if not (isinstance(stride, (int, np.integer)) and stride >= 1):
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if not (isinstance(pad, (int, np.integer)) and pad >= 0):
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    padded_height, padded_width = x.shape[2] + 2 * pad, x.shape[3] + 2 * pad
    if not (w.shape[2] <= padded_height and w.shape[3] <= padded_width):
        raise ValueError(f"w's {w.shape[2]}x{w.shape[3]} kernel is larger than x's "
                         f"{padded_height}x{padded_width} padded input: x shape {x.shape}, "
                         f"w shape {w.shape}, pad {pad}")
    if b is not None:
        if np.shape(b) != (w.shape[0],):
            raise ValueError(f"b has shape {np.shape(b)}, expected ({w.shape[0]},) to match w "
                             f"{w.shape}")


def _conv_geometry(x, w, stride, pad):
    """
    (stride s, padded width Wp, OH, Wq) and OW for a convolution of x (N, C, H, W) by w.

    Wq is the width of the output rows as computed: OW for s > 1, but Wp for s = 1. With
    Wq = Wp, for j >= OW a window wraps around into the next image row, and those outputs are
    computed and discarded (Wp/OW more work: 7-17% for 3x3 and 5x5 kernels). In exchange
    the output positions (i, j) of one kernel offset are one contiguous run of the
    flattened image (row pitch Wq = Wp, step 1), so im2col copies long runs and the
    backward pass adds each offset's gradient with one long add: both several times faster
    than row by row.
    """
    padded_height, padded_width = x.shape[2] + 2 * pad, x.shape[3] + 2 * pad
    out_height = (padded_height - w.shape[2]) // stride + 1
    out_width = (padded_width - w.shape[3]) // stride + 1
    row_width = padded_width if stride == 1 else out_width
    return (stride, padded_width, out_height, row_width), out_width


def _weight_rows(w, b):
    """The filters as rows (F, C*KH*KW), with the bias as one more column if b is given:
    a bias is a weight on an input that is always 1 (the ones row of _columns)."""
    rows = w.reshape(w.shape[0], -1)
    return rows if b is None else np.concatenate([rows, b.reshape(-1, 1)], axis=1)


def _conv_forward(x, w, b, stride, pad):
    """
    Filtering of x by w (plus b) as one matrix product per sample,
    (F, K) @ (K, OH*Wq) -> (F, OH, Wq), a block of samples at a time. The output is the
    view of each row's first OW entries (not copied: a copy would cost a full pass and a
    fresh array).
    """
    N, F = x.shape[0], w.shape[0]
    geometry, out_width = _conv_geometry(x, w, stride, pad)
    _, _, out_height, row_width = geometry
    windows = _windows(_flat_padded(x, pad), w.shape[2], w.shape[3], geometry)
    weight_rows = _weight_rows(w, b)
    pixels = out_height * row_width
    out = np.empty((N, F, pixels), dtype=np.result_type(x, weight_rows))
    blocks, block_size = _sample_blocks(N, (weight_rows.shape[1] + F) * pixels * out.itemsize)
    columns = _column_buffer(block_size, windows, ones_row=b is not None)
    for block in blocks:
        np.matmul(weight_rows, _fill_columns(columns, windows[block]), out=out[block])
    return out.reshape(N, F, out_height, row_width)[:, :, :, :out_width]


def _conv_backward(dout, x, w, b, stride, pad, need_dx=True):
    """Gradients dx, dw, db of _conv_forward (derivation in conv_backward and
    conv2d_backward), a block of samples at a time. dx is None if need_dx is False; db is
    None if b is None."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    K = C * KH * KW
    geometry, out_width = _conv_geometry(x, w, stride, pad)
    _, padded_width, out_height, row_width = geometry
    _check_dout(dout, (N, F, out_height, out_width))
    flat = _flat_padded(x, pad)
    windows = _windows(flat, KH, KW, geometry)
    pixels = out_height * row_width
    blocks, block_size = _sample_blocks(N, (K + 1 + F) * pixels * dout.itemsize)
    columns = _column_buffer(block_size, windows, ones_row=b is not None)
    # dY of a block laid out as the computed outputs, with 0 at the discarded ones
    # (j >= OW), which therefore contribute nothing to any gradient
    dout_rows = np.zeros((block_size, F, out_height, row_width), dtype=dout.dtype)
    dw_rows = np.zeros((columns.shape[1], F), dtype=np.result_type(x, dout))
    if need_dx:
        dflat = np.zeros(flat.shape, dtype=np.result_type(w, dout))
        dwindows = _windows(dflat, KH, KW, geometry, writeable=True)
    for block in blocks:
        block_columns = _fill_columns(columns, windows[block])
        n = len(block_columns)
        dout_rows[:n, :, :, :out_width] = dout[block]
        block_dout = dout_rows[:n].reshape(n, F, pixels)

        # dW[f, (c, k, l)] = sum_{n, p} dY[n, f, p] columns[n, (c, k, l), p], the sum over
        # n of columns[n] @ dY[n].T (this orientation, (K, P) @ (P, F), is the faster
        # GEMM); the ones row of the columns gives db[f] = sum_{n, p} dY[n, f, p] as the
        # last row
        dw_rows += (block_columns @ block_dout.transpose(0, 2, 1)).sum(axis=0)
        if not need_dx:
            continue

        # dX. dcolumns[n] = W.T @ dY[n] is the gradient of every entry of every window
        # (written over the columns, no longer needed). Adding it back into the windows
        # of a zero image sums the contributions of all windows that share an entry; the
        # windows of one kernel offset (k, l) don't overlap, so that is one add per offset.
        dcolumns = np.matmul(w.reshape(F, K).T, block_dout, out=block_columns[:, :K])
        dcolumns = dcolumns.reshape(n, C, KH, KW, out_height, row_width)
        block_dwindows = dwindows[block]
        for k in range(KH):
            for l in range(KW):
                block_dwindows[:, :, k, l] += dcolumns[:, :, k, l]
    dw = dw_rows[:K].T.reshape(w.shape)
    db = None if b is None else dw_rows[K]
    if not need_dx:
        return None, dw, db
    dx = dflat.reshape(N, C, H + 2 * pad + 1, padded_width)[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db


def conv_forward(x, w):
    """
    Convolutional layer as *filtering* (cross-correlation: the kernel is not flipped),
    stride 1, no padding, no bias. With indices from 0:

        Y[n, f, i, j] = sum_{c, k, l} X[n, c, i + k, j + l] W[f, c, k, l]

    i.e. Y[n, f] = sum_c X[n, c] *filt W[f, c]. Implemented by im2col: each output
    pixel's C*HH*WW inputs become one column (a strided view of the input, copied once),
    and the layer is one matrix product per sample, (F, C*HH*WW) @ (C*HH*WW, pixels).
    Samples go through in blocks whose columns take at most BLOCK_BYTES (4 MiB), so that
    the copy, the product and the backward pass's scatter find their data in cache.
    To make the copy (and the backward pass) fast, every output row is computed as wide
    as the padded input row and the extra WW-1 outputs per row are dropped (see
    _conv_geometry); the output is a view that leaves them out.

    Inputs:
    - x: input of shape (N, C, H, W).
    - w: filters of shape (F, C, HH, WW).

    Returns a tuple of:
    - out: output of shape (N, F, H - HH + 1, W - WW + 1).
    - cache: (x, w).
    """
    _check_conv_inputs(x, w, None, 1, 0)
    return _conv_forward(x, w, None, 1, 0), (x, w)


def conv_backward(dout, cache):
    """
    Backward pass of conv_forward. Differentiating Y[n,f,i,j] = sum X[n,c,i+k,j+l] W[f,c,k,l]:

    - dW[f, c, k, l] = sum_{n, i, j} X[n, c, i + k, j + l] dY[n, f, i, j]
      i.e. dW[f, c] = sum_n X[n, c] *filt dY[n, f]: filtering of X by dY.
    - dX[n, c, p, q] = sum_{f, k, l} dY[n, f, p - k, q - l] W[f, c, k, l]
      (dY taken as 0 outside its H' x W' extent), i.e. dX[n, c] = sum_f W[f, c] *full dY[n, f]:
      the full convolution of dY with W — equivalently, zero-pad dY by HH-1 and WW-1 and
      filter it with the kernel flipped in both axes.

    The code computes dW as one matrix product per sample with the im2col columns of X
    (summed over n), and evaluates the dX sum one kernel offset (k, l) at a time: the
    term sum_f W[f, c, k, l] dY[n, f] (one matrix product for all offsets) lands on dX
    shifted by (k, l). For each (k, l) that is a single vectorized add over all of
    n, c, i, j, several times faster than building a second im2col matrix of the padded dY.

    Inputs:
    - dout: upstream gradient of shape (N, F, H', W').
    - cache: (x, w) from conv_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, of shape (N, C, H, W).
    - dw: gradient with respect to w, of shape (F, C, HH, WW).
    """
    x, w = cache
    dx, dw, _ = _conv_backward(dout, x, w, None, 1, 0)
    return dx, dw


def conv2d_forward(x, w, b=None, stride=1, pad=0):
    """
    Convolution (filtering) with stride, zero padding and an optional bias per filter.
    Same implementation as conv_forward, which is the case stride=1, pad=0, b=None. The
    bias is added inside the matrix product, as the weight of an extra input that is
    always 1 (a row of ones appended to the im2col columns).

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
    _check_conv_inputs(x, w, b, stride, pad)
    return _conv_forward(x, w, b, stride, pad), (x, w, b, stride, pad)


def conv2d_backward(dout, cache, need_dx=True):
    """
    Backward pass of conv2d_forward; see conv_backward for the derivation. With stride s
    the window of output (i, j) starts at (s*i, s*j), so dX gathers
    dY[n, f, i, j] W[f, c, k, l] at Xpad position (s*i + k, s*j + l), the padding is cut
    off, and db[f] = sum_{n, i, j} dY[n, f, i, j] (it comes out of the dW product as the
    gradient of the bias's weight on the constant input 1).

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
    x, w, b, stride, pad = cache
    return _conv_backward(dout, x, w, b, stride, pad, need_dx)


# ----------------------------------------------------------------------------- max pooling

def _pool_geometry(x, pool_param):
    _check_ndim("x", x, 4, "(N, C, H, W)")
    try:
        height, width, stride = (pool_param[key] for key in ("pool_height", "pool_width", "stride"))
    except (KeyError, TypeError):
        raise ValueError(f"pool_param must be a dict with keys 'pool_height', 'pool_width' "
                         f"and 'stride', got {pool_param!r}") from None
    if not all(isinstance(v, (int, np.integer)) and v >= 1 for v in (height, width, stride)):
        raise ValueError(f"pool_param values must be positive integers, got {pool_param!r}")
    if not (height <= x.shape[2] and width <= x.shape[3]):
        raise ValueError(f"pool window {height}x{width} from pool_param is larger than x's "
                         f"{x.shape[2]}x{x.shape[3]} spatial size (x shape {x.shape})")
    out_height = (x.shape[2] - height) // stride + 1
    out_width = (x.shape[3] - width) // stride + 1
    return height, width, stride, out_height, out_width


def _along(array, axis, start, stop, step):
    """array[..., start:stop:step, ...] with the slice on the given axis."""
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, stop, step)
    return array[tuple(index)]


def _sliding_max(x, axis, window, stride, count, with_choice=False):
    """
    Max over `window` consecutive entries along one axis, for `count` windows starting
    every `stride` entries: out[.., i, ..] = max_k x[.., stride*i + k, ..]. With
    with_choice, also the first k attaining it (ties keep the earlier k: the comparison is
    strict); None otherwise.

    One strided slice per window offset k, vectorized over everything else. Each slice is
    copied to a contiguous array first: NumPy's comparisons and maxima are ~5x faster on
    contiguous data (SIMD) than on a strided view, and the copy costs less than that.
    Choices are built by arithmetic on the comparison, not by masked assignment or
    np.where, which are ~10x slower on unpredictable masks.
    """
    last = stride * (count - 1) + 1
    out = np.ascontiguousarray(_along(x, axis, 0, last, stride))
    dtype = np.min_scalar_type(window - 1)
    choice = np.zeros(out.shape, dtype=dtype) if with_choice else None
    for k in range(1, window):
        candidate = np.ascontiguousarray(_along(x, axis, k, k + last, stride))
        if with_choice:
            # k exceeds every earlier choice, so the max records k exactly where k is better
            better = (candidate > out).view(np.uint8)
            choice = (better.astype(dtype, copy=False) if k == 1
                      else np.maximum(choice, better * dtype.type(k)))
        out = np.maximum(out, candidate)
    return (out.copy() if window == 1 else out), choice


def _sliding_max_backward(dout, choice, axis, window, stride, size):
    """Adjoint of _sliding_max: dout[.., i, ..] goes to entry stride*i + choice of an axis
    of length size."""
    shape = list(dout.shape)
    shape[axis] = size
    # when the windows tile the axis exactly, every entry of dx is written below
    tiled = stride == window and size == window * dout.shape[axis]
    dx = (np.empty if tiled else np.zeros)(shape, dtype=dout.dtype)
    last = stride * (dout.shape[axis] - 1) + 1
    for k in range(window):
        entries = _along(dx, axis, k, k + last, stride)   # entry k of every window
        if stride >= window:   # windows don't overlap: written once, no sum needed
            np.multiply(dout, choice == k, out=entries)
        else:
            entries += dout * (choice == k)
    return dx


def _max_pool(x, pool_param, with_choices):
    """
    Separable max pooling: the max over a ph x pw window is the max over its ph rows of
    each row's max over pw columns. Taking the first max per row, then the first row
    holding the max, selects the first max in row-major order. Both stages are strided
    slices (no copy of all windows): for 2x2 windows on (64, 16, 28, 28) float32 the forward
    takes 0.5 ms, against 11.9 ms for reshaping into windows and reducing with max.

    Returns out (N, C, OH, OW) and, if with_choices, the pair (row_choice, column_choice):
    row_choice (N, C, OH, OW) is the window row holding the max, column_choice
    (N, C, H, OW) the column of each image row's max in each window (else None).
    """
    height, width, stride, out_height, out_width = _pool_geometry(x, pool_param)
    row_max, column_choice = _sliding_max(x, 3, width, stride, out_width, with_choices)
    out, row_choice = _sliding_max(row_max, 2, height, stride, out_height, with_choices)
    return out, ((row_choice, column_choice) if with_choices else None)


def max_pool_forward(x, pool_param, keep_choices=False):
    """
    Max pooling: out[n, c, i, j] = max over the window x[n, c, s*i : s*i+ph, s*j : s*j+pw].
    Any window size and stride; windows may overlap (stride < window) or skip pixels.

    Inputs:
    - x: input of shape (N, C, H, W).
    - pool_param: dict with keys
      - 'pool_height': window height ph.
      - 'pool_width': window width pw.
      - 'stride': distance s between neighbouring windows.
    - keep_choices: if True, also record where each max was found, so that the backward
      pass need not search the windows again (a third of its time for 2x2 windows). Meant
      for training loops; the default keeps the homework's cache.

    Returns a tuple of:
    - out: output of shape (N, C, 1 + (H - ph) // s, 1 + (W - pw) // s).
    - cache: (x, pool_param), or (x, pool_param, choices) with keep_choices.
    """
    out, choices = _max_pool(x, pool_param, keep_choices)
    return out, ((x, pool_param, choices) if keep_choices else (x, pool_param))


def max_pool_backward(dout, cache):
    """
    Backward pass of max pooling. The max is locally a selection, so each window's
    gradient goes to the entry that was selected: the first max in row-major order when
    several entries tie (ties are common after ReLU, where many inputs are exactly 0;
    sending the gradient to every tied entry would multiply it). Where windows overlap,
    an input chosen by several windows accumulates their gradients.

    Inputs:
    - dout: upstream gradient of shape (N, C, OH, OW).
    - cache: (x, pool_param) from max_pool_forward, or (x, pool_param, choices) from
      max_pool_forward with keep_choices=True.

    Returns:
    - dx: gradient with respect to x, of shape (N, C, H, W).
    """
    x, pool_param = cache[:2]
    height, width, stride, out_height, out_width = _pool_geometry(x, pool_param)
    _check_dout(dout, (*x.shape[:2], out_height, out_width))
    row_choice, column_choice = cache[2] if len(cache) == 3 else _max_pool(x, pool_param, True)[1]
    drow_max = _sliding_max_backward(dout, row_choice, 2, height, stride, x.shape[2])
    return _sliding_max_backward(drow_max, column_choice, 3, width, stride, x.shape[3])


# ----------------------------------------------------------------------------- losses

def _log_softmax(x):
    """Row-wise log-softmax, stable: subtracting the row max keeps exp() <= 1."""
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_loss(x, y):
    """
    Softmax (cross-entropy) loss, averaged over the batch. With p = softmax(x[n]),
    loss_n = -log p[y_n] and d loss_n / d x[n, c] = p[c] - [c == y_n].

    Inputs:
    - x: class scores of shape (N, C).
    - y: integer labels of shape (N,), each in [0, C).

    Returns a tuple of:
    - loss: scalar loss (mean over N).
    - dx: gradient of the loss with respect to x, of shape (N, C).
    """
    y = _check_labels(y, x)
    N = x.shape[0]
    log_probs = _log_softmax(x)
    rows = np.arange(N)
    loss = -log_probs[rows, y].sum() / N
    dx = np.exp(log_probs)
    dx[rows, y] -= 1
    dx /= N
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
    _check_ndim("x", x, 2, "(N, C)")
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
    _check_dout(dout, out.shape)
    return dout - np.exp(out) * dout.sum(axis=1, keepdims=True)


def nll_loss(log_probs, y):
    """
    Negative log-likelihood loss, averaged over the batch: loss = -mean_n log_probs[n, y_n].
    log_softmax_forward followed by nll_loss equals softmax_loss.

    Inputs:
    - log_probs: log-probabilities of shape (N, C).
    - y: integer labels of shape (N,), each in [0, C).

    Returns a tuple of:
    - loss: scalar loss.
    - dlog_probs: gradient with respect to log_probs, of shape (N, C): -1/N at
      (n, y_n), 0 elsewhere.
    """
    y = _check_labels(y, log_probs)
    N = log_probs.shape[0]
    rows = np.arange(N)
    loss = -log_probs[rows, y].mean()
    dlog_probs = np.zeros_like(log_probs)
    dlog_probs[rows, y] = -1 / N
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
    p, mode = dropout_param.get("p"), dropout_param.get("mode")
    if not (isinstance(p, numbers.Real) and 0 < p <= 1):
        raise ValueError(f"dropout_param['p'] is the keep probability and must be in (0, 1], "
                         f"got {p!r}")
    if mode not in ("train", "test"):
        raise ValueError(f"dropout_param['mode'] must be 'train' or 'test', got {mode!r}")
    if mode == "test":
        return x, (dropout_param, None)
    seed = dropout_param.get("seed")
    uniform = np.random.default_rng(seed).random(x.shape) if seed is not None else np.random.random(x.shape)
    dtype = np.result_type(x, np.float32)
    mask = (uniform < p).astype(dtype) / dtype.type(p)
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
    if mask is None:
        return dout
    _check_dout(dout, mask.shape)
    return dout * mask


def flatten_forward(x):
    """
    Flatten every sample to a row: (N, d_1, ..., d_k) -> (N, d_1 * ... * d_k).

    Inputs:
    - x: input of shape (N, d_1, ..., d_k).

    Returns a tuple of:
    - out: output of shape (N, D).
    - cache: the shape of x.
    """
    if np.ndim(x) < 1:
        raise ValueError(f"x must have a batch axis, got shape {np.shape(x)}")
    return x.reshape(x.shape[0], -1), x.shape


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
    _check_dout(dout, (x_shape[0], math.prod(x_shape[1:])))
    return dout.reshape(x_shape)
