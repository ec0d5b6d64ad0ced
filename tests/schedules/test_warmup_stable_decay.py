import re

import keras
import numpy as np
import pytest

from tfopt.schedules import WarmupStableDecay

STEPS = 1000


def reference(steps, peak_lr, warmup_steps, stable_steps, decay_steps, decay="linear", final_lr=0.0):
    """The WSD rule in float64."""
    rates = []
    for step in range(steps):
        if step < warmup_steps:
            rates.append(peak_lr * step / warmup_steps)
        elif step < warmup_steps + stable_steps:
            rates.append(peak_lr)
        else:
            t = min(step - warmup_steps - stable_steps, decay_steps)
            if decay == "linear":
                fraction = 1 - t / decay_steps
            elif decay == "cosine":
                fraction = 0.5 * (1 + np.cos(np.pi * t / decay_steps))
            else:
                fraction = 1 - np.sqrt(t / decay_steps)
            rates.append(final_lr + (peak_lr - final_lr) * fraction)
    return np.array(rates)


@pytest.mark.parametrize(
    "arguments",
    [
        dict(peak_lr=1e-3, warmup_steps=100, stable_steps=500, decay_steps=300),
        dict(peak_lr=3e-4, warmup_steps=50, stable_steps=600, decay_steps=250, decay="cosine", final_lr=1e-6),
        dict(peak_lr=2e-2, warmup_steps=30, stable_steps=370, decay_steps=500, decay="1-sqrt"),
        dict(peak_lr=1e-3, warmup_steps=0, stable_steps=0, decay_steps=1500, decay="cosine"),
        dict(peak_lr=5e-3, warmup_steps=0, stable_steps=200, decay_steps=700, decay="1-sqrt", final_lr=5e-4),
    ],
)
def test_matches_the_reference(arguments):
    rates = np.asarray(WarmupStableDecay(**arguments)(np.arange(STEPS)))
    np.testing.assert_allclose(rates, reference(STEPS, **arguments), rtol=1e-6)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(peak_lr=-1.0), ValueError, "WarmupStableDecay: argument `peak_lr` must be > 0. Received: peak_lr=-1.0"),
        (dict(peak_lr=[1e-3]), TypeError,
         "WarmupStableDecay: argument `peak_lr` must be a number. Received: peak_lr=[0.001]"),
        (dict(warmup_steps=-1), ValueError,
         "WarmupStableDecay: argument `warmup_steps` must be >= 0. Received: warmup_steps=-1"),
        (dict(stable_steps=-5), ValueError,
         "WarmupStableDecay: argument `stable_steps` must be >= 0. Received: stable_steps=-5"),
        (dict(stable_steps=1.5), TypeError,
         "WarmupStableDecay: argument `stable_steps` must be an integer. Received: stable_steps=1.5"),
        (dict(decay_steps=0), ValueError,
         "WarmupStableDecay: argument `decay_steps` must be >= 1. Received: decay_steps=0"),
        (dict(decay="exponential"), ValueError, "WarmupStableDecay: argument `decay` must be one of 'linear', "
                                                "'cosine', '1-sqrt'. Received: decay='exponential'"),
        (dict(final_lr=-1e-5), ValueError,
         "WarmupStableDecay: argument `final_lr` must be >= 0. Received: final_lr=-1e-05"),
        (dict(final_lr=1e-3), ValueError, "WarmupStableDecay: argument `final_lr` must be smaller than `peak_lr`. "
                                          "Received: final_lr=0.001, peak_lr=0.001"),
    ],
)
def test_rejects(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        WarmupStableDecay(**{"peak_lr": 1e-3, "warmup_steps": 10, "stable_steps": 50, "decay_steps": 20, **arguments})


def test_config_round_trip():
    schedule = WarmupStableDecay(4e-4, warmup_steps=20, stable_steps=300, decay_steps=80, decay="1-sqrt",
                                 final_lr=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is WarmupStableDecay
    assert restored.get_config() == {
        "peak_lr": 4e-4, "warmup_steps": 20, "stable_steps": 300, "decay_steps": 80, "decay": "1-sqrt",
        "final_lr": 1e-5,
    }
    steps = np.arange(STEPS)
    np.testing.assert_array_equal(np.asarray(restored(steps)), np.asarray(schedule(steps)))
