"""`strip_pruning`: the plain model inside a pruned one, with its sparse weights, ready for export."""

from tfopt import _checks, _compat, _surgery
from tfopt.prune.shrink import shrink_plan
from tfopt.prune.wrapper import PruneLowMagnitude

_OWNER = "strip_pruning"


def _unwrap(layer):
    if not isinstance(layer, PruneLowMagnitude):
        return None
    inner = _surgery.copy_layer(layer.layer)
    return inner, inner, layer.masked_weights()


def strip_pruning(model, shrink=False):
    """Returns a copy of a pruned model with each `PruneLowMagnitude` replaced by the layer it wraps.

    The copy holds the masked weights (`kernel * mask`), has no tfopt class in its config, and computes the same
    outputs as the pruned model; export it (`tf.lite.TFLiteConverter.from_keras_model`, `tfopt.export`). A model
    without pruned layers comes back as a plain copy. A tf_keras model is handed to tfmot's `strip_pruning`.

    With `shrink=True` the pruned structure is removed rather than left as zeros: a MultiHeadAttention pruned by
    "head" keeps only its kept heads (`num_heads` shrinks), and a Dense pruned by "channel" keeps only its kept units,
    its Dense readers losing the matching inputs. A removed unit outputs `activation(bias)` whatever its input; that
    constant is folded into the readers' biases, so the outputs stay the same (to float32 rounding). A
    MultiHeadAttention pruned weight by weight (`tfopt.prune.PruneAttention`, None or "N:M") keeps its shape and
    its masked kernels.

    Args:
        model: a Keras 3 model from `tfopt.prune.prune_low_magnitude` (or a tf_keras model pruned by tfmot).
        shrink: whether to remove pruned heads and Dense units. Every "channel"-pruned layer must then be a Dense
            read only by Dense layers of the (nested) model calling it, not by that model's output (else a
            ValueError says which). Defaults to `False`.

    Example:

    >>> import keras, tfopt
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="out")])
    >>> pruned = tfopt.prune.prune_low_magnitude(model, tfopt.prune.ConstantSparsity(0.5, begin_step=0))
    >>> [layer.name for layer in tfopt.prune.strip_pruning(pruned).layers]
    ['out']
    """
    _checks.boolean(_OWNER, "shrink", shrink)
    if _compat.is_legacy(model):
        _checks.satisfies(_OWNER, "shrink", shrink, not shrink,
                          "False for a tf_keras model: tfmot prunes no heads or neurons to remove", TypeError)
        from tfopt.prune import tfmot as _tfmot

        return _tfmot.strip_pruning(model)
    _surgery.check_copyable(_OWNER, model)
    plan = shrink_plan(model) if shrink else {}

    def unwrap(layer):
        if id(layer) not in plan:
            return _unwrap(layer)
        new_layer, weights = plan[id(layer)]
        return new_layer, new_layer, weights

    return _surgery.clone_with(model, unwrap)
