"""AdEMAMix: Adam with a mixture of a fast and a very slow momentum (Pagliardini et al., 2024)."""

import math

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import debias, dense_gradient
from tfopt.optimizers._fused import FusedUpdateStep


def _half_life(beta):
    """The warm-up's `f(beta)`: the half-life of an EMA of decay `beta`, minus 1, with the authors' `1e-8`."""
    return math.log(0.5) / math.log(beta + 1e-8) - 1


@keras.saving.register_keras_serializable(package="tfopt")
class AdEMAMix(FusedUpdateStep, keras.optimizers.Optimizer):
    """AdEMAMix: Adam whose momentum adds `alpha` times a slow EMA of the gradients, which remembers ~1e4 steps.

    The update rule of the authors' PyTorch implementation for a variable `w` with gradient `g` at step `t`
    (from 1):

    ```python
    w = w - learning_rate * weight_decay * w       # decoupled, before the step, as AdamW
    alpha_t = alpha * min(t / alpha_warmup, 1) if alpha_warmup else alpha
    if beta_3_warmup and t < beta_3_warmup:        # linear in the half-life, from beta_1's to beta_3's
        f = lambda beta: log(0.5) / log(beta + 1e-8) - 1
        a = t / beta_3_warmup
        beta_3_t = 0.5 ** (1 / ((1 - a) * f(beta_1) + a * f(beta_3) + 1))
    else:
        beta_3_t = beta_3
    m1 = beta_1 * m1 + (1 - beta_1) * g            # fast EMA
    m2 = beta_3_t * m2 + (1 - beta_3_t) * g        # slow EMA, not bias-corrected
    nu = beta_2 * nu + (1 - beta_2) * g * g
    m1_hat = m1 / (1 - beta_1**t)
    nu_hat = nu / (1 - beta_2**t)
    w = w - learning_rate * (m1_hat + alpha_t * m2) / (sqrt(nu_hat) + epsilon)
    ```

    The paper's schedulers `f_alpha` and `f_beta3` are these, at the same steps `t`; its closed form of
    `beta_3_t` equals the half-life interpolation, up to the `1e-8` the PyTorch code adds inside the logarithm.
    (The authors' optax version evaluates both schedules one step earlier, at `t - 1`, and has no `1e-8`.) The
    paper recommends `alpha_warmup = beta_3_warmup =` the number of training steps for large `beta_3`. `alpha`
    defaults to 5 as in the authors' optax version (their PyTorch file defaults to 2; the paper uses 4 to 10).

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        beta_1: A float in [0, 1), the decay of the fast EMA. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.999`.
        beta_3: A float in [0, 1), the decay of the slow EMA. Defaults to `0.9999`.
        alpha: A float >= 0, the weight of the slow EMA. Defaults to `5.0`.
        alpha_warmup: `None` or an int >= 1, the steps over which `alpha` rises linearly from 0. Defaults to
            `None` (no warm-up).
        beta_3_warmup: `None` or an int >= 1, the steps over which the slow EMA's half-life rises linearly from
            `beta_1`'s to `beta_3`'s. Defaults to `None` (no warm-up).
        epsilon: A float >= 0 added to the denominator. Defaults to `1e-8`.
        weight_decay: `None` or a float >= 0: decoupled decay as in AdamW, applied by the base optimizer (which
            honours `exclude_from_weight_decay`). Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.AdEMAMix(learning_rate=0.1, alpha_warmup=1000, beta_3_warmup=1000)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5, -0.5]), w)])
    >>> [round(float(x), 6) for x in w.numpy()]  # step 1: Adam's sign step + alpha_1 * m2 = 0.005 * 0.025
    [0.899975, 2.100025]

    References:
        - [Pagliardini et al., 2024](https://arxiv.org/abs/2409.03137): The AdEMAMix Optimizer: Better, Faster,
          Older.
        - [Authors' implementation](https://github.com/apple/ml-ademamix)
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        beta_3=0.9999,
        alpha=5.0,
        alpha_warmup=None,
        beta_3_warmup=None,
        epsilon=1e-8,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "AdEMAMix"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.beta_3 = _checks.fraction(owner, "beta_3", beta_3)
        self.alpha = _checks.number(owner, "alpha", alpha, low=0)
        if alpha_warmup is not None:
            alpha_warmup = _checks.integer(owner, "alpha_warmup", alpha_warmup, low=1)
        if beta_3_warmup is not None:
            beta_3_warmup = _checks.integer(owner, "beta_3_warmup", beta_3_warmup, low=1)
        self.alpha_warmup, self.beta_3_warmup = alpha_warmup, beta_3_warmup
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)

    def build(self, var_list):
        """Creates the fast and slow EMAs and the second moment of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._fast_momentums, self._slow_momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["fast_momentum", "slow_momentum", "velocity"]
        )

    def _schedules(self, step):
        """`alpha_t` and `1 - beta_3_t` at the 1-based float32 `step`; `1 - beta_3_t` (~1e-4) through `expm1`."""
        alpha = self.alpha
        if self.alpha_warmup:
            alpha = self.alpha * ops.minimum(step / self.alpha_warmup, 1.0)
        one_minus_beta_3 = 1 - self.beta_3
        if self.beta_3_warmup:
            done = step / self.beta_3_warmup
            half_life = (1 - done) * _half_life(self.beta_1) + done * _half_life(self.beta_3)
            warming = -ops.expm1(math.log(0.5) / (half_life + 1))  # 1 - 0.5**(1 / (half_life + 1))
            one_minus_beta_3 = ops.where(step < self.beta_3_warmup, warming, one_minus_beta_3)
        return alpha, one_minus_beta_3

    def update_step(self, gradient, variable, learning_rate):
        """Applies one AdEMAMix step to `variable` (the base optimizer has already decayed it)."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        index = _compat.optimizer_variable_index(self, variable)
        m1, m2, nu = self._fast_momentums[index], self._slow_momentums[index], self._velocities[index]
        step = ops.cast(self.iterations + 1, "float32")
        alpha, one_minus_beta_3 = self._schedules(step)
        self.assign_add(m1, (gradient - m1) * (1 - self.beta_1))
        self.assign_add(m2, (gradient - m2) * ops.cast(one_minus_beta_3, dtype))
        self.assign_add(nu, (ops.square(gradient) - nu) * (1 - self.beta_2))

        bias_1 = ops.cast(debias(self.beta_1, step), dtype)
        denominator = ops.sqrt(nu) / ops.cast(ops.sqrt(debias(self.beta_2, step)), dtype) + self.epsilon
        update = (m1 / bias_1 + ops.cast(alpha, dtype) * m2) / denominator
        self.assign_sub(variable, ops.cast(learning_rate, dtype) * update)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "beta_3": self.beta_3,
                "alpha": self.alpha,
                "alpha_warmup": self.alpha_warmup,
                "beta_3_warmup": self.beta_3_warmup,
                "epsilon": self.epsilon,
            }
        )
        return config
