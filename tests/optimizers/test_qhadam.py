import re

import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.qhadam import QHAdam

NAMES = ["bias", "kernel", "conv"]


def torch_qhadam(gradients, initial, lr, betas=(0.9, 0.999), nus=(1.0, 1.0), weight_decay=0.0,
                 weight_decouple=False, eps=1e-8, decayed=(True, True, True)):
    """pytorch-optimizer 4.1.0 `QHAdam.step`, its per-parameter branch, in float64 (`beta1_weight` and
    `beta2_weight` kept per parameter, as there). `decayed` leaves variables out of the weight decay."""
    beta1, beta2 = betas
    nu1, nu2 = nus
    params = [x.astype("float64") for x in initial]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    beta1_weight, beta2_weight = [0.0] * len(params), [0.0] * len(params)
    for grads in gradients:
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            wd = weight_decay if decayed[i] else 0.0
            if wd != 0.0:
                if weight_decouple:
                    params[i] = params[i] * (1.0 - wd * lr)
                else:
                    grad = grad + wd * params[i]
            beta1_weight[i] = beta1_weight[i] * beta1 + 1.0
            beta2_weight[i] = beta2_weight[i] * beta2 + 1.0
            grad_p2 = grad**2
            exp_avg[i] = exp_avg[i] + (grad - exp_avg[i]) / beta1_weight[i]
            exp_avg_sq[i] = exp_avg_sq[i] + (grad_p2 - exp_avg_sq[i]) / beta2_weight[i]
            avg_grad = exp_avg[i] * nu1 + (1.0 - nu1) * grad if nu1 != 1.0 else exp_avg[i]
            avg_grad_rms = exp_avg_sq[i] * nu2
            if nu2 != 1.0:
                avg_grad_rms = avg_grad_rms + (1.0 - nu2) * grad_p2
            params[i] = params[i] - lr * avg_grad / (np.sqrt(avg_grad_rms) + eps)
    return params


# The defaults (Adam), the paper's recommended QHAdam(0.995, 0.7), and both nus below 1 with a larger epsilon.
HYPER = [dict(learning_rate=1e-2), dict(learning_rate=1e-2, beta_1=0.995, nu_1=0.7),
         dict(learning_rate=2e-2, beta_1=0.8, beta_2=0.95, nu_1=0.6, nu_2=0.8, epsilon=1e-3)]


def torch_arguments(learning_rate, beta_1=0.9, beta_2=0.999, nu_1=1.0, nu_2=1.0, epsilon=1e-8):
    return dict(lr=learning_rate, betas=(beta_1, beta_2), nus=(nu_1, nu_2), eps=epsilon)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = torch_qhadam(gradients, start, **torch_arguments(**hyper))
    assert_all_close(run_keras_optimizer(QHAdam(**hyper), start, gradients), expected)


@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables(decoupled):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = QHAdam(**HYPER[2], weight_decay=0.1, decoupled_weight_decay=decoupled)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = torch_qhadam(gradients, start, **torch_arguments(**HYPER[2]), weight_decay=0.1,
                            weight_decouple=decoupled, decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def authors_qhadam(gradients, initial, lr, betas=(0.9, 0.999), nus=(1.0, 1.0), weight_decay=0.0,
                   decouple_weight_decay=False, eps=1e-8):
    """The authors' `QHAdam.step` (facebookresearch/qhoptim at e81dea3, qhoptim/pyt/qhadam.py) in float64:
    `beta_adj = 1 - 1 / beta_weight`, `exp_avg = beta_adj * exp_avg + (1 - beta_adj) * d_p`."""
    (beta1, beta2), (nu1, nu2) = betas, nus
    params = [x.astype("float64") for x in initial]
    state = [dict(beta1_weight=0.0, beta2_weight=0.0, exp_avg=0.0, exp_avg_sq=0.0) for _ in params]
    for grads in gradients:
        for i, d_p in enumerate(grads):
            d_p, st = d_p.astype("float64"), state[i]
            if weight_decay != 0:
                if decouple_weight_decay:
                    params[i] = params[i] * (1 - lr * weight_decay)
                else:
                    d_p = d_p + weight_decay * params[i]
            d_p_sq = d_p * d_p
            st["beta1_weight"] = 1.0 + beta1 * st["beta1_weight"]
            st["beta2_weight"] = 1.0 + beta2 * st["beta2_weight"]
            beta1_adj = 1.0 - 1.0 / st["beta1_weight"]
            beta2_adj = 1.0 - 1.0 / st["beta2_weight"]
            st["exp_avg"] = st["exp_avg"] * beta1_adj + (1.0 - beta1_adj) * d_p
            st["exp_avg_sq"] = st["exp_avg_sq"] * beta2_adj + (1.0 - beta2_adj) * d_p_sq
            avg_grad = st["exp_avg"] * nu1 + ((1.0 - nu1) * d_p if nu1 != 1.0 else 0.0)
            avg_grad_rms = st["exp_avg_sq"] * nu2 + ((1.0 - nu2) * d_p_sq if nu2 != 1.0 else 0.0)
            avg_grad_rms = np.sqrt(avg_grad_rms) + eps
            params[i] = params[i] - lr * avg_grad / avg_grad_rms
    return params


@pytest.mark.parametrize("decoupled", [False, True])
def test_matches_the_authors_qhoptim(decoupled):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = authors_qhadam(gradients, start, 2e-2, betas=(0.8, 0.95), nus=(0.6, 0.8), weight_decay=0.1,
                              decouple_weight_decay=decoupled, eps=1e-3)
    optimizer = QHAdam(2e-2, beta_1=0.8, beta_2=0.95, nu_1=0.6, nu_2=0.8, epsilon=1e-3, weight_decay=0.1,
                       decoupled_weight_decay=decoupled)
    assert_all_close(run_keras_optimizer(optimizer, start, gradients), expected)
    default = authors_qhadam(gradients, start, 1e-2, betas=(0.995, 0.999), nus=(0.7, 1.0))
    assert_all_close(run_keras_optimizer(QHAdam(1e-2, beta_1=0.995, nu_1=0.7), start, gradients), default)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "QHAdam: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.0), ValueError, "QHAdam: argument `beta_1` must be in [0, 1). Received: beta_1=1.0"),
        (dict(beta_2=-0.5), ValueError, "QHAdam: argument `beta_2` must be in [0, 1). Received: beta_2=-0.5"),
        (dict(nu_1=1.5), ValueError, "QHAdam: argument `nu_1` must be in [0, 1]. Received: nu_1=1.5"),
        (dict(nu_2=-0.1), ValueError, "QHAdam: argument `nu_2` must be in [0, 1]. Received: nu_2=-0.1"),
        (dict(epsilon=-1e-8), ValueError, "QHAdam: argument `epsilon` must be >= 0. Received: epsilon=-1e-08"),
        (dict(weight_decay=-0.1), ValueError,
         "QHAdam: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        QHAdam(**arguments)
