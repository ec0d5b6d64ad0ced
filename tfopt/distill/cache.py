"""`cache_teacher_outputs`: run the teacher once over a dataset and carry its outputs with the inputs."""

import keras
import tensorflow as tf

from tfopt import _checks, _surgery

CACHED_INPUTS = "tfopt_inputs"
CACHED_TEACHER = "tfopt_teacher"
OUTPUT = "output"  # the key of the teacher's own output among the cached values
_OWNER = "cache_teacher_outputs"


def cache_teacher_outputs(teacher, dataset, layers=None):
    """Returns `dataset` with the teacher's outputs attached to every batch, computed once and then cached.

    A `tfopt.distill.Distiller` given the returned dataset reads the teacher's outputs from it instead of running
    the teacher, so every epoch after the first costs only the student. The teacher runs in inference mode, as the
    Distiller runs it. The first pass fixes the batches: shuffle the returned dataset (`.shuffle(number of
    batches)`) rather than the one given, whose reshuffling would no longer reach the cached outputs.

    Each element `(x, y[, sample_weight])` becomes
    `({"tfopt_inputs": x, "tfopt_teacher": {"output": logits, layer: feature, ...}}, y[, sample_weight])`.

    Args:
        teacher: the Keras 3 teacher model.
        dataset: a batched `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`.
        layers: names of teacher layers whose outputs feature losses read (`HintDistillation`, ...); the
            Distiller says which are missing. Defaults to `None` (the output only).

    Example:
    >>> import keras, numpy as np, tensorflow as tf, tfopt
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> data = tf.data.Dataset.from_tensor_slices((np.random.rand(8, 4), np.zeros(8, "int32"))).batch(4)
    >>> cached = tfopt.distill.cache_teacher_outputs(teacher, data)
    >>> x, y = next(iter(cached))
    >>> sorted(x), tuple(x["tfopt_teacher"]["output"].shape)
    (['tfopt_inputs', 'tfopt_teacher'], (4, 3))
    """
    _checks.instance(_OWNER, "teacher", teacher, keras.Model, "a Keras 3 model")
    _checks.instance(_OWNER, "dataset", dataset, tf.data.Dataset, "a batched tf.data.Dataset of (x, y)")
    names = [] if layers is None else list(layers) if isinstance(layers, (list, tuple)) else [layers]
    tapped = _surgery.tap(_OWNER, "layers", teacher, names) if names else None

    def attach(*element):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(element if len(element) > 1 else element[0])
        outputs = tapped(x, training=False) if tapped is not None else [teacher(x, training=False)]
        cached = {CACHED_INPUTS: x, CACHED_TEACHER: dict(zip([OUTPUT, *names], outputs))}
        return keras.utils.pack_x_y_sample_weight(cached, y, sample_weight)

    return dataset.map(attach).cache()
