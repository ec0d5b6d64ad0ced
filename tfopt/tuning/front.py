"""`pareto`: the trials of a search that no other trial beats on both of two metrics (size and accuracy, say)."""

import dataclasses
import math

from tfopt import _checks, _plotting

_OWNER = "pareto"


@dataclasses.dataclass(frozen=True)
class Point:
    """One completed trial: its id and its two metric values."""

    trial_id: str
    x: float
    y: float


@dataclasses.dataclass(frozen=True)
class Front:
    """What `pareto` returns: every completed trial with both metrics, and the non-dominated ones among them
    (sorted by `x`). `x_name`/`y_name` are the metrics; `budget` an optional limit on `x` drawn by `plot`."""

    points: tuple
    front: tuple
    x_name: str
    y_name: str

    def plot(self, path, budget=None):
        """Draws every trial, the front highlighted and joined, and `budget` as a vertical line; returns `path`."""
        figure, axes = _plotting.new_figure()
        axes.scatter([p.x for p in self.points], [p.y for p in self.points], color="0.6", label="trials")
        axes.plot([p.x for p in self.front], [p.y for p in self.front], "o-", color="C3", label="Pareto front")
        if budget is not None:
            axes.axvline(budget, color="C0", linestyle="--", label=f"budget {self.x_name} = {budget:g}")
        axes.set_xlabel(self.x_name)
        axes.set_ylabel(self.y_name)
        axes.legend()
        return _plotting.save_png(figure, path)


def _dominated_free(points):
    """The points no other point dominates (x no larger and y no smaller, one strictly), by a sweep along x."""
    front, best_y = [], -math.inf
    for point in sorted(points, key=lambda p: (p.x, -p.y)):
        repeat = front and (point.x, point.y) == (front[-1].x, front[-1].y)
        if point.y > best_y or repeat:
            front.append(point)
            best_y = max(best_y, point.y)
    return front


def _trials(source):
    oracle = getattr(source, "oracle", source)
    trials = getattr(oracle, "trials", source)
    return list(trials.values()) if isinstance(trials, dict) else list(trials)


def pareto(tuner, x="tflite_size_kb", y="tflite_accuracy"):
    """The non-dominated trials of a KerasTuner search: smaller `x` and larger `y` are better.

    A trial counts once it is COMPLETED and has recorded both metrics (their last value); trial A dominates trial
    B if A's `x` is no larger and its `y` no smaller, one of them strictly.

    Args:
        tuner: a KerasTuner tuner or oracle (its `trials`), or an iterable of `keras_tuner` trials.
        x: the metric to minimise. Defaults to `"tflite_size_kb"`.
        y: the metric to maximise. Defaults to `"tflite_accuracy"`.

    Returns:
        A `Front` with `points`, `front` (sorted by `x`) and `plot(path, budget=None)`.

    Example:
    >>> from keras_tuner.engine.trial import Trial, TrialStatus
    >>> trials = []
    >>> for trial_id, (size, accuracy) in enumerate([(10, 0.90), (20, 0.95), (30, 0.93)]):
    ...     trial = Trial(None, trial_id=str(trial_id), status=TrialStatus.COMPLETED)
    ...     _ = trial.metrics.update("tflite_size_kb", size), trial.metrics.update("tflite_accuracy", accuracy)
    ...     trials.append(trial)
    >>> [point.trial_id for point in pareto(trials).front]
    ['0', '1']
    """
    _checks.instance(_OWNER, "x", x, str, "a metric name")
    _checks.instance(_OWNER, "y", y, str, "a metric name")
    points = tuple(
        Point(trial.trial_id, float(trial.metrics.get_last_value(x)), float(trial.metrics.get_last_value(y)))
        for trial in _trials(tuner)
        if trial.status == "COMPLETED" and trial.metrics.exists(x) and trial.metrics.exists(y)
    )
    return Front(points, tuple(_dominated_free(points)), x, y)
