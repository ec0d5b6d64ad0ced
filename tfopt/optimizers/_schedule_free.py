"""What the schedule-free optimizers share: the interpolated training point `y` in the model's variables, the
averaging weights, and the swap to the averaged point `x` when training ends (ScheduleFreeSGD, ScheduleFreeRAdam)."""

import tensorflow as tf
from keras import ops

from tfopt import _compat
from tfopt.optimizers._common import DecayInUpdateRule
from tfopt.optimizers._fused import update_all_variables_at_once

# The averaging state, shared by all variables as in the reference's parameter group: the largest rate so far and
# the sum of the averaging weights.
_LR_MAX, _WEIGHT_SUM = range(2)


class ScheduleFree(DecayInUpdateRule):
    """A mixin for `keras.optimizers.Optimizer` subclasses that take schedule-free steps (Defazio et al., 2024).

    During training a variable holds `y = (1 - b) * z + b * x`, where `z` is the base optimizer's sequence, `x` the
    weighted average of `z` (the point to evaluate and ship) and `b` the subclass's `_interpolation`. Keras calls
    `finalize_variable_values` at the end of `fit`; it writes `x` into the variables, so `evaluate`, `predict`,
    `save` and export after `fit` see the averaged weights. The next training step puts `y` back first, so a later
    `fit` continues exactly. What `fit` sees before its end sees `y`: validation and callbacks during `fit`
    (`ModelCheckpoint`'s files, `EarlyStopping`'s best weights). `EarlyStopping(restore_best_weights=True)` writes
    its copy of `y` after `finalize_variable_values` has written `x`, so the model ends with that `y`, and a later
    `fit` would take it for `x`: with schedule-free optimizers, restore the best weights from a checkpoint instead.

    One step runs over all variables (TensorFlow backend), so that what all variables share (the start of `z`, the
    swap back to `y`, the rate and the averaging weight) is computed once per step, not once per variable.
    Subclasses implement `_directions(grads, variables, indices, learning_rate)`, returning the step's rate and
    each variable's step direction.
    """

    _interpolation = 0.9

    def _build_schedule_free(self, var_list):
        self._z = self.add_optimizer_variables(var_list, "z")
        self._averaging = self.add_variable((2,), "zeros", "float32", name="schedule_free_averaging")
        # 1.0 where a variable holds the averaged point x (after `finalize_variable_values`) rather than y
        self._holds_x = self.add_variable((len(var_list),), "zeros", "float32", name="schedule_free_holds_x")

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """One `_step` over all variables (`_fused.update_all_variables_at_once`)."""
        update_all_variables_at_once(distribution, self._averaging, grads_and_vars, learning_rate, self._step)

    def _step(self, grads, variables, learning_rate):
        """`y = lerp(y, z, c) + lr * (b * (1 - c) - 1) * d` and `z = z - lr * d` for each direction `d`."""
        indices = [_compat.optimizer_variable_index(self, variable) for variable in variables]
        self._begin_step(variables, indices)
        rate, directions = self._directions(grads, variables, indices, learning_rate)
        checkpoint = self._averaging_weight(rate)
        towards_step = rate * (self._interpolation * (1 - checkpoint) - 1)
        for variable, index, direction in zip(variables, indices, directions):
            dtype, z = variable.dtype, self._z[index]
            y = variable + (z - variable) * ops.cast(checkpoint, dtype)
            self.assign(variable, y + ops.cast(towards_step, dtype) * direction)
            self.assign_sub(z, ops.cast(rate, dtype) * direction)

    def _begin_step(self, variables, indices):
        """Starts `z` at the first step and puts `y` back into the variables that hold `x`, in one `cond` (one per
        variable costs ~0.1 ms each per step in a graph on CPU, where Keras doesn't use XLA)."""
        first = ops.equal(self.iterations, 0)

        def prepare():
            holds_x = ops.logical_and(ops.logical_not(first), self._holds_x > 0)
            for variable, index in zip(variables, indices):
                z = self._z[index]
                self.assign(z, ops.where(first, variable, z))
                self._hold(variable, z, ops.where(holds_x[index], 1 - self._interpolation, 0.0))
            stepped = ops.convert_to_tensor([index in indices for index in range(self._holds_x.shape[0])])
            self.assign(self._holds_x, ops.where(stepped, 0.0, self._holds_x))

        ops.cond(ops.logical_or(first, ops.max(self._holds_x) > 0), prepare, lambda: None)

    def _hold(self, variable, z, towards_z):
        self.assign(variable, variable + (z - variable) * ops.cast(towards_z, variable.dtype))

    def _averaging_weight(self, rate):
        """Updates the largest rate and the weight sum; returns `c = weight / weight_sum` (0 while it is 0)."""
        lr_max = ops.maximum(self._averaging[_LR_MAX], rate)
        step = ops.cast(self.iterations + 1, "float32")
        weight = ops.power(step, self.r) * ops.power(lr_max, self.weight_lr_power)
        weight_sum = self._averaging[_WEIGHT_SUM] + weight
        self.assign(self._averaging, ops.stack([lr_max, weight_sum]))
        return ops.where(weight_sum > 0, weight / ops.where(weight_sum > 0, weight_sum, 1.0), 0.0)

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
        indices = tuple(
            index
            for index, variable in enumerate(_compat.optimizer_trainable_variables(self))
            if id(variable) in wanted and self._z[index] is not None
        )
        if indices:
            self._write_x(indices)

    @tf.function
    def _write_x(self, indices):
        """The swap of `finalize_variable_values` as one graph: eagerly, its ~10 small ops per variable took 20 ms
        on the 12 variables of the digits CNN, more than a training step."""
        variables = _compat.optimizer_trainable_variables(self)
        trained = ops.logical_and(self.iterations > 0, self._holds_x == 0)
        for index in indices:
            self._hold(variables[index], self._z[index], ops.where(trained[index], 1 - 1 / self._interpolation, 0.0))
        swapped = ops.convert_to_tensor([index in indices for index in range(self._holds_x.shape[0])])
        self.assign(self._holds_x, ops.where(ops.logical_and(swapped, self.iterations > 0), 1.0, self._holds_x))
