"""Pruning the projection kernels of MultiHeadAttention weight by weight (`PruneAttention`, structures None, "channel"
and "N:M"): the masks against a NumPy reference, zeros kept through training, strip, `.keras`, XLA and QAT."""

import keras
import numpy as np
import pytest

import tfopt
import tfopt.prune as tprune
from tfopt.demo.model import digits_transformer

TOKENS, WIDTH, HEADS, KEY_DIM = 4, 8, 2, 4
PROJECTIONS = ["query", "key", "value", "attention_output"]
STRUCTURES = [None, "channel", "2:4"]


def _block(seed=0, use_gate=False):
    """Self-attention (2 heads of 4: every projection an 8 x 8 matrix), a residual, then a Dense on each token."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((TOKENS, WIDTH))
    h = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, use_gate=use_gate, name="attention")(tokens, tokens)
    x = keras.layers.Add(name="residual")([tokens, h])
    return keras.Model(tokens, keras.layers.Dense(WIDTH, name="out")(x))


def _data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, TOKENS, WIDTH)).astype("float32"), rng.normal(size=(n, TOKENS, WIDTH)).astype("float32")


def _pruned(structure=None, layers="attention", model=None, sparsity=0.5):
    schedule = tprune.ConstantSparsity(sparsity, 0, frequency=1)
    return tprune.prune_low_magnitude(model or _block(), schedule, structure=structure, layers=layers)


def _fit(model, optimizer=None, epochs=1, **compile_kwargs):
    model.compile(optimizer or keras.optimizers.Adam(1e-2), "mse", **compile_kwargs)
    model.fit(*_data(), batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=[tprune.UpdatePruningStep()])
    return model


def _projections(attention):
    return [attention.query_dense, attention.key_dense, attention.value_dense, attention.output_dense]


def _kernels_and_masks(wrapper):
    """{projection: (kernel, mask)} as NumPy arrays."""
    masks = {mask.path.split("/")[-1].removesuffix("_mask"): np.asarray(mask) for mask in wrapper.masks}
    return {dense.name: (np.asarray(dense.kernel), masks[dense.name]) for dense in _projections(wrapper.layer)}


def _matrix(name, kernel):
    """The kernel as the (inputs, outputs) matrix its projection multiplies by."""
    inputs = 2 if name == "attention_output" else 1
    return kernel.reshape(int(np.prod(kernel.shape[:inputs])), -1)


def _reference_mask(matrix, structure, sparsity=0.5):
    """The mask of an (inputs, outputs) matrix, written from the structure's definition."""
    if structure is None:
        kept = np.argsort(-np.abs(matrix), axis=None)[: round(matrix.size * (1 - sparsity))]
        return np.isin(np.arange(matrix.size), kept).reshape(matrix.shape)
    if structure == "channel":
        norms = np.linalg.norm(matrix, axis=0)
        return np.broadcast_to(np.isin(np.arange(matrix.shape[1]), np.argsort(-norms)[: 4]), matrix.shape)
    groups = np.abs(matrix).reshape(-1, 4, matrix.shape[1])  # 4 consecutive inputs of one output column
    kept = np.argsort(-groups, axis=1)[:, :2]
    mask = np.zeros(groups.shape, bool)
    np.put_along_axis(mask, kept, True, axis=1)
    return mask.reshape(matrix.shape)


@pytest.mark.parametrize("structure", STRUCTURES, ids=str)
def test_each_projection_gets_its_own_mask_from_its_own_kernel(structure):
    model = _block()
    initial = {dense.name: np.asarray(dense.kernel) for dense in _projections(model.get_layer("attention"))}
    pruned = _fit(_pruned(structure, model=model), keras.optimizers.SGD(0.0))  # the masks of the initial kernels
    wrapper = pruned.get_layer("prune_low_magnitude_attention")
    assert type(wrapper) is tprune.PruneAttention and wrapper.mask is wrapper.masks[0]
    found = _kernels_and_masks(wrapper)
    assert sorted(found) == sorted(PROJECTIONS)
    for name, (kernel, mask) in found.items():
        expected = _reference_mask(_matrix(name, initial[name]), structure)
        np.testing.assert_array_equal(_matrix(name, mask).astype(bool), expected, err_msg=name)
        np.testing.assert_array_equal(kernel, initial[name] * mask)
        assert mask.mean() == 0.5


@pytest.mark.parametrize("structure", STRUCTURES, ids=str)
def test_pruned_weights_stay_zero_under_adam_and_the_stripped_model_equals_the_pruned_one(structure):
    pruned = _fit(_pruned(structure, layers=None), epochs=2)
    wrapper = pruned.get_layer("prune_low_magnitude_attention")
    for name, (kernel, mask) in _kernels_and_masks(wrapper).items():
        assert not kernel[mask == 0].any() and kernel[mask == 1].all(), name
    stripped = tprune.strip_pruning(pruned)
    assert type(stripped.get_layer("attention")) is keras.layers.MultiHeadAttention
    x = _data()[0]
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    rows = tprune.sparsity(stripped)
    assert [(row.name, row.sparsity) for row in rows] == [
        *((f"attention/{name}/kernel", 0.5) for name in PROJECTIONS), ("out/kernel", 0.5)]
    assert rows == tprune.sparsity(pruned)
    if structure != "channel":  # shrink leaves a weight-pruned attention as it is
        shrunk = tprune.strip_pruning(pruned, shrink=True)
        np.testing.assert_array_equal(shrunk.predict(x, verbose=0), stripped.predict(x, verbose=0))


def test_a_gated_attention_prunes_its_gate_kernel_too():
    pruned = _fit(_pruned("2:4", model=_block(use_gate=True)))
    rows = tprune.sparsity(tprune.strip_pruning(pruned))
    assert [(row.name, row.sparsity) for row in rows] == [
        *((f"attention/{name}/kernel", 0.5) for name in ("query", "key", "gate", "value", "attention_output")),
        ("out/kernel", 0.0)]


def test_pruned_attention_round_trips_through_a_keras_file(tmp_path):
    pruned = _fit(_pruned("channel"))
    pruned.save(tmp_path / "pruned.keras")
    restored = keras.models.load_model(tmp_path / "pruned.keras")
    wrapper, original = (model.get_layer("prune_low_magnitude_attention") for model in (restored, pruned))
    assert isinstance(wrapper, tprune.PruneAttention) and wrapper.structure == "channel"
    assert int(np.asarray(wrapper.pruning_step)) == int(np.asarray(original.pruning_step)) == 4
    for mask, expected in zip(wrapper.masks, original.masks, strict=True):
        np.testing.assert_array_equal(np.asarray(mask), np.asarray(expected))
    x = _data()[0]
    np.testing.assert_array_equal(restored.predict(x, verbose=0), pruned.predict(x, verbose=0))
    _fit(restored)  # trains on, masks and all
    for name, (kernel, mask) in _kernels_and_masks(wrapper).items():
        assert not kernel[mask == 0].any() and mask.mean() == 0.5, name


def test_the_training_step_compiles_with_xla_and_equals_the_eager_one():
    # SGD, not Adam: Adam scales the key bias's rounding noise (its true gradient is 0) up to full steps.
    compiled = _fit(_pruned("2:4", layers=None), keras.optimizers.SGD(0.1), jit_compile=True)
    eager = _fit(_pruned("2:4", layers=None), keras.optimizers.SGD(0.1), run_eagerly=True)
    assert compiled.jit_compile
    for a, b in zip(compiled.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "layers, expected",
    [
        (None, ["attention", "out"]),
        ("attention", ["attention"]),
        (keras.layers.MultiHeadAttention, ["attention"]),
        ("out", ["out"]),
        (lambda layer: not isinstance(layer, keras.layers.MultiHeadAttention), ["out"]),
    ],
    ids=["default", "name", "class", "other-name", "predicate"],
)
def test_layers_chooses_or_leaves_out_the_attention(layers, expected):
    pruned = _pruned(layers=layers)
    assert [layer.layer.name for layer in tprune.wrapper.pruned_layers(pruned)] == expected
    wrapped = [type(layer).__name__ for layer in pruned.layers if isinstance(layer, tprune.PruneLowMagnitude)]
    assert wrapped == [{"attention": "PruneAttention", "out": "PruneLowMagnitude"}[name] for name in expected]


def test_head_structure_still_wraps_the_attention_in_prune_heads():
    pruned = _pruned("head", layers=None)
    assert [type(layer) for layer in tprune.wrapper.pruned_layers(pruned)] == [tprune.PruneHeads]


def test_the_digits_transformer_prunes_every_projection_of_both_blocks():
    model = digits_transformer(width=16, heads=2, hidden=16, blocks=2)
    pruned = tprune.prune_low_magnitude(model, tprune.ConstantSparsity(0.5, 0, frequency=1))
    rng = np.random.default_rng(0)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(rng.normal(size=(16, 16, 4)), rng.integers(0, 10, 16), batch_size=8, verbose=0,
               callbacks=[tprune.UpdatePruningStep()])
    rows = {row.name: row.sparsity for row in tprune.sparsity(tprune.strip_pruning(pruned))}
    projections = {f"block{block}_attention/{name}/kernel" for block in (0, 1) for name in PROJECTIONS}
    assert projections <= set(rows) and len(rows) == 8 + 2 * 2 + 3  # + 2 Dense a block, projection, position, logits
    assert set(rows.values()) == {0.5}


def test_zeros_of_a_stripped_attention_survive_qat_with_preserve_sparsity():
    stripped = tprune.strip_pruning(_fit(_pruned(None)))
    before = [np.asarray(dense.kernel) == 0 for dense in _projections(stripped.get_layer("attention"))]
    quantized = tfopt.quantize.quantize_model(stripped, preserve_sparsity=True)
    quantized.compile(keras.optimizers.Adam(1e-2), "mse")
    quantized.fit(*_data(), batch_size=8, epochs=1, verbose=0)
    attention = next(layer.layer for layer in quantized.layers
                     if isinstance(getattr(layer, "layer", None), keras.layers.MultiHeadAttention))
    for zeros, dense in zip(before, _projections(attention), strict=True):
        assert zeros.mean() == 0.5 and not np.asarray(dense.kernel)[zeros].any()


def test_errors_name_the_argument_and_what_is_valid():
    schedule = tprune.ConstantSparsity(0.5, 0)
    with pytest.raises(ValueError) as raised:
        _pruned("3:6")
    assert str(raised.value) == (
        "prune_low_magnitude: argument `structure` must be a multiple of M = 6 inputs per group, but the query "
        "projection of layer 'attention' (MultiHeadAttention) has 8 inputs. Received: structure='3:6'")
    attention = keras.layers.MultiHeadAttention(HEADS, KEY_DIM)
    rule = r'None, "channel" or "N:M" \("head" prunes with tfopt.prune.PruneHeads\). Received: structure=\'head\''
    with pytest.raises(ValueError, match="PruneAttention: argument `structure` must be " + rule):
        tprune.PruneAttention(attention, schedule, "head")
    with pytest.raises(TypeError, match="PruneAttention: argument `layer` must be a keras.layers.MultiHeadAttention"):
        tprune.PruneAttention(keras.layers.Dense(2), schedule)
    with pytest.raises(ValueError, match=r"\(a MultiHeadAttention: PruneAttention, PruneHeads\)"):
        tprune.PruneLowMagnitude(attention, schedule)
    channel = _fit(_pruned("channel"))
    with pytest.raises(ValueError, match="shrink removes the pruned units of Dense layers only"):
        tprune.strip_pruning(channel, shrink=True)


def test_two_replicas_choose_the_masks_and_weights_of_one_device(mirrored_strategy):
    single = _fit(_pruned("channel"), keras.optimizers.SGD(0.05))
    with mirrored_strategy.scope():
        replicated = _fit(_pruned("channel"), keras.optimizers.SGD(0.05))
    for a, b in zip(replicated.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
