"""`prune_low_magnitude`: a copy of a model whose chosen layers prune their kernels while it trains."""

import keras

from tfopt import _checks, _compat, _surgery
from tfopt.prune import _layers, masks
from tfopt.prune.attention import PruneAttention
from tfopt.prune.heads import PruneHeads
from tfopt.prune.schedules import PruningSchedule
from tfopt.prune.wrapper import PruneLowMagnitude, pruned_layers

_OWNER = "prune_low_magnitude"
_HEADS = _layers.Kernel("heads", 1, False)  # what "head" prunes of a MultiHeadAttention: see PruneHeads


def _head_kernel(layer):
    return _HEADS if isinstance(layer, keras.layers.MultiHeadAttention) else None


def _wrapper_class(layer, structure):
    if structure == "head":
        return PruneHeads
    return PruneAttention if isinstance(layer, keras.layers.MultiHeadAttention) else PruneLowMagnitude


def _select(model, structure, layers):
    """The layers of `model` to prune: prunable ones picked by `layers`, all of them by default. Layers pruned
    already (inside a wrapper) are not candidates."""
    _checks.satisfies(_OWNER, "model", model, model.built, "built (give it an `Input` or call it once)")
    kernel_of, described = (_head_kernel, "MultiHeadAttention layers") if structure == "head" else (
        _layers.kernel_of, "prunable layers")
    candidates = [layer for layer in _surgery.layers(model) if kernel_of(layer) is not None]
    _checks.satisfies(_OWNER, "model", model, candidates or not pruned_layers(model),
                      f"a model with {described} not pruned yet (strip_pruning it to prune them again)")
    return _layers.choose_layers(candidates, structure, layers, kernel_of, described)


def _check_called_once(model, chosen, layers, times=1):
    """Raises for a chosen layer called more than once per call of `model` (a shared layer, or one inside a nested
    model called more than once): each call would advance its pruning step."""
    graph = _surgery.trace(_surgery.as_functional(model))
    for layer in model.layers:
        count = times * graph.call_count(layer)
        _checks.satisfies(_OWNER, "layers", layers, id(layer) not in chosen or count <= 1,
                          f"a choice of layers the model calls once each, but it calls layer '{layer.name}' "
                          f"({type(layer).__name__}) {count} times, and each call would advance its pruning "
                          "schedule by a step: leave it out")
        if _surgery.graph_kind(layer):
            _check_called_once(layer, chosen, layers, count)


def prune_low_magnitude(model, schedule, structure=None, layers=None):
    """Returns a copy of `model` whose chosen layers zero their smallest weights as training goes.

    Compile and fit the copy as usual, with `callbacks=[tfopt.prune.UpdatePruningStep()]`; `model` itself is not
    changed. Then `tfopt.prune.strip_pruning` gives a plain model with the sparse weights.

    A Keras 3 model is pruned by tfopt: each chosen layer is wrapped in a `tfopt.prune.PruneLowMagnitude`, whose
    mask is recomputed inside the training step at the schedule's update steps, from the current weights:

    ```python
    structure=None:      zero the schedule.sparsity(step) fraction of the kernel with the smallest |w|
    structure="channel": zero that fraction of the output filters (units), those with the smallest L2 norm
    structure="N:M":     zero the N smallest |w| of every M consecutive weights along kernel axis -2, the input
                         axis: Dense (in, out) groups inputs; Conv (*kernel_size, in, out) groups input channels
                         at each kernel position and output filter; SeparableConv groups the pointwise inputs.
                         The fraction is N/M whatever the schedule says: the schedule only decides when the
                         pattern starts (its first update step) and when it is refreshed.
    structure="head":    zero that fraction of each MultiHeadAttention's heads, those whose weights have the
                         smallest L2 norm (`tfopt.prune.PruneHeads`); only attention layers are chosen.
    ```
    Under None, "channel" and "N:M" a MultiHeadAttention is wrapped in a `tfopt.prune.PruneAttention`, which prunes
    the kernels of its query, key, value, gate (`use_gate=True`) and output projections, each to the sparsity on
    its own, each seen as the matrix it multiplies by: "channel" zeroes the (head, head size) columns of the query,
    key, value and gate kernels and the output units of the output kernel; "N:M" groups the features of the
    query, key, value and gate kernels and the heads x value size inputs of the output kernel.
    A model may be pruned again, with another structure, in layers not pruned yet: heads, then the feed-forward
    neurons (`structure="channel"` on the first Dense of each block). `strip_pruning(..., shrink=True)` then removes
    the pruned heads and neurons, for a smaller model.
    The pruned kernel is `kernel` of Dense, Conv1D/2D/3D, Conv1D/2D/3DTranspose (filters on kernel axis -2),
    EinsumDense (filters: the output axes its kernel ends with) and DepthwiseConv1D/2D (whose "channel" filters
    are its (channel, multiplier) pairs), `embeddings` of Embedding (filters: feature columns),
    `pointwise_kernel` of SeparableConv1D/2D (their depthwise kernel holds few weights; tfmot leaves it too), and
    the projection kernels of MultiHeadAttention (`tfopt.prune.PruneAttention`).
    Biases stay dense. A layer the model calls more than once (shared, or in a nested model called more than once)
    can't be chosen: each call would advance its schedule. A tf_keras model is handed to tfmot.

    Args:
        model: a Keras 3 Sequential or Functional model (or a tf_keras model, pruned by tfmot).
        schedule: a `tfopt.prune.ConstantSparsity` or `tfopt.prune.PolynomialDecay`.
        structure: None (unstructured), "channel", "head" or "N:M" such as "2:4". Defaults to `None`.
        layers: which layers to prune among the prunable ones: a layer class, a layer name, a function
            `layer -> bool`, or a list of them (a layer matching any is pruned; each name must name a prunable
            layer). Defaults to `None`: every prunable layer, except DepthwiseConv1D/2D under "N:M" (a depthwise
            filter has no input axis to group along; choosing one raises).

    Example:

    >>> import keras, tfopt
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="out")])
    >>> pruned = tfopt.prune.prune_low_magnitude(model, tfopt.prune.ConstantSparsity(0.5, begin_step=0))
    >>> [layer.name for layer in pruned.layers]
    ['prune_low_magnitude_out']
    """
    _checks.instance(_OWNER, "schedule", schedule, PruningSchedule, "a ConstantSparsity or PolynomialDecay")
    masks.parse(_OWNER, structure)
    if _compat.is_legacy(model):
        from tfopt.prune import tfmot as _tfmot

        return _tfmot.prune_low_magnitude(model, schedule, structure, layers)
    _surgery.check_copyable(_OWNER, model)
    chosen = {id(layer) for layer in _select(model, structure, layers)}
    _check_called_once(model, chosen, layers)

    def wrap(layer):
        if id(layer) not in chosen:
            return None
        inner = _surgery.copy_layer(layer)
        return _wrapper_class(layer, structure)(inner, schedule, structure), inner, layer.get_weights()

    return _surgery.clone_with(model, wrap)
