"""The tf_keras `Distiller` (Keras 2, `TF_USE_LEGACY_KERAS=1`), for tfmot users distilling into a tfmot-pruned or
tfmot-QAT student. `tfopt.distill.Distiller(teacher, student, ...)` returns one when given tf_keras models.

tf_keras is imported inside `distiller_class`, never by `import tfopt`. Losses reading the models' outputs
(`SoftTargets`, `DecoupledKD`) work; feature losses need the layer graph rewiring only Keras 3 offers.

Example:
    >>> import tf_keras, tfopt
    >>> teacher = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
    >>> student = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
    >>> type(tfopt.distill.Distiller(teacher, student, tfopt.distill.SoftTargets())).__name__
    'LegacyDistiller'
"""

import functools

import tensorflow as tf

from tfopt.distill._steps import DistillationSteps


@functools.cache
def distiller_class():
    """The tf_keras `Model` subclass that distils tf_keras models, made on the first call."""
    import tf_keras

    class LegacyDistiller(DistillationSteps, tf_keras.Model):
        """`tfopt.distill.Distiller` for tf_keras models (see it for the arguments); not saved as a whole: save
        `distiller.student`."""

        _keras, _generation = tf_keras, "tf_keras"

        def train_step(self, data):
            x, y, sample_weight = tf_keras.utils.unpack_x_y_sample_weight(data)
            with tf.GradientTape() as tape:
                total, y_pred, logged = self._step_losses(x, y, sample_weight, training=True)
            self.optimizer.minimize(total, self.trainable_variables, tape=tape)  # scales a LossScaleOptimizer's
            return self._metrics_for(x, y, y_pred, sample_weight, logged)

    return LegacyDistiller
