"""Relational KD: match the distances and angles between a batch's embeddings (Park et al., CVPR 2019)."""

import keras
from keras import ops

from tfopt import _checks
from tfopt.distill import _loss

_OWNER = "RelationalKD"
_EPSILON = 1e-12


def smooth_l1(a, b):
    """Huber loss with delta 1 (PyTorch's `smooth_l1_loss`), averaged over every element."""
    error = ops.abs(a - b)
    return ops.mean(ops.where(error < 1.0, 0.5 * ops.square(error), error - 0.5))


def normalised_distances(embeddings):
    """Pairwise Euclidean distances (diagonal 0) divided by their mean over the off-diagonal pairs."""
    squares = ops.sum(ops.square(embeddings), axis=1)
    squared = squares[:, None] + squares[None, :] - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings))
    distances = ops.sqrt(ops.maximum(squared, _EPSILON))
    n = ops.shape(embeddings)[0]
    distances = ops.where(ops.eye(n, dtype="bool"), 0.0, distances)
    pairs = ops.cast(n * (n - 1), "float32")
    mean = ops.sum(distances) / ops.maximum(pairs, 1.0)
    return distances / ops.maximum(mean, _EPSILON)


def angles(embeddings):
    """cos of the angle at i between j and k for every triplet: <e_j - e_i, e_k - e_i> of unit vectors, flattened."""
    differences = embeddings[None, :, :] - embeddings[:, None, :]  # [i, j] = e_j - e_i
    norms = ops.sqrt(ops.maximum(ops.sum(ops.square(differences), axis=2, keepdims=True), _EPSILON**2))
    units = differences / norms
    return ops.reshape(ops.matmul(units, ops.transpose(units, (0, 2, 1))), (-1,))


@keras.saving.register_keras_serializable(package="tfopt")
class RelationalKD(_loss.DistillationLoss):
    """Distance-wise and angle-wise relational KD between the teacher's and the student's embeddings of a batch.

    ```python
    d(e)[i, j] = ||e_i - e_j|| / mean(||e_k - e_l|| for k != l)          # 0 on the diagonal
    a(e)[i, j, k] = <(e_j - e_i) / ||e_j - e_i||, (e_k - e_i) / ||e_k - e_i||>
    loss = distance_weight * mean(huber(d(s) - d(t))) + angle_weight * mean(huber(a(s) - a(t)))
    ```

    `huber` is the smooth-L1 loss with delta 1; the means run over all `N²` pairs and `N³` triplets of the batch
    (memory grows as `N³ × features`). Embeddings are the models' outputs, or the outputs of `teacher_layer` /
    `student_layer`, flattened per sample; their sizes may differ. Follows the authors' `RkdDistance`, `RKdAngle`
    and `pdist` (lenscloth/RKD `metric/loss.py` and `metric/utils.py`, commit 0a6c3c0; mdistiller's `rkd_loss` is
    the same), with their `eps = 1e-12` under the squared distance and the unit-vector norm floored at 1e-12.

    A batch loss: every term mixes several samples, so it is computed over the whole batch and `sample_weight` is
    ignored (a weight can't be given to one sample of a relation). Every sample, labeled or not, takes part.

    Args:
        distance_weight: A Python float >= 0, the weight of the distance-wise term. Defaults to `25.0`.
        angle_weight: A Python float >= 0, the weight of the angle-wise term. Defaults to `50.0`.
        teacher_layer: The name of the teacher layer giving the embeddings, or `None` for the model's output.
            Defaults to `None`.
        student_layer: The name of the student layer giving the embeddings, or `None` for the model's output.
            Defaults to `None`.

    Example:

    >>> import numpy as np
    >>> from tfopt.distill.relational_kd import RelationalKD
    >>> loss = RelationalKD()
    >>> teacher = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], "float32")
    >>> round(float(loss.compute_loss(teacher, 3.0 * teacher + 1.0)), 6)   # same relations at another scale
    0.0

    References:
        - [Park et al., 2019](https://arxiv.org/abs/1904.05068): Relational Knowledge Distillation (CVPR 2019).
        - [lenscloth/RKD](https://github.com/lenscloth/RKD) `metric/loss.py`, `metric/utils.py`, commit 0a6c3c0.
    """

    name = "relational_kd"
    weighs_samples = False  # a batch loss (see above)

    def __init__(self, distance_weight=25.0, angle_weight=50.0, teacher_layer=None, student_layer=None):
        self.distance_weight = _checks.number(_OWNER, "distance_weight", distance_weight, low=0)
        self.angle_weight = _checks.number(_OWNER, "angle_weight", angle_weight, low=0)
        self.teacher_layer = None if teacher_layer is None else _loss.layer_name(_OWNER, "teacher_layer", teacher_layer)
        self.student_layer = None if student_layer is None else _loss.layer_name(_OWNER, "student_layer", student_layer)
        self.teacher_layers = () if teacher_layer is None else (teacher_layer,)
        self.student_layers = () if student_layer is None else (student_layer,)

    def compute_loss(self, teacher_outputs, student_outputs, y=None, sample_weight=None, step=None, **kwargs):
        """The loss of the whole batch; `y`, `sample_weight` and `step` are not used (see above)."""
        teacher = _loss.as_float(_loss.single(teacher_outputs, self.teacher_layers))
        student = _loss.as_float(_loss.single(student_outputs, self.student_layers))
        teacher = ops.stop_gradient(ops.reshape(teacher, (ops.shape(teacher)[0], -1)))
        student = ops.reshape(student, (ops.shape(student)[0], -1))
        loss = 0.0
        if self.distance_weight > 0:
            distance = smooth_l1(normalised_distances(student), normalised_distances(teacher))
            loss = loss + self.distance_weight * distance
        if self.angle_weight > 0:
            loss = loss + self.angle_weight * smooth_l1(angles(student), angles(teacher))
        return ops.convert_to_tensor(loss, "float32")

    def get_config(self):
        return {
            "distance_weight": self.distance_weight,
            "angle_weight": self.angle_weight,
            "teacher_layer": self.teacher_layer,
            "student_layer": self.student_layer,
        }
