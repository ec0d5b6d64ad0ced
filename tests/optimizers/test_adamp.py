import math
import re

import numpy as np
import pytest
from references import (
    SHAPES,
    assert_all_close,
    gradient_sequence,
    initial_values,
    numpy_projection,
    run_keras_optimizer,
)

from tfopt.optimizers.adamp import AdamP

NAMES = ["bias", "kernel", "conv"]


def authors_adamp(gradients, initial, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, delta=0.1,
                  wd_ratio=0.1, nesterov=False, decayed=(True, True, True), branches=None, torch_optimizer_eps=False):
    """The authors' `AdamP.step` (clovaai/AdamP at 146287b, adamp/adamp.py) in float64. `torch_optimizer_eps` puts
    epsilon where pytorch-optimizer 4.1.0 puts it (on sqrt(v), then times sqrt(bias_correction2))."""
    beta1, beta2 = betas
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    for step, grads in enumerate(gradients, start=1):
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            exp_avg[i] = exp_avg[i] * beta1 + (1 - beta1) * grad
            exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1 - beta2) * grad * grad
            if torch_optimizer_eps:
                denom = (np.sqrt(exp_avg_sq[i]) + eps) / math.sqrt(bias_correction2)
            else:
                denom = np.sqrt(exp_avg_sq[i]) / math.sqrt(bias_correction2) + eps
            step_size = lr / bias_correction1
            if nesterov:
                perturb = (beta1 * exp_avg[i] + (1 - beta1) * grad) / denom
            else:
                perturb = exp_avg[i] / denom
            ratio = 1
            if len(params[i].shape) > 1:
                perturb, ratio = numpy_projection(params[i], grad, perturb, delta, wd_ratio, eps, branches)
            if weight_decay > 0 and decayed[i]:
                params[i] = params[i] * (1 - lr * weight_decay * ratio)
            params[i] = params[i] - step_size * perturb
    return params


def torch_arguments(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8, delta=0.1, wd_ratio=0.1, nesterov=False):
    return dict(lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon, delta=delta, wd_ratio=wd_ratio,
                nesterov=nesterov)


# delta=1.5 makes random gradients look orthogonal often enough that each branch runs (checked below).
HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, beta_1=0.8, beta_2=0.95, epsilon=1e-3, delta=1.5),
         dict(learning_rate=1e-2, delta=1.5, nesterov=True)]


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    branches = []
    expected = authors_adamp(gradients, start, **torch_arguments(**hyper), branches=branches)
    if hyper.get("delta"):
        assert {"channel", "layer", None} <= set(branches)
    assert_all_close(run_keras_optimizer(AdamP(**hyper), start, gradients), expected)


def test_weight_decay_with_projection_ratio_matches_numpy_reference_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = AdamP(2e-2, delta=1.5, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = authors_adamp(gradients, start, 2e-2, delta=1.5, weight_decay=0.5, decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_epsilon_placement_is_the_authors_not_pytorch_optimizers():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    ours = authors_adamp(gradients, start, 2e-2, eps=1e-2)
    theirs = authors_adamp(gradients, start, 2e-2, eps=1e-2, torch_optimizer_eps=True)
    assert max(np.max(np.abs(a - b)) for a, b in zip(ours, theirs)) > 1e-3
    assert_all_close(run_keras_optimizer(AdamP(2e-2, epsilon=1e-2), start, gradients), ours)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "AdamP: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.0), ValueError, "AdamP: argument `beta_1` must be in [0, 1). Received: beta_1=1.0"),
        (dict(beta_2=1.5), ValueError, "AdamP: argument `beta_2` must be in [0, 1). Received: beta_2=1.5"),
        (dict(epsilon=-1.0), ValueError, "AdamP: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(delta=0.0), ValueError, "AdamP: argument `delta` must be > 0. Received: delta=0.0"),
        (dict(wd_ratio=-0.1), ValueError, "AdamP: argument `wd_ratio` must be >= 0. Received: wd_ratio=-0.1"),
        (dict(weight_decay=-0.1), ValueError,
         "AdamP: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        AdamP(**arguments)
