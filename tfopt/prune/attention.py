"""`PruneAttention`: the wrapper that prunes the projection kernels of a MultiHeadAttention weight by weight."""

import math

import keras
import numpy as np
from keras import ops

from tfopt import _checks, _surgery
from tfopt.prune import _layers, masks
from tfopt.prune.wrapper import PruneLowMagnitude

_OWNER = "PruneAttention"


@keras.saving.register_keras_serializable(package="tfopt")
class PruneAttention(PruneLowMagnitude):
    """Prunes the kernels of the projections of the MultiHeadAttention it wraps, by magnitude, on a schedule, inside
    the training step.

    `tfopt.prune.prune_low_magnitude` puts it around the attention layers under `structure` None, "channel" or
    "N:M". Each projection (query, key, value, the gate of `use_gate=True`, output) has its own mask variable,
    `<projection>_mask` shaped as its kernel, and each kernel is pruned to `schedule.sparsity(step)` on its own, as
    the kernel of any other layer. A structure applies to the kernel seen as the matrix the projection multiplies
    by (`tfopt.prune._layers.projections`):

    ```python
    query, key, value, gate kernel (features, heads, head_size)  ->  (features, heads * head_size)
    output kernel (heads, value_size, *output_shape)             ->  (heads * value_size, prod(output_shape))
    None:      zero that fraction of each kernel's weights, those with the smallest |w|
    "channel": zero that fraction of each matrix's columns: a (head, head_size) pair of the query, key, value or
               gate projection, an output unit of the output projection
    "N:M":     zero the N smallest |w| of every M consecutive rows of each column: along the features for the
               query, key, value and gate, along the heads * value_size inputs for the output
    ```
    Biases stay dense. `mask` and `pruned_kernel` are the query projection's; `masks` holds every mask.
    `strip_pruning` gives back the MultiHeadAttention with the masked kernels (with `shrink=True` too: only
    `PruneHeads` removes heads; a "channel"-pruned attention can't be shrunk).

    Args:
        layer: the Keras 3 `MultiHeadAttention`.
        schedule: a `tfopt.prune.ConstantSparsity` or `tfopt.prune.PolynomialDecay`.
        structure: None, "channel" or "N:M" such as "2:4" (whole heads: `PruneHeads`). Defaults to `None`.
        **kwargs: base layer keywords; `name` defaults to `"prune_low_magnitude_" + layer.name`.

    Example:
        >>> import keras, numpy as np, tfopt
        >>> tokens = keras.Input((4, 8))
        >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")
        >>> model = keras.Model(tokens, attention(tokens, tokens))
        >>> schedule = tfopt.prune.ConstantSparsity(0.5, 0, frequency=1)
        >>> pruned = tfopt.prune.prune_low_magnitude(model, schedule, structure="2:4")
        >>> pruned.compile("adam", "mse")
        >>> _ = pruned.fit(np.ones((8, 4, 8)), np.ones((8, 4, 8)), verbose=0,
        ...                callbacks=[tfopt.prune.UpdatePruningStep()])
        >>> [(row.name, row.sparsity) for row in tfopt.prune.sparsity(tfopt.prune.strip_pruning(pruned))][-1]
        ('attention/attention_output/kernel', 0.5)
    """

    def __init__(self, layer, schedule, structure=None, **kwargs):
        _checks.satisfies(_OWNER, "structure", structure, structure != "head",
                          'None, "channel" or "N:M" ("head" prunes with tfopt.prune.PruneHeads)')
        super().__init__(layer, schedule, structure, **kwargs)

    @staticmethod
    def _describe(layer):
        _checks.satisfies(_OWNER, "layer", layer, isinstance(layer, keras.layers.MultiHeadAttention),
                          "a keras.layers.MultiHeadAttention", TypeError)
        return _layers.ATTENTION

    @property
    def pruned_kernel(self):
        """The wrapped attention's query kernel (every pruned kernel: `tfopt.prune._layers.projections`)."""
        return self.layer.query_dense.kernel

    @property
    def mask(self):
        """The query kernel's mask (every mask: `masks`)."""
        return self.masks[0]

    def build(self, query_shape, value_shape, key_shape=None):
        if not self.layer.built:
            self.layer.build(query_shape, value_shape, key_shape)
        self.masks = []
        for projection, _ in _layers.projections(self.layer):
            kernel = projection.kernel
            mask = self.add_weight(name=f"{projection.name}_mask", shape=kernel.shape, initializer="ones",
                                   dtype=kernel.dtype, trainable=False)
            kernel.constraint = _surgery.masked_constraint(mask, kernel.constraint)
            self.masks.append(mask)
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), initializer="zeros", dtype="int64", trainable=False
        )
        self.built = True

    def _mask_variables(self):
        return tuple(self.masks)

    def _mask_at(self, sparsity):
        values = []
        for projection, inputs in _layers.projections(self.layer):
            kernel = projection.kernel
            matrix = ops.reshape(kernel, (math.prod(kernel.shape[:inputs]), -1))
            values.append(ops.reshape(masks.mask(matrix, self._pattern, sparsity, 1), kernel.shape))
        return tuple(values)

    def _apply_mask(self):
        for (projection, _), mask in zip(_layers.projections(self.layer), self.masks, strict=True):
            projection.kernel.assign(projection.kernel * mask)

    def masked_weights(self):
        masked = {id(projection.kernel): np.asarray(mask)
                  for (projection, _), mask in zip(_layers.projections(self.layer), self.masks, strict=True)}
        return [np.asarray(weight) * masked.get(id(weight), 1) for weight in self.layer.weights]

    def call(self, query, value, key=None, training=None, **kwargs):
        self._advance(training)
        return self.layer(query, value, key, training=training, **kwargs)

    def compute_output_spec(self, query, value, key=None, **kwargs):
        return self.layer.compute_output_spec(query, value, key, **kwargs)
