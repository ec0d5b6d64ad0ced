"""The learning-rate range test (Smith 2017; fastai's `lr_find`): `LRFinder` and the one-liner `find_lr`."""

import math

import keras
import numpy as np

from tfopt import _checks, _compat, _plotting, distribute


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


def _start_index(num_steps):
    """The step whose smoothed loss stands for the loss before training: a tenth into the sweep (fastai skips the
    same), so that it averages several batches taken at rates too small to train."""
    return max(2, num_steps // 10)


def _window(num_steps):
    """How many of the last batch losses say where the loss is now (the smoothed loss lags the sweep)."""
    return max(3, num_steps // 20)


def _fall(start, loss):
    """How far `loss` is under `start`, as a fraction of `start`."""
    return (start - loss) / max(abs(start), 1e-12)


class LRFinder(_compat.Callback):
    """Sweeps the learning rate exponentially over a few steps and records the loss at each rate.

    The LR range test: train from `start_lr` to `end_lr`, one rate per batch, and look for the rates at which the
    loss falls fastest. When training ends, the model's weights, the optimizer's slots, step count and learning
    rate are put back exactly as they were, so the test costs nothing but time. `find_lr` runs it in one call.

    ```python
    lr_i = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))      # set before batch i; `lrs` records the
    avg_i = smoothing * avg_{i-1} + (1 - smoothing) * loss_i            # rate the optimizer actually ran with
    smoothed_i = avg_i / (1 - smoothing ** (i + 1))
    start = smoothed_{num_steps // 10};  fall(x) = (start - x) / |start|
    stop when i == num_steps - 1, smoothed_i is not finite, smoothed_i > stop_factor * min(smoothed),
        or (dead network) fall(min(smoothed)) >= min_fall and fall(mean of the last num_steps // 20 losses) < min_fall
    ```

    The last rule catches a network whose ReLUs die at a large rate: it then predicts a constant, and its loss goes
    back to about the starting loss and stays there instead of growing. (The fall must also exceed the batch noise.)

    `suggestion()` is fastai's "minimum" rule behind a check that the model learned at all:

    ```python
    end = len(smoothed) - num_steps // 20         # the last points lag past divergence (fastai drops 5 of 100)
    if fall(min(smoothed[start:end])) < min_fall: raise ValueError  # "no suggestion ... try num_steps, ..."
    suggestion = lrs[argmin(smoothed[start:end])] / 10     # >= lrs[start], so never the sweep's first rate
    ```

    The smoothed loss lags the sweep by tens of steps (about two decades of rate in the default sweep), so its
    minimum lies past the edge of divergence; a tenth of its rate falls well before. tools/lr_suggestion_study.py chose
    this rule over fastai's valley and steep and tfopt 0.1.0's (steepest point, at most a tenth of the minimum) on
    digits: 10 seeds of a plain CNN, a small CNN (Conv2D 16 + Dense) and a BatchNorm CNN, each with SGD(momentum=0.9)
    and Adam, trained 5 epochs with `OneCyclePolicy(max_lr=suggestion)`. It failed (< 50% test accuracy) in none of
    its 40 suggestions (mean accuracy 0.95-0.99 per model, within a point of the best rule), and neither did three
    times its rate; valley trained 2-8 points worse, steep failed 18 of 60 runs, 0.1.0's rule 35 of 60. On the plain
    CNN the loss did not fall over the default sweep on any seed, so it raises there (every rule's guess failed with
    SGD).

    Args:
        start_lr: the first rate, > 0. Defaults to 1e-7.
        end_lr: the last rate, > start_lr. Defaults to 10.
        num_steps: the number of batches in the sweep, >= 2. Defaults to 100.
        smoothing: the factor of the loss's exponential moving average, in [0, 1). Defaults to 0.98.
        stop_factor: the divergence threshold, > 1. Defaults to 4.
        min_fall: the smallest fall of the smoothed loss under the starting loss, as a fraction of it, that counts as
            learning, in (0, 1). Without it `suggestion()` raises. Defaults to 0.05.
        verbose: 1 prints where the sweep stopped and the suggestion (or why there is none). Defaults to 0.

    Attributes:
        lrs, losses: the rates the optimizer used and the smoothed losses (lists of floats); `raw_losses`: unsmoothed.

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

    def __init__(self, start_lr=1e-7, end_lr=10.0, num_steps=100, smoothing=0.98, stop_factor=4.0, min_fall=0.05,
                 verbose=0):
        super().__init__()
        self.start_lr = _checks.number("LRFinder", "start_lr", start_lr, low=0, closed="neither")
        self.end_lr = _checks.number("LRFinder", "end_lr", end_lr, low=0, closed="neither")
        _checks.less("LRFinder", "start_lr", self.start_lr, "end_lr", self.end_lr)
        self.num_steps = _checks.integer("LRFinder", "num_steps", num_steps, low=2)
        self.smoothing = _checks.fraction("LRFinder", "smoothing", smoothing)
        self.stop_factor = _checks.number("LRFinder", "stop_factor", stop_factor, low=1, closed="neither")
        self.min_fall = _checks.number("LRFinder", "min_fall", min_fall, low=0, high=1, closed="neither")
        self.verbose = _checks.integer("LRFinder", "verbose", verbose, low=0)
        self.lrs, self.losses, self.raw_losses = [], [], []
        self._snapshot = None
        self._set_rate = None
        self._average = 0.0

    def rate(self, step):
        """The learning rate the sweep sets at `step` (0-based)."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.num_steps - 1))

    def on_train_begin(self, logs=None):
        self._require_float_learning_rate(
            ", but the sweep sets the rate itself. Compile the model with a float learning rate for the sweep, e.g. "
            "`model.compile(keras.optimizers.SGD(0.01), loss)`, then compile it again with the schedule for training "
            "(with `finder.suggestion()` as its peak rate).")
        self.lrs, self.losses, self.raw_losses = [], [], []
        self._average = 0.0
        self._snapshot = _Snapshot(self.model)
        self._set_rate = _compat.learning_rate_setter(self.optimizer)

    def on_train_batch_begin(self, batch, logs=None):
        self.model.reset_metrics()  # so the batch logs hold this batch's loss, not the epoch's running mean
        self._set_rate(self.rate(len(self.lrs)))

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", math.nan))
        step = len(self.lrs)
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        self.lrs.append(_compat.learning_rate(self.optimizer))  # the rate this step ran with, whoever set it
        self.raw_losses.append(loss)
        self.losses.append(self._average / (1 - self.smoothing ** (step + 1)))
        if self.diverged() or step + 1 >= self.num_steps:
            self.model.stop_training = True

    def diverged(self):
        """Whether the losses recorded so far show divergence (the stop rules above)."""
        smoothed = self.losses[-1]
        if not math.isfinite(smoothed) or smoothed > self.stop_factor * min(self.losses):
            return True
        return self._fall_undone()

    def _fall_undone(self):
        """A real fall, then the last batches' mean loss back within `min_fall` of the start (a dead network).

        The fall must also stand out of the batch-to-batch noise (estimated from successive differences, robust to
        jumps): three standard errors of a mean of `window` batch losses, so a noisy sweep is not stopped by chance.
        """
        start, window = _start_index(self.num_steps), _window(self.num_steps)
        if len(self.losses) <= max(start, window):
            return False
        reference = self.losses[start]
        differences = np.diff(self.raw_losses)
        noise = 1.4826 * np.median(np.abs(differences - np.median(differences))) / math.sqrt(2)
        needed = max(self.min_fall, 3 * noise / math.sqrt(window) / max(abs(reference), 1e-12))
        fallen = _fall(reference, min(self.losses[start:])) >= needed
        return fallen and _fall(reference, float(np.mean(self.raw_losses[-window:]))) < self.min_fall

    def on_train_end(self, logs=None):
        self.restore()
        if self.verbose and self.lrs:
            print(f"LRFinder: swept {len(self.lrs)} rates from {self.lrs[0]:.3g} to {self.lrs[-1]:.3g}; "
                  + self._suggestion_text())

    def _suggestion_text(self):
        try:
            return f"suggestion {self.suggestion():.3g}"
        except ValueError as error:
            return str(error).removeprefix("LRFinder: ")

    def restore(self):
        """Puts the weights, optimizer state and learning rate back as they were before the sweep."""
        if self._snapshot is not None:
            self._snapshot.restore()
            self._snapshot = None

    def _curve(self):
        """The rates and smoothed losses up to the first non-finite loss, and the index of the starting loss."""
        losses = np.asarray(self.losses, dtype="float64")
        finite = int(np.isfinite(losses).sum())
        if finite < 3:
            raise ValueError(
                f"LRFinder: the sweep recorded {finite} finite losses; at least 3 are needed for a suggestion. "
                "Run it with more steps or a smaller `start_lr`."
            )
        end = int(np.argmin(np.isfinite(losses))) if finite < len(losses) else len(losses)
        return np.asarray(self.lrs[:end], dtype="float64"), losses[:end], min(_start_index(self.num_steps), end - 2)

    def _check_fall(self, lrs, losses, start):
        fall = _fall(losses[start], losses[start:].min())
        if fall < self.min_fall:
            raise ValueError(
                f"LRFinder: no suggestion: from {lrs[0]:.3g} to {lrs[-1]:.3g} the smoothed loss fell "
                f"{max(fall, 0):.1%} under its starting value {losses[start]:.4g}, less than `min_fall`="
                f"{self.min_fall:.0%}, so the model did not learn within the sweep. Try more steps (`num_steps`), a "
                "wider range (`start_lr`, `end_lr`), or check the model and its data: a deep network without "
                "normalization may need more steps or another optimizer to start learning."
            )

    def suggestion(self):
        """A learning rate to train with: a tenth of the rate at the lowest smoothed loss (see the class docstring),
        never the sweep's first rate.

        Raises:
            ValueError: if the smoothed loss never fell `min_fall` under its starting value, or fell from the very
                start of the sweep (then no rate of the sweep is known to be safe).
        """
        lrs, losses, start = self._curve()
        end = max(start + 2, len(losses) - _window(self.num_steps))  # the last few points lag past divergence
        self._check_fall(lrs[:end], losses[:end], start)
        rate = lrs[start + int(np.argmin(losses[start:end]))] / 10
        if rate < lrs[start]:
            raise ValueError(
                f"LRFinder: no suggestion: the loss was lowest at {rate * 10:.3g}, less than ten times the rates where "
                f"the sweep began ({lrs[0]:.3g}), so no rate it tried is known to be safe. Start the sweep lower "
                "(`start_lr`)."
            )
        return float(rate)

    def plot(self, path):
        """Writes a PNG of smoothed loss against learning rate (log scale), marking the suggestion if there is one
        (else the reason there is none); under a multi-worker strategy, on the chief only. Returns path."""
        if not distribute.is_chief(getattr(self.model, "distribute_strategy", None)):
            return path
        figure, axes = _plotting.new_figure()
        axes.plot(self.lrs, self.losses)
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("smoothed loss")
        try:
            suggestion = self.suggestion()
        except ValueError:
            axes.set_title("no suggestion: the loss did not fall (see `suggestion()`)", fontsize="medium")
        else:
            axes.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggestion {suggestion:.2g}")
            axes.legend()
        return _plotting.save_png(figure, path)


def _fit_arguments(model, x, y, batch_size, num_steps):
    """`fit`'s arguments for a sweep of `num_steps` batches of `x`: as many epochs as it takes, or, for an infinite
    dataset, `num_steps` batches drawn from it."""
    if hasattr(x, "cardinality"):
        batches = int(x.cardinality())
        if batches == -1:  # tf.data.INFINITE_CARDINALITY
            return {"x": x, "shuffle": False, "epochs": 1, "steps_per_epoch": num_steps}
        kwargs = {"x": x, "shuffle": False}  # a dataset shuffles itself
    elif isinstance(x, keras.utils.PyDataset) or _compat.is_legacy(x):  # or a tf_keras.utils.Sequence
        batches, kwargs = len(x), {"x": x}
    elif isinstance(x, (np.ndarray, list, tuple, dict)) or hasattr(x, "__array__"):
        if y is None and getattr(model, "loss", None):  # tf_keras: {} without a loss
            raise ValueError("find_lr: argument `y` must be given with arrays `x`: the model's loss needs targets. "
                             "Pass `find_lr(model, x, y)`, or as `x` a dataset of (x, y) batches. Received: y=None")
        batches = math.ceil(len(keras.tree.flatten(x)[0]) / batch_size)
        kwargs = {"x": x, "y": y, "batch_size": batch_size}
    else:
        raise ValueError(
            "find_lr: argument `x` must be arrays (or a list or dict of them), a keras.utils.PyDataset or a "
            "tf.data.Dataset, of known length or infinite (`.repeat()`): a sweep reads it over several epochs or "
            "draws `num_steps` batches from it. Wrap a generator in `tf.data.Dataset.from_generator(...).repeat()`. "
            f"Received: x={x!r}"
        )
    if batches < 1:
        received = "no batches" if batches == 0 else (
            "a dataset of unknown length; give it one with `.apply(tf.data.experimental.assert_cardinality(n))`, or "
            "repeat it (`.repeat()`) to draw `num_steps` batches from it"
        )
        raise ValueError(f"find_lr: argument `x` must hold at least one batch of known size. Received: {received}.")
    return dict(kwargs, epochs=math.ceil(num_steps / batches))


def find_lr(model, x, y=None, batch_size=32, start_lr=1e-7, end_lr=10.0, num_steps=100, smoothing=0.98,
            stop_factor=4.0, min_fall=0.05, verbose=0):
    """Runs the LR range test on a compiled model and returns the `LRFinder` with its results.

    `x`, `y` and `batch_size` are as for `model.fit`: arrays (with `y`), a `keras.utils.PyDataset` (tf_keras:
    `Sequence`), or a `tf.data.Dataset` of batches of known length (read over as many epochs as `num_steps` needs)
    or infinite (`num_steps` batches are drawn from it); the other arguments are `LRFinder`'s. The model's weights
    and optimizer state are exactly as before when it returns, even if training raises.

    Example:
        >>> import keras, numpy as np, tfopt
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.01), "mse")
        >>> finder = tfopt.callbacks.find_lr(model, np.ones((320, 4)), np.ones((320, 1)), num_steps=20)
        >>> len(finder.lrs) <= 20
        True
    """
    finder = LRFinder(start_lr, end_lr, num_steps, smoothing, stop_factor, min_fall, verbose)
    if getattr(model, "optimizer", None) is None:
        raise ValueError("find_lr: the model must be compiled (`model.compile(optimizer=..., loss=...)`) first.")
    fit_kwargs = _fit_arguments(model, x, y, batch_size, num_steps)
    try:
        model.fit(callbacks=[finder], verbose=0, **fit_kwargs)
    finally:
        finder.restore()
    return finder
