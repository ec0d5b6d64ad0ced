import re

import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.radam import RAdam

NAMES = ["bias", "kernel", "conv"]


def torch_radam(gradients, initial, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                decoupled_weight_decay=False, decayed=(True, True, True)):
    """torch.optim.RAdam's `_single_tensor_radam` (PyTorch 2.x, pytorch/pytorch at 008ec6b1) in float64.

    Returns the final values and every `rho_t`. `decayed` leaves variables out of the weight decay, as
    `exclude_from_weight_decay` does (PyTorch would use a parameter group without decay).
    """
    lr, beta1, beta2, eps = learning_rate, beta_1, beta_2, epsilon
    params = [x.astype("float64") for x in initial]
    exp_avgs = [np.zeros_like(x) for x in params]
    exp_avg_sqs = [np.zeros_like(x) for x in params]
    rhos = []
    for step, grads in enumerate(gradients, start=1):
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            wd = weight_decay if decayed[i] else 0.0
            if wd != 0:
                if decoupled_weight_decay:
                    params[i] = params[i] * (1 - lr * wd)
                else:
                    grad = grad + wd * params[i]
            exp_avgs[i] = exp_avgs[i] + (grad - exp_avgs[i]) * (1 - beta1)  # lerp_
            exp_avg_sqs[i] = exp_avg_sqs[i] * beta2 + (1 - beta2) * grad * grad
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            bias_corrected_exp_avg = exp_avgs[i] / bias_correction1
            rho_inf = 2 / (1 - beta2) - 1
            rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
            if rho_t > 5.0:
                rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
                adaptive_lr = (bias_correction2**0.5) / (np.sqrt(exp_avg_sqs[i]) + eps)
                params[i] = params[i] - bias_corrected_exp_avg * lr * adaptive_lr * rect
            else:
                params[i] = params[i] - bias_corrected_exp_avg * lr
        rhos.append(rho_t)
    return params, rhos


def assert_matches(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# beta_2=0.999 crosses rho_t > 5 between steps 5 and 6; beta_2=0.95 (rho_inf = 39) between 4 and 5, then
# saturates. A larger epsilon makes its placement (on sqrt(v), before the bias correction) count.
HYPER = [dict(learning_rate=1e-2), dict(learning_rate=2e-2, beta_1=0.8, beta_2=0.95, epsilon=1e-3)]


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected, rhos = torch_radam(gradients, start, **hyper)
    assert min(rhos) < 5 < max(rhos) and min(abs(np.array(rhos) - 5)) > 1e-3  # both branches, none on the edge
    assert_matches(run_keras_optimizer(RAdam(**hyper), start, gradients), expected)


@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables(decoupled):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = RAdam(**HYPER[1], weight_decay=0.1, decoupled_weight_decay=decoupled)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected, _ = torch_radam(gradients, start, **HYPER[1], weight_decay=0.1, decoupled_weight_decay=decoupled,
                              decayed=(True, False, True))
    assert_matches(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "RAdam: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.5), ValueError, "RAdam: argument `beta_1` must be in [0, 1). Received: beta_1=1.5"),
        (dict(beta_2=1.0), ValueError, "RAdam: argument `beta_2` must be in [0, 1). Received: beta_2=1.0"),
        (dict(beta_1="0.9"), TypeError, "RAdam: argument `beta_1` must be a number. Received: beta_1='0.9'"),
        (dict(epsilon=-1e-8), ValueError, "RAdam: argument `epsilon` must be >= 0. Received: epsilon=-1e-08"),
        (dict(weight_decay=-0.1), ValueError,
         "RAdam: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        RAdam(**arguments)


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(RAdam(learning_rate=0.05))
    history = model.fit(*regression_data, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
