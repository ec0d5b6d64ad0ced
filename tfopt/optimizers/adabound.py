"""AdaBound: Adam whose per-element step size is clipped into bounds that close in on SGD's (Luo et al., 2019)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import SwitchableDecay, debias, dense_gradient
from tfopt.optimizers._fused import FusedUpdateStep


@keras.saving.register_keras_serializable(package="tfopt")
class AdaBound(FusedUpdateStep, SwitchableDecay, keras.optimizers.Optimizer):
    """AdaBound: Adam early, SGD with rate `final_lr` late, by clipping each element's step size between bounds.

    The update rule for a variable `w` with gradient `g` at step `t` (from 1), with the learning rate `lr_t`:

    ```python
    if weight_decay and decoupled_weight_decay:
        w = w - lr_t * weight_decay * w              # before the step, as AdamW
    elif weight_decay:
        g = g + weight_decay * w                     # L2 penalty
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g           # amsbound: v_max = maximum(v_max, v), used below
    final = final_lr * lr_t / base_lr               # base_lr: the largest rate yet; a schedule scales both
    lower, upper = final * (1 - 1 / (gamma * t + 1)), final * (1 + 1 / (gamma * t))
    step_size = lr_t * sqrt(1 - beta_2**t) / (1 - beta_1**t)
    w = w - clip(step_size / (sqrt(v + 1e-15) + epsilon), lower, upper) * m
    ```

    This is pytorch-optimizer 4.1.0's `AdaBound`, with its defaults (decoupled decay, `1e-15` under the square
    root). Its `base_lr` is the rate the optimizer was built with (the first rate > 0 if that is 0), which a
    PyTorch scheduler then scales: under a warm-up, the peak. A Keras schedule has no such rate, so `base_lr` is the
    largest rate so far: the same at a constant rate or under a schedule that starts at its peak; under a warm-up
    the bounds stay at `final_lr` until the peak (instead of warming up too), and from there the steps are
    pytorch-optimizer's with the peak as its rate. The authors' `adabound.py` (Luolc/AdaBound at 2e928c3) differs
    in four ways, the first two only with weight decay:

    - their `AdaBound` adds an L2 penalty to the gradient: `decoupled_weight_decay=False` reproduces it;
    - their `AdaBoundW` subtracts `weight_decay * w` (the weights before the step), not scaled by the learning
      rate: at a constant rate, `decoupled_weight_decay=True` with `weight_decay=their_decay / learning_rate`
      reproduces it (under a schedule their decay stays constant while this one follows the rate);
    - the denominator is `sqrt(v) + epsilon`, without `1e-15` (it matters only where `v` is below ~1e-13);
    - `base_lr` is the rate at construction (a schedule starting at 0 divides by zero there).

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments: Adam's rate at the start. Defaults to `0.001`.
        final_lr: A float > 0, the SGD rate both bounds converge to (scaled as the learning rate is). Defaults to
            `0.1`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.999`.
        gamma: A float > 0, how fast the bounds close in. Defaults to `1e-3`.
        epsilon: A float >= 0 added to the denominator. Defaults to `1e-8`.
        amsbound: A bool. If `True`, the running maximum of the second moment is used (AMSBound). Defaults to
            `False`.
        decoupled_weight_decay: A bool. If `True`, `weight_decay` shrinks the variables before the step as in
            AdamW; if `False`, it is an L2 penalty added to the gradient. Defaults to `True`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.AdaBound(learning_rate=0.1)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5, -0.5]), w)])
    >>> [round(float(x), 4) for x in w.numpy()]  # step 1: Adam's step of 0.1 is within the first bounds
    [0.9, 2.1]

    References:
        - [Luo et al., 2019](https://arxiv.org/abs/1902.09843): Adaptive Gradient Methods with Dynamic Bound of
          Learning Rate.
        - [Authors' implementation](https://github.com/Luolc/AdaBound);
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `AdaBound`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        final_lr=0.1,
        beta_1=0.9,
        beta_2=0.999,
        gamma=1e-3,
        epsilon=1e-8,
        amsbound=False,
        decoupled_weight_decay=True,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "AdaBound"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.final_lr = _checks.number(owner, "final_lr", final_lr, low=0, closed="neither")
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.gamma = _checks.number(owner, "gamma", gamma, low=0, closed="neither")
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.amsbound = _checks.boolean(owner, "amsbound", amsbound)
        self.decoupled_weight_decay = _checks.boolean(owner, "decoupled_weight_decay", decoupled_weight_decay)

    def build(self, var_list):
        """Creates the moments of each variable (and the second moment's maximum) and the base rate."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        if self.amsbound:
            self._velocity_maxima = self.add_optimizer_variables(var_list, "velocity_max")
        self._base_lr = self.add_variable((), "zeros", "float32", name="base_lr")


    def update_step(self, gradient, variable, learning_rate):
        """Applies one AdaBound step to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        gradient = self._with_l2(gradient, variable)
        index = _compat.optimizer_variable_index(self, variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))
        if self.amsbound:
            self.assign(self._velocity_maxima[index], ops.maximum(self._velocity_maxima[index], v))
            v = self._velocity_maxima[index]

        rate = ops.cast(learning_rate, "float32")
        base = ops.maximum(self._base_lr, rate)  # the same for every variable
        self.assign(self._base_lr, base)
        step = ops.cast(self.iterations + 1, "float32")
        final = ops.where(base > 0, self.final_lr * rate / ops.where(base > 0, base, 1.0), 0.0)
        lower = final * (1 - 1 / (self.gamma * step + 1))
        upper = final * (1 + 1 / (self.gamma * step))
        step_size = rate * ops.sqrt(debias(self.beta_2, step)) / debias(self.beta_1, step)
        denominator = ops.sqrt(v + 1e-15) + self.epsilon
        bounded = ops.clip(ops.cast(step_size, dtype) / denominator, ops.cast(lower, dtype), ops.cast(upper, dtype))
        self.assign_sub(variable, bounded * m)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "final_lr": self.final_lr,
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "gamma": self.gamma,
                "epsilon": self.epsilon,
                "amsbound": self.amsbound,
                "decoupled_weight_decay": self.decoupled_weight_decay,
            }
        )
        return config
