"""Quantization-aware LayerNormalization, Embedding and the affine preprocessing layers (Rescaling, Normalization).

What each becomes in TFLite, measured with TensorFlow 2.21's converter on `quantize_model`'s output (int8 scheme):

| layer              | TFLite ops (all int8)                                                                      |
| ------------------ | ------------------------------------------------------------------------------------------ |
| LayerNormalization | MEAN, SUB, MUL (square), MEAN, ADD (epsilon), RSQRT, MUL, MUL (gamma), ADD (beta)          |
| Embedding          | GATHER from the int8 table; the output keeps the table's scale                            |
| Rescaling,         | MUL (scale), ADD (offset; none when it is 0)                                               |
| Normalization      |                                                                                            |

Under "16x8" every op is int16, with two additions: the Embedding's GATHER is followed by a QUANTIZE to int16 (the
rows' learned range), and the constants of the MUL and ADD ops (epsilon, gamma, beta; scale, offset) are fake-quantized
to int16, an added one broadcast to the other operand's shape (SHAPE, BROADCAST_TO), as the converter's int16 ADD
takes no broadcast.

Keras's own LayerNormalization lowers to ops among which a NEG stays float in an int8 model (measured with
post-training quantization); `QuantizeLayerNormalization` computes the same function in ops that all have int8
kernels, each output with a learned range.
"""

import keras
import tensorflow as tf
from keras import ops

from tfopt import _checks
from tfopt.quantize.quantizers import QuantizeActivation, QuantizeWrapper, fake_quant_weights

_STAGES = ("mean", "centered", "squared", "variance", "shifted_variance", "inverse_deviation", "normalized",
           "scaled", "output")


@tf.custom_gradient
def _rsqrt(x):
    """`rsqrt(x)`, whose gradient is 0 rather than -inf at x = 0 (there the fake quant after it passes none)."""
    y = tf.math.rsqrt(x)

    def gradient(upstream):
        return tf.where(x > 0, upstream * -0.5 * y * y * y, tf.zeros_like(upstream))

    return y, gradient


def _operand(value, scheme, added_to=None):
    """A constant operand of a MUL, or of an ADD to `added_to`: as is for "int8" (the converter quantizes it). For
    "16x8" it is fake-quantized to 16-bit symmetric levels (TFLite's int16 MUL and ADD take no float constant) and,
    added, broadcast to `added_to`'s shape (the converter's int16 ADD takes operands of the same shape only)."""
    value = ops.convert_to_tensor(value, "float32")
    if scheme.activation_bits == 8:
        return value
    value = fake_quant_weights(value, None, scheme.activation_bits)
    return value if added_to is None else ops.broadcast_to(value, ops.shape(added_to))


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeInverseDeviation(QuantizeActivation):
    """The quantizer of a LayerNormalization's `rsqrt(variance + epsilon)`: its range is learned from the finite
    values only. A row whose variance + epsilon is under half a level of its quantized range rounds to 0, whose rsqrt
    is inf: the fake quant clamps it to the range's top, as TFLite's int8 RSQRT maps 0 to its largest output.

    Example:
    >>> import numpy as np
    >>> from tfopt.quantize.normalization import QuantizeInverseDeviation
    >>> quantizer = QuantizeInverseDeviation()
    >>> np.asarray(quantizer(np.array([0.5, 2.0, np.inf], "float32"), training=True)).round(2).tolist()
    [0.5, 2.0, 2.0]
    """

    def _track(self, inputs):
        return super()._track(ops.where(ops.isfinite(inputs), inputs, 0.0))


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeLayerNormalization(QuantizeWrapper):
    """A LayerNormalization over the last axis computed in steps that each have a learned int8 range.

    ```python
    centered = x - mean(x)                                   # over the last axis
    normalized = centered * rsqrt(mean(centered * centered) + epsilon)   # TFLite's SQUARE has no int8 kernel
    y = normalized * gamma + beta                            # each step's output fake-quantized
    ```
    A variance + epsilon that rounds to 0 gives the top of the rsqrt's range, as in TFLite
    (`QuantizeInverseDeviation`), never a NaN.

    Args:
        layer: a Keras 3 LayerNormalization over the last axis, without `rms_scaling`.
        scheme: "int8" or "16x8". Defaults to `"int8"`.
        **kwargs: base layer keywords; `name` defaults to `"quantize_" + layer.name`.

    Example:
    >>> import keras, numpy as np
    >>> from tfopt.quantize.normalization import QuantizeLayerNormalization
    >>> norm = QuantizeLayerNormalization(keras.layers.LayerNormalization())
    >>> np.abs(np.asarray(norm(np.array([[1.0, 2.0, 3.0]], "float32"), training=True)).max().round(1))
    np.float32(1.2)
    """

    def __init__(self, layer, scheme="int8", **kwargs):
        owner = type(self).__name__
        _checks.instance(owner, "layer", layer, keras.layers.LayerNormalization, "a Keras 3 LayerNormalization")
        last_axis = layer.axis in (-1, [-1]) or (isinstance(layer.axis, list) and len(layer.axis) == 1)
        _checks.satisfies(owner, "layer", layer.name, last_axis and not layer.rms_scaling,
                          "a LayerNormalization over one axis, without rms_scaling")
        super().__init__(layer, scheme, **kwargs)
        unused = () if layer.scale and layer.center else ("scaled",)  # the product with gamma before beta's sum
        self.quantizers = {stage: (QuantizeInverseDeviation if stage == "inverse_deviation" else QuantizeActivation)(
            scheme, name=f"{stage}_quantizer") for stage in _STAGES if stage not in unused}

    def build(self, input_shape):
        super().build(input_shape)
        axis = self.layer.axis[0] if isinstance(self.layer.axis, list) else self.layer.axis
        _checks.satisfies(type(self).__name__, "layer", self.layer.name, axis % len(input_shape) ==
                          len(input_shape) - 1, "a LayerNormalization over the last axis")
        for quantizer in self.quantizers.values():
            quantizer.build()

    def call(self, inputs, training=None):
        layer, q = self.layer, self.quantizers

        def step(name, value):
            return q[name](value, training=training)

        inputs = ops.cast(inputs, "float32")
        centered = step("centered", inputs - step("mean", ops.mean(inputs, axis=-1, keepdims=True)))
        variance = step("variance", ops.mean(step("squared", centered * centered), axis=-1, keepdims=True))
        epsilon = _operand(layer.epsilon, self._scheme, added_to=variance)
        inverse = step("inverse_deviation", _rsqrt(step("shifted_variance", variance + epsilon)))
        outputs = step("normalized", centered * inverse)
        if layer.scale:
            outputs = outputs * _operand(layer.gamma, self._scheme)
            outputs = step("scaled", outputs) if layer.center else outputs
        if layer.center:
            outputs = outputs + _operand(layer.beta, self._scheme, added_to=outputs)
        return step("output", outputs)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeEmbedding(QuantizeWrapper):
    """An Embedding whose table is fake-quantized (int8, symmetric, per tensor): TFLite gathers int8 rows and the
    output keeps the table's scale, so no range is learned for it under "int8". Under "16x8" the rows get a learned
    int16 range after the gather (`output_quantizer`), as every activation of that scheme: an int8 activation read
    by an int16 kernel is computed wrong by TFLite.

    Args:
        layer: a Keras 3 Embedding.
        scheme: "int8" or "16x8". Defaults to `"int8"`.
        preserve_sparsity: keep the table's zeros (of a pruned model) through training. Defaults to `False`.
        **kwargs: base layer keywords; `name` defaults to `"quantize_" + layer.name`.

    Example:
    >>> import keras, numpy as np
    >>> from tfopt.quantize.normalization import QuantizeEmbedding
    >>> tuple(QuantizeEmbedding(keras.layers.Embedding(10, 4))(np.array([[1, 2]])).shape)
    (1, 2, 4)
    """

    def __init__(self, layer, scheme="int8", preserve_sparsity=False, **kwargs):
        _checks.instance(type(self).__name__, "layer", layer, keras.layers.Embedding, "a Keras 3 Embedding")
        super().__init__(layer, scheme, preserve_sparsity, **kwargs)
        self._bits = self._scheme.weight_bits
        int16 = self._scheme.activation_bits == 16
        self.output_quantizer = QuantizeActivation(scheme, name="output_quantizer") if int16 else None

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.output_quantizer is not None:
            self.output_quantizer.build()
        self._keep_sparsity()

    def _sparse_kernels(self):
        return [self.layer.embeddings]

    def call(self, inputs, training=None):
        table = fake_quant_weights(self.layer.embeddings, None, self._bits)
        outputs = ops.take(table, ops.cast(inputs, "int32"), axis=0)
        return outputs if self.output_quantizer is None else self.output_quantizer(outputs, training=training)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


AFFINE = (keras.layers.Rescaling, keras.layers.Normalization, keras.layers.BatchNormalization)


def over_last_axis(layer, rank):
    """True for a Rescaling, and for a Normalization or BatchNormalization over the last of `rank` axes."""
    if isinstance(layer, keras.layers.Rescaling):
        return True
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return [axis % rank for axis in axes] == [rank - 1]


def _affine_terms(layer):
    """(scale, offset) of a Rescaling or Normalization layer as tensors: the layer computes `x * scale + offset`."""
    if isinstance(layer, keras.layers.Rescaling):
        return ops.convert_to_tensor(layer.scale, "float32"), ops.convert_to_tensor(layer.offset, "float32")
    if isinstance(layer, keras.layers.BatchNormalization):  # moving statistics, frozen as QuantizeConvolution's
        scale = ops.rsqrt(ops.cast(layer.moving_variance, "float32") + layer.epsilon)
        if layer.scale:
            scale = scale * ops.cast(layer.gamma, "float32")
        offset = -ops.cast(layer.moving_mean, "float32") * scale
        return scale, (offset + ops.cast(layer.beta, "float32")) if layer.center else offset
    if layer.input_mean is None:  # adapted (or left at mean 0, variance 1): the values are the layer's weights
        mean, variance = layer.adapt_mean, layer.adapt_variance
    else:
        mean, variance = layer.input_mean, layer.input_variance
    mean, variance = ops.cast(mean, "float32"), ops.cast(variance, "float32")
    deviation = ops.maximum(ops.sqrt(variance), keras.config.epsilon())
    return (deviation, mean) if layer.invert else (1.0 / deviation, -mean / deviation)


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeAffine(QuantizeWrapper):
    """A Rescaling, a Normalization or a BatchNormalization (over the last axis; one that no Conv/Dense precedes,
    so it is not folded) computed as `x * scale + offset`, the product and the sum each with a learned range
    (TFLite: int8 MUL and ADD; a lone output range leaves the MUL in float). The batch norm uses its moving
    statistics in training too, as `QuantizeConvolution` does; gamma and beta keep training.

    Args:
        layer: a Keras 3 Rescaling, or a Normalization or BatchNormalization over the last axis.
        scheme: "int8" or "16x8". Defaults to `"int8"`.
        **kwargs: base layer keywords; `name` defaults to `"quantize_" + layer.name`.

    Example:
    >>> import keras, numpy as np
    >>> from tfopt.quantize.normalization import QuantizeAffine
    >>> rescale = QuantizeAffine(keras.layers.Rescaling(1 / 255.0, offset=-0.5))
    >>> float(np.asarray(rescale(np.array([[0.0, 255.0]], "float32"), training=True)).max().round(2))
    0.5
    """

    def __init__(self, layer, scheme="int8", **kwargs):
        owner = type(self).__name__
        _checks.instance(owner, "layer", layer, AFFINE, "a Keras 3 Rescaling, Normalization or BatchNormalization")
        super().__init__(layer, scheme, **kwargs)
        self.scaled_quantizer = QuantizeActivation(scheme, name="scaled_quantizer")
        self.output_quantizer = QuantizeActivation(scheme, name="output_quantizer")

    def build(self, input_shape):
        super().build(input_shape)
        rank = len(input_shape)
        _checks.satisfies(type(self).__name__, "layer", self.layer.name, over_last_axis(self.layer, rank),
                          "a Rescaling, or a Normalization or BatchNormalization over the last axis")
        self.scaled_quantizer.build()
        self.output_quantizer.build()

    def call(self, inputs, training=None, mask=None):  # a batch norm's mask only weighs batch statistics: unused
        scale, offset = _affine_terms(self.layer)
        scaled = self.scaled_quantizer(ops.cast(inputs, "float32") * _operand(scale, self._scheme), training=training)
        return self.output_quantizer(scaled + _operand(offset, self._scheme, added_to=scaled), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape
