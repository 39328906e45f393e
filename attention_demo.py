"""The reference exercise's Question 1, computed: parameter counts and self-attention as
softmax(X A X^T).

    python attention_demo.py            # prints every check; exit code 1 if one fails
    python attention_demo.py --seed 3   # other random matrices
    handgrad-attention-demo             # the same, after pip install -e .

Q1.1 / Q1.2. The two networks' parameter counts, from sequential.Sequential.summary():
  - 3x28x28 input -> conv 8 kernels 5x5 (stride 1, no padding) -> max pool 4x4 stride 2
    -> affine 10 -> softmax: 8 (5 5 3 + 1) + (8 11 11) 10 + 10 = 608 + 9,690 = 10,298;
  - 3x28x28 input -> affine 100 -> affine 10: (2,352 + 1) 100 + (100 + 1) 10 = 236,310.
  The convolution shares each kernel over all positions; the first affine layer has a
  weight per input pixel and unit, 23x the parameters for a smaller model.

Q1.3. One head of self-attention on X (T, E), with query and key projections W_Q, W_K
(E, d) and no biases, has the probabilities

    P = softmax(X W_Q (X W_K)^T / sqrt(d)) = softmax(X A X^T),   A = W_Q W_K^T / sqrt(d).

A is E x E but the product of an E x d and a d x E matrix, so rank(A) <= d < E: a head
can only compare inputs through a d-dimensional projection. A depends on W_Q and W_K
only through their product, so for any invertible B (d x d), W_Q B and W_K B^-T give the
same A (W_Q B B^-1 W_K^T = W_Q W_K^T), hence the same probabilities, although both
projections changed: the parameters of attention are not identifiable.

The demonstration checks each claim numerically with attention_layers'
multi_head_attention_forward (head h uses columns h*d .. (h+1)*d of W_q and W_k), in
float64: the probabilities equal softmax(X A^h X^T) and the B-transformed ones to 1e-12.
`demonstrate(seed)` returns every number, for tests and notebooks.
"""
import argparse
import sys

import numpy as np

from attention_layers import PARAM_NAMES, multi_head_attention_forward
from sequential import Affine, Conv, LogSoftmax, MaxPool, Sequential

TOLERANCE = 1e-12


def q1_networks():
    """The networks of Q1.1 (convolutional) and Q1.2 (fully connected), as Sequential models."""
    convolutional = Sequential((3, 28, 28), [Conv(8, 5), MaxPool(4, stride=2), Affine(10),
                                             LogSoftmax()], seed=0)
    fully_connected = Sequential((3, 28, 28), [Affine(100), Affine(10)], seed=0)
    return convolutional, fully_connected


def softmax_rows(scores):
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def head_probabilities(X, params, num_heads):
    """Each head's attention probabilities (num_heads, T, T) of self-attention on X (T, E)."""
    _, cache = multi_head_attention_forward(X[None], X[None], X[None], params, num_heads)
    return cache[-1][3][0]   # the scaled dot-product attention's P: (N=1, heads, T, T)


def demonstrate(seed=0, T=6, E=8, num_heads=2):
    """
    Q1.3 on random X (T, E) and projections, num_heads heads of d = E / num_heads.

    Returns a dict of, per head h: 'softmax_xax_error' (max |P^h - softmax(X A^h X^T)|),
    'rank' (matrix_rank of A^h) and 'd'; 'b_invariance_error' (max |P - P after W_Q^h B^h,
    W_K^h (B^h)^-T for every head|) and 'projection_change' (how much W_q and W_k moved).
    """
    rng = np.random.default_rng(seed)
    d = E // num_heads
    X = rng.standard_normal((T, E))
    params = {name: rng.standard_normal((E, E)) / np.sqrt(E) if name.startswith("W") else np.zeros(E)
              for name in PARAM_NAMES}
    P = head_probabilities(X, params, num_heads)
    heads = []
    transformed = dict(params, W_q=params["W_q"].copy(), W_k=params["W_k"].copy())
    for h in range(num_heads):
        columns = slice(h * d, (h + 1) * d)
        W_Q, W_K = params["W_q"][:, columns], params["W_k"][:, columns]
        A = W_Q @ W_K.T / np.sqrt(d)
        heads.append({"d": d, "rank": int(np.linalg.matrix_rank(A)),
                      "softmax_xax_error": float(np.abs(P[h] - softmax_rows(X @ A @ X.T)).max())})
        B = rng.standard_normal((d, d)) + 2 * np.eye(d)   # invertible (checked below)
        if abs(np.linalg.det(B)) < 1e-3:
            raise ArithmeticError("B is (nearly) singular; choose another seed")
        transformed["W_q"][:, columns] = W_Q @ B
        transformed["W_k"][:, columns] = W_K @ np.linalg.inv(B).T
    P_transformed = head_probabilities(X, transformed, num_heads)
    return {"heads": heads, "E": E, "T": T,
            "b_invariance_error": float(np.abs(P_transformed - P).max()),
            "projection_change": float(max(np.abs(transformed["W_q"] - params["W_q"]).max(),
                                           np.abs(transformed["W_k"] - params["W_k"]).max()))}


def main(argv=None):
    """The command (also installed as handgrad-attention-demo); returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random X and projections")
    args = parser.parse_args(argv)
    failures = []

    print("Q1.1 / Q1.2: parameter counts (sequential.Sequential.summary())\n")
    for name, model, expected in zip(("Q1.1 convolutional", "Q1.2 fully connected"), q1_networks(),
                                     (10298, 236310)):
        print(name)
        model.summary(print_table=True)
        print()
        if model.num_params() != expected:
            failures.append(f"{name}: {model.num_params():,} parameters, expected {expected:,}")

    result = demonstrate(args.seed)
    print(f"Q1.3: self-attention on random X ({result['T']} x {result['E']}), "
          f"{len(result['heads'])} heads")
    for h, head in enumerate(result["heads"]):
        print(f"  head {h + 1}: max |P - softmax(X A X^T)| = {head['softmax_xax_error']:.1e}, "
              f"rank(A) = {head['rank']} <= d = {head['d']} (A is {result['E']} x {result['E']})")
        if not head["softmax_xax_error"] <= TOLERANCE:
            failures.append(f"head {h + 1}: P differs from softmax(X A X^T)")
        if head["rank"] > head["d"]:
            failures.append(f"head {h + 1}: rank(A) = {head['rank']} > d = {head['d']}")
    print(f"  W_Q -> W_Q B, W_K -> W_K B^-T (B invertible, per head): the projections moved by up "
          f"to {result['projection_change']:.2f}, the probabilities by {result['b_invariance_error']:.1e}")
    if not result["b_invariance_error"] <= TOLERANCE:
        failures.append("the B-transform changed the probabilities")
    if not result["projection_change"] > 0.1:
        failures.append("the B-transform did not change the projections")
    print("\n" + ("all checks passed" if not failures else "FAILED:\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
