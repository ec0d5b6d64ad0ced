"""`sparsity`: how many zeros each kernel of a model holds, for pruned, stripped and plain models of both Kerases."""

import dataclasses

import keras
import numpy as np

from tfopt import _checks, _compat, _surgery


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """One kernel of a model.

    Attributes:
        name: `"<layer>/<kernel>"`, the layer being the wrapped one for a pruning wrapper (`"dense/kernel"`), so
            a pruned model and its stripped copy give the same names; a MultiHeadAttention's projection kernels
            are `"<layer>/<projection>/kernel"`: `"attention/query/kernel"`, ..., `"attention/attention_output/kernel"`.
        shape: the kernel's shape.
        zeros: how many of its entries are exactly 0.
        sparsity: `zeros / size`.
    """

    name: str
    shape: tuple
    zeros: int
    sparsity: float


def _kernels(layer):
    """(short name, variable) of each kernel of a layer: its weights whose names end in "kernel", and an Embedding's
    table. Kernels sharing a name (a MultiHeadAttention's projections') are told apart by the sublayer holding them:
    "query/kernel", "key/kernel", ..."""
    found = []
    for weight in layer.weights:
        parts = getattr(weight, "path", weight.name).split(":")[0].split("/")  # a tf_keras variable has no path
        if parts[-1].endswith("kernel") or parts[-1] == "embeddings":
            found.append((parts, weight))
    shorts = [parts[-1] for parts, _ in found]
    return [("/".join(parts[-2:]) if shorts.count(parts[-1]) > 1 else parts[-1], weight) for parts, weight in found]


def sparsity(model):
    """A row per kernel (`kernel`, `depthwise_kernel`, `pointwise_kernel`, `embeddings`, ...) of `model`, in layer
    order.

    It only reads weights, so it takes any Keras 3 or tf_keras model: pruned (tfopt's or tfmot's wrappers),
    stripped or never pruned.

    Args:
        model: a Keras 3 or tf_keras model.

    Example:

    >>> import keras, tfopt
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, kernel_initializer="identity", name="d")])
    >>> tfopt.prune.sparsity(model)
    [LayerSparsity(name='d/kernel', shape=(2, 2), zeros=2, sparsity=0.5)]
    """
    if not _compat.is_legacy(model):
        _checks.instance("sparsity", "model", model, keras.Model, "a Keras 3 or tf_keras Model")
    rows = []
    for layer in _surgery.layers(model):
        owner = getattr(layer, "layer", layer)  # a pruning wrapper reports under the name of what it wraps
        for short, weight in _kernels(layer):
            values = np.asarray(weight)
            zeros = int(values.size - np.count_nonzero(values))
            rows.append(LayerSparsity(f"{owner.name}/{short}", tuple(values.shape), zeros, zeros / values.size))
    return rows
