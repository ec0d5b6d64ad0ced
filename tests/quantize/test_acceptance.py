"""Acceptance on the digits CNN (Conv-BN-ReLU, DepthwiseConv-BN-ReLU, Dense): QAT int8 and 16x8 TFLite files
against the float Keras model, and a pruned model kept sparse through QAT."""

import keras
import numpy as np
import pytest

import tfopt
from tfopt.demo.data import batches
from tfopt.demo.model import compile_for_digits

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
QAT_EPOCHS, QAT_RATE = 3, 1e-4  # a low rate: 3e-4 and 1e-3 measured 0.3-1 point below float


def fine_tune(model, digits, epochs=QAT_EPOCHS, callbacks=()):
    keras.utils.set_random_seed(0)
    compile_for_digits(model, keras.optimizers.Adam(QAT_RATE))
    model.fit(batches(digits.x_train, digits.y_train, shuffle=True), epochs=epochs, verbose=0, shuffle=False,
              callbacks=list(callbacks))
    return model


def weighted_ops(flatbuffer):
    return [op for op in tfopt.export.inspect(flatbuffer).ops if op.name in WEIGHTED]


@pytest.fixture(scope="module")
def float_accuracy(digits_model, digits):
    return digits_model.evaluate(digits.x_test, digits.y_test, verbose=0)[1]


@pytest.mark.slow
def test_qat_int8_is_integer_accurate_faithful_and_small(digits_model, digits, float_tflite, float_accuracy):
    quantized = fine_tune(tfopt.quantize.quantize_model(digits_model), digits)
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    ops = weighted_ops(flatbuffer)
    assert len(ops) == 5 and all(op.inputs[:2] == ("int8", "int8") and op.outputs == ("int8",) for op in ops)
    tflite_outputs = tfopt.export.predict(flatbuffer, digits.x_test)
    accuracy = np.mean(tflite_outputs.argmax(1) == digits.y_test)
    agreement = np.mean(tflite_outputs.argmax(1) == quantized.predict(digits.x_test, verbose=0).argmax(1))
    print(f"\nfloat {float_accuracy:.4f}, QAT int8 TFLite {accuracy:.4f}, agreement with Keras QAT {agreement:.4f}, "
          f"size {len(flatbuffer)} / {len(float_tflite)} = {len(flatbuffer) / len(float_tflite):.3f}")
    assert accuracy >= float_accuracy - 0.01
    assert agreement >= 0.99
    assert len(flatbuffer) <= 0.3 * len(float_tflite)


@pytest.mark.slow
def test_qat_16x8_runs_with_int16_activations_within_half_a_point(digits_model, digits, float_accuracy):
    quantized = fine_tune(tfopt.quantize.quantize_model(digits_model, scheme="16x8"), digits)
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    ops = weighted_ops(flatbuffer)
    assert len(ops) == 5
    assert all(op.inputs == ("int16", "int8", "int64") and op.outputs == ("int16",) for op in ops), ops
    accuracy = tfopt.export.evaluate(flatbuffer, digits.x_test, digits.y_test)["accuracy"]
    print(f"\nfloat {float_accuracy:.4f}, QAT 16x8 TFLite {accuracy:.4f}")
    assert accuracy >= float_accuracy - 0.005


@pytest.mark.slow
def test_a_pruned_model_keeps_its_zeros_through_qat_into_the_int8_file(digits_model, digits):
    steps = -(-len(digits.x_train) // 32)
    schedule = tfopt.prune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=4 * steps, frequency=10)
    pruned = tfopt.prune.prune_low_magnitude(digits_model, schedule)
    fine_tune(pruned, digits, epochs=6, callbacks=[tfopt.prune.UpdatePruningStep()])
    quantized = tfopt.quantize.quantize_model(tfopt.prune.strip_pruning(pruned), preserve_sparsity=True)
    flatbuffer = tfopt.export.to_tflite(fine_tune(quantized, digits), "int8")
    zeros = [op.weight_zeros for op in weighted_ops(flatbuffer)]
    print(f"\nzeros in the int8 kernels: {[round(z, 4) for z in zeros]}")
    assert len(zeros) == 5 and min(zeros) >= 0.79
