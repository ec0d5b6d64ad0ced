"""Cautious against NumPy ports of pytorch-optimizer 4.1.0's cautious Lion and its `apply_cautious` on Adam and of
the authors' C-Lion, the decay convention, serialization and errors. fit, jit, MirroredStrategy, mixed precision,
clipping, decay exclusion, Embedding and `.keras` resume are in test_contract.py."""

import keras
import numpy as np
import pytest
from references import SHAPES, adam_rule, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.cautious import Cautious

NAMES = ["bias", "kernel", "conv"]


def apply_cautious(update, grad):
    """pytorch-optimizer 4.1.0 `BaseOptimizer.apply_cautious` (the authors' C-Optim mask and scale), not in place."""
    mask = (update * grad > 0).astype(grad.dtype)
    mask = mask * (mask.size / (mask.sum() + 1))
    return update * mask


def cautious_lion(gradients, initial, lr, betas=(0.9, 0.99), weight_decay=0.0, decay_masked=False,
                  decayed=(True, True, True)):
    """pytorch-optimizer 4.1.0 `Lion._step_per_param` with `cautious=True`, `weight_decouple=True`, in float64.

    `decay_masked=True` is tfopt's convention: the decay `lr * weight_decay * p` joins the update before the mask
    instead of being applied to `p` first (the one line changed)."""
    beta1, beta2 = betas
    params = [x.astype("float64") for x in initial]
    exp_avgs = [np.zeros_like(p) for p in params]
    for grads in gradients:
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            p = params[i]
            wd = weight_decay if decayed[i] else 0.0
            if not decay_masked:
                p = p * (1.0 - wd * lr)  # apply_weight_decay
            update = np.sign(exp_avgs[i] + (grad - exp_avgs[i]) * (1.0 - beta1))  # exp_avg.lerp(grad, 1 - beta1)
            exp_avgs[i] = exp_avgs[i] + (grad - exp_avgs[i]) * (1.0 - beta2)
            if decay_masked:
                update = update + wd * params[i]
            update = apply_cautious(update, grad)
            params[i] = p - lr * update
    return params


def cautious_rule(inner_step, initial, gradients):
    """`apply_cautious` on the update `w_old - w_new` of `inner_step(index, w, g) -> w` (references.py)."""
    params = [x.astype("float64") for x in initial]
    for grads in gradients:
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            update = params[i] - inner_step(i, params[i], grad)
            params[i] = params[i] - apply_cautious(update, grad)
    return params


def test_lion_matches_pytorch_optimizers_cautious_lion():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = cautious_lion(gradients, start, 1e-2)
    assert_all_close(run_keras_optimizer(Cautious(keras.optimizers.Lion(1e-2)), start, gradients), expected)
    plain = run_keras_optimizer(keras.optimizers.Lion(1e-2), start, gradients)
    assert max(np.max(np.abs(a - b)) for a, b in zip(plain, expected)) > 0.1  # the mask changed the run


def test_adam_matches_apply_cautious_on_adams_update():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = cautious_rule(adam_rule(2e-2), start, gradients)
    # The wrapper reads the inner step as the float32 difference of two weights, which rounds it by ~1e-7 (the scale
    # ~2 doubles that) at each of the 60 steps: atol 5e-6 (Lion's steps of +-lr are exact to 1e-6).
    actual = run_keras_optimizer(Cautious(keras.optimizers.Adam(2e-2)), start, gradients)
    assert_all_close(actual, expected, rtol=1e-5, atol=5e-6)


def test_weight_decay_is_masked_with_the_step_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    inner = keras.optimizers.Lion(1e-2, weight_decay=0.5)
    inner.exclude_from_weight_decay(var_names=["kernel"])
    actual = run_keras_optimizer(Cautious(inner), start, gradients, NAMES)
    ours = cautious_lion(gradients, start, 1e-2, weight_decay=0.5, decay_masked=True, decayed=(True, False, True))
    theirs = cautious_lion(gradients, start, 1e-2, weight_decay=0.5, decayed=(True, False, True))
    assert_all_close(actual, ours)
    assert np.max(np.abs(ours[2] - theirs[2])) > 1e-3  # the two conventions differ beyond the tolerance
    np.testing.assert_allclose(ours[1], theirs[1])  # and agree on the excluded variable


def authors_c_lion(gradients, initial, lr, betas, weight_decay=0.0):
    """The authors' C-Lion `update_fn` (kyleliang919/C-Optim at 2c0517c, c_lion.py) in float64: the decay first and
    unmasked, the mask `n / (sum + 1)` on the sign update."""
    beta1, beta2 = betas
    params = [x.astype("float64") for x in initial]
    exp_avgs = [np.zeros_like(p) for p in params]
    for grads in gradients:
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            params[i] = params[i] * (1 - lr * weight_decay)
            update = np.sign(exp_avgs[i] * beta1 + grad * (1 - beta1))
            mask = (update * grad > 0).astype(grad.dtype)
            mask = mask * (mask.size / (mask.sum() + 1))
            params[i] = params[i] - lr * update * mask
            exp_avgs[i] = exp_avgs[i] * beta2 + grad * (1 - beta2)
    return params


def test_lion_matches_the_authors_c_lion_without_decay_and_masks_the_decay_unlike_it():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected = authors_c_lion(gradients, start, 1e-2, (0.95, 0.98))
    actual = run_keras_optimizer(Cautious(keras.optimizers.Lion(1e-2, 0.95, 0.98)), start, gradients)
    assert_all_close(actual, expected)
    theirs = authors_c_lion(gradients, start, 1e-2, (0.95, 0.98), weight_decay=0.5)
    ours = run_keras_optimizer(Cautious(keras.optimizers.Lion(1e-2, 0.95, 0.98, weight_decay=0.5)), start, gradients)
    assert_all_close(ours, cautious_lion(gradients, start, 1e-2, (0.95, 0.98), weight_decay=0.5, decay_masked=True))
    assert min(np.max(np.abs(a - b)) for a, b in zip(ours, theirs)) > 1e-3


def test_config_round_trip_and_keras_file(tmp_path):
    optimizer = Cautious(keras.optimizers.Lion(0.25, beta_1=0.8, weight_decay=0.1), name="careful")
    config = keras.optimizers.serialize(optimizer)
    again = keras.optimizers.deserialize(config)
    assert type(again) is Cautious and keras.optimizers.serialize(again) == config
    assert again.name == "careful" and again.inner_optimizer.get_config() == optimizer.inner_optimizer.get_config()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer, "mse")
    model.optimizer.build(model.trainable_variables)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert type(restored.optimizer) is Cautious
    assert keras.optimizers.serialize(restored.optimizer) == config


def test_learning_rate_and_iterations_are_the_inner_optimizers():
    optimizer = Cautious(keras.optimizers.SGD(0.03))
    optimizer.learning_rate = 0.125
    assert float(optimizer.inner_optimizer.learning_rate) == 0.125
    assert optimizer.iterations is optimizer.inner_optimizer.iterations


def test_inner_optimizer_must_be_a_keras_optimizer():
    with pytest.raises(TypeError, match="Cautious: argument `inner_optimizer` must be a Keras 3 optimizer"):
        Cautious("adam")
