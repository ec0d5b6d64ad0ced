"""`pareto`: the non-dominated trials, checked against a brute-force definition, and its plot."""

import numpy as np
import pytest
from keras_tuner.engine.trial import Trial, TrialStatus

from tfopt.tuning.front import pareto


def trials_of(points, status=TrialStatus.COMPLETED):
    trials = []
    for index, (size, accuracy) in enumerate(points):
        trial = Trial(None, trial_id=str(index), status=status)
        trial.metrics.update("tflite_size_kb", float(size))
        trial.metrics.update("tflite_accuracy", float(accuracy))
        trials.append(trial)
    return trials


def brute_force_front(points):
    """Indices of the points no other point dominates, straight from the definition."""
    def dominates(a, b):
        return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])

    return {str(i) for i, p in enumerate(points) if not any(dominates(q, p) for q in points)}


@pytest.mark.parametrize("seed", range(20))
def test_the_front_is_the_brute_force_non_dominated_set(seed):
    rng = np.random.default_rng(seed)
    points = [(int(s), round(float(a), 1)) for s, a in zip(rng.integers(1, 8, 30), rng.uniform(0.5, 1.0, 30))]
    front = pareto(trials_of(points)).front
    assert {p.trial_id for p in front} == brute_force_front(points)
    assert [p.x for p in front] == sorted(p.x for p in front)


def test_only_completed_trials_with_both_metrics_count(tmp_path):
    trials = trials_of([(10, 0.9), (5, 0.99)])
    trials[1].status = TrialStatus.FAILED
    unmeasured = Trial(None, trial_id="late", status=TrialStatus.COMPLETED)
    unmeasured.metrics.update("tflite_accuracy", 1.0)
    result = pareto(trials + [unmeasured])
    assert [p.trial_id for p in result.points] == ["0"] and [p.trial_id for p in result.front] == ["0"]
    path = result.plot(tmp_path / "front.png", budget=12)
    assert path.endswith("front.png") and open(path, "rb").read(4) == b"\x89PNG"


def test_metric_names_are_checked():
    with pytest.raises(TypeError, match=r"pareto: argument `x` must be a metric name. Received: x=3"):
        pareto([], x=3)
