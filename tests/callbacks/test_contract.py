"""Behaviour every tfopt callback shares: a `copy.deepcopy` of it (KerasTuner copies callbacks before each trial),
taken before or after a fit, trains exactly as a new one does; and it drives a mixed-precision (`LossScaleOptimizer`)
model compiled with XLA as it drives the float32 model run eagerly (where every value is read when it is used)."""

import copy
import functools

import keras
import numpy as np
import pytest

import tfopt

CALLBACKS = {
    "LRScheduler": lambda: tfopt.callbacks.LRScheduler(tfopt.schedules.OneCycle(0.05, 12)),
    "OneCyclePolicy": lambda: tfopt.callbacks.OneCyclePolicy(0.05, 12),
    "ReduceLROnPlateau": lambda: tfopt.callbacks.ReduceLROnPlateau(monitor="loss", patience=1, min_delta=100.0),
    "LRFinder": lambda: tfopt.callbacks.LRFinder(num_steps=12, end_lr=0.1),
    "SWA": lambda: tfopt.callbacks.SWA(start_epoch=1, swa_lr=0.005),
}
RATE = 0.01


@pytest.fixture(params=list(CALLBACKS), ids=list(CALLBACKS))
def make_callback(request):
    return CALLBACKS[request.param]


def _model(mixed_precision=False):
    keras.utils.set_random_seed(0)  # the same initial weights in every run
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1, dtype="float32")])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    optimizer = keras.optimizers.SGD(RATE, momentum=0.9)
    if mixed_precision:  # a scale at which no float16 gradient overflows, so no step is skipped
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=64.0)
    model.compile(optimizer, "mse", jit_compile=mixed_precision, run_eagerly=not mixed_precision)
    return model


def _train(model, callbacks, data, rate_probe):
    """Fits 3 epochs of 4 batches; returns the learning rate of each batch and the final weights."""
    probe = rate_probe()
    model.fit(*data, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[*callbacks, probe])
    return np.array(probe.values), model.get_weights()


def _assert_same_training(actual, expected):
    np.testing.assert_array_equal(actual[0], expected[0])
    for weight, expected_weight in zip(actual[1], expected[1]):
        np.testing.assert_allclose(weight, expected_weight, rtol=1e-6, atol=1e-7)


def test_a_deep_copy_before_or_after_fit_trains_as_a_new_callback(make_callback, regression_data, rate_probe):
    expected = _train(_model(), [make_callback()], regression_data, rate_probe)
    assert not np.allclose(expected[0], RATE, rtol=1e-6)  # the callback does act on the learning rate
    callback = make_callback()
    _assert_same_training(_train(_model(), [copy.deepcopy(callback)], regression_data, rate_probe), expected)
    _train(_model(), [callback], regression_data, rate_probe)
    _assert_same_training(_train(_model(), [copy.deepcopy(callback)], regression_data, rate_probe), expected)


@functools.cache
def _untouched_weights():
    """The float32 model's weights after the same fit without a callback (computed once)."""
    rng = np.random.default_rng(0)  # the `regression_data` fixture's data
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * rng.normal(size=(64, 1))).astype("float32")
    model = _model()
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    return model.get_weights()


def test_mixed_precision_under_jit_trains_as_float32(make_callback, regression_data, rate_probe):
    mixed = _model(mixed_precision=True)
    rates, weights = _train(mixed, [make_callback()], regression_data, rate_probe)
    assert mixed.layers[0].compute_dtype == "float16" and mixed.jit_compile
    expected_rates, expected_weights = _train(_model(), [make_callback()], regression_data, rate_probe)
    np.testing.assert_allclose(rates, expected_rates, rtol=1e-6)
    for weight, expected in zip(weights, expected_weights):
        np.testing.assert_allclose(weight, expected, rtol=2e-3, atol=2e-3)  # float16 rounding
    # Measured: mixed precision is 2e-4 to 1.3e-3 from float32, the callbacks move the weights by 0.35 to 1.4 (LRFinder
    # puts them back), so a rate or momentum that did not reach the compiled step would show.
    effect = max(np.max(np.abs(u - e)) for u, e in zip(_untouched_weights(), expected_weights))
    assert effect == 0 or effect > 0.1


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: tfopt.callbacks.LRScheduler(lambda step: 0.1, verbose=True), TypeError,
         "LRScheduler: argument `verbose` must be an integer. Received: verbose=True"),
        (lambda: tfopt.callbacks.OneCyclePolicy(0.1, 10, verbose=-1), ValueError,
         "OneCyclePolicy: argument `verbose` must be >= 0. Received: verbose=-1"),
        (lambda: tfopt.callbacks.ReduceLROnPlateau(verbose=0.5), TypeError,
         "ReduceLROnPlateau: argument `verbose` must be an integer. Received: verbose=0.5"),
        (lambda: tfopt.callbacks.ReduceLROnPlateau(monitor=["loss"]), TypeError,
         "ReduceLROnPlateau: argument `monitor` must be the name of a logged quantity (a string). "
         "Received: monitor=['loss']"),
    ],
    ids=["LRScheduler_verbose", "OneCyclePolicy_verbose", "ReduceLROnPlateau_verbose", "ReduceLROnPlateau_monitor"],
)
def test_learning_rate_callbacks_name_a_bad_verbose_or_monitor(make, error, message):
    with pytest.raises(error) as raised:
        make()
    assert str(raised.value) == message
