"""
Tests of the grader's diagnostic probes (grader/probes.py and their use in
grader/suite_cnn_rnn.py and the handout's checker): for every probe a student of our own
with that mistake gets its hint; a correct submission never gets one (and no probe runs
on it); a confounded failure gets no factor hint; hints follow the assignment's setting.

Students are the course student of tests/course_student/ with one mistake, made by the
same checked text substitution as tests/test_assignment_students.py.
"""
import dataclasses
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import autograder
from grader import assignments, probes, release
from test_assignment_students import BUGS, Bug, copy_course_student, grade, substitute

ROOT = os.path.dirname(os.path.abspath(autograder.__file__))

# mistake -> (the test that must carry the hint, words of the hint)
EXPECTED = {
    'softmax_loss_no_max_shift': ('softmax_loss_large_scores', "subtract each row's maximum"),
    'temporal_softmax_loss_no_max_shift': ('temporal_softmax_loss_large_scores',
                                           "subtract each row's maximum"),
    'max_pool_forward_reshape_for_transpose': ('max_pool_forward', 'reshaped where they should be transposed'),
    'fc_forward_squeeze': ('fc_forward', 'wrong only for a batch of one'),
    'conv_backward_pad_swapped': ('conv_backward', 'right for square kernels'),
    'convnet_init_hard_coded_size': ('convnet_init', 'right for the default sizes only'),
    'captioning_sample_start_in_column_0': ('captioning_rnn_sample', 'one column late'),
}

MORE = {
    # the output's height computed from W: right only for square inputs
    'conv_forward_height_from_width': (Bug(
        'layers.py', 'conv_forward', "H_out = H - HH + 1", "H_out = W - HH + 1",
        prefix='conv_forward'), 'conv_forward', 'right for square inputs'),
    # pool_width read from pool_height: right only for square windows
    'max_pool_forward_width_from_height': (Bug(
        'layers.py', 'max_pool_forward', "pw = pool_param['pool_width']",
        "pw = pool_param['pool_height']", prefix='max_pool_forward'),
        'max_pool_forward', 'right for square pooling windows'),
    # overlapping windows overwrite each other's gradient
    'max_pool_backward_overwrites': (Bug(
        'layers.py', 'max_pool_backward',
        "dx[n_idx, c_idx, i * stride + a, j * stride + b] += dout[:, :, i, j]",
        "dx[n_idx, c_idx, i * stride + a, j * stride + b] = dout[:, :, i, j]",
        prefix='max_pool_backward'), 'max_pool_backward', 'overwrite each other'),
    # the loss summed, not averaged: N times too large, right for one sample
    'softmax_loss_not_averaged': (Bug(
        'layers.py', 'softmax_loss', "loss = -np.sum(log_probs[np.arange(N), y]) / N",
        "loss = -np.sum(log_probs[np.arange(N), y])", prefix='softmax_loss'),
        'softmax_loss', 'right for one sample'),
    # the gradient's sign flipped
    'softmax_loss_dx_sign': (Bug(
        'layers.py', 'softmax_loss', "dx /= N", "dx /= -N", prefix='softmax_loss'),
        'softmax_loss', 'opposite sign'),
    # the pool's output size rounded up: right only for even conv outputs
    'convnet_pool_size_rounded_up': (Bug(
        'cnn.py', 'ConvNet.__init__', "H_pool = (H_conv - 2) // 2 + 1", "H_pool = (H_conv + 1) // 2",
        prefix='convnet_'), 'convnet_init', 'output has even height and width'),
    # every step reads <START>: the chosen word is never fed back
    'sample_not_fed_back': (Bug(
        'rnn.py', 'CaptioningRNN.sample', "x, _ = word_embedding_forward(words, W_embed)",
        "x, _ = word_embedding_forward(self._start * np.ones(N, dtype=np.int32), W_embed)",
        prefix='captioning_rnn_sample'), 'captioning_rnn_sample', 'not fed back'),
}

CASES = {**{name: (BUGS[name], test, words) for name, (test, words) in EXPECTED.items()}, **MORE}


@pytest.fixture(scope='module')
def graded(tmp_path_factory):
    """Every student of CASES (and the correct one) graded once: {name: {test: output}}."""
    root = tmp_path_factory.mktemp('probes')
    outputs = {}
    for name, (bug, _, _) in list(CASES.items()) + [('correct', (None, None, None))]:
        folder = str(root / name)
        copy_course_student(folder)
        if bug is not None:
            substitute(folder, bug)
        results, _ = grade(folder, root / f'{name}.json')
        outputs[name] = {t['name']: t['output'] for t in results['tests'] if t['status'] != 'passed'}
    return outputs


@pytest.mark.parametrize('name', sorted(CASES))
def test_a_student_with_a_mistake_gets_its_hint(graded, name):
    bug, test, words = CASES[name]
    output = graded[name].get(test)
    assert output is not None, f"{name}: {test} passed ({sorted(graded[name])} failed)"
    assert 'Hint: ' in output and words in output, output
    assert '  evidence: ' in output
    # a hint says what is likely, never that it is certain
    hint_lines = [line for line in output.splitlines() if line.startswith('Hint: ')]
    assert all('probably' in line for line in hint_lines), hint_lines


def test_a_correct_submission_gets_no_hint(graded):
    assert graded['correct'] == {}


def test_no_probe_runs_on_passing_functions(monkeypatch, tmp_path):
    # graded in this process: a probe that ran would raise, and its test would fail
    def no_probes(*args, **kwargs):
        raise AssertionError("a probe ran")
    monkeypatch.setattr(probes, 'diagnose', no_probes)
    folder = str(tmp_path / 'correct')
    copy_course_student(folder)
    grading = autograder.grade(folder, assignment='cnn-rnn')
    assert grading.score == grading.max_score == 67, [r.output for r in grading.results if r.score < r.max_score]


def test_hints_follow_the_assignments_setting(tmp_path):
    folder = str(tmp_path / 'squeeze')
    copy_course_student(folder)
    substitute(folder, BUGS['fc_forward_squeeze'])
    cnn_rnn = assignments.get('cnn-rnn')
    for setting, public, hinted in [('all', (), True), ('public', ('fc_forward',), True),
                                    ('public', (), False), ('none', ('fc_forward',), False)]:
        assignment = dataclasses.replace(cnn_rnn, hints=setting, public=public)
        grading = autograder.grade(folder, assignment=assignment, only=['fc_forward'])
        output = next(r.output for r in grading.results if r.name == 'fc_forward')
        assert ('Hint: ' in output) == hinted, (setting, public, output)
        assert 'shape (4,), expected (1, 4)' in output   # the failure itself is always said


def test_the_handout_checker_gives_the_same_hints(tmp_path):
    out = tmp_path / 'release'
    release.release('cnn-rnn', str(out))
    handout = tmp_path / 'handout'
    shutil.copytree(out / 'student', handout)
    for name in os.listdir(os.path.join(ROOT, 'tests', 'course_student')):
        shutil.copyfile(os.path.join(ROOT, 'tests', 'course_student', name), handout / name)
    substitute(str(handout), BUGS['fc_forward_squeeze'])
    substitute(str(handout), BUGS['softmax_loss_no_max_shift'])
    run = subprocess.run([sys.executable, 'autograder.py', 'fc_forward', 'softmax_loss'],
                         cwd=handout, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and 'Traceback' not in run.stdout + run.stderr
    assert 'wrong only for a batch of one' in run.stdout
    assert "subtract each row's maximum" in run.stdout


# ------------------------------------------------------------------ probes.diagnose itself

def probe(label, ok, **factors):
    return probes.Probe(label, {k.replace('_', ' '): v for k, v in factors.items()}, ok)


def test_one_separating_factor_is_named_and_confounded_ones_are_not():
    found = probes.diagnose([probe('base', True, **{'C = 1': False, 'N = 1': False}),
                             probe('C=1', True, **{'C = 1': True, 'N = 1': False}),
                             probe('N=1', False, **{'C = 1': False, 'N = 1': True})])
    assert len(found) == 1 and 'wrong only for a batch of one' in found[0]
    # the wrong case differs in two factors at once: neither can be named
    confounded = probes.diagnose([probe('a', True, **{'C = 1': True, 'N = 1': True}),
                                  probe('b', False, **{'C = 1': False, 'N = 1': False})])
    assert confounded == []
    # all right or all wrong: nothing separates
    assert probes.diagnose([probe('a', True, **{'N = 1': True})]) == []
    assert probes.diagnose([probe('a', False, **{'N = 1': True}),
                            probe('b', False, **{'N = 1': False})]) == []


@pytest.mark.parametrize('got, expected, words', [
    (np.array([1., np.nan]), np.array([1., 2.]), 'NaN in out'),
    (np.array([1., np.inf]), np.array([1., 2.]), 'inf in out'),
    (-np.arange(1., 7.).reshape(2, 3), np.arange(1., 7.).reshape(2, 3), 'opposite sign'),
    (4 * np.arange(1., 7.).reshape(2, 3), np.arange(1., 7.).reshape(2, 3), '4 times'),
    (np.arange(1., 7.).reshape(2, 3) / 3, np.arange(1., 7.).reshape(2, 3), '1/3 of'),
    (np.arange(9.).reshape(3, 3).T, np.arange(9.).reshape(3, 3), 'last two axes transposed'),
    (np.arange(12.).reshape(3, 2, 2).transpose(1, 0, 2).reshape(3, 2, 2) + 0,
     np.arange(12.).reshape(3, 2, 2), 'in the wrong places'),
    (np.zeros((2, 4, 3)), np.zeros((2, 3, 4)) + 1, 'height and width swapped'),
    (np.ones(4), np.ones((1, 4)), 'axis of size 1 was probably dropped'),
])
def test_transforms_of_the_expected_value_are_recognized(got, expected, words):
    found = probes.diagnose([probes.Probe('case', {}, False, 'out', got, expected)])
    assert len(found) == 1 and words in found[0], found


def test_captions_one_step_late_or_not_fed_back():
    expected = np.array([[5, 6, 7, 8], [7, 6, 5, 4]])
    late = np.array([[1, 5, 6, 7], [1, 7, 6, 5]])
    repeated = np.array([[5, 5, 5, 5], [7, 7, 7, 7]])
    assert 'one column late' in probes.diagnose([probes.Probe('c', {}, False, 'captions', late, expected)])[0]
    assert 'not fed back' in probes.diagnose([probes.Probe('c', {}, False, 'captions', repeated, expected)])[0]
    other = np.array([[9, 9, 1, 2], [3, 1, 2, 3]])
    assert probes.diagnose([probes.Probe('c', {}, False, 'captions', other, expected)]) == []


def test_an_unexplained_wrong_value_gets_no_hint():
    rng = np.random.default_rng(0)
    found = probes.diagnose([probes.Probe('case', {}, False, 'out', rng.standard_normal((3, 4)),
                                          rng.standard_normal((3, 4)))])
    assert found == []


def test_two_mistakes_get_the_first_hint_in_the_stated_order(tmp_path):
    # a reshape for a transpose and pool_width read from pool_height: the probes name the
    # first factor of FACTOR_HINTS that explains the failures (N = 1 or C = 1); once that is
    # fixed, the square-window hint names the second mistake
    folder = str(tmp_path / 'two')
    copy_course_student(folder)
    substitute(folder, BUGS['max_pool_forward_reshape_for_transpose'])
    substitute(folder, MORE['max_pool_forward_width_from_height'][0])
    results, _ = grade(folder, tmp_path / 'two.json')
    output = next(t['output'] for t in results['tests'] if t['name'] == 'max_pool_forward')
    assert 'reshaped where they should be transposed' in output, output
    order = [text for _, _, text in probes.FACTOR_HINTS]
    assert order.index(next(t for t in order if 'reshaped where they should be' in t)) < \
        order.index(next(t for t in order if 'square pooling windows' in t))
