import re

import keras
import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.lars import LARS

NAMES = ["bias", "kernel", "conv_kernel"]


def numpy_lars(gradients, initial, learning_rate=0.01, momentum=0.9, eta=0.001, epsilon=0.0, nesterov=False,
               exclude_rank_1=True, weight_decay=0.0, decayed=(True, True, True), adapted=(True, True, True)):
    """LARS (You et al., 2017, Algorithm 1) in float64, with momentum as in `tf.raw_ops.ResourceApplyMomentum`."""
    weights = [w.astype("float64") for w in initial]
    vs = [np.zeros_like(w) for w in weights]
    for step_gradients in gradients:
        for i, g in enumerate(step_gradients):
            w, v, g = weights[i], vs[i], g.astype("float64")
            plain = exclude_rank_1 and w.ndim <= 1
            wd = weight_decay if decayed[i] and not plain else 0.0
            local_lr = 1.0
            if adapted[i] and not plain and np.linalg.norm(w) > 0 and np.linalg.norm(g) > 0:
                local_lr = eta * np.linalg.norm(w) / (np.linalg.norm(g) + wd * np.linalg.norm(w) + epsilon)
            g = g + wd * w
            v = momentum * v + learning_rate * local_lr * g
            w = w - (momentum * v + learning_rate * local_lr * g if nesterov else v)
            weights[i], vs[i] = w, v
    return weights


def assert_close(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"weight_decay": 0.5}, {"nesterov": True, "weight_decay": 0.5}, {"exclude_rank_1": False, "weight_decay": 0.5},
     {"learning_rate": 0.5, "momentum": 0.0, "eta": 0.01, "epsilon": 0.1, "weight_decay": 0.1}],
    ids=["defaults", "weight_decay", "nesterov", "rank_1_adapted", "other_values"],
)
def test_matches_numpy_reference(arguments):
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    assert_close(run_keras_optimizer(LARS(**arguments), start, gradients), numpy_lars(gradients, start, **arguments))


def test_rank_1_variables_take_plain_momentum_steps():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    bias = run_keras_optimizer(LARS(learning_rate=0.1, weight_decay=0.5), start, gradients)[0]
    velocity, expected = np.zeros(3), start[0].astype("float64")
    for step_gradients in gradients:
        velocity = 0.9 * velocity + 0.1 * step_gradients[0]
        expected = expected - velocity
    np.testing.assert_allclose(bias, expected, rtol=1e-5, atol=1e-6)


def test_exclude_from_weight_decay_leaves_the_named_variable_undecayed():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    optimizer = LARS(weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["conv_kernel"])
    expected = numpy_lars(gradients, start, weight_decay=0.5, decayed=(True, True, False))
    assert_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_exclude_from_layer_adaptation():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    optimizer = LARS(weight_decay=0.5)
    optimizer.exclude_from_layer_adaptation(var_names=["^kernel"])
    expected = numpy_lars(gradients, start, weight_decay=0.5, adapted=(True, False, True))
    assert_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"learning_rate": -0.1}, "LARS: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        ({"momentum": 1.0}, "LARS: argument `momentum` must be in [0, 1). Received: momentum=1.0"),
        ({"eta": 0.0}, "LARS: argument `eta` must be > 0. Received: eta=0.0"),
        ({"epsilon": -1e-3}, "LARS: argument `epsilon` must be >= 0. Received: epsilon=-0.001"),
        ({"nesterov": "yes"}, "LARS: argument `nesterov` must be one of False, True. Received: nesterov='yes'"),
        ({"exclude_rank_1": None},
         "LARS: argument `exclude_rank_1` must be one of False, True. Received: exclude_rank_1=None"),
        ({"weight_decay": -0.1}, "LARS: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LARS(**arguments)


def test_exclude_from_layer_adaptation_after_build_raises():
    optimizer = LARS()
    optimizer.build([keras.Variable(np.zeros((2, 2), "float32"))])
    message = "LARS: `exclude_from_layer_adaptation()` must be called before the optimizer is built."
    with pytest.raises(ValueError, match=re.escape(message)):
        optimizer.exclude_from_layer_adaptation(var_names=["kernel"])


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(LARS(learning_rate=0.1, eta=0.1))
    history = model.fit(*regression_data, batch_size=16, epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
