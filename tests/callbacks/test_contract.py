"""Behaviour every tfopt callback shares: it survives `copy.deepcopy` (KerasTuner copies callbacks before each
trial), before and after a fit, and it drives a mixed-precision (`LossScaleOptimizer`) model under `jit_compile`."""

import copy

import keras
import numpy as np
import pytest

import tfopt

CALLBACKS = {
    "LRScheduler": lambda: tfopt.callbacks.LRScheduler(tfopt.schedules.OneCycle(0.05, 12)),
    "OneCyclePolicy": lambda: tfopt.callbacks.OneCyclePolicy(0.05, 12),
    "ReduceLROnPlateau": lambda: tfopt.callbacks.ReduceLROnPlateau(monitor="loss", patience=1, min_delta=10.0),
    "LRFinder": lambda: tfopt.callbacks.LRFinder(num_steps=12),
    "SWA": lambda: tfopt.callbacks.SWA(start_epoch=1, swa_lr=0.005),
}


@pytest.fixture(params=list(CALLBACKS), ids=list(CALLBACKS))
def make_callback(request):
    return CALLBACKS[request.param]


def _mixed_precision_model():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1, dtype="float32")])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01, momentum=0.9))
    model.compile(optimizer, "mse", jit_compile=True)
    return model


def test_deepcopy_before_and_after_fit(make_callback, linear_model, regression_data):
    x, y = regression_data
    callback = make_callback()
    model = linear_model(keras.optimizers.SGD(0.01, momentum=0.9))
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[copy.deepcopy(callback)])
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[callback])
    again = copy.deepcopy(callback)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[again])
    assert np.isfinite(history.history["loss"]).all()


def test_mixed_precision_under_jit(make_callback, regression_data):
    x, y = regression_data
    model = _mixed_precision_model()
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[make_callback()])
    assert model.layers[0].compute_dtype == "float16"
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(w).all() for w in model.get_weights())
