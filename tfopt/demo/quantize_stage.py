"""The demo's quantization stage: the pruned student distilled again while it trains quantization-aware.

Example:
    >>> from tfopt.demo.quantize_stage import quantize  # doctest: +SKIP
    >>> qat, accuracy = quantize(split, teacher, pruned, epochs=3, log=print)  # doctest: +SKIP
    >>> flatbuffer = tfopt.export.to_tflite(qat, "int8")  # doctest: +SKIP
"""

import keras

import tfopt
from tfopt.demo.data import batches
from tfopt.demo.prune_stage import distiller_for

LEARNING_RATE = 1e-4  # measured: 3e-4 and 1e-3 cost 0.3-1 point of the float accuracy


def quantize(split, teacher, pruned, epochs, log):
    """Fine-tunes a fake-quantized copy of the stripped, pruned student (BatchNorm folded, its zeros kept) from the
    teacher's soft targets and the labels for `epochs` at a low learning rate; returns the QAT model, ready for an
    int8 export, and its test accuracy."""
    qat = tfopt.quantize.quantize_model(pruned, scheme="int8", preserve_sparsity=True)
    distiller = distiller_for(teacher, qat, keras.optimizers.Adam(LEARNING_RATE))
    distiller.fit(batches(split.x_train, split.y_train, True), epochs=epochs, verbose=0, shuffle=False)
    accuracy = float(keras.ops.mean(keras.ops.argmax(qat.predict(split.x_test, verbose=0), -1) == split.y_test))
    log(f"Quantization-aware training, distilled: {epochs} epochs with Adam({LEARNING_RATE:.0e}), sparsity kept; "
        f"test accuracy {accuracy:.4f}")
    return qat, accuracy
