"""`Scaled`: a schedule multiplied by a factor that can change during training."""

import keras

from tfopt import _checks
from tfopt.schedules._base import Schedule


@keras.saving.register_keras_serializable(package="tfopt")
class Scaled(Schedule):
    """Multiplies a schedule by a factor held in a variable, so it can change after the train step is traced.

    `tfopt.callbacks.ReduceLROnPlateau` wraps a scheduled optimizer's schedule in `Scaled` and lowers the factor
    when the monitored metric stalls: the schedule's shape is kept, its level is reduced.

    ```python
    lr(step) = scale * schedule(step)
    ```

    Args:
        schedule: a `LearningRateSchedule` to scale.
        scale: the starting factor, > 0. Defaults to 1.0.

    Example:
        >>> import keras, tfopt
        >>> scaled = tfopt.schedules.Scaled(keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5))
        >>> scaled.set_scale(0.1)
        >>> round(float(scaled(0)), 6)
        0.01
    """

    def __init__(self, schedule, scale=1.0):
        self.schedule = _checks.instance(
            "Scaled", "schedule", schedule, keras.optimizers.schedules.LearningRateSchedule, "a LearningRateSchedule"
        )
        scale = _checks.number("Scaled", "scale", scale, low=0, closed="neither")
        self.scale = keras.Variable(scale, dtype="float32", trainable=False, name="scale")

    def set_scale(self, scale):
        """Sets the factor; the traced train step sees it from the next step on."""
        self.scale.assign(_checks.number("Scaled", "scale", scale, low=0, closed="neither"))

    def _value_at(self, step):
        return keras.ops.multiply(keras.ops.cast(self.schedule(step), "float32"), self.scale)

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "scale": float(keras.ops.convert_to_numpy(self.scale)),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config, schedule=keras.saving.deserialize_keras_object(config["schedule"]))
        return cls(**config)
