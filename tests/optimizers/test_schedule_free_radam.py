import math
import re

import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.schedule_free_radam import ScheduleFreeRAdam

NAMES = ["bias", "kernel", "conv"]


def torch_schedule_free_radam(gradients, initial, lr=2.5e-3, betas=(0.9, 0.999), weight_decay=0.0, r=0.0,
                              weight_lr_power=2.0, silent_sgd_phase=True, eps=1e-8, decayed=(True, True, True),
                              authors_sgd_phase=True):
    """pytorch-optimizer 4.1.0 `ScheduleFreeRAdam.step`, its per-parameter branch (with
    `BaseOptimizer.get_rectify_step_size(is_rectify=True, n_sma_threshold=4, degenerated_to_sgd=False)`), in float64;
    returns the parameters in train mode (y) and after `eval()` (x). `authors_sgd_phase` gives the non-silent early
    steps the group's rate, as the authors' `RAdamScheduleFree` does (pytorch-optimizer: 1.0)."""
    beta1, beta2 = betas
    params = [x.astype("float64") for x in initial]
    zs = [p.copy() for p in params]
    exp_avg_sqs = [np.zeros_like(p) for p in params]
    weight_sum, lr_max = 0.0, -1.0
    for step, grads in enumerate(gradients, start=1):
        bias_correction2 = 1.0 - beta2**step
        bias_correction2_sq = bias_correction2**0.5
        n_sma_max = 2.0 / (1.0 - beta2) - 1.0
        beta2_t = beta2**step
        n_sma = n_sma_max - 2 * step * beta2_t / (1.0 - beta2_t)
        if n_sma >= 4:
            rt = math.sqrt((1.0 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max
                           / (n_sma_max - 2))
        else:
            rt = -1.0
        step_lr = lr * rt
        if step_lr < 0.0:
            step_lr = float(not silent_sgd_phase) * (lr if authors_sgd_phase else 1.0)
        elif n_sma > 4.0:
            step_lr = step_lr / bias_correction2_sq
        lr_max = max(step_lr, lr_max)
        weight = (step**r) * (lr_max**weight_lr_power)
        weight_sum = weight_sum + weight
        checkpoint = weight / weight_sum if weight_sum != 0.0 else 0.0
        adaptive_y_lr = step_lr * (beta1 * (1.0 - checkpoint) - 1.0)
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            exp_avg_sqs[i] = exp_avg_sqs[i] * beta2 + (1.0 - beta2) * grad * grad
            if n_sma > 4.0:
                de_nom = np.sqrt(exp_avg_sqs[i]) / bias_correction2_sq + eps
                grad = grad / de_nom
            if decayed[i] and weight_decay > 0.0:
                grad = grad + weight_decay * params[i]
            params[i] = params[i] + (zs[i] - params[i]) * checkpoint
            params[i] = params[i] + grad * adaptive_y_lr
            zs[i] = zs[i] - step_lr * grad
    evaluated = [p + (z - p) * (1.0 - 1.0 / beta1) for p, z in zip(params, zs)]
    return params, evaluated


def run_and_finalize(optimizer, start, gradients, names=None):
    trained = run_keras_optimizer(optimizer, start, gradients, names)
    variables = list(optimizer._trainable_variables)
    optimizer.finalize_variable_values(variables)
    return trained, [np.asarray(v.numpy(), "float64") for v in variables]


HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, beta_1=0.8, beta_2=0.95, epsilon=1e-3, r=1.0,
                                        weight_lr_power=1.0),
         dict(learning_rate=1e-2, silent_sgd_phase=False)]


def torch_arguments(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8, r=0.0, weight_lr_power=2.0,
                    silent_sgd_phase=True):
    return dict(lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon, r=r, weight_lr_power=weight_lr_power,
                silent_sgd_phase=silent_sgd_phase)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference_in_train_and_eval_mode(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected_y, expected_x = torch_schedule_free_radam(gradients, start, **torch_arguments(**hyper))
    y, x = run_and_finalize(ScheduleFreeRAdam(**hyper), start, gradients)
    assert_all_close(y, expected_y)
    assert_all_close(x, expected_x)


def test_non_silent_early_steps_take_the_learning_rate_as_the_authors_do():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    ours, _ = torch_schedule_free_radam(gradients, start, 1e-2, silent_sgd_phase=False)
    theirs, _ = torch_schedule_free_radam(gradients, start, 1e-2, silent_sgd_phase=False, authors_sgd_phase=False)
    assert max(np.max(np.abs(a - b)) for a, b in zip(ours, theirs)) > 0.1
    y, _ = run_and_finalize(ScheduleFreeRAdam(1e-2, silent_sgd_phase=False), start, gradients)
    assert_all_close(y, ours)


def test_weight_decay_at_y_matches_numpy_reference_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = ScheduleFreeRAdam(2e-2, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected_y, expected_x = torch_schedule_free_radam(gradients, start, 2e-2, weight_decay=0.5,
                                                       decayed=(True, False, True))
    y, x = run_and_finalize(optimizer, start, gradients, NAMES)
    assert_all_close(y, expected_y)
    assert_all_close(x, expected_x)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "ScheduleFreeRAdam: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=0.0), ValueError, "ScheduleFreeRAdam: argument `beta_1` must be in (0, 1). Received: beta_1=0.0"),
        (dict(beta_2=1.0), ValueError, "ScheduleFreeRAdam: argument `beta_2` must be in (0, 1). Received: beta_2=1.0"),
        (dict(epsilon=-1.0), ValueError, "ScheduleFreeRAdam: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(r=-1.0), ValueError, "ScheduleFreeRAdam: argument `r` must be >= 0. Received: r=-1.0"),
        (dict(weight_lr_power=-1.0), ValueError,
         "ScheduleFreeRAdam: argument `weight_lr_power` must be >= 0. Received: weight_lr_power=-1.0"),
        (dict(weight_decay=-0.1), ValueError,
         "ScheduleFreeRAdam: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        ScheduleFreeRAdam(**arguments)
