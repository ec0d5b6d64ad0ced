"""Labels where there are some: integer labels of -1 mark unlabeled samples, which only the distillation losses see.

Example:
    >>> import numpy as np
    >>> from tfopt.distill import labels
    >>> y, weight = labels.for_metrics(np.array([2, -1, 0]), None)
    >>> np.asarray(y).tolist(), np.asarray(weight).tolist()
    ([2, 0, 0], [1.0, 0.0, 1.0])
"""

import keras
import tensorflow as tf
from keras import ops

UNLABELED = -1


def _is_sparse(y):
    return y is not None and "int" in str(ops.convert_to_tensor(y).dtype)


def _sparse(y):
    """Integer labels as a (batch,) int32 tensor."""
    return ops.reshape(ops.cast(y, "int32"), (-1,))


def for_metrics(y, sample_weight):
    """(labels with -1 replaced by 0, weights 0 for those samples) for integer labels; `y` and `sample_weight` as
    given otherwise."""
    if not _is_sparse(y):
        return y, sample_weight
    labels = _sparse(y)
    labeled = ops.cast(ops.greater_equal(labels, 0), "float32")
    weight = labeled if sample_weight is None else labeled * ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
    return ops.maximum(labels, 0), weight


def for_losses(y):
    """What distillation losses receive as `y`: integer labels (-1 kept), the argmax of one-hot labels, or None."""
    if y is None:
        return None
    if _is_sparse(y):
        return _sparse(y)
    y = ops.convert_to_tensor(y)
    return ops.cast(ops.argmax(y, axis=-1), "int32") if len(y.shape) == 2 and y.shape[-1] and y.shape[-1] > 1 else None


def _per_sample(loss, y, y_pred):
    per_sample = isinstance(loss, keras.losses.Loss) or type(loss).__module__.startswith("tf_keras")
    values = loss.call(y, y_pred) if per_sample and hasattr(loss, "call") else loss(y, y_pred)
    values = ops.cast(values, "float32")
    return ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=1) if len(values.shape) > 1 else values


def task_loss(loss, y, y_pred, sample_weight):
    """(the task loss over the labeled samples, the labels for the distillation losses).

    The loss is `sum(w * loss_i) / sum(w)` over the labeled samples of the global batch (`w`: the sample weight, 0
    for an unlabeled sample), divided among the replicas of a `tf.distribute` strategy so that their gradients sum to
    it: the same value as on one device. A batch without labels gives 0.
    """
    if y is None:
        return ops.zeros((), "float32"), None
    safe_y, weight = for_metrics(y, sample_weight)
    values = _per_sample(loss, safe_y, y_pred)
    weight = ops.ones_like(values) if weight is None else ops.cast(ops.reshape(weight, (-1,)), "float32")
    total_weight = ops.sum(weight)
    context = tf.distribute.get_replica_context()
    if context is not None:
        total_weight = context.all_reduce(tf.distribute.ReduceOp.SUM, total_weight)
    return ops.sum(weight * values) / ops.maximum(total_weight, 1e-12), for_losses(y)
