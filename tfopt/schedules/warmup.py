"""Learning-rate warm-up in front of a constant rate or of any other schedule."""

import math

import keras
from keras import ops

from tfopt import _checks
from tfopt.schedules._base import Schedule


@keras.saving.register_keras_serializable(package="tfopt")
class WarmUp(Schedule):
    """A `LearningRateSchedule` that warms up from `start` to the rate `after` begins with, then follows `after`.

    `after` is a float or any Keras 3 `LearningRateSchedule` (Keras's own or tfopt's); it starts counting its steps
    at zero when the warm-up ends:

    ```python
    target = after(0) if callable(after) else after
    if step < warmup_steps:
        pct = step / warmup_steps
        if curve == "linear":
            lr = start + (target - start) * pct
        else:  # "cosine"
            lr = start + (target - start) * (1 - cos(pi * pct)) / 2
    else:
        lr = after(step - warmup_steps) if callable(after) else after
    ```

    Args:
        after: A Python float > 0, or a `keras.optimizers.schedules.LearningRateSchedule`: the rate to warm up to
            and follow.
        warmup_steps: A Python int >= 1. Number of warm-up steps.
        start: A Python float >= 0. The rate at step 0. Defaults to `0.0`.
        curve: `"linear"` or `"cosine"`, the shape of the warm-up. Defaults to `"linear"`.

    Example:

    >>> import keras, tfopt
    >>> decay = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=900)
    >>> schedule = tfopt.schedules.WarmUp(decay, warmup_steps=100)
    >>> optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    >>> [round(float(schedule(step)), 6) for step in (0, 50, 100, 550, 1000)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0]

    References:
        - [Goyal et al., 2017](https://arxiv.org/abs/1706.02677): Accurate, Large Minibatch SGD: Training ImageNet
          in 1 Hour.
    """

    def __init__(self, after, warmup_steps, start=0.0, curve="linear"):
        if not isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
            after = _checks.number(
                "WarmUp", "after", after, low=0, closed="neither", expected="a number or a LearningRateSchedule"
            )
        self.after = after
        self.warmup_steps = _checks.integer("WarmUp", "warmup_steps", warmup_steps, low=1)
        self.start = _checks.number("WarmUp", "start", start, low=0)
        self.curve = _checks.choice("WarmUp", "curve", curve, ("linear", "cosine"))

    def _after(self, step):
        """The rate of `after` at `step` (counted from the end of the warm-up), in float32."""
        if isinstance(self.after, float):
            return self.after
        return ops.cast(self.after(step), "float32")

    def _weights(self, progress):
        """The weights of `start` and of the target at `progress` steps into the warm-up; they sum to 1."""
        to_go = self.warmup_steps - progress
        if self.curve == "cosine":
            angle = math.pi / 2 / self.warmup_steps
            return ops.square(ops.sin(to_go * angle)), ops.square(ops.sin(progress * angle))
        return to_go / self.warmup_steps, progress / self.warmup_steps

    def _value_at(self, step):
        step = ops.convert_to_tensor(step)
        progress = ops.cast(step, "float32")
        to_start, to_target = self._weights(ops.minimum(progress, self.warmup_steps))
        warm = self.start * to_start + self._after(0) * to_target
        after = self._after(ops.maximum(step - self.warmup_steps, 0))
        return ops.where(progress < self.warmup_steps, warm, after)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["after"], dict):
            config["after"] = keras.saving.deserialize_keras_object(config["after"])
        return cls(**config)

    def get_config(self):
        after = self.after
        if not isinstance(after, float):
            after = keras.saving.serialize_keras_object(after)
        return {"after": after, "warmup_steps": self.warmup_steps, "start": self.start, "curve": self.curve}
