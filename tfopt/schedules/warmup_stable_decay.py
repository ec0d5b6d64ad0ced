"""The warmup-stable-decay (WSD) schedule: warm up, hold the peak rate, then decay quickly at the end."""

import math

import keras
from keras import ops

from tfopt import _checks
from tfopt.schedules._base import Schedule


@keras.saving.register_keras_serializable(package="tfopt")
class WarmupStableDecay(Schedule):
    """A `LearningRateSchedule` with a linear warm-up, a long constant stage and a short final decay.

    Because the rate stays at its peak until the decay, one run can be branched into decays at several points
    (MiniCPM's use of it), and the decay stage can be planned after training has started:

    ```python
    if step < warmup_steps:
        lr = peak_lr * step / warmup_steps
    elif step < warmup_steps + stable_steps:
        lr = peak_lr
    else:
        t = min(step - warmup_steps - stable_steps, decay_steps)
        if decay == "linear":
            fraction = 1 - t / decay_steps
        elif decay == "cosine":
            fraction = 0.5 * (1 + cos(pi * t / decay_steps))
        else:  # "1-sqrt"
            fraction = 1 - sqrt(t / decay_steps)
        lr = final_lr + (peak_lr - final_lr) * fraction
    ```

    Args:
        peak_lr: A Python float > 0. The rate of the stable stage.
        warmup_steps: A Python int >= 0. Number of warm-up steps; 0 starts at `peak_lr`.
        stable_steps: A Python int >= 0. Number of steps at `peak_lr`.
        decay_steps: A Python int >= 1. Number of steps of the decay; the rate stays at `final_lr` afterwards.
        decay: `"linear"`, `"cosine"` or `"1-sqrt"`, the shape of the decay. Defaults to `"linear"`.
        final_lr: A Python float >= 0, smaller than `peak_lr`. The rate at the end of the decay. Defaults to `0.0`.

    Example:

    >>> import keras, tfopt
    >>> schedule = tfopt.schedules.WarmupStableDecay(1e-3, warmup_steps=100, stable_steps=700, decay_steps=200)
    >>> optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    >>> [round(float(schedule(step)), 6) for step in (0, 50, 100, 800, 900, 1000)]
    [0.0, 0.0005, 0.001, 0.001, 0.0005, 0.0]

    References:
        - [Hu et al., 2024](https://arxiv.org/abs/2404.06395): MiniCPM: Unveiling the Potential of Small Language
          Models with Scalable Training Strategies.
        - [Hägele et al., 2024](https://arxiv.org/abs/2405.18392): Scaling Laws and Compute-Optimal Training Beyond
          Fixed Training Durations (the `"1-sqrt"` decay).
    """

    def __init__(self, peak_lr, warmup_steps, stable_steps, decay_steps, decay="linear", final_lr=0.0):
        owner = "WarmupStableDecay"
        self.peak_lr = _checks.number(owner, "peak_lr", peak_lr, low=0, closed="neither")
        self.warmup_steps = _checks.integer(owner, "warmup_steps", warmup_steps, low=0)
        self.stable_steps = _checks.integer(owner, "stable_steps", stable_steps, low=0)
        self.decay_steps = _checks.integer(owner, "decay_steps", decay_steps, low=1)
        self.decay = _checks.choice(owner, "decay", decay, ("linear", "cosine", "1-sqrt"))
        self.final_lr = _checks.number(owner, "final_lr", final_lr, low=0)
        _checks.less(owner, "final_lr", self.final_lr, "peak_lr", self.peak_lr)

    def _fraction(self, remaining):
        """The fraction of `peak_lr - final_lr` left with `remaining` decay steps to go, from 1 down to 0.

        Computed from `remaining` directly (never as `1 - ...`), so the rate keeps its relative accuracy near
        `final_lr`.
        """
        left = remaining / self.decay_steps
        if self.decay == "cosine":
            return ops.square(ops.sin(left * (math.pi / 2)))
        if self.decay == "1-sqrt":
            return left / (1.0 + ops.sqrt((self.decay_steps - remaining) / self.decay_steps))
        return left

    def _value_at(self, step):
        step = ops.cast(step, "float32")
        warm = step * (self.peak_lr / max(self.warmup_steps, 1))
        decay_start = self.warmup_steps + self.stable_steps
        remaining = ops.clip(decay_start + self.decay_steps - step, 0, self.decay_steps)
        decayed = self.final_lr + (self.peak_lr - self.final_lr) * self._fraction(remaining)
        rate = ops.where(step < decay_start, self.peak_lr, decayed)
        return ops.where(step < self.warmup_steps, warm, rate)

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "warmup_steps": self.warmup_steps,
            "stable_steps": self.stable_steps,
            "decay_steps": self.decay_steps,
            "decay": self.decay,
            "final_lr": self.final_lr,
        }
