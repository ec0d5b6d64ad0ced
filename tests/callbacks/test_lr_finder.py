import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.callbacks import LRFinder, find_lr


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
    np.testing.assert_allclose(finder.lrs, np.geomspace(1e-6, 1e-2, 20), rtol=1e-9)
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
    assert finder.losses[-1] > 4 * min(finder.losses) or not np.isfinite(finder.losses[-1])


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


def test_suggestion_is_where_the_loss_falls_fastest():
    finder = LRFinder(num_steps=6)
    finder.lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    finder.losses = [2.0, 1.99, 1.5, 0.5, 0.45, 5.0]
    assert finder.suggestion() == pytest.approx(1e-3)


def test_suggestion_is_at_most_a_tenth_of_the_rate_of_lowest_loss():
    finder = LRFinder(num_steps=6)
    finder.lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    finder.losses = [2.0, 2.0, 1.99, 1.98, 1.97, 0.9]  # steepest at the last rate, 1.0
    assert finder.suggestion() == pytest.approx(1e-1)


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
    with pytest.raises(TypeError, match="LRFinder: the optimizer's learning rate is already a schedule"):
        find_lr(model, x, y, num_steps=4)


def test_a_dataset_of_unknown_length_is_refused(regression_data):
    x, y = _classes(regression_data)
    unknown = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).filter(lambda features, label: True)
    with pytest.raises(ValueError, match="find_lr: argument `x` must hold at least one batch of known size. Received: a dataset of unknown"):
        find_lr(_classifier(), unknown, num_steps=4)
