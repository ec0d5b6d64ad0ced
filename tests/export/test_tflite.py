"""`to_tflite`: argument errors, atomic writes, representative data forms and quantization-aware models."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt import export
from tfopt.quantize.quantizers import QuantizationAware


def tiny_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])


class FakeQuantDense(QuantizationAware, keras.layers.Layer):
    """A Dense layer with per-tensor fake quantization of its input and kernel, as QAT leaves it after training."""

    scheme = "int8"

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        inputs = tf.quantization.fake_quant_with_min_max_vars(inputs, -3.0, 3.0)
        limit = tf.reduce_max(tf.abs(self.kernel))
        kernel = tf.quantization.fake_quant_with_min_max_vars(self.kernel, -limit, limit, narrow_range=True)
        outputs = tf.matmul(inputs, kernel) + self.bias
        return tf.quantization.fake_quant_with_min_max_vars(outputs, -8.0, 8.0)


def qat_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), FakeQuantDense(3)])


def test_unknown_quantization_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"`quantization` must be one of None, 'float16', 'dynamic', 'int8'.*'int4'"):
        export.to_tflite(tiny_model(), "int4")


def test_int8_without_representative_data_names_the_argument():
    with pytest.raises(ValueError, match="`representative_data` must be given"):
        export.to_tflite(tiny_model(), "int8")


def test_int8_io_needs_int8():
    with pytest.raises(ValueError, match='`int8_io` must be False unless quantization="int8"'):
        export.to_tflite(tiny_model(), "dynamic", int8_io=True)


def test_model_must_be_a_keras_model():
    with pytest.raises(TypeError, match="`model` must be a Keras 3 or tf_keras Model"):
        export.to_tflite(lambda x: x)


def test_representative_data_of_the_wrong_shape_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"input shape \(None, 4\).*\(10, 5\)"):
        export.to_tflite(tiny_model(), "int8", representative_data=np.zeros((10, 5)))


def test_empty_representative_data_is_refused():
    with pytest.raises(ValueError, match="`representative_data` must be non-empty"):
        export.to_tflite(tiny_model(), "int8", representative_data=lambda: iter([]))


@pytest.mark.parametrize(
    "make_data",
    [
        lambda x: x,  # an array of samples
        lambda x: tf.data.Dataset.from_tensor_slices(x),  # unbatched samples
        lambda x: tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x)))).batch(16),  # batched (x, y)
        lambda x: (lambda: (x[i : i + 8] for i in range(0, len(x), 8))),  # a callable returning a generator
        lambda x: (x[i : i + 8] for i in range(0, len(x), 8)),  # a generator
    ],
    ids=["array", "dataset", "batched-xy-dataset", "callable", "generator"],
)
def test_representative_data_forms_give_a_full_integer_model(make_data):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    summary = export.inspect(export.to_tflite(tiny_model(), "int8", representative_data=make_data(x)))
    dense = summary.ops_of("FULLY_CONNECTED")
    assert len(dense) == 2 and all(op.inputs[:2] == ("int8", "int8") and op.outputs == ("int8",) for op in dense)


def token_model():
    """int32 token ids -> Embedding -> mean over the sequence -> Dense."""
    keras.utils.set_random_seed(0)
    tokens = keras.Input((6,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 8)(tokens))
    return keras.Model(tokens, keras.layers.Dense(3)(pooled))


def test_int8_of_a_model_with_integer_inputs_calibrates_on_its_ids():
    model = token_model()
    ids = np.random.default_rng(0).integers(0, 20, size=(50, 6))
    flatbuffer = export.to_tflite(model, "int8", representative_data=ids)
    dense = export.inspect(flatbuffer).ops_of("FULLY_CONNECTED")
    assert len(dense) == 1 and dense[0].inputs[:2] == ("int8", "int8")
    expected = model.predict(ids, verbose=0)
    np.testing.assert_allclose(export.predict(flatbuffer, ids), expected, atol=0.05 * np.abs(expected).max())


def test_representative_data_an_integer_input_cannot_hold_is_refused():
    with pytest.raises(ValueError, match="`representative_data` must be integers for the model's int32 input.*float"):
        export.to_tflite(token_model(), "int8", representative_data=np.full((8, 6), 1.5))


def test_int8_calibration_of_a_two_input_model_is_refused_up_front():
    a, b = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Add()([a, b])))
    with pytest.raises(ValueError, match="`model` must be a model with one input .*<model with 2 inputs>"):
        export.to_tflite(model, "int8", representative_data=np.random.rand(10, 3))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


def test_a_subclassed_model_is_refused_unbuilt_and_for_int8_calibration():
    model = Subclassed()
    with pytest.raises(ValueError, match=r"`model` must be built: give it a `keras.Input`.*or call a subclassed"):
        export.to_tflite(model)
    model(np.zeros((1, 3), "float32"))
    x = np.random.rand(8, 3).astype("float32")
    np.testing.assert_allclose(export.predict(export.to_tflite(model), x), model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match=r"`model` must be a model with symbolic `inputs`.*wrap a subclassed model.*"
                                         r"`Distiller`: export its `student`"):
        export.to_tflite(model, "int8", representative_data=x)


def unconvertible_model():
    """A model with an op TFLite has no int8 kernel for: its full-integer conversion fails."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: tf.math.bessel_i0e(x))(keras.layers.Dense(4)(inputs))
    return keras.Model(inputs, outputs)


def test_writes_the_file_and_refuses_to_overwrite_it(tmp_path):
    path = tmp_path / "model.tflite"
    assert export.to_tflite(tiny_model(), path=path) == path.read_bytes()
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match=str(path)):  # raised before converting, else a RuntimeError
        export.to_tflite(unconvertible_model(), "int8", representative_data=np.ones((8, 4)), path=path)
    assert path.read_bytes() == b"keep me"
    assert export.to_tflite(tiny_model(), path=path, overwrite=True) == path.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["model.tflite"]


def test_a_failed_conversion_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="to_tflite: the TFLite converter failed for quantization='int8'"):
        export.to_tflite(unconvertible_model(), "int8", representative_data=np.ones((8, 4)), path=tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_reported_before_converting(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        export.to_tflite(tiny_model(), path=tmp_path / "missing" / "model.tflite")


def test_a_folder_as_path_is_refused_before_converting(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"to_tflite: argument `path` must be a file's path, not a folder's"):
        export.to_tflite(unconvertible_model(), "int8", representative_data=np.ones((8, 4)), path=tmp_path,
                         overwrite=True)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("quantization", [None, "float16", "dynamic"])
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_mixed_precision_model_is_refused_for_every_quantization(tmp_path, quantization, policy):
    keras.config.set_dtype_policy(policy)
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(3, dtype="float32")])
    finally:
        keras.config.set_dtype_policy("float32")
    path = tmp_path / "model.tflite"
    path.write_bytes(b"keep me")
    with pytest.raises(ValueError, match=rf"to_tflite: argument `model` must be computing in float32 for TFLite's "
                                         rf"float32 kernels, not in \['{policy}'\]: build it under "
                                         r"keras.config.set_dtype_policy\('float32'\)"):
        export.to_tflite(model, quantization, path=path, overwrite=True)
    assert path.read_bytes() == b"keep me"


def test_dynamic_range_quantizes_weights_of_1024_elements_and_refuses_a_model_with_none(tmp_path):
    x = np.random.default_rng(0).normal(size=(16, 128)).astype("float32")
    model = keras.Sequential([keras.Input((128,)), keras.layers.Dense(8), keras.layers.Dense(3)])  # 1024 and 24
    flatbuffer = export.to_tflite(model, "dynamic")
    assert [op.inputs[1] for op in export.inspect(flatbuffer).ops_of("FULLY_CONNECTED")] == ["int8", "float32"]
    assert np.max(np.abs(export.predict(flatbuffer, x) - model.predict(x, verbose=0))) < 0.05
    small = keras.Sequential([keras.Input((127,)), keras.layers.Dense(8)])  # 1016 weights
    with pytest.raises(ValueError, match=r'argument `quantization` must be "float16" or "int8" \(with '
                                         r'`representative_data`\) for this model: "dynamic" quantizes only weight '
                                         r"tensors of 1024 elements or more, and it has none.*"
                                         r"Received: quantization='dynamic'"):
        export.to_tflite(small, "dynamic", path=tmp_path / "small.tflite")
    assert not (tmp_path / "small.tflite").exists()


def test_is_quantization_aware_finds_the_marker_in_nested_layers():
    nested = keras.Sequential([keras.Input((4,)), keras.Sequential([FakeQuantDense(3)])])
    assert export.is_quantization_aware(nested)
    assert not export.is_quantization_aware(tiny_model())


def test_quantization_aware_model_converts_to_int8_without_data():
    model = qat_model()
    x = np.random.default_rng(0).uniform(-2, 2, size=(32, 4)).astype("float32")
    flatbuffer = export.to_tflite(model, "int8")
    (dense,) = export.inspect(flatbuffer).ops_of("FULLY_CONNECTED")
    assert dense.inputs[:2] == ("int8", "int8") and dense.outputs == ("int8",)
    # Keras computes with the same fake-quant grid: the int8 kernels agree up to a few output steps (16/255 each).
    assert np.max(np.abs(export.predict(flatbuffer, x) - np.asarray(model(x)))) < 0.2
    int8_io = export.inspect(export.to_tflite(model, "int8", int8_io=True))
    assert int8_io.inputs[0].dtype == int8_io.outputs[0].dtype == "int8"
