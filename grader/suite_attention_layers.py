"""
Graded tests of attention_layers.py (API.md Part 3): attention weights, scaled
dot-product attention with masks, multi-head attention, the causal mask and the
positional encoding. Hand-worked examples, the loop references of grader/references.py
on random shapes (with and without masks, one and several heads), and the standard
checks of each pair (grader/checks.py).
"""
import numpy as np

from grader import references as ref
from grader.checks import (
    as_array,
    as_float32,
    expect_close,
    expect_inputs_unchanged,
    expect_value_error,
    fail,
    graded,
    layer,
    numeric_gradient_and_noise,
    pair,
    positive,
    randn,
    require_right_values,
    rng,
)

MODULE = 'attention_layers'
PARAM_NAMES = ('W_q', 'b_q', 'W_k', 'b_k', 'W_v', 'b_v', 'W_o', 'b_o')


def random_mask(rng, shape):
    """A random bool mask that leaves every query at least one key."""
    mask = rng.random(shape) < 0.6
    mask[..., rng.integers(shape[-1])] = True
    return mask


def causal(T):
    return np.tril(np.ones((T, T), dtype=bool))


# ---- causal mask and positional encoding --------------------------------------------

@graded(MODULE)
def causal_mask_values(causal_mask):
    for T in (1, 3, 5):
        mask = causal_mask(T)
        if not (isinstance(mask, np.ndarray) and mask.dtype == bool):
            fail(f"causal_mask({T}) must be a bool array, got {getattr(mask, 'dtype', type(mask).__name__)}")
        expect_close(f"causal_mask({T})", mask, causal(T), threshold=0)


@graded(MODULE, points=2)
def positional_encoding_values(positional_encoding):
    # Column pair 0 has frequency 1, pair 1 has 1 / 10000^(2/4) = 1/100.
    PE = positional_encoding(3, 4)
    expect_close("positional_encoding(3, 4)", PE,
                 [[0., 1., 0., 1.], [np.sin(1), np.cos(1), np.sin(.01), np.cos(.01)],
                  [np.sin(2), np.cos(2), np.sin(.02), np.cos(.02)]], threshold=1e-6)
    if getattr(PE, 'dtype', None) != np.float32:
        fail(f"positional_encoding(3, 4) must be float32 by default, got {getattr(PE, 'dtype', None)}")
    PE = positional_encoding(7, 10, 'float64')   # (a dtype's name: np.float64 cannot cross the sandbox)
    if getattr(PE, 'dtype', None) != np.float64:
        fail("positional_encoding(7, 10, 'float64') must be float64")
    expect_close("positional_encoding(7, 10, float64)", PE, ref.positional_encoding(7, 10))
    expect_value_error("positional_encoding(3, 5) (odd E)", lambda: positional_encoding(3, 5), 'E')


# ---- attention weights --------------------------------------------------------------

Q1 = np.array([[1., 0.]])
K1 = np.array([[0., 5.], [np.sqrt(2) * np.log(3), 0.]])   # scores [0, log 3] / ... -> P = [1/4, 3/4]


@graded(MODULE, points=2)
def attention_weights_values(attention_weights):
    # d = 2: q . k / sqrt(2) = [0, log 3], so P = [1, 3] / 4.
    expect_close("attention_weights [scores 0, log 3]", attention_weights(Q1, K1), [[0.25, 0.75]])
    # A masked key gets exactly 0 and the rest renormalize.
    P = attention_weights(Q1, K1, np.array([[False, True]]))
    expect_close("attention_weights [first key masked]", P, [[0., 1.]], threshold=0)
    # Scores of +-1e3 * 1e3 must not overflow, also in float32.
    q = np.array([[1e3, 0.], [0., 0.]], np.float32)
    k = np.array([[1e3, 0.], [-1e3, 0.], [0., 1.]], np.float32)
    mask = np.array([[False, True, True], [True, True, True]])
    P = attention_weights(q, k, mask)
    expect_close("attention_weights [scores +-1e6, masked, float32]", P,
                 [[0., 0., 1.], [1 / 3, 1 / 3, 1 / 3]], threshold=1e-6)
    if getattr(P, 'dtype', None) != np.float32:
        fail(f"attention_weights of float32 q, k must be float32, got {getattr(P, 'dtype', None)}")


def attention_cases(rng):
    """(label, q, k, mask) on shapes (..., T, d) / (..., S, d) with and without masks."""
    cases = []
    for lead, T, S, d, kind in [((), 3, 4, 2, None), ((2,), 4, 4, 3, 'causal'),
                                ((2, 3), 2, 5, 4, 'random'), ((3, 1), 3, 3, 2, 'broadcast')]:
        q, k = randn(rng, *lead, T, d), randn(rng, *lead, S, d)
        mask = (None if kind is None else causal(T) if kind == 'causal'
                else random_mask(rng, (*lead, T, S)) if kind == 'random'
                else random_mask(rng, (lead[0], 1, T, S)))   # broadcast over the second axis
        cases.append((f"q={'x'.join(map(str, q.shape))} k={'x'.join(map(str, k.shape))} "
                      f"mask={kind}", q, k, mask))
    return cases


@graded(MODULE, points=2)
def attention_weights_reference(attention_weights):
    for label, q, k, mask in attention_cases(rng('attention_weights_reference')):
        P = attention_weights(q, k, mask)
        expected = ref.attention_weights(q, k, mask)
        expect_close(f"attention_weights [{label}]", P, expected)
        if mask is not None and np.any(as_array("attention_weights", P)[~np.broadcast_to(mask, expected.shape)] != 0):
            fail(f"attention_weights [{label}]: masked entries must be exactly 0")
        P32 = attention_weights(as_float32(q), as_float32(k), mask)
        expect_close(f"attention_weights [{label}, float32]", P32, expected, threshold=1e-4)
        if getattr(P32, 'dtype', None) != np.float32:
            fail(f"attention_weights [{label}]: float32 inputs gave {getattr(P32, 'dtype', None)}")
    expect_inputs_unchanged(attention_weights.submission)


@graded(MODULE)
def dot_product_attention_bad_shapes(attention_weights, scaled_dot_product_attention_forward):
    require_right_values('scaled_dot_product_attention', scaled_dot_product_attention_forward)
    q, k, v = np.zeros((2, 3, 4)), np.zeros((2, 5, 4)), np.zeros((2, 5, 6))
    expect_value_error("attention_weights with q (2, 3, 4), k (2, 5, 3)",
                       lambda: attention_weights(q, np.zeros((2, 5, 3))), 'k', 'q')
    expect_value_error("scaled_dot_product_attention_forward with v (2, 4, 6)",
                       lambda: scaled_dot_product_attention_forward(q, k, np.zeros((2, 4, 6))), 'v')
    expect_value_error("attention_weights with mask (3, 4) for scores (2, 3, 5)",
                       lambda: attention_weights(q, k, np.ones((3, 4), bool)), 'mask')
    mask = np.ones((3, 5), bool)
    mask[1] = False
    expect_value_error("scaled_dot_product_attention_forward with a query that may attend to no key",
                       lambda: scaled_dot_product_attention_forward(q, k, v, mask), 'mask')


# ---- scaled dot-product attention ---------------------------------------------------

@graded(MODULE, points=2)
def scaled_dot_product_attention_values(scaled_dot_product_attention_forward,
                                        scaled_dot_product_attention_backward):
    # P = [1/4, 3/4] (as above), v = [4, 8]: out = 7. With dout = 1: dv = P, dP = v = [4, 8],
    # dz = P (dP - P . dP) / sqrt(2) = [1/4 (4 - 7), 3/4 (8 - 7)] / sqrt(2); dq = dz k, dk = dz^T q.
    v = np.array([[4.], [8.]])
    out, cache = pair('scaled_dot_product_attention_forward',
                      scaled_dot_product_attention_forward(Q1, K1, v))
    expect_close("scaled_dot_product_attention_forward out", out, [[7.]])
    grads = scaled_dot_product_attention_backward(np.array([[1.]]), cache)
    if not (isinstance(grads, tuple) and len(grads) == 3):
        fail("scaled_dot_product_attention_backward must return (dq, dk, dv)")
    dz = np.array([[-0.75, 0.75]]) / np.sqrt(2)
    expect_close("scaled_dot_product_attention_backward dq", grads[0], dz @ K1)
    expect_close("scaled_dot_product_attention_backward dk", grads[1], dz.T @ Q1)
    expect_close("scaled_dot_product_attention_backward dv", grads[2], [[0.25], [0.75]])
    out, _ = pair('scaled_dot_product_attention_forward',
                  scaled_dot_product_attention_forward(Q1, K1, v, np.array([[True, False]])))
    expect_close("scaled_dot_product_attention_forward out [second key masked]", out, [[4.]])


def sdpa_cases(rng):
    cases = []
    for label, q, k, mask in attention_cases(rng):
        v = randn(rng, *k.shape[:-1], q.shape[-1] + 1)
        cases.append((label, dict(q=q, k=k, v=v, mask=mask)))
    return cases


layer(MODULE, 'scaled_dot_product_attention_forward', 'scaled_dot_product_attention_backward',
      sdpa_cases, ref.scaled_dot_product_attention, wrt=('q', 'k', 'v'))


# ---- multi-head attention -----------------------------------------------------------

def identity_params(E):
    return {name: (np.eye(E) if name.startswith('W') else np.zeros(E)) for name in PARAM_NAMES}


@graded(MODULE, points=2)
def multi_head_attention_values(multi_head_attention_forward):
    # E = 2, two heads of d = 1 with identity projections: head h uses column h. A zero
    # query scores 0 against both keys: uniform weights, out = the mean value [2, 3].
    query, kv = np.zeros((1, 1, 2)), np.array([[[1., 2.], [3., 4.]]])
    out, _ = pair('multi_head_attention_forward',
                  multi_head_attention_forward(query, kv, kv, identity_params(2), 2))
    expect_close("multi_head_attention_forward out [uniform weights]", out, [[[2., 3.]]])
    # W_o swaps the heads' columns, b_o = [10, 20].
    params = {**identity_params(2), 'W_o': np.array([[0., 1.], [1., 0.]]), 'b_o': np.array([10., 20.])}
    out, _ = pair('multi_head_attention_forward', multi_head_attention_forward(query, kv, kv, params, 2))
    expect_close("multi_head_attention_forward out [heads swapped by W_o, b_o]", out, [[[13., 22.]]])
    # Self-attention with W_q = 0 (uniform over the allowed keys) and a causal mask (T, T):
    # position 0 sees only itself ([1, 2] -> [12, 21]); position 1 averages both ([2, 3] -> [13, 22]).
    out, _ = pair('multi_head_attention_forward',
                  multi_head_attention_forward(kv, kv, kv, {**params, 'W_q': np.zeros((2, 2))}, 2,
                                               causal(2)))
    expect_close("multi_head_attention_forward out [causal mask]", out, [[[12., 21.], [13., 22.]]])
    # Heads are blocks of columns: with one head (d = 2) the zero-query case is the same mean.
    out, _ = pair('multi_head_attention_forward',
                  multi_head_attention_forward(query, kv, kv, identity_params(2), 1))
    expect_close("multi_head_attention_forward out [one head]", out, [[[2., 3.]]])


def multi_head_as_standard(forward, backward):
    """multi-head attention with its parameters as separate arguments (for the standard
    checks) and grads as a tuple in PARAM_NAMES order."""
    def standard_forward(query, key, value, W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o, num_heads, mask):
        params = dict(zip(PARAM_NAMES, (W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o)))
        return forward(query, key, value, params, num_heads, mask)

    def standard_backward(dout, cache):
        result = backward(dout, cache)
        if not (isinstance(result, tuple) and len(result) == 4 and isinstance(result[3], dict)):
            fail("multi_head_attention_backward must return (dquery, dkey, dvalue, grads), "
                 "grads a dict with the keys of params")
        dquery, dkey, dvalue, grads = result
        if set(grads) != set(PARAM_NAMES):
            fail(f"multi_head_attention_backward grads has keys {sorted(map(str, grads))}, "
                 f"expected {', '.join(PARAM_NAMES)}")
        return (dquery, dkey, dvalue, *(grads[name] for name in PARAM_NAMES))
    return standard_forward, standard_backward


def multi_head_cases(rng):
    cases = []
    for N, T, S, E, heads, kind in [(1, 2, 3, 2, 1, None), (2, 3, 3, 4, 2, 'causal'),
                                    (2, 2, 3, 6, 3, 'padding'), (1, 3, 2, 4, 4, None)]:
        mask = (None if kind is None else causal(T) if kind == 'causal'
                else random_mask(rng, (N, 1, T, S)))   # padding: per sample, all heads
        params = {name: randn(rng, E, E) / np.sqrt(E) if name.startswith('W') else randn(rng, E) / 2
                  for name in PARAM_NAMES}
        cases.append((f"N={N} T={T} S={S} E={E} heads={heads} mask={kind}",
                      dict(query=randn(rng, N, T, E), key=randn(rng, N, S, E),
                           value=randn(rng, N, S, E), **params, num_heads=heads, mask=mask)))
    return cases


layer(MODULE, 'multi_head_attention_forward', 'multi_head_attention_backward', multi_head_cases,
      ref.multi_head_attention, wrt=('query', 'key', 'value', *PARAM_NAMES),
      adapt=multi_head_as_standard, zero=('b_k',))


@graded(MODULE, points=2)
def multi_head_self_attention_gradient(multi_head_attention_forward, multi_head_attention_backward):
    # The same array as query, key and value: its gradient is dquery + dkey + dvalue.
    generator = rng('multi_head_self_attention_gradient')
    N, T, E, heads = 2, 3, 4, 2
    params = {name: randn(generator, E, E) / 2 if name.startswith('W') else randn(generator, E) / 2
              for name in PARAM_NAMES}
    x, mask = randn(generator, N, T, E), causal(T)
    dout = positive(generator, N, T, E)
    reference = lambda x: ref.multi_head_attention(x, x, x, *params.values(), heads, mask)
    expected, noise = numeric_gradient_and_noise(reference, x.copy(), dout)
    out, cache = pair('multi_head_attention_forward',
                      multi_head_attention_forward(x, x, x, params, heads, mask))
    expect_close("multi_head_attention_forward out [self-attention, causal]", out, reference(x))
    result = multi_head_attention_backward(dout, cache)
    if not (isinstance(result, tuple) and len(result) == 4):
        fail("multi_head_attention_backward must return (dquery, dkey, dvalue, grads)")
    total = sum(as_array(f"multi_head_attention_backward {name}", g, x.shape)   # no broadcasting
                for name, g in zip(('dquery', 'dkey', 'dvalue'), result[:3]))
    expect_close("dquery + dkey + dvalue [self-attention, causal]", total, expected, noise=noise)


@graded(MODULE)
def multi_head_attention_bad_shapes(multi_head_attention_forward):
    require_right_values('multi_head_attention', multi_head_attention_forward)
    params, x = identity_params(6), np.zeros((2, 3, 6))
    expect_value_error("multi_head_attention_forward with E=6 and num_heads=4",
                       lambda: multi_head_attention_forward(x, x, x, params, 4), 'num_heads', 'E')
    expect_value_error("multi_head_attention_forward with query (2, 3, 6), key (2, 3, 5)",
                       lambda: multi_head_attention_forward(x, np.zeros((2, 3, 5)), np.zeros((2, 3, 5)),
                                                            params, 2), 'key', 'query')
    expect_value_error("multi_head_attention_forward with W_o (6, 5)",
                       lambda: multi_head_attention_forward(x, x, x, {**params, 'W_o': np.zeros((6, 5))}, 2),
                       'W_o', 'params')
