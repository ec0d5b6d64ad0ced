"""Which layers tfopt prunes, and which kernel of each; `choose_layers` picks them for both Kerases.

| layer                                  | pruned kernel      | "channel" prunes               | "N:M" groups along |
| -------------------------------------- | ------------------ | ------------------------------ | ------------------ |
| Dense, Conv1D, Conv2D, Conv3D          | `kernel`           | output units / filters         | input axis (-2)    |
| SeparableConv1D, SeparableConv2D       | `pointwise_kernel` | output filters                 | input axis (-2)    |
| DepthwiseConv1D, DepthwiseConv2D       | `kernel`           | (channel, multiplier) filters  | not allowed        |
| Conv1D/2D/3DTranspose                  | `kernel`           | output filters (kernel axis -2)| not allowed        |
| Embedding                              | `embeddings`       | embedding features (columns)   | not allowed        |
| EinsumDense (Keras 3)                  | `kernel`           | the output axes the kernel     | input axis (-2),   |
|                                        |                    | ends with (all of them)        | if a dense-like    |
|                                        |                    |                                | equation           |
| MultiHeadAttention (Keras 3)           | each projection's  | query/key/value/gate: (head,   | query/key/value/   |
|                                        | `kernel`, seen as  | head size) pairs; output:      | gate: features;    |
|                                        | the matrix (inputs,| output units                   | output: heads x    |
|                                        | outputs)           |                                | value size         |

Biases, a separable convolution's depthwise kernel and every other layer are left dense. A MultiHeadAttention is
wrapped whole, each of its projection kernels pruned to the sparsity (`tfopt.prune.PruneAttention`; under
`structure="head"`, whole heads: `tfopt.prune.PruneHeads`): its EinsumDense projections are not chosen one by one.
On a tf_keras model tfmot groups "N:M" in 2D and 4D kernels only: not in Conv1D, Conv3D or SeparableConv1D ones
(`tfopt.prune.tfmot`).
"""

import dataclasses
import math

import keras

from tfopt import _checks, _compat
from tfopt.prune import masks

_OWNER = "prune_low_magnitude"


@dataclasses.dataclass(frozen=True)
class Kernel:
    """How a layer class is pruned.

    Attributes:
        attribute: the layer attribute holding the pruned kernel.
        filter_axes: how many trailing kernel axes index the output filters ("channel" pruning zeroes whole filters).
        groupable: whether kernel axis -2 is the input axis, along which "N:M" groups run.
        transposed: whether the output filters are kernel axis -2 and the inputs axis -1 (a transposed
            convolution's kernel), the other way round from the others.
    """

    attribute: str
    filter_axes: int
    groupable: bool
    transposed: bool = False


_DENSE = Kernel("kernel", 1, True)
_DEPTHWISE = Kernel("kernel", 2, False)  # Keras 3 names the depthwise kernel `kernel`
_POINTWISE = Kernel("pointwise_kernel", 1, True)
_KERNELS = {
    keras.layers.Dense: _DENSE,
    keras.layers.Conv1D: _DENSE,
    keras.layers.Conv2D: _DENSE,
    keras.layers.Conv3D: _DENSE,
    keras.layers.SeparableConv1D: _POINTWISE,
    keras.layers.SeparableConv2D: _POINTWISE,
    keras.layers.DepthwiseConv1D: _DEPTHWISE,
    keras.layers.DepthwiseConv2D: _DEPTHWISE,
    keras.layers.Conv1DTranspose: Kernel("kernel", 1, False, transposed=True),
    keras.layers.Conv2DTranspose: Kernel("kernel", 1, False, transposed=True),
    keras.layers.Conv3DTranspose: Kernel("kernel", 1, False, transposed=True),
    keras.layers.Embedding: Kernel("embeddings", 1, False),
}
# A MultiHeadAttention: each projection kernel seen as a matrix (inputs, outputs), see `projections`. Tell it by
# identity (`is`): as a dataclass it equals the Dense description.
ATTENTION = Kernel("kernel", 1, True)
PRUNABLE = ", ".join([*(cls.__name__ for cls in _KERNELS), "EinsumDense"])  # one kernel: what PruneLowMagnitude takes


def _einsum_kernel(layer):
    """The `Kernel` of an EinsumDense: its filters are the output axes its kernel ends with (all of its output
    axes must be trailing: "abc,cde->abde" has 2, "abc,dc->abd" none), and "N:M" groups kernel axis -2 when that
    axis is summed over and a single output axis follows it."""
    inputs, rest = layer.equation.split(",")
    kernel, output = rest.split("->")
    trailing = len(kernel) - next((i for i in range(len(kernel)) if set(kernel[i:]) <= set(output)), len(kernel))
    outputs_trailing = trailing == len(set(kernel) & set(output))
    filter_axes = trailing if outputs_trailing else 0
    groupable = filter_axes == 1 and len(kernel) >= 2 and kernel[-2] in inputs and kernel[-2] not in output
    return Kernel("kernel", filter_axes, groupable)


def kernel_of(layer, classes=keras.layers):
    """The `Kernel` description of a prunable layer, or None for any other layer.

    `classes` is the module holding the layer classes: `keras.layers`, or `tf_keras.layers` for a tf_keras layer (a
    tf_keras depthwise kernel is its `depthwise_kernel`, not `attribute`).

    Example:
        >>> kernel_of(keras.layers.SeparableConv2D(8, 3)).attribute
        'pointwise_kernel'
    """
    if classes is keras.layers and isinstance(layer, keras.layers.MultiHeadAttention):  # see `projections`
        return ATTENTION
    if classes is keras.layers and isinstance(layer, keras.layers.EinsumDense):  # tfmot can't prune it
        return _einsum_kernel(layer)
    return next((kernel for cls, kernel in _KERNELS.items()
                 if isinstance(layer, getattr(classes, cls.__name__, ()))), None)


def projections(attention):
    """`(projection, inputs)` for each EinsumDense projection of a built MultiHeadAttention (query, key, gate if
    any, value, output: `attention.weights` order), `inputs` being how many leading kernel axes it sums over.

    The kernel, seen as the matrix `(product of those axes, product of the others)`, is what the projection
    multiplies by: "channel" filters are its columns, "N:M" groups run down them (along the features for the
    query, key, value and gate kernels `(features, heads, head size)`, along the heads x value size inputs for the
    output kernel `(heads, value size, *output shape)`).

    Example:
        >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
        >>> _ = attention(keras.ops.ones((1, 4, 8)), keras.ops.ones((1, 4, 8)))
        >>> [(projection.name, inputs) for projection, inputs in projections(attention)]
        [('query', 1), ('key', 1), ('value', 1), ('attention_output', 2)]
    """
    found = []
    for projection in _compat.sublayers(attention):
        if isinstance(projection, keras.layers.EinsumDense):
            kernel, output = projection.equation.split(",")[1].split("->")
            found.append((projection, sum(axis not in output for axis in kernel)))
    return found


def _check_attention(structure, attention):
    """Raises unless each projection of `attention` has a multiple of M inputs under an "N:M" `structure`."""
    pattern = masks.parse(_OWNER, structure)
    if not isinstance(pattern, tuple):
        return
    for projection, inputs in projections(attention):
        count = math.prod(projection.kernel.shape[:inputs])
        _checks.satisfies(
            _OWNER, "structure", structure, count % pattern[1] == 0,
            f"a multiple of M = {pattern[1]} inputs per group, but the {projection.name} projection of layer "
            f"'{attention.name}' (MultiHeadAttention) has {count} inputs",
        )


_LAYERS = "a layer class, a layer name, a function layer -> bool, or a list of them"


def _entries(layers):
    """`layers` as a list of classes, names and predicates."""
    entries = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    for entry in entries:
        valid = isinstance(entry, (type, str)) or callable(entry)
        _checks.satisfies(_OWNER, "layers", layers, valid, _LAYERS, TypeError)
    return entries


def _matches(layer, entry):
    if isinstance(entry, type):
        return isinstance(layer, entry)
    if isinstance(entry, str):
        return layer.name == entry
    return bool(entry(layer))


def choose_layers(candidates, structure, layers, kernel_of, described="prunable layers"):
    """The layers among `candidates` to prune: those `layers` picks (by class, name or predicate), or by default
    every one `kernel_of` knows that can take `structure` (depthwise ones left out under "N:M", ...). Raises for a
    choice that can't be pruned.

    Both Kerases choose through it: `kernel_of` reads their layer classes; `described` names the candidates in the
    error for an unknown name.
    """
    if layers is None:
        pattern = masks.parse(_OWNER, structure)
        kernels = [(layer, kernel_of(layer)) for layer in candidates]
        chosen = [layer for layer, kernel in kernels if kernel is not None
                  and (kernel.groupable or not isinstance(pattern, tuple))
                  and (kernel.filter_axes > 0 or pattern != "channel")]
    else:
        entries = _entries(layers)
        missing = {entry for entry in entries if isinstance(entry, str)} - {layer.name for layer in candidates}
        _checks.satisfies(_OWNER, "layers", layers, not missing, f"names of {described}; not one: {sorted(missing)}")
        chosen = [layer for layer in candidates if any(_matches(layer, entry) for entry in entries)]
    rule = f"a choice of at least one prunable layer ({PRUNABLE}, MultiHeadAttention) of the model"
    _checks.satisfies(_OWNER, "layers", layers, chosen, rule)
    for layer in chosen:
        kernel = kernel_of(layer)
        if kernel is ATTENTION:
            _check_attention(structure, layer)
        elif kernel is not None:  # tf_keras: a layer only tfmot prunes (Embedding, ...) is left to tfmot's checks
            masks.check_fits(_OWNER, structure, layer, kernel)
    return chosen
