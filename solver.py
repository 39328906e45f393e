"""A Solver trains any model of the project with minibatch gradient descent.

The Solver knows nothing about the model's architecture. A model only needs:

- model.params: dict mapping parameter names to arrays.
- model.loss(X, y): returns (loss, grads), loss a scalar and grads a dict with the keys
  of model.params (the gradient of the loss with respect to each parameter), except
  those in model.frozen if the model has that set (sequential.Sequential does).
- model.loss(X): returns class scores of shape (N, C); only used by the default metric
  (classification accuracy). Models that are not classifiers, such as captioning models,
  pass their own `metric` instead.
- optionally model.state, a dict of arrays the model keeps but does not train (e.g.
  running statistics), and model.checkpoint_state, names of attributes holding plain
  numbers (e.g. a counter that seeds dropout masks): checkpoints save and restore both.

Example (classification):

    data = {'X_train': X_train, 'y_train': y_train, 'X_val': X_val, 'y_val': y_val}
    model = SoftmaxClassifier(hidden_dim=100)
    solver = Solver(model, data, update_rule='adam', optim_config={'learning_rate': 1e-3},
                    lr_decay=0.95, num_epochs=10, batch_size=100, seed=0,
                    checkpoint_name='checkpoints/softmax')
    solver.train()
    # model.params now holds the parameters with the best validation accuracy;
    # solver.loss_history, solver.train_acc_history and solver.val_acc_history
    # hold the training curves.

Example (captioning, where the "accuracy" is BLEU computed from sampled captions):

    def bleu(model, features, captions):
        return corpus_bleu(captions, model.sample(features))   # higher is better
    solver = Solver(model, {'X_train': train_features, 'y_train': train_captions,
                            'X_val': val_features, 'y_val': val_captions},
                    update_rule='adam', metric=bleu, num_train_samples=500)

Sanity check before a long run (the course's "overfit a tiny subset"): a correct model
learns 50 examples by heart, in some tens of epochs:

    epochs, train_acc = overfit_small_subset(model, data, num_samples=50)   # 1.0 expected

Training is organised in epochs. Each epoch is one pass over the training set in a new
random order: ceil(N / batch_size) iterations, the last batch possibly smaller, so every
sample is used exactly once per epoch. After each epoch the Solver
1. multiplies every learning rate by lr_decay,
2. measures the metric on a fixed random subset of the training set and on the
   validation set, and remembers the parameters with the best validation value,
3. writes a checkpoint, if checkpoint_name is set.
At the end of train(), model.params holds the best validation parameters.

A run with a seed is reproducible, and a run resumed from a checkpoint ends with exactly
the same parameters as a run that was never interrupted:

    solver = Solver(model, data, num_epochs=20, seed=0, checkpoint_name='ckpt/net', ...)
    solver.resume_latest()   # or solver.resume('ckpt/net_epoch_7.npz'); same model, data, kwargs
    solver.train()           # continues with the next epoch

Checkpoints are .npz archives of plain arrays with the settings as JSON inside (see
save_checkpoint; the file format lives in checkpoint.py); resuming reads them with
allow_pickle=False and never runs code from a file.
"""
import math
import sys
import time
import warnings

import numpy as np

import optim
from checkpoint import (
    CheckpointError,
    checkpoint_epochs,
    epoch_checkpoint_path,
    model_state,
    plain_data,
    prepare_checkpoint_directory,
    prune_checkpoints,
    read_checkpoint,
    remove_killed_writes,
    shape_mismatch,
    write_checkpoint,
)


class Solver:
    """
    Trains a model with minibatch gradient descent; see the module docstring.

    Required arguments:
    - model: an object with `params` and `loss` as described in the module docstring.
    - data: dict with 'X_train', 'y_train', 'X_val', 'y_val'. Row i of X_* is sample i,
      and y_* has the same number of rows (labels (N,) or captions (N, T), ...).

    Optional keyword arguments:
    - update_rule: name of a rule in optim.py ('sgd', 'sgd_momentum',
      'nesterov_momentum', 'rmsprop', 'adam', 'adamw') or a callable with the same
      interface. Default 'sgd'. 'nesterov_momentum' and 'adamw' equal torch.optim.SGD(
      momentum, nesterov=True) and torch.optim.AdamW step for step; adamw's weight_decay
      (in optim_config) applies to every trained parameter, biases included.
    - optim_config: dict of hyperparameters for the update rule; every parameter gets its
      own copy. Default {} (the rule's defaults).
    - lr_decay: each learning rate is multiplied by this after every epoch. Default 1.0.
    - batch_size: training minibatch size. Default 500, as in the homework.
    - num_epochs: number of passes over the training data. Default 10.
    - print_every: print the training loss every this many iterations. Default 1.
    - verbose: print progress; False makes the Solver silent. Default True. Prints a
      line per epoch, and the loss every print_every iterations as
      '(Iteration 1 / 4400) loss: 2.302585'; in epochs of more than 50 iterations a
      tqdm progress bar (on stderr) shows that loss instead, if tqdm is installed.
    - metric: callable metric(model, X, y) -> float, higher is better, used for the
      train/val histories and for choosing the best parameters. Default None, which means
      classification accuracy of argmax(model.loss(X)).
    - num_train_samples: size of the fixed random subset of the training set on which the
      training metric is measured each epoch; None means all. Default 1000.
    - num_val_samples: the same for the validation set (also chosen once); None means
      all. Default None.
    - grad_clip: if set, gradients are scaled so that their global L2 norm (over all
      trained parameters together) is at most grad_clip. Default None (no clipping).
    - trainable: iterable of parameter names to update; the other parameters stay frozen
      (they get no update and no optimizer state). Default None: all parameters except
      those the model marks frozen in model.frozen, if it has that attribute (for those
      the model computes no gradient, so naming one here raises ValueError).
    - augment: callable augment(X_batch, rng) -> X_batch applied to every training
      minibatch (not to the metric's data), e.g. random shifts of images; rng is the
      Solver's generator, so seeded and resumed runs stay reproducible. Default None.
    - seed: seed of the one random generator behind all the Solver's randomness (the
      order of the training samples, the training-metric subset, augment's draws).
      Default None.
    - checkpoint_name: path prefix; if set, after every epoch k the Solver writes
      '<checkpoint_name>_epoch_<k>.npz' (see save_checkpoint). The folder must be
      writable: train() checks that before the first epoch. Default None.
    - checkpoint_keep: how many of the newest epoch checkpoints to keep; older ones are
      deleted, except the best validation epoch's. None keeps all. Default 1: the latest
      and the best.

    Attributes:
    - epoch: number of epochs completed.
    - iteration: number of parameter updates made.
    - best_val_acc: best validation metric so far (-inf before the first epoch ends).
    - best_params: copies of model.params at the best validation metric (before the first
      epoch ends: the parameters train() started from).
    - best_state: copies of model.state (a normalization layer's running statistics) at
      the same moment; train() restores them with best_params, since the best
      parameters are only right with the statistics they were evaluated with.
    - loss_history: training loss of every iteration.
    - train_acc_history, val_acc_history: the training and validation metric after every
      epoch (one entry per epoch; with a custom metric these hold its values).
    - optim_configs: dict mapping each trained parameter name to its optim config,
      including the update rule's state.
    """

    DEFAULTS = {
        'update_rule': 'sgd',
        'optim_config': {},
        'lr_decay': 1.0,
        'batch_size': 500,
        'num_epochs': 10,
        'print_every': 1,
        'verbose': True,
        'metric': None,
        'num_train_samples': 1000,
        'num_val_samples': None,
        'grad_clip': None,
        'trainable': None,
        'augment': None,
        'seed': None,
        'checkpoint_name': None,
        'checkpoint_keep': 1,
    }

    # Epochs with more iterations than this show a tqdm progress bar (when verbose).
    PROGRESS_BAR_MIN_ITERATIONS = 50

    # Kwargs that may differ between a run and its resumption without a warning.
    _FREE_TO_CHANGE = {'num_epochs', 'print_every', 'verbose', 'checkpoint_name',
                       'checkpoint_keep', 'seed'}

    def __init__(self, model, data, **kwargs):
        """
        Construct a new Solver: see the class docstring for the arguments. Raises
        ValueError naming the argument for unknown kwargs, missing, empty or non-finite
        data and invalid settings.
        """
        _check_arguments(kwargs, self.DEFAULTS, data)
        self.model = model
        self.X_train, self.y_train = data['X_train'], data['y_train']
        self.X_val, self.y_val = data['X_val'], data['y_val']

        # Unpack keyword arguments
        options = {**self.DEFAULTS, **kwargs}
        self.update_rule = options['update_rule']
        self.optim_config = dict(options['optim_config'] or {})
        self.lr_decay = options['lr_decay']
        self.batch_size = int(options['batch_size'])
        self.num_epochs = int(options['num_epochs'])
        self.print_every = int(options['print_every'])
        self.verbose = options['verbose']
        self.metric = options['metric']
        self.num_train_samples = options['num_train_samples']
        self.num_val_samples = options['num_val_samples']
        self.grad_clip = options['grad_clip']
        self.augment = options['augment']
        self.seed = options['seed']
        self.checkpoint_name = options['checkpoint_name']
        self.checkpoint_keep = options['checkpoint_keep']
        self._kwargs = options
        self._check_settings()

        # Make sure the update rule exists, then replace the string name with the function
        if isinstance(self.update_rule, str):
            self.update_rule = getattr(optim, self.update_rule)
        self.trainable = self._trainable_names(options['trainable'])

        # One generator behind all the Solver's randomness; the metric subsets are fixed
        self.rng = np.random.default_rng(self.seed)
        self._train_sample_idx = self._choose_subset(len(self.X_train),
                                                     self.num_train_samples)
        self._val_sample_idx = self._choose_subset(len(self.X_val), self.num_val_samples)
        self._reset()

    def _reset(self):
        """Set up the bookkeeping of a fresh run. Don't call this manually."""
        self.epoch = 0
        self.iteration = 0
        self.best_val_acc = -np.inf
        self.best_params = {}
        self.best_state = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        # Make a deep copy of the optim_config for each parameter
        self.optim_configs = {p: dict(self.optim_config) for p in self.trainable}

    def _step(self, X_batch, y_batch):
        """Compute loss and gradients on one minibatch and update the trained params."""
        loss, grads = self.model.loss(X_batch, y_batch)
        loss = float(loss)
        if not math.isfinite(loss):
            return loss
        if self.grad_clip is not None:
            norm = math.sqrt(sum(float(np.sum(np.square(grads[p], dtype=np.float64)))
                                 for p in self.trainable))
            if norm > self.grad_clip:
                scale = float(self.grad_clip) / norm
                grads = {p: grads[p] * scale for p in self.trainable}
        for p in self.trainable:
            next_w, next_config = self.update_rule(self.model.params[p], grads[p],
                                                   self.optim_configs[p])
            self.model.params[p] = next_w
            self.optim_configs[p] = next_config
        return loss

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """
        Measure the model's metric on the data (X, y): classification accuracy by
        default, or metric(model, X, y) if the Solver was given one.

        Inputs:
        - X: array of data, shape (N, ...).
        - y: array of labels (N,) (or targets of any shape (N, ...) for a custom metric).
        - num_samples: if not None and less than N, measure on a random subset of this
          many samples (drawn from the Solver's random generator).
        - batch_size: split X into batches of this size to compute the scores, to bound
          memory. A custom metric does its own batching and ignores this.

        Returns:
        - acc: float, the fraction of samples classified correctly (or the metric).
        """
        idx = self._choose_subset(len(X), num_samples)
        if idx is not None:
            X, y = X[idx], y[idx]
        if self.metric is not None:
            return float(self.metric(self.model, X, y))
        predictions = []
        for i in range(0, len(X), batch_size):
            scores = self.model.loss(X[i:i + batch_size])
            if not np.isfinite(scores).all():   # argmax of NaN scores would look like a guess
                return math.nan
            predictions.append(np.argmax(scores, axis=1))
        return float(np.mean(np.concatenate(predictions) == y))

    def train(self, stop_at_train_acc=None):
        """
        Run epochs self.epoch + 1 .. num_epochs, then load the best parameters into
        model.params. After resume(), this continues the interrupted run; to train longer
        afterwards, raise self.num_epochs and call train() again.

        stop_at_train_acc: if set, stop after the first epoch whose training metric
        (accuracy by default) is at least this value, e.g. 1.0 to overfit a small subset
        (see overfit_small_subset). Default None: run all the epochs.

        Raises NonFiniteLossError if a minibatch loss is nan or inf.
        """
        num_train = len(self.X_train)
        iterations_per_epoch = math.ceil(num_train / self.batch_size)
        num_iterations = self.num_epochs * iterations_per_epoch
        if not self.best_params:   # (a resumed run has them)
            self._keep_best()
        if self.checkpoint_name is not None and self.epoch < self.num_epochs:
            prepare_checkpoint_directory(self.checkpoint_name)   # fail now, not after an epoch

        while self.epoch < self.num_epochs:
            # One pass over the training set in a new random order
            start = time.perf_counter()
            order = self.rng.permutation(num_train)
            bar = self._progress_bar(iterations_per_epoch)
            loss_sum = 0.0
            try:
                for i in range(iterations_per_epoch):
                    batch = order[i * self.batch_size:(i + 1) * self.batch_size]
                    X_batch = self.X_train[batch]
                    if self.augment is not None:
                        X_batch = self.augment(X_batch, self.rng)
                    loss = self._step(X_batch, self.y_train[batch])
                    if not math.isfinite(loss):
                        self._stop_non_finite(loss, i, iterations_per_epoch)
                    self.iteration += 1
                    self.loss_history.append(loss)
                    loss_sum += loss * len(batch)
                    self._report_iteration(bar, loss, num_iterations)
            finally:
                if bar is not None:
                    bar.close()
            self.epoch += 1

            # At the end of every epoch: decay the learning rates, measure the metric,
            # keep track of the best parameters, write a checkpoint
            self._decay_learning_rates()
            train_acc = self._evaluate(self.X_train, self.y_train, self._train_sample_idx,
                                       'training')
            val_acc = self._evaluate(self.X_val, self.y_val, self._val_sample_idx, 'validation')
            self.train_acc_history.append(train_acc)
            self.val_acc_history.append(val_acc)
            if val_acc > self.best_val_acc:
                self.best_val_acc = val_acc
                self._keep_best()
            if self.checkpoint_name is not None:
                self._write_checkpoints()
            if self.verbose:
                name = self._metric_name()
                print(f"(Epoch {self.epoch} / {self.num_epochs}) "
                      f"loss {loss_sum / num_train:.4f}, train {name} {train_acc:.4f}, "
                      f"val {name} {val_acc:.4f}, {time.perf_counter() - start:.1f} s")
            if stop_at_train_acc is not None and train_acc >= stop_at_train_acc:
                break

        # At the end of training swap the best parameters into the model
        self._restore_best_params()

    # ------------------------------------------------------------------- bookkeeping

    def _choose_subset(self, n, num_samples):
        """Sorted random indices of num_samples of n rows, or None for all rows."""
        if num_samples is None or num_samples >= n:
            return None
        return np.sort(self.rng.choice(n, size=num_samples, replace=False))

    def _report_iteration(self, bar, loss, num_iterations):
        """Print the loss every print_every iterations (in the progress bar, if any)."""
        if bar is not None:
            bar.update(1)
        if not self.verbose or (self.iteration - 1) % self.print_every != 0:
            return
        if bar is not None:
            bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        else:
            print(f"(Iteration {self.iteration} / {num_iterations}) loss: {loss:f}")

    def _progress_bar(self, total):
        """
        A tqdm bar for a long epoch when verbose and stderr is a terminal; None otherwise
        or without tqdm. In a log file a bar's redraws would bury the progress lines.
        """
        if not self.verbose or total <= self.PROGRESS_BAR_MIN_ITERATIONS or not sys.stderr.isatty():
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=total, desc=f"Epoch {self.epoch + 1} / {self.num_epochs}",
                    unit="it", leave=False)

    def _metric_name(self):
        if self.metric is None:
            return "acc"
        name = getattr(self.metric, '__name__', '')
        return name if name.isidentifier() else "metric"

    def _decay_learning_rates(self):
        if self.lr_decay == 1.0:
            return
        for p, config in self.optim_configs.items():
            if 'learning_rate' not in config:
                raise ValueError(f"lr_decay needs a 'learning_rate' in the optim config "
                                 f"of {p}, but the update rule did not set one")
            config['learning_rate'] = config['learning_rate'] * self.lr_decay

    def _keep_best(self):
        """Copy model.params and model.state into best_params and best_state."""
        self.best_params = {p: w.copy() for p, w in self.model.params.items()}
        self.best_state = {k: v.copy() for k, v in model_state(self.model).items()}

    def _restore_best_params(self):
        """Load copies of best_params and best_state into the model (keeping its dicts)."""
        for p, w in self.best_params.items():
            self.model.params[p] = w.copy()
        for k, v in self.best_state.items():
            self.model.state[k] = v.copy()

    # ------------------------------------------------------------------------ guards
    #
    # Settings are checked when the Solver is built; in training, a non-finite loss or
    # metric stops the run with the best parameters restored (NonFiniteLossError).

    def _check_settings(self):
        """ValueError naming the setting for an invalid checkpoint_keep, update_rule,
        batch_size or print_every."""
        if self.checkpoint_keep is not None and (
                not isinstance(self.checkpoint_keep, (int, np.integer))
                or isinstance(self.checkpoint_keep, bool) or self.checkpoint_keep < 1):
            raise ValueError(f"checkpoint_keep must be a positive int or None (keep all), "
                             f"got {self.checkpoint_keep!r}")
        if isinstance(self.update_rule, str):
            rule = getattr(optim, self.update_rule, None)
            if self.update_rule.startswith('_') or not callable(rule):
                raise ValueError(f'Invalid update_rule "{self.update_rule}"')
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.print_every < 1:
            raise ValueError(f"print_every must be at least 1, got {self.print_every}")

    def _trainable_names(self, trainable):
        """The names of the parameters to update, in the order of model.params: all but
        the model's frozen ones when trainable is None; ValueError for names that are
        not parameters or are frozen in the model."""
        names = list(self.model.params)
        frozen = set(getattr(self.model, 'frozen', ()))
        if trainable is None:
            trainable = [p for p in names if p not in frozen]
        elif isinstance(trainable, str):
            trainable = [trainable]
        extra = sorted(set(trainable) - set(names))
        if extra:
            raise ValueError(f"trainable names {extra} are not in model.params "
                             f"(which has {names})")
        if frozen & set(trainable):
            raise ValueError(f"trainable names {sorted(frozen & set(trainable))} are frozen "
                             f"in the model (model.frozen), which computes no gradient for "
                             f"them; unfreeze them first")
        keep = set(trainable)
        return [p for p in names if p in keep]

    def _evaluate(self, X, y, idx, split):
        """The metric on a split's fixed subset; a non-finite value (e.g. NaN scores from
        diverged parameters) stops training like a non-finite loss."""
        if idx is not None:
            X, y = X[idx], y[idx]
        value = self.check_accuracy(X, y, batch_size=self.batch_size)
        if not math.isfinite(value):
            self._stop_non_finite_metric(value, split)
        return value

    def _stop_non_finite(self, loss, batch_index, iterations_per_epoch):
        """Restore the best params and raise NonFiniteLossError."""
        epoch, iteration = self.epoch + 1, self.iteration + 1
        self._restore_best_params()
        if self.epoch > 0 and np.isfinite(self.best_val_acc):
            restored = f"the best validation parameters (val {self._metric_name()} " \
                       f"{self.best_val_acc:.4f})"
        else:
            restored = "the parameters from the start of train()"
        checkpoint = ""
        if self.checkpoint_name is not None and self.epoch > 0:
            checkpoint = f" The last good checkpoint is {self.checkpoint_path(self.epoch)}."
        lrs = sorted({c['learning_rate'] for c in self.optim_configs.values()
                      if 'learning_rate' in c})
        lr_text = f" (now {', '.join(f'{lr:g}' for lr in lrs)})" if lrs else ""
        raise NonFiniteLossError(
            f"The training loss is {loss} in epoch {epoch}, iteration {iteration} "
            f"(batch {batch_index + 1} of {iterations_per_epoch} in this epoch). "
            f"Training stopped; model.params was restored to {restored}.{checkpoint} "
            f"Hints: lower the learning rate{lr_text}, check the inputs for nan/inf and "
            f"a sensible scale (e.g. normalized), use a smaller weight_scale, or set "
            f"grad_clip.", epoch=epoch, iteration=iteration, loss=loss)

    def _stop_non_finite_metric(self, value, split):
        """Restore the best params and raise NonFiniteLossError for a non-finite metric."""
        self._restore_best_params()
        raise NonFiniteLossError(
            f"The {split} {self._metric_name()} after epoch {self.epoch} is {value} "
            f"(the model's scores are not finite: its parameters have diverged). Training "
            f"stopped; model.params was restored to the best validation parameters so far "
            f"(the parameters from the start of train() if none). Hints: lower the learning "
            f"rate, use a smaller weight_scale, or set grad_clip.",
            epoch=self.epoch, iteration=self.iteration, loss=value)

    # ------------------------------------------------------------ checkpoints and resume
    #
    # The file format (and its checks) lives in checkpoint.py: here is what a run saves
    # and how a Solver takes it back.

    def save_checkpoint(self, path):
        """
        Write the Solver's state to path, atomically (fileio.write_atomic): the file
        holds its old content or the complete new one, even if the process is killed.

        The file is an .npz archive of plain arrays (np.load(path, allow_pickle=False)
        reads it; nothing in it is pickled or executable): model.params, the best
        parameters, the update rule's state, the model's state buffers and their best
        copies, the fixed metric subsets, and 'checkpoint.json' with the counters,
        histories, the random generator's state, the Solver's settings (checked on
        resume) and the model's attributes named in its optional `checkpoint_state`
        (e.g. the counter that seeds dropout masks). checkpoint.write_checkpoint lists
        every entry.

        Raises fileio.WriteError naming the file if it cannot be written.
        """
        return write_checkpoint(path, self._checkpoint_contents())

    def _checkpoint_contents(self):
        """Everything needed to continue training bit-identically (checkpoint.py's
        training state)."""
        return {
            'params': self.model.params, 'best_params': self.best_params,
            'state': model_state(self.model), 'best_state': self.best_state,
            'optim_configs': self.optim_configs,
            'train_sample_idx': self._train_sample_idx,
            'val_sample_idx': self._val_sample_idx,
            'epoch': self.epoch,
            'iteration': self.iteration,
            'best_val_acc': self.best_val_acc,
            'loss_history': self.loss_history,
            'train_acc_history': self.train_acc_history,
            'val_acc_history': self.val_acc_history,
            'rng_state': self.rng.bit_generator.state,
            'kwargs': self._describe_kwargs(),
            'model_attributes': {name: getattr(self.model, name)
                                 for name in getattr(self.model, 'checkpoint_state', ())},
        }

    def _describe_kwargs(self):
        """The Solver's kwargs as plain data, callables replaced by their names."""
        def describe(value):
            if callable(value):
                return f"{getattr(value, '__module__', '?')}." \
                       f"{getattr(value, '__qualname__', repr(value))}"
            if isinstance(value, (str, bool, int, float, type(None))):
                return value
            try:
                return plain_data(value, "")
            except TypeError:
                return repr(value)
        described = {k: describe(v) for k, v in self._kwargs.items()}
        described['update_rule'] = describe(self.update_rule)
        described['optim_config'] = describe(dict(self.optim_config))
        described['trainable'] = list(self.trainable)
        described['seed'] = repr(self.seed)
        return described

    def checkpoint_path(self, epoch):
        """The file of epoch's checkpoint: '<checkpoint_name>_epoch_<epoch>.npz'."""
        return epoch_checkpoint_path(self.checkpoint_name, epoch)

    def _write_checkpoints(self):
        """Write this epoch's checkpoint, then delete the older ones that checkpoint_keep
        does not keep (the newest checkpoint_keep epochs and the best epoch's stay)."""
        self.save_checkpoint(self.checkpoint_path(self.epoch))
        if self.checkpoint_keep is None:
            return
        best_epoch = (int(np.argmax(self.val_acc_history)) + 1) if self.val_acc_history else None
        prune_checkpoints(self.checkpoint_name, self.checkpoint_keep, best_epoch, self.epoch)

    def resume_latest(self):
        """
        Resume from the newest complete checkpoint under checkpoint_name (the highest
        epoch whose file loads; an unreadable one is skipped with a warning), if
        checkpoint_name is set and there is one (see resume). Leftover temporary files
        of a killed write are removed first. Returns the checkpoint's path, or None.
        """
        if self.checkpoint_name is None:
            return None
        remove_killed_writes(self.checkpoint_name)
        for epoch in reversed(checkpoint_epochs(self.checkpoint_name)):
            path = self.checkpoint_path(epoch)
            try:
                saved = read_checkpoint(path)
            except CheckpointError as error:
                warnings.warn(str(error))   # it names the file; the next one is tried
                continue
            self._restore(path, saved)
            return path
        return None

    def resume(self, path):
        """
        Load a checkpoint written by this class, so that train() continues that run.

        Build the Solver as for the original run (same kind of model, data and kwargs;
        num_epochs may be larger), call resume(path), then train(). The model's
        parameters and state, the optimizer state, the counters, histories, best
        parameters and the random generator's state are all restored, so the result is
        identical to a run that was never interrupted.

        Reading a checkpoint never runs code from the file: it must be an .npz archive of
        plain arrays (see save_checkpoint). Raises CheckpointError (a ValueError) naming
        the file if it cannot be read, is truncated or corrupt, is a pickle (such as an
        old handgrad checkpoint) or another foreign file, or does not fit this Solver's
        model (parameter names or shapes, the set of trained parameters). Warns if other
        kwargs that affect training differ from the checkpoint's.
        """
        self._restore(path, read_checkpoint(path))

    def _restore(self, path, saved):
        """Check that the training state `saved` (read from path) fits this Solver's
        model, then take it over (CheckpointError naming the file otherwise)."""
        state = model_state(self.model)
        for what, theirs, ours in (
                ("parameters", saved['params'], self.model.params),
                ("state buffers", saved['state'], state),
                ("best state buffers", saved['best_state'] or saved['state'], state)):
            mismatch = shape_mismatch(theirs, ours)
            if mismatch:
                raise CheckpointError(f"Checkpoint {path} does not match the model's {what}: "
                                      + mismatch)
        if set(saved['optim_configs']) != set(self.trainable):
            raise CheckpointError(f"Checkpoint {path} trained {sorted(saved['optim_configs'])} "
                                  f"but this Solver trains {sorted(self.trainable)}")
        self._warn_changed_kwargs(path, saved['kwargs'])

        # It fits: take it over

        for p, w in saved['params'].items():
            self.model.params[p] = w
        for key, value in saved['state'].items():
            self.model.state[key] = value
        self.optim_configs = saved['optim_configs']
        self.epoch = saved['epoch']
        self.iteration = saved['iteration']
        self.best_val_acc = saved['best_val_acc']
        self.best_params = saved['best_params']
        self.best_state = saved['best_state']
        self.loss_history = saved['loss_history']
        self.train_acc_history = saved['train_acc_history']
        self.val_acc_history = saved['val_acc_history']
        self.rng.bit_generator.state = saved['rng_state']
        self._train_sample_idx = saved['train_sample_idx']
        self._val_sample_idx = saved['val_sample_idx']
        for name, value in saved['model_attributes'].items():
            setattr(self.model, name, value)

    def _warn_changed_kwargs(self, path, saved_kwargs):
        """Warn if kwargs that affect training differ from the checkpoint's."""
        saved, current = saved_kwargs, self._describe_kwargs()
        changed = [k for k in current if k not in self._FREE_TO_CHANGE
                   and k in saved and not _same(saved[k], current[k])]
        if changed:
            warnings.warn(f"Resuming from {path} with different "
                          + ", ".join(f"{k} (checkpoint {saved[k]!r}, now {current[k]!r})"
                                      for k in changed)
                          + "; the run will not be identical to an uninterrupted one")


class NonFiniteLossError(FloatingPointError):
    """
    Raised by Solver.train() when a minibatch loss is nan or inf, or when the model's
    scores on the training or validation subset are (the metric is then NaN).

    Training stops at once: model.params is restored to the best validation parameters
    found so far (the parameters from the start of train() if no epoch finished yet), and
    no checkpoint is written, so the last checkpoint on disk is the last good state.

    Attributes:
    - epoch: the epoch in which it happened, counted from 1.
    - iteration: the global iteration number, counted from 1 as in the progress lines.
    - loss: the non-finite loss value.
    """

    def __init__(self, message, epoch, iteration, loss):
        super().__init__(message)
        self.epoch = epoch
        self.iteration = iteration
        self.loss = loss


def _check_arguments(kwargs, defaults, data):
    """ValueError for kwargs not in defaults, and for data that lacks a split, has X and y
    of different lengths, an empty split or non-finite values."""
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ValueError(f"Unrecognized arguments {', '.join(unknown)}; "
                         f"valid ones are {', '.join(defaults)}")
    missing = [k for k in ('X_train', 'y_train', 'X_val', 'y_val') if k not in data]
    if missing:
        raise ValueError(f"data is missing {', '.join(missing)}")
    for split in ('train', 'val'):
        n_x, n_y = len(data['X_' + split]), len(data['y_' + split])
        if n_x != n_y:
            raise ValueError(f"X_{split} has {n_x} rows but y_{split} has {n_y}")
    if len(data['X_train']) == 0:
        raise ValueError("X_train is empty")
    if len(data['X_val']) == 0:
        raise ValueError("X_val is empty: the Solver chooses the best parameters on it")
    for split in ('X_train', 'X_val'):
        _check_finite(split, data[split])


def _check_finite(name, X):
    """Floating data must be finite: one NaN in a batch makes that step's loss NaN."""
    X = np.asarray(X)
    if X.dtype.kind in 'fc' and not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))
        raise ValueError(f"{name} holds {len(bad)} non-finite values (NaN or inf), the first "
                         f"in sample {bad[0][0]} at index {tuple(bad[0][1:].tolist())}: clean "
                         f"or drop those samples before training")


def _same(a, b):
    try:
        return bool(a == b)
    except Exception:   # e.g. arrays of different shapes inside a config
        return repr(a) == repr(b)


def epoch_means(loss_history, num_train, batch_size):
    """
    Mean training loss of each completed epoch from a Solver's per-iteration loss_history,
    weighted by batch size (the last batch of an epoch may be smaller).

    Inputs:
    - loss_history: per-iteration losses, ceil(num_train / batch_size) per epoch.
    - num_train: number of training samples.
    - batch_size: the Solver's batch size.

    Returns:
    - list with one mean loss per completed epoch.
    """
    per_epoch = int(np.ceil(num_train / batch_size))
    sizes = np.full(per_epoch, batch_size, dtype=np.float64)
    sizes[-1] = num_train - batch_size * (per_epoch - 1)
    losses = np.asarray(loss_history, dtype=np.float64)
    return [float(np.dot(losses[e * per_epoch:(e + 1) * per_epoch], sizes) / num_train)
            for e in range(len(losses) // per_epoch)]


def overfit_small_subset(model, data, num_samples=50, max_epochs=200, **solver_kwargs):
    """
    The "overfit a tiny subset" sanity check: a network whose loss and gradients are right
    learns a few dozen training examples by heart, reaching 100% training accuracy within
    some tens of epochs. If it does not, fix that before training on all the data: look
    for a wrong gradient (gradient_check.check_model_gradients), a learning rate far too
    small or too large, or too much regularization.

    Trains model in place with a Solver on the first num_samples training examples,
    validating on the same examples, until the training accuracy is 1.0 (all of them
    right) or max_epochs epochs have run.

    Inputs:
    - model: any model the Solver trains (trained in place: build a fresh one for the
      real run).
    - data: dict with 'X_train' and 'y_train' (other keys are not used).
    - num_samples: how many of the first training examples to learn.
    - max_epochs: stop after this many epochs if the accuracy is still below 1.0.
    - solver_kwargs: Solver keyword arguments (update_rule, optim_config, batch_size,
      seed, verbose, ...). The defaults here suit the check: update_rule 'adam',
      optim_config {'learning_rate': 1e-3}, batch_size 25, verbose False. num_epochs,
      num_train_samples and num_val_samples are set by this function. With a metric of
      your own, "accuracy" below is that metric.

    Returns a tuple of:
    - epochs: the number of epochs run: the first epoch that reached accuracy 1.0, or
      max_epochs.
    - train_accuracy: the best training accuracy reached (1.0 on success); model.params
      holds the parameters that reached it.

    Raises ValueError for num_samples or max_epochs that are not positive ints, data
    with fewer than num_samples training examples, and the Solver kwargs set here.
    """
    for name, value in (('num_samples', num_samples), ('max_epochs', max_epochs)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    fixed = sorted({'num_epochs', 'num_train_samples', 'num_val_samples'} & set(solver_kwargs))
    if fixed:
        raise ValueError(f"overfit_small_subset sets {', '.join(fixed)} itself "
                         f"(max_epochs is the number of epochs); leave them out")
    missing = [key for key in ('X_train', 'y_train') if key not in data]
    if missing:
        raise ValueError(f"data is missing {', '.join(missing)}")
    if len(data['X_train']) < num_samples:
        raise ValueError(f"data has {len(data['X_train'])} training examples, fewer than "
                         f"num_samples={num_samples}")
    X, y = data['X_train'][:num_samples], data['y_train'][:num_samples]
    options = {'update_rule': 'adam', 'optim_config': {'learning_rate': 1e-3},
               'batch_size': 25, 'verbose': False, **solver_kwargs,
               'num_epochs': int(max_epochs), 'num_train_samples': None,
               'num_val_samples': None}
    solver = Solver(model, {'X_train': X, 'y_train': y, 'X_val': X, 'y_val': y}, **options)
    solver.train(stop_at_train_acc=1.0)
    return solver.epoch, float(solver.best_val_acc)
