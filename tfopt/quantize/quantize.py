"""`quantize_model`: a copy of a model that trains with its weights and activations fake-quantized (QAT)."""

import sys

import keras

from tfopt import _checks, _compat, _surgery
from tfopt.prune import PruneLowMagnitude
from tfopt.quantize import schemes
from tfopt.quantize.attention import QuantizeEinsumDense, QuantizeMultiHeadAttention
from tfopt.quantize.layers import (FOLDABLE, FUSABLE_ACTIVATIONS, QuantizeConvolution, QuantizeOutputs,
                                   is_activation_name)
from tfopt.quantize.normalization import QuantizeAffine, QuantizeEmbedding, QuantizeLayerNormalization, over_last_axis
from tfopt.quantize.quantizers import QuantizeActivation, QuantizeWrapper

_OWNER = "quantize_model"
_L = keras.layers
PASS_THROUGH = (  # TFLite runs them with the input's scale for the output: nothing to quantize
    _L.MaxPooling1D, _L.MaxPooling2D, _L.AveragePooling1D, _L.AveragePooling2D, _L.GlobalMaxPooling1D,
    _L.GlobalMaxPooling2D, _L.Flatten, _L.Reshape, _L.Dropout, _L.SpatialDropout1D, _L.SpatialDropout2D,
    _L.ZeroPadding1D, _L.ZeroPadding2D, _L.Cropping1D, _L.Cropping2D, _L.Identity, _L.Permute, _L.GaussianNoise,
    _L.ActivityRegularization,
)
OUTPUT_QUANTIZED = (  # a new range for their outputs
    _L.Add, _L.Subtract, _L.Multiply, _L.Average, _L.Maximum, _L.Minimum, _L.Concatenate, _L.GlobalAveragePooling1D,
    _L.GlobalAveragePooling2D, _L.ReLU, _L.Activation, _L.Softmax, _L.LeakyReLU, _L.BatchNormalization,
    _L.UpSampling2D,
)
REWRITTEN = {  # layers computed again by a QAT layer of their own
    _L.MultiHeadAttention: QuantizeMultiHeadAttention, _L.EinsumDense: QuantizeEinsumDense,
    _L.LayerNormalization: QuantizeLayerNormalization, _L.Embedding: QuantizeEmbedding,
    _L.Rescaling: QuantizeAffine, _L.Normalization: QuantizeAffine,
}
SCALE_PRESERVING_OPS = (  # `keras.ops` calls TFLite runs with the input's scale for the output
    "GetItem", "Slice", "Take", "Split", "Reshape", "Ravel", "Transpose", "Moveaxis", "Swapaxes", "ExpandDims",
    "Squeeze", "Tile", "Repeat", "BroadcastTo", "Max", "Min",
)
NO_INT16_KERNEL = (_L.Concatenate,)  # the converter rejects int16 CONCATENATION in 16x8 mode
NO_INT16_ACTIVATIONS = ("gelu",)  # the converter's GELU takes float32 or int8 inputs only
_SUPPORTED = ", ".join(dict.fromkeys(cls.__name__ for cls in FOLDABLE + tuple(REWRITTEN) + OUTPUT_QUANTIZED +
                                     PASS_THROUGH))


def _computed_activation(layer):
    """The name of the activation `layer` computes ('gelu' for `Dense(activation="gelu")`, `Activation("gelu")` or
    `keras.ops.gelu`), or None."""
    if _surgery.is_operation(layer):
        return type(layer).__name__.lower()
    activation = getattr(layer, "activation", None)
    return keras.activations.serialize(activation) if callable(activation) else None


def _activation_name(layer):
    """'relu' or 'relu6' if `layer` is a ReLU/ReLU6 (a ReLU or Activation layer, or `ops.relu`/`ops.relu6`), else
    None."""
    if _surgery.is_operation(layer):
        return {"Relu": "relu", "Relu6": "relu6"}.get(type(layer).__name__)
    if isinstance(layer, _L.ReLU):
        plain = layer.negative_slope == 0 and layer.threshold == 0
        return {None: "relu", 6.0: "relu6"}.get(layer.max_value) if plain else None
    if isinstance(layer, _L.Activation):
        name = keras.activations.serialize(layer.activation)
        return name if name in FUSABLE_ACTIVATIONS else None
    return None


def _fusion(graph, head):
    """(batch norm, activation, absorbed layers) of the Conv/Dense `head`: what follows it alone and folds into it."""
    absorbed, batch_norm, activation = [], None, None
    own = keras.activations.serialize(head.activation)
    last = head
    follower = graph.sole_reader(last)
    foldable_norm = (isinstance(follower, _L.BatchNormalization) and graph.call_count(follower) == 1
                     and follower.axis in (-1, len(head.output.shape) - 1))  # over the output channels
    if own == "linear" and foldable_norm:
        batch_norm, last = follower, follower
        absorbed.append(follower)
        follower = graph.sole_reader(last)
    if own == "linear" and _activation_name(follower) and graph.call_count(follower) == 1:
        activation = _activation_name(follower)
        absorbed.append(follower)
    return batch_norm, activation, absorbed


def _is_layer_scale(layer):
    """ConvNeXt's LayerScale (`x * gamma`, a class keras.applications keeps private): one int8 MUL, its output
    ranged."""
    return type(layer).__name__ == "LayerScale" and type(layer).__module__.startswith("keras.src.applications")


def _skipped(layer, skip):
    return any(layer.name == entry if isinstance(entry, str) else isinstance(layer, entry) for entry in skip)


def _is_layer_class(entry):
    """True for a layer class of Keras 3 or of tf_keras (never imported here: a tf_keras class can only exist once
    its user imported tf_keras)."""
    legacy = sys.modules.get("tf_keras")
    layer_classes = (_L.Layer,) if legacy is None else (_L.Layer, legacy.layers.Layer)
    return isinstance(entry, type) and issubclass(entry, layer_classes)


def _check_skip(skip):
    """`skip` as a list: a single name or class stands for itself."""
    skip = [skip] if isinstance(skip, (str, type)) else list(skip or [])
    for entry in skip:
        valid = isinstance(entry, str) or _is_layer_class(entry)
        _checks.satisfies(_OWNER, "skip", skip, valid, "a list of layer names and layer classes", TypeError)
    return skip


def _check_skip_names(model, skip):
    names = set(_surgery.layer_names(model))  # nested models and their layers included
    unknown = sorted(entry for entry in skip if isinstance(entry, str) and entry not in names)
    _checks.satisfies(_OWNER, "skip", skip, not unknown, f"names of layers of the model; not one: {unknown}")


def _check_quantizable(layer, rank):
    """Raises for a layer of a supported class that quantize_model can't quantize as configured, suggesting `skip`:
    a Conv/Dense whose activation isn't a built-in Keras one, a Normalization over other axes than the last."""
    hint = f"Pass `skip=['{layer.name}']` to keep it in float"
    own = getattr(layer, "activation", None)
    if isinstance(layer, FOLDABLE) and not is_activation_name(keras.activations.serialize(own)):
        raise ValueError(f"{_OWNER}: layer '{layer.name}' ({type(layer).__name__}) has the activation "
                         f"{getattr(own, '__name__', own)!r}, not a built-in Keras activation, which quantize_model "
                         f"can't quantize. {hint}, or give it a built-in activation (\"relu\", \"gelu\", ...).")
    if isinstance(layer, _L.Normalization) and not over_last_axis(layer, rank):
        raise ValueError(f"{_OWNER}: layer '{layer.name}' (Normalization) has axis={tuple(layer.axis) or None}; "
                         f"quantize_model quantizes a Normalization over the last axis only. {hint}.")


def _check_model(model):
    _surgery.check_copyable(_OWNER, model)
    _checks.satisfies(_OWNER, "model", model, model.built, "built (give it an `Input` or call it once)")
    pruned = [layer.name for layer in _surgery.layers(model) if isinstance(layer, PruneLowMagnitude)]
    _checks.satisfies(_OWNER, "model", model, not pruned,
                      f"free of pruning wrappers (strip_pruning it first; wrapped: {pruned})")


class _Rebuilder:
    """The `clone_model` call function that puts quantized layers in place of the model's own."""

    def __init__(self, graph, scheme, skip, preserve_sparsity):
        self.scheme, self.skip, self.preserve_sparsity = scheme, skip, preserve_sparsity
        self.fusions, self.absorbed = {}, set()
        for layer, _ in graph.calls:
            if isinstance(layer, FOLDABLE) and not _skipped(layer, skip):
                shared = graph.call_count(layer) > 1  # a shared layer keeps its BatchNorm and activation apart
                self.fusions[id(layer)] = (None, None, []) if shared else _fusion(graph, layer)
                self.absorbed.update(id(member) for member in self.fusions[id(layer)][2])
        self.fills, self.quantized_inputs, self.produced, self.replacements = _surgery.WeightFills(), {}, set(), {}
        self.names = {name for layer, _ in graph.calls for name in (layer.name, f"quantize_{layer.name}")}

    def _free_name(self, base):
        """`base`, or `base_1`, `base_2`, ...: a name no layer of the quantized model has (Keras's automatic names
        for an input quantizer, "quantize_activation", would clash with a wrapped layer named "activation")."""
        name, suffix = base, 0
        while name in self.names:
            suffix += 1
            name = f"{base}_{suffix}"
        self.names.add(name)
        return name

    def _quantize_input(self, tensor):
        if "float" not in str(tensor.dtype):  # integer ids (an Embedding's) stay as they are
            return tensor
        if id(tensor) not in self.quantized_inputs:
            named = tensor.name and not tensor.name.startswith("keras_tensor")  # an Input given a name
            name = f"quantize_{tensor.name}" if named else self._free_name("quantize_input")
            self.quantized_inputs[id(tensor)] = QuantizeActivation(self.scheme, name=name)(tensor)
        return self.quantized_inputs[id(tensor)]

    def _layer_for(self, layer, rank):
        """The layer to call instead of `layer`, whose (first) input has `rank` axes."""
        skipped = _skipped(layer, self.skip)  # kept in float (a nested model too), its output quantized
        if not skipped:
            _check_quantizable(layer, rank)
        if isinstance(layer, keras.Model) and not skipped:  # a nested Sequential/Functional, rewritten alike
            _surgery.check_copyable(_OWNER, layer)
            nested = _surgery.as_functional(layer)
            inner = _Rebuilder(_surgery.trace(nested), self.scheme, self.skip, self.preserve_sparsity)
            inner.fills = self.fills  # its layers' weights are put in with the outer model's
            return _surgery.rewire(nested, inner)
        if self.scheme == "16x8" and isinstance(layer, NO_INT16_KERNEL):
            raise ValueError(f"{_OWNER}: layer '{layer.name}' ({type(layer).__name__}) has no 16x8 kernel in the "
                             "TFLite converter, which rejects int16 inputs to it. Use scheme='int8' for this model.")
        if id(layer) in self.fusions:
            batch_norm, activation, _ = self.fusions[id(layer)]
            norm = None if batch_norm is None else self.fills.copy(batch_norm)
            return QuantizeConvolution(self.fills.copy(layer), norm, activation, self.scheme, self.preserve_sparsity)
        if isinstance(layer, PASS_THROUGH):
            return self.fills.copy(layer)
        rewritten = next((qat for cls, qat in REWRITTEN.items() if isinstance(layer, cls)), None)
        if isinstance(layer, _L.BatchNormalization) and over_last_axis(layer, rank):
            rewritten = QuantizeAffine
        if rewritten is not None and not skipped:
            return rewritten(self.fills.copy(layer), self.scheme, preserve_sparsity=self.preserve_sparsity)
        if isinstance(layer, OUTPUT_QUANTIZED) or skipped or _is_layer_scale(layer):
            return QuantizeOutputs(self.fills.copy(layer), self.scheme)
        raise ValueError(
            f"{_OWNER}: layer '{layer.name}' ({type(layer).__name__}) can't be quantized. Pass "
            f"`skip=['{layer.name}']` to keep it in float, or use the layers quantize_model supports: {_SUPPORTED}."
        )

    def __call__(self, layer, *args, **kwargs):
        if id(layer) in self.absorbed:
            return args[0]
        args = keras.tree.map_structure(
            lambda t: self._quantize_input(t) if isinstance(t, keras.KerasTensor) and id(t) not in self.produced
            else t, args,
        )
        activation = _computed_activation(layer)
        if self.scheme == "16x8" and activation in NO_INT16_ACTIVATIONS and not _skipped(layer, self.skip):
            raise ValueError(f"{_OWNER}: layer '{layer.name}' ({type(layer).__name__}) computes {activation}, "
                             "which has no 16x8 kernel in the TFLite converter (it takes float32 or int8 inputs "
                             f"only). Use scheme='int8' for this model, or `skip=['{layer.name}']` to keep it in "
                             "float.")
        if _surgery.is_operation(layer):
            outputs = self._operation(layer, args, kwargs)
        else:
            if id(layer) not in self.replacements:  # a shared layer stays shared
                self._check_unmasked_pooling(layer, args, kwargs)
                rank = len(keras.tree.flatten(args)[0].shape)
                self.replacements[id(layer)] = self._layer_for(layer, rank)
            outputs = self.replacements[id(layer)](*args, **kwargs)
        self.produced.update(id(t) for t in keras.tree.flatten(outputs))
        return outputs

    def _check_unmasked_pooling(self, layer, args, kwargs):
        """Raises for a GlobalAveragePooling1D averaging under a Keras mask: its CAST, SUM and DIV have no integer
        TFLite kernels, so the export would stop at float ops."""
        if not isinstance(layer, _L.GlobalAveragePooling1D) or _skipped(layer, self.skip):
            return
        first = keras.tree.flatten(args)[0]
        if kwargs.get("mask") is None and getattr(first, "_keras_mask", None) is None:
            return
        raise ValueError(
            f"{_OWNER}: layer '{layer.name}' (GlobalAveragePooling1D) averages under a Keras mask (from "
            "`Embedding(mask_zero=True)` or a `Masking` layer), whose CAST, SUM and DIV TFLite runs in float only. "
            "Pool without the mask (e.g. take the first token, `x[:, 0]`), or pass "
            f"`skip=['{layer.name}']` to keep it in float and export with `to_tflite(..., allow_float_ops=True)`."
        )

    def _operation(self, operation, args, kwargs):
        """A `keras.ops` call, its float outputs given a learned range unless TFLite keeps the input's scale."""
        outputs = operation(*args, **kwargs)
        if type(operation).__name__ in SCALE_PRESERVING_OPS:
            return outputs

        def quantized(tensor):
            if not isinstance(tensor, keras.KerasTensor) or "float" not in str(tensor.dtype):
                return tensor
            return QuantizeActivation(self.scheme, name=self._free_name(f"quantize_{operation.name}"))(tensor)

        return keras.tree.map_structure(quantized, outputs)


def quantize_model(model, scheme="int8", skip=None, preserve_sparsity=False):
    """Returns a copy of `model` that trains with fake-quantized weights and activations (quantization-aware
    training), ready for `tfopt.export.to_tflite(quantized, "int8")` to turn into integer kernels.

    Compile and fit the copy as usual (a few epochs at a low learning rate usually recover float accuracy); `model`
    is not changed. For a Keras 3 model, tfopt rewrites the layer graph:

    ```python
    Conv/DepthwiseConv2D/Dense [-> BatchNormalization] [-> ReLU/ReLU6]   -> one QuantizeConvolution (BN folded,
                                                                            kernel int8, ReLU fused; GELU and other
                                                                            activations after their own range)
    MultiHeadAttention, EinsumDense, LayerNormalization, Embedding      -> QuantizeMultiHeadAttention, ... (every
                                                                            inner tensor with a learned range)
    Add, Concatenate, global average pooling, other activations, BN     -> QuantizeOutputs (output range learned)
    max/average pooling, Flatten, Reshape, Dropout, padding, cropping   -> unchanged (same range in and out)
    keras.ops calls (x + y, ops.mean, ...)                              -> the call, then a QuantizeActivation
    keras.ops slicing, reshape, transpose, ...; integer results         -> unchanged
    each float model input                                              -> a QuantizeActivation first
    ```
    `tfopt.quantize.attention` and `tfopt.quantize.normalization` say which TFLite ops the Transformer layers
    become.
    A tf_keras model is handed to tfmot's `quantize_model` (scheme "int8" only). tfmot has no QAT for
    LayerNormalization, MultiHeadAttention, EinsumDense (and raises on them): carry such a model to Keras 3 first,
    `quantize_model(tfopt.compat.to_keras3(model))`, as the ValueError says.
    A GlobalAveragePooling1D under a Keras mask (`Embedding(mask_zero=True)`) is refused unless skipped: TFLite runs
    its masked mean (CAST, SUM, DIV) in float only.

    Args:
        model: a Keras 3 Sequential or Functional model (or a tf_keras model, quantized by tfmot).
        scheme: "int8" (int8 weights and activations) or "16x8" (int8 weights, int16 activations: TFLite's 16x8
            mode, for models whose activations need more than 8 bits). Defaults to `"int8"`.
        skip: a name or class, or a list of names and classes, of layers to keep in float (their output is still
            quantized for the next layer); a nested model's name keeps it whole in float, and its layers can be
            named too. A layer quantize_model doesn't support must be listed here. Defaults to `None`.
        preserve_sparsity: keep the zeros of a pruned (and stripped) model's kernels exactly zero through QAT.
            Defaults to `False`.

    Example:
    >>> import keras, tfopt
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="out")])
    >>> quantized = tfopt.quantize.quantize_model(model)
    >>> [type(layer).__name__ for layer in quantized.layers]
    ['InputLayer', 'QuantizeActivation', 'QuantizeConvolution']
    """
    scheme_spec = schemes.get(_OWNER, scheme)
    skip = _check_skip(skip)
    _checks.boolean(_OWNER, "preserve_sparsity", preserve_sparsity)
    if _compat.is_legacy(model):
        from tfopt.quantize import tfmot as _tfmot

        return _tfmot.quantize_model(model, scheme_spec, skip, preserve_sparsity)
    _check_model(model)
    _check_skip_names(model, skip)
    functional = _surgery.as_functional(model)
    rebuild = _Rebuilder(_surgery.trace(functional), scheme, skip, preserve_sparsity)
    quantized = _surgery.rewire(functional, rebuild)
    rebuild.fills.apply()
    if preserve_sparsity:
        for layer in _surgery.layers(quantized):
            if isinstance(layer, (QuantizeConvolution, QuantizeWrapper)):
                layer.keep_current_zeros()
    return quantized
