"""`Schedule`: the base of tfopt's learning-rate schedules."""

import keras


class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """A Keras 3 `LearningRateSchedule` whose value at a step subclasses give in `_value_at(step)`.

    Called without a step, as a tf_keras optimizer calls any learning rate that is not one of its own schedules,
    it raises a `TypeError` naming the way to drive a tf_keras optimizer: `tfopt.callbacks.LRScheduler`.
    """

    def __call__(self, step=None):
        if step is None:
            name = type(self).__name__
            raise TypeError(
                f"{name} was called without a `step`. tfopt schedules are Keras 3 "
                "`keras.optimizers.schedules.LearningRateSchedule`s; a tf_keras optimizer does not recognise them and "
                "calls them with no argument. For a tf_keras optimizer, create it with a float learning rate and pass "
                f"the schedule to `fit` as a callback: `callbacks=[tfopt.callbacks.LRScheduler({name}(...))]`."
            )
        return self._value_at(step)

    def _value_at(self, step):
        """The value at `step` (a scalar or a 1-D tensor of steps)."""
        raise NotImplementedError
