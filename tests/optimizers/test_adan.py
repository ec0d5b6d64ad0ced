import re

import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.adan import Adan

NAMES = ["bias", "kernel", "conv"]


def numpy_adan(gradients, initial, learning_rate, beta_1=0.98, beta_2=0.92, beta_3=0.99, epsilon=1e-8,
               weight_decay=0.0, decayed=(True, True, True)):
    """The official Adan (no_prox=False) in float64, as Adan's docstring states it."""
    w = [x.astype("float64") for x in initial]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    n = [np.zeros_like(x) for x in w]
    g_previous = [None for _ in w]
    for t, step_gradients in enumerate(gradients, start=1):
        for i, g in enumerate(step_gradients):
            g = g.astype("float64")
            diff = g - g_previous[i] if t > 1 else 0
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * diff
            n[i] = beta_3 * n[i] + (1 - beta_3) * (g + beta_2 * diff) ** 2
            g_previous[i] = g
            update = (m[i] / (1 - beta_1**t) + beta_2 * v[i] / (1 - beta_2**t)) / (
                np.sqrt(n[i] / (1 - beta_3**t)) + epsilon
            )
            wd = weight_decay if decayed[i] else 0.0
            w[i] = (w[i] - learning_rate * update) / (1 + learning_rate * wd)
    return w


def assert_matches(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# The second set's faster decays and larger epsilon make the difference term and epsilon's placement count.
HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, beta_1=0.9, beta_2=0.7, beta_3=0.95, epsilon=1e-3)]


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = numpy_adan(gradients, start, **hyper)
    assert_matches(run_keras_optimizer(Adan(**hyper), start, gradients), expected)


def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = Adan(learning_rate=1e-2, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = numpy_adan(gradients, start, 1e-2, weight_decay=0.5, decayed=(True, False, True))
    assert_matches(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "Adan: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.0), ValueError, "Adan: argument `beta_1` must be in [0, 1). Received: beta_1=1.0"),
        (dict(beta_2=1.5), ValueError, "Adan: argument `beta_2` must be in [0, 1). Received: beta_2=1.5"),
        (dict(beta_3=-0.1), ValueError, "Adan: argument `beta_3` must be in [0, 1). Received: beta_3=-0.1"),
        (dict(beta_3=(0.99,)), TypeError, "Adan: argument `beta_3` must be a number. Received: beta_3=(0.99,)"),
        (dict(epsilon=-1e-8), ValueError, "Adan: argument `epsilon` must be >= 0. Received: epsilon=-1e-08"),
        (dict(weight_decay=-0.02), ValueError,
         "Adan: argument `weight_decay` must be >= 0. Received: weight_decay=-0.02"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        Adan(**arguments)


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(Adan(learning_rate=0.05))
    history = model.fit(*regression_data, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
