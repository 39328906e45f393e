"""Tests of the normalization layers of layers.py (API.md Part 3): hand-computed values,
numeric gradients (float64, rel error < 1e-7), running statistics, no mutation (except
bn_param's running statistics), float32 kept, shape and dtype errors."""
import copy
import zlib

import numpy as np
import pytest

import layers
from gradient_check import eval_numerical_gradient_array, rel_error

TOLERANCE = 1e-7
EPS = 1e-12   # small enough that the hand-computed values below are exact to 1e-9


# ----------------------------------------------------------------------- hand-computed

def test_batchnorm_train_hand_computed():
    # per column: mean [2, 4], biased variance [1, 4]  ->  xhat = [[-1, -1], [1, 1]]
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    bn_param = {"mode": "train", "eps": EPS}
    out, _ = layers.batchnorm_forward(x, np.array([2.0, 3.0]), np.array([0.5, -1.0]), bn_param)
    np.testing.assert_allclose(out, [[-1.5, -4.0], [2.5, 2.0]], atol=1e-9)
    # running = 0.9 * 0 + 0.1 * batch statistics (biased variance, as in cs231n)
    np.testing.assert_allclose(bn_param["running_mean"], [0.2, 0.4])
    np.testing.assert_allclose(bn_param["running_var"], [0.1, 0.4])
    layers.batchnorm_forward(x, np.ones(2), np.zeros(2), bn_param)
    np.testing.assert_allclose(bn_param["running_mean"], [0.9 * 0.2 + 0.2, 0.9 * 0.4 + 0.4])


def test_batchnorm_test_mode_uses_running_statistics():
    bn_param = {"mode": "test", "eps": EPS, "running_mean": np.array([1.0, -2.0]),
                "running_var": np.array([4.0, 0.25])}
    before = copy.deepcopy(bn_param)
    out, _ = layers.batchnorm_forward(np.array([[3.0, -2.0], [1.0, -1.0]]), np.array([1.0, 2.0]),
                                      np.array([0.0, 1.0]), bn_param)
    # (x - mean) / std = [[1, 0], [0, 2]], then gamma * . + beta
    np.testing.assert_allclose(out, [[1.0, 1.0], [0.0, 5.0]], atol=1e-9)
    for key in before:
        np.testing.assert_array_equal(bn_param[key], before[key])


def test_batchnorm_train_then_test_converges_to_data_statistics():
    rng = np.random.default_rng(0)
    bn_param = {"mode": "train"}
    gamma, beta = np.ones(3), np.zeros(3)
    for _ in range(200):
        layers.batchnorm_forward(rng.normal([1, -2, 5], [1, 3, 0.5], size=(64, 3)), gamma, beta, bn_param)
    np.testing.assert_allclose(bn_param["running_mean"], [1, -2, 5], atol=0.2)
    np.testing.assert_allclose(bn_param["running_var"], [1, 9, 0.25], rtol=0.15)
    bn_param["mode"] = "test"
    out, _ = layers.batchnorm_forward(rng.normal([1, -2, 5], [1, 3, 0.5], size=(5000, 3)), gamma, beta, bn_param)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=0.15)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=0.1)


def test_layernorm_hand_computed():
    # row [1, 3]: mean 2, var 1; row [0, 4]: mean 2, var 4; both give xhat [-1, 1].
    # A constant row has var 0: xhat 0, out = beta.
    x = np.array([[1.0, 3.0], [0.0, 4.0], [5.0, 5.0]])
    out, _ = layers.layernorm_forward(x, np.array([2.0, 1.0]), np.array([0.0, 10.0]), {"eps": EPS})
    np.testing.assert_allclose(out, [[-2.0, 11.0], [-2.0, 11.0], [0.0, 10.0]], atol=1e-9)


def test_spatial_batchnorm_hand_computed():
    # one channel with values 1, 3, 5, 7 over N=2 and W=2: mean 4, var 5
    x = np.array([1.0, 3.0, 5.0, 7.0]).reshape(2, 1, 1, 2)
    bn_param = {"mode": "train", "eps": EPS}
    out, _ = layers.spatial_batchnorm_forward(x, np.array([1.0]), np.array([0.0]), bn_param)
    np.testing.assert_allclose(out.ravel(), (np.array([1, 3, 5, 7]) - 4) / np.sqrt(5), atol=1e-9)
    np.testing.assert_allclose(bn_param["running_mean"], [0.4])
    np.testing.assert_allclose(bn_param["running_var"], [0.5])


def test_groupnorm_hand_computed():
    # channels [1, 3 | 10, 14] in G=2 groups: [1, 3] -> [-1, 1]; [10, 14] mean 12 var 4 -> [-1, 1]
    x = np.array([1.0, 3.0, 10.0, 14.0]).reshape(1, 4, 1, 1)
    gamma = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1)
    beta = np.array([0.0, 0.0, 1.0, 1.0]).reshape(1, 4, 1, 1)
    out, _ = layers.spatial_groupnorm_forward(x, gamma, beta, 2, {"eps": EPS})
    np.testing.assert_allclose(out.ravel(), [-1.0, 2.0, -2.0, 5.0], atol=1e-9)


def test_backward_hand_computed():
    # xhat = [[-1], [1]] (mean 2, var 1): dx = inv_std / N (N dxhat - sum dxhat - xhat sum dxhat xhat)
    # with dout = [[1], [0]]: dxhat = [1, 0], sum = 1, sum(dxhat xhat) = -1 -> dx = [0, 0]
    # with dout = [[1], [1]]: a shift of every output moves nothing -> dx = [0, 0], dbeta 2
    x = np.array([[1.0], [3.0]])
    for backward in (layers.batchnorm_backward, layers.batchnorm_backward_alt):
        _, cache = layers.batchnorm_forward(x, np.array([1.0]), np.array([0.0]), {"mode": "train", "eps": EPS})
        dx, dgamma, dbeta = backward(np.array([[1.0], [0.0]]), cache)
        np.testing.assert_allclose(dx, [[0.0], [0.0]], atol=1e-9)
        np.testing.assert_allclose(dgamma, [-1.0], atol=1e-9)
        np.testing.assert_allclose(dbeta, [1.0])
        dx, _, _ = backward(np.array([[2.0], [-1.0]]), cache)
        # dxhat = [2, -1]: sum 1, sum(dxhat xhat) = -3 -> dx = 1/2 (2*[2, -1] - 1 + 3 [-1, 1]) = [0, 0]
        np.testing.assert_allclose(dx, [[0.0], [0.0]], atol=1e-9)   # N = 2: xhat = +-1 whatever x
    # N = 3: x = [0, 1, 2] (mean 1, var 2/3), dout = [1, 0, 0]
    x = np.array([[0.0], [1.0], [2.0]])
    _, cache = layers.batchnorm_forward(x, np.array([1.0]), np.array([0.0]), {"mode": "train", "eps": EPS})
    xhat = (x - 1) / np.sqrt(2 / 3)
    expected = np.sqrt(3 / 2) / 3 * (3 * np.array([[1.0], [0], [0]]) - 1 - xhat * xhat[0])
    np.testing.assert_allclose(layers.batchnorm_backward(np.array([[1.0], [0], [0]]), cache)[0], expected)


# -------------------------------------------------------------------- numeric gradients

def _groupnorm_case(rng, N, C, H, W, G):
    return (rng.standard_normal((N, C, H, W)) * 2 + 1, rng.standard_normal((1, C, 1, 1)),
            rng.standard_normal((1, C, 1, 1)), G)


CASES = {   # name -> (forward(x, gamma, beta, extra), backward, make arguments)
    "batchnorm train": (layers.batchnorm_forward, layers.batchnorm_backward,
                        lambda rng: (rng.standard_normal((6, 5)) * 3 + 2, rng.standard_normal(5),
                                     rng.standard_normal(5), {"mode": "train"})),
    "batchnorm_alt train": (layers.batchnorm_forward, layers.batchnorm_backward_alt,
                            lambda rng: (rng.standard_normal((7, 4)) - 1, rng.standard_normal(4),
                                         rng.standard_normal(4), {"mode": "train", "eps": 1e-3})),
    "batchnorm test": (layers.batchnorm_forward, layers.batchnorm_backward,
                       lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal(3),
                                    rng.standard_normal(3),
                                    {"mode": "test", "running_mean": rng.standard_normal(3),
                                     "running_var": rng.random(3) + 0.5})),
    "batchnorm_alt test": (layers.batchnorm_forward, layers.batchnorm_backward_alt,
                           lambda rng: (rng.standard_normal((4, 3)), rng.standard_normal(3),
                                        rng.standard_normal(3),
                                        {"mode": "test", "running_mean": rng.standard_normal(3),
                                         "running_var": rng.random(3) + 0.5})),
    "layernorm": (layers.layernorm_forward, layers.layernorm_backward,
                  lambda rng: (rng.standard_normal((4, 6)) * 2, rng.standard_normal(6),
                               rng.standard_normal(6), {})),
    "spatial batchnorm": (layers.spatial_batchnorm_forward, layers.spatial_batchnorm_backward,
                          lambda rng: (rng.standard_normal((2, 3, 4, 5)) + 3, rng.standard_normal(3),
                                       rng.standard_normal(3), {"mode": "train"})),
    "groupnorm G=2": (lambda x, g, b, G: layers.spatial_groupnorm_forward(x, g, b, G, {}),
                      layers.spatial_groupnorm_backward,
                      lambda rng: _groupnorm_case(rng, 2, 6, 3, 4, 2)),
    "groupnorm G=1": (lambda x, g, b, G: layers.spatial_groupnorm_forward(x, g, b, G, {}),
                      layers.spatial_groupnorm_backward,
                      lambda rng: _groupnorm_case(rng, 3, 4, 2, 2, 1)),
    "groupnorm G=C": (lambda x, g, b, G: layers.spatial_groupnorm_forward(x, g, b, G, {}),
                      layers.spatial_groupnorm_backward,
                      lambda rng: _groupnorm_case(rng, 2, 3, 3, 3, 3)),
}


@pytest.mark.parametrize("name", CASES)
def test_gradients_and_no_mutation(name):
    forward, backward, make = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x, gamma, beta, extra = make(rng)
    copies = copy.deepcopy((x, gamma, beta, extra))
    call = lambda x, gamma, beta: forward(x, gamma, beta, copy.deepcopy(extra))[0]
    out, cache = forward(x, gamma, beta, extra)
    dout = rng.standard_normal(out.shape)
    dout_copy = dout.copy()
    grads = backward(dout, cache)
    for array, kept in zip((x, gamma, beta, dout), (*copies[:3], dout_copy)):
        np.testing.assert_array_equal(array, kept)
    if isinstance(extra, dict):   # only the running statistics may change, and only in training
        changed = {key for key in extra if key not in copies[3] or not np.array_equal(extra[key], copies[3][key])}
        assert changed <= ({"running_mean", "running_var"} if extra.get("mode") == "train" else set())
    for argument, analytic in zip(("x", "gamma", "beta"), grads):
        values = dict(x=x, gamma=gamma, beta=beta)
        numeric = eval_numerical_gradient_array(
            lambda a: call(**{**values, argument: a}), values[argument].copy(), dout)
        assert analytic.shape == values[argument].shape
        assert rel_error(numeric, analytic) < TOLERANCE, (argument, rel_error(numeric, analytic))


def test_alt_equals_graph_version():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 20)) * 4 - 3
    _, cache = layers.batchnorm_forward(x, rng.standard_normal(20), rng.standard_normal(20), {"mode": "train"})
    dout = rng.standard_normal((50, 20))
    for a, b in zip(layers.batchnorm_backward(dout, cache), layers.batchnorm_backward_alt(dout, cache)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_spatial_batchnorm_is_batchnorm_per_channel():
    rng = np.random.default_rng(6)
    x, gamma, beta = rng.standard_normal((3, 2, 4, 5)), rng.standard_normal(2), rng.standard_normal(2)
    out, _ = layers.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    for c in range(2):
        values = x[:, c]
        expected = gamma[c] * (values - values.mean()) / np.sqrt(values.var() + 1e-5) + beta[c]
        np.testing.assert_allclose(out[:, c], expected, rtol=1e-12)


def test_groupnorm_with_one_group_is_layernorm_of_flattened_samples():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 2, 2))
    out, _ = layers.spatial_groupnorm_forward(x, np.ones((1, 4, 1, 1)), np.zeros((1, 4, 1, 1)), 1, {})
    expected, _ = layers.layernorm_forward(x.reshape(3, -1), np.ones(16), np.zeros(16), {})
    np.testing.assert_allclose(out.reshape(3, -1), expected, rtol=1e-12)


# ------------------------------------------------------------------------ float32, errors

@pytest.mark.parametrize("name", CASES)
def test_float32_in_float32_out(name):
    forward, backward, make = CASES[name]
    x, gamma, beta, extra = make(np.random.default_rng(8))
    cast = lambda a: a.astype(np.float32) if isinstance(a, np.ndarray) else a
    extra32 = {k: cast(v) for k, v in extra.items()} if isinstance(extra, dict) else extra
    out, cache = forward(cast(x), cast(gamma), cast(beta), extra32)
    out64, _ = forward(x, gamma, beta, copy.deepcopy(extra))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, out64, atol=1e-4)
    grads = backward(np.ones_like(out), cache)
    assert all(g.dtype == np.float32 for g in grads)
    if isinstance(extra32, dict) and extra32.get("mode") == "train":
        assert extra32["running_mean"].dtype == np.float32 == extra32["running_var"].dtype


def test_shape_and_value_errors():
    x, g, b = np.zeros((4, 3)), np.ones(3), np.zeros(3)
    with pytest.raises(ValueError, match=r"x must be 2-D \(N, D\)"):
        layers.batchnorm_forward(np.zeros((4, 3, 2)), g, b, {"mode": "train"})
    with pytest.raises(ValueError, match=r"gamma has shape \(2,\), expected \(3,\)"):
        layers.batchnorm_forward(x, np.ones(2), b, {"mode": "train"})
    with pytest.raises(ValueError, match=r"beta has shape \(3, 1\)"):
        layers.layernorm_forward(x, g, np.zeros((3, 1)), {})
    with pytest.raises(ValueError, match=r"bn_param\['mode'\]"):
        layers.batchnorm_forward(x, g, b, {})
    with pytest.raises(ValueError, match=r"bn_param\['running_var'\] has shape \(4,\)"):
        layers.batchnorm_forward(x, g, b, {"mode": "test", "running_var": np.ones(4)})
    with pytest.raises(ValueError, match=r"bn_param\['momentum'\]"):
        layers.batchnorm_forward(x, g, b, {"mode": "train", "momentum": 1.5})
    with pytest.raises(ValueError, match=r"ln_param\['eps'\]"):
        layers.layernorm_forward(x, g, b, {"eps": -1})
    with pytest.raises(ValueError, match=r"empty batch"):
        layers.batchnorm_forward(np.zeros((0, 3)), g, b, {"mode": "train"})
    with pytest.raises(ValueError, match=r"gamma has shape \(3,\), expected \(2,\)"):
        layers.spatial_batchnorm_forward(np.zeros((2, 2, 3, 3)), g, b, {"mode": "train"})
    with pytest.raises(ValueError, match=r"gamma has shape \(4,\), expected \(1, 4, 1, 1\)"):
        layers.spatial_groupnorm_forward(np.zeros((2, 4, 3, 3)), np.ones(4), np.zeros(4), 2, {})
    gamma4, beta4 = np.ones((1, 4, 1, 1)), np.zeros((1, 4, 1, 1))
    for G in (3, 0, 2.0, True):
        with pytest.raises(ValueError, match=r"G must be a positive integer dividing the C=4"):
            layers.spatial_groupnorm_forward(np.zeros((2, 4, 3, 3)), gamma4, beta4, G, {})
    _, cache = layers.batchnorm_forward(x + np.arange(4)[:, None], g, b, {"mode": "train"})
    with pytest.raises(ValueError, match=r"dout has shape \(4, 2\)"):
        layers.batchnorm_backward_alt(np.zeros((4, 2)), cache)
    with pytest.raises(TypeError, match="x must hold real numbers"):
        layers.layernorm_forward(x.astype(complex), g, b, {})
    with pytest.raises(TypeError, match="gamma must hold real numbers"):
        layers.batchnorm_forward(x, g.astype(str), b, {"mode": "train"})


def test_test_mode_and_layernorm_accept_empty_batches():
    out, cache = layers.batchnorm_forward(np.zeros((0, 3)), np.ones(3), np.zeros(3), {"mode": "test"})
    assert out.shape == (0, 3)
    assert layers.batchnorm_backward(np.zeros((0, 3)), cache)[0].shape == (0, 3)
    out, cache = layers.layernorm_forward(np.zeros((0, 3)), np.ones(3), np.zeros(3), {})
    dx, dgamma, _ = layers.layernorm_backward(np.zeros((0, 3)), cache)
    assert dx.shape == (0, 3) and np.array_equal(dgamma, np.zeros(3))
