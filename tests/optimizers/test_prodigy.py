import math
import re

import keras
import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.prodigy import Prodigy

NAMES = ["bias", "kernel", "conv_kernel"]


def prodigyopt(gradients, initial, learning_rate=1.0, beta_1=0.9, beta_2=0.999, beta_3=None, epsilon=1e-8,
               d0=1e-6, d_coef=1.0, growth_rate=math.inf, bias_correction=False, safeguard_warmup=False,
               weight_decay=0.0, decayed=(True, True, True), rates=None):
    """prodigyopt 1.1.2 `Prodigy.step` (konstmish/prodigy at 3efb213e), one parameter group, `decouple=True`,
    `slice_p=1`, in float64; `rates` optionally gives the learning rate of each step.

    The weights are rounded to float32 after each step, as the Keras variables store them: `d` reads `p0 - p`,
    differences of ~1e-3 between weights up to 2.7, and float64 weights would move `d` by ~1e-3 relative to it.
    """
    beta1, beta2 = beta_1, beta_2
    beta3 = math.sqrt(beta2) if beta_3 is None else beta_3
    eps = epsilon
    params = [w.astype("float64") for w in initial]
    state = [{} for _ in params]
    d, d_max, d_numerator, k = d0, d0, 0.0, 0
    for step_index, grads in enumerate(gradients):
        lr = rates[step_index] if rates else learning_rate
        correction = ((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1)) if bias_correction else 1
        dlr = d * lr * correction
        d_numerator_next, delta_numerator, d_denom = d_numerator * beta3, 0.0, 0.0
        for i, grad in enumerate(grads):
            grad, p = grad.astype("float64"), params[i]
            if "step" not in state[i]:
                state[i] = {"step": 0, "s": np.zeros_like(p), "p0": p.copy(), "exp_avg": np.zeros_like(p),
                            "exp_avg_sq": np.zeros_like(p)}
            st = state[i]
            if lr > 0.0:
                delta_numerator += (d / d0) * dlr * np.dot(grad.ravel(), (st["p0"] - p).ravel())
                st["exp_avg"] = st["exp_avg"] * beta1 + d * (1 - beta1) * grad
                st["exp_avg_sq"] = st["exp_avg_sq"] * beta2 + d * d * (1 - beta2) * grad * grad
                st["s"] = st["s"] * beta3 + ((d / d0) * d if safeguard_warmup else (d / d0) * dlr) * grad
                d_denom += np.abs(st["s"]).sum()
        if d_denom == 0:
            continue  # `return loss`: nothing else changes, `k` included
        global_d_numerator = d_numerator_next + delta_numerator
        d_hat = d_coef * global_d_numerator / d_denom
        if d == d0:
            d = max(d, d_hat)
        d_max = max(d_max, d_hat)
        d = min(d_max, d * growth_rate)
        d_numerator = global_d_numerator
        for i in range(len(params)):
            st = state[i]
            denom = np.sqrt(st["exp_avg_sq"]) + d * eps
            if decayed[i] and weight_decay != 0:
                params[i] = params[i] - weight_decay * dlr * params[i]
            params[i] = params[i] - dlr * st["exp_avg"] / denom
            params[i] = params[i].astype("float32").astype("float64")
        k += 1
    return params


def assert_close(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "arguments",
    [{}, {"weight_decay": 0.1, "bias_correction": True},
     {"learning_rate": 0.5, "beta_1": 0.8, "beta_2": 0.99, "beta_3": 0.9, "epsilon": 1e-6, "d0": 1e-4,
      "d_coef": 0.5, "growth_rate": 1.05, "bias_correction": True, "safeguard_warmup": True, "weight_decay": 0.01}],
    ids=["defaults", "weight_decay_bias_correction", "all_options"],
)
def test_matches_numpy_reference(arguments):
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    expected = prodigyopt(gradients, start, **arguments)
    assert_close(run_keras_optimizer(Prodigy(**arguments), start, gradients), expected)


def test_steps_with_zero_learning_rate_change_nothing():
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2, 30], [0.0, 1.0, 0.5])
    rates = [float(schedule(step)) for step in range(60)]
    optimizer = Prodigy(learning_rate=schedule, bias_correction=True, safeguard_warmup=True)
    expected = prodigyopt(gradients, start, bias_correction=True, safeguard_warmup=True, rates=rates)
    assert_close(run_keras_optimizer(optimizer, start, gradients), expected)


def test_exclude_from_weight_decay_leaves_the_named_variable_undecayed():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    optimizer = Prodigy(weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["conv_kernel"])
    expected = prodigyopt(gradients, start, weight_decay=0.1, decayed=(True, True, False))
    assert_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_fit_lowers_the_loss_and_a_keras_file_resumes_identically(linear_model, regression_data, tmp_path):
    x, y = regression_data
    model = linear_model(Prodigy())
    history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]  # with the default learning rate
    model.save(tmp_path / "mid.keras")
    restored = keras.models.load_model(tmp_path / "mid.keras")
    for resumed in (model, restored):
        resumed.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(restored.optimizer._d.numpy()) == float(model.optimizer._d.numpy()) > 1e-6
    assert restored.optimizer.growth_rate == math.inf  # the default survives the file's JSON


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"learning_rate": -0.1}, "Prodigy: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        ({"beta_1": 1.5}, "Prodigy: argument `beta_1` must be in [0, 1). Received: beta_1=1.5"),
        ({"beta_2": 1.0}, "Prodigy: argument `beta_2` must be in [0, 1). Received: beta_2=1.0"),
        ({"beta_3": -0.1}, "Prodigy: argument `beta_3` must be in [0, 1). Received: beta_3=-0.1"),
        ({"epsilon": 0.0}, "Prodigy: argument `epsilon` must be > 0. Received: epsilon=0.0"),
        ({"d0": 0.0}, "Prodigy: argument `d0` must be > 0. Received: d0=0.0"),
        ({"d_coef": -1.0}, "Prodigy: argument `d_coef` must be > 0. Received: d_coef=-1.0"),
        ({"growth_rate": 0.5}, "Prodigy: argument `growth_rate` must be >= 1. Received: growth_rate=0.5"),
        ({"weight_decay": -0.1}, "Prodigy: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Prodigy(**arguments)

