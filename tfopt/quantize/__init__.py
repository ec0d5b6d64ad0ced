"""Quantization-aware training (QAT): Keras 3 models by tfopt, tf_keras models through tfmot.

Example:
    >>> import keras, tfopt
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> quantized = tfopt.quantize.quantize_model(model, scheme="int8")
"""

from tfopt.quantize.attention import QuantizeEinsumDense, QuantizeMultiHeadAttention
from tfopt.quantize.introspect import scheme_of, unlearned_ranges
from tfopt.quantize.layers import QuantizeConvolution, QuantizeOutputs
from tfopt.quantize.normalization import QuantizeAffine, QuantizeEmbedding, QuantizeLayerNormalization
from tfopt.quantize.quantize import quantize_model
from tfopt.quantize.quantizers import QuantizeActivation, fake_quant_weights
from tfopt.quantize.schemes import SCHEMES

__all__ = ["SCHEMES", "QuantizeActivation", "QuantizeAffine", "QuantizeConvolution", "QuantizeEinsumDense",
           "QuantizeEmbedding", "QuantizeLayerNormalization", "QuantizeMultiHeadAttention", "QuantizeOutputs",
           "fake_quant_weights", "quantize_model", "scheme_of", "unlearned_ranges"]
