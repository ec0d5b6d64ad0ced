"""`Distiller`: trains a student from a frozen teacher inside `fit`, with labels where there are some."""

import keras

from tfopt import _compat
from tfopt.distill._steps import DistillationSteps


@keras.saving.register_keras_serializable(package="tfopt")
class Distiller(DistillationSteps, keras.Model):
    """A model that trains `student` to match a frozen `teacher` and, where labels exist, the labels.

    Compile it with the student's task loss and metrics, and `fit` it on `(x, y)`; `distiller.student` is the
    trained student, a plain Keras model (no tfopt layer in it). Each step:

    ```python
    t = teacher(x, training=False)                  # frozen: BatchNorm and Dropout in inference mode
    s = student(x, training=True)                   # features by layer name too, for feature losses
    task = mean over labeled samples of loss(y, s)  # a class index -1 (int or float) marks an unlabeled sample
    distill = sum(w_i * loss_i(t, s, y, sample_weight, step))    # every sample
    total = student_loss_weight * task + (1 - student_loss_weight) * distill
    ```
    History logs `loss` (the total), `student_loss` and `<name>_loss` for each distillation loss, plus the compiled
    metrics over the labeled samples. A batch without labels contributes 0 to the task loss. An epoch (or an
    `evaluate`) without any labeled sample logs the compiled metrics as 0.0, what a Keras metric reads when it saw
    no sample: not a score (`accuracy` 0.0 with every label -1 means "no labels"). Under a
    `tf.distribute` strategy the task loss is the mean over the labeled samples of the global batch, and each
    weighted distillation loss the weighted mean over the global batch, as on one device. `fit(x)` without labels
    trains on the teacher alone and logs the losses only.
    A loss reading logits (`SoftTargets()`, `DecoupledKD`) refuses a teacher or student whose output comes from a
    softmax (a layer's activation, a `Softmax` layer or `keras.ops.softmax`), and `SoftTargets(from_logits=False)`
    one whose output layer has another activation, wherever the model's layers say so.

    Args:
        teacher: a trained Keras 3 model; it is frozen (`trainable = False`) and never changed.
        student: the Keras 3 model to train: Sequential or Functional if a loss reads its layers, any model
            otherwise (a `tfopt.prune` or `tfopt.quantize` copy too, for compression in the same fit).
        distillation_losses: a `tfopt.distill` loss or a list of them (each with a distinct `name`).
        distillation_loss_weights: a weight >= 0 per loss (any scale, as Keras's `Distiller` takes: e.g. 1000
            for `AttentionTransfer`). Defaults to `None` (1.0 each).
        student_loss_weight: the task loss's share in [0, 1]. Defaults to `0.5`.
        **kwargs: base `keras.Model` keywords (`name`, ...).

    Example:
    >>> import keras, numpy as np, tfopt
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> distiller = tfopt.distill.Distiller(teacher, student, tfopt.distill.SoftTargets(temperature=2.0))
    >>> distiller.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> y = np.array([0, 1, -1, -1] * 4)             # half of the samples unlabeled
    >>> history = distiller.fit(np.random.rand(16, 4), y, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['loss', 'soft_targets_loss', 'student_loss']
    """

    _keras, _generation = keras, "Keras 3"

    def __new__(cls, teacher=None, student=None, *args, **kwargs):
        if _compat.is_legacy(teacher) or _compat.is_legacy(student):
            from tfopt.distill import legacy

            return legacy.distiller_class()(teacher, student, *args, **kwargs)
        return super().__new__(cls, teacher, student, *args, **kwargs)

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {
            **super().get_config(),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "distillation_losses": [keras.saving.serialize_keras_object(loss) for loss in self.distillation_losses],
            "distillation_loss_weights": self.distillation_loss_weights,
            "student_loss_weight": self.student_loss_weight,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        config["distillation_losses"] = [keras.saving.deserialize_keras_object(loss)
                                         for loss in config["distillation_losses"]]
        return cls(**config)
