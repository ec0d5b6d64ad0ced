"""`PruneHeads`: the wrapper that prunes whole heads of a MultiHeadAttention (`structure="head"`)."""

import keras
import numpy as np
from keras import ops

from tfopt import _checks, _surgery
from tfopt.prune import masks
from tfopt.prune.wrapper import PruneLowMagnitude

_OWNER = "PruneHeads"


def head_axes(attention):
    """`(variable, head axis)` for each weight of a built MultiHeadAttention, in `attention.weights` order; the
    axis is None for the output bias, which no head owns.

    The query, key and value kernels are `(features, heads, head size)` and their biases `(heads, head size)`; the
    output kernel is `(heads, value size, *output shape)`.

    Example:
        >>> import keras
        >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
        >>> _ = attention(keras.ops.ones((1, 4, 8)), keras.ops.ones((1, 4, 8)))
        >>> [(tuple(v.shape), axis) for v, axis in head_axes(attention)][-2:]
        [((2, 3, 8), 0), ((8,), None)]
    """
    axes = {}
    for projection in (attention.query_dense, attention.key_dense, attention.value_dense):
        axes[id(projection.kernel)] = 1
        if projection.bias is not None:
            axes[id(projection.bias)] = 0
    axes[id(attention.output_dense.kernel)] = 0
    return [(weight, axes.get(id(weight))) for weight in attention.weights]


def _view(axis, rank, heads):
    """The shape in which a `(heads,)` mask multiplies a weight of `rank` whose head axis is `axis`."""
    return tuple(heads if index == axis else 1 for index in range(rank))


@keras.saving.register_keras_serializable(package="tfopt")
class PruneHeads(PruneLowMagnitude):
    """Prunes whole heads of the MultiHeadAttention it wraps, by magnitude, on a schedule, inside the training step.

    `tfopt.prune.prune_low_magnitude(..., structure="head")` puts it around the attention layers. A head's score is
    the L2 norm of all its weights (its slices of the query, key and value kernels and biases and of the output
    kernel); `mask` holds one 0. or 1. per head. At the schedule's update steps the `schedule.sparsity(step)`
    fraction of heads with the smallest scores is dropped (at least one head stays), and every weight of a dropped
    head is held at 0, so the head adds nothing to the output: `strip_pruning(..., shrink=True)` removes it.

    Args:
        layer: the Keras 3 `MultiHeadAttention` (without `use_gate`).
        schedule: a `tfopt.prune.ConstantSparsity` or `tfopt.prune.PolynomialDecay`.
        structure: "head". Defaults to "head".
        **kwargs: base layer keywords; `name` defaults to `"prune_low_magnitude_" + layer.name`.

    Example:
        >>> import keras, numpy as np, tfopt
        >>> tokens = keras.Input((4, 8))
        >>> attention = keras.layers.MultiHeadAttention(num_heads=4, key_dim=2, name="attention")
        >>> model = keras.Model(tokens, attention(tokens, tokens))
        >>> schedule = tfopt.prune.ConstantSparsity(0.5, 0, frequency=1)
        >>> pruned = tfopt.prune.prune_low_magnitude(model, schedule, structure="head")
        >>> pruned.compile("adam", "mse")
        >>> _ = pruned.fit(np.ones((8, 4, 8)), np.ones((8, 4, 8)), verbose=0,
        ...                callbacks=[tfopt.prune.UpdatePruningStep()])
        >>> int(np.sum(pruned.get_layer("prune_low_magnitude_attention").mask))
        2
    """

    def __init__(self, layer, schedule, structure="head", **kwargs):
        _checks.satisfies(_OWNER, "structure", structure, structure == "head", '"head"')
        super().__init__(layer, schedule, structure, **kwargs)

    @staticmethod
    def _describe(layer):
        _checks.satisfies(_OWNER, "layer", layer, isinstance(layer, keras.layers.MultiHeadAttention),
                          "a keras.layers.MultiHeadAttention", TypeError)
        _checks.satisfies(_OWNER, "layer", layer, not layer.get_config()["use_gate"],
                          "a MultiHeadAttention without `use_gate` (its gate's heads are not pruned yet)")
        return None

    @property
    def pruned_kernel(self):
        """The wrapped attention's query kernel (the other pruned weights: `head_axes`)."""
        return self.layer.query_dense.kernel

    def build(self, query_shape, value_shape, key_shape=None):
        if not self.layer.built:
            self.layer.build(query_shape, value_shape, key_shape)
        heads = self.layer.num_heads
        self.mask = self.add_weight(name="mask", shape=(heads,), initializer="ones", dtype="float32", trainable=False)
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), initializer="zeros", dtype="int64", trainable=False
        )
        for weight, axis in head_axes(self.layer):
            if axis is not None:
                view = _view(axis, len(weight.shape), heads)
                weight.constraint = _surgery.masked_constraint(self.mask, weight.constraint, view)
        self.built = True

    def _mask_at(self, sparsity):
        squares = [ops.sum(ops.square(weight), axis=[a for a in range(len(weight.shape)) if a != axis])
                   for weight, axis in head_axes(self.layer) if axis is not None]
        return masks.keep_largest(ops.sqrt(ops.sum(ops.stack(squares), axis=0)), sparsity)

    def _apply_mask(self):
        for weight, axis in head_axes(self.layer):
            if axis is not None:
                view = _view(axis, len(weight.shape), self.layer.num_heads)
                mask = ops.reshape(ops.cast(self.mask, weight.dtype), view)
                weight.assign(weight * mask)

    def masked_weights(self):
        mask = np.asarray(self.mask)
        return [np.asarray(weight) if axis is None else np.asarray(weight) * mask.reshape(
                    _view(axis, len(weight.shape), self.layer.num_heads))
                for weight, axis in head_axes(self.layer)]

    def call(self, query, value, key=None, training=None, **kwargs):
        self._advance(training)
        return self.layer(query, value, key, training=training, **kwargs)

    def compute_output_spec(self, query, value, key=None, **kwargs):
        return self.layer.compute_output_spec(query, value, key, **kwargs)


def shrink_attention(wrapper):
    """`(attention, weights)`: a MultiHeadAttention with only the heads `wrapper` keeps, and its weights."""
    kept = np.flatnonzero(np.asarray(wrapper.mask))
    config = {**wrapper.layer.get_config(), "num_heads": len(kept)}
    weights = [value if axis is None else np.take(value, kept, axis=axis)
               for value, (_, axis) in zip(wrapper.masked_weights(), head_axes(wrapper.layer), strict=True)]
    return keras.layers.MultiHeadAttention.from_config(config), weights
