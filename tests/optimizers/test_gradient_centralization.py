"""GradientCentralization against a NumPy reference of the paper, alone and composed with Lookahead both ways.

Serialization, the learning rate, `fit` under jit and MirroredStrategy are shared by both wrapper optimizers and are
tested in test_lookahead.py over both and their compositions.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from references import (
    SHAPES,
    adam_rule,
    assert_all_close,
    gradient_sequence,
    initial_values,
    lookahead_reference,
    numpy_centralize,
    run_keras_optimizer,
    sgd_momentum_rule,
)

from tfopt.optimizers.gradient_centralization import GradientCentralization
from tfopt.optimizers.lookahead import Lookahead


def numpy_gradient_centralization(inner_step, initial, gradients):
    weights = [np.asarray(w, "float64") for w in initial]
    for step_gradients in gradients:
        weights = [inner_step(i, w, numpy_centralize(g)) for i, (w, g) in enumerate(zip(weights, step_gradients))]
    return weights


INNER = {
    "sgd_momentum": (lambda: keras.optimizers.SGD(0.05, momentum=0.9), lambda: sgd_momentum_rule(0.05, 0.9)),
    "adam": (lambda: keras.optimizers.Adam(0.01), lambda: adam_rule(0.01)),
}


@pytest.mark.parametrize("inner", list(INNER))
def test_matches_numpy_reference(inner):
    make_inner, reference = INNER[inner]
    gradients, initial = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    actual = run_keras_optimizer(GradientCentralization(make_inner()), initial, gradients)
    assert_all_close(actual, numpy_gradient_centralization(reference(), initial, gradients))


def test_centres_kernels_and_leaves_rank_one_alone():
    gradients, initial = gradient_sequence(SHAPES, 1), initial_values(SHAPES)
    after = run_keras_optimizer(GradientCentralization(keras.optimizers.SGD(1.0)), initial, gradients)
    steps = [a - np.asarray(w, "float64") for a, w in zip(after, initial)]
    np.testing.assert_allclose(steps[0], -gradients[0][0], rtol=1e-6)
    for step in steps[1:]:
        np.testing.assert_allclose(step.mean(axis=tuple(range(step.ndim - 1))), 0.0, atol=1e-6)


def test_sparse_gradients_are_left_alone():
    table = keras.Variable(np.ones((5, 3), "float32"))
    gradient = tf.IndexedSlices(tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]]), tf.constant([1, 3]), (5, 3))
    GradientCentralization(keras.optimizers.SGD(1.0)).apply([gradient], [table])
    expected = np.ones((5, 3))
    expected[[1, 3]] -= [[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]]
    np.testing.assert_array_equal(table.numpy(), expected)


@pytest.mark.parametrize(
    "make, inner",
    [
        (lambda inner: Lookahead(GradientCentralization(inner), sync_period=4, slow_step_size=0.7), "adam"),
        (lambda inner: GradientCentralization(Lookahead(inner, sync_period=4, slow_step_size=0.7)), "sgd_momentum"),
    ],
    ids=["Lookahead(GradientCentralization)", "GradientCentralization(Lookahead)"],
)
def test_compositions_match_numpy_reference(make, inner):
    make_inner, reference = INNER[inner]
    gradients, initial = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    actual = run_keras_optimizer(make(make_inner()), initial, gradients)
    centralized = [[numpy_centralize(g) for g in step_gradients] for step_gradients in gradients]
    assert_all_close(actual, lookahead_reference(reference(), initial, centralized, 4, 0.7))


def test_inner_optimizer_must_be_an_optimizer():
    with pytest.raises(TypeError) as raised:
        GradientCentralization(keras.optimizers.Adam)
    assert str(raised.value).startswith(
        "GradientCentralization: argument `inner_optimizer` must be a Keras 3 optimizer (`keras.optimizers.Optimizer`)"
        ". Received: inner_optimizer=<class"
    )
