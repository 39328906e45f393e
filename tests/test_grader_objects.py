"""
Tests of the grader's objects and trusted layers (grader/runner.py, grader/child.py,
grader/trusted.py): a test builds a student's model in the sandboxed child, sets its
parameters and runs its loss through `Submission.method` / `.attribute`; with
`trusted=TRUSTED` the model runs on the grader's layer functions through callbacks, so a
wrong layers.py does not spoil the model. Hostile submissions forge callbacks, caches
and huge arguments: the grader stops or refuses them and goes on.

grader/trusted.py is also compared with our layers.py / rnn_layers.py, in values and
gradients.
"""
import contextlib
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

import autograder
from ours import copy_helpers
import layers
import rnn_layers
from grader import trusted
from grader.checks import GradedTest
from grader.runner import StudentError, Submission, Unavailable
from grader.sandbox import ChildLost, Limits, Sandbox, plan_isolation
from grader.trusted import TRUSTED

ROOT = Path(autograder.__file__).resolve().parent

# A homework-style ConvNet of a student: conv - relu - 2x2 max pool - fc - relu - fc -
# softmax, calling the layer functions of layers.py by name.
CNN = '''
import numpy as np
from layers import (conv_backward, conv_forward, fc_backward, fc_forward, max_pool_backward,
                    max_pool_forward, relu_backward, relu_forward, softmax_loss)


class ConvNet:
    def __init__(self, input_dim=(1, 28, 28), num_filters=32, filter_size=7, hidden_dim=100,
                 num_classes=10, weight_scale=1e-3, dtype=np.float32):
        C, H, W = input_dim
        rng = np.random.default_rng(0)
        flat = num_filters * ((H - filter_size + 1) // 2) * ((W - filter_size + 1) // 2)
        self.params = {
            'W1': weight_scale * rng.standard_normal((num_filters, C, filter_size, filter_size)),
            'W2': weight_scale * rng.standard_normal((flat, hidden_dim)),
            'b2': np.zeros(hidden_dim),
            'W3': weight_scale * rng.standard_normal((hidden_dim, num_classes)),
            'b3': np.zeros(num_classes),
        }
        self.params = {k: v.astype(dtype) for k, v in self.params.items()}

    def loss(self, X, y=None):
        p = self.params
        out, conv_cache = conv_forward(X, p['W1'])
        out, relu1_cache = relu_forward(out)
        out, pool_cache = max_pool_forward(out, {'pool_height': 2, 'pool_width': 2, 'stride': 2})
        out, fc2_cache = fc_forward(out, p['W2'], p['b2'])
        out, relu2_cache = relu_forward(out)
        scores, fc3_cache = fc_forward(out, p['W3'], p['b3'])
        if y is None:
            return scores
        loss, dout = softmax_loss(scores, y)
        grads = {}
        dout, grads['W3'], grads['b3'] = fc_backward(dout, fc3_cache)
        dout = relu_backward(dout, relu2_cache)
        dout, grads['W2'], grads['b2'] = fc_backward(dout, fc2_cache)
        dout = max_pool_backward(dout, pool_cache)
        dout = relu_backward(dout, relu1_cache)
        _, grads['W1'] = conv_backward(dout, conv_cache)
        return loss, grads
'''


def folder(directory, files, ours=('layers', 'softmax', 'rnn_layers', 'rnn', 'kernels')):
    """A student's folder: copies of our modules `ours` (rnn.py trains its LSTM with
    kernels.py's), then `files` {name: source}."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for module in ours:
        shutil.copy(ROOT / f'{module}.py', directory / f'{module}.py')
    copy_helpers(directory)
    for name, source in files.items():
        (directory / f'{name}.py').write_text(textwrap.dedent(source))
    return str(directory)


@contextlib.contextmanager
def submission_of(directory, limits=None):
    """The Submission of a folder, as autograder.grade sets it up, inside a test."""
    limits = limits or Limits(time_per_test=30, budget=300)
    present = sorted(p.stem for p in Path(directory).glob('*.py'))
    with Sandbox(directory, limits, plan_isolation(), [str(ROOT), directory]) as box:
        submission = Submission(box, present, limits)
        submission.start()
        submission.begin_test()
        yield submission
        submission.end_test()


def broken_layers(old, new, module='layers'):
    """Our layers.py (or `module`.py) with `old` replaced by `new` (a student's bug)."""
    source = (ROOT / f'{module}.py').read_text()
    assert old in source, f"{module}.py no longer holds {old!r}: update this test's bug"
    return source.replace(old, new)


WRONG_FC = broken_layers('out = x.reshape(N, D) @ w + b', 'out = x.reshape(N, D) @ w + 2 * b')


def softmax_model(sub, **view):
    """A SoftmaxClassifier of the submission with W1 and b1 set by the test."""
    model = sub.function('softmax', 'SoftmaxClassifier', **view)(
        input_dim=6, hidden_dim=5, num_classes=3, weight_scale=0.5, seed=1)
    params = sub.attribute(model, 'params')
    sub.method(params, '__setitem__', 'W1', np.linspace(-1, 1, 30).reshape(6, 5))
    sub.method(params, '__setitem__', 'b1', np.linspace(0.1, 0.5, 5))
    return model, params


def our_softmax_model(params):
    import softmax
    model = softmax.SoftmaxClassifier(input_dim=6, hidden_dim=5, num_classes=3)
    model.params = {k: np.array(v) for k, v in params.items()}
    model.params['W1'] = np.linspace(-1, 1, 30).reshape(6, 5)
    model.params['b1'] = np.linspace(0.1, 0.5, 5)
    return model


def softmax_data():
    rng = np.random.default_rng(3)
    return rng.standard_normal((4, 2, 3)), np.array([0, 2, 1, 2])


def expect_same_loss(got, expected):
    loss, grads = got
    assert np.isclose(loss, expected[0], rtol=1e-10, atol=0)
    assert grads.keys() == expected[1].keys()
    for name in grads:
        np.testing.assert_allclose(grads[name], expected[1][name], rtol=1e-8, atol=1e-12)


# ------------------------------------------------------------------ objects and methods

def test_a_model_is_built_read_changed_and_run_in_the_child(tmp_path):
    with submission_of(folder(tmp_path / 's', {})) as sub:
        model, params = softmax_model(sub)
        assert repr(model) == '<SoftmaxClassifier object>'
        assert {k: v.shape for k, v in params.items()} == {
            'W1': (6, 5), 'b1': (5,), 'W2': (5, 3), 'b2': (3,)}
        np.testing.assert_array_equal(sub.attribute(model, 'params')['b1'], np.linspace(0.1, 0.5, 5))
        X, y = softmax_data()
        expected = our_softmax_model(params).loss(X, y)
        expect_same_loss(sub.method(model, 'loss', X, y), expected)
        np.testing.assert_allclose(sub.method(model, 'loss', X), our_softmax_model(params).loss(X))
        assert [c.name for c in sub.calls] == [
            'SoftmaxClassifier', 'dict.__setitem__', 'dict.__setitem__',
            'SoftmaxClassifier.loss', 'SoftmaxClassifier.loss']
        assert sub.argument_changes() == []


def test_remote_objects_wrap_methods_and_attributes_and_pass_objects_back(tmp_path):
    source = '''
        class Counter:
            def __init__(self, start):
                self.items = {'count': start}

            def add(self, other=None, name=None):
                return self.items['count'] + other.items['count']
    '''
    with submission_of(folder(tmp_path / 's', {'counter': source}, ours=())) as sub:
        make = sub.function('counter', 'Counter')
        one, two = make.new(1), make.new(2)
        assert one.get('items') == {'count': 1}
        one.set_item('items', 'count', 5)
        assert one.call('add', two.value) == 7
        assert sub.method(one.value, 'add', other=two.value, name='n') == 7   # 'name' is free
        assert sub.argument_changes() == []   # an object passed back is not "modified"


def test_missing_methods_and_attributes_are_unavailable_and_student_errors_are_reported(tmp_path):
    with submission_of(folder(tmp_path / 's', {})) as sub:
        model, _ = softmax_model(sub)
        with pytest.raises(Unavailable, match=r'softmax.py: SoftmaxClassifier has no method predict'):
            sub.method(model, 'predict', np.zeros((1, 6)))
        with pytest.raises(Unavailable, match=r'softmax.py: SoftmaxClassifier has no attribute grads'):
            sub.attribute(model, 'grads')
        with pytest.raises(StudentError) as error:
            sub.method(model, 'loss', np.zeros((2, 7)), np.array([0, 1]))
        assert error.value.function == 'SoftmaxClassifier.loss' and error.value.value_error
        assert error.value.where.startswith('layers.py:')
        with pytest.raises(TypeError, match='not a value the submission returned'):
            sub.method({'W1': 1}, '__setitem__', 'W1', 2)


def test_a_method_that_changes_its_arguments_is_caught_by_the_mutation_check(tmp_path):
    source = '''
        class Model:
            def loss(self, X):
                X *= 2
                return float(X.sum())
    '''
    with submission_of(folder(tmp_path / 's', {'model': source}, ours=())) as sub:
        model = sub.function('model', 'Model')()
        assert sub.method(model, 'loss', np.ones(3)) == 6.0
        changes = sub.argument_changes()
        assert [(call.name, where) for call, where, _, _ in changes] == [('Model.loss', 0)]


# ------------------------------------------------------------------ trusted layers

def test_the_trusted_view_runs_the_model_on_correct_layers_despite_a_wrong_fc_forward(tmp_path):
    with submission_of(folder(tmp_path / 's', {'layers': WRONG_FC})) as sub:
        X, y = softmax_data()
        model, params = softmax_model(sub)
        expected = our_softmax_model(params).loss(X, y)
        loss, _ = sub.method(model, 'loss', X, y)
        assert not np.isclose(loss, expected[0])          # the student's own fc_forward
        model, params = softmax_model(sub, trusted=TRUSTED)
        expect_same_loss(sub.method(model, 'loss', X, y), expected)
        # the normal view is untouched by the trusted one
        assert not np.isclose(sub.method(softmax_model(sub)[0], 'loss', X, y)[0], expected[0])


@pytest.mark.parametrize('layers_source', [None, 'raise ImportError("unfinished")\n'])
def test_the_trusted_view_needs_no_working_layers_py(tmp_path, layers_source):
    files = {} if layers_source is None else {'layers': layers_source}
    with submission_of(folder(tmp_path / 's', files, ours=('softmax',))) as sub:
        with pytest.raises(Unavailable, match='softmax.py'):
            softmax_model(sub)
        X, y = softmax_data()
        model, params = softmax_model(sub, trusted=TRUSTED)
        expect_same_loss(sub.method(model, 'loss', X, y), our_softmax_model(params).loss(X, y))


def test_the_time_of_the_trusted_functions_is_charged_to_the_submission(tmp_path):
    import time

    def slow_relu(x):
        time.sleep(1.5)
        return trusted.relu_forward(x)

    source = '''
        import layers


        class Model:
            def run(self, x):
                return layers.relu_forward(x)
    '''
    limits = Limits(time_per_test=1.0, budget=300)
    directory = folder(tmp_path / 's', {'model': source}, ours=())
    with submission_of(directory, limits) as sub:
        model = sub.function('model', 'Model', trusted={'layers': {'relu_forward': slow_relu}})()
        with pytest.raises(ChildLost, match='time limit of 1 s per test exceeded'):
            sub.method(model, 'run', np.ones(2))
        assert sub.budget_left < 300 - 1.4


def test_a_convnet_runs_every_trusted_layer_function_and_matches_ours(tmp_path):
    wrong = broken_layers('return dout * (x > 0)', 'return dout * (x >= 0) + 0.1')
    with submission_of(folder(tmp_path / 's', {'layers': wrong, 'cnn': CNN})) as sub:
        model = sub.function('cnn', 'ConvNet', trusted=TRUSTED)(
            input_dim=(2, 9, 7), num_filters=3, filter_size=3, hidden_dim=6, num_classes=4,
            weight_scale=0.3, dtype=np.float64)
        params = sub.attribute(model, 'params')
        rng = np.random.default_rng(5)
        X, y = rng.standard_normal((3, 2, 9, 7)), np.array([0, 3, 1])
        ours = {}
        exec(textwrap.dedent(CNN), ours)   # the same model on our layers.py, here
        reference = ours['ConvNet'].__new__(ours['ConvNet'])
        reference.params = params
        expect_same_loss(sub.method(model, 'loss', X, y), reference.loss(X, y))
        np.testing.assert_allclose(sub.method(model, 'loss', X), reference.loss(X), rtol=1e-10)
        wrong_model = sub.function('cnn', 'ConvNet')(
            input_dim=(2, 9, 7), num_filters=3, filter_size=3, hidden_dim=6, num_classes=4,
            weight_scale=0.3, dtype=np.float64)
        grads = sub.method(wrong_model, 'loss', X, y)[1]
        assert not np.allclose(grads['W1'], reference.loss(X, y)[1]['W1'])


def test_a_captioning_rnn_runs_on_the_trusted_rnn_layers(tmp_path):
    wrong = broken_layers('out = (x.reshape(N * T, D) @ w + b).reshape(N, T, w.shape[1])',
                          'out = (x.reshape(N * T, D) @ w).reshape(N, T, w.shape[1])', 'rnn_layers')
    import rnn
    word_to_idx = {'<NULL>': 0, '<START>': 1, '<END>': 2, 'a': 3, 'b': 4}
    arguments = dict(input_dim=5, wordvec_dim=4, hidden_dim=3, dtype=np.float64)
    rng = np.random.default_rng(7)
    features = rng.standard_normal((2, 5))
    captions = np.array([[1, 3, 4, 2, 0], [1, 4, 2, 0, 0]])
    with submission_of(folder(tmp_path / 's', {'rnn_layers': wrong})) as sub:
        for view, right in (({}, False), ({'trusted': TRUSTED}, True)):
            model = sub.function('rnn', 'CaptioningRNN', **view)(word_to_idx, **arguments)
            params = sub.attribute(model, 'params')
            sub.method(params, '__setitem__', 'b_vocab', np.linspace(-1, 1, 5))
            reference = rnn.CaptioningRNN(word_to_idx, **arguments)
            reference.params = dict(params, b_vocab=np.linspace(-1, 1, 5))
            loss, grads = sub.method(model, 'loss', features, captions)
            assert np.isclose(loss, reference.loss(features, captions)[0], rtol=1e-10) == right


# ------------------------------------------------------------------ hostile submissions

FORGE = '''
import json, struct, sys


def forge(module='layers', function='fc_forward'):
    """Write a callback message onto the grader's reply pipe, as the child's own would be."""
    header = json.dumps({'op': 'callback', 'module': module, 'function': function,
                         'args': {'tuple': []}, 'kwargs': {'dict': []}}).encode()
    body = struct.pack('<QI', len(header), 0) + header
    fd = json.loads(sys.argv[1])['replies_fd']
    os_write = __import__('os').write
    os_write(fd, struct.pack('<Q', len(body)) + body)
'''


def test_a_forged_callback_during_a_plain_call_stops_the_child_and_grading_goes_on(tmp_path):
    source = FORGE + '''
def relu_forward(x):
    forge()
    return x, x


def fc_forward(x, w, b):
    return x @ w + b, (x, w, b)
'''
    directory = folder(tmp_path / 's', {'layers': source}, ours=())

    def forging(relu_forward):
        relu_forward(np.ones(3))

    def honest(fc_forward):
        out, _ = fc_forward(np.ones((1, 2)), np.ones((2, 2)), np.zeros(2))
        np.testing.assert_array_equal(out, [[2.0, 2.0]])

    with submission_of(directory) as sub:
        pid = sub.child.process.pid
        first = autograder.run_test(GradedTest('forging', 'layers', ('relu_forward',), 1, forging), sub, 1)
        second = autograder.run_test(GradedTest('honest', 'layers', ('fc_forward',), 1, honest), sub, 1)
        assert first.status == 'failed'
        assert "broke the grader's protocol" in first.output and "op 'callback'" in first.output
        assert second.status == 'passed', second.output
        assert sub.child.process.pid != pid


def test_a_callback_to_a_function_the_view_does_not_trust_stops_the_child(tmp_path):
    source = FORGE + '''
class Model:
    def loss(self):
        forge('layers', 'conv2d_forward')
'''
    with submission_of(folder(tmp_path / 's', {'model': source}, ours=('layers',))) as sub:
        model = sub.function('model', 'Model', trusted=TRUSTED)()
        with pytest.raises(ChildLost, match='conv2d_forward, which is not a trusted function'):
            sub.method(model, 'loss')
        assert not sub.child.alive()


def test_a_forged_cache_gets_a_value_error_in_the_child_and_the_grader_goes_on(tmp_path):
    source = '''
import numpy as np
import layers


class Model:
    def forged(self):
        dout = np.ones((2, 3))
        problems = []
        for cache in ((np.ones((2, 4)), np.ones((4, 3))),              # an entry missing
                      (np.ones((2, 4)), np.ones((5, 3)), np.ones(3)),  # x and w do not fit
                      (np.ones((2, 4)), np.ones((4, 3)), 'b'),         # not an array
                      'cache'):
            try:
                layers.fc_backward(dout, cache)
            except ValueError as e:
                problems.append(str(e))
        return problems

    def uncaught(self):
        return layers.max_pool_backward(np.ones((1, 1, 1, 1)), (np.ones((1, 1, 2, 2)), {'stride': 2}))
'''
    with submission_of(folder(tmp_path / 's', {'model': source}, ours=('layers',))) as sub:
        model = sub.function('model', 'Model', trusted=TRUSTED)()
        problems = sub.method(model, 'forged')
        assert len(problems) == 4
        assert all(p.startswith('trusted layers.fc_backward: ') for p in problems)
        assert 'cache must be the tuple (x, w, b)' in problems[0]
        assert 'flattens to D=4' in problems[1]
        assert 'b must be an array' in problems[2]
        with pytest.raises(StudentError, match=r'Model.uncaught raised ValueError: trusted '
                                               r'layers.max_pool_backward: pool_param must be a dict'):
            sub.method(model, 'uncaught')
        assert sub.child.alive()
        assert len(sub.method(model, 'forged')) == 4


def test_a_huge_argument_is_refused_without_the_grader_computing_it(tmp_path):
    source = '''
import numpy as np
import layers


class Model:
    def huge(self):
        try:
            layers.relu_forward(np.zeros(5_000_000))
        except ValueError as e:
            return str(e)

    def small(self):
        return layers.relu_forward(np.array([-1.0, 2.0]))[0]
'''
    ran = []

    def spy(x):
        ran.append(np.shape(x))
        return trusted.relu_forward(x)

    table = {'layers': dict(TRUSTED['layers'], relu_forward=spy)}
    with submission_of(folder(tmp_path / 's', {'model': source}, ours=('layers',))) as sub:
        model = sub.function('model', 'Model', trusted=table)()
        message = sub.method(model, 'huge')
        assert message.startswith('trusted layers.relu_forward: refused') and '5000000' in message
        assert ran == []
        np.testing.assert_array_equal(sub.method(model, 'small'), [0.0, 2.0])
        assert ran == [(2,)]


def test_a_trusted_function_that_raises_becomes_an_error_in_the_child(tmp_path):
    source = '''
import layers


class Model:
    def run(self):
        return layers.fc_forward(1, 2, 3)
'''

    def crashing(*args):
        raise RuntimeError('boom')

    with submission_of(folder(tmp_path / 's', {'model': source}, ours=())) as sub:
        model = sub.function('model', 'Model', trusted={'layers': {'fc_forward': crashing}})()
        with pytest.raises(StudentError, match='trusted layers.fc_forward: RuntimeError: boom'):
            sub.method(model, 'run')
        assert sub.child.alive()


# ------------------------------------------------------------------ grader/trusted.py

def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)), initial=0)


def same_values(got, expected):
    if isinstance(expected, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(expected)
        for g, e in zip(got, expected):
            same_values(g, e)
    elif isinstance(expected, dict):
        assert got == expected
    else:
        assert np.shape(got) == np.shape(expected)
        assert rel(got, expected) < 1e-12


def check_pair(forward, backward, ours_forward, ours_backward, *inputs, seed=0):
    out, cache = getattr(trusted, forward)(*inputs)
    our_out, our_cache = ours_forward(*inputs)
    same_values(out, our_out)
    assert isinstance(cache, (tuple, np.ndarray))   # relu's cache is x itself
    dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    same_values(getattr(trusted, backward)(dout, cache), ours_backward(dout, our_cache))


@pytest.mark.parametrize('x_shape, w_shape', [((1, 4), (4, 1)), ((3, 2, 5), (10, 4)),
                                              ((2, 1, 3, 2), (6, 7))])
def test_trusted_fc_equals_ours(x_shape, w_shape):
    rng = np.random.default_rng(1)
    inputs = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[1])
    check_pair('fc_forward', 'fc_backward', layers.fc_forward, layers.fc_backward, *inputs)


@pytest.mark.parametrize('shape', [(1,), (3, 4), (2, 3, 4, 5)])
def test_trusted_relu_equals_ours(shape):
    x = np.random.default_rng(2).standard_normal(shape)
    check_pair('relu_forward', 'relu_backward', layers.relu_forward, layers.relu_backward, x)


@pytest.mark.parametrize('x_shape, w_shape', [((1, 1, 3, 3), (1, 1, 3, 3)), ((2, 3, 7, 5), (4, 3, 3, 2)),
                                              ((3, 2, 6, 6), (1, 2, 1, 4))])
def test_trusted_conv_equals_ours(x_shape, w_shape):
    rng = np.random.default_rng(3)
    check_pair('conv_forward', 'conv_backward', layers.conv_forward, layers.conv_backward,
               rng.standard_normal(x_shape), rng.standard_normal(w_shape))


@pytest.mark.parametrize('x_shape, pool', [((1, 1, 2, 2), (2, 2, 2)), ((2, 3, 8, 6), (2, 2, 2)),
                                           ((2, 2, 7, 6), (3, 2, 1)), ((1, 3, 5, 5), (2, 3, 2))])
def test_trusted_max_pool_equals_ours_with_ties_and_overlaps(x_shape, pool):
    rng = np.random.default_rng(4)
    x = np.round(rng.standard_normal(x_shape))   # many ties
    pool_param = dict(zip(('pool_height', 'pool_width', 'stride'), pool))
    check_pair('max_pool_forward', 'max_pool_backward', layers.max_pool_forward,
               layers.max_pool_backward, x, pool_param)


@pytest.mark.parametrize('N, C', [(1, 1), (1, 4), (5, 3)])
def test_trusted_softmax_loss_equals_ours(N, C):
    rng = np.random.default_rng(5)
    x, y = 10 * rng.standard_normal((N, C)), rng.integers(0, C, N)
    same_values(trusted.softmax_loss(x, y), layers.softmax_loss(x, y))


@pytest.mark.parametrize('N, D, H', [(1, 1, 1), (3, 4, 5), (2, 6, 3)])
def test_trusted_rnn_step_equals_ours(N, D, H):
    rng = np.random.default_rng(6)
    inputs = (rng.standard_normal((N, D)), rng.standard_normal((N, H)), rng.standard_normal((D, H)),
              rng.standard_normal((H, H)), rng.standard_normal(H))
    check_pair('rnn_step_forward', 'rnn_step_backward', rnn_layers.rnn_step_forward,
               rnn_layers.rnn_step_backward, *inputs)


@pytest.mark.parametrize('T, N, D, H', [(1, 1, 1, 1), (4, 3, 2, 5), (3, 2, 5, 3)])
def test_trusted_rnn_equals_ours(T, N, D, H):
    rng = np.random.default_rng(7)
    inputs = (rng.standard_normal((T, N, D)), rng.standard_normal((N, H)), rng.standard_normal((D, H)),
              rng.standard_normal((H, H)), rng.standard_normal(H))
    check_pair('rnn_forward', 'rnn_backward', rnn_layers.rnn_forward, rnn_layers.rnn_backward, *inputs)


@pytest.mark.parametrize('N, T, V, D', [(1, 1, 1, 1), (2, 5, 4, 3), (3, 2, 6, 4)])
def test_trusted_word_embedding_equals_ours(N, T, V, D):
    rng = np.random.default_rng(8)
    x, W = rng.integers(0, V, (N, T)), rng.standard_normal((V, D))
    out, cache = trusted.word_embedding_forward(x, W)
    our_out, our_cache = rnn_layers.word_embedding_forward(x, W)
    same_values(out, our_out)
    dout = rng.standard_normal(out.shape)
    same_values(trusted.word_embedding_backward(dout, cache),
                rnn_layers.word_embedding_backward(dout, our_cache))


@pytest.mark.parametrize('N, T, D, M', [(1, 1, 1, 1), (2, 3, 4, 5), (4, 2, 3, 1)])
def test_trusted_temporal_fc_equals_ours(N, T, D, M):
    rng = np.random.default_rng(9)
    inputs = rng.standard_normal((N, T, D)), rng.standard_normal((D, M)), rng.standard_normal(M)
    check_pair('temporal_fc_forward', 'temporal_fc_backward', rnn_layers.temporal_fc_forward,
               rnn_layers.temporal_fc_backward, *inputs)
    assert len(trusted.temporal_fc_forward(*inputs)[1]) == 4


@pytest.mark.parametrize('N, T, V', [(1, 1, 2), (3, 4, 5), (2, 6, 3)])
def test_trusted_temporal_softmax_loss_equals_ours(N, T, V):
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((N, T, V)), rng.integers(0, V, (N, T))
    mask = rng.random((N, T)) < 0.7
    same_values(trusted.temporal_softmax_loss(x, y, mask), rnn_layers.temporal_softmax_loss(x, y, mask))


def test_trusted_gradients_equal_numeric_gradients():
    """The backward passes are the gradients of the forwards (a check independent of ours)."""
    from gradient_check import eval_numerical_gradient_array as numeric
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 2, 3))
    out, cache = trusted.conv_forward(x, w)
    dout = rng.standard_normal(out.shape)
    dx, dw = trusted.conv_backward(dout, cache)
    assert rel(dx, numeric(lambda v: trusted.conv_forward(v, w)[0], x.copy(), dout)) < 1e-7
    assert rel(dw, numeric(lambda v: trusted.conv_forward(x, v)[0], w.copy(), dout)) < 1e-7
    x, h0 = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 3))
    Wx, Wh, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 3)), rng.standard_normal(3)
    h, cache = trusted.rnn_forward(x, h0, Wx, Wh, b)
    dh = rng.standard_normal(h.shape)
    dx, dh0, dWx, dWh, db = trusted.rnn_backward(dh, cache)
    assert rel(dWh, numeric(lambda v: trusted.rnn_forward(x, h0, Wx, v, b)[0], Wh.copy(), dh)) < 1e-7
    assert rel(dh0, numeric(lambda v: trusted.rnn_forward(x, v, Wx, Wh, b)[0], h0.copy(), dh)) < 1e-7


def test_trusted_functions_keep_float32():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    w = rng.standard_normal((2, 1, 2, 2)).astype(np.float32)
    out, cache = trusted.conv_forward(x, w)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in trusted.conv_backward(np.ones_like(out), cache))
    fc_out, _ = trusted.fc_forward(x, np.ones((16, 3), np.float32), np.zeros(3, np.float32))
    assert fc_out.dtype == np.float32


ones = np.ones
POOL = {'pool_height': 2, 'pool_width': 2, 'stride': 0}


@pytest.mark.parametrize('function, args, message', [
    ('fc_backward', (ones((2, 3)), (ones((2, 4)), ones((4, 3)))), 'cache must be the tuple'),
    ('relu_backward', (ones(3), ones(4)), 'dout has shape'),
    ('conv_backward', (ones((1, 1, 2, 2)), (ones((1, 2, 3, 3)), ones((1, 1, 2, 2)))), 'channels'),
    ('max_pool_backward', (ones((1, 1, 1, 1)), (ones((1, 1, 2, 2)), POOL)), 'positive integers'),
    ('softmax_loss', (ones((2, 3)), np.array([0, 3])), 'labels in'),
    ('softmax_loss', (ones((2, 3)), np.array([0.0, 1.0])), 'integer'),
    ('rnn_step_backward', (ones((2, 3)), (ones((4, 3)), ones((3, 3)), ones((2, 4)), ones((2, 3)),
                                          ones((2, 2)))), 'h_raw has shape'),
    ('rnn_backward', (ones((1, 1, 1)), (ones((1, 1, 1)), ones((1, 1)), ones((1, 1)), ones((1, 1)),
                                        ones(1), 5 * ones((1, 1, 1)))), 'outside'),
    ('word_embedding_backward', (ones((1, 1, 2)), (np.array([[7]]), ones((3, 2)))), 'word indices in'),
    ('temporal_fc_backward', (ones((1, 1, 2)), (ones((1, 1, 3)), ones((3, 2)), ones(2),
                                                 ones((1, 1, 4)))), 'out has shape'),
    ('temporal_softmax_loss', (ones((1, 2, 3)), np.zeros((1, 2), int), np.array([[0.5, 1]])),
     'mask must be boolean'),
    ('fc_forward', (ones((2, 2), dtype=complex), ones((2, 2)), ones(2)), 'real numbers'),
    ('conv_forward', (ones((1, 1, 1000, 1000)), ones((300, 1, 5, 5))), 'more than the'),
])
def test_trusted_functions_refuse_what_their_forward_could_not_have_produced(function, args, message):
    with pytest.raises(ValueError, match=message):
        getattr(trusted, function)(*args)


def test_trusted_table_holds_the_homework_functions():
    contract = autograder.CONTRACT_FUNCTIONS
    assert set(TRUSTED['layers']) | set(TRUSTED['rnn_layers']) == contract
    assert all(callable(f) for table in TRUSTED.values() for f in table.values())
    assert set(TRUSTED['layers']) <= set(dir(layers)) and set(TRUSTED['rnn_layers']) <= set(dir(rnn_layers))
    source = (ROOT / 'grader' / 'trusted.py').read_text()
    assert [line for line in source.splitlines() if line.startswith(('import ', 'from '))] == [
        'import numpy as np', 'from numpy.lib.stride_tricks import sliding_window_view']
    assert os.path.dirname(trusted.__file__) == str(ROOT / 'grader')
