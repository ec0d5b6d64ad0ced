"""KerasTuner search spaces for tfopt's optimizers, schedules, distillation and compression, a tuner that scores
each trial by its exported TFLite model within size and latency budgets (`DeploymentTuner`), and the Pareto front
of a search.

Each function takes the `hp` (a `keras_tuner.HyperParameters`) of a `HyperModel.build`, registers its
hyper-parameters on it and returns a ready object; importing this package does not import keras_tuner (using
`DeploymentTuner` does).

Example:
    >>> import keras_tuner, tfopt.tuning
    >>> hp = keras_tuner.HyperParameters()
    >>> optimizer = tfopt.tuning.optimizer(hp, learning_rate=tfopt.tuning.schedule(hp, total_steps=1000))
    >>> type(optimizer).__name__, hp.values["schedule"]
    ('Adam', 'constant')
"""

from tfopt.tuning.front import Front, pareto
from tfopt.tuning.spaces import compression, distillation, optimizer, schedule

__all__ = ["DeploymentTuner", "Front", "compression", "distillation", "optimizer", "pareto", "schedule"]


def __getattr__(name):
    """`DeploymentTuner` subclasses `keras_tuner.Tuner`: keras_tuner is imported on first use, not with tfopt."""
    if name == "DeploymentTuner":
        from tfopt.tuning.deployment import DeploymentTuner

        return DeploymentTuner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
