"""Quantization-aware EinsumDense and MultiHeadAttention for Keras 3 Transformers.

What each becomes in TFLite, measured with TensorFlow 2.21's converter on `quantize_model`'s output (int8 scheme):

| layer                 | TFLite ops (all int8)                                                               |
| --------------------- | ----------------------------------------------------------------------------------- |
| EinsumDense           | FULLY_CONNECTED (+ RESHAPE around it for rank-3 inputs); its activation after it     |
| MultiHeadAttention    | 3 x FULLY_CONNECTED (query, key, value projections), BATCH_MATMUL (scores), SOFTMAX, |
|                       | BATCH_MATMUL (context), FULLY_CONNECTED (output projection), TRANSPOSE/RESHAPE;      |
|                       | masked: SELECT_V2 before the SOFTMAX (a bool mask, int8 scores)                      |

`QuantizeMultiHeadAttention` recomputes attention from the layer's own projections so that every tensor between two
ops has a learned range: the query, key and value projections, the scores, the softmax probabilities, the context
and the output. The 1/sqrt(key_dim) scale of the scores is folded into the query projection (the same numbers, one
op fewer). It serves self- and cross-attention over rank-3 inputs (batch, sequence, features) with the default
`attention_axes`, masked or not: `attention_mask`, `use_causal_mask`, `sliding_window` and the Keras masks of the
inputs (`Embedding(mask_zero=True)`) combine as in Keras's own layer. A masked position's score becomes the bottom
of the scores' range (TFLite: SELECT_V2 in int8, the mask a bool tensor), `MASK_MARGIN` below every attended score,
so the int8 softmax gives it exactly 0 (and the masked positions' contents never reach the output).
"""

import math

import keras
from keras import ops

from tfopt import _checks
from tfopt.quantize.layers import _leading_shape
from tfopt.quantize.quantizers import QuantizeActivation, QuantizeWrapper, fake_quant_weights


def _as_matmul(equation, input_rank, kernel_rank):
    """How many trailing input axes `equation` contracts with the kernel's leading ones, if it is a matmul in
    disguise (`"abc,cde->abde"`: inputs (..., c) times kernel (c, d, e)); else None."""
    inputs, rest = equation.split(",")
    kernel, output = rest.split("->")
    for count in range(1, min(input_rank, kernel_rank) + 1):
        kept, contracted = inputs[:-count], inputs[-count:]
        if kernel[:count] == contracted and output == kept + kernel[count:] and count < kernel_rank:
            return count
    return None


def _project(dense, inputs, quantizer, bits, scale=1.0, training=None):
    """`dense` (an EinsumDense) with its kernel fake-quantized (per tensor) and its output range learned.

    A dense-like equation runs as one 2-D matmul plus bias, quantized before the reshape to the output's shape:
    TFLite then has one int8 FULLY_CONNECTED with its bias fused (an einsum leaves the bias add after a reshape,
    so the matmul's output has no range and stays float).
    """
    kernel = fake_quant_weights(dense.kernel * scale, None, bits)
    inputs = ops.cast(inputs, kernel.dtype)
    bias = None if dense.bias is None else dense.bias * scale
    contracted = _as_matmul(dense.equation, len(inputs.shape), len(kernel.shape))
    if contracted is None or (bias is not None and tuple(bias.shape) != tuple(kernel.shape[contracted:])):
        outputs = ops.einsum(dense.equation, inputs, kernel)
        return quantizer(outputs if bias is None else outputs + bias, training=training)
    leading, depth = _leading_shape(inputs, contracted), math.prod(kernel.shape[:contracted])
    outputs = ops.matmul(ops.reshape(inputs, (-1, depth)), ops.reshape(kernel, (depth, -1)))
    if bias is not None:
        outputs = outputs + ops.reshape(bias, (-1,))
    outputs = quantizer(outputs, training=training)
    return ops.reshape(outputs, (*leading, *kernel.shape[contracted:]))


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeEinsumDense(QuantizeWrapper):
    """An EinsumDense with its kernel fake-quantized (int8, per tensor) and its output range learned.

    Args:
        layer: a Keras 3 EinsumDense.
        scheme: "int8" or "16x8". Defaults to `"int8"`.
        preserve_sparsity: keep the kernel's zeros (of a pruned model) through training. Defaults to `False`.
        **kwargs: base layer keywords; `name` defaults to `"quantize_" + layer.name`.

    Example:
    >>> import keras, numpy as np
    >>> from tfopt.quantize.attention import QuantizeEinsumDense
    >>> layer = QuantizeEinsumDense(keras.layers.EinsumDense("btd,de->bte", output_shape=(None, 3), bias_axes="e"))
    >>> tuple(layer(np.ones((2, 5, 4), "float32"), training=True).shape)
    (2, 5, 3)
    """

    def __init__(self, layer, scheme="int8", preserve_sparsity=False, **kwargs):
        _checks.instance(type(self).__name__, "layer", layer, keras.layers.EinsumDense, "a Keras 3 EinsumDense")
        super().__init__(layer, scheme, preserve_sparsity, **kwargs)
        self._bits = self._scheme.weight_bits
        self.activation = keras.activations.serialize(layer.activation)
        linear = self.activation == "linear"
        self.pre_activation_quantizer = None if linear else QuantizeActivation(scheme, name="pre_activation")
        self.output_quantizer = QuantizeActivation(scheme, name="output_quantizer")

    def build(self, input_shape):
        super().build(input_shape)
        for quantizer in (self.pre_activation_quantizer, self.output_quantizer):
            if quantizer is not None:
                quantizer.build()
        self._keep_sparsity()

    def _sparse_kernels(self):
        return [self.layer.kernel]

    def call(self, inputs, training=None):
        if self.pre_activation_quantizer is None:
            return _project(self.layer, inputs, self.output_quantizer, self._bits, training=training)
        outputs = _project(self.layer, inputs, self.pre_activation_quantizer, self._bits, training=training)
        return self.output_quantizer(self.layer.activation(outputs), training=training)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


_STAGES = ("query", "key", "value", "scores", "probabilities", "context", "output")

# How far below the lowest attended score masked scores sit: exp(-12) = 6e-6 of the largest attended weight, below
# half a level of int8's (1/256) and int16's (1/32768) softmax output, so a masked position's probability rounds to
# exactly 0; even 1,000 masked positions take < 1% of the softmax's total from the attended ones.
MASK_MARGIN = 12.0


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeAttentionScores(QuantizeActivation):
    """The quantizer of attention scores: a `QuantizeActivation` that, given which positions are `attended`,
    learns its range from those only and sets the others to the bottom of a range stretched `MASK_MARGIN` lower.

    ```python
    min_value, max_value <- moving averages of min/max(where(attended, scores, 0))      # training only
    low = min_value - MASK_MARGIN
    scores = fake_quant(where(attended, scores, low - 1), low, max_value)            # masked -> low, clamped
    ```

    Example:
    >>> import numpy as np
    >>> from tfopt.quantize.attention import QuantizeAttentionScores
    >>> quantizer = QuantizeAttentionScores()
    >>> scores = quantizer(np.array([[1.0, 2.0, 50.0]], "float32"), attended=np.array([[True, True, False]]),
    ...                    training=True)
    >>> float(quantizer.max_value.numpy()), round(float(scores[0, 2]), 1)
    (2.0, -12.0)
    """

    def call(self, inputs, training=None, attended=None):
        if attended is None:
            return super().call(inputs, training=training)
        low, high = self._track(ops.where(attended, inputs, 0.0)) if training else (self.min_value, self.max_value)
        low = low - MASK_MARGIN
        return self._fake_quant(ops.where(attended, inputs, low - 1.0), low, high)


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeMultiHeadAttention(QuantizeWrapper):
    """A MultiHeadAttention whose projections have fake-quantized kernels and whose every intermediate tensor (query,
    key, value, scores, probabilities, context, output) has a learned range, so TFLite runs it in int8.

    ```python
    q = quantize(einsum(query, Wq / sqrt(key_dim)) + bq / sqrt(key_dim))     # k, v alike, without the scale
    scores = quantize(einsum("bsnh,btnh->bnts", k, q))   # masked: QuantizeAttentionScores
    probabilities = quantize(softmax(scores))            # int8: TFLite's fixed [0, 255/256]; dropout in training
    context = quantize(einsum("bnts,bsnh->btnh", probabilities, v))
    output = quantize(einsum(context, Wo) + bo)
    ```

    Args:
        layer: a Keras 3 MultiHeadAttention (rank-3 inputs, default `attention_axes`, no `use_gate`).
        scheme: "int8" or "16x8". Defaults to `"int8"`.
        preserve_sparsity: keep the zeros of the four projection kernels through training. Defaults to `False`.
        **kwargs: base layer keywords; `name` defaults to `"quantize_" + layer.name`.

    Example:
    >>> import keras, numpy as np
    >>> from tfopt.quantize.attention import QuantizeMultiHeadAttention
    >>> attention = QuantizeMultiHeadAttention(keras.layers.MultiHeadAttention(num_heads=2, key_dim=4))
    >>> x = np.ones((1, 3, 8), "float32")
    >>> tuple(attention(x, x, training=True).shape)
    (1, 3, 8)
    """

    def __init__(self, layer, scheme="int8", preserve_sparsity=False, **kwargs):
        owner = type(self).__name__
        _checks.instance(owner, "layer", layer, keras.layers.MultiHeadAttention, "a Keras 3 MultiHeadAttention")
        axes = layer.attention_axes
        _checks.satisfies(owner, "layer", layer.name, axes is None or tuple(axes) in ((1,), (-2,)),
                          "a MultiHeadAttention attending over the sequence axis (attention_axes None, (1,))")
        _checks.satisfies(owner, "layer", layer.name, not layer.get_config()["use_gate"],
                          "a MultiHeadAttention without `use_gate` (its gate is not quantized yet)")
        super().__init__(layer, scheme, preserve_sparsity, **kwargs)
        self._bits = self._scheme.weight_bits
        stages = [stage for stage in _STAGES if stage != "probabilities" or scheme != "int8"]
        self.quantizers = {stage: (QuantizeAttentionScores if stage == "scores" else QuantizeActivation)(
            scheme, name=f"{stage}_quantizer") for stage in stages}
        self.dropout = keras.layers.Dropout(layer.dropout)

    def build(self, query_shape, value_shape, key_shape=None):
        for name, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            _checks.satisfies(type(self).__name__, name, shape, shape is None or len(shape) == 3,
                              "of rank 3 (batch, sequence, features)")
        if not self.layer.built:
            self.layer.build(query_shape, value_shape, key_shape)
        for quantizer in self.quantizers.values():
            quantizer.build()
        self._keep_sparsity()
        self.built = True

    def _sparse_kernels(self):
        layer = self.layer
        return [dense.kernel for dense in (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense)]

    def call(self, query, value, key=None, attention_mask=None, return_attention_scores=False, training=None,
             use_causal_mask=False, query_mask=None, value_mask=None, key_mask=None):
        layer, q = self.layer, self.quantizers
        mask = layer._compute_attention_mask(  # (batch, T, S) bool or None, from every mask source, as Keras does
            query, value, query_mask=query_mask, value_mask=value_mask, key_mask=key_mask,
            attention_mask=attention_mask, use_causal_mask=use_causal_mask)
        key = value if key is None else key
        query = _project(layer.query_dense, query, q["query"], self._bits, 1.0 / math.sqrt(layer.key_dim), training)
        key = _project(layer.key_dense, key, q["key"], self._bits, training=training)
        value = _project(layer.value_dense, value, q["value"], self._bits, training=training)
        attended = None if mask is None else ops.expand_dims(mask, 1)  # the same for every head
        scores = q["scores"](ops.einsum("bsnh,btnh->bnts", key, query), training=training, attended=attended)
        probabilities = ops.softmax(scores, axis=-1)
        if self.scheme == "int8":  # TFLite's int8 SOFTMAX writes scale 1/256, zero point -128: [0, 255/256]
            probabilities = keras.quantizers.fake_quant_with_min_max_vars(probabilities, 0.0, 255.0 / 256.0)
        else:
            probabilities = q["probabilities"](probabilities, training=training)
        context = ops.einsum("bnts,bsnh->btnh", self.dropout(probabilities, training=training), value)
        context = q["context"](context, training=training)
        outputs = _project(layer.output_dense, context, q["output"], self._bits, training=training)
        return (outputs, probabilities) if return_attention_scores else outputs

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        return self.layer.compute_output_shape(query_shape, value_shape, key_shape)

    def compute_output_spec(self, query, value, key=None, return_attention_scores=False, **kwargs):
        outputs = self.layer.compute_output_spec(query, value, key, **kwargs)
        if not return_attention_scores:
            return outputs
        scores_shape = (query.shape[0], self.layer.num_heads, query.shape[1], value.shape[1])  # Keras's: (T, T)
        return outputs, keras.KerasTensor(scores_shape, dtype=self.compute_dtype)
