"""SWA: the average of the epochs' end weights, `swa_lr`, BatchNorm statistics recomputed as cumulative means over
the batches, its errors, deep copies and MirroredStrategy."""

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.callbacks.swa import SWA


class WeightProbe(keras.callbacks.Callback):
    """Records the trainable weights at the end of each epoch."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append([np.asarray(v, "float64") for v in self.model.trainable_variables])


def batch_norm_model(optimizer=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(), keras.layers.Dense(1)])
    model.compile(optimizer or keras.optimizers.SGD(0.05, momentum=0.9), "mse")
    return model


def fit(model, data, callbacks, epochs=4):
    return model.fit(*data, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)


def assert_averaged(model, probe, start_epoch):
    expected = [np.mean(weights, axis=0) for weights in zip(*probe.epochs[start_epoch:])]
    for variable, average in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(np.asarray(variable), average, rtol=1e-6, atol=1e-7)
    assert not np.allclose(np.asarray(model.trainable_variables[0]), probe.epochs[-1][0])


def test_weights_are_the_mean_of_the_epochs_from_start_epoch(linear_model, regression_data):
    model, probe = linear_model(keras.optimizers.SGD(0.05, momentum=0.9)), WeightProbe()
    fit(model, regression_data, [probe, SWA(start_epoch=2)], epochs=5)
    assert_averaged(model, probe, 2)


def test_swa_lr_from_start_epoch(linear_model, regression_data, rate_probe):
    model, rates = linear_model(keras.optimizers.SGD(0.1)), rate_probe()
    fit(model, regression_data, [SWA(start_epoch=2, swa_lr=0.02), rates])
    np.testing.assert_allclose(rates.values, [0.1] * 8 + [0.02] * 8, rtol=1e-6)


def batch_statistics(x, batch_size):
    batches = [x[i:i + batch_size].astype("float64") for i in range(0, len(x), batch_size)]
    return np.mean([b.mean(axis=0) for b in batches], axis=0), np.mean([b.var(axis=0) for b in batches], axis=0)


@pytest.mark.parametrize("kind", ["dataset", "array"])
def test_batch_norm_statistics_are_recomputed(kind, regression_data):
    x, y = regression_data
    data, batch_size = (tf.data.Dataset.from_tensor_slices((x, y)).batch(16), 16) if kind == "dataset" else (x, 32)
    model, probe = batch_norm_model(), WeightProbe()
    fit(model, regression_data, [probe, SWA(start_epoch=1, update_bn=data)], epochs=3)
    assert_averaged(model, probe, 1)
    mean, variance = batch_statistics(x, batch_size)
    batch_norm = model.layers[0]
    np.testing.assert_allclose(batch_norm.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batch_norm.moving_variance.numpy(), variance, rtol=1e-5)
    assert batch_norm.momentum == 0.99


def test_mirrored_strategy(regression_data, mirrored_strategy):
    x, y = regression_data
    with mirrored_strategy.scope():
        model = batch_norm_model()
    probe = WeightProbe()
    fit(model, regression_data, [probe, SWA(start_epoch=0, update_bn=x)], epochs=2)
    assert_averaged(model, probe, 0)
    np.testing.assert_allclose(model.layers[0].moving_mean.numpy(), batch_statistics(x, 32)[0], rtol=1e-5, atol=1e-6)


def test_deepcopy_before_and_after_fit(linear_model, regression_data):
    x, y = regression_data
    callback = SWA(start_epoch=1, swa_lr=0.01, update_bn=tf.data.Dataset.from_tensor_slices(x).batch(16))
    before = copy.deepcopy(callback)
    fit(linear_model(keras.optimizers.SGD(0.05)), regression_data, [callback], epochs=2)
    for swa in (before, copy.deepcopy(callback)):
        assert (swa.start_epoch, swa.swa_lr, swa.update_bn, swa.backup_dir) == (1, 0.01, callback.update_bn, None)
    model, probe = linear_model(keras.optimizers.SGD(0.05)), WeightProbe()
    fit(model, regression_data, [probe, copy.deepcopy(callback)], epochs=3)
    assert_averaged(model, probe, 1)


class Interrupt(keras.callbacks.Callback):
    """Stops `fit` in the middle of `epoch`, as a killed worker would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch == self.epoch and batch == 1:
            raise KeyboardInterrupt

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


def test_backup_dir_resumes_the_averages_of_an_interrupted_fit(regression_data, tmp_path):
    x = regression_data[0]
    uninterrupted = batch_norm_model()
    fit(uninterrupted, regression_data, [SWA(1, swa_lr=0.02, update_bn=x)], epochs=6)

    backup, averages = keras.callbacks.BackupAndRestore(str(tmp_path / "backup")), str(tmp_path / "swa")
    with pytest.raises(KeyboardInterrupt):
        fit(batch_norm_model(), regression_data,
            [backup, SWA(1, swa_lr=0.02, update_bn=x, backup_dir=averages), Interrupt(epoch=3)], epochs=6)
    assert sorted(path.name for path in (tmp_path / "swa").iterdir()) == ["swa-after-epoch-1.npz",
                                                                          "swa-after-epoch-2.npz"]
    resumed, probe = batch_norm_model(), WeightProbe()
    fit(resumed, regression_data, [backup, SWA(1, swa_lr=0.02, update_bn=x, backup_dir=averages), probe], epochs=6)
    assert len(probe.epochs) == 3  # epochs 3, 4 and 5 only
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert [path.name for path in (tmp_path / "swa").iterdir()] == ["swa-after-epoch-5.npz"]  # the finished record


def _two_fits(model, data, callbacks, interrupt_at=None, backup=None):
    """Fits epochs 0-3, then 4-7 with `initial_epoch=4` (interrupted in epoch `interrupt_at` and resumed)."""
    model.fit(*data, batch_size=16, epochs=4, shuffle=False, verbose=0, callbacks=callbacks)
    if interrupt_at is not None:
        with pytest.raises(KeyboardInterrupt):
            model.fit(*data, batch_size=16, epochs=8, initial_epoch=4, shuffle=False, verbose=0,
                      callbacks=[backup, *callbacks, Interrupt(interrupt_at)])
    extra = [] if backup is None else [backup]
    model.fit(*data, batch_size=16, epochs=8, initial_epoch=4, shuffle=False, verbose=0, callbacks=extra + callbacks)
    return model


def test_a_fit_after_a_finished_fit_starts_new_averages_as_without_backup_dir(linear_model, regression_data,
                                                                             tmp_path):
    expected = _two_fits(linear_model(keras.optimizers.SGD(0.05)), regression_data, [SWA(2)])
    probe = WeightProbe()
    model = _two_fits(linear_model(keras.optimizers.SGD(0.05)), regression_data,
                      [SWA(2, backup_dir=str(tmp_path)), probe])
    assert_averaged(model, probe, 4)  # the ends of epochs 4-7 only: the first fit's average is in the weights
    for a, b in zip(model.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert [path.name for path in tmp_path.iterdir()] == ["swa-after-epoch-7.npz"]


def test_an_interrupted_fit_after_a_finished_fit_resumes_its_averages(linear_model, regression_data, tmp_path):
    expected = _two_fits(linear_model(keras.optimizers.SGD(0.05)), regression_data, [SWA(2)])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = _two_fits(linear_model(keras.optimizers.SGD(0.05)), regression_data,
                      [SWA(2, backup_dir=str(tmp_path / "swa"))], interrupt_at=6, backup=backup)
    for a, b in zip(model.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_backup_dir_without_the_averages_of_the_resumed_epoch_raises(regression_data, tmp_path):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(KeyboardInterrupt):
        fit(batch_norm_model(), regression_data, [backup, SWA(1, update_bn=False), Interrupt(epoch=3)], epochs=6)
    with pytest.raises(FileNotFoundError) as raised:
        fit(batch_norm_model(), regression_data, [backup, SWA(1, update_bn=False, backup_dir=str(tmp_path))],
            epochs=6)
    assert str(raised.value).startswith("SWA: training resumes at epoch 3, after averaging began at start_epoch=1")
    assert "Received: backup_dir=" in str(raised.value)


def test_training_shorter_than_start_epoch_warns_and_keeps_the_weights(linear_model, regression_data):
    model = linear_model(keras.optimizers.SGD(0.05))
    with pytest.warns(UserWarning, match="SWA: training ended before epoch start_epoch=3"):
        fit(model, regression_data, [SWA(start_epoch=3)], epochs=2)
    plain = linear_model(keras.optimizers.SGD(0.05))
    fit(plain, regression_data, [], epochs=2)
    for kept, trained in zip(model.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, trained)


def test_update_bn_true_with_batch_norm_raises_at_fit_start(regression_data):
    model = batch_norm_model()
    with pytest.raises(ValueError) as raised:
        fit(model, regression_data, [SWA(start_epoch=1)])
    assert str(raised.value).startswith("SWA: argument `update_bn` must be the training inputs")
    assert str(raised.value).endswith("Pass `update_bn=train_dataset`. Received: update_bn=True")


def test_swa_lr_with_a_scheduled_optimizer_raises_at_fit_start(linear_model, regression_data):
    model = linear_model(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)))
    with pytest.raises(TypeError) as raised:
        fit(model, regression_data, [SWA(start_epoch=1, swa_lr=0.01)])
    assert str(raised.value).startswith(
        "SWA: argument `swa_lr` needs an optimizer with a float learning rate, but its learning rate is a schedule "
        "(ExponentialDecay)."
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"start_epoch": -1}, ValueError, "SWA: argument `start_epoch` must be >= 0. Received: start_epoch=-1"),
        ({"start_epoch": 1.5}, TypeError, "SWA: argument `start_epoch` must be an integer. Received: start_epoch=1.5"),
        ({"swa_lr": 0}, ValueError, "SWA: argument `swa_lr` must be > 0. Received: swa_lr=0.0"),
        ({"update_bn": (np.ones(3),)}, TypeError, "SWA: argument `update_bn` must be a bool, a tf.data.Dataset or"),
        ({"backup_dir": 3}, TypeError, "SWA: argument `backup_dir` must be a folder path. Received: backup_dir=3"),
    ],
    ids=["start_epoch_negative", "start_epoch_not_integer", "swa_lr_not_positive", "update_bn_wrong_type",
         "backup_dir_wrong_type"],
)
def test_argument_errors(kwargs, error, message):
    with pytest.raises(error) as raised:
        SWA(**{"start_epoch": 0, **kwargs})
    assert str(raised.value).startswith(message)
