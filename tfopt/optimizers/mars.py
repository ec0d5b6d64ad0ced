"""MARS: Adam (or Lion) on a variance-reduced gradient, corrected by the change of the gradient (Yuan et al., 2024)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, debias, dense_gradient


@keras.saving.register_keras_serializable(package="tfopt")
class MARS(DecayInUpdateRule, keras.optimizers.Optimizer):
    """MARS: momentum of `c = g + gamma * beta_1 / (1 - beta_1) * (g - g_previous)`, normalised as AdamW or Lion.

    The update rule for a variable `w` with gradient `g` at step `t` (from 1). Variables of rank >= 2 (all of them
    with `optimize_1d=True`) take the MARS step; the others (biases, norms) an AdamW step with their own settings:

    ```python
    if rank(w) >= 2 or optimize_1d:
        c = g + gamma * beta_1 / (1 - beta_1) * (g - g_previous)     # g_previous = 0 at t = 1
        c = c / maximum(1, norm(c))                                  # over the whole variable
        m = beta_1 * m + (1 - beta_1) * c
        if mars_type == "lion":
            update = sign(m)
        else:                                                        # "adamw"
            v = beta_2 * v + (1 - beta_2) * c * c                    # amsgrad: its running maximum below
            update = m / (1 - beta_1**t) / ((sqrt(v + 1e-15) + epsilon) / sqrt(1 - beta_2**t))
        lr, decay = learning_rate, weight_decay
    else:
        the same "adamw" update with c = g, beta_1_1d and beta_2_1d
        lr, decay = learning_rate_1d * learning_rate / base_lr, weight_decay_1d   # base_lr: the largest rate yet
    g_previous = g
    w = w - lr * decay * w - lr * update
    ```

    This is MARS-approx (the gradient at the previous weights is the previous step's gradient), the default of the
    authors' `mars.py` (`is_approx=True`), as pytorch-optimizer 4.1.0's `MARS` writes it, with its defaults
    (`learning_rate=3e-3`, betas `(0.95, 0.99)`, `gamma=0.025`, 1-D variables at `3e-3`, `(0.9, 0.95)` and decay
    `0.1`). Left out: the exact MARS (a second gradient per step), `mars_type="shampoo"`, and pytorch-optimizer's
    `cautious=True`, which masks the momentum but not the weight decay (`Cautious(MARS(...))` masks the whole step,
    decay included: see `Cautious`). The weight decay is decoupled, as pytorch-optimizer's default (its coupled form
    changes the gradient after the step has used it, so it only reaches the next step's `g_previous`), and skips
    the variables excluded with `exclude_from_weight_decay`.

    The authors' `MARS/optimizers/mars.py` (AGI-Arena/MARS at 4831e28) differs in two ways. It takes the MARS step
    only for variables of rank exactly 2 (`len(grad.shape) == 2`): a conv kernel takes the 1-D AdamW step there,
    with `learning_rate_1d`, the 1-D betas and `weight_decay_1d`; `optimize_1d=True` sends every variable to the
    MARS step in both, and for models whose kernels are all of rank 2 (Dense, Embedding) the two agree. And its
    denominator is `(sqrt(v) / sqrt(1 - beta_2**t) + epsilon) * (1 - beta_1**t)`, `epsilon` added after the bias
    correction and without `1e-15`: a relative difference below `epsilon / sqrt(v)`.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `3e-3`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.95`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.99`.
        gamma: A float >= 0, the weight of the gradient's change. Defaults to `0.025`.
        mars_type: `"adamw"` or `"lion"`, the normalisation of the momentum. Defaults to `"adamw"`.
        optimize_1d: A bool. If `True`, variables of rank < 2 take the MARS step too. Defaults to `False`.
        learning_rate_1d: A float >= 0, the rate of the other variables at the largest learning rate so far (it
            follows a schedule in proportion from its peak on; during a warm-up it stays at this value, where
            pytorch-optimizer, whose `lr_1d / lr` is fixed at construction, warms it up too). Defaults to `3e-3`.
        beta_1_1d: A float in [0, 1), their first moment's decay. Defaults to `0.9`.
        beta_2_1d: A float in [0, 1), their second moment's decay. Defaults to `0.95`.
        weight_decay_1d: A float >= 0, their decoupled weight decay. Defaults to `0.1`.
        amsgrad: A bool. If `True`, the running maximum of the second moment is used. Defaults to `False`.
        epsilon: A float >= 0 added to the denominator. Defaults to `1e-8`.
        weight_decay: `None` or a float >= 0, the decoupled decay of the MARS variables. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.MARS(learning_rate=0.1, mars_type="lion")
    >>> w = keras.Variable([[1.0, 2.0]])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([[0.5, -0.5]]), w)])
    >>> [round(float(x), 6) for x in w.numpy().ravel()]  # a Lion step: the sign of the momentum
    [0.9, 2.1]

    References:
        - [Yuan et al., 2024](https://arxiv.org/abs/2411.10438): MARS: Unleashing the Power of Variance Reduction
          for Training Large Models.
        - [Authors' implementation](https://github.com/AGI-Arena/MARS);
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `MARS`.
    """

    def __init__(
        self,
        learning_rate=3e-3,
        beta_1=0.95,
        beta_2=0.99,
        gamma=0.025,
        mars_type="adamw",
        optimize_1d=False,
        learning_rate_1d=3e-3,
        beta_1_1d=0.9,
        beta_2_1d=0.95,
        weight_decay_1d=0.1,
        amsgrad=False,
        epsilon=1e-8,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "MARS"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.gamma = _checks.number(owner, "gamma", gamma, low=0)
        self.mars_type = _checks.choice(owner, "mars_type", mars_type, ("adamw", "lion"))
        self.optimize_1d = _checks.boolean(owner, "optimize_1d", optimize_1d)
        self.learning_rate_1d = _checks.number(owner, "learning_rate_1d", learning_rate_1d, low=0)
        self.beta_1_1d = _checks.fraction(owner, "beta_1_1d", beta_1_1d)
        self.beta_2_1d = _checks.fraction(owner, "beta_2_1d", beta_2_1d)
        self.weight_decay_1d = _checks.number(owner, "weight_decay_1d", weight_decay_1d, low=0)
        self.amsgrad = _checks.boolean(owner, "amsgrad", amsgrad)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)

    def build(self, var_list):
        """Creates the moments and the previous gradient of each variable, and the base rate."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities, self._previous_gradients = self.add_optimizer_variables(
            var_list, ["momentum", "velocity", "previous_gradient"]
        )
        if self.amsgrad:
            self._velocity_maxima = self.add_optimizer_variables(var_list, "velocity_max")
        self._base_lr = self.add_variable((), "zeros", "float32", name="base_lr")

    def _mixed(self, variable):
        return self.optimize_1d or len(variable.shape) >= 2

    def update_step(self, gradient, variable, learning_rate):
        """Applies one MARS (or 1-D AdamW) step, and its weight decay, to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        index = _compat.optimizer_variable_index(self, variable)
        previous = self._previous_gradients[index]
        rate = ops.cast(learning_rate, "float32")
        if self._mixed(variable):
            beta_1, beta_2, decay = self.beta_1, self.beta_2, self._decay_for(variable)
            c = gradient + (self.gamma * self.beta_1 / (1 - self.beta_1)) * (gradient - previous)
            c = c / ops.maximum(ops.sqrt(ops.sum(ops.square(c))), 1.0)
        else:
            beta_1, beta_2, c = self.beta_1_1d, self.beta_2_1d, gradient
            decay = self.weight_decay_1d if _compat.optimizer_decays(self, variable) else 0.0
            base = ops.maximum(self._base_lr, rate)  # the same for every variable
            self.assign(self._base_lr, base)
            rate = ops.where(base > 0, rate * (self.learning_rate_1d / ops.where(base > 0, base, 1.0)), 0.0)
        self.assign(previous, gradient)
        m = self._momentums[index]
        self.assign_add(m, (c - m) * (1 - beta_1))
        if self._mixed(variable) and self.mars_type == "lion":
            update = ops.sign(m)
        else:
            update = self._adam_update(index, m, c, beta_1, beta_2, dtype)
        rate = ops.cast(rate, dtype)
        updated = variable * (1 - rate * decay) if decay else variable
        self.assign(variable, updated - rate * update)

    def _adam_update(self, index, m, c, beta_1, beta_2, dtype):
        v = self._velocities[index]
        self.assign_add(v, (ops.square(c) - v) * (1 - beta_2))
        if self.amsgrad:
            self.assign(self._velocity_maxima[index], ops.maximum(self._velocity_maxima[index], v))
            v = self._velocity_maxima[index]
        step = ops.cast(self.iterations + 1, dtype)
        denominator = (ops.sqrt(v + 1e-15) + self.epsilon) / ops.sqrt(debias(beta_2, step)) * debias(beta_1, step)
        return m / denominator

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "gamma": self.gamma,
                "mars_type": self.mars_type,
                "optimize_1d": self.optimize_1d,
                "learning_rate_1d": self.learning_rate_1d,
                "beta_1_1d": self.beta_1_1d,
                "beta_2_1d": self.beta_2_1d,
                "weight_decay_1d": self.weight_decay_1d,
                "amsgrad": self.amsgrad,
                "epsilon": self.epsilon,
            }
        )
        return config
