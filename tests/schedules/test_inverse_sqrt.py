import re

import keras
import numpy as np
import pytest

from tfopt.schedules import InverseSqrt

STEPS = 1000


def reference(steps, peak_lr, warmup_steps):
    """Vaswani et al.'s rule, scaled so that the peak is peak_lr, in float64."""
    rates = []
    for step in range(steps):
        if step == 0:
            rates.append(0.0)
        else:
            rates.append(peak_lr * min(step / warmup_steps, np.sqrt(warmup_steps / step)))
    return np.array(rates)


@pytest.mark.parametrize(
    "arguments",
    [dict(peak_lr=1e-3, warmup_steps=1), dict(peak_lr=7e-4, warmup_steps=100), dict(peak_lr=2.0, warmup_steps=4000)],
)
def test_matches_the_reference(arguments):
    rates = np.asarray(InverseSqrt(**arguments)(np.arange(STEPS)))
    np.testing.assert_allclose(rates, reference(STEPS, **arguments), rtol=1e-6)


def test_peaks_at_the_end_of_the_warmup():
    rates = np.asarray(InverseSqrt(1e-3, warmup_steps=100)(np.arange(STEPS)))
    assert np.argmax(rates) == 100
    np.testing.assert_allclose(rates[100], 1e-3, rtol=1e-6)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(peak_lr=0), ValueError, "InverseSqrt: argument `peak_lr` must be > 0. Received: peak_lr=0.0"),
        (dict(peak_lr="1e-3"), TypeError, "InverseSqrt: argument `peak_lr` must be a number. Received: peak_lr='1e-3'"),
        (dict(warmup_steps=0), ValueError,
         "InverseSqrt: argument `warmup_steps` must be >= 1. Received: warmup_steps=0"),
        (dict(warmup_steps=True), TypeError,
         "InverseSqrt: argument `warmup_steps` must be an integer. Received: warmup_steps=True"),
    ],
)
def test_rejects(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        InverseSqrt(**{"peak_lr": 1e-3, "warmup_steps": 100, **arguments})


def test_config_round_trip():
    schedule = InverseSqrt(peak_lr=5e-4, warmup_steps=250)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is InverseSqrt
    assert restored.get_config() == {"peak_lr": 5e-4, "warmup_steps": 250}
    steps = np.arange(STEPS)
    np.testing.assert_array_equal(np.asarray(restored(steps)), np.asarray(schedule(steps)))
