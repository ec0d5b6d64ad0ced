"""The base of tfopt's distillation losses: the contract the `Distiller` relies on, and the helpers they share."""

import numbers
import re

import keras
from keras import ops

from tfopt import _checks


class DistillationLoss(keras.distillation.DistillationLoss):
    """Base class of tfopt's distillation losses (a `keras.distillation.DistillationLoss`).

    A subclass sets the class attribute `name` (History logs `"<name>_loss"`), sets `teacher_layers` and
    `student_layers` (names of the layers whose outputs it reads; `()` reads the model's output) in `__init__`,
    creates any trainable layer in `build`, and writes `compute_loss` with `keras.ops`:

    ```python
    loss.build(teacher_shapes, student_shapes)      # once, before the first compute_loss
    value = loss.compute_loss(teacher_outputs, student_outputs, y=None, sample_weight=None, step=None)
    # value: the per-sample loss averaged over the batch, sum(w * l) / sum(w) with weights w
    ```

    A batch loss that ignores `sample_weight` sets the class attribute `weighs_samples = False`: under a
    `tf.distribute` strategy the `Distiller` then averages the replicas' values, where it weighs a weighted mean by
    the replica's share of the global batch's weights (so it equals one device's `sum(w * l) / sum(w)`).

    `teacher_outputs` and `student_outputs` are the logits when the side's `*_layers` is `()`, else a list of
    feature tensors, one per layer name. `y` holds integer labels, `-1` for an unlabeled sample. Keras's own
    `keras.distillation.Distiller` calls `compute_loss(teacher_outputs, student_outputs)` only, on the models'
    outputs: the losses reading logits work there too.
    """

    name = "distillation"
    weighs_samples = True
    # How a loss reading the models' outputs takes them: "logits" or "probabilities" (a softmax's); None for a loss
    # reading features. The Distiller refuses a model whose output layer says otherwise.
    reads_outputs_as = None
    # The way out a loss offers for a model ending in a softmax, when it reads logits.
    softmax_remedy = "give it models that output logits (the output layer without its softmax)"
    teacher_layers = ()
    student_layers = ()

    def build(self, teacher_shapes, student_shapes):
        """Creates the loss's layers, if any, for inputs of these shapes (a shape, or a list of shapes)."""
        self.built = True

    @property
    def trainable_layers(self):
        """The Keras layers owning weights to train with the student (e.g. a hint's projection)."""
        return []

    def compute_loss(self, teacher_outputs, student_outputs, y=None, sample_weight=None, step=None):
        raise NotImplementedError(f"{type(self).__name__} must implement `compute_loss`.")

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def check_same_classes(owner, teacher_shape, student_shape):
    """Raises unless the teacher's and the student's outputs have the same class axis (the last one); a shape
    unknown before the first call (None, a subclassed model's) is not checked."""
    if teacher_shape is not None and student_shape is not None and tuple(teacher_shape)[-1:] != tuple(
            student_shape)[-1:]:
        raise ValueError(
            f"{owner}: the teacher's and the student's outputs must have the same number of classes (last axis). "
            f"Received: teacher output shape {tuple(teacher_shape)}, student output shape {tuple(student_shape)}"
        )


def layer_name(owner, argument, value):
    """Returns `value` if it is a non-empty string (a layer's name), else raises naming `argument`."""
    _checks.instance(owner, argument, value, str, "a layer name (a string)")
    return _checks.satisfies(owner, argument, value, value != "", "a non-empty layer name")


def weighted_mean(per_sample, sample_weight):
    """`sum(w * l) / sum(w)` (0 when every weight is 0), or the mean of `per_sample` when `sample_weight` is None."""
    if sample_weight is None:
        return ops.mean(per_sample)
    weights = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
    total = ops.sum(weights)
    safe_total = ops.where(total > 0.0, total, 1.0)
    return ops.where(total > 0.0, ops.sum(weights * per_sample) / safe_total, 0.0)


def as_float(tensor):
    """`tensor` cast to float32 (losses compute in float32, also under mixed precision)."""
    return ops.cast(tensor, "float32")


def single(outputs, layers):
    """The one tensor of a side: the logits if `layers == ()`, else the first (only) tensor of the list."""
    if layers and isinstance(outputs, (list, tuple)):
        return outputs[0]
    return outputs


def shape_list(shapes):
    """A list of shapes (tuples) from one shape or a list of shapes."""
    def is_dim(d):
        return d is None or isinstance(d, numbers.Integral)

    if isinstance(shapes, (list, tuple)) and all(is_dim(d) for d in shapes):
        return [tuple(None if d is None else int(d) for d in shapes)]
    if hasattr(shapes, "as_list") or not isinstance(shapes, (list, tuple)):  # a TensorShape
        return [tuple(shapes)]
    return [tuple(None if d is None else int(d) for d in shape) for shape in shapes]


def safe_name(text):
    """`text` with every character outside [A-Za-z0-9_] replaced by `_` (for a Keras layer's name)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", text)
