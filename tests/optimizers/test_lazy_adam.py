import contextlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.lazy_adam import LazyAdam

TABLE = (12, 3)  # an embedding table; the sparse gradients below touch rows 0..7 only


def sparse_sequence(steps, seed=0):
    """A fixed sequence of (indices, values) gradients of `TABLE`, with repeated indices in most steps."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 8, size=6).astype("int32"), rng.normal(size=(6, TABLE[1])).astype("float32"))
            for _ in range(steps)]


def tfa_lazy_adam(gradients, initial, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                  amsgrad=False, weight_decay=0.0):
    """tensorflow-addons 0.23.0 `LazyAdam._resource_apply_sparse` on one table in float64; `gradients` are
    (indices, values) pairs, whose repeated indices tf.keras's optimizer base sums before calling it. Keras's
    decoupled weight decay shrinks the whole table first. tensorflow-addons has no sparse AMSGrad; with `amsgrad`,
    the touched rows divide by the running maximum of `v` as `keras.optimizers.Adam(amsgrad=True)` does."""
    var = initial.astype("float64")
    m, v, v_hat = np.zeros_like(var), np.zeros_like(var), np.zeros_like(var)
    for iterations, (indices, values) in enumerate(gradients):
        var = var - learning_rate * weight_decay * var
        unique = np.unique(indices)
        grad = np.stack([values[indices == row].astype("float64").sum(axis=0) for row in unique])
        local_step = iterations + 1
        lr = learning_rate * np.sqrt(1 - beta_2**local_step) / (1 - beta_1**local_step)
        m[unique] = beta_1 * m[unique] + (1 - beta_1) * grad
        v[unique] = beta_2 * v[unique] + (1 - beta_2) * np.square(grad)
        v_hat[unique] = np.maximum(v_hat[unique], v[unique])
        denominator = np.sqrt(v_hat[unique] if amsgrad else v[unique]) + epsilon
        var[unique] = var[unique] - lr * m[unique] / denominator
    return var


def dense_adam(gradients, initial, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Adam (Kingma & Ba, 2015, Algorithm 1 with the step-size form of its Section 2, as Keras and torch.optim.Adam
    compute it) on the dense gradient the slices stand for: every row's moments decay at every step, so a row
    keeps moving after its last touch."""
    w = initial.astype("float64")
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, (indices, values) in enumerate(gradients, start=1):
        g = np.zeros_like(w)
        np.add.at(g, indices, values.astype("float64"))
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        w = w - learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (np.sqrt(v) + epsilon)
    return w


def run_sparse(optimizer, gradients, initial):
    slices = [[tf.IndexedSlices(values, indices, TABLE)] for indices, values in gradients]
    return run_keras_optimizer(optimizer, [initial], slices)[0]


@pytest.mark.parametrize(
    "arguments",
    [{}, {"weight_decay": 0.5}, {"amsgrad": True},
     {"learning_rate": 0.05, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3, "amsgrad": True, "weight_decay": 0.1}],
    ids=["defaults", "weight_decay", "amsgrad", "other_values"],
)
def test_sparse_gradients_match_numpy_reference(arguments):
    gradients, initial = sparse_sequence(50), initial_values([TABLE])[0]
    result = run_sparse(LazyAdam(**arguments), gradients, initial)
    np.testing.assert_allclose(result, tfa_lazy_adam(gradients, initial, **arguments), rtol=1e-5, atol=1e-6)
    if not arguments.get("weight_decay"):
        np.testing.assert_array_equal(result[8:], initial[8:])


def test_untouched_rows_are_left_as_in_tensorflow_addons_not_as_in_adam():
    """Adam on the densified gradient moves rows after their last touch (its momentum decays there); LazyAdam leaves
    them; `keras.optimizers.Adam` on the dense gradient is Adam's convention."""
    gradients, initial = sparse_sequence(50), initial_values([TABLE])[0]
    lazy, dense = tfa_lazy_adam(gradients, initial, 0.01), dense_adam(gradients, initial, 0.01)
    assert np.max(np.abs(lazy[:8] - dense[:8])) > 1e-3
    np.testing.assert_allclose(run_sparse(LazyAdam(0.01), gradients, initial), lazy, rtol=1e-5, atol=1e-6)
    # Adam's convention is keras.optimizers.Adam on the dense gradient. (Fed the slices themselves, Keras 3.15's Adam
    # squares each slice before summing repeated indices, so its `v` is not Adam's there.)
    densified = [[tf.convert_to_tensor(tf.IndexedSlices(values, indices, TABLE))] for indices, values in gradients]
    adam = run_keras_optimizer(keras.optimizers.Adam(0.01), [initial], densified)[0]
    np.testing.assert_allclose(adam, dense, rtol=1e-5, atol=1e-6)


def test_duplicate_indices_are_summed_first():
    initial = initial_values([TABLE])[0]
    repeated = [(np.array([2, 5, 2], "int32"), np.array([[1.0] * 3, [2.0] * 3, [-3.0] * 3], "float32"))]
    summed = [(np.array([5, 2], "int32"), np.array([[2.0] * 3, [-2.0] * 3], "float32"))]
    np.testing.assert_array_equal(run_sparse(LazyAdam(), repeated, initial), run_sparse(LazyAdam(), summed, initial))


def test_dense_gradients_equal_keras_adam():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    arguments = dict(learning_rate=0.01, amsgrad=True, weight_decay=0.1)
    lazy = run_keras_optimizer(LazyAdam(**arguments), start, gradients)
    adam = run_keras_optimizer(keras.optimizers.Adam(**arguments), start, gradients)
    for a, b in zip(lazy, adam, strict=True):
        np.testing.assert_array_equal(a, b)


def test_exclude_from_weight_decay_leaves_the_named_variable_undecayed():
    gradients, initial = sparse_sequence(20), initial_values([TABLE])[0]
    slices = [[tf.IndexedSlices(values, indices, TABLE)] for indices, values in gradients]
    optimizer = LazyAdam(weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["embeddings"])
    result = run_keras_optimizer(optimizer, [initial], slices, names=["embeddings"])[0]
    np.testing.assert_allclose(result, tfa_lazy_adam(gradients, initial), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"learning_rate": -0.1}, "LazyAdam: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        ({"beta_1": 1.5}, "LazyAdam: argument `beta_1` must be in [0, 1). Received: beta_1=1.5"),
        ({"beta_2": 1.0}, "LazyAdam: argument `beta_2` must be in [0, 1). Received: beta_2=1.0"),
        ({"weight_decay": -0.1}, "LazyAdam: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LazyAdam(**arguments)


def _embedding_model(strategy=None, jit_compile=False):
    """A small compiled model whose Embedding has 50 rows, of which `_fit` touches rows 0..19."""
    with strategy.scope() if strategy else contextlib.nullcontext():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(50, 8),
                                  keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
        model.compile(LazyAdam(learning_rate=0.01), "mse", jit_compile=jit_compile)
    return model


def _fit(model, epochs=1):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, size=(64, 5)).astype("int32")
    target = (tokens % 3 == 0).mean(axis=1, keepdims=True).astype("float32")
    return model.fit(tokens, target, batch_size=16, epochs=epochs, shuffle=False, verbose=0)


def test_fit_with_an_embedding_lowers_the_loss_and_leaves_untouched_rows():
    model = _embedding_model()
    untouched = model.layers[0].get_weights()[0][20:].copy()
    history = _fit(model, epochs=5)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    np.testing.assert_array_equal(model.layers[0].get_weights()[0][20:], untouched)


def test_sparse_path_under_jit_and_mirrored_strategy_equals_eager(mirrored_strategy):
    models = [_embedding_model(), _embedding_model(jit_compile=True), _embedding_model(strategy=mirrored_strategy)]
    for model in models:
        _fit(model)
    for model in models[1:]:
        for a, b in zip(model.get_weights(), models[0].get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
