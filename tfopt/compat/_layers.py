"""Which layers cross between Keras 3 and tf_keras, and how one generation's layer config reads in the other.

Both generations write a layer's config as the keyword arguments of its constructor, and for the layers in `LAYERS`
the arguments mean the same; they differ in how some values are spelled and in a few keys only one generation has:

- `dtype`: Keras 3 writes a `DTypePolicy` dict, tf_keras a string or a `Policy` dict; both read a policy name.
- `InputLayer`: Keras 3 `batch_shape`, tf_keras `batch_input_shape`; `LeakyReLU`: `negative_slope` vs `alpha`.
- tf_keras writes `batch_input_shape` on the layer built with `input_shape=` (the `InputLayer` carries it too), a
  one-element list for a resolved `axis` (`[3]`), `groups=1` on convolutions that have no groups, and unused
  `kernel_*` keys on `SeparableConv2D`.
- Keras 3 writes `quantization_config=None`, `rms_scaling=False`, and initializers' `input_axes`/`output_axes=None`;
  on MultiHeadAttention `use_gate=False` and `sliding_window=None`, where tf_keras writes
  `softmax_robust_masking=False` and its `query_shape`/`key_shape`/`value_shape` (Keras 3 builds on the first call;
  tf_keras requires the keys, None also building on the first call).

A key only one generation has is dropped when it holds its "feature off" value and is otherwise left in place, so
that the other generation's `from_config` rejects it: nothing is lost silently. Activations are written by name;
`hard_sigmoid` names a different function in each (tf_keras `clip(0.2 * x + 0.5, 0, 1)`, Keras 3 `relu6(x + 3) / 6`)
and neither has the other's as a built-in, so a layer using it is refused (ValueError).

Example:
    >>> from tfopt.compat import _layers
    >>> _layers.translate("LeakyReLU", {"name": "leaky", "negative_slope": 0.2}, to_legacy=True)
    {'name': 'leaky', 'alpha': 0.2}
"""

# The built-in layers whose config and weights mean the same in both generations; each has a round-trip test.
LAYERS = frozenset(
    {
        "InputLayer", "Dense", "Activation", "Dropout", "GaussianNoise", "Rescaling",
        "Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D",
        "BatchNormalization", "LayerNormalization",
        "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
        "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
        "Embedding", "EinsumDense", "MultiHeadAttention",
        "Flatten", "Reshape", "Permute", "RepeatVector", "ZeroPadding2D", "Cropping2D", "UpSampling2D",
        "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    }
)  # fmt: skip

# Keys only one generation writes, with the value that means "feature off" (the other generation's behaviour).
_NEUTRAL = {
    "quantization_config": None,
    "input_axes": None,
    "output_axes": None,
    "rms_scaling": False,
    "groups": 1,
    "seed": None,
    "input_length": None,
    "use_gate": False,
    "sliding_window": None,
    "softmax_robust_masking": False,
}
# Keras 3 name -> tf_keras name, per layer.
_RENAMED = {"InputLayer": {"batch_shape": "batch_input_shape"}, "LeakyReLU": {"negative_slope": "alpha"}}
# Keys tf_keras writes but never reads.
_UNUSED = {"SeparableConv2D": {"kernel_initializer", "kernel_regularizer", "kernel_constraint"}}
# The input shape tf_keras writes on a layer built with `input_shape=`; the model's InputLayer carries it.
_SHAPE_KEYS = {"batch_input_shape", "input_shape", "batch_size", "input_dim"}
# The input shapes tf_keras writes on a built MultiHeadAttention (Keras 3 builds it on its first call instead).
_BUILD_SHAPES = {"MultiHeadAttention": {"query_shape", "key_shape", "value_shape"}}
_POLICIES = {"DTypePolicy", "FloatDTypePolicy", "Policy"}
# Activation names both generations read but compute differently.
_DIFFERENT_ACTIVATIONS = {"hard_sigmoid"}


def translate(class_name, config, to_legacy):
    """`config` of a `class_name` layer (or initializer, regularizer, constraint), as the other generation reads it.

    `to_legacy` is True for Keras 3 -> tf_keras, False for tf_keras -> Keras 3. Raises ValueError for a dtype
    policy the other generation lacks (a quantized one) and for an activation it computes differently.
    """
    renamed = _RENAMED.get(class_name, {})
    if not to_legacy:
        renamed = {legacy: keras3 for keras3, legacy in renamed.items()}
    translated = {
        renamed.get(key, key): _value(key, value, to_legacy)
        for key, value in config.items()
        if not _dropped(class_name, key, value)
    }
    if to_legacy:  # tf_keras reads the build shapes back as required keys; None builds on the first call
        translated.update(dict.fromkeys(_BUILD_SHAPES.get(class_name, ())))
    return translated


def _dropped(class_name, key, value):
    if key in _UNUSED.get(class_name, ()) or key in _BUILD_SHAPES.get(class_name, ()):
        return True
    # An Embedding's `input_dim` is its vocabulary size, not an input shape.
    if key in _SHAPE_KEYS and class_name != "InputLayer" and (class_name, key) != ("Embedding", "input_dim"):
        return True
    neutral = _NEUTRAL.get(key, ...)
    return type(value) is type(neutral) and value == neutral


def _value(key, value, to_legacy):
    if key == "dtype":
        return _policy_name(value)
    if key.endswith("activation") and isinstance(value, str) and value in _DIFFERENT_ACTIVATIONS:
        raise ValueError(f"its {key} {value!r} computes a different function in the other Keras generation, which "
                         "has no built-in equal to it")
    if key == "axis" and isinstance(value, list) and len(value) == 1:
        return value[0]
    if isinstance(value, dict) and isinstance(value.get("config"), dict) and "class_name" in value:
        return {**value, "config": translate(value["class_name"], value["config"], to_legacy)}
    return value


def _policy_name(dtype):
    if not isinstance(dtype, dict):
        return dtype
    if dtype["class_name"] not in _POLICIES:
        raise ValueError(f"its dtype policy {dtype['class_name']} exists in one Keras generation only")
    return dtype["config"]["name"]
