import re

import keras
import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.novograd import NovoGrad

NAMES = ["bias", "kernel", "conv_kernel"]


def tfa_novograd(gradients, initial, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 grad_averaging=False, amsgrad=False, weight_decay=0.0, decayed=(True, True, True), rates=None):
    """tensorflow-addons 0.23.0 `NovoGrad._resource_apply_dense` in float64; `rates` optionally gives each step's rate.

    Its last op is `tf.raw_ops.ResourceApplyKerasMomentum`: `accum = momentum * accum - lr * grad; var += accum`, so
    the rate enters the momentum's input. `v` starts as the first step's squared norm.
    """
    weights = [w.astype("float64") for w in initial]
    m = [np.zeros_like(w) for w in weights]
    v, vhat = [0.0] * len(weights), [0.0] * len(weights)
    for iterations, step_gradients in enumerate(gradients):
        lr_t = rates[iterations] if rates else learning_rate
        for i, grad in enumerate(step_gradients):
            grad = grad.astype("float64")
            g_2 = np.sum(np.square(grad))
            v[i] = g_2 if iterations == 0 else v[i] * beta_2 + g_2 * (1 - beta_2)
            if amsgrad:
                vhat[i] = max(vhat[i], v[i])
                grad = grad / (np.sqrt(vhat[i]) + epsilon)
            else:
                grad = grad / (np.sqrt(v[i]) + epsilon)
            if weight_decay > 0 and decayed[i]:
                grad = grad + weight_decay * weights[i]
            if grad_averaging and iterations != 0:
                grad = grad * (1 - beta_1)
            m[i] = beta_1 * m[i] - lr_t * grad  # ResourceApplyKerasMomentum
            weights[i] = weights[i] + m[i]
    return weights


def paper_novograd(gradients, initial, rates, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Algorithm 1 of Ginsburg et al. (2019), no weight decay: `m_t = beta_1 * m_(t-1) + g_t / (sqrt(v_t) + eps)`,
    `w_(t+1) = w_t - lr_t * m_t`, the first moments taken from the first gradient. The rate multiplies the momentum."""
    weights = [w.astype("float64") for w in initial]
    m, v = [np.zeros_like(w) for w in weights], [0.0] * len(weights)
    for t, step_gradients in enumerate(gradients):
        for i, g in enumerate(step_gradients):
            g = g.astype("float64")
            v[i] = np.sum(g * g) if t == 0 else beta_2 * v[i] + (1 - beta_2) * np.sum(g * g)
            m[i] = beta_1 * m[i] + g / (np.sqrt(v[i]) + epsilon)
            weights[i] = weights[i] - rates[t] * m[i]
    return weights


def pytorch_optimizer_novograd(gradients, initial, lr=0.001, betas=(0.9, 0.999), eps=1e-7):
    """pytorch-optimizer 3.9.0 `pytorch_optimizer/optimizer/novograd.py` `NovoGrad.step` in float64 (no decay).

    `init_group` sets `moments` to the first normalized gradient before the first step adds it again, and the step
    size carries Adam's bias correction `lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`.
    """
    beta1, beta2 = betas
    params = [w.astype("float64") for w in initial]
    moments, grads_ema = [None] * len(params), [None] * len(params)
    for step, step_gradients in enumerate(gradients, start=1):
        step_size = lr * np.sqrt(1 - beta2**step) / (1 - beta1**step)
        for i, grad in enumerate(step_gradients):
            grad = grad.astype("float64")
            grad_p2 = np.sum(grad**2)
            if moments[i] is None:
                moments[i], grads_ema[i] = grad / (np.sqrt(grad_p2) + eps), grad_p2
            grads_ema[i] = grads_ema[i] * beta2 + (1 - beta2) * grad_p2
            grad = grad / (np.sqrt(grads_ema[i]) + eps)
            moments[i] = moments[i] * beta1 + grad
            params[i] = params[i] - step_size * moments[i]
    return params


def assert_close(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"weight_decay": 0.1}, {"grad_averaging": True}, {"amsgrad": True},
     {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3, "grad_averaging": True,
      "amsgrad": True, "weight_decay": 0.01}],
    ids=["defaults", "weight_decay", "grad_averaging", "amsgrad", "all_options"],
)
def test_matches_numpy_reference(arguments):
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    expected = tfa_novograd(gradients, start, **arguments)
    assert_close(run_keras_optimizer(NovoGrad(**arguments), start, gradients), expected)


def _max_difference(first, second):
    return max(np.max(np.abs(a - b)) for a, b in zip(first, second, strict=True))


def test_the_rate_enters_the_momentum_as_in_tensorflow_addons():
    """With a changing rate, tensorflow-addons' `m = beta_1 * m + lr_t * g` and the paper's `w -= lr_t * m` differ
    (with a constant rate they are the same rule); pytorch-optimizer's first step and step size differ as well."""
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([10, 30], [0.05, 0.01, 0.002])
    rates = [float(schedule(step)) for step in range(len(gradients))]
    addons = tfa_novograd(gradients, start, rates=rates)
    assert _max_difference(addons, paper_novograd(gradients, start, rates)) > 1e-2
    constant = tfa_novograd(gradients, start, learning_rate=0.01)
    np.testing.assert_allclose(constant[1], paper_novograd(gradients, start, [0.01] * 50)[1], rtol=1e-12)
    assert _max_difference(constant, pytorch_optimizer_novograd(gradients, start, lr=0.01)) > 1e-2
    assert_close(run_keras_optimizer(NovoGrad(learning_rate=schedule), start, gradients), addons)


def test_exclude_from_weight_decay_leaves_the_named_variable_undecayed():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    optimizer = NovoGrad(learning_rate=0.01, weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["conv_kernel"])
    expected = tfa_novograd(gradients, start, learning_rate=0.01, weight_decay=0.1, decayed=(True, True, False))
    assert_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_second_moment_is_one_scalar_per_variable():
    optimizer = NovoGrad(amsgrad=True)
    optimizer.build([keras.Variable(np.zeros(shape, "float32")) for shape in SHAPES])
    shapes = sorted(tuple(variable.shape) for variable in optimizer.variables)
    assert shapes.count(()) == 2 + 2 * len(SHAPES)  # iteration, learning rate, v and v_max of each variable


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"learning_rate": -0.1}, "NovoGrad: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        ({"beta_1": 1.5}, "NovoGrad: argument `beta_1` must be in [0, 1). Received: beta_1=1.5"),
        ({"beta_2": -0.5}, "NovoGrad: argument `beta_2` must be in [0, 1). Received: beta_2=-0.5"),
        ({"epsilon": -1e-3}, "NovoGrad: argument `epsilon` must be >= 0. Received: epsilon=-0.001"),
        ({"weight_decay": -0.1}, "NovoGrad: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        NovoGrad(**arguments)


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(NovoGrad(learning_rate=0.1))
    history = model.fit(*regression_data, batch_size=16, epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
