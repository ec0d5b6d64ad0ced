"""The learning-rate range test (Smith 2017; fastai's `lr_find`): `LRFinder` and the one-liner `find_lr`."""

import math

import numpy as np

from tfopt import _checks, _compat, _plotting


class _Snapshot:
    """Every weight of a model and every state variable of its optimizer, to put back bit for bit."""

    def __init__(self, model):
        _compat.build_optimizer(model)
        self.model = model
        self.variables = list(model.weights) + _compat.optimizer_variables(model.optimizer)
        self.values = [np.array(v.numpy(), copy=True) for v in self.variables]
        self.learning_rate = _compat.learning_rate(model.optimizer)

    def restore(self):
        for variable, value in zip(self.variables, self.values):
            variable.assign(value)
        _compat.set_learning_rate(self.model.optimizer, self.learning_rate)


class LRFinder(_compat.Callback):
    """Sweeps the learning rate exponentially over a few steps and records the loss at each rate.

    The LR range test: train from `start_lr` to `end_lr`, one rate per batch, and look for the rates at which the
    loss falls fastest. The sweep stops early once the smoothed loss exceeds `stop_factor` times its best value.
    When training ends, the model's weights, the optimizer's slots, step count and learning rate are put back
    exactly as they were, so the test costs nothing but time. `find_lr` runs it in one call.

    ```python
    lr_i = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))
    avg_i = smoothing * avg_{i-1} + (1 - smoothing) * loss_i;  smoothed_i = avg_i / (1 - smoothing ** (i + 1))
    stop when i == num_steps - 1, smoothed_i > stop_factor * min(smoothed) or loss_i is not finite
    ```

    Args:
        start_lr: the first rate, > 0. Defaults to 1e-7.
        end_lr: the last rate, > start_lr. Defaults to 10.
        num_steps: the number of batches in the sweep, >= 2. Defaults to 100.
        smoothing: the factor of the loss's exponential moving average, in [0, 1). Defaults to 0.98.
        stop_factor: the divergence threshold, > 1. Defaults to 4.
        verbose: 1 prints where the sweep stopped and the suggestion. Defaults to 0.

    Attributes:
        lrs, losses: the rates tried and the smoothed losses (lists of floats); `raw_losses`: unsmoothed.

    Example:
        >>> import keras, numpy as np, tfopt
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.01), "mse")
        >>> finder = tfopt.callbacks.find_lr(model, np.ones((320, 4)), np.ones((320, 1)), num_steps=20, end_lr=1.)
        >>> 0 < finder.suggestion() <= 1.0
        True

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
    """

    def __init__(self, start_lr=1e-7, end_lr=10.0, num_steps=100, smoothing=0.98, stop_factor=4.0, verbose=0):
        super().__init__()
        self.start_lr = _checks.number("LRFinder", "start_lr", start_lr, low=0, closed="neither")
        self.end_lr = _checks.number("LRFinder", "end_lr", end_lr, low=0, closed="neither")
        _checks.less("LRFinder", "start_lr", self.start_lr, "end_lr", self.end_lr)
        self.num_steps = _checks.integer("LRFinder", "num_steps", num_steps, low=2)
        self.smoothing = _checks.fraction("LRFinder", "smoothing", smoothing)
        self.stop_factor = _checks.number("LRFinder", "stop_factor", stop_factor, low=1, closed="neither")
        self.verbose = _checks.integer("LRFinder", "verbose", verbose, low=0)
        self.lrs, self.losses, self.raw_losses = [], [], []
        self._snapshot = None
        self._average = 0.0

    def rate(self, step):
        """The learning rate the sweep uses at `step` (0-based)."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.num_steps - 1))

    def on_train_begin(self, logs=None):
        self._require_float_learning_rate()
        self.lrs, self.losses, self.raw_losses = [], [], []
        self._average = 0.0
        self._snapshot = _Snapshot(self.model)

    def on_train_batch_begin(self, batch, logs=None):
        self.model.reset_metrics()  # so the batch logs hold this batch's loss, not the epoch's running mean
        _compat.set_learning_rate(self.optimizer, self.rate(len(self.lrs)))

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", math.nan))
        step = len(self.lrs)
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        smoothed = self._average / (1 - self.smoothing ** (step + 1))
        self.lrs.append(self.rate(step))
        self.raw_losses.append(loss)
        self.losses.append(smoothed)
        diverged = not math.isfinite(smoothed) or smoothed > self.stop_factor * min(self.losses)
        if diverged or step + 1 >= self.num_steps:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.restore()
        if self.verbose and self.lrs:
            print(f"LRFinder: swept {len(self.lrs)} rates up to {self.lrs[-1]:.3g}; suggestion {self.suggestion():.3g}")

    def restore(self):
        """Puts the weights, optimizer state and learning rate back as they were before the sweep."""
        if self._snapshot is not None:
            self._snapshot.restore()
            self._snapshot = None

    def suggestion(self):
        """A learning rate to train with: where the smoothed loss falls fastest against log lr, but at most a
        tenth of the rate of lowest loss (the smoothed loss lags behind, so the steepest point alone can sit next
        to divergence)."""
        losses = np.asarray(self.losses, dtype="float64")
        finite = np.isfinite(losses)
        if finite.sum() < 3:
            raise ValueError(
                f"LRFinder: the sweep recorded {int(finite.sum())} finite losses; at least 3 are needed for a "
                "suggestion. Run it with more steps or a smaller `start_lr`."
            )
        lrs = np.asarray(self.lrs)[finite]
        losses = losses[finite]
        lowest = int(np.argmin(losses))
        usable = max(lowest + 1, 3)
        slopes = np.gradient(losses[:usable], np.log(lrs[:usable]))
        return float(min(lrs[int(np.argmin(slopes))], lrs[lowest] / 10))

    def plot(self, path):
        """Writes a PNG of smoothed loss against learning rate (log scale), marking the suggestion. Returns path."""
        figure, axes = _plotting.new_figure()
        axes.plot(self.lrs, self.losses)
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("smoothed loss")
        suggestion = self.suggestion()
        axes.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggestion {suggestion:.2g}")
        axes.legend()
        return _plotting.save_png(figure, path)


def find_lr(model, x, y=None, batch_size=32, start_lr=1e-7, end_lr=10.0, num_steps=100, smoothing=0.98,
            stop_factor=4.0, verbose=0):
    """Runs the LR range test on a compiled model and returns the `LRFinder` with its results.

    `x`, `y` and `batch_size` are as for `model.fit` (`x` may be a `tf.data.Dataset` of batches). The model's
    weights and optimizer state are exactly as before when it returns, even if training raises.

    Example:
        >>> import keras, numpy as np, tfopt
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.01), "mse")
        >>> finder = tfopt.callbacks.find_lr(model, np.ones((320, 4)), np.ones((320, 1)), num_steps=20)
        >>> len(finder.lrs) <= 20
        True
    """
    finder = LRFinder(start_lr, end_lr, num_steps, smoothing, stop_factor, verbose)
    if getattr(model, "optimizer", None) is None:
        raise ValueError("find_lr: the model must be compiled (`model.compile(optimizer=..., loss=...)`) first.")
    if hasattr(x, "cardinality"):
        steps_per_epoch = int(x.cardinality())
        fit_kwargs = {"shuffle": False}  # a dataset shuffles itself
    else:
        steps_per_epoch = math.ceil(len(x) / batch_size)
        fit_kwargs = {"y": y, "batch_size": batch_size}
    if steps_per_epoch < 1:
        received = "no batches" if steps_per_epoch == 0 else (
            "a dataset of unknown length; give it one with `.apply(tf.data.experimental.assert_cardinality(n))`"
        )
        raise ValueError(f"find_lr: argument `x` must hold at least one batch of known size. Received: {received}.")
    epochs = math.ceil(num_steps / steps_per_epoch)
    try:
        model.fit(x, epochs=epochs, callbacks=[finder], verbose=0, **fit_kwargs)
    finally:
        finder.restore()
    return finder
