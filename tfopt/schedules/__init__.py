"""Learning-rate schedules (Keras 3 `LearningRateSchedule`s) that plug into any optimizer's `learning_rate`.

Example:
    >>> import keras, tfopt
    >>> schedule = tfopt.schedules.WarmUp(tfopt.schedules.Cyclic(1e-3, 1e-2, step_size=500), warmup_steps=100)
    >>> optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
"""

from tfopt.schedules.cyclic import Cyclic
from tfopt.schedules.inverse_sqrt import InverseSqrt
from tfopt.schedules.one_cycle import OneCycle, OneCycleMomentum
from tfopt.schedules.plot import plot, values
from tfopt.schedules.scaled import Scaled
from tfopt.schedules.warmup import WarmUp
from tfopt.schedules.warmup_stable_decay import WarmupStableDecay

__all__ = [
    "Cyclic",
    "InverseSqrt",
    "OneCycle",
    "OneCycleMomentum",
    "Scaled",
    "WarmUp",
    "WarmupStableDecay",
    "plot",
    "values",
]
