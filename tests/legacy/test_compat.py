"""tfopt.compat carries models between Keras 3 and tf_keras: both Kerases live in this (legacy) process."""

import keras
import numpy as np
import pytest
import tf_keras

from tfopt.compat import LAYERS, to_keras3, to_tf_keras
from tfopt.demo.model import digits_cnn

# Every layer in LAYERS but InputLayer (which every model has): a factory with non-default arguments, input shapes.
SPECS = {
    "Dense": (lambda K: K.layers.Dense(3, activation="tanh", kernel_regularizer="l2"), [(5,)]),
    "Activation": (lambda K: K.layers.Activation("sigmoid"), [(5,)]),
    "Dropout": (lambda K: K.layers.Dropout(0.3, seed=1), [(5,)]),
    "GaussianNoise": (lambda K: K.layers.GaussianNoise(0.1), [(5,)]),
    "Rescaling": (lambda K: K.layers.Rescaling(0.5, offset=1.0), [(5,)]),
    "Conv1D": (lambda K: K.layers.Conv1D(4, 3, padding="causal", dilation_rate=2), [(8, 3)]),
    "Conv2D": (lambda K: K.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"), [(8, 8, 3)]),
    "Conv3D": (lambda K: K.layers.Conv3D(2, 2, kernel_constraint="non_neg"), [(4, 4, 4, 2)]),
    "Conv2DTranspose": (lambda K: K.layers.Conv2DTranspose(4, 3, strides=2, padding="same"), [(4, 4, 3)]),
    "DepthwiseConv2D": (lambda K: K.layers.DepthwiseConv2D(3, depth_multiplier=2), [(6, 6, 3)]),
    "SeparableConv2D": (lambda K: K.layers.SeparableConv2D(4, 3, depth_multiplier=2), [(6, 6, 3)]),
    "BatchNormalization": (lambda K: K.layers.BatchNormalization(momentum=0.9, epsilon=1e-2), [(4, 4, 3)]),
    "LayerNormalization": (lambda K: K.layers.LayerNormalization(epsilon=1e-2), [(4, 6)]),
    "ReLU": (lambda K: K.layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.2), [(5,)]),
    "LeakyReLU": (lambda K: K.layers.LeakyReLU(0.2), [(5,)]),
    "PReLU": (lambda K: K.layers.PReLU(shared_axes=[1]), [(4, 3)]),
    "ELU": (lambda K: K.layers.ELU(0.5), [(5,)]),
    "Softmax": (lambda K: K.layers.Softmax(axis=1), [(4, 3)]),
    "MaxPooling1D": (lambda K: K.layers.MaxPooling1D(2), [(8, 3)]),
    "MaxPooling2D": (lambda K: K.layers.MaxPooling2D(3, strides=2, padding="same"), [(7, 7, 2)]),
    "AveragePooling1D": (lambda K: K.layers.AveragePooling1D(3, strides=1), [(8, 3)]),
    "AveragePooling2D": (lambda K: K.layers.AveragePooling2D(2, padding="same"), [(5, 5, 2)]),
    "GlobalAveragePooling1D": (lambda K: K.layers.GlobalAveragePooling1D(keepdims=True), [(6, 3)]),
    "GlobalAveragePooling2D": (lambda K: K.layers.GlobalAveragePooling2D(), [(4, 4, 3)]),
    "GlobalMaxPooling1D": (lambda K: K.layers.GlobalMaxPooling1D(), [(6, 3)]),
    "GlobalMaxPooling2D": (lambda K: K.layers.GlobalMaxPooling2D(keepdims=True), [(4, 4, 3)]),
    "Embedding": (lambda K: K.layers.Embedding(7, 3, embeddings_regularizer="l2"), [(5,)]),
    "EinsumDense": (lambda K: K.layers.EinsumDense("abc,cd->abd", (4, 2), bias_axes="d"), [(4, 3)]),
    "MultiHeadAttention": (lambda K: K.layers.MultiHeadAttention(2, 3, value_dim=4, output_shape=(5,)),
                           [(4, 6), (3, 6)]),
    "Flatten": (lambda K: K.layers.Flatten(), [(2, 3, 4)]),
    "Reshape": (lambda K: K.layers.Reshape((6, 4)), [(2, 3, 4)]),
    "Permute": (lambda K: K.layers.Permute((2, 1)), [(3, 4)]),
    "RepeatVector": (lambda K: K.layers.RepeatVector(3), [(5,)]),
    "ZeroPadding2D": (lambda K: K.layers.ZeroPadding2D(((1, 2), (0, 1))), [(3, 3, 2)]),
    "Cropping2D": (lambda K: K.layers.Cropping2D(((1, 0), (0, 1))), [(4, 4, 2)]),
    "UpSampling2D": (lambda K: K.layers.UpSampling2D(2, interpolation="bilinear"), [(3, 3, 2)]),
    "Add": (lambda K: K.layers.Add(), [(4,), (4,)]),
    "Subtract": (lambda K: K.layers.Subtract(), [(4,), (4,)]),
    "Multiply": (lambda K: K.layers.Multiply(), [(4,), (4,)]),
    "Average": (lambda K: K.layers.Average(), [(4,), (4,)]),
    "Maximum": (lambda K: K.layers.Maximum(), [(4,), (4,)]),
    "Minimum": (lambda K: K.layers.Minimum(), [(4,), (4,)]),
    "Concatenate": (lambda K: K.layers.Concatenate(axis=1), [(2, 3), (4, 3)]),
}


def _reads(name):
    """Whether both generations read the activation `name`."""
    try:
        keras.activations.get(name), tf_keras.activations.get(name)
    except ValueError:
        return False
    return True


INTEGER_INPUTS = {"Embedding"}  # token ids
SEPARATE_INPUTS = {"MultiHeadAttention"}  # called as layer(query, value)


def _randomize(model, seed=0):
    """Random weights but kernels (which keep their initial values), BN moving statistics included."""
    rng = np.random.default_rng(seed)

    def draw(variable):
        if "kernel" in variable.name:
            return variable.numpy()
        if "gamma" in variable.name or "variance" in variable.name:
            return rng.uniform(0.5, 1.5, variable.shape).astype("float32")
        return rng.normal(0, 0.3, variable.shape).astype("float32")

    model.set_weights([draw(variable) for variable in model.weights])
    return model


def _inputs(shapes, seed=1, integer=False):
    rng = np.random.default_rng(seed)
    if integer:
        return [rng.integers(0, 7, size=(3, *shape)).astype("int32") for shape in shapes]
    return [rng.normal(size=(3, *shape)).astype("float32") for shape in shapes]


def _assert_same_outputs(model, other, x, atol=1e-6):
    for expected, actual in zip(_flat(model(x)), _flat(other(x)), strict=True):
        np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=atol)


def _one_or_list(items):
    return items[0] if len(items) == 1 else items


def _flat(outputs):
    return outputs if isinstance(outputs, (list, tuple)) else [outputs]


def _generation(model):
    return type(model).__module__.split(".")[0]


def _mobile(K):
    """A MobileNet-style functional block: Conv-BN-ReLU6, depthwise, 1x1 conv, a residual Add, pooling, Dense."""
    inputs = K.Input((8, 8, 3))
    x = K.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = K.layers.ReLU(6.0)(K.layers.BatchNormalization()(x))
    y = K.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = K.layers.ReLU(6.0)(K.layers.BatchNormalization()(y))
    y = K.layers.BatchNormalization()(K.layers.Conv2D(8, 1, use_bias=False)(y))
    x = K.layers.GlobalAveragePooling2D()(K.layers.Add()([x, y]))
    return K.Model(inputs, K.layers.Dense(5)(x), name="mobile")


def _fit_one_epoch(model, K, x):
    model.compile(K.optimizers.SGD(0.01), "mse")
    model.fit(x, np.zeros((len(x), 5), "float32"), batch_size=8, epochs=1, verbose=0)


def test_both_kerases_live_in_the_legacy_process():
    assert keras.__version__.startswith("3.") and tf_keras.__version__.startswith("2.")


def test_every_listed_layer_has_a_round_trip_test():
    assert set(SPECS) | {"InputLayer"} == LAYERS


@pytest.mark.parametrize("origin", [keras, tf_keras], ids=["from_keras3", "from_tf_keras"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_layer_crosses_with_its_config_and_weights(name, origin):
    make, shapes = SPECS[name]
    dtype = "int32" if name in INTEGER_INPUTS else "float32"
    inputs = _one_or_list([origin.Input(shape, dtype=dtype) for shape in shapes])
    layer = make(origin)
    model = _randomize(origin.Model(inputs, layer(*inputs) if name in SEPARATE_INPUTS else layer(inputs)))
    there, back = (to_tf_keras, to_keras3) if origin is keras else (to_keras3, to_tf_keras)
    crossed = there(model)
    returned = back(crossed)
    x = _one_or_list(_inputs(shapes, integer=name in INTEGER_INPUTS))
    _assert_same_outputs(model, crossed, x)
    _assert_same_outputs(model, returned, x)
    assert type(crossed.layers[-1]).__name__ == name
    assert _config(returned.layers[-1]) == _config(model.layers[-1])


def _config(layer):
    """The layer's config up to float32 rounding (tf_keras stores some floats as float32) and `axis`, which
    tf_keras resolves when it builds (-1 -> [3])."""

    def rounded(value):
        if isinstance(value, float):
            return float(np.float32(value))
        return {key: rounded(item) for key, item in value.items()} if isinstance(value, dict) else value

    return {key: rounded(value) for key, value in layer.get_config().items() if key != "axis"}


# Every activation name both generations read; tf_keras computes hard_sigmoid as clip(0.2 * x + 0.5, 0, 1), Keras 3
# as relu6(x + 3) / 6.
SHARED_ACTIVATIONS = sorted(
    name for name in dir(keras.activations)
    if not name.startswith("_") and name not in ("get", "serialize", "deserialize") and _reads(name)
)
DIFFERENT_ACTIVATIONS = {"hard_sigmoid"}


@pytest.mark.parametrize("origin", [keras, tf_keras], ids=["from_keras3", "from_tf_keras"])
@pytest.mark.parametrize("name", SHARED_ACTIVATIONS)
def test_an_activation_crosses_with_the_same_numbers_or_is_refused(name, origin):
    model = origin.Sequential([origin.Input((17,)), origin.layers.Activation(name, name="act")])
    there = to_tf_keras if origin is keras else to_keras3
    if name in DIFFERENT_ACTIVATIONS:
        with pytest.raises(ValueError, match=f"{there.__name__}: layer 'act' \\(Activation\\) can't be rebuilt in "
                                             f".*its activation '{name}' computes a different function"):
            there(model)
        return
    x = np.linspace(-4, 4, 17, dtype="float32")[None, :]
    np.testing.assert_array_equal(np.asarray(there(model)(x)), np.asarray(model(x)))


def test_shared_activations_are_the_known_ones():
    assert len(SHARED_ACTIVATIONS) >= 16 and DIFFERENT_ACTIVATIONS <= set(SHARED_ACTIVATIONS)


def test_a_dense_layer_with_hard_sigmoid_is_refused_both_ways():
    for origin, there in ((keras, to_tf_keras), (tf_keras, to_keras3)):
        model = origin.Sequential([origin.Input((3,)), origin.layers.Dense(2, "hard_sigmoid", name="gate")])
        with pytest.raises(ValueError, match="layer 'gate' \\(Dense\\) .* its activation 'hard_sigmoid'"):
            there(model)


def test_an_embedding_mask_is_left_to_tf_keras_to_propagate():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(10, 4, mask_zero=True)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(pooled))
    assert "NotEqual" in [entry["class_name"] for entry in model.get_config()["layers"]]
    x = np.array([[3, 5, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]], "int32")  # padded with 0
    legacy = to_tf_keras(model)
    assert [type(layer).__name__ for layer in legacy.layers] == [type(layer).__name__ for layer in model.layers]
    _assert_same_outputs(model, legacy, x, atol=0)
    _assert_same_outputs(model, to_keras3(legacy), x, atol=0)
    unmasked = model.get_layer(index=1)(x).numpy().mean(axis=1) @ model.layers[-1].kernel.numpy()
    assert not np.allclose(unmasked[0], np.asarray(model(x))[0])  # the padding is masked out


def test_digits_cnn_round_trip_gives_the_same_outputs():
    model = _randomize(digits_cnn())
    x = _inputs([(8, 8, 1)])[0]
    legacy = to_tf_keras(model)
    assert isinstance(legacy, tf_keras.Sequential) and legacy.name == "digits_cnn"
    _assert_same_outputs(model, legacy, x)
    back = to_keras3(legacy)
    assert isinstance(back, keras.Sequential)
    assert [layer.name for layer in back.layers] == [layer.name for layer in model.layers]
    _assert_same_outputs(model, back, x)


def test_mobilenet_block_with_trained_batchnorm_round_trips():
    model = _randomize(_mobile(keras))
    x = _inputs([(8, 8, 3)])[0]
    _fit_one_epoch(model, keras, np.concatenate([x] * 8))
    moving_mean = model.get_layer(index=2).moving_mean.numpy()
    legacy = to_tf_keras(model)
    np.testing.assert_array_equal(legacy.get_layer(index=2).moving_mean.numpy(), moving_mean)
    _assert_same_outputs(model, legacy, x)
    _assert_same_outputs(model, to_keras3(legacy), x)


def test_tf_keras_model_round_trips_through_keras3():
    model = _randomize(_mobile(tf_keras))
    x = _inputs([(8, 8, 3)])[0]
    _fit_one_epoch(model, tf_keras, np.concatenate([x] * 8))
    upgraded = to_keras3(model)
    assert _generation(upgraded) == "keras"
    _assert_same_outputs(model, upgraded, x)
    back = to_tf_keras(upgraded)
    _assert_same_outputs(model, back, x)
    assert back.get_config() == model.get_config()


def test_shared_layers_nested_models_and_several_inputs_and_outputs_cross():
    image, aux = keras.Input((4, 4, 3), name="image"), keras.Input((3,), name="aux")
    shared = keras.layers.Dense(3, name="shared")
    first = shared(aux)
    head = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3), keras.layers.ReLU()], name="head")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 1)(image))
    joined = keras.layers.Concatenate()([pooled, head(shared(first))])
    model = _randomize(keras.Model([image, aux], [joined, first], name="two_heads"))
    x = _inputs([(4, 4, 3), (3,)])
    legacy = to_tf_keras(model)
    assert isinstance(legacy.get_layer("head"), tf_keras.Sequential)
    _assert_same_outputs(model, legacy, x)
    _assert_same_outputs(model, to_keras3(legacy), x)


def test_dtype_policies_cross():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, dtype="mixed_float16", name="half")])
    legacy = to_tf_keras(model)
    assert legacy.get_layer("half").dtype_policy.name == "mixed_float16"
    assert to_keras3(legacy).get_layer("half").dtype_policy.name == "mixed_float16"


def test_the_source_model_is_left_unchanged():
    model = _randomize(digits_cnn())
    config, weights = model.get_config(), model.get_weights()
    to_keras3(to_tf_keras(model))
    assert model.get_config() == config
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


class _Scale(keras.layers.Layer):
    def call(self, inputs):
        return 2.0 * inputs


def test_layers_that_cannot_cross_are_all_named():
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Lambda(lambda t: t + 1, name="plus_one"), _Scale(name="scale"),
        keras.layers.Dense(2),
    ])
    with pytest.raises(ValueError, match=r"2 layer\(s\) can't cross to tf_keras: 'plus_one' \(Lambda\), "
                                         r"'scale' \(_Scale\)"):
        to_tf_keras(model)


def test_a_tfmot_wrapper_cannot_cross_until_stripped():
    import tensorflow_model_optimization as tfmot

    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2, name="dense")])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    with pytest.raises(ValueError, match=r"'prune_low_magnitude_dense' \(PruneLowMagnitude\)"):
        to_keras3(pruned)
    assert _generation(to_keras3(tfmot.sparsity.keras.strip_pruning(pruned))) == "keras"


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have a `quantize` method")
def test_a_quantized_keras3_layer_cannot_cross():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")])
    model.quantize("int8")
    with pytest.raises(ValueError, match="to_tf_keras: layer 'dense' \\(Dense\\) can't be rebuilt in tf_keras"):
        to_tf_keras(model)


@pytest.mark.parametrize(
    "convert, model, received",
    [
        (to_keras3, lambda: digits_cnn(), "a Keras 3 Sequential"),
        (to_tf_keras, lambda: tf_keras.Sequential([tf_keras.Input((2,))]), "a tf_keras Sequential"),
        (to_tf_keras, lambda: keras.layers.Dense(2), "a Keras 3 Dense"),
        (to_keras3, lambda: "model.h5", "an object of type str"),
    ],
)
def test_wrong_model_type_names_what_it_got(convert, model, received):
    with pytest.raises(TypeError, match=f"{convert.__name__}: argument `model` must be a .* Received: {received}"):
        convert(model())


def test_a_tfmot_only_tool_works_on_a_keras3_model_and_comes_back():
    import tensorflow_model_optimization as tfmot

    clustering = tfmot.clustering.keras
    model = _randomize(digits_cnn())
    clustered = clustering.cluster_weights(
        to_tf_keras(model), number_of_clusters=8,
        cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
    )
    back = to_keras3(clustering.strip_clustering(clustered))
    assert _generation(back) == "keras"
    kernels = [layer.kernel.numpy() for layer in back.layers if type(layer).__name__ in ("Conv2D", "Dense")]
    assert len(kernels) == 4
    for kernel in kernels:
        assert len(np.unique(kernel)) <= 8
