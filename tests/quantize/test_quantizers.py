"""fake_quant_weights and QuantizeActivation against NumPy references of the quantization rules."""

import keras
import numpy as np
import pytest
from references import numpy_asymmetric, numpy_symmetric

from tfopt.quantize import QuantizeActivation, fake_quant_weights


@pytest.mark.parametrize("axis", [None, -1, 2])
def test_weights_round_to_symmetric_levels_per_channel(axis):
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype("float32")
    got = np.asarray(fake_quant_weights(kernel, axis))
    np.testing.assert_allclose(got, numpy_symmetric(kernel.astype("float64"), axis), rtol=1e-5, atol=1e-6)


def test_weights_keep_exact_zeros_and_all_zero_channels():
    kernel = np.zeros((2, 3), "float32")
    kernel[0, 0] = 0.5
    np.testing.assert_array_equal(np.asarray(fake_quant_weights(kernel, -1)), kernel)


def test_activation_range_follows_a_moving_average_that_starts_at_the_first_batch():
    rng = np.random.default_rng(1)
    batches = [rng.normal(loc=1.0, size=(4, 3)).astype("float32") * (i + 1) for i in range(5)]
    quantizer = QuantizeActivation(decay=0.9)
    low = high = None
    for batch in batches:
        got = np.asarray(quantizer(batch, training=True))
        batch_low, batch_high = min(batch.min(), 0.0), max(batch.max(), 0.0)
        low = batch_low if low is None else 0.9 * low + 0.1 * batch_low
        high = batch_high if high is None else 0.9 * high + 0.1 * batch_high
        np.testing.assert_allclose(got, numpy_asymmetric(batch, low, high), atol=2e-5)
    np.testing.assert_allclose([quantizer.min_value.numpy(), quantizer.max_value.numpy()], [low, high], rtol=1e-6)


def test_inference_leaves_the_range_alone():
    quantizer = QuantizeActivation()
    quantizer(np.array([[-1.0, 2.0]], "float32"), training=True)
    quantizer(np.array([[-50.0, 80.0]], "float32"))
    assert (quantizer.min_value.numpy(), quantizer.max_value.numpy()) == (-1.0, 2.0)
    assert quantizer.batches_seen.numpy() == 1


def test_16x8_activations_use_a_symmetric_int16_range():
    quantizer = QuantizeActivation(scheme="16x8")
    x = np.array([[-0.5, 0.1234567, 2.0]], "float32")
    got = np.asarray(quantizer(x, training=True))
    step = 2.0 / 32767
    np.testing.assert_allclose(got, np.round(x / step) * step, atol=1e-7)


def test_config_round_trip_and_error():
    quantizer = QuantizeActivation(scheme="16x8", decay=0.95, name="q")
    clone = QuantizeActivation.from_config(quantizer.get_config())
    assert (clone.scheme, clone.decay, clone.name) == ("16x8", 0.95, "q")
    with pytest.raises(ValueError, match=r"QuantizeActivation: argument `scheme` must be one of 'int8', '16x8'"):
        QuantizeActivation(scheme="int4")
    assert isinstance(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(quantizer)),
                      QuantizeActivation)


@pytest.mark.parametrize("decay, error, message", [
    (1.0, ValueError, r"QuantizeActivation: argument `decay` must be in \[0, 1\). Received: decay=1.0"),
    (-0.1, ValueError, r"QuantizeActivation: argument `decay` must be in \[0, 1\). Received: decay=-0.1"),
    ("0.9", TypeError, r"QuantizeActivation: argument `decay` must be a number. Received: decay='0.9'"),
])
def test_decay_is_checked(decay, error, message):
    with pytest.raises(error, match=message):
        QuantizeActivation(decay=decay)


@pytest.mark.parametrize("bits, error, message", [
    (1, ValueError, r"fake_quant_weights: argument `bits` must be in \[2, 16\]. Received: bits=1"),
    (17, ValueError, r"fake_quant_weights: argument `bits` must be in \[2, 16\]. Received: bits=17"),
    (8.0, TypeError, r"fake_quant_weights: argument `bits` must be an integer. Received: bits=8.0"),
])
def test_bits_are_checked(bits, error, message):
    with pytest.raises(error, match=message):
        fake_quant_weights(np.ones((2, 2), "float32"), bits=bits)
