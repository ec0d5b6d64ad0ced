"""`UpdatePruningStep`: the callback a pruned model is fit with."""

from tfopt import _compat
from tfopt.prune.wrapper import pruned_layers


class UpdatePruningStep(_compat.Callback):
    """Lets the pruned layers advance their pruning schedule, one step per training batch.

    Fit every model from `tfopt.prune.prune_low_magnitude` with it. On a Keras 3 model, each
    `tfopt.prune.PruneLowMagnitude` layer counts the batches and updates its mask inside the compiled training
    step (no per-batch Python work, no retracing); this callback enables that for the length of `fit`. Without
    it, the first training step raises a `ValueError` (when `fit` traces the step). The pruning step is a
    variable of the model, so it continues across `fit` calls, `.keras` save/load and `BackupAndRestore`.

    On a tf_keras model pruned by tfmot, it runs tfmot's `UpdatePruningStep` inside the same `fit`.

    ```python
    on_train_begin: every PruneLowMagnitude layer may advance (else: ValueError, the model has none)
    each training batch, in the graph: pruning_step += 1; masks updated at the schedule's update steps
    on_train_end:   the layers are released
    ```

    Example:

    >>> import keras, numpy as np, tfopt
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> pruned = tfopt.prune.prune_low_magnitude(model, tfopt.prune.ConstantSparsity(0.5, 0, frequency=1))
    >>> pruned.compile("adam", "mse")
    >>> history = pruned.fit(np.ones((8, 8)), np.ones((8, 4)), verbose=0,
    ...                      callbacks=[tfopt.prune.UpdatePruningStep()])
    >>> tfopt.prune.sparsity(pruned)[0].sparsity
    0.5
    """

    def __init__(self):
        super().__init__()
        self._layers = []
        self._legacy = None

    def on_train_begin(self, logs=None):
        if _compat.is_legacy(self.model):
            from tfopt.prune import tfmot as _tfmot

            self._legacy = _tfmot.update_pruning_step()
            self._legacy.set_model(self.model)
            self._legacy.on_train_begin(logs)
            return
        self._layers = pruned_layers(self.model)
        if not self._layers:
            raise ValueError(
                f"{type(self).__name__}: the model has no pruned layer. Fit the model returned by "
                "`tfopt.prune.prune_low_magnitude`, or leave this callback out."
            )
        for layer in self._layers:
            layer.updates_enabled = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._legacy is not None:
            self._legacy.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._legacy is not None:
            self._legacy.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if self._legacy is not None:
            self._legacy.on_train_end(logs)
        for layer in self._layers:
            layer.updates_enabled = False
        self._layers, self._legacy = [], None  # a deep copy of the callback should not hold the model
