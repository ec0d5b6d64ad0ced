import re

import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.adopt import ADOPT

NAMES = ["bias", "kernel", "conv"]


def torch_adopt(gradients, initial, lr, betas=(0.9, 0.9999), clip_lambda=lambda step: step**0.25, weight_decay=0.0,
                weight_decouple=False, eps=1e-6, decayed=(True, True, True)):
    """pytorch-optimizer 4.1.0 `ADOPT._step_per_param` (with `BaseOptimizer.apply_weight_decay`), in float64.

    `decayed` leaves variables out of the weight decay, as `exclude_from_weight_decay` does."""
    beta1, beta2 = betas
    params = [x.astype("float64") for x in initial]
    exp_avgs = [np.zeros_like(p) for p in params]
    exp_avg_sqs = [np.zeros_like(p) for p in params]
    for step, grads in enumerate(gradients, start=1):
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            wd = weight_decay if decayed[i] else 0.0
            if wd != 0.0:
                if weight_decouple:
                    params[i] = params[i] * (1.0 - wd * lr)
                else:
                    grad = grad + wd * params[i]
            if step == 1:
                exp_avg_sqs[i] = exp_avg_sqs[i] + grad * grad
                continue
            de_nom = np.maximum(np.sqrt(exp_avg_sqs[i]), eps)
            normed_grad = grad / de_nom
            if clip_lambda is not None:
                clip = clip_lambda(step)
                normed_grad = np.clip(normed_grad, -clip, clip)
            exp_avgs[i] = exp_avgs[i] + (normed_grad - exp_avgs[i]) * (1.0 - beta1)
            params[i] = params[i] - lr * exp_avgs[i]
            exp_avg_sqs[i] = exp_avg_sqs[i] * beta2 + (1.0 - beta2) * grad * grad
    return params


def clipped_fraction(gradients, beta_2, eps):
    """How often the clip bound step**0.25 binds over the run (so that the tests exercise it)."""
    v = [g.astype("float64") ** 2 for g in gradients[0]]
    hits = total = 0
    for step, grads in enumerate(gradients[1:], start=2):
        for i, g in enumerate(grads):
            normed = np.abs(g / np.maximum(np.sqrt(v[i]), eps))
            hits, total = hits + np.sum(normed > step**0.25), total + normed.size
            v[i] = beta_2 * v[i] + (1 - beta_2) * g.astype("float64") ** 2
    return hits / total


# The second set's lower beta_2 and larger epsilon make both count; the default's clip binds in ~20% of elements.
HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, beta_1=0.8, beta_2=0.95, epsilon=0.3)]


def torch_arguments(learning_rate, beta_1=0.9, beta_2=0.9999, epsilon=1e-6):
    return dict(lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    assert clipped_fraction(gradients, 0.9999, 1e-6) > 0.05
    expected = torch_adopt(gradients, start, **torch_arguments(**hyper))
    assert_all_close(run_keras_optimizer(ADOPT(**hyper), start, gradients), expected)


def test_without_clipping_matches_numpy_reference_and_differs():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = torch_adopt(gradients, start, 1e-2, clip_lambda=None)
    assert_all_close(run_keras_optimizer(ADOPT(1e-2, clip_exponent=None), start, gradients), expected)
    clipped = torch_adopt(gradients, start, 1e-2)
    assert max(np.max(np.abs(a - b)) for a, b in zip(clipped, expected)) > 1e-3


def test_other_clip_exponent():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = torch_adopt(gradients, start, 1e-2, clip_lambda=lambda step: step**0.1)
    assert_all_close(run_keras_optimizer(ADOPT(1e-2, clip_exponent=0.1), start, gradients), expected)


@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables(decoupled):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = ADOPT(2e-2, weight_decay=0.1, decoupled_weight_decay=decoupled)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = torch_adopt(gradients, start, 2e-2, weight_decay=0.1, weight_decouple=decoupled,
                           decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_zero_epsilon_first_step_stays_finite():
    gradients, start = gradient_sequence(SHAPES, 3), initial_values(SHAPES)
    result = run_keras_optimizer(ADOPT(1e-2, epsilon=0.0), start, gradients)
    assert all(np.isfinite(r).all() for r in result)
    assert_all_close(result, torch_adopt(gradients, start, 1e-2, eps=0.0))


def authors_adopt(gradients, initial, lr, betas=(0.9, 0.9999), eps=1e-6, clip_lambda=lambda step: step**0.25,
                  weight_decay=0.0, decouple=False):
    """The authors' `_single_tensor_adopt` (iShohei220/adopt at 6468572, src/adopt/adopt.py) in float64. Its step
    counter starts at 0 and is read before the increment: `clip_lambda` sees 1 at the first update, and the
    decoupled decay comes after the `step == 0` branch, so step 0 is not decayed."""
    beta1, beta2 = betas
    params = [x.astype("float64") for x in initial]
    exp_avgs = [np.zeros_like(p) for p in params]
    exp_avg_sqs = [np.zeros_like(p) for p in params]
    for step, grads in enumerate(gradients):
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            if weight_decay != 0 and not decouple:
                grad = grad + weight_decay * params[i]
            if step == 0:
                exp_avg_sqs[i] = exp_avg_sqs[i] + grad * grad
                continue
            if weight_decay != 0 and decouple:
                params[i] = params[i] - lr * weight_decay * params[i]
            normed_grad = grad / np.maximum(np.sqrt(exp_avg_sqs[i]), eps)
            if clip_lambda is not None:
                clip = clip_lambda(step)
                normed_grad = np.clip(normed_grad, -clip, clip)
            exp_avgs[i] = exp_avgs[i] + (normed_grad - exp_avgs[i]) * (1 - beta1)
            params[i] = params[i] - lr * exp_avgs[i]
            exp_avg_sqs[i] = exp_avg_sqs[i] * beta2 + (1 - beta2) * grad * grad
    return params


def test_authors_code_with_the_step_shifted_clip_is_the_default():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    shifted = authors_adopt(gradients, start, 1e-2, weight_decay=0.1, clip_lambda=lambda step: (step + 1) ** 0.25)
    ours = run_keras_optimizer(ADOPT(1e-2, weight_decay=0.1), start, gradients)
    assert_all_close(ours, shifted)
    theirs = authors_adopt(gradients, start, 1e-2, weight_decay=0.1)  # their default clips one step tighter
    assert max(np.max(np.abs(a - b)) for a, b in zip(theirs, ours)) > 1e-3


def test_authors_code_without_clipping_is_clip_exponent_none():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = authors_adopt(gradients, start, 2e-2, betas=(0.8, 0.95), eps=0.3, clip_lambda=None, weight_decay=0.1)
    ours = ADOPT(2e-2, beta_1=0.8, beta_2=0.95, epsilon=0.3, clip_exponent=None, weight_decay=0.1)
    assert_all_close(run_keras_optimizer(ours, start, gradients), expected)


def test_authors_decoupled_decay_skips_the_first_step():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    theirs = authors_adopt(gradients, start, 1e-2, clip_lambda=None, weight_decay=0.5, decouple=True)
    ours = run_keras_optimizer(ADOPT(1e-2, clip_exponent=None, weight_decay=0.5, decoupled_weight_decay=True),
                               start, gradients)
    # the moments are the same; the extra decay of step 1, -c * w_0 (c = lr * wd), is shrunk by the 59 decays after it
    c = 1e-2 * 0.5
    assert_all_close(ours, [t - c * (1 - c) ** 59 * w for t, w in zip(theirs, start)])
    assert max(np.max(np.abs(a - b)) for a, b in zip(theirs, ours)) > 1e-3


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "ADOPT: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.0), ValueError, "ADOPT: argument `beta_1` must be in [0, 1). Received: beta_1=1.0"),
        (dict(beta_2=1.5), ValueError, "ADOPT: argument `beta_2` must be in [0, 1). Received: beta_2=1.5"),
        (dict(epsilon=-1e-6), ValueError, "ADOPT: argument `epsilon` must be >= 0. Received: epsilon=-1e-06"),
        (dict(clip_exponent=0.0), ValueError,
         "ADOPT: argument `clip_exponent` must be > 0. Received: clip_exponent=0.0"),
        (dict(weight_decay=-0.1), ValueError,
         "ADOPT: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        ADOPT(**arguments)
