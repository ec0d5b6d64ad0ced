import copy
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfopt
from tfopt.callbacks import LRScheduler


def _fit(model, data, callbacks=(), epochs=3, **kwargs):
    x, y = data
    return model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=list(callbacks), **kwargs)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_driving_a_float_optimizer_equals_giving_it_the_schedule(linear_model, regression_data, jit_compile):
    schedule = tfopt.schedules.OneCycle(max_lr=0.05, total_steps=12)
    driven = linear_model(keras.optimizers.SGD(0.5), jit_compile=jit_compile)
    native = linear_model(keras.optimizers.SGD(schedule), jit_compile=jit_compile)
    _fit(driven, regression_data, [LRScheduler(schedule)])
    _fit(native, regression_data)
    for driven_weight, native_weight in zip(driven.get_weights(), native.get_weights()):
        np.testing.assert_allclose(driven_weight, native_weight, rtol=1e-6)


def test_sets_the_schedule_value_before_every_batch(linear_model, regression_data, rate_probe):
    schedule = tfopt.schedules.Cyclic(base_lr=0.001, max_lr=0.01, step_size=3)
    probe = rate_probe()
    _fit(linear_model(keras.optimizers.Adam(0.5)), regression_data, [LRScheduler(schedule), probe])
    expected = [float(schedule(step)) for step in range(12)]
    np.testing.assert_allclose(probe.values, expected, rtol=1e-6)


def test_logs_learning_rate_into_history(linear_model, regression_data):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
    history = _fit(linear_model(keras.optimizers.SGD(0.1)), regression_data, [LRScheduler(schedule)])
    last_steps = [3, 7, 11]  # the rate used in each epoch's last batch
    np.testing.assert_allclose(history.history["learning_rate"], [float(schedule(s)) for s in last_steps], rtol=1e-6)


def test_epoch_unit_counts_epochs(linear_model, regression_data, rate_probe):
    probe = rate_probe()
    scheduler = LRScheduler(lambda e: 0.1 / (1 + e), "epoch")
    _fit(linear_model(keras.optimizers.SGD(0.1)), regression_data, [scheduler, probe])
    np.testing.assert_allclose(probe.values, np.repeat([0.1, 0.05, 0.1 / 3], 4), rtol=1e-6)


def test_a_second_fit_resumes_from_the_optimizer_step(linear_model, regression_data, rate_probe):
    schedule = tfopt.schedules.InverseSqrt(peak_lr=0.1, warmup_steps=3)
    model = linear_model(keras.optimizers.SGD(0.1))
    _fit(model, regression_data, [LRScheduler(schedule)], epochs=1)
    probe = rate_probe()
    _fit(model, regression_data, [LRScheduler(schedule), probe], epochs=1)
    np.testing.assert_allclose(probe.values, [float(schedule(s)) for s in range(4, 8)], rtol=1e-6)


def test_works_through_a_loss_scale_optimizer(linear_model, regression_data, rate_probe):
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    probe = rate_probe()
    _fit(linear_model(optimizer), regression_data, [LRScheduler(lambda step: 0.01 * (step + 1)), probe], epochs=1)
    np.testing.assert_allclose(probe.values, [0.01, 0.02, 0.03, 0.04], rtol=1e-6)


def test_mirrored_strategy_equals_one_device(regression_data, mirrored_strategy):
    schedule = tfopt.schedules.OneCycle(max_lr=0.05, total_steps=12)
    results = []
    for strategy in (mirrored_strategy, tf.distribute.get_strategy()):
        with strategy.scope():
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="ones")])
            model.compile(keras.optimizers.SGD(0.5), "mse")
        _fit(model, regression_data, [LRScheduler(schedule)])
        results.append(model.get_weights())
    for distributed, single in zip(*results):
        np.testing.assert_allclose(distributed, single, rtol=1e-5)


def test_survives_deepcopy(linear_model, regression_data):
    callback = LRScheduler(tfopt.schedules.OneCycle(max_lr=0.05, total_steps=12))
    history = _fit(linear_model(keras.optimizers.SGD(0.1)), regression_data, [copy.deepcopy(callback)])
    assert len(history.history["learning_rate"]) == 3


def test_an_optimizer_with_a_schedule_is_refused(linear_model, regression_data):
    model = linear_model(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)))
    with pytest.raises(TypeError, match="LRScheduler: the optimizer's learning rate is already a schedule"):
        _fit(model, regression_data, [LRScheduler(lambda step: 0.1)])


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="LRScheduler: argument `schedule` must be a LearningRateSchedule"):
        LRScheduler(0.1)
    with pytest.raises(ValueError, match="LRScheduler: argument `unit` must be one of 'batch', 'epoch'"):
        LRScheduler(lambda step: 0.1, unit="step")
    with pytest.raises(ValueError, match="LRScheduler: argument `verbose` must be >= 0"):
        LRScheduler(lambda step: 0.1, verbose=-1)


def test_a_model_without_optimizer_gets_a_clear_error(regression_data):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    callback = LRScheduler(lambda step: 0.1)
    callback.set_model(model)
    with pytest.raises(ValueError, match="LRScheduler: the model has no optimizer"):
        callback.on_train_begin()


def test_steps_per_execution_holds_the_rate_of_each_calls_first_step(linear_model, regression_data):
    schedule = tfopt.schedules.OneCycle(max_lr=0.05, total_steps=16)
    grouped = linear_model(keras.optimizers.SGD(0.5), steps_per_execution=4)
    history = _fit(grouped, regression_data, [LRScheduler(schedule)], epochs=4)
    stepwise = linear_model(keras.optimizers.SGD(0.5))  # one step per call, the rate held over each group of 4
    _fit(stepwise, regression_data, [LRScheduler(lambda step: float(schedule(step - step % 4)))], epochs=4)
    for grouped_weight, stepwise_weight in zip(grouped.get_weights(), stepwise.get_weights()):
        np.testing.assert_allclose(grouped_weight, stepwise_weight, rtol=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"], [float(schedule(s)) for s in (0, 4, 8, 12)],
                               rtol=1e-6)


def test_gradient_accumulation_counts_every_batch_as_the_optimizer_schedule_does(linear_model, regression_data):
    schedule = tfopt.schedules.OneCycle(max_lr=0.05, total_steps=15)
    data = regression_data[0][:48], regression_data[1][:48]  # 3 batches an epoch: updates straddle the epochs
    driven = linear_model(keras.optimizers.SGD(0.5, gradient_accumulation_steps=2))
    native = linear_model(keras.optimizers.SGD(schedule, gradient_accumulation_steps=2))
    _fit(driven, data, [LRScheduler(schedule)], epochs=5)
    _fit(native, data, epochs=5)
    for driven_weight, native_weight in zip(driven.get_weights(), native.get_weights()):
        np.testing.assert_allclose(driven_weight, native_weight, rtol=1e-6)


@pytest.mark.parametrize("order", ["scheduler_first", "plateau_first"])
@pytest.mark.parametrize("plateau", [tfopt.callbacks.ReduceLROnPlateau, keras.callbacks.ReduceLROnPlateau])
def test_another_callback_writing_the_rate_is_refused(linear_model, regression_data, plateau, order):
    scheduler = LRScheduler(tfopt.schedules.WarmUp(0.01, 8))
    reduce = plateau("loss", factor=0.5, patience=0, min_delta=100.0)  # reduces at the end of epoch 2
    callbacks = [scheduler, reduce] if order == "scheduler_first" else [reduce, scheduler]
    with pytest.raises(ValueError, match=r"LRScheduler: the optimizer's learning rate was changed by something "
                                         r"other than LRScheduler during `fit`: it holds 0\.004375, but LRScheduler "
                                         r"last set 0\.00875\. .* give the schedule to the optimizer"):
        _fit(linear_model(keras.optimizers.SGD(0.1)), regression_data, callbacks, epochs=4)


def test_logs_the_rate_the_optimizer_holds(linear_model, regression_data):
    history = _fit(linear_model(keras.optimizers.SGD(0.1)), regression_data, [LRScheduler(lambda step: 0.1 / 3)])
    np.testing.assert_array_equal(history.history["learning_rate"], [float(np.float32(0.1 / 3))] * 3)


def test_a_one_cycle_schedule_shorter_than_the_fit_is_refused(linear_model, regression_data):
    model = linear_model(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match=re.escape(
            "LRScheduler: the OneCycle schedule's `total_steps` must cover the optimizer steps of `fit`. Received: "
            "total_steps=10, but this `fit` runs 3 epochs x 4 steps. ")):
        _fit(model, regression_data, [LRScheduler(tfopt.schedules.OneCycle(0.05, 10))])
    with pytest.raises(ValueError, match=re.escape(  # unit="epoch": the cycle counts epochs
            "LRScheduler: the OneCycle schedule's `total_steps` must cover the epochs of `fit`. Received: "
            "total_steps=4, but this `fit` runs 5 epochs. Past `total_steps` the rate would stay at the cycle's final "
            "value, max_lr / div_factor / final_div_factor. Pass total_steps=5 (epochs), or fit fewer epochs.")):
        _fit(model, regression_data, [LRScheduler(tfopt.schedules.OneCycle(0.05, 4), unit="epoch")], epochs=5)
    assert int(model.optimizer.iterations) == 0
