import re

import keras
import numpy as np
import pytest
from references import SHAPES, assert_all_close, gradient_sequence, initial_values, run_keras_optimizer

from tfopt.optimizers.schedule_free_sgd import ScheduleFreeSGD

NAMES = ["bias", "kernel", "conv"]


def torch_schedule_free_sgd(gradients, initial, lr=1.0, momentum=0.9, weight_decay=0.0, r=0.0, weight_lr_power=2.0,
                            warmup_steps=0, decayed=(True, True, True)):
    """pytorch-optimizer 4.1.0 `ScheduleFreeSGD.step`, its per-parameter branch, in float64; returns the parameters
    in train mode (y) and after `eval()` (x)."""
    params = [x.astype("float64") for x in initial]
    zs = [p.copy() for p in params]
    weight_sum, lr_max, base_lr = 0.0, -1.0, lr
    for step, grads in enumerate(gradients, start=1):
        schedule = step / warmup_steps if step < warmup_steps else 1.0
        lr = base_lr * schedule
        lr_max = max(lr, lr_max)
        weight = (step**r) * (lr_max**weight_lr_power)
        weight_sum = weight_sum + weight
        checkpoint = weight / weight_sum if weight_sum != 0.0 else 0.0
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            if decayed[i] and weight_decay > 0.0:
                grad = grad + weight_decay * params[i]  # apply_weight_decay(weight_decouple=False)
            params[i] = params[i] + (zs[i] - params[i]) * checkpoint
            params[i] = params[i] + grad * (lr * (momentum * (1.0 - checkpoint) - 1))
            zs[i] = zs[i] - lr * grad
    evaluated = [p + (z - p) * (1.0 - 1.0 / momentum) for p, z in zip(params, zs)]  # eval(): lerp_(z, 1 - 1/b)
    return params, evaluated


HYPER = [dict(learning_rate=0.05), dict(learning_rate=0.1, momentum=0.7, r=1.0, weight_lr_power=1.0),
         dict(learning_rate=0.05, warmup_steps=10)]


def torch_arguments(learning_rate, momentum=0.9, r=0.0, weight_lr_power=2.0, warmup_steps=0):
    return dict(lr=learning_rate, momentum=momentum, r=r, weight_lr_power=weight_lr_power, warmup_steps=warmup_steps)


def run_and_finalize(optimizer, start, gradients, names=None):
    trained = run_keras_optimizer(optimizer, start, gradients, names)
    variables = list(optimizer._trainable_variables)
    optimizer.finalize_variable_values(variables)
    return trained, [np.asarray(v.numpy(), "float64") for v in variables]


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference_in_train_and_eval_mode(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    expected_y, expected_x = torch_schedule_free_sgd(gradients, start, **torch_arguments(**hyper))
    y, x = run_and_finalize(ScheduleFreeSGD(**hyper), start, gradients)
    assert_all_close(y, expected_y)
    assert_all_close(x, expected_x)
    assert max(np.max(np.abs(a - b)) for a, b in zip(expected_x, expected_y)) > 1e-2


def test_weight_decay_at_y_matches_numpy_reference_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = ScheduleFreeSGD(0.05, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected_y, expected_x = torch_schedule_free_sgd(gradients, start, 0.05, weight_decay=0.5,
                                                     decayed=(True, False, True))
    y, x = run_and_finalize(optimizer, start, gradients, NAMES)
    assert_all_close(y, expected_y)
    assert_all_close(x, expected_x)


def test_training_after_finalize_continues_from_y():
    gradients, start = gradient_sequence(SHAPES, 40), initial_values(SHAPES)
    optimizer = ScheduleFreeSGD(0.05)
    run_and_finalize(optimizer, start, gradients[:20])
    variables = list(optimizer._trainable_variables)
    optimizer.finalize_variable_values(variables)  # a second call changes nothing
    for step in gradients[20:]:
        optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in step], variables))
    expected_y, _ = torch_schedule_free_sgd(gradients, start, 0.05)
    assert_all_close([np.asarray(v.numpy(), "float64") for v in variables], expected_y)


def test_fit_leaves_the_averaged_weights_and_the_next_fit_goes_on(linear_model, regression_data):
    model = linear_model(ScheduleFreeSGD(0.05))
    model.fit(*regression_data, epochs=2, batch_size=16, verbose=0)
    assert np.all(model.optimizer._holds_x.numpy() == 1.0)
    first = model.evaluate(*regression_data, verbose=0)
    model.fit(*regression_data, epochs=3, batch_size=16, verbose=0)
    assert model.evaluate(*regression_data, verbose=0) < first


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "ScheduleFreeSGD: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(momentum=1.0), ValueError,
         "ScheduleFreeSGD: argument `momentum` must be in (0, 1). Received: momentum=1.0"),
        (dict(momentum=0.0), ValueError,
         "ScheduleFreeSGD: argument `momentum` must be in (0, 1). Received: momentum=0.0"),
        (dict(r=-1.0), ValueError, "ScheduleFreeSGD: argument `r` must be >= 0. Received: r=-1.0"),
        (dict(weight_lr_power=-1.0), ValueError,
         "ScheduleFreeSGD: argument `weight_lr_power` must be >= 0. Received: weight_lr_power=-1.0"),
        (dict(warmup_steps=-1), ValueError,
         "ScheduleFreeSGD: argument `warmup_steps` must be >= 0. Received: warmup_steps=-1"),
        (dict(weight_decay=-0.1), ValueError,
         "ScheduleFreeSGD: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        ScheduleFreeSGD(**arguments)
