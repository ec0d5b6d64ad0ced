"""The public `tfopt.prune` API on the same model in both Kerases, in one (legacy) process: it dispatches to tfmot
for tf_keras and to tfopt's own pruning for Keras 3, and both give the same per-layer sparsity."""

import keras
import numpy as np
import tf_keras

import tfopt
from tfopt.demo.model import digits_cnn

STEPS = 12
PRUNED = ("Conv2D", "Dense")


def _fit_pruned(model, optimizer, loss):
    schedule = tfopt.prune.PolynomialDecay(initial=0.0, final=0.75, begin_step=0, end_step=8, frequency=2)
    # tfmot's registry never prunes DepthwiseConv2D, which tfopt's Keras 3 default does: select the layers both prune
    pruned = tfopt.prune.prune_low_magnitude(model, schedule, layers=lambda layer: type(layer).__name__ in PRUNED)
    pruned.compile(optimizer, loss)
    rng = np.random.default_rng(0)
    x = rng.random((STEPS * 16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, size=STEPS * 16)
    pruned.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[tfopt.prune.UpdatePruningStep()])
    return tfopt.prune.strip_pruning(pruned)


def test_both_kerases_reach_the_same_per_layer_sparsity():
    keras3 = _fit_pruned(digits_cnn(), keras.optimizers.Adam(1e-3),
                         keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    legacy = _fit_pruned(tfopt.compat.to_tf_keras(digits_cnn()), tf_keras.optimizers.Adam(1e-3),
                         tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert isinstance(legacy, tf_keras.Model) and isinstance(keras3, keras.Model)
    ours = [(tuple(row.shape), row.zeros) for row in tfopt.prune.sparsity(keras3)]  # layer names differ by counter
    theirs = [(tuple(row.shape), row.zeros) for row in tfopt.prune.sparsity(legacy)]
    assert len(ours) == 5 and ours == theirs
    assert [zeros / np.prod(shape) > 0.74 for shape, zeros in ours] == [True, False, True, True, True]
