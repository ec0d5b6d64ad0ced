"""Soft targets: the teacher's temperature-softened class probabilities (Hinton et al., 2015)."""

import keras
from keras import ops

from tfopt import _checks
from tfopt.distill import _loss

_OWNER = "SoftTargets"


def log_probabilities(outputs, temperature, from_logits):
    """`log(softmax(outputs / T))` for logits, `log_softmax(log(clip(p)) / T)` for probabilities `p`."""
    outputs = _loss.as_float(outputs)
    if not from_logits:
        outputs = ops.log(ops.clip(outputs, keras.config.epsilon(), 1.0))
    return ops.log_softmax(outputs / temperature, axis=-1)


def kl_divergence(log_p, log_q):
    """`KL(p || q) = sum(p * (log p - log q))` over the last axis, per sample, floored at 0 (a KL is never negative:
    the floor only removes float32 rounding when `p == q`)."""
    return ops.maximum(ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1), 0.0)


@keras.saving.register_keras_serializable(package="tfopt")
class SoftTargets(_loss.DistillationLoss):
    """The KL divergence from the teacher's softened class probabilities to the student's, scaled by `T²`.

    ```python
    log_p_t = log_softmax(teacher_logits / T)
    log_p_s = log_softmax(student_logits / T)
    loss_i = T**2 * sum(exp(log_p_t) * (log_p_t - log_p_s))      # KL(p_t || p_s) of sample i, >= 0
    loss = sum(w_i * loss_i) / sum(w_i)                           # mean over the batch
    ```

    Computed from log-softmax, so logits of any size stay finite. `T²` keeps the gradients' scale independent of
    the temperature (Hinton et al., section 2). For models ending in a softmax (`from_logits=False`), the logits are
    recovered as `log(clip(p, epsilon, 1))` (equal to the logits up to a per-sample constant, which the softmax
    ignores). Follows mdistiller's `kd_loss` (`mdistiller/distillers/KD.py`, commit a08d46f), per sample.

    Unlike `keras.distillation.LogitsDistillation()`, whose default `loss="kl_divergence"` takes the KL of the
    raw scaled logits and goes negative, this loss is a true KL divergence. It reads the models' outputs and works
    in Keras's own `keras.distillation.Distiller` too.

    Args:
        temperature: A Python float > 0, the softmax temperature `T`. Defaults to `4.0`.
        from_logits: Whether the models output logits (`True`) or probabilities (`False`). Defaults to `True`.

    Example:

    >>> import numpy as np
    >>> from tfopt.distill.soft_targets import SoftTargets
    >>> loss = SoftTargets(temperature=2.0)
    >>> teacher = np.array([[4.0, 1.0, -2.0]], "float32")
    >>> round(float(loss.compute_loss(teacher, teacher)), 6)
    0.0
    >>> round(float(loss.compute_loss(teacher, 10.0 * teacher)), 4)
    12.7246

    References:
        - [Hinton et al., 2015](https://arxiv.org/abs/1503.02531): Distilling the Knowledge in a Neural Network.
        - [mdistiller](https://github.com/megvii-research/mdistiller) `mdistiller/distillers/KD.py`, commit a08d46f.
    """

    name = "soft_targets"

    def __init__(self, temperature=4.0, from_logits=True):
        self.temperature = _checks.number(_OWNER, "temperature", temperature, low=0, closed="neither")
        self.from_logits = _checks.boolean(_OWNER, "from_logits", from_logits)

    softmax_remedy = "pass `from_logits=False` to SoftTargets"

    @property
    def reads_outputs_as(self):
        return "logits" if self.from_logits else "probabilities"

    def build(self, teacher_shapes, student_shapes):
        _loss.check_same_classes(_OWNER, teacher_shapes, student_shapes)
        super().build(teacher_shapes, student_shapes)

    def compute_loss(self, teacher_outputs, student_outputs, y=None, sample_weight=None, step=None, **kwargs):
        """The loss averaged over the batch (weighted by `sample_weight`); `y` and `step` are not used."""
        log_p_teacher = log_probabilities(teacher_outputs, self.temperature, self.from_logits)
        log_p_student = log_probabilities(student_outputs, self.temperature, self.from_logits)
        per_sample = self.temperature**2 * kl_divergence(log_p_teacher, log_p_student)
        return _loss.weighted_mean(per_sample, sample_weight)

    def get_config(self):
        return {"temperature": self.temperature, "from_logits": self.from_logits}
