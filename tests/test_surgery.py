"""`tfopt._surgery`: copies of a model keep the state adapted preprocessing layers hold beside their weights."""

import keras
import numpy as np
import pytest

import tfopt
from tfopt import _surgery


def adapted(layer, data):
    layer.adapt(data)
    return layer


def normalized_model():
    """Normalization adapted to data far from mean 0 / variance 1, then a Dense, and its inputs."""
    data = (np.random.default_rng(0).random((32, 8)) * 10 + 5).astype("float32")
    norm = adapted(keras.layers.Normalization(name="norm"), data)
    return keras.Sequential([keras.Input((8,)), norm, keras.layers.Dense(2, name="d")]), data


def lookup_model():
    """IntegerLookup adapted to three ids, then Embedding and Dense, and its inputs."""
    ids = np.array([[10, 20, 30], [30, 20, 10], [10, 10, 40]])
    lookup = adapted(keras.layers.IntegerLookup(name="lookup"), ids)
    x = keras.Input((3,), dtype="int64")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(5, 2, name="embed")(lookup(x)))
    return keras.Model(x, keras.layers.Dense(2, name="d")(embedded)), ids


@pytest.mark.parametrize("layer, data", [
    (keras.layers.Normalization(), np.arange(12, dtype="float32").reshape(4, 3) * 7),
    (keras.layers.IntegerLookup(), np.array([[5, 6], [7, 5]])),
    (keras.layers.StringLookup(output_mode="tf_idf"), np.array([["a", "b"], ["c", "a"]])),
    (keras.layers.TextVectorization(), np.array([["a b c"], ["c d"]])),
], ids=["normalization", "integer_lookup", "string_lookup_tf_idf", "text_vectorization"])
def test_clone_with_keeps_adapted_preprocessing_state(layer, data):
    adapted(layer, data)
    dtype = "string" if data.dtype.kind == "U" else data.dtype
    model = keras.Sequential([keras.Input(data.shape[1:], dtype=dtype), layer])
    copy = _surgery.clone_with(model, lambda _: None)
    assert copy.layers[0] is not layer
    np.testing.assert_array_equal(np.asarray(copy(data)), np.asarray(model(data)))


@pytest.mark.parametrize("make", [normalized_model, lookup_model], ids=["normalization", "integer_lookup"])
def test_pruned_and_stripped_copies_compute_the_model_at_step_0(make):
    model, x = make()
    pruned = tfopt.prune.prune_low_magnitude(model, tfopt.prune.ConstantSparsity(0.5, begin_step=0), layers="d")
    expected = np.asarray(model(x))
    assert len(np.unique(expected, axis=0)) == len(x)  # a lookup that returned the OOV index would not
    np.testing.assert_array_equal(np.asarray(pruned(x)), expected)
    np.testing.assert_array_equal(np.asarray(tfopt.prune.strip_pruning(pruned)(x)), expected)


def test_quantize_model_keeps_a_skipped_normalizations_output():
    model, x = normalized_model()
    quantized = tfopt.quantize.quantize_model(model, skip=["norm"])
    quantized(x, training=True)
    expected = np.asarray(model.get_layer("norm")(x))
    assert abs(float(expected.mean())) < 1e-5 and abs(float(expected.std()) - 1) < 1e-2
    np.testing.assert_allclose(np.asarray(quantized.get_layer("quantize_norm").layer(x)), expected, atol=1e-6)
