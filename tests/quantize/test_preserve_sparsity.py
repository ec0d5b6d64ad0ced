"""`quantize_model(preserve_sparsity=True)` keeps the zeros of a pruned Transformer's kernels through QAT: the
Embedding table, EinsumDense kernels and the attention's projection kernels, as for Conv and Dense."""

import keras
import numpy as np
import pytest

import tfopt

TOKENS, WIDTH = 6, 8


def _sequence_model():
    keras.utils.set_random_seed(0)
    ids = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(20, WIDTH, name="embedding")(ids)
    x = keras.layers.EinsumDense("btd,de->bte", output_shape=(None, WIDTH), bias_axes="e", name="einsum")(x)
    x = keras.layers.MultiHeadAttention(2, 4, name="attention")(x, x)
    return keras.Model(ids, keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling1D()(x)))


def _data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 20, size=(32, TOKENS)).astype("int32"), rng.integers(0, 3, size=32).astype("int32")


def _sparse_model():
    """Embedding, EinsumDense and Dense pruned to 50% and stripped; half of each attention projection zeroed."""
    pruned = tfopt.prune.prune_low_magnitude(_sequence_model(), tfopt.prune.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(*_data(), batch_size=8, epochs=1, verbose=0, callbacks=[tfopt.prune.UpdatePruningStep()])
    model = tfopt.prune.strip_pruning(pruned)
    attention, rng = model.get_layer("attention"), np.random.default_rng(1)
    for dense in (attention.query_dense, attention.key_dense, attention.value_dense, attention.output_dense):
        kernel = np.asarray(dense.kernel)
        dense.kernel.assign(np.where(rng.permutation(kernel.size).reshape(kernel.shape) % 2 == 0, 0.0, kernel))
    return model


def _zeros(model):
    """Where each kernel and table is 0, by "<layer>/<index>": a QAT wrapper's under the name of the layer inside."""
    zeros = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        kernels = [w for w in inner.weights if w.path.split("/")[-1] in ("kernel", "embeddings")]
        zeros.update({f"{inner.name}/{index}": np.asarray(kernel) == 0 for index, kernel in enumerate(kernels)})
    return zeros


@pytest.mark.parametrize("preserve", [True, False])
def test_zeros_survive_qat_only_when_preserved(preserve, tmp_path):
    sparse = _sparse_model()
    before = _zeros(sparse)
    assert len(before) == 7 and all(zeros.mean() >= 0.49 for zeros in before.values())
    quantized = tfopt.quantize.quantize_model(sparse, preserve_sparsity=preserve)
    quantized.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    quantized.fit(*_data(), batch_size=8, epochs=2, verbose=0)
    after = _zeros(quantized)
    assert sorted(after) == sorted(before)
    kept = {path: bool(np.all(after[path][before[path]])) for path in before}
    assert all(kept.values()) if preserve else not any(kept.values())
    if preserve:
        quantized.save(tmp_path / "qat.keras")
        restored = keras.models.load_model(tmp_path / "qat.keras")
        restored.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        restored.fit(*_data(), batch_size=8, epochs=1, verbose=0)
        assert all(np.all(_zeros(restored)[path][before[path]]) for path in before)
