"""`scheme_of` and `unlearned_ranges`: what export reads of a QAT model, through the public API."""

import keras
import numpy as np

import tfopt


def dense_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])


def test_scheme_of_a_float_model_is_none_and_of_a_qat_model_its_scheme():
    assert tfopt.quantize.scheme_of(dense_model()) is None
    for scheme in ("int8", "16x8"):
        assert tfopt.quantize.scheme_of(tfopt.quantize.quantize_model(dense_model(), scheme)) == scheme


def test_scheme_of_looks_into_nested_models():
    quantized = tfopt.quantize.quantize_model(dense_model(), "16x8")
    outer = keras.Sequential([keras.Input((3,)), quantized])
    assert tfopt.quantize.scheme_of(outer) == "16x8"


def test_unlearned_ranges_lists_every_quantizer_until_a_training_batch():
    quantized = tfopt.quantize.quantize_model(dense_model())
    names = tfopt.quantize.unlearned_ranges(quantized)
    assert len(names) == 3 and all("quantize" in name for name in names)  # input, two layer outputs
    quantized.compile("adam", "mse")
    quantized.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    assert tfopt.quantize.unlearned_ranges(quantized) == []
    assert tfopt.quantize.unlearned_ranges(dense_model()) == []
