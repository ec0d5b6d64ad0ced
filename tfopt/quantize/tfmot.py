"""The tf_keras side of `tfopt.quantize`: `quantize_model` handed to tensorflow_model_optimization (tfmot).

tfmot is imported inside the function, never by `import tfopt`: importing it sets `TF_USE_LEGACY_KERAS=1` for the
process. How tfopt's arguments map onto tfmot 0.8.1:

```python
scheme="int8"            -> tfmot's default 8-bit scheme (tfmot.quantization.keras.quantize_model)
scheme="16x8"            -> ValueError: tfmot has no 16x8 QAT (carry the model to Keras 3: tfopt.compat.to_keras3)
skip=[...]               -> quantize_annotate_layer on every other layer, then quantize_apply (ValueError if it
                            leaves none: tfmot would have nothing to quantize)
preserve_sparsity=True   -> quantize_apply(..., Default8BitPrunePreserveQuantizeScheme())
a layer tfmot can't QAT  -> ValueError: carry the model to Keras 3 (LayerNormalization, MultiHeadAttention, ...)
integer model inputs     -> the same ValueError (tfmot fake-quantizes every input, token ids included)
```

Example:
    >>> import tf_keras
    >>> from tfopt.quantize import schemes, tfmot as adapter
    >>> model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(4)])
    >>> quantized = adapter.quantize_model(model, schemes.get("quantize_model", "int8"), [], False)
"""

_OWNER = "quantize_model"


def _skipped(layer, skip):
    return any(layer.name == entry if isinstance(entry, str) else type(layer).__name__ == entry.__name__
               for entry in skip)


def quantize_model(model, scheme, skip, preserve_sparsity):
    """tfmot's QAT copy of the tf_keras `model` (see the module docstring); `model` keeps its weights."""
    if scheme.name != "int8":
        raise ValueError(f"{_OWNER}: argument `scheme` must be 'int8' for a tf_keras model, which tfmot quantizes: "
                         f"tfmot has no 16x8 QAT. Received: scheme={scheme.name!r}. Carry the model to Keras 3 "
                         "(tfopt.compat.to_keras3) for 16x8.")
    import tensorflow_model_optimization as tfmot
    import tf_keras

    api = tfmot.quantization.keras
    names = {layer.name for layer in model.layers}
    unknown = sorted(entry for entry in skip if isinstance(entry, str) and entry not in names)
    if unknown:
        raise ValueError(f"{_OWNER}: argument `skip` must name layers of the model; not one: {unknown}. "
                         f"Received: skip={skip!r}")
    if skip and all(_skipped(layer, skip) for layer in model.layers):  # tfmot: "no layers to quantize"
        raise ValueError(f"{_OWNER}: argument `skip` must leave a layer of the model to quantize; it keeps every one "
                         f"in float. Received: skip={skip!r}")

    def annotate(layer):
        copy = layer.__class__.from_config(layer.get_config())
        return copy if _skipped(layer, skip) else api.quantize_annotate_layer(copy)

    integer_inputs = [tensor.name for tensor in model.inputs if tensor.dtype.is_integer]
    if integer_inputs:  # tfmot fails deep inside on them (FakeQuantWithMinMaxVars takes floats only)
        raise ValueError(_not_supported_by_tfmot(
            f"it fake-quantizes every model input, and {integer_inputs} hold integers such as token ids"))
    annotated = tf_keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    try:
        with api.quantize_scope():
            if preserve_sparsity:
                scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
                return api.quantize_apply(annotated, scheme)
            return api.quantize_apply(annotated)
    except RuntimeError as error:
        if "is not supported" not in str(error):
            raise
        raise ValueError(_not_supported_by_tfmot(str(error).split(". ")[0])) from error


def _not_supported_by_tfmot(reason):
    """The error for a model tfmot can't quantize (a LayerNormalization, a MultiHeadAttention, integer inputs),
    with the way to tfopt's Keras 3 QAT."""
    return (f"{_OWNER}: tfmot can't quantize this tf_keras model ({reason}); carry the model to Keras 3 and quantize "
            "it there, where tfopt quantizes these layers: `tfopt.quantize.quantize_model(tfopt.compat.to_keras3("
            "model))` (to_keras3 names any layer it can't carry).")
