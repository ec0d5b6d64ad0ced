"""QuantizeConvolution (BatchNorm folding, fake-quantized kernel, fused activation) and QuantizeOutputs against
float Keras layers fed NumPy-quantized weights."""

import keras
import numpy as np
import pytest
from references import numpy_asymmetric, numpy_symmetric

from tfopt.quantize import QuantizeConvolution, QuantizeOutputs, quantize_model

L = keras.layers
CASES = {  # layer factory, input shape, per-channel axis of the kernel (None: per tensor)
    "conv2d": (lambda: L.Conv2D(6, 3, padding="same", use_bias=False), (5, 5, 3), -1),
    "depthwise": (lambda: L.DepthwiseConv2D(3, depth_multiplier=2, strides=2), (7, 7, 3), -1),  # see below
    "dense": (lambda: L.Dense(5), (4,), None),
    "conv1d": (lambda: L.Conv1D(4, 2), (6, 3), -1),
}


def random_batch_norm(channels, rng):
    norm = L.BatchNormalization(epsilon=1e-3)
    norm.build((None, channels))
    norm.set_weights([rng.uniform(0.5, 2, channels), rng.normal(size=channels), rng.normal(size=channels),
                      rng.uniform(0.2, 3, channels)])
    return norm


def folded_reference(layer, norm, kernel_axis):
    """The kernel and bias of `layer` followed by `norm` in inference, folded in NumPy, the kernel quantized."""
    kernel = layer.kernel.numpy().astype("float64")
    bias = layer.bias.numpy() if layer.use_bias else 0.0
    gamma, beta, mean, variance = (w.astype("float64") for w in norm.get_weights())
    scale = gamma / np.sqrt(variance + norm.epsilon)
    bias = beta + (bias - mean) * scale
    if isinstance(layer, L.DepthwiseConv2D):  # (h, w, in, multiplier): one range per output channel, TFLite's
        folded = kernel * scale.reshape(kernel.shape[2], -1)  # i * multiplier + m (the last axis of (h, w, 1, -1))
        return numpy_symmetric(folded.reshape(*folded.shape[:2], 1, -1), kernel_axis).reshape(folded.shape), bias
    return numpy_symmetric(kernel * scale, kernel_axis), bias


@pytest.mark.parametrize("case", CASES)
def test_batch_norm_folds_into_the_quantized_kernel_and_relu_fuses(case):
    make, input_shape, axis = CASES[case]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *input_shape)).astype("float32")
    layer = make()
    layer.build((None, *input_shape))
    channels = layer.compute_output_shape((None, *input_shape))[-1]
    norm = random_batch_norm(channels, rng)
    quantized = QuantizeConvolution(layer, norm, activation="relu")
    got = np.asarray(quantized(x, training=True))

    kernel, bias = folded_reference(layer, norm, axis)
    plain = make()
    plain.build((None, *input_shape))
    plain.set_weights([kernel.astype("float32")] + ([np.zeros(channels, "float32")] if plain.use_bias else []))
    linear = np.maximum(np.asarray(plain(x)).astype("float64") + bias, 0.0)
    expected = numpy_asymmetric(linear, 0.0, linear.max())
    np.testing.assert_allclose(got, expected, atol=1e-5 * max(1.0, linear.max()))
    assert quantized.output_quantizer.max_value.numpy() == pytest.approx(linear.max(), rel=1e-5)


def test_gamma_beta_and_kernel_train_while_the_statistics_stay_frozen():
    rng = np.random.default_rng(1)
    layer = L.Conv2D(4, 3)
    quantized = QuantizeConvolution(layer, random_batch_norm(4, rng), activation="relu6")
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, quantized(inputs))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    trainable = {w.path.split("/")[-1] for w in model.trainable_weights}
    assert trainable == {"kernel", "bias", "gamma", "beta"}
    statistics = [w.numpy().copy() for w in (quantized.batch_norm.moving_mean, quantized.batch_norm.moving_variance)]
    gamma = quantized.batch_norm.gamma.numpy().copy()
    model.fit(rng.normal(size=(16, 6, 6, 2)), rng.normal(size=(16, 4, 4, 4)), epochs=2, verbose=0)
    np.testing.assert_array_equal(quantized.batch_norm.moving_mean.numpy(), statistics[0])
    np.testing.assert_array_equal(quantized.batch_norm.moving_variance.numpy(), statistics[1])
    assert not np.array_equal(quantized.batch_norm.gamma.numpy(), gamma)


def test_an_unfusable_activation_gets_its_input_quantized_first():
    layer = QuantizeConvolution(L.Dense(3, activation="softmax"))
    assert layer.activation == "softmax" and layer.pre_activation_quantizer is not None
    outputs = np.asarray(layer(np.random.default_rng(2).normal(size=(4, 5)).astype("float32"), training=True))
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, atol=0.02)


def test_preserve_sparsity_keeps_zeros_through_training():
    layer = L.Dense(4)
    layer.build((None, 6))
    kernel = layer.kernel.numpy()
    kernel[::2] = 0.0
    layer.kernel.assign(kernel)
    quantized = QuantizeConvolution(layer, preserve_sparsity=True)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, quantized(inputs))
    quantized.keep_current_zeros()
    model.compile(keras.optimizers.Adam(0.1), "mse")
    rng = np.random.default_rng(3)
    model.fit(rng.normal(size=(32, 6)), rng.normal(size=(32, 4)), epochs=3, verbose=0)
    assert np.all(layer.kernel.numpy()[::2] == 0.0) and np.all(layer.kernel.numpy()[1::2] != 0.0)


def test_config_round_trips_through_keras_files(tmp_path):
    rng = np.random.default_rng(4)
    inputs = keras.Input((5, 5, 2))
    x = QuantizeConvolution(L.Conv2D(3, 3, name="c"), random_batch_norm(3, rng), "relu6", "16x8", True,
                            name="qc")(inputs)
    outputs = QuantizeOutputs(L.GlobalAveragePooling2D(), scheme="16x8")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    model.fit(rng.normal(size=(8, 5, 5, 2)), rng.normal(size=(8, 3)), verbose=0)
    model.save(tmp_path / "q.keras")
    loaded = keras.saving.load_model(tmp_path / "q.keras")
    layer = loaded.get_layer("qc")
    assert (layer.activation, layer.scheme, layer.preserve_sparsity) == ("relu6", "16x8", True)
    x = rng.normal(size=(4, 5, 5, 2)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def halve(x):
    return x / 2


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match=r"QuantizeConvolution: argument `layer` must be a Keras 3 Conv1D, Conv2D, "):
        QuantizeConvolution(L.LSTM(3))
    with pytest.raises(ValueError, match=r"argument `layer` must be channels_last with groups=1"):
        QuantizeConvolution(L.Conv2D(4, 3, groups=2))
    with pytest.raises(ValueError, match=r"argument `batch_norm` must be a BatchNormalization over the last axis"):
        QuantizeConvolution(L.Conv2D(4, 3), L.BatchNormalization(axis=1))(np.zeros((1, 5, 5, 4), "float32"))
    with pytest.raises(ValueError, match=r"argument `scheme` must be one of 'int8', '16x8'. Received: scheme='int4'"):
        QuantizeConvolution(L.Dense(3), scheme="int4")
    with pytest.raises(ValueError, match=r"QuantizeConvolution: argument `activation` must be None or the name of a "
                                         r"Keras activation .*Received: activation='relu7'"):
        QuantizeConvolution(L.Dense(3), activation="relu7")
    with pytest.raises(ValueError, match=r"QuantizeConvolution: argument `layer` must be a layer with a built-in "
                                         r"Keras activation \(its own: 'halve'\)"):
        QuantizeConvolution(L.Dense(3, activation=halve))
    with pytest.raises(TypeError, match=r"QuantizeConvolution: argument `preserve_sparsity` must be True or False. "
                                        r"Received: preserve_sparsity=1"):
        QuantizeConvolution(L.Dense(3), preserve_sparsity=1)
    with pytest.raises(TypeError, match=r"QuantizeOutputs: argument `layer` must be a Keras 3 layer. Received: "
                                        r"layer='relu'"):
        QuantizeOutputs("relu")
    with pytest.raises(TypeError, match=r"quantize_model: argument `preserve_sparsity` must be True or False. "
                                        r"Received: preserve_sparsity='yes'"):
        quantize_model(keras.Sequential([keras.Input((2,)), L.Dense(1)]), preserve_sparsity="yes")
