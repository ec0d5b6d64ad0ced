"""`ReduceLROnPlateau` that also works when the optimizer's learning rate is a schedule."""

import keras
import numpy as np

from tfopt import _checks, _compat
from tfopt.schedules.scaled import Scaled


def _optimizers(model):
    optimizer = model.optimizer
    return list(getattr(optimizer, "optimizers", [optimizer]))


class ReduceLROnPlateau(_compat.Callback, keras.callbacks.ReduceLROnPlateau):
    """Reduces the learning rate when a metric has stopped improving, float rates and schedules alike.

    Keras's own `ReduceLROnPlateau` raises a `TypeError` when the optimizer's learning rate is a
    `LearningRateSchedule`. This one scales the schedule instead of replacing it: at the start of `fit` the schedule
    is wrapped in `tfopt.schedules.Scaled`, and each reduction multiplies its factor, so warm-up, decay or cycles keep
    their shape at a lower level. With a float rate it behaves exactly as Keras's callback. On a tf_keras model it
    hands every epoch to tf_keras's own `ReduceLROnPlateau`, which reads the rate as tf_keras's multi-worker `fit`
    allows (float rates only there).

    ```python
    if monitor has not improved by min_delta for `patience` epochs (outside cooldown):
        float rate:  lr = max(lr * factor, min_lr)
        schedule:    scale = max(scale * factor, min_lr / schedule(step))    # lr(step) = scale * schedule(step)
    ```

    Args:
        monitor: the logged quantity to watch. Defaults to `"val_loss"`.
        factor: the rate is multiplied by it, in (0, 1). Defaults to 0.1.
        patience: epochs without improvement before a reduction. Defaults to 10.
        verbose: 1 prints each reduction. Defaults to 0.
        mode: `"auto"`, `"min"` or `"max"`. Defaults to `"auto"`.
        min_delta: the smallest change that counts as improvement. Defaults to 1e-4.
        cooldown: epochs to wait after a reduction before counting again. Defaults to 0.
        min_lr: the rate is never reduced below it (for a schedule: at the step of the reduction). Defaults to 0.

    Example:
        >>> import keras, tfopt
        >>> optimizer = keras.optimizers.Adam(tfopt.schedules.OneCycle(max_lr=1e-2, total_steps=1000))
        >>> callback = tfopt.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2)
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        owner = "ReduceLROnPlateau"
        _checks.instance(owner, "monitor", monitor, str, "the name of a logged quantity (a string)")
        _checks.integer(owner, "verbose", verbose, low=0)
        _checks.number(owner, "factor", factor, low=0, high=1, closed="neither")
        _checks.integer(owner, "patience", patience, low=0)
        _checks.integer(owner, "cooldown", cooldown, low=0)
        _checks.number(owner, "min_lr", min_lr, low=0)
        _checks.number(owner, "min_delta", min_delta, low=0)
        _checks.choice(owner, "mode", mode, ("auto", "min", "max"))
        super().__init__(monitor=monitor, factor=factor, patience=patience, verbose=verbose, mode=mode,
                         min_delta=min_delta, cooldown=cooldown, min_lr=min_lr)
        self._legacy = None  # tf_keras's ReduceLROnPlateau while a tf_keras model trains

    def on_train_begin(self, logs=None):
        self._legacy = None
        if _compat.is_legacy(self.model):
            self._legacy = self._tf_keras_callback()
            self._legacy.set_model(self.model)
            self._legacy.on_train_begin(logs)
        super().on_train_begin(logs)
        wrapped = False
        for optimizer in _optimizers(self.model):
            schedule = _compat.learning_rate_schedule(optimizer)
            if schedule is None or isinstance(schedule, Scaled):
                continue
            if _compat.is_legacy(optimizer):
                raise TypeError(
                    "ReduceLROnPlateau: scaling a learning-rate schedule needs a Keras 3 optimizer; this tf_keras "
                    "optimizer has a schedule. Create it with a float `learning_rate` or use a Keras 3 model."
                )
            if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
                raise TypeError(
                    f"ReduceLROnPlateau: the optimizer's `learning_rate` must be a float (which it lowers) or a "
                    f"keras.optimizers.schedules.LearningRateSchedule (which it scales); a plain function can be "
                    f"neither lowered nor scaled. Create {type(_compat.unwrap_optimizer(optimizer)).__name__} with "
                    f"one of those. Received: learning_rate={schedule!r}"
                )
            with self.model.distribute_strategy.scope():
                _compat.set_learning_rate_schedule(optimizer, Scaled(schedule))
            wrapped = True
        if wrapped:  # a train function traced by an earlier fit still reads the unwrapped schedule
            self.model.make_train_function(force=True)

    def _tf_keras_callback(self):
        import tf_keras  # noqa: PLC0415 - only a tf_keras model's fit gets here

        return tf_keras.callbacks.ReduceLROnPlateau(
            monitor=self.monitor, factor=self.factor, patience=self.patience, verbose=self.verbose, mode=self.mode,
            min_delta=self.min_delta, cooldown=self.cooldown, min_lr=self.min_lr,
        )

    def on_epoch_end(self, epoch, logs=None):
        if self._legacy is None:
            return super().on_epoch_end(epoch, logs)
        self._legacy.on_epoch_end(epoch, logs)
        if logs is not None and "lr" in logs:  # logged under Keras 3's name, as with a Keras 3 model
            logs["learning_rate"] = logs.pop("lr")
        return None

    def _reduce_optimizer_lr(self, optimizer, epoch, name=""):
        schedule = _compat.learning_rate_schedule(optimizer)
        if schedule is None:
            return super()._reduce_optimizer_lr(optimizer, epoch, name)
        current = _compat.learning_rate(optimizer)
        if current <= np.float32(self.min_lr):
            return False
        scale = float(keras.ops.convert_to_numpy(schedule.scale))
        new_scale = max(scale * self.factor, self.min_lr / (current / scale))
        schedule.set_scale(new_scale)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau scales the{' ' + name if name else ''} learning-rate "
                  f"schedule by {new_scale:.4g} (rate now {current * new_scale / scale:.4g}).")
        return True
