import re

import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.yogi import Yogi

NAMES = ["bias", "kernel", "conv_kernel"]


def numpy_yogi(gradients, initial, learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-3,
               initial_accumulator_value=1e-6, weight_decay=0.0, decayed=(True, True, True)):
    """tensorflow-addons' Yogi in float64, with Keras's decoupled weight decay before each step."""
    weights = [w.astype("float64") for w in initial]
    ms = [np.zeros_like(w) for w in weights]
    vs = [np.full_like(w, initial_accumulator_value) for w in weights]
    for t, step_gradients in enumerate(gradients, start=1):
        for i, g in enumerate(step_gradients):
            w, m, v, g = weights[i], ms[i], vs[i], g.astype("float64")
            if decayed[i]:
                w = w - learning_rate * weight_decay * w
            m = beta_1 * m + (1 - beta_1) * g
            v = v - (1 - beta_2) * np.sign(v - g * g) * g * g
            w = w - learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (np.sqrt(v) + epsilon)
            weights[i], ms[i], vs[i] = w, m, v
    return weights


def assert_close(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"weight_decay": 0.05}, {"learning_rate": 0.05, "beta_1": 0.0, "beta_2": 0.99, "epsilon": 1e-6,
                                  "initial_accumulator_value": 0.1}],
    ids=["defaults", "weight_decay", "other_values"],
)
def test_matches_numpy_reference(arguments):
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    assert_close(run_keras_optimizer(Yogi(**arguments), start, gradients), numpy_yogi(gradients, start, **arguments))


def test_exclude_from_weight_decay_leaves_the_named_variable_undecayed():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    optimizer = Yogi(weight_decay=0.05)
    optimizer.exclude_from_weight_decay(var_names=["conv_kernel"])
    expected = numpy_yogi(gradients, start, weight_decay=0.05, decayed=(True, True, False))
    assert_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"learning_rate": -0.1}, "Yogi: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        ({"beta_1": 1.5}, "Yogi: argument `beta_1` must be in [0, 1). Received: beta_1=1.5"),
        ({"beta_2": 1.0}, "Yogi: argument `beta_2` must be in [0, 1). Received: beta_2=1.0"),
        ({"epsilon": -1e-3}, "Yogi: argument `epsilon` must be >= 0. Received: epsilon=-0.001"),
        ({"initial_accumulator_value": 0.0},
         "Yogi: argument `initial_accumulator_value` must be > 0. Received: initial_accumulator_value=0.0"),
        ({"weight_decay": -0.1}, "Yogi: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Yogi(**arguments)


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(Yogi(learning_rate=0.1))
    history = model.fit(*regression_data, batch_size=16, epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
