"""`LRScheduler`: drives an optimizer's learning rate from a schedule, batch by batch or epoch by epoch."""

import keras
import numpy as np

from tfopt import _checks, _compat
from tfopt.schedules.one_cycle import OneCycle

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
    was created with a float learning rate, Keras 3 and tf_keras alike, without rebuilding the optimizer. The rate the
    optimizer holds at each epoch's end (the one its last step used) is written to the epoch logs as `learning_rate`,
    so it lands in `History`.

    ```python
    unit="batch":  before each train function call:             # resumes where training stopped
                       step = optimizer.iterations at the epoch's start + the call's first batch in the epoch
                       optimizer.learning_rate = schedule(step)
    unit="epoch":  optimizer.learning_rate = schedule(epoch) before each epoch
    ```

    The step is the one a schedule given to the optimizer would see. A callback runs once per train function call,
    so with `compile(steps_per_execution=k)` the rate changes once every k steps: the k steps of a call all use the
    rate of the call's first step. With `gradient_accumulation_steps`, each batch is a step, as for a schedule on the
    optimizer. The callback is the one writer of the rate: if another callback (`ReduceLROnPlateau`,
    `LearningRateScheduler`, `SWA(swa_lr=...)`) changes it during `fit`, it raises a `ValueError` at the next epoch's
    start or end, rather than overwriting the change or letting it stand by turns. To lower a schedule when a metric
    stalls, give the schedule to the optimizer (`learning_rate=schedule`) and use `tfopt.callbacks.ReduceLROnPlateau`,
    which scales it.

    A `tfopt.schedules.OneCycle` ends at its `total_steps`: if `fit` would run past them (counting the steps the
    optimizer has already taken, or the epochs with `unit="epoch"`), the callback raises a `ValueError` before the
    first epoch, or, for a dataset of unknown length, at the first batch past the cycle, as PyTorch's `OneCycleLR`
    does, rather than train on at the cycle's final rate.

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

    _total_steps_owner = "the OneCycle schedule's `total_steps`"  # what errors call a OneCycle's `total_steps`
    _float_rate_remedy = (", so it cannot be set each step. Create the optimizer with a float `learning_rate` and "
                          "give the schedule to LRScheduler instead.")

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
        self._epoch_start = None
        self._last_call = None
        self._last_rate = None
        self._check_pending = False
        self._cycle_steps = schedule.total_steps if isinstance(schedule, OneCycle) else None

    def on_train_begin(self, logs=None):
        self._require_float_learning_rate(self._float_rate_remedy)
        self._table = _ScheduleTable(self.schedule)
        self._set_rate = _compat.learning_rate_setter(self.optimizer)
        self._epoch_start = self._last_call = self._last_rate = None

    def _step_at_epoch_start(self):
        """The optimizer step the epoch starts at, read at its start: after every callback's on_train_begin
        (BackupAndRestore's) and after a last call of the epoch before that may have run fewer steps."""
        accumulation = getattr(_compat.unwrap_optimizer(self.optimizer), "gradient_accumulation_steps", None) or 1
        if accumulation == 1 or self._last_call is None:
            return int(_compat.host_value(self.optimizer.iterations)) * accumulation
        # Keras 3's `iterations` counts updates here, a schedule on the optimizer batches: go on from the last call
        per_call, steps = getattr(self.model, "steps_per_execution", 1), (self.params or {}).get("steps")
        epoch_start, batch = self._last_call
        return epoch_start + batch + (per_call if not steps else min(per_call, steps - batch))

    def _check_cycle_covers_fit(self, epoch):
        """Raises if this `fit`, from `epoch` on, would run a OneCycle schedule past its `total_steps`; for a
        dataset of unknown length (the steps of an epoch unknown), `on_train_batch_begin` checks each batch."""
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        if self.unit == "epoch":
            first, count, runs = epoch, epochs - epoch, f"{epochs - epoch} epochs"
            done = f" from epoch {first}, {epochs} in all"
        elif steps:
            first, count, runs = self._epoch_start, (epochs - epoch) * steps, f"{epochs - epoch} epochs x {steps} steps"
            done = (f" after the {first} steps the optimizer has already taken, {first + count} in all (to start a "
                    "new cycle at step 0, compile the model with a new optimizer)")
        else:
            return
        if first + count > self._cycle_steps:
            raise ValueError(self._past_cycle_message(f"this `fit` runs {runs}{done if first else ''}", first + count))

    def _past_cycle_message(self, runs, needed=None):
        name = type(self).__name__
        unit, count = ("epochs", "epochs") if self.unit == "epoch" else ("optimizer steps", "epochs x steps_per_epoch")
        fix = f"total_steps={needed} ({count})" if needed else f"total_steps={count}"
        return (
            f"{name}: {self._total_steps_owner} must cover the {unit} of `fit`. "
            f"Received: total_steps={self._cycle_steps}, but {runs}. "
            f"Past `total_steps` the rate would stay at the cycle's final value, max_lr / div_factor / "
            f"final_div_factor. Pass {fix}, or fit fewer epochs."
        )

    def _prefill(self, step):
        self._table(step)  # evaluates the block of rates from `step` now, not inside a batch

    def _check_rate_unchanged(self):
        """The rate the optimizer holds; raises if another callback changed it since this one set it."""
        held = _compat.learning_rate(self.optimizer)
        if np.float32(held) != np.float32(self._last_rate):
            name = type(self).__name__
            raise ValueError(
                f"{name}: the optimizer's learning rate was changed by something other than {name} during `fit`: it "
                f"holds {held:.6g}, but {name} last set {self._last_rate:.6g}. Another callback (ReduceLROnPlateau, "
                f"LearningRateScheduler, SWA's `swa_lr`, ...) also sets the rate, and the two would overwrite each "
                f"other. Keep one of them: to lower a schedule when a metric stalls, give the schedule to the "
                f"optimizer (`learning_rate=schedule`) instead of {name}, and use tfopt.callbacks.ReduceLROnPlateau, "
                f"which scales it."
            )
        return held

    def _apply(self, step):
        rate = self._table(step)
        if self._check_pending and self._last_rate is not None:
            self._check_rate_unchanged()
        self._check_pending = False
        if rate != self._last_rate:
            self._set_rate(rate)
            self._last_rate = rate
        return rate

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step_at_epoch_start()
        if self._cycle_steps is not None:
            self._check_cycle_covers_fit(epoch)
        self._prefill(epoch if self.unit == "epoch" else self._epoch_start)
        self._check_pending = True  # at the first `_apply`: after the other callbacks' on_epoch_begin (batch unit)
        if self.unit == "epoch":
            self._apply(epoch)
        if self.verbose:
            rate = self._table(epoch if self.unit == "epoch" else self._epoch_start)
            print(f"\nEpoch {epoch + 1}: {type(self).__name__} sets the learning rate to {rate:.4g}.")

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "batch":  # `batch`: the call's first step in the epoch (Keras 3 and tf_keras alike)
            step = self._epoch_start + batch
            if self._cycle_steps is not None and step >= self._cycle_steps:  # a dataset of unknown length
                raise ValueError(self._past_cycle_message(
                    f"`fit` reached step {step + 1} (the dataset's length is unknown, so this could not be checked "
                    "before `fit`)"))
            self._apply(step)
            self._last_call = (self._epoch_start, batch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._last_rate is not None:
            logs["learning_rate"] = self._check_rate_unchanged()

    def on_train_end(self, logs=None):
        self._set_rate = None  # holds the optimizer's variable; a deep copy of the callback should not
