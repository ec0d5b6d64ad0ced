import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from references import numpy_adam, numpy_sgd_momentum, torch_one_cycle

from tfopt.callbacks import OneCyclePolicy
from tfopt.schedules import OneCycle

TOTAL = 12  # 64 samples / batch 16 * 3 epochs


def _fit(model, data, callbacks, epochs=3):
    x, y = data
    return model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize(
    "make_optimizer, reference",
    [(lambda: keras.optimizers.SGD(0.1, momentum=0.9), numpy_sgd_momentum),
     (lambda: keras.optimizers.Adam(0.1), numpy_adam)],
    ids=["sgd", "adam"],
)
def test_cycled_momentum_reaches_the_compiled_step(linear_model, regression_data, make_optimizer, reference,
                                                   jit_compile):
    model = linear_model(make_optimizer(), use_bias=False, jit_compile=jit_compile)
    _fit(model, regression_data, [OneCyclePolicy(max_lr=0.05, total_steps=TOTAL)])
    expected = reference(regression_data, lambda step: torch_one_cycle(step, TOTAL, 0.05))
    np.testing.assert_allclose(model.get_weights()[0], expected, rtol=2e-5)
    constant = reference(regression_data, lambda step: (torch_one_cycle(step, TOTAL, 0.05)[0], 0.9))
    assert not np.allclose(expected, constant, rtol=1e-3)  # the momentum really matters in this problem


def test_rate_and_momentum_match_pytorch_each_batch(linear_model, regression_data, rate_probe):
    lr_probe, momentum_probe = rate_probe("learning_rate"), rate_probe("momentum")
    model = linear_model(keras.optimizers.SGD(0.1, momentum=0.9))
    callbacks = [OneCyclePolicy(max_lr=0.05, total_steps=TOTAL), lr_probe, momentum_probe]
    history = _fit(model, regression_data, callbacks)
    expected = np.array([torch_one_cycle(step, TOTAL, 0.05) for step in range(TOTAL)])
    np.testing.assert_allclose(lr_probe.values, expected[:, 0], rtol=1e-5)
    np.testing.assert_allclose(momentum_probe.values, expected[:, 1], rtol=1e-6)
    assert history.history["momentum"][-1] == pytest.approx(0.95)


def test_training_resumed_from_a_mid_cycle_checkpoint_ends_where_the_uninterrupted_run_does(linear_model,
                                                                                           regression_data, tmp_path):
    model = linear_model(keras.optimizers.Adam(0.1))
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch-{epoch}.keras"))
    _fit(model, regression_data, [OneCyclePolicy(max_lr=0.05, total_steps=TOTAL), checkpoint])
    restored = keras.models.load_model(tmp_path / "epoch-1.keras")  # after 4 of the 12 steps, the rate still rising
    assert int(restored.optimizer.iterations) == TOTAL // 3
    assert isinstance(restored.optimizer.get_config()["beta_1"], float)
    assert restored.optimizer.get_config()["beta_1"] < 0.95  # the momentum cycled down before the checkpoint
    probe = RateAndMomentum()
    resumed = restored.fit(*regression_data, batch_size=16, initial_epoch=1, epochs=3, shuffle=False, verbose=0,
                           callbacks=[OneCyclePolicy(max_lr=0.05, total_steps=TOTAL), probe])
    expected = np.array([torch_one_cycle(step, TOTAL, 0.05) for step in range(TOTAL // 3, TOTAL)])
    np.testing.assert_allclose(probe.values, expected, rtol=1e-5)  # the cycle resumes at step 4, not at 0
    for weight, uninterrupted in zip(restored.get_weights(), model.get_weights()):
        np.testing.assert_allclose(weight, uninterrupted, rtol=1e-6, atol=1e-7)
    assert resumed.history["beta_1"][-1] == pytest.approx(0.95)


class StopAfterEpoch(keras.callbacks.Callback):
    """Interrupts `fit` at the end of epoch `epoch` (as a killed job would)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("backup_first", [True, False], ids=["backup_first", "backup_last"])
def test_backup_and_restore_resumes_the_cycle_whatever_the_callback_order(linear_model, regression_data, tmp_path,
                                                                          backup_first):
    """BackupAndRestore restores the optimizer's step in its on_train_begin: the policy reads the step afterwards,
    at the first epoch, so it resumes mid-cycle even when listed before the backup."""
    uninterrupted = linear_model(keras.optimizers.Adam(0.1))
    _fit(uninterrupted, regression_data, [OneCyclePolicy(max_lr=0.05, total_steps=TOTAL)])

    def callbacks(*extra):
        policy, backup = OneCyclePolicy(max_lr=0.05, total_steps=TOTAL), keras.callbacks.BackupAndRestore(tmp_path)
        return [backup, policy, *extra] if backup_first else [policy, backup, *extra]

    model = linear_model(keras.optimizers.Adam(0.1))
    with pytest.raises(KeyboardInterrupt):
        _fit(model, regression_data, callbacks(StopAfterEpoch(1)))
    resumed = linear_model(keras.optimizers.Adam(0.1))
    history = _fit(resumed, regression_data, callbacks())
    assert history.epoch == [2]
    for weight, expected in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(weight, expected, rtol=1e-6, atol=1e-7)


class RateAndMomentum(keras.callbacks.Callback):
    """Records (learning rate, beta_1) as the optimizer used them in each batch."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        optimizer = self.model.optimizer
        self.values.append((float(np.asarray(optimizer.learning_rate)), float(optimizer.beta_1)))


def test_mirrored_strategy_fit(regression_data, mirrored_strategy):
    with mirrored_strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    _fit(model, regression_data, [OneCyclePolicy(max_lr=0.05, total_steps=TOTAL)])
    expected = numpy_sgd_momentum(regression_data, lambda step: torch_one_cycle(step, TOTAL, 0.05))
    np.testing.assert_allclose(model.get_weights()[0], expected, rtol=2e-5)


def test_without_momentum_cycling_the_optimizer_keeps_its_float(linear_model, regression_data):
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    _fit(linear_model(optimizer), regression_data, [OneCyclePolicy(0.05, TOTAL, cycle_momentum=False)])
    assert optimizer.momentum == 0.9 and type(optimizer.momentum) is float


def test_optimizers_without_momentum_are_named(linear_model, regression_data):
    with pytest.raises(TypeError, match="OneCyclePolicy: cannot cycle the momentum of Adagrad"):
        _fit(linear_model(keras.optimizers.Adagrad(0.1)), regression_data, [OneCyclePolicy(0.05, TOTAL)])
    with pytest.raises(ValueError, match="OneCyclePolicy: the optimizer SGD was created with momentum=0"):
        _fit(linear_model(keras.optimizers.SGD(0.1)), regression_data, [OneCyclePolicy(0.05, TOTAL)])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"OneCyclePolicy: argument `base_momentum` must be in \[0, 1\)"):
        OneCyclePolicy(0.1, 10, base_momentum=1.0)
    with pytest.raises(ValueError, match=r"OneCyclePolicy: argument `max_momentum` must be in \[0, 1\)"):
        OneCyclePolicy(0.1, 10, max_momentum=-0.1)
    with pytest.raises(ValueError, match="OneCyclePolicy: argument `base_momentum` must not exceed `max_momentum`"):
        OneCyclePolicy(0.1, 10, base_momentum=0.95, max_momentum=0.85)
    with pytest.raises(ValueError, match="OneCycle: argument `pct_start`"):
        OneCyclePolicy(0.1, 10, pct_start=1.5)
    for value in ("no", 0):  # bool("no") would be True: a string or number is refused, not coerced
        with pytest.raises(TypeError, match=f"OneCyclePolicy: argument `cycle_momentum` must be True or False. "
                                            f"Received: cycle_momentum={value!r}"):
            OneCyclePolicy(0.1, 10, cycle_momentum=value)
    with pytest.raises(TypeError, match="OneCycle: argument `three_phase` must be True or False"):
        OneCyclePolicy(0.1, 10, three_phase="no")


def test_steps_per_execution_sets_each_call_the_rate_of_its_first_step(linear_model, regression_data, rate_probe):
    total = 16  # 4 epochs of 4 steps, 4 steps per train function call: one call per epoch
    lr_probe, momentum_probe = rate_probe("learning_rate"), rate_probe("momentum")
    model = linear_model(keras.optimizers.SGD(0.1, momentum=0.9), steps_per_execution=4)
    _fit(model, regression_data, [OneCyclePolicy(max_lr=0.05, total_steps=total), lr_probe, momentum_probe], epochs=4)
    assert int(model.optimizer.iterations) == total
    # the calls' first steps: the last call runs the cycle's last 4 steps (counted per call, it stopped at step 3)
    expected = np.array([torch_one_cycle(step, total, 0.05) for step in (0, 4, 8, 12)])
    np.testing.assert_allclose(lr_probe.values, expected[:, 0], rtol=1e-5)
    np.testing.assert_allclose(momentum_probe.values, expected[:, 1], rtol=1e-6)


def test_a_fit_longer_than_the_cycle_is_refused_before_its_first_step(linear_model, regression_data):
    model = linear_model(keras.optimizers.SGD(0.1, momentum=0.9))
    message = ("OneCyclePolicy: argument `total_steps` must cover the optimizer steps of `fit`. Received: "
               "total_steps=6, but this `fit` runs 3 epochs x 4 steps. Past `total_steps` the rate would stay at the "
               "cycle's final value, max_lr / div_factor / final_div_factor. Pass total_steps=12 (epochs x "
               "steps_per_epoch), or fit fewer epochs.")
    with pytest.raises(ValueError, match=re.escape(message)):
        _fit(model, regression_data, [OneCyclePolicy(0.05, total_steps=6)])
    assert int(model.optimizer.iterations) == 0
    _fit(model, regression_data, [OneCyclePolicy(0.05, total_steps=TOTAL)])
    with pytest.raises(ValueError, match=re.escape(  # a second fit goes on from the optimizer's step 12
            "but this `fit` runs 1 epochs x 4 steps after the 12 steps the optimizer has already taken, 16 in all "
            "(to start a new cycle at step 0, compile the model with a new optimizer). ")):
        _fit(model, regression_data, [OneCyclePolicy(0.05, total_steps=TOTAL)], epochs=1)


def test_a_dataset_of_unknown_length_is_stopped_at_the_first_step_past_the_cycle(linear_model, regression_data):
    model = linear_model(keras.optimizers.SGD(0.1, momentum=0.9))
    unknown = tf.data.Dataset.from_tensor_slices(regression_data).batch(16).filter(lambda x, y: True)
    with pytest.raises(ValueError, match=re.escape(
            "OneCyclePolicy: argument `total_steps` must cover the optimizer steps of `fit`. Received: total_steps=6, "
            "but `fit` reached step 7 (the dataset's length is unknown")):
        model.fit(unknown, epochs=2, shuffle=False, verbose=0, callbacks=[OneCyclePolicy(0.05, total_steps=6)])
    assert int(model.optimizer.iterations) == 6


def test_total_steps_counted_in_epochs_is_named():
    with pytest.raises(ValueError, match=re.escape("OneCycle: argument `total_steps` must be > 1 / pct_start = 3.333 "
                                                   "(pct_start=0.3: the warm-up, pct_start x total_steps, must last "
                                                   "more than one step); it counts optimizer steps, epochs x "
                                                   "steps_per_epoch, not epochs (or raise `pct_start`). "
                                                   "Received: total_steps=3")):
        OneCyclePolicy(0.1, total_steps=3)


def test_a_scheduled_optimizer_is_refused_with_a_way_out_one_cycle_policy_takes():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(OneCycle(max_lr=0.1, total_steps=100)), "mse")
    with pytest.raises(TypeError, match=r"OneCyclePolicy: the optimizer's learning rate is already a schedule "
                                        r"\(OneCycle\), so it cannot be set each step. Create the optimizer with a "
                                        r"float `learning_rate` \(its value does not matter\): OneCyclePolicy sets "
                                        r"it every step\."):
        model.fit(np.zeros((4, 2)), np.zeros((4, 1)), verbose=0,
                  callbacks=[OneCyclePolicy(max_lr=0.1, total_steps=100)])
