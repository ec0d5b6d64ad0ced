"""The one place that knows Keras 3 from tf_keras (Keras 2, `TF_USE_LEGACY_KERAS=1`).

tf_keras is never imported here: an object of tf_keras can only exist once its user imported it, so
`sys.modules` is asked instead. Private attributes of either Keras are read here and nowhere else.

Example:
    >>> import keras
    >>> from tfopt import _compat
    >>> _compat.is_legacy(keras.optimizers.SGD())
    False
"""

import sys

import keras
import numpy as np


def is_legacy(obj):
    """True if `obj` (a model, layer, optimizer or schedule) belongs to tf_keras."""
    return any(cls.__module__.startswith("tf_keras") for cls in type(obj).__mro__)


def keras_of(obj):
    """The Keras module `obj` belongs to: `keras` (Keras 3) or `tf_keras`."""
    return sys.modules["tf_keras"] if is_legacy(obj) else keras


def generation(obj):
    """'tf_keras' or 'Keras 3', for error messages."""
    return "tf_keras" if is_legacy(obj) else "Keras 3"


def unwrap_optimizer(optimizer):
    """The optimizer that owns the hyper-parameters: looks through `LossScaleOptimizer` and similar wrappers."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def learning_rate_schedule(optimizer):
    """The schedule or callable the optimizer reads its learning rate from, or None for a settable float rate."""
    optimizer = unwrap_optimizer(optimizer)
    rate = getattr(optimizer, "_learning_rate", None)
    if rate is None and hasattr(optimizer, "_hyper"):  # tf_keras.optimizers.legacy
        rate = optimizer._hyper.get("learning_rate")
    if rate is None or isinstance(rate, (int, float)) or hasattr(rate, "assign"):
        return None
    return rate if callable(rate) else None


def set_learning_rate_schedule(optimizer, schedule):
    """Makes a (Keras 3) optimizer read its learning rate from `schedule`."""
    unwrap_optimizer(optimizer).learning_rate = schedule


def set_learning_rate(optimizer, value):
    """Assigns a float learning rate; the optimizer must have been created with a float rate."""
    unwrap_optimizer(optimizer).learning_rate = value


def learning_rate_setter(optimizer):
    """A function `value -> None` that sets the float learning rate, as cheaply as the optimizer allows.

    Per-batch callbacks call it every step: for a Keras 3 optimizer it assigns the backing `tf.Variable` directly
    (one eager op instead of Keras's checked setter).
    """
    inner = unwrap_optimizer(optimizer)
    rate = getattr(inner, "_learning_rate", None)
    if not is_legacy(inner) and isinstance(rate, keras.Variable):
        backing = rate.value
        return backing.assign
    return lambda value: set_learning_rate(inner, value)


def host_value(value):
    """A variable or tensor of either Keras (or a number) as a NumPy value.

    Through `.numpy()`: NumPy's own conversion of a multi-worker strategy's variable fails inside the strategy's
    scope ("object __array__ method not producing an array"), where tf_keras's `fit` runs its callbacks.
    """
    numpy = getattr(value, "numpy", None)
    return np.asarray(numpy() if callable(numpy) else value)


def learning_rate(optimizer):
    """The optimizer's current learning rate as a Python float (the schedule's value at the current step)."""
    inner = unwrap_optimizer(optimizer)
    schedule = learning_rate_schedule(inner)
    if schedule is not None:
        return float(host_value(schedule(inner.iterations)))
    return float(host_value(inner.learning_rate))


def optimizer_variables(optimizer):
    """Every state variable of the optimizer (iterations, slots, learning rate), Keras 3 and tf_keras alike."""
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


def build_optimizer(model):
    """Creates the optimizer's slots for `model`'s trainable weights if `fit` has not done so yet."""
    optimizer = model.optimizer
    if is_legacy(optimizer):
        if hasattr(optimizer, "build") and not getattr(optimizer, "_built", True):
            optimizer.build(model.trainable_variables)
    elif not optimizer.built:
        optimizer.build(model.trainable_variables)


def sublayers(layer):
    """The layers `layer` holds directly: a model's layers, a wrapper's `layer`, a QAT layer's folded BatchNorm."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def interpreter_ops(interpreter):
    """The op details (index, op_name, inputs, outputs) of a LiteRT/TFLite interpreter's graph."""
    return interpreter._get_ops_details()


def _overrides(callback, *hooks):
    return any(getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook) for hook in hooks)


class Callback(keras.callbacks.Callback):
    """`keras.callbacks.Callback` that also runs inside tf_keras's `fit`: the base of every tfopt callback.

    tf_keras's `CallbackList` asks each callback which batch hooks it implements through private methods that Keras 3
    callbacks lack; this base answers them, so one callback class serves both Kerases.
    """

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

    def _require_float_learning_rate(self, remedy):
        """Raises unless the optimizer was created with a float (settable) learning rate; `remedy` follows "<callback>:
        the optimizer's learning rate is already a schedule (<class>)" in the message, saying why and what to do."""
        schedule = learning_rate_schedule(self.optimizer)
        if schedule is not None:
            raise TypeError(f"{type(self).__name__}: the optimizer's learning rate is already a schedule "
                            f"({type(schedule).__name__}){remedy}")


# Keras 3 optimizer internals read by tfopt.optimizers (checked on keras 3.15.1). The private hooks the optimizers
# override (`_apply_weight_decay`, `_distributed_tf_update_step`) and every name read below are guarded by
# tests/optimizers/test_keras_hooks.py, which fails with the name that changed when Keras is upgraded.


def optimizer_variable_key(optimizer, variable):
    """The key a Keras 3 optimizer files `variable` under (the same for every replica of a mirrored variable)."""
    return optimizer._var_key(variable)


def optimizer_variable_index(optimizer, variable):
    """The position of `variable` among the variables the Keras 3 optimizer was built with (indexes its slots)."""
    return optimizer._get_variable_index(variable)


def accumulated_gradient(optimizer, variable):
    """What the Keras 3 optimizer has accumulated for `variable` under `gradient_accumulation_steps` (the sum of the
    current accumulation's earlier micro-batch gradients)."""
    return optimizer._accumulated_gradients[optimizer_variable_index(optimizer, variable)]


def optimizer_trainable_variables(optimizer):
    """The variables a built Keras 3 optimizer was built with, in build order."""
    return optimizer._trainable_variables


def optimizer_decays(optimizer, variable):
    """True unless `variable` was excluded with `optimizer.exclude_from_weight_decay(...)`."""
    return optimizer._use_weight_decay(variable)


def adam_slots(optimizer, variable):
    """`keras.optimizers.Adam`'s slots of `variable`: (first moment, second moment, AMSGrad maximum or None)."""
    index = optimizer._get_variable_index(variable)
    hats = optimizer._velocity_hats if optimizer.amsgrad else None
    return optimizer._momentums[index], optimizer._velocities[index], None if hats is None else hats[index]
