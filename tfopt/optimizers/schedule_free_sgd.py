"""Schedule-free SGD: momentum as interpolation and iterate averaging instead of a schedule (Defazio et al., 2024)."""

import keras
from keras import ops

from tfopt import _checks
from tfopt.optimizers._common import dense_gradient
from tfopt.optimizers._schedule_free import ScheduleFree


@keras.saving.register_keras_serializable(package="tfopt")
class ScheduleFreeSGD(ScheduleFree, keras.optimizers.Optimizer):
    """Schedule-free SGD: no learning-rate schedule to set, and no stopping time to know in advance.

    Three sequences per variable: `z` takes SGD steps, `x` averages `z` (weights grow with the largest rate so
    far), and the gradient is taken at `y`, between them. At step `t` (from 1), with the learning rate `lr_t`:

    ```python
    lr = lr_t * min(1, t / warmup_steps)
    lr_max = max(lr_max, lr)
    weight = t**r * lr_max**weight_lr_power
    weight_sum = weight_sum + weight
    c = weight / weight_sum
    d = g + weight_decay * y                       # g taken at y; the decay is at y too
    y = (1 - c) * y + c * z + lr * (momentum * (1 - c) - 1) * d
    z = z - lr * d
    # x = (y - (1 - momentum) * z) / momentum      # the average, never stored
    ```

    The model's variables hold `y` during training. At the end of `fit` (Keras calls `finalize_variable_values`)
    they are set to `x`, so `evaluate`, `predict`, saving and export see the averaged weights; the next training
    step puts `y` back, so training can go on. Validation during `fit` sees `y`. This is the authors'
    `SGDScheduleFree` (facebookresearch/schedule_free) as pytorch-optimizer 4.1.0's `ScheduleFreeSGD` writes it
    (the `y`-in-parameters form; their `eval()`/`train()` are the swap above), with their defaults. The weight
    decay is taken at `y` into the step, as in both; it skips the variables excluded with
    `exclude_from_weight_decay`. With `use_ema=True`, the EMA averages `y`.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `1.0`.
        momentum: A float in (0, 1), the interpolation between `z` and `x`. Defaults to `0.9`.
        r: A float >= 0, the power of `t` in the averaging weights. Defaults to `0.0`.
        weight_lr_power: A float >= 0, the power of the largest rate in the averaging weights. Defaults to `2.0`.
        warmup_steps: An int >= 0, the steps of a linear warm-up of the rate. Defaults to `0`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.SGD`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.ScheduleFreeSGD(learning_rate=0.1)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([1.0, -1.0]), w)])
    >>> [round(float(x), 3) for x in w.numpy()]  # y: c = 1, so y = z - 0.1 * g
    [0.9, 2.1]
    >>> optimizer.finalize_variable_values([w])  # x = z: the average of one point
    >>> [round(float(x), 3) for x in w.numpy()]
    [0.9, 2.1]

    References:
        - [Defazio et al., 2024](https://arxiv.org/abs/2405.15682): The Road Less Scheduled.
        - [Authors' implementation](https://github.com/facebookresearch/schedule_free);
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `ScheduleFreeSGD`.
    """

    def __init__(
        self,
        learning_rate=1.0,
        momentum=0.9,
        r=0.0,
        weight_lr_power=2.0,
        warmup_steps=0,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "ScheduleFreeSGD"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.momentum = _checks.number(owner, "momentum", momentum, low=0, high=1, closed="neither")
        self.r = _checks.number(owner, "r", r, low=0)
        self.weight_lr_power = _checks.number(owner, "weight_lr_power", weight_lr_power, low=0)
        self.warmup_steps = _checks.integer(owner, "warmup_steps", warmup_steps, low=0)

    @property
    def _interpolation(self):
        return self.momentum

    def build(self, var_list):
        """Creates `z` of each variable and the averaging state."""
        if self.built:
            return
        super().build(var_list)
        self._build_schedule_free(var_list)

    def _directions(self, grads, variables, indices, learning_rate):
        """The step's rate (warmed up) and each variable's direction, its gradient plus the decay at `y`."""
        rate = ops.cast(learning_rate, "float32")
        if self.warmup_steps:
            rate = rate * ops.minimum(ops.cast(self.iterations + 1, "float32") / self.warmup_steps, 1.0)
        directions = [
            self._decayed(dense_gradient(gradient, variable.dtype), variable)
            for gradient, variable in zip(grads, variables)
        ]
        return rate, directions

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "r": self.r,
                "weight_lr_power": self.weight_lr_power,
                "warmup_steps": self.warmup_steps,
            }
        )
        return config
