"""StableAdamW: AdamW whose step size is divided by the RMS of `g / sqrt(v)` when it exceeds 1 (Wortsman et al.)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, debias, dense_gradient
from tfopt.optimizers._fused import FusedUpdateStep


@keras.saving.register_keras_serializable(package="tfopt")
class StableAdamW(FusedUpdateStep, DecayInUpdateRule, keras.optimizers.Optimizer):
    """StableAdamW: AdamW with AdaFactor's update clipping, per variable, against loss spikes.

    The update rule for a variable `w` with gradient `g` at step `t` (from 1); the moments are kept bias-corrected
    by decaying them with the corrected betas:

    ```python
    if weight_decay and not decoupled_weight_decay:
        g = g + weight_decay * w                                   # L2 penalty
    beta_1_t = beta_1 * (1 - beta_1**(t - 1)) / (1 - beta_1**t)     # 0 at t = 1
    beta_2_t = beta_2 * (1 - beta_2**(t - 1)) / (1 - beta_2**t)
    m = beta_1_t * m + (1 - beta_1_t) * g
    v = beta_2_t * v + (1 - beta_2_t) * g * g
    rate = learning_rate / maximum(1, sqrt(mean(g * g / maximum(v, epsilon**2))))   # the mean over w's elements
    if weight_decay and decoupled_weight_decay:
        w = w - rate * weight_decay * w                            # decay scaled by the clipped rate
    w = w - rate * m / (sqrt(v) + epsilon)
    ```

    This is Algorithm 2 of the paper as pytorch-optimizer 4.1.0's `StableAdamW` writes it, with its defaults
    (`beta_2=0.99`, `weight_decay=0.01`, decoupled). Its `kahan_sum` only acts on float16/bfloat16 variables,
    which Keras doesn't train (under `mixed_float16` the variables stay float32), and is left out. The decay skips
    the variables excluded with `exclude_from_weight_decay`.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.99`.
        epsilon: A float >= 0 added to `sqrt(v)` (its square floors `v` in the RMS). Defaults to `1e-8`.
        decoupled_weight_decay: A bool. If `True`, `weight_decay` shrinks the variables by the clipped rate, as in
            AdamW; if `False`, it is an L2 penalty added to the gradient. Defaults to `True`.
        weight_decay: `None` or a float >= 0. Defaults to `0.01`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.StableAdamW(learning_rate=0.1, weight_decay=0.0)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5, -0.5]), w)])
    >>> [round(float(x), 6) for x in w.numpy()]  # step 1: v = g * g, the RMS is 1, a sign step
    [0.9, 2.1]

    References:
        - [Wortsman et al., 2023](https://arxiv.org/abs/2304.13013): Stable and low-precision training for
          large-scale vision-language models.
        - [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `StableAdamW`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.99,
        epsilon=1e-8,
        decoupled_weight_decay=True,
        weight_decay=0.01,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "StableAdamW"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.decoupled_weight_decay = _checks.boolean(owner, "decoupled_weight_decay", decoupled_weight_decay)

    def build(self, var_list):
        """Creates the bias-corrected first and second moment of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])

    def update_step(self, gradient, variable, learning_rate):
        """Applies one StableAdamW step, and its weight decay, to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        decay = self._decay_for(variable)
        if decay and not self.decoupled_weight_decay:
            gradient = gradient + ops.cast(decay, dtype) * variable
        index = _compat.optimizer_variable_index(self, variable)
        m, v = self._momentums[index], self._velocities[index]
        step = ops.cast(self.iterations + 1, dtype)
        # 1 - beta_t = (1 - beta) / (1 - beta**t), exact in float32 through `debias`
        gain_1, gain_2 = ((1 - beta) / debias(beta, step) for beta in (self.beta_1, self.beta_2))
        square = ops.square(gradient)
        self.assign_add(m, (gradient - m) * gain_1)
        self.assign_add(v, (square - v) * gain_2)
        rms = ops.sqrt(ops.mean(square / ops.maximum(v, self.epsilon**2)))
        rate = ops.cast(learning_rate, dtype) / ops.maximum(rms, 1.0)
        updated = variable
        if decay and self.decoupled_weight_decay:
            updated = updated * (1 - rate * decay)
        self.assign(variable, updated - rate * m / (ops.sqrt(v) + self.epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "decoupled_weight_decay": self.decoupled_weight_decay,
            }
        )
        return config
