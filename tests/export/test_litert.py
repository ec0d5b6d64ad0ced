"""`predict`, `evaluate`, `benchmark` and `inspect` on small TFLite files, and their errors."""

import keras
import numpy as np
import pytest

from tfopt import export


@pytest.fixture(scope="module")
def tiny():
    """A 4 -> 3 Dense model, its float32 flatbuffer and 10 inputs."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, bias_initializer="ones")])
    x = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
    return model, export.to_tflite(model), x


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_predict_matches_keras_with_a_partial_last_batch(tiny, batch_size):
    model, flatbuffer, x = tiny
    np.testing.assert_allclose(export.predict(flatbuffer, x, batch_size=batch_size), model(x), atol=1e-5)


def test_predict_reads_a_path(tiny, tmp_path):
    model, flatbuffer, x = tiny
    path = tmp_path / "tiny.tflite"
    path.write_bytes(flatbuffer)
    np.testing.assert_allclose(export.predict(str(path), x, num_threads=2), model(x), atol=1e-5)


def test_wrong_x_shape_names_the_expected_input_shape(tiny):
    with pytest.raises(ValueError, match=r"`x` must be of shape \(None, 4\). Received: x='<array of shape \(10, 5\)>'"):
        export.predict(tiny[1], np.zeros((10, 5)))


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "absent.tflite"
    with pytest.raises(FileNotFoundError, match=str(path)):
        export.inspect(path)


def test_bytes_that_are_not_tflite_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"predict: <10 bytes> is not a TFLite flatbuffer"):
        export.predict(b"not tflite", np.zeros((1, 4)))
    path = tmp_path / "model.keras"
    path.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ValueError, match=f"{path} is not a TFLite flatbuffer"):
        export.benchmark(path)


def test_evaluate_takes_integer_and_one_hot_labels_and_keras_metrics(tiny):
    model, flatbuffer, x = tiny
    labels = np.argmax(np.asarray(model(x)), axis=-1)
    labels[:3] = (labels[:3] + 1) % 3  # 3 of 10 wrong
    scores = export.evaluate(flatbuffer, x, labels, metrics=["accuracy", "sparse_categorical_accuracy"])
    assert scores == pytest.approx({"accuracy": 0.7, "sparse_categorical_accuracy": 0.7})
    assert export.evaluate(flatbuffer, x, np.eye(3)[labels]) == pytest.approx({"accuracy": 0.7})
    mae = export.evaluate(flatbuffer, x, np.zeros((10, 3)), metrics=[keras.metrics.MeanAbsoluteError()])
    assert mae["mean_absolute_error"] == pytest.approx(np.mean(np.abs(np.asarray(model(x)))), rel=1e-4)


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_evaluate_thresholds_a_single_sigmoid_output_as_classification_does(kind):
    sigmoid = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="ones")
    model = keras.Sequential([keras.Input((1,)), sigmoid])
    subject = model if kind == "keras" else export.to_tflite(model)
    x = np.array([[-3.0], [-2.0], [2.0], [3.0]], "float32")  # probabilities 0.05, 0.12, 0.88, 0.95
    labels = np.array([0, 1, 1, 1])  # 3 of 4 right at 0.5 (an argmax over one output would score 0.25)
    assert export.evaluate(subject, x, labels) == pytest.approx({"accuracy": 0.75})
    assert export.evaluate(subject, x, labels[:, None]) == pytest.approx({"accuracy": 0.75})
    assert export.evaluate(subject, x, labels, task="classification")["accuracy"] == pytest.approx(0.75)


def test_evaluate_refuses_an_unknown_metric(tiny):
    with pytest.raises(ValueError, match="`metrics` must be \"accuracy\" or Keras metrics.*'acuracy'"):
        export.evaluate(tiny[1], tiny[2], np.zeros(10), metrics=["acuracy"])


def test_benchmark_reports_ordered_percentiles(tiny):
    result = export.benchmark(tiny[1], runs=20, warmup=2)
    assert result.runs == 20 and result.threads == 1
    assert 0 < result.p50_ms <= result.p90_ms
    assert "p50" in str(result)


def test_inspect_lists_ops_inputs_and_outputs(tiny):
    summary = export.inspect(tiny[1])
    assert [op.name for op in summary.ops] == ["FULLY_CONNECTED"]
    assert summary.ops[0].inputs == ("float32", "float32", "float32") and summary.ops[0].outputs == ("float32",)
    assert summary.size_bytes == len(tiny[1]) and summary.tensor_count >= 4
    assert summary.constant_bytes == (4 * 3 + 3) * 4  # the float32 kernel and bias
    assert (summary.inputs[0].dtype, summary.inputs[0].shape, summary.inputs[0].scale) == ("float32", (-1, 4), 0.0)
    assert summary.outputs[0].shape == (-1, 3)
    assert "FULLY_CONNECTED  float32, float32, float32 -> float32" in str(summary)


def many_outputs_model():
    """12 outputs of widths 1..12, named so that neither their names nor the converter's tensor order sort them as
    the model does (output_10 and output_11 come after output_9 in the signature)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    names = ["zeta", "alpha", "mid", *(f"head{12 - i}" for i in range(3, 12))]
    return keras.Model(inputs, [keras.layers.Dense(width, name=name)(hidden)
                                for width, name in zip([3, 2, 4, 1, *range(5, 13)], names)])


@pytest.mark.parametrize("quantization, tolerance", [(None, 1e-5), ("int8", 0.1)])
def test_outputs_come_in_the_models_order(quantization, tolerance):
    model = many_outputs_model()
    x = np.random.default_rng(0).normal(size=(40, 6)).astype("float32")
    flatbuffer = export.to_tflite(model, quantization, representative_data=x if quantization else None)
    expected = model.predict(x, verbose=0)
    predicted = export.predict(flatbuffer, x, batch_size=16)
    assert [p.shape for p in predicted] == [e.shape for e in expected]
    for got, want in zip(predicted, expected):
        assert np.max(np.abs(got - want)) < tolerance * max(1.0, np.max(np.abs(want)))
    assert [spec.shape for spec in export.inspect(flatbuffer).outputs] == [(-1, e.shape[1]) for e in expected]


def test_accuracy_of_several_outputs_names_the_model():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, [keras.layers.Dense(3)(inputs), keras.layers.Dense(3)(inputs)])
    x, y = np.ones((6, 4), "float32"), np.zeros(6, "int32")
    for model_or_tflite in (model, export.to_tflite(model)):
        with pytest.raises(ValueError, match=r"evaluate: argument `model_or_tflite` must be a model with one output. "
                                             r"Received: model_or_tflite='<model with 2 outputs>'"):
            export.evaluate(model_or_tflite, x, y)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda f, x: export.predict(f, x, batch_size=0), ValueError,
         "predict: argument `batch_size` must be >= 1. Received: batch_size=0"),
        (lambda f, x: export.predict(f, x, batch_size=2.0), TypeError,
         "predict: argument `batch_size` must be an integer. Received: batch_size=2.0"),
        (lambda f, x: export.predict(f, x, num_threads=0), ValueError,
         "predict: argument `num_threads` must be >= 1. Received: num_threads=0"),
        (lambda f, x: export.predict(f, x, num_threads=True), TypeError,
         "predict: argument `num_threads` must be an integer. Received: num_threads=True"),
        (lambda f, x: export.evaluate(f, x, np.zeros(10), batch_size=-1), ValueError,
         "evaluate: argument `batch_size` must be >= 1. Received: batch_size=-1"),
        (lambda f, x: export.evaluate(f, x, np.zeros(10), num_threads=0), ValueError,
         "evaluate: argument `num_threads` must be >= 1. Received: num_threads=0"),
        (lambda f, x: export.evaluate(f, x, np.zeros(9)), ValueError,
         "evaluate: argument `y` must be one per sample of `x` (10). Received: y='<9 samples>'"),
        (lambda f, x: export.evaluate(f, x, 3), ValueError,
         "evaluate: argument `y` must be one per sample of `x` (10). Received: y=array(3)"),
        (lambda f, x: export.evaluate(f, x, np.zeros(10), metrics=[]), ValueError,
         "evaluate: argument `metrics` must be at least one metric. Received: metrics=[]"),
        (lambda f, x: export.benchmark(f, runs=0), ValueError,
         "benchmark: argument `runs` must be >= 1. Received: runs=0"),
        (lambda f, x: export.benchmark(f, runs=10.0), TypeError,
         "benchmark: argument `runs` must be an integer. Received: runs=10.0"),
        (lambda f, x: export.benchmark(f, warmup=-1), ValueError,
         "benchmark: argument `warmup` must be >= 0. Received: warmup=-1"),
        (lambda f, x: export.benchmark(f, threads=0), ValueError,
         "benchmark: argument `threads` must be >= 1. Received: threads=0"),
        (lambda f, x: export.benchmark(f, threads="2"), TypeError,
         "benchmark: argument `threads` must be an integer. Received: threads='2'"),
    ],
    ids=["predict_batch_size", "predict_batch_size_float", "predict_num_threads", "predict_num_threads_bool",
         "evaluate_batch_size", "evaluate_num_threads", "evaluate_y_count", "evaluate_y_scalar",
         "evaluate_no_metric", "benchmark_runs", "benchmark_runs_float", "benchmark_warmup", "benchmark_threads",
         "benchmark_threads_string"],
)
def test_counts_are_checked_with_the_callers_name(tiny, call, error, message):
    with pytest.raises(error) as raised:
        call(tiny[1], tiny[2])
    assert str(raised.value) == message


def test_a_model_xnnpack_refuses_runs_on_the_builtin_kernels_with_a_warning():
    """XNNPACK fails to prepare an int8 model with a layer whose outputs are all 0 (a dead ReLU layer): the
    builtin kernels run it, and `predict`, `evaluate` and `benchmark` say so."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="dead"),
                              keras.layers.Dense(4), keras.layers.Dense(3)])
    kernel, bias = model.get_layer("dead").get_weights()
    model.get_layer("dead").set_weights([kernel, bias - 100.0])
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    flatbuffer = export.to_tflite(model, "int8", representative_data=x)
    with pytest.raises(RuntimeError, match="XNNPACK"):
        runner = export.litert.interpreter(flatbuffer, "test")
        runner.allocate_tensors()
    with pytest.warns(RuntimeWarning, match="predict: LiteRT's XNNPACK delegate can't run this model"):
        outputs = export.predict(flatbuffer, x)
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=0.05)  # the bias of the last layers
    with pytest.warns(RuntimeWarning, match="evaluate: LiteRT's XNNPACK"):
        export.evaluate(flatbuffer, x, np.zeros(64, "int32"))
    with pytest.warns(RuntimeWarning, match="benchmark: LiteRT's XNNPACK"):
        assert export.benchmark(flatbuffer, runs=2, warmup=0).runs == 2
