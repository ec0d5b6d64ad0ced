"""tfopt.prune.tfmot: tfopt's pruning arguments on a tf_keras model, handed to tfmot."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tf_keras

import tfopt
from tfopt.prune import ConstantSparsity, PolynomialDecay, PruningSchedule
from tfopt.prune import tfmot as adapter

KERNELS = ("conv", "pointwise", "hidden", "logits")


def _model():
    layers = tf_keras.layers
    return tf_keras.Sequential([
        tf_keras.Input((6, 6, 4)),
        layers.Conv2D(8, 3, name="conv"),
        layers.ReLU(),
        layers.Conv2D(8, 1, name="pointwise"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(8, activation="relu", name="hidden"),
        layers.Dense(4, name="logits"),
    ])


def _fit(pruned, callback=None, epochs=1):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6, 6, 4)).astype("float32"), rng.integers(0, 4, size=64)
    pruned.compile(tf_keras.optimizers.Adam(1e-2), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[callback or adapter.update_pruning_step()])
    return x


def _kernels(model):
    return {name: model.get_layer(name).kernel.numpy() for name in KERNELS}


def _zeros(kernel):
    return float(np.mean(kernel == 0))


def _groups(kernel, m, axis):
    """The weights in groups of `m` consecutive ones along `axis`: shape (..., count // m, m)."""
    moved = np.moveaxis(kernel, axis, -1)
    return moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)


def test_schedules_map_onto_tfmot_schedules():
    constant = adapter.pruning_schedule(ConstantSparsity(0.6, begin_step=3, end_step=50, frequency=7))
    assert constant.get_config() == {"class_name": "ConstantSparsity", "config": {
        "target_sparsity": 0.6, "begin_step": 3, "end_step": 50, "frequency": 7}}
    decay = adapter.pruning_schedule(PolynomialDecay(0.1, 0.7, begin_step=2, end_step=40, power=2, frequency=5))
    assert decay.get_config() == {"class_name": "PolynomialDecay", "config": {
        "initial_sparsity": 0.1, "final_sparsity": 0.7, "power": 2.0, "begin_step": 2, "end_step": 40, "frequency": 5}}


def test_constant_sparsity_prunes_every_kernel_to_its_target_and_strip_keeps_the_function():
    model = _model()
    weights = model.get_weights()
    pruned = adapter.prune_low_magnitude(model, ConstantSparsity(0.5, begin_step=0, frequency=1))
    x = _fit(pruned)
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)  # the source model is not touched
    stripped = adapter.strip_pruning(pruned)
    assert [type(layer).__name__ for layer in stripped.layers] == [type(layer).__name__ for layer in _model().layers]
    assert {name: _zeros(kernel) for name, kernel in _kernels(stripped).items()} == dict.fromkeys(KERNELS, 0.5)
    np.testing.assert_allclose(stripped(x).numpy(), pruned(x).numpy(), atol=1e-6)


def test_polynomial_decay_reaches_its_final_sparsity():
    pruned = adapter.prune_low_magnitude(_model(), PolynomialDecay(0.1, 0.75, begin_step=0, end_step=3, frequency=1))
    _fit(pruned)
    stripped = adapter.strip_pruning(pruned)
    assert {name: _zeros(kernel) for name, kernel in _kernels(stripped).items()} == dict.fromkeys(KERNELS, 0.75)


@pytest.mark.parametrize("structure, zeros", [("2:4", 2), ("1:4", 1)])
def test_n_of_m_zeros_n_weights_in_every_m_along_the_input_axis(structure, zeros):
    pruned = adapter.prune_low_magnitude(_model(), ConstantSparsity(0.5, begin_step=0, frequency=1), structure)
    _fit(pruned)
    for name, kernel in _kernels(adapter.strip_pruning(pruned)).items():
        along_inputs = (_groups(kernel, 4, axis=-2) == 0).sum(axis=-1)
        along_outputs = (_groups(kernel, 4, axis=-1) == 0).sum(axis=-1)
        assert np.all(along_inputs == zeros), name
        assert not np.all(along_outputs == zeros), name  # the groups run along the inputs, not the outputs


@pytest.mark.parametrize(
    "layers, wrapped",
    [
        (tf_keras.layers.Dense, ["hidden", "logits"]),
        ("pointwise", ["pointwise"]),
        (lambda layer: getattr(layer, "filters", 0) == 8, ["conv", "pointwise"]),
        (["conv", tf_keras.layers.Dense], ["conv", "hidden", "logits"]),
    ],
    ids=["class", "name", "predicate", "list"],
)
def test_layers_chooses_what_tfmot_wraps(layers, wrapped):
    pruned = adapter.prune_low_magnitude(_model(), ConstantSparsity(0.5, begin_step=0), layers=layers)
    names = [layer.layer.name for layer in pruned.layers if type(layer).__name__ == "PruneLowMagnitude"]
    assert names == wrapped


def test_layers_chooses_in_a_functional_model_too():
    inputs = tf_keras.Input((8,))
    hidden = tf_keras.layers.Dense(8, name="hidden")(inputs)
    model = tf_keras.Model(inputs, tf_keras.layers.Add()([hidden, tf_keras.layers.Dense(8, name="residual")(hidden)]))
    pruned = adapter.prune_low_magnitude(model, ConstantSparsity(0.5, begin_step=0), "2:4", layers="residual")
    assert [type(layer).__name__ for layer in pruned.layers] == ["InputLayer", "Dense", "PruneLowMagnitude", "Add"]


def test_only_the_chosen_layers_are_pruned():
    pruned = adapter.prune_low_magnitude(
        _model(), ConstantSparsity(0.5, begin_step=0, frequency=1), layers=tf_keras.layers.Dense
    )
    _fit(pruned)
    sparsity = {name: _zeros(kernel) for name, kernel in _kernels(adapter.strip_pruning(pruned)).items()}
    assert sparsity == {"conv": 0.0, "pointwise": 0.0, "hidden": 0.5, "logits": 0.5}


def _depthwise_model():
    """Conv2D, DepthwiseConv2D, a nested Sequential holding a SeparableConv2D, and Dense."""
    layers = tf_keras.layers
    block = tf_keras.Sequential([tf_keras.Input((4, 4, 8)), layers.SeparableConv2D(8, 3, name="separable")])
    return tf_keras.Sequential([
        tf_keras.Input((6, 6, 4)),
        layers.Conv2D(8, 3, padding="same", name="conv"),
        layers.DepthwiseConv2D(3, name="depthwise"),
        block,
        layers.Flatten(),
        layers.Dense(4, name="logits"),
    ])


DEFAULT_KERNELS = {  # what layers=None prunes in Keras 3 too: not the separable convolution's depthwise kernel
    "conv/kernel": 0.5, "depthwise/depthwise_kernel": 0.5, "separable/depthwise_kernel": 0.0,
    "separable/pointwise_kernel": 0.5, "logits/kernel": 0.5,
}


def test_by_default_depthwise_and_separable_kernels_are_pruned_as_in_keras3_and_strip_leaves_plain_layers():
    pruned = tfopt.prune.prune_low_magnitude(_depthwise_model(), ConstantSparsity(0.5, begin_step=0, frequency=1))
    x = _fit(pruned, tfopt.prune.UpdatePruningStep())
    assert {row.name: row.sparsity for row in tfopt.prune.sparsity(pruned)} == DEFAULT_KERNELS
    stripped = tfopt.prune.strip_pruning(pruned)
    assert {row.name: row.sparsity for row in tfopt.prune.sparsity(stripped)} == DEFAULT_KERNELS
    plain = [type(layer) for layer in [*stripped.layers, *stripped.layers[2].layers]]
    assert plain == [type(layer) for layer in [*_depthwise_model().layers, *_depthwise_model().layers[2].layers]]
    assert "tfopt" not in json.dumps(stripped.get_config())
    np.testing.assert_allclose(stripped(x).numpy(), pruned(x).numpy(), atol=1e-6)


def test_n_of_m_by_default_leaves_depthwise_layers_dense_and_refuses_them_when_chosen():
    pruned = tfopt.prune.prune_low_magnitude(_depthwise_model(), ConstantSparsity(0.5, begin_step=0), "2:4")
    assert [type(layer).__name__ for layer in pruned.layers][:2] == ["PruneLowMagnitude", "DepthwiseConv2D"]
    with pytest.raises(ValueError, match="must be None or \"channel\" for layer 'depthwise' .*no input axis"):
        tfopt.prune.prune_low_magnitude(_depthwise_model(), ConstantSparsity(0.5, 0), "2:4", layers="depthwise")


def _conv1d_model():
    layers = tf_keras.layers
    return tf_keras.Sequential([
        tf_keras.Input((8, 4)), layers.Conv1D(8, 3, name="conv1d"), layers.SeparableConv1D(8, 3, name="separable"),
        layers.Reshape((4, 2, 1, 4)), layers.Conv3D(4, 1, name="conv3d"), layers.Flatten(), layers.Dense(4, name="d"),
    ])


def test_n_of_m_leaves_kernels_tfmot_cannot_group_out_by_default_and_refuses_them_when_chosen():
    pruned = tfopt.prune.prune_low_magnitude(_conv1d_model(), ConstantSparsity(0.5, 0, frequency=1), "2:4")
    x = np.random.default_rng(0).normal(size=(32, 8, 4)).astype("float32")
    pruned.compile("adam", "mse")
    pruned.fit(x, np.zeros((32, 4), "float32"), batch_size=16, verbose=0, callbacks=[tfopt.prune.UpdatePruningStep()])
    sparsities = {row.name: row.sparsity for row in tfopt.prune.sparsity(pruned)}
    assert sparsities == {"conv1d/kernel": 0.0, "separable/depthwise_kernel": 0.0, "separable/pointwise_kernel": 0.0,
                          "conv3d/kernel": 0.0, "d/kernel": 0.5}
    assert [type(layer).__name__ for layer in pruned.layers][-1] == "PruneLowMagnitude"
    for name, rank in [("conv1d", 3), ("separable", 3), ("conv3d", 5)]:
        with pytest.raises(ValueError, match=rf"prune_low_magnitude: argument `structure` must be None for layer "
                                             rf"'{name}' \(.*\) of a tf_keras model: tfmot's \"N:M\" takes 2D "
                                             rf"\(Dense\) and 4D \(Conv2D\) kernels only, not its {rank}D kernel.*"
                                             r"tfopt.compat.to_keras3.*Received: structure='2:4'"):
            tfopt.prune.prune_low_magnitude(_conv1d_model(), ConstantSparsity(0.5, 0), "2:4", layers=[name, "d"])


def test_a_saved_pruned_model_with_a_depthwise_layer_loads_in_tfmots_prune_scope(tmp_path):
    import tensorflow_model_optimization as tfmot

    pruned = tfopt.prune.prune_low_magnitude(_depthwise_model(), ConstantSparsity(0.5, begin_step=0, frequency=1))
    x = _fit(pruned, tfopt.prune.UpdatePruningStep())
    pruned.save(tmp_path / "pruned.keras")
    adapter.prunable_depthwise_classes()  # registers the classes (a no-op here: pruning made them)
    with tfmot.sparsity.keras.prune_scope():
        loaded = tf_keras.models.load_model(tmp_path / "pruned.keras")
    assert type(loaded.get_layer("prune_low_magnitude_depthwise").layer).__name__ == "PrunableDepthwiseConv2D"
    np.testing.assert_allclose(loaded(x).numpy(), pruned(x).numpy(), atol=1e-6)


@pytest.mark.parametrize("structure", ["channel", "head"])
def test_channel_and_head_pruning_are_refused_for_tf_keras(structure):
    expected = f"must be None or \"N:M\" for a tf_keras model.*Received: structure='{structure}'"
    with pytest.raises(ValueError, match=expected):
        adapter.prune_low_magnitude(_model(), ConstantSparsity(0.5, begin_step=0), structure)


def test_shrinking_is_refused_for_tf_keras():
    pruned = adapter.prune_low_magnitude(_model(), ConstantSparsity(0.5, begin_step=0))
    with pytest.raises(TypeError, match="strip_pruning: argument `shrink` must be False for a tf_keras model"):
        tfopt.prune.strip_pruning(pruned, shrink=True)


@pytest.mark.parametrize(
    "layers, error, match",
    [
        ("nope", ValueError, r"names of layers of the model; not one: \['nope'\]. Received: layers='nope'"),
        (lambda layer: False, ValueError, "a choice of at least one prunable layer"),
        (3, TypeError, "Received: layers=3"),
    ],
)
def test_bad_layers_arguments_are_named(layers, error, match):
    with pytest.raises(error, match=f"prune_low_magnitude: argument `layers` must be .*{match}"):
        adapter.prune_low_magnitude(_model(), ConstantSparsity(0.5, begin_step=0), layers=layers)


def test_a_model_without_a_layer_pruned_by_default_is_refused():
    model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.ReLU()])
    with pytest.raises(ValueError, match="must be a choice of at least one prunable layer .*Received: layers=None"):
        adapter.prune_low_magnitude(model, ConstantSparsity(0.5, begin_step=0))


def test_a_schedule_tfmot_lacks_is_a_type_error():
    with pytest.raises(TypeError, match="argument `schedule` must be a ConstantSparsity or PolynomialDecay"):
        adapter.pruning_schedule(type("Stepwise", (PruningSchedule,), {})(begin_step=0, end_step=10, frequency=1))


def test_the_public_api_reaches_tfmot_for_a_tf_keras_model():
    pruned = tfopt.prune.prune_low_magnitude(_model(), ConstantSparsity(0.5, begin_step=0, frequency=1), "2:4")
    _fit(pruned, tfopt.prune.UpdatePruningStep())
    stripped = tfopt.prune.strip_pruning(pruned)
    assert {name: _zeros(kernel) for name, kernel in _kernels(stripped).items()} == dict.fromkeys(KERNELS, 0.5)


CHECK = """
import json, sys
import tfopt, tfopt.compat, tfopt.prune, tfopt.prune.tfmot
heavy = ("tf_keras", "tensorflow_model_optimization")
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in heavy)))
"""


def test_importing_the_adapters_imports_neither_tfmot_nor_tf_keras():
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    output = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, check=True)
    assert json.loads(output.stdout.strip().splitlines()[-1]) == []
