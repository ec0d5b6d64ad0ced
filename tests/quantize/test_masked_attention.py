"""QAT of masked attention (`attention_mask`, `use_causal_mask`, Keras masks from `Embedding(mask_zero=True)`):
masked positions get exactly zero probability in Keras and in the int8 TFLite file, whose every op stays int8."""

import keras
import numpy as np
import pytest
from keras import layers

import tfopt
from tfopt.quantize.attention import QuantizeMultiHeadAttention, _project

RNG = np.random.default_rng(0)
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _learn_ranges(layer, *inputs, steps=5, **kwargs):
    for _ in range(steps):
        layer(*inputs, training=True, **kwargs)


@pytest.mark.parametrize("scheme", ["int8", "16x8"])
def test_masked_positions_get_zero_probability_and_the_rest_follows_the_float_layer(scheme):
    query, value = RNG.normal(size=(4, 6, 8)).astype("float32"), RNG.normal(size=(4, 5, 8)).astype("float32")
    mask = RNG.random((4, 6, 5)) < 0.6
    mask[..., 0] = True  # every query attends to something
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=4)
    expected, expected_probabilities = attention(query, value, attention_mask=mask, return_attention_scores=True)
    quantized = QuantizeMultiHeadAttention(attention, scheme)
    _learn_ranges(quantized, query, value, attention_mask=mask)
    outputs, probabilities = quantized(query, value, attention_mask=mask, return_attention_scores=True)
    hidden = np.broadcast_to(~mask[:, None], probabilities.shape)
    assert np.all(np.asarray(probabilities)[hidden] == 0.0)
    assert np.all(np.asarray(expected_probabilities)[hidden] < 1e-6)  # Keras's float layer hides the same ones
    error = np.max(np.abs(np.asarray(outputs) - np.asarray(expected)))
    assert 0 < error <= 0.05 * np.ptp(np.asarray(expected))


def test_masked_scores_learn_their_range_from_the_attended_ones_only():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(2, 4, 8)).astype("float32")
    quantized = QuantizeMultiHeadAttention(layers.MultiHeadAttention(num_heads=1, key_dim=4))
    quantized(x, x, use_causal_mask=True, training=True)  # the first batch sets every range to its own
    layer, quantizers = quantized.layer, quantized.quantizers
    query = _project(layer.query_dense, x, quantizers["query"], 8, 1.0 / np.sqrt(layer.key_dim))
    key = _project(layer.key_dense, x, quantizers["key"], 8)
    scores = np.asarray(keras.ops.einsum("bsnh,btnh->bnts", key, query))
    attended = scores[..., np.tril(np.ones((4, 4), bool))]
    assert attended.min() > scores.min() or attended.max() < scores.max()  # the hidden ones would widen the range
    ranges = quantizers["scores"].min_value.numpy(), quantizers["scores"].max_value.numpy()
    np.testing.assert_allclose(ranges, (min(attended.min(), 0), max(attended.max(), 0)), rtol=1e-6)


def causal_model(length=6, features=4):
    inputs = keras.Input((length, features))
    x = layers.Dense(16)(inputs)
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(x, x, use_causal_mask=True)
    x = layers.LayerNormalization()(layers.Add()([x, attended]))
    return keras.Model(inputs, layers.Dense(3)(x))  # one prediction per position


@pytest.mark.slow
def test_a_causal_model_exports_all_int8_and_later_tokens_change_no_earlier_output():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)  # its own: the module's RNG depends on which tests ran before in this process
    x = rng.normal(size=(128, 6, 4)).astype("float32")
    y = (np.cumsum(x[..., 0], axis=1) > 0).astype("int32")  # each position's label depends on tokens up to it
    quantized = tfopt.quantize.quantize_model(causal_model())
    quantized.compile(keras.optimizers.Adam(3e-3), LOSS)
    quantized.fit(x, y, epochs=3, verbose=0)
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    assert [op.outputs[0] for op in tfopt.export.inspect(flatbuffer).ops_of("SELECT_V2")] == ["int8"]
    changed = x.copy()
    changed[:, 3:] = rng.normal(size=changed[:, 3:].shape)  # tokens 3.. changed: outputs 0..2 must not move
    for predict in (lambda inputs: quantized.predict(inputs, verbose=0),
                    lambda inputs: tfopt.export.predict(flatbuffer, inputs)):
        before, after = predict(x), predict(changed)
        np.testing.assert_array_equal(after[:, :3], before[:, :3])
        assert np.any(after[:, 3:] != before[:, 3:])
    agreement = np.mean(tfopt.export.predict(flatbuffer, x).argmax(-1) == quantized.predict(x, verbose=0).argmax(-1))
    assert agreement >= 0.95


@pytest.mark.slow
def test_a_padding_mask_from_the_embedding_reaches_the_quantized_attention():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((8,), dtype="int32")
    x = layers.Embedding(12, 16, mask_zero=True)(tokens)
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    # the first token's output: a masked average pooling computes its mean in float (CAST, SUM, DIV in TFLite)
    model = keras.Model(tokens, layers.Dense(3)(layers.Add()([x, attended])[:, 0]))
    ids = np.random.default_rng(0).integers(1, 12, (96, 8))
    ids[::2, 5:] = 0  # half the sequences padded
    labels = ids[:, 0] % 3
    quantized = tfopt.quantize.quantize_model(model)
    quantized.compile(keras.optimizers.Adam(3e-3), LOSS)
    quantized.fit(ids, labels, epochs=2, verbose=0)
    attention = next(layer for layer in quantized.layers if isinstance(layer, QuantizeMultiHeadAttention))
    embedded = quantized.layers[1](ids[:2])  # carries the Keras mask, as in the model
    _, probabilities = attention(embedded, embedded, return_attention_scores=True)
    probabilities = np.asarray(probabilities)  # (sequence, head, query, key); padded queries attend to nothing
    assert np.all(probabilities[0, :, :5, 5:] == 0.0) and np.all(probabilities[1] > 0.0)
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    tflite_classes = tfopt.export.predict(flatbuffer, ids).argmax(-1)
    assert np.mean(tflite_classes == quantized.predict(ids, verbose=0).argmax(-1)) >= 0.95


CAUSAL_X = np.random.default_rng(1).normal(size=(64, 6, 4)).astype("float32")
CAUSAL_Y = (np.cumsum(CAUSAL_X[..., 0], axis=1) > 0).astype("int32")


def quantized_causal_model(**compile_kwargs):
    keras.utils.set_random_seed(0)
    quantized = tfopt.quantize.quantize_model(causal_model())
    quantized.compile(keras.optimizers.Adam(3e-3), LOSS, **compile_kwargs)
    return quantized


@pytest.mark.slow
def test_masked_attention_keeps_the_layer_contract(tmp_path, mirrored_strategy, quantizer_ranges,
                                                   assert_resumes_from_a_keras_file):
    single = quantized_causal_model()
    single.fit(CAUSAL_X, CAUSAL_Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    with mirrored_strategy.scope():
        replicated = quantized_causal_model()
    replicated.fit(CAUSAL_X, CAUSAL_Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(quantizer_ranges(replicated), quantizer_ranges(single), rtol=1e-4, atol=1e-5)

    compiled = quantized_causal_model(jit_compile=True)
    compiled.fit(CAUSAL_X, CAUSAL_Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    agreement = compiled.predict(CAUSAL_X, verbose=0).argmax(-1) == single.predict(CAUSAL_X, verbose=0).argmax(-1)
    assert np.mean(agreement) >= 0.95  # XLA rounds a level differently now and then

    assert_resumes_from_a_keras_file(quantized_causal_model, CAUSAL_X, CAUSAL_Y, tmp_path)

    keras.config.set_dtype_policy("mixed_float16")
    try:
        history = quantized_causal_model().fit(CAUSAL_X, CAUSAL_Y, epochs=3, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][-1] < history.history["loss"][0]
