"""The demo's models for 8x8 digits: the teacher CNN and the student, 11x smaller, that is distilled, pruned and
quantized.

Example:
    >>> from tfopt.demo.model import digits_cnn, digits_student
    >>> digits_cnn().output_shape, digits_cnn().count_params() // digits_student().count_params()
    ((None, 10), 11)
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


def digits_student(seed=1):
    """The student: Conv-BN-ReLU, pooling, Conv-ReLU, pooling and one Dense layer, 11x fewer weights than
    `digits_cnn`; outputs logits for 10 classes."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1"),
            layers.BatchNormalization(name="conv1_bn"),
            layers.ReLU(name="conv1_relu"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(32, 3, padding="same", name="conv2"),
            layers.ReLU(name="conv2_relu"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(10, name="classifier"),
        ],
        name="digits_student",
    )


def compile_for_digits(model, optimizer):
    """Compiles with the loss and metric every demo stage uses."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model
