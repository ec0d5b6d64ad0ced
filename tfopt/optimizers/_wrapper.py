"""The base of tfopt's wrapper optimizers: a Keras 3 optimizer that hands every step to the `inner_optimizer` it wraps.

It follows Keras's `LossScaleOptimizer`: the wrapper owns only its own slots, while the learning rate, the step
counter, loss scaling and EMA finalisation stay the inner optimizer's. So `optimizer.learning_rate = x` (what
`tfopt.callbacks.LRScheduler` and Keras's `ReduceLROnPlateau` do) sets the inner rate, schedules count the inner
steps, a `LossScaleOptimizer` can sit inside, and wrappers nest: `Lookahead(GradientCentralization(Adam()))`.

Example:
    >>> import keras
    >>> from tfopt.optimizers._wrapper import OptimizerWrapper
    >>> class Halve(OptimizerWrapper):
    ...     def _wrapped_apply(self, grads, trainable_variables):
    ...         self.inner_optimizer.apply([g / 2 for g in grads], trainable_variables)
    >>> float(Halve(keras.optimizers.SGD(0.5)).learning_rate)
    0.5
"""

import keras

from tfopt import _checks


class OptimizerWrapper(keras.optimizers.Optimizer):
    """An optimizer that delegates to `inner_optimizer`; subclasses implement `_wrapped_apply`.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that takes the steps.
        name: the optimizer's name. Defaults to the class name.
    """

    def __init__(self, inner_optimizer, name=None):
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = _checks.instance(
            type(self).__name__, "inner_optimizer", inner_optimizer, keras.optimizers.Optimizer,
            "a Keras 3 optimizer (`keras.optimizers.Optimizer`)",
        )

    def build(self, var_list):
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    f"{type(self).__name__}: the optimizer is not built, so `apply(grads)` needs "
                    "`trainable_variables`. Pass them, or call `optimizer.build(variables)` first."
                )
            trainable_variables = self._trainable_variables
        else:
            trainable_variables = list(trainable_variables)
            if not self.built:
                self.build(trainable_variables)
        self._wrapped_apply(list(grads), trainable_variables)

    def _wrapped_apply(self, grads, trainable_variables):
        """One step: the subclass's work around `self.inner_optimizer.apply(grads, trainable_variables)`."""
        raise NotImplementedError

    @property
    def variables(self):
        return super().variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self):
        # Not `super().get_config()`: the base keywords (learning rate, clipping, EMA) are the inner optimizer's.
        return {"name": self.name, "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner_optimizer = keras.saving.deserialize_keras_object(
            config.pop("inner_optimizer"), custom_objects=custom_objects
        )
        return cls(inner_optimizer, **config)
