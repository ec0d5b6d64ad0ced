"""Lookahead against a NumPy reference of the paper, and the behaviour both wrapper optimizers share through
tfopt/optimizers/_common.py (serialization, learning rate, eager/traced/jit `fit`, MirroredStrategy), tested here
over Lookahead, GradientCentralization and their compositions."""

import keras
import numpy as np
import pytest
from references import (
    SHAPES,
    adam_rule,
    assert_all_close,
    gradient_sequence,
    initial_values,
    lookahead_reference,
    run_keras_optimizer,
    sgd_momentum_rule,
)

from tfopt.callbacks.lr_scheduler import LRScheduler
from tfopt.optimizers.cautious import Cautious
from tfopt.optimizers.gradient_centralization import GradientCentralization
from tfopt.optimizers.lookahead import Lookahead


@pytest.mark.parametrize(
    "inner, reference, sync_period, slow_step_size",
    [
        (lambda: keras.optimizers.SGD(0.05, momentum=0.9), lambda: sgd_momentum_rule(0.05, 0.9), 5, 0.5),
        (lambda: keras.optimizers.Adam(0.01), lambda: adam_rule(0.01), 6, 0.8),
    ],
    ids=["sgd_momentum", "adam"],
)
def test_matches_numpy_reference(inner, reference, sync_period, slow_step_size):
    gradients, initial = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = Lookahead(inner(), sync_period=sync_period, slow_step_size=slow_step_size)
    actual = run_keras_optimizer(optimizer, initial, gradients)
    assert_all_close(actual, lookahead_reference(reference(), initial, gradients, sync_period, slow_step_size))
    assert int(optimizer.iterations) == 60


def test_slow_step_size_one_is_the_inner_optimizer():
    gradients, initial = gradient_sequence(SHAPES, 12), initial_values(SHAPES)
    wrapped = run_keras_optimizer(Lookahead(keras.optimizers.Adam(0.01), slow_step_size=1.0), initial, gradients)
    assert_all_close(wrapped, run_keras_optimizer(keras.optimizers.Adam(0.01), initial, gradients), 1e-6, 1e-7)


WRAPPERS = {
    "Lookahead": lambda inner: Lookahead(inner, sync_period=3, slow_step_size=0.6),
    "GradientCentralization": GradientCentralization,
    "Lookahead(GradientCentralization)": lambda inner: Lookahead(GradientCentralization(inner), sync_period=3),
    "GradientCentralization(Lookahead)": lambda inner: GradientCentralization(Lookahead(inner, sync_period=3)),
}


@pytest.fixture(params=list(WRAPPERS), ids=list(WRAPPERS))
def wrap(request):
    return WRAPPERS[request.param]


def innermost(optimizer):
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def test_config_round_trip(wrap):
    optimizer = wrap(keras.optimizers.SGD(0.03, momentum=0.8))
    config = keras.optimizers.serialize(optimizer)
    again = keras.optimizers.deserialize(config)
    assert type(again) is type(optimizer)
    assert keras.optimizers.serialize(again) == config


def test_learning_rate_reaches_the_inner_optimizer(wrap):
    optimizer = wrap(keras.optimizers.SGD(0.03))
    optimizer.learning_rate = 0.125
    assert float(innermost(optimizer).learning_rate) == 0.125
    assert optimizer.learning_rate is innermost(optimizer).learning_rate


def test_lr_callbacks_drive_the_inner_optimizer(linear_model, regression_data):
    x, y = regression_data
    model = linear_model(GradientCentralization(Lookahead(keras.optimizers.SGD(0.03))))
    schedule = LRScheduler(lambda step: 0.04 / (1 + step))
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[schedule, plateau])
    assert int(model.optimizer.iterations) == 8
    assert float(innermost(model.optimizer).learning_rate) == pytest.approx(0.5 * 0.04 / 8)


def fit_weights(model, data, epochs=2):
    model.fit(*data, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    return [np.asarray(w) for w in model.get_weights()]


def test_eager_and_jit_fits_agree(linear_model, regression_data):
    make = lambda: WRAPPERS["GradientCentralization(Lookahead)"](keras.optimizers.SGD(0.03, momentum=0.9))  # noqa: E731
    eager = fit_weights(linear_model(make(), run_eagerly=True), regression_data)
    assert_all_close(fit_weights(linear_model(make(), jit_compile=True), regression_data), eager, 1e-6, 1e-6)


def test_mirrored_strategy_matches_one_device(linear_model, regression_data, mirrored_strategy):
    make = lambda: WRAPPERS["Lookahead(GradientCentralization)"](keras.optimizers.Adam(0.05))  # noqa: E731
    one_device = fit_weights(linear_model(make()), regression_data)
    with mirrored_strategy.scope():
        model = linear_model(make())
    assert_all_close(fit_weights(model, regression_data), one_device, 1e-5, 1e-6)


@pytest.mark.parametrize("name", ["Lookahead", "GradientCentralization(Lookahead)"])
def test_keras_file_restores_wrapper_and_state(name, linear_model, regression_data, tmp_path):
    inner = keras.optimizers.SGD(0.03, momentum=0.9)
    model = linear_model(WRAPPERS[name](inner))
    fit_weights(model, regression_data, epochs=1)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert keras.optimizers.serialize(loaded.optimizer) == keras.optimizers.serialize(model.optimizer)
    loaded_inner = innermost(loaded.optimizer)  # tfopt-free: Keras's own class and config
    assert type(loaded_inner) is keras.optimizers.SGD and loaded_inner.get_config() == inner.get_config()
    assert_all_close(loaded.optimizer.variables, model.optimizer.variables, 0, 0)
    assert_all_close(fit_weights(loaded, regression_data, 1), fit_weights(model, regression_data, 1), 1e-6, 1e-7)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"sync_period": 0}, ValueError, "Lookahead: argument `sync_period` must be >= 1. Received: sync_period=0"),
        ({"sync_period": 2.5}, TypeError, "Lookahead: argument `sync_period` must be an integer. Received: sync_"),
        ({"slow_step_size": 0.0}, ValueError, "Lookahead: argument `slow_step_size` must be in (0, 1]. Received"),
        ({"slow_step_size": 1.5}, ValueError, "Lookahead: argument `slow_step_size` must be in (0, 1]. Received"),
        ({"inner_optimizer": "adam"}, TypeError, "Lookahead: argument `inner_optimizer` must be a Keras 3 optimizer"),
    ],
    ids=["sync_period_below_one", "sync_period_not_integer", "slow_step_size_zero", "slow_step_size_above_one",
         "inner_not_an_optimizer"],
)
def test_errors(kwargs, error, message):
    kwargs = {"inner_optimizer": keras.optimizers.SGD(), **kwargs}
    with pytest.raises(error) as raised:
        Lookahead(**kwargs)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("wrapper", [Lookahead, GradientCentralization, Cautious])
def test_a_loss_scale_optimizer_inside_a_wrapper_is_refused(wrapper):
    """Keras scales the loss with the outermost optimizer only: inside, the gradients were unscaled twice."""
    inner = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match=r"argument `inner_optimizer` must be an optimizer without a "
                                         r"LossScaleOptimizer inside: put that outside, `LossScaleOptimizer\("):
        wrapper(inner)


def test_under_mixed_float16_compile_puts_the_loss_scaling_outside_and_the_steps_equal_plain_sgds():
    changes = []
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for make in (lambda: keras.optimizers.SGD(0.1), lambda: Lookahead(keras.optimizers.SGD(0.1), sync_period=100)):
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
            model.compile(make(), "mse")
            start = model.get_weights()[1].copy()
            model.fit(np.ones((8, 3), "float32"), np.full((8, 1), 2.0, "float32"), batch_size=8, epochs=8, verbose=0)
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            changes.append(model.get_weights()[1] - start)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    np.testing.assert_allclose(changes[1], changes[0], rtol=1e-3)
    assert abs(float(changes[0][0])) > 0.05
