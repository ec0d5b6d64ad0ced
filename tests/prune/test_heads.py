"""Pruning whole attention heads (`structure="head"`) and feed-forward neurons, and `strip_pruning(shrink=True)`,
which removes them: fewer heads and units, the same outputs."""

import keras
import numpy as np
import pytest

import tfopt.prune as tprune
from tfopt.prune.heads import head_axes

HEADS, KEY_DIM, WIDTH, TOKENS = 4, 3, 8, 5


def _block(seed=0, hidden_activation="gelu"):
    """One Transformer block: attention, then a feed-forward of 12 units, each added to its input."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((TOKENS, WIDTH))
    h = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name="attention")(tokens, tokens)
    x = keras.layers.Add(name="residual1")([tokens, h])
    h = keras.layers.Dense(12, activation=hidden_activation, name="hidden")(x)
    h = keras.layers.Dense(WIDTH, name="output")(h)
    return keras.Model(tokens, keras.layers.Add(name="residual2")([x, h]))


def _data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, TOKENS, WIDTH)).astype("float32"), rng.normal(size=(n, TOKENS, WIDTH)).astype("float32")


def _heads_and_neurons(model, sparsity=0.5):
    schedule = tprune.ConstantSparsity(sparsity, 0, frequency=1)
    pruned = tprune.prune_low_magnitude(model, schedule, structure="head")
    return tprune.prune_low_magnitude(pruned, schedule, structure="channel", layers="hidden")


def _fit(model, optimizer=None, epochs=2):
    model.compile(optimizer or keras.optimizers.Adam(1e-2), "mse")
    model.fit(*_data(), batch_size=8, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[tprune.UpdatePruningStep()])
    return model


def _head_norms(attention):
    """Each head's L2 norm over all its weights, from the NumPy arrays."""
    squares = np.zeros(HEADS)
    for weight, axis in head_axes(attention):
        if axis is not None:
            values = np.moveaxis(np.asarray(weight), axis, 0)
            squares += np.sum(values.reshape(HEADS, -1) ** 2, axis=1)
    return np.sqrt(squares)


def test_the_heads_of_smallest_norm_are_dropped_and_stay_zero():
    model = _block()
    attention = model.get_layer("attention")
    scales = np.array([0.1, 3.0, 0.5, 2.0])  # heads 0 and 2 smallest
    attention.set_weights([w if axis is None else w * scales.reshape([-1 if a == axis else 1 for a in range(w.ndim)])
                           for w, (_, axis) in zip(attention.get_weights(), head_axes(attention), strict=True)])
    expected_kept = np.argsort(_head_norms(attention))[2:]
    pruned = tprune.prune_low_magnitude(model, tprune.ConstantSparsity(0.5, 0, frequency=1), structure="head")
    wrapper = _fit(pruned).get_layer("prune_low_magnitude_attention")
    assert isinstance(wrapper, tprune.PruneHeads) and isinstance(wrapper, tprune.PruneLowMagnitude)
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(wrapper.mask)), np.sort(expected_kept))
    for weight, axis in head_axes(wrapper.layer):  # Adam moved every weight, the dropped heads' stayed 0
        if axis is not None:
            values = np.moveaxis(np.asarray(weight), axis, 0)
            assert not values[[0, 2]].any() and values[[1, 3]].all()


def test_shrink_removes_heads_and_neurons_with_the_same_outputs(tmp_path):
    pruned = _fit(_heads_and_neurons(_block()))
    x = _data()[0]
    stripped, shrunk = tprune.strip_pruning(pruned), tprune.strip_pruning(pruned, shrink=True)
    assert shrunk.get_layer("attention").num_heads == 2
    assert shrunk.get_layer("hidden").units == 6 and shrunk.get_layer("output").kernel.shape == (6, WIDTH)
    removed = 2 * (3 * (WIDTH * KEY_DIM + KEY_DIM) + KEY_DIM * WIDTH) + 6 * (WIDTH + 1) + 6 * WIDTH
    assert shrunk.count_params() == stripped.count_params() - removed
    np.testing.assert_allclose(shrunk.predict(x, verbose=0), stripped.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert not any(isinstance(layer, tprune.PruneLowMagnitude) for layer in shrunk.layers)
    shrunk.save(tmp_path / "shrunk.keras")
    restored = keras.models.load_model(tmp_path / "shrunk.keras")
    np.testing.assert_array_equal(restored.predict(x, verbose=0), shrunk.predict(x, verbose=0))


def test_shrink_folds_what_removed_neurons_output_into_the_next_bias():
    """A sigmoid unit whose kernel column is zero outputs sigmoid(bias), not 0: the readers' biases take it over."""
    pruned = _fit(_heads_and_neurons(_block(hidden_activation="sigmoid")))
    hidden = pruned.get_layer("prune_low_magnitude_hidden")
    assert np.any(np.asarray(hidden.layer.bias)[~np.asarray(hidden.mask).any(axis=0)])  # biases of removed units
    x = _data()[0]
    shrunk = tprune.strip_pruning(pruned, shrink=True)
    np.testing.assert_allclose(shrunk.predict(x, verbose=0), pruned.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_pruned_heads_round_trip_through_a_keras_file(tmp_path):
    pruned = _fit(_heads_and_neurons(_block()), epochs=1)
    pruned.save(tmp_path / "pruned.keras")
    restored = keras.models.load_model(tmp_path / "pruned.keras")
    wrapper = restored.get_layer("prune_low_magnitude_attention")
    assert isinstance(wrapper, tprune.PruneHeads)
    np.testing.assert_array_equal(np.asarray(wrapper.mask), np.asarray(pruned.get_layer(wrapper.name).mask))
    x = _data()[0]
    np.testing.assert_array_equal(restored.predict(x, verbose=0), pruned.predict(x, verbose=0))
    _fit(restored, epochs=1)  # trains on, masks and all


def test_head_pruning_without_attention_layers_raises():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")])
    with pytest.raises(ValueError) as raised:
        tprune.prune_low_magnitude(model, tprune.ConstantSparsity(0.5, 0), structure="head")
    assert str(raised.value).startswith("prune_low_magnitude: argument `layers` must be a choice of at least one")
    with pytest.raises(ValueError, match=r"names of MultiHeadAttention layers; not one: \['dense'\]"):
        tprune.prune_low_magnitude(_block(), tprune.ConstantSparsity(0.5, 0), structure="head", layers="dense")


def test_shrink_refuses_what_it_cannot_remove():
    schedule = tprune.ConstantSparsity(0.5, 0, frequency=1)
    read_by_add = _fit(tprune.prune_low_magnitude(_block(), schedule, structure="channel", layers="output"))
    with pytest.raises(ValueError) as raised:
        tprune.strip_pruning(read_by_add, shrink=True)
    assert str(raised.value) == (
        "strip_pruning: argument `shrink` must be False when a \"channel\"-pruned Dense is read by anything but Dense "
        "layers (each called once): layer 'output' (Dense) is read by layer 'residual2' (Add). Received: shrink=True"
    )
    with pytest.raises(TypeError, match="strip_pruning: argument `shrink` must be True or False"):
        tprune.strip_pruning(read_by_add, shrink="yes")
    assert tprune.strip_pruning(read_by_add).count_params() == _block().count_params()  # shrink=False still strips


def test_two_replicas_drop_the_heads_and_weights_of_one_device(mirrored_strategy):
    single = _fit(_heads_and_neurons(_block()), keras.optimizers.SGD(0.05))
    with mirrored_strategy.scope():
        replicated = _fit(_heads_and_neurons(_block()), keras.optimizers.SGD(0.05))
    for a, b in zip(replicated.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.sum(replicated.get_layer("prune_low_magnitude_attention").mask) == 2


def _nested(*layers):
    """A Sequential on 4 inputs whose only layer is a nested Sequential 'block' of `layers`."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.Sequential([keras.Input((4,)), *layers], name="block")])


def test_shrink_finds_the_readers_of_a_dense_inside_a_nested_model():
    nested = _nested(keras.layers.Dense(8, activation="sigmoid", name="hidden"), keras.layers.Dense(2, name="head"))
    pruned = tprune.prune_low_magnitude(nested, tprune.ConstantSparsity(0.5, 0, frequency=1), structure="channel",
                                        layers="hidden")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    pruned.compile(keras.optimizers.Adam(1e-2), "mse")
    pruned.fit(x, x[:, :2], verbose=0, callbacks=[tprune.UpdatePruningStep()])
    shrunk = tprune.strip_pruning(pruned, shrink=True)
    block = shrunk.get_layer("block")
    assert block.get_layer("hidden").units == 4 and block.get_layer("head").kernel.shape == (4, 2)
    np.testing.assert_allclose(shrunk.predict(x, verbose=0), pruned.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_shrink_refuses_a_dense_that_is_a_nested_models_output():
    pruned = tprune.prune_low_magnitude(_nested(keras.layers.Dense(8, name="logits")),
                                        tprune.ConstantSparsity(0.5, 0, frequency=1), structure="channel")
    with pytest.raises(ValueError) as raised:
        tprune.strip_pruning(pruned, shrink=True)
    assert str(raised.value) == (
        "strip_pruning: argument `shrink` must be False when a \"channel\"-pruned Dense is read by anything but Dense "
        "layers (each called once): layer 'logits' (Dense) is read by the output of nested model 'block'. "
        "Received: shrink=True"
    )
