"""Scoring a Keras model, or a TFLite one run with the LiteRT interpreter, on labelled data: `evaluate`,
`confusion_matrix`."""

import os

import numpy as np

from tfopt import _checks, _compat
from tfopt.export import litert
from tfopt.export import metrics as metrics_module


def _accuracy(y, predictions):
    """The accuracy `task="classification"` reports: the classes of `metrics_module.confusion`."""
    matrix = metrics_module.confusion(y, _single_output("evaluate", predictions), "evaluate")
    return metrics_module.classification(matrix)["accuracy"]


def _metric(metric):
    """(name, function of (y, predictions) -> float) for "accuracy", a Keras metric name, class or object."""
    if metric == "accuracy":
        return "accuracy", _accuracy
    import keras

    try:
        found = keras.metrics.get(metric)
    except (ValueError, TypeError):
        found = None
    rule = '"accuracy" or Keras metrics (names or objects)'
    _checks.satisfies("evaluate", "metrics", metric, found is not None, rule)
    if isinstance(found, type):
        found = found()
    if isinstance(found, keras.metrics.Metric):
        def result(y, predictions):
            found.reset_state()
            found.update_state(y, predictions)
            return float(found.result())
        return (metric if isinstance(metric, str) else found.name), result
    return (metric if isinstance(metric, str) else found.__name__), lambda y, p: float(np.mean(found(y, p)))


def _outputs(model_or_tflite, x, owner, batch_size, num_threads):
    """The float outputs of a Keras model (Keras 3 or tf_keras) or of a TFLite flatbuffer or file on `x`."""
    if isinstance(model_or_tflite, (bytes, bytearray, memoryview, str, os.PathLike)):
        return litert.run(model_or_tflite, x, batch_size, num_threads, owner)
    _checks.instance(owner, "model_or_tflite", model_or_tflite, _compat.keras_of(model_or_tflite).Model,
                     "a Keras model, TFLite bytes or the path of a .tflite file")
    return model_or_tflite.predict(np.asarray(x, dtype="float32"), batch_size=batch_size, verbose=0)


def _check_samples(owner, x, y):
    x, y = np.asarray(x), np.asarray(y)
    _checks.satisfies(owner, "y", f"<{len(y)} samples>" if y.ndim else y, y.ndim and len(y) == len(x),
                      f"one per sample of `x` ({len(x)})")
    _checks.satisfies(owner, "x", f"<{len(x)} samples>", len(x), "at least one sample")
    return x, y


def _single_output(owner, outputs):
    count = len(outputs) if isinstance(outputs, (list, tuple)) else 1
    _checks.satisfies(owner, "model_or_tflite", f"<model with {count} outputs>", count == 1, "a model with one output")
    return np.asarray(outputs)


def evaluate(model_or_tflite, x, y, task=None, metrics=None, batch_size=32, num_threads=None):
    """Scores a Keras model, or a TFLite model with the LiteRT interpreter, on `(x, y)`.

    Without a `task`, returns `metrics` (default "accuracy"). "accuracy" compares the predicted class (the argmax of
    several outputs, a single output thresholded at 0.5) with integer labels or with the argmax of one-hot `y`, as
    `task="classification"` does; other entries are anything `keras.metrics.get` takes ("mae",
    `keras.metrics.AUC()`, ...), applied to the float outputs; "accuracy" and the tasks take a model with one output.
    `task="classification"` adds precision, recall and F1
    per class and macro (a single output is a probability, thresholded at 0.5; a class never predicted has
    precision 0); `task="regression"` the mean squared error, its root and the mean absolute error.

    Args:
        model_or_tflite: a Keras model, TFLite flatbuffer bytes or the path of a .tflite file.
        x: a float array of inputs.
        y: integer labels, one-hot labels or targets, one per sample of `x`.
        task: None, "classification" or "regression". Defaults to None.
        metrics: metric names or objects, scored as well. Defaults to None (("accuracy",) without a task).
        batch_size: samples per batch. Defaults to 32.
        num_threads: threads of the interpreter. Defaults to None (LiteRT's default).

    Returns:
        An `Evaluation`: a dict of score name to float ("accuracy", "precision", "recall", "f1" macro; or "mse",
        "rmse", "mae"; then `metrics`) with `per_class` arrays for a classifier; `print` shows it as a table.

    Example:
    >>> import keras, numpy as np, tfopt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> scores = tfopt.export.evaluate(tfopt.export.to_tflite(model), np.ones((6, 4)), np.zeros(6, "int32"))
    >>> sorted(scores)
    ['accuracy']
    >>> sorted(tfopt.export.evaluate(model, np.ones((6, 4)), np.zeros((6, 2)), task="regression"))
    ['mae', 'mse', 'rmse']
    """
    litert.check_batching("evaluate", batch_size, num_threads)
    if task is not None:
        _checks.choice("evaluate", "task", task, metrics_module.TASKS)
    if metrics is None:
        metrics = ("accuracy",) if task is None else ()
    if isinstance(metrics, str) or not hasattr(metrics, "__iter__"):
        metrics = [metrics]
    scorers = [_metric(metric) for metric in metrics]
    _checks.satisfies("evaluate", "metrics", metrics, scorers or task, "at least one metric")
    x, y = _check_samples("evaluate", x, y)
    outputs = _outputs(model_or_tflite, x, "evaluate", batch_size, num_threads)
    if task == "classification":
        result = metrics_module.classification(metrics_module.confusion(y, _single_output("evaluate", outputs),
                                                                        "evaluate"))
    elif task == "regression":
        result = metrics_module.regression(y, _single_output("evaluate", outputs), "evaluate")
    else:
        result = metrics_module.Evaluation({})
    result.update({name: score(y, outputs) for name, score in scorers})
    return result


def confusion_matrix(model_or_tflite, x, y, batch_size=32, num_threads=None):
    """The confusion matrix of a classifier (a Keras model or a TFLite model run with LiteRT) on `(x, y)`.

    Args:
        model_or_tflite: a Keras model, TFLite flatbuffer bytes or the path of a .tflite file.
        x: a float array of inputs.
        y: integer or one-hot labels, one per sample of `x`.
        batch_size: samples per batch. Defaults to 32.
        num_threads: threads of the interpreter. Defaults to None (LiteRT's default).

    Returns:
        A `ConfusionMatrix`: `.matrix[true, predicted]` counts samples; `.plot(path)` saves a heat map.

    Example:
    >>> import keras, numpy as np, tfopt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> tfopt.export.confusion_matrix(model, np.ones((6, 4)), np.zeros(6, "int32")).matrix.sum(axis=1).tolist()
    [6, 0, 0]
    """
    litert.check_batching("confusion_matrix", batch_size, num_threads)
    x, y = _check_samples("confusion_matrix", x, y)
    outputs = _outputs(model_or_tflite, x, "confusion_matrix", batch_size, num_threads)
    return metrics_module.confusion(y, _single_output("confusion_matrix", outputs), "confusion_matrix")
