"""Hints: regress the student's intermediate feature onto the teacher's (FitNets, Romero et al., 2015)."""

import keras
from keras import ops

from tfopt import _checks
from tfopt.distill import _loss

_OWNER = "HintDistillation"


def _projection_for(teacher_shape, student_shape, name):
    """A 1x1 Conv2D (4-D features) or Dense (other ranks) mapping the student's channels to the teacher's."""
    channels = teacher_shape[-1]
    if len(student_shape) == 4:
        layer = keras.layers.Conv2D(channels, 1, name=name)
    else:
        layer = keras.layers.Dense(channels, name=name)
    layer.build((None, *student_shape[1:]))
    return layer


@keras.saving.register_keras_serializable(package="tfopt")
class HintDistillation(_loss.DistillationLoss):
    """The mean squared error between a teacher layer's output (the hint) and a student layer's, projected.

    ```python
    guided = projection(student_feature) if the shapes differ else student_feature
    loss_i = mean((teacher_feature_i - guided_i) ** 2)            # over all of a sample's feature elements
    loss = sum(w_i * loss_i) / sum(w_i)                           # mean over the batch
    ```

    The projection (FitNets' regressor) is a 1x1 `Conv2D` for 4-D (channels-last) features, else a `Dense` on the
    last axis, from the student's channels to the teacher's, with a bias and no activation. It is created by `build`
    when the channel counts differ (`projection="auto"`), trained with the student (it is in `trainable_layers`) and
    is not part of the student. Spatial sizes must match. Follows mdistiller's `FitNet` (`F.mse_loss` with mean
    reduction, no factor 1/2; `mdistiller/distillers/FitNet.py`, commit a08d46f), whose regressor `ConvReg` adds
    BatchNorm and ReLU after the 1x1 convolution and also adapts spatial sizes; tfopt's is the linear 1x1 map.

    Args:
        teacher_layer: The name of the teacher layer giving the hint.
        student_layer: The name of the student layer guided by it.
        projection: `"auto"` (a projection when the channel counts differ) or `None` (never; the shapes must then be
            equal). Defaults to `"auto"`.

    Example:

    >>> import numpy as np
    >>> from tfopt.distill.hint import HintDistillation
    >>> loss = HintDistillation("teacher_conv", "student_conv")
    >>> loss.build([(None, 8, 8, 32)], [(None, 8, 8, 8)])
    >>> [layer.name for layer in loss.trainable_layers]
    ['hint_projection_student_conv']
    >>> teacher, student = np.ones((2, 8, 8, 32), "float32"), np.zeros((2, 8, 8, 8), "float32")
    >>> float(loss.compute_loss([teacher], [student]))  # the projection of zeros is its bias, 0 at first
    1.0

    References:
        - [Romero et al., 2015](https://arxiv.org/abs/1412.6550): FitNets: Hints for Thin Deep Nets (ICLR 2015).
        - [mdistiller](https://github.com/megvii-research/mdistiller) `mdistiller/distillers/FitNet.py`, commit
          a08d46f.
    """

    name = "hint_distillation"

    def __init__(self, teacher_layer, student_layer, projection="auto"):
        self.teacher_layer = _loss.layer_name(_OWNER, "teacher_layer", teacher_layer)
        self.student_layer = _loss.layer_name(_OWNER, "student_layer", student_layer)
        self.projection = _checks.choice(_OWNER, "projection", projection, ("auto", None))
        self.teacher_layers = (self.teacher_layer,)
        self.student_layers = (self.student_layer,)
        self._projection = None
        self.built = False

    def build(self, teacher_shapes, student_shapes):
        """Checks the two features' shapes and creates the projection when the channel counts differ."""
        teacher_shape = _loss.shape_list(teacher_shapes)[0]
        student_shape = _loss.shape_list(student_shapes)[0]
        shapes = f"teacher `{self.teacher_layer}` {teacher_shape}, student `{self.student_layer}` {student_shape}"
        if len(teacher_shape) != len(student_shape) or len(teacher_shape) < 2:
            raise ValueError(f"{_OWNER}: the features must have the same rank (>= 2). Received: {shapes}")
        if teacher_shape[1:-1] != student_shape[1:-1]:
            raise ValueError(f"{_OWNER}: the features' spatial sizes must be equal. Received: {shapes}")
        if teacher_shape[-1] != student_shape[-1]:
            if self.projection is None:
                raise ValueError(
                    f"{_OWNER}: with `projection=None` the features' shapes must be equal (use projection='auto' "
                    f"to learn a map between them). Received: {shapes}"
                )
            name = "hint_projection_" + _loss.safe_name(self.student_layer)
            self._projection = _projection_for(teacher_shape, student_shape, name)
        self.built = True

    @property
    def trainable_layers(self):
        return [] if self._projection is None else [self._projection]

    def compute_loss(self, teacher_outputs, student_outputs, y=None, sample_weight=None, step=None, **kwargs):
        """The loss averaged over the batch (weighted by `sample_weight`); `y` and `step` are not used."""
        if not self.built:
            raise RuntimeError(
                f"{_OWNER}: call `build(teacher_shapes, student_shapes)` before `compute_loss` (tfopt's Distiller "
                "does); Keras's own Distiller can't pass layer features to it."
            )
        teacher = _loss.as_float(_loss.single(teacher_outputs, self.teacher_layers))
        student = _loss.single(student_outputs, self.student_layers)
        if self._projection is not None:
            student = self._projection(student)
        squared = ops.square(teacher - _loss.as_float(student))
        per_sample = ops.mean(ops.reshape(squared, (ops.shape(squared)[0], -1)), axis=-1)
        return _loss.weighted_mean(per_sample, sample_weight)

    def get_config(self):
        return {
            "teacher_layer": self.teacher_layer,
            "student_layer": self.student_layer,
            "projection": self.projection,
        }
