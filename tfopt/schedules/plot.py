"""Look at a schedule before training with it: its values as an array, or its curve as a PNG."""

import numpy as np
from keras import ops

from tfopt import _checks, _plotting


def _check_schedule(owner, schedule):
    _checks.satisfies(owner, "schedule", schedule, callable(schedule),
                      "a LearningRateSchedule or a function of the step", TypeError)


def values(schedule, steps):
    """The rates of `schedule` at steps `0 .. steps - 1`, as a NumPy array, from one vectorised call.

    `schedule` is called once with a 1-D tensor of the steps, so it must broadcast over it, as every tfopt schedule
    and Keras's element-wise ones (`ExponentialDecay`, `CosineDecay` without warm-up, ...) do.

    Args:
        schedule: A `keras.optimizers.schedules.LearningRateSchedule`, or a function `step -> rate` written with
            `keras.ops`.
        steps: A Python int >= 1. Number of steps.

    Returns:
        A NumPy array of shape `(steps,)`.

    Example:

    >>> import tfopt
    >>> rates = tfopt.schedules.values(tfopt.schedules.InverseSqrt(1e-3, warmup_steps=4), steps=9)
    >>> [round(float(rate), 6) for rate in rates[::4]]
    [0.0, 0.001, 0.000707]
    """
    _check_schedule("values", schedule)
    steps = _checks.integer("values", "steps", steps, low=1)
    rates = ops.convert_to_numpy(schedule(ops.arange(steps, dtype="int64")))
    return np.broadcast_to(rates, (steps,)).copy()


def plot(schedule, steps, path, title=None):
    """Writes the curve of `schedule` over steps `0 .. steps - 1` to the PNG file `path`, and returns `path`.

    The file is written to a temporary name in the same folder and then moved into place, so an existing `path` is
    never left half written. Needs matplotlib (`pip install tfopt[plot]`); pyplot's global state is not touched.

    Args:
        schedule: As in `values`.
        steps: A Python int >= 1. Number of steps.
        path: A file path ending in `.png`.
        title: A string above the plot. Defaults to `None`, the schedule's class name.

    Returns:
        `path`, as a string.

    Example:

    >>> import os, tempfile, tfopt
    >>> path = os.path.join(tempfile.mkdtemp(), "one_cycle.png")
    >>> tfopt.schedules.plot(tfopt.schedules.OneCycle(1e-2, total_steps=100), 100, path) == path
    True
    """
    _check_schedule("plot", schedule)
    steps = _checks.integer("plot", "steps", steps, low=1)
    if title is not None:
        _checks.instance("plot", "title", title, str, "a string or None")
    figure, axes = _plotting.new_figure(size=(6, 3.5))
    axes.plot(np.arange(steps), values(schedule, steps))
    axes.set(xlabel="step", ylabel="learning rate", title=type(schedule).__name__ if title is None else title)
    axes.grid(alpha=0.3)
    return _plotting.save_png(figure, path)
