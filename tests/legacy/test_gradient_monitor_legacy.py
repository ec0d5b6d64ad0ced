"""`GradientMonitor` in tf_keras's `fit`: its norms against a `tf.GradientTape` computation on the same batch and
weights (tf_keras's optimizers and its legacy ones), and the optimizer put back after `fit`."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfopt.callbacks import GradientMonitor

LAYERS = ["hidden", "block/inner", "out"]


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * rng.normal(size=(64, 1))).astype("float32")


def _model(optimizer):
    tf_keras.utils.set_random_seed(0)
    block = tf_keras.Sequential([tf_keras.Input((5,)), tf_keras.layers.Dense(3, activation="tanh", name="inner")],
                                name="block")
    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(5, activation="tanh", name="hidden"),
                                 block, tf_keras.layers.Dense(1, name="out")])
    model.compile(optimizer, "mse")
    return model


class _WeightsBefore(tf_keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_begin(self, batch, logs=None):
        self.weights.append([v.numpy() for v in self.model.trainable_variables])

    def on_train_end(self, logs=None):
        self.weights.append([v.numpy() for v in self.model.trainable_variables])


def _layer_norms(arrays):
    # trainable_variables in order: hidden kernel, bias; inner kernel, bias; out kernel, bias
    return np.sqrt([sum(np.sum(np.square(np.asarray(a, "float64"))) for a in arrays[i:i + 2]) for i in (0, 2, 4)])


def _tape_gradients(model, x, y, weights):
    twin = tf_keras.models.clone_model(model)
    twin.set_weights(weights)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(y - twin(x, training=True)))
    return [g.numpy() for g in tape.gradient(loss, twin.trainable_variables)]


@pytest.mark.parametrize("make", [lambda: tf_keras.optimizers.SGD(0.1, momentum=0.9),
                                  lambda: tf_keras.optimizers.legacy.Adam(0.01)], ids=["SGD", "legacy.Adam"])
def test_norms_equal_a_gradient_tape_on_the_same_batch_and_weights(make):
    x, y = _data()
    model, monitor, probe = _model(make()), GradientMonitor(every=2), _WeightsBefore()
    model.fit(x, y, batch_size=64, epochs=5, shuffle=False, verbose=0, callbacks=[monitor, probe])
    assert monitor.steps == [0, 2, 4] and list(monitor.gradient_norms) == LAYERS
    for index, step in enumerate(monitor.steps):
        before, after = probe.weights[step], probe.weights[step + 1]
        gradient = _layer_norms(_tape_gradients(model, x, y, before))
        weight = _layer_norms(before)
        update = _layer_norms([a - b for a, b in zip(after, before)]) / weight
        for row, name in enumerate(LAYERS):
            assert monitor.gradient_norms[name][index] == pytest.approx(gradient[row], rel=1e-5)
            assert monitor.weight_norms[name][index] == pytest.approx(weight[row], rel=1e-5)
            assert monitor.update_ratios[name][index] == pytest.approx(update[row], rel=1e-4)


def test_the_optimizer_is_put_back_after_fit():
    x, y = _data()
    model, monitor = _model(tf_keras.optimizers.SGD(0.1)), GradientMonitor(every=1)
    model.fit(x, y, batch_size=32, verbose=0, callbacks=[monitor])
    assert "apply_gradients" not in vars(model.optimizer)
    model.fit(x, y, batch_size=32, verbose=0)
    assert monitor.steps == [0, 1]


def test_mirrored_strategy_records_the_applied_gradient_of_one_device(mirrored_strategy):
    x, y = _data()
    results = []
    for strategy in (mirrored_strategy, tf.distribute.get_strategy()):
        with strategy.scope():
            model = _model(tf_keras.optimizers.SGD(0.1))
        monitor = GradientMonitor(every=2)
        model.fit(x, y, batch_size=64, epochs=3, shuffle=False, verbose=0, callbacks=[monitor])
        results.append(monitor)
    assert results[0].steps == results[1].steps == [0, 2]
    for name in LAYERS:
        for quantity in ("gradient_norms", "weight_norms", "update_ratios"):
            np.testing.assert_allclose(getattr(results[0], quantity)[name], getattr(results[1], quantity)[name],
                                       rtol=1e-5)


def test_mixed_precision_records_unscaled_gradients():
    x, y = _data()
    results = []
    for policy in ("mixed_float16", "float32"):
        tf_keras.mixed_precision.set_global_policy(policy)
        try:  # a scale at which no float16 gradient overflows, so no step is skipped
            optimizer = tf_keras.optimizers.SGD(0.1)
            if policy == "mixed_float16":
                optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer, initial_scale=64.0)
            model = _model(optimizer)
        finally:
            tf_keras.mixed_precision.set_global_policy("float32")
        monitor = GradientMonitor(every=2)
        model.fit(x, y, batch_size=64, epochs=3, shuffle=False, verbose=0, callbacks=[monitor])
        results.append(monitor)
    for name in LAYERS:
        np.testing.assert_allclose(results[0].gradient_norms[name], results[1].gradient_norms[name], rtol=1e-2)


def test_jit_compile_records_what_the_traced_step_records():
    x, y = _data()
    results = []
    for jit_compile in (True, False):
        model = _model(tf_keras.optimizers.Adam(0.01))
        model.compile(model.optimizer, "mse", jit_compile=jit_compile)
        monitor = GradientMonitor(every=2)
        model.fit(x, y, batch_size=64, epochs=3, shuffle=False, verbose=0, callbacks=[monitor])
        results.append(monitor)
    for name in LAYERS:
        np.testing.assert_allclose(results[0].gradient_norms[name], results[1].gradient_norms[name], rtol=1e-5)
        np.testing.assert_allclose(results[0].update_ratios[name], results[1].update_ratios[name], rtol=1e-4)
