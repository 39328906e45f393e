"""Tests for optim.py: two hand-computed steps per rule (so the state is exercised),
defaults, no mutation, and float32 staying float32."""
import math

import numpy as np
import pytest

import optim

W0 = [1.0, -2.0]
DW1 = [0.5, -1.0]
DW2 = [-1.0, 2.0]


def two_steps(rule, config, dtype=np.float64):
    w0 = np.array(W0, dtype=dtype)
    w1, config = rule(w0, np.array(DW1, dtype=dtype), config)
    w2, config = rule(w1, np.array(DW2, dtype=dtype), config)
    return w1, w2, config


def test_sgd_two_steps():
    w1, w2, _ = two_steps(optim.sgd, {'learning_rate': 0.1})
    # w1 = w0 - 0.1 * dw1 ; w2 = w1 - 0.1 * dw2
    np.testing.assert_allclose(w1, [0.95, -1.9], rtol=0, atol=1e-15)
    np.testing.assert_allclose(w2, [1.05, -2.1], rtol=0, atol=1e-15)


def test_sgd_momentum_two_steps():
    w1, w2, config = two_steps(optim.sgd_momentum, {'learning_rate': 0.1, 'momentum': 0.9})
    # v1 = -0.1 * [0.5, -1] = [-0.05, 0.1];  w1 = [0.95, -1.9]
    # v2 = 0.9 * v1 - 0.1 * [-1, 2] = [0.055, -0.11];  w2 = w1 + v2 = [1.005, -2.01]
    np.testing.assert_allclose(w1, [0.95, -1.9], rtol=0, atol=1e-15)
    np.testing.assert_allclose(config['velocity'], [0.055, -0.11], rtol=0, atol=1e-15)
    np.testing.assert_allclose(w2, [1.005, -2.01], rtol=0, atol=1e-15)


def test_rmsprop_two_steps():
    lr, rho, eps = 0.1, 0.75, 1e-8
    w1, w2, config = two_steps(optim.rmsprop,
                               {'learning_rate': lr, 'decay_rate': rho, 'epsilon': eps})
    # Step 1: cache = 0.25 g^2, so sqrt(cache) = |g| / 2 and the step is 2 lr sign(g).
    np.testing.assert_allclose(w1, [0.8, -1.8], rtol=0, atol=1e-7)
    # Step 2, element by element from the formulas.
    for i in range(2):
        c1 = (1 - rho) * DW1[i] ** 2
        c2 = rho * c1 + (1 - rho) * DW2[i] ** 2
        w1_i = W0[i] - lr * DW1[i] / (math.sqrt(c1) + eps)
        w2_i = w1_i - lr * DW2[i] / (math.sqrt(c2) + eps)
        assert config['cache'][i] == pytest.approx(c2, rel=1e-14)
        assert w2[i] == pytest.approx(w2_i, rel=1e-14)
    # For element 0: c2 = 0.75 * 0.0625 + 0.25 * 1 = 0.296875.
    assert config['cache'][0] == pytest.approx(0.296875, rel=1e-14)


def test_adam_two_steps():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    w1, w2, config = two_steps(optim.adam, {'learning_rate': lr, 'beta1': b1,
                                            'beta2': b2, 'epsilon': eps})
    # Step 1 (t = 1): m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps).
    np.testing.assert_allclose(w1, [0.9, -1.9], rtol=0, atol=1e-7)
    assert config['t'] == 2
    for i in range(2):
        m1, v1 = (1 - b1) * DW1[i], (1 - b2) * DW1[i] ** 2
        w1_i = W0[i] - lr * (m1 / (1 - b1)) / (math.sqrt(v1 / (1 - b2)) + eps)
        m2 = b1 * m1 + (1 - b1) * DW2[i]
        v2 = b2 * v1 + (1 - b2) * DW2[i] ** 2
        w2_i = w1_i - lr * (m2 / (1 - b1 ** 2)) / (math.sqrt(v2 / (1 - b2 ** 2)) + eps)
        assert config['m'][i] == pytest.approx(m2, rel=1e-14)
        assert config['v'][i] == pytest.approx(v2, rel=1e-14)
        assert w2[i] == pytest.approx(w2_i, rel=1e-14)
    # Element 0 by hand: m2 = 0.9*0.05 - 0.1 = -0.055, m_hat = -0.055/0.19;
    # v2 = 0.999*0.00025 + 0.001 = 0.00124975, v_hat = v2/0.001999.
    m_hat, v_hat = -0.055 / 0.19, 0.00124975 / 0.001999
    assert w2[0] == pytest.approx(0.9 - 0.1 * m_hat / math.sqrt(v_hat), rel=1e-7)


def test_nesterov_momentum_two_steps():
    w1, w2, config = two_steps(optim.nesterov_momentum, {'learning_rate': 0.1, 'momentum': 0.9})
    # torch's form: v = mu v + g; w -= lr (g + mu v).
    # v1 = g1 = [0.5, -1]; step g1 + 0.9 v1 = [0.95, -1.9]; w1 = w0 - 0.1 step = [0.905, -1.81]
    # v2 = 0.9 v1 + g2 = [-0.55, 1.1]; step g2 + 0.9 v2 = [-1.495, 2.99]; w2 = [1.0545, -2.109]
    np.testing.assert_allclose(w1, [0.905, -1.81], rtol=0, atol=1e-15)
    np.testing.assert_allclose(config['velocity'], [-0.55, 1.1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(w2, [1.0545, -2.109], rtol=0, atol=1e-15)


def test_nesterov_momentum_is_cs231n_form_at_a_constant_learning_rate():
    """cs231n: u = mu u - lr g; w += -mu u_prev + (1 + mu) u. The same weights while lr
    is constant (u = -lr v); with a lr change in between they differ."""
    rng = np.random.default_rng(0)
    lr, mu = 0.05, 0.8
    grads = rng.standard_normal((6, 3))
    w, config = rng.standard_normal(3), {'learning_rate': lr, 'momentum': mu}
    w_cs, u = w.copy(), np.zeros(3)
    for g in grads:
        w, config = optim.nesterov_momentum(w, g, config)
        u_prev, u = u, mu * u - lr * g
        w_cs = w_cs - mu * u_prev + (1 + mu) * u
        np.testing.assert_allclose(w, w_cs, rtol=0, atol=1e-14)
    np.testing.assert_allclose(-lr * config['velocity'], u, rtol=0, atol=1e-14)
    # halve the learning rate: torch's form scales the whole next step, cs231n's does not
    config['learning_rate'] = lr / 2
    g = grads[0]
    v_next = mu * config['velocity'] + g
    w_next, _ = optim.nesterov_momentum(w, g, config)
    np.testing.assert_allclose(w_next, w - lr / 2 * (g + mu * v_next), rtol=0, atol=1e-14)
    u_next = mu * u - lr / 2 * g
    assert np.max(np.abs(w_next - (w_cs - mu * u + (1 + mu) * u_next))) > 1e-3


def test_adamw_two_steps():
    lr, wd, b1, b2, eps = 0.1, 0.5, 0.9, 0.999, 1e-8
    w1, w2, config = two_steps(optim.adamw, {'learning_rate': lr, 'weight_decay': wd,
                                             'beta1': b1, 'beta2': b2, 'epsilon': eps})
    # Step 1: decay by 1 - lr wd = 0.95, then Adam's first step lr * sign(g):
    # [0.95, -1.9] - 0.1 * [1, -1] = [0.85, -1.8]
    np.testing.assert_allclose(w1, [0.85, -1.8], rtol=0, atol=1e-7)
    assert config['t'] == 2
    # Step 2, element 0: 0.95 * 0.85 = 0.8075, then Adam's second step (the numbers of
    # test_adam_two_steps): m_hat = -0.055 / 0.19, v_hat = 0.00124975 / 0.001999.
    m_hat, v_hat = -0.055 / 0.19, 0.00124975 / 0.001999
    assert w2[0] == pytest.approx(0.8075 - 0.1 * m_hat / math.sqrt(v_hat), rel=1e-7)
    for i in range(2):
        m1, v1 = (1 - b1) * DW1[i], (1 - b2) * DW1[i] ** 2
        w1_i = W0[i] * (1 - lr * wd) - lr * (m1 / (1 - b1)) / (math.sqrt(v1 / (1 - b2)) + eps)
        m2 = b1 * m1 + (1 - b1) * DW2[i]
        v2 = b2 * v1 + (1 - b2) * DW2[i] ** 2
        w2_i = w1_i * (1 - lr * wd) - lr * (m2 / (1 - b1 ** 2)) / (
            math.sqrt(v2 / (1 - b2 ** 2)) + eps)
        assert w2[i] == pytest.approx(w2_i, rel=1e-14)


def test_adamw_decay_is_decoupled_from_the_gradient():
    # A zero gradient: Adam's step is 0, so only the decay acts: w (1 - lr wd), exactly.
    # (L2 regularization inside Adam, g = wd * w, would step by lr * sign(w) instead.)
    w = np.array([2.0, -0.5])
    w1, _ = optim.adamw(w, np.zeros(2), {'learning_rate': 0.1, 'weight_decay': 0.2})
    np.testing.assert_array_equal(w1, w * (1 - 0.1 * 0.2))
    l2, _ = optim.adam(w, 0.2 * w, {'learning_rate': 0.1})
    np.testing.assert_allclose(l2, w - 0.1 * np.sign(w), rtol=1e-7)


def test_adamw_without_weight_decay_is_adam():
    rng = np.random.default_rng(1)
    w = w_adam = rng.standard_normal(4)
    config, config_adam = {'weight_decay': 0.0}, {}
    for _ in range(3):
        g = rng.standard_normal(4)
        w, config = optim.adamw(w, g, config)
        w_adam, config_adam = optim.adam(w_adam, g, config_adam)
        np.testing.assert_array_equal(w, w_adam)


@pytest.mark.parametrize('rule, defaults, state', [
    (optim.sgd, {'learning_rate': 1e-2}, []),
    (optim.sgd_momentum, {'learning_rate': 1e-2, 'momentum': 0.9}, ['velocity']),
    (optim.rmsprop, {'learning_rate': 1e-2, 'decay_rate': 0.99, 'epsilon': 1e-8},
     ['cache']),
    (optim.adam, {'learning_rate': 1e-3, 'beta1': 0.9, 'beta2': 0.999, 'epsilon': 1e-8},
     ['m', 'v', 't']),
    (optim.nesterov_momentum, {'learning_rate': 1e-2, 'momentum': 0.9}, ['velocity']),
    (optim.adamw, {'learning_rate': 1e-3, 'weight_decay': 1e-2, 'beta1': 0.9, 'beta2': 0.999,
                   'epsilon': 1e-8}, ['m', 'v', 't']),
])
def test_defaults_and_state_keys(rule, defaults, state):
    w, dw = np.array(W0), np.array(DW1)
    _, config = rule(w, dw)
    assert set(config) == set(defaults) | set(state)
    for name, value in defaults.items():
        assert config[name] == value
    # The default learning rate is actually used: the same as passing it explicitly.
    explicit, _ = rule(w, dw, dict(defaults))
    np.testing.assert_array_equal(rule(w, dw)[0], explicit)


RULES = [optim.sgd, optim.sgd_momentum, optim.rmsprop, optim.adam, optim.nesterov_momentum,
         optim.adamw]


@pytest.mark.parametrize('rule', RULES)
def test_inputs_and_old_state_not_mutated(rule):
    w, dw1, dw2 = np.array(W0), np.array(DW1), np.array(DW2)
    w_copy, dw1_copy = w.copy(), dw1.copy()
    w1, config = rule(w, dw1, {'learning_rate': 0.1})
    np.testing.assert_array_equal(w, w_copy)
    np.testing.assert_array_equal(dw1, dw1_copy)
    assert w1 is not w
    # The state arrays of step 1 are replaced, not updated in place, by step 2.
    state1 = {k: v.copy() for k, v in config.items() if isinstance(v, np.ndarray)}
    objects1 = {k: config[k] for k in state1}
    w1_copy = w1.copy()
    rule(w1, dw2, config)
    np.testing.assert_array_equal(w1, w1_copy)
    for k in state1:
        np.testing.assert_array_equal(objects1[k], state1[k])


@pytest.mark.parametrize('rule', RULES)
def test_float32_stays_float32(rule):
    w = np.array(W0, dtype=np.float32)
    # NumPy float64 hyperparameters and an int64 step count must not upcast.
    config = {'learning_rate': np.float64(0.1)}
    if rule in (optim.adam, optim.adamw):
        config.update(beta1=np.float64(0.9), t=np.int64(3))
    if rule is optim.adamw:
        config.update(weight_decay=np.float64(0.1))
    if rule is optim.nesterov_momentum:
        config.update(momentum=np.float64(0.9))
    for dw in (DW1, DW2):
        w, config = rule(w, np.array(dw, dtype=np.float32), config)
        assert w.dtype == np.float32
        for value in config.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32
    # float32 weights with a float64 gradient: the weights keep their dtype.
    w64grad, _ = rule(w, np.array(DW1), None)
    assert w64grad.dtype == np.float32
