"""Behaviour every tfopt schedule shares: it drives a Keras 3 optimizer in `fit`, also compiled with XLA and under
`MirroredStrategy`, survives a `.keras` round trip, and broadcasts over a 1-D tensor of steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.schedules import Cyclic, InverseSqrt, OneCycle, OneCycleMomentum, WarmUp, WarmupStableDecay

SCHEDULES = {
    "WarmUp": lambda: WarmUp(OneCycle(1e-2, 40, anneal="linear"), warmup_steps=3, start=1e-4, curve="cosine"),
    "OneCycle": lambda: OneCycle(1e-2, 10, pct_start=0.25, three_phase=True),
    "OneCycleMomentum": lambda: OneCycleMomentum(10, base_momentum=0.05, max_momentum=0.1),
    "Cyclic": lambda: Cyclic(1e-3, 1e-2, step_size=3, mode="triangular2"),
    "WarmupStableDecay": lambda: WarmupStableDecay(1e-2, 2, 1, 4, decay="1-sqrt", final_lr=1e-4),
    "InverseSqrt": lambda: InverseSqrt(1e-2, warmup_steps=2),
}
STEPS_PER_EPOCH = 4


@pytest.fixture(params=list(SCHEDULES), ids=list(SCHEDULES))
def schedule(request):
    return SCHEDULES[request.param]()


def _data():
    features = np.linspace(0, 0.1, 32 * 4, dtype="float32").reshape(32, 4)
    return tf.data.Dataset.from_tensor_slices((features, features.sum(axis=1, keepdims=True))).batch(8)


def _fit(schedule, **compile_arguments):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse", **compile_arguments)
    model.fit(_data(), epochs=1, verbose=0, shuffle=False)
    return model


def _assert_rate_follows(model, schedule):
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == STEPS_PER_EPOCH
    assert float(model.optimizer.learning_rate) == pytest.approx(float(schedule(STEPS_PER_EPOCH)), rel=1e-6)
    assert all(np.isfinite(weight).all() for weight in model.get_weights())


def test_fit_then_save_and_load(schedule, tmp_path):
    model = _fit(schedule)
    _assert_rate_follows(model, schedule)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert float(loaded.optimizer.learning_rate) == float(model.optimizer.learning_rate)
    restored = keras.saving.deserialize_keras_object(loaded.optimizer.get_config()["learning_rate"])
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()


def test_fit_with_jit_compile(schedule):
    model = _fit(schedule, jit_compile=True)
    assert model.jit_compile
    _assert_rate_follows(model, schedule)


def test_fit_under_mirrored_strategy(schedule, mirrored_strategy):
    assert mirrored_strategy.num_replicas_in_sync == 2
    with mirrored_strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    model.fit(_data(), epochs=1, verbose=0, shuffle=False)
    _assert_rate_follows(model, schedule)


def test_vectorised_call_equals_per_step_calls(schedule):
    steps = np.arange(50)
    rates = schedule(keras.ops.convert_to_tensor(steps, "int64"))
    assert keras.backend.standardize_dtype(rates.dtype) == "float32"
    assert tuple(rates.shape) == (50,)
    single = [schedule(keras.ops.convert_to_tensor(step, "int64")) for step in steps]
    assert all(tuple(rate.shape) == () and keras.backend.standardize_dtype(rate.dtype) == "float32" for rate in single)
    np.testing.assert_allclose(np.asarray(rates), np.array([float(rate) for rate in single]), rtol=1e-6)
