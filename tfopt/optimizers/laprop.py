"""LaProp: momentum taken after the adaptive normalisation, not before it (Ziyin et al., 2020)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, debias, dense_gradient
from tfopt.optimizers._fused import FusedUpdateStep


@keras.saving.register_keras_serializable(package="tfopt")
class LaProp(FusedUpdateStep, DecayInUpdateRule, keras.optimizers.Optimizer):
    """LaProp: RMSProp's normalised gradient, averaged with momentum, which separates momentum from adaptivity.

    The update rule for a variable `w` with gradient `g` at step `t` (from 1), with the learning rate `lr_t`:

    ```python
    v = beta_2 * v + (1 - beta_2) * g * g
    lr_average = beta_1 * lr_average + (1 - beta_1) * lr_t        # the bias correction follows the rate
    second = v
    if centered:
        mean = beta_2 * mean + (1 - beta_2) * g
        if t > steps_before_using_centered:
            second = v - mean * mean
    if amsgrad:
        second = v_max = maximum(v_max, second)
    denominator = (sqrt(second + 1e-15) + epsilon) / sqrt(1 - beta_2**t)
    m = beta_1 * m + (1 - beta_1) * lr_t * g / denominator
    w = w - m / (lr_average / lr_t if lr_t != 0 else 1)
    w = w - lr_t * weight_decay * w                                # after the step
    ```

    This is pytorch-optimizer 4.1.0's `LaProp`, with its defaults (`learning_rate=4e-4`, `epsilon=1e-15`, the
    authors' too). The authors' `laprop.py` (Z-T-WANG/LaProp-Optimizer at 9373f13) differs in three places: its
    `epsilon` is added to `sqrt(v / (1 - beta_2**t))`, after the correction (here, as in pytorch-optimizer, before
    it, with `1e-15` under the root); its weight decay is `w = w - weight_decay * w`, not scaled by the rate; and its
    `centered` branch does not run (a misnamed variable). No argument reproduces the first two. The rate enters the
    momentum, so a schedule changes the step from the next momentum on. The weight decay is decoupled and applied
    after the step; it skips the variables excluded with `exclude_from_weight_decay` (pytorch-optimizer's coupled
    `weight_decouple=False` reaches the gradient after it is used and has no effect there, and is left out).

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `4e-4`.
        beta_1: A float in [0, 1), the decay of the momentum. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.999`.
        epsilon: A float >= 0 added to the root of the second moment. Defaults to `1e-15`.
        centered: A bool. If `True`, the second moment is centred by the squared mean gradient. Defaults to `False`.
        steps_before_using_centered: An int >= 0, the steps during which the centred moment is only accumulated.
            Defaults to `10`.
        amsgrad: A bool. If `True`, the running maximum of the second moment is used. Defaults to `False`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.LaProp(learning_rate=0.1)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5, -0.5]), w)])
    >>> [round(float(x), 6) for x in w.numpy()]  # step 1: a sign step of the learning rate
    [0.9, 2.1]

    References:
        - [Ziyin et al., 2020](https://arxiv.org/abs/2002.04839): LaProp: Separating Momentum and Adaptivity in
          Adam.
        - [Authors' implementation](https://github.com/Z-T-WANG/LaProp-Optimizer);
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `LaProp`.
    """

    def __init__(
        self,
        learning_rate=4e-4,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-15,
        centered=False,
        steps_before_using_centered=10,
        amsgrad=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "LaProp"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.centered = _checks.boolean(owner, "centered", centered)
        self.steps_before_using_centered = _checks.integer(
            owner, "steps_before_using_centered", steps_before_using_centered, low=0
        )
        self.amsgrad = _checks.boolean(owner, "amsgrad", amsgrad)

    def build(self, var_list):
        """Creates the momentum, the second moment (and its mean and maximum if asked) and the rate average."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        if self.centered:
            self._means = self.add_optimizer_variables(var_list, "mean")
        if self.amsgrad:
            self._velocity_maxima = self.add_optimizer_variables(var_list, "velocity_max")
        # one per variable, as in both implementations (each variable's update reads and writes its own)
        self._lr_averages = [
            self.add_variable((), "zeros", "float32", name=f"lr_average_{i}") for i in range(len(var_list))
        ]

    def update_step(self, gradient, variable, learning_rate):
        """Applies one LaProp step, and its weight decay, to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        index = _compat.optimizer_variable_index(self, variable)
        m, v = self._momentums[index], self._velocities[index]
        step = ops.cast(self.iterations + 1, "float32")
        rate = ops.cast(learning_rate, "float32")
        lr_average = self._lr_averages[index]
        self.assign(lr_average, lr_average * self.beta_1 + (1 - self.beta_1) * rate)
        nonzero = ops.where(ops.equal(rate, 0), 1.0, rate)
        step_size = ops.where(ops.equal(rate, 0), 1.0, nonzero / lr_average)

        self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))
        second = v
        if self.centered:
            mean = self._means[index]
            self.assign_add(mean, (gradient - mean) * (1 - self.beta_2))
            used = ops.cast(self.iterations + 1 > self.steps_before_using_centered, dtype)
            second = v - used * ops.square(mean)
        if self.amsgrad:
            self.assign(self._velocity_maxima[index], ops.maximum(self._velocity_maxima[index], second))
            second = self._velocity_maxima[index]
        correction = ops.cast(ops.sqrt(debias(self.beta_2, step)), dtype)
        denominator = (ops.sqrt(second + 1e-15) + self.epsilon) / correction
        self.assign(m, self.beta_1 * m + ops.cast((1 - self.beta_1) * rate, dtype) * gradient / denominator)
        updated = variable - ops.cast(step_size, dtype) * m
        decay = self._decay_for(variable)
        if decay:
            updated = updated * (1 - ops.cast(rate * decay, dtype))
        self.assign(variable, updated)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "centered": self.centered,
                "steps_before_using_centered": self.steps_before_using_centered,
                "amsgrad": self.amsgrad,
            }
        )
        return config
