import math
import re

import keras
import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.prodigy import Prodigy

NAMES = ["bias", "kernel", "conv_kernel"]


def numpy_prodigy(gradients, initial, learning_rate=1.0, beta_1=0.9, beta_2=0.999, beta_3=None, epsilon=1e-8,
                  d0=1e-6, d_coef=1.0, growth_rate=math.inf, bias_correction=False, safeguard_warmup=False,
                  weight_decay=0.0, decayed=(True, True, True), rates=None):
    """prodigyopt 1.0's `Prodigy.step` in float64; `rates` optionally gives the learning rate of each step.

    The weights are rounded to float32 after each step, as the Keras variables store them: `d` reads `w0 - w`,
    differences of ~1e-3 between weights up to 2.7, and float64 weights would move `d` by ~1e-3 relative to it.
    """
    beta_3 = math.sqrt(beta_2) if beta_3 is None else beta_3
    weights = [w.astype("float64") for w in initial]
    w0 = [w.copy() for w in weights]
    ms, vs, ss = ([np.zeros_like(w) for w in weights] for _ in range(3))
    d, d_max, numerator, k = d0, d0, 0.0, 0
    for step, step_gradients in enumerate(gradients):
        lr = rates[step] if rates else learning_rate
        correction = math.sqrt(1 - beta_2 ** (k + 1)) / (1 - beta_1 ** (k + 1)) if bias_correction else 1.0
        dlr = d * lr * correction
        new_numerator, denominator = beta_3 * numerator, 0.0
        for i, g in enumerate(step_gradients):
            if lr > 0:
                g = g.astype("float64")
                new_numerator += (d / d0) * dlr * np.dot(g.ravel(), (w0[i] - weights[i]).ravel())
                ms[i] = beta_1 * ms[i] + d * (1 - beta_1) * g
                vs[i] = beta_2 * vs[i] + d * d * (1 - beta_2) * g * g
                ss[i] = beta_3 * ss[i] + (d / d0) * (d if safeguard_warmup else dlr) * g
                denominator += np.abs(ss[i]).sum()
        if denominator == 0:
            continue
        d_hat = d_coef * new_numerator / denominator
        if d == d0:
            d = max(d, d_hat)
        d_max = max(d_max, d_hat)
        new_d = min(d_max, d * growth_rate)
        for i in range(len(weights)):
            if decayed[i]:
                weights[i] = weights[i] - weight_decay * dlr * weights[i]
            weights[i] = weights[i] - dlr * ms[i] / (np.sqrt(vs[i]) + new_d * epsilon)
            weights[i] = weights[i].astype("float32").astype("float64")
        d, numerator, k = new_d, new_numerator, k + 1
    return weights


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
    expected = numpy_prodigy(gradients, start, **arguments)
    assert_close(run_keras_optimizer(Prodigy(**arguments), start, gradients), expected)


def test_steps_with_zero_learning_rate_change_nothing():
    gradients, start = gradient_sequence(SHAPES, 50), initial_values(SHAPES)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2, 30], [0.0, 1.0, 0.5])
    rates = [float(schedule(step)) for step in range(60)]
    optimizer = Prodigy(learning_rate=schedule, bias_correction=True, safeguard_warmup=True)
    expected = numpy_prodigy(gradients, start, bias_correction=True, safeguard_warmup=True, rates=rates)
    assert_close(run_keras_optimizer(optimizer, start, gradients), expected)


def test_exclude_from_weight_decay_leaves_the_named_variable_undecayed():
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    optimizer = Prodigy(weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["conv_kernel"])
    expected = numpy_prodigy(gradients, start, weight_decay=0.1, decayed=(True, True, False))
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

