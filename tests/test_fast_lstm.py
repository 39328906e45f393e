"""kernels.lstm_forward / lstm_backward (what CaptioningRNN trains with) compute what
rnn_layers.py's reference LSTM computes: the hidden states and every gradient, their dtypes
and the errors, in float32 and float64, for odd shapes, one step, one sample, an empty batch
and no steps; and that kernels runs on NumPy's BLAS alone."""
from pathlib import Path

import numpy as np
import pytest

import kernels
import rnn_layers
from gradient_check import eval_numerical_gradient_array, rel_error

# float64 agrees to round-off; float32 to float32 round-off of sums of ~D + H terms
TOLERANCE = {np.float64: 1e-12, np.float32: 3e-5}

SHAPES = [  # T, N, D, H
    (5, 3, 4, 6),
    (1, 1, 2, 1),      # one step, one sample, one hidden unit
    (4, 0, 3, 2),      # empty batch
    (0, 2, 3, 2),      # no steps
    (7, 2, 9, 5),      # D > H, odd sizes
    (3, 33, 17, 40),   # wider than the small cases: several BLAS blocks
]


def lstm_arguments(T, N, D, H, dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)

    def randn(*shape):
        return (scale * rng.standard_normal(shape)).astype(dtype)
    return (randn(T, N, D), randn(N, H), randn(D, 4 * H) / np.sqrt(D),
            randn(H, 4 * H) / np.sqrt(H), randn(4 * H)), randn(T, N, H)


def close(fast, reference, dtype):
    assert fast.dtype == reference.dtype and fast.shape == reference.shape
    scale = max(1.0, float(np.abs(reference).max(initial=0)))
    assert np.abs(fast - reference).max(initial=0) <= TOLERANCE[dtype] * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T, N, D, H", SHAPES)
def test_fast_lstm_equals_the_reference(T, N, D, H, dtype):
    arguments, dh = lstm_arguments(T, N, D, H, dtype)
    copies = [a.copy() for a in arguments]
    h, cache = kernels.lstm_forward(*arguments)
    reference_h, reference_cache = rnn_layers.lstm_forward(*arguments)
    close(h, reference_h, dtype)
    for fast, reference in zip(kernels.lstm_backward(dh, cache),
                               rnn_layers.lstm_backward(dh, reference_cache)):
        close(fast, reference, dtype)
    for argument, copy in zip(arguments, copies):   # the inputs are not modified
        assert np.array_equal(argument, copy)


@pytest.mark.parametrize("scale", [30.0, 1e-3])
def test_fast_lstm_equals_the_reference_with_saturated_and_tiny_gates(scale):
    """Large pre-activations saturate every gate (sigma and tanh at 0 or 1), tiny ones keep
    them at 1/2 and 0: both must still give the reference's states and gradients."""
    arguments, dh = lstm_arguments(6, 4, 5, 3, np.float64, seed=2, scale=scale)
    h, cache = kernels.lstm_forward(*arguments)
    reference_h, reference_cache = rnn_layers.lstm_forward(*arguments)
    close(h, reference_h, np.float64)
    for fast, reference in zip(kernels.lstm_backward(dh, cache),
                               rnn_layers.lstm_backward(dh, reference_cache)):
        close(fast, reference, np.float64)


def test_fast_lstm_gradients_match_numeric_ones():
    (x, h0, Wx, Wh, b), dh = lstm_arguments(4, 3, 5, 4, np.float64, seed=1)
    _, cache = kernels.lstm_forward(x, h0, Wx, Wh, b)
    dx, dh0, dWx, dWh, db = kernels.lstm_backward(dh, cache)
    numeric = {
        "x": eval_numerical_gradient_array(lambda v: kernels.lstm_forward(v, h0, Wx, Wh, b)[0], x, dh),
        "h0": eval_numerical_gradient_array(lambda v: kernels.lstm_forward(x, v, Wx, Wh, b)[0], h0, dh),
        "Wx": eval_numerical_gradient_array(lambda v: kernels.lstm_forward(x, h0, v, Wh, b)[0], Wx, dh),
        "Wh": eval_numerical_gradient_array(lambda v: kernels.lstm_forward(x, h0, Wx, v, b)[0], Wh, dh),
        "b": eval_numerical_gradient_array(lambda v: kernels.lstm_forward(x, h0, Wx, Wh, v)[0], b, dh),
    }
    for name, analytic in zip(numeric, (dx, dh0, dWx, dWh, db)):
        assert rel_error(analytic, numeric[name]) < 1e-7, name


@pytest.mark.parametrize("types", [
    (np.float32, np.float64),   # float32 data, float64 weights: float64 like the reference
    (np.int64, np.float32),     # integer data: float64 like the reference
])
def test_fast_lstm_mixed_dtypes_follow_the_reference(types):
    data_type, weight_type = types
    rng = np.random.default_rng(4)
    x = rng.integers(-2, 3, (3, 2, 4)).astype(data_type)
    h0 = rng.standard_normal((2, 3)).astype(weight_type)
    Wx, Wh = (rng.standard_normal(shape).astype(weight_type) for shape in ((4, 12), (3, 12)))
    b = np.zeros(12, weight_type)
    dh = rng.standard_normal((3, 2, 3)).astype(np.float32)
    h, cache = kernels.lstm_forward(x, h0, Wx, Wh, b)
    reference_h, reference_cache = rnn_layers.lstm_forward(x, h0, Wx, Wh, b)
    assert h.dtype == reference_h.dtype
    close(h, reference_h, np.float32)
    for fast, reference in zip(kernels.lstm_backward(dh, cache),
                               rnn_layers.lstm_backward(dh, reference_cache)):
        assert fast.dtype == reference.dtype
        close(fast, reference, np.float32)


@pytest.mark.parametrize("call", [
    lambda m: m.lstm_forward(np.zeros((2, 3, 4)), np.zeros((3, 5)), np.zeros((4, 20)),
                             np.zeros((5, 20)), np.zeros(19)),
    lambda m: m.lstm_forward(np.zeros((3, 4)), np.zeros((3, 5)), np.zeros((4, 20)),
                             np.zeros((5, 20)), np.zeros(20)),
    lambda m: m.lstm_forward(np.zeros((2, 3, 4)), np.zeros((2, 5)), np.zeros((4, 20)),
                             np.zeros((5, 20)), np.zeros(20)),
    lambda m: m.lstm_forward(np.zeros((2, 3, 4)), np.zeros((3, 5)), np.zeros((4, 5)),
                             np.zeros((5, 5)), np.zeros(5)),
    lambda m: m.lstm_backward(np.zeros((2, 3, 4)), m.lstm_forward(
        np.zeros((2, 3, 4)), np.zeros((3, 5)), np.zeros((4, 20)), np.zeros((5, 20)),
        np.zeros(20))[1]),
])
def test_fast_lstm_raises_the_reference_errors(call):
    with pytest.raises(ValueError) as reference:
        call(rnn_layers)
    with pytest.raises(ValueError) as fast:
        call(kernels)
    assert str(fast.value) == str(reference.value)


def test_fast_lstm_refuses_what_the_reference_refuses():
    x, h0, Wx, Wh, b = np.zeros((2, 3, 4)), np.zeros((3, 5)), np.zeros((4, 20)), \
        np.zeros((5, 20)), np.zeros(20)
    for module in (rnn_layers, kernels):
        with pytest.raises(TypeError, match="x"):
            module.lstm_forward(x.astype(complex), h0, Wx, Wh, b)


def test_kernels_use_numpys_blas_only():
    """A second BLAS library (SciPy's, loaded by scipy.linalg) brings a second thread
    pool, and at two threads the two pools fight over the cores: the fast LSTM took 207 ms
    against the reference's 75 (bench/compare_torch.py --threads 2). Importing kernels
    must not load it."""
    import subprocess
    import sys
    code = "import sys, kernels; print(sorted(m for m in sys.modules if m.startswith('scipy')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=str(Path(kernels.__file__).parent), check=True)
    assert result.stdout.strip() == "[]", result.stdout
