"""D-Adaptation Adam: learning-rate-free Adam that estimates the distance to the solution (Defazio & Mishchenko)."""

import math

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, debias, dense_gradient
from tfopt.optimizers._fused import update_all_variables_at_once


@keras.saving.register_keras_serializable(package="tfopt")
class DAdaptAdam(DecayInUpdateRule, keras.optimizers.Optimizer):
    """D-Adaptation Adam: Adam whose step size `d` is estimated from the run itself, so `learning_rate` can stay 1.

    `d` is a lower bound on the distance from the initial weights to a solution; it only grows. One step, for all
    variables together (sums run over every element of every variable), at step `k` (from 0):

    ```python
    dlr = d * learning_rate * (sqrt(1 - beta_2**(k+1)) / (1 - beta_1**(k+1)) if bias_correction else 1)
    numerator_step = 0; s_norm = 0
    for each w:
        if weight_decay and not decoupled_weight_decay:
            g = g + weight_decay * w
        numerator_step += dlr * dot(g, s / (sqrt(v) + epsilon))     # the previous s and v
        m = beta_1 * m + dlr * (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        s = sqrt(beta_2) * s + dlr * (1 - sqrt(beta_2)) * g
        s_norm += sum(abs(s))
    if s_norm > 0:                                                  # else the weights and d stay
        numerator = sqrt(beta_2) * numerator + (1 - sqrt(beta_2)) * numerator_step
        if learning_rate > 0:
            d = max(d, min(numerator / ((1 - sqrt(beta_2)) * s_norm), d * growth_rate))
        for each w:
            if weight_decay and decoupled_weight_decay:
                w = w - weight_decay * dlr * w
            w = w - m / (sqrt(v) + epsilon)
    ```

    This is `DAdaptAdam` of the authors' `dadaptation` package (facebookresearch/dadaptation at c984980, version
    3.2, `dadaptation/dadapt_adam.py`) as pytorch-optimizer 4.1.0 writes it, with their defaults. The rate `dlr` of
    a step is the `d` before the step's estimate. The weight decay is an L2 penalty by default (their
    `decouple=False` / `weight_decouple=False`); `decoupled_weight_decay=True` is AdamW's form scaled by `dlr`;
    both skip the variables excluded with `exclude_from_weight_decay`. Use a schedule on `learning_rate` to anneal
    (the authors recommend keeping the schedule you would use with Adam, peak 1.0).

    One difference from the authors' code, shared with pytorch-optimizer: at a learning rate of 0 (a schedule that
    reaches 0 mid-run) the authors skip the step entirely, while here, as in pytorch-optimizer, the moments decay
    (`dlr = 0`) and the weights still move by `m / (sqrt(v) + epsilon)`, the momentum left from earlier steps. And
    their step counter of the bias correction does not advance on a step whose gradients are all 0; `iterations`
    does. Their per-group `layer_scale` has no counterpart (Keras has no parameter groups).

    `d` depends on sums over all variables, so the step replaces Keras's per-variable `update_step` by one step over
    all variables (TensorFlow backend), as `Prodigy` does. `d` and the numerator are optimizer variables, saved with
    the optimizer.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments; it multiplies the estimated step size. Defaults to `1.0`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.999`.
        epsilon: A float >= 0 added to `sqrt(v)`. Defaults to `1e-8`.
        d0: A float > 0, the initial estimate of `d`. Defaults to `1e-6`.
        growth_rate: A float >= 1 or `inf`, the largest factor by which `d` grows per step. Defaults to `inf`.
        bias_correction: A bool. If `True`, applies Adam's bias correction to the step size. Defaults to `False`.
        decoupled_weight_decay: A bool. If `True`, `weight_decay` shrinks the variables by `weight_decay * dlr`; if
            `False`, it is an L2 penalty added to the gradient. Defaults to `False`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=tfopt.optimizers.DAdaptAdam(), loss="mse")
    >>> x = keras.random.normal((256, 3), seed=0)
    >>> y = keras.ops.sum(x, axis=1, keepdims=True)
    >>> history = model.fit(x, y, batch_size=32, epochs=10, verbose=0)
    >>> history.history["loss"][-1] < 0.1 * history.history["loss"][0]  # no rate tuned; d overshoots, then settles
    True

    References:
        - [Defazio & Mishchenko, 2023](https://arxiv.org/abs/2301.07733): Learning-Rate-Free Learning by
          D-Adaptation.
        - [`dadaptation`](https://github.com/facebookresearch/dadaptation), the authors' implementation;
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `DAdaptAdam`.
    """

    def __init__(
        self,
        learning_rate=1.0,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        d0=1e-6,
        growth_rate=math.inf,
        bias_correction=False,
        decoupled_weight_decay=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "DAdaptAdam"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.d0 = _checks.number(owner, "d0", d0, low=0, closed="neither")
        self.growth_rate = (
            math.inf if growth_rate == math.inf else _checks.number(owner, "growth_rate", growth_rate, low=1)
        )
        self.bias_correction = _checks.boolean(owner, "bias_correction", bias_correction)
        self.decoupled_weight_decay = _checks.boolean(owner, "decoupled_weight_decay", decoupled_weight_decay)

    def build(self, var_list):
        """Creates the moments and `s` of each variable, and the scalars `d` and the numerator."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities, self._s = self.add_optimizer_variables(
            var_list, ["momentum", "velocity", "s"]
        )
        self._d = self.add_variable((), keras.initializers.Constant(self.d0), "float32", name="d")
        self._numerator = self.add_variable((), "zeros", "float32", name="d_numerator")

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """One `_step` over all variables (`_fused.update_all_variables_at_once`)."""
        update_all_variables_at_once(distribution, self._d, grads_and_vars, learning_rate, self._step)

    def _step(self, grads, variables, learning_rate):
        """One D-Adaptation Adam step, as the class docstring writes it, on the variables of the current device."""
        rate = ops.cast(learning_rate, "float32")
        d = ops.convert_to_tensor(self._d)
        dlr = d * rate
        if self.bias_correction:
            step = ops.cast(self.iterations + 1, "float32")
            dlr = dlr * ops.sqrt(debias(self.beta_2, step)) / debias(self.beta_1, step)
        root = math.sqrt(self.beta_2)
        numerator_step, s_norm = ops.zeros((), "float32"), ops.zeros((), "float32")
        for gradient, variable in zip(grads, variables):
            dtype = variable.dtype
            gradient = dense_gradient(gradient, dtype)
            decay = self._decay_for(variable)
            if decay and not self.decoupled_weight_decay:
                gradient = gradient + ops.cast(decay, dtype) * variable
            index = _compat.optimizer_variable_index(self, variable)
            m, v, s = self._momentums[index], self._velocities[index], self._s[index]
            progress = ops.sum(gradient * s / (ops.sqrt(v) + self.epsilon))
            numerator_step = numerator_step + dlr * ops.cast(progress, "float32")
            self.assign(m, self.beta_1 * m + ops.cast(dlr * (1 - self.beta_1), dtype) * gradient)
            self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))
            self.assign(s, root * s + ops.cast(dlr * (1 - root), dtype) * gradient)
            s_norm = s_norm + ops.cast(ops.sum(ops.abs(s)), "float32")
        ops.cond(s_norm > 0, lambda: self._descend(variables, d, dlr, rate, numerator_step, s_norm), lambda: None)

    def _descend(self, variables, d, dlr, rate, numerator_step, s_norm):
        """Updates the numerator and `d`, then every variable."""
        root = math.sqrt(self.beta_2)
        numerator = root * self._numerator + (1 - root) * numerator_step
        self.assign(self._numerator, numerator)
        d_hat = numerator / ((1 - root) * s_norm)
        self.assign(self._d, ops.where(rate > 0, ops.maximum(d, ops.minimum(d_hat, d * self.growth_rate)), d))
        for variable in variables:
            dtype = variable.dtype
            index = _compat.optimizer_variable_index(self, variable)
            m, v = self._momentums[index], self._velocities[index]
            updated = variable
            decay = self._decay_for(variable)
            if decay and self.decoupled_weight_decay:
                updated = updated * (1 - ops.cast(decay * dlr, dtype))
            self.assign(variable, updated - m / (ops.sqrt(v) + self.epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "d0": self.d0,
                "growth_rate": self.growth_rate,
                "bias_correction": self.bias_correction,
                "decoupled_weight_decay": self.decoupled_weight_decay,
            }
        )
        return config
