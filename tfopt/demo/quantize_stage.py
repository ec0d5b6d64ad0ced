"""The demo's quantization stage: quantization-aware training of the pruned CNN with `tfopt.quantize`.

Example:
    >>> from tfopt.demo.quantize_stage import quantize  # doctest: +SKIP
    >>> qat, accuracy = quantize(split, pruned, epochs=3, log=print)  # doctest: +SKIP
    >>> flatbuffer = tfopt.export.to_tflite(qat, "int8")  # doctest: +SKIP
"""

import keras

import tfopt
from tfopt.demo.data import batches
from tfopt.demo.model import compile_for_digits

LEARNING_RATE = 1e-4  # measured: 3e-4 and 1e-3 cost 0.3-1 point of the float accuracy


def quantize(split, pruned, epochs, log):
    """Fine-tunes a fake-quantized copy of the stripped, pruned `pruned` (BatchNorm folded, its zeros kept) for
    `epochs` at a low learning rate; returns the QAT model, ready for an int8 export, and its test accuracy."""
    qat = tfopt.quantize.quantize_model(pruned, scheme="int8", preserve_sparsity=True)
    compile_for_digits(qat, keras.optimizers.Adam(LEARNING_RATE))
    qat.fit(batches(split.x_train, split.y_train, True), epochs=epochs, verbose=0, shuffle=False)
    _, accuracy = qat.evaluate(batches(split.x_test, split.y_test, False), verbose=0)
    log(f"Quantization-aware training: {epochs} epochs with Adam({LEARNING_RATE:.0e}), sparsity kept; "
        f"test accuracy {accuracy:.4f}")
    return qat, float(accuracy)
