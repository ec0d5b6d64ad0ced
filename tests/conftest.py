"""Test set-up shared by every test process.

The first physical CPU is split into two logical devices before TensorFlow initialises, so tests can run a
2-replica `tf.distribute.MirroredStrategy` on a machine without GPUs.
"""

import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def regression_data():
    """64 samples of a noisy linear problem with 4 inputs and 1 output (float32)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * rng.normal(size=(64, 1))).astype("float32")
    return x, y


@pytest.fixture
def linear_model():
    """A factory of compiled single-Dense models with fixed initial weights: `linear_model(optimizer, **compile)`."""

    def make(optimizer, use_bias=True, **compile_kwargs):
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(1, use_bias=use_bias, kernel_initializer="ones")]
        )
        model.compile(optimizer=optimizer, loss="mse", **compile_kwargs)
        return model

    return make


class RateProbe(keras.callbacks.Callback):
    """Records the optimizer's learning rate as seen after each batch."""

    def __init__(self, attribute="learning_rate"):
        super().__init__()
        self.attribute = attribute
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        optimizer = self.model.optimizer
        self.values.append(float(np.asarray(getattr(optimizer, self.attribute))))


@pytest.fixture
def rate_probe():
    """A factory of `RateProbe` callbacks."""
    return RateProbe


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One 2-replica MirroredStrategy over the two logical CPUs for the whole session.

    Several MirroredStrategy instances in one process can collide on collective-op keys ("Shape mismatch in the
    collective instance"), so every test shares this one.
    """
    return tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits split 80/20: x (n, 8, 8, 1) in [0, 1], integer labels."""
    from tfopt.demo.data import load_digits_split

    return load_digits_split()


@pytest.fixture(scope="session")
def digits_seeds():
    """The seeds an acceptance test on the digits runs, asserting on the mean of its results over them."""
    return (0, 1, 2)


@pytest.fixture(scope="session")
def digits_model_of(digits):
    """`digits_model_of(seed)`: the demo's digits CNN after 12 epochs of Adam (test accuracy 0.9861, 0.9750, 0.9861
    for seeds 0, 1, 2), its initial weights and shuffling drawn from `seed`; trained once per session on first use
    and shared, so a test must not train it (`quantize_model` and `prune_low_magnitude` copy it; else clone it)."""
    from tfopt.demo.data import batches
    from tfopt.demo.model import compile_for_digits, digits_cnn

    @functools.cache
    def train(seed):
        model = compile_for_digits(digits_cnn(seed), keras.optimizers.Adam(3e-3))  # digits_cnn seeds everything
        model.fit(batches(digits.x_train, digits.y_train, shuffle=True), epochs=12, verbose=0, shuffle=False)
        return model

    return train


@pytest.fixture(scope="session")
def digits_model(digits_model_of):
    """`digits_model_of(0)`."""
    return digits_model_of(0)


@pytest.fixture(scope="session")
def float_tflite(digits_model):
    """`digits_model` converted without quantization."""
    import tfopt

    return tfopt.export.to_tflite(digits_model)
