import re

import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.yogi import Yogi

NAMES = ["bias", "kernel", "conv_kernel"]


def tfa_yogi(gradients, initial, learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-3,
             initial_accumulator_value=1e-6, weight_decay=0.0, decayed=(True, True, True)):
    """tensorflow-addons 0.23.0 `Yogi._resource_apply_dense` (sign activation, no l1/l2) in float64, after Keras's
    decoupled weight decay `w -= lr * wd * w`.

    The bias correction scales the step size, so `epsilon` sits inside it: `lr * sqrt(1 - beta_2**t) /
    (1 - beta_1**t) * m / (sqrt(v) + epsilon)`; `m` starts at 0, `v` at `initial_accumulator_value`.
    """
    weights = [w.astype("float64") for w in initial]
    m = [np.zeros_like(w) for w in weights]
    v = [np.full_like(w, initial_accumulator_value) for w in weights]
    for local_step, step_gradients in enumerate(gradients, start=1):
        lr = learning_rate * np.sqrt(1 - beta_2**local_step) / (1 - beta_1**local_step)
        for i, grad in enumerate(step_gradients):
            grad = grad.astype("float64")
            if decayed[i]:
                weights[i] = weights[i] - learning_rate * weight_decay * weights[i]
            m[i] = m[i] * beta_1 + grad * (1 - beta_1)
            grad2 = grad * grad
            v[i] = v[i] + (1 - beta_2) * np.sign(grad2 - v[i]) * grad2
            per_coord_lr = lr / (np.sqrt(v[i]) + epsilon)
            weights[i] = weights[i] - per_coord_lr * m[i]
    return weights


def pytorch_optimizer_yogi(gradients, initial, lr=0.01, betas=(0.9, 0.999), initial_accumulator=1e-6, eps=1e-3):
    """pytorch-optimizer 3.9.0 `pytorch_optimizer/optimizer/yogi.py` `Yogi.step` in float64 (no weight decay).

    Differs from tensorflow-addons twice: `epsilon` is added after the bias correction of `sqrt(v)`
    (`lr / (1 - beta_1**t) * m / (sqrt(v) / sqrt(1 - beta_2**t) + eps)`), and `m` starts at `initial_accumulator`.
    """
    beta1, beta2 = betas
    params = [w.astype("float64") for w in initial]
    exp_avg = [np.full_like(p, initial_accumulator) for p in params]
    exp_avg_sq = [np.full_like(p, initial_accumulator) for p in params]
    for step, step_gradients in enumerate(gradients, start=1):
        bias_correction1 = 1 - beta1**step
        bias_correction2_sq = np.sqrt(1 - beta2**step)
        step_size = lr / bias_correction1
        for i, grad in enumerate(step_gradients):
            grad = grad.astype("float64")
            grad_p2 = grad * grad
            exp_avg[i] = exp_avg[i] * beta1 + grad * (1 - beta1)
            exp_avg_sq[i] = exp_avg_sq[i] - (1 - beta2) * np.sign(exp_avg_sq[i] - grad_p2) * grad_p2
            de_nom = np.sqrt(exp_avg_sq[i]) / bias_correction2_sq + eps
            params[i] = params[i] - step_size * exp_avg[i] / de_nom
    return params


def assert_close(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"weight_decay": 0.05}, {"learning_rate": 0.05, "beta_1": 0.0, "beta_2": 0.99, "epsilon": 1e-6,
                                  "initial_accumulator_value": 0.1}],
    ids=["defaults", "weight_decay", "other_values"],
)
def test_matches_numpy_reference(arguments):
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    assert_close(run_keras_optimizer(Yogi(**arguments), start, gradients), tfa_yogi(gradients, start, **arguments))


def test_follows_tensorflow_addons_not_pytorch_optimizer():
    """The two conventions for epsilon differ by more than the tolerance; Yogi matches tensorflow-addons'."""
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    addons, pytorch = tfa_yogi(gradients, start), pytorch_optimizer_yogi(gradients, start)
    assert max(np.max(np.abs(a - b)) for a, b in zip(addons, pytorch)) > 1e-3
    assert_close(run_keras_optimizer(Yogi(), start, gradients), addons)


def test_exclude_from_weight_decay_leaves_the_named_variable_undecayed():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    optimizer = Yogi(weight_decay=0.05)
    optimizer.exclude_from_weight_decay(var_names=["conv_kernel"])
    expected = tfa_yogi(gradients, start, weight_decay=0.05, decayed=(True, True, False))
    assert_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"learning_rate": -0.1}, "Yogi: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        ({"beta_1": 1.5}, "Yogi: argument `beta_1` must be in [0, 1). Received: beta_1=1.5"),
        ({"beta_2": 1.0}, "Yogi: argument `beta_2` must be in [0, 1). Received: beta_2=1.0"),
        ({"epsilon": -1e-3}, "Yogi: argument `epsilon` must be >= 0. Received: epsilon=-0.001"),
        ({"initial_accumulator_value": 0.0},
         "Yogi: argument `initial_accumulator_value` must be > 0. Received: initial_accumulator_value=0.0"),
        ({"weight_decay": -0.1}, "Yogi: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Yogi(**arguments)


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(Yogi(learning_rate=0.1))
    history = model.fit(*regression_data, batch_size=16, epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
