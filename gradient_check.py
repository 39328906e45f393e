"""Numeric gradients by centered differences, to check hand-derived backward passes.

    df/dx_i  ~  (f(x + h e_i) - f(x - h e_i)) / (2h)

The truncation error is O(h^2) and the round-off error is O(eps / h); with h = 1e-5 in
float64 both are around 1e-10, so a correct backward pass agrees to ~1e-8 or better in
relative error. In float32 (eps ~ 1e-7) round-off alone is ~1e-2: always check in float64.

The functions perturb `x` in place and restore every entry afterwards, so `f` must read
its input from the same array object (close over it, as in `lambda x: layer(x, w)[0]`).
"""
import numpy as np


def rel_error(x, y):
    """Largest elementwise relative error max |x - y| / max(1e-8, |x| + |y|)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """
    Numeric gradient of a scalar function.

    Inputs:
    - f: function taking the array x and returning a scalar.
    - x: array of any shape; perturbed in place, restored on return.
    - verbose: print each index and its partial derivative.
    - h: step size.

    Returns:
    - grad: array of x's shape, grad[i] = df/dx[i].
    """
    grad = np.zeros_like(x)
    for ix in np.ndindex(*x.shape):
        original = x[ix]
        x[ix] = original + h
        f_plus = f(x)
        x[ix] = original - h
        f_minus = f(x)
        x[ix] = original
        grad[ix] = (f_plus - f_minus) / (2 * h)
        if verbose:
            print(ix, grad[ix])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """
    Numeric gradient of sum(f(x) * df): the vector-Jacobian product that a backward
    pass computes when the upstream gradient is df.

    Inputs:
    - f: function taking the array x and returning an array of df's shape.
    - x: array of any shape; perturbed in place, restored on return.
    - df: upstream gradient, shape of f(x).
    - h: step size.

    Returns:
    - grad: array of x's shape.
    """
    grad = np.zeros_like(x)
    for ix in np.ndindex(*x.shape):
        original = x[ix]
        x[ix] = original + h
        out_plus = np.array(f(x), copy=True)
        x[ix] = original - h
        out_minus = np.array(f(x), copy=True)
        x[ix] = original
        grad[ix] = np.sum((out_plus - out_minus) * df) / (2 * h)
    return grad


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5, seed=0, verbose=True):
    """
    Compare an analytic gradient with numeric partial derivatives at a few random
    entries of x: for tensors too large to differentiate entry by entry.

    Inputs:
    - f: function taking the array x and returning a scalar.
    - x: array of any shape; perturbed in place, restored on return.
    - analytic_grad: array of x's shape.
    - num_checks: number of entries to check.
    - h: step size.
    - seed: seed for choosing the entries.
    - verbose: print each entry's numeric and analytic value.

    Returns:
    - worst: the largest relative error over the checked entries.
    """
    if np.shape(analytic_grad) != x.shape:
        raise ValueError(f"analytic_grad has shape {np.shape(analytic_grad)}, "
                         f"expected the shape of x {x.shape}")
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(num_checks):
        ix = tuple(int(rng.integers(m)) for m in x.shape)
        original = x[ix]
        x[ix] = original + h
        f_plus = f(x)
        x[ix] = original - h
        f_minus = f(x)
        x[ix] = original
        numeric = (f_plus - f_minus) / (2 * h)
        error = rel_error(numeric, analytic_grad[ix])
        worst = max(worst, error)
        if verbose:
            print(f"{ix}: numeric {numeric:.6e} analytic {analytic_grad[ix]:.6e} "
                  f"relative error {error:.2e}")
    return worst
