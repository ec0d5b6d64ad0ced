"""`LRScheduler`: drives an optimizer's learning rate from a schedule, batch by batch or epoch by epoch."""

import keras
import numpy as np

from tfopt import _checks, _compat

_TABLE_SIZE = 1024


class _ScheduleTable:
    """Values of a schedule, evaluated a block of steps at a time so each batch only indexes an array.

    A schedule that cannot take a vector of steps (a plain Python function, say) is called step by step instead.
    """

    def __init__(self, schedule):
        self.schedule = schedule
        self._first = None
        self._values = None
        self._vectorised = True

    def _fill(self, step):
        steps = np.arange(step, step + _TABLE_SIZE, dtype="int64")
        try:
            values = np.asarray(keras.ops.convert_to_numpy(self.schedule(keras.ops.convert_to_tensor(steps))))
        except Exception:  # noqa: BLE001 - a scalar-only schedule; the per-step call below reports real errors
            values = None
        if values is None or values.shape != steps.shape:
            self._vectorised = False
            return
        self._first, self._values = step, values.astype("float64")

    def __call__(self, step):
        if self._vectorised and (self._first is None or not 0 <= step - self._first < _TABLE_SIZE):
            self._fill(step)
        if self._vectorised:
            return float(self._values[step - self._first])
        return float(np.asarray(keras.ops.convert_to_numpy(self.schedule(step))))


class LRScheduler(_compat.Callback):
    """Sets the optimizer's learning rate from a schedule before every batch (or epoch).

    Use it to put any `LearningRateSchedule` (tfopt's or Keras's) or any function of the step on an optimizer that
    was created with a float learning rate, Keras 3 and tf_keras alike, without rebuilding the optimizer. The rate
    used in each epoch's last step is written to the epoch logs as `learning_rate`, so it lands in `History`.

    ```python
    step = optimizer.iterations at the start of fit   # unit="batch": resumes where training stopped
    before each batch:  optimizer.learning_rate = schedule(step); step += 1
    unit="epoch":       optimizer.learning_rate = schedule(epoch) before each epoch
    ```

    Args:
        schedule: a `keras.optimizers.schedules.LearningRateSchedule` or a function `step -> learning rate`.
        unit: `"batch"` (the schedule counts optimizer steps) or `"epoch"` (it counts epochs). Defaults to
            `"batch"`.
        verbose: 1 prints the rate at the start of each epoch. Defaults to 0.

    Example:
        >>> import keras, numpy as np, tfopt
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.1), "mse")
        >>> schedule = tfopt.schedules.OneCycle(max_lr=0.1, total_steps=8)
        >>> history = model.fit(np.ones((32, 4)), np.ones((32, 1)), batch_size=8, epochs=2, verbose=0,
        ...                     callbacks=[tfopt.callbacks.LRScheduler(schedule)])
        >>> len(history.history["learning_rate"])
        2
    """

    def __init__(self, schedule, unit="batch", verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                f"{type(self).__name__}: argument `schedule` must be a LearningRateSchedule or a function of the "
                f"step. Received: schedule={schedule!r}"
            )
        self.schedule = schedule
        self.unit = _checks.choice(type(self).__name__, "unit", unit, ("batch", "epoch"))
        self.verbose = _checks.integer(type(self).__name__, "verbose", verbose, low=0)
        self._table = None
        self._set_rate = None
        self._step = 0
        self._last_rate = None

    def on_train_begin(self, logs=None):
        self._require_float_learning_rate()
        self._table = _ScheduleTable(self.schedule)
        self._set_rate = _compat.learning_rate_setter(self.optimizer)
        self._step = None  # read at the first epoch: after every callback's on_train_begin (BackupAndRestore's)
        self._last_rate = None

    def _current_step(self):
        if self._step is None:
            self._step = int(_compat.host_value(self.optimizer.iterations))
            self._first_step(self._step)
        return self._step

    def _first_step(self, step):
        self._table(step)  # evaluates the first block of rates now, not inside the first batch

    def _apply(self, step):
        rate = self._table(step)
        if rate != self._last_rate:
            self._set_rate(rate)
            self._last_rate = rate
        return rate

    def on_epoch_begin(self, epoch, logs=None):
        step = self._current_step()
        if self.unit == "epoch":
            self._apply(epoch)
        if self.verbose:
            rate = self._table(epoch if self.unit == "epoch" else step)
            print(f"\nEpoch {epoch + 1}: {type(self).__name__} sets the learning rate to {rate:.4g}.")

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "batch":
            self._apply(self._current_step())
            self._step += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._last_rate is not None:
            logs["learning_rate"] = self._last_rate

    def on_train_end(self, logs=None):
        self._set_rate = None  # holds the optimizer's variable; a deep copy of the callback should not
