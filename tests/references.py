"""Independent NumPy references shared by several test modules (importable as `references`)."""

import math

import numpy as np


def torch_one_cycle(step, total, max_lr, pct_start=0.3, div=25.0, final_div=1e4, base_m=0.85, max_m=0.95):
    """PyTorch OneCycleLR (two phases, cos) after `step` scheduler steps: (lr, momentum)."""
    initial, minimum = max_lr / div, max_lr / div / final_div
    phases = [(pct_start * total - 1, initial, max_lr, max_m, base_m), (total - 1, max_lr, minimum, base_m, max_m)]
    start = 0.0
    for end, lr_a, lr_b, m_a, m_b in phases:
        if step <= end or end == total - 1:
            pct = (step - start) / (end - start)
            cos = lambda a, b: b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)  # noqa: E731
            return cos(lr_a, lr_b), cos(m_a, m_b)
        start = end


def batches(data):
    """The 4 unshuffled batches of 16 of a 64-sample problem, for 3 epochs."""
    x, y = (np.asarray(a, "float64") for a in data)
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)] * 3


def mse_gradient(w, x, y):
    return 2.0 / len(x) * x.T @ (x @ w - y)


def numpy_sgd_momentum(data, schedule):
    w, velocity = np.ones((4, 1)), np.zeros((4, 1))
    for step, (x, y) in enumerate(batches(data)):
        lr, momentum = schedule(step)
        velocity = momentum * velocity - lr * mse_gradient(w, x, y)
        w = w + velocity
    return w


def numpy_adam(data, schedule, beta_2=0.999, epsilon=1e-7):
    w, m, v = np.ones((4, 1)), np.zeros((4, 1)), np.zeros((4, 1))
    for step, (x, y) in enumerate(batches(data)):
        lr, beta_1 = schedule(step)
        g = mse_gradient(w, x, y)
        t = step + 1
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        w = w - lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (np.sqrt(v) + epsilon)
    return w


def gradient_sequence(shapes, steps, seed=0):
    """A fixed sequence of float32 gradients: `steps` lists, one array per shape."""
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=shape).astype("float32") for shape in shapes] for _ in range(steps)]


def initial_values(shapes, seed=1):
    """Fixed float32 starting values, one array per shape."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype("float32") for shape in shapes]


def run_keras_optimizer(optimizer, initial, gradients, names=None):
    """Applies `gradients` (from `gradient_sequence`) step by step with a Keras 3 optimizer, eagerly.

    Returns the final values as float64 arrays. `names` gives the variables' names (for
    `exclude_from_weight_decay(var_names=...)` tests).
    """
    import keras  # noqa: PLC0415 - this module is also imported by tf_keras test processes

    names = names or [f"variable_{index}" for index in range(len(initial))]
    variables = [keras.Variable(value, name=name) for value, name in zip(initial, names)]
    optimizer.build(variables)
    for step_gradients in gradients:
        optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in step_gradients], variables))
    return [np.asarray(variable.numpy(), "float64") for variable in variables]


def run_compiled_optimizer(optimizer, initial, gradients, dtype="float32"):
    """`run_keras_optimizer` with the step in a `tf.function` (the graph `fit` runs), for long trajectories, on
    variables and gradients of `dtype`."""
    import keras  # noqa: PLC0415 - this module is also imported by tf_keras test processes
    import tensorflow as tf  # noqa: PLC0415

    variables = [keras.Variable(value.astype(dtype)) for value in initial]
    optimizer.build(variables)
    stacked = [tf.constant(np.stack(per_variable), dtype) for per_variable in zip(*gradients)]

    @tf.function
    def run():
        for step in tf.range(len(gradients)):
            optimizer.apply([g[step] for g in stacked], variables)

    run()
    return [np.asarray(variable.numpy(), "float64") for variable in variables]


SHAPES = [(3,), (4, 5), (2, 3, 3, 4)]  # a bias, a Dense kernel and a Conv kernel


def sgd_momentum_rule(learning_rate, momentum):
    """SGD with momentum in the form Keras documents for `keras.optimizers.SGD` (`velocity = momentum * velocity -
    learning_rate * g; w = w + velocity`), as `step(index, w, g) -> w`, one variable (by index) at a time."""
    velocities = {}

    def step(index, w, g):
        velocities[index] = momentum * velocities.get(index, 0.0) - learning_rate * g
        return w + velocities[index]

    return step


def adam_rule(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Adam (Kingma & Ba, 2015, Algorithm 1, with the step size `alpha_t = alpha * sqrt(1 - beta_2**t) /
    (1 - beta_1**t)` and `epsilon` of the paper's Section 2, the form Keras uses) as `step(index, w, g) -> w`."""
    moments = {}

    def step(index, w, g):
        m, v, t = moments.get(index, (0.0, 0.0, 0))
        t += 1
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        moments[index] = m, v, t
        return w - learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (np.sqrt(v) + epsilon)

    return step


def lookahead_reference(inner_step, initial, gradients, sync_period, slow_step_size):
    """Algorithm 1 of Zhang, Lucas, Hinton & Ba (2019, "Lookahead Optimizer: k steps forward, 1 step back") in float64.

    Outer loop `t`: the fast weights start from the slow ones, take `k = sync_period` inner steps (the inner
    optimizer keeps its state across outer steps, as in the paper's experiments), then `phi = phi + alpha * (theta_k -
    phi)` with `alpha = slow_step_size`. A last incomplete outer loop leaves the fast weights where they are.
    """
    phi = [np.asarray(w, "float64") for w in initial]
    theta = [w.copy() for w in phi]
    for first in range(0, len(gradients), sync_period):
        theta = [w.copy() for w in phi]
        for step_gradients in gradients[first:first + sync_period]:
            theta = [inner_step(i, w, np.asarray(g, "float64")) for i, (w, g) in enumerate(zip(theta, step_gradients))]
        if first + sync_period <= len(gradients):
            phi = [p + slow_step_size * (w - p) for p, w in zip(phi, theta)]
            theta = [p.copy() for p in phi]
    return theta


def assert_all_close(actual, expected, rtol=1e-5, atol=1e-6):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def numpy_centralize(gradient):
    """The GC operator of Yong et al. (2020), `g_i - mean(g_i)` for the weights `g_i` of each output unit `i`, as
    pytorch-optimizer 3.9.0 `centralize_gradient` computes it on PyTorch's (out, in, ...) layout: Keras puts the
    output axis last, so it is moved first, centred over the other axes, and moved back. Rank 1 is left as it is."""
    gradient = np.asarray(gradient, "float64")
    size = gradient.ndim
    if size > 1:
        grad = np.moveaxis(gradient, -1, 0)
        grad = grad - grad.mean(axis=tuple(range(1, size)), keepdims=True)
        gradient = np.moveaxis(grad, 0, -1)
    return gradient


def numpy_symmetric(kernel, axis, bits=8):
    """Round to the levels -L..L of a symmetric range [-a, a], a = max |kernel| per channel, L = 2**(bits-1) - 1."""
    levels = 2 ** (bits - 1) - 1
    reduce = tuple(a for a in range(kernel.ndim) if axis is None or a != axis % kernel.ndim)
    step = np.max(np.abs(kernel), axis=reduce, keepdims=True) / levels
    return np.round(kernel / step) * step


def numpy_asymmetric(x, low, high, bits=8):
    """TensorFlow's fake quantization: the range nudged so that 0 is a level, then rounded to 2**bits levels."""
    levels = 2**bits - 1
    scale = (high - low) / levels
    zero_point = np.round(-low / scale)
    low, high = -zero_point * scale, (levels - zero_point) * scale
    return np.round((np.clip(x, low, high) - low) / scale) * scale + low


def cosine_similarity(x, y, eps):
    """torch.nn.functional.cosine_similarity(x, y, dim=1, eps) (PyTorch 2.x: each norm clamped to eps)."""
    norms = np.maximum(np.linalg.norm(x, axis=1), eps) * np.maximum(np.linalg.norm(y, axis=1), eps)
    return np.sum(x * y, axis=1) / norms


def numpy_projection(p, grad, perturb, delta, wd_ratio, eps, branches=None):
    """The authors' `_projection` (clovaai/AdamP at 146287b, adamp.py and sgdp.py alike) on PyTorch's layout: Keras's
    output axis (last) is moved first and back. `branches`, a list, collects "channel", "layer" or None."""
    p, grad, perturb = (np.moveaxis(a, -1, 0) for a in (p, grad, perturb))
    wd = 1
    expand_size = [-1] + [1] * (len(p.shape) - 1)
    views = {"channel": lambda x: x.reshape(x.shape[0], -1), "layer": lambda x: x.reshape(1, -1)}
    for name, view_func in views.items():
        cosine_sim = np.abs(cosine_similarity(view_func(grad), view_func(p), eps))
        if cosine_sim.max() < delta / math.sqrt(view_func(p).shape[1]):
            p_n = p / (np.linalg.norm(view_func(p), axis=1).reshape(expand_size) + eps)
            perturb = perturb - p_n * view_func(p_n * perturb).sum(axis=1).reshape(expand_size)
            wd = wd_ratio
            if branches is not None:
                branches.append(name)
            return np.moveaxis(perturb, 0, -1), wd
    if branches is not None:
        branches.append(None)
    return np.moveaxis(perturb, 0, -1), wd
