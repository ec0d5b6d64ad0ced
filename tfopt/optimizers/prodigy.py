"""Prodigy: learning-rate-free Adam that estimates the distance to the solution (Mishchenko & Defazio, 2023)."""

import math

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, adam_bias_correction, dense_gradient
from tfopt.optimizers._fused import update_all_variables_at_once


@keras.saving.register_keras_serializable(package="tfopt")
class Prodigy(DecayInUpdateRule, keras.optimizers.Optimizer):
    """Prodigy: Adam whose step size `d` is estimated from the run itself, so `learning_rate` can stay at 1.

    `d` estimates the distance from the initial weights `w0` to a solution; it only grows. One step, for all
    variables together (sums run over every element of every variable), at step `k` (from 0):

    ```python
    dlr = d * learning_rate * (sqrt(1 - beta_2**(k+1)) / (1 - beta_1**(k+1)) if bias_correction else 1)
    numerator = beta_3 * numerator + sum((d / d0) * dlr * dot(g, w0 - w) for each w)
    for each w:
        m = beta_1 * m + d * (1 - beta_1) * g
        v = beta_2 * v + d * d * (1 - beta_2) * g * g
        s = beta_3 * s + (d / d0) * (d if safeguard_warmup else dlr) * g
    denominator = sum(sum(abs(s)) for each w)
    d_hat = d_coef * numerator / denominator
    d_max = maximum(d_max, d_hat)
    d_new = minimum(d_max, (maximum(d, d_hat) if d == d0 else d) * growth_rate)
    for each w:
        w = w - weight_decay * dlr * w - dlr * m / (sqrt(v) + d_new * epsilon)
    d = d_new
    ```

    This is the algorithm of the authors' `prodigyopt` package (versions 1.0 and 1.1, with `slice_p=1`), including
    its corner cases: `w0` are the weights at the first step; a step with a zero learning rate changes nothing; a
    step whose `denominator` is 0 (all gradients zero so far) updates the moments only, and `k` counts only the
    steps that got past both. `beta_3` defaults to `sqrt(beta_2)`. `weight_decay` is decoupled as in AdamW but scaled
    by `dlr`, and skips the variables excluded with `exclude_from_weight_decay`; prodigyopt's coupled variant
    (`decouple=False`) is left out. Use a schedule on `learning_rate` to anneal: the authors recommend cosine
    annealing, and `safeguard_warmup=True` with a warm-up.

    `d` depends on sums over all variables before any is updated, so Prodigy replaces Keras's per-variable
    `update_step` by one step over all variables (TensorFlow backend). `d`, its maximum, the numerator, `k` and
    `w0` are optimizer variables, saved with the optimizer: a `.keras` file resumes mid-training exactly.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments; it multiplies the estimated step size. Defaults to `1.0`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.999`.
        beta_3: `None` or a float in [0, 1), the decay of `numerator` and `s`; `None` means `sqrt(beta_2)`.
            Defaults to `None`.
        epsilon: A float > 0; `d * epsilon` is added to `sqrt(v)`. Defaults to `1e-8`.
        d0: A float > 0, the initial estimate of `d`. Defaults to `1e-6`.
        d_coef: A float > 0 that multiplies the estimate; the preferred knob to tune. Defaults to `1.0`.
        growth_rate: A float >= 1 or `inf`, the largest factor by which `d` grows per step. Defaults to `inf`.
        bias_correction: A bool. If `True`, applies Adam's bias correction to the step size. Defaults to `False`.
        safeguard_warmup: A bool. If `True`, leaves `learning_rate` out of `s`, which keeps `d` from growing too
            fast during a learning-rate warm-up. Defaults to `False`.
        weight_decay: `None` or a float >= 0, the decoupled weight decay scaled by `dlr`. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=tfopt.optimizers.Prodigy(), loss="mse")
    >>> x = keras.random.normal((256, 3), seed=0)
    >>> y = keras.ops.sum(x, axis=1, keepdims=True)
    >>> history = model.fit(x, y, batch_size=32, epochs=10, verbose=0)
    >>> history.history["loss"][-1] < 0.01 * history.history["loss"][0]  # no learning rate was tuned
    True

    References:
        - [Mishchenko & Defazio, 2023](https://arxiv.org/abs/2306.06101): Prodigy: An Expeditiously Adaptive
          Parameter-Free Learner.
        - [`prodigyopt`](https://github.com/konstmish/prodigy), the authors' implementation.
    """

    def __init__(
        self,
        learning_rate=1.0,
        beta_1=0.9,
        beta_2=0.999,
        beta_3=None,
        epsilon=1e-8,
        d0=1e-6,
        d_coef=1.0,
        growth_rate=math.inf,
        bias_correction=False,
        safeguard_warmup=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "Prodigy"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.beta_3 = None if beta_3 is None else _checks.fraction(owner, "beta_3", beta_3)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0, closed="neither")
        self.d0 = _checks.number(owner, "d0", d0, low=0, closed="neither")
        self.d_coef = _checks.number(owner, "d_coef", d_coef, low=0, closed="neither")
        self.growth_rate = (
            math.inf if growth_rate == math.inf else _checks.number(owner, "growth_rate", growth_rate, low=1)
        )
        self.bias_correction = _checks.boolean(owner, "bias_correction", bias_correction)
        self.safeguard_warmup = _checks.boolean(owner, "safeguard_warmup", safeguard_warmup)

    def build(self, var_list):
        """Creates the moments, `s` and `w0` of each variable, and the scalars `d`, `d_max`, numerator and `k`."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities, self._s, self._initial = self.add_optimizer_variables(
            var_list, ["momentum", "velocity", "s", "initial"]
        )
        start = keras.initializers.Constant(self.d0)
        self._d = self.add_variable((), start, "float32", name="d")
        self._d_max = self.add_variable((), start, "float32", name="d_max")
        self._numerator = self.add_variable((), "zeros", "float32", name="d_numerator")
        self._k = self.add_variable((), "zeros", "float32", name="k")

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """One `_step` over all variables (`_fused.update_all_variables_at_once`)."""
        update_all_variables_at_once(distribution, self._d, grads_and_vars, learning_rate, self._step)

    def _step(self, grads, variables, learning_rate):
        """One Prodigy step, as the class docstring writes it, on the variables of the current device."""
        rate = ops.cast(learning_rate, "float32")
        ops.cond(ops.equal(self.iterations, 0), lambda: self._remember_initial(variables), lambda: None)
        d = ops.convert_to_tensor(self._d)
        correction = adam_bias_correction(self.beta_1, self.beta_2, self._k + 1) if self.bias_correction else 1.0
        dlr = d * rate * correction
        skipped = (ops.zeros((), "float32"), ops.zeros((), "float32"))
        numerator, denominator = ops.cond(rate > 0, lambda: self._accumulate(grads, variables, d, dlr), lambda: skipped)
        ops.cond(denominator > 0, lambda: self._descend(variables, d, dlr, numerator, denominator), lambda: None)

    def _remember_initial(self, variables):
        for variable in variables:
            self.assign(self._initial[_compat.optimizer_variable_index(self, variable)], variable)

    def _accumulate(self, grads, variables, d, dlr):
        """Updates `m`, `v` and `s`; returns the new numerator and the denominator of `d_hat`."""
        beta_3 = math.sqrt(self.beta_2) if self.beta_3 is None else self.beta_3
        s_rate = d / self.d0 * (d if self.safeguard_warmup else dlr)
        numerator, denominator = beta_3 * self._numerator, ops.zeros((), "float32")
        for gradient, variable in zip(grads, variables):
            dtype = variable.dtype
            gradient = dense_gradient(gradient, dtype)
            index = _compat.optimizer_variable_index(self, variable)
            m, v, s = self._momentums[index], self._velocities[index], self._s[index]
            progress = ops.sum(gradient * (self._initial[index] - variable))
            numerator = numerator + d / self.d0 * dlr * ops.cast(progress, "float32")
            self.assign(m, self.beta_1 * m + ops.cast(d * (1 - self.beta_1), dtype) * gradient)
            self.assign(v, self.beta_2 * v + ops.cast(d * d * (1 - self.beta_2), dtype) * ops.square(gradient))
            self.assign(s, beta_3 * s + ops.cast(s_rate, dtype) * gradient)
            denominator = denominator + ops.cast(ops.sum(ops.abs(s)), "float32")
        return numerator, denominator

    def _descend(self, variables, d, dlr, numerator, denominator):
        """Updates `d` and its state from the sums, then every variable."""
        d_hat = self.d_coef * numerator / denominator
        d_max = ops.maximum(self._d_max, d_hat)
        d_new = ops.minimum(d_max, ops.where(ops.equal(d, self.d0), ops.maximum(d, d_hat), d) * self.growth_rate)
        self.assign(self._numerator, numerator)
        self.assign(self._d_max, d_max)
        self.assign(self._d, d_new)
        self.assign_add(self._k, 1.0)
        for variable in variables:
            dtype = variable.dtype
            index = _compat.optimizer_variable_index(self, variable)
            m, v = self._momentums[index], self._velocities[index]
            step = ops.cast(dlr, dtype) * m / (ops.sqrt(v) + ops.cast(d_new * self.epsilon, dtype))
            decay = self._decay_for(variable)
            if decay:
                step = step + ops.cast(decay * dlr, dtype) * variable
            self.assign_sub(variable, step)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "beta_3": self.beta_3,
                "epsilon": self.epsilon,
                "d0": self.d0,
                "d_coef": self.d_coef,
                "growth_rate": self.growth_rate,
                "bias_correction": self.bias_correction,
                "safeguard_warmup": self.safeguard_warmup,
            }
        )
        return config
