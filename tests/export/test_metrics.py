"""`evaluate(task=...)` and `confusion_matrix` on a Keras model and its TFLite file, against scikit-learn."""

import keras
import numpy as np
import pytest
from sklearn import metrics as sk

from tfopt import export


@pytest.fixture(scope="module")
def classifier():
    """A 4 -> 3 softmax model, its float32 flatbuffer, 60 inputs and labels of every class, some wrong."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(60, 4)).astype("float32")
    labels = np.random.default_rng(1).integers(0, 3, size=60)
    return model, export.to_tflite(model), x, labels


def _outputs(model_or_tflite, x):
    return model_or_tflite.predict(x, verbose=0) if isinstance(model_or_tflite, keras.Model) else export.predict(
        model_or_tflite, x)


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_classification_equals_scikit_learn_per_class_and_macro(classifier, kind):
    model, flatbuffer, x, labels = classifier
    subject = model if kind == "keras" else flatbuffer
    predicted = np.argmax(_outputs(subject, x), axis=-1)
    assert len(set(predicted)) == 3 and 0.1 < np.mean(predicted == labels) < 0.9  # every class, hits and misses
    scores = export.evaluate(subject, x, labels, task="classification")
    precision, recall, f1, support = sk.precision_recall_fscore_support(labels, predicted, zero_division=0)
    np.testing.assert_allclose(scores.per_class["precision"], precision, rtol=1e-12)
    np.testing.assert_allclose(scores.per_class["recall"], recall, rtol=1e-12)
    np.testing.assert_allclose(scores.per_class["f1"], f1, rtol=1e-12)
    np.testing.assert_array_equal(scores.per_class["support"], support)
    macro = sk.precision_recall_fscore_support(labels, predicted, average="macro", zero_division=0)
    assert [scores["precision"], scores["recall"], scores["f1"]] == pytest.approx(macro[:3], rel=1e-12)
    assert scores["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted), rel=1e-12)
    assert export.evaluate(subject, x, np.eye(3)[labels], task="classification") == scores  # one-hot alike


def test_a_class_never_predicted_counts_zero_in_the_macro_mean(classifier):
    model, _, x, labels = classifier
    outputs = model.predict(x, verbose=0)
    shifted = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="softmax")])
    kernel, bias = model.layers[0].get_weights()
    shifted.layers[0].set_weights([np.pad(kernel, ((0, 0), (0, 1))), np.pad(bias, (0, 1), constant_values=-50)])
    predicted = np.argmax(outputs, axis=-1)
    scores = export.evaluate(shifted, x, labels, task="classification")  # class 3: neither predicted nor present
    macro = sk.precision_recall_fscore_support(labels, predicted, labels=range(4), average="macro", zero_division=0)
    assert [scores["precision"], scores["recall"], scores["f1"]] == pytest.approx(macro[:3], rel=1e-12)
    assert scores.per_class["support"].tolist()[3] == 0


def test_a_single_probability_output_is_thresholded_at_one_half():
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(inputs))
    x = np.array([[-2.0], [-1.0], [1.0], [2.0], [3.0]], "float32")
    labels = np.array([0, 1, 1, 1, 0])
    scores = export.evaluate(model, x, labels, task="classification")
    expected = sk.precision_recall_fscore_support(labels, [0, 0, 1, 1, 1], zero_division=0)
    np.testing.assert_allclose(scores.per_class["f1"], expected[2], rtol=1e-12)


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_regression_equals_scikit_learn(kind):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    targets = np.random.default_rng(1).normal(size=(30, 2))
    subject = model if kind == "keras" else export.to_tflite(model)
    outputs = _outputs(subject, x)
    scores = export.evaluate(subject, x, targets, task="regression")
    assert sorted(scores) == ["mae", "mse", "rmse"]
    assert scores["mse"] == pytest.approx(sk.mean_squared_error(targets, outputs), rel=1e-6)
    assert scores["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(targets, outputs)), rel=1e-6)
    assert scores["mae"] == pytest.approx(sk.mean_absolute_error(targets, outputs), rel=1e-6)
    assert "rmse: " in str(scores)


def test_metrics_are_added_to_a_task_and_accuracy_stays_the_default(classifier):
    model, flatbuffer, x, labels = classifier
    scores = export.evaluate(flatbuffer, x, labels, task="classification", metrics=["sparse_categorical_accuracy"])
    assert scores["sparse_categorical_accuracy"] == pytest.approx(scores["accuracy"])
    assert sorted(export.evaluate(model, x, labels)) == ["accuracy"]


def test_the_table_lists_each_class_then_macro_then_accuracy(classifier):
    model, _, x, labels = classifier
    lines = str(export.evaluate(model, x, labels, task="classification")).splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "1", "2", "macro", "accuracy:"]
    assert lines[4].split()[-1] == "60"


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_confusion_matrix_equals_scikit_learn(classifier, kind):
    model, flatbuffer, x, labels = classifier
    subject = model if kind == "keras" else flatbuffer
    matrix = export.confusion_matrix(subject, x, labels)
    expected = sk.confusion_matrix(labels, np.argmax(_outputs(subject, x), axis=-1), labels=range(3))
    np.testing.assert_array_equal(matrix.matrix, expected)
    assert str(matrix).splitlines()[1].split()[1:] == [str(n) for n in expected[0]]


def test_confusion_matrix_plot_writes_a_png(classifier, tmp_path):
    model, _, x, labels = classifier
    path = tmp_path / "plots" / "confusion.png"
    assert export.confusion_matrix(model, x, labels).plot(str(path)) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]  # no temporary file left


def _two_outputs():
    inputs = keras.Input((4,))
    return keras.Model(inputs, [keras.layers.Dense(3)(inputs), keras.layers.Dense(3)(inputs)])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, x, y: export.evaluate(m, x, y, task="classifier"), ValueError,
         "evaluate: argument `task` must be one of 'classification', 'regression'. Received: task='classifier'"),
        (lambda m, x, y: export.evaluate(m, x, y[:59], task="classification"), ValueError,
         "evaluate: argument `y` must be one per sample of `x` (60). Received: y='<59 samples>'"),
        (lambda m, x, y: export.evaluate(m, x[:0], y[:0], task="classification"), ValueError,
         "evaluate: argument `x` must be at least one sample. Received: x='<0 samples>'"),
        (lambda m, x, y: export.evaluate(m, x, y + 1, task="classification"), ValueError,
         "evaluate: argument `y` must be integer labels in [0, 3) or one-hot labels of shape (60, 3). "
         "Received: y='<labels from 1 to 3>'"),
        (lambda m, x, y: export.evaluate(m, x, y - 0.5, task="classification"), ValueError,
         "evaluate: argument `y` must be integer labels in [0, 3) or one-hot labels of shape (60, 3). "
         "Received: y='<labels from -0.5 to 1.5>'"),
        (lambda m, x, y: export.evaluate(m, x, np.zeros((60, 2)), task="classification"), ValueError,
         "evaluate: argument `y` must be integer labels in [0, 3) or one-hot labels of shape (60, 3). "
         "Received: y='<array of shape (60, 2)>'"),
        (lambda m, x, y: export.evaluate(m, x, y, task="regression"), ValueError,
         "evaluate: argument `y` must be targets shaped as the model's outputs (60, 3). "
         "Received: y='<array of shape (60,)>'"),
        (lambda m, x, y: export.evaluate("a string is a path", x, y, task="regression"), FileNotFoundError,
         "evaluate: no such TFLite file: a string is a path"),
        (lambda m, x, y: export.evaluate(42, x, y, task="regression"), TypeError,
         "evaluate: argument `model_or_tflite` must be a Keras model, TFLite bytes or the path of a .tflite file. "
         "Received: model_or_tflite=42"),
        (lambda m, x, y: export.evaluate(_two_outputs(), x, y, task="classification"), ValueError,
         "evaluate: argument `model_or_tflite` must be a model with one output. "
         "Received: model_or_tflite='<model with 2 outputs>'"),
        (lambda m, x, y: export.confusion_matrix(m, x, y[:10]), ValueError,
         "confusion_matrix: argument `y` must be one per sample of `x` (60). Received: y='<10 samples>'"),
        (lambda m, x, y: export.confusion_matrix(m, x, y, batch_size=0), ValueError,
         "confusion_matrix: argument `batch_size` must be >= 1. Received: batch_size=0"),
        (lambda m, x, y: export.confusion_matrix(m, x, y + 3), ValueError,
         "confusion_matrix: argument `y` must be integer labels in [0, 3) or one-hot labels of shape (60, 3). "
         "Received: y='<labels from 3 to 5>'"),
    ],
    ids=["unknown_task", "y_count", "no_samples", "label_too_large", "label_not_integer", "one_hot_width",
         "regression_shape", "missing_file", "not_a_model", "two_outputs", "confusion_y_count",
         "confusion_batch_size", "confusion_labels"],
)
def test_errors_name_the_argument_and_the_value(classifier, call, error, message):
    model, _, x, labels = classifier
    with pytest.raises(error) as raised:
        call(model, x, labels)
    assert str(raised.value) == message
