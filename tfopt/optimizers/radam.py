"""RAdam: Adam with the variance of its adaptive learning rate rectified (Liu et al., 2019)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import SwitchableDecay, debias, dense_gradient, rectification
from tfopt.optimizers._fused import FusedUpdateStep


@keras.saving.register_keras_serializable(package="tfopt")
class RAdam(FusedUpdateStep, SwitchableDecay, keras.optimizers.Optimizer):
    """Rectified Adam: Adam without its early steps' variance, an automatic warm-up of the adaptive rate.

    The update rule of PyTorch's `torch.optim.RAdam` for a variable `w` with gradient `g` at step `t` (from 1):

    ```python
    if weight_decay and decoupled_weight_decay:
        w = w - learning_rate * weight_decay * w   # before the step, as AdamW
    elif weight_decay:
        g = g + weight_decay * w                   # L2 penalty, after gradient clipping
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    m_hat = m / (1 - beta_1**t)
    rho_inf = 2 / (1 - beta_2) - 1
    rho_t = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
    if rho_t > 5:
        r_t = sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        w = w - learning_rate * m_hat * r_t * sqrt(1 - beta_2**t) / (sqrt(v) + epsilon)
    else:
        w = w - learning_rate * m_hat              # un-adapted momentum step
    ```

    The paper's rule is followed as PyTorch implements it: `epsilon` is added to `sqrt(v)` before the bias
    correction `sqrt(1 - beta_2**t)` multiplies the step, and the threshold is `rho_t > 5`. With the defaults the
    first 5 steps are un-adapted momentum steps. Both kinds of weight decay skip the variables excluded with
    `exclude_from_weight_decay`.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.999`.
        epsilon: A float >= 0 added to `sqrt(v)`. Defaults to `1e-8`.
        decoupled_weight_decay: A bool. If `True`, `weight_decay` shrinks the variables before the step as in
            AdamW (RAdamW); if `False`, it is an L2 penalty added to the gradient. Defaults to `False`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.RAdam(learning_rate=0.1)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5, -0.5]), w)])
    >>> [round(float(x), 6) for x in w.numpy()]  # step 1: rho_1 = 1, an un-adapted momentum step
    [0.95, 2.05]

    References:
        - [Liu et al., 2019](https://arxiv.org/abs/1908.03265): On the Variance of the Adaptive Learning Rate and
          Beyond.
        - [PyTorch `RAdam`](https://pytorch.org/docs/stable/generated/torch.optim.RAdam.html)
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        decoupled_weight_decay=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "RAdam"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.decoupled_weight_decay = _checks.boolean(owner, "decoupled_weight_decay", decoupled_weight_decay)

    def build(self, var_list):
        """Creates the first and second moment of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])


    def update_step(self, gradient, variable, learning_rate):
        """Applies one RAdam step to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        gradient = self._with_l2(gradient, variable)
        index = _compat.optimizer_variable_index(self, variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))

        step = ops.cast(self.iterations + 1, "float32")
        rho, factor = rectification(self.beta_2, step)
        scale = ops.cast(learning_rate, dtype) / ops.cast(debias(self.beta_1, step), dtype)
        adaptive = ops.cast(factor, dtype) / (ops.sqrt(v) + self.epsilon)
        self.assign_sub(variable, scale * m * ops.where(rho > 5, adaptive, 1.0))

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
