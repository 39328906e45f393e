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
- Batch norm (plain and spatial) and layer norm with fewer passes over the arrays: the
  sums are einsum reductions on (N, C, H*W) views (no transposed copies, no temporary
  products) and outputs are finished in place. Their caches are their own.

This is not cs231n's fast_layers.py (whose name it avoids, so both can sit in one folder).
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from validation import (check_bn_param, check_conv_arguments, check_dout, check_eps, check_ndim,
                        check_pool_arguments, check_scale_shift, real_array, real_dout)


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




# ---------------------------------------------------------------------- normalization
# The same formulas as layers.py with fewer passes over the arrays: the per-feature sums
# (and sums of products) are einsum reductions, which write no temporary array, and the
# outputs are finished in place. The statistics of batch norm run over axes (0, 2) of a
# (N, C, P) view (P = H * W pixels, or 1 for (N, D) inputs), those of layer norm over the
# features of each row. Caches are this module's own.

def _batchnorm_forward(rows, gamma, beta, bn_param, dtype):
    """Batch norm of rows (N, C, P) over axes (0, 2); returns (out rows, cache)."""
    N, C, P = rows.shape
    mode, eps, momentum, running_mean, running_var = check_bn_param(bn_param, C, dtype, N)
    count = N * P
    if mode == "train":
        mean = np.einsum("ncp->c", rows) / count
        centered = rows - mean[:, None]
        var = np.einsum("ncp,ncp->c", centered, centered) / count
        bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mean
        bn_param["running_var"] = momentum * running_var + (1 - momentum) * var
    else:
        centered, var = rows - running_mean[:, None], running_var
    inv_std = 1 / np.sqrt(var + eps)
    out = centered * (gamma * inv_std)[:, None]
    out += beta[:, None]
    return out.astype(dtype, copy=False), (mode, centered, inv_std, gamma)


def _batchnorm_backward(rows, cache):
    """dx rows, dgamma, dbeta of _batchnorm_forward (the closed form of batchnorm_backward_alt,
    with xhat = centered * inv_std folded into the coefficients)."""
    mode, centered, inv_std, gamma = cache
    count = centered.shape[0] * centered.shape[2]
    dbeta = np.einsum("ncp->c", rows)
    dgamma = np.einsum("ncp,ncp->c", rows, centered) * inv_std
    scale = (gamma * inv_std)[:, None]
    if mode == "test":
        return rows * scale, dgamma, dbeta
    correction = centered * (dgamma * inv_std / count)[:, None]   # xhat * dgamma / count
    correction += (dbeta / count)[:, None]
    dx = rows - correction
    dx *= scale
    return dx, dgamma, dbeta


def batchnorm_forward(x, gamma, beta, bn_param):
    """layers.batchnorm_forward, fast: the same values, running statistics and errors."""
    x = real_array("x", x)
    check_ndim("x", x, 2, "(N, D)")
    gamma, beta = check_scale_shift(gamma, beta, (x.shape[1],), "one per feature of x (N, D)")
    out, cache = _batchnorm_forward(x[:, :, None], gamma, beta, bn_param,
                                    np.result_type(x, gamma, beta))
    return out[:, :, 0], (cache, x.shape)


def batchnorm_backward(dout, cache):
    """layers.batchnorm_backward_alt, fast: returns dx (N, D), dgamma, dbeta (D,)."""
    cache, shape = cache
    dout = real_dout(dout, shape)
    dx, dgamma, dbeta = _batchnorm_backward(dout[:, :, None], cache)
    return dx[:, :, 0], dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """layers.spatial_batchnorm_forward, fast: the same values, running statistics and errors."""
    x = real_array("x", x)
    check_ndim("x", x, 4, "(N, C, H, W)")
    N, C, H, W = x.shape
    gamma, beta = check_scale_shift(gamma, beta, (C,), "one per channel of x (N, C, H, W)")
    out, cache = _batchnorm_forward(x.reshape(N, C, H * W), gamma, beta, bn_param,
                                    np.result_type(x, gamma, beta))
    return out.reshape(x.shape), (cache, x.shape)


def spatial_batchnorm_backward(dout, cache):
    """layers.spatial_batchnorm_backward, fast: returns dx (N, C, H, W), dgamma, dbeta (C,)."""
    cache, shape = cache
    dout = real_dout(dout, shape)
    N, C, H, W = shape
    dx, dgamma, dbeta = _batchnorm_backward(dout.reshape(N, C, H * W), cache)
    return dx.reshape(shape), dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """layers.layernorm_forward, fast: the same values and errors."""
    x = real_array("x", x)
    check_ndim("x", x, 2, "(N, D)")
    D = x.shape[1]
    gamma, beta = check_scale_shift(gamma, beta, (D,), "one per feature of x (N, D)")
    eps = check_eps("ln_param", ln_param)
    centered = x - (np.einsum("nd->n", x) / max(D, 1))[:, None]
    inv_std = 1 / np.sqrt(np.einsum("nd,nd->n", centered, centered) / max(D, 1) + eps)
    xhat = centered
    xhat *= inv_std[:, None]
    out = xhat * gamma
    out += beta
    return out, (xhat, inv_std, gamma)


def layernorm_backward(dout, cache):
    """layers.layernorm_backward, fast: returns dx (N, D), dgamma, dbeta (D,)."""
    xhat, inv_std, gamma = cache
    dout = real_dout(dout, xhat.shape)
    D = max(xhat.shape[1], 1)
    dgamma, dbeta = np.einsum("nd,nd->d", dout, xhat), np.einsum("nd->d", dout)
    dxhat = dout * gamma
    correction = xhat * (np.einsum("nd,nd->n", dxhat, xhat) / D)[:, None]
    correction += (np.einsum("nd->n", dxhat) / D)[:, None]
    dxhat -= correction
    dxhat *= inv_std[:, None]
    return dxhat, dgamma, dbeta
