"""The demo's model: a small CNN for 8x8 digits with the blocks later stages prune and quantize.

Example:
    >>> from tfopt.demo.model import digits_cnn
    >>> digits_cnn().output_shape
    (None, 10)
"""

import keras


def digits_cnn(seed=0):
    """Conv-BN-ReLU, a depthwise-separable block, pooling and two Dense layers; outputs logits for 10 classes."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(32, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.DepthwiseConv2D(3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Conv2D(64, 1),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10),
        ],
        name="digits_cnn",
    )


def compile_for_digits(model, optimizer):
    """Compiles with the loss and metric every demo stage uses."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model
