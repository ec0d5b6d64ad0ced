import re

import numpy as np
import pytest
from references import (
    SHAPES,
    assert_all_close,
    gradient_sequence,
    initial_values,
    numpy_projection,
    run_keras_optimizer,
)

from tfopt.optimizers.sgdp import SGDP

NAMES = ["bias", "kernel", "conv"]


def authors_sgdp(gradients, initial, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, eps=1e-8,
                 delta=0.1, wd_ratio=0.1, decayed=(True, True, True), branches=None):
    """The authors' `SGDP.step` (clovaai/AdamP at 146287b, adamp/sgdp.py) in float64."""
    params = [x.astype("float64") for x in initial]
    bufs = [np.zeros_like(p) for p in params]
    for grads in gradients:
        for i, grad in enumerate(grads):
            grad = grad.astype("float64")
            bufs[i] = bufs[i] * momentum + (1 - dampening) * grad
            d_p = grad + momentum * bufs[i] if nesterov else bufs[i]
            ratio = 1
            if len(params[i].shape) > 1:
                d_p, ratio = numpy_projection(params[i], grad, d_p, delta, wd_ratio, eps, branches)
            if weight_decay > 0 and decayed[i]:
                params[i] = params[i] * (1 - lr * weight_decay * ratio / (1 - momentum))
            params[i] = params[i] - lr * d_p
    return params


HYPER = [dict(learning_rate=5e-2), dict(learning_rate=2e-2, momentum=0.9, delta=1.5),
         dict(learning_rate=2e-2, momentum=0.8, dampening=0.2, nesterov=True, delta=1.5, epsilon=1e-3)]


def torch_arguments(learning_rate, epsilon=1e-8, **hyper):
    return dict(lr=learning_rate, eps=epsilon, **hyper)


@pytest.mark.parametrize("hyper", HYPER)
def test_matches_numpy_reference(hyper):
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    branches = []
    expected = authors_sgdp(gradients, start, **torch_arguments(**hyper), branches=branches)
    if hyper.get("delta"):
        assert {"channel", "layer", None} <= set(branches)
    assert_all_close(run_keras_optimizer(SGDP(**hyper), start, gradients), expected)


def test_weight_decay_with_projection_ratio_matches_numpy_reference_and_skips_excluded_variables():
    gradients, start = gradient_sequence(SHAPES, 60), initial_values(SHAPES)
    optimizer = SGDP(2e-2, momentum=0.9, delta=1.5, weight_decay=0.05)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    expected = authors_sgdp(gradients, start, 2e-2, momentum=0.9, delta=1.5, weight_decay=0.05,
                            decayed=(True, False, True))
    assert_all_close(run_keras_optimizer(optimizer, start, gradients, NAMES), expected)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(learning_rate=-0.1), ValueError,
         "SGDP: argument `learning_rate` must be >= 0. Received: learning_rate=-0.1"),
        (dict(momentum=1.0), ValueError, "SGDP: argument `momentum` must be in [0, 1). Received: momentum=1.0"),
        (dict(dampening=1.5), ValueError, "SGDP: argument `dampening` must be in [0, 1]. Received: dampening=1.5"),
        (dict(epsilon=-1.0), ValueError, "SGDP: argument `epsilon` must be >= 0. Received: epsilon=-1.0"),
        (dict(delta=0.0), ValueError, "SGDP: argument `delta` must be > 0. Received: delta=0.0"),
        (dict(wd_ratio=-0.1), ValueError, "SGDP: argument `wd_ratio` must be >= 0. Received: wd_ratio=-0.1"),
        (dict(weight_decay=-0.1), ValueError,
         "SGDP: argument `weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    ],
)
def test_invalid_arguments_raise(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        SGDP(**arguments)
