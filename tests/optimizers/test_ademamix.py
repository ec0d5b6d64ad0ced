import math
import re

import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.ademamix import AdEMAMix

NAMES = ["bias", "kernel", "conv"]


def linear_warmup_scheduler(step, alpha_end, alpha_start=0, warmup=1):
    if step < warmup:
        a = step / float(warmup)
        return (1.0 - a) * alpha_start + a * alpha_end
    return alpha_end


def linear_hl_warmup_scheduler(step, beta_end, beta_start=0, warmup=1):
    def f(beta, eps=1e-8):
        return math.log(0.5) / math.log(beta + eps) - 1

    if step < warmup:
        a = step / float(warmup)
        return math.pow(0.5, 1 / ((1.0 - a) * f(beta_start) + a * f(beta_end) + 1))
    return beta_end


def official_ademamix(gradients, initial, learning_rate, beta_1=0.9, beta_2=0.999, beta_3=0.9999, alpha=5.0,
                      alpha_warmup=None, beta_3_warmup=None, epsilon=1e-8, weight_decay=0.0,
                      decayed=(True, True, True)):
    """The authors' `pytorch/ademamix.py` (apple/ml-ademamix at c3d73c0d), `AdEMAMix.step` and its two warm-up
    schedulers, in float64. Its decay is `update += weight_decay * p` before `p -= lr * update`."""
    lr, beta1, beta2, beta3_final, eps = learning_rate, beta_1, beta_2, beta_3, epsilon
    params = [x.astype("float64") for x in initial]
    exp_avg_fast = [np.zeros_like(x) for x in params]
    exp_avg_slow = [np.zeros_like(x) for x in params]
    exp_avg_sq = [np.zeros_like(x) for x in params]
    for step, grads in enumerate(gradients, start=1):
        bias_correction1, bias_correction2 = 1 - beta1**step, 1 - beta2**step
        alpha_t = alpha if alpha_warmup is None else linear_warmup_scheduler(step, alpha, 0, alpha_warmup)
        beta3 = beta3_final if beta_3_warmup is None else linear_hl_warmup_scheduler(step, beta3_final, beta1,
                                                                                      beta_3_warmup)
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            exp_avg_fast[i] = exp_avg_fast[i] * beta1 + (1 - beta1) * grad
            exp_avg_slow[i] = exp_avg_slow[i] * beta3 + (1 - beta3) * grad
            exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1 - beta2) * grad * grad
            denom = np.sqrt(exp_avg_sq[i]) / math.sqrt(bias_correction2) + eps
            update = (exp_avg_fast[i] / bias_correction1 + alpha_t * exp_avg_slow[i]) / denom
            update = update + (weight_decay if decayed[i] else 0.0) * params[i]
            params[i] = params[i] - lr * update
    return params


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
    expected = official_ademamix(gradients, start, **arguments)
    assert_matches(run_keras_optimizer(AdEMAMix(**arguments), start, gradients), expected)


def test_warmups_and_weight_decay_match_numpy_reference_and_skip_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    arguments = dict(learning_rate=1e-2, alpha_warmup=50, beta_3_warmup=45, weight_decay=0.5)
    optimizer = AdEMAMix(**arguments)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = official_ademamix(gradients, start, **arguments, decayed=(True, False, True))
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
