import re

import keras
import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.lars import LARS

NAMES = ["bias", "kernel", "conv_kernel"]


def paper_lars(gradients, initial, learning_rate=0.01, momentum=0.9, eta=0.001, epsilon=0.0, nesterov=False,
               exclude_rank_1=True, weight_decay=0.0, decayed=(True, True, True), adapted=(True, True, True)):
    """Algorithm 1 of You, Gitman & Ginsburg (2017, arXiv:1708.03888v3) in float64, at a constant global rate:

    local_lr = eta * ||w|| / (||g|| + beta * ||w||);  v = m * v + gamma * local_lr * (g + beta * w);  w = w - v

    with `beta` the weight decay. Added, as tfopt offers them: `epsilon` in the local rate's denominator, a local
    rate of 1 where a norm is 0, exclusions, and Nesterov momentum in the form of TF Model Garden's LARS
    (`w -= m * v + gamma * local_lr * (g + beta * w)`).
    """
    weights = [w.astype("float64") for w in initial]
    velocities = [np.zeros_like(w) for w in weights]
    for step_gradients in gradients:
        for layer, g in enumerate(step_gradients):
            w, g = weights[layer], g.astype("float64")
            plain = exclude_rank_1 and w.ndim <= 1
            beta = weight_decay if decayed[layer] and not plain else 0.0
            w_norm, g_norm = np.sqrt(np.sum(w * w)), np.sqrt(np.sum(g * g))
            local_lr = 1.0
            if adapted[layer] and not plain and w_norm > 0 and g_norm > 0:
                local_lr = eta * w_norm / (g_norm + beta * w_norm + epsilon)
            step = learning_rate * local_lr * (g + beta * w)
            velocities[layer] = momentum * velocities[layer] + step
            weights[layer] = w - (momentum * velocities[layer] + step if nesterov else velocities[layer])
    return weights


def model_garden_lars(gradients, initial, learning_rate=0.01, momentum=0.9, weight_decay_rate=0.0, eeta=0.001):
    """TF Model Garden `official/modeling/optimization/lars.py` (tensorflow/models at 0ca414d5), `classic_momentum`,
    every variable decayed and adapted: the trust ratio divides by the norm of the decayed gradient, `||g + wd * w||`.
    """
    params = [w.astype("float64") for w in initial]
    vs = [np.zeros_like(w) for w in params]
    for step_gradients in gradients:
        for i, grad in enumerate(step_gradients):
            param = params[i]
            grad = grad.astype("float64") + weight_decay_rate * param
            w_norm, g_norm = np.linalg.norm(param), np.linalg.norm(grad)
            trust_ratio = eeta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
            scaled_lr = learning_rate * trust_ratio
            vs[i] = momentum * vs[i] + scaled_lr * grad
            params[i] = param - vs[i]
    return params


def pytorch_optimizer_lars(gradients, initial, lr=0.01, weight_decay=0.0, momentum=0.9, trust_coefficient=0.001):
    """pytorch-optimizer 3.9.0 `pytorch_optimizer/optimizer/lars.py` `LARS._step_per_param` (no dampening) in
    float64: the trust ratio divides by the norm of the raw gradient, `||g||`, and multiplies `g + wd * w`; the
    learning rate multiplies the momentum buffer. Variables of rank 1 are neither decayed nor adapted."""
    params = [w.astype("float64") for w in initial]
    buffers = [np.zeros_like(w) for w in params]
    for step_gradients in gradients:
        for i, grad in enumerate(step_gradients):
            p, grad = params[i], grad.astype("float64")
            if p.ndim > 1:
                param_norm, update_norm = np.linalg.norm(p), np.linalg.norm(grad)
                trust_ratio = trust_coefficient * param_norm / update_norm if param_norm > 0 and update_norm > 0 else 1
                grad = (grad + weight_decay * p) * trust_ratio
            buffers[i] = buffers[i] * momentum + grad
            params[i] = p - lr * buffers[i]
    return params


def assert_close(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"weight_decay": 0.5}, {"nesterov": True, "weight_decay": 0.5}, {"exclude_rank_1": False, "weight_decay": 0.5},
     {"learning_rate": 0.5, "momentum": 0.0, "eta": 0.01, "epsilon": 0.1, "weight_decay": 0.1}],
    ids=["defaults", "weight_decay", "nesterov", "rank_1_adapted", "other_values"],
)
def test_matches_numpy_reference(arguments):
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    assert_close(run_keras_optimizer(LARS(**arguments), start, gradients), paper_lars(gradients, start, **arguments))


def test_trust_ratio_is_the_papers():
    """The three trust ratios, `||g|| + wd * ||w||` (paper), `||g + wd * w||` (Model Garden) and `||g||`
    (pytorch-optimizer), give different weights on the kernels; LARS matches the paper's."""
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    kernels = slice(1, None)
    paper = paper_lars(gradients, start, learning_rate=0.5, weight_decay=0.5, exclude_rank_1=False)
    garden = model_garden_lars(gradients, start, learning_rate=0.5, weight_decay_rate=0.5)
    pytorch = pytorch_optimizer_lars(gradients, start, lr=0.5, weight_decay=0.5)
    for other in (garden, pytorch):
        assert max(np.max(np.abs(a - b)) for a, b in zip(paper[kernels], other[kernels])) > 1e-3
    optimizer = LARS(learning_rate=0.5, weight_decay=0.5, exclude_rank_1=False)
    assert_close(run_keras_optimizer(optimizer, start, gradients), paper)


def test_rank_1_variables_take_plain_momentum_steps():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    bias = run_keras_optimizer(LARS(learning_rate=0.1, weight_decay=0.5), start, gradients)[0]
    velocity, expected = np.zeros(3), start[0].astype("float64")
    for step_gradients in gradients:
        velocity = 0.9 * velocity + 0.1 * step_gradients[0]
        expected = expected - velocity
    np.testing.assert_allclose(bias, expected, rtol=1e-5, atol=1e-6)


def test_exclude_from_weight_decay_leaves_the_named_variable_undecayed():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    optimizer = LARS(weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["conv_kernel"])
    expected = paper_lars(gradients, start, weight_decay=0.5, decayed=(True, True, False))
    assert_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_exclude_from_layer_adaptation():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    optimizer = LARS(weight_decay=0.5)
    optimizer.exclude_from_layer_adaptation(var_names=["^kernel"])
    expected = paper_lars(gradients, start, weight_decay=0.5, adapted=(True, False, True))
    assert_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"learning_rate": -0.1}, "LARS: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        ({"momentum": 1.0}, "LARS: argument `momentum` must be in [0, 1). Received: momentum=1.0"),
        ({"eta": 0.0}, "LARS: argument `eta` must be > 0. Received: eta=0.0"),
        ({"weight_decay": -0.1}, "LARS: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LARS(**arguments)


def test_exclude_from_layer_adaptation_after_build_raises():
    optimizer = LARS()
    optimizer.build([keras.Variable(np.zeros((2, 2), "float32"))])
    message = "LARS: `exclude_from_layer_adaptation()` must be called before the optimizer is built."
    with pytest.raises(ValueError, match=re.escape(message)):
        optimizer.exclude_from_layer_adaptation(var_names=["kernel"])


def test_fit_lowers_the_loss(linear_model, regression_data):
    model = linear_model(LARS(learning_rate=0.1, eta=0.1))
    history = model.fit(*regression_data, batch_size=16, epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
