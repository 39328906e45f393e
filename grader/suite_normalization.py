"""
Graded tests of the normalization layers of layers.py (API.md Part 3, cs231n assignment
2's names): batch norm (both backward passes), layer norm, spatial batch norm and spatial
group norm. Hand-worked examples, the loop references of grader/references.py on random
shapes, and the standard checks of each pair (grader/checks.py). bn_param is the one
argument that may change: in train mode its running statistics, to the documented
values (checked by <name>_no_mutation and by the hand-worked tests).
"""
import numpy as np

from grader import references as ref
from grader.checks import (
    expect_close,
    expect_value_error,
    fail,
    graded,
    layer,
    pair,
    positive,
    randn,
    require_right_values,
    state_after,
)

MODULE = 'layers'
EPS = 1e-12   # the hand-worked examples divide by sqrt(var + eps) ~ sqrt(var)


def returned(name, result, count):
    if not (isinstance(result, (tuple, list)) and len(result) == count):
        fail(f"{name} must return a tuple of {count} values (dx, dgamma, dbeta)")
    return result


def spread(rng, shape, axes):
    """
    Random data whose standard deviation over `axes` (the axes the layer's statistics run
    over) is exactly between 1 and 2 for every group, with a random mean. A normalization's
    round-off grows like 1 / std, so a group that is near-constant by chance (likely with
    a few samples) would fail a correct float32 submission.
    """
    z = randn(rng, *shape)
    z = (z - z.mean(axis=axes, keepdims=True)) / z.std(axis=axes, keepdims=True)
    group_shape = z.mean(axis=axes, keepdims=True).shape
    return z * rng.uniform(1, 2, group_shape) + randn(rng, *group_shape)


def running_statistics(args):
    """The documented change of bn_param: its running statistics, in train mode only."""
    bn_param = args['bn_param']
    if bn_param.get('mode') != 'train':
        return None
    update = ref.spatial_batchnorm_running if args['x'].ndim == 4 else ref.batchnorm_running
    return 'bn_param', update(args['x'], bn_param)


# ---- batch norm ---------------------------------------------------------------------

@graded(MODULE, points=2)
def batchnorm_forward_values(batchnorm_forward):
    # Per column: mean [2, 4], biased variance [1, 4], so xhat = [[-1, -1], [1, 1]].
    x = np.array([[1., 2.], [3., 6.]])
    gamma, beta = np.array([2., 3.]), np.array([0.5, -1.])
    out, _ = pair('batchnorm_forward', batchnorm_forward(x, gamma, beta, {'mode': 'train', 'eps': EPS}))
    expect_close("batchnorm_forward out [train]", out, [[-1.5, -4.], [2.5, 2.]])
    # running = 0.9 * 0 + 0.1 * batch statistics (the biased variance, divided by N)
    bn_param = state_after(batchnorm_forward, 3)
    if not isinstance(bn_param, dict):
        fail("batchnorm_forward replaced bn_param")
    expect_close("bn_param['running_mean'] after one train step", bn_param.get('running_mean'), [0.2, 0.4])
    expect_close("bn_param['running_var'] after one train step (biased variance)",
                 bn_param.get('running_var'), [0.1, 0.4])
    # test mode: (x - running_mean) / sqrt(running_var) = [[1, 0], [0, 2]], then gamma, beta
    bn_param = {'mode': 'test', 'eps': EPS, 'running_mean': np.array([1., -2.]),
                'running_var': np.array([4., 0.25])}
    out, _ = pair('batchnorm_forward', batchnorm_forward(np.array([[3., -2.], [1., -1.]]),
                                                         np.array([1., 2.]), np.array([0., 1.]), bn_param))
    expect_close("batchnorm_forward out [test mode, running statistics]", out, [[1., 1.], [0., 5.]])


def bn_hand_backward(backward_name, batchnorm_forward, backward):
    # x = [0, 1, 2]: mean 1, var 2/3, xhat = [-1, 0, 1] sqrt(3/2); dout = [1, 0, 0]:
    # dx = inv_std / N (N dout - sum dout - xhat sum(dout xhat)) with inv_std = sqrt(3/2)
    x = np.array([[0.], [1.], [2.]])
    _, cache = pair('batchnorm_forward', batchnorm_forward(x, np.array([1.]), np.array([0.]),
                                                           {'mode': 'train', 'eps': EPS}))
    dx, dgamma, dbeta = returned(backward_name, backward(np.array([[1.], [0.], [0.]]), cache), 3)
    s = np.sqrt(1.5)
    expect_close(f"{backward_name} dx [x = 0, 1, 2; dout = 1, 0, 0]", dx,
                 [[s / 3 * (2 - 1.5)], [s / 3 * -1], [s / 3 * (-1 + 1.5)]])
    expect_close(f"{backward_name} dgamma", dgamma, [-s])
    expect_close(f"{backward_name} dbeta", dbeta, [1.])


@graded(MODULE, points=2)
def batchnorm_backward_values(batchnorm_forward, batchnorm_backward):
    bn_hand_backward('batchnorm_backward', batchnorm_forward, batchnorm_backward)


@graded(MODULE, points=2)
def batchnorm_backward_alt_values(batchnorm_forward, batchnorm_backward_alt):
    bn_hand_backward('batchnorm_backward_alt', batchnorm_forward, batchnorm_backward_alt)


def batchnorm_cases(rng):
    cases = []
    for N, D, momentum in [(4, 3, 0.9), (7, 5, 0.5), (6, 4, 0.99)]:
        cases.append((f"train N={N} D={D} momentum={momentum}",
                      dict(x=spread(rng, (N, D), 0), gamma=randn(rng, D), beta=randn(rng, D),
                           bn_param={'mode': 'train', 'momentum': momentum,
                                     'running_mean': randn(rng, D), 'running_var': positive(rng, D)})))
    cases.append(("train N=5 D=2 no running statistics yet",
                  dict(x=spread(rng, (5, 2), 0), gamma=randn(rng, 2), beta=randn(rng, 2),
                       bn_param={'mode': 'train', 'eps': 1e-3})))
    cases.append(("test N=3 D=4",
                  dict(x=randn(rng, 3, 4), gamma=randn(rng, 4), beta=randn(rng, 4),
                       bn_param={'mode': 'test', 'running_mean': randn(rng, 4),
                                 'running_var': positive(rng, 4)})))
    return cases


@graded(MODULE)
def batchnorm_bad_shapes(batchnorm_forward):
    require_right_values('batchnorm', batchnorm_forward)
    x = np.zeros((4, 3))
    expect_value_error("batchnorm_forward with x (4, 3), gamma (2,)",
                       lambda: batchnorm_forward(x, np.ones(2), np.zeros(3), {'mode': 'train'}), 'gamma')
    expect_value_error("batchnorm_forward with x (4, 3, 2)",
                       lambda: batchnorm_forward(np.zeros((4, 3, 2)), np.ones(3), np.zeros(3),
                                                 {'mode': 'train'}), 'x')


layer(MODULE, 'batchnorm_forward', 'batchnorm_backward', batchnorm_cases, ref.batchnorm,
      wrt=('x', 'gamma', 'beta'), state=running_statistics)
layer(MODULE, 'batchnorm_forward', 'batchnorm_backward_alt', batchnorm_cases, ref.batchnorm,
      wrt=('x', 'gamma', 'beta'), state=running_statistics, name='batchnorm_alt')


# ---- layer norm ---------------------------------------------------------------------

@graded(MODULE, points=2)
def layernorm_values(layernorm_forward, layernorm_backward):
    # Rows [1, 3] and [0, 4] both standardize to [-1, 1]; a constant row to [0, 0] (out = beta).
    x = np.array([[1., 3.], [0., 4.], [5., 5.]])
    out, cache = pair('layernorm_forward', layernorm_forward(x, np.array([2., 1.]), np.array([0., 10.]),
                                                             {'eps': EPS}))
    expect_close("layernorm_forward out", out, [[-2., 11.], [-2., 11.], [0., 10.]])
    # Row [0, 1, 2]: mean 1, var 2/3, inv_std s = sqrt(3/2), xhat = [-s, 0, s]. With gamma = 1
    # and dout = [1, 0, 0]: dx = s (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
    # = s ([2/3, -1/3, -1/3] - [-s, 0, s] (-s/3)) = s [1/6, -1/3, 1/6].
    _, cache = pair('layernorm_forward', layernorm_forward(np.array([[0., 1., 2.]]), np.ones(3),
                                                           np.zeros(3), {'eps': EPS}))
    dx, dgamma, dbeta = returned('layernorm_backward', layernorm_backward(np.array([[1., 0., 0.]]), cache), 3)
    s = np.sqrt(1.5)
    expect_close("layernorm_backward dx", dx, [[s / 6, -s / 3, s / 6]])
    expect_close("layernorm_backward dgamma", dgamma, [-s, 0., 0.])
    expect_close("layernorm_backward dbeta", dbeta, [1., 0., 0.])


def layernorm_cases(rng):
    return [(f"N={N} D={D}", dict(x=spread(rng, (N, D), 1), gamma=randn(rng, D),
                                   beta=randn(rng, D), ln_param=param))
            for N, D, param in [(3, 4, {}), (1, 6, {"eps": 1e-3}), (5, 3, {})]]


@graded(MODULE)
def layernorm_bad_shapes(layernorm_forward):
    require_right_values('layernorm', layernorm_forward)
    expect_value_error("layernorm_forward with x (4, 3), beta (4,)",
                       lambda: layernorm_forward(np.zeros((4, 3)), np.ones(3), np.zeros(4), {}), 'beta')


layer(MODULE, 'layernorm_forward', 'layernorm_backward', layernorm_cases, ref.layernorm,
      wrt=('x', 'gamma', 'beta'))


# ---- spatial batch norm -------------------------------------------------------------

@graded(MODULE, points=2)
def spatial_batchnorm_values(spatial_batchnorm_forward):
    # One channel holding 1, 3, 5, 7 over N=2 and W=2: mean 4, var 5. The other channel
    # holds 2, 2, 2, 2: xhat 0, out = beta.
    x = np.array([[[[1., 3.]], [[2., 2.]]], [[[5., 7.]], [[2., 2.]]]])   # (2, 2, 1, 2)
    out, _ = pair('spatial_batchnorm_forward',
                  spatial_batchnorm_forward(x, np.array([1., 1.]), np.array([0., -3.]),
                                            {'mode': 'train', 'eps': EPS}))
    r5 = np.sqrt(5)
    expect_close("spatial_batchnorm_forward out", out,
                 [[[[-3 / r5, -1 / r5]], [[-3., -3.]]], [[[1 / r5, 3 / r5]], [[-3., -3.]]]])
    bn_param = state_after(spatial_batchnorm_forward, 3)
    if not isinstance(bn_param, dict):
        fail("spatial_batchnorm_forward replaced bn_param")
    expect_close("bn_param['running_mean'] after one train step", bn_param.get('running_mean'), [0.4, 0.2])
    expect_close("bn_param['running_var'] after one train step", bn_param.get('running_var'), [0.5, 0.])


def spatial_batchnorm_cases(rng):
    return [("train N=2 C=3 H=4 W=3", dict(x=spread(rng, (2, 3, 4, 3), (0, 2, 3)), gamma=randn(rng, 3),
                                           beta=randn(rng, 3), bn_param={'mode': 'train', 'momentum': 0.7})),
            ("train N=1 C=2 H=3 W=5", dict(x=spread(rng, (1, 2, 3, 5), (0, 2, 3)), gamma=randn(rng, 2), beta=randn(rng, 2),
                                           bn_param={'mode': 'train', 'running_mean': randn(rng, 2),
                                                     'running_var': positive(rng, 2)})),
            ("test N=2 C=2 H=2 W=2", dict(x=randn(rng, 2, 2, 2, 2), gamma=randn(rng, 2), beta=randn(rng, 2),
                                          bn_param={'mode': 'test', 'running_mean': randn(rng, 2),
                                                    'running_var': positive(rng, 2)}))]


@graded(MODULE)
def spatial_batchnorm_bad_shapes(spatial_batchnorm_forward):
    require_right_values('spatial_batchnorm', spatial_batchnorm_forward)
    expect_value_error("spatial_batchnorm_forward with C=3 channels and gamma (2,)",
                       lambda: spatial_batchnorm_forward(np.zeros((2, 3, 4, 4)), np.ones(2), np.zeros(3),
                                                         {'mode': 'train'}), 'gamma')
    expect_value_error("spatial_batchnorm_forward with x (2, 3, 4)",
                       lambda: spatial_batchnorm_forward(np.zeros((2, 3, 4)), np.ones(3), np.zeros(3),
                                                         {'mode': 'train'}), 'x')


layer(MODULE, 'spatial_batchnorm_forward', 'spatial_batchnorm_backward', spatial_batchnorm_cases,
      ref.spatial_batchnorm, wrt=('x', 'gamma', 'beta'), state=running_statistics)


# ---- spatial group norm -------------------------------------------------------------

def channel(values):
    return np.array(values, dtype=float).reshape(1, -1, 1, 1)


@graded(MODULE, points=2)
def spatial_groupnorm_values(spatial_groupnorm_forward):
    # Channels [1, 3 | 10, 14] in G=2 groups: [1, 3] -> [-1, 1]; [10, 14] (mean 12, var 4) -> [-1, 1].
    out, _ = pair('spatial_groupnorm_forward',
                  spatial_groupnorm_forward(channel([1, 3, 10, 14]), channel([1, 2, 3, 4]),
                                            channel([0, 0, 1, 1]), 2, {'eps': EPS}))
    expect_close("spatial_groupnorm_forward out [G=2]", out, channel([-1, 2, -2, 5]))
    # G=1: one group of all four channels, mean 7, var (36 + 16 + 9 + 49) / 4 = 27.5
    out, _ = pair('spatial_groupnorm_forward',
                  spatial_groupnorm_forward(channel([1, 3, 10, 14]), channel([1, 1, 1, 1]),
                                            channel([0, 0, 0, 0]), 1, {'eps': EPS}))
    expect_close("spatial_groupnorm_forward out [G=1]", out,
                 channel((np.array([1, 3, 10, 14]) - 7) / np.sqrt(27.5)))


def spatial_groupnorm_cases(rng):
    return [(f"N={N} C={C} H={H} W={W} G={G}",
             dict(x=spread(rng, (N, G, C // G, H, W), (2, 3, 4)).reshape(N, C, H, W),
                  gamma=randn(rng, 1, C, 1, 1),
                  beta=randn(rng, 1, C, 1, 1), G=G, gn_param={}))
            for N, C, H, W, G in [(2, 6, 3, 2, 2), (1, 4, 2, 3, 4), (2, 3, 2, 2, 1)]]


@graded(MODULE)
def spatial_groupnorm_bad_shapes(spatial_groupnorm_forward):
    require_right_values('spatial_groupnorm', spatial_groupnorm_forward)
    x, gamma, beta = np.zeros((2, 4, 3, 3)), np.ones((1, 4, 1, 1)), np.zeros((1, 4, 1, 1))
    expect_value_error("spatial_groupnorm_forward with C=4 and G=3",
                       lambda: spatial_groupnorm_forward(x, gamma, beta, 3, {}), 'G')
    expect_value_error("spatial_groupnorm_forward with gamma (1, 3, 1, 1)",
                       lambda: spatial_groupnorm_forward(x, np.ones((1, 3, 1, 1)), beta, 2, {}), 'gamma')


layer(MODULE, 'spatial_groupnorm_forward', 'spatial_groupnorm_backward', spatial_groupnorm_cases,
      ref.spatial_groupnorm, wrt=('x', 'gamma', 'beta'))
