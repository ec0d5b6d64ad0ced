"""Small Keras 3 models for the QAT tests: a MobileNet-style functional block model and its data."""

import keras
import numpy as np
import pytest

import tfopt

L = keras.layers


def _mobile_block_model(seed=0, concatenate=True):
    """Conv-BN-ReLU6, an inverted-residual block (expand, depthwise, project, Add), a Concatenate branch (or the
    branch Added), pooling and a softmax head: the patterns quantize_model fuses and quantizes."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    y = L.Conv2D(16, 1, name="expand", activation="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(y)
    y = L.BatchNormalization(name="depthwise_bn")(y)
    y = L.Activation("relu6", name="depthwise_relu")(y)
    y = L.Conv2D(8, 1, use_bias=False, name="project")(y)
    y = L.BatchNormalization(name="project_bn")(y)
    x = L.Add(name="residual")([x, y])
    branch = L.AveragePooling2D(2, name="branch_pool")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = (L.Concatenate(name="concat") if concatenate else L.Add(name="merge"))([x, branch])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(4, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="mobile_blocks")


@pytest.fixture
def mobile_block_model():
    """A factory of the same MobileNet-style functional model on 8x8x3 inputs with 4 softmax outputs."""
    return _mobile_block_model


def _mobile_block_data_arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8, 8, 3)).astype("float32")
    y = np.digitize(x[..., 0].mean(axis=(1, 2)), [-0.1, 0.0, 0.1]).astype("int32")
    return x, y


@pytest.fixture
def mobile_block_data():
    """96 samples for `mobile_block_model` whose class depends on the mean of one input channel."""
    return _mobile_block_data_arrays()


def _compile_classifier(model, rate=1e-2, **kwargs):
    model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"], **kwargs)
    return model


@pytest.fixture
def compile_classifier():
    """`compile_classifier(model, rate=1e-2, **compile_kwargs)`: Adam, sparse cross-entropy, accuracy."""
    return _compile_classifier


@pytest.fixture(scope="module")
def trained_qat():
    """`trained_qat(scheme)`: the MobileNet-style block model after 2 QAT epochs, cached per scheme."""
    cache = {}

    def make(scheme):
        if scheme not in cache:
            model = _mobile_block_model(concatenate=scheme == "int8")  # the converter has no int16 CONCATENATION
            quantized = _compile_classifier(tfopt.quantize.quantize_model(model, scheme=scheme))
            quantized.fit(*_mobile_block_data_arrays(), epochs=2, verbose=0)
            cache[scheme] = quantized
        return cache[scheme]

    return make


def _quantizer_ranges(model):
    """[[min, max], ...] of every activation quantizer of a QAT model, nested ones included."""
    quantizers = [layer for layer in tfopt._surgery.layers(model, sublayers=True)
                  if isinstance(layer, tfopt.quantize.QuantizeActivation)]
    return np.array([[float(q.min_value.numpy()), float(q.max_value.numpy())] for q in quantizers])


def _assert_resumes_from_a_keras_file(make, x, y, tmp_path):
    """A QAT model (`make()`: compiled) saved to .keras after 1 epoch and fit 1 more ends as one fit 2 epochs."""
    keras.utils.set_random_seed(2)
    straight = make()
    straight.fit(x, y, epochs=2, shuffle=False, verbose=0)
    keras.utils.set_random_seed(2)
    first = make()
    first.fit(x, y, epochs=1, shuffle=False, verbose=0)
    first.save(tmp_path / "qat.keras")
    resumed = keras.saving.load_model(tmp_path / "qat.keras")
    resumed.fit(x, y, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(resumed.predict(x, verbose=0), straight.predict(x, verbose=0), atol=2e-5)


@pytest.fixture
def quantizer_ranges():
    """`quantizer_ranges(model)`: [[min, max], ...] of every activation quantizer of a QAT model."""
    return _quantizer_ranges


@pytest.fixture
def assert_resumes_from_a_keras_file():
    """`assert_resumes_from_a_keras_file(make, x, y, tmp_path)`: the `.keras` mid-training resume check."""
    return _assert_resumes_from_a_keras_file
