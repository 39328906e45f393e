"""attention_demo.py, the reference exercise's Q1: parameter counts 10,298 and 236,310
from Sequential.summary(); each head's probabilities = softmax(X A X^T), rank(A) <= d,
and invariance under W_Q B, W_K B^-T while the projections change."""
import numpy as np
import pytest

import attention_demo
from attention_layers import PARAM_NAMES


def test_parameter_counts_of_q1_networks():
    convolutional, fully_connected = attention_demo.q1_networks()
    assert convolutional.num_params() == 10298
    assert convolutional.summary().splitlines()[-1].split() == ["total", "10,298"]
    assert fully_connected.num_params() == 236310
    assert fully_connected.summary().splitlines()[-1].split() == ["total", "236,310"]


@pytest.mark.parametrize("seed, T, E, heads", [(0, 6, 8, 2), (1, 5, 12, 3), (2, 9, 16, 4), (3, 4, 6, 1)])
def test_heads_are_softmax_of_x_a_xt_with_low_rank_a_and_b_invariance(seed, T, E, heads):
    result = attention_demo.demonstrate(seed, T, E, heads)
    for head in result["heads"]:
        assert head["softmax_xax_error"] <= 1e-12
        assert head["rank"] <= head["d"] == E // heads
        assert head["rank"] == head["d"]   # random projections: the bound is reached
    assert result["b_invariance_error"] <= 1e-12
    assert result["projection_change"] > 0.1


def test_the_checks_can_fail():
    """The comparison is not vacuous: changing only W_Q (not W_K by B^-T) changes P."""
    rng = np.random.default_rng(0)
    X, E = rng.standard_normal((5, 4)), 4
    params = {n: rng.standard_normal((E, E)) if n.startswith("W") else np.zeros(E) for n in PARAM_NAMES}
    P = attention_demo.head_probabilities(X, params, 2)
    B = rng.standard_normal((2, 2)) + 2 * np.eye(2)
    only_q = dict(params, W_q=params["W_q"].copy())
    only_q["W_q"][:, :2] = params["W_q"][:, :2] @ B
    assert np.abs(attention_demo.head_probabilities(X, only_q, 2)[0] - P[0]).max() > 1e-3


def test_command_prints_and_passes(capsys):
    assert attention_demo.main(["--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "10,298" in out and "236,310" in out and "all checks passed" in out
    assert "rank(A) = 4 <= d = 4" in out
