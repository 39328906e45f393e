"""gradient_check.check_model_gradients: correct models pass in float64 (classifiers,
Sequential with dropout and batch norm, captioning models), a planted gradient bug is
reported on its parameter, float32 is refused, and the model is left exactly as it was."""
import numpy as np
import pytest

from cnn import ConvNet
from gradient_check import check_model_gradients
from rnn import CaptioningRNN
from sequential import Affine, BatchNorm, Conv, Dropout, MaxPool, ReLU, Sequential
from softmax import SoftmaxClassifier

CORRECT = 1e-7   # a correct backward pass, in float64


def softmax_case(seed=0):
    rng = np.random.default_rng(seed)
    model = SoftmaxClassifier(input_dim=6, hidden_dim=5, num_classes=4, weight_scale=None,
                              reg=0.1, seed=seed)
    model.params["b1"] = 0.1 * rng.standard_normal(5)   # no unit exactly at the ReLU kink
    return model, rng.standard_normal((4, 6)), np.array([0, 3, 1, 2])


def convnet_case(seed=0):
    rng = np.random.default_rng(seed)
    model = ConvNet(input_dim=(2, 7, 7), num_filters=3, filter_size=3, hidden_dim=6,
                    num_classes=4, weight_scale=None, dtype=np.float64, reg=0.05, seed=seed)
    model.params["b2"] = 0.1 * rng.standard_normal(6)
    return model, rng.standard_normal((3, 2, 7, 7)), np.array([1, 0, 3])


def sequential_case(seed=0):
    rng = np.random.default_rng(seed)
    model = Sequential((1, 6, 6), [Conv(2, 3, pad="same"), BatchNorm(), ReLU(), MaxPool(2),
                                   Affine(5), ReLU(), Dropout(keep=0.6), Affine(3)],
                       weight_scale=0.5, dtype=np.float64, seed=seed, reg=0.2)
    for name in model.params:
        if name.endswith("_b"):
            model.params[name] = 0.1 * rng.standard_normal(model.params[name].shape)
    return model, rng.standard_normal((4, 1, 6, 6)), np.array([2, 0, 1, 1])


WORDS = {"<NULL>": 0, "<START>": 1, "<END>": 2, "a": 3, "cat": 4, "sat": 5}


def captioning_case(seed=None, cell_type="lstm", keep_prob=0.5):
    """CaptioningRNN: loss(features, captions); hidden dropout whose masks, with seed
    None, come from np.random's global state."""
    np.random.seed(0)
    model = CaptioningRNN(WORDS, input_dim=4, wordvec_dim=3, hidden_dim=5, cell_type=cell_type,
                          dtype=np.float64, seed=seed, keep_prob=keep_prob)
    rng = np.random.default_rng(1)
    captions = np.array([[1, 3, 4, 5, 2, 0], [1, 4, 2, 0, 0, 0]])
    return model, rng.standard_normal((2, 4)), captions


@pytest.mark.parametrize("case", [softmax_case, convnet_case, sequential_case,
                                  lambda: captioning_case(cell_type="rnn")],
                         ids=["softmax", "convnet", "sequential", "captioning_rnn"])
def test_correct_models_pass(case):
    model, X, y = case()
    errors = check_model_gradients(model, X, y)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < CORRECT, errors


def test_a_correct_lstm_passes_with_richardson_extrapolation():
    # Its forget-gate and recurrent entries are tiny (~1e-5), below what plain centered
    # differences resolve in relative terms (they show ~1e-6 here): the refined estimate
    # with a larger step does.
    model, X, y = captioning_case(cell_type="lstm")
    errors = check_model_gradients(model, X, y, h=1e-3, richardson=True)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < CORRECT, errors
    errors = check_model_gradients(BuggyWh(model), X, y, h=1e-3, richardson=True)
    assert errors["Wh"] > 1e-3 and max(v for k, v in errors.items() if k != "Wh") < CORRECT


class BuggyWh:
    """Wraps a model; the gradient of Wh misses its last column (a slicing bug)."""

    def __init__(self, model):
        self.model, self.params = model, model.params

    def loss(self, X, y=None):
        loss, grads = self.model.loss(X, y)
        dWh = grads["Wh"].copy()
        dWh[:, -1] = 0
        return loss, dict(grads, Wh=dWh)


class BuggyBias(SoftmaxClassifier):
    """b1's gradient is twice what it should be (say, an upstream gradient added twice)."""

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is None:
            return out
        loss, grads = out
        return loss, dict(grads, b1=2 * grads["b1"])


class ForgottenRegGradient(ConvNet):
    """The L2 penalty is in the loss of W2, but its gradient reg * W2 is left out."""

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is None:
            return out
        loss, grads = out
        return loss, dict(grads, W2=grads["W2"] - self.reg * self.params["W2"])


def test_a_planted_bug_is_reported_on_its_parameter():
    model, X, y = softmax_case()
    buggy = BuggyBias(input_dim=6, hidden_dim=5, num_classes=4, weight_scale=None, reg=0.1,
                      seed=0)
    buggy.params = model.params
    errors = check_model_gradients(buggy, X, y)
    assert errors["b1"] > 0.1
    assert max(v for k, v in errors.items() if k != "b1") < CORRECT

    model, X, y = convnet_case()
    buggy = ForgottenRegGradient(input_dim=(2, 7, 7), num_classes=4, num_filters=3,
                                 filter_size=3, hidden_dim=6, weight_scale=None,
                                 dtype=np.float64, reg=0.05, seed=0)
    buggy.params = model.params
    errors = check_model_gradients(buggy, X, y)
    assert errors["W2"] > 1e-3
    assert max(v for k, v in errors.items() if k != "W2") < CORRECT


def test_float32_models_are_refused_with_how_to_build_a_float64_one():
    model = ConvNet(input_dim=(1, 6, 6), num_filters=2, filter_size=3, hidden_dim=4)
    with pytest.raises(ValueError, match=r"needs a float64 model, but these parameters are not "
                                         r"float64: W1 \(float32\).*dtype=np\.float64"):
        check_model_gradients(model, np.zeros((1, 1, 6, 6)), np.array([0]))


def snapshot(model):
    return ({k: (v, v.copy()) for k, v in model.params.items()},
            {k: (v, v.copy()) for k, v in getattr(model, "state", {}).items()},
            getattr(model, "training_steps", None))


def assert_unchanged(model, before):
    params, state, steps = before
    assert set(model.params) == set(params)
    for k, (obj, value) in params.items():
        assert model.params[k] is obj
        np.testing.assert_array_equal(obj, value)
    for k, (obj, value) in state.items():
        np.testing.assert_array_equal(model.state[k], value)
    assert getattr(model, "training_steps", None) == steps


def test_the_model_and_np_random_are_left_exactly_as_they_were():
    model, X, y = sequential_case()
    model.training_steps = 7
    np.random.seed(5)
    before, random_before = snapshot(model), np.random.get_state()[1].copy()
    check_model_gradients(model, X, y, num_checks=3)
    assert_unchanged(model, before)
    np.testing.assert_array_equal(np.random.get_state()[1], random_before)


class FailsOnCall:
    """A float64 model whose loss raises on its k-th call (a perturbation in flight)."""

    def __init__(self, k):
        self.model, self.X, self.y = softmax_case()[0], None, None
        self.params, self.calls, self.k = self.model.params, 0, k

    def loss(self, X, y=None):
        self.calls += 1
        if self.calls == self.k:
            raise RuntimeError("boom")
        return self.model.loss(X, y)


def test_params_are_restored_after_an_error():
    model = FailsOnCall(k=4)
    _, X, y = softmax_case()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        check_model_gradients(model, X, y)
    assert_unchanged(model, before)


def test_num_checks_samples_entries_and_params_selects_parameters(capsys):
    model, X, y = convnet_case()
    calls = []
    loss = model.loss
    model.loss = lambda X, y=None: calls.append(1) or loss(X, y)
    errors = check_model_gradients(model, X, y, params=["W2", "b3"], num_checks=7, verbose=True)
    assert set(errors) == {"W2", "b3"} and max(errors.values()) < CORRECT
    # one analytic evaluation, then 2 per checked entry: 7 of W2, all 4 of b3
    assert len(calls) == 1 + 2 * (7 + 4)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("W2: max relative error") and "(7 of 72 entries)" in printed[0]
    assert "(4 of 4 entries)" in printed[1]


def test_frozen_unknown_and_bad_arguments_are_refused():
    model, X, y = sequential_case()
    model.freeze("conv1")
    errors = check_model_gradients(model, X, y, num_checks=2)
    assert "conv1_W" not in errors and "fc1_W" in errors
    with pytest.raises(ValueError, match=r"no gradient for conv1_W \(frozen\?\)"):
        check_model_gradients(model, X, y, params=["conv1_W"])
    with pytest.raises(ValueError, match=r"'fc9_W' not in model.params"):
        check_model_gradients(model, X, y, params="fc9_W")
    with pytest.raises(ValueError, match="h must be a positive number"):
        check_model_gradients(model, X, y, h=0)
    with pytest.raises(ValueError, match="num_checks must be a positive int or None"):
        check_model_gradients(model, X, y, num_checks=0)
