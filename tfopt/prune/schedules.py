"""Pruning schedules: at which training steps the masks are recomputed, and to what sparsity.

The semantics are tfmot's (`tensorflow_model_optimization.sparsity.keras.ConstantSparsity` / `PolynomialDecay`), so
a schedule means the same on a Keras 3 model (tfopt's own pruning) and on a tf_keras model (handed to tfmot).
"""

import keras
from keras import ops

from tfopt import _checks


class PruningSchedule:
    """Base of the pruning schedules: the masks are recomputed at the steps `should_update` accepts.

    The step counts training batches: it is 1 in the first batch a pruned layer trains on (tfmot's `pruning_step`).

    ```python
    should_update(step) = (begin_step <= step and (step <= end_step or end_step == -1)
                           and (step - begin_step) % frequency == 0)
    ```

    Subclasses define `sparsity(step)`, the fraction of weights to zero at an update step. Both methods take a
    Python int or an integer tensor and return tensors, so they run inside the compiled training step.

    Args:
        begin_step: A Python int >= 0. The first step that may update the masks.
        end_step: A Python int > `begin_step`: the last step that may update the masks; `-1` (where the schedule
            allows it) means never stop.
        frequency: A Python int >= 1. The masks are updated every `frequency` steps from `begin_step`.
    """

    _never_ends = False

    def __init__(self, begin_step, end_step, frequency):
        owner = type(self).__name__
        self.begin_step = _checks.integer(owner, "begin_step", begin_step, low=0)
        self.end_step = _checks.integer(owner, "end_step", end_step, low=-1 if self._never_ends else None)
        if not (self._never_ends and self.end_step == -1):
            _checks.less(owner, "begin_step", self.begin_step, "end_step", self.end_step)
        self.frequency = _checks.integer(owner, "frequency", frequency, low=1)

    def should_update(self, step):
        """A boolean tensor: whether the masks are recomputed at `step`."""
        step = ops.cast(step, "int64")
        in_range = step >= self.begin_step
        if self.end_step != -1:
            in_range = ops.logical_and(in_range, step <= self.end_step)
        return ops.logical_and(in_range, ops.equal(ops.mod(step - self.begin_step, self.frequency), 0))

    def sparsity(self, step):
        """A float32 tensor: the fraction of weights to zero when the masks are updated at `step`."""
        raise NotImplementedError(f"{type(self).__name__} must define `sparsity(step)`.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_config(self):
        return {"begin_step": self.begin_step, "end_step": self.end_step, "frequency": self.frequency}


@keras.saving.register_keras_serializable(package="tfopt")
class ConstantSparsity(PruningSchedule):
    """Prunes to the same sparsity at every update step.

    ```python
    sparsity(step) = target
    ```

    Args:
        target: A Python float in [0, 1). The fraction of weights to zero.
        begin_step: A Python int >= 0. The first step that may update the masks.
        end_step: A Python int > `begin_step`, the last step that may update the masks, or `-1` to keep updating
            them until training ends. Defaults to `-1`.
        frequency: A Python int >= 1. Update the masks every `frequency` steps from `begin_step`. Defaults to `100`.

    Example:

    >>> import tfopt
    >>> schedule = tfopt.prune.ConstantSparsity(0.8, begin_step=0, frequency=10)
    >>> [bool(schedule.should_update(step)) for step in (0, 5, 10)], round(float(schedule.sparsity(5)), 4)
    ([True, False, True], 0.8)
    """

    _never_ends = True

    def __init__(self, target, begin_step, end_step=-1, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        self.target = _checks.fraction("ConstantSparsity", "target", target)

    def sparsity(self, step):
        return ops.convert_to_tensor(self.target, "float32")

    def get_config(self):
        return {"target": self.target, **super().get_config()}


@keras.saving.register_keras_serializable(package="tfopt")
class PolynomialDecay(PruningSchedule):
    """Raises the sparsity from `initial` to `final` along a polynomial: fast at first, then levelling off.

    ```python
    progress = clip((step - begin_step) / (end_step - begin_step), 0, 1)     # in float32
    sparsity(step) = final + (initial - final) * (1 - progress) ** power
    ```

    Args:
        initial: A Python float in [0, 1). The sparsity at `begin_step`.
        final: A Python float in [0, 1). The sparsity from `end_step` on.
        begin_step: A Python int >= 0. The first step that may update the masks.
        end_step: A Python int > `begin_step`. The last step that may update the masks.
        power: A Python float > 0. The exponent of the decay. Defaults to `3`.
        frequency: A Python int >= 1. Update the masks every `frequency` steps from `begin_step`. Defaults to `100`.

    Example:

    >>> import tfopt
    >>> schedule = tfopt.prune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, frequency=50)
    >>> [round(float(schedule.sparsity(step)), 4) for step in (0, 50, 100)]
    [0.0, 0.7, 0.8]

    References:
        - [Zhu & Gupta, 2017](https://arxiv.org/abs/1710.01878): To prune, or not to prune: exploring the efficacy
          of pruning for model compression.
    """

    def __init__(self, initial, final, begin_step, end_step, power=3, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        self.initial = _checks.fraction("PolynomialDecay", "initial", initial)
        self.final = _checks.fraction("PolynomialDecay", "final", final)
        self.power = _checks.number("PolynomialDecay", "power", power, low=0, closed="neither")

    def sparsity(self, step):
        elapsed = ops.cast(ops.cast(step, "int64") - self.begin_step, "float32")
        progress = ops.clip(elapsed / float(self.end_step - self.begin_step), 0.0, 1.0)
        return (self.initial - self.final) * ops.power(1.0 - progress, self.power) + self.final

    def get_config(self):
        return {"initial": self.initial, "final": self.final, "power": self.power, **super().get_config()}
