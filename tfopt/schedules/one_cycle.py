"""The 1cycle policy: `OneCycle` for the learning rate and `OneCycleMomentum` for the momentum that goes with it."""

import math

import keras
from keras import ops

from tfopt import _checks
from tfopt.schedules._base import Schedule


def _offset(step, point):
    """`step - point` in float32 with a single rounding, although the phase end `point` may lie off float32's grid.

    Rounding `point` to float32 first would misplace it by up to 3e-5 near step 650: a large relative error of the
    distance from a step to a phase end close by, which linear annealing passes on to the rate.
    """
    whole = math.floor(point)
    return (step - whole) - (point - whole)


class _Phases(Schedule):
    """The phase geometry shared by `OneCycle` and `OneCycleMomentum`: subclasses give the values at the phase ends.

    Phases run from one end step to the next and interpolate between their values with the pair of `_weights`,
    which sums to 1. Each weight is computed from its own distance to a phase end, never as `1 - other`, so a value
    approaching a tiny end value (the final learning rate) keeps float32's relative accuracy.
    """

    def __init__(self, total_steps, pct_start, anneal, three_phase):
        owner = type(self).__name__
        self.total_steps = _checks.integer(owner, "total_steps", total_steps, low=2)
        self.three_phase = _checks.boolean(owner, "three_phase", three_phase)
        if self.three_phase:
            self.pct_start = _checks.number(owner, "pct_start", pct_start, low=0, high=0.5, closed="high")
        else:
            self.pct_start = _checks.number(owner, "pct_start", pct_start, low=0, high=1, closed="neither")
        _checks.satisfies(
            owner, "total_steps", self.total_steps, self.pct_start > 1 / self.total_steps,
            f"> 1 / pct_start = {1 / self.pct_start:.4g} (pct_start={self.pct_start}: the warm-up, pct_start x "
            "total_steps, must last more than one step); it counts optimizer steps, epochs x steps_per_epoch, not "
            "epochs (or raise `pct_start`)",
        )
        self.anneal = _checks.choice(owner, "anneal", anneal, ("cos", "linear"))

    def _ends(self):
        """The step at which each phase ends, as PyTorch's `OneCycleLR` places them."""
        warmup_end = self.pct_start * self.total_steps - 1
        middle = [2 * self.pct_start * self.total_steps - 2] if self.three_phase else []
        return [warmup_end, *middle, self.total_steps - 1]

    def _values(self):
        """The value at step 0 and at the end of each phase: one more entry than `_ends()`."""
        raise NotImplementedError

    def _weights(self, step, start, end):
        """The weights of a phase's start and end values at `step`, for a phase from `start` to `end`."""
        to_go, done = -_offset(step, end), _offset(step, start)
        if self.anneal == "cos":
            angle = math.pi / 2 / (end - start)
            return ops.square(ops.sin(to_go * angle)), ops.square(ops.sin(done * angle))
        return to_go / (end - start), done / (end - start)

    def _value_at(self, step):
        step = ops.clip(ops.cast(step, "float32"), 0, self.total_steps - 1)
        bounds = [0.0, *self._ends()]
        values = self._values()
        result = None
        for k in reversed(range(len(bounds) - 1)):
            to_start, to_end = self._weights(step, bounds[k], bounds[k + 1])
            phase = values[k] * to_start + values[k + 1] * to_end
            result = phase if result is None else ops.where(step <= bounds[k + 1], phase, result)
        return result


@keras.saving.register_keras_serializable(package="tfopt")
class OneCycle(_Phases):
    """A `LearningRateSchedule` of the 1cycle policy: up to `max_lr`, then down far below the start.

    The rate at Keras iteration `step` equals PyTorch's `OneCycleLR` after `step` calls of `scheduler.step()`:

    ```python
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    # phases as (end step, start value, end value); each starts where the previous one ends, the first at step 0
    phases = [(pct_start * total_steps - 1, initial_lr, max_lr), (total_steps - 1, max_lr, min_lr)]
    if three_phase:
        phases = [(pct_start * total_steps - 1, initial_lr, max_lr),
                  (2 * pct_start * total_steps - 2, max_lr, initial_lr),
                  (total_steps - 1, initial_lr, min_lr)]
    step = min(step, total_steps - 1)
    phase_start = 0
    for phase_end, start, end in phases:
        if step <= phase_end or phase_end == total_steps - 1:
            break
        phase_start = phase_end
    pct = (step - phase_start) / (phase_end - phase_start)
    if anneal == "cos":
        lr = end + (start - end) / 2 * (cos(pi * pct) + 1)
    else:
        lr = start + (end - start) * pct
    ```

    Steps past `total_steps - 1` hold the final rate `min_lr` (PyTorch raises there instead; so do
    `tfopt.callbacks.LRScheduler` and `OneCyclePolicy` when `fit` would run past them). The rate is computed
    in a form that keeps float32's relative accuracy down to `min_lr`. `momentum(...)` gives the matching momentum
    schedule, `OneCycleMomentum`.

    Args:
        max_lr: A Python float > 0. The peak learning rate.
        total_steps: A Python int >= 2 and > `1 / pct_start`. Number of optimizer steps in the cycle
            (`epochs * steps_per_epoch` for a cycle over the whole `fit`).
        pct_start: A Python float. Fraction of the cycle spent increasing the rate; in (0, 1), or (0, 0.5] when
            `three_phase`. Defaults to `0.3`.
        div_factor: A Python float > 0. The initial rate is `max_lr / div_factor`. Defaults to `25.0`.
        final_div_factor: A Python float > 0. The final rate is `max_lr / div_factor / final_div_factor`.
            Defaults to `1e4`.
        anneal: `"cos"` or `"linear"`, the shape of each phase. Defaults to `"cos"`.
        three_phase: A Python bool. If `True`, the rate goes back down to the initial rate symmetrically before the
            final annihilation phase (fast.ai's original schedule). Defaults to `False`.

    Example:

    >>> import keras, tfopt
    >>> schedule = tfopt.schedules.OneCycle(max_lr=1e-2, total_steps=1000)
    >>> optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    >>> round(float(schedule(0)), 6), round(float(schedule(299)), 6), float(schedule(999)) < 1e-6
    (0.0004, 0.01, True)

    References:
        - [Smith & Topin, 2018](https://arxiv.org/abs/1708.07120): Super-Convergence: Very Fast Training of Neural
          Networks Using Large Learning Rates.
        - [PyTorch `OneCycleLR`](https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html)
    """

    def __init__(
        self,
        max_lr,
        total_steps,
        pct_start=0.3,
        div_factor=25.0,
        final_div_factor=1e4,
        anneal="cos",
        three_phase=False,
    ):
        super().__init__(total_steps, pct_start, anneal, three_phase)
        self.max_lr = _checks.number("OneCycle", "max_lr", max_lr, low=0, closed="neither")
        self.div_factor = _checks.number("OneCycle", "div_factor", div_factor, low=0, closed="neither")
        self.final_div_factor = _checks.number(
            "OneCycle", "final_div_factor", final_div_factor, low=0, closed="neither"
        )

    def _values(self):
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        return [initial, self.max_lr, initial, final] if self.three_phase else [initial, self.max_lr, final]

    def momentum(self, base_momentum=0.85, max_momentum=0.95):
        """The `OneCycleMomentum` schedule that cycles momentum (SGD `momentum`, Adam `beta_1`) against this rate.

        Args:
            base_momentum: The momentum at the peak rate, in [0, 1). Defaults to `0.85`.
            max_momentum: The momentum at the start and the end, in [base_momentum, 1). Defaults to `0.95`.
        """
        return OneCycleMomentum(
            self.total_steps, base_momentum, max_momentum, self.pct_start, self.anneal, self.three_phase
        )

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "anneal": self.anneal,
            "three_phase": self.three_phase,
        }


@keras.saving.register_keras_serializable(package="tfopt")
class OneCycleMomentum(_Phases):
    """The momentum of the 1cycle policy: down while the rate of `OneCycle` rises, back up while it falls.

    The value at Keras iteration `step` equals the momentum PyTorch's `OneCycleLR(cycle_momentum=True)` sets after
    `step` calls of `scheduler.step()`. The phases and their annealing are those of `OneCycle`:

    ```python
    phases = [(pct_start * total_steps - 1, max_momentum, base_momentum),
              (total_steps - 1, base_momentum, max_momentum)]
    if three_phase:
        phases = [(pct_start * total_steps - 1, max_momentum, base_momentum),
                  (2 * pct_start * total_steps - 2, base_momentum, max_momentum),
                  (total_steps - 1, max_momentum, max_momentum)]
    momentum = anneal(start, end, pct)  # exactly as in `OneCycle`
    ```

    Args:
        total_steps: A Python int >= 2. Number of steps in the cycle.
        base_momentum: A Python float in [0, 1). The lowest momentum, at the peak rate. Defaults to `0.85`.
        max_momentum: A Python float in [base_momentum, 1). The momentum at the start and the end.
            Defaults to `0.95`.
        pct_start: A Python float, as in `OneCycle`. Defaults to `0.3`.
        anneal: `"cos"` or `"linear"`, as in `OneCycle`. Defaults to `"cos"`.
        three_phase: A Python bool, as in `OneCycle`. Defaults to `False`.

    Example:

    >>> import tfopt
    >>> momentum = tfopt.schedules.OneCycle(max_lr=1e-2, total_steps=1000).momentum(0.85, 0.95)
    >>> round(float(momentum(0)), 6), round(float(momentum(299)), 6), round(float(momentum(999)), 6)
    (0.95, 0.85, 0.95)

    References:
        - [Smith, 2018](https://arxiv.org/abs/1803.09820): A disciplined approach to neural network
          hyper-parameters: Part 1 -- learning rate, batch size, momentum, and weight decay.
    """

    def __init__(
        self,
        total_steps,
        base_momentum=0.85,
        max_momentum=0.95,
        pct_start=0.3,
        anneal="cos",
        three_phase=False,
    ):
        super().__init__(total_steps, pct_start, anneal, three_phase)
        owner = "OneCycleMomentum"
        self.base_momentum = _checks.fraction(owner, "base_momentum", base_momentum)
        self.max_momentum = _checks.number(
            owner, "max_momentum", max_momentum, low=self.base_momentum, high=1, closed="low"
        )

    def _values(self):
        low, high = self.base_momentum, self.max_momentum
        return [high, low, high, high] if self.three_phase else [high, low, high]

    def get_config(self):
        return {
            "total_steps": self.total_steps,
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
            "pct_start": self.pct_start,
            "anneal": self.anneal,
            "three_phase": self.three_phase,
        }
