"""Behaviour every tfopt schedule shares: it drives a Keras 3 optimizer in `fit` (each step applies the schedule's
value at that step), also compiled with XLA and under `MirroredStrategy`, survives a `.keras` round trip, and
broadcasts over a 1-D tensor of steps."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.schedules import Cyclic, InverseSqrt, OneCycle, OneCycleMomentum, Scaled, WarmUp, WarmupStableDecay

SCHEDULES = {
    "WarmUp": lambda: WarmUp(OneCycle(1e-2, 40, anneal="linear"), warmup_steps=3, start=1e-4, curve="cosine"),
    "OneCycle": lambda: OneCycle(1e-2, 10, pct_start=0.25, three_phase=True),
    "OneCycleMomentum": lambda: OneCycleMomentum(10, base_momentum=0.05, max_momentum=0.1),
    "Cyclic": lambda: Cyclic(1e-3, 1e-2, step_size=3, mode="triangular2"),
    "WarmupStableDecay": lambda: WarmupStableDecay(1e-2, 2, 1, 4, decay="1-sqrt", final_lr=1e-4),
    "InverseSqrt": lambda: InverseSqrt(1e-2, warmup_steps=2),
    "Scaled": lambda: Scaled(Cyclic(1e-3, 1e-2, step_size=3), scale=0.25),
}
STEPS_PER_EPOCH = 4


def test_every_public_schedule_is_in_the_contract():
    import tfopt.schedules  # noqa: PLC0415

    schedule_classes = {name for name in tfopt.schedules.__all__ if isinstance(getattr(tfopt.schedules, name), type)}
    assert schedule_classes == set(SCHEDULES)


@pytest.fixture(params=list(SCHEDULES), ids=list(SCHEDULES))
def schedule(request):
    return SCHEDULES[request.param]()


def _data():
    """Inputs of ones and targets of zeros: with `_model`, the loss's gradient is 1 for every kernel entry."""
    features = np.ones((8 * STEPS_PER_EPOCH, 4), dtype="float64")
    return tf.data.Dataset.from_tensor_slices((features, np.zeros((8 * STEPS_PER_EPOCH, 1)))).batch(8)


def _model(schedule, **compile_arguments):
    """A float64 linear model whose SGD step moves each kernel entry by exactly -learning_rate: its output
    `sum(kernel) = 4` stays positive, so the mean absolute error's gradient is 1 per entry."""
    layer = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", dtype="float64")
    model = keras.Sequential([keras.Input((4,)), layer])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mae", **compile_arguments)
    return model


class AppliedRates(keras.callbacks.Callback):
    """The learning rate each step applied, read from how far it moved the kernel."""

    def __init__(self):
        super().__init__()
        self.rates, self._before = [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._before = keras.ops.convert_to_numpy(self.model.layers[0].kernel)

    def on_train_batch_end(self, batch, logs=None):
        moved = self._before - keras.ops.convert_to_numpy(self.model.layers[0].kernel)
        np.testing.assert_allclose(moved, moved[0, 0], rtol=1e-9)  # one rate for every entry
        self.rates.append(float(moved[0, 0]))


def _fit(model):
    applied = AppliedRates()
    model.fit(_data(), epochs=1, verbose=0, shuffle=False, callbacks=[applied])
    return applied.rates


def _assert_rate_follows(model, schedule, applied_rates):
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == STEPS_PER_EPOCH
    expected = np.asarray(schedule(keras.ops.convert_to_tensor(np.arange(STEPS_PER_EPOCH), "int64")))
    np.testing.assert_allclose(applied_rates, expected, rtol=1e-6)
    assert float(model.optimizer.learning_rate) == pytest.approx(float(schedule(STEPS_PER_EPOCH)), rel=1e-6)


def test_fit_then_save_and_load(schedule, tmp_path):
    model = _model(schedule)
    _assert_rate_follows(model, schedule, _fit(model))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert float(loaded.optimizer.learning_rate) == float(model.optimizer.learning_rate)
    restored = keras.saving.deserialize_keras_object(loaded.optimizer.get_config()["learning_rate"])
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()


def test_fit_with_jit_compile(schedule):
    model = _model(schedule, jit_compile=True)
    applied_rates = _fit(model)
    assert model.jit_compile
    _assert_rate_follows(model, schedule, applied_rates)


def test_fit_under_mirrored_strategy(schedule, mirrored_strategy):
    assert mirrored_strategy.num_replicas_in_sync == 2
    with mirrored_strategy.scope():
        model = _model(schedule)
    _assert_rate_follows(model, schedule, _fit(model))


def test_vectorised_call_equals_per_step_calls(schedule):
    steps = np.arange(50)
    rates = schedule(keras.ops.convert_to_tensor(steps, "int64"))
    assert keras.backend.standardize_dtype(rates.dtype) == "float32"
    assert tuple(rates.shape) == (50,)
    single = [schedule(keras.ops.convert_to_tensor(step, "int64")) for step in steps]
    assert all(tuple(rate.shape) == () and keras.backend.standardize_dtype(rate.dtype) == "float32" for rate in single)
    np.testing.assert_allclose(np.asarray(rates), np.array([float(rate) for rate in single]), rtol=1e-6)


def test_a_call_without_a_step_names_the_way_for_tf_keras(schedule):
    """tf_keras optimizers call a learning rate that is not a tf_keras schedule with no argument."""
    name = type(schedule).__name__
    with pytest.raises(TypeError, match=re.escape(
            f"{name} was called without a `step`. tfopt schedules are Keras 3 "
            "`keras.optimizers.schedules.LearningRateSchedule`s; a tf_keras optimizer does not recognise them and "
            "calls them with no argument. For a tf_keras optimizer, create it with a float learning rate and pass the "
            f"schedule to `fit` as a callback: `callbacks=[tfopt.callbacks.LRScheduler({name}(...))]`.")):
        schedule()
