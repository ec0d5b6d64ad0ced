"""Keras 3.15's `BackupAndRestore`, `ModelCheckpoint` and `TensorBoard`, made to write from the chief only.

Keras 3 has no chief: under a multi-worker strategy each of these writes from every worker to the same path, and two
h5 writers collide (`BlockingIOError: unable to lock file`). Each save still runs on every worker (it may read
values all workers must take part in), but a non-chief's path attributes point, for the time of the save, into a
temporary folder that `chief.chief_path` deletes afterwards, as tf_keras did. Every worker restores from the chief's
backup: `BackupAndRestore` reads the path it was given. On the chief, and outside multi-worker strategies, the
callbacks run unchanged.
"""

import contextlib
import os
import weakref

import keras

from tfopt.distribute import chief

_BACKUP_PATHS = ("backup_dir", "_weights_path", "_training_metadata_path", "_prev_weights_path",
                 "_prev_training_metadata_path")
_log_folders = weakref.WeakKeyDictionary()  # TensorBoard callback -> finalizer deleting a non-chief's log folder


@contextlib.contextmanager
def _moved(callback, names, root, new_root):
    """Points each path attribute in `names` (under `root`) at the same place under `new_root` for the context."""
    saved = {name: getattr(callback, name) for name in names}
    for name, path in saved.items():
        setattr(callback, name, os.path.normpath(os.path.join(new_root, os.path.relpath(path, root))))
    try:
        yield
    finally:
        for name, path in saved.items():
            setattr(callback, name, path)


@contextlib.contextmanager
def _writing(callback, names, root, strategy):
    with chief.chief_path(root, strategy) as new_root:
        if new_root == root:  # the chief, or no multi-worker strategy
            yield
            return
        with _moved(callback, names, root, new_root):
            yield


def _backup_save(original):
    def _save_model(self):
        with _writing(self, _BACKUP_PATHS, self.backup_dir, self.model.distribute_strategy):
            original(self)

    return _save_model


def _backup_end(original):
    def on_train_end(self, logs=None):
        if chief.is_chief(self.model.distribute_strategy):  # the chief deletes its backup; the others wrote none
            original(self, logs)

    return on_train_end


def _checkpoint_save(original):
    def _save_model(self, epoch, batch, logs):
        with _writing(self, ("filepath",), self.filepath, self.model.distribute_strategy):
            original(self, epoch, batch, logs)

    return _save_model


def _tensorboard_set_model(original):
    def set_model(self, model):
        _close_log_folder(self)
        stack = contextlib.ExitStack()
        log_dir = stack.enter_context(chief.chief_path(self.log_dir, model.distribute_strategy))
        with _moved(self, ("log_dir",), self.log_dir, log_dir):  # set_model derives every write path from log_dir
            original(self, model)
        _log_folders[self] = weakref.finalize(self, stack.close)

    return set_model


def _close_log_folder(callback):
    finalizer = _log_folders.pop(callback, None)
    if finalizer is not None:
        finalizer()


def _tensorboard_end(original):
    def on_train_end(self, logs=None):
        original(self, logs)  # closes the writers
        _close_log_folder(self)

    return on_train_end


_PATCHES = (
    (keras.callbacks.BackupAndRestore, "_save_model", _backup_save),
    (keras.callbacks.BackupAndRestore, "on_train_end", _backup_end),
    (keras.callbacks.ModelCheckpoint, "_save_model", _checkpoint_save),
    (keras.callbacks.TensorBoard, "set_model", _tensorboard_set_model),
    (keras.callbacks.TensorBoard, "on_train_end", _tensorboard_end),
)


def write_from_chief_only():
    """Patches the three callbacks (once)."""
    for cls, name, wrap in _PATCHES:
        original = vars(cls)[name]
        if not getattr(original, "tfopt_fix", False):
            patched = wrap(original)
            patched.tfopt_fix = True
            setattr(cls, name, patched)
