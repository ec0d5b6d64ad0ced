"""Cyclical learning rates: the rate bounces between two bounds (Smith, 2017)."""

import math

import keras
from keras import ops

from tfopt import _checks
from tfopt.schedules._base import Schedule


@keras.saving.register_keras_serializable(package="tfopt")
class Cyclic(Schedule):
    """A `LearningRateSchedule` that cycles linearly between `base_lr` and `max_lr`.

    The rate at Keras iteration `step` equals PyTorch's `CyclicLR(step_size_up=step_size)` after `step` calls of
    `scheduler.step()`:

    ```python
    cycle = floor(1 + step / (2 * step_size))
    x = 1 + step / (2 * step_size) - cycle
    scale = x / 0.5 if x <= 0.5 else (x - 1) / (0.5 - 1)
    height = (max_lr - base_lr) * scale
    if mode == "triangular":
        lr = base_lr + height
    elif mode == "triangular2":
        lr = base_lr + height / 2 ** (cycle - 1)
    else:  # "exp_range"
        lr = base_lr + height * gamma ** step
    ```

    The position inside a cycle is computed exactly (`step mod 2 * step_size`), so the rate near `base_lr` keeps
    float32's relative accuracy however many cycles have passed.

    Args:
        base_lr: A Python float >= 0. The lower bound, the rate at the start of every cycle.
        max_lr: A Python float, larger than `base_lr`. The upper bound, reached in the middle of a cycle (scaled
            down in the modes `"triangular2"` and `"exp_range"`).
        step_size: A Python int >= 1. Number of steps in half a cycle.
        mode: `"triangular"` (constant amplitude), `"triangular2"` (amplitude halved each cycle) or `"exp_range"`
            (amplitude scaled by `gamma ** step`). Defaults to `"triangular"`.
        gamma: A Python float in (0, 1], the decay per step of mode `"exp_range"`. Defaults to `1.0`.

    Example:

    >>> import keras, tfopt
    >>> schedule = tfopt.schedules.Cyclic(base_lr=1e-3, max_lr=1e-2, step_size=200, mode="triangular2")
    >>> optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    >>> [round(float(schedule(step)), 6) for step in (0, 100, 200, 400, 600)]
    [0.001, 0.0055, 0.01, 0.001, 0.0055]

    References:
        - [Smith, 2017](https://arxiv.org/abs/1506.01186): Cyclical Learning Rates for Training Neural Networks.
        - [PyTorch `CyclicLR`](https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CyclicLR.html)
    """

    def __init__(self, base_lr, max_lr, step_size, mode="triangular", gamma=1.0):
        self.base_lr = _checks.number("Cyclic", "base_lr", base_lr, low=0)
        self.max_lr = _checks.number("Cyclic", "max_lr", max_lr)
        _checks.less("Cyclic", "base_lr", self.base_lr, "max_lr", self.max_lr)
        self.step_size = _checks.integer("Cyclic", "step_size", step_size, low=1)
        self.mode = _checks.choice("Cyclic", "mode", mode, ("triangular", "triangular2", "exp_range"))
        self.gamma = _checks.number("Cyclic", "gamma", gamma, low=0, high=1, closed="high")

    def _amplitude(self, step, cycle):
        """The factor of the cycle's height: 1, halved each cycle, or `gamma ** step`."""
        if self.mode == "triangular2":
            return ops.power(2.0, 1.0 - cycle)
        if self.mode == "exp_range":
            return ops.exp(step * math.log(self.gamma))
        return 1.0

    def _value_at(self, step):
        step = ops.cast(step, "float32")
        period = 2.0 * self.step_size
        position = ops.mod(step, period)
        cycle = (step - position) / period + 1.0
        scale = (self.step_size - ops.abs(position - self.step_size)) / self.step_size
        height = (self.max_lr - self.base_lr) * scale
        return self.base_lr + height * self._amplitude(step, cycle)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "max_lr": self.max_lr,
            "step_size": self.step_size,
            "mode": self.mode,
            "gamma": self.gamma,
        }
