"""`MultiWorkerMirroredStrategy`: TensorFlow's strategy, with what Keras 3.15 needs to train under it.

On TensorFlow 2.21 + Keras 3.15, `model.fit` under `tf.distribute.MultiWorkerMirroredStrategy` fails for any model
in two places of Keras's TensorFlow trainer, and Keras's `BackupAndRestore`, `ModelCheckpoint` and `TensorBoard`
write from every worker to the same files. Making the strategy here patches those places of Keras once, in this
process (never on `import tfopt`); each patch changes Keras only under a multi-worker strategy (see
`tfopt/distribute/_trainer.py` and `_callbacks.py`). The patches were checked on Keras 3.15; on another Keras
version they are not applied and a warning says so.

```python
strategy = tfopt.distribute.MultiWorkerMirroredStrategy()   # instead of tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = make_model(); model.compile(...)
model.fit(...)                                               # unchanged, on every worker
```

Example:
    >>> import tfopt
    >>> strategy = tfopt.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: a one-worker cluster
    >>> strategy.num_replicas_in_sync
    1
"""

import warnings

import keras
import tensorflow as tf

from tfopt.distribute import _callbacks, _trainer, chief

CHECKED_KERAS = "3.15"  # the Keras minor version the patches were written and tested against


def patch_keras():
    """Applies the patches once if this is the Keras version they were checked on; returns whether it is."""
    if not keras.version().startswith(CHECKED_KERAS + "."):
        warnings.warn(
            f"tfopt.distribute: Keras {keras.version()} is not the version tfopt's multi-worker fixes were checked on "
            f"(Keras {CHECKED_KERAS}.x), so they are not applied: `fit` under the strategy runs as this Keras has it, "
            "and Keras's BackupAndRestore, ModelCheckpoint and TensorBoard write from every worker.",
            RuntimeWarning, stacklevel=3,
        )
        return False
    _trainer.fix_symbolic_build()
    _trainer.fix_mean_reduction()
    _callbacks.write_from_chief_only()
    return True


def MultiWorkerMirroredStrategy(cluster_resolver=None, communication_options=None):  # named as TensorFlow's class
    """`tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver, communication_options)`, with Keras 3.15 patched
    so that `fit`, `evaluate` and `predict` work under it and Keras's checkpoint and TensorBoard callbacks write from
    the chief only.

    Make it first thing in the program, as TensorFlow's (the workers' collective ops are configured before any
    other TensorFlow op runs). It also becomes the strategy `tfopt.distribute.is_chief()` asks outside any scope.

    Args:
        cluster_resolver, communication_options: as `tf.distribute.MultiWorkerMirroredStrategy`'s. Default to None
            (the cluster comes from the `TF_CONFIG` environment variable).

    Raises:
        ValueError: if Keras does not run on the TensorFlow backend.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "tfopt.distribute.MultiWorkerMirroredStrategy: Keras must run on the TensorFlow backend. "
            f"Received: KERAS_BACKEND={keras.backend.backend()!r}"
        )
    patch_keras()
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=cluster_resolver, communication_options=communication_options
    )
    chief.remember(strategy)
    return strategy
