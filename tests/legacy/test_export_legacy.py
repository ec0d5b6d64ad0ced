"""tfopt.export on tf_keras models: float32, int8 PTQ, and tfmot QAT models converted without calibration data."""

import numpy as np
import pytest
import tf_keras

from tfopt import export


def _convnet():
    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    return tf_keras.Sequential([
        tf_keras.Input((6, 6, 2)),
        layers.Conv2D(4, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(3),
    ])


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).uniform(size=(32, 6, 6, 2)).astype("float32")


def _int8_kernels(flatbuffer):
    summary = export.inspect(flatbuffer)
    ops = summary.ops_of("CONV_2D") + summary.ops_of("FULLY_CONNECTED")
    return len(ops) == 2 and all(op.inputs[:2] == ("int8", "int8") and op.outputs == ("int8",) for op in ops)


def test_float32_matches_tf_keras(x):
    model = _convnet()
    np.testing.assert_allclose(export.predict(export.to_tflite(model), x), model(x), atol=1e-5)


def test_int8_ptq_is_full_integer(x):
    model = _convnet()
    flatbuffer = export.to_tflite(model, "int8", representative_data=x, int8_io=True)
    assert _int8_kernels(flatbuffer)
    assert export.inspect(flatbuffer).inputs[0].dtype == "int8"
    assert np.mean(np.argmax(export.predict(flatbuffer, x), -1) == np.argmax(model(x), -1)) >= 0.9


def test_tfmot_qat_model_needs_no_representative_data(x):
    import tensorflow_model_optimization as tfmot

    model = tfmot.quantization.keras.quantize_model(_convnet())
    assert export.is_quantization_aware(model) and not export.is_quantization_aware(_convnet())
    flatbuffer = export.to_tflite(model, "int8")
    assert _int8_kernels(flatbuffer)
    np.testing.assert_allclose(export.predict(flatbuffer, x), model(x), atol=0.05)
