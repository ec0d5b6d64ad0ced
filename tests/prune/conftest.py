"""Small models and data for the Keras 3 pruning tests, and a probe that checks the masks after every batch."""

import keras
import numpy as np
import pytest

import tfopt.prune as tprune


def _data(input_shape, n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *input_shape)).astype("float32")
    y = rng.normal(size=(n, 4)).astype("float32")
    return x, y


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="hidden"), keras.layers.Dense(4, name="out")]
    )


def _convnet(seed=0):
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((6, 6, 4)),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv"),
            layers.DepthwiseConv2D(3, padding="same", name="depthwise"),
            layers.SeparableConv2D(8, 3, name="separable"),
            layers.Flatten(),
            layers.Dense(4, name="out"),
        ]
    )


@pytest.fixture
def mlp():
    """A factory of the same Dense(16, relu) -> Dense(4) model on 8 inputs (kernels 8x16 and 16x4)."""
    return _mlp


@pytest.fixture
def convnet():
    """A factory of the same Conv2D -> DepthwiseConv2D -> SeparableConv2D -> Dense model on 6x6x4 inputs."""
    return _convnet


@pytest.fixture
def mlp_data():
    """64 samples for `mlp`: x (64, 8), y (64, 4)."""
    return _data((8,))


@pytest.fixture
def convnet_data():
    """64 samples for `convnet`: x (64, 6, 6, 4), y (64, 4)."""
    return _data((6, 6, 4))


def fit(model, data, epochs=1, callbacks=(), **kwargs):
    """8 unshuffled batches of 8 per epoch, with UpdatePruningStep."""
    callbacks = [tprune.UpdatePruningStep(), *callbacks]
    return model.fit(*data, batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks, **kwargs)


@pytest.fixture
def fit_pruned():
    """`fit_pruned(model, data, epochs=1, callbacks=(), **fit_kwargs)`: 8 batches of 8 per epoch, unshuffled."""
    return fit


class MaskProbe(keras.callbacks.Callback):
    """After every batch: asserts each pruned kernel is exactly 0 where its mask is 0; records the zero counts."""

    def __init__(self):
        super().__init__()
        self.zeros = []

    def on_train_batch_end(self, batch, logs=None):
        counts = []
        for layer in tprune.wrapper.pruned_layers(self.model):
            kernel, mask = np.asarray(layer.pruned_kernel), np.asarray(layer.mask)
            assert np.all(kernel[mask == 0] == 0), f"{layer.name}: a pruned weight is not exactly zero"
            counts.append(int(np.sum(kernel == 0)))
        self.zeros.append(counts)


@pytest.fixture
def mask_probe():
    """A factory of `MaskProbe` callbacks."""
    return MaskProbe
