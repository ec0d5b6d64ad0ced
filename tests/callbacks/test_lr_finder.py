import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.callbacks import LRFinder, OneCyclePolicy, find_lr


def _state(model):
    return [v.numpy().copy() for v in list(model.weights) + list(model.optimizer.variables)]


def _assert_identical(before, after):
    assert len(before) == len(after)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def _classifier():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _classes(regression_data):
    x, y = regression_data
    return x, np.digitize(y[:, 0], [-1.0, 1.0]).astype("int32")


def test_weights_and_optimizer_state_are_bit_identical_afterwards(regression_data):
    x, y = _classes(regression_data)
    model = _classifier()
    model.fit(x, y, epochs=2, verbose=0)  # non-zero slots, moving statistics and step count
    before = _state(model)
    finder = find_lr(model, x, y, batch_size=8, num_steps=30)
    _assert_identical(before, _state(model))
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert len(finder.lrs) > 5


def test_an_unbuilt_optimizer_is_left_as_fresh(regression_data):
    x, y = _classes(regression_data)
    model = _classifier()
    fresh = _classifier()
    fresh.optimizer.build(fresh.trainable_variables)
    before = _state(model)[: len(model.weights)] + _state(fresh)[len(fresh.weights):]
    find_lr(model, x, y, batch_size=8, num_steps=10)
    _assert_identical(before, _state(model))


def test_the_sweep_is_exponential_and_records_batch_losses(regression_data):
    x, y = _classes(regression_data)
    finder = find_lr(_classifier(), x, y, batch_size=8, start_lr=1e-6, end_lr=1e-2, num_steps=20, stop_factor=1e9)
    np.testing.assert_allclose(finder.lrs, np.geomspace(1e-6, 1e-2, 20), rtol=1e-6)  # float32 in the optimizer
    assert len(finder.raw_losses) == 20 and np.all(np.isfinite(finder.raw_losses))


def test_each_recorded_loss_is_that_batch_loss_not_the_epoch_mean(regression_data):
    x, y = _classes(regression_data)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    first, second = (x[:32], y[:32]), (x[32:] * 5, y[32:])  # two batches with very different losses
    dataset = tf.data.Dataset.from_tensor_slices((np.concatenate([first[0], second[0]]), y)).batch(32)
    finder = find_lr(model, dataset, start_lr=1e-12, end_lr=1e-11, num_steps=4, smoothing=0.0, stop_factor=1e9)
    batch_losses = [model.evaluate(*first, verbose=0), model.evaluate(*second, verbose=0)]
    assert finder.raw_losses == pytest.approx(batch_losses * 2, rel=1e-4)


def test_stops_when_the_loss_diverges(regression_data):
    x, y = _classes(regression_data)
    finder = find_lr(_classifier(), x, y, batch_size=8, start_lr=1e-4, end_lr=1e6, num_steps=200)
    assert len(finder.lrs) < 200
    grew = finder.losses[-1] > 4 * min(finder.losses) or not np.isfinite(finder.losses[-1])
    back_at_start = np.mean(finder.raw_losses[-10:]) > 0.95 * finder.losses[20]  # the fall undone
    assert grew or back_at_start


class _CapRate(keras.callbacks.Callback):
    """Another callback that lowers the rate after LRFinder has set it, as a user's own schedule might."""

    def __init__(self, cap):
        super().__init__()
        self.cap = cap

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = min(float(self.model.optimizer.learning_rate), self.cap)


class _Kernel(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(self.model.layers[0].kernel.numpy()[0, 0]))


def test_lrs_are_the_rates_the_optimizer_used():
    # loss = 1 - w on inputs of ones: the gradient is -1 at every step, so plain SGD adds the rate it used to w.
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(keras.optimizers.SGD(0.1), lambda y_true, y_pred: 1.0 - y_pred)
    finder, kernel = LRFinder(start_lr=1e-5, end_lr=1e-2, num_steps=12), _Kernel()
    model.fit(np.ones((96, 1)), np.zeros((96, 1)), batch_size=8, verbose=0,
              callbacks=[finder, _CapRate(1e-3), kernel])
    used = np.diff([0.0] + kernel.values)
    assert max(finder.rate(step) for step in range(12)) > 5e-3 and used.max() == pytest.approx(1e-3, rel=1e-4)
    np.testing.assert_allclose(finder.lrs, used, rtol=1e-4)


def test_restores_even_when_training_raises(regression_data):
    x, y = _classes(regression_data)
    model = _classifier()
    before = _state(model)

    def broken_batches():
        for start in range(0, 32, 8):
            yield x[start:start + 8], y[start:start + 8]
        raise RuntimeError("data source failed")

    dataset = tf.data.Dataset.from_generator(
        broken_batches, output_signature=(tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None,), tf.int32))
    ).apply(tf.data.experimental.assert_cardinality(8))
    with pytest.raises(Exception, match="data source failed"):
        find_lr(model, dataset, num_steps=8)
    _assert_identical(before[: len(model.weights)], _state(model)[: len(model.weights)])


def _swept(losses, start_lr=1e-7, end_lr=10.0):
    finder = LRFinder(start_lr=start_lr, end_lr=end_lr, num_steps=len(losses))
    finder.lrs, finder.losses = list(np.geomspace(start_lr, end_lr, len(losses))), list(losses)
    return finder


def test_suggestion_is_a_tenth_of_the_rate_of_lowest_loss():
    losses = np.concatenate([np.full(50, 2.3), np.linspace(2.3, 1.0, 31), np.linspace(1.1, 3.0, 19)])  # lowest: 80
    assert _swept(losses).suggestion() == pytest.approx(1e-7 * 1e8 ** (80 / 99) / 10)


def test_the_last_points_of_the_sweep_are_not_used():
    losses = np.concatenate([np.full(50, 2.3), np.linspace(2.3, 0.5, 50)])  # still falling when the sweep ends
    assert _swept(losses).suggestion() == pytest.approx(1e-7 * 1e8 ** (94 / 99) / 10)  # 5 points lag: 95-99


def test_plot_writes_a_png(tmp_path, regression_data):
    x, y = _classes(regression_data)
    finder = find_lr(_classifier(), x, y, batch_size=8, num_steps=20)
    path = finder.plot(tmp_path / "nested" / "lr_find.png")
    with open(path, "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (tmp_path / "nested").iterdir()] == ["lr_find.png"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(start_lr=0.0), ValueError, "LRFinder: argument `start_lr` must be > 0"),
        (dict(start_lr=1.0, end_lr=0.1), ValueError, "LRFinder: argument `start_lr` must be smaller than `end_lr`"),
        (dict(num_steps=1), ValueError, "LRFinder: argument `num_steps` must be >= 2"),
        (dict(num_steps=2.5), TypeError, "LRFinder: argument `num_steps` must be an integer"),
        (dict(smoothing=1.0), ValueError, r"LRFinder: argument `smoothing` must be in \[0, 1\)"),
        (dict(stop_factor=1.0), ValueError, "LRFinder: argument `stop_factor` must be > 1"),
        (dict(min_fall=0.0), ValueError, r"LRFinder: argument `min_fall` must be in \(0, 1\). Received: min_fall=0.0"),
        (dict(min_fall="5%"), TypeError, "LRFinder: argument `min_fall` must be a number"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        LRFinder(**kwargs)


def test_too_few_losses_for_a_suggestion():
    finder = LRFinder()
    finder.lrs, finder.losses = [1e-3, 1e-2], [1.0, float("nan")]
    with pytest.raises(ValueError, match="LRFinder: the sweep recorded 1 finite losses"):
        finder.suggestion()


def test_uncompiled_model_and_scheduled_optimizer_are_refused(regression_data):
    x, y = regression_data
    with pytest.raises(ValueError, match="find_lr: the model must be compiled"):
        find_lr(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]), x, y)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)), "mse")
    with pytest.raises(TypeError, match=re.escape(
            "LRFinder: the optimizer's learning rate is already a schedule (ExponentialDecay), but the sweep sets the "
            "rate itself. Compile the model with a float learning rate for the sweep, e.g. "
            "`model.compile(keras.optimizers.SGD(0.01), loss)`, then compile it again with the schedule for training "
            "(with `finder.suggestion()` as its peak rate).")):
        find_lr(model, x, y, num_steps=4)


def test_arrays_without_y_are_refused_naming_y(regression_data):
    x, _ = regression_data
    with pytest.raises(ValueError, match=re.escape(
            "find_lr: argument `y` must be given with arrays `x`: the model's loss needs targets. Pass "
            "`find_lr(model, x, y)`, or as `x` a dataset of (x, y) batches. Received: y=None")):
        find_lr(_classifier(), x, num_steps=4)


def test_a_dataset_of_unknown_length_is_refused(regression_data):
    x, y = _classes(regression_data)
    unknown = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).filter(lambda features, label: True)
    message = "find_lr: argument `x` must hold at least one batch of known size. Received: a dataset of unknown"
    with pytest.raises(ValueError, match=message):
        find_lr(_classifier(), unknown, num_steps=4)


def test_an_infinite_dataset_gives_num_steps_batches(regression_data):
    x, y = _classes(regression_data)
    model = _classifier()
    before = _state(model)
    infinite = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()  # 8 batches, repeated without end
    finder = find_lr(model, infinite, num_steps=20, stop_factor=1e9)
    assert len(finder.lrs) == 20
    np.testing.assert_allclose(finder.lrs[-1], 10.0, rtol=1e-6)
    _assert_identical(before[: len(model.weights)], _state(model)[: len(model.weights)])


def test_a_python_generator_is_refused_naming_x(regression_data):
    x, y = _classes(regression_data)
    batches = ((x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8))
    with pytest.raises(ValueError, match=r"find_lr: argument `x` must be arrays .* Wrap a generator in "
                                         r"`tf\.data\.Dataset\.from_generator\(\.\.\.\)\.repeat\(\)`\. "
                                         r"Received: x=<generator object"):
        find_lr(_classifier(), batches, num_steps=4)


def _feed(finder, raw_losses):
    """Drives `finder` through a sweep whose batch losses are `raw_losses`; returns the step it stopped at."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    finder.set_model(model)
    finder.on_train_begin()
    try:
        for step, loss in enumerate(raw_losses):
            finder.on_train_batch_begin(step)
            finder.on_train_batch_end(step, {"loss": float(loss)})
            if model.stop_training:
                return step
        return None
    finally:
        finder.on_train_end()


def _dead_network_losses(dies_at):
    """2.3 while the rate is too small, a fall to 1.0, then a dead network: back at 2.3, flat (noise 0.01)."""
    noise = np.random.default_rng(0).normal(0.0, 0.01, 100)
    curve = np.concatenate([np.full(50, 2.3), np.linspace(2.3, 1.0, 26), np.full(24, 1.0)])
    if dies_at is not None:
        curve[dies_at:] = 2.3
    return curve + noise


def test_a_network_dying_after_a_fall_stops_the_sweep():
    finder = LRFinder(num_steps=100)
    stopped = _feed(finder, _dead_network_losses(dies_at=80))
    assert stopped is not None and 80 <= stopped <= 80 + 6
    assert max(finder.losses) < 4 * min(finder.losses)  # the loss never grew: the growth rule alone runs on
    assert _feed(LRFinder(num_steps=100), _dead_network_losses(dies_at=None)) == 99  # no false alarm


def test_a_short_noisy_sweep_is_not_stopped_by_chance():
    noisy = 1.0 + np.random.default_rng(1).normal(0.0, 0.2, 20)  # 20% batch noise, no trend
    assert _feed(LRFinder(num_steps=20), noisy) == 19


@pytest.mark.parametrize("seed", range(40))
def test_a_suggestion_is_never_the_first_rate(seed):
    rng = np.random.default_rng(seed)
    num_steps = int(rng.integers(6, 120))
    finder = LRFinder(start_lr=1e-6, end_lr=1.0, num_steps=num_steps)
    finder.lrs = list(np.geomspace(1e-6, 1.0, num_steps))
    walk = np.cumsum(rng.normal(0.0, 0.1, num_steps))  # any shape: falls, rises, lowest or steepest at the start
    finder.losses = list(np.maximum(2.0 + walk, 0.01))
    try:
        rate = finder.suggestion()
    except ValueError as error:
        assert "no suggestion" in str(error)
    else:
        assert rate > finder.lrs[0]


def test_a_loss_lowest_at_the_first_rate_gives_no_suggestion():
    finder = LRFinder(num_steps=6)
    finder.lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    finder.losses = [1.0, 2.0, 2.0, 2.01, 2.02, 2.5]  # tfopt 0.1.0 suggested 1e-6, a tenth of the first rate
    with pytest.raises(ValueError, match="no suggestion"):
        finder.suggestion()


def _digits_batches(digits, seed):
    dataset = tf.data.Dataset.from_tensor_slices((digits.x_train, digits.y_train))
    return dataset.shuffle(len(digits.x_train), seed=seed).batch(32)  # fit is faster on a dataset than on arrays


def _digits_model(layers, optimizer, seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8, 8, 1)), *layers, keras.layers.Dense(10)])
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def test_a_slow_learning_plain_cnn_gets_no_suggestion(digits, tmp_path, capsys):
    conv = dict(kernel_size=3, padding="same", activation="relu")
    layers = [keras.layers.Conv2D(32, **conv), keras.layers.Conv2D(32, **conv), keras.layers.GlobalAveragePooling2D()]
    model = _digits_model(layers, keras.optimizers.SGD(0.01, momentum=0.9), seed=0)
    finder = find_lr(model, _digits_batches(digits, seed=0), verbose=1)
    with pytest.raises(ValueError, match=r"no suggestion: .* fell .*`num_steps`.*wider range.*check the model"):
        finder.suggestion()
    printed = capsys.readouterr().out
    assert "no suggestion" in printed and "`num_steps`" in printed
    path = finder.plot(tmp_path / "lr_find.png")
    with open(path, "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_suggestion_trains_a_small_cnn(digits):
    accuracies = []
    for seed in range(3):
        layers = [keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.Flatten()]
        model = _digits_model(layers, keras.optimizers.SGD(0.01, momentum=0.9), seed)
        train = _digits_batches(digits, seed)
        rate = find_lr(model, train).suggestion()
        epochs, steps = 5, math.ceil(len(digits.x_train) / 32)
        model.fit(train, epochs=epochs, verbose=0, shuffle=False,
                  callbacks=[OneCyclePolicy(max_lr=rate, total_steps=epochs * steps)])
        accuracies.append(model.evaluate(digits.x_test, digits.y_test, batch_size=256, verbose=0)[1])
    assert np.mean(accuracies) > 0.9 and min(accuracies) > 0.5, accuracies  # chance: 0.1
