"""Where the models draw their random numbers: initial weights and dropout masks.

Weights: `init_weights` (Gaussian, std weight_scale or He's) for the classifiers and
Sequential, `gaussian` for the captioning models, whose default draw follows the homework's
order in np.random's global state.

Dropout masks: training call k of a model with seed s draws its masks from
np.random.default_rng([s, k]) (`dropout_rng`), one mask seed per dropout in the order the
forward pass meets them (`next_mask_seed`, or `train_dropout_param` for the whole
dropout_param). The models count their training calls in their checkpoint state, so a
resumed run draws exactly the masks of an uninterrupted one.
"""
import numpy as np


def init_weights(shape, weight_scale, seed, dtype):
    """
    Gaussian weights of the given shape: std weight_scale, or He's sqrt(2 / fan_in) when
    weight_scale is None, where fan_in is the number of inputs of one output unit
    (shape[0] for fc weights (D, M), C * HH * WW for conv filters (F, C, HH, WW)).
    The seed (or, when None, np.random's global state) makes the draw reproducible; the
    shape is mixed into the seed so that layers of one model get different weights.
    """
    fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
    std = np.sqrt(2.0 / fan_in) if weight_scale is None else weight_scale
    if seed is None:
        noise = np.random.standard_normal(shape)
    else:
        noise = np.random.default_rng([seed, *shape]).standard_normal(shape)
    return (std * noise).astype(dtype)


def gaussian(rng, shape, scale):
    """
    Gaussian weights randn(*shape) * scale. With rng None the draw comes from np.random's
    global state, in the homework's order, so notebooks that call np.random.seed get the
    homework's numbers; otherwise from rng (a np.random.Generator).
    """
    noise = np.random.randn(*shape) if rng is None else rng.standard_normal(shape)
    return noise * scale


def dropout_rng(seed, step):
    """The generator of the dropout masks of training call `step` of a model seeded with
    `seed`; None when seed is None (the masks then come from np.random's global state)."""
    return None if seed is None else np.random.default_rng([seed, step])


def next_mask_seed(rng):
    """The seed of the next dropout mask: the next draw of rng (a dropout_rng generator)."""
    return int(rng.integers(2**63))


def train_dropout_param(keep_prob, rng):
    """layers.dropout_forward's dropout_param for one mask in training: keep probability
    keep_prob, the mask seeded by next_mask_seed(rng) (np.random's global state when rng
    is None)."""
    param = {"p": keep_prob, "mode": "train"}
    if rng is not None:
        param["seed"] = next_mask_seed(rng)
    return param
