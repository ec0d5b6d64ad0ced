"""Ship an existing Keras model to a phone as int8: QAT or post-training quantization, checked in LiteRT.

Story: your trained Keras CNN must run int8 on mobile. You export it post-training first (one call, a few hundred
calibration images); then you fine-tune a quantization-aware copy for a few epochs and export that. Both files are
run by the LiteRT interpreter — accuracy, size and latency, next to the float32 file.
Runtime on 2 CPU cores: ~35 s (`--quick`: ~25 s). Data: scikit-learn's digits, no download.

Example:
    python examples/ship_an_int8_model.py --quick
"""

import argparse
import sys

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tfopt


def existing_model():
    """A Conv-BN-ReLU / depthwise CNN, as in many mobile models."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(32, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU(6.0),
        layers.DepthwiseConv2D(3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU(6.0),
        layers.Conv2D(64, 1, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
        layers.Dense(64, activation="relu"), layers.Dense(10),
    ])


def compile_and_fit(model, rate, data, epochs):
    (x_train, y_train), _ = data
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.Adam(rate), loss, metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)
    return model


def report(name, flatbuffer, float_size, data):
    _, (x_test, y_test) = data
    accuracy = tfopt.export.evaluate(flatbuffer, x_test, y_test)["accuracy"]
    latency = tfopt.export.benchmark(flatbuffer, runs=200)
    print(f"{name:<24} LiteRT accuracy {accuracy:.4f}  size {len(flatbuffer) / 1024:6.1f} KB "
          f"({len(flatbuffer) / float_size:.2f}x)  p50 {latency.p50_ms:.3f} ms")
    return accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs, for smoke tests")
    args = parser.parse_args(argv)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images[..., None] / 16.0, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    data = ((x_train.astype("float32"), y_train), (x_test.astype("float32"), y_test))
    model = compile_and_fit(existing_model(), 3e-3, data, epochs=5 if args.quick else 15)

    float32 = tfopt.export.to_tflite(model)
    accuracies = {"float32": report("float32", float32, len(float32), data)}
    # post-training: calibrate the int8 ranges on a few hundred training images
    ptq = tfopt.export.to_tflite(model, "int8", representative_data=x_train[:300])
    accuracies["PTQ int8"] = report("post-training int8", ptq, len(float32), data)
    # quantization-aware: fine-tune a copy with BatchNorm folded and int8 rounding simulated, at a low rate
    qat_model = compile_and_fit(tfopt.quantize.quantize_model(model), 1e-4, data, epochs=1 if args.quick else 3)
    qat = tfopt.export.to_tflite(qat_model, "int8")
    accuracies["QAT int8"] = report("quantization-aware int8", qat, len(float32), data)
    integer_ops = {op.name for op in tfopt.export.inspect(qat).ops if op.inputs[:2] == ("int8", "int8")}
    print("ops on int8 inputs and weights:", sorted(integer_ops))

    tolerance = 0.05 if args.quick else 0.015
    worst = min(accuracies["PTQ int8"], accuracies["QAT int8"])
    assert worst >= accuracies["float32"] - tolerance, f"int8 lost more than {tolerance}: {accuracies}"
    return accuracies


if __name__ == "__main__":
    main(sys.argv[1:])
