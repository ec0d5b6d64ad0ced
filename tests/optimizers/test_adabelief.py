import math
import re

import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.adabelief import AdaBelief

NAMES = ["bias", "kernel", "conv"]


def adabelief_pytorch(gradients, initial, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-16, rectify=True,
                      degenerated_to_sgd=True, weight_decay=0.0, decayed=(True, True, True)):
    """adabelief-pytorch 0.2.1 `AdaBelief.step` (juntang-zhuang/Adabelief-Optimizer at 2855178e,
    `pypi_packages/adabelief_pytorch0.2.1`), `weight_decouple=True`, no amsgrad, in float64; also returns N_sma.

    As there, `exp_avg_var.add_(eps)` runs in place on every step, rectified or not, so `eps` accumulates in the state.
    """
    lr, beta1, beta2, eps = learning_rate, beta_1, beta_2, epsilon
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(x) for x in params]
    exp_avg_var = [np.zeros_like(x) for x in params]
    n_smas = []
    for step, grads in enumerate(gradients, start=1):
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            params[i] = params[i] * (1.0 - lr * (weight_decay if decayed[i] else 0.0))
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            exp_avg[i] = exp_avg[i] * beta1 + (1 - beta1) * grad
            grad_residual = grad - exp_avg[i]
            exp_avg_var[i] = exp_avg_var[i] * beta2 + (1 - beta2) * grad_residual * grad_residual
            exp_avg_var[i] = exp_avg_var[i] + eps
            denom = np.sqrt(exp_avg_var[i]) / math.sqrt(bias_correction2) + eps
            if not rectify:
                params[i] = params[i] - lr / bias_correction1 * exp_avg[i] / denom
                continue
            beta2_t = beta2**step
            n_sma_max = 2 / (1 - beta2) - 1
            n_sma = n_sma_max - 2 * step * beta2_t / (1 - beta2_t)
            if n_sma >= 5:
                step_size = math.sqrt((1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max
                                      / (n_sma_max - 2)) / (1 - beta1**step)
            elif degenerated_to_sgd:
                step_size = 1.0 / (1 - beta1**step)
            else:
                step_size = -1
            if n_sma >= 5:
                params[i] = params[i] - step_size * lr * exp_avg[i] / (np.sqrt(exp_avg_var[i]) + eps)
            elif step_size > 0:
                params[i] = params[i] - step_size * lr * exp_avg[i]
        n_smas.append(2 / (1 - beta2) - 1 - 2 * step * beta2**step / (1 - beta2**step))
    return params, n_smas


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
    expected, rhos = adabelief_pytorch(gradients, start, **arguments)
    assert min(rhos) < 5 < max(rhos) and min(abs(np.array(rhos) - 5)) > 1e-3  # both branches, none on the edge
    assert_matches(run_keras_optimizer(AdaBelief(**arguments), start, gradients), expected)


def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = AdaBelief(**HYPER[1], weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected, _ = adabelief_pytorch(gradients, start, **HYPER[1], weight_decay=0.1, decayed=(True, False, True))
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
