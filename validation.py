"""Argument checks shared by the layers (layers.py, rnn_layers.py, attention_layers.py),
their fast versions (kernels.py) and the models, so that each rule is written once and every
implementation of a layer raises the same errors.

Each check raises at once and builds its message only then: an f-string passed to a helper
would be formatted on every call (~20 us per training step of a small MLP). A wrong shape
or value raises ValueError naming the argument; a wrong dtype raises TypeError. This file
imports nothing but NumPy (and the standard library), so that with it the layer files
that use it can be dropped next to any course's files.
"""
import numbers

import numpy as np


def real_array(name, value):
    """
    value as an ndarray of a floating dtype: float arrays are returned as they are (the
    same object), lists are converted, integer and bool arrays become float64; other
    dtypes raise TypeError naming the argument. The input rule of every layer.
    """
    array = value if isinstance(value, np.ndarray) else as_array(name, value)
    kind = array.dtype.kind
    if kind == "f":
        return array
    if kind in "biu":
        return array.astype(np.float64)
    raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")


def as_array(name, value):
    """value as an ndarray; a ragged list raises ValueError naming the argument."""
    try:
        return np.asarray(value)
    except ValueError as error:   # a ragged list
        raise ValueError(f"{name} is not a rectangular array of numbers: {error}") from None


def check_ndim(name, array, ndim, layout):
    """array must have ndim axes (ValueError naming it, its expected layout, e.g. "(N, D)",
    and its shape otherwise)."""
    if np.ndim(array) != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {np.shape(array)}")


def check_dout(dout, expected_shape, name="dout"):
    """An upstream gradient must have the forward output's shape (ValueError naming both
    otherwise)."""
    if np.shape(dout) != tuple(expected_shape):
        raise ValueError(f"{name} has shape {np.shape(dout)}, expected the forward output's "
                         f"shape {tuple(expected_shape)}")


def real_dout(dout, expected_shape, name="dout"):
    """An upstream gradient as a real array (real_array) of the forward output's shape
    (check_dout): the first line of a backward pass."""
    dout = real_array(name, dout)
    check_dout(dout, expected_shape, name)
    return dout


def check_conv_arguments(x, w, b=None, stride=1, pad=0):
    """
    Check the arguments of a convolution (ValueError naming the argument) and return its
    output height and width, (1 + (H + 2 pad - HH) // stride, 1 + (W + 2 pad - WW) // stride).
    """
    check_ndim("x", x, 4, "(N, C, H, W)")
    check_ndim("w", w, 4, "(F, C, HH, WW)")
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w has C={w.shape[1]} input channels but x has C={x.shape[1]}: "
                         f"x shape {x.shape}, w shape {w.shape}")
    check_positive_int("stride", stride)
    if not (isinstance(pad, (int, np.integer)) and not isinstance(pad, bool) and pad >= 0):
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    padded_height, padded_width = x.shape[2] + 2 * pad, x.shape[3] + 2 * pad
    if not (w.shape[2] <= padded_height and w.shape[3] <= padded_width):
        raise ValueError(f"w's {w.shape[2]}x{w.shape[3]} kernel is larger than x's "
                         f"{padded_height}x{padded_width} padded input: x shape {x.shape}, "
                         f"w shape {w.shape}, pad {pad}")
    if b is not None and np.shape(b) != (w.shape[0],):
        raise ValueError(f"b has shape {np.shape(b)}, expected ({w.shape[0]},) to match w "
                         f"{w.shape}")
    return ((padded_height - w.shape[2]) // stride + 1, (padded_width - w.shape[3]) // stride + 1)


def check_pool_arguments(x, pool_param):
    """
    Check the arguments of a max pooling (ValueError naming the argument) and return
    (ph, pw, stride, OH, OW).
    """
    check_ndim("x", x, 4, "(N, C, H, W)")
    try:
        height, width, stride = (pool_param[key] for key in ("pool_height", "pool_width", "stride"))
    except (KeyError, TypeError):
        raise ValueError(f"pool_param must be a dict with keys 'pool_height', 'pool_width' "
                         f"and 'stride', got {pool_param!r}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
               for v in (height, width, stride)):
        raise ValueError(f"pool_param values must be positive integers, got {pool_param!r}")
    if not (height <= x.shape[2] and width <= x.shape[3]):
        raise ValueError(f"pool window {height}x{width} from pool_param is larger than x's "
                         f"{x.shape[2]}x{x.shape[3]} spatial size (x shape {x.shape})")
    out_height = (x.shape[2] - height) // stride + 1
    out_width = (x.shape[3] - width) // stride + 1
    return height, width, stride, out_height, out_width


def check_eps(name, param):
    """param['eps'] (default 1e-5) as a float if it is a positive number, param being a
    normalization layer's dict named `name` (bn_param, ln_param, gn_param); ValueError
    naming it otherwise."""
    if not isinstance(param, dict):
        raise ValueError(f"{name} must be a dict (optional key 'eps'), got {param!r}")
    eps = param.get("eps", 1e-5)
    if not (isinstance(eps, numbers.Real) and eps > 0):
        raise ValueError(f"{name}['eps'] must be a positive number, got {eps!r}")
    return float(eps)


def check_scale_shift(gamma, beta, shape, layout):
    """gamma and beta as real arrays of `shape` (ValueError naming them otherwise)."""
    gamma, beta = real_array("gamma", gamma), real_array("beta", beta)
    for name, array in (("gamma", gamma), ("beta", beta)):
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}, expected {shape} ({layout})")
    return gamma, beta


def check_bn_param(bn_param, D, dtype, N):
    """(mode, eps, momentum, running_mean, running_var) of bn_param for a batch of N samples,
    the running statistics (D,) as `dtype` (zeros when absent); ValueError naming the key
    otherwise, or the empty batch in train mode."""
    if not isinstance(bn_param, dict):
        raise ValueError(f"bn_param must be a dict with at least 'mode', got {bn_param!r}")
    mode = bn_param.get("mode")
    if mode not in ("train", "test"):
        raise ValueError(f"bn_param['mode'] must be 'train' or 'test', got {mode!r}")
    if mode == "train" and N == 0:
        raise ValueError("x is an empty batch (N=0): batch norm in train mode needs at "
                         "least one sample for the batch statistics")
    eps = check_eps("bn_param", bn_param)
    momentum = bn_param.get("momentum", 0.9)
    if not (isinstance(momentum, numbers.Real) and 0 <= momentum <= 1):
        raise ValueError(f"bn_param['momentum'] must be in [0, 1], got {momentum!r}")
    running = []
    for key in ("running_mean", "running_var"):
        value = bn_param.get(key)
        value = np.zeros(D, dtype) if value is None else real_array(f"bn_param['{key}']", value)
        if value.shape != (D,):
            raise ValueError(f"bn_param['{key}'] has shape {value.shape}, expected ({D},) "
                             f"for x with D={D} features")
        running.append(value.astype(dtype, copy=False))
    return mode, eps, float(momentum), *running


def checked_groupnorm(x, gamma, beta, G, gn_param):
    """x (N, C, H, W), gamma and beta (1, C, 1, 1) as real arrays, G a positive integer
    dividing C, and gn_param's eps: (x, gamma, beta, eps) of a spatial group norm."""
    x = real_array("x", x)
    check_ndim("x", x, 4, "(N, C, H, W)")
    C = x.shape[1]
    gamma, beta = check_scale_shift(gamma, beta, (1, C, 1, 1), "one per channel of x (N, C, H, W)")
    if not (isinstance(G, (int, np.integer)) and not isinstance(G, bool) and G >= 1 and C % G == 0):
        raise ValueError(f"G must be a positive integer dividing the C={C} channels of x, "
                         f"got G={G!r}")
    return x, gamma, beta, check_eps("gn_param", gn_param)


def check_positive_int(name, value):
    """value if it is a positive integer (bool excluded); ValueError naming it otherwise."""
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_keep_prob(name, value):
    """
    value as a float if it is a dropout KEEP probability, in (0, 1] (the cs231n convention:
    PyTorch's nn.Dropout(d) drops with probability d, so it is keep = 1 - d); ValueError
    naming it otherwise.
    """
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value <= 1):
        raise ValueError(f"{name} is the dropout KEEP probability and must be in (0, 1], "
                         f"got {value!r}")
    return float(value)


def checked_cell(x, x_layout, h_name, h, Wx, Wh, b, gates):
    """x, h, Wx, Wh, b of a recurrent cell as real arrays, their shapes checked."""
    x, h, Wx, Wh, b = (real_array(name, value) for name, value in
                        (("x", x), (h_name, h), ("Wx", Wx), ("Wh", Wh), ("b", b)))
    check_cell_shapes(x, x_layout, h_name, h, Wx, Wh, b, gates)
    return x, h, Wx, Wh, b


def check_cell_shapes(x, x_layout, h_name, h, Wx, Wh, b, gates):
    """
    Shapes of a recurrent cell's inputs: x (..., N, D) with the given layout, h (N, H),
    Wx (D, G), Wh (H, G), b (G,) with G = gates * H (1 for the RNN, 4 for the LSTM).
    """
    check_ndim("x", x, len(x_layout.split(",")), x_layout)
    check_ndim(h_name, h, 2, "(N, H)")
    N, D = x.shape[-2:]
    H = h.shape[1]
    G, g_name = gates * H, ("H" if gates == 1 else f"{gates}H")
    if h.shape[0] != N:
        raise ValueError(f"{h_name} has shape {h.shape}, expected ({N}, H) to match N={N} of x "
                         f"{x.shape}")
    if np.shape(Wx) != (D, G):
        raise ValueError(f"Wx has shape {np.shape(Wx)}, expected (D, {g_name}) = ({D}, {G}) for "
                         f"x {x.shape} and {h_name} {h.shape}")
    if np.shape(Wh) != (H, G):
        raise ValueError(f"Wh has shape {np.shape(Wh)}, expected (H, {g_name}) = ({H}, {G}) for "
                         f"{h_name} {h.shape}")
    if np.shape(b) != (G,):
        raise ValueError(f"b has shape {np.shape(b)}, expected ({G},) = ({g_name},) for "
                         f"{h_name} {h.shape}")
