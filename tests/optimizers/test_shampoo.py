import re

import keras
import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.shampoo import Shampoo

NAMES = ["bias", "kernel", "conv"]


def compute_power_svd(matrix, power):
    """pytorch-optimizer 4.1.0 `utils.matrix.compute_power_svd`, in float64."""
    u, s, vh = np.linalg.svd(matrix, full_matrices=False)
    return (u * s[None, :] ** (-1.0 / power)) @ vh


def torch_shampoo(gradients, initial, lr=1e-3, momentum=0.0, weight_decay=0.0, weight_decouple=False,
                  preconditioning_compute_steps=1, matrix_eps=1e-6, decayed=(True, True, True), computed=None,
                  max_dim=None):
    """pytorch-optimizer 4.1.0 `Shampoo.step` (`fixed_decay=False`), in float64, with its transposes and views.
    `computed`, a list, collects the steps at which the inverse roots were computed. `max_dim` (not in the
    reference) gives a longer axis the identity for its inverse root and no statistic."""
    params = [x.astype("float64") for x in initial]
    states = [{} for _ in params]
    for step, grads in enumerate(gradients, start=1):
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            state = states[i]
            if len(state) == 0:  # init_group
                if momentum > 0.0:
                    state["momentum_buffer"] = grad.copy()
                for dim_id, dim in enumerate(grad.shape):
                    state[f"pre_cond_{dim_id}"] = np.eye(dim) * matrix_eps
                    state[f"inv_pre_cond_{dim_id}"] = np.zeros((dim, dim))
            if momentum > 0.0:
                grad = grad + (state["momentum_buffer"] - grad) * momentum
            wd = weight_decay if decayed[i] else 0.0
            if wd != 0.0:
                if weight_decouple:
                    params[i] = params[i] * (1.0 - wd * lr)
                else:
                    grad = grad + wd * params[i]
            order, original_size = grad.ndim, grad.shape
            statistics_grad = grad
            for dim_id, dim in enumerate(grad.shape):
                pre_cond, inv_pre_cond = state[f"pre_cond_{dim_id}"], state[f"inv_pre_cond_{dim_id}"]
                skipped = max_dim is not None and dim > max_dim
                if skipped:
                    inv_pre_cond[...] = np.eye(dim)
                unfolded_grad = np.moveaxis(statistics_grad, dim_id, 0).reshape(dim, -1)
                pre_cond += unfolded_grad @ unfolded_grad.T
                grad = np.ascontiguousarray(np.swapaxes(grad, 0, dim_id))
                transposed_size = grad.shape
                grad = grad.reshape(dim, -1)
                grad_t = grad.T
                if step % preconditioning_compute_steps == 0 and not skipped:
                    inv_pre_cond[...] = compute_power_svd(pre_cond, 2 * order)
                    if computed is not None:
                        computed.append(step)
                if dim_id == order - 1:
                    grad = (grad_t @ inv_pre_cond).reshape(original_size)
                else:
                    grad = (inv_pre_cond @ grad).reshape(transposed_size)
            state["momentum_buffer"] = grad
            params[i] = params[i] - lr * grad
    return params


HYPER = [dict(learning_rate=1e-2), dict(learning_rate=1e-2, momentum=0.9, epsilon=1e-3),
         dict(learning_rate=2e-2, momentum=0.5, preconditioning_compute_steps=7)]


def torch_arguments(learning_rate=1e-3, momentum=0.0, preconditioning_compute_steps=1, epsilon=1e-6):
    return dict(lr=learning_rate, momentum=momentum, preconditioning_compute_steps=preconditioning_compute_steps,
                matrix_eps=epsilon)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference_through_several_root_computations(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    computed = []
    expected = torch_shampoo(gradients, start, **torch_arguments(**hyper), computed=computed)
    assert len(set(computed)) >= 8
    assert_all_close(run_keras_optimizer(Shampoo(**hyper), start, gradients), expected)


def test_axes_longer_than_max_precondition_dim_get_no_preconditioner():
    gradients, start = gradient_sequence(SHAPES, 30), initial_values(SHAPES)
    longest = max(max(shape) for shape in SHAPES)
    limit = sorted({size for shape in SHAPES for size in shape})[-2]  # the longest axes skipped, others kept
    assert limit < longest
    expected = torch_shampoo(gradients, start, lr=1e-2, momentum=0.5, max_dim=limit)
    optimizer = Shampoo(1e-2, momentum=0.5, max_precondition_dim=limit)
    assert_all_close(run_keras_optimizer(optimizer, start, gradients), expected)
    allocated = [tuple(v.shape) for v in optimizer.variables if "statistic" in v.name]
    assert allocated and max(max(shape) for shape in allocated) == limit
    unlimited = torch_shampoo(gradients, start, lr=1e-2, momentum=0.5)
    assert max(np.max(np.abs(a - b)) for a, b in zip(expected, unlimited)) > 1e-3  # the limit changed the steps


@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay_matches_numpy_reference_and_skips_excluded_variables(decoupled):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = Shampoo(1e-2, momentum=0.5, weight_decay=0.5, decoupled_weight_decay=decoupled)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = torch_shampoo(gradients, start, 1e-2, momentum=0.5, weight_decay=0.5, weight_decouple=decoupled,
                             decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "Shampoo: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(momentum=1.0), ValueError, "Shampoo: argument `momentum` must be in [0, 1). Received: momentum=1.0"),
        (dict(preconditioning_compute_steps=0), ValueError,
         "Shampoo: argument `preconditioning_compute_steps` must be >= 1. Received: preconditioning_compute_steps=0"),
        (dict(epsilon=-1.0), ValueError, "Shampoo: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(max_precondition_dim=0), ValueError,
         "Shampoo: argument `max_precondition_dim` must be >= 1. Received: max_precondition_dim=0"),
        (dict(weight_decay=-0.1), ValueError,
         "Shampoo: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        Shampoo(**arguments)


def test_an_embedding_trains_without_its_vocab_by_vocab_statistic():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(5000, 8),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
    optimizer = Shampoo(1e-2, max_precondition_dim=100)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = np.random.default_rng(0).integers(0, 5000, size=(16, 3)).astype("int32")
    before = np.asarray(model.layers[0].embeddings).copy()
    model.fit(ids, np.arange(16) % 2, epochs=1, batch_size=16, verbose=0)
    assert max(max(v.shape) for v in optimizer.variables if "statistic" in v.name) <= 100
    after = np.asarray(model.layers[0].embeddings)
    untouched = np.setdiff1d(np.arange(5000), ids)
    np.testing.assert_array_equal(after[untouched], before[untouched])
    assert not np.allclose(after[ids[0]], before[ids[0]])
