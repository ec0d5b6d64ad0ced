import math
import re

import keras
import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.mars import MARS

NAMES = ["bias", "kernel", "conv"]


def torch_mars(gradients, initial, lr=3e-3, betas=(0.95, 0.99), gamma=0.025, mars_type="adamw", optimize_1d=False,
               lr_1d=3e-3, betas_1d=(0.9, 0.95), weight_decay=0.0, weight_decay_1d=1e-1, ams_bound=False, eps=1e-8,
               decayed=(True, True, True), rates=None):
    """pytorch-optimizer 4.1.0 `MARS.step`, its per-parameter branch (`optimize_mixed`, `optimize_1d`,
    `weight_decouple=True`, `BaseOptimizer.apply_ams_bound`), in float64. `lr` is the rate it is built with (which
    fixes `lr_1d_factor`); `rates` gives each step's `group['lr']` (a scheduler's)."""
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    max_exp_avg_sq = [np.zeros_like(p) for p in params]
    last_grad = [np.zeros_like(p) for p in params]
    lr_1d_factor = lr_1d / lr

    def adam(i, c, beta1, beta2, step):
        exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1.0 - beta2) * c * c
        if ams_bound:
            max_exp_avg_sq[i] = np.maximum(max_exp_avg_sq[i], exp_avg_sq[i])
            de_nom = np.sqrt(max_exp_avg_sq[i] + 1e-15) + eps
        else:
            de_nom = np.sqrt(exp_avg_sq[i] + 1e-15) + eps
        de_nom = de_nom / math.sqrt(1.0 - beta2**step) * (1.0 - beta1**step)
        return exp_avg[i] / de_nom

    for step, grads in enumerate(gradients, start=1):
        rate = rates[step - 1] if rates else lr
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            mixed = optimize_1d or grad.ndim >= 2
            step_size = rate if mixed else rate * lr_1d_factor
            if mixed:  # optimize_mixed
                beta1, beta2 = betas
                c_t = (grad - last_grad[i]) * (gamma * (beta1 / (1.0 - beta1))) + grad
                c_t_norm = np.linalg.norm(c_t)
                if c_t_norm > 1.0:
                    c_t = c_t / c_t_norm
                exp_avg[i] = exp_avg[i] + (c_t - exp_avg[i]) * (1.0 - beta1)
                update = np.sign(exp_avg[i]) if mars_type == "lion" else adam(i, c_t, beta1, beta2, step)
            else:  # optimize_1d
                beta1, beta2 = betas_1d
                exp_avg[i] = exp_avg[i] + (grad - exp_avg[i]) * (1.0 - beta1)
                update = adam(i, grad, beta1, beta2, step)
            wd = (weight_decay if mixed else weight_decay_1d) if decayed[i] else 0.0
            params[i] = params[i] * (1.0 - wd * step_size)
            params[i] = params[i] - step_size * update
            last_grad[i] = grad
    return params


HYPER = [dict(), dict(learning_rate=2e-2, beta_1=0.9, beta_2=0.95, gamma=0.2, learning_rate_1d=1e-2,
                      beta_1_1d=0.8, beta_2_1d=0.99, weight_decay_1d=0.0, epsilon=1e-3),
         dict(learning_rate=1e-2, mars_type="lion", weight_decay_1d=0.5),
         dict(learning_rate=1e-2, optimize_1d=True, amsgrad=True)]


def torch_arguments(learning_rate=3e-3, beta_1=0.95, beta_2=0.99, gamma=0.025, mars_type="adamw", optimize_1d=False,
                    learning_rate_1d=3e-3, beta_1_1d=0.9, beta_2_1d=0.95, weight_decay_1d=0.1, amsgrad=False,
                    epsilon=1e-8):
    return dict(lr=learning_rate, betas=(beta_1, beta_2), gamma=gamma, mars_type=mars_type, optimize_1d=optimize_1d,
                lr_1d=learning_rate_1d, betas_1d=(beta_1_1d, beta_2_1d), weight_decay_1d=weight_decay_1d,
                ams_bound=amsgrad, eps=epsilon)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = torch_mars(gradients, start, **torch_arguments(**hyper))
    assert_all_close(run_keras_optimizer(MARS(**hyper), start, gradients), expected)


def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = MARS(2e-2, weight_decay=0.5, weight_decay_1d=0.3)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = torch_mars(gradients, start, **torch_arguments(2e-2, weight_decay_1d=0.3), weight_decay=0.5,
                          decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_after_a_warm_up_the_1d_steps_are_pytorch_optimizers_with_the_peak_as_its_rate():
    """pytorch-optimizer fixes `lr_1d / lr` at construction (with the peak rate, under a warm-up scheduler); with
    the largest rate so far in its place, the steps from the peak on equal that (compared: the moves after it)."""
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([3, 6, 30], [1e-4, 1e-3, 1e-2, 5e-3])
    rates = [float(schedule(step)) for step in range(60)]
    peak = 7  # steps before the first at 1e-2 (iterations 7 to 30)
    moves = []
    hyper = dict(learning_rate_1d=4e-3, weight_decay_1d=0.0)  # decay would make the moves depend on the weights
    for run in (lambda g: run_keras_optimizer(MARS(schedule, **hyper), start, g),
                lambda g: torch_mars(g, start, **torch_arguments(learning_rate=1e-2, **hyper), rates=rates)):
        after, at_peak = run(gradients), run(gradients[:peak])
        moves.append([a - b for a, b in zip(after, at_peak, strict=True)])
    assert_all_close(*moves, atol=5e-6)  # float32 rounding of 53 MARS steps on the conv kernel: ~1e-6


def authors_mars(gradients, initial, lr=3e-3, betas=(0.95, 0.99), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 gamma=0.025, mars_type="mars-adamw", optimize_1d=False, lr_1d=3e-3, betas_1d=(0.9, 0.95),
                 weight_decay_1d=0.1):
    """The authors' `MARS.step` and `update_fn` (AGI-Arena/MARS at 4831e28, MARS/optimizers/mars.py), `is_approx=True`,
    in float64: the MARS step for rank 2 only, `epsilon` added after the bias correction."""
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    max_exp_avg_sq = [np.zeros_like(p) for p in params]
    last_grad = [np.zeros_like(p) for p in params]
    lr_1d_factor = lr_1d / lr
    wd_1d = weight_decay if optimize_1d else weight_decay_1d

    def denominator(i, beta1, beta2, step):
        if amsgrad:
            max_exp_avg_sq[i] = np.maximum(max_exp_avg_sq[i], exp_avg_sq[i])
        v = max_exp_avg_sq[i] if amsgrad else exp_avg_sq[i]
        return (np.sqrt(v) * (1 / math.sqrt(1.0 - beta2**step)) + eps) * (1.0 - beta1**step)

    for step, grads in enumerate(gradients, start=1):
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            p = params[i]
            if optimize_1d or grad.ndim == 2:
                beta1, beta2 = betas
                c_t = (grad - last_grad[i]) * (gamma * (beta1 / (1.0 - beta1))) + grad
                c_t_norm = np.linalg.norm(c_t)
                if c_t_norm > 1.0:
                    c_t = c_t / c_t_norm
                exp_avg[i] = exp_avg[i] * beta1 + (1.0 - beta1) * c_t
                if mars_type == "mars-adamw":
                    exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1.0 - beta2) * c_t * c_t
                    params[i] = p - lr * (p * weight_decay + exp_avg[i] / denominator(i, beta1, beta2, step))
                else:  # mars-lion
                    params[i] = p - lr * (p * weight_decay + np.sign(exp_avg[i]))
            else:
                beta1, beta2 = betas_1d
                exp_avg[i] = exp_avg[i] * beta1 + (1.0 - beta1) * grad
                exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1.0 - beta2) * grad * grad
                params[i] = p - lr * lr_1d_factor * (p * wd_1d + exp_avg[i] / denominator(i, beta1, beta2, step))
            last_grad[i] = grad
    return params


@pytest.mark.parametrize("mars_type, amsgrad", [("adamw", False), ("adamw", True), ("lion", False)])
def test_authors_code_with_optimize_1d(mars_type, amsgrad):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = authors_mars(gradients, start, 1e-2, gamma=0.2, weight_decay=0.5, amsgrad=amsgrad,
                            mars_type="mars-" + mars_type, optimize_1d=True)
    optimizer = MARS(1e-2, gamma=0.2, weight_decay=0.5, amsgrad=amsgrad, mars_type=mars_type, optimize_1d=True)
    assert_all_close(run_keras_optimizer(optimizer, start, gradients), expected)


def test_authors_code_by_default_differs_only_on_the_conv_kernel():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = authors_mars(gradients, start, 2e-2, gamma=0.2, weight_decay=0.5, lr_1d=1e-2, weight_decay_1d=0.3)
    ours = run_keras_optimizer(MARS(2e-2, gamma=0.2, weight_decay=0.5, learning_rate_1d=1e-2, weight_decay_1d=0.3),
                               start, gradients)
    assert_all_close(ours[:2], expected[:2])  # the bias (1-D AdamW) and the Dense kernel (MARS)
    assert np.max(np.abs(ours[2] - expected[2])) > 1e-2  # rank 4: MARS here, 1-D AdamW in the authors' code


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "MARS: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.0), ValueError, "MARS: argument `beta_1` must be in [0, 1). Received: beta_1=1.0"),
        (dict(beta_2=1.5), ValueError, "MARS: argument `beta_2` must be in [0, 1). Received: beta_2=1.5"),
        (dict(gamma=-0.1), ValueError, "MARS: argument `gamma` must be >= 0. Received: gamma=-0.1"),
        (dict(mars_type="shampoo"), ValueError, "MARS: argument `mars_type` must be one of 'adamw', 'lion'."),
        (dict(learning_rate_1d=-1.0), ValueError,
         "MARS: argument `learning_rate_1d` must be >= 0. Received: learning_rate_1d=-1.0"),
        (dict(beta_1_1d=1.0), ValueError, "MARS: argument `beta_1_1d` must be in [0, 1). Received: beta_1_1d=1.0"),
        (dict(beta_2_1d=-0.1), ValueError,
         "MARS: argument `beta_2_1d` must be in [0, 1). Received: beta_2_1d=-0.1"),
        (dict(weight_decay_1d=-0.1), ValueError,
         "MARS: argument `weight_decay_1d` must be >= 0. Received: weight_decay_1d=-0.1"),
        (dict(epsilon=-1.0), ValueError, "MARS: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(weight_decay=-0.1), ValueError,
         "MARS: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        MARS(**arguments)
