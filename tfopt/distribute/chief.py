"""Writing from the chief only: `is_chief` and `chief_path`.

Under a multi-worker strategy every worker runs the same program, so every worker reaches each save. The chief (task
`chief`, or worker 0 when the cluster has none) writes the real file; the others must still run the save (it may
read values that need all workers, such as a metric's `SyncOnRead` variables), so they write into a temporary folder
that is deleted afterwards, as tf_keras did.

Example:
    >>> import tfopt
    >>> tfopt.distribute.is_chief()  # no multi-worker strategy: this process is the chief
    True
    >>> with tfopt.distribute.chief_path("/tmp/tfopt-model.weights.h5") as path:
    ...     print(path)
    /tmp/tfopt-model.weights.h5
"""

import contextlib
import os
import shutil
import tempfile

import tensorflow as tf

_made = []  # the strategy tfopt.distribute.MultiWorkerMirroredStrategy made last, if any


def remember(strategy):
    """Makes `strategy` the one `is_chief()` asks when called outside any strategy's scope."""
    _made[:] = [strategy]


def is_chief(strategy=None):
    """True if this process should write files: the chief of a multi-worker strategy, or any other process.

    Args:
        strategy: a `tf.distribute.Strategy` (a model's `distribute_strategy`, say). Defaults to the strategy of the
            current scope, else the last one made by `tfopt.distribute.MultiWorkerMirroredStrategy`, else none (True).
    """
    if strategy is None:
        strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() or not _made else _made[0]
    return strategy.extended.should_checkpoint


@contextlib.contextmanager
def chief_path(path, strategy=None):
    """A context giving the path to write `path` to: `path` itself on the chief, elsewhere a path of the same name
    in a temporary folder that is deleted when the context ends.

    ```python
    with tfopt.distribute.chief_path("model.keras") as path:
        model.save(path)          # every worker saves; only the chief's file stays
    ```

    Args:
        path: the file or folder the chief writes.
        strategy: as for `is_chief`.
    """
    if is_chief(strategy):
        yield path
        return
    folder = tempfile.mkdtemp(prefix="tfopt-worker-")
    try:
        yield os.path.join(folder, os.path.basename(os.path.normpath(os.fspath(path))))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
