"""What a model says about its quantization-aware training: its scheme, and whether its ranges were learned."""

import numpy as np

from tfopt import _compat, _surgery
from tfopt.quantize.quantizers import QuantizationAware, QuantizeActivation


def scheme_of(model):
    """"int8" or "16x8" for a quantization-aware model, None for any other (a float model).

    A Keras 3 model from `tfopt.quantize.quantize_model` has the scheme it was made with; a tf_keras model quantized
    by tfmot (layers whose class names start with "Quantize", such as `QuantizeWrapperV2`) is "int8".

    Args:
        model: a Keras 3 or tf_keras model.

    Example:
    >>> import keras, tfopt
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> tfopt.quantize.scheme_of(model), tfopt.quantize.scheme_of(tfopt.quantize.quantize_model(model, "16x8"))
    (None, '16x8')
    """
    for layer in _surgery.layers(model, containers=True):
        if isinstance(layer, QuantizationAware):
            return layer.scheme
        if _compat.is_legacy(layer) and type(layer).__name__.startswith("Quantize"):
            return "int8"
    return None


def unlearned_ranges(model):
    """The names of a Keras 3 QAT model's activation quantizers that have not seen a training batch yet (their
    range is still [0, 0]); empty once `fit` ran a step, and for any other model.

    Example:
    >>> import keras, tfopt
    >>> quantized = tfopt.quantize.quantize_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    >>> len(tfopt.quantize.unlearned_ranges(quantized))
    2
    """
    quantizers = [layer for layer in _surgery.layers(model, sublayers=True) if isinstance(layer, QuantizeActivation)]
    return [quantizer.path if hasattr(quantizer, "path") else quantizer.name for quantizer in quantizers
            if not quantizer.built or np.asarray(quantizer.batches_seen) == 0]
