import re

import numpy as np
import pytest
import tf_keras
from references import numpy_sgd_momentum, torch_one_cycle

import tfopt
from tfopt.callbacks import LRScheduler, OneCyclePolicy, ReduceLROnPlateau, find_lr


def _model(optimizer):
    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(1, kernel_initializer="ones")])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")


class _Probe(tf_keras.callbacks.Callback):
    def __init__(self, attribute):
        super().__init__()
        self.attribute, self.values = attribute, []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(tf_keras.backend.get_value(getattr(self.model.optimizer, self.attribute))))


def _fit(model, callbacks, epochs=3):
    return model.fit(*_data(), batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)


def test_lr_scheduler_drives_a_tf_keras_optimizer():
    schedule = tfopt.schedules.OneCycle(max_lr=0.05, total_steps=12)
    probe = _Probe("learning_rate")
    history = _fit(_model(tf_keras.optimizers.SGD(0.5)), [LRScheduler(schedule), probe])
    np.testing.assert_allclose(probe.values, [float(schedule(s)) for s in range(12)], rtol=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"], [float(schedule(s)) for s in (3, 7, 11)], rtol=1e-6)


def test_lr_scheduler_drives_a_tf_keras_legacy_optimizer():
    probe = _Probe("learning_rate")
    _fit(_model(tf_keras.optimizers.legacy.Adam(0.5)), [LRScheduler(lambda step: 0.01 * (step + 1)), probe], 1)
    np.testing.assert_allclose(probe.values, [0.01, 0.02, 0.03, 0.04], rtol=1e-6)


def test_one_cycle_policy_cycles_tf_keras_momentum_in_the_compiled_step():
    dense = tf_keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    model = tf_keras.Sequential([tf_keras.Input((4,)), dense])
    model.compile(tf_keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    _fit(model, [OneCyclePolicy(max_lr=0.05, total_steps=12)])
    expected = numpy_sgd_momentum(_data(), lambda step: torch_one_cycle(step, 12, 0.05))
    np.testing.assert_allclose(model.get_weights()[0], expected, rtol=2e-5)


def test_reduce_lr_on_plateau_with_a_float_rate():
    history = _fit(_model(tf_keras.optimizers.SGD(0.01)),
                   [ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1e9)], epochs=4)
    np.testing.assert_allclose(history.history["learning_rate"], [0.01, 0.01, 0.005, 0.0025])


def test_reduce_lr_on_plateau_refuses_a_tf_keras_schedule():
    optimizer = tf_keras.optimizers.SGD(tf_keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9))
    with pytest.raises(TypeError, match="ReduceLROnPlateau: scaling a learning-rate schedule needs a Keras 3"):
        _fit(_model(optimizer), [ReduceLROnPlateau(monitor="loss")])


def test_find_lr_restores_a_tf_keras_model():
    model = _model(tf_keras.optimizers.Adam(1e-3))
    _fit(model, [], epochs=1)
    before = [v.numpy().copy() for v in model.weights + model.optimizer.variables]
    finder = find_lr(model, *_data(), batch_size=8, num_steps=16)
    after = [v.numpy() for v in model.weights + model.optimizer.variables]
    assert len(finder.lrs) > 3
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)


def test_a_tfopt_schedule_given_to_a_tf_keras_optimizer_names_lr_scheduler():
    """tf_keras calls a learning rate that is not one of its own schedules with no argument."""
    message = re.escape("OneCycle was called without a `step`. tfopt schedules are Keras 3 ") + ".*" + re.escape(
        "`callbacks=[tfopt.callbacks.LRScheduler(OneCycle(...))]`.")
    with pytest.raises(TypeError, match=message):
        tf_keras.optimizers.Adam(tfopt.schedules.OneCycle(1e-2, 100))
    legacy = _model(tf_keras.optimizers.legacy.Adam(tfopt.schedules.OneCycle(1e-2, 100)))  # reads it in the step
    with pytest.raises(TypeError, match=message):
        _fit(legacy, [], epochs=1)
