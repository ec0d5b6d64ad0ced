import re

import keras
import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.novograd import NovoGrad

NAMES = ["bias", "kernel", "conv_kernel"]


def numpy_novograd(gradients, initial, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                   grad_averaging=False, amsgrad=False, weight_decay=0.0, decayed=(True, True, True)):
    """tensorflow-addons' NovoGrad in float64: one second moment per variable, coupled weight decay."""
    weights = [w.astype("float64") for w in initial]
    ms = [np.zeros_like(w) for w in weights]
    vs, v_maxes = [0.0] * len(weights), [0.0] * len(weights)
    for t, step_gradients in enumerate(gradients, start=1):
        for i, g in enumerate(step_gradients):
            w, m, g = weights[i], ms[i], g.astype("float64")
            if t == 1:
                vs[i] = np.linalg.norm(g) ** 2
            else:
                vs[i] = beta_2 * vs[i] + (1 - beta_2) * np.linalg.norm(g) ** 2
            v_maxes[i] = max(v_maxes[i], vs[i])
            wd = weight_decay if decayed[i] else 0.0
            g = g / (np.sqrt(v_maxes[i] if amsgrad else vs[i]) + epsilon) + wd * w
            if grad_averaging and t > 1:
                g = (1 - beta_1) * g
            m = beta_1 * m + learning_rate * g
            weights[i], ms[i] = w - m, m
    return weights


def assert_close(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"weight_decay": 0.1}, {"grad_averaging": True}, {"amsgrad": True},
     {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3, "grad_averaging": True,
      "amsgrad": True, "weight_decay": 0.01}],
    ids=["defaults", "weight_decay", "grad_averaging", "amsgrad", "all_options"],
)
def test_matches_numpy_reference(arguments):
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    expected = numpy_novograd(gradients, start, **arguments)
    assert_close(run_keras_optimizer(NovoGrad(**arguments), start, gradients), expected)


def test_exclude_from_weight_decay_leaves_the_named_variable_undecayed():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    optimizer = NovoGrad(learning_rate=0.01, weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["conv_kernel"])
    expected = numpy_novograd(gradients, start, learning_rate=0.01, weight_decay=0.1, decayed=(True, True, False))
    assert_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_second_moment_is_one_scalar_per_variable():
    optimizer = NovoGrad(amsgrad=True)
    optimizer.build([keras.Variable(np.zeros(shape, "float32")) for shape in SHAPES])
    shapes = sorted(tuple(variable.shape) for variable in optimizer.variables)
    assert shapes.count(()) == 2 + 2 * len(SHAPES)  # iteration, learning rate, v and v_max of each variable


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"learning_rate": -0.1}, "NovoGrad: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        ({"beta_1": 1.5}, "NovoGrad: argument `beta_1` must be in [0, 1). Received: beta_1=1.5"),
        ({"beta_2": -0.5}, "NovoGrad: argument `beta_2` must be in [0, 1). Received: beta_2=-0.5"),
        ({"epsilon": -1e-3}, "NovoGrad: argument `epsilon` must be >= 0. Received: epsilon=-0.001"),
        ({"grad_averaging": "yes"},
         "NovoGrad: argument `grad_averaging` must be one of False, True. Received: grad_averaging='yes'"),
        ({"amsgrad": None}, "NovoGrad: argument `amsgrad` must be one of False, True. Received: amsgrad=None"),
        ({"weight_decay": -0.1}, "NovoGrad: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        NovoGrad(**arguments)


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(NovoGrad(learning_rate=0.1))
    history = model.fit(*regression_data, batch_size=16, epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
