import math
import re

import keras
import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.dadapt_adam import DAdaptAdam

NAMES = ["bias", "kernel", "conv"]


def torch_dadapt_adam(gradients, initial, lr=1.0, betas=(0.9, 0.999), d0=1e-6, growth_rate=float("inf"),
                      weight_decay=0.0, weight_decouple=False, bias_correction=False, eps=1e-8,
                      decayed=(True, True, True), ds=None):
    """pytorch-optimizer 4.1.0 `DAdaptAdam.step`, its per-parameter branch (`fixed_decay=False`), in float64.
    `ds`, a list, collects `d` after each step."""
    beta1, beta2 = betas
    beta2_sq = math.sqrt(beta2)
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    s = [np.zeros_like(p) for p in params]
    d, numerator_weighted = d0, 0.0
    for step, grads in enumerate(gradients):
        bias_correction1 = 1.0 - beta1 ** (step + 1)
        bias_correction2_sq = math.sqrt(1.0 - beta2 ** (step + 1))
        correction = bias_correction1 / bias_correction2_sq
        d_lr = d * lr / correction if bias_correction else d * lr  # apply_adam_debias(not bias_correction, ...)
        sk_l1, numerator_acc = 0.0, 0.0
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            wd = weight_decay if decayed[i] else 0.0
            if not weight_decouple and wd != 0.0:
                grad = grad + wd * params[i]
            de_nom = np.sqrt(exp_avg_sq[i]) + eps
            numerator_acc += d_lr * np.dot(grad.ravel(), (s[i] / de_nom).ravel())
            exp_avg[i] = exp_avg[i] * beta1 + d_lr * (1.0 - beta1) * grad
            exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1.0 - beta2) * grad * grad
            s[i] = s[i] * beta2_sq + d_lr * (1.0 - beta2_sq) * grad
            sk_l1 += np.abs(s[i]).sum()
        if sk_l1 == 0:
            continue
        numerator_weighted = numerator_weighted + (numerator_acc - numerator_weighted) * (1.0 - beta2_sq)
        if lr > 0.0:
            d_hat = numerator_weighted / ((1.0 - beta2_sq) * sk_l1)
            d = max(d, min(d_hat, d * growth_rate))
        if ds is not None:
            ds.append(d)
        for i in range(len(params)):
            de_nom = np.sqrt(exp_avg_sq[i]) + eps
            wd = weight_decay if decayed[i] else 0.0
            if weight_decouple and wd != 0.0:
                params[i] = params[i] * (1.0 - wd * d_lr)
            params[i] = params[i] - exp_avg[i] / de_nom
    return params


def drifting_gradients(steps=60):
    """Gradients with a fading common part, so that `d` grows over the run (pure noise keeps it near d0), then
    settles (a constant part makes it grow without end)."""
    return [[g + 0.5 * 0.9**t for g in step] for t, step in enumerate(gradient_sequence(SHAPES, steps))]


HYPER = [dict(), dict(learning_rate=0.5, beta_1=0.8, beta_2=0.99, epsilon=1e-3, d0=1e-3),
         dict(d0=1e-4, growth_rate=1.05, bias_correction=True)]


def torch_arguments(learning_rate=1.0, beta_1=0.9, beta_2=0.999, epsilon=1e-8, d0=1e-6, growth_rate=float("inf"),
                    bias_correction=False):
    return dict(lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon, d0=d0, growth_rate=growth_rate,
                bias_correction=bias_correction)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = drifting_gradients(), initial_values(SHAPES)
    ds = []
    expected = torch_dadapt_adam(gradients, start, **torch_arguments(**hyper), ds=ds)
    assert ds[-1] > 3 * ds[0]  # d grew: the estimate is exercised
    assert_all_close(run_keras_optimizer(DAdaptAdam(**hyper), start, gradients), expected)


@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables(decoupled):
    gradients, start = drifting_gradients(), initial_values(SHAPES)
    optimizer = DAdaptAdam(d0=1e-3, weight_decay=0.5, decoupled_weight_decay=decoupled)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = torch_dadapt_adam(gradients, start, d0=1e-3, weight_decay=0.5, weight_decouple=decoupled,
                                 decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def authors_dadapt_adam(gradients, initial, rates, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decouple=False,
                        use_bias_correction=False, d0=1e-6, growth_rate=float("inf")):
    """The authors' `DAdaptAdam.step` (facebookresearch/dadaptation at c984980, dadaptation/dadapt_adam.py), one
    parameter group, `layer_scale=1`, in float64. `rates` gives each step's `lr`; at 0 the step changes nothing."""
    beta1, beta2 = betas
    sqrt_beta2 = beta2**0.5
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    s = [np.zeros_like(p) for p in params]
    d, k, numerator_weighted = d0, 0, 0.0
    for lr, grads in zip(rates, gradients):
        bias_correction = ((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1)) if use_bias_correction else 1
        dlr = d * lr * bias_correction
        sk_l1, numerator_acum = 0.0, 0.0
        grads = [g.astype("float64") for g in grads]
        for i, grad in enumerate(grads):
            if weight_decay != 0 and not decouple:
                grads[i] = grad = grad + weight_decay * params[i]
            if lr > 0.0:
                denom = np.sqrt(exp_avg_sq[i]) + eps
                numerator_acum += dlr * np.dot(grad.ravel(), (s[i] / denom).ravel())
                exp_avg[i] = exp_avg[i] * beta1 + dlr * (1 - beta1) * grad
                exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1 - beta2) * grad * grad
                s[i] = s[i] * sqrt_beta2 + dlr * (1 - sqrt_beta2) * grad
                sk_l1 += np.abs(s[i]).sum()
        if sk_l1 == 0:
            continue
        numerator_weighted = sqrt_beta2 * numerator_weighted + (1 - sqrt_beta2) * numerator_acum
        if lr > 0.0:
            d_hat = numerator_weighted / ((1 - sqrt_beta2) * sk_l1)
            d = max(d, min(d_hat, d * growth_rate))
        for i in range(len(params)):
            denom = np.sqrt(exp_avg_sq[i]) + eps
            if weight_decay != 0 and decouple:
                params[i] = params[i] - weight_decay * dlr * params[i]
            params[i] = params[i] - exp_avg[i] / denom
        k += 1
    return params


@pytest.mark.parametrize("decoupled", [False, True])
def test_matches_the_authors_dadaptation(decoupled):
    gradients, start = drifting_gradients(), initial_values(SHAPES)
    expected = authors_dadapt_adam(gradients, start, [0.5] * 60, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.5,
                                   decouple=decoupled, use_bias_correction=True, d0=1e-4, growth_rate=1.05)
    optimizer = DAdaptAdam(0.5, beta_1=0.8, beta_2=0.99, epsilon=1e-3, weight_decay=0.5,
                           decoupled_weight_decay=decoupled, bias_correction=True, d0=1e-4, growth_rate=1.05)
    assert_all_close(run_keras_optimizer(optimizer, start, gradients), expected)


def test_at_a_zero_rate_the_authors_stand_still_and_the_momentum_moves_these_weights():
    gradients, start = drifting_gradients(), initial_values(SHAPES)
    rates = [1.0] * 30 + [0.0] * 30
    theirs = authors_dadapt_adam(gradients, start, rates, d0=1e-3)
    assert_all_close(theirs, authors_dadapt_adam(gradients[:30], start, rates[:30], d0=1e-3), 0, 0)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([29], [1.0, 0.0])
    ours = run_keras_optimizer(DAdaptAdam(schedule, d0=1e-3), start, gradients)
    assert_all_close(run_keras_optimizer(DAdaptAdam(d0=1e-3), start, gradients[:30]), theirs)
    assert min(np.max(np.abs(a - b)) for a, b in zip(ours, theirs)) > 1e-3


def test_zero_gradients_leave_weights_and_d():
    start = initial_values(SHAPES)
    zeros = [[np.zeros(shape, "float32") for shape in SHAPES]] * 3
    optimizer = DAdaptAdam()
    assert_all_close(run_keras_optimizer(optimizer, start, zeros), start, 0, 0)
    assert float(optimizer._d) == pytest.approx(1e-6)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "DAdaptAdam: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.0), ValueError, "DAdaptAdam: argument `beta_1` must be in [0, 1). Received: beta_1=1.0"),
        (dict(beta_2=1.5), ValueError, "DAdaptAdam: argument `beta_2` must be in [0, 1). Received: beta_2=1.5"),
        (dict(epsilon=-1.0), ValueError, "DAdaptAdam: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(d0=0.0), ValueError, "DAdaptAdam: argument `d0` must be > 0. Received: d0=0.0"),
        (dict(growth_rate=0.5), ValueError,
         "DAdaptAdam: argument `growth_rate` must be >= 1. Received: growth_rate=0.5"),
        (dict(weight_decay=-0.1), ValueError,
         "DAdaptAdam: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        DAdaptAdam(**arguments)
