"""Two-layer fully connected classifier: fc - relu - fc - softmax."""
import numpy as np

from layers import fc_backward, fc_forward, relu_backward, relu_forward, softmax_loss
from randomness import init_weights


class SoftmaxClassifier:
    """
    A two-layer network for inputs of dimension D, a hidden layer of H units and C classes:

        x -> fc(W1, b1) -> relu -> fc(W2, b2) -> scores -> softmax loss

    Parameters live in self.params: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,).
    """

    def __init__(self, input_dim=28 * 28, hidden_dim=100, num_classes=10, weight_scale=1e-3,
                 reg=0.0, dtype=np.float64, seed=None):
        """
        Inputs:
        - input_dim: size D of one input (inputs of any shape (N, d_1, ...) are flattened).
        - hidden_dim: number H of hidden units.
        - num_classes: number C of classes.
        - weight_scale: standard deviation of the Gaussian initial weights, or None for He
          initialization (std sqrt(2 / fan_in) per layer, which suits ReLU); biases start at 0.
        - reg: strength of the L2 penalty 0.5 * reg * (|W1|^2 + |W2|^2) added to the loss.
        - dtype: dtype of the parameters (float64 for gradient checks, float32 for speed).
        - seed: seed of the initial weights (None: np.random's global state, as the homework).
        """
        self.reg = reg
        self.params = {
            "W1": init_weights((input_dim, hidden_dim), weight_scale, seed, dtype),
            "b1": np.zeros(hidden_dim, dtype=dtype),
            "W2": init_weights((hidden_dim, num_classes), weight_scale, seed, dtype),
            "b2": np.zeros(num_classes, dtype=dtype),
        }

    def loss(self, X, y=None):
        """
        Inputs:
        - X: inputs of shape (N, d_1, ..., d_k) with d_1 * ... * d_k = D.
        - y: integer labels of shape (N,), or None.

        Returns:
        - scores of shape (N, C) if y is None, else a tuple (loss, grads) with grads a
          dict with the keys of self.params.
        """
        p = self.params
        X = X.astype(p["W1"].dtype, copy=False)  # mixed float32/float64 matmuls are ~3x slower
        hidden, fc1_cache = fc_forward(X, p["W1"], p["b1"])
        hidden, relu_cache = relu_forward(hidden)
        scores, fc2_cache = fc_forward(hidden, p["W2"], p["b2"])
        if y is None:
            return scores

        loss, dscores = softmax_loss(scores, y)
        grads = {}
        dhidden, grads["W2"], grads["b2"] = fc_backward(dscores, fc2_cache)
        dhidden = relu_backward(dhidden, relu_cache)
        _, grads["W1"], grads["b1"] = fc_backward(dhidden, fc1_cache, need_dx=False)
        if self.reg:
            for name in ("W1", "W2"):
                loss += 0.5 * self.reg * np.sum(p[name] ** 2)
                grads[name] = grads[name] + self.reg * p[name]
        return loss, grads
