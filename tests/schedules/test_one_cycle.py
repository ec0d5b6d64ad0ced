import re

import keras
import numpy as np
import pytest

from tfopt.schedules import OneCycle, OneCycleMomentum

STEPS = 1000


def anneal_reference(steps, phases, total_steps, anneal):
    """PyTorch OneCycleLR's rule in float64: `phases` is a list of (end step, start value, end value)."""
    values = []
    for step in range(steps):
        step = min(step, total_steps - 1)
        phase_start = 0.0
        for index, phase in enumerate(phases):
            if step <= phase[0] or index == len(phases) - 1:
                break
            phase_start = phase[0]
        phase_end, start, end = phase
        pct = (step - phase_start) / (phase_end - phase_start)
        if anneal == "cos":
            values.append(end + (start - end) / 2 * (np.cos(np.pi * pct) + 1))
        else:
            values.append(start + (end - start) * pct)
    return np.array(values)


def lr_reference(steps, max_lr, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4, anneal="cos",
                 three_phase=False):
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    phases = [(pct_start * total_steps - 1, initial_lr, max_lr), (total_steps - 1, max_lr, min_lr)]
    if three_phase:
        phases = [
            (pct_start * total_steps - 1, initial_lr, max_lr),
            (2 * pct_start * total_steps - 2, max_lr, initial_lr),
            (total_steps - 1, initial_lr, min_lr),
        ]
    return anneal_reference(steps, phases, total_steps, anneal)


def momentum_reference(steps, total_steps, base_momentum=0.85, max_momentum=0.95, pct_start=0.3, anneal="cos",
                       three_phase=False):
    phases = [
        (pct_start * total_steps - 1, max_momentum, base_momentum),
        (total_steps - 1, base_momentum, max_momentum),
    ]
    if three_phase:
        phases = [
            (pct_start * total_steps - 1, max_momentum, base_momentum),
            (2 * pct_start * total_steps - 2, base_momentum, max_momentum),
            (total_steps - 1, max_momentum, max_momentum),
        ]
    return anneal_reference(steps, phases, total_steps, anneal)


ARGUMENT_SETS = [
    dict(max_lr=1e-2, total_steps=1000),
    dict(max_lr=0.3, total_steps=1000, pct_start=0.25, div_factor=10.0, final_div_factor=100.0, anneal="linear"),
    dict(max_lr=1e-3, total_steps=1000, pct_start=0.4, three_phase=True),
    dict(max_lr=2e-2, total_steps=997, pct_start=0.33, final_div_factor=1e5, anneal="linear", three_phase=True),
    dict(max_lr=5e-3, total_steps=613, pct_start=0.17, div_factor=7.0),  # phase ends off the float32 grid
]


@pytest.mark.parametrize("arguments", ARGUMENT_SETS)
def test_rate_matches_the_reference(arguments):
    rates = np.asarray(OneCycle(**arguments)(np.arange(STEPS)))
    np.testing.assert_allclose(rates, lr_reference(STEPS, **arguments), rtol=1e-6)


@pytest.mark.parametrize("arguments", ARGUMENT_SETS)
def test_momentum_matches_the_reference(arguments):
    shape = {key: value for key, value in arguments.items() if key in ("pct_start", "anneal", "three_phase")}
    momentum = OneCycle(**arguments).momentum(base_momentum=0.8, max_momentum=0.97)
    expected = momentum_reference(STEPS, arguments["total_steps"], 0.8, 0.97, **shape)
    np.testing.assert_allclose(np.asarray(momentum(np.arange(STEPS))), expected, rtol=1e-6)


def test_rate_holds_its_final_value_after_the_cycle():
    schedule = OneCycle(1e-2, total_steps=100)
    rates = np.asarray(schedule(np.arange(99, 200)))
    np.testing.assert_allclose(rates, 1e-2 / 25 / 1e4, rtol=1e-6)


def test_momentum_method_carries_the_cycle_shape():
    schedule = OneCycle(1e-2, 500, pct_start=0.2, anneal="linear", three_phase=True)
    assert schedule.momentum(0.8, 0.9).get_config() == {
        "total_steps": 500,
        "base_momentum": 0.8,
        "max_momentum": 0.9,
        "pct_start": 0.2,
        "anneal": "linear",
        "three_phase": True,
    }


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(max_lr=0), ValueError, "OneCycle: argument `max_lr` must be > 0. Received: max_lr=0.0"),
        (dict(max_lr="0.1"), TypeError, "OneCycle: argument `max_lr` must be a number. Received: max_lr='0.1'"),
        (dict(total_steps=1), ValueError, "OneCycle: argument `total_steps` must be >= 2. Received: total_steps=1"),
        (dict(total_steps=100.0), TypeError, "OneCycle: argument `total_steps` must be an integer. Received: "
                                             "total_steps=100.0"),
        (dict(pct_start=1.5), ValueError, "OneCycle: argument `pct_start` must be in (0, 1). Received: pct_start=1.5"),
        (dict(pct_start=0.6, three_phase=True), ValueError,
         "OneCycle: argument `pct_start` must be in (0, 0.5]. Received: pct_start=0.6"),
        (dict(pct_start=0.005), ValueError, "OneCycle: argument `total_steps` must be > 1 / pct_start = 200 "
                                            "(pct_start=0.005: the warm-up, pct_start x total_steps, must last more "
                                            "than one step); it counts optimizer steps, epochs x steps_per_epoch, not "
                                            "epochs (or raise `pct_start`). Received: total_steps=100"),
        (dict(total_steps=3), ValueError, "OneCycle: argument `total_steps` must be > 1 / pct_start = 3.333 "
                                          "(pct_start=0.3: "),
        (dict(div_factor=0), ValueError, "OneCycle: argument `div_factor` must be > 0. Received: div_factor=0.0"),
        (dict(final_div_factor=-1), ValueError,
         "OneCycle: argument `final_div_factor` must be > 0. Received: final_div_factor=-1.0"),
        (dict(anneal="cosine"), ValueError,
         "OneCycle: argument `anneal` must be one of 'cos', 'linear'. Received: anneal='cosine'"),
        (dict(three_phase="yes"), TypeError,
         "OneCycle: argument `three_phase` must be True or False. Received: three_phase='yes'"),
        (dict(three_phase=1), TypeError,
         "OneCycle: argument `three_phase` must be True or False. Received: three_phase=1"),
    ],
)
def test_one_cycle_rejects(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        OneCycle(**{"max_lr": 1e-2, "total_steps": 100, **arguments})


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(base_momentum=1.0), "OneCycleMomentum: argument `base_momentum` must be in [0, 1). "
                                  "Received: base_momentum=1.0"),
        (dict(max_momentum=0.8), "OneCycleMomentum: argument `max_momentum` must be in [0.85, 1). "
                                 "Received: max_momentum=0.8"),
    ],
)
def test_one_cycle_momentum_rejects(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        OneCycleMomentum(**{"total_steps": 100, **arguments})


@pytest.mark.parametrize(
    "schedule",
    [
        OneCycle(3e-3, 500, pct_start=0.2, div_factor=10.0, final_div_factor=100.0, anneal="linear", three_phase=True),
        OneCycleMomentum(500, base_momentum=0.8, max_momentum=0.9, pct_start=0.2, anneal="linear", three_phase=True),
    ],
    ids=["OneCycle", "OneCycleMomentum"],
)
def test_config_round_trip(schedule):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    steps = np.arange(STEPS)
    np.testing.assert_array_equal(np.asarray(restored(steps)), np.asarray(schedule(steps)))
