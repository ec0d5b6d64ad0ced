"""A Keras 3 QAT model through tfopt.export: integer kernels in the TFLite file, outputs as in Keras."""

import keras
import numpy as np
import pytest

import tfopt
from tfopt.quantize import quantize_model

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@pytest.mark.parametrize("scheme, activations", [("int8", "int8"), ("16x8", "int16")])
def test_every_op_runs_on_integers_and_matches_keras(trained_qat, mobile_block_data, scheme, activations):
    model, (x, _) = trained_qat(scheme), mobile_block_data
    flatbuffer = tfopt.export.to_tflite(model, "int8")
    summary = tfopt.export.inspect(flatbuffer)
    inner = [op for op in summary.ops if op.name not in ("QUANTIZE", "DEQUANTIZE")]
    merge = "CONCATENATION" if scheme == "int8" else "ADD"
    assert {op.name for op in inner} >= {*WEIGHTED, "ADD", merge, "AVERAGE_POOL_2D", "MEAN", "SOFTMAX"}
    for op in inner:
        assert op.inputs[0] == activations and op.outputs == (activations,), op
    for op in inner:
        if op.name in WEIGHTED:
            assert op.inputs[1] == "int8" and op.inputs[2] == ("int64" if scheme == "16x8" else "int32"), op
    keras_outputs, tflite_outputs = model.predict(x, verbose=0), tfopt.export.predict(flatbuffer, x)
    tolerance = 0.02 if scheme == "int8" else 2e-3
    assert np.abs(keras_outputs - tflite_outputs).max() < tolerance
    assert np.mean(keras_outputs.argmax(1) == tflite_outputs.argmax(1)) >= 0.97


def test_int8_io_gives_integer_inputs_and_outputs(trained_qat, mobile_block_data):
    flatbuffer = tfopt.export.to_tflite(trained_qat("int8"), "int8", int8_io=True)
    summary = tfopt.export.inspect(flatbuffer)
    assert summary.inputs[0].dtype == summary.outputs[0].dtype == "int8"
    x = mobile_block_data[0]
    assert np.mean(tfopt.export.predict(flatbuffer, x).argmax(1) == trained_qat("int8").predict(x, verbose=0)
                   .argmax(1)) >= 0.97


def test_export_errors_for_qat_models(mobile_block_model, mobile_block_data, trained_qat):
    with pytest.raises(ValueError, match=r"to_tflite: argument `model` must be trained before export: its activation "
                                         r"ranges are learned in `fit` \(untrained: \['quantize_image', "
                                         r"'quantize_stem/output_quantizer', 'quantize_expand/output_quantizer', "
                                         r"'... 10 in all'\]\)"):
        tfopt.export.to_tflite(quantize_model(mobile_block_model()), "int8")
    with pytest.raises(ValueError, match=r"argument `representative_data` must be None for a quantization-aware"):
        tfopt.export.to_tflite(trained_qat("int8"), "int8", representative_data=mobile_block_data[0])
    with pytest.raises(ValueError, match=r"argument `int8_io` must be False unless .* not a 16x8 QAT model"):
        tfopt.export.to_tflite(trained_qat("16x8"), "int8", int8_io=True)


def test_mixed_precision_trains_and_exports_through_a_float32_copy(mobile_block_model, mobile_block_data,
                                                                   compile_classifier):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        quantized = compile_classifier(quantize_model(mobile_block_model()))
        history = quantized.fit(*mobile_block_data, epochs=3, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert history.history["loss"][-1] < history.history["loss"][0]
    with pytest.raises(ValueError, match=r"argument `model` must be computing in float32 for int8 kernels, not in "
                                         r"\['mixed_float16'\]: build it under keras.config.set_dtype_policy"):
        tfopt.export.to_tflite(quantized, "int8")
    copy = quantize_model(mobile_block_model())
    copy.set_weights(quantized.get_weights())
    x = mobile_block_data[0]
    agreement = np.mean(tfopt.export.predict(tfopt.export.to_tflite(copy, "int8"), x).argmax(1)
                        == quantized.predict(x, verbose=0).argmax(1))
    assert agreement >= 0.95


@pytest.mark.parametrize("quantization", [None, "float16", "dynamic"])
def test_a_qat_model_exports_only_to_int8(trained_qat, quantization):
    with pytest.raises(ValueError, match=r'to_tflite: argument `quantization` must be "int8" for a quantization-aware '
                                         r"model, whose fake-quant ops make integer kernels"):
        tfopt.export.to_tflite(trained_qat("int8"), quantization)


def test_inspect_reads_a_file_whose_weights_are_computed_at_run_time():
    import tensorflow as tf

    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    quantized = quantize_model(model)
    quantized(np.ones((2, 6, 6, 1), "float32"), training=True)  # learns the activation ranges
    # Converted without optimizations, the Dense kernel stays a DEQUANTIZE of stored uint8 values, run each invoke.
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(quantized).convert()
    dense = tfopt.export.inspect(flatbuffer).ops_of("FULLY_CONNECTED")
    assert len(dense) == 1 and dense[0].weight_zeros is None


@pytest.mark.slow
def test_keras_mobilenet_v2_becomes_an_all_integer_tflite_model():
    """The whole Keras MobileNetV2 graph (ZeroPadding, Conv-BN-ReLU6, inverted residuals with Add, pooling, head)
    converts to integer kernels only. Untrained, its outputs are ~1e-13: numbers are compared on trained models."""
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4,
                                           classifier_activation=None)
    quantized = quantize_model(model)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    quantized(x, training=True)  # one batch of activation ranges; the weights stay as they are
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    ops = [op for op in tfopt.export.inspect(flatbuffer).ops if op.name not in ("QUANTIZE", "DEQUANTIZE")]
    assert {op.name for op in ops} == {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"}
    assert all(op.inputs[0] == "int8" and op.outputs == ("int8",) for op in ops)


def test_a_float_op_inside_a_qat_model_is_refused_unless_allowed():
    """TFLite has no int8 softplus: the converter computes it in float between DEQUANTIZE and QUANTIZE."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Activation("softplus"),
                              keras.layers.Dense(2)])
    quantized = quantize_model(model)
    quantized.compile("adam", "mse")
    quantized.fit(np.random.default_rng(0).random((32, 4)), np.zeros((32, 2)), verbose=0)
    with pytest.raises(ValueError, match=r"to_tflite: the quantization-aware model converts with 5 op\(s\) computing "
                                         r"in float between integer ones: DEQUANTIZE #2, EXP #3, ADD #4, LOG #5, "
                                         r"QUANTIZE #6\..*allow_float_ops=True"):
        tfopt.export.to_tflite(quantized, "int8")
    flatbuffer = tfopt.export.to_tflite(quantized, "int8", allow_float_ops=True)
    assert [op.split()[0] for op in tfopt.export.float_ops_inside(flatbuffer)] == [
        "DEQUANTIZE", "EXP", "ADD", "LOG", "QUANTIZE"]


def test_a_fully_integer_qat_model_has_no_float_op_inside(trained_qat):
    assert tfopt.export.float_ops_inside(tfopt.export.to_tflite(trained_qat("int8"), "int8")) == []
