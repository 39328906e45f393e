"""A network as a list of layers: Sequential and its layer descriptions.

    model = Sequential((1, 28, 28), [Conv(16, 3, pad="same"), ReLU(), MaxPool(2),
                                     Affine(10), LogSoftmax()], seed=0)
    loss, grads = model.loss(X_batch, y_batch)

- Layer descriptions: Conv, ReLU, MaxPool, Affine, Dropout, BatchNorm, LayerNorm,
  GroupNorm, Flatten, LogSoftmax, or a Layer subclass of your own.
- Sequential runs them in the order written: forward(X, train) -> (out, caches),
  backward(dout, caches) -> (dX, grads), loss(X, y); layer state buffers (model.state),
  a summary table of output shapes and parameter counts, frozen parameters
  (freeze/unfreeze), a replaceable last layer (replace_head) and an L2 penalty on the
  weights (reg).

checkpoint.save_params / load_params write and read a model's parameters and state.
The layers train with the fast (blocked) convolution, pooling, batch norm and layer norm
of the kernels module; the other layers come from layers.py.
"""
import numbers

import numpy as np

from kernels import (
    batchnorm_backward,
    batchnorm_forward,
    conv2d_backward,
    conv2d_forward,
    layernorm_backward,
    layernorm_forward,
    max_pool_backward,
    max_pool_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
)
from layers import (
    dropout_backward,
    dropout_forward,
    fc_backward,
    fc_forward,
    flatten_backward,
    flatten_forward,
    log_softmax_backward,
    log_softmax_forward,
    nll_loss,
    relu_backward,
    relu_forward,
    softmax_loss,
)
from randomness import dropout_rng, init_weights, next_mask_seed
from validation import check_keep_prob

# A configurable network: a list of layer descriptions, run in order. Each description
# knows about its layer:
#   output_shape(input_shape)  the shape of one sample after the layer (batch axis N left
#                              out); raises ValueError when the input doesn't fit
#   init_params(...)           its parameters, e.g. {'W': ..., 'b': ...} (none for most)
#   init_state(...)            its state buffers, e.g. running statistics (none for most):
#                              numbers the layer keeps between calls but does not train
#   forward(x, params, state, train, seed) -> (out, cache), calling the functions of
#                              layers.py / kernels.py; in training it may replace entries
#                              of state (its own dict of buffers)
#   backward(dout, cache, need_dx) -> (dx, grads), grads with the keys of its params
# Sequential names the layers by kind and position (conv1, relu1, pool1, conv2, ...,
# fc1, fc2, ...) and keeps all parameters in ONE flat dict, model.params, under
# '<layer name>_<param>' keys ('conv1_W', 'conv1_b', 'fc1_W', ...), which is what the
# Solver updates, and all state buffers in model.state under the same kind of keys.


class Layer:
    """Base of the layer descriptions: a layer without parameters or state that keeps the
    shape. Subclass it for a layer of your own."""

    kind = "layer"   # the name prefix in the model: conv, relu, pool, fc, ...

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def init_params(self, input_shape, weight_scale, seed, dtype):
        return {}

    def init_state(self, input_shape, dtype):
        return {}

    def forward(self, x, params, state, train, seed):
        raise NotImplementedError

    def backward(self, dout, cache, need_dx=True):
        raise NotImplementedError

    def describe(self):
        return self.kind


class Conv(Layer):
    """
    Convolution (filtering) with `filters` kernels of size kernel_size x kernel_size
    (or a pair (kh, kw)) over all input channels, a bias per filter (bias=False: none, as
    in the contract's ConvNet), stride and zero padding. pad='same' pads (k - 1) / 2 so
    that, with stride 1 and an odd k, the output keeps the input's height and width.

    Input (C, H, W) -> output (filters, 1 + (H + 2 pad - kh) // stride, 1 + (W + 2 pad - kw) // stride).
    Parameters: W (filters, C, kh, kw) and b (filters,): filters * (C * kh * kw + 1) numbers.
    """

    kind = "conv"

    def __init__(self, filters, kernel_size, stride=1, pad=0, bias=True):
        self.filters = _positive_int(filters, "Conv filters")
        self.kernel = _pair(kernel_size, "Conv kernel_size")
        self.stride = _positive_int(stride, "Conv stride")
        if pad == "same":
            if self.stride != 1 or self.kernel[0] != self.kernel[1] or self.kernel[0] % 2 == 0:
                raise ValueError(f"Conv pad='same' needs stride 1 and a square kernel of odd "
                                 f"size, got kernel {self.kernel}, stride {self.stride}")
            pad = (self.kernel[0] - 1) // 2
        if not isinstance(pad, (int, np.integer)) or pad < 0:
            raise ValueError(f"Conv pad must be a non-negative int or 'same', got {pad!r}")
        self.pad = int(pad)
        self.bias = bool(bias)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"needs an input of shape (C, H, W), got ({_shape_text(input_shape)})")
        C, H, W = input_shape
        kh, kw = self.kernel
        if kh > H + 2 * self.pad or kw > W + 2 * self.pad:
            raise ValueError(f"its {kh}x{kw} kernel does not fit its input of shape "
                             f"{_shape_text(input_shape)} padded by {self.pad}")
        return (self.filters, 1 + (H + 2 * self.pad - kh) // self.stride,
                1 + (W + 2 * self.pad - kw) // self.stride)

    def init_params(self, input_shape, weight_scale, seed, dtype):
        shape = (self.filters, input_shape[0], *self.kernel)
        params = {"W": init_weights(shape, weight_scale, seed, dtype)}
        if self.bias:
            params["b"] = np.zeros(self.filters, dtype=dtype)
        return params

    def forward(self, x, params, state, train, seed):
        return conv2d_forward(x, params["W"], params.get("b"), self.stride, self.pad)

    def backward(self, dout, cache, need_dx=True):
        dx, dw, db = conv2d_backward(dout, cache, need_dx=need_dx)
        return dx, ({"W": dw, "b": db} if self.bias else {"W": dw})

    def describe(self):
        return (f"conv {self.filters} x {self.kernel[0]}x{self.kernel[1]}, stride {self.stride}, "
                f"pad {self.pad}" + ("" if self.bias else ", no bias"))


class ReLU(Layer):
    """max(x, 0), elementwise; keeps the shape."""

    kind = "relu"

    def forward(self, x, params, state, train, seed):
        return relu_forward(x)

    def backward(self, dout, cache, need_dx=True):
        return relu_backward(dout, cache), {}


class MaxPool(Layer):
    """
    Max pooling over pool_size x pool_size windows (or a pair (ph, pw)) every `stride`
    pixels (default: stride = pool height, i.e. non-overlapping windows for square pools).
    Input (C, H, W) -> output (C, 1 + (H - ph) // stride, 1 + (W - pw) // stride).
    """

    kind = "pool"

    def __init__(self, pool_size, stride=None):
        height, width = _pair(pool_size, "MaxPool pool_size")
        self.stride = height if stride is None else _positive_int(stride, "MaxPool stride")
        self.pool_param = {"pool_height": height, "pool_width": width, "stride": self.stride}

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"needs an input of shape (C, H, W), got ({_shape_text(input_shape)})")
        C, H, W = input_shape
        ph, pw = self.pool_param["pool_height"], self.pool_param["pool_width"]
        if ph > H or pw > W:
            raise ValueError(f"its {ph}x{pw} window does not fit its input of shape "
                             f"{_shape_text(input_shape)}")
        return C, 1 + (H - ph) // self.stride, 1 + (W - pw) // self.stride

    def forward(self, x, params, state, train, seed):
        # in training, keep where the maxima are, so that backward need not search again
        return max_pool_forward(x, self.pool_param, keep_choices=train)

    def backward(self, dout, cache, need_dx=True):
        return max_pool_backward(dout, cache), {}

    def describe(self):
        p = self.pool_param
        return f"max pool {p['pool_height']}x{p['pool_width']}, stride {p['stride']}"


class Affine(Layer):
    """
    Fully connected layer to `units` outputs; it flattens its input, as fc_forward does.
    Input of any shape with D numbers -> output (units,).
    Parameters: W (D, units) and b (units,): (D + 1) * units numbers.
    """

    kind = "fc"

    def __init__(self, units):
        self.units = _positive_int(units, "Affine units")

    def output_shape(self, input_shape):
        return (self.units,)

    def init_params(self, input_shape, weight_scale, seed, dtype):
        fan_in = int(np.prod(input_shape))
        return {"W": init_weights((fan_in, self.units), weight_scale, seed, dtype),
                "b": np.zeros(self.units, dtype=dtype)}

    def forward(self, x, params, state, train, seed):
        return fc_forward(x, params["W"], params["b"])

    def backward(self, dout, cache, need_dx=True):
        dx, dw, db = fc_backward(dout, cache)
        return dx, {"W": dw, "b": db}

    def describe(self):
        return f"affine {self.units}"


class Dropout(Layer):
    """
    Inverted dropout; keep is the probability of KEEPING a unit (layers.dropout_forward's
    p). A PyTorch-style drop probability d corresponds to keep = 1 - d: nn.Dropout(0.25)
    is Dropout(keep=0.75). Active only in training (model.loss(X, y)); the identity in
    inference (model.loss(X)).
    """

    kind = "dropout"

    def __init__(self, keep):
        self.keep = check_keep_prob("Dropout keep", keep)

    def forward(self, x, params, state, train, seed):
        mode = "train" if train else "test"
        return dropout_forward(x, {"p": self.keep, "mode": mode, "seed": seed})

    def backward(self, dout, cache, need_dx=True):
        return dropout_backward(dout, cache), {}

    def describe(self):
        return f"dropout, keep p={self.keep:g} (drop {1 - self.keep:g})"


class BatchNorm(Layer):
    """
    Batch normalization (layers.batchnorm_forward; on images (C, H, W), spatial batch
    norm, one mean and variance per channel; kernels.py's fast versions). Training
    normalizes with the batch's statistics and updates the running ones; inference
    (model.loss(X), Solver.check_accuracy) uses the running statistics, so a sample's
    prediction does not depend on its batch.

    Parameters: gamma and beta (D,) or (C,), initialized to 1 and 0.
    State (model.state, saved with the parameters): running_mean (0) and running_var,
    initialized to 1 (as PyTorch does; cs231n's zeros would make an untrained model's
    inference divide by sqrt(eps)), updated with the biased batch variance.
    """

    kind = "batchnorm"

    def __init__(self, momentum=0.9, eps=1e-5):
        self.momentum, self.eps = _momentum(momentum), _epsilon(eps, "BatchNorm")

    def output_shape(self, input_shape):
        if len(input_shape) not in (1, 3):
            raise ValueError(f"needs an input of shape (D,) or (C, H, W), got "
                             f"({_shape_text(input_shape)})")
        return tuple(input_shape)

    def init_params(self, input_shape, weight_scale, seed, dtype):
        return {"gamma": np.ones(input_shape[0], dtype), "beta": np.zeros(input_shape[0], dtype)}

    def init_state(self, input_shape, dtype):
        return {"running_mean": np.zeros(input_shape[0], dtype),
                "running_var": np.ones(input_shape[0], dtype)}

    def forward(self, x, params, state, train, seed):
        bn_param = {"mode": "train" if train else "test", "momentum": self.momentum,
                    "eps": self.eps, **state}
        forward = spatial_batchnorm_forward if x.ndim == 4 else batchnorm_forward
        out, cache = forward(x, params["gamma"], params["beta"], bn_param)
        state.update(running_mean=bn_param["running_mean"], running_var=bn_param["running_var"])
        return out, (x.ndim, cache)

    def backward(self, dout, cache, need_dx=True):
        ndim, cache = cache
        backward = spatial_batchnorm_backward if ndim == 4 else batchnorm_backward
        dx, dgamma, dbeta = backward(dout, cache)
        return dx, {"gamma": dgamma, "beta": dbeta}

    def describe(self):
        return f"batch norm, momentum {self.momentum:g}"


class LayerNorm(Layer):
    """
    Layer normalization (layers.layernorm_forward, kernels.py's fast version) of vector
    inputs (D,): each sample is standardized over its own D features, in training and
    inference alike. For images,
    GroupNorm(1) is layer norm over (C, H, W) with a scale and shift per channel.
    Parameters: gamma and beta (D,), initialized to 1 and 0.
    """

    kind = "layernorm"

    def __init__(self, eps=1e-5):
        self.eps = _epsilon(eps, "LayerNorm")

    def output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"needs an input of shape (D,), got ({_shape_text(input_shape)}); "
                             f"for images use GroupNorm(1)")
        return tuple(input_shape)

    def init_params(self, input_shape, weight_scale, seed, dtype):
        return {"gamma": np.ones(input_shape[0], dtype), "beta": np.zeros(input_shape[0], dtype)}

    def forward(self, x, params, state, train, seed):
        return layernorm_forward(x, params["gamma"], params["beta"], {"eps": self.eps})

    def backward(self, dout, cache, need_dx=True):
        dx, dgamma, dbeta = layernorm_backward(dout, cache)
        return dx, {"gamma": dgamma, "beta": dbeta}

    def describe(self):
        return "layer norm"


class GroupNorm(Layer):
    """
    Group normalization (layers.spatial_groupnorm_forward, kernels.py's fast version) of
    images (C, H, W): the channels of each sample in `groups` groups of C / groups, each
    standardized over its channels and pixels; the same in training and inference.
    Parameters: gamma and beta (1, C, 1, 1), initialized to 1 and 0.
    """

    kind = "groupnorm"

    def __init__(self, groups, eps=1e-5):
        self.groups, self.eps = _positive_int(groups, "GroupNorm groups"), _epsilon(eps, "GroupNorm")

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"needs an input of shape (C, H, W), got ({_shape_text(input_shape)})")
        if input_shape[0] % self.groups:
            raise ValueError(f"its {self.groups} groups do not divide the {input_shape[0]} channels")
        return tuple(input_shape)

    def init_params(self, input_shape, weight_scale, seed, dtype):
        shape = (1, input_shape[0], 1, 1)
        return {"gamma": np.ones(shape, dtype), "beta": np.zeros(shape, dtype)}

    def forward(self, x, params, state, train, seed):
        return spatial_groupnorm_forward(x, params["gamma"], params["beta"], self.groups,
                                         {"eps": self.eps})

    def backward(self, dout, cache, need_dx=True):
        dx, dgamma, dbeta = spatial_groupnorm_backward(dout, cache)
        return dx, {"gamma": dgamma, "beta": dbeta}

    def describe(self):
        return f"group norm, {self.groups} groups"


class Flatten(Layer):
    """(d_1, ..., d_k) -> (d_1 * ... * d_k,). Optional before Affine, which flattens anyway."""

    kind = "flatten"

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, params, state, train, seed):
        return flatten_forward(x)

    def backward(self, dout, cache, need_dx=True):
        return flatten_backward(dout, cache), {}


class LogSoftmax(Layer):
    """
    Output layer: class scores (C,) -> log-probabilities (C,). Only allowed last; the
    model's loss is then the NLL of these log-probabilities (nll_loss). Together they are
    the softmax cross-entropy loss, so this is the "softmax" layer of a description.
    """

    kind = "logsoftmax"

    def output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"needs class scores of shape (C,), got ({_shape_text(input_shape)}); "
                             f"put an Affine layer before it")
        return tuple(input_shape)

    def forward(self, x, params, state, train, seed):
        return log_softmax_forward(x)

    def backward(self, dout, cache, need_dx=True):
        return log_softmax_backward(dout, cache), {}

    def describe(self):
        return "log-softmax"


class Sequential:
    """
    A network given as a list of layers, applied in order to inputs (N, *input_shape):

        model = Sequential((1, 28, 28), [
            Conv(16, 3, pad="same"), ReLU(), MaxPool(2),
            Conv(32, 3), ReLU(), MaxPool(2),
            Affine(600), ReLU(), Dropout(keep=0.75), Affine(120), ReLU(), Affine(10),
            LogSoftmax()], seed=0)
        model.summary(print_table=True)
        loss, grads = model.loss(X_batch, y_batch)   # training: dropout active
        log_probs = model.loss(X_test)               # inference: dropout off

        out, caches = model.forward(X_batch, train=True)   # the same, step by step
        loss, dout = nll_loss(out, y_batch)
        dX, grads = model.backward(dout, caches)

    Layers are named by kind and position among their kind (conv1, conv2, relu1, pool1,
    fc1, dropout1, logsoftmax1, ...), and parameters are stored in the flat dict
    model.params as '<layer>_<param>': 'conv1_W', 'conv1_b', 'fc1_W', 'fc1_b', ...
    Layers with state buffers (numbers kept between calls but not trained, such as a
    normalization layer's running statistics) keep them in model.state under the same
    kind of keys; checkpoint.save_params/load_params and Solver checkpoints include them.

    The layers run in the order written. pool_before_relu=True is an explicit speed
    option: a ReLU directly followed by a MaxPool then runs after it, on the pooled array
    (4x smaller for a 2x2 pool). The numbers are the same, because max(relu(a), relu(b))
    = relu(max(a, b)) and the gradient reaches the same input either way.

    The loss is the negative log-likelihood of the labels, averaged over the batch: if the
    last layer is LogSoftmax its outputs are log-probabilities and nll_loss is applied;
    otherwise the last layer's outputs are class scores and softmax_loss is applied (the
    same loss, computed in one step, as in the contract's ConvNet). Either way the last
    layer must output a vector (C,) per sample.

    Transfer learning (see transfer_learning.py):

        load_params(model, 'source.npz')   # checkpoint.py: pretrained weights, shapes checked
        model.replace_head(2, seed=0)      # new last Affine layer for 2 classes
        model.freeze()                     # freeze every parameter ...
        model.unfreeze('fc3')              # ... except the new head's
        Solver(model, data).train()        # trains model.trainable_params() only

    Frozen parameters (the set model.frozen) get no gradient: backward() leaves them out
    of grads, and with need_dx=False (as loss() calls it) backpropagation stops at the
    lowest layer that has a trainable parameter, so a frozen bottom of the network costs
    only its forward pass.

    L2 regularization: reg > 0 adds 0.5 * reg * (sum of the squared weights W of the
    Conv and Affine layers) to the loss and reg * W to their gradients, as ConvNet's reg
    does; biases, normalization parameters and frozen weights are not penalized (see
    loss and regularized_params).

    Dropout randomness: training call number k (k = model.training_steps, counted from 0)
    draws its dropout masks from np.random.default_rng([model.seed, k]), so a seeded run is
    reproducible. The counter is listed in checkpoint_state, so Solver checkpoints save it
    and Solver.resume(...) continues with exactly the masks of an uninterrupted run.
    """

    checkpoint_state = ("training_steps",)  # saved and restored by Solver checkpoints

    def __init__(self, input_shape, layers, weight_scale=None, dtype=np.float32, seed=None,
                 pool_before_relu=False, reg=0.0):
        """
        Inputs:
        - input_shape: shape of one sample, e.g. (C, H, W) for images or (D,).
        - layers: list of layer descriptions (Conv, ReLU, MaxPool, Affine, Dropout,
          BatchNorm, LayerNorm, GroupNorm, Flatten, LogSoftmax, or a Layer subclass of
          your own).
        - weight_scale: std of the Gaussian initial weights, or None for He
          initialization (std sqrt(2 / fan_in) per layer); biases start at 0.
        - dtype: dtype of the parameters and of the computation.
        - seed: seed of the initial weights and of the dropout masks (None: random).
        - pool_before_relu: run a ReLU that is directly followed by a MaxPool after the
          pool (same numbers, less work; see above). Default False: the written order.
        - reg: strength of the L2 penalty 0.5 * reg * sum of the squared weights W of
          every layer (see loss). Default 0.0: none.

        Raises ValueError, naming the layer, if a layer does not fit its input (e.g. a
        kernel larger than the image), if LogSoftmax is not last, or if the network does
        not end in a vector of class scores, and for a reg that is not a number >= 0.
        """
        if not (isinstance(reg, numbers.Real) and not isinstance(reg, bool)
                and np.isfinite(reg) and reg >= 0):
            raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
        self.reg = float(reg)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.layers = list(layers)
        self.dtype = np.dtype(dtype)
        self.seed = np.random.SeedSequence().entropy if seed is None else seed
        self.weight_scale = weight_scale
        self.pool_before_relu = bool(pool_before_relu)
        self.training_steps = 0
        self.frozen = set()   # names of parameters that get no gradient (see freeze)
        if not self.layers:
            raise ValueError("layers is empty: a Sequential model needs at least one layer")

        self.names, self.output_shapes, self.params, self.state = [], [], {}, {}
        counts = {}
        shape = self.input_shape
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"layer {index} is {layer!r}, not a layer description "
                                 f"(Conv, ReLU, MaxPool, Affine, Dropout, BatchNorm, LayerNorm, "
                                 f"GroupNorm, Flatten, LogSoftmax)")
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
            name = f"{layer.kind}{counts[layer.kind]}"
            if isinstance(layer, LogSoftmax) and index != len(self.layers) - 1:
                raise ValueError(f"{name} (layer {index}): LogSoftmax must be the last layer")
            try:
                next_shape = layer.output_shape(shape)
            except ValueError as error:
                source = "the input" if index == 0 else self.names[-1]
                raise ValueError(f"{name} (layer {index}, {layer.describe()}) cannot take the "
                                 f"output of {source}: {error}") from None
            # One seed per layer: init_weights only mixes in the shape, so two layers of
            # the same shape would otherwise start with identical weights.
            layer_seed = None if seed is None else int(
                np.random.SeedSequence([seed, index]).generate_state(1)[0])
            for key, value in layer.init_params(shape, weight_scale, layer_seed, self.dtype).items():
                self.params[f"{name}_{key}"] = value
            for key, value in layer.init_state(shape, self.dtype).items():
                self.state[f"{name}_{key}"] = value
            self.names.append(name)
            self.output_shapes.append(next_shape)
            shape = next_shape
        if len(shape) != 1:
            raise ValueError(f"the last layer, {self.names[-1]}, outputs shape "
                             f"({_shape_text(shape)}) per sample, but a classifier must end "
                             f"in class scores (C,): add an Affine layer")

    def execution_order(self):
        """Indices of the layers in the order they run: as written, unless
        pool_before_relu swaps a ReLU with the MaxPool right after it."""
        order = list(range(len(self.layers)))
        if not self.pool_before_relu:
            return order
        for position in range(len(order) - 1):
            if (isinstance(self.layers[order[position]], ReLU)
                    and isinstance(self.layers[order[position + 1]], MaxPool)):
                order[position], order[position + 1] = order[position + 1], order[position]
        return order

    def _layer_dict(self, values, name):
        prefix = name + "_"
        return {key[len(prefix):]: value for key, value in values.items()
                if key.startswith(prefix)}

    def forward(self, X, train=False, stop_after=None, start_after=None):
        """
        Run the layers on X.

        Inputs:
        - X: inputs of shape (N, *input_shape); cast to the model's dtype.
        - train: training mode (dropout active, state buffers updated) or inference.
        - stop_after: the name of a layer (e.g. 'relu2') to stop after, for the features
          of a hidden layer; None runs them all.
        - start_after: the name of a layer whose output X is: only the layers after it
          run (with stop_after, a network can be run in parts). None: X is the input.

        Returns a tuple of:
        - out: the last run layer's output, (N, *its output shape).
        - caches: the caches of the layers that ran, in the order they ran, as
          (layer index, cache) pairs, for backward.
        """
        for name in (stop_after, start_after):
            if name is not None and name not in self.names:
                raise ValueError(f"{name!r} is not a layer of this model "
                                 f"({', '.join(self.names)})")
        first = 0 if start_after is None else self.names.index(start_after) + 1
        last = len(self.layers) - 1 if stop_after is None else self.names.index(stop_after)
        input_shape = self.input_shape if first == 0 else self.output_shapes[first - 1]
        X = np.asarray(X).astype(self.dtype, copy=False)
        if X.shape[1:] != input_shape:
            where = "" if first == 0 else f" (the output of {start_after})"
            raise ValueError(f"X has shape {X.shape}, expected (N, {_shape_text(input_shape)})"
                             + where)
        if train:   # this call's dropout masks (randomness.py: reproducible, resumable)
            rng = dropout_rng(self.seed, self.training_steps)
            self.training_steps += 1
        # (a ReLU that pool_before_relu swapped with the pool after it still computes the
        # written network's part: cut off from its pool, it runs on the unpooled array)
        order = [index for index in self.execution_order() if first <= index <= last]
        out, caches = X, []
        for index in order:
            layer, name = self.layers[index], self.names[index]
            seed = next_mask_seed(rng) if train and isinstance(layer, Dropout) else None
            state = self._layer_dict(self.state, name)
            out, cache = layer.forward(out, self._layer_dict(self.params, name), state,
                                       train, seed)
            for key, value in state.items():
                self.state[f"{name}_{key}"] = value
            caches.append((index, cache))
        return out, caches

    def backward(self, dout, caches, need_dx=True):
        """
        Backpropagate dout, the gradient of the loss with respect to forward's output,
        through the layers that ran, last first.

        Inputs:
        - dout: upstream gradient of the shape of forward's out.
        - caches: the caches from forward.
        - need_dx: True computes dX, the gradient with respect to X. False stops at the
          lowest layer with a trainable parameter, which then computes no gradient for
          its input, and returns None for dX (what training needs).

        Returns a tuple of:
        - dX: gradient with respect to X, of X's shape (None if need_dx is False).
        - grads: dict of the parameter gradients of the layers that ran, except frozen
          parameters (see freeze), keys as in model.params.
        """
        if need_dx:
            first = -1
        else:
            first = min((index for index, _ in caches
                         if any(key not in self.frozen
                                for key in self._param_names_of(self.names[index]))),
                        default=len(self.layers))
        grads = {}
        for index, cache in reversed(caches):
            if index < first:   # (with pool_before_relu, a swapped ReLU-MaxPool pair has
                break           # no parameters, so it lies wholly above or below `first`)
            layer, name = self.layers[index], self.names[index]
            dout, layer_grads = layer.backward(dout, cache, need_dx=index > first)
            for key, value in layer_grads.items():
                if f"{name}_{key}" not in self.frozen:
                    grads[f"{name}_{key}"] = value
        return (dout if need_dx else None), grads

    def loss(self, X, y=None):
        """
        Inputs:
        - X: inputs of shape (N, *input_shape).
        - y: integer labels of shape (N,), or None.

        Returns:
        - if y is None (inference, dropout off): the last layer's outputs (N, C), i.e.
          log-probabilities if the network ends in LogSoftmax, else class scores.
        - else (training, dropout on): a tuple (loss, grads), grads a dict with the keys
          of self.params (less the frozen ones).

        With reg > 0 the loss has an L2 penalty on the weights, as ConvNet's: with the
        trained weights W (every layer's parameter named W: Conv and Affine weights; not
        biases, not the normalization layers' gamma and beta; not frozen weights, which
        are constants of the network)

            loss += 0.5 * reg * sum of W^2,      dW += reg * W
        """
        if y is None:
            return self.forward(X)[0]
        out, caches = self.forward(X, train=True)
        if isinstance(self.layers[-1], LogSoftmax):
            loss, dout = nll_loss(out, y)
        else:
            loss, dout = softmax_loss(out, y)
        grads = self.backward(dout, caches, need_dx=False)[1]
        if self.reg:
            for name in self.regularized_params():
                loss += 0.5 * self.reg * np.sum(self.params[name] ** 2)
                grads[name] = grads[name] + self.reg * self.params[name]
        return loss, grads

    def regularized_params(self):
        """Names of the parameters the L2 penalty reg applies to: every layer's weights W
        ('conv1_W', 'fc1_W', ...), except frozen ones, in the order of model.params."""
        weights = {f"{name}_W" for name in self.names}
        return [key for key in self.params if key in weights and key not in self.frozen]

    # ------------------------------------------------------------------ transfer learning

    def _param_names_of(self, layer_name):
        return [key for key in self.params if key.startswith(layer_name + "_")]

    def _resolve(self, names):
        """Parameter names for names of parameters ('conv1_W') or layers ('conv1');
        no names: all parameters."""
        if not names:
            return list(self.params)
        resolved = []
        for name in names:
            if name in self.params:
                resolved.append(name)
            elif name in self.names:
                resolved += self._param_names_of(name)
            else:
                raise ValueError(f"{name!r} is neither a parameter ({', '.join(self.params)}) "
                                 f"nor a layer ({', '.join(self.names)}) of this model")
        return resolved

    def freeze(self, *names):
        """
        Freeze parameters, given by name ('conv1_W') or by layer ('conv1': all of its
        parameters); no names: every parameter. Frozen parameters get no gradient (see
        loss) and so no update: the Solver trains model.trainable_params() by default.
        """
        self.frozen.update(self._resolve(names))

    def unfreeze(self, *names):
        """Make parameters trainable again (names as in freeze; no names: all)."""
        self.frozen.difference_update(self._resolve(names))

    def trainable_params(self):
        """Names of the parameters that are not frozen, in the order of model.params."""
        return [key for key in self.params if key not in self.frozen]

    def replace_head(self, num_classes, seed=None):
        """
        Replace the last Affine layer (the classifier's "head") by a new Affine layer
        with num_classes outputs and fresh weights, e.g. to reuse a trained network for
        a new task with another number of classes.

        The layer keeps its name (say fc3), so its parameters keep their keys: fc3_W
        becomes (D, num_classes) and fc3_b (num_classes,), initialized as the model was
        (weight_scale, or He when None; biases 0) from seed (None: np.random's global
        state). They are trainable (removed from model.frozen). The layers after it
        (e.g. LogSoftmax) must keep their input's shape. Returns the layer's name.
        """
        num_classes = _positive_int(num_classes, "num_classes")
        index = max((i for i, layer in enumerate(self.layers) if isinstance(layer, Affine)),
                    default=None)
        if index is None:
            raise ValueError("replace_head: the model has no Affine layer to replace")
        name, head = self.names[index], Affine(num_classes)
        input_shape = self.input_shape if index == 0 else self.output_shapes[index - 1]
        shapes = [head.output_shape(input_shape)]
        for layer in self.layers[index + 1:]:
            shapes.append(layer.output_shape(shapes[-1]))
        if len(shapes[-1]) != 1:
            raise ValueError(f"replace_head: the network would end in shape "
                             f"({_shape_text(shapes[-1])}), not class scores")
        self.layers[index] = head
        self.output_shapes[index:] = shapes
        for key, value in head.init_params(input_shape, self.weight_scale, seed,
                                           self.dtype).items():
            self.params[f"{name}_{key}"] = value
            self.frozen.discard(f"{name}_{key}")
        return name

    def summary_rows(self):
        """
        One row per layer: (name, description, output shape of one sample, number of
        parameters).
        """
        rows = []
        for name, layer, shape in zip(self.names, self.layers, self.output_shapes):
            keys = self._param_names_of(name)
            frozen = keys and all(key in self.frozen for key in keys)
            rows.append((name, layer.describe() + (" (frozen)" if frozen else ""), shape,
                         sum(self.params[key].size for key in keys)))
        return rows

    def num_params(self):
        """Total number of parameters (numbers in model.params)."""
        return sum(value.size for value in self.params.values())

    def summary(self, print_table=False):
        """
        The model as a table: one row per layer with its name, what it is, its output
        shape (of one sample, without the batch axis N) and its number of parameters, then
        the total (and with reg > 0 a line naming the penalized weights). Returns the
        table as a string, and prints it if print_table is True.
        """
        header = ("layer", "type", "output shape", "params")
        rows = [("input", "", _shape_text(self.input_shape), "")]
        rows += [(name, description, _shape_text(shape), f"{count:,}")
                 for name, description, shape, count in self.summary_rows()]
        rows.append(("total", "", "", f"{self.num_params():,}"))
        if self.frozen:
            trainable = sum(self.params[key].size for key in self.trainable_params())
            rows.append(("trainable", "", "", f"{trainable:,}"))
        penalty = ""
        if self.reg:
            penalty = (f"\nL2 regularization reg = {self.reg:g} on "
                       + (", ".join(self.regularized_params()) or "no weights"))
        widths = [max(len(row[i]) for row in [header] + rows) for i in range(4)]

        def line(row):
            return "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                              row[2].ljust(widths[2]), row[3].rjust(widths[3])]).rstrip()

        rule = "-" * len(line(header))
        body, totals = (rows[:-2], rows[-2:]) if self.frozen else (rows[:-1], rows[-1:])
        table = "\n".join([line(header), rule, *map(line, body), rule, *map(line, totals)])
        table += penalty
        if print_table:
            print(table)
        return table


# ============================================================================= checks
#
# The argument rules of the layer descriptions (ValueError naming the argument), and
# the shape format of their messages.

def _pair(value, name):
    """An int k or a pair (h, w) -> (h, w) of positive ints."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _positive_int(value, name):
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _shape_text(shape):
    return " x ".join(str(d) for d in shape)


def _momentum(value):
    if not (isinstance(value, numbers.Real) and 0 <= value < 1):
        raise ValueError(f"BatchNorm momentum must be in [0, 1), got {value!r}")
    return float(value)


def _epsilon(value, name):
    if not (isinstance(value, numbers.Real) and value > 0):
        raise ValueError(f"{name} eps must be a positive number, got {value!r}")
    return float(value)
