"""Tests of attention_layers.py (API.md Part 3): hand-computed values, numeric gradients
(float64, rel error < 1e-7) with and without masks, one and several heads, stability
with large scores in float32, no mutation, shape and dtype errors."""
import copy

import numpy as np
import pytest

import attention_layers as al
from gradient_check import eval_numerical_gradient_array, rel_error

TOLERANCE = 1e-7


def numeric(f, x, dout):
    return eval_numerical_gradient_array(f, x.copy(), dout)


def random_params(rng, E, scale=0.5):
    return {name: rng.standard_normal((E, E) if name.startswith("W") else E) * scale
            for name in al.PARAM_NAMES}


# ----------------------------------------------------------------------- hand-computed

def test_causal_mask_and_positional_encoding_hand_computed():
    np.testing.assert_array_equal(al.causal_mask(3), [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    assert al.causal_mask(3).dtype == bool
    PE = al.positional_encoding(3, 4)
    # column pair i = 0 has frequency 1, pair i = 1 has 1 / 10000^(2/4) = 1/100
    expected = [[0, 1, 0, 1], [np.sin(1), np.cos(1), np.sin(0.01), np.cos(0.01)],
                [np.sin(2), np.cos(2), np.sin(0.02), np.cos(0.02)]]
    np.testing.assert_allclose(PE, expected, rtol=1e-6, atol=1e-7)
    assert PE.dtype == np.float32 and al.positional_encoding(2, 6, np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="E must be even"):
        al.positional_encoding(3, 5)


def test_scaled_dot_product_attention_hand_computed():
    # d = 2: scores q.k / sqrt(2) = [0, log 3] -> P = [1/4, 3/4]; out = 4/4 + 3*8/4 = 7
    q = np.array([[1.0, 0.0]])
    k = np.array([[0.0, 5.0], [np.sqrt(2) * np.log(3), 0.0]])
    v = np.array([[4.0], [8.0]])
    np.testing.assert_allclose(al.attention_weights(q, k), [[0.25, 0.75]])
    out, cache = al.scaled_dot_product_attention_forward(q, k, v)
    np.testing.assert_allclose(out, [[7.0]])
    # masking the second key leaves all the weight on the first
    out, _ = al.scaled_dot_product_attention_forward(q, k, v, mask=np.array([[True, False]]))
    np.testing.assert_allclose(out, [[4.0]])
    # dv = P^T dout; dP = dout v^T = [4, 8]; dz = P (dP - P.dP) / sqrt(2) = [1/4 (4-7), 3/4 (8-7)] / sqrt 2
    dq, dk, dv = al.scaled_dot_product_attention_backward(np.array([[1.0]]), cache)
    np.testing.assert_allclose(dv, [[0.25], [0.75]])
    dz = np.array([[-0.75, 0.75]]) / np.sqrt(2)
    np.testing.assert_allclose(dq, dz @ k)
    np.testing.assert_allclose(dk, dz.T @ q)


def test_multi_head_attention_hand_computed():
    # E = 2, 2 heads of d = 1, identity projections, zero biases: head h uses column h.
    # A zero query scores 0 against every key -> uniform weights -> the mean value [2, 3].
    E = 2
    params = {name: (np.eye(E) if name.startswith("W") else np.zeros(E)) for name in al.PARAM_NAMES}
    query, kv = np.zeros((1, 1, E)), np.array([[[1.0, 2.0], [3.0, 4.0]]])
    out, _ = al.multi_head_attention_forward(query, kv, kv, params, num_heads=2)
    np.testing.assert_allclose(out, [[[2.0, 3.0]]])
    # an output projection that swaps the heads, plus b_o
    params = {**params, "W_o": np.array([[0.0, 1.0], [1.0, 0.0]]), "b_o": np.array([10.0, 20.0])}
    out, _ = al.multi_head_attention_forward(query, kv, kv, params, num_heads=2)
    np.testing.assert_allclose(out, [[[13.0, 22.0]]])
    # a causal mask on 2 positions: position 0 sees only itself
    out, _ = al.multi_head_attention_forward(kv, kv, kv, {**params, "W_q": np.zeros((2, 2))}, 2,
                                             mask=al.causal_mask(2))
    np.testing.assert_allclose(out, [[[12.0, 21.0], [13.0, 22.0]]])


def test_heads_are_column_blocks():
    """Head h of multi-head attention is attention_weights(X W_q^h, X W_k^h) (API.md)."""
    rng = np.random.default_rng(0)
    N, T, E, H = 2, 5, 12, 3
    params = {**random_params(rng, E), "b_q": np.zeros(E), "b_k": np.zeros(E)}
    x = rng.standard_normal((N, T, E))
    _, cache = al.multi_head_attention_forward(x, x, x, params, H)
    P = cache[-1][3]
    d = E // H
    for h in range(H):
        columns = slice(h * d, (h + 1) * d)
        expected = al.attention_weights(x @ params["W_q"][:, columns], x @ params["W_k"][:, columns])
        np.testing.assert_allclose(P[:, h], expected, rtol=1e-12)


# -------------------------------------------------------------------- numeric gradients

SDPA_CASES = {   # name -> (q shape, k shape, v shape, mask shape or None)
    "2-D": ((3, 4), (5, 4), (5, 2), None),
    "batched": ((2, 3, 4), (2, 6, 4), (2, 6, 3), None),
    "heads, causal": ((2, 2, 5, 3), (2, 2, 5, 3), (2, 2, 5, 4), "causal"),
    "heads, padding mask (N, 1, T, S)": ((2, 3, 4, 2), (2, 3, 6, 2), (2, 3, 6, 2), (2, 1, 4, 6)),
}


def make_mask(rng, what, T):
    if what is None:
        return None
    if what == "causal":
        return al.causal_mask(T)
    mask = rng.random(what) < 0.5
    mask[..., 0] = True
    return mask


@pytest.mark.parametrize("name", SDPA_CASES)
def test_scaled_dot_product_attention_gradients_and_no_mutation(name):
    q_shape, k_shape, v_shape, mask_what = SDPA_CASES[name]
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal(s) for s in (q_shape, k_shape, v_shape))
    mask = make_mask(rng, mask_what, q_shape[-2])
    copies = copy.deepcopy((q, k, v, mask))
    out, cache = al.scaled_dot_product_attention_forward(q, k, v, mask)
    assert out.shape == q_shape[:-1] + v_shape[-1:]
    dout = rng.standard_normal(out.shape)
    grads = al.scaled_dot_product_attention_backward(dout, cache)
    for array, kept in zip((q, k, v, mask), copies):
        np.testing.assert_array_equal(array, kept)
    f = lambda q, k, v: al.scaled_dot_product_attention_forward(q, k, v, mask)[0]
    for position, (array, analytic) in enumerate(zip((q, k, v), grads)):
        args = [q, k, v]
        def g(a, position=position):
            args[position] = a
            return f(*args)
        assert rel_error(numeric(g, array, dout), analytic) < TOLERANCE


def test_masked_entries_get_zero_weight_and_gradient():
    rng = np.random.default_rng(2)
    q, k, v = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    mask = al.causal_mask(4)
    P = al.attention_weights(q, k, mask)
    assert np.all(P[~mask] == 0)
    np.testing.assert_allclose(P.sum(axis=-1), 1)
    _, cache = al.scaled_dot_product_attention_forward(q, k, v, mask)
    dout = np.zeros((4, 2))
    dout[0, 0] = 1.0
    _, dk, dv = al.scaled_dot_product_attention_backward(dout, cache)
    # only query 0 has a gradient, and it sees only key 0: keys 1..3 get nothing
    assert np.all(dk[1:] == 0) and np.all(dv[1:] == 0)


MHA_CASES = {   # name -> (N, T, S, E, heads, mask)
    "one head": (2, 3, 4, 4, 1, None),
    "two heads, cross": (2, 3, 5, 6, 2, None),
    "three heads, causal self": (2, 4, 4, 6, 3, "causal"),
    "four heads, padding mask": (3, 2, 5, 8, 4, (3, 1, 2, 5)),
}


@pytest.mark.parametrize("name", MHA_CASES)
def test_multi_head_attention_gradients_and_no_mutation(name):
    N, T, S, E, H, mask_what = MHA_CASES[name]
    rng = np.random.default_rng(3)
    params = random_params(rng, E)
    query = rng.standard_normal((N, T, E))
    key, value = (query, query) if mask_what == "causal" else (
        rng.standard_normal((N, S, E)), rng.standard_normal((N, S, E)))
    mask = make_mask(rng, mask_what, T)
    copies = copy.deepcopy((query, key, value, params, mask))
    out, cache = al.multi_head_attention_forward(query, key, value, params, H, mask)
    dout = rng.standard_normal(out.shape)
    dquery, dkey, dvalue, grads = al.multi_head_attention_backward(dout, cache)
    for array, kept in zip((query, key, value, mask), copies[:3] + copies[4:]):
        np.testing.assert_array_equal(array, kept)
    assert params.keys() == copies[3].keys() == grads.keys()
    for name_ in params:
        np.testing.assert_array_equal(params[name_], copies[3][name_])
    forward = lambda q, k, v, p: al.multi_head_attention_forward(q, k, v, p, H, mask)[0]
    if mask_what == "causal":   # self-attention: the input's gradient is the sum
        assert rel_error(numeric(lambda x: forward(x, x, x, params), query, dout),
                         dquery + dkey + dvalue) < TOLERANCE
    else:
        assert rel_error(numeric(lambda a: forward(a, key, value, params), query, dout), dquery) < TOLERANCE
        assert rel_error(numeric(lambda a: forward(query, a, value, params), key, dout), dkey) < TOLERANCE
        assert rel_error(numeric(lambda a: forward(query, key, a, params), value, dout), dvalue) < TOLERANCE
    for p in al.PARAM_NAMES:
        expected = numeric(lambda a: forward(query, key, value, {**params, p: a}), params[p], dout)
        if p == "b_k":
            # adding b_k to every key adds q . b_k to a whole row of scores: softmax ignores it
            np.testing.assert_allclose(grads[p], 0, atol=1e-12)
            np.testing.assert_allclose(expected, 0, atol=1e-8)
        else:
            assert rel_error(expected, grads[p]) < TOLERANCE, p


# ------------------------------------------------------------------ stability, float32

def test_large_scores_are_stable_in_float32():
    q = np.array([[[1e3, 0.0], [0.0, 0.0]]], dtype=np.float32)
    k = np.array([[[1e3, 0.0], [-1e3, 0.0], [0.0, 1.0]]], dtype=np.float32)
    mask = np.array([[False, True, True], [True, True, True]])
    P = al.attention_weights(q, k, mask)
    assert P.dtype == np.float32 and np.all(np.isfinite(P))
    # row 0: scores [masked, -7e5, 0] -> [0, 0, 1]; row 1: all scores 0 -> uniform
    np.testing.assert_allclose(P[0], [[0, 0, 1], [1 / 3, 1 / 3, 1 / 3]], atol=1e-7)
    v = np.ones((1, 3, 2), np.float32)
    out, cache = al.scaled_dot_product_attention_forward(q, k, v, mask)
    grads = al.scaled_dot_product_attention_backward(np.ones_like(out), cache)
    assert all(g.dtype == np.float32 and np.all(np.isfinite(g)) for g in grads)


def test_multi_head_float32_in_float32_out():
    rng = np.random.default_rng(4)
    params = random_params(rng, 8)
    x = rng.standard_normal((2, 3, 8))
    out64, _ = al.multi_head_attention_forward(x, x, x, params, 2, al.causal_mask(3))
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    x32 = x.astype(np.float32)
    out, cache = al.multi_head_attention_forward(x32, x32, x32, p32, 2, al.causal_mask(3))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, out64, atol=1e-5)
    *inputs, grads = al.multi_head_attention_backward(np.ones_like(out), cache)
    assert all(a.dtype == np.float32 for a in [*inputs, *grads.values()])


# ----------------------------------------------------------------------------- errors

def test_shape_and_mask_errors():
    q, k, v = np.zeros((2, 3, 4)), np.zeros((2, 5, 4)), np.zeros((2, 5, 6))
    with pytest.raises(ValueError, match=r"k has shape \(2, 5, 3\)"):
        al.attention_weights(q, np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"k has shape \(3, 5, 4\).*leading dimensions"):
        al.attention_weights(q, np.zeros((3, 5, 4)))
    with pytest.raises(ValueError, match=r"v has shape \(2, 4, 6\)"):
        al.scaled_dot_product_attention_forward(q, k, np.zeros((2, 4, 6)))
    with pytest.raises(ValueError, match=r"q must be at least 2-D"):
        al.attention_weights(np.zeros(4), k)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 4\)"):
        al.attention_weights(q, k, np.ones((3, 4), bool))
    with pytest.raises(ValueError, match=r"mask must be a bool array"):
        al.attention_weights(q, k, np.ones((3, 5)))
    mask = np.ones((3, 5), bool)
    mask[1] = False
    with pytest.raises(ValueError, match=r"mask lets query \[0, 1\] attend to no key"):
        al.scaled_dot_product_attention_forward(q, k, v, mask)
    _, cache = al.scaled_dot_product_attention_forward(q, k, v)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 3, 4\)"):
        al.scaled_dot_product_attention_backward(np.zeros((2, 3, 4)), cache)
    with pytest.raises(TypeError, match="q must hold real numbers"):
        al.attention_weights(q.astype(complex), k)


def test_multi_head_errors():
    E = 6
    params = random_params(np.random.default_rng(0), E)
    x = np.zeros((2, 3, E))
    with pytest.raises(ValueError, match=r"num_heads must be a positive integer dividing E=6"):
        al.multi_head_attention_forward(x, x, x, params, 4)
    with pytest.raises(ValueError, match=r"key has shape \(2, 3, 5\)"):
        al.multi_head_attention_forward(x, np.zeros((2, 3, 5)), np.zeros((2, 3, 5)), params, 2)
    with pytest.raises(ValueError, match=r"value has shape \(2, 4, 6\)"):
        al.multi_head_attention_forward(x, x, np.zeros((2, 4, 6)), params, 2)
    with pytest.raises(ValueError, match=r"query must be 3-D"):
        al.multi_head_attention_forward(np.zeros((3, E)), x, x, params, 2)
    with pytest.raises(ValueError, match=r"missing W_o"):
        al.multi_head_attention_forward(x, x, x, {k: v for k, v in params.items() if k != "W_o"}, 2)
    with pytest.raises(ValueError, match=r"params\['b_v'\] has shape \(5,\)"):
        al.multi_head_attention_forward(x, x, x, {**params, "b_v": np.zeros(5)}, 2)
    with pytest.raises(ValueError, match=r"mask has shape \(2, 2\)"):
        al.multi_head_attention_forward(x, x, x, params, 2, al.causal_mask(2))
    with pytest.raises(ValueError, match="T must be a positive integer"):
        al.causal_mask(0)
