"""First-order update rules for gradient descent.

Every rule has the interface

    next_w, config = rule(w, dw, config=None)

Inputs:
- w: array of the current weights.
- dw: array of w's shape, the gradient of the loss with respect to w.
- config: dict of hyperparameters (learning rate, momentum, ...) and, for rules with
  memory, the running state (velocity, caches, step count). None means "all defaults".
  Missing hyperparameters are filled in with their defaults.

Returns:
- next_w: the updated weights, a new array with w's dtype.
- config: the same dict, with the state advanced by one step. Pass it back in on the next
  call for the same w; the Solver keeps one config per parameter.

Neither w nor dw is modified: the rules build new arrays, and a new state array replaces
the old one in config. Hyperparameters are turned into Python floats before use, because
a NumPy float64 scalar would silently promote float32 weights to float64.

Notation below: lr = learning_rate, g = dw, and all operations are elementwise.

nesterov_momentum and adamw compute exactly what torch.optim.SGD(momentum, nesterov=True)
and torch.optim.AdamW compute, step for step (the benchmark bench/optim_vs_torch compares
them with PyTorch, when it is installed).
"""
import numpy as np


def _float_config(config, **defaults):
    """Fill in missing hyperparameters and return their values as Python floats."""
    if config is None:
        config = {}
    for name, value in defaults.items():
        config.setdefault(name, value)
    return config, [float(config[name]) for name in defaults]


def sgd(w, dw, config=None):
    """
    Vanilla stochastic gradient descent.

    The gradient is the direction of steepest increase of the loss, so a small step
    against it lowers the loss (to first order: L(w - lr g) = L(w) - lr |g|^2 + O(lr^2)):

        next_w = w - lr * g

    config format:
    - learning_rate: scalar learning rate (default 1e-2).
    """
    config, (lr,) = _float_config(config, learning_rate=1e-2)
    # next_w = w - lr * g with one new array instead of two (lr * g, then the
    # difference): less memory traffic, ~6% of a small MLP's training step
    next_w = np.multiply(dw, -lr, dtype=w.dtype)
    next_w += w
    return next_w, config


def sgd_momentum(w, dw, config=None):
    """
    Stochastic gradient descent with momentum.

    The velocity v is an exponentially decaying sum of past steps: gradients that keep
    pointing the same way add up (in a valley of constant slope v approaches
    -lr g / (1 - momentum), a 10x larger step for momentum 0.9), while gradients that
    flip sign from step to step cancel out:

        v      = momentum * v - lr * g        (v starts at 0)
        next_w = w + v

    config format:
    - learning_rate: scalar learning rate (default 1e-2).
    - momentum: scalar in [0, 1) giving the decay of the velocity (default 0.9);
      momentum = 0 is plain SGD.
    - velocity: array of w's shape, the running velocity (state).

    torch.optim.SGD(momentum=...) keeps its velocity in gradient units instead
    (b = momentum * b + g, next_w = w - lr * b): the same weights at a constant learning
    rate (v = -lr * b), but after a learning-rate change the velocity built so far keeps
    its old scale here, while torch's next step uses the new rate throughout.
    """
    config, (lr, momentum) = _float_config(config, learning_rate=1e-2, momentum=0.9)
    v = config.get('velocity', np.zeros_like(w))
    v = momentum * v - lr * dw
    next_w = w + v
    config['velocity'] = v
    return next_w.astype(w.dtype, copy=False), config


def rmsprop(w, dw, config=None):
    """
    RMSProp: divide each step by a running root mean square of that weight's gradient.

    The cache is an exponential moving average of g^2. Dividing by its square root makes
    the step size about lr for every weight, whatever the scale of its gradient: weights
    with steep, large gradients slow down and weights with flat, small gradients speed up.
    epsilon avoids a division by zero for weights whose gradient is always 0:

        cache  = decay_rate * cache + (1 - decay_rate) * g^2      (cache starts at 0)
        next_w = w - lr * g / (sqrt(cache) + epsilon)

    config format:
    - learning_rate: scalar learning rate (default 1e-2).
    - decay_rate: scalar in [0, 1), the decay of the squared-gradient average
      (default 0.99).
    - epsilon: small scalar for numerical stability (default 1e-8).
    - cache: array of w's shape, the moving average of squared gradients (state).
    """
    config, (lr, decay_rate, epsilon) = _float_config(
        config, learning_rate=1e-2, decay_rate=0.99, epsilon=1e-8)
    cache = config.get('cache', np.zeros_like(w))
    cache = decay_rate * cache + (1 - decay_rate) * dw * dw
    next_w = w - lr * dw / (np.sqrt(cache) + epsilon)
    config['cache'] = cache
    return next_w.astype(w.dtype, copy=False), config


def adam(w, dw, config=None):
    """
    Adam: momentum on the gradient (first moment m) combined with RMSProp's scaling by
    the gradient's running root mean square (second moment v).

    m and v start at 0, so early on they are biased towards 0: after t steps with a
    constant gradient g, m = (1 - beta1^t) g. Dividing by (1 - beta^t) removes this bias
    exactly. t counts the updates and is incremented *before* use, so the first update
    has t = 1 (this matches the current cs231n version; older versions used t = 0 first,
    which divides by zero):

        t      = t + 1                                    (t starts at 0)
        m      = beta1 * m + (1 - beta1) * g              (m starts at 0)
        v      = beta2 * v + (1 - beta2) * g^2            (v starts at 0)
        m_hat  = m / (1 - beta1^t)
        v_hat  = v / (1 - beta2^t)
        next_w = w - lr * m_hat / (sqrt(v_hat) + epsilon)

    With the bias corrected, the very first step is lr * g / (|g| + epsilon), a step of
    about lr in every coordinate.

    config format:
    - learning_rate: scalar learning rate (default 1e-3).
    - beta1: decay rate of the moving average of the gradient (default 0.9).
    - beta2: decay rate of the moving average of the squared gradient (default 0.999).
    - epsilon: small scalar for numerical stability (default 1e-8).
    - m: array of w's shape, the moving average of the gradient (state).
    - v: array of w's shape, the moving average of the squared gradient (state).
    - t: int, the number of updates made so far (state).
    """
    config, (lr, beta1, beta2, epsilon) = _float_config(
        config, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8)
    m = config.get('m', np.zeros_like(w))
    v = config.get('v', np.zeros_like(w))
    t = int(config.get('t', 0)) + 1
    m = beta1 * m + (1 - beta1) * dw
    v = beta2 * v + (1 - beta2) * dw * dw
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    next_w = w - lr * m_hat / (np.sqrt(v_hat) + epsilon)
    config['m'], config['v'], config['t'] = m, v, t
    return next_w.astype(w.dtype, copy=False), config


def nesterov_momentum(w, dw, config=None):
    """
    Stochastic gradient descent with Nesterov momentum, as torch.optim.SGD(momentum=...,
    nesterov=True) computes it.

    Plain momentum takes the gradient at w and then steps along the velocity. Nesterov's
    version takes the gradient where the velocity is about to carry the weights, so it
    corrects an overshoot one step earlier. Written so that the gradient is needed only at
    the stored weights (Sutskever et al., 2013: the stored w is that look-ahead point), the
    step adds the new velocity once more, scaled by momentum:

        v      = momentum * v + g                     (v starts at 0)
        next_w = w - lr * (g + momentum * v)

    The velocity is kept in gradient units (torch's momentum buffer), not in weight units
    as in sgd_momentum. cs231n's notes write the same rule with a velocity u = -lr * v:

        u      = momentum * u - lr * g
        next_w = w - momentum * u_prev + (1 + momentum) * u

    Both give the same weights while the learning rate is constant (expand either one:
    next_w = w - lr * ((1 + momentum) * g + momentum^2 * v_prev)). They differ once the
    learning rate changes (the Solver's lr_decay): here the whole next step uses the new
    rate, as with torch's schedulers; in cs231n's form the velocity built so far keeps the
    old one. This one is chosen so that it equals torch step for step.

    config format:
    - learning_rate: scalar learning rate (default 1e-2).
    - momentum: scalar in [0, 1), the decay of the velocity (default 0.9); momentum = 0
      is plain SGD.
    - velocity: array of w's shape, the decaying sum of past gradients (state; torch's
      momentum_buffer).
    """
    config, (lr, momentum) = _float_config(config, learning_rate=1e-2, momentum=0.9)
    v = config.get('velocity', np.zeros_like(w))
    v = momentum * v + dw
    next_w = w - lr * (dw + momentum * v)
    config['velocity'] = v
    return next_w.astype(w.dtype, copy=False), config


def adamw(w, dw, config=None):
    """
    AdamW (Loshchilov and Hutter, 2019): Adam with decoupled weight decay, as
    torch.optim.AdamW computes it.

    L2 regularization adds reg * w to the gradient; Adam then divides that term by
    sqrt(v_hat) like the rest of the gradient, so weights with large gradients are hardly
    decayed at all. AdamW instead shrinks every weight by the same factor, apart from the
    gradient, and then takes Adam's step on the gradient alone:

        w      = (1 - lr * weight_decay) * w          (decoupled weight decay)
        t      = t + 1                                (t starts at 0)
        m      = beta1 * m + (1 - beta1) * g          (m starts at 0)
        v      = beta2 * v + (1 - beta2) * g^2        (v starts at 0)
        m_hat  = m / (1 - beta1^t)
        v_hat  = v / (1 - beta2^t)
        next_w = w - lr * m_hat / (sqrt(v_hat) + epsilon)

    The last five lines are adam's (see adam); weight_decay = 0 is exactly adam. The
    decay uses the current learning rate, so the Solver's lr_decay lowers it too, as
    torch's schedulers do. Every parameter given to the rule is decayed, biases included
    (in the Solver: every trained parameter), as torch.optim.AdamW does for the
    parameters it is given.

    config format:
    - learning_rate: scalar learning rate (default 1e-3).
    - weight_decay: scalar, the decay per unit of learning rate (default 1e-2, torch's).
    - beta1, beta2, epsilon: as in adam (defaults 0.9, 0.999, 1e-8).
    - m, v, t: adam's state.
    """
    config, (lr, weight_decay) = _float_config(config, learning_rate=1e-3, weight_decay=1e-2)
    decayed = w * (1 - lr * weight_decay)   # a Python float: float32 weights stay float32
    return adam(decayed, dw, config)
