import keras
import numpy as np
import pytest

import tfopt
from tfopt.callbacks import ReduceLROnPlateau

# No epoch improves by 10: the rate is reduced from epoch 2 on.
STALLED = dict(monitor="loss", factor=0.5, patience=1, min_delta=10.0)


def _fit(model, data, callbacks, epochs=4):
    x, y = data
    return model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)


def test_float_rate_behaves_as_keras_own(linear_model, regression_data):
    ours = _fit(linear_model(keras.optimizers.SGD(0.01)), regression_data, [ReduceLROnPlateau(**STALLED)])
    keras_own = _fit(linear_model(keras.optimizers.SGD(0.01)), regression_data,
                     [keras.callbacks.ReduceLROnPlateau(**STALLED)])
    np.testing.assert_allclose(ours.history["learning_rate"], keras_own.history["learning_rate"])
    np.testing.assert_allclose(ours.history["loss"], keras_own.history["loss"])


def test_a_schedule_is_scaled_not_replaced(linear_model, regression_data):
    schedule = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=100)
    optimizer = keras.optimizers.SGD(schedule)
    history = _fit(linear_model(optimizer), regression_data, [ReduceLROnPlateau(**STALLED)])
    wrapped = optimizer._learning_rate
    assert isinstance(wrapped, tfopt.schedules.Scaled) and wrapped.schedule is schedule
    assert float(wrapped.scale) == pytest.approx(0.125)  # reduced after epochs 2, 3 and 4
    np.testing.assert_allclose(float(optimizer.learning_rate), 0.125 * float(schedule(16)), rtol=1e-6)
    # as in Keras, an epoch logs the rate it trained with, before that epoch's reduction
    assert history.history["learning_rate"][-1] == pytest.approx(0.25 * float(schedule(16)), rel=1e-6)


def _rate_used_by_next_step(model):
    """Runs one SGD step on w*1 ~ 1 from a known weight and recovers the rate the compiled step used."""
    model.set_weights([np.array([[3.0]], "float32")])
    model.fit(np.ones((1, 1), "float32"), np.ones((1, 1), "float32"), verbose=0, epochs=1)
    return (3.0 - float(model.get_weights()[0][0, 0])) / 4.0  # gradient of (w - 1)^2 at w = 3 is 4


def test_the_scale_reaches_a_train_step_traced_by_an_earlier_fit():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.01, 1000, 1.0)), "mse")
    assert _rate_used_by_next_step(model) == pytest.approx(0.01, rel=1e-4)  # traced without the callback
    x, y = np.ones((4, 1), "float32"), np.ones((4, 1), "float32")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[ReduceLROnPlateau(**STALLED)])
    assert _rate_used_by_next_step(model) == pytest.approx(0.005, rel=1e-4)


def test_min_lr_bounds_the_scaled_schedule(linear_model, regression_data):
    optimizer = keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.01, 1000, 1.0))
    _fit(linear_model(optimizer), regression_data, [ReduceLROnPlateau(**STALLED, min_lr=0.008)])
    assert float(optimizer.learning_rate) == pytest.approx(0.008, rel=1e-6)


def test_scaled_optimizer_round_trips_through_keras_file(linear_model, regression_data, tmp_path):
    optimizer = keras.optimizers.SGD(tfopt.schedules.OneCycle(max_lr=0.01, total_steps=100))
    model = linear_model(optimizer)
    _fit(model, regression_data, [ReduceLROnPlateau(**STALLED)])
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert float(restored.optimizer.learning_rate) == pytest.approx(float(optimizer.learning_rate), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(factor=1.0), r"ReduceLROnPlateau: argument `factor` must be in \(0, 1\). Received: factor=1.0"),
        (dict(patience=-1), "ReduceLROnPlateau: argument `patience` must be >= 0"),
        (dict(cooldown=-2), "ReduceLROnPlateau: argument `cooldown` must be >= 0"),
        (dict(min_lr=-1e-3), "ReduceLROnPlateau: argument `min_lr` must be >= 0"),
        (dict(min_delta=-1.0), "ReduceLROnPlateau: argument `min_delta` must be >= 0"),
        (dict(mode="up"), "ReduceLROnPlateau: argument `mode` must be one of 'auto', 'min', 'max'"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReduceLROnPlateau(**kwargs)


def test_scaled_refuses_a_non_schedule_and_a_bad_scale():
    with pytest.raises(TypeError, match="Scaled: argument `schedule` must be a LearningRateSchedule"):
        tfopt.schedules.Scaled(0.1)
    with pytest.raises(ValueError, match="Scaled: argument `scale` must be > 0"):
        tfopt.schedules.Scaled(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9), scale=0.0)


def test_a_plain_function_as_learning_rate_is_refused_naming_the_optimizer(linear_model, regression_data):
    model = linear_model(keras.optimizers.SGD(lambda: 0.01))
    message = (r"ReduceLROnPlateau: the optimizer's `learning_rate` must be a float \(which it lowers\) or a "
               r"keras\.optimizers\.schedules\.LearningRateSchedule \(which it scales\).* Create SGD with one of "
               r"those\. Received: learning_rate=<function")
    with pytest.raises(TypeError, match=message):
        _fit(model, regression_data, [ReduceLROnPlateau(**STALLED)])
