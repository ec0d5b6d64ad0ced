"""Acceptance on the digits CNN: each quantization, run by the LiteRT interpreter, against the Keras model (float16
over the `digits_seeds`, asserting on the mean)."""

import numpy as np
import pytest

from tfopt import export

QUANTIZED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@pytest.fixture(scope="module")
def keras_accuracy(digits_model, digits):
    return digits_model.evaluate(digits.x_test, digits.y_test, verbose=0)[1]


@pytest.fixture(scope="module")
def int8_tflite(digits_model, digits):
    return export.to_tflite(digits_model, "int8", representative_data=digits.x_train)


def assert_int8_kernels(summary):
    ops = [op for name in QUANTIZED_OPS for op in summary.ops_of(name)]
    assert len(ops) == 5  # conv, depthwise, pointwise conv, 2 dense
    assert all(op.inputs[:2] == ("int8", "int8") and op.outputs == ("int8",) for op in ops), summary


def test_float32_predictions_match_keras(digits_model, digits, float_tflite):
    difference = np.abs(export.predict(float_tflite, digits.x_test) - digits_model.predict(digits.x_test, verbose=0))
    assert difference.max() < 1e-4


@pytest.mark.slow
def test_float16_is_half_the_size_and_as_accurate(digits, digits_model_of, digits_seeds):
    keras_accuracies, float16_accuracies, ratios = [], [], []
    for seed in digits_seeds:
        model = digits_model_of(seed)
        keras_accuracies.append(model.evaluate(digits.x_test, digits.y_test, verbose=0)[1])
        half = export.to_tflite(model, "float16")
        float16_accuracies.append(export.evaluate(half, digits.x_test, digits.y_test)["accuracy"])
        ratios.append(len(half) / len(export.to_tflite(model)))
    print(f"\nper seed {digits_seeds}: Keras {np.round(keras_accuracies, 4)}, float16 TFLite "
          f"{np.round(float16_accuracies, 4)}, size ratio {np.round(ratios, 3)}; means: Keras "
          f"{np.mean(keras_accuracies):.4f}, float16 {np.mean(float16_accuracies):.4f}")
    assert all(0.45 <= ratio <= 0.6 for ratio in ratios)
    assert np.mean(float16_accuracies) >= np.mean(keras_accuracies) - 0.005


def test_dynamic_range_has_int8_weights(digits, float_tflite, digits_model, keras_accuracy):
    dynamic = export.to_tflite(digits_model, "dynamic")
    assert len(dynamic) / len(float_tflite) < 0.35
    assert export.inspect(dynamic).ops_of("FULLY_CONNECTED")[0].inputs[1] == "int8"
    assert export.evaluate(dynamic, digits.x_test, digits.y_test)["accuracy"] >= keras_accuracy - 0.015


def test_int8_ptq_is_full_integer_and_within_1_5_points(digits, int8_tflite, float_tflite, keras_accuracy):
    assert_int8_kernels(export.inspect(int8_tflite))
    assert len(int8_tflite) / len(float_tflite) < 0.35
    assert export.evaluate(int8_tflite, digits.x_test, digits.y_test)["accuracy"] >= keras_accuracy - 0.015


def test_int8_io_has_int8_tensors_and_predict_returns_floats(digits_model, digits, int8_tflite, tmp_path):
    path = tmp_path / "digits.tflite"
    int8_io = export.to_tflite(digits_model, "int8", representative_data=digits.x_train, path=path, int8_io=True)
    summary = export.inspect(path)
    assert summary.inputs[0].dtype == summary.outputs[0].dtype == "int8" and summary.inputs[0].scale > 0
    assert_int8_kernels(summary)
    logits = export.predict(int8_io, digits.x_test)
    assert logits.dtype == np.float32
    reference = export.predict(int8_tflite, digits.x_test)
    assert np.mean(np.argmax(logits, -1) == np.argmax(reference, -1)) >= 0.99
    assert np.max(np.abs(logits - reference)) < 4 * summary.outputs[0].scale
