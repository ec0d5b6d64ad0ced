"""Pruning schedules against a NumPy reference of tfmot's formulas, their configs, and one test per error."""

import keras
import numpy as np
import pytest

from tfopt.prune import ConstantSparsity, PolynomialDecay


def reference_should_update(step, begin_step, end_step, frequency):
    """tfmot's `_should_prune_in_step`."""
    in_range = begin_step <= step and (step <= end_step or end_step == -1)
    return in_range and (step - begin_step) % frequency == 0


def reference_polynomial(step, initial, final, begin_step, end_step, power):
    """tfmot's PolynomialDecay sparsity, in float32 as tfmot computes it."""
    progress = np.clip(np.float32(step - begin_step) / np.float32(end_step - begin_step), 0, 1)
    return np.float32(final) + np.float32(initial - final) * (np.float32(1) - progress) ** np.float32(power)


STEPS = range(0, 70)


def test_constant_sparsity_updates_every_frequency_steps_from_begin_step_until_end_step():
    for end_step in (40, -1):
        schedule = ConstantSparsity(0.6, begin_step=10, end_step=end_step, frequency=7)
        for step in STEPS:
            assert bool(schedule.should_update(step)) == reference_should_update(step, 10, end_step, 7), step
            assert float(schedule.sparsity(step)) == np.float32(0.6)
    updates = [step for step in STEPS if schedule.should_update(step)]
    assert updates == [10, 17, 24, 31, 38, 45, 52, 59, 66]  # end_step=-1: never stops


def test_polynomial_decay_follows_zhu_and_gupta():
    args = dict(initial=0.1, final=0.9, begin_step=5, end_step=53, power=2.5)
    schedule = PolynomialDecay(**args, frequency=4)
    for step in STEPS:
        np.testing.assert_allclose(float(schedule.sparsity(step)), reference_polynomial(step, **args), rtol=1e-6)
        assert bool(schedule.should_update(step)) == reference_should_update(step, 5, 53, 4), step
    assert [step for step in STEPS if schedule.should_update(step)][-2:] == [49, 53]
    assert float(schedule.sparsity(0)) == pytest.approx(0.1) and float(schedule.sparsity(60)) == pytest.approx(0.9)


def test_tensor_steps_as_the_training_step_passes_them():
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, frequency=10)
    steps = keras.ops.convert_to_tensor(np.arange(0, 120, 5), "int64")
    expected = [reference_polynomial(step, 0.0, 0.8, 0, 100, 3) for step in range(0, 120, 5)]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(schedule.sparsity(steps)), expected, rtol=1e-6)
    updates = keras.ops.convert_to_numpy(schedule.should_update(steps))
    np.testing.assert_array_equal(updates, [reference_should_update(s, 0, 100, 10) for s in range(0, 120, 5)])


@pytest.mark.parametrize(
    "schedule",
    [
        ConstantSparsity(0.7, begin_step=3, end_step=90, frequency=9),
        PolynomialDecay(0.2, 0.85, begin_step=4, end_step=80, power=2, frequency=6),
    ],
    ids=["ConstantSparsity", "PolynomialDecay"],
)
def test_config_round_trip(schedule):
    config = schedule.get_config()
    assert type(schedule).from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is type(schedule) and restored.get_config() == config
    for name, value in config.items():  # the tfmot adapter reads these attributes
        assert getattr(schedule, name) == value


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ConstantSparsity(1.0, 0), "argument `target` must be in [0, 1). Received: target=1.0"),
        (lambda: ConstantSparsity(0.5, -1), "argument `begin_step` must be >= 0. Received: begin_step=-1"),
        (lambda: ConstantSparsity(0.5, 0, end_step=-2), "argument `end_step` must be >= -1. Received: end_step=-2"),
        (
            lambda: ConstantSparsity(0.5, 10, end_step=10),
            "ConstantSparsity: argument `begin_step` must be smaller than `end_step`. "
            "Received: begin_step=10, end_step=10",
        ),
        (lambda: ConstantSparsity(0.5, 0, frequency=0), "argument `frequency` must be >= 1. Received: frequency=0"),
        (
            lambda: PolynomialDecay(0.0, 0.8, 0, -1),
            "PolynomialDecay: argument `begin_step` must be smaller than `end_step`. "
            "Received: begin_step=0, end_step=-1",
        ),
        (lambda: PolynomialDecay(-0.1, 0.8, 0, 10), "argument `initial` must be in [0, 1). Received: initial=-0.1"),
        (lambda: PolynomialDecay(0.0, 1.0, 0, 10), "argument `final` must be in [0, 1). Received: final=1.0"),
        (lambda: PolynomialDecay(0.0, 0.8, 0, 10, power=0), "argument `power` must be > 0. Received: power=0.0"),
    ],
)
def test_errors(make, message):
    with pytest.raises(ValueError) as raised:
        make()
    assert message in str(raised.value)


def test_steps_must_be_integers():
    with pytest.raises(TypeError, match="argument `begin_step` must be an integer. Received: begin_step=1.5"):
        ConstantSparsity(0.5, 1.5)
