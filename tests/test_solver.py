"""Tests for solver.py, with tiny models defined here (plain NumPy, own gradients)."""
import errno
import glob
import json
import os
import pickle
import sys

import numpy as np
import pytest

import checkpoint
import fileio
import solver as solver_module
from solver import NonFiniteLossError, Solver


class TwoLayerNet:
    """fc - relu - fc - softmax, params W1, b1, W2, b2."""

    def __init__(self, D=8, H=16, C=3, seed=0, std=0.3, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.params = {'W1': (std * rng.standard_normal((D, H))).astype(dtype),
                       'b1': np.zeros(H, dtype),
                       'W2': (std * rng.standard_normal((H, C))).astype(dtype),
                       'b2': np.zeros(C, dtype)}

    def loss(self, X, y=None):
        p = self.params
        h_pre = X @ p['W1'] + p['b1']
        h = np.maximum(h_pre, 0)
        scores = h @ p['W2'] + p['b2']
        if y is None:
            return scores
        N = len(X)
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -log_probs[np.arange(N), y].mean()
        dscores = np.exp(log_probs)
        dscores[np.arange(N), y] -= 1
        dscores /= N
        dh = dscores @ p['W2'].T
        dh[h_pre <= 0] = 0
        grads = {'W1': X.T @ dh, 'b1': dh.sum(axis=0),
                 'W2': h.T @ dscores, 'b2': dscores.sum(axis=0)}
        return loss, grads


class ThresholdModel:
    """One parameter t: predicts class 1 iff x > t. Every training step has gradient
    -1, so SGD with learning rate lr adds lr to t per iteration. Records the first
    column of every training batch (the tests put the sample index there)."""

    def __init__(self, nan_at=None):
        self.params = {'t': np.zeros(1)}
        self.batches = []
        self.nan_at = nan_at

    def loss(self, X, y=None):
        if y is None:
            return np.column_stack([np.zeros(len(X)), X[:, 0] - self.params['t'][0]])
        self.batches.append(X[:, 0].copy())
        loss = np.nan if len(self.batches) == self.nan_at else 1.0
        return loss, {'t': -np.ones(1)}


class NanAt:
    """Wraps a model; its k-th training loss (counted from 1) is nan."""

    def __init__(self, model, k):
        self.model, self.k, self.calls = model, k, 0
        self.params = model.params          # the same dict: updates reach the model

    def loss(self, X, y=None):
        if y is None:
            return self.model.loss(X)
        self.calls += 1
        loss, grads = self.model.loss(X, y)
        return (np.nan if self.calls == self.k else loss), grads


def make_data(N=60, N_val=30, D=8, C=3, seed=0):
    """Gaussian inputs labelled by a random linear map: learnable by TwoLayerNet."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((D, C))
    X = rng.standard_normal((N + N_val, D))
    y = np.argmax(X @ W, axis=1)
    return {'X_train': X[:N], 'y_train': y[:N], 'X_val': X[N:], 'y_val': y[N:]}


def index_data(N, N_val=4):
    """Data whose first column is the sample index, for ThresholdModel."""
    return {'X_train': np.arange(N, dtype=float)[:, None], 'y_train': np.zeros(N, int),
            'X_val': np.arange(N_val, dtype=float)[:, None] + 0.5,
            'y_val': np.zeros(N_val, int)}


def test_overfits_50_samples():
    data = make_data(N=50)
    model = TwoLayerNet(H=32)
    solver = Solver(model, data, update_rule='adam', optim_config={'learning_rate': 2e-2},
                    batch_size=10, num_epochs=40, num_train_samples=None, seed=0,
                    verbose=False)
    solver.train()
    assert solver.train_acc_history[-1] == 1.0
    assert np.mean(solver.loss_history[-5:]) < 0.1 * np.mean(solver.loss_history[:5])
    assert solver.best_val_acc == max(solver.val_acc_history)
    assert solver.check_accuracy(data['X_val'], data['y_val']) == solver.best_val_acc


def test_every_sample_once_per_epoch_with_partial_last_batch():
    model = ThresholdModel()
    solver = Solver(model, index_data(23), optim_config={'learning_rate': 0.0},
                    batch_size=5, num_epochs=3, seed=0, verbose=False)
    solver.train()
    assert solver.epoch == 3 and solver.iteration == 15
    assert len(solver.loss_history) == 15
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 3
    assert [len(b) for b in model.batches] == [5, 5, 5, 5, 3] * 3
    orders = [np.concatenate(model.batches[5 * e:5 * e + 5]).astype(int) for e in range(3)]
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(23))
    assert not np.array_equal(orders[0], orders[1])   # reshuffled each epoch


def test_lr_decay_applied_after_each_epoch():
    model = ThresholdModel()
    # 2 samples, batch 2: one iteration per epoch, gradient -1, so t grows by the lr.
    # The metric is t itself, to record t after every epoch.
    solver = Solver(model, index_data(2), optim_config={'learning_rate': 1.0},
                    lr_decay=0.5, batch_size=2, num_epochs=3, verbose=False,
                    metric=lambda model, X, y: float(model.params['t'][0]))
    solver.train()
    assert solver.val_acc_history == [1.0, 1.5, 1.75]
    assert solver.optim_configs['t']['learning_rate'] == 0.125


def test_best_params_restored_when_val_acc_peaks_early():
    model = ThresholdModel()
    data = index_data(1)
    data['X_val'] = np.array([[0.5], [1.5], [2.5], [3.5]])
    data['y_val'] = np.array([0, 0, 1, 1])
    # t = 1, 2, 3, 4, 5 after the epochs; only t = 2 separates the validation set.
    solver = Solver(model, data, optim_config={'learning_rate': 1.0}, batch_size=1,
                    num_epochs=5, verbose=False)
    solver.train()
    assert solver.val_acc_history == [0.75, 1.0, 0.75, 0.5, 0.5]
    assert solver.best_val_acc == 1.0
    np.testing.assert_array_equal(model.params['t'], [2.0])
    assert model.params['t'] is not solver.best_params['t']    # a copy


def test_grad_clip_scales_global_norm():
    model = ThresholdModel()
    solver = Solver(model, index_data(2), optim_config={'learning_rate': 1.0},
                    grad_clip=0.25, batch_size=1, num_epochs=1, verbose=False)
    solver.train()                      # two steps, each clipped from |g| = 1 to 0.25
    np.testing.assert_array_equal(solver.best_params['t'], [0.5])
    model = ThresholdModel()
    Solver(model, index_data(2), optim_config={'learning_rate': 1.0}, grad_clip=3.0,
           batch_size=1, num_epochs=1, verbose=False).train()
    np.testing.assert_array_equal(model.params['t'], [2.0])     # not clipped


def test_check_accuracy_batches_and_subsamples():
    model = ThresholdModel()
    model.params['t'][:] = 4.5
    solver = Solver(model, index_data(3), verbose=False, seed=0)
    X = np.arange(10, dtype=float)[:, None]
    y = (np.arange(10) > 2).astype(int)           # correct for x <= 2 and x >= 5
    assert solver.check_accuracy(X, y, batch_size=3) == 0.8
    assert solver.check_accuracy(X, y) == 0.8
    assert solver.check_accuracy(X, y, num_samples=10) == 0.8
    assert solver.check_accuracy(X, y, num_samples=5) in {0.4, 0.6, 0.8, 1.0}


def read_checkpoint(path):
    """A checkpoint read as plain data, with nothing of handgrad."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return arrays, json.loads(arrays.pop('checkpoint.json').tobytes())


def test_checkpoints_are_plain_npz_keep_latest_and_best(tmp_path):
    prefix = str(tmp_path / 'new_dir' / 'net')
    model = TwoLayerNet()
    solver = Solver(model, make_data(), update_rule='adam', batch_size=16, num_epochs=3,
                    seed=1, checkpoint_name=prefix, verbose=False)
    solver.train()
    best_epoch = int(np.argmax(solver.val_acc_history)) + 1
    names = sorted(os.listdir(tmp_path / 'new_dir'))      # no temporary files left
    assert names == sorted({f'net_epoch_{best_epoch}.npz', 'net_epoch_3.npz'})
    arrays, meta = read_checkpoint(prefix + '_epoch_3.npz')
    assert meta['format'] == checkpoint.CHECKPOINT_FORMAT
    assert meta['epoch'] == 3 and meta['iteration'] == 12
    assert meta['optim_configs']['W1']['t'] == 12
    assert meta['val_acc_history'] == solver.val_acc_history
    assert meta['best_val_acc'] == solver.best_val_acc
    assert meta['kwargs']['update_rule'] == 'optim.adam'
    for p in model.params:
        np.testing.assert_array_equal(arrays[f'best_params/{p}'], model.params[p])
    assert {'params/W1', 'optim/W1/m', 'optim/W1/v'} <= set(arrays)

    # checkpoint_keep=None keeps every epoch; 2 keeps the newest two (and the best)
    for keep, expected in ((None, {1, 2, 3}), (2, {2, 3, best_epoch})):
        other = str(tmp_path / f'keep{keep}' / 'net')
        Solver(TwoLayerNet(), make_data(), update_rule='adam', batch_size=16, num_epochs=3,
               seed=1, checkpoint_name=other, checkpoint_keep=keep, verbose=False).train()
        assert sorted(os.listdir(tmp_path / f'keep{keep}')) == sorted(
            f'net_epoch_{k}.npz' for k in expected)
    with pytest.raises(ValueError, match='checkpoint_keep'):
        Solver(TwoLayerNet(), make_data(), checkpoint_keep=0)


def test_failed_write_keeps_the_old_checkpoint_and_names_the_file(tmp_path, monkeypatch):
    solver = Solver(TwoLayerNet(), make_data(), batch_size=16, num_epochs=1, verbose=False)
    solver.train()
    path = str(tmp_path / 'manual.npz')
    solver.save_checkpoint(path)
    before = open(path, 'rb').read()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, 'fsync', disk_full)
    with pytest.raises(fileio.WriteError, match=r"cannot write .*manual\.npz: No space left"):
        solver.save_checkpoint(path)
    monkeypatch.undo()
    assert open(path, 'rb').read() == before
    assert os.listdir(tmp_path) == ['manual.npz']       # the temporary file was removed


def test_unwritable_checkpoint_folder_fails_before_the_first_epoch(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    solver = Solver(TwoLayerNet(), make_data(), batch_size=16, num_epochs=2, verbose=False,
                    checkpoint_name=str(blocker / 'net'))
    with pytest.raises(fileio.WriteError, match=r"cannot write files in .*file"):
        solver.train()
    assert solver.epoch == 0 and solver.loss_history == []


class RunsCode:
    """Unpickling this creates a file: what a crafted checkpoint would do."""
    marker = None

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_resume_refuses_pickles_and_foreign_files_without_running_them(tmp_path):
    data = make_data()
    solver = Solver(TwoLayerNet(), data, verbose=False)
    marker = tmp_path / 'code_ran'
    RunsCode.marker = str(marker)
    crafted = tmp_path / 'net_epoch_9.pkl'
    crafted.write_bytes(pickle.dumps({'params': RunsCode()}))
    with pytest.raises(checkpoint.CheckpointError, match=r"net_epoch_9\.pkl is a pickle"):
        solver.resume(str(crafted))
    assert not marker.exists()
    # a pickle named like a checkpoint is refused too
    disguised = tmp_path / 'net_epoch_9.npz'
    disguised.write_bytes(crafted.read_bytes())
    with pytest.raises(checkpoint.CheckpointError, match="is a pickle"):
        solver.resume(str(disguised))
    # an .npz with an object array (which only unpickling could load)
    objects = tmp_path / 'objects.npz'
    np.savez(objects, **{'checkpoint.json': np.array([RunsCode()], dtype=object)})
    with pytest.raises(checkpoint.CheckpointError, match="objects.npz is truncated or corrupt"):
        solver.resume(str(objects))
    assert not marker.exists()
    # other files, an archive without the metadata, a missing file, a truncated checkpoint
    text = tmp_path / 'notes.txt'
    text.write_text('hello')
    with pytest.raises(checkpoint.CheckpointError, match="notes.txt is not a handgrad checkpoint"):
        solver.resume(str(text))
    plain = tmp_path / 'params.npz'
    np.savez(plain, W1=np.zeros(3))
    with pytest.raises(checkpoint.CheckpointError, match="params.npz .* has no checkpoint.json"):
        solver.resume(str(plain))
    with pytest.raises(checkpoint.CheckpointError, match="cannot read checkpoint .*missing.npz"):
        solver.resume(str(tmp_path / 'missing.npz'))
    good = tmp_path / 'good.npz'
    solver.save_checkpoint(str(good))
    truncated = tmp_path / 'truncated.npz'
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated.npz is truncated or corrupt"):
        solver.resume(str(truncated))


def test_resume_latest_takes_the_newest_complete_checkpoint(tmp_path):
    data = make_data(N=50)
    kwargs = dict(update_rule='adam', batch_size=16, seed=7, verbose=False,
                  checkpoint_keep=None)
    prefix = str(tmp_path / 'run')
    Solver(TwoLayerNet(seed=0), data, num_epochs=3, checkpoint_name=prefix, **kwargs).train()
    # a killed write of epoch 4 left its temporary file; epoch 3's file got truncated
    leftover = tmp_path / '.run_epoch_4.npz.abc123.tmp'
    leftover.write_bytes(b'PK partial')
    newest = tmp_path / 'run_epoch_3.npz'
    newest.write_bytes(newest.read_bytes()[:100])
    solver = Solver(TwoLayerNet(seed=0), data, num_epochs=3, checkpoint_name=prefix, **kwargs)
    with pytest.warns(UserWarning, match=r"run_epoch_3\.npz is truncated or corrupt"):
        assert solver.resume_latest() == prefix + '_epoch_2.npz'
    assert solver.epoch == 2 and not leftover.exists()
    assert Solver(TwoLayerNet(), data, verbose=False).resume_latest() is None   # no name
    empty = Solver(TwoLayerNet(), data, verbose=False, checkpoint_name=str(tmp_path / 'x' / 'n'))
    assert empty.resume_latest() is None


def test_resume_is_bit_identical_to_uninterrupted_run(tmp_path):
    data = make_data(N=50)
    kwargs = dict(update_rule='adam', optim_config={'learning_rate': 1e-2}, lr_decay=0.9,
                  batch_size=16, num_train_samples=20, seed=7, verbose=False)
    full = TwoLayerNet(seed=0)
    full_solver = Solver(full, data, num_epochs=4, **kwargs)
    full_solver.train()

    prefix = str(tmp_path / 'run')
    Solver(TwoLayerNet(seed=0), data, num_epochs=2, checkpoint_name=prefix,
           **kwargs).train()
    resumed = TwoLayerNet(seed=99)                   # fresh, different initial weights
    resumed_solver = Solver(resumed, data, num_epochs=4, **kwargs)
    resumed_solver.resume(prefix + '_epoch_2.npz')
    assert resumed_solver.epoch == 2
    resumed_solver.train()

    for p in full.params:
        assert np.array_equal(full.params[p], resumed.params[p]), p
    assert full_solver.loss_history == resumed_solver.loss_history
    assert full_solver.val_acc_history == resumed_solver.val_acc_history
    assert full_solver.optim_configs['W2']['t'] == resumed_solver.optim_configs['W2']['t']
    np.testing.assert_array_equal(full_solver.optim_configs['W2']['m'],
                                  resumed_solver.optim_configs['W2']['m'])


def test_checkpoint_format_is_fixed_a_plain_numpy_file_resumes_identically(tmp_path):
    # The file format does not change with the code (checkpoints of earlier versions
    # load): a checkpoint rewritten with np.savez alone, under the format's literal
    # name, resumes exactly as the Solver's own file does.
    data = make_data(N=50)
    kwargs = dict(update_rule='adam', optim_config={'learning_rate': 1e-2}, lr_decay=0.9,
                  batch_size=16, num_train_samples=20, seed=7, verbose=False)
    full = TwoLayerNet(seed=0)
    full_solver = Solver(full, data, num_epochs=3, **kwargs)
    full_solver.train()

    prefix = str(tmp_path / 'run')
    Solver(TwoLayerNet(seed=0), data, num_epochs=1, checkpoint_name=prefix, **kwargs).train()
    arrays, meta = read_checkpoint(prefix + '_epoch_1.npz')
    assert meta['format'] == 'handgrad-solver-checkpoint-2'
    assert set(meta) == {'format', 'epoch', 'iteration', 'optim_configs', 'best_val_acc',
                         'loss_history', 'train_acc_history', 'val_acc_history', 'rng_state',
                         'kwargs', 'model_attributes'}
    assert {name.split('/')[0] for name in arrays} == {'params', 'best_params', 'optim',
                                                      'train_sample_idx'}
    plain = str(tmp_path / 'plain.npz')
    np.savez(plain, **arrays,
             **{'checkpoint.json': np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})

    resumed = TwoLayerNet(seed=99)
    resumed_solver = Solver(resumed, data, num_epochs=3, **kwargs)
    resumed_solver.resume(plain)
    resumed_solver.train()
    for p in full.params:
        assert np.array_equal(full.params[p], resumed.params[p]), p
    assert full_solver.loss_history == resumed_solver.loss_history
    assert full_solver.val_acc_history == resumed_solver.val_acc_history


def add_noise(X, rng):
    return X + 0.1 * rng.standard_normal(X.shape)


def test_augment_changes_training_batches_and_resume_stays_identical(tmp_path):
    data = make_data(N=40)
    kwargs = dict(update_rule='adam', batch_size=16, num_train_samples=20, seed=3,
                  verbose=False, augment=add_noise)
    plain = TwoLayerNet(seed=0)
    Solver(plain, data, num_epochs=3, **{**kwargs, 'augment': None}).train()
    full = TwoLayerNet(seed=0)
    Solver(full, data, num_epochs=3, **kwargs).train()
    assert not np.array_equal(plain.params['W1'], full.params['W1'])

    prefix = str(tmp_path / 'aug')
    Solver(TwoLayerNet(seed=0), data, num_epochs=1, checkpoint_name=prefix, **kwargs).train()
    resumed = TwoLayerNet(seed=5)
    solver = Solver(resumed, data, num_epochs=3, **kwargs)
    solver.resume(prefix + '_epoch_1.npz')
    solver.train()
    for p in full.params:
        assert np.array_equal(full.params[p], resumed.params[p]), p


def test_resume_without_seed_restores_generator_and_subsample(tmp_path):
    data = make_data(N=50)
    kwargs = dict(update_rule='adam', batch_size=16, num_train_samples=20, verbose=False)
    prefix = str(tmp_path / 'run')
    Solver(TwoLayerNet(), data, num_epochs=1, checkpoint_name=prefix, **kwargs).train()
    runs = []
    for _ in range(2):       # two fresh solvers with different (unseeded) generators
        model = TwoLayerNet(seed=5)
        s = Solver(model, data, num_epochs=3, checkpoint_name=prefix, **kwargs)
        s.resume_latest()
        s.train()
        runs.append((model, s))
    (m1, s1), (m2, s2) = runs
    assert s1.train_acc_history == s2.train_acc_history
    assert all(np.array_equal(m1.params[p], m2.params[p]) for p in m1.params)


def test_defaults():
    s = Solver(TwoLayerNet(), make_data())
    assert (s.batch_size, s.num_epochs, s.print_every, s.verbose, s.lr_decay) == \
        (500, 10, 1, True, 1.0)
    assert s.update_rule is solver_module.optim.sgd and s.optim_configs['W1'] == {}
    assert s.epoch == 0 and s.best_params == {} and s.loss_history == []


@pytest.mark.parametrize('name, expected_step', [
    # one full-batch step from the start (velocity and moments 0), by hand:
    # nesterov: v = g, w -= lr (g + mu v) = lr (1 + mu) g
    ('nesterov_momentum', lambda w, g: w - 0.1 * 1.9 * g),
    # adamw: w (1 - lr wd), then Adam's first step lr g / (|g| + eps)
    ('adamw', lambda w, g: w * (1 - 0.1 * 0.5) - 0.1 * g / (np.abs(g) + 1e-8)),
])
def test_new_update_rules_are_selectable_by_name(name, expected_step):
    data = make_data(N=20)
    model = TwoLayerNet(seed=3)
    start = {p: w.copy() for p, w in model.params.items()}
    _, grads = model.loss(data['X_train'], data['y_train'])
    solver = Solver(model, data, update_rule=name, batch_size=20, num_epochs=1, verbose=False,
                    optim_config={'learning_rate': 0.1, 'momentum': 0.9, 'weight_decay': 0.5})
    assert solver.update_rule is getattr(solver_module.optim, name)
    solver.train()   # one iteration; the first epoch's parameters are the best so far
    for p in model.params:
        np.testing.assert_allclose(model.params[p], expected_step(start[p], grads[p]),
                                   rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- overfit check

def test_overfit_small_subset_reaches_full_accuracy_and_reports_the_epoch():
    data = make_data(N=200)
    model = TwoLayerNet(H=32)
    epochs, accuracy = solver_module.overfit_small_subset(
        model, data, num_samples=50, max_epochs=100, optim_config={'learning_rate': 2e-2},
        batch_size=10, seed=0)
    assert accuracy == 1.0 and 1 < epochs < 100
    # the model holds parameters that classify all 50 examples right
    assert np.mean(np.argmax(model.loss(data['X_train'][:50]), axis=1)
                   == data['y_train'][:50]) == 1.0
    # it stopped at the first epoch with accuracy 1.0: one epoch fewer is not enough
    again = TwoLayerNet(H=32)
    solver = Solver(again, {'X_train': data['X_train'][:50], 'y_train': data['y_train'][:50],
                            'X_val': data['X_val'], 'y_val': data['y_val']},
                    update_rule='adam', optim_config={'learning_rate': 2e-2}, batch_size=10,
                    num_epochs=epochs, num_train_samples=None, seed=0, verbose=False)
    solver.train()
    assert solver.train_acc_history[-1] == 1.0 and max(solver.train_acc_history[:-1]) < 1.0


def test_overfit_small_subset_uses_the_first_samples_and_stops_at_full_accuracy():
    # ThresholdModel: t grows by lr = 1 per iteration; all 10 samples (x = 0..9, label 0)
    # are right once t >= 9: 2 iterations per epoch, so after epoch 5 (t = 10), not 4 (t = 8).
    model = ThresholdModel()
    epochs, accuracy = solver_module.overfit_small_subset(
        model, index_data(30), num_samples=10, max_epochs=50, update_rule='sgd',
        optim_config={'learning_rate': 1.0}, batch_size=5, seed=0)
    assert (epochs, accuracy) == (5, 1.0)
    assert len(model.batches) == 10
    np.testing.assert_array_equal(np.sort(np.concatenate(model.batches[:2])), np.arange(10))


def test_overfit_small_subset_stops_at_max_epochs_when_it_cannot_fit():
    # 50 random labels of 10 classes through a single hidden unit: impossible.
    rng = np.random.default_rng(0)
    data = {'X_train': rng.standard_normal((50, 8)), 'y_train': rng.integers(0, 10, 50)}
    model = TwoLayerNet(H=1, C=10)
    epochs, accuracy = solver_module.overfit_small_subset(
        model, data, max_epochs=15, optim_config={'learning_rate': 1e-2}, seed=0)
    assert epochs == 15 and 0 < accuracy < 1.0


def test_overfit_small_subset_refuses_bad_arguments():
    data = make_data(N=20)
    for kwargs, message in [({'num_samples': 0}, "num_samples must be a positive int"),
                            ({'max_epochs': 2.5}, "max_epochs must be a positive int"),
                            ({'num_samples': 21}, "20 training examples, fewer than"),
                            ({'num_epochs': 3}, "sets num_epochs itself")]:
        with pytest.raises(ValueError, match=message):
            solver_module.overfit_small_subset(TwoLayerNet(), data, **kwargs)
    with pytest.raises(ValueError, match="y_train"):
        solver_module.overfit_small_subset(TwoLayerNet(), {'X_train': data['X_train']})


def test_resume_rejects_mismatched_params_and_warns_on_changed_kwargs(tmp_path):
    data = make_data()
    path = str(tmp_path / 'ckpt.npz')
    Solver(TwoLayerNet(), data, num_epochs=0, verbose=False).save_checkpoint(path)
    with pytest.raises(ValueError, match=r"W1: checkpoint \(8, 16\), model \(8, 5\)"):
        Solver(TwoLayerNet(H=5), data, verbose=False).resume(path)
    with pytest.raises(ValueError, match="trains"):
        Solver(TwoLayerNet(), data, trainable=['W2'], verbose=False).resume(path)
    with pytest.warns(UserWarning, match="batch_size"):
        Solver(TwoLayerNet(), data, batch_size=7, verbose=False).resume(path)


def test_nan_loss_stops_restores_best_and_keeps_last_good_checkpoint(tmp_path):
    prefix = str(tmp_path / 'net')
    inner = TwoLayerNet()
    model = NanAt(inner, k=10)       # 60 samples / batch 20 = 3 iterations per epoch
    solver = Solver(model, make_data(), update_rule='adam', batch_size=20, num_epochs=5,
                    seed=0, checkpoint_name=prefix, verbose=False)
    with pytest.raises(NonFiniteLossError, match=r"nan in epoch 4, iteration 10") as info:
        solver.train()
    assert isinstance(info.value, FloatingPointError)
    assert (info.value.epoch, info.value.iteration) == (4, 10)
    assert np.isnan(info.value.loss)
    assert "learning rate" in str(info.value)
    assert solver.epoch == 3 and len(solver.loss_history) == 9
    for p in inner.params:
        np.testing.assert_array_equal(inner.params[p], solver.best_params[p])
    assert not os.path.exists(prefix + '_epoch_4.npz')
    assert f"last good checkpoint is {prefix}_epoch_3.npz" in str(info.value)
    arrays, meta = read_checkpoint(prefix + '_epoch_3.npz')
    assert meta['epoch'] == 3
    assert all(np.all(np.isfinite(arrays[f'params/{p}'])) for p in inner.params)
    assert glob.glob(str(tmp_path / '.*')) == []


def test_nan_in_first_epoch_restores_initial_params():
    model = ThresholdModel(nan_at=2)
    solver = Solver(model, index_data(3), optim_config={'learning_rate': 1.0},
                    batch_size=1, verbose=False)
    with pytest.raises(NonFiniteLossError) as info:
        solver.train()
    assert (info.value.epoch, info.value.iteration) == (1, 2)
    np.testing.assert_array_equal(model.params['t'], [0.0])


def test_unknown_kwargs_and_bad_values_raise():
    data = make_data()
    with pytest.raises(ValueError, match="bacth_size, learning_rate"):
        Solver(TwoLayerNet(), data, learning_rate=1e-3, bacth_size=10)
    with pytest.raises(ValueError, match="update_rule"):
        Solver(TwoLayerNet(), data, update_rule='adagrad')
    with pytest.raises(ValueError, match="W3"):
        Solver(TwoLayerNet(), data, trainable=['W3'])
    with pytest.raises(ValueError, match="y_train"):
        Solver(TwoLayerNet(), {**data, 'y_train': data['y_train'][:-1]})


def test_custom_metric_on_non_classification_targets():
    """Regression with targets y of shape (N, T), like captions: the metric decides."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    Y = X @ rng.standard_normal((5, 3))

    class LinearRegression:
        def __init__(self):
            self.params = {'W': np.zeros((5, 3))}

        def loss(self, X, y=None):
            assert y is not None, "the default metric must not be used"
            diff = X @ self.params['W'] - y
            return np.mean(diff ** 2), {'W': 2 * X.T @ diff / diff.size}

    calls = []

    def neg_mse(model, X, y):
        calls.append(len(X))
        return -float(model.loss(X, y)[0])

    model = LinearRegression()
    solver = Solver(model, {'X_train': X[:30], 'y_train': Y[:30], 'X_val': X[30:],
                            'y_val': Y[30:]}, metric=neg_mse, update_rule='adam',
                    optim_config={'learning_rate': 0.1}, batch_size=8, num_epochs=5,
                    num_train_samples=12, seed=0, verbose=False)
    solver.train()
    assert calls == [12, 10] * 5
    assert all(v < 0 for v in solver.val_acc_history)
    assert solver.val_acc_history[-1] > solver.val_acc_history[0]
    assert solver.best_val_acc == max(solver.val_acc_history)
    assert -model.loss(X[30:], Y[30:])[0] == solver.best_val_acc


def test_constant_metric_keeps_first_epoch_params():
    model = ThresholdModel()
    solver = Solver(model, index_data(2), optim_config={'learning_rate': 1.0},
                    batch_size=2, num_epochs=3, metric=lambda m, X, y: 0.5, verbose=False)
    solver.train()
    assert solver.train_acc_history == solver.val_acc_history == [0.5] * 3
    np.testing.assert_array_equal(model.params['t'], [1.0])   # ties keep the first


def run(seed, **kwargs):
    model = TwoLayerNet()
    solver = Solver(model, make_data(), update_rule='sgd_momentum', batch_size=16,
                    num_epochs=2, num_train_samples=30, seed=seed, verbose=False, **kwargs)
    solver.train()
    return model, solver


def test_seed_makes_runs_reproducible():
    (m1, s1), (m2, s2), (m3, s3) = run(0), run(0), run(1)
    assert s1.loss_history == s2.loss_history
    assert all(np.array_equal(m1.params[p], m2.params[p]) for p in m1.params)
    assert s1.loss_history != s3.loss_history
    assert not np.array_equal(s1._train_sample_idx, s3._train_sample_idx)


def test_frozen_params_are_bit_identical():
    model, solver = run(0, trainable=['W2', 'b2'])
    initial = TwoLayerNet().params
    np.testing.assert_array_equal(model.params['W1'], initial['W1'])
    np.testing.assert_array_equal(model.params['b1'], initial['b1'])
    assert not np.array_equal(model.params['W2'], initial['W2'])
    assert set(solver.optim_configs) == {'W2', 'b2'}


def test_float32_model_stays_float32():
    model, _ = run(0)
    model32 = TwoLayerNet(dtype=np.float32)
    data = {k: v.astype(np.float32) if k.startswith('X') else v
            for k, v in make_data().items()}
    Solver(model32, data, update_rule='adam', lr_decay=0.9, grad_clip=1.0, batch_size=16,
           num_epochs=2, verbose=False).train()
    assert all(w.dtype == np.float32 for w in model32.params.values())


def test_verbose_output(capsys):
    Solver(TwoLayerNet(), make_data(N=10), batch_size=4, num_epochs=2,
           print_every=2).train()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('(Iteration 1 / 6) loss: ')
    assert [line.split(')')[0] for line in lines] == [
        '(Iteration 1 / 6', '(Iteration 3 / 6', '(Epoch 1 / 2',
        '(Iteration 5 / 6', '(Epoch 2 / 2']
    assert lines[2].endswith(' s')
    assert ', train acc ' in lines[2] and ', val acc ' in lines[2]

    Solver(TwoLayerNet(), make_data(N=10), batch_size=4, num_epochs=2,
           verbose=False).train()
    assert capsys.readouterr().out == ''


def test_long_epoch_uses_progress_bar_instead_of_iteration_lines(capsys, monkeypatch):
    pytest.importorskip('tqdm')
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    Solver(TwoLayerNet(), make_data(N=60), batch_size=1, num_epochs=1).train()
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith('(Epoch 1 / 1) loss ')
    assert '(Iteration' not in captured.out
    assert 'Epoch 1 / 1' in captured.err            # the bar, on stderr


def test_long_epoch_in_a_log_file_prints_iteration_lines_not_a_bar(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: False)
    Solver(TwoLayerNet(), make_data(N=60), batch_size=1, num_epochs=1, print_every=20).train()
    captured = capsys.readouterr()
    assert captured.out.count('(Iteration') == 3    # iterations 1, 21, 41
    assert captured.err == ''


def test_resume_latest_continues_a_run_or_reports_none(tmp_path):
    data = make_data(N=40)
    kwargs = dict(update_rule='adam', batch_size=16, seed=2, verbose=False)
    assert Solver(TwoLayerNet(seed=0), data, num_epochs=1, **kwargs).resume_latest() is None
    prefix = str(tmp_path / 'run')
    fresh = Solver(TwoLayerNet(seed=0), data, num_epochs=1, checkpoint_name=prefix, **kwargs)
    assert fresh.resume_latest() is None               # nothing written yet
    fresh.train()
    again = Solver(TwoLayerNet(seed=5), data, num_epochs=2, checkpoint_name=prefix, **kwargs)
    assert again.resume_latest() == prefix + '_epoch_1.npz' and again.epoch == 1


def test_non_finite_data_is_refused_naming_the_split_and_sample():
    data = make_data()
    data['X_val'] = data['X_val'].copy()
    data['X_val'][4, 2] = np.nan
    with pytest.raises(ValueError, match=r"X_val holds 1 non-finite values .* sample 4 at "
                                         r"index \(2,\)"):
        Solver(TwoLayerNet(), data)
    data = make_data()
    data['X_train'] = data['X_train'].copy()
    data['X_train'][0, 0] = np.inf
    with pytest.raises(ValueError, match="X_train holds 1 non-finite"):
        Solver(TwoLayerNet(), data)
    with pytest.raises(ValueError, match="X_val is empty"):
        Solver(TwoLayerNet(), {**make_data(), 'X_val': np.zeros((0, 8)), 'y_val': np.zeros(0)})


class NanScores(TwoLayerNet):
    """Finite losses, but NaN class scores from the second evaluation on: what diverged
    parameters give on the validation set while the training batches still look fine."""

    evaluations = 0

    def loss(self, X, y=None):
        if y is not None:
            return super().loss(X, y)
        NanScores.evaluations += 1
        scores = super().loss(X)
        # epoch 1 takes 5 score batches: 3 of the 60 training samples, 2 of the 30 val ones
        return np.full_like(scores, np.nan) if NanScores.evaluations > 5 else scores


def test_non_finite_validation_scores_stop_training(tmp_path):
    NanScores.evaluations = 0
    model = NanScores()
    solver = Solver(model, make_data(), batch_size=20, num_epochs=3, num_train_samples=None,
                    verbose=False, checkpoint_name=str(tmp_path / 'net'))
    with pytest.raises(NonFiniteLossError, match=r"training acc after epoch 2 is nan"):
        solver.train()
    assert solver.val_acc_history == [solver.best_val_acc]       # epoch 1 only
    for p in model.params:
        np.testing.assert_array_equal(model.params[p], solver.best_params[p])
    assert sorted(os.listdir(tmp_path)) == ['net_epoch_1.npz']   # no checkpoint of epoch 2
