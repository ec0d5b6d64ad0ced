"""The Transformer's schedule: linear warm-up, then decay with the inverse square root of the step."""

import keras
from keras import ops

from tfopt import _checks
from tfopt.schedules._base import Schedule


@keras.saving.register_keras_serializable(package="tfopt")
class InverseSqrt(Schedule):
    """A `LearningRateSchedule` rising linearly to `peak_lr` at `warmup_steps`, then falling as `1 / sqrt(step)`.

    This is the schedule of "Attention Is All You Need", `d_model ** -0.5 * min(step ** -0.5, step *
    warmup_steps ** -1.5)`, scaled so that its peak is `peak_lr` instead of a function of the model width:

    ```python
    lr = peak_lr * min(step / warmup_steps, sqrt(warmup_steps / step))  # 0 at step 0
    ```

    Args:
        peak_lr: A Python float > 0. The rate at step `warmup_steps`, the highest one.
        warmup_steps: A Python int >= 1. Number of steps of the linear warm-up.

    Example:

    >>> import keras, tfopt
    >>> schedule = tfopt.schedules.InverseSqrt(peak_lr=1e-3, warmup_steps=100)
    >>> optimizer = keras.optimizers.Adam(learning_rate=schedule, beta_2=0.98, epsilon=1e-9)
    >>> [round(float(schedule(step)), 6) for step in (0, 50, 100, 400, 10000)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0001]

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762): Attention Is All You Need (section 5.3).
    """

    def __init__(self, peak_lr, warmup_steps):
        self.peak_lr = _checks.number("InverseSqrt", "peak_lr", peak_lr, low=0, closed="neither")
        self.warmup_steps = _checks.integer("InverseSqrt", "warmup_steps", warmup_steps, low=1)

    def _value_at(self, step):
        step = ops.cast(step, "float32")
        rise = step / self.warmup_steps
        fall = ops.sqrt(self.warmup_steps / ops.maximum(step, 1.0))
        return self.peak_lr * ops.minimum(rise, fall)

    def get_config(self):
        return {"peak_lr": self.peak_lr, "warmup_steps": self.warmup_steps}
