"""The layers `quantize_model` puts in a Keras 3 model: a fused, fake-quantized Conv/Dense, and an output quantizer.

Both are public for `isinstance` checks and for loading saved models; build models with
`tfopt.quantize.quantize_model`, which chooses them.
"""

import keras
import tensorflow as tf
from keras import ops

from tfopt import _checks, _surgery
from tfopt.quantize import schemes
from tfopt.quantize.quantizers import QuantizationAware, QuantizeActivation, fake_quant_weights

FOLDABLE = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense,
            keras.layers.Conv2DTranspose)
FUSABLE_ACTIVATIONS = ("relu", "relu6")
_ACTIVATIONS = {"linear": None, "relu": ops.relu, "relu6": ops.relu6}
_OWNER = "QuantizeConvolution"


def is_activation_name(name):
    """True for the name of a Keras activation (what `keras.activations.serialize` gives for a built-in one)."""
    if not isinstance(name, str):
        return False
    try:
        keras.activations.get(name)
    except ValueError:
        return False
    return True


def _dilated_convolution(inputs, kernel, strides, padding, dilation_rate):
    """A 2-D convolution dilated by `dilation_rate`, as one TensorFlow Conv2D op with the dilation as its attribute:
    TFLite's CONV_2D takes it as its dilation factors, in int8. Keras's ops lower a dilated convolution to
    SPACE_TO_BATCH_ND, the convolution and BATCH_TO_SPACE_ND, and the converter leaves that convolution in float.
    (Not for DepthwiseConv2D: on CPU, TensorFlow 2.21's dilated DepthwiseConv2dNative has wrong gradients with
    padding "same" and fails with "valid", measured.)"""
    return tf.raw_ops.Conv2D(input=inputs, filter=kernel, strides=(1, *strides, 1), padding=padding.upper(),
                             dilations=(1, *dilation_rate, 1))


def _leading_shape(inputs, trailing):
    """The shape of `inputs` without its last `trailing` axes: static where known (-1 for the batch), so that
    TFLite's RESHAPE takes a constant shape instead of ops computing it."""
    known = inputs.shape[1:len(inputs.shape) - trailing]
    if all(size is not None for size in known):
        return (-1, *known)
    return tuple(ops.shape(inputs)[:-trailing])


def _channel_scale(layer, scale):
    """The per-output-channel `scale` shaped to multiply the layer's kernel (depthwise: (in, multiplier))."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return ops.reshape(scale, (-1, layer.depth_multiplier))
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return ops.reshape(scale, (-1, 1))
    return scale


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeConvolution(QuantizationAware, keras.layers.Wrapper):
    """A Conv1D/Conv2D/DepthwiseConv2D/Conv2DTranspose/Dense with its BatchNormalization folded in, its kernel
    fake-quantized and its ReLU/ReLU6 fused, so that TFLite runs the three as one int8 (or 16x8) kernel.

    ```python
    s = gamma / sqrt(moving_variance + epsilon)                # 1 without a batch_norm
    kernel = fake_quant_weights(layer.kernel * s)              # per output channel; per tensor for Dense
    bias = beta + (layer.bias - moving_mean) * s
    y = activation(op(x, kernel) + bias)                       # op: the layer's convolution or matmul
    y = output_quantizer(y)                                    # moving-average range (QuantizeActivation)
    ```
    TFLite ops (int8, measured): CONV_2D / DEPTHWISE_CONV_2D with per-channel weights (a Conv1D as a CONV_2D, its
    causal padding a PAD, a dilation as the op's dilation factors), TRANSPOSE_CONV and FULLY_CONNECTED with
    per-tensor weights (for a Dense on sequences, between RESHAPEs), the ReLU fused. A dilated DepthwiseConv2D
    becomes SPACE_TO_BATCH_ND, DEPTHWISE_CONV_2D and BATCH_TO_SPACE_ND, the convolution in float (`to_tflite`
    names it).

    The batch norm uses its moving statistics in training too: QAT fine-tunes a trained model with the statistics
    frozen (the converter folds the same numbers), while gamma and beta keep training. An activation that can't be
    fused (softmax, say) is applied after a quantizer of its own input.

    With `preserve_sparsity=True` the kernel's zeros when this layer is built from a pruned model stay exactly zero
    through training (a `sparsity_mask` is kept like a pruning mask), so the int8 kernel keeps them.

    Args:
        layer: a Keras 3 Conv1D, Conv2D, DepthwiseConv2D, Conv2DTranspose or Dense (channels_last, groups=1).
        batch_norm: the BatchNormalization that follows it, or None. Defaults to `None`.
        activation: the activation applied last, by name ("relu", "relu6", "softmax", ...), or None for the
            layer's own. Defaults to `None`.
        scheme: "int8" or "16x8". Defaults to `"int8"`.
        preserve_sparsity: keep the kernel's zeros. Defaults to `False`.
        **kwargs: base layer keywords; `name` defaults to `"quantize_" + layer.name`.

    Example:
    >>> import keras, numpy as np
    >>> from tfopt.quantize import QuantizeConvolution
    >>> layer = QuantizeConvolution(keras.layers.Dense(3), activation="relu")
    >>> tuple(layer(np.ones((2, 4), "float32"), training=True).shape)
    (2, 3)
    """

    def __init__(self, layer, batch_norm=None, activation=None, scheme="int8", preserve_sparsity=False, **kwargs):
        _checks.instance(_OWNER, "layer", layer, FOLDABLE,
                         "a Keras 3 Conv1D, Conv2D, DepthwiseConv2D, Conv2DTranspose or Dense")
        groups = getattr(layer, "groups", 1)
        self._grouped_depthwise = isinstance(layer, keras.layers.Conv2D) and groups > 1 and groups == layer.filters
        valid = getattr(layer, "data_format", "channels_last") == "channels_last" and (
            groups == 1 or self._grouped_depthwise)
        _checks.satisfies(_OWNER, "layer", layer, valid,
                          "channels_last with groups=1 (or groups = filters = input channels: a depthwise Conv2D)")
        kwargs.setdefault("name", f"quantize_{layer.name}")
        super().__init__(layer, autocast=False, **kwargs)
        self.supports_masking = layer.supports_masking
        if isinstance(batch_norm, dict):
            batch_norm = keras.saving.deserialize_keras_object(batch_norm)
        if batch_norm is not None:
            _checks.instance(_OWNER, "batch_norm", batch_norm, keras.layers.BatchNormalization, "a BatchNormalization")
        self.batch_norm = batch_norm
        self.activation = activation or keras.activations.serialize(layer.activation)
        if activation is None:
            _checks.satisfies(_OWNER, "layer", layer, is_activation_name(self.activation),
                              "a layer with a built-in Keras activation (its own: "
                              f"{getattr(layer.activation, '__name__', layer.activation)!r})")
        _checks.satisfies(_OWNER, "activation", activation, is_activation_name(self.activation),
                          'None or the name of a Keras activation ("relu", "relu6", "linear", ...)')
        self.scheme = scheme
        self.preserve_sparsity = _checks.boolean(_OWNER, "preserve_sparsity", preserve_sparsity)
        scheme_spec = schemes.get(_OWNER, scheme)
        self._weight_bits = scheme_spec.weight_bits
        self._fused = self.activation in FUSABLE_ACTIVATIONS or self.activation == "linear"
        self.output_quantizer = QuantizeActivation(scheme, name="output_quantizer")
        self.pre_activation_quantizer = None if self._fused else QuantizeActivation(scheme, name="pre_activation")

    def build(self, input_shape):
        super().build(input_shape)
        if self._grouped_depthwise:
            _checks.satisfies(_OWNER, "layer", self.layer, input_shape[-1] == self.layer.groups,
                              "channels_last with groups=1 (or groups = filters = input channels: a depthwise Conv2D)")
        kernel = self.layer.kernel
        output_shape = self.layer.compute_output_shape(input_shape)
        self._channels = output_shape[-1]
        if self.batch_norm is not None:
            last_axis = self.batch_norm.axis % len(output_shape) == len(output_shape) - 1
            rule = "a BatchNormalization over the last axis"
            _checks.satisfies(_OWNER, "batch_norm", self.batch_norm, last_axis, rule)
            if not self.batch_norm.built:
                self.batch_norm.build(output_shape)
        self.sparsity_mask = None
        if self.preserve_sparsity:
            self.sparsity_mask = self.add_weight(
                name="sparsity_mask", shape=kernel.shape, initializer="ones", dtype=kernel.dtype, trainable=False
            )
            kernel.constraint = _surgery.masked_constraint(self.sparsity_mask, kernel.constraint)
        self.output_quantizer.build(output_shape)
        if self.pre_activation_quantizer is not None:
            self.pre_activation_quantizer.build(output_shape)

    def keep_current_zeros(self):
        """Sets `sparsity_mask` from the kernel's current zeros (`quantize_model` calls it once weights are in)."""
        self.sparsity_mask.assign(ops.cast(ops.not_equal(self.layer.kernel, 0.0), self.sparsity_mask.dtype))

    def folded_weights(self):
        """(kernel, bias) with the batch norm folded in, before fake quantization."""
        layer, kernel = self.layer, self.layer.kernel  # pruned zeros: kept by the constraint after each step
        bias = layer.bias if layer.use_bias else ops.zeros((self._channels,), kernel.dtype)
        norm = self.batch_norm
        if norm is None:
            return kernel, bias
        scale = ops.rsqrt(norm.moving_variance + norm.epsilon)
        if norm.scale:
            scale = scale * norm.gamma
        bias = (bias - norm.moving_mean) * scale
        if norm.center:
            bias = bias + norm.beta
        return kernel * _channel_scale(layer, scale), bias

    def _quantized_kernel(self, kernel):
        """The folded `kernel` fake-quantized in the layout of the TFLite kernel it becomes: per output channel,
        per tensor for Dense and Conv2DTranspose (the converter's TRANSPOSE of a per-channel kernel fails,
        "mismatched quantized axes"). The converter can't carry per-channel ranges through a reshape of its own, so
        the reshape to TFLite's layout comes before the fake quant."""
        layer, bits = self.layer, self._weight_bits
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2DTranspose)):
            return fake_quant_weights(kernel, None, bits)
        if self._grouped_depthwise:  # (h, w, 1, channels) -> the depthwise layout (h, w, channels, 1)
            return fake_quant_weights(ops.reshape(kernel, (*kernel.shape[:2], kernel.shape[-1], 1)), -2, bits)
        if isinstance(layer, keras.layers.DepthwiseConv2D):  # (h, w, in, multiplier): output channel
            flat = ops.reshape(kernel, (*kernel.shape[:2], 1, -1))  # in * multiplier + m, as TFLite's last axis
            return ops.reshape(fake_quant_weights(flat, -1, bits), kernel.shape)
        if isinstance(layer, keras.layers.Conv1D):  # (k, in, out) -> (1, k, in, out): TFLite's CONV_2D
            kernel = ops.expand_dims(kernel, 0)
        return fake_quant_weights(kernel, -1, bits)

    def _linear(self, inputs, kernel):
        layer = self.layer
        if isinstance(layer, keras.layers.Dense):
            return ops.matmul(inputs, kernel)
        if isinstance(layer, keras.layers.DepthwiseConv2D) or self._grouped_depthwise:
            return ops.depthwise_conv(
                inputs, kernel, strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate
            )
        if isinstance(layer, keras.layers.Conv2DTranspose):
            return ops.conv_transpose(inputs, kernel, strides=layer.strides, padding=layer.padding,
                                      output_padding=layer.output_padding, dilation_rate=layer.dilation_rate)
        if isinstance(layer, keras.layers.Conv1D):
            return self._conv1d(inputs, kernel)
        if max(layer.dilation_rate) > 1:
            return _dilated_convolution(inputs, kernel, layer.strides, layer.padding, layer.dilation_rate)
        return ops.conv(inputs, kernel, strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate)

    def _conv1d(self, inputs, kernel):
        """The Conv1D as the 2-D convolution of (batch, 1, steps, channels) with the (1, k, in, out) `kernel`;
        "causal" pads the past with zeros and convolves "valid", as Keras's Conv1D does."""
        layer, padding = self.layer, self.layer.padding
        if padding == "causal":
            past = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
            inputs, padding = ops.pad(inputs, [[0, 0], [past, 0], [0, 0]]), "valid"
        inputs, strides, dilation_rate = ops.expand_dims(inputs, 1), (1, *layer.strides), (1, *layer.dilation_rate)
        if max(dilation_rate) > 1:
            outputs = _dilated_convolution(inputs, kernel, strides, padding, dilation_rate)
        else:
            outputs = ops.conv(inputs, kernel, strides=strides, padding=padding)
        return ops.squeeze(outputs, 1)

    def call(self, inputs, training=None):
        kernel, bias = self.folded_weights()
        kernel = self._quantized_kernel(kernel)
        inputs = ops.cast(inputs, kernel.dtype)
        sequence = isinstance(self.layer, keras.layers.Dense) and len(inputs.shape) > 2
        if sequence:  # (batch, ..., features): one 2-D matmul whose output, bias included, is quantized in 2-D
            leading = _leading_shape(inputs, 1)
            inputs = ops.reshape(inputs, (-1, inputs.shape[-1]))
        outputs = self._linear(inputs, kernel) + bias
        if self.pre_activation_quantizer is not None:
            outputs = self.pre_activation_quantizer(outputs, training=training)
        activation = _ACTIVATIONS.get(self.activation) if self._fused else keras.activations.get(self.activation)
        if activation is not None:
            outputs = activation(outputs)
        outputs = self.output_quantizer(outputs, training=training)
        return ops.reshape(outputs, (*leading, self._channels)) if sequence else outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        batch_norm = None if self.batch_norm is None else keras.saving.serialize_keras_object(self.batch_norm)
        return {
            **super().get_config(),
            "batch_norm": batch_norm,
            "activation": self.activation,
            "scheme": self.scheme,
            "preserve_sparsity": self.preserve_sparsity,
        }


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeOutputs(QuantizationAware, keras.layers.Wrapper):
    """Runs a layer as it is and fake-quantizes its output: Add, Concatenate, average pooling, a standalone
    activation, or a layer the user keeps in float with `quantize_model(skip=...)` (TFLite then dequantizes its
    input and quantizes its output).

    Args:
        layer: the Keras 3 layer to run.
        scheme: "int8" or "16x8". Defaults to `"int8"`.
        **kwargs: base layer keywords; `name` defaults to `"quantize_" + layer.name`.

    Example:
    >>> import keras, numpy as np
    >>> from tfopt.quantize import QuantizeOutputs
    >>> add = QuantizeOutputs(keras.layers.Add())
    >>> tuple(add([np.ones((1, 2), "float32"), np.ones((1, 2), "float32")], training=True).shape)
    (1, 2)
    """

    def __init__(self, layer, scheme="int8", **kwargs):
        _checks.instance("QuantizeOutputs", "layer", layer, keras.layers.Layer, "a Keras 3 layer")
        kwargs.setdefault("name", f"quantize_{layer.name}")
        super().__init__(layer, **kwargs)
        self.supports_masking = layer.supports_masking
        self.scheme = scheme
        self.output_quantizer = QuantizeActivation(scheme, name="output_quantizer")

    def build(self, input_shape):
        super().build(input_shape)
        self.output_quantizer.build()  # scalar ranges: no shape needed (a layer may not implement its output shape)

    def call(self, inputs, training=None, **kwargs):
        outputs = self.layer(inputs, training=training, **kwargs)  # kwargs: the layer's own, such as `mask`
        return self.output_quantizer(outputs, training=training)

    def get_config(self):
        return {**super().get_config(), "scheme": self.scheme}
