"""The demo's models for 8x8 digits: the teacher CNN, the student, 11x smaller, that is distilled, pruned and
quantized, and a Vision Transformer in miniature (examples/transformer_to_int8.py, benchmarks, tests).

Example:
    >>> from tfopt.demo.model import digits_cnn, digits_student
    >>> digits_cnn().output_shape, digits_cnn().count_params() // digits_student().count_params()
    ((None, 10), 11)
"""

import keras
from keras import layers as _layers
from keras import ops


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


def digit_tokens(images):
    """(n, 8, 8, 1) digit images -> (n, 16, 4): 16 tokens of 2x2 pixels, row by row (the Transformer's input)."""
    n = len(images)
    return images.reshape(n, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(n, 16, 4)


def digits_transformer(width=32, heads=4, hidden=64, blocks=2, seed=0):
    """A Vision Transformer in miniature: 16 tokens of 4 pixels, a Dense projection plus a learned position
    Embedding, `blocks` encoder blocks (pre-norm `heads`-head attention, a GELU feed-forward of `hidden` units),
    LayerNorm, average pooling, logits for 10 classes; 18k weights with the defaults.

    Example:
        >>> digits_transformer().count_params()
        18154
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 4), name="tokens")
    x = _layers.Dense(width, name="projection")(inputs)
    positions = ops.cumsum(ops.ones_like(inputs[..., 0], dtype="int32"), axis=1) - 1  # 0..15 for each sample
    x = x + _layers.Embedding(16, width, name="position")(positions)
    for block in range(blocks):
        h = _layers.LayerNormalization(name=f"block{block}_norm1")(x)
        h = _layers.MultiHeadAttention(heads, width // heads, name=f"block{block}_attention")(h, h)
        x = _layers.Add(name=f"block{block}_residual1")([x, h])
        h = _layers.LayerNormalization(name=f"block{block}_norm2")(x)
        h = _layers.Dense(hidden, activation="gelu", name=f"block{block}_hidden")(h)
        h = _layers.Dense(width, name=f"block{block}_output")(h)
        x = _layers.Add(name=f"block{block}_residual2")([x, h])
    x = _layers.GlobalAveragePooling1D(name="pool")(_layers.LayerNormalization(name="norm")(x))
    return keras.Model(inputs, _layers.Dense(10, name="logits")(x), name="digits_transformer")
