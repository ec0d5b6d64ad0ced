"""AdaBelief: Adam with steps scaled by the belief in the observed gradient (Zhuang et al., 2020)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import debias, dense_gradient, rectification
from tfopt.optimizers._fused import FusedUpdateStep


@keras.saving.register_keras_serializable(package="tfopt")
class AdaBelief(FusedUpdateStep, keras.optimizers.Optimizer):
    """AdaBelief: divides the momentum by the spread of gradients around it, not by their magnitude.

    The update rule of the authors' PyTorch package (adabelief-pytorch 0.2.x) for a variable `w` with gradient `g`
    at step `t` (from 1):

    ```python
    w = w - learning_rate * weight_decay * w       # decoupled, before the step (weight_decouple=True)
    m = beta_1 * m + (1 - beta_1) * g
    s = beta_2 * s + (1 - beta_2) * (g - m) ** 2 + epsilon
    m_hat = m / (1 - beta_1**t)
    if not rectify:
        w = w - learning_rate * m_hat / (sqrt(s) / sqrt(1 - beta_2**t) + epsilon)
    else:                                          # RAdam's rectification, with rho_t and r_t as in RAdam
        if rho_t >= 5:
            w = w - learning_rate * m_hat * r_t * sqrt(1 - beta_2**t) / (sqrt(s) + epsilon)
        elif degenerated_to_sgd:
            w = w - learning_rate * m_hat          # SGD with momentum
    ```

    As in that package, `epsilon` enters `s` itself (so it accumulates in the state) and the denominator again;
    the rectified branch adds it to `sqrt(s)` before the bias correction; the threshold is `rho_t >= 5` (RAdam
    uses `> 5`), and without `degenerated_to_sgd` the steps below it leave the variable unchanged (but decayed).
    The defaults are version 0.2's: `epsilon=1e-16`, `rectify=True`, decoupled weight decay (`weight_decouple`);
    the paper's experiments and the 0.0.5 package used `epsilon=1e-8` without rectification. The package's L2
    mode (`weight_decouple=False`), `fixed_decay` and `amsgrad` are not offered.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the belief `s`. Defaults to `0.999`.
        epsilon: A float >= 0; AdaBelief's is about the square of Adam's. Defaults to `1e-16`.
        rectify: A bool, whether to rectify the adaptive rate as RAdam does. Defaults to `True`.
        degenerated_to_sgd: A bool, whether the rectified steps below the threshold are momentum SGD steps (else
            none). Only used with `rectify=True`. Defaults to `True`.
        weight_decay: `None` or a float >= 0: decoupled decay as in AdamW, applied by the base optimizer (which
            honours `exclude_from_weight_decay`). Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.AdaBelief(learning_rate=0.1, rectify=False)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5, -0.5]), w)])
    >>> [round(float(x), 6) for x in w.numpy()]  # step 1: a sign step of size learning_rate / beta_1
    [0.888889, 2.111111]

    References:
        - [Zhuang et al., 2020](https://arxiv.org/abs/2010.07468): AdaBelief Optimizer: Adapting Stepsizes by the
          Belief in Observed Gradients.
        - [Authors' implementation](https://github.com/juntang-zhuang/Adabelief-Optimizer)
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-16,
        rectify=True,
        degenerated_to_sgd=True,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "AdaBelief"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.rectify = _checks.boolean(owner, "rectify", rectify)
        self.degenerated_to_sgd = _checks.boolean(owner, "degenerated_to_sgd", degenerated_to_sgd)

    def build(self, var_list):
        """Creates the first moment and the belief `s` of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._beliefs = self.add_optimizer_variables(var_list, ["momentum", "belief"])

    def update_step(self, gradient, variable, learning_rate):
        """Applies one AdaBelief step to `variable` (the base optimizer has already decayed it)."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        index = _compat.optimizer_variable_index(self, variable)
        m, s = self._momentums[index], self._beliefs[index]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign(s, self.beta_2 * s + (1 - self.beta_2) * ops.square(gradient - m) + self.epsilon)

        step = ops.cast(self.iterations + 1, "float32")
        scale = ops.cast(learning_rate, dtype) / ops.cast(debias(self.beta_1, step), dtype)
        if self.rectify:
            rho, factor = rectification(self.beta_2, step)
            rectified = ops.cast(factor, dtype) * m / (ops.sqrt(s) + self.epsilon)
            fallback = m if self.degenerated_to_sgd else ops.zeros_like(m)
            direction = ops.where(rho >= 5, rectified, fallback)
        else:
            correction = ops.cast(ops.sqrt(debias(self.beta_2, step)), dtype)
            direction = m / (ops.sqrt(s) / correction + self.epsilon)
        self.assign_sub(variable, scale * direction)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "rectify": self.rectify,
                "degenerated_to_sgd": self.degenerated_to_sgd,
            }
        )
        return config
