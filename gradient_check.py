"""Numeric gradients by centered differences, to check hand-derived backward passes.

    df/dx_i  ~  (f(x + h e_i) - f(x - h e_i)) / (2h)

The truncation error is O(h^2) and the round-off error is O(eps / h); with h = 1e-5 in
float64 both are around 1e-10, so a correct backward pass agrees to ~1e-8 or better in
relative error. In float32 (eps ~ 1e-7) round-off alone is ~1e-2: always check in float64.

The functions perturb `x` in place and restore every entry afterwards, so `f` must read
its input from the same array object (close over it, as in `lambda x: layer(x, w)[0]`).

check_model_gradients checks a whole model at once: every parameter of model.loss.
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


def check_model_gradients(model, X, y, params=None, h=1e-5, num_checks=None, seed=0,
                          verbose=False, richardson=False):
    """
    Check a whole model's backward pass: the gradients model.loss(X, y) returns against
    centered differences of its loss, parameter by parameter.

        numeric[i] = (L(p + h e_i) - L(p - h e_i)) / (2h),   L = model.loss(X, y)[0]

    Any model with a dict model.params and model.loss(X, y) -> (loss, grads) works: a
    classifier takes (images, labels), a captioning model (features, captions).

        model = ConvNet(input_dim=(1, 8, 8), num_filters=2, filter_size=3, hidden_dim=5,
                        weight_scale=None, dtype=np.float64, seed=0)
        errors = check_model_gradients(model, X[:3], y[:3])   # {'W1': 2e-09, ...}

    Inputs:
    - model: a model whose parameters are all float64 (build it with dtype=np.float64).
      In float32 the round-off of the numeric gradient alone gives relative errors around
      1e-2, which hide real bugs, so float32 models are refused.
    - X, y: a small batch (every checked entry costs two evaluations of the loss).
    - params: names of the parameters to check; None checks every parameter the loss
      returns a gradient for (a frozen parameter gets none).
    - h: step of the centered differences.
    - num_checks: None checks every entry; an int checks that many random entries of
      each parameter (all of a smaller one), for large parameters.
    - seed: seed for choosing those entries.
    - verbose: print one line per parameter.
    - richardson: refine the estimate to (4 D(h) - D(2h)) / 3, D(h) the centered
      difference above (Richardson extrapolation: truncation error O(h^4) instead of
      O(h^2)), and pass a larger step with it, h=1e-3, whose round-off is 100 times
      smaller. For smooth models with tiny gradient entries, such as an LSTM (see
      Returns). Not for ReLU or max-pool networks: the larger step crosses their kinks.
      Costs twice the evaluations.

    Returns:
    - errors: dict {parameter name: the largest relative error over its checked entries},
      the relative error of an entry being |a - n| / max(1e-8, |a| + |n|) (rel_error). A
      correct backward pass gives about 1e-7 or less; 1e-3 or more points at a bug in
      that parameter's gradient, or at a kink (ReLU, max) that a step of h crossed: look
      again with another batch or seed. Round-off: the loss is exact to about
      1e-16 * |loss|, so D(h) is off by about 1e-16 * |loss| / h, 1e-11 * |loss| at
      h = 1e-5. An entry whose gradient is itself that small (1e-6, say) then has a
      large relative error even when right: with very small initial weights (use
      weight_scale=None, He, or a larger one) and in LSTMs (saturated gates), where
      correct gradients show 1e-6 to 1e-5; check those with richardson=True, h=1e-3.

    Every evaluation of the loss runs with the same randomness: the model's attributes
    named in model.checkpoint_state (the counter that seeds its dropout masks) and
    np.random's global state are reset before each one, so dropout draws the same masks.
    Afterwards, also after an error, model.params, model.state (running statistics that
    a training-mode loss updates), those attributes and np.random's state are exactly
    what they were before.
    """
    _require_float64(model)
    h = float(h)
    if not h > 0:
        raise ValueError(f"h must be a positive number, got {h!r}")
    if num_checks is not None and (not isinstance(num_checks, (int, np.integer))
                                   or isinstance(num_checks, bool) or num_checks < 1):
        raise ValueError(f"num_checks must be a positive int or None (every entry), "
                         f"got {num_checks!r}")

    counters = {name: getattr(model, name) for name in getattr(model, "checkpoint_state", ())}
    random_state = np.random.get_state()
    state = dict(getattr(model, "state", None) or {})
    saved_state = {key: np.array(value, copy=True) for key, value in state.items()}
    arrays = dict(model.params)
    saved = {name: value.copy() for name, value in arrays.items()}

    def loss_with_fixed_randomness():
        for name, value in counters.items():
            setattr(model, name, value)
        np.random.set_state(random_state)
        return model.loss(X, y)

    def centered_difference(x, ix, step):
        """(L(x + step e_ix) - L(x - step e_ix)) / (2 step); x[ix] restored."""
        original = x[ix]
        x[ix] = original + step
        f_plus = float(loss_with_fixed_randomness()[0])
        x[ix] = original - step
        f_minus = float(loss_with_fixed_randomness()[0])
        x[ix] = original
        return (f_plus - f_minus) / (2 * step)

    try:
        _, grads = loss_with_fixed_randomness()
        names = _names_to_check(model, grads, params)
        rng = np.random.default_rng(seed)
        errors = {}
        for name in names:
            x = model.params[name]
            analytic = np.asarray(grads[name], dtype=np.float64)
            if analytic.shape != x.shape:
                raise ValueError(f"the gradient of {name} has shape {analytic.shape}, but "
                                 f"{name} has shape {x.shape}")
            if num_checks is None or num_checks >= x.size:
                entries = list(np.ndindex(*x.shape))
            else:
                flat = rng.choice(x.size, size=int(num_checks), replace=False)
                entries = [tuple(int(i) for i in np.unravel_index(f, x.shape))
                           for f in np.sort(flat)]
            worst = 0.0
            for ix in entries:
                numeric = centered_difference(x, ix, h)
                if richardson:
                    numeric = (4 * numeric - centered_difference(x, ix, 2 * h)) / 3
                worst = max(worst, rel_error(numeric, analytic[ix]))
            errors[name] = worst
            if verbose:
                print(f"{name}: max relative error {worst:.2e} "
                      f"({len(entries)} of {x.size} entries)")
        return errors
    finally:
        for name, value in arrays.items():
            value[...] = saved[name]
            model.params[name] = value
        for key, value in state.items():
            if isinstance(value, np.ndarray):
                value[...] = saved_state[key]
            model.state[key] = value
        for name, value in counters.items():
            setattr(model, name, value)
        np.random.set_state(random_state)


def _require_float64(model):
    """ValueError, saying how to build a float64 model, if a parameter is not float64."""
    params = getattr(model, "params", None)
    if not isinstance(params, dict) or not params or not callable(getattr(model, "loss", None)):
        raise ValueError("check_model_gradients needs a model with a dict model.params and a "
                         "method model.loss(X, y) -> (loss, grads)")
    other = [f"{name} ({np.asarray(value).dtype})" for name, value in params.items()
             if np.asarray(value).dtype != np.float64]
    if other:
        raise ValueError(
            f"check_model_gradients needs a float64 model, but these parameters are not "
            f"float64: {', '.join(other)}. In float32 the numeric gradient's round-off alone "
            f"is about 1e-2 and hides real bugs. Build the model for the check with "
            f"dtype=np.float64 (e.g. ConvNet(..., dtype=np.float64)); to check a trained "
            f"model, build such a model of the same shape and copy the parameters in: "
            f"model64.params.update({{k: v.astype(np.float64) for k, v in "
            f"model.params.items()}})")


def _names_to_check(model, grads, params):
    """The parameter names to check: params, or every name with a gradient."""
    if params is None:
        return [name for name in model.params if name in grads]
    names = [params] if isinstance(params, str) else list(params)
    unknown = [name for name in names if name not in model.params]
    if unknown:
        raise ValueError(f"{', '.join(map(repr, unknown))} not in model.params "
                         f"({', '.join(model.params)})")
    no_gradient = [name for name in names if name not in grads]
    if no_gradient:
        raise ValueError(f"model.loss returns no gradient for {', '.join(no_gradient)} "
                         f"(frozen?), so it cannot be checked")
    return names
