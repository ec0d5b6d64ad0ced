"""`GradientMonitor`: each layer's gradient norm, weight norm and update-to-weight ratio, recorded in the train step."""

import os

import numpy as np
import tensorflow as tf

from tfopt import _checks, _compat, _plotting
from tfopt.callbacks import _gradient_probe
from tfopt.callbacks._gradient_probe import QUANTITIES

_TITLES = {"gradient_norm": "gradient norm ||g||", "weight_norm": "weight norm ||w||",
           "update_ratio": "update-to-weight ratio ||Δw|| / ||w||"}


def _per_execution_message(every, per_execution):
    return (f"GradientMonitor: argument `every` must be >= the steps the model runs per train function call "
            f"(steps_per_execution={per_execution}): one record per call. Received: every={every}")


class GradientMonitor(_compat.Callback):
    """Records, every `every` steps, each layer's gradient norm, weight norm and update-to-weight ratio.

    These are what to look at when a learning rate or an optimizer misbehaves: vanishing or exploding gradients, a
    layer whose weights grow without bound, updates far above ~1e-3 of the weights (the rate is too high) or far
    below (too low). They are computed inside the compiled train step, from the gradient the optimizer applies: no
    second forward or backward pass, and nothing but a `tf.cond` and a counter on the steps it skips.

    ```python
    on steps s with s % every == 0 (s counts optimizer steps, starting at optimizer.iterations):
        g = the applied gradient: summed over replicas (the cross-replica mean), loss scale divided out
        gradient_norm[layer] = sqrt(sum over the layer's trainable variables of sum(g ** 2))
        weight_norm[layer]   = sqrt(sum(w ** 2))                  # w before the step
        update_ratio[layer]  = sqrt(sum((w_after - w) ** 2)) / weight_norm[layer]
    ```

    A layer is the layer holding the variable; in nested models its name is a path (`"block/dense"`); weights a
    model holds itself are listed under the model's name. The records are kept on the callback (`steps`,
    `gradient_norms`, `weight_norms`, `update_ratios`), reset at the start of each `fit`. During `fit` the model's
    optimizer is wrapped on that instance (Keras 3: `apply`; tf_keras: `apply_gradients`) and the train function
    traced anew (once: later fits of the same compiled model reuse that trace); both are put back when `fit` ends,
    also if a train step raises. The callback keeps a float32 copy of the monitored weights on the device (for the
    update ratio) and reads a record on the host once per recorded step. With `gradient_accumulation_steps`, each
    micro-batch is a step: its gradient is the micro-batch's, its update ratio 0 until the accumulated update.

    Args:
        every: record every `every`-th step, an integer >= 1. Defaults to 10.
        layers: names (paths) of the layers to record, or None for every layer with trainable weights. An unknown
            name raises at the start of `fit`, listing the valid ones. Defaults to None.
        log_dir: a directory to write TensorBoard summaries to on recorded steps (a scalar per layer and quantity,
            `gradient_norm/<layer>`, and a histogram per quantity over the layers, `<quantity>_over_layers`), or
            None. Defaults to None.

    Example:
        >>> import keras, numpy as np, tfopt
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden"),
        ...                           keras.layers.Dense(1, name="out")])
        >>> model.compile(keras.optimizers.SGD(0.01), "mse")
        >>> monitor = tfopt.callbacks.GradientMonitor(every=2)
        >>> _ = model.fit(np.ones((32, 4)), np.ones((32, 1)), batch_size=8, verbose=0, callbacks=[monitor])
        >>> monitor.steps, list(monitor.gradient_norms)
        ([0, 2], ['hidden', 'out'])
        >>> monitor.update_ratios["out"].shape
        (2,)
    """

    def __init__(self, every=10, layers=None, log_dir=None):
        super().__init__()
        self.every = _checks.integer("GradientMonitor", "every", every, low=1)
        if layers is not None:
            _checks.satisfies(
                "GradientMonitor", "layers", layers,
                isinstance(layers, (list, tuple)) and len(layers) > 0 and all(isinstance(n, str) for n in layers),
                "None or a non-empty list of layer names", TypeError,
            )
            layers = list(layers)
        self.layers = layers
        self.log_dir = _checks.instance("GradientMonitor", "log_dir", log_dir, (type(None), str, os.PathLike),
                                        "None or a directory path")
        self.steps = []
        self._names = []
        self._rows = []
        self._probe = None
        self._writer = None
        self._saved_train_function = None
        self._traced = None  # (what it was traced for, probe, monitored train function): kept across fits
        self._call_start = 0
        self._last_batch = None

    def __deepcopy__(self, memo):
        return type(self)(self.every, self.layers, self.log_dir)

    # --- records -----------------------------------------------------------------------------------------------------

    def _quantity(self, index):
        values = np.array(self._rows).reshape(len(self._rows), len(QUANTITIES), len(self._names))
        return {name: values[:, index, row] for row, name in enumerate(self._names)}

    @property
    def gradient_norms(self):
        """{layer: np.ndarray of its gradient norm at each of `steps`}."""
        return self._quantity(0)

    @property
    def weight_norms(self):
        """{layer: np.ndarray of its weight norm before each of `steps`}."""
        return self._quantity(1)

    @property
    def update_ratios(self):
        """{layer: np.ndarray of ||w_after - w_before|| / ||w_before|| at each of `steps`}."""
        return self._quantity(2)

    # --- fit ---------------------------------------------------------------------------------------------------------

    def _groups(self):
        groups = _gradient_probe.layer_groups(self.model)
        if not groups:
            raise ValueError("GradientMonitor: the model has no trainable weights at the start of `fit`. Build the "
                             "model (give it an `Input`) and leave some layers trainable.")
        if self.layers is None:
            return groups
        unknown = [name for name in self.layers if name not in groups]
        if unknown:
            raise ValueError(
                f"GradientMonitor: argument `layers` must name layers with trainable weights, one of "
                f"{', '.join(repr(name) for name in groups)}. Received: layers={self.layers!r} (unknown: "
                f"{', '.join(repr(name) for name in unknown)})"
            )
        return {name: groups[name] for name in groups if name in self.layers}

    def on_train_begin(self, logs=None):
        optimizer = self.optimizer
        _gradient_probe.remove_stale_probe(optimizer)
        per_execution = getattr(self.model, "steps_per_execution", 1)
        if isinstance(per_execution, int) and per_execution > self.every:
            raise ValueError(_per_execution_message(self.every, per_execution))
        groups = self._groups()
        self._names, self._rows, self.steps = list(groups), [], []
        plain = self.model.train_function
        key = (self.model, optimizer, plain, *(v for group in groups.values() for v in group))
        cached = self._traced[0] if self._traced is not None else ()
        if len(cached) != len(key) or any(a is not b for a, b in zip(cached, key)):  # else reuse the trace
            probe = _gradient_probe.GradientProbe(groups, self.every, _compat.is_legacy(self.model))
            self._traced = (key, probe, None)
        _, self._probe, monitored = self._traced
        self._call_start, self._last_batch = int(optimizer.iterations.numpy()), None
        self._probe.step.assign(self._call_start)
        self._writer = None if self.log_dir is None else tf.summary.create_file_writer(os.fspath(self.log_dir))
        self._saved_train_function = plain
        self._probe.install(optimizer)
        if monitored is None:
            self.model.make_train_function(force=True)  # traced anew, with the probe in it
            monitored = self.model.train_function
            self._traced = (key, self._probe, monitored)
        self.model.train_function = self._guarded(monitored)

    def _guarded(self, train_function):
        """`train_function` that puts the optimizer and the model's train function back if a step raises."""

        def guarded(*args, **kwargs):
            try:
                return train_function(*args, **kwargs)
            except (StopIteration, tf.errors.OutOfRangeError):
                raise  # the end of the data: fit catches it and carries on
            except BaseException:
                self._restore()
                raise

        return guarded

    # The host reads a record at the start of the next train function call, or at the epoch's end; never in
    # `on_train_batch_end`: a callback overriding it makes Keras 3 convert every step's logs to NumPy (a device sync
    # each step) and turns off its asynchronous dispatch of batch-end hooks.

    def on_epoch_begin(self, epoch, logs=None):
        self._last_batch = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._last_batch is not None:
            self._collect(self._call_start + batch - self._last_batch)
        self._last_batch = batch

    def on_epoch_end(self, epoch, logs=None):
        if self._last_batch is not None:  # the last call may run fewer steps than steps_per_execution: ask
            self._collect(int(self._probe.step.numpy()))
        self._last_batch = None

    def _collect(self, end):
        """The last call ran the steps from `_call_start` to `end`: reads its record if it made one."""
        recorded = [step for step in range(self._call_start, end) if step % self.every == 0]
        self._call_start = end
        if len(recorded) > 1:
            self._restore()
            raise ValueError(_per_execution_message(self.every, end - recorded[0]))
        if recorded:
            self._rows.append(self._probe.read())
            self.steps.append(recorded[0])
            self._write(recorded[0])

    def _write(self, step):
        if self._writer is None:
            return
        values = self._rows[-1]
        with self._writer.as_default(step=step):
            for index, quantity in enumerate(QUANTITIES):
                for row, name in enumerate(self._names):
                    tf.summary.scalar(f"{quantity}/{name}", values[index, row])
                tf.summary.histogram(f"{quantity}_over_layers", values[index])

    def on_train_end(self, logs=None):
        self._restore()

    def _restore(self):
        if self._probe is not None:
            self._probe.remove()
            self.model.train_function = self._saved_train_function
        self._saved_train_function = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # --- plot --------------------------------------------------------------------------------------------------------

    def plot(self, path):
        """Writes a PNG with one heat map per quantity (layers × recorded steps, log color scale). Returns path."""
        if not self.steps:
            raise ValueError("GradientMonitor: nothing recorded yet; `plot` needs a `fit` with this callback first.")
        from matplotlib.colors import LogNorm

        figure, _ = _plotting.new_figure(size=(8, 2.2 + 1.2 * len(QUANTITIES) * max(2, 0.35 * len(self._names))))
        figure.clear()
        panels = figure.subplots(len(QUANTITIES), 1, sharex=True)
        for axes, quantity, values in zip(panels, QUANTITIES, (self.gradient_norms, self.weight_norms,
                                                              self.update_ratios)):
            grid = np.array([values[name] for name in self._names])
            grid = np.ma.masked_where(~(np.isfinite(grid) & (grid > 0)), grid)
            positive = grid.compressed()
            norm = LogNorm(positive.min(), positive.max()) if positive.size else None
            image = axes.imshow(grid, aspect="auto", interpolation="nearest", norm=norm, cmap="viridis")
            figure.colorbar(image, ax=axes)
            axes.set_title(_TITLES[quantity], fontsize="medium")
            axes.set_yticks(range(len(self._names)), self._names, fontsize="small")
        ticks = np.unique(np.linspace(0, len(self.steps) - 1, min(len(self.steps), 8)).round().astype(int))
        panels[-1].set_xticks(ticks, [str(self.steps[i]) for i in ticks])
        panels[-1].set_xlabel("step")
        return _plotting.save_png(figure, path)
