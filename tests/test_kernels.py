"""kernels.py (the fast convolution and pooling the models train with) computes what
layers.py's reference functions compute: values, every gradient, dtypes, caches and
errors, in float32 and float64, with strides, padding, odd shapes, ties and empty batches."""
import numpy as np
import pytest

import kernels
import layers
from gradient_check import eval_numerical_gradient_array, rel_error

# float64 results agree to round-off; float32 ones to float32 round-off of sums of ~100 terms
TOLERANCE = {np.float64: 1e-12, np.float32: 2e-5}

CONV_CASES = [  # N, C, H, W, F, HH, WW, stride, pad, bias
    (2, 3, 5, 7, 4, 3, 2, 1, 0, False),   # the contract's conv: stride 1, no padding
    (3, 2, 9, 8, 3, 3, 3, 2, 1, True),
    (1, 1, 5, 5, 2, 5, 5, 1, 0, True),    # kernel as large as the image: one output
    (2, 2, 8, 7, 2, 2, 3, 3, 2, True),    # stride 3 leaves uncovered rows and columns
    (2, 4, 6, 6, 5, 1, 1, 1, 0, False),   # 1x1 kernel
    (0, 2, 6, 6, 3, 3, 3, 1, 1, True),    # empty batch
    (5, 2, 6, 5, 3, 3, 2, 1, 1, True),    # several samples per block
]


def close(fast, reference, dtype):
    assert fast.dtype == reference.dtype and fast.shape == reference.shape
    scale = max(1.0, float(np.abs(reference).max(initial=0)))
    assert np.abs(fast - reference).max(initial=0) <= TOLERANCE[dtype] * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, C, H, W, F, HH, WW, stride, pad, bias", CONV_CASES)
def test_fast_convolution_equals_the_reference(N, C, H, W, F, HH, WW, stride, pad, bias, dtype):
    rng = np.random.default_rng(1)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((N, C, H, W), (F, C, HH, WW), (F,)))
    b = b if bias else None
    out, cache = layers.conv2d_forward(x, w, b, stride, pad)
    fast_out, fast_cache = kernels.conv2d_forward(x, w, b, stride, pad)
    close(fast_out, out, dtype)
    assert all(a is b for a, b in zip(fast_cache, cache))
    dout = rng.standard_normal(out.shape).astype(dtype)
    for need_dx in (True, False):
        grads = layers.conv2d_backward(dout, cache, need_dx)
        fast_grads = kernels.conv2d_backward(dout, fast_cache, need_dx)
        for fast, reference in zip(fast_grads, grads):
            if reference is None:
                assert fast is None
            else:
                close(fast, reference, dtype)
    if stride == 1 and pad == 0 and not bias:
        contract_out, contract_cache = kernels.conv_forward(x, w)
        close(contract_out, out, dtype)
        for fast, reference in zip(kernels.conv_backward(dout, contract_cache),
                                   layers.conv_backward(dout, layers.conv_forward(x, w)[1])):
            close(fast, reference, dtype)


POOL_CASES = [  # N, C, H, W, pool_height, pool_width, stride
    (2, 3, 4, 4, 2, 2, 2),
    (1, 2, 5, 7, 3, 2, 1),     # overlapping windows accumulate
    (2, 2, 7, 7, 3, 3, 2),
    (1, 1, 6, 5, 2, 1, 3),     # windows skip pixels
    (2, 3, 5, 7, 2, 2, 2),     # an uncovered last row and column
    (0, 2, 4, 4, 2, 2, 2),     # empty batch
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, C, H, W, ph, pw, stride", POOL_CASES)
def test_fast_max_pool_equals_the_reference_with_ties(N, C, H, W, ph, pw, stride, dtype):
    rng = np.random.default_rng(7)
    x = np.maximum(rng.integers(-2, 3, (N, C, H, W)), 0).astype(dtype)   # many ties, as after ReLU
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    out, cache = layers.max_pool_forward(x, pool_param)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = layers.max_pool_backward(dout, cache)
    for keep_choices in (False, True):
        fast_out, fast_cache = kernels.max_pool_forward(x, pool_param, keep_choices=keep_choices)
        np.testing.assert_array_equal(fast_out, out)
        assert fast_out.dtype == out.dtype and fast_cache[0] is x
        assert len(fast_cache) == (3 if keep_choices else 2)
        fast_dx = kernels.max_pool_backward(dout, fast_cache)
        close(fast_dx, dx, dtype)
        # the same entries get a gradient: ties went to the same (first) max
        np.testing.assert_array_equal(fast_dx != 0, dx != 0)


def test_fast_convolution_in_sample_blocks_equals_one_block(monkeypatch):
    """Batches go through in blocks of at most kernels.BLOCK_BYTES of columns: a budget of
    two samples' worth splits N=5 into blocks of 2, 2 and 1 (buffers reused, the last
    block partial); the gradients must still be the numeric ones."""
    rng = np.random.default_rng(12)
    N, C, H, W, F, HH, WW, stride, pad = 5, 2, 6, 5, 3, 3, 2, 1, 1
    x, w, b = (rng.standard_normal(s) for s in ((N, C, H, W), (F, C, HH, WW), (F,)))
    OH, Wq = H + 2 * pad - HH + 1, W + 2 * pad    # computed rows are Wq wide (stride 1)
    per_sample = (C * HH * WW + 1 + F) * OH * Wq * x.itemsize
    monkeypatch.setattr(kernels, "BLOCK_BYTES", 2 * per_sample)
    assert kernels._sample_blocks(N, per_sample)[1] == 2
    out, cache = kernels.conv2d_forward(x, w, b, stride, pad)
    close(out, layers.conv2d_forward(x, w, b, stride, pad)[0], np.float64)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = kernels.conv2d_backward(dout, cache)
    for value, grad in ((x, dx), (w, dw), (b, db)):
        def forward(_):
            return kernels.conv2d_forward(x, w, b, stride, pad)[0]
        numeric = eval_numerical_gradient_array(forward, value, dout)
        assert rel_error(numeric, grad) < 1e-7


def test_mixed_dtypes_follow_the_reference():
    """float16 x with float32 w: the reference computes dX in float32 (w and dout's type),
    and so must the fast kernel (computing it in x's float16 overflowed to inf)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float16)
    w = (rng.standard_normal((3, 2, 3, 3)) * 1e3).astype(np.float32)
    for module in (layers, kernels):
        out, cache = module.conv_forward(x, w)
        dx, dw = module.conv_backward(out, cache)
        assert out.dtype == dx.dtype == dw.dtype == np.float32
        assert np.isfinite(dx).all()
    close(kernels.conv_backward(out, cache)[0],
          layers.conv_backward(out, layers.conv_forward(x, w)[1])[0], np.float32)


@pytest.mark.parametrize("call", [
    lambda m: m.conv2d_forward(np.zeros((2, 3, 5, 5)), np.zeros((2, 4, 3, 3))),
    lambda m: m.conv2d_forward(np.zeros((2, 3, 5, 5)), np.zeros((2, 3, 3, 3)), np.zeros(3)),
    lambda m: m.conv2d_forward(np.zeros((2, 3, 5, 5)), np.zeros((2, 3, 3, 3)), None, 0),
    lambda m: m.conv2d_forward(np.zeros((3, 5, 5)), np.zeros((2, 3, 3, 3))),
    lambda m: m.max_pool_forward(np.zeros((1, 1, 4, 4)), {"pool_height": 5, "pool_width": 2, "stride": 1}),
    lambda m: m.max_pool_backward(np.zeros((1, 1, 3, 3)),
                                  m.max_pool_forward(np.zeros((1, 1, 4, 4)),
                                                     {"pool_height": 2, "pool_width": 2, "stride": 2})[1]),
    lambda m: m.conv_backward(np.zeros((2, 2, 2, 2)), m.conv_forward(np.zeros((2, 3, 5, 5)),
                                                                      np.zeros((2, 3, 3, 3)))[1]),
    lambda m: m.spatial_batchnorm_forward(np.zeros((2, 3, 4)), np.ones(3), np.zeros(3), {"mode": "train"}),
    lambda m: m.spatial_batchnorm_forward(np.zeros((2, 3, 4, 4)), np.ones(2), np.zeros(3), {"mode": "train"}),
    lambda m: m.spatial_batchnorm_forward(np.zeros((0, 3, 4, 4)), np.ones(3), np.zeros(3), {"mode": "train"}),
    lambda m: m.spatial_batchnorm_forward(np.zeros((2, 3, 4, 4)), np.ones(3), np.zeros(3), {"mode": "eval"}),
    lambda m: m.spatial_batchnorm_forward(np.zeros((2, 3, 4, 4)), np.ones(3), np.zeros(3),
                                          {"mode": "test", "running_mean": np.zeros(2)}),
    lambda m: m.spatial_batchnorm_backward(np.zeros((2, 3, 4, 5)), m.spatial_batchnorm_forward(
        np.arange(96.).reshape(2, 3, 4, 4), np.ones(3), np.zeros(3), {"mode": "train"})[1]),
    lambda m: m.batchnorm_forward(np.zeros((4, 3, 2)), np.ones(3), np.zeros(3), {"mode": "train"}),
    lambda m: m.batchnorm_forward(np.zeros((4, 3)), np.ones(2), np.zeros(3), {"mode": "train"}),
    lambda m: m.batchnorm_forward(np.zeros((4, 3)), np.ones(3), np.zeros(3), {"mode": "train", "momentum": 2}),
    lambda m: m.layernorm_forward(np.zeros((4, 3)), np.ones(3), np.zeros(2), {}),
    lambda m: m.layernorm_forward(np.zeros((4, 3)), np.ones(3), np.zeros(3), {"eps": 0}),
    lambda m: m.layernorm_backward(np.zeros((4, 2)), m.layernorm_forward(
        np.arange(12.).reshape(4, 3), np.ones(3), np.zeros(3), {})[1]),
])
def test_same_errors(call):
    assert_same_error(call)


def assert_same_error(call):
    """call(layers) and call(kernels) raise ValueError with the same message."""
    with pytest.raises(ValueError) as reference:
        call(layers)
    with pytest.raises(ValueError) as fast:
        call(kernels)
    assert str(fast.value) == str(reference.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, mode", [((4, 3, 5, 6), "train"), ((1, 2, 1, 1), "train"),
                                         ((2, 5, 3, 3), "test"), ((0, 2, 3, 3), "test"),
                                         ((16, 5), "train"), ((1, 3), "train"), ((7, 4), "test"),
                                         ((0, 3), "test")])
def test_fast_batchnorm_equals_the_reference(shape, mode, dtype):
    """kernels' batch norm, (N, D) and spatial (N, C, H, W), against layers.py's."""
    if len(shape) == 4:
        reference = (layers.spatial_batchnorm_forward, layers.spatial_batchnorm_backward)
        fast = (kernels.spatial_batchnorm_forward, kernels.spatial_batchnorm_backward)
    else:
        reference = (layers.batchnorm_forward, layers.batchnorm_backward_alt)
        fast = (kernels.batchnorm_forward, kernels.batchnorm_backward)
    rng = np.random.default_rng(5)
    C = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    param = {"mode": mode, "momentum": 0.7, "running_mean": rng.standard_normal(C).astype(dtype),
             "running_var": (rng.random(C) + 0.5).astype(dtype)}
    reference_param, fast_param = dict(param), dict(param)
    out, cache = reference[0](x, gamma, beta, reference_param)
    fast_out, fast_cache = fast[0](x, gamma, beta, fast_param)
    assert fast_out.dtype == out.dtype == dtype
    close(fast_out, out, dtype)
    for key in ("running_mean", "running_var"):
        assert fast_param[key].dtype == reference_param[key].dtype
        close(fast_param[key], reference_param[key], dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    for fast_grad, reference_grad in zip(fast[1](dout, fast_cache), reference[1](dout, cache)):
        close(fast_grad, reference_grad, dtype)   # (close checks dtype and shape too)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(8, 6), (1, 5), (0, 4), (3, 1)])
def test_fast_layernorm_equals_the_reference(shape, dtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    x_copy = x.copy()
    gamma, beta = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    out, cache = layers.layernorm_forward(x, gamma, beta, {"eps": 1e-4})
    fast_out, fast_cache = kernels.layernorm_forward(x, gamma, beta, {"eps": 1e-4})
    close(fast_out, out, dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    for fast, reference in zip(kernels.layernorm_backward(dout, fast_cache),
                               layers.layernorm_backward(dout, cache)):
        close(fast, reference, dtype)
    np.testing.assert_array_equal(x, x_copy)   # the in-place steps work on copies only


GROUPNORM_CASES = [  # N, C, H, W, G
    (4, 6, 5, 3, 3),
    (1, 4, 2, 2, 1),    # one sample, one group: layer norm over (C, H, W)
    (2, 4, 3, 3, 4),    # G = C: instance norm
    (3, 8, 1, 1, 2),    # 1x1 images
    (0, 4, 3, 3, 2),    # empty batch
]


def groupnorm_pair(module):
    return (lambda x, g, b, param, G: module.spatial_groupnorm_forward(x, g, b, G, param),
            module.spatial_groupnorm_backward)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, C, H, W, G", GROUPNORM_CASES)
def test_fast_groupnorm_equals_the_reference(N, C, H, W, G, dtype):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((N, C, H, W)) * 3 + 1).astype(dtype)
    x_copy = x.copy()
    gamma, beta = (rng.standard_normal((1, C, 1, 1)).astype(dtype) for _ in range(2))
    out, cache = layers.spatial_groupnorm_forward(x, gamma, beta, G, {"eps": 1e-4})
    fast_out, fast_cache = kernels.spatial_groupnorm_forward(x, gamma, beta, G, {"eps": 1e-4})
    close(fast_out, out, dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    for fast, reference in zip(kernels.spatial_groupnorm_backward(dout, fast_cache),
                               layers.spatial_groupnorm_backward(dout, cache)):
        close(fast, reference, dtype)   # dx, dgamma and dbeta (1, C, 1, 1)
    np.testing.assert_array_equal(x, x_copy)


def test_fast_groupnorm_gradients_are_numeric():
    """kernels' group norm backward against numeric gradients of kernels' own forward."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 6, 3, 4))
    gamma, beta = rng.standard_normal((1, 6, 1, 1)), rng.standard_normal((1, 6, 1, 1))
    dout = rng.standard_normal(x.shape)
    _, cache = kernels.spatial_groupnorm_forward(x, gamma, beta, 3, {})
    grads = kernels.spatial_groupnorm_backward(dout, cache)
    for value, grad in zip((x, gamma, beta), grads):
        def forward(_):
            return kernels.spatial_groupnorm_forward(x, gamma, beta, 3, {})[0]
        assert rel_error(eval_numerical_gradient_array(forward, value, dout), grad) < 1e-7


def normalization_cases():
    """(name, reference (forward, backward), fast (forward, backward), x shape, parameter
    shape, param) of each fast normalization kernel; forward(x, gamma, beta, param)."""
    return [
        ("batchnorm", (layers.batchnorm_forward, layers.batchnorm_backward_alt),
         (kernels.batchnorm_forward, kernels.batchnorm_backward), (16, 7), (7,), {"mode": "train"}),
        ("spatial batchnorm", (layers.spatial_batchnorm_forward, layers.spatial_batchnorm_backward),
         (kernels.spatial_batchnorm_forward, kernels.spatial_batchnorm_backward), (4, 3, 5, 6), (3,),
         {"mode": "train"}),
        ("layernorm", (layers.layernorm_forward, layers.layernorm_backward),
         (kernels.layernorm_forward, kernels.layernorm_backward), (6, 37), (37,), {}),
        ("groupnorm", groupnorm_pair(layers) + (), groupnorm_pair(kernels), (3, 6, 5, 4),
         (1, 6, 1, 1), {}),
    ]


def run_normalization(pair, x, gamma, beta, param, dout):
    """out, dx, dgamma, dbeta (and the updated param) of a forward/backward pair."""
    forward, backward = pair
    param = dict(param)
    if len(gamma.shape) == 4:   # group norm, 3 groups
        out, cache = forward(x, gamma, beta, param, 3)
    else:
        out, cache = forward(x, gamma, beta, param)
    return (out, *backward(dout, cache)), param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mean, spread, scale", [(1000.0, 1.0, 1.0), (-3e4, 1.0, 1.0),
                                                 (0.0, 1e-3, 1e3), (5.0, 1e3, 1e-3)])
@pytest.mark.parametrize("case", [c[0] for c in normalization_cases()])
def test_fast_normalization_is_as_accurate_as_the_reference(case, mean, spread, scale, dtype):
    """x = mean + spread * randn with a large mean (where a one-pass variance
    E[x^2] - mean^2 loses all its digits) and large or small spreads and gamma scales:
    fast and reference results both compared with the exact ones (the reference run in
    extended precision on the same inputs); the fast error must not exceed a few times the
    reference's (in float32, x = 1000 + r is only known to 6e-5: neither can be exact)."""
    if dtype == np.float64 and np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("no extended precision (np.longdouble is float64 here) for exact results")
    _, reference, fast, shape, parameter_shape, param = next(
        c for c in normalization_cases() if c[0] == case)
    rng = np.random.default_rng(13)
    x = (mean + spread * rng.standard_normal(shape)).astype(dtype)
    gamma = (scale * rng.standard_normal(parameter_shape)).astype(dtype)
    beta = rng.standard_normal(parameter_shape).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    exact, _ = run_normalization(reference, *(a.astype(np.longdouble) for a in (x, gamma, beta)),
                                 param, dout.astype(np.longdouble))
    reference_results, _ = run_normalization(reference, x, gamma, beta, param, dout)
    fast_results, _ = run_normalization(fast, x, gamma, beta, param, dout)
    for name, fast_value, reference_value, exact_value in zip(
            ("out", "dx", "dgamma", "dbeta"), fast_results, reference_results, exact):
        assert fast_value.dtype == reference_value.dtype == dtype
        size = max(1.0, float(np.abs(exact_value).max()))
        fast_error = float(np.abs(fast_value - exact_value).max()) / size
        reference_error = float(np.abs(reference_value - exact_value).max()) / size
        assert fast_error <= 4 * reference_error + TOLERANCE[dtype] / 10, name


def test_fast_normalization_keeps_the_reference_dtypes():
    """float32 x and dout with float64 gamma and beta: out, dx, dgamma, dbeta in the
    reference's dtypes (and values, to float32 round-off)."""
    rng = np.random.default_rng(14)
    for _, reference, fast, shape, parameter_shape, param in normalization_cases():
        x, dout = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
        gamma, beta = (rng.standard_normal(parameter_shape) for _ in range(2))
        reference_results, reference_param = run_normalization(reference, x, gamma, beta, param, dout)
        fast_results, fast_param = run_normalization(fast, x, gamma, beta, param, dout)
        for fast_value, reference_value in zip(fast_results, reference_results):
            close(fast_value, reference_value, np.float32)
        for key in ("running_mean", "running_var"):
            if key in reference_param:
                close(fast_param[key], reference_param[key], np.float32)


@pytest.mark.parametrize("call", [
    lambda m: m.spatial_groupnorm_forward(np.zeros((2, 6, 3, 3)), np.ones((1, 6, 1, 1)),
                                          np.zeros((1, 6, 1, 1)), 4, {}),
    lambda m: m.spatial_groupnorm_forward(np.zeros((2, 6, 3, 3)), np.ones((1, 6, 1, 1)),
                                          np.zeros((1, 6, 1, 1)), 0, {}),
    lambda m: m.spatial_groupnorm_forward(np.zeros((2, 6, 3, 3)), np.ones((1, 6, 1, 1)),
                                          np.zeros((1, 6, 1, 1)), True, {}),
    lambda m: m.spatial_groupnorm_forward(np.zeros((2, 6, 3, 3)), np.ones(6), np.zeros(6), 2, {}),
    lambda m: m.spatial_groupnorm_forward(np.zeros((2, 6, 3)), np.ones((1, 6, 1, 1)),
                                          np.zeros((1, 6, 1, 1)), 2, {}),
    lambda m: m.spatial_groupnorm_forward(np.zeros((2, 6, 3, 3)), np.ones((1, 6, 1, 1)),
                                          np.zeros((1, 6, 1, 1)), 2, {"eps": -1}),
    lambda m: m.spatial_groupnorm_backward(np.zeros((2, 6, 3, 4)), m.spatial_groupnorm_forward(
        np.arange(108.).reshape(2, 6, 3, 3), np.ones((1, 6, 1, 1)), np.zeros((1, 6, 1, 1)), 2, {})[1]),
])
def test_fast_groupnorm_same_errors(call):
    assert_same_error(call)
