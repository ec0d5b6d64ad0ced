"""`tfopt.quantize.quantize_model` on the digits CNN in both Kerases, side by side in one (legacy) process: tfmot's
QAT for the tf_keras copy, tfopt's for the Keras 3 model, each exported to int8 TFLite and run by LiteRT; the
accuracies are compared on their means over the `digits_seeds`."""

import keras
import numpy as np
import pytest
import tf_keras

import tfopt
from tfopt.demo.data import batches
from tfopt.demo.model import compile_for_digits

EPOCHS, RATE = 3, 1e-4


def fit(model, digits, compile_model, seed):
    keras.utils.set_random_seed(seed)  # the global seeds: tf_keras's and Keras 3's shuffling alike
    compile_model(model)
    model.fit(batches(digits.x_train, digits.y_train, shuffle=True), epochs=EPOCHS, verbose=0, shuffle=False)
    return model


def compile_tf_keras(model):
    loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(tf_keras.optimizers.Adam(RATE), loss, metrics=["accuracy"])


def compile_keras3(model):
    compile_for_digits(model, keras.optimizers.Adam(RATE))


def int8_accuracy(model, digits):
    flatbuffer = tfopt.export.to_tflite(model, "int8")
    ops = [op for op in tfopt.export.inspect(flatbuffer).ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                                                            "FULLY_CONNECTED")]
    assert len(ops) == 5 and all(op.inputs[:2] == ("int8", "int8") for op in ops)
    return tfopt.export.evaluate(flatbuffer, digits.x_test, digits.y_test)["accuracy"]


@pytest.mark.slow
def test_tfmot_and_tfopt_qat_reach_the_same_accuracy(digits_model_of, digits, digits_seeds):
    tfmot_accuracies, tfopt_accuracies = [], []
    for seed in digits_seeds:
        model = digits_model_of(seed)
        tfmot_qat = fit(tfopt.quantize.quantize_model(tfopt.compat.to_tf_keras(model)), digits, compile_tf_keras, seed)
        assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in tfmot_qat.layers)
        tfopt_qat = fit(tfopt.quantize.quantize_model(model), digits, compile_keras3, seed)
        tfmot_accuracies.append(int8_accuracy(tfmot_qat, digits))
        tfopt_accuracies.append(int8_accuracy(tfopt_qat, digits))
    print(f"\nint8 TFLite accuracy per seed {digits_seeds}: tfmot (tf_keras) {np.round(tfmot_accuracies, 4)}, tfopt "
          f"(Keras 3) {np.round(tfopt_accuracies, 4)}; means {np.mean(tfmot_accuracies):.4f}, "
          f"{np.mean(tfopt_accuracies):.4f}")
    assert abs(np.mean(tfmot_accuracies) - np.mean(tfopt_accuracies)) <= 0.005


def kernel_of(wrapper):
    """The float kernel a tfmot QuantizeWrapper trains (its `layer.kernel` is replaced by the fake-quantized one)."""
    return next(w for w in wrapper.weights if w.name.endswith("kernel:0")).numpy()


def small_tf_keras_model():
    return tf_keras.Sequential([tf_keras.Input((6, 6, 1)), tf_keras.layers.Conv2D(4, 3, name="conv"),
                                tf_keras.layers.Flatten(name="flat"), tf_keras.layers.Dense(3, name="out")])


def test_skip_leaves_layers_unwrapped_and_the_weights_are_carried():
    model = small_tf_keras_model()
    quantized = tfopt.quantize.quantize_model(model, skip=["out"])
    kinds = {layer.name: type(layer).__name__ for layer in quantized.layers}
    assert kinds["quant_conv"] == "QuantizeWrapperV2" and kinds["out"] == "Dense"
    np.testing.assert_array_equal(kernel_of(quantized.get_layer("quant_conv")), model.get_layer("conv").kernel.numpy())


def test_skip_takes_tf_keras_layer_classes_and_a_single_name():
    model = small_tf_keras_model()
    by_class = tfopt.quantize.quantize_model(model, skip=[tf_keras.layers.Dense])
    by_name = tfopt.quantize.quantize_model(model, skip="out")
    for quantized in (by_class, by_name):
        kinds = {layer.name: type(layer).__name__ for layer in quantized.layers}
        assert kinds["quant_conv"] == "QuantizeWrapperV2" and kinds["out"] == "Dense"
    with pytest.raises(ValueError, match=r"argument `skip` must leave a layer of the model to quantize"):
        tfopt.quantize.quantize_model(model, skip=[tf_keras.layers.Conv2D, tf_keras.layers.Flatten, "out"])


def test_preserve_sparsity_uses_tfmots_prune_preserving_scheme():
    model = small_tf_keras_model()
    kernel = model.get_layer("out").kernel.numpy()
    kernel[::2] = 0.0
    model.get_layer("out").kernel.assign(kernel)
    quantized = tfopt.quantize.quantize_model(model, preserve_sparsity=True)
    quantized.compile(tf_keras.optimizers.Adam(0.05), "mse")
    rng = np.random.default_rng(0)
    quantized.fit(rng.normal(size=(32, 6, 6, 1)), rng.normal(size=(32, 3)), epochs=3, verbose=0)
    trained = kernel_of(quantized.get_layer("quant_out"))
    assert np.all(trained[::2] == 0.0) and np.all(trained[1::2] != 0.0)


def test_tf_keras_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"argument `scheme` must be 'int8' for a tf_keras model, which tfmot "
                                         r"quantizes: tfmot has no 16x8 QAT. Received: scheme='16x8'"):
        tfopt.quantize.quantize_model(small_tf_keras_model(), scheme="16x8")
    with pytest.raises(ValueError, match=r"argument `skip` must name layers of the model; not one: \['nope'\]"):
        tfopt.quantize.quantize_model(small_tf_keras_model(), skip=["nope"])


def tf_keras_transformer():
    """A sequence classifier tfmot has no QAT for: MultiHeadAttention, LayerNormalization, EinsumDense."""
    tokens = tf_keras.Input((8, 4))
    x = tf_keras.layers.Dense(12)(tokens)
    attended = tf_keras.layers.MultiHeadAttention(2, 6, name="attention")(x, x)
    x = tf_keras.layers.LayerNormalization(name="norm")(tf_keras.layers.Add()([x, attended]))
    x = tf_keras.layers.EinsumDense("btd,de->bte", (None, 12), bias_axes="e", activation="gelu")(x)
    return tf_keras.Model(tokens, tf_keras.layers.Dense(3)(tf_keras.layers.GlobalAveragePooling1D()(x)))


def test_layers_tfmot_cannot_quantize_go_through_keras3_to_an_all_int8_file():
    model = tf_keras_transformer()
    with pytest.raises(ValueError, match=r"tfmot can't quantize this tf_keras model \(Layer attention:.*"
                                         r"MultiHeadAttention'> is not supported\); carry the model to Keras 3 .*"
                                         r"tfopt.quantize.quantize_model\(tfopt.compat.to_keras3\(model\)\)"):
        tfopt.quantize.quantize_model(model)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 4)).astype("float32"), rng.integers(0, 3, 64)
    upgraded = tfopt.compat.to_keras3(model)
    np.testing.assert_allclose(upgraded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    quantized = tfopt.quantize.quantize_model(upgraded)
    quantized.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    quantized.fit(x, y, epochs=2, verbose=0)
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    assert {op.outputs[0] for op in tfopt.export.inspect(flatbuffer).ops_of("BATCH_MATMUL")} == {"int8"}
    agreement = np.mean(tfopt.export.predict(flatbuffer, x).argmax(1) == quantized.predict(x, verbose=0).argmax(1))
    assert agreement >= 0.9


def test_integer_inputs_tfmot_fails_on_are_refused_with_the_way_to_keras3():
    tokens = tf_keras.Input((8,), dtype="int32", name="tokens")
    embedded = tf_keras.layers.Embedding(16, 4)(tokens)
    model = tf_keras.Model(tokens, tf_keras.layers.Dense(3)(tf_keras.layers.GlobalAveragePooling1D()(embedded)))
    with pytest.raises(ValueError, match=r"tfmot can't quantize this tf_keras model \(it fake-quantizes every model "
                                         r"input, and \['tokens'\] hold integers such as token ids\); carry the "
                                         r"model to Keras 3"):
        tfopt.quantize.quantize_model(model)
