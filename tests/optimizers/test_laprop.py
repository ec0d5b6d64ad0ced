import math
import re

import keras
import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.laprop import LaProp

NAMES = ["bias", "kernel", "conv"]


def torch_laprop(gradients, initial, lr, betas=(0.9, 0.999), centered=False, steps_before_using_centered=10,
                 weight_decay=0.0, ams_bound=False, eps=1e-15, decayed=(True, True, True), rates=None):
    """pytorch-optimizer 4.1.0 `LaProp.step`, its per-parameter branch (`weight_decouple=True`,
    `fixed_decay=False`, with `BaseOptimizer.apply_ams_bound`), in float64. `rates` gives each step's `lr`."""
    beta1, beta2 = betas
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    exp_mean_avg_beta2 = [np.zeros_like(p) for p in params]
    max_exp_avg_sq = [np.zeros_like(p) for p in params]
    exp_avg_lr_1 = [0.0] * len(params)
    for step, grads in enumerate(gradients, start=1):
        lr = rates[step - 1] if rates else lr
        bias_correction2_sq = math.sqrt(1.0 - beta2**step)
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1.0 - beta2) * grad * grad
            exp_avg_lr_1[i] = exp_avg_lr_1[i] * beta1 + (1.0 - beta1) * lr
            bias_correction1 = exp_avg_lr_1[i] / lr if lr != 0.0 else 1.0
            step_size = 1.0 / bias_correction1
            second_moment = exp_avg_sq[i]
            if centered:
                exp_mean_avg_beta2[i] = exp_mean_avg_beta2[i] + (grad - exp_mean_avg_beta2[i]) * (1.0 - beta2)
                if step > steps_before_using_centered:
                    second_moment = exp_avg_sq[i] - exp_mean_avg_beta2[i] ** 2
            if ams_bound:
                max_exp_avg_sq[i] = np.maximum(max_exp_avg_sq[i], second_moment)
                de_nom = np.sqrt(max_exp_avg_sq[i] + 1e-15) + eps
            else:
                de_nom = np.sqrt(second_moment + 1e-15) + eps
            de_nom = de_nom / bias_correction2_sq
            exp_avg[i] = exp_avg[i] * beta1 + (1.0 - beta1) * lr * grad / de_nom
            params[i] = params[i] - step_size * exp_avg[i]
            params[i] = params[i] * (1.0 - (weight_decay if decayed[i] else 0.0) * lr)
    return params


HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, beta_1=0.8, beta_2=0.95, epsilon=1e-3),
         dict(learning_rate=1e-2, centered=True), dict(learning_rate=1e-2, amsgrad=True),
         dict(learning_rate=1e-2, centered=True, amsgrad=True, steps_before_using_centered=0, beta_2=0.9)]


def torch_arguments(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-15, centered=False,
                    steps_before_using_centered=10, amsgrad=False):
    return dict(lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon, centered=centered,
                steps_before_using_centered=steps_before_using_centered, ams_bound=amsgrad)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = torch_laprop(gradients, start, **torch_arguments(**hyper))
    assert_all_close(run_keras_optimizer(LaProp(**hyper), start, gradients), expected)


def test_weight_decay_after_the_step_matches_numpy_reference_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = LaProp(2e-2, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = torch_laprop(gradients, start, 2e-2, weight_decay=0.5, decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_bias_correction_follows_a_schedule_and_a_zero_rate():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    boundaries, values = [9, 19, 39], [2e-2, 0.0, 1e-2, 5e-3]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    rates = [float(schedule(step)) for step in range(60)]
    expected = torch_laprop(gradients, start, None, rates=rates)
    assert_all_close(run_keras_optimizer(LaProp(schedule), start, gradients), expected)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "LaProp: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.0), ValueError, "LaProp: argument `beta_1` must be in [0, 1). Received: beta_1=1.0"),
        (dict(beta_2=1.5), ValueError, "LaProp: argument `beta_2` must be in [0, 1). Received: beta_2=1.5"),
        (dict(epsilon=-1.0), ValueError, "LaProp: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(steps_before_using_centered=-1), ValueError,
         "LaProp: argument `steps_before_using_centered` must be >= 0. Received: steps_before_using_centered=-1"),
        (dict(weight_decay=-0.1), ValueError,
         "LaProp: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        LaProp(**arguments)
