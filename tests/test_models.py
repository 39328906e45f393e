"""SoftmaxClassifier and ConvNet: contract parameters, scores, numeric gradients (float64)."""
import numpy as np
import pytest

from cnn import ConvNet
from gradient_check import eval_numerical_gradient, rel_error
from softmax import SoftmaxClassifier


def check_model_gradients(model, X, y, tolerance=1e-7):
    loss, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    for name, param in model.params.items():
        numeric = eval_numerical_gradient(lambda _: model.loss(X, y)[0], param, verbose=False)
        assert rel_error(numeric, grads[name]) < tolerance, name


def test_softmax_classifier_contract_defaults():
    model = SoftmaxClassifier()
    shapes = {name: value.shape for name, value in model.params.items()}
    assert shapes == {"W1": (784, 100), "b1": (100,), "W2": (100, 10), "b2": (10,)}
    assert abs(model.params["W1"].std() - 1e-3) < 1e-4 and not model.params["b1"].any()
    X = np.random.default_rng(0).standard_normal((3, 1, 28, 28))
    assert model.loss(X).shape == (3, 10)
    loss, _ = model.loss(X, np.array([0, 5, 9]))
    assert loss == pytest.approx(np.log(10), abs=1e-3)  # tiny weights: near-uniform scores


@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_softmax_classifier_gradients(reg):
    rng = np.random.default_rng(1)
    model = SoftmaxClassifier(input_dim=6, hidden_dim=5, num_classes=4, weight_scale=0.5,
                              reg=reg, seed=0)
    for name in ("b1", "b2"):
        model.params[name] = rng.standard_normal(model.params[name].shape)
    check_model_gradients(model, rng.standard_normal((3, 2, 3)), np.array([0, 3, 1]))


def test_convnet_contract_defaults():
    model = ConvNet()
    shapes = {name: value.shape for name, value in model.params.items()}
    # 28 - 7 + 1 = 22, pooled to 11: 32 * 11 * 11 = 3872 inputs to the hidden layer
    assert shapes == {"W1": (32, 1, 7, 7), "W2": (3872, 100), "b2": (100,),
                      "W3": (100, 10), "b3": (10,)}
    assert all(value.dtype == np.float32 for value in model.params.values())
    X = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert model.loss(X).shape == (2, 10)
    loss, grads = model.loss(X, np.array([1, 2]))
    assert loss == pytest.approx(np.log(10), abs=1e-3)
    assert all(grads[name].dtype == np.float32 for name in grads)


@pytest.mark.parametrize("reg, input_dim, filter_size", [(0.0, (2, 9, 8), 3), (0.05, (1, 7, 7), 2)])
def test_convnet_gradients(reg, input_dim, filter_size):
    rng = np.random.default_rng(2)
    model = ConvNet(input_dim=input_dim, num_filters=3, filter_size=filter_size, hidden_dim=6,
                    num_classes=4, weight_scale=0.3, dtype=np.float64, reg=reg, seed=2)
    for name in ("b2", "b3"):
        model.params[name] = rng.standard_normal(model.params[name].shape)
    X = rng.standard_normal((2, *input_dim))
    check_model_gradients(model, X, np.array([3, 0]))


def test_convnet_rejects_too_large_filter():
    with pytest.raises(ValueError, match=r"filter_size 28.*input_dim \(1, 28, 28\)"):
        ConvNet(filter_size=28)


def test_he_initialization_and_seeded_init():
    model = ConvNet(weight_scale=None, seed=3)
    assert model.params["W1"].std() == pytest.approx(np.sqrt(2 / 49), rel=0.1)
    assert model.params["W2"].std() == pytest.approx(np.sqrt(2 / 3872), rel=0.02)
    again = ConvNet(weight_scale=None, seed=3)
    assert all(np.array_equal(again.params[k], model.params[k]) for k in model.params)
    mlp = SoftmaxClassifier(weight_scale=None, seed=3)
    assert mlp.params["W2"].std() == pytest.approx(np.sqrt(2 / 100), rel=0.1)


def test_convnet_equals_literal_conv_relu_pool_order():
    """ConvNet pools before its ReLU, skips the data's dX and runs kernels.py; loss and
    every gradient must equal layers.py's reference functions in the contract's literal
    order conv - relu - pool (to round-off), with ties after ReLU."""
    import layers
    rng = np.random.default_rng(4)
    model = ConvNet(input_dim=(2, 10, 10), num_filters=4, filter_size=3, hidden_dim=7,
                    num_classes=5, weight_scale=0.3, dtype=np.float64, seed=0)
    X, y = rng.standard_normal((3, 2, 10, 10)), np.array([0, 4, 2])
    loss, grads = model.loss(X, y)

    p, pool = model.params, ConvNet.pool_param
    a, conv_cache = layers.conv_forward(X, p["W1"])
    r, relu_cache = layers.relu_forward(a)
    m, pool_cache = layers.max_pool_forward(r, pool)
    h, fc2_cache = layers.fc_forward(m, p["W2"], p["b2"])
    hr, relu2_cache = layers.relu_forward(h)
    scores, fc3_cache = layers.fc_forward(hr, p["W3"], p["b3"])
    expected_loss, d = layers.softmax_loss(scores, y)
    d, dW3, db3 = layers.fc_backward(d, fc3_cache)
    d, dW2, db2 = layers.fc_backward(layers.relu_backward(d, relu2_cache), fc2_cache)
    d = layers.relu_backward(layers.max_pool_backward(d, pool_cache), relu_cache)
    _, dW1 = layers.conv_backward(d, conv_cache)
    assert (r == 0).mean() > 0.3  # many exact ties at 0 inside pool windows
    assert loss == pytest.approx(expected_loss, rel=1e-13)
    for name, expected in {"W1": dW1, "W2": dW2, "b2": db2, "W3": dW3, "b3": db3}.items():
        np.testing.assert_allclose(grads[name], expected, rtol=1e-11, atol=1e-15)
