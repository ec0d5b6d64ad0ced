"""What a model costs on disk once exported: its TFLite file, raw and gzipped.

Example:
    >>> from tfopt.demo.model import digits_cnn
    >>> from tfopt.demo.sizes import tflite_sizes
    >>> raw, gzipped = tflite_sizes(digits_cnn())  # doctest: +SKIP
"""

import contextlib
import gzip
import io

import tensorflow as tf


def tflite_sizes(model):
    """(bytes, gzipped bytes) of `model` converted to a float32 TFLite flatbuffer.

    Gzip shows what sparsity saves: zeros compress, while the flatbuffer itself stores them densely.
    """
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints the exported signatures
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return len(flatbuffer), len(gzip.compress(flatbuffer, compresslevel=9))
