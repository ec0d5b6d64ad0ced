"""Decoupled knowledge distillation: target and non-target class KD weighed apart (Zhao et al., CVPR 2022)."""

import keras
from keras import ops

from tfopt import _checks
from tfopt.distill import _loss

_OWNER = "DecoupledKD"


def targets(y, teacher_logits):
    """Integer targets (batch,): the labels, with the teacher's argmax for unlabeled samples (-1) or when y is None."""
    teacher_argmax = ops.argmax(teacher_logits, axis=-1)
    if y is None:
        return ops.cast(teacher_argmax, "int32")
    if len(y.shape) == 2 and y.shape[-1] not in (None, 1):
        raise ValueError(
            f"{_OWNER}: `y` must hold integer class labels of shape (batch,), -1 for unlabeled. Received: y with "
            f"shape {tuple(y.shape)}"
        )
    labels = ops.reshape(ops.cast(y, "int32"), (-1,))
    return ops.where(labels < 0, ops.cast(teacher_argmax, "int32"), labels)


def binary_log_probabilities(log_p, is_target):
    """log([p_target, 1 - p_target]) (batch, 2) from log-probabilities, computed with logsumexp (no log(0))."""
    very_negative = ops.full_like(log_p, -1e30)
    log_target = ops.logsumexp(ops.where(is_target, log_p, very_negative), axis=-1)
    log_others = ops.logsumexp(ops.where(is_target, very_negative, log_p), axis=-1)
    return ops.stack([log_target, log_others], axis=-1)


def non_target_log_probabilities(scaled_logits, is_target):
    """log_softmax over the non-target classes (the target's entry is -1e30, its probability 0)."""
    return ops.log_softmax(ops.where(is_target, ops.full_like(scaled_logits, -1e30), scaled_logits), axis=-1)


def kl_divergence(log_p, log_q):
    """KL(p || q) per sample over the last axis, floored at 0 (removes float32 rounding when p == q)."""
    return ops.maximum(ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1), 0.0)


@keras.saving.register_keras_serializable(package="tfopt")
class DecoupledKD(_loss.DistillationLoss):
    """Decoupled KD: the KD loss split into a target-class term (TCKD) and a non-target-class term (NCKD).

    ```python
    p_t, p_s = softmax(teacher_logits / T), softmax(student_logits / T)
    b_t, b_s = [p_t[y], 1 - p_t[y]], [p_s[y], 1 - p_s[y]]           # target vs. all other classes
    tckd_i = T**2 * KL(b_t || b_s)
    q_t, q_s = softmax over the classes != y of teacher_logits / T, student_logits / T
    nckd_i = T**2 * KL(q_t || q_s)
    loss = min((step + 1) / warmup_steps, 1) * mean_w(alpha * tckd_i + beta * nckd_i)
    ```

    The target `y` is the sample's label; for an unlabeled sample (label `-1`), or when no labels are given, it is
    the teacher's argmax. Follows mdistiller's `dkd_loss` (`mdistiller/distillers/DKD.py`, commit a08d46f), computed
    from log-probabilities with logsumexp where mdistiller takes `log` of probabilities and masks the target with
    `-1000` (the values are equal in float64). mdistiller's warm-up factor is `min(epoch / warmup, 1)` with epochs
    counted from 1; here `step` is the optimizer's iteration count (0 during the first step), so the step being
    trained is counted from 1 in the same way: the first step weighs `1 / warmup_steps`. Without a `step` (Keras's
    own `Distiller` passes none) there is no warm-up.

    Args:
        alpha: A Python float >= 0, the weight of TCKD. Defaults to `1.0`.
        beta: A Python float >= 0, the weight of NCKD (the paper uses 8.0 on CIFAR-100, 0.5 on ImageNet).
            Defaults to `8.0`.
        temperature: A Python float > 0, the softmax temperature `T`. Defaults to `4.0`.
        warmup_steps: A Python int >= 0, the number of steps over which the loss's weight rises linearly to 1 (0: no
            warm-up). Defaults to `0`.

    Example:

    >>> import numpy as np
    >>> from tfopt.distill.decoupled_kd import DecoupledKD
    >>> loss = DecoupledKD(alpha=1.0, beta=8.0, temperature=4.0)
    >>> teacher = np.array([[4.0, 1.0, -2.0]], "float32")
    >>> round(float(loss.compute_loss(teacher, teacher, y=np.array([0]))), 6)
    0.0
    >>> round(float(loss.compute_loss(teacher, 2.0 * teacher, y=np.array([-1]))), 4)
    8.6133

    References:
        - [Zhao et al., 2022](https://arxiv.org/abs/2203.08679): Decoupled Knowledge Distillation (CVPR 2022).
        - [mdistiller](https://github.com/megvii-research/mdistiller) `mdistiller/distillers/DKD.py`, commit a08d46f.
    """

    name = "decoupled_kd"

    reads_outputs_as = "logits"

    def __init__(self, alpha=1.0, beta=8.0, temperature=4.0, warmup_steps=0):
        self.alpha = _checks.number(_OWNER, "alpha", alpha, low=0)
        self.beta = _checks.number(_OWNER, "beta", beta, low=0)
        self.temperature = _checks.number(_OWNER, "temperature", temperature, low=0, closed="neither")
        self.warmup_steps = _checks.integer(_OWNER, "warmup_steps", warmup_steps, low=0)

    def _warmup_factor(self, step):
        if self.warmup_steps == 0 or step is None:
            return 1.0
        return ops.minimum((ops.cast(step, "float32") + 1.0) / self.warmup_steps, 1.0)

    def build(self, teacher_shapes, student_shapes):
        _loss.check_same_classes(_OWNER, teacher_shapes, student_shapes)
        super().build(teacher_shapes, student_shapes)

    def compute_loss(self, teacher_outputs, student_outputs, y=None, sample_weight=None, step=None, **kwargs):
        """The loss averaged over the batch (weighted by `sample_weight`), scaled by the warm-up factor at `step`."""
        teacher = _loss.as_float(teacher_outputs) / self.temperature
        student = _loss.as_float(student_outputs) / self.temperature
        is_target = ops.one_hot(targets(y, teacher), ops.shape(teacher)[-1], dtype="int32") > 0
        tckd = kl_divergence(
            binary_log_probabilities(ops.log_softmax(teacher, axis=-1), is_target),
            binary_log_probabilities(ops.log_softmax(student, axis=-1), is_target),
        )
        nckd = kl_divergence(
            non_target_log_probabilities(teacher, is_target), non_target_log_probabilities(student, is_target)
        )
        per_sample = self.temperature**2 * (self.alpha * tckd + self.beta * nckd)
        return self._warmup_factor(step) * _loss.weighted_mean(per_sample, sample_weight)

    def get_config(self):
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "temperature": self.temperature,
            "warmup_steps": self.warmup_steps,
        }
