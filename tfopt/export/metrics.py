"""Scores a person can read, in NumPy: accuracy, precision, recall and F1 per class and macro, MSE, RMSE and MAE,
and the confusion matrix with its heat map. `tfopt.export.evaluate` and `confusion_matrix` compute them on a model's
outputs; the functions here take labels and outputs.

Example:
    >>> import numpy as np
    >>> from tfopt.export import metrics
    >>> matrix = metrics.confusion(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]), "evaluate")
    >>> matrix.matrix.tolist()
    [[1, 0], [1, 1]]
    >>> round(metrics.classification(matrix)["f1"], 4)
    0.6667
"""

import numpy as np

from tfopt import _checks, _plotting

TASKS = ("classification", "regression")


def _predicted_classes(outputs):
    """Class indices of `outputs`: the argmax of several outputs, or one probability thresholded at 0.5."""
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        return (outputs.reshape(len(outputs)) > 0.5).astype("int64"), 2
    return np.argmax(outputs, axis=-1), outputs.shape[-1]


def _true_classes(y, outputs, num_classes, owner):
    """Integer labels of `y`: integer labels as they are, one-hot labels (shaped as `outputs`) by their argmax."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape == outputs.shape and y.shape[-1] > 1:
        return np.argmax(y, axis=-1)
    labels = y.reshape(len(y)) if y.ndim == 1 or (y.ndim == 2 and y.shape[-1] == 1) else None
    valid = (labels is not None and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))
             and np.all((labels >= 0) & (labels < num_classes)))
    value = f"<array of shape {y.shape}>" if labels is None else f"<labels from {labels.min()} to {labels.max()}>"
    _checks.satisfies(owner, "y", value, valid,
                      f"integer labels in [0, {num_classes}) or one-hot labels of shape {outputs.shape}")
    return labels.astype("int64")


class ConfusionMatrix:
    """Counts of samples by true class (rows) and predicted class (columns).

    Example:
        >>> import numpy as np
        >>> print(ConfusionMatrix(np.array([[3, 1], [0, 2]])))
        true \\ predicted      0     1
                       0      3     1
                       1      0     2
    """

    def __init__(self, matrix):
        self.matrix = np.asarray(matrix, dtype="int64")
        self.classes = np.arange(len(self.matrix))

    def __str__(self):
        width = max(6, len(str(self.matrix.max(initial=0))) + 1)
        lines = ["true \\ predicted " + "".join(f"{c:>{width}}" for c in self.classes)]
        lines += [f"{c:>16} " + "".join(f"{n:>{width}}" for n in row) for c, row in zip(self.classes, self.matrix)]
        return "\n".join(lines)

    def plot(self, path, title="Confusion matrix"):
        """Draws the matrix as a heat map with each cell's count, saves it as a PNG at `path` and returns the path."""
        size = max(4.0, 0.5 * len(self.classes) + 2)
        figure, axes = _plotting.new_figure((size + 1, size))
        image = axes.imshow(self.matrix, cmap="Blues")
        figure.colorbar(image, ax=axes)
        axes.set(xticks=self.classes, yticks=self.classes, xlabel="predicted class", ylabel="true class", title=title)
        middle = self.matrix.max(initial=0) / 2
        for (row, column), count in np.ndenumerate(self.matrix):
            axes.text(column, row, str(count), ha="center", va="center",
                      color="white" if count > middle else "black", fontsize=8)
        return _plotting.save_png(figure, path)


def confusion(y, outputs, owner):
    """The `ConfusionMatrix` of integer or one-hot labels `y` against a model's `outputs`."""
    outputs = np.asarray(outputs)
    predicted, num_classes = _predicted_classes(outputs)
    labels = _true_classes(y, outputs, num_classes, owner)
    counts = np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    return ConfusionMatrix(counts.reshape(num_classes, num_classes))


class Evaluation(dict):
    """Scores by name (floats), printed as a table; a classifier's also holds `per_class` arrays.

    `per_class` maps "precision", "recall", "f1" and "support" to one value per class (index = class); the dict's
    "precision", "recall" and "f1" are their unweighted means (macro).
    """

    def __init__(self, scores, per_class=None):
        super().__init__(scores)
        self.per_class = per_class

    def __str__(self):
        lines = []
        if self.per_class is not None:
            columns = ("precision", "recall", "f1", "support")
            lines.append(f"{'class':>8}" + "".join(f"{name:>11}" for name in columns))
            for c, values in enumerate(zip(*(self.per_class[name] for name in columns))):
                lines.append(f"{c:>8}" + "".join(f"{v:>11.4f}" for v in values[:3]) + f"{values[3]:>11d}")
            support = int(np.sum(self.per_class["support"]))
            lines.append(f"{'macro':>8}" + "".join(f"{self[n]:>11.4f}" for n in columns[:3]) + f"{support:>11d}")
        lines += [f"{name}: {value:.4f}" for name, value in self.items() if name not in ("precision", "recall", "f1")
                  or self.per_class is None]
        # accuracy last: the table ends with the headline number
        lines.sort(key=lambda line: line.startswith("accuracy:"))
        return "\n".join(lines)


def _divide(numerator, denominator):
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    denominator = np.asarray(denominator, dtype="float64")
    return np.divide(numerator, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def classification(matrix):
    """An `Evaluation` of a `ConfusionMatrix`: accuracy, macro precision, recall and F1, and `per_class` arrays.

    A class never predicted has precision 0, one absent from the labels recall 0; both count in the macro mean.
    """
    counts = matrix.matrix.astype("float64")
    hits, predicted, support = np.diag(counts), counts.sum(axis=0), counts.sum(axis=1)
    precision, recall = _divide(hits, predicted), _divide(hits, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    per_class = {"precision": precision, "recall": recall, "f1": f1, "support": support.astype("int64")}
    scores = {"accuracy": float(_divide(hits.sum(), counts.sum())), "precision": float(precision.mean()),
              "recall": float(recall.mean()), "f1": float(f1.mean())}
    return Evaluation(scores, per_class)


def regression(y, outputs, owner):
    """An `Evaluation` with the mean squared error ("mse"), its root ("rmse") and the mean absolute error ("mae")."""
    outputs = np.asarray(outputs, dtype="float64")
    y = np.asarray(y, dtype="float64")
    if y.size == outputs.size:
        y = y.reshape(outputs.shape)
    _checks.satisfies(owner, "y", f"<array of shape {y.shape}>", y.shape == outputs.shape,
                      f"targets shaped as the model's outputs {outputs.shape}")
    mse = float(np.mean((outputs - y) ** 2))
    return Evaluation({"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(outputs - y)))})
