"""`prune_low_magnitude` on Keras 3 models: exact zeros under Adam, the schedule's steps, jit_compile, a 2-replica
MirroredStrategy, `.keras` save/load and BackupAndRestore mid-training, structures, layer choice, and its errors."""

import warnings

import keras
import numpy as np
import pytest

import tfopt.prune as tprune


def reference_zeros(size, sparsity):
    """Zeros tfmot leaves in a kernel of `size` weights at `sparsity`."""
    return size - max(int(np.round(np.float32(size) * (np.float32(1) - np.float32(sparsity)))), 1)


def pruned_mlp(mlp, schedule, **kwargs):
    pruned = tprune.prune_low_magnitude(mlp(), schedule, **kwargs)
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    return pruned


def steps_of(model):
    return [int(np.asarray(layer.pruning_step)) for layer in tprune.wrapper.pruned_layers(model)]


def masks_of(model):
    return [np.asarray(layer.mask) for layer in tprune.wrapper.pruned_layers(model)]


def test_pruned_weights_stay_exactly_zero_after_every_adam_step(mlp, mlp_data, fit_pruned, mask_probe):
    pruned, probe = pruned_mlp(mlp, tprune.ConstantSparsity(0.75, begin_step=0, end_step=16, frequency=4)), mask_probe()
    fit_pruned(pruned, mlp_data, epochs=2, callbacks=[probe])
    final_masks = masks_of(pruned)
    fit_pruned(pruned, mlp_data, epochs=2, callbacks=[probe])  # no update after step 16: Adam alone pushes
    expected = [reference_zeros(128, 0.75), reference_zeros(64, 0.75)]
    assert probe.zeros[:3] == [[0, 0]] * 3  # the first update is at step 4
    assert probe.zeros[3:] == [expected] * 29
    for mask, final in zip(masks_of(pruned), final_masks):
        np.testing.assert_array_equal(mask, final)
    assert steps_of(pruned) == [32, 32]


def test_masks_follow_the_schedule_step_by_step(mlp, mlp_data, fit_pruned, mask_probe):
    schedule = tprune.PolynomialDecay(0.0, 0.75, begin_step=2, end_step=14, frequency=4)
    pruned, probe = pruned_mlp(mlp, schedule), mask_probe()
    fit_pruned(pruned, mlp_data, epochs=2, callbacks=[probe])
    last_update = 0
    for step, zeros in enumerate(probe.zeros, start=1):  # the step is 1 in the first batch, as tfmot counts
        last_update = step if schedule.should_update(step) else last_update
        sparsity = float(schedule.sparsity(last_update)) if last_update else 0.0
        assert zeros == [reference_zeros(128, sparsity), reference_zeros(64, sparsity)], step


def test_jit_compile_prunes_as_the_traced_step(mlp, mlp_data, fit_pruned, mask_probe):
    schedule = tprune.ConstantSparsity(0.5, begin_step=0, frequency=3)
    results = []
    for jit in (False, True):
        pruned, probe = tprune.prune_low_magnitude(mlp(), schedule), mask_probe()
        pruned.compile(keras.optimizers.Adam(0.05), "mse", jit_compile=jit)
        fit_pruned(pruned, mlp_data, epochs=2, callbacks=[probe])
        results.append((pruned.get_weights(), probe.zeros[-1]))
    assert results[0][1] == results[1][1] == [64, 32]
    for traced, compiled in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(compiled, traced, rtol=1e-5, atol=1e-6)


def test_mirrored_strategy_equals_one_device(mlp, mlp_data, fit_pruned, mask_probe, mirrored_strategy):
    schedule = tprune.PolynomialDecay(0.2, 0.7, begin_step=0, end_step=12, frequency=3)
    one_device = pruned_mlp(mlp, schedule)
    fit_pruned(one_device, mlp_data, epochs=2)
    with mirrored_strategy.scope():
        mirrored = pruned_mlp(mlp, schedule)
    probe = mask_probe()
    fit_pruned(mirrored, mlp_data, epochs=2, callbacks=[probe])
    assert steps_of(mirrored) == [16, 16]  # one step per global batch
    assert probe.zeros[-1] == [reference_zeros(128, 0.7), reference_zeros(64, 0.7)]
    for replicated, single in zip(mirrored.get_weights(), one_device.get_weights()):
        np.testing.assert_allclose(replicated, single, rtol=1e-5, atol=1e-6)


def test_keras_save_load_mid_training_continues_identically(mlp, mlp_data, fit_pruned, tmp_path):
    schedule = tprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=16, frequency=2, power=2)
    pruned = pruned_mlp(mlp, schedule, structure=None)
    fit_pruned(pruned, mlp_data)
    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    assert isinstance(loaded.layers[0], tprune.PruneLowMagnitude)
    assert loaded.layers[0].schedule.get_config() == schedule.get_config()
    assert steps_of(loaded) == [8, 8]
    for model in (pruned, loaded):
        fit_pruned(model, mlp_data)
    for restored, uninterrupted in zip(loaded.get_weights(), pruned.get_weights(), strict=True):
        np.testing.assert_allclose(restored, uninterrupted, rtol=1e-6, atol=1e-7)
    assert tprune.sparsity(loaded) == tprune.sparsity(pruned)


class StopAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_masks_and_pruning_step(mlp, mlp_data, fit_pruned, tmp_path):
    schedule = tprune.PolynomialDecay(0.0, 0.8, begin_step=4, end_step=20, frequency=4)
    uninterrupted = pruned_mlp(mlp, schedule)
    fit_pruned(uninterrupted, mlp_data, epochs=3)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="interrupted"):
        fit_pruned(pruned_mlp(mlp, schedule), mlp_data, epochs=3, callbacks=[backup, StopAfterEpoch(1)])
    resumed = pruned_mlp(mlp, schedule)  # a fresh process would rebuild the model like this
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    history = fit_pruned(resumed, mlp_data, epochs=3, callbacks=[backup])
    assert len(history.epoch) == 1
    assert steps_of(resumed) == [24, 24]
    for restored, reference in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_allclose(restored, reference, rtol=1e-6, atol=1e-7)


def test_the_original_model_is_not_changed(mlp, mlp_data, fit_pruned):
    original = mlp()
    layers, weights = list(original.layers), original.get_weights()
    pruned = pruned_mlp(lambda: original, tprune.ConstantSparsity(0.5, begin_step=0, frequency=1))
    np.testing.assert_allclose(pruned.predict(mlp_data[0], verbose=0), original.predict(mlp_data[0], verbose=0))
    fit_pruned(pruned, mlp_data)
    assert original.layers == layers and all(type(layer) is keras.layers.Dense for layer in original.layers)
    for now, before in zip(original.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(now, before)
    assert all(layer.kernel.constraint is None for layer in original.layers)


def test_mixed_precision_keeps_float32_kernels_exactly_sparse(mlp, mlp_data, fit_pruned, mask_probe):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        pruned, probe = pruned_mlp(mlp, tprune.ConstantSparsity(0.5, begin_step=0, frequency=2)), mask_probe()
        fit_pruned(pruned, mlp_data, callbacks=[probe])
    finally:
        keras.config.set_dtype_policy("float32")
    assert probe.zeros[-1] == [64, 32]
    assert all(layer.pruned_kernel.dtype == "float32" for layer in tprune.wrapper.pruned_layers(pruned))


def groups_of(kernel, m):
    """The groups of M consecutive weights along kernel axis -2, one per row."""
    return np.moveaxis(kernel, -2, -1).reshape(-1, m)


def test_two_of_four_holds_in_every_group(convnet, convnet_data, fit_pruned):
    pruned = tprune.prune_low_magnitude(convnet(), tprune.ConstantSparsity(0.0, begin_step=0, frequency=4), "2:4")
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    fit_pruned(pruned, convnet_data)
    wrapped = {layer.layer.name: layer for layer in tprune.wrapper.pruned_layers(pruned)}
    assert sorted(wrapped) == ["conv", "out", "separable"]  # a depthwise kernel has no input axis to group
    for layer in wrapped.values():
        kernel = np.asarray(layer.pruned_kernel)
        np.testing.assert_array_equal((groups_of(kernel, 4) == 0).sum(axis=1), 2)


def test_channel_zeroes_whole_filters(convnet, convnet_data, fit_pruned):
    pruned = tprune.prune_low_magnitude(convnet(), tprune.ConstantSparsity(0.5, begin_step=0, frequency=4), "channel")
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    fit_pruned(pruned, convnet_data)
    zero_filters = {}
    for layer in tprune.wrapper.pruned_layers(pruned):
        kernel, name = np.asarray(layer.pruned_kernel), layer.layer.name
        filters = kernel.reshape(-1, *kernel.shape[-2 if name == "depthwise" else -1:])  # (channel, multiplier)
        zero = np.all(filters == 0, axis=0)
        assert np.all(np.any(filters != 0, axis=0) | zero)  # a filter is either wholly zero or kept
        zero_filters[layer.layer.name] = int(zero.sum())
    assert zero_filters == {"conv": 4, "depthwise": 4, "separable": 4, "out": 2}


@pytest.mark.parametrize(
    "layers, expected",
    [
        (None, ["hidden", "out"]),
        ("out", ["out"]),
        (keras.layers.Dense, ["hidden", "out"]),
        (lambda layer: layer.units > 8, ["hidden"]),
        (["out", lambda layer: layer.name == "hidden"], ["hidden", "out"]),
    ],
    ids=["default", "name", "class", "predicate", "list"],
)
def test_layers_chooses_what_is_pruned(mlp, layers, expected):
    pruned = tprune.prune_low_magnitude(mlp(), tprune.ConstantSparsity(0.5, begin_step=0), layers=layers)
    assert [layer.layer.name for layer in tprune.wrapper.pruned_layers(pruned)] == expected
    assert [layer.name for layer in pruned.layers] == [
        f"prune_low_magnitude_{name}" if name in expected else name for name in ("hidden", "out")
    ]


def test_nested_models_are_pruned_inside(mlp, mlp_data):
    inputs = keras.Input((8,))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="head")(mlp()(inputs)))
    pruned = tprune.prune_low_magnitude(outer, tprune.ConstantSparsity(0.5, begin_step=0))
    assert [layer.layer.name for layer in tprune.wrapper.pruned_layers(pruned)] == ["hidden", "out", "head"]
    np.testing.assert_allclose(pruned.predict(mlp_data[0], verbose=0), outer.predict(mlp_data[0], verbose=0))


def test_a_functional_model_with_keras_ops_calls_is_pruned(mlp_data):
    """`keras.ops` calls are nodes of a functional graph that hold no weights: copied as they are, not layers."""
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8, name="hidden")(inputs)
    shifted = keras.ops.relu(keras.ops.add(hidden[:, :6], 1.0))
    model = keras.Model(inputs, keras.layers.Dense(4, name="out")(shifted))
    pruned = tprune.prune_low_magnitude(model, tprune.ConstantSparsity(0.5, begin_step=0, frequency=1))
    assert [layer.layer.name for layer in tprune.wrapper.pruned_layers(pruned)] == ["hidden", "out"]
    np.testing.assert_allclose(pruned.predict(mlp_data[0], verbose=0), model.predict(mlp_data[0], verbose=0))
    pruned.compile("adam", "mse")
    pruned.fit(*mlp_data, epochs=1, verbose=0, callbacks=[tprune.UpdatePruningStep()])
    assert [entry.sparsity for entry in tprune.sparsity(tprune.strip_pruning(pruned))] == [0.5, 0.5]


def sequence_model():
    """Token ids -> Embedding -> an attention-style EinsumDense (8 -> 2 heads x 4) -> Dense."""
    ids = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embedding")(ids)
    x = keras.layers.EinsumDense("abc,cde->abde", output_shape=(6, 2, 4), bias_axes="de", name="heads")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(ids, keras.layers.Dense(4, name="out")(x))


def fit_sequence(pruned):
    rng = np.random.default_rng(0)
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    pruned.fit(rng.integers(0, 20, (32, 6)), rng.normal(size=(32, 4)), epochs=1, verbose=0,
               callbacks=[tprune.UpdatePruningStep()])
    return {row.name: row for row in tprune.sparsity(tprune.strip_pruning(pruned))}


def test_embedding_and_einsum_dense_kernels_are_pruned_to_the_sparsity():
    pruned = tprune.prune_low_magnitude(sequence_model(), tprune.ConstantSparsity(0.5, begin_step=0, frequency=1))
    assert [layer.layer.name for layer in tprune.wrapper.pruned_layers(pruned)] == ["embedding", "heads", "out"]
    rows = fit_sequence(pruned)
    assert [rows[name].sparsity for name in ("embedding/embeddings", "heads/kernel", "out/kernel")] == [0.5] * 3


def test_channel_structure_zeroes_whole_embedding_features_and_einsum_output_units():
    pruned = tprune.prune_low_magnitude(sequence_model(), tprune.ConstantSparsity(0.5, begin_step=0, frequency=1),
                                        structure="channel", layers=["embedding", "heads"])
    fit_sequence(pruned)
    stripped = tprune.strip_pruning(pruned)
    table = stripped.get_layer("embedding").get_weights()[0]  # (20, 8): 4 of the 8 feature columns zero
    assert sorted(np.all(table == 0, axis=0).tolist()) == [False] * 4 + [True] * 4
    kernel = stripped.get_layer("heads").get_weights()[0].reshape(8, 8)  # (in, heads * units): 4 whole columns
    assert sorted(np.all(kernel == 0, axis=0).tolist()) == [False] * 4 + [True] * 4


def test_a_keras_mask_passes_through_pruned_layers():
    """Embedding(mask_zero=True) -> Dense -> GlobalAveragePooling1D, both pruned: the pooling still averages the
    real tokens only, and Keras does not warn that a wrapper destroys the mask."""
    keras.utils.set_random_seed(0)
    ids = keras.Input((5,), dtype="int32")
    features = keras.layers.Dense(4, name="dense")(keras.layers.Embedding(10, 4, mask_zero=True, name="emb")(ids))
    model = keras.Model(ids, keras.layers.GlobalAveragePooling1D()(features))
    tokens = np.array([[1, 2, 0, 0, 0], [3, 0, 0, 0, 0]])
    real_mean = [np.asarray(keras.Model(ids, features)(tokens))[row, :count].mean(0) for row, count in ((0, 2), (1, 1))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned = tprune.prune_low_magnitude(model, tprune.ConstantSparsity(0.5, begin_step=0))
        outputs = pruned.predict(tokens, verbose=0)
    assert [layer.layer.name for layer in tprune.wrapper.pruned_layers(pruned)] == ["emb", "dense"]
    assert not [str(warning.message) for warning in caught if "mask" in str(warning.message)]
    np.testing.assert_allclose(outputs, real_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(outputs, model.predict(tokens, verbose=0))
    embedding = pruned.get_layer("prune_low_magnitude_emb")
    np.testing.assert_array_equal(embedding.compute_mask(tokens), tokens != 0)  # as Embedding's own


def test_n_of_m_groups_a_dense_like_einsum_along_its_input_axis():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.EinsumDense("ab,bc->ac", output_shape=4, name="proj")(inputs))
    pruned = tprune.prune_low_magnitude(model, tprune.ConstantSparsity(0.5, begin_step=0, frequency=1), "2:4")
    pruned.compile("adam", "mse")
    pruned.fit(np.ones((8, 8)), np.ones((8, 4)), verbose=0, callbacks=[tprune.UpdatePruningStep()])
    kernel = tprune.strip_pruning(pruned).get_layer("proj").get_weights()[0]
    assert np.all(np.count_nonzero(kernel.reshape(2, 4, 4), axis=1) == 2)  # 2 of every 4 inputs, per output


def test_conv_transpose_channel_pruning_zeroes_output_filters():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2DTranspose(6, 3, name="up")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(keras.layers.GlobalAveragePooling2D()(x)))
    pruned = tprune.prune_low_magnitude(model, tprune.ConstantSparsity(0.5, begin_step=0, frequency=1),
                                        structure="channel", layers=["up"])
    pruned.compile("adam", "mse")
    pruned.fit(np.ones((8, 4, 4, 3)), np.ones((8, 2)), verbose=0, callbacks=[tprune.UpdatePruningStep()])
    kernel = tprune.strip_pruning(pruned).get_layer("up").get_weights()[0]  # (3, 3, filters 6, inputs 3)
    assert sorted(np.all(kernel == 0, axis=(0, 1, 3)).tolist()) == [False] * 3 + [True] * 3
    with pytest.raises(ValueError, match="it has no input axis"):
        tprune.prune_low_magnitude(model, tprune.ConstantSparsity(0.5, 0), structure="2:4", layers=["up"])


def test_channel_pruning_of_an_einsum_without_trailing_outputs_is_refused():
    inputs = keras.Input((3, 8))
    model = keras.Model(inputs, keras.layers.EinsumDense("abc,dc->abd", output_shape=(3, 4), name="odd")(inputs))
    with pytest.raises(ValueError, match="its kernel does not end with its output axes"):
        tprune.prune_low_magnitude(model, tprune.ConstantSparsity(0.5, 0), structure="channel", layers=["odd"])


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def model_of(*layers, inputs=(6,)):
    return keras.Sequential([keras.Input(inputs), *layers])


def calling_twice(layer):
    """A model on 6 inputs calling `layer` twice in a row."""
    inputs = keras.Input((6,))
    return keras.Model(inputs, layer(layer(inputs)))


SCHEDULE = tprune.ConstantSparsity(0.5, begin_step=0)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: tprune.prune_low_magnitude(model_of(keras.layers.BatchNormalization()), SCHEDULE), ValueError,
         "argument `layers` must be a choice of at least one prunable layer (Dense, Conv1D"),
        (lambda: tprune.prune_low_magnitude(model_of(keras.layers.Dense(2)), SCHEDULE, layers=keras.layers.Conv2D),
         ValueError, "argument `layers` must be a choice of at least one prunable layer"),
        (lambda: tprune.prune_low_magnitude(model_of(keras.layers.Dense(2)), SCHEDULE, layers="nope"), ValueError,
         "argument `layers` must be names of prunable layers; not one: ['nope']. Received: layers='nope'"),
        (lambda: tprune.prune_low_magnitude(model_of(keras.layers.Dense(3, name="six_inputs")), SCHEDULE, "2:4"),
         ValueError, "argument `structure` must be a multiple of M = 4 inputs per group, but layer 'six_inputs' "
                     "(Dense) has 6 inputs. Received: structure='2:4'"),
        (lambda: tprune.prune_low_magnitude(model_of(keras.layers.DepthwiseConv2D(3, name="dw"), inputs=(5, 5, 4)),
                                            SCHEDULE, "2:4", layers="dw"),
         ValueError, "must be None or \"channel\" for layer 'dw' (DepthwiseConv2D): it has no input axis"),
        (lambda: tprune.prune_low_magnitude(model_of(keras.layers.Dense(2)), SCHEDULE, "2by4"), ValueError,
         "argument `structure` must be None, \"channel\", \"head\" or \"N:M\""),
        (lambda: tprune.prune_low_magnitude(keras.Sequential([keras.layers.Dense(2)]), SCHEDULE), ValueError,
         "argument `model` must be built"),
        (lambda: tprune.prune_low_magnitude(keras.layers.Dense(2), SCHEDULE), TypeError,
         "prune_low_magnitude: argument `model` must be a Keras 3 or tf_keras Model. Received: model=<Dense"),
        (lambda: tprune.prune_low_magnitude(Subclassed(), SCHEDULE), TypeError,
         "argument `model` must be a Sequential or Functional model"),
        (lambda: tprune.prune_low_magnitude(model_of(keras.layers.Dense(2)), 0.5), TypeError,
         "argument `schedule` must be a ConstantSparsity or PolynomialDecay. Received: schedule=0.5"),
        (lambda: tprune.prune_low_magnitude(model_of(keras.layers.Dense(2)), SCHEDULE, layers=[3]), TypeError,
         "argument `layers` must be a layer class, a layer name, a function layer -> bool, or a list of them"),
        (lambda: tprune.prune_low_magnitude(calling_twice(keras.layers.Dense(6, name="shared")), SCHEDULE),
         ValueError, "argument `layers` must be a choice of layers the model calls once each, but it calls layer "
                     "'shared' (Dense) 2 times, and each call would advance its pruning schedule by a step: leave it "
                     "out. Received: layers=None"),
        (lambda: tprune.prune_low_magnitude(calling_twice(model_of(keras.layers.Dense(6, name="inner"))), SCHEDULE,
                                            layers="inner"),
         ValueError, "but it calls layer 'inner' (Dense) 2 times"),
    ],
    ids=["nothing-prunable", "nothing-chosen", "unknown-name", "n-m-does-not-divide", "n-m-on-depthwise",
         "malformed-structure", "unbuilt", "not-a-model", "subclassed", "not-a-schedule", "bad-layers", "shared-layer",
         "shared-nested-model"],
)
def test_errors(call, error, message):
    with pytest.raises(error) as raised:
        call()
    assert message in str(raised.value)


def test_a_pruned_model_is_pruned_again_in_its_other_layers_only(mlp):
    pruned = tprune.prune_low_magnitude(mlp(), SCHEDULE, layers="hidden")
    twice = tprune.prune_low_magnitude(pruned, tprune.ConstantSparsity(0.8, 0), structure="channel")
    assert [(layer.name, layer.structure) for layer in tprune.wrapper.pruned_layers(twice)] == [
        ("prune_low_magnitude_hidden", None), ("prune_low_magnitude_out", "channel")]
    with pytest.raises(ValueError, match=r"argument `model` must be a model with prunable layers not pruned yet "
                                         r"\(strip_pruning it to prune them again\)"):
        tprune.prune_low_magnitude(twice, SCHEDULE)
    with pytest.raises(ValueError, match=r"names of prunable layers; not one: \['hidden'\]"):
        tprune.prune_low_magnitude(pruned, SCHEDULE, layers="hidden")
