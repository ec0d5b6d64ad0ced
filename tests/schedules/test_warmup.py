import math
import re

import keras
import numpy as np
import pytest

from tfopt.schedules import Cyclic, OneCycle, WarmUp

STEPS = 1000


def reference(steps, after, warmup_steps, start=0.0, curve="linear"):
    """The warm-up rule in float64; `after` is a float or a float64 function of the step."""
    target = after(0) if callable(after) else after
    rates = []
    for step in range(steps):
        if step < warmup_steps:
            pct = step / warmup_steps
            if curve == "linear":
                rates.append(start + (target - start) * pct)
            else:
                rates.append(start + (target - start) * (1 - np.cos(np.pi * pct)) / 2)
        else:
            rates.append(after(step - warmup_steps) if callable(after) else after)
    return np.array(rates)


def cosine_decay(initial_learning_rate, decay_steps, alpha):
    """Keras's CosineDecay rule (without its own warm-up) in float64."""

    def rate(step):
        step = min(step, decay_steps)
        return initial_learning_rate * ((1 - alpha) * 0.5 * (1 + np.cos(np.pi * step / decay_steps)) + alpha)

    return rate


def triangular(base_lr, max_lr, step_size):
    """Smith's triangular cycle, as written in the CLR paper, in float64."""

    def rate(step):
        cycle = math.floor(1 + step / (2 * step_size))
        x = abs(step / step_size - 2 * cycle + 1)
        return base_lr + (max_lr - base_lr) * max(0.0, 1 - x)

    return rate


@pytest.mark.parametrize(
    "schedule, expected",
    [
        (WarmUp(1e-2, warmup_steps=100), reference(STEPS, 1e-2, 100)),
        (WarmUp(3e-4, warmup_steps=333, start=1e-5, curve="cosine"), reference(STEPS, 3e-4, 333, 1e-5, "cosine")),
        (
            WarmUp(keras.optimizers.schedules.CosineDecay(1e-2, 700, alpha=0.2), 100, start=1e-4, curve="cosine"),
            reference(STEPS, cosine_decay(1e-2, 700, 0.2), 100, 1e-4, "cosine"),
        ),
        (WarmUp(Cyclic(1e-3, 1e-2, step_size=150), 50), reference(STEPS, triangular(1e-3, 1e-2, 150), 50)),
        (WarmUp(Cyclic(1e-3, 1e-2, step_size=150), 1, start=2e-2), reference(STEPS, triangular(1e-3, 1e-2, 150), 1,
                                                                             2e-2)),
    ],
    ids=["float", "float-cosine", "keras-CosineDecay", "tfopt-Cyclic", "one-step-down"],
)
def test_matches_the_reference(schedule, expected):
    np.testing.assert_allclose(np.asarray(schedule(np.arange(STEPS))), expected, rtol=1e-6)


def test_accepts_python_and_tensor_steps():
    schedule = WarmUp(keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5), warmup_steps=4)
    assert float(schedule(2)) == pytest.approx(5e-3, rel=1e-6)
    assert float(schedule(keras.ops.convert_to_tensor(14, "int64"))) == pytest.approx(5e-3, rel=1e-6)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(after="fast"), TypeError,
         "WarmUp: argument `after` must be a number or a LearningRateSchedule. Received: after='fast'"),
        (dict(after=0.0), ValueError, "WarmUp: argument `after` must be > 0. Received: after=0.0"),
        (dict(warmup_steps=0), ValueError, "WarmUp: argument `warmup_steps` must be >= 1. Received: warmup_steps=0"),
        (dict(warmup_steps=10.0), TypeError,
         "WarmUp: argument `warmup_steps` must be an integer. Received: warmup_steps=10.0"),
        (dict(start=-1e-3), ValueError, "WarmUp: argument `start` must be >= 0. Received: start=-0.001"),
        (dict(curve="cos"), ValueError,
         "WarmUp: argument `curve` must be one of 'linear', 'cosine'. Received: curve='cos'"),
    ],
)
def test_rejects(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        WarmUp(**{"after": 1e-3, "warmup_steps": 10, **arguments})


@pytest.mark.parametrize(
    "after",
    [
        2e-3,
        keras.optimizers.schedules.CosineDecay(1e-2, 500, alpha=0.1),
        OneCycle(1e-2, 500, pct_start=0.2, anneal="linear"),
    ],
    ids=["float", "keras-CosineDecay", "tfopt-OneCycle"],
)
def test_config_round_trip(after):
    schedule = WarmUp(after, warmup_steps=40, start=1e-5, curve="cosine")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is WarmUp
    assert type(restored.after) is type(after)
    assert restored.get_config() == schedule.get_config()
    assert {key: value for key, value in restored.get_config().items() if key != "after"} == {
        "warmup_steps": 40, "start": 1e-5, "curve": "cosine"
    }
    steps = np.arange(STEPS)
    np.testing.assert_array_equal(np.asarray(restored(steps)), np.asarray(schedule(steps)))
