"""Yogi: Adam with an additive, sign-controlled second moment (Zaheer et al., 2018)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import adam_bias_correction, dense_gradient
from tfopt.optimizers._fused import FusedUpdateStep


@keras.saving.register_keras_serializable(package="tfopt")
class Yogi(FusedUpdateStep, keras.optimizers.Optimizer):
    """Yogi: Adam whose second moment moves by at most `(1 - beta_2) * g**2` per step, towards `g**2`.

    Adam's `v` forgets its past multiplicatively and can grow its effective rate fast when gradients become rare;
    Yogi's additive update lets `v` shrink only slowly. The update rule of tensorflow-addons' `Yogi` for a variable
    `w` with gradient `g` at step `t` (from 1):

    ```python
    m = beta_1 * m + (1 - beta_1) * g
    v = v - (1 - beta_2) * sign(v - g * g) * g * g      # v starts at initial_accumulator_value
    w = w - learning_rate * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)
    ```

    Conventions differ on the bias correction and on where `epsilon` sits; this follows tensorflow-addons 0.23:
    Adam's correction `sqrt(1 - beta_2**t) / (1 - beta_1**t)` multiplies the whole step, so `epsilon` is added to
    the uncorrected `sqrt(v)`, and the defaults are tensorflow-addons' (`epsilon=1e-3`, `m` starting at 0 and `v`
    at `initial_accumulator_value=1e-6`). The paper's Algorithm 2 has no bias correction. pytorch-optimizer 3.9
    adds `epsilon` after correcting `sqrt(v)` (`lr / (1 - beta_1**t) * m / (sqrt(v) / sqrt(1 - beta_2**t) +
    epsilon)`: this rule with `epsilon * sqrt(1 - beta_2**t)` for `epsilon`) and starts `m` at its initial
    accumulator too; no argument reproduces it, and the two agree as `epsilon` goes to 0.
    tensorflow-addons' l1/l2 proximal regularization and its `tanh` activation are left out; Keras's decoupled
    `weight_decay` (`w = w - learning_rate * weight_decay * w` before the step) is offered instead. A
    `tf.IndexedSlices` gradient is applied as the dense gradient it stands for.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.01`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1); `1 - beta_2` is the largest relative change of `v` per step. Defaults to `0.999`.
        epsilon: A float >= 0 added to `sqrt(v)`. Defaults to `1e-3`.
        initial_accumulator_value: A float > 0, the starting value of `v`. Defaults to `1e-6`.
        weight_decay: `None` or a float >= 0, Keras's decoupled weight decay. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.Yogi(learning_rate=0.1)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5, -0.5]), w)])
    >>> w.numpy().astype("float64").round(4).tolist()  # Adam's first step would be 0.1
    [0.9061, 2.0939]

    References:
        - [Zaheer et al., 2018](https://papers.nips.cc/paper/8186-adaptive-methods-for-nonconvex-optimization):
          Adaptive Methods for Nonconvex Optimization.
        - [tensorflow-addons `Yogi`](https://www.tensorflow.org/addons/api_docs/python/tfa/optimizers/Yogi)
    """

    def __init__(
        self,
        learning_rate=0.01,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-3,
        initial_accumulator_value=1e-6,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "Yogi"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.initial_accumulator_value = _checks.number(
            owner, "initial_accumulator_value", initial_accumulator_value, low=0, closed="neither"
        )

    def build(self, var_list):
        """Creates the first moment (zeros) and the second moment (`initial_accumulator_value`) of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list,
            ["momentum", "velocity"],
            initializer=["zeros", keras.initializers.Constant(self.initial_accumulator_value)],
        )

    def update_step(self, gradient, variable, learning_rate):
        """Applies one Yogi step to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        index = _compat.optimizer_variable_index(self, variable)
        m, v = self._momentums[index], self._velocities[index]
        squared = ops.square(gradient)
        self.assign(m, self.beta_1 * m + (1 - self.beta_1) * gradient)
        self.assign_sub(v, (1 - self.beta_2) * ops.sign(v - squared) * squared)
        step = ops.cast(self.iterations + 1, dtype)
        alpha = ops.cast(learning_rate, dtype) * adam_bias_correction(self.beta_1, self.beta_2, step)
        self.assign_sub(variable, alpha * m / (ops.sqrt(v) + self.epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "initial_accumulator_value": self.initial_accumulator_value,
            }
        )
        return config
