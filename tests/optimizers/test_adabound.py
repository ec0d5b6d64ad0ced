import math
import re

import keras
import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.adabound import AdaBound

NAMES = ["bias", "kernel", "conv"]


def torch_adabound(gradients, initial, lr, final_lr=1e-1, betas=(0.9, 0.999), gamma=1e-3, weight_decay=0.0,
                   weight_decouple=True, ams_bound=False, eps=1e-8, decayed=(True, True, True), rates=None,
                   bounded=None, base_lr=None):
    """pytorch-optimizer 4.1.0 `AdaBound.step` with `_step_per_param` (`fixed_decay=False`, `adam_debias=False`,
    `BaseOptimizer.apply_ams_bound`), in float64. `rates` gives each step's `group['lr']` (a scheduler's);
    `base_lr` the rate it was built with (`self.base_lrs`; default: the first of `rates`); `bounded`, a list,
    collects the fraction of elements whose step size the bounds clipped."""
    beta1, beta2 = betas
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    max_exp_avg_sq = [np.zeros_like(p) for p in params]
    base_lr = base_lr if base_lr is not None else rates[0] if rates else lr
    for step, grads in enumerate(gradients, start=1):
        lr = rates[step - 1] if rates else lr
        if base_lr == 0.0 and lr > 0.0:
            base_lr = lr
        bias_correction1 = 1.0 - beta1**step
        bias_correction2_sq = math.sqrt(1.0 - beta2**step)
        final = final_lr * lr / base_lr if base_lr > 0.0 else 0.0
        lower_bound = final * (1 - 1 / (gamma * step + 1))
        upper_bound = final * (1 + 1 / (gamma * step))
        step_size = lr * bias_correction2_sq / bias_correction1
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            wd = weight_decay if decayed[i] else 0.0
            if wd != 0.0:
                if weight_decouple:
                    params[i] = params[i] * (1.0 - wd * lr)
                else:
                    grad = grad + wd * params[i]
            exp_avg[i] = exp_avg[i] + (grad - exp_avg[i]) * (1.0 - beta1)
            exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1.0 - beta2) * grad * grad
            if ams_bound:
                max_exp_avg_sq[i] = np.maximum(max_exp_avg_sq[i], exp_avg_sq[i])
                de_nom = np.sqrt(max_exp_avg_sq[i] + 1e-15) + eps
            else:
                de_nom = np.sqrt(exp_avg_sq[i] + 1e-15) + eps
            update = step_size / de_nom
            if bounded is not None:
                bounded.append(np.mean((update < lower_bound) | (update > upper_bound)))
            update = np.clip(update, lower_bound, upper_bound) * exp_avg[i]
            params[i] = params[i] - update
    return params


# The second set's gamma closes the bounds within the run, so that they clip most steps.
HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, final_lr=5e-2, beta_1=0.8, beta_2=0.95, gamma=0.1,
                                        epsilon=1e-3), dict(learning_rate=1e-2, gamma=0.05, amsbound=True)]


def torch_arguments(learning_rate, final_lr=0.1, beta_1=0.9, beta_2=0.999, gamma=1e-3, epsilon=1e-8,
                    amsbound=False):
    return dict(lr=learning_rate, final_lr=final_lr, betas=(beta_1, beta_2), gamma=gamma, eps=epsilon,
                ams_bound=amsbound)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    bounded = []
    expected = torch_adabound(gradients, start, **torch_arguments(**hyper), bounded=bounded)
    assert np.mean(bounded) > 0.3 if hyper.get("gamma", 1e-3) > 1e-2 else np.mean(bounded) == 0  # defaults: Adam
    assert_all_close(run_keras_optimizer(AdaBound(**hyper), start, gradients), expected)


@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables(decoupled):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = AdaBound(**HYPER[1], weight_decay=0.1, decoupled_weight_decay=decoupled)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = torch_adabound(gradients, start, **torch_arguments(**HYPER[1]), weight_decay=0.1,
                              weight_decouple=decoupled, decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_a_schedule_scales_the_bounds_from_the_first_positive_rate():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([4, 29], [0.0, 2e-2, 5e-3])
    rates = [float(schedule(step)) for step in range(60)]
    expected = torch_adabound(gradients, start, None, gamma=0.1, rates=rates)
    assert_all_close(run_keras_optimizer(AdaBound(schedule, gamma=0.1), start, gradients), expected)


def test_after_a_warm_up_the_steps_are_pytorch_optimizers_with_the_peak_as_its_rate():
    """Under a warm-up, pytorch-optimizer scales the bounds by the rate over the one it was built with (the peak);
    with `base_lr` the largest rate so far, the steps from the peak on equal that (the warm-up's own steps differ:
    compared here are the moves of the weights after it)."""
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([3, 6, 30], [1e-4, 1e-3, 1e-2, 5e-3])
    rates = [float(schedule(step)) for step in range(60)]
    peak = 7  # steps before the first at 1e-2 (iterations 7 to 30)
    moves = []
    for run in (lambda g: run_keras_optimizer(AdaBound(schedule, gamma=0.1), start, g),
                lambda g: torch_adabound(g, start, None, gamma=0.1, rates=rates, base_lr=1e-2)):
        after, at_peak = run(gradients), run(gradients[:peak])
        moves.append([a - b for a, b in zip(after, at_peak, strict=True)])
    assert_all_close(*moves)


def authors_adabound(gradients, initial, lr=1e-3, betas=(0.9, 0.999), final_lr=0.1, gamma=1e-3, eps=1e-8,
                     weight_decay=0.0, amsbound=False, decoupled=False):
    """The authors' `AdaBound.step` (and, with `decoupled=True`, `AdaBoundW.step`) from Luolc/AdaBound at 2e928c3
    (adabound/adabound.py), in float64, at a constant rate (`base_lr = lr`)."""
    beta1, beta2 = betas
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    max_exp_avg_sq = [np.zeros_like(p) for p in params]
    base_lr = lr
    for step, grads in enumerate(gradients, start=1):
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            if weight_decay != 0 and not decoupled:
                grad = grad + weight_decay * params[i]
            exp_avg[i] = exp_avg[i] * beta1 + (1 - beta1) * grad
            exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1 - beta2) * grad * grad
            if amsbound:
                max_exp_avg_sq[i] = np.maximum(max_exp_avg_sq[i], exp_avg_sq[i])
                denom = np.sqrt(max_exp_avg_sq[i]) + eps
            else:
                denom = np.sqrt(exp_avg_sq[i]) + eps
            step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
            final = final_lr * lr / base_lr
            lower_bound = final * (1 - 1 / (gamma * step + 1))
            upper_bound = final * (1 + 1 / (gamma * step))
            update = np.clip(step_size / denom, lower_bound, upper_bound) * exp_avg[i]
            if weight_decay != 0 and decoupled:
                params[i] = params[i] - update - params[i] * weight_decay
            else:
                params[i] = params[i] - update
    return params


@pytest.mark.parametrize("amsbound", [False, True])
def test_authors_adabound_is_the_l2_form(amsbound):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    hyper = dict(final_lr=5e-2, beta_1=0.8, beta_2=0.95, gamma=0.1, epsilon=1e-3, amsbound=amsbound)
    expected = authors_adabound(gradients, start, 2e-2, betas=(0.8, 0.95), final_lr=5e-2, gamma=0.1, eps=1e-3,
                                weight_decay=0.1, amsbound=amsbound)
    optimizer = AdaBound(2e-2, **hyper, weight_decay=0.1, decoupled_weight_decay=False)
    assert_all_close(run_keras_optimizer(optimizer, start, gradients), expected)


def test_authors_adaboundw_is_the_decoupled_form_with_the_decay_divided_by_the_rate():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = authors_adabound(gradients, start, 2e-2, gamma=0.1, weight_decay=2e-3, decoupled=True)
    optimizer = AdaBound(2e-2, gamma=0.1, weight_decay=2e-3 / 2e-2)
    assert_all_close(run_keras_optimizer(optimizer, start, gradients), expected)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "AdaBound: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(final_lr=0.0), ValueError, "AdaBound: argument `final_lr` must be > 0. Received: final_lr=0.0"),
        (dict(beta_1=1.0), ValueError, "AdaBound: argument `beta_1` must be in [0, 1). Received: beta_1=1.0"),
        (dict(beta_2=1.5), ValueError, "AdaBound: argument `beta_2` must be in [0, 1). Received: beta_2=1.5"),
        (dict(gamma=-1e-3), ValueError, "AdaBound: argument `gamma` must be > 0. Received: gamma=-0.001"),
        (dict(epsilon=-1.0), ValueError, "AdaBound: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(weight_decay=-0.1), ValueError,
         "AdaBound: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        AdaBound(**arguments)
