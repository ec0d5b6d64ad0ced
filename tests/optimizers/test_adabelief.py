import math
import re

import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.adabelief import AdaBelief

NAMES = ["bias", "kernel", "conv"]


def numpy_adabelief(gradients, initial, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-16, rectify=True,
                    degenerated_to_sgd=True, weight_decay=0.0, decayed=(True, True, True)):
    """adabelief-pytorch 0.2's AdaBelief in float64, as AdaBelief's docstring states it; also returns every rho_t."""
    w = [x.astype("float64") for x in initial]
    m = [np.zeros_like(x) for x in w]
    s = [np.zeros_like(x) for x in w]
    rhos = []
    for t, step_gradients in enumerate(gradients, start=1):
        rho_inf = 2 / (1 - beta_2) - 1
        rho_t = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
        rhos.append(rho_t)
        for i, g in enumerate(step_gradients):
            g = g.astype("float64")
            w[i] = w[i] - learning_rate * (weight_decay if decayed[i] else 0.0) * w[i]
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            s[i] = beta_2 * s[i] + (1 - beta_2) * (g - m[i]) ** 2 + epsilon
            m_hat = m[i] / (1 - beta_1**t)
            if not rectify:
                w[i] = w[i] - learning_rate * m_hat / (np.sqrt(s[i]) / math.sqrt(1 - beta_2**t) + epsilon)
            elif rho_t >= 5:
                r_t = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                w[i] = w[i] - learning_rate * m_hat * r_t * math.sqrt(1 - beta_2**t) / (np.sqrt(s[i]) + epsilon)
            elif degenerated_to_sgd:
                w[i] = w[i] - learning_rate * m_hat
    return w, rhos


def assert_matches(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# beta_2=0.999 and 0.99 cross rho_t >= 5 between steps 5 and 6; the larger epsilon of the second set makes its
# three placements (in s, on sqrt(s) before or after the bias correction) count.
HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, beta_1=0.8, beta_2=0.99, epsilon=1e-4)]
CASES = [
    dict(HYPER[1], rectify=False),
    dict(HYPER[0], rectify=True),
    dict(HYPER[1], rectify=True, degenerated_to_sgd=False),
]


@pytest.mark.parametrize("arguments", CASES)
def test_matches_numpy_reference(arguments):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected, rhos = numpy_adabelief(gradients, start, **arguments)
    assert min(rhos) < 5 < max(rhos) and min(abs(np.array(rhos) - 5)) > 1e-3  # both branches, none on the edge
    assert_matches(run_keras_optimizer(AdaBelief(**arguments), start, gradients), expected)


def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = AdaBelief(**HYPER[1], weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected, _ = numpy_adabelief(gradients, start, **HYPER[1], weight_decay=0.1, decayed=(True, False, True))
    assert_matches(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "AdaBelief: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.5), ValueError, "AdaBelief: argument `beta_1` must be in [0, 1). Received: beta_1=1.5"),
        (dict(beta_2=-0.5), ValueError, "AdaBelief: argument `beta_2` must be in [0, 1). Received: beta_2=-0.5"),
        (dict(beta_2=None), TypeError, "AdaBelief: argument `beta_2` must be a number. Received: beta_2=None"),
        (dict(epsilon=-1e-16), ValueError, "AdaBelief: argument `epsilon` must be >= 0. Received: epsilon=-1e-16"),
        (dict(weight_decay=-0.1), ValueError,
         "AdaBelief: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        AdaBelief(**arguments)


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(AdaBelief(learning_rate=0.05))
    history = model.fit(*regression_data, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
