"""QHAdam: Adam with quasi-hyperbolic moments, mixing each moment with the current gradient (Ma & Yarats, 2019)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import SwitchableDecay, debias, dense_gradient
from tfopt.optimizers._fused import FusedUpdateStep


@keras.saving.register_keras_serializable(package="tfopt")
class QHAdam(FusedUpdateStep, SwitchableDecay, keras.optimizers.Optimizer):
    """QHAdam: Adam whose step averages each bias-corrected moment with the current gradient (weights `nu`).

    The update rule for a variable `w` with gradient `g` at step `t` (from 1):

    ```python
    if weight_decay and decoupled_weight_decay:
        w = w - learning_rate * weight_decay * w   # before the step, as AdamW
    elif weight_decay:
        g = g + weight_decay * w                   # L2 penalty
    m = m + (g - m) * (1 - beta_1) / (1 - beta_1**t)           # bias-corrected moments
    v = v + (g * g - v) * (1 - beta_2) / (1 - beta_2**t)
    w = w - learning_rate * (nu_1 * m + (1 - nu_1) * g) / (sqrt(nu_2 * v + (1 - nu_2) * g * g) + epsilon)
    ```

    This is the paper's QHAdam as the authors' `qhoptim` (facebookresearch/qhoptim at e81dea3,
    `qhoptim/pyt/qhadam.py`) and pytorch-optimizer 4.1.0's `QHAdam` write it (the moments are kept bias-corrected,
    through the weights `1 + beta * previous weight`), with their defaults: `nu_1 = nu_2 = 1`, which is Adam with
    `epsilon` added to `sqrt(v_hat)`. `nu_1 = 0` gives RMSProp's step (with a bias-corrected `v`) and `nu_1 = beta_1`
    NAdam approximately (`qhoptim`'s `from_nadam`); the paper suggests `nu_1=0.7, beta_1=0.995` as a start
    ("QHAdam(0.995, 0.7)"). The weight decay is an L2 penalty by default, as in both; `decoupled_weight_decay=True`
    is `qhoptim`'s `decouple_weight_decay` (its `QHAdamW`; pytorch-optimizer's `weight_decouple`): `w * (1 -
    learning_rate * weight_decay)` before the step. Both skip the variables excluded with
    `exclude_from_weight_decay`. (pytorch-optimizer 2.8 to 3.9 add `1 - beta2_adj * g * g` to the second moment,
    an operator-precedence slip; 4.1.0 has the formula.)

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.999`.
        nu_1: A float in [0, 1], the weight of the first moment against the gradient. Defaults to `1.0`.
        nu_2: A float in [0, 1], the weight of the second moment against the squared gradient. Defaults to `1.0`.
        epsilon: A float >= 0 added to the denominator. Defaults to `1e-8`.
        decoupled_weight_decay: A bool. If `True`, `weight_decay` shrinks the variables before the step as in
            AdamW; if `False`, it is an L2 penalty added to the gradient. Defaults to `False`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.QHAdam(learning_rate=0.1, nu_1=0.7)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5, -0.5]), w)])
    >>> [round(float(x), 6) for x in w.numpy()]  # step 1: m_hat = g, so a sign step of 0.1
    [0.9, 2.1]

    References:
        - [Ma & Yarats, 2019](https://arxiv.org/abs/1810.06801): Quasi-hyperbolic momentum and Adam for deep
          learning.
        - [`qhoptim`](https://github.com/facebookresearch/qhoptim), the authors' implementation;
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `QHAdam`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        nu_1=1.0,
        nu_2=1.0,
        epsilon=1e-8,
        decoupled_weight_decay=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "QHAdam"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.nu_1 = _checks.number(owner, "nu_1", nu_1, low=0, high=1)
        self.nu_2 = _checks.number(owner, "nu_2", nu_2, low=0, high=1)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.decoupled_weight_decay = _checks.boolean(owner, "decoupled_weight_decay", decoupled_weight_decay)

    def build(self, var_list):
        """Creates the (bias-corrected) first and second moment of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])


    def update_step(self, gradient, variable, learning_rate):
        """Applies one QHAdam step to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        gradient = self._with_l2(gradient, variable)
        index = _compat.optimizer_variable_index(self, variable)
        m, v = self._momentums[index], self._velocities[index]
        step = ops.cast(self.iterations + 1, dtype)
        square = ops.square(gradient)
        self.assign_add(m, (gradient - m) * ((1 - self.beta_1) / debias(self.beta_1, step)))
        self.assign_add(v, (square - v) * ((1 - self.beta_2) / debias(self.beta_2, step)))
        average = m if self.nu_1 == 1 else self.nu_1 * m + (1 - self.nu_1) * gradient
        mean_square = v if self.nu_2 == 1 else self.nu_2 * v + (1 - self.nu_2) * square
        self.assign_sub(variable, ops.cast(learning_rate, dtype) * average / (ops.sqrt(mean_square) + self.epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "nu_1": self.nu_1,
                "nu_2": self.nu_2,
                "epsilon": self.epsilon,
                "decoupled_weight_decay": self.decoupled_weight_decay,
            }
        )
        return config
