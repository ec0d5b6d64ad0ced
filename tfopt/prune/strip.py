"""`strip_pruning`: the plain model inside a pruned one, with its sparse weights, ready for export."""

import numpy as np

from tfopt import _compat, _surgery
from tfopt.prune.wrapper import PruneLowMagnitude

_OWNER = "strip_pruning"


def _unwrap(layer):
    if not isinstance(layer, PruneLowMagnitude):
        return None
    inner, kernel = _surgery.copy_layer(layer.layer), layer.pruned_kernel
    mask = np.asarray(layer.mask)
    weights = [np.asarray(weight) * mask if weight is kernel else np.asarray(weight) for weight in layer.layer.weights]
    return inner, inner, weights


def strip_pruning(model):
    """Returns a copy of a pruned model with each `PruneLowMagnitude` replaced by the layer it wraps.

    The copy holds the masked weights (`kernel * mask`), has no tfopt class in its config, and computes the same
    outputs as the pruned model; export it (`tf.lite.TFLiteConverter.from_keras_model`, `tfopt.export`). A model
    without pruned layers comes back as a plain copy. A tf_keras model is handed to tfmot's `strip_pruning`.

    Args:
        model: a Keras 3 model from `tfopt.prune.prune_low_magnitude` (or a tf_keras model pruned by tfmot).

    Example:

    >>> import keras, tfopt
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="out")])
    >>> pruned = tfopt.prune.prune_low_magnitude(model, tfopt.prune.ConstantSparsity(0.5, begin_step=0))
    >>> [layer.name for layer in tfopt.prune.strip_pruning(pruned).layers]
    ['out']
    """
    if _compat.is_legacy(model):
        from tfopt.prune import tfmot as _tfmot

        return _tfmot.strip_pruning(model)
    _surgery.check_copyable(_OWNER, model)
    return _surgery.clone_with(model, _unwrap)
