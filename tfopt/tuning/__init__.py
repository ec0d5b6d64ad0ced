"""KerasTuner search spaces for tfopt's optimizers, schedules, distillation and compression, and the Pareto front
of a search.

Each function takes the `hp` (a `keras_tuner.HyperParameters`) of a `HyperModel.build`, registers its
hyper-parameters on it and returns a ready object; importing this package does not import keras_tuner.

Example:
    >>> import keras_tuner, tfopt.tuning
    >>> hp = keras_tuner.HyperParameters()
    >>> optimizer = tfopt.tuning.optimizer(hp, learning_rate=tfopt.tuning.schedule(hp, total_steps=1000))
    >>> type(optimizer).__name__, hp.values["schedule"]
    ('Adam', 'constant')
"""

from tfopt.tuning.front import Front, pareto
from tfopt.tuning.spaces import compression, distillation, optimizer, schedule

__all__ = ["Front", "compression", "distillation", "optimizer", "pareto", "schedule"]
