"""Adan: adaptive Nesterov momentum from three moments of the gradient (Xie et al., 2022)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, debias, dense_gradient
from tfopt.optimizers._fused import FusedUpdateStep


@keras.saving.register_keras_serializable(package="tfopt")
class Adan(FusedUpdateStep, DecayInUpdateRule, keras.optimizers.Optimizer):
    """Adan: Nesterov momentum estimated from the gradient and its change, scaled by the second moment of both.

    The update rule of the authors' PyTorch implementation for a variable `w` with gradient `g` at step `t`
    (from 1); the betas are decay factors, so `beta` here is `1 - beta` in the paper's Algorithm 1:

    ```python
    diff = g - g_previous if t > 1 else 0
    m = beta_1 * m + (1 - beta_1) * g                         # gradient
    v = beta_2 * v + (1 - beta_2) * diff                      # gradient difference
    n = beta_3 * n + (1 - beta_3) * (g + beta_2 * diff) ** 2  # Nesterov gradient
    g_previous = g
    update = (m / (1 - beta_1**t) + beta_2 * v / (1 - beta_2**t)) / (sqrt(n / (1 - beta_3**t)) + epsilon)
    w = (w - learning_rate * update) / (1 + learning_rate * weight_decay)
    ```

    The decay is the proximal (division) form of the implementation's default `no_prox=False`. It is applied
    here in the step, not by the base optimizer, and skips the variables excluded with
    `exclude_from_weight_decay`. The implementation's `max_grad_norm` is Keras's `global_clipnorm`; the gradients
    stored for the difference are the clipped ones, as there.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        beta_1: A float in [0, 1), the decay of the gradient's moment. Defaults to `0.98`.
        beta_2: A float in [0, 1), the decay of the gradient difference's moment. Defaults to `0.92`.
        beta_3: A float in [0, 1), the decay of the second moment. Defaults to `0.99`.
        epsilon: A float >= 0 added to the denominator. Defaults to `1e-8`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.Adan(learning_rate=0.1, weight_decay=0.02)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5, -0.5]), w)])
    >>> [round(float(x), 6) for x in w.numpy()]  # step 1: a sign step, then the division by 1 + 0.1 * 0.02
    [0.898204, 2.095808]

    References:
        - [Xie et al., 2022](https://arxiv.org/abs/2208.06677): Adan: Adaptive Nesterov Momentum Algorithm for
          Faster Optimizing Deep Models.
        - [Authors' implementation](https://github.com/sail-sg/Adan)
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.98,
        beta_2=0.92,
        beta_3=0.99,
        epsilon=1e-8,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "Adan"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.beta_3 = _checks.fraction(owner, "beta_3", beta_3)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)

    def build(self, var_list):
        """Creates the three moments and the previous gradient of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._difference_momentums, self._velocities, self._previous_gradients = (
            self.add_optimizer_variables(
                var_list, ["momentum", "difference_momentum", "velocity", "previous_gradient"]
            )
        )

    def update_step(self, gradient, variable, learning_rate):
        """Applies one Adan step, and its weight decay, to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        index = _compat.optimizer_variable_index(self, variable)
        m, v, n = self._momentums[index], self._difference_momentums[index], self._velocities[index]
        previous = self._previous_gradients[index]
        difference = ops.where(ops.equal(self.iterations, 0), ops.zeros_like(gradient), gradient - previous)
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign_add(v, (difference - v) * (1 - self.beta_2))
        self.assign_add(n, (ops.square(gradient + self.beta_2 * difference) - n) * (1 - self.beta_3))
        self.assign(previous, gradient)

        step = ops.cast(self.iterations + 1, "float32")
        bias_1, bias_2, bias_3 = (debias(beta, step) for beta in (self.beta_1, self.beta_2, self.beta_3))
        denominator = ops.sqrt(n) / ops.cast(ops.sqrt(bias_3), dtype) + self.epsilon
        update = (m / ops.cast(bias_1, dtype) + v * ops.cast(self.beta_2 / bias_2, dtype)) / denominator
        lr = ops.cast(learning_rate, dtype)
        decay = self._decay_for(variable)
        if decay:
            self.assign(variable, (variable - lr * update) / (1 + lr * ops.cast(self.weight_decay, dtype)))
        else:
            self.assign_sub(variable, lr * update)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "beta_3": self.beta_3,
                "epsilon": self.epsilon,
            }
        )
        return config
