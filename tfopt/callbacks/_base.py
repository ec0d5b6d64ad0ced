"""The base of tfopt's callbacks: a Keras 3 callback that tf_keras's `fit` accepts as well.

tf_keras's `CallbackList` asks each callback which batch hooks it implements through private methods that Keras 3
callbacks lack; this base answers them, so one callback class serves both Kerases.

Example:
    >>> from tfopt.callbacks._base import Callback
    >>> class PrintEpoch(Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         print(epoch)
"""

import keras

from tfopt import _compat


def _overrides(callback, *hooks):
    return any(getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook) for hook in hooks)


class Callback(keras.callbacks.Callback):
    """`keras.callbacks.Callback` that also runs inside tf_keras's `fit`."""

    _supports_tf_logs = False

    def _implements_train_batch_hooks(self):
        return _overrides(self, "on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")

    def _implements_test_batch_hooks(self):
        return _overrides(self, "on_test_batch_begin", "on_test_batch_end")

    def _implements_predict_batch_hooks(self):
        return _overrides(self, "on_predict_batch_begin", "on_predict_batch_end")

    @property
    def optimizer(self):
        """The optimizer of the model being fit, or a clear error if it has none."""
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                f"{type(self).__name__}: the model has no optimizer. Call `model.compile(optimizer=...)` before `fit`."
            )
        return optimizer

    def _require_float_learning_rate(self):
        """Raises unless the optimizer was created with a float (settable) learning rate."""
        schedule = _compat.learning_rate_schedule(self.optimizer)
        if schedule is not None:
            raise TypeError(
                f"{type(self).__name__}: the optimizer's learning rate is already a schedule "
                f"({type(schedule).__name__}), so it cannot be set each step. Create the optimizer with a float "
                f"`learning_rate` and give the schedule to {type(self).__name__} instead."
            )
