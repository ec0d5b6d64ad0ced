"""quantize_model on Keras 3 models: which layers it fuses and quantizes, what it refuses, and how the copy trains."""

import keras
import numpy as np
import pytest

import tfopt
from tfopt.quantize import QuantizeActivation, QuantizeAffine, QuantizeConvolution, QuantizeOutputs, quantize_model

L = keras.layers


def kinds(model):
    return {layer.name: type(layer).__name__ for layer in model.layers}


def test_conv_bn_relu_fold_into_one_layer_and_other_layers_get_the_right_treatment(mobile_block_model):
    quantized = quantize_model(mobile_block_model())
    assert kinds(quantized) == {
        "image": "InputLayer", "quantize_image": "QuantizeActivation",
        "quantize_stem": "QuantizeConvolution", "quantize_expand": "QuantizeConvolution",
        "quantize_depthwise": "QuantizeConvolution", "quantize_project": "QuantizeConvolution",
        "quantize_residual": "QuantizeOutputs", "branch_pool": "AveragePooling2D", "pool": "MaxPooling2D",
        "quantize_concat": "QuantizeOutputs", "quantize_gap": "QuantizeOutputs",
        "quantize_head": "QuantizeConvolution",
    }
    fused = {name: (quantized.get_layer(name).batch_norm is not None, quantized.get_layer(name).activation)
             for name in ("quantize_stem", "quantize_expand", "quantize_depthwise", "quantize_project",
                          "quantize_head")}
    assert fused == {"quantize_stem": (True, "relu6"), "quantize_expand": (False, "relu"),
                     "quantize_depthwise": (True, "relu6"), "quantize_project": (True, "linear"),
                     "quantize_head": (False, "softmax")}


def test_the_copy_starts_from_the_models_weights_and_leaves_the_model_alone(
    mobile_block_model, mobile_block_data, compile_classifier
):
    model = mobile_block_model()
    before = [w.copy() for w in model.get_weights()]
    quantized = compile_classifier(quantize_model(model))
    np.testing.assert_array_equal(quantized.get_layer("quantize_stem").layer.kernel.numpy(),
                                  model.get_layer("stem").kernel.numpy())
    quantized.fit(*mobile_block_data, epochs=2, verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_fake_quantized_outputs_follow_the_float_model_once_ranges_are_learned(
    mobile_block_model, mobile_block_data, compile_classifier
):
    model = mobile_block_model()
    quantized = compile_classifier(quantize_model(model), rate=0.0)  # ranges only: weights don't move
    quantized.fit(mobile_block_data[0], mobile_block_data[1], epochs=3, verbose=0)
    x = mobile_block_data[0]
    float_outputs, quantized_outputs = model.predict(x, verbose=0), quantized.predict(x, verbose=0)
    assert np.abs(float_outputs - quantized_outputs).max() < 0.05
    assert np.mean(float_outputs.argmax(1) == quantized_outputs.argmax(1)) >= 0.95


def test_a_sequential_model_gets_its_input_quantized_and_its_pass_through_layers_kept():
    model = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(4, 3, activation="relu", name="c"),
                              L.Flatten(name="f"), L.Dropout(0.2, name="drop"), L.Dense(3, name="d")])
    quantized = quantize_model(model)
    assert [type(layer) for layer in quantized.layers[1:]] == [QuantizeActivation, QuantizeConvolution, L.Flatten,
                                                                L.Dropout, QuantizeConvolution]


def test_skip_keeps_a_layer_in_float_and_an_unsupported_layer_is_named():
    inputs = keras.Input((6, 4))
    x = L.Conv1D(4, 2, name="conv")(inputs)
    x = L.SimpleRNN(4, return_sequences=True, name="recurrent")(x)
    model = keras.Model(inputs, L.Dense(2, name="out")(L.Flatten()(x)))
    with pytest.raises(ValueError, match=r"quantize_model: layer 'recurrent' \(SimpleRNN\) can't be quantized. "
                                         r"Pass `skip=\['recurrent'\]` to keep it in float"):
        quantize_model(model)
    quantized = quantize_model(model, skip=["recurrent", L.Dense])
    assert isinstance(quantized.get_layer("quantize_recurrent"), QuantizeOutputs)
    assert isinstance(quantized.get_layer("quantize_out"), QuantizeOutputs)
    assert isinstance(quantized.get_layer("quantize_conv"), QuantizeConvolution)
    assert isinstance(quantize_model(model, skip="recurrent").get_layer("quantize_recurrent"), QuantizeOutputs)


def test_skip_reaches_a_nested_model_and_the_layers_inside_it():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(3, name="first"), L.Dense(3, name="second")], name="inner")
    model = keras.Sequential([keras.Input((4,)), inner, L.Dense(2, name="out")])
    floating = quantize_model(model, skip=["inner"]).get_layer("quantize_inner")  # the whole nested model in float
    assert isinstance(floating, QuantizeOutputs) and [type(layer) for layer in floating.layer.layers] == [L.Dense] * 2
    for copied, original in zip(floating.layer.get_weights(), inner.get_weights(), strict=True):
        np.testing.assert_array_equal(copied, original)
    rewritten = quantize_model(model, skip=["first"]).get_layer("inner")  # one layer inside it in float
    assert kinds(rewritten)["quantize_first"] == "QuantizeOutputs"
    assert kinds(rewritten)["quantize_second"] == "QuantizeConvolution"


def test_preserve_sparsity_keeps_a_pruned_models_zeros(mobile_block_model, mobile_block_data, compile_classifier):
    pruned = tfopt.prune.prune_low_magnitude(mobile_block_model(), tfopt.prune.ConstantSparsity(0.75, 0, frequency=1))
    compile_classifier(pruned).fit(*mobile_block_data, epochs=1, verbose=0,
                                   callbacks=[tfopt.prune.UpdatePruningStep()])
    with pytest.raises(ValueError, match=r"must be free of pruning wrappers \(strip_pruning it first"):
        quantize_model(pruned)
    stripped = tfopt.prune.strip_pruning(pruned)
    quantized = compile_classifier(quantize_model(stripped, preserve_sparsity=True))
    quantized.fit(*mobile_block_data, epochs=2, verbose=0)
    for layer in quantized.layers:
        if isinstance(layer, QuantizeConvolution):
            zeros = np.mean(layer.layer.kernel.numpy() == 0)
            assert zeros == pytest.approx(0.75, abs=0.02), layer.name


@pytest.mark.slow
def test_trains_and_predicts_under_jit_compile(mobile_block_model, mobile_block_data, compile_classifier):
    x, y = mobile_block_data
    quantized = compile_classifier(quantize_model(mobile_block_model()), jit_compile=True)
    history = quantized.fit(x, y, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    compiled = quantized.predict(x, verbose=0)
    compile_classifier(quantized, jit_compile=False)
    np.testing.assert_allclose(compiled, quantized.predict(x, verbose=0), atol=1e-5)


@pytest.mark.slow
def test_two_replicas_learn_the_ranges_and_weights_of_one_device(
    mobile_block_model, mobile_block_data, mirrored_strategy, compile_classifier, quantizer_ranges
):
    """Each replica sees half of every batch: the ranges are the min/max over both halves, as on one device."""
    x, y = mobile_block_data
    single = compile_classifier(quantize_model(mobile_block_model()))
    single.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    with mirrored_strategy.scope():
        replicated = compile_classifier(quantize_model(mobile_block_model()))
    replicated.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    ranges = quantizer_ranges(single)
    assert len(ranges) == 10 and np.all(ranges[:, 0] <= 0) and np.all(ranges[:, 1] > 0)
    np.testing.assert_allclose(quantizer_ranges(replicated), ranges, rtol=1e-5, atol=1e-6)
    for mirrored, plain in zip(replicated.weights, single.weights):
        np.testing.assert_allclose(np.asarray(mirrored), np.asarray(plain), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_keras_file_mid_training_resumes_as_if_uninterrupted(
    tmp_path, mobile_block_model, mobile_block_data, compile_classifier, assert_resumes_from_a_keras_file
):
    make = lambda: compile_classifier(quantize_model(mobile_block_model()))  # noqa: E731
    assert_resumes_from_a_keras_file(make, *mobile_block_data, tmp_path)


class _Interrupt(keras.callbacks.Callback):
    """Stops `fit` in the second batch of epoch 1, as a killed worker would."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 1:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_backup_and_restore_resumes_weights_and_ranges_as_if_uninterrupted(
    tmp_path, mobile_block_model, mobile_block_data, compile_classifier, quantizer_ranges
):
    """An interrupted QAT run resumed through `keras.callbacks.BackupAndRestore` (what a restarted worker does)
    ends with the weights and activation ranges of an uninterrupted one."""
    make = lambda: compile_classifier(quantize_model(mobile_block_model()))  # noqa: E731
    fit = lambda model, callbacks: model.fit(*mobile_block_data, batch_size=32, epochs=3, shuffle=False,  # noqa: E731
                                             verbose=0, callbacks=callbacks)
    uninterrupted = make()
    fit(uninterrupted, [])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(KeyboardInterrupt):
        fit(make(), [backup, _Interrupt()])
    resumed = make()
    fit(resumed, [backup])
    np.testing.assert_allclose(quantizer_ranges(resumed), quantizer_ranges(uninterrupted), rtol=1e-6, atol=1e-7)
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_model_errors_name_the_argument(mobile_block_model):
    class Subclassed(keras.Model):
        def call(self, inputs):
            return inputs

    with pytest.raises(TypeError, match=r"quantize_model: argument `model` must be a Sequential or Functional"):
        quantize_model(Subclassed())
    inputs = keras.Input((4,))
    with pytest.raises(TypeError, match=r"quantize_model: argument `model` must be a Sequential or Functional"):
        quantize_model(keras.Model(inputs, Subclassed()(inputs)))  # nested, and not copyable layer by layer
    with pytest.raises(ValueError, match=r"argument `scheme` must be one of 'int8', '16x8'. Received: scheme='int4'"):
        quantize_model(mobile_block_model(), scheme="int4")
    with pytest.raises(ValueError, match=r"layer 'concat' \(Concatenate\) has no 16x8 kernel in the TFLite converter"):
        quantize_model(mobile_block_model(), scheme="16x8")
    for gelu in (L.Dense(4, activation="gelu", name="gelu"), L.Activation("gelu", name="gelu"), keras.ops.gelu):
        outputs = gelu(L.Dense(4, name="dense")(inputs))
        with pytest.raises(ValueError, match=r"layer 'gelu\w*' \(\w+\) computes gelu, which has no 16x8 kernel"):
            quantize_model(keras.Model(inputs, outputs), scheme="16x8")
        quantize_model(keras.Model(inputs, outputs))  # int8 has it
    with pytest.raises(ValueError, match=r"argument `skip` must be names of layers of the model; not one: \['nope'\]"):
        quantize_model(mobile_block_model(), skip=["stem", "nope"])
    with pytest.raises(TypeError, match=r"argument `skip` must be a list of layer names and layer classes"):
        quantize_model(mobile_block_model(), skip=[3])
    with pytest.raises(ValueError, match=r"argument `skip` must be names of layers of the model; not one: \['nope'\]"
                                         r"\. Received: skip=\['nope'\]"):
        quantize_model(mobile_block_model(), skip="nope")  # one name, not four letters


@keras.saving.register_keras_serializable(package="tfopt_tests")
def halve(x):
    return x / 2


def test_layers_it_cannot_quantize_as_configured_are_named_with_the_skip_to_use():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, activation=halve, name="custom"), L.Dense(2)])
    with pytest.raises(ValueError, match=r"quantize_model: layer 'custom' \(Dense\) has the activation 'halve', not "
                                         r"a built-in Keras activation.* Pass `skip=\['custom'\]` to keep it in float"):
        quantize_model(model)
    assert isinstance(quantize_model(model, skip=["custom"]).get_layer("quantize_custom"), QuantizeOutputs)
    model = keras.Sequential([keras.Input((4,)), L.Normalization(axis=None, mean=1.0, variance=4.0, name="norm")])
    with pytest.raises(ValueError, match=r"quantize_model: layer 'norm' \(Normalization\) has axis=None; "
                                         r"quantize_model quantizes a Normalization over the last axis only. "
                                         r"Pass `skip=\['norm'\]`"):
        quantize_model(model)


def test_a_masked_global_average_pooling_is_refused_unless_skipped_then_exports_with_float_ops():
    ids = keras.Input((6,), dtype="int32")
    x = L.Embedding(20, 4, mask_zero=True, name="embed")(ids)
    model = keras.Model(ids, L.Dense(2, name="head")(L.GlobalAveragePooling1D(name="pool")(x)))
    with pytest.raises(ValueError, match=r"layer 'pool' \(GlobalAveragePooling1D\) averages under a Keras mask.*"
                                         r"`skip=\['pool'\]`.*allow_float_ops=True"):
        quantize_model(model)
    data = np.random.default_rng(0).integers(0, 20, size=(16, 6)).astype("int32")
    data[:, 4:] = 0
    quantized = quantize_model(model, skip=["pool"])
    quantized(data, training=True)
    np.testing.assert_allclose(quantized(data), model(data), atol=0.05)  # still the masked mean
    flatbuffer = tfopt.export.to_tflite(quantized, "int8", allow_float_ops=True)
    np.testing.assert_allclose(tfopt.export.predict(flatbuffer, data), quantized(data), atol=0.01)


def test_a_shared_layer_stays_one_layer_with_one_set_of_weights(compile_classifier):
    shared_dense, shared_norm = L.Dense(4, name="shared"), L.BatchNormalization(name="norm")
    left, right = keras.Input((6,), name="left"), keras.Input((6,), name="right")
    merged = L.Add(name="add")([shared_norm(shared_dense(left)), shared_norm(shared_dense(right))])
    model = keras.Model([left, right], L.Dense(3, activation="softmax", name="head")(merged))
    quantized = quantize_model(model)
    assert sum(isinstance(layer, QuantizeConvolution) and layer.layer.name == "shared"
               for layer in quantized.layers) == 1
    assert quantized.get_layer("quantize_shared").batch_norm is None  # shared: not folded
    assert isinstance(quantized.get_layer("quantize_norm"), QuantizeAffine)  # x * scale + offset, both ranged
    rng = np.random.default_rng(5)
    x = [rng.normal(size=(32, 6)).astype("float32") for _ in range(2)]
    compile_classifier(quantized).fit(x, rng.integers(0, 3, 32), epochs=1, verbose=0)
    assert len(quantized.get_layer("quantize_shared").trainable_weights) == 2


def test_a_batch_norm_over_another_axis_is_quantized_on_its_own_not_folded():
    inputs = keras.Input((5, 5, 2))
    x = L.Conv2D(3, 3, name="conv")(inputs)
    model = keras.Model(inputs, L.BatchNormalization(axis=1, name="norm")(x))
    quantized = quantize_model(model)
    assert quantized.get_layer("quantize_conv").batch_norm is None
    assert isinstance(quantized.get_layer("quantize_norm"), QuantizeOutputs)


def test_an_unnamed_input_gets_a_quantizer_name_no_layer_has():
    model = keras.Sequential([keras.Input((4,)), L.Dense(8, name="input"), L.Activation("tanh", name="activation")])
    names = [layer.name for layer in quantize_model(model).layers[1:]]  # after the InputLayer
    assert names == ["quantize_input_1", "quantize_input", "quantize_activation"]


def test_rescaling_normalization_and_a_standalone_batch_norm_run_in_int8():
    """EfficientNet's and DenseNet's preprocessing and pre-activation batch norms: x * scale + offset with a range
    on the product and on the sum, so TFLite runs MUL and ADD in int8 (an output range alone left them in float)."""
    inputs = keras.Input((6, 6, 3))
    x = L.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = L.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.05, 0.06, 0.07], name="normalize")(x)
    x = L.ReLU(name="relu")(L.Conv2D(4, 3, name="conv")(x))
    x = L.BatchNormalization(name="norm")(x)  # after the ReLU: not folded into the convolution
    model = keras.Model(inputs, L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(x)))
    rng = np.random.default_rng(0)
    x_data = rng.uniform(0, 255, size=(64, 6, 6, 3)).astype("float32")
    model.get_layer("norm").set_weights([rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4),
                                         rng.uniform(0.5, 2, 4)])
    quantized = quantize_model(model)
    for name in ("quantize_rescale", "quantize_normalize", "quantize_norm"):
        assert isinstance(quantized.get_layer(name), QuantizeAffine)
    for _ in range(5):
        quantized(x_data, training=True)  # ranges learned; the weights untouched
    expected = model.predict(x_data, verbose=0)
    spread = float(np.ptp(expected))
    assert np.max(np.abs(quantized.predict(x_data, verbose=0) - expected)) <= 0.05 * spread
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    assert {op.outputs[0] for op in tfopt.export.inspect(flatbuffer).ops if op.name in ("MUL", "ADD")} == {"int8"}
    assert np.max(np.abs(tfopt.export.predict(flatbuffer, x_data) - expected)) <= 0.1 * spread


def test_rescaling_and_normalization_export_in_16x8_and_litert_agrees_with_keras():
    """Their scale and offset are fake-quantized to int16 and the offset broadcast (the converter's int16 MUL and ADD
    take no float constant, and its int16 ADD no broadcast)."""
    inputs = keras.Input((5, 3))
    x = L.Rescaling(1 / 255.0, offset=-0.25, name="rescale")(inputs)
    model = keras.Model(inputs, L.Normalization(mean=[0.1, 0.2, 0.3], variance=[0.05, 0.06, 0.07])(x))
    x_data = np.random.default_rng(0).uniform(0, 255, size=(32, 5, 3)).astype("float32")
    quantized = quantize_model(model, scheme="16x8")
    for _ in range(5):
        quantized(x_data, training=True)
    expected, keras_outputs = model.predict(x_data, verbose=0), quantized.predict(x_data, verbose=0)
    assert np.max(np.abs(keras_outputs - expected)) <= 0.01 * np.ptp(expected)
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    assert {op.outputs[0] for op in tfopt.export.inspect(flatbuffer).ops if op.name in ("MUL", "ADD")} == {"int16"}
    np.testing.assert_allclose(tfopt.export.predict(flatbuffer, x_data), keras_outputs, atol=1e-3 * np.ptp(expected))


@pytest.mark.slow
def test_a_u_net_toy_exports_with_every_convolution_in_int8():
    """Conv2DTranspose (with its BatchNorm folded and ReLU fused), UpSampling2D and Concatenate in a U-Net shape."""
    inputs = keras.Input((8, 8, 1))
    down = L.Conv2D(4, 3, padding="same", activation="relu", name="down")(inputs)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="bottom")(down)
    up = L.Conv2DTranspose(4, 3, strides=2, padding="same", use_bias=False, name="up")(x)
    up = L.ReLU(name="up_relu")(L.BatchNormalization(name="up_bn")(up))
    resized = L.Conv2D(4, 1, name="resized")(L.UpSampling2D(name="upsample")(x))
    x = L.Concatenate(name="skip")([down, up, resized])
    model = keras.Model(inputs, L.Conv2D(1, 1, name="mask")(x))
    quantized = quantize_model(model)
    assert quantized.get_layer("quantize_up").batch_norm is not None
    assert quantized.get_layer("quantize_up").activation == "relu"
    rng = np.random.default_rng(0)
    x_data = rng.uniform(size=(32, 8, 8, 1)).astype("float32")
    quantized.compile("adam", "mse")
    quantized.fit(x_data, x_data, epochs=2, verbose=0)
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    summary = tfopt.export.inspect(flatbuffer)
    convolutions = summary.ops_of("CONV_2D") + summary.ops_of("TRANSPOSE_CONV")
    assert len(summary.ops_of("TRANSPOSE_CONV")) == 1 and len(convolutions) == 5
    assert {op.outputs[0] for op in convolutions} == {"int8"}
    expected = quantized.predict(x_data, verbose=0)
    assert np.max(np.abs(tfopt.export.predict(flatbuffer, x_data) - expected)) <= 0.05 * float(np.ptp(expected))


@pytest.mark.slow
def test_a_nested_model_is_rewritten_inside_and_exports_in_int8():
    """ConvNeXt's stem is a nested Sequential: its layers are quantized in place, BatchNorm folded as outside."""
    stem = keras.Sequential([keras.Input((6, 6, 3)), L.Conv2D(4, 3, name="stem_conv"), L.BatchNormalization(name="bn"),
                             L.ReLU(name="relu")], name="stem")
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, L.Dense(2, name="head")(L.GlobalAveragePooling2D(name="gap")(stem(inputs))))
    quantized = quantize_model(model)
    inner = quantized.get_layer("stem")
    assert isinstance(inner, keras.Model) and inner is not stem
    folded = inner.get_layer("quantize_stem_conv")
    assert isinstance(folded, QuantizeConvolution) and folded.batch_norm is not None and folded.activation == "relu"
    x = np.random.default_rng(0).normal(size=(32, 6, 6, 3)).astype("float32")
    quantized.compile("adam", "mse")
    quantized.fit(x, np.zeros((32, 2)), epochs=1, verbose=0)
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    expected = quantized.predict(x, verbose=0)
    assert np.max(np.abs(tfopt.export.predict(flatbuffer, x) - expected)) <= 0.05 * float(np.ptp(expected)) + 1e-6


def test_a_conv2d_with_one_group_per_channel_runs_as_an_int8_depthwise_convolution():
    """ConvNeXt's depthwise convolutions are Conv2D(groups=channels): TFLite runs them as DEPTHWISE_CONV_2D."""
    inputs = keras.Input((6, 6, 8))
    x = L.Conv2D(8, 3, groups=8, padding="same", name="grouped")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="head")(L.GlobalAveragePooling2D(name="gap")(x)))
    x_data = np.random.default_rng(0).normal(size=(32, 6, 6, 8)).astype("float32")
    quantized = quantize_model(model)
    for _ in range(5):
        quantized(x_data, training=True)
    expected = model.predict(x_data, verbose=0)
    assert np.max(np.abs(quantized.predict(x_data, verbose=0) - expected)) <= 0.05 * float(np.ptp(expected))
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    summary = tfopt.export.inspect(flatbuffer)
    assert [op.outputs[0] for op in summary.ops_of("DEPTHWISE_CONV_2D")] == ["int8"]
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    with pytest.raises(ValueError, match="groups = filters = input channels"):
        quantize_model(keras.Sequential([keras.Input((6, 6, 8)), L.Conv2D(4, 3, groups=2)]))


def test_a_causal_conv1d_follows_keras_and_exports_with_its_padding_in_int8():
    """Keras's Conv1D(padding="causal") pads the past with zeros and convolves "valid": TFLite runs int8 PAD and
    CONV_2D (over (batch, 1, steps, channels), the kernel's ranges per output channel)."""
    inputs = keras.Input((12, 2))
    x = L.Conv1D(4, 3, padding="causal", activation="relu", name="causal")(inputs)
    model = keras.Model(inputs, L.Conv1D(2, 2, strides=2, padding="causal", name="strided")(x))
    x_data = np.random.default_rng(0).normal(size=(32, 12, 2)).astype("float32")
    quantized = quantize_model(model)
    for _ in range(5):
        quantized(x_data, training=True)
    expected = model.predict(x_data, verbose=0)
    spread = float(np.ptp(expected))
    assert quantized.output.shape == model.output.shape
    assert np.max(np.abs(quantized.predict(x_data, verbose=0) - expected)) <= 0.05 * spread
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    summary = tfopt.export.inspect(flatbuffer)
    assert [(op.inputs[0], op.outputs[0]) for op in summary.ops_of("PAD")] == [("int8", "int8")] * 2
    assert [op.inputs[:2] + op.outputs for op in summary.ops_of("CONV_2D")] == [("int8", "int8", "int8")] * 2
    tflite_outputs = tfopt.export.predict(flatbuffer, x_data)
    assert np.max(np.abs(tflite_outputs - quantized.predict(x_data, verbose=0))) <= 0.02 * spread


def test_dilated_convolutions_follow_keras_train_and_export_in_int8(compile_classifier):
    """A dilated Conv1D (a TCN's causal one) and Conv2D run as one Conv2D op with its dilation, which TFLite's
    CONV_2D takes in int8 (Keras's ops lower them to SPACE_TO_BATCH_ND -> convolution -> BATCH_TO_SPACE_ND, whose
    convolution stayed float)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 2))
    x = L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu", name="tcn")(inputs)
    x = L.Reshape((4, 4, 4))(L.Conv1D(4, 2, padding="causal", dilation_rate=4, name="tcn_wide")(x))
    x = L.Conv2D(4, 3, padding="same", dilation_rate=(2, 1), activation="relu", name="conv")(x)
    x = L.Conv2D(3, 2, padding="valid", dilation_rate=2, name="valid")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    x_data = rng.normal(size=(32, 16, 2)).astype("float32")
    expected = model.predict(x_data, verbose=0)
    quantized = quantize_model(model)
    for _ in range(5):
        quantized(x_data, training=True)
    spread = float(np.ptp(expected))
    assert np.max(np.abs(quantized.predict(x_data, verbose=0) - expected)) <= 0.05 * spread
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    summary = tfopt.export.inspect(flatbuffer)
    assert summary.ops_of("SPACE_TO_BATCH_ND") == summary.ops_of("BATCH_TO_SPACE_ND") == []
    assert [op.inputs[:2] + op.outputs for op in summary.ops_of("CONV_2D")] == [("int8", "int8", "int8")] * 4
    tflite_outputs = tfopt.export.predict(flatbuffer, x_data)
    assert np.max(np.abs(tflite_outputs - quantized.predict(x_data, verbose=0))) <= 0.02 * spread
    classifier = keras.Model(quantized.input, L.Dense(3, activation="softmax")(L.Flatten()(quantized.output)))
    history = compile_classifier(classifier, rate=1e-2).fit(x_data, rng.integers(0, 3, 32), epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_a_depthwise_convolution_with_a_depth_multiplier_exports_in_int8(compile_classifier):
    """Output channel i * multiplier + m of a DepthwiseConv2D gets its own weight range, as in TFLite's
    DEPTHWISE_CONV_2D kernel; the batch norm folds per output channel."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="depthwise")(inputs)
    x = L.ReLU(name="relu")(L.BatchNormalization(name="bn")(x))
    model = keras.Model(inputs, L.Dense(3, activation="softmax", name="head")(L.GlobalAveragePooling2D(name="gap")(x)))
    rng = np.random.default_rng(0)
    model.get_layer("bn").set_weights([rng.uniform(0.1, 4, 6), rng.normal(size=6), rng.normal(size=6) * 0.1,
                                       rng.uniform(0.5, 2, 6)])
    x_data = rng.normal(size=(64, 6, 6, 3)).astype("float32")
    quantized = quantize_model(model)
    assert quantized.get_layer("quantize_depthwise").batch_norm is not None
    compile_classifier(quantized, rate=1e-3).fit(x_data, rng.integers(0, 3, 64), epochs=1, verbose=0)
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    [depthwise] = tfopt.export.inspect(flatbuffer).ops_of("DEPTHWISE_CONV_2D")
    assert depthwise.inputs[:2] + depthwise.outputs == ("int8", "int8", "int8")
    expected, tflite_outputs = quantized.predict(x_data, verbose=0), tfopt.export.predict(flatbuffer, x_data)
    assert np.max(np.abs(tflite_outputs - expected)) <= 0.02
    assert np.mean(tflite_outputs.argmax(1) == expected.argmax(1)) >= 0.97
