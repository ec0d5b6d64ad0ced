"""What the schedule-free optimizers share: the interpolated training point `y` in the model's variables, the
averaging weights, and the swap to the averaged point `x` when training ends (ScheduleFreeSGD, ScheduleFreeRAdam)."""

from keras import ops

from tfopt import _compat
from tfopt.optimizers._common import DecayInUpdateRule

# A variable's scalar state: the largest rate so far, the sum of the averaging weights, and 1.0 while the variable
# holds the averaged point x (after `finalize_variable_values`) rather than the training point y.
_LR_MAX, _WEIGHT_SUM, _HOLDS_X = range(3)


class ScheduleFree(DecayInUpdateRule):
    """A mixin for `keras.optimizers.Optimizer` subclasses that take schedule-free steps (Defazio et al., 2024).

    During training a variable holds `y = (1 - b) * z + b * x`, where `z` is the base optimizer's sequence, `x` the
    weighted average of `z` (the point to evaluate and ship) and `b` the subclass's `_interpolation`. Keras calls
    `finalize_variable_values` at the end of `fit`; it writes `x` into the variables, so `evaluate`, `predict`,
    `save` and export after `fit` see the averaged weights. The next training step puts `y` back first, so a later
    `fit` continues exactly. Subclasses call `_begin_step` and `_end_step` in `update_step`.
    """

    _interpolation = 0.9

    def _build_schedule_free(self, var_list):
        self._z = self.add_optimizer_variables(var_list, "z")
        self._schedule_free_state = [
            self.add_variable((3,), "zeros", "float32", name=f"schedule_free_state_{i}") for i in range(len(var_list))
        ]

    def _begin_step(self, variable, index):
        """Starts `z` at the first step and puts `y` back if the variable holds `x`; returns `(z, state)`.

        One `cond` for both (each costs ~0.1 ms per variable and step in a graph on CPU, where Keras doesn't use XLA).
        """
        z, state = self._z[index], self._schedule_free_state[index]
        first = ops.equal(self.iterations, 0)

        def prepare():
            self.assign(z, ops.where(first, variable, z))
            self._hold(variable, z, state, ops.where(first, 0.0, 1 - self._interpolation), 0.0)

        ops.cond(ops.logical_or(first, state[_HOLDS_X] > 0), prepare, lambda: None)
        return z, state

    def _hold(self, variable, z, state, towards_z, holds_x):
        self.assign(variable, variable + (z - variable) * ops.cast(towards_z, variable.dtype))
        self.assign(state, ops.stack([state[_LR_MAX], state[_WEIGHT_SUM], ops.cast(holds_x, "float32")]))

    def _averaging_weight(self, state, rate):
        """Updates the largest rate and the weight sum; returns `c = weight / weight_sum` (0 while it is 0)."""
        lr_max = ops.maximum(state[_LR_MAX], rate)
        step = ops.cast(self.iterations + 1, "float32")
        weight = ops.power(step, self.r) * ops.power(lr_max, self.weight_lr_power)
        weight_sum = state[_WEIGHT_SUM] + weight
        self.assign(state, ops.stack([lr_max, weight_sum, state[_HOLDS_X]]))
        return ops.where(weight_sum > 0, weight / ops.where(weight_sum > 0, weight_sum, 1.0), 0.0)

    def _end_step(self, variable, z, direction, rate, checkpoint):
        """`y = lerp(y, z, c) + lr * (b * (1 - c) - 1) * d` and `z = z - lr * d` for the step direction `d`."""
        dtype = variable.dtype
        rate, checkpoint = ops.cast(rate, dtype), ops.cast(checkpoint, dtype)
        y = variable + (z - variable) * checkpoint
        self.assign(variable, y + rate * (self._interpolation * (1 - checkpoint) - 1) * direction)
        self.assign_sub(z, rate * direction)

    def _decayed(self, gradient, variable):
        """The schedule-free decay: `weight_decay * y` added to the step direction, at the point `y`."""
        decay = self._decay_for(variable)
        return gradient + ops.cast(decay, variable.dtype) * variable if decay else gradient

    def finalize_variable_values(self, var_list):
        """Writes the averaged point `x = y + (1 - 1 / b) * (z - y)` into the variables (the end of `fit`)."""
        super().finalize_variable_values(var_list)
        if not self.built:
            return
        wanted = {id(variable) for variable in var_list}
        for index, variable in enumerate(_compat.optimizer_trainable_variables(self)):
            if id(variable) not in wanted or self._z[index] is None:
                continue
            state, z = self._schedule_free_state[index], self._z[index]
            trained = ops.logical_and(self.iterations > 0, state[_HOLDS_X] == 0)
            towards_z = ops.where(trained, 1 - 1 / self._interpolation, 0.0)
            self._hold(variable, z, state, towards_z, ops.where(trained, 1.0, state[_HOLDS_X]))
