"""The public `tfopt.prune` API on the same model in both Kerases, in one (legacy) process: it dispatches to tfmot
for tf_keras and to tfopt's own pruning for Keras 3, and with the default `layers=None` both prune the same kernels
to the same per-layer sparsity."""

import keras
import numpy as np
import tf_keras

import tfopt

STEPS = 12


def _keras3_model():
    """Every layer family `layers=None` prunes: Conv2D, DepthwiseConv2D, SeparableConv2D, Dense."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        layers.SeparableConv2D(16, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(10),
    ])


def _fit_pruned(model, optimizer, loss):
    schedule = tfopt.prune.PolynomialDecay(initial=0.0, final=0.75, begin_step=0, end_step=8, frequency=2)
    pruned = tfopt.prune.prune_low_magnitude(model, schedule)
    pruned.compile(optimizer, loss)
    rng = np.random.default_rng(0)
    x = rng.random((STEPS * 16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, size=STEPS * 16)
    pruned.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[tfopt.prune.UpdatePruningStep()])
    return tfopt.prune.strip_pruning(pruned)


def test_both_kerases_prune_the_same_kernels_to_the_same_sparsity_by_default():
    keras3 = _fit_pruned(_keras3_model(), keras.optimizers.Adam(1e-3),
                         keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    legacy = _fit_pruned(tfopt.compat.to_tf_keras(_keras3_model()), tf_keras.optimizers.Adam(1e-3),
                         tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert isinstance(legacy, tf_keras.Model) and isinstance(keras3, keras.Model)
    ours = [(row.shape, row.zeros) for row in tfopt.prune.sparsity(keras3)]  # layer names differ by counter
    theirs = [(row.shape, row.zeros) for row in tfopt.prune.sparsity(legacy)]
    assert [row.name.split("/")[1] for row in tfopt.prune.sparsity(legacy)] == [
        "kernel", "depthwise_kernel", "depthwise_kernel", "pointwise_kernel", "kernel"]
    assert ours == theirs
    # conv, depthwise conv, separable (depthwise kernel left dense, pointwise pruned), dense
    assert [zeros / np.prod(shape) > 0.74 for shape, zeros in ours] == [True, True, False, True, True]
