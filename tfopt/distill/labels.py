"""Labels where there are some: class-index labels of -1 mark unlabeled samples, which only the distillation losses
see. Class indices are integer labels, or float labels of shape (batch,) or (batch, 1) for a model with several
classes (e.g. read from pandas): those are cast to int (as Keras's sparse losses do). Float labels of a one-output
(binary) model stay as given.

Example:
    >>> import numpy as np
    >>> from tfopt.distill import labels
    >>> y, weight = labels.for_metrics(np.array([2.0, -1.0, 0.0]), np.zeros((3, 4)), None)
    >>> np.asarray(y).tolist(), np.asarray(weight).tolist()
    ([2, 0, 0], [1.0, 0.0, 1.0])
"""

import keras
import tensorflow as tf
from keras import ops

UNLABELED = -1


def _is_sparse(y, y_pred):
    """True for class-index labels: integers, or floats of shape (batch,) or (batch, 1) when `y_pred` has several
    classes (its last axis; unknown counts as several)."""
    if y is None:
        return False
    y = ops.convert_to_tensor(y)
    if "int" in str(y.dtype):
        return True
    one_column = len(y.shape) == 1 or (len(y.shape) == 2 and y.shape[-1] == 1)
    return "float" in str(y.dtype) and one_column and y_pred.shape[-1] != 1


def _sparse(y):
    """Integer labels as a (batch,) int32 tensor."""
    return ops.reshape(ops.cast(y, "int32"), (-1,))


def for_metrics(y, y_pred, sample_weight):
    """(labels with -1 replaced by 0, weights 0 for those samples) for class-index labels; `y` and `sample_weight` as
    given otherwise."""
    if not _is_sparse(y, y_pred):
        return y, sample_weight
    labels = _sparse(y)
    labeled = ops.cast(ops.greater_equal(labels, 0), "float32")
    weight = labeled if sample_weight is None else labeled * ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
    return ops.maximum(labels, 0), weight


def for_losses(y, y_pred):
    """What distillation losses receive as `y`: class indices as int32 (-1 kept), the argmax of one-hot labels, or
    None."""
    if y is None:
        return None
    if _is_sparse(y, y_pred):
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
    safe_y, weight = for_metrics(y, y_pred, sample_weight)
    values = _per_sample(loss, safe_y, y_pred)
    weight = ops.ones_like(values) if weight is None else ops.cast(ops.reshape(weight, (-1,)), "float32")
    return ops.sum(weight * values) / ops.maximum(global_sum(ops.sum(weight)), 1e-12), for_losses(y, y_pred)


def global_sum(value):
    """`value` summed over the replicas of the `tf.distribute` strategy in scope (`value` itself on one device)."""
    context = tf.distribute.get_replica_context()
    return value if context is None else context.all_reduce(tf.distribute.ReduceOp.SUM, value)
