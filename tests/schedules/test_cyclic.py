import math
import re

import keras
import numpy as np
import pytest

from tfopt.schedules import Cyclic

STEPS = 1000


def reference(steps, base_lr, max_lr, step_size, mode="triangular", gamma=1.0):
    """PyTorch CyclicLR's rule in float64, with step_size_up == step_size_down == step_size."""
    rates = []
    for step in steps:
        cycle = math.floor(1 + step / (2 * step_size))
        x = 1 + step / (2 * step_size) - cycle
        scale = x / 0.5 if x <= 0.5 else (x - 1) / (0.5 - 1)
        height = (max_lr - base_lr) * scale
        if mode == "triangular":
            rates.append(base_lr + height)
        elif mode == "triangular2":
            rates.append(base_lr + height / 2 ** (cycle - 1))
        else:
            rates.append(base_lr + height * gamma**step)
    return np.array(rates)


@pytest.mark.parametrize(
    "arguments",
    [
        dict(base_lr=1e-3, max_lr=1e-2, step_size=250),
        dict(base_lr=1e-5, max_lr=1e-1, step_size=7),
        dict(base_lr=2e-4, max_lr=3e-3, step_size=60, mode="triangular2"),
        dict(base_lr=1e-4, max_lr=1e-2, step_size=45, mode="exp_range", gamma=0.998),
        dict(base_lr=0.0, max_lr=0.1, step_size=100, mode="exp_range", gamma=0.9995),
    ],
)
def test_matches_the_reference(arguments):
    rates = np.asarray(Cyclic(**arguments)(np.arange(STEPS)))
    np.testing.assert_allclose(rates, reference(range(STEPS), **arguments), rtol=1e-6)


def test_keeps_its_accuracy_after_many_cycles():
    steps = np.arange(1_000_000, 1_000_000 + STEPS)
    rates = np.asarray(Cyclic(1e-6, 1e-1, step_size=13)(steps))
    np.testing.assert_allclose(rates, reference(steps, 1e-6, 1e-1, 13), rtol=1e-6)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(base_lr=-1e-3), ValueError, "Cyclic: argument `base_lr` must be >= 0. Received: base_lr=-0.001"),
        (dict(max_lr=None), TypeError, "Cyclic: argument `max_lr` must be a number. Received: max_lr=None"),
        (dict(base_lr=0.1, max_lr=0.01), ValueError,
         "Cyclic: argument `base_lr` must be smaller than `max_lr`. Received: base_lr=0.1, max_lr=0.01"),
        (dict(step_size=0), ValueError, "Cyclic: argument `step_size` must be >= 1. Received: step_size=0"),
        (dict(step_size=2.5), TypeError, "Cyclic: argument `step_size` must be an integer. Received: step_size=2.5"),
        (dict(mode="exp"), ValueError, "Cyclic: argument `mode` must be one of 'triangular', 'triangular2', "
                                       "'exp_range'. Received: mode='exp'"),
        (dict(gamma=0), ValueError, "Cyclic: argument `gamma` must be in (0, 1]. Received: gamma=0.0"),
        (dict(gamma=1.5), ValueError, "Cyclic: argument `gamma` must be in (0, 1]. Received: gamma=1.5"),
    ],
)
def test_rejects(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        Cyclic(**{"base_lr": 1e-3, "max_lr": 1e-2, "step_size": 100, **arguments})


def test_config_round_trip():
    schedule = Cyclic(base_lr=2e-4, max_lr=5e-3, step_size=40, mode="exp_range", gamma=0.99)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is Cyclic
    assert restored.get_config() == {
        "base_lr": 2e-4, "max_lr": 5e-3, "step_size": 40, "mode": "exp_range", "gamma": 0.99
    }
    steps = np.arange(STEPS)
    np.testing.assert_array_equal(np.asarray(restored(steps)), np.asarray(schedule(steps)))
