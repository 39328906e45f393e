"""Fast convolution, max pooling and normalization: the kernels the models train with.

Same functions, signatures and errors as layers.py (and the same caches, except the
normalization layers', which are their own), computing the same numbers
(tests/test_kernels.py proves values and every gradient equal to layers.py's reference
versions, in float32 and float64, with strides, padding, odd shapes, ties and empty
batches); the errors are the same because both call the argument checks of validation.py.
layers.py shows the formulas; this file makes them fast:

- Convolution by im2col, one matrix product per sample, (F, C*HH*WW) @ (C*HH*WW, pixels),
  with samples in blocks whose columns fit in BLOCK_BYTES (4 MiB) so that the copy, the
  product and the scatter of dX find their data in cache. Output rows are computed as
  wide as the padded input rows (see _conv_geometry), so that every copy is one long run;
  the bias is the weight of an extra input row of ones. dX is gathered one kernel offset
  at a time from the columns' gradient instead of a second im2col of the padded dY.
- Max pooling separably (rows, then columns) by strided slices, with
  `keep_choices=True` recording where the maxima are so that backward does not search
  again.
- Batch norm (plain and spatial), layer norm and group norm with the reference's two-pass
  statistics in fewer, cheaper passes over the arrays: sums by einsum, BLAS products with
  ones and np.vecdot (no temporary products), vectors added along rows or columns in
  place, and backward passes that need only two sums (of dout and of
  dout * centered) before dx = dout * A - centered * K - R. Their caches are their own.

This is not cs231n's fast_layers.py (whose name it avoids, so both can sit in one folder).
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from validation import (check_bn_param, check_conv_arguments, check_dout, check_eps, check_ndim,
                        check_pool_arguments, check_scale_shift, checked_cell, checked_groupnorm,
                        real_array, real_dout)


def conv_forward(x, w):
    """layers.conv_forward (filtering, stride 1, no padding, no bias), fast. Cache (x, w)."""
    x, w = real_array("x", x), real_array("w", w)
    check_conv_arguments(x, w)
    return _conv_forward(x, w, None, 1, 0), (x, w)


def conv_backward(dout, cache):
    """layers.conv_backward, fast: returns dx (N, C, H, W), dw (F, C, HH, WW)."""
    x, w = cache
    dx, dw, _ = conv2d_backward(dout, (x, w, None, 1, 0))
    return dx, dw


def conv2d_forward(x, w, b=None, stride=1, pad=0):
    """layers.conv2d_forward (stride, zero padding, optional bias), fast.
    Cache (x, w, b, stride, pad)."""
    x, w = real_array("x", x), real_array("w", w)
    b = None if b is None else real_array("b", b)
    check_conv_arguments(x, w, b, stride, pad)
    dtype = np.result_type(x, w) if b is None else np.result_type(x, w, b)
    out = _conv_forward(x.astype(dtype, copy=False), w.astype(dtype, copy=False),
                        None if b is None else b.astype(dtype, copy=False), stride, pad)
    return out, (x, w, b, stride, pad)


def conv2d_backward(dout, cache, need_dx=True):
    """layers.conv2d_backward, fast: returns dx (None if need_dx is False), dw, db (None
    without a bias), in the dtypes the reference gives (dx: w and dout's promoted type,
    dw: x and dout's)."""
    x, w, b, stride, pad = cache
    dout = real_array("dout", dout)
    out_height, out_width = check_conv_arguments(x, w, b, stride, pad)
    check_dout(dout, (x.shape[0], w.shape[0], out_height, out_width))
    dtype = np.result_type(x, w, dout)
    dx, dw, db = _conv_backward(dout.astype(dtype, copy=False), x.astype(dtype, copy=False),
                                w.astype(dtype, copy=False), b, stride, pad, need_dx)
    dx = None if dx is None else dx.astype(np.result_type(w, dout), copy=False)
    dw = dw.astype(np.result_type(x, dout), copy=False)
    db = None if db is None else db.astype(dout.dtype, copy=False)
    return dx, dw, db


def max_pool_forward(x, pool_param, keep_choices=False):
    """
    layers.max_pool_forward, fast. keep_choices=True also records where each max was
    found, so that the backward pass need not search the windows again (a third of its
    time for 2x2 windows); the cache is then (x, pool_param, choices), else the
    reference's (x, pool_param).
    """
    x = real_array("x", x)
    out, choices = _max_pool(x, pool_param, keep_choices)
    return out, ((x, pool_param, choices) if keep_choices else (x, pool_param))


def max_pool_backward(dout, cache):
    """layers.max_pool_backward (first max on ties, overlaps accumulate), fast; takes
    either cache of max_pool_forward."""
    x, pool_param = cache[:2]
    dout = real_array("dout", dout)
    height, width, stride, out_height, out_width = check_pool_arguments(x, pool_param)
    check_dout(dout, (*x.shape[:2], out_height, out_width))
    dout = dout.astype(np.result_type(x, dout), copy=False)
    row_choice, column_choice = cache[2] if len(cache) == 3 else _max_pool(x, pool_param, True)[1]
    drow_max = _sliding_max_backward(dout, row_choice, 2, height, stride, x.shape[2])
    return _sliding_max_backward(drow_max, column_choice, 3, width, stride, x.shape[3])


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
    """Gradients dx, dw, db of _conv_forward (derivation in layers.conv_backward
    and layers.conv2d_backward), a block of samples at a time. dx is None if need_dx is False; db is
    None if b is None."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    K = C * KH * KW
    geometry, out_width = _conv_geometry(x, w, stride, pad)
    _, padded_width, out_height, row_width = geometry
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
    height, width, stride, out_height, out_width = check_pool_arguments(x, pool_param)
    row_max, column_choice = _sliding_max(x, 3, width, stride, out_width, with_choices)
    out, row_choice = _sliding_max(row_max, 2, height, stride, out_height, with_choices)
    return out, ((row_choice, column_choice) if with_choices else None)


# ---------------------------------------------------------------------------- LSTM
# rnn_layers.lstm_forward / lstm_backward with the same matrix products, arranged for
# speed: the gates are activated in place in the array that held their pre-activations,
# every per-step product and result is written into preallocated arrays (no
# concatenation, few temporaries), and the backward recurrent product runs in the
# orientation OpenBLAS does fastest. Only NumPy's BLAS is used: a second one (SciPy's,
# for a gemm that adds in place) brings its own thread pool, and at two threads the two
# pools fight over the cores (measured: 207 against 75 ms).
# The caches are this module's own.

def lstm_forward(x, h0, Wx, Wh, b):
    """
    rnn_layers.lstm_forward, fast: the same values (to rounding) and errors. Returns h
    (T, N, H) and a cache (x, h0, Wx, Wh, gates, c, tanh_c, h) for lstm_backward.
    """
    x, h0, Wx, Wh, b = checked_cell(x, "(T, N, D)", "h0", h0, Wx, Wh, b, gates=4)
    T, N, D = x.shape
    H = h0.shape[1]
    dtype = np.result_type(x, h0, Wx, Wh, b, np.float16)   # integer inputs give float64
    x, h0, Wx, Wh, b = (array.astype(dtype, copy=False) for array in (x, h0, Wx, Wh, b))
    # gates[t] starts as the input part x[t] @ Wx + b of every step (one product) and
    # becomes the activated [i, f, o, g] of step t in place
    gates = (x.reshape(T * N, D) @ Wx).reshape(T, N, 4 * H)
    gates += b
    c, tanh_c, h = (np.empty((T, N, H), dtype) for _ in range(3))
    recurrent = np.empty((N, 4 * H), dtype)
    prev_h, prev_c = h0, np.zeros((N, H), dtype)
    for t in range(T):
        a = gates[t]
        a += np.matmul(prev_h, Wh, out=recurrent)
        ifo, g = a[:, :3 * H], a[:, 3 * H:]
        _sigmoid_in_place(ifo)
        np.tanh(g, out=g)
        i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
        np.multiply(f, prev_c, out=c[t])
        c[t] += i * g
        np.tanh(c[t], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h[t])
        prev_h, prev_c = h[t], c[t]
    return h, (x, h0, Wx, Wh, gates, c, tanh_c, h)


def lstm_backward(dh, cache):
    """
    rnn_layers.lstm_backward, fast: returns dx (T, N, D), dh0 (N, H), dWx (D, 4H),
    dWh (H, 4H), db (4H,) from the cache of kernels.lstm_forward.
    """
    x, h0, Wx, Wh, gates, c, tanh_c, h = cache
    dh = real_dout(dh, h.shape, "dh")
    T, N, D = x.shape
    H = h0.shape[1]
    dtype = np.result_type(dh, h, Wh)
    da = np.empty((T, N, 4 * H), dtype)
    dprev_h, dprev_c = np.zeros((N, H), dtype), np.zeros((N, H), dtype)
    dc, sigmoid_slope = np.empty((N, H), dtype), np.empty((N, 3 * H), dtype)
    dprev_h_rows = np.empty((H, N), dtype)
    zero_c = np.zeros((N, H), c.dtype)
    for t in reversed(range(T)):
        ifo, g = gates[t, :, :3 * H], gates[t, :, 3 * H:]
        i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
        dnext_h = dh[t] + dprev_h
        # dc = dnext_c + dnext_h * o * (1 - tanh(c)^2)
        np.multiply(tanh_c[t], tanh_c[t], out=dc)
        np.subtract(1, dc, out=dc)
        dc *= o
        dc *= dnext_h
        dc += dprev_c
        # da = [dc * g, dc * prev_c, dnext_h * tanh(c)] * ifo * (1 - ifo), dc * i * (1 - g^2)
        da_t = da[t]
        np.multiply(dc, g, out=da_t[:, :H])
        np.multiply(dc, c[t - 1] if t > 0 else zero_c, out=da_t[:, H:2 * H])
        np.multiply(dnext_h, tanh_c[t], out=da_t[:, 2 * H:3 * H])
        np.subtract(1, ifo, out=sigmoid_slope)
        sigmoid_slope *= ifo
        da_t[:, :3 * H] *= sigmoid_slope
        dg = da_t[:, 3 * H:]
        np.multiply(g, g, out=dg)
        np.subtract(1, dg, out=dg)
        dg *= i
        dg *= dc
        np.multiply(dc, f, out=dprev_c)
        # da[t] @ Wh.T computed as (Wh @ da[t].T).T, the faster orientation
        dprev_h = np.matmul(Wh, da_t.T, out=dprev_h_rows).T
    da_rows = da.reshape(T * N, 4 * H)
    dx = (da_rows @ Wx.T).reshape(T, N, D)
    dWx = x.reshape(T * N, D).T @ da_rows
    # dWh = sum_t h[t-1].T @ da[t] with h[-1] = h0, without stacking h0 onto h
    dWh = h0.T @ da[0] if T else np.zeros(Wh.shape, dtype)
    if T > 1:
        dWh += h[:-1].reshape((T - 1) * N, H).T @ da[1:].reshape((T - 1) * N, 4 * H)
    db = da_rows.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def _sigmoid_in_place(a):
    """a = sigma(a) = (1 + tanh(a / 2)) / 2, rnn_layers' formula, in place."""
    a *= 0.5
    np.tanh(a, out=a)
    a += 1
    a *= 0.5


# ---------------------------------------------------------------------- normalization
# The formulas of layers.py, with the same two-pass statistics (the mean is subtracted
# before squaring), in as few passes over the big arrays as NumPy allows. What a pass
# costs decides how each step is written (one thread, float32, (64, 1024) and
# (64, 32, 28, 28) arrays):
# - sums along rows are einsum("rp->r"), along columns a BLAS product ones @ a, sums of
#   products np.vecdot of rows: one read, no temporary (.sum(axis) is 1.5-3x slower).
# - adding a vector along rows or columns is a broadcast add in place. (BLAS ger through
#   SciPy was ~2x faster at one thread, but SciPy's OpenBLAS is a second library beside
#   NumPy's, with its own thread pool: at two threads the pools fight over the cores.)
# - multiplying each row by its own value is einsum("rp,r->rp") (~20% faster than
#   broadcasting); multiplying columns by a vector broadcasts on a view with 8 times
#   fewer, longer rows and the vector tiled to match.
# - the backward passes need only sums of dout and of dout * centered (per row, channel
#   or group); the rest follows on small arrays, and dx = dout * A - centered * K - R
#   with A, K, R constant along the reduced axes.
# Caches are this module's own; centered = x - mean is cached instead of xhat.

if hasattr(np, "vecdot"):   # NumPy >= 2.0
    def _row_dots(a, b):
        """(a * b).sum(axis=1) of two matrices, without the product array."""
        return np.vecdot(a, b)
else:
    def _row_dots(a, b):
        """(a * b).sum(axis=1) of two matrices, without the product array."""
        return np.einsum("rp,rp->r", a, b)


def _row_sums(a):
    """a.sum(axis=1) of a matrix: einsum streams through rows (BLAS gemv, as fast on
    arrays in cache, is 2x slower on arrays it must read from memory)."""
    return np.einsum("rp->r", a)


def _add_to_rows(a, values):
    """a[r, :] += values[r] in place for a matrix a and values (rows,), returned."""
    return np.add(a, values.astype(a.dtype, copy=False)[:, None], out=a)


def _add_to_columns(a, values):
    """a[:, p] += values[p] in place for a matrix a and values (columns,), returned."""
    return np.add(a, values.astype(a.dtype, copy=False), out=a)


def _scale_rows(a, values):
    """a * values[:, None] (a matrix), new."""
    return np.einsum("rp,r->rp", a, values.astype(a.dtype, copy=False))


def _scale_columns(a, values):
    """a * values (a (N, D), values (D,)), new: broadcast on (N/8, 8 D) rows (when 8
    divides N) against values tiled 8 times, one inner-loop call per 8 rows."""
    N, D = a.shape
    t = 8 if N % 8 == 0 else 1
    tiled = np.empty((t, D), a.dtype)
    tiled[...] = values
    return (a.reshape(N // t, t * D) * tiled.reshape(t * D)).reshape(N, D)


def _channel_sums(a):
    """a.sum(axis=(0, 2)) of a (N, C, P)."""
    N, C, P = a.shape
    sums = a.reshape(N, C) if P == 1 else _row_sums(a.reshape(N * C, P)).reshape(N, C)
    return np.ones(N, a.dtype) @ sums


def _channel_dots(a, b):
    """(a * b).sum(axis=(0, 2)) of two (N, C, P) arrays (for P == 1 through one product
    array: vecdot down strided columns is 40x slower)."""
    N, C, P = a.shape
    if P == 1:
        dots = (a * b).reshape(N, C)
    else:
        dots = _row_dots(a.reshape(N * C, P), b.reshape(N * C, P)).reshape(N, C)
    return np.ones(N, a.dtype) @ dots


def _scale_channels(a, values):
    """a * values[c] for a C-contiguous (N, C, P) and values (C,), new."""
    N, C, P = a.shape
    if P == 1:
        return _scale_columns(a.reshape(N, C), values).reshape(a.shape)
    return _scale_rows(a.reshape(N * C, P), np.tile(values, N)).reshape(a.shape)


def _add_to_channels(a, values):
    """a += values[c] in place for a C-contiguous (N, C, P) and values (C,)."""
    N, C, P = a.shape
    if P == 1:
        _add_to_columns(a.reshape(N, C), values)
    else:
        _add_to_rows(a.reshape(N * C, P), np.tile(values, N))


def _as_reference_dtypes(dout, dtypes, dx, dgamma, dbeta):
    """dx, dgamma, dbeta in the dtypes layers.py's backward passes give them (NumPy's
    promotion of what each is computed from there: dout, gamma's dtype and xhat's dtypes
    given in `dtypes`); no-ops unless the inputs mixed dtypes."""
    gamma_dtype, xhat_dtype = dtypes
    return (dx.astype(np.result_type(dout, gamma_dtype, xhat_dtype), copy=False),
            dgamma.astype(np.result_type(dout, xhat_dtype), copy=False),
            dbeta.astype(dout.dtype, copy=False))


def _batchnorm_forward(x, gamma, beta, bn_param):
    """
    Batch norm of x (N, C, P) over axes (0, 2), in the dtype of the output:

        mean = sum x / (N P),   var = sum (x - mean)^2 / (N P),   inv_std = 1/sqrt(var + eps),
        out = (x - mean) * (gamma inv_std) + beta          (per channel c),

    in test mode with the running statistics. Passes: centered = x - mean (a copy and
    an add), two reductions in train mode, one product and an add for out.
    Returns (out, cache).
    """
    N, C, P = x.shape
    dtype = np.result_type(x, gamma, beta)
    mode, eps, momentum, running_mean, running_var = check_bn_param(bn_param, C, dtype, N)
    # layers' xhat has x's dtype in train mode, the running statistics' in test mode
    dtypes = (gamma.dtype, x.dtype if mode == "train" else dtype)
    gamma, beta = gamma.astype(dtype, copy=False), beta.astype(dtype, copy=False)
    count = N * P
    centered = x.astype(dtype, order="C")   # a copy, centered in place below
    if mode == "train":
        mean = _channel_sums(centered) / count
        _add_to_channels(centered, -mean)
        var = _channel_dots(centered, centered) / count
        bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mean
        bn_param["running_var"] = momentum * running_var + (1 - momentum) * var
    else:
        _add_to_channels(centered, -running_mean)
        var = running_var
    inv_std = 1 / np.sqrt(var + eps)
    out = _scale_channels(centered, gamma * inv_std)
    _add_to_channels(out, beta)
    return out, (mode, centered, inv_std, gamma, dtypes)


def _batchnorm_backward(dout, cache):
    """
    dx, dgamma, dbeta of _batchnorm_forward, dout (N, C, P): batchnorm_backward_alt's
    closed form with xhat = centered * inv_std and scale = gamma * inv_std,

        dbeta = sum dout,   dgamma = inv_std * sum dout * centered,
        dx = scale * dout - centered * (scale inv_std dgamma / (N P)) - scale dbeta / (N P)

    (test mode: dx = scale * dout). Passes: two reductions, then dx by two products, a
    difference and an add.
    """
    mode, centered, inv_std, gamma, dtypes = cache
    given = dout
    dout = np.ascontiguousarray(dout, np.result_type(dout, centered))
    count = dout.shape[0] * dout.shape[2]
    dbeta = _channel_sums(dout)
    dgamma = _channel_dots(dout, centered) * inv_std
    scale = gamma * inv_std
    dx = _scale_channels(dout, scale)
    if mode == "train":
        dx -= _scale_channels(centered, scale * inv_std * dgamma / count)
        _add_to_channels(dx, -scale * dbeta / count)
    return _as_reference_dtypes(given, dtypes, dx, dgamma, dbeta)


def batchnorm_forward(x, gamma, beta, bn_param):
    """layers.batchnorm_forward, fast: the same values, running statistics and errors."""
    x = real_array("x", x)
    check_ndim("x", x, 2, "(N, D)")
    gamma, beta = check_scale_shift(gamma, beta, (x.shape[1],), "one per feature of x (N, D)")
    out, cache = _batchnorm_forward(x.reshape(*x.shape, 1), gamma, beta, bn_param)
    return out.reshape(x.shape), (cache, x.shape)


def batchnorm_backward(dout, cache):
    """layers.batchnorm_backward_alt, fast: returns dx (N, D), dgamma, dbeta (D,)."""
    cache, shape = cache
    dout = real_dout(dout, shape)
    dx, dgamma, dbeta = _batchnorm_backward(dout.reshape(*shape, 1), cache)
    return dx.reshape(shape), dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """layers.spatial_batchnorm_forward, fast: the same values, running statistics and errors."""
    x = real_array("x", x)
    check_ndim("x", x, 4, "(N, C, H, W)")
    N, C, H, W = x.shape
    gamma, beta = check_scale_shift(gamma, beta, (C,), "one per channel of x (N, C, H, W)")
    out, cache = _batchnorm_forward(x.reshape(N, C, H * W), gamma, beta, bn_param)
    return out.reshape(x.shape), (cache, x.shape)


def spatial_batchnorm_backward(dout, cache):
    """layers.spatial_batchnorm_backward, fast: returns dx (N, C, H, W), dgamma, dbeta (C,)."""
    cache, shape = cache
    dout = real_dout(dout, shape)
    N, C, H, W = shape
    dx, dgamma, dbeta = _batchnorm_backward(dout.reshape(N, C, H * W), cache)
    return dx.reshape(shape), dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """
    layers.layernorm_forward, fast: the same values and errors. Per row n,

        centered = x - mean_d x,   inv_std = 1 / sqrt(mean_d centered^2 + eps),
        out = centered * outer(inv_std, gamma) + beta,

    the outer product built once (small: (N, D) values of N + D), so that out is one
    same-shape product and an add (scaling rows then columns would be two products).
    """
    x = real_array("x", x)
    check_ndim("x", x, 2, "(N, D)")
    N, D = x.shape
    gamma, beta = check_scale_shift(gamma, beta, (D,), "one per feature of x (N, D)")
    eps = check_eps("ln_param", ln_param)
    dtype = np.result_type(x, gamma, beta)
    dtypes = (gamma.dtype, x.dtype)
    gamma, beta = gamma.astype(dtype, copy=False), beta.astype(dtype, copy=False)
    count = max(D, 1)
    centered = x.astype(dtype, order="C")   # a copy, centered in place
    _add_to_rows(centered, -_row_sums(centered) / count)
    inv_std = 1 / np.sqrt(_row_dots(centered, centered) / count + eps)
    scale = np.multiply.outer(inv_std, gamma)
    out = centered * scale
    _add_to_columns(out, beta)
    return out, (centered, inv_std, scale, gamma, dtypes)


def layernorm_backward(dout, cache):
    """
    layers.layernorm_backward, fast: returns dx (N, D), dgamma, dbeta (D,). With
    product = dout * centered (the one temporary) and scale = outer(inv_std, gamma):

        dgamma = inv_std @ product,   dbeta = sum_n dout,
        dx = dout * scale - centered * (inv_std^3 (product @ gamma) / D)
             - inv_std (dout @ gamma) / D,

    layers' inv_std * (dxhat - mean_d dxhat - xhat * mean_d(dxhat * xhat)) expanded with
    dxhat = dout * gamma and xhat = centered * inv_std.
    """
    centered, inv_std, scale, gamma, dtypes = cache
    given = real_dout(dout, centered.shape)
    N, D = centered.shape
    count = max(D, 1)
    dout = np.ascontiguousarray(given, np.result_type(given, centered))
    product = dout * centered
    dgamma = inv_std @ product
    dbeta = np.ones(N, dout.dtype) @ dout
    dx = dout * scale
    dx -= _scale_rows(centered, inv_std ** 3 * (product @ gamma) / count)
    _add_to_rows(dx, -inv_std * (dout @ gamma) / count)
    return _as_reference_dtypes(given, dtypes, dx, dgamma, dbeta)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """
    layers.spatial_groupnorm_forward, fast: the same values and errors. With x as rows of
    groups (N G, L), L = C/G H W, and of channels (N C, H W):

        centered = x - mean_L x,   inv_std = 1 / sqrt(mean_L centered^2 + eps)  (per group),
        out = centered * (inv_std[n, g] gamma[c]) + beta[c]                     (per channel row).

    Passes: a sum, the centering (a copy and an add), a sum of squares, one row-scaling
    product and an add.
    """
    x, gamma, beta, eps = checked_groupnorm(x, gamma, beta, G, gn_param)
    N, C, H, W = x.shape
    dtype = np.result_type(x, gamma, beta)
    dtypes = (gamma.dtype, x.dtype)
    gamma, beta = gamma.astype(dtype, copy=False).ravel(), beta.astype(dtype, copy=False).ravel()
    size = C // G * H * W   # values per group
    count = max(size, 1)
    centered = x.astype(dtype, order="C")   # a copy, centered in place
    groups = centered.reshape(N * G, size)
    _add_to_rows(groups, -_row_sums(groups) / count)
    inv_std = 1 / np.sqrt(_row_dots(groups, groups) / count + eps)
    channels = centered.reshape(N * C, H * W)
    out = _scale_rows(channels, (inv_std.reshape(N, G, 1) * gamma.reshape(G, C // G)).ravel())
    _add_to_rows(out, np.tile(beta, N))
    return out.reshape(x.shape), (centered, inv_std, gamma, G, dtypes)


def spatial_groupnorm_backward(dout, cache):
    """
    layers.spatial_groupnorm_backward, fast: returns dx (N, C, H, W), dgamma, dbeta
    (1, C, 1, 1). From the per-(n, c) sums U = sum_hw dout and V = sum_hw dout * centered
    alone (s = inv_std[n, g], L the group's size):

        dbeta = sum_n U,   dgamma = sum_n s V,
        b = sum_(c in g) gamma U = sum dxhat,   a = s sum_(c in g) gamma V = sum dxhat * xhat,
        dx = dout * (s gamma) - centered * (s^2 a / L) - s b / L,

    layers' s * (dxhat - mean dxhat - xhat * mean(dxhat * xhat)) over each group, expanded.
    Passes: two reductions, then dx by two row-scaling products, a difference and an add.
    """
    centered, inv_std, gamma, G, dtypes = cache
    given = real_dout(dout, centered.shape)
    N, C, H, W = centered.shape
    size = C // G * H * W
    count = max(size, 1)
    dout = np.ascontiguousarray(given, np.result_type(given, centered))
    channels, centered_channels = dout.reshape(N * C, H * W), centered.reshape(N * C, H * W)
    U = _row_sums(channels).reshape(N, G, C // G)
    V = _row_dots(channels, centered_channels).reshape(N, G, C // G)
    inv_std, gamma = inv_std.reshape(N, G), gamma.reshape(G, C // G)
    s = inv_std[:, :, None]
    dbeta, dgamma = U.sum(axis=0), (V * s).sum(axis=0)
    b = (U * gamma).sum(axis=2)
    a = inv_std * (V * gamma).sum(axis=2)
    dx = _scale_rows(channels, (s * gamma).ravel())
    groups = centered.reshape(N * G, size)
    dx_groups = dx.reshape(N * G, size)
    dx_groups -= _scale_rows(groups, (inv_std ** 2 * a / count).ravel())
    _add_to_rows(dx_groups, -(inv_std * b / count).ravel())
    return _as_reference_dtypes(given, dtypes, dx.reshape(centered.shape),
                                dgamma.reshape(1, C, 1, 1), dbeta.reshape(1, C, 1, 1))
