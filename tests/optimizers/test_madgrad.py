import math
import re

import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.madgrad import MADGRAD

NAMES = ["bias", "kernel", "conv"]


def torch_madgrad(gradients, initial, lr, momentum=0.9, weight_decay=0.0, weight_decouple=False, eps=1e-6,
                  decayed=(True, True, True)):
    """pytorch-optimizer 4.1.0 `MADGRAD.step`, its per-parameter dense branch (with `compute_rms`), in float64."""
    params = [x.astype("float64") for x in initial]
    grad_sum_sq = [np.zeros_like(p) for p in params]
    s = [np.zeros_like(p) for p in params]
    x0s = [p.copy() for p in params]

    def compute_rms(sum_sq):
        rms = sum_sq ** (1.0 / 3.0) + eps
        return np.where(rms == 0, np.inf, rms) if eps == 0.0 else rms

    for k, grads in enumerate(gradients):
        step_lr = lr + eps if lr != 0.0 else 0.0
        _lambda = step_lr * math.pow(k + 1, 0.5)
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            p = params[i]
            wd = weight_decay if decayed[i] else 0.0
            if wd > 0.0 and not weight_decouple:
                grad = grad + wd * p
            if momentum == 0.0:
                x0 = p + s[i] / compute_rms(grad_sum_sq[i])
            else:
                x0 = x0s[i]
            grad_sum_sq[i] = grad_sum_sq[i] + _lambda * grad * grad
            rms = compute_rms(grad_sum_sq[i])
            s[i] = s[i] + _lambda * grad
            p_old = p.copy()
            if momentum == 0.0:
                p = x0 - s[i] / rms
            else:
                z = x0 - s[i] / rms
                p = p + (z - p) * (1.0 - momentum)
            if wd > 0.0 and weight_decouple:
                p = p - step_lr * wd * p_old
            params[i] = p
    return params


HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, momentum=0.0, epsilon=1e-3),
         dict(learning_rate=5e-3, momentum=0.5, epsilon=0.0)]


def torch_arguments(learning_rate, momentum=0.9, epsilon=1e-6):
    return dict(lr=learning_rate, momentum=momentum, eps=epsilon)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = torch_madgrad(gradients, start, **torch_arguments(**hyper))
    assert_all_close(run_keras_optimizer(MADGRAD(**hyper), start, gradients), expected)


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables(decoupled, momentum):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = MADGRAD(1e-2, momentum=momentum, weight_decay=0.1, decoupled_weight_decay=decoupled)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = torch_madgrad(gradients, start, 1e-2, momentum=momentum, weight_decay=0.1, weight_decouple=decoupled,
                             decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_zero_epsilon_leaves_elements_without_gradient_in_place():
    gradients, start = gradient_sequence(SHAPES, 10), initial_values(SHAPES)
    for step in gradients:
        step[0][1] = 0.0
    result = run_keras_optimizer(MADGRAD(1e-2, momentum=0.0, epsilon=0.0), start, gradients)
    assert result[0][1] == start[0][1] and np.isfinite(result[0]).all()


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "MADGRAD: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(momentum=1.0), ValueError, "MADGRAD: argument `momentum` must be in [0, 1). Received: momentum=1.0"),
        (dict(epsilon=-1.0), ValueError, "MADGRAD: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(weight_decay=-0.1), ValueError,
         "MADGRAD: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        MADGRAD(**arguments)
