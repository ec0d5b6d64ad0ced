"""ADOPT: Adam that normalises by the previous second moment, converging for any beta_2 (Taniguchi et al., 2024)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import SwitchableDecay, dense_gradient
from tfopt.optimizers._fused import FusedUpdateStep


@keras.saving.register_keras_serializable(package="tfopt")
class ADOPT(FusedUpdateStep, SwitchableDecay, keras.optimizers.Optimizer):
    """ADOPT: the gradient is divided by the second moment of the steps before it, then clipped, then averaged.

    The update rule for a variable `w` with gradient `g` at step `t` (from 1):

    ```python
    if weight_decay and decoupled_weight_decay:
        w = w - learning_rate * weight_decay * w   # before the step, as AdamW
    elif weight_decay:
        g = g + weight_decay * w                   # L2 penalty
    if t == 1:
        v = g * g                                  # the first step only initialises v
    else:
        normed = g / maximum(sqrt(v), epsilon)     # v does not contain g yet
        if clip_exponent is not None:
            normed = clip(normed, -t**clip_exponent, t**clip_exponent)
        m = beta_1 * m + (1 - beta_1) * normed
        w = w - learning_rate * m
        v = beta_2 * v + (1 - beta_2) * g * g
    ```

    This is pytorch-optimizer 4.1.0's `ADOPT`, whose defaults it takes: `beta_2=0.9999`, `epsilon=1e-6` clamping
    `sqrt(v)` from below (not added to it), and the clipping schedule `clip_lambda = step**0.25` of the paper's
    Section 4 (there the clip bound is a callable; here it is `t**clip_exponent`, and `clip_exponent=None` turns it
    off, the paper's Algorithm 1 without clipping). The weight decay is an L2 penalty by default, as in both
    implementations (`decouple=False`, `weight_decouple=False`); `decoupled_weight_decay=True` is their decoupled
    variant. Both skip the variables excluded with `exclude_from_weight_decay`.

    The authors' `adopt.py` (iShohei220/adopt at 6468572, `src/adopt/adopt.py`) differs in two places. Its clip
    bound is `clip_lambda(t - 1)`: its step counter is read before it is incremented, so the first update is clipped
    to `1`, as in the paper's Algorithm 1 (whose first gradient, `g_0`, only sets `v`); tfopt's default bound is
    looser by `(t / (t - 1))**0.25`, 19% at the first update and under 1% from step 26. Their
    `ADOPT(clip_lambda=lambda step: (step + 1) ** 0.25)` is this default and `clip_lambda=None` is
    `clip_exponent=None`; no argument here gives their default bound. And their decoupled decay skips step 1 (the
    step that only sets `v`); here, as in pytorch-optimizer, every step decays.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.9999`.
        epsilon: A float >= 0, the floor of `sqrt(v)`. Defaults to `1e-6`.
        clip_exponent: `None` or a float > 0: the normalised gradient is clipped to `t**clip_exponent` in absolute
            value at step `t`. Defaults to `0.25`.
        decoupled_weight_decay: A bool. If `True`, `weight_decay` shrinks the variables before the step as in
            AdamW; if `False`, it is an L2 penalty added to the gradient. Defaults to `False`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.ADOPT(learning_rate=0.1)
    >>> w = keras.Variable([1.0, 2.0])
    >>> for g in ([0.5, -0.5], [0.5, -0.5]):
    ...     _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), w)])
    >>> [round(float(x), 6) for x in w.numpy()]  # step 1 sets v only; step 2: 0.1 * 0.1 * 0.5 / 0.5
    [0.99, 2.01]

    References:
        - [Taniguchi et al., 2024](https://arxiv.org/abs/2411.02853): ADOPT: Modified Adam Can Converge with Any
          beta_2 with the Optimal Rate.
        - [Authors' implementation](https://github.com/iShohei220/adopt);
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `ADOPT`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.9999,
        epsilon=1e-6,
        clip_exponent=0.25,
        decoupled_weight_decay=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "ADOPT"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.clip_exponent = (
            None if clip_exponent is None
            else _checks.number(owner, "clip_exponent", clip_exponent, low=0, closed="neither")
        )
        self.decoupled_weight_decay = _checks.boolean(owner, "decoupled_weight_decay", decoupled_weight_decay)

    def build(self, var_list):
        """Creates the first and second moment of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])


    def update_step(self, gradient, variable, learning_rate):
        """Applies one ADOPT step to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        gradient = self._with_l2(gradient, variable)
        index = _compat.optimizer_variable_index(self, variable)
        m, v = self._momentums[index], self._velocities[index]
        step = ops.cast(self.iterations + 1, dtype)
        first = ops.equal(self.iterations, 0)
        # The first step sets v = g * g and leaves m and w: the same formulas with beta_2 = 0, beta_1 = 1, lr = 0.
        # (1 - beta is taken in Python: float32's 1 - 0.9999 is off by 2e-4)
        one, zero = ops.ones((), dtype), ops.zeros((), dtype)
        weight_1 = ops.where(first, zero, ops.cast(1 - self.beta_1, dtype))
        weight_2 = ops.where(first, one, ops.cast(1 - self.beta_2, dtype))
        rate = ops.where(first, zero, ops.cast(learning_rate, dtype))

        # (+1 at the first step keeps g / 0 out of the discarded `normed` when epsilon is 0)
        floor = ops.maximum(ops.sqrt(v), ops.cast(self.epsilon, dtype)) + ops.cast(first, dtype)
        normed = gradient / floor
        if self.clip_exponent is not None:
            bound = ops.power(step, ops.cast(self.clip_exponent, dtype))
            normed = ops.clip(normed, -bound, bound)
        self.assign_add(m, (normed - m) * weight_1)
        self.assign_sub(variable, rate * m)
        self.assign_add(v, (ops.square(gradient) - v) * weight_2)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "clip_exponent": self.clip_exponent,
                "decoupled_weight_decay": self.decoupled_weight_decay,
            }
        )
        return config
