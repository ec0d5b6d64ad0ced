import math
import re

import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.adan import Adan

NAMES = ["bias", "kernel", "conv"]


def official_adan(gradients, initial, learning_rate, beta_1=0.98, beta_2=0.92, beta_3=0.99, epsilon=1e-8,
                  weight_decay=0.0, decayed=(True, True, True)):
    """The authors' `adan.py` (sail-sg/Adan at 2c65beaf), `Adan.step` with `_single_tensor_adan`, `no_prox=False`,
    `max_grad_norm=0`, in float64. `neg_pre_grad` starts as minus the first gradient, so the first difference is 0.
    """
    lr, beta1, beta2, beta3, eps = learning_rate, beta_1, beta_2, beta_3, epsilon
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(x) for x in params]
    exp_avg_sq = [np.zeros_like(x) for x in params]
    exp_avg_diff = [np.zeros_like(x) for x in params]
    neg_pre_grad = [None] * len(params)
    for step, grads in enumerate(gradients, start=1):
        bias_correction1, bias_correction2 = 1.0 - beta1**step, 1.0 - beta2**step
        bias_correction3_sqrt = math.sqrt(1.0 - beta3**step)
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            if step == 1:
                neg_pre_grad[i] = -grad
            neg_grad_or_diff = neg_pre_grad[i] + grad
            exp_avg[i] = exp_avg[i] * beta1 + (1 - beta1) * grad
            exp_avg_diff[i] = exp_avg_diff[i] * beta2 + (1 - beta2) * neg_grad_or_diff
            neg_grad_or_diff = neg_grad_or_diff * beta2 + grad
            exp_avg_sq[i] = exp_avg_sq[i] * beta3 + (1 - beta3) * neg_grad_or_diff * neg_grad_or_diff
            denom = np.sqrt(exp_avg_sq[i]) / bias_correction3_sqrt + eps
            step_size_diff = lr * beta2 / bias_correction2
            step_size = lr / bias_correction1
            params[i] = params[i] - step_size * exp_avg[i] / denom - step_size_diff * exp_avg_diff[i] / denom
            params[i] = params[i] / (1 + lr * (weight_decay if decayed[i] else 0.0))
            neg_pre_grad[i] = -grad
    return params


def assert_matches(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# The second set's faster decays and larger epsilon make the difference term and epsilon's placement count.
HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, beta_1=0.9, beta_2=0.7, beta_3=0.95, epsilon=1e-3)]


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = official_adan(gradients, start, **hyper)
    assert_matches(run_keras_optimizer(Adan(**hyper), start, gradients), expected)


def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = Adan(learning_rate=1e-2, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = official_adan(gradients, start, 1e-2, weight_decay=0.5, decayed=(True, False, True))
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
