"""Which layers tfopt prunes on a Keras 3 model, and which kernel of each.

| layer                                  | pruned kernel      | "channel" prunes               | "N:M" groups along |
| -------------------------------------- | ------------------ | ------------------------------ | ------------------ |
| Dense, Conv1D, Conv2D, Conv3D          | `kernel`           | output units / filters         | input axis (-2)    |
| SeparableConv1D, SeparableConv2D       | `pointwise_kernel` | output filters                 | input axis (-2)    |
| DepthwiseConv1D, DepthwiseConv2D       | `kernel`           | (channel, multiplier) filters  | not allowed        |

Biases, a separable convolution's depthwise kernel and every other layer are left dense.
"""

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class Kernel:
    """How a layer class is pruned.

    Attributes:
        attribute: the layer attribute holding the pruned kernel.
        filter_axes: how many trailing kernel axes index the output filters ("channel" pruning zeroes whole filters).
        groupable: whether kernel axis -2 is the input axis, along which "N:M" groups run.
    """

    attribute: str
    filter_axes: int
    groupable: bool


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
}
PRUNABLE = ", ".join(cls.__name__ for cls in _KERNELS)


def kernel_of(layer, classes=keras.layers):
    """The `Kernel` description of a prunable layer, or None for any other layer.

    `classes` is the module holding the layer classes: `keras.layers`, or `tf_keras.layers` for a tf_keras layer (a
    tf_keras depthwise kernel is its `depthwise_kernel`, not `attribute`).

    Example:
        >>> kernel_of(keras.layers.SeparableConv2D(8, 3)).attribute
        'pointwise_kernel'
    """
    return next((kernel for cls, kernel in _KERNELS.items() if isinstance(layer, getattr(classes, cls.__name__))), None)


def flatten(model):
    """The layers of `model`, looking into nested Sequential and Functional models (Keras 3 and tf_keras)."""
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from flatten(layer)
        else:
            yield layer
