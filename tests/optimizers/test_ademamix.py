import math
import re

import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.ademamix import AdEMAMix

NAMES = ["bias", "kernel", "conv"]


def numpy_ademamix(gradients, initial, learning_rate, beta_1=0.9, beta_2=0.999, beta_3=0.9999, alpha=5.0,
                   alpha_warmup=None, beta_3_warmup=None, epsilon=1e-8, weight_decay=0.0, decayed=(True, True, True)):
    """The authors' PyTorch AdEMAMix in float64, as AdEMAMix's docstring states it."""
    w = [x.astype("float64") for x in initial]
    m1 = [np.zeros_like(x) for x in w]
    m2 = [np.zeros_like(x) for x in w]
    nu = [np.zeros_like(x) for x in w]
    for t, step_gradients in enumerate(gradients, start=1):
        alpha_t = alpha * min(t / alpha_warmup, 1) if alpha_warmup else alpha
        if beta_3_warmup and t < beta_3_warmup:
            f = lambda beta: math.log(0.5) / math.log(beta + 1e-8) - 1  # noqa: E731
            a = t / beta_3_warmup
            beta_3_t = 0.5 ** (1 / ((1 - a) * f(beta_1) + a * f(beta_3) + 1))
        else:
            beta_3_t = beta_3
        for i, g in enumerate(step_gradients):
            g = g.astype("float64")
            w[i] = w[i] - learning_rate * (weight_decay if decayed[i] else 0.0) * w[i]
            m1[i] = beta_1 * m1[i] + (1 - beta_1) * g
            m2[i] = beta_3_t * m2[i] + (1 - beta_3_t) * g
            nu[i] = beta_2 * nu[i] + (1 - beta_2) * g * g
            m1_hat = m1[i] / (1 - beta_1**t)
            nu_hat = nu[i] / (1 - beta_2**t)
            w[i] = w[i] - learning_rate * (m1_hat + alpha_t * m2[i]) / (np.sqrt(nu_hat) + epsilon)
    return w


def assert_matches(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# Warm-ups shorter than the 60 steps, so that both sides of each switch run.
CASES = [
    dict(learning_rate=1e-2),
    dict(learning_rate=1e-2, beta_3=0.999, alpha=8.0, alpha_warmup=30, epsilon=1e-4),
    dict(learning_rate=1e-2, beta_1=0.8, beta_3_warmup=40),
]


@pytest.mark.parametrize("arguments", CASES)
def test_matches_numpy_reference(arguments):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = numpy_ademamix(gradients, start, **arguments)
    assert_matches(run_keras_optimizer(AdEMAMix(**arguments), start, gradients), expected)


def test_warmups_and_weight_decay_match_numpy_reference_and_skip_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    arguments = dict(learning_rate=1e-2, alpha_warmup=50, beta_3_warmup=45, weight_decay=0.5)
    optimizer = AdEMAMix(**arguments)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = numpy_ademamix(gradients, start, **arguments, decayed=(True, False, True))
    assert_matches(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "AdEMAMix: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.5), ValueError, "AdEMAMix: argument `beta_1` must be in [0, 1). Received: beta_1=1.5"),
        (dict(beta_2=1.0), ValueError, "AdEMAMix: argument `beta_2` must be in [0, 1). Received: beta_2=1.0"),
        (dict(beta_3=1.0), ValueError, "AdEMAMix: argument `beta_3` must be in [0, 1). Received: beta_3=1.0"),
        (dict(alpha=-1.0), ValueError, "AdEMAMix: argument `alpha` must be >= 0. Received: alpha=-1.0"),
        (dict(alpha="5"), TypeError, "AdEMAMix: argument `alpha` must be a number. Received: alpha='5'"),
        (dict(alpha_warmup=0), ValueError, "AdEMAMix: argument `alpha_warmup` must be >= 1. Received: alpha_warmup=0"),
        (dict(beta_3_warmup=2.5), TypeError,
         "AdEMAMix: argument `beta_3_warmup` must be an integer. Received: beta_3_warmup=2.5"),
        (dict(epsilon=-1e-8), ValueError, "AdEMAMix: argument `epsilon` must be >= 0. Received: epsilon=-1e-08"),
        (dict(weight_decay=-0.1), ValueError,
         "AdEMAMix: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        AdEMAMix(**arguments)


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(AdEMAMix(learning_rate=0.05))
    history = model.fit(*regression_data, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
