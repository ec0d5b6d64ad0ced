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


SHAPES = [(3,), (4, 5), (2, 3, 3, 4)]  # a bias, a Dense kernel and a Conv kernel
