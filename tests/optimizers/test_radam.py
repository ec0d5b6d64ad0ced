import math
import re

import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.radam import RAdam

NAMES = ["bias", "kernel", "conv"]


def numpy_radam(gradients, initial, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                decoupled_weight_decay=False, decayed=(True, True, True)):
    """torch.optim.RAdam in float64, as RAdam's docstring states it. Returns the final values and every rho_t."""
    w = [x.astype("float64") for x in initial]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    rhos = []
    for t, step_gradients in enumerate(gradients, start=1):
        rho_inf = 2 / (1 - beta_2) - 1
        rho_t = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
        rhos.append(rho_t)
        for i, g in enumerate(step_gradients):
            g = g.astype("float64")
            wd = weight_decay if decayed[i] else 0.0
            if wd and decoupled_weight_decay:
                w[i] = w[i] - learning_rate * wd * w[i]
            elif wd:
                g = g + wd * w[i]
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
            m_hat = m[i] / (1 - beta_1**t)
            if rho_t > 5:
                r_t = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                w[i] = w[i] - learning_rate * m_hat * r_t * math.sqrt(1 - beta_2**t) / (np.sqrt(v[i]) + epsilon)
            else:
                w[i] = w[i] - learning_rate * m_hat
    return w, rhos


def assert_matches(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# beta_2=0.999 crosses rho_t > 5 between steps 5 and 6; beta_2=0.95 (rho_inf = 39) between 4 and 5, then
# saturates. A larger epsilon makes its placement (on sqrt(v), before the bias correction) count.
HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, beta_1=0.8, beta_2=0.95, epsilon=1e-3)]


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected, rhos = numpy_radam(gradients, start, **hyper)
    assert min(rhos) < 5 < max(rhos) and min(abs(np.array(rhos) - 5)) > 1e-3  # both branches, none on the edge
    assert_matches(run_keras_optimizer(RAdam(**hyper), start, gradients), expected)


@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables(decoupled):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = RAdam(**HYPER[1], weight_decay=0.1, decoupled_weight_decay=decoupled)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected, _ = numpy_radam(gradients, start, **HYPER[1], weight_decay=0.1, decoupled_weight_decay=decoupled,
                              decayed=(True, False, True))
    assert_matches(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "RAdam: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.5), ValueError, "RAdam: argument `beta_1` must be in [0, 1). Received: beta_1=1.5"),
        (dict(beta_2=1.0), ValueError, "RAdam: argument `beta_2` must be in [0, 1). Received: beta_2=1.0"),
        (dict(beta_1="0.9"), TypeError, "RAdam: argument `beta_1` must be a number. Received: beta_1='0.9'"),
        (dict(epsilon=-1e-8), ValueError, "RAdam: argument `epsilon` must be >= 0. Received: epsilon=-1e-08"),
        (dict(weight_decay=-0.1), ValueError,
         "RAdam: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        RAdam(**arguments)


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(RAdam(learning_rate=0.05))
    history = model.fit(*regression_data, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
