import math
import re

import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.stable_adamw import StableAdamW

NAMES = ["bias", "kernel", "conv"]


def torch_stable_adamw(gradients, initial, lr, betas=(0.9, 0.99), weight_decay=1e-2, weight_decouple=True, eps=1e-8,
                       decayed=(True, True, True), clipped=None):
    """pytorch-optimizer 4.1.0 `StableAdamW._step_per_param` (float32 parameters, so no Kahan summation; with
    `BaseOptimizer.debias_beta` and `get_stable_adamw_rms`), in float64. `clipped`, a list, collects whether each
    step's RMS exceeded 1."""
    beta1, beta2 = betas
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    for step, grads in enumerate(gradients, start=1):
        beta1_comp = 1.0 - (beta1**step - beta1) / (beta1**step - 1.0)
        beta2_hat = (beta2**step - beta2) / (beta2**step - 1.0)
        eps_p2 = math.pow(eps, 2)
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            wd = weight_decay if decayed[i] else 0.0
            if not weight_decouple and wd != 0.0:
                grad = grad + wd * params[i]
            exp_avg[i] = exp_avg[i] + (grad - exp_avg[i]) * beta1_comp
            exp_avg_sq[i] = exp_avg_sq[i] * beta2_hat + (1.0 - beta2_hat) * grad * grad
            rms = max(np.sqrt(np.mean(grad**2 / np.maximum(exp_avg_sq[i], eps_p2))), 1.0)
            if clipped is not None:
                clipped.append(rms > 1.0)
            step_lr = lr / rms
            if weight_decouple and wd != 0.0:
                params[i] = params[i] * (1.0 - wd * step_lr)
            de_nom = (np.sqrt(exp_avg_sq[i]) + eps) / -step_lr
            params[i] = params[i] + exp_avg[i] / de_nom
    return params


HYPER = [dict(learning_rate=1e-2, weight_decay=0.0), dict(learning_rate=2e-2, beta_1=0.8, beta_2=0.95, epsilon=1e-3,
                                                          weight_decay=0.0)]


def torch_arguments(learning_rate, beta_1=0.9, beta_2=0.99, epsilon=1e-8, weight_decay=1e-2):
    return dict(lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon, weight_decay=weight_decay)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    clipped = []
    expected = torch_stable_adamw(gradients, start, **torch_arguments(**hyper), clipped=clipped)
    assert 0.1 < np.mean(clipped) < 0.9  # the update clipping acts on some steps, not all
    assert_all_close(run_keras_optimizer(StableAdamW(**hyper), start, gradients), expected)


@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables(decoupled):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = StableAdamW(2e-2, weight_decay=0.5, decoupled_weight_decay=decoupled)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = torch_stable_adamw(gradients, start, 2e-2, weight_decay=0.5, weight_decouple=decoupled,
                                  decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_default_weight_decay_is_pytorch_optimizers():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = torch_stable_adamw(gradients, start, 1e-2)
    assert_all_close(run_keras_optimizer(StableAdamW(1e-2), start, gradients), expected)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "StableAdamW: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.0), ValueError, "StableAdamW: argument `beta_1` must be in [0, 1). Received: beta_1=1.0"),
        (dict(beta_2=1.5), ValueError, "StableAdamW: argument `beta_2` must be in [0, 1). Received: beta_2=1.5"),
        (dict(epsilon=-1.0), ValueError, "StableAdamW: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(weight_decay=-0.1), ValueError,
         "StableAdamW: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        StableAdamW(**arguments)
