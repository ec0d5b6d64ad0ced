import math
import re

import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.soap import SOAP

NAMES = ["bias", "kernel", "conv"]


def torch_soap(gradients, initial, lr=3e-3, betas=(0.95, 0.95), shampoo_beta=None, weight_decay=1e-2,
               precondition_frequency=10, max_precondition_dim=10000, precondition_1d=False, correct_bias=True,
               normalize_gradient=False, eps=1e-8, decayed=(True, True, True), refreshes=None):
    """pytorch-optimizer 4.1.0 `SOAP.step` (`merge_dims=False`; with `init_pre_conditioner`,
    `update_pre_conditioner`, `project`, `get_orthogonal_matrix`, `get_orthogonal_matrix_qr`), in float64.
    `refreshes`, a list, collects the steps at which the eigenbases were refreshed by QR."""
    beta1, beta2 = betas
    shampoo_beta = beta2 if shampoo_beta is None else shampoo_beta
    params = [x.astype("float64") for x in initial]
    states = [{} for _ in params]

    def project(grad, state, forward=True):
        for mat in state["Q"]:
            if len(mat) > 0:
                grad = np.tensordot(grad, mat, axes=[[0], [0 if forward else 1]])
            else:
                grad = np.transpose(grad, [*range(1, grad.ndim), 0])
        return grad

    def get_orthogonal_matrix(mats):
        matrices = []
        for m in mats:
            if len(m) == 0:
                matrices.append([])
                continue
            _, q = np.linalg.eigh(m + 1e-30 * np.eye(m.shape[0]))
            matrices.append(np.flip(q, axis=1))
        return matrices

    def get_orthogonal_matrix_qr(state):
        exp_avg_sq = state["exp_avg_sq"]
        matrices = []
        for ind, (m, o) in enumerate(zip(state["GG"], state["Q"])):
            if len(m) == 0:
                matrices.append([])
                continue
            matrix_product = m @ o
            est_eig = (o * matrix_product).sum(axis=0)
            sort_idx = np.argsort(-est_eig, kind="stable")
            exp_avg_sq = np.take(exp_avg_sq, sort_idx, axis=ind)
            power_iter = matrix_product[:, sort_idx]
            q, _ = np.linalg.qr(power_iter)
            matrices.append(q)
        state["exp_avg_sq"] = exp_avg_sq
        return matrices

    def update_pre_conditioner(grad, state, step):
        if grad.ndim == 1:
            if precondition_1d and grad.shape[0] <= max_precondition_dim:
                state["GG"][0] = state["GG"][0] + (np.outer(grad, grad) - state["GG"][0]) * (1.0 - shampoo_beta)
        else:
            for idx, dim in enumerate(grad.shape):
                if dim <= max_precondition_dim:
                    others = [*range(idx), *range(idx + 1, grad.ndim)]
                    outer_product = np.tensordot(grad, grad, axes=[others, others])
                    state["GG"][idx] = state["GG"][idx] + (outer_product - state["GG"][idx]) * (1.0 - shampoo_beta)
        if state["Q"] is None:
            state["Q"] = get_orthogonal_matrix(state["GG"])
        if step > 0 and step % precondition_frequency == 0:
            state["Q"] = get_orthogonal_matrix_qr(state)
            if refreshes is not None:
                refreshes.append(step)

    for group_step, grads in enumerate(gradients, start=1):
        for i, grad in enumerate(grads):  # init_group
            grad = grad.astype("float64")
            state = states[i]
            if len(state) == 0:
                state["exp_avg"], state["exp_avg_sq"] = np.zeros_like(grad), np.zeros_like(grad)
                if grad.ndim == 1:
                    small = precondition_1d and grad.shape[0] <= max_precondition_dim
                    state["GG"] = [np.zeros((grad.shape[0],) * 2) if small else []]
                else:
                    state["GG"] = [np.zeros((sh, sh)) if sh <= max_precondition_dim else [] for sh in grad.shape]
                state["Q"] = None
                update_pre_conditioner(grad, state, step=0)
        if group_step == 1:
            continue
        step = group_step - 1
        step_size = lr
        if correct_bias:
            step_size *= math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            state = states[i]
            grad_projected = project(grad, state)
            state["exp_avg"] = state["exp_avg"] + (grad - state["exp_avg"]) * (1.0 - beta1)
            state["exp_avg_sq"] = state["exp_avg_sq"] + (grad_projected**2 - state["exp_avg_sq"]) * (1.0 - beta2)
            de_nom = np.sqrt(state["exp_avg_sq"]) + eps
            exp_avg_projected = project(state["exp_avg"], state)
            norm_grad = project(exp_avg_projected / de_nom, state, forward=False)
            if normalize_gradient:
                norm_grad = norm_grad / (np.sqrt(np.mean(norm_grad**2)) + eps)
            params[i] = params[i] - step_size * norm_grad
            params[i] = params[i] * (1.0 - lr * (weight_decay if decayed[i] else 0.0))
            update_pre_conditioner(grad, state, step=step)
    return params


HYPER = [dict(learning_rate=1e-2, weight_decay=0.0),
         dict(learning_rate=1e-2, beta_1=0.9, beta_2=0.99, shampoo_beta=0.8, epsilon=1e-3, precondition_frequency=4,
              weight_decay=0.0),
         dict(learning_rate=1e-2, max_precondition_dim=4, correct_bias=False, normalize_gradient=True,
              precondition_frequency=7, weight_decay=0.0),
         dict(learning_rate=1e-2, beta_1=0.5, precondition_frequency=1, weight_decay=0.0)]  # m carried every step


def torch_arguments(learning_rate=3e-3, beta_1=0.95, beta_2=0.95, epsilon=1e-8, **hyper):
    return dict(lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon, **hyper)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference_through_several_eigenbasis_refreshes(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    refreshes = []
    expected = torch_soap(gradients, start, **torch_arguments(**hyper), refreshes=refreshes)
    assert len(set(refreshes)) >= 5
    assert_all_close(run_keras_optimizer(SOAP(**hyper), start, gradients), expected)


def test_precondition_1d_matches_numpy_reference():
    """A vector's first statistic `g g^T` has rank 1: with 3 or more elements its eigenbasis is not unique (any basis
    of the null space will do, in the reference code too), so this vector has 2, whose null space is a line."""
    shapes = [(2,), (4, 5)]
    gradients, start = gradient_sequence(shapes, 60), initial_values(shapes)
    expected = torch_soap(gradients, start, 1e-2, weight_decay=0.0, precondition_1d=True, precondition_frequency=5)
    actual = run_keras_optimizer(SOAP(1e-2, weight_decay=0.0, precondition_1d=True, precondition_frequency=5), start,
                                 gradients)
    assert_all_close(actual, expected)
    plain = torch_soap(gradients, start, 1e-2, weight_decay=0.0, precondition_frequency=5)
    assert np.max(np.abs(plain[0] - expected[0])) > 1e-3


def test_default_weight_decay_after_the_step_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = SOAP(1e-2, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = torch_soap(gradients, start, 1e-2, weight_decay=0.5, decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


def test_first_step_only_starts_the_statistics():
    gradients, start = gradient_sequence(SHAPES, 1), initial_values(SHAPES)
    assert_all_close(run_keras_optimizer(SOAP(), start, gradients), start, 0, 0)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "SOAP: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(beta_1=1.0), ValueError, "SOAP: argument `beta_1` must be in [0, 1). Received: beta_1=1.0"),
        (dict(beta_2=1.5), ValueError, "SOAP: argument `beta_2` must be in [0, 1). Received: beta_2=1.5"),
        (dict(shampoo_beta=-0.5), ValueError,
         "SOAP: argument `shampoo_beta` must be in [0, 1). Received: shampoo_beta=-0.5"),
        (dict(epsilon=-1.0), ValueError, "SOAP: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(precondition_frequency=0), ValueError,
         "SOAP: argument `precondition_frequency` must be >= 1. Received: precondition_frequency=0"),
        (dict(max_precondition_dim=0), ValueError,
         "SOAP: argument `max_precondition_dim` must be >= 1. Received: max_precondition_dim=0"),
        (dict(weight_decay=-0.1), ValueError,
         "SOAP: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        SOAP(**arguments)
