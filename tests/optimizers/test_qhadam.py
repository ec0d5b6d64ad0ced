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
