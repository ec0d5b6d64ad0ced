"""Writing from the chief only, in one process: a non-chief worker is played by making `is_chief` answer False."""

import os
import tempfile

import keras
import numpy as np
import pytest

import tfopt
from tfopt.distribute import chief, strategy


class _NonChiefStrategy:
    extended = type("Extended", (), {"should_checkpoint": False})()


@pytest.fixture
def temporary_folder(tmp_path, monkeypatch):
    """The folder `tempfile` makes its folders in, for this test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def non_chief(monkeypatch, temporary_folder):
    """Keras patched as `tfopt.distribute.MultiWorkerMirroredStrategy` patches it; this process a non-chief worker."""
    strategy.patch_keras()
    for module in (chief, tfopt.distribute):
        monkeypatch.setattr(module, "is_chief", lambda strategy=None: False)
    return temporary_folder


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    return model


def _fit(model, callbacks, epochs=4):
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    return model.fit(x, x[:, :1], batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks)


class _StopAtEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


def test_is_chief_without_a_multi_worker_strategy_and_as_the_strategy_says():
    assert tfopt.distribute.is_chief()
    assert not tfopt.distribute.is_chief(_NonChiefStrategy())


def test_chief_path_is_the_path_on_the_chief_and_a_deleted_temporary_path_elsewhere(tmp_path, temporary_folder):
    target = tmp_path / "model.weights.h5"
    with tfopt.distribute.chief_path(target) as path:
        assert path == target
    with tfopt.distribute.chief_path(target, _NonChiefStrategy()) as path:
        assert os.path.basename(path) == target.name and path.startswith(str(temporary_folder))
        _model().save_weights(path)
    assert not target.exists() and list(temporary_folder.iterdir()) == []


def _chief_backup(folder):
    """A chief's backup of a fit interrupted at the start of epoch 2: {file name: bytes}."""
    strategy.patch_keras()
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(_model(), [keras.callbacks.BackupAndRestore(str(folder)), _StopAtEpoch()])
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_a_non_chief_restores_the_chiefs_backup_and_writes_nothing_where_the_chief_writes(tmp_path, monkeypatch):
    backup = tmp_path / "backup"
    saved = _chief_backup(backup)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.setattr(chief, "is_chief", lambda strategy=None: False)
    callbacks = [keras.callbacks.BackupAndRestore(str(backup)),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "checkpoints" / "{epoch}.weights.h5"),
                                                 save_weights_only=True),
                 keras.callbacks.TensorBoard(str(tmp_path / "logs"))]
    history = _fit(_model(), callbacks)
    assert history.epoch == [2, 3]  # restored from the chief's backup
    assert {path.name: path.read_bytes() for path in backup.iterdir()} == saved  # neither rewritten nor deleted
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "logs").exists()
    assert list(temporary.iterdir()) == []  # the worker's own copies are gone


def test_on_the_chief_the_patched_callbacks_write_as_keras_does(tmp_path):
    backup = tmp_path / "backup"
    _chief_backup(backup)
    callbacks = [keras.callbacks.BackupAndRestore(str(backup)),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "checkpoints" / "{epoch}.weights.h5"),
                                                 save_weights_only=True),
                 keras.callbacks.TensorBoard(str(tmp_path / "logs"))]
    assert _fit(_model(), callbacks).epoch == [2, 3]
    assert not backup.exists()  # deleted at the end of training, as Keras does
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["3.weights.h5", "4.weights.h5"]
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))


def test_tfopt_writers_write_on_the_chief_only(tmp_path, non_chief):
    flatbuffer = tfopt.export.to_tflite(_model(), path=tmp_path / "model.tflite")
    assert flatbuffer[4:8] == b"TFL3" and not (tmp_path / "model.tflite").exists()
    assert tfopt.callbacks.LRFinder().plot(tmp_path / "lr.png") == tmp_path / "lr.png"
    assert not (tmp_path / "lr.png").exists()
