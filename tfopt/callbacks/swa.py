"""`SWA`: stochastic weight averaging of the epochs' end points, then BatchNorm statistics for the average."""

import glob
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfopt import _checks, _compat, _files, _surgery, distribute

_ARRAY_BATCH_SIZE = 32


def _batch_norm_layers(model):
    batch_norm = _compat.keras_of(model).layers.BatchNormalization
    return [layer for layer in _surgery.layers(model, sublayers=True) if isinstance(layer, batch_norm)]


def _input_batches(data):
    """The input batches of a batched `tf.data.Dataset` (of `x` or `(x, y, ...)`) or of arrays of inputs."""
    if isinstance(data, tf.data.Dataset):
        for element in data:
            yield keras.utils.unpack_x_y_sample_weight(element)[0]
        return
    size = len(keras.tree.flatten(data)[0])
    for start in range(0, size, _ARRAY_BATCH_SIZE):
        yield keras.tree.map_structure(lambda array: array[start:start + _ARRAY_BATCH_SIZE], data)


class SWA(_compat.Callback):
    """Averages the model's weights over the ends of the epochs from `start_epoch` on, and trains on with `swa_lr`.

    At the end of training the model's trainable weights are replaced by their equal-weight average over the ends of
    epochs `start_epoch, start_epoch + 1, ...` (0-based). BatchNormalization statistics of the average are not the
    average of the statistics, so they are then recomputed by one pass over the training inputs in training mode,
    each layer's statistics being the equal-weight mean over the batches of the batch mean and (biased, as Keras's
    BatchNormalization uses) batch variance.

    ```python
    at the end of epoch e >= start_epoch:  n += 1;  average = average + (weights - average) / n
    from epoch start_epoch on:             optimizer.learning_rate = swa_lr   # if swa_lr is given
    at the end of training:                weights = average
                                           for batch k = 1, 2, ... of update_bn:  momentum = (k - 1) / k
                                               model(batch, training=True)     # BatchNorm: cumulative mean
    ```

    A callback does not see `fit`'s data, so recomputing the statistics takes the training inputs as `update_bn`.
    The averages are kept as float64 NumPy copies on the host: they cost no device memory or step time and follow the
    model under `tf.distribute` strategies, but they are not model weights, so `BackupAndRestore` does not save them.
    Give `backup_dir` (its folder, say) and SWA saves them there at each epoch's end (the chief only, under a
    multi-worker strategy) and, when `fit` resumes at a later epoch, restores those of the epoch before. A finished
    `fit` has put the averages into the model: it replaces them by a record of its last epoch that holds none, so a
    later `fit` going on from the next epoch starts new averages, as it does without `backup_dir`; a `fit` resuming
    at an epoch after neither raises. A `copy.deepcopy` of the callback (KerasTuner makes one per trial) starts
    afresh and shares `update_bn`.

    Args:
        start_epoch: the first (0-based) epoch whose end is averaged, an integer >= 0.
        swa_lr: the learning rate from `start_epoch` on, > 0, or None to leave it alone. Needs an optimizer created
            with a float learning rate. Defaults to None.
        update_bn: the training inputs to recompute BatchNorm statistics with: a batched `tf.data.Dataset` of `x`
            or `(x, y, ...)`, or an array (or a list or dict of arrays) of inputs, taken in batches of 32. False
            keeps the last epoch's statistics. True is accepted for models without BatchNormalization layers; with
            such layers it raises at the start of `fit`. Defaults to True.
        backup_dir: a folder for the averages, so that a `fit` resumed by `keras.callbacks.BackupAndRestore` goes on
            averaging where it stopped; None keeps them in memory only. Defaults to None.

    Example:
        >>> import keras, numpy as np
        >>> from tfopt.callbacks.swa import SWA
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.05), "mse")
        >>> x, y = np.ones((32, 4)), np.ones((32, 1))
        >>> history = model.fit(x, y, epochs=6, verbose=0, callbacks=[SWA(start_epoch=3, swa_lr=0.01, update_bn=x)])

    References:
        Izmailov, Podoprikhin, Garipov, Vetrov and Wilson, "Averaging Weights Leads to Wider Optima and Better
        Generalization", UAI 2018. https://arxiv.org/abs/1803.05407
    """

    def __init__(self, start_epoch, swa_lr=None, update_bn=True, backup_dir=None):
        super().__init__()
        self.start_epoch = _checks.integer("SWA", "start_epoch", start_epoch, low=0)
        self.swa_lr = None if swa_lr is None else _checks.number("SWA", "swa_lr", swa_lr, low=0, closed="neither")
        self.update_bn = _checks.instance(
            "SWA", "update_bn", update_bn, (bool, tf.data.Dataset, np.ndarray, list, dict),
            "a bool, a tf.data.Dataset or an array, list or dict of arrays of inputs",
        )
        if backup_dir is not None:
            backup_dir = os.fspath(
                _checks.instance("SWA", "backup_dir", backup_dir, (str, os.PathLike), "a folder path")
            )
        self.backup_dir = backup_dir
        self._averages, self._count, self._first_epoch, self._last_epoch = None, 0, None, None

    def __deepcopy__(self, memo):
        return type(self)(self.start_epoch, self.swa_lr, self.update_bn, self.backup_dir)

    def on_train_begin(self, logs=None):
        schedule = None if self.swa_lr is None else _compat.learning_rate_schedule(self.optimizer)
        if schedule is not None:
            raise TypeError(
                f"SWA: argument `swa_lr` needs an optimizer with a float learning rate, but its learning rate is a "
                f"schedule ({type(schedule).__name__}). Create the optimizer with a float `learning_rate`, or pass "
                f"`swa_lr=None` to keep the schedule. Received: swa_lr={self.swa_lr!r}"
            )
        if self.update_bn is True and _batch_norm_layers(self.model):
            raise ValueError(
                "SWA: argument `update_bn` must be the training inputs (a tf.data.Dataset or arrays), or False, for a "
                "model with BatchNormalization layers: a callback cannot see fit's data, and the averaged weights "
                "need statistics of their own. Pass `update_bn=train_dataset`. Received: update_bn=True"
            )
        self._averages, self._count, self._first_epoch, self._last_epoch = None, 0, None, None

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is None:
            self._first_epoch = epoch
            self._restore(epoch)
        if self.swa_lr is not None and epoch >= self.start_epoch:
            _compat.set_learning_rate(self.optimizer, self.swa_lr)

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        if epoch < self.start_epoch:
            return
        weights = [np.asarray(variable, "float64") for variable in self.model.trainable_variables]
        self._count += 1
        if self._averages is None:
            self._averages = weights
        else:
            self._averages = [average + (w - average) / self._count for average, w in zip(self._averages, weights)]
        if self.backup_dir is not None:
            self._save(epoch)

    def _backup_path(self, epoch):
        return os.path.join(self.backup_dir, f"swa-after-epoch-{epoch}.npz")

    def _save(self, epoch):
        """Writes the count and averages after `epoch` (atomically, from the chief) and deletes all but this and the
        previous epoch's, which a `BackupAndRestore` saved before this save may still need."""
        kept = {self._backup_path(epoch), self._backup_path(epoch - 1)}
        os.makedirs(self.backup_dir, exist_ok=True)
        _files.write_atomically(self._backup_path(epoch), lambda file: np.savez(file, self._count, *self._averages))
        if distribute.is_chief(self.model.distribute_strategy):
            for old in set(glob.glob(self._backup_path("*"))) - kept:
                os.remove(old)

    def _restore(self, first_epoch):
        """Takes the averages saved after epoch `first_epoch - 1` when `fit` resumes after averaging began: none (a new
        average) if a finished `fit` ended with that epoch."""
        if self.backup_dir is None or first_epoch <= self.start_epoch:
            return
        path = self._backup_path(first_epoch - 1)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"SWA: training resumes at epoch {first_epoch}, after averaging began at start_epoch="
                f"{self.start_epoch}, but argument `backup_dir` holds no averages of epoch {first_epoch - 1} ({path}), "
                f"nor the record of a finished fit ending with it. Resume with the `backup_dir` of the interrupted "
                f"run, or at the epoch after the last of the finished one. Received: backup_dir={self.backup_dir!r}"
            )
        with np.load(path) as saved:
            count, *averages = (saved[f"arr_{index}"] for index in range(len(saved.files)))
        self._count, self._averages = int(count), averages or None

    def _leave_finished_record(self):
        """Replaces the saved averages (now in the model) by a record, holding none, of the last epoch."""
        record = None
        if self._last_epoch is not None and self._last_epoch >= self.start_epoch:
            record = _files.write_atomically(self._backup_path(self._last_epoch), lambda file: np.savez(file, 0))
        if distribute.is_chief(self.model.distribute_strategy):
            for path in set(glob.glob(self._backup_path("*"))) - {record}:
                os.remove(path)

    def on_train_end(self, logs=None):
        if self._count == 0:
            warnings.warn(
                f"SWA: training ended before epoch start_epoch={self.start_epoch}, so there is nothing to average; "
                "the model keeps its last weights.",
                stacklevel=2,
            )
        else:
            for variable, average in zip(self.model.trainable_variables, self._averages):
                variable.assign(average)
            layers = _batch_norm_layers(self.model)
            if layers and not isinstance(self.update_bn, bool):
                self._recompute_batch_norm(layers)
        if self.backup_dir is not None:  # last: the saved averages outlive a failure above
            self._leave_finished_record()

    def _recompute_batch_norm(self, layers):
        momenta = [layer.momentum for layer in layers]
        try:
            for count, inputs in enumerate(_input_batches(self.update_bn), start=1):
                for layer in layers:
                    layer.momentum = (count - 1) / count
                self.model(inputs, training=True)
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
