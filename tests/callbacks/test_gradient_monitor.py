"""`GradientMonitor`: its norms against a `tf.GradientTape` computation on the same batch and weights, its update
ratios against the weights' actual change, which steps it records, MirroredStrategy, XLA, wrapper optimizers, mixed
precision, its errors, plot, TensorBoard files, and the optimizer put back after `fit`."""

import copy
import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfopt
from tfopt.callbacks import GradientMonitor

LAYERS = ["hidden", "block/inner", "out"]


def _model(optimizer=None, jit_compile=False, loss="mse"):
    """hidden (Dense 5) -> block (a nested Sequential holding inner, Dense 3) -> out (Dense 1), fixed weights."""
    keras.utils.set_random_seed(0)
    block = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="tanh", name="inner")],
                             name="block")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="tanh", name="hidden"), block,
                              keras.layers.Dense(1, name="out")])
    model.compile(optimizer or keras.optimizers.SGD(0.1, momentum=0.9), loss, jit_compile=jit_compile)
    return model


class _WeightsBefore(keras.callbacks.Callback):
    """The model's trainable weights before each step and after the last (a test's host reads, every step)."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_begin(self, batch, logs=None):
        self.weights.append([np.array(v) for v in self.model.trainable_variables])

    def on_train_end(self, logs=None):
        self.weights.append([np.array(v) for v in self.model.trainable_variables])


def _rows(model):
    """For each trainable variable, the index in LAYERS of the layer that holds it."""
    owners = {id(v): name for name, layer in [("hidden", model.get_layer("hidden")),
                                              ("block/inner", model.get_layer("block").get_layer("inner")),
                                              ("out", model.get_layer("out"))] for v in layer.trainable_variables}
    return [LAYERS.index(owners[id(v)]) for v in model.trainable_variables]


def _layer_norms(arrays, rows):
    sums = np.zeros(len(LAYERS))
    for array, row in zip(arrays, rows):
        sums[row] += np.sum(np.square(np.asarray(array, "float64")))
    return np.sqrt(sums)


def _tape_gradients(model, x, y, weights):
    """The gradient of the batch's mean squared error at `weights`, by a `tf.GradientTape` on a copy of the model."""
    twin = keras.models.clone_model(model)
    twin.set_weights([np.asarray(w) for w in model.get_weights()])
    for variable, value in zip(twin.trainable_variables, weights):
        variable.assign(value)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.cast(y, "float32") - tf.cast(twin(x, training=True), "float32")))
    return [g.numpy() for g in tape.gradient(loss, twin.trainable_variables)]


def _fit_full_batch(model, data, callbacks, epochs=5):
    """`epochs` steps, each on the whole data set in order: the batch of every step is known."""
    probe = _WeightsBefore()
    model.fit(*data, batch_size=len(data[0]), epochs=epochs, shuffle=False, verbose=0, callbacks=[*callbacks, probe])
    return probe.weights


def _assert_matches_tape(monitor, model, data, weights, rtol=1e-5):
    rows = _rows(model)
    assert list(monitor.gradient_norms) == LAYERS
    for index, step in enumerate(monitor.steps):
        gradients = _tape_gradients(model, *data, weights[step])
        expected = {"gradient": _layer_norms(gradients, rows), "weight": _layer_norms(weights[step], rows),
                    "update": _layer_norms([a - b for a, b in zip(weights[step + 1], weights[step])], rows)}
        expected["update"] /= expected["weight"]
        for row, name in enumerate(LAYERS):
            assert monitor.gradient_norms[name][index] == pytest.approx(expected["gradient"][row], rel=rtol)
            assert monitor.weight_norms[name][index] == pytest.approx(expected["weight"][row], rel=rtol)
            assert monitor.update_ratios[name][index] == pytest.approx(expected["update"][row], rel=max(rtol, 1e-4))


def test_norms_equal_a_gradient_tape_on_the_same_batch_and_weights(regression_data):
    model, monitor = _model(), GradientMonitor(every=2)
    weights = _fit_full_batch(model, regression_data, [monitor])
    assert monitor.steps == [0, 2, 4]
    _assert_matches_tape(monitor, model, regression_data, weights)
    assert all(np.all(ratio > 0) for ratio in monitor.update_ratios.values())


def test_records_every_nth_optimizer_step_and_starts_afresh_each_fit(regression_data):
    model, monitor = _model(), GradientMonitor(every=3)
    model.fit(*regression_data, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
    assert monitor.steps == [0, 3, 6, 9, 12, 15]
    assert all(len(norms) == 6 for norms in monitor.gradient_norms.values())
    model.fit(*regression_data, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
    assert monitor.steps == [18, 21, 24, 27, 30]  # the optimizer's step count goes on across fits


def test_layers_restricts_the_records(regression_data):
    model, monitor = _model(), GradientMonitor(every=1, layers=["out", "block/inner"])
    model.fit(*regression_data, batch_size=32, verbose=0, callbacks=[monitor])
    assert list(monitor.gradient_norms) == ["block/inner", "out"] and monitor.steps == [0, 1]


def test_mirrored_strategy_records_the_applied_gradient_of_one_device(regression_data, mirrored_strategy):
    results = []
    for strategy in (mirrored_strategy, tf.distribute.get_strategy()):
        with strategy.scope():
            model = _model()
        monitor = GradientMonitor(every=2)
        _fit_full_batch(model, regression_data, [monitor])
        results.append(monitor)
    distributed, single = results
    assert distributed.steps == single.steps == [0, 2, 4]
    for quantity in ("gradient_norms", "weight_norms", "update_ratios"):
        for name in LAYERS:
            np.testing.assert_allclose(getattr(distributed, quantity)[name], getattr(single, quantity)[name],
                                       rtol=1e-5)


def test_jit_compile(regression_data):
    model, monitor = _model(jit_compile=True), GradientMonitor(every=2)
    weights = _fit_full_batch(model, regression_data, [monitor])
    assert model.jit_compile
    _assert_matches_tape(monitor, model, regression_data, weights, rtol=1e-4)


@pytest.mark.parametrize("make", [lambda: tfopt.optimizers.Lookahead(keras.optimizers.Adam(0.01)),
                                  lambda: tfopt.optimizers.RAdam(0.01)], ids=["Lookahead", "RAdam"])
def test_tfopt_optimizers(regression_data, make):
    model, monitor = _model(make()), GradientMonitor(every=2)
    weights = _fit_full_batch(model, regression_data, [monitor])
    _assert_matches_tape(monitor, model, regression_data, weights)


def test_mixed_precision_records_unscaled_gradients(regression_data):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=1024.0)
        model = _model(optimizer, jit_compile=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    monitor = GradientMonitor(every=2)
    weights = _fit_full_batch(model, regression_data, [monitor])
    assert model.get_layer("hidden").compute_dtype == "float16"
    _assert_matches_tape(monitor, model, regression_data, weights, rtol=5e-3)  # float16 forward pass


def test_the_optimizer_and_train_function_are_put_back_after_fit(regression_data):
    model, monitor = _model(), GradientMonitor(every=1)
    model.fit(*regression_data, batch_size=32, verbose=0)
    plain = model.train_function
    model.fit(*regression_data, batch_size=32, verbose=0, callbacks=[monitor])
    assert "apply" not in vars(model.optimizer) and model.train_function is plain
    steps = monitor._probe.step.numpy()
    model.fit(*regression_data, batch_size=32, verbose=0)
    assert monitor._probe.step.numpy() == steps  # the plain fit ran no monitor
    assert monitor.steps == [2, 3]


def test_the_optimizer_is_put_back_when_a_step_raises(regression_data):
    model, monitor = _model(), GradientMonitor(every=1)
    x, y = regression_data
    bad = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: tf.debugging.check_numerics(t, "x")),
                            *model.layers])
    bad.compile(model.optimizer, "mse")
    with pytest.raises(tf.errors.InvalidArgumentError):
        bad.fit(np.full_like(x, np.nan), y, batch_size=32, verbose=0, callbacks=[monitor])
    assert "apply" not in vars(bad.optimizer)
    bad.fit(x, y, batch_size=32, verbose=0)  # trains again, without the monitor
    assert monitor.steps == []


def test_plot_writes_a_png_with_a_panel_per_quantity(regression_data, tmp_path):
    model, monitor = _model(), GradientMonitor(every=1)
    with pytest.raises(ValueError, match="GradientMonitor: nothing recorded yet"):
        monitor.plot(tmp_path / "none.png")
    model.fit(*regression_data, batch_size=16, verbose=0, callbacks=[monitor])
    path = monitor.plot(str(tmp_path / "gradients.png"))
    with open(path, "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"


def test_log_dir_writes_scalars_and_histograms_on_recorded_steps(regression_data, tmp_path):
    model, monitor = _model(), GradientMonitor(every=2, log_dir=str(tmp_path))
    model.fit(*regression_data, batch_size=16, verbose=0, callbacks=[monitor])
    tags = {}
    for path in glob.glob(str(tmp_path / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags["gradient_norm/block/inner"] == [0, 2]
    assert tags["update_ratio/out"] == [0, 2]
    assert tags["weight_norm_over_layers"] == [0, 2]


def test_a_deep_copy_records_alike(regression_data):
    monitor = GradientMonitor(every=2, layers=["out"])
    _model().fit(*regression_data, batch_size=16, verbose=0, callbacks=[monitor])
    twin = copy.deepcopy(monitor)
    assert twin.steps == [] and (twin.every, twin.layers) == (2, ["out"])
    _model().fit(*regression_data, batch_size=16, verbose=0, callbacks=[twin])
    np.testing.assert_array_equal(twin.gradient_norms["out"], monitor.gradient_norms["out"])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"every": 0}, ValueError, "GradientMonitor: argument `every` must be >= 1. Received: every=0"),
        ({"every": 2.0}, TypeError, "GradientMonitor: argument `every` must be an integer. Received: every=2.0"),
        ({"layers": "out"}, TypeError,
         "GradientMonitor: argument `layers` must be None or a non-empty list of layer names. Received: layers='out'"),
        ({"log_dir": 3}, TypeError, "GradientMonitor: argument `log_dir` must be None or a directory path. "
                                    "Received: log_dir=3"),
    ],
    ids=["every_zero", "every_float", "layers_string", "log_dir_int"],
)
def test_bad_arguments_raise(kwargs, error, message):
    with pytest.raises(error) as raised:
        GradientMonitor(**kwargs)
    assert str(raised.value) == message


def test_unknown_layer_names_raise_at_fit_start_listing_the_valid_ones(regression_data):
    model = _model()
    with pytest.raises(ValueError) as raised:
        model.fit(*regression_data, verbose=0, callbacks=[GradientMonitor(layers=["out", "inner"])])
    assert str(raised.value) == (
        "GradientMonitor: argument `layers` must name layers with trainable weights, one of 'hidden', "
        "'block/inner', 'out'. Received: layers=['out', 'inner'] (unknown: 'inner')"
    )
    assert "apply" not in vars(model.optimizer)


def test_steps_per_execution(regression_data):
    x, y = regression_data
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="out")])
    model.compile(keras.optimizers.SGD(0.01), "mse", steps_per_execution=2)
    monitor = GradientMonitor(every=2)
    model.fit(x[:56], y[:56], batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
    assert monitor.steps == [0, 2, 4, 6, 8, 10, 12]  # 7 steps an epoch: each epoch's last call runs one step
    with pytest.raises(ValueError) as raised:
        model.fit(x, y, batch_size=8, verbose=0, callbacks=[GradientMonitor(every=1)])
    assert str(raised.value) == (
        "GradientMonitor: argument `every` must be >= the steps the model runs per train function call "
        "(steps_per_execution=2): one record per call. Received: every=1"
    )


def test_an_embedding_and_its_sparse_gradient():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(10, 4, name="embedding"),
                              keras.layers.Flatten(), keras.layers.Dense(1, name="out")])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.array([[1, 1, 2], [3, 1, 4]], "int32")  # a repeated index: its rows of the gradient add up
    y = np.array([[1.0], [-1.0]], "float32")
    with tf.GradientTape() as tape:  # at the weights the first step starts from
        loss = tf.reduce_mean(tf.square(y - model(x)))
    gradient = tape.gradient(loss, model.trainable_variables[0])
    assert isinstance(gradient, tf.IndexedSlices)
    monitor = GradientMonitor(every=1)
    model.fit(x, y, batch_size=2, verbose=0, callbacks=[monitor])
    expected = np.linalg.norm(tf.convert_to_tensor(gradient).numpy())
    assert monitor.gradient_norms["embedding"][0] == pytest.approx(expected, rel=1e-5)
