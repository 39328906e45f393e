"""Convolutional classifier: conv - relu - 2x2 max pool - fc - relu - fc - softmax.

ConvNet is the contract's fixed network. It trains with the fast (blocked) convolution
and pooling of the kernels module; the other layers come from layers.py. Networks of your
own layers: sequential.py; saving and loading parameters: checkpoint.py.
"""
import numpy as np

from kernels import conv2d_backward, conv2d_forward, max_pool_backward, max_pool_forward
from layers import fc_backward, fc_forward, relu_backward, relu_forward, softmax_loss
from randomness import init_weights


class ConvNet:
    """
    A three-layer convolutional network for inputs (N, C, H, W):

        x -> conv(W1) -> relu -> max pool 2x2 stride 2 -> fc(W2, b2) -> relu -> fc(W3, b3)
          -> scores -> softmax loss

    The convolution is the contract's conv_forward: filtering, stride 1, no padding, no
    bias, so it maps H x W to (H - k + 1) x (W - k + 1), which the pool halves (floor).

    Parameters in self.params: W1 (F, C, k, k), W2 (F * PH * PW, hidden_dim), b2 (hidden_dim,),
    W3 (hidden_dim, num_classes), b3 (num_classes,), all of the given dtype.
    """

    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}

    def __init__(self, input_dim=(1, 28, 28), num_filters=32, filter_size=7, hidden_dim=100,
                 num_classes=10, weight_scale=1e-3, dtype=np.float32, reg=0.0, seed=None):
        """
        Inputs:
        - input_dim: (C, H, W) of one input.
        - num_filters: number F of convolution filters.
        - filter_size: height and width k of each filter.
        - hidden_dim: number of units of the hidden fc layer.
        - num_classes: number of classes.
        - weight_scale: standard deviation of the Gaussian initial weights, or None for He
          initialization (std sqrt(2 / fan_in) per layer); biases start at 0.
        - dtype: dtype of the parameters and of the computation.
        - reg: strength of the L2 penalty 0.5 * reg * sum of squared weights W1, W2, W3.
        - seed: seed of the initial weights (None: np.random's global state, as the homework).
        """
        C, H, W = input_dim
        _require_fits(input_dim, filter_size)
        pooled_height, pooled_width = (H - filter_size + 1) // 2, (W - filter_size + 1) // 2
        self.reg = reg
        self.dtype = dtype
        flat_dim = num_filters * pooled_height * pooled_width
        self.params = {
            "W1": init_weights((num_filters, C, filter_size, filter_size), weight_scale, seed, dtype),
            "W2": init_weights((flat_dim, hidden_dim), weight_scale, seed, dtype),
            "b2": np.zeros(hidden_dim, dtype=dtype),
            "W3": init_weights((hidden_dim, num_classes), weight_scale, seed, dtype),
            "b3": np.zeros(num_classes, dtype=dtype),
        }

    def loss(self, X, y=None):
        """
        Inputs:
        - X: inputs of shape (N, C, H, W).
        - y: integer labels of shape (N,), or None.

        Returns:
        - scores of shape (N, num_classes) if y is None, else a tuple (loss, grads) with
          grads a dict with the keys of self.params.
        """
        # It runs the fast convolution and pooling of kernels.py (equal to layers.py's, see
        # tests/test_kernels.py), and takes two shortcuts with identical results: it pools
        # before the ReLU, since max(relu(a), relu(b)) = relu(max(a, b)) and the gradient
        # reaches the same entry either way, and the ReLU then runs on a 4x smaller array;
        # and the first layer skips dX (conv2d_backward with need_dx=False), since nothing
        # needs the gradient of the data.
        p = self.params
        X = X.astype(self.dtype, copy=False)
        out, conv_cache = conv2d_forward(X, p["W1"])
        out, pool_cache = max_pool_forward(out, self.pool_param, keep_choices=y is not None)
        out, relu1_cache = relu_forward(out)
        out, fc2_cache = fc_forward(out, p["W2"], p["b2"])
        out, relu2_cache = relu_forward(out)
        scores, fc3_cache = fc_forward(out, p["W3"], p["b3"])
        if y is None:
            return scores

        loss, dout = softmax_loss(scores, y)
        grads = {}
        dout, grads["W3"], grads["b3"] = fc_backward(dout, fc3_cache)
        dout = relu_backward(dout, relu2_cache)
        dout, grads["W2"], grads["b2"] = fc_backward(dout, fc2_cache)
        dout = relu_backward(dout, relu1_cache)
        dout = max_pool_backward(dout, pool_cache)
        _, grads["W1"], _ = conv2d_backward(dout, conv_cache, need_dx=False)
        if self.reg:
            for name in ("W1", "W2", "W3"):
                loss += 0.5 * self.reg * np.sum(p[name] ** 2)
                grads[name] = grads[name] + self.reg * p[name]
        return loss, grads


def _require_fits(input_dim, filter_size):
    C, H, W = input_dim
    if filter_size > H or filter_size > W or (H - filter_size + 1) < 2 or (W - filter_size + 1) < 2:
        raise ValueError(f"filter_size {filter_size} leaves no 2x2 pooling window in an input of "
                         f"input_dim {tuple(input_dim)}: need filter_size <= {min(H, W) - 1}")
