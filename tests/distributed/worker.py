"""One worker of a test cluster: `python -m worker <scenario> <output folder> [arguments]` (see cluster.py).

Each scenario makes its strategy before anything else touches TensorFlow (the collective ops of a multi-worker
strategy must be configured before the runtime starts), runs, and writes its results into
`<output folder>/worker<index>/`.
"""

import json
import os
import pathlib
import signal
import sys

import numpy as np
import tensorflow as tf

INDEX = json.loads(os.environ["TF_CONFIG"])["task"]["index"]


def _folder(output):
    folder = pathlib.Path(output) / f"worker{INDEX}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _append(path, line):
    with open(path, "a") as file:
        file.write(f"{line}\n")


def _fit_or_error(strategy):
    import features

    try:
        features.keras_adam(strategy.scope())
    except Exception as error:  # noqa: BLE001 - the error is the result
        return f"{type(error).__name__}: {error}"
    return None


def keras_fixes(output):
    """Plain Keras `fit` under TensorFlow's strategy: with no fix, with the first, with both."""
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from tfopt.distribute import _trainer

    errors = {"none": _fit_or_error(strategy)}
    _trainer.fix_symbolic_build()
    errors["symbolic_build"] = _fit_or_error(strategy)
    _trainer.fix_mean_reduction()
    errors["both"] = _fit_or_error(strategy)
    (_folder(output) / "errors.json").write_text(json.dumps(errors))


def _train(strategy, output, names):
    import features as module

    for name in names:
        feature = {**module.FEATURES, **module.LEGACY_FEATURES}[name]
        np.savez(_folder(output) / f"{name}.npz", **feature(strategy.scope()))


def features(output, *names):
    """Trains each named feature of features.py under `tfopt.distribute.MultiWorkerMirroredStrategy`."""
    import tfopt

    _train(tfopt.distribute.MultiWorkerMirroredStrategy(), output, names)


def tf_features(output, *names):
    """Trains each named feature of features.py under `tf.distribute.MultiWorkerMirroredStrategy` (tf_keras's own
    multi-worker support, for the legacy features)."""
    _train(tf.distribute.MultiWorkerMirroredStrategy(), output, names)


def resume(output, epochs, kill_epoch):
    """`features.resumable` with the checkpoint callbacks writing into `<output>/shared`; with `kill_epoch` >= 0,
    worker 1 kills itself with SIGKILL after the second batch of that epoch."""
    import tempfile

    import tfopt

    strategy = tfopt.distribute.MultiWorkerMirroredStrategy()
    import features
    import keras

    folder, shared = _folder(output), pathlib.Path(output) / "shared"
    (folder / "tmp").mkdir(exist_ok=True)
    tempfile.tempdir = str(folder / "tmp")  # a non-chief's throwaway copies go here, to be deleted
    _append(folder / "pids.txt", os.getpid())
    epochs, kill_epoch = int(epochs), int(kill_epoch)

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            _append(folder / "epochs.txt", f"begin {epoch}")

        def on_epoch_end(self, epoch, logs=None):
            _append(folder / "epochs.txt", f"end {epoch}")

        def on_train_batch_end(self, batch, logs=None):
            if INDEX == 1 and self.epoch == kill_epoch and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [
        keras.callbacks.BackupAndRestore(str(shared / "backup")),
        keras.callbacks.ModelCheckpoint(str(shared / "checkpoints" / "epoch{epoch}.weights.h5"),
                                        save_weights_only=True),
        keras.callbacks.TensorBoard(str(shared / "logs")),
        Record(),
    ]
    model = features.resumable(strategy.scope(), epochs, callbacks)
    np.savez(folder / "resumable.npz", **features.weights(model))


SCENARIOS = {"keras_fixes": keras_fixes, "features": features, "tf_features": tf_features, "resume": resume}

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    SCENARIOS[sys.argv[1]](*sys.argv[2:])
