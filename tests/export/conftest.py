"""The digits CNN trained once per test process, and its float32 TFLite file, for the export tests."""

import keras
import pytest

from tfopt import export
from tfopt.demo.data import batches, load_digits_split
from tfopt.demo.model import compile_for_digits, digits_cnn


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits split 80/20: x (n, 8, 8, 1) in [0, 1], integer labels."""
    return load_digits_split()


@pytest.fixture(scope="session")
def digits_model(digits):
    """The demo's digits CNN after a short training (about 95% test accuracy)."""
    model = compile_for_digits(digits_cnn(), keras.optimizers.Adam(3e-3))
    model.fit(batches(digits.x_train, digits.y_train, shuffle=True), epochs=12, verbose=0, shuffle=False)
    return model


@pytest.fixture(scope="session")
def float_tflite(digits_model):
    """`digits_model` converted without quantization."""
    return export.to_tflite(digits_model)
