"""Quantization-aware LayerNormalization and Embedding for Keras 3 Transformers.

What each becomes in TFLite, measured with TensorFlow 2.21's converter on `quantize_model`'s output (int8 scheme):

| layer              | TFLite ops (all int8)                                                                      |
| ------------------ | ------------------------------------------------------------------------------------------ |
| LayerNormalization | MEAN, SUB, MUL (square), MEAN, ADD (epsilon), RSQRT, MUL, MUL (gamma), ADD (beta)          |
| Embedding          | GATHER from the int8 table; the output keeps the table's scale                            |

Keras's own LayerNormalization lowers to ops among which a NEG stays float in an int8 model (measured with
post-training quantization); `QuantizeLayerNormalization` computes the same function in ops that all have int8
kernels, each output with a learned range.
"""

import keras
from keras import ops

from tfopt import _checks
from tfopt.quantize import schemes
from tfopt.quantize.quantizers import QuantizationAware, QuantizeActivation, fake_quant_weights

_STAGES = ("mean", "centered", "squared", "variance", "shifted_variance", "inverse_deviation", "normalized",
           "scaled", "output")


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeLayerNormalization(QuantizationAware, keras.layers.Wrapper):
    """A LayerNormalization over the last axis computed in steps that each have a learned int8 range.

    ```python
    centered = x - mean(x)                                   # over the last axis
    normalized = centered * rsqrt(mean(centered * centered) + epsilon)   # TFLite's SQUARE has no int8 kernel
    y = normalized * gamma + beta                            # each step's output fake-quantized
    ```

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
        kwargs.setdefault("name", f"quantize_{layer.name}")
        super().__init__(layer, autocast=False, **kwargs)
        self.scheme = scheme
        schemes.get(owner, scheme)
        unused = () if layer.scale and layer.center else ("scaled",)  # the product with gamma before beta's sum
        self.quantizers = {stage: QuantizeActivation(scheme, name=f"{stage}_quantizer") for stage in _STAGES
                           if stage not in unused}

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
        inverse = step("inverse_deviation", ops.rsqrt(step("shifted_variance", variance + layer.epsilon)))
        outputs = step("normalized", centered * inverse)
        if layer.scale:
            outputs = outputs * ops.cast(layer.gamma, "float32")
            outputs = step("scaled", outputs) if layer.center else outputs
        if layer.center:
            outputs = outputs + ops.cast(layer.beta, "float32")
        return step("output", outputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scheme": self.scheme}


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeEmbedding(QuantizationAware, keras.layers.Wrapper):
    """An Embedding whose table is fake-quantized (int8, symmetric, per tensor): TFLite gathers int8 rows and the
    output keeps the table's scale, so no range is learned for it.

    Args:
        layer: a Keras 3 Embedding.
        scheme: "int8" or "16x8". Defaults to `"int8"`.
        **kwargs: base layer keywords; `name` defaults to `"quantize_" + layer.name`.

    Example:
    >>> import keras, numpy as np
    >>> from tfopt.quantize.normalization import QuantizeEmbedding
    >>> tuple(QuantizeEmbedding(keras.layers.Embedding(10, 4))(np.array([[1, 2]])).shape)
    (1, 2, 4)
    """

    def __init__(self, layer, scheme="int8", **kwargs):
        _checks.instance(type(self).__name__, "layer", layer, keras.layers.Embedding, "a Keras 3 Embedding")
        kwargs.setdefault("name", f"quantize_{layer.name}")
        super().__init__(layer, autocast=False, **kwargs)
        self.scheme = scheme
        self._bits = schemes.get(type(self).__name__, scheme).weight_bits

    def call(self, inputs):
        table = fake_quant_weights(self.layer.embeddings, None, self._bits)
        return ops.take(table, ops.cast(inputs, "int32"), axis=0)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "scheme": self.scheme}
