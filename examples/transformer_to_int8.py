"""Ship a Transformer as an all-int8 TFLite model: quantization-aware training of attention, LayerNorm and GELU.

Story: your model is a small Vision Transformer, and tfmot stops at its first MultiHeadAttention and LayerNorm.
`tfopt.quantize.quantize_model` rewrites them (and the `keras.ops` calls around them) with learned ranges on every
tensor, so after a few epochs of QAT the converter gives a model whose every op between the input QUANTIZE and the
output DEQUANTIZE runs in int8. The model: each 8x8 digit cut into 16 tokens of 2x2 pixels, a Dense projection plus a
learned position Embedding, 2 encoder blocks (4-head attention, LayerNorm, GELU feed-forward), pooling, Dense;
18k weights. Runtime on 2 CPU cores: ~1 min (`--quick`: ~30 s). Data: scikit-learn's digits.

Example:
    python examples/transformer_to_int8.py --quick
"""

import argparse
import sys

import keras
import numpy as np
from keras import layers, ops

import tfopt
from tfopt.demo.data import load_digits_split

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def tokens(images):
    """(n, 8, 8, 1) images -> (n, 16, 4): 2x2 patches, row by row."""
    n = len(images)
    return images.reshape(n, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(n, 16, 4)


def digits_transformer(width=32, heads=4, hidden=64, blocks=2, seed=0):
    """The Vision Transformer in miniature: tokens (16, 4) -> 10 logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 4), name="tokens")
    x = layers.Dense(width, name="projection")(inputs)
    positions = ops.cumsum(ops.ones_like(inputs[..., 0], dtype="int32"), axis=1) - 1  # 0..15 for each sample
    x = x + layers.Embedding(16, width, name="position")(positions)
    for block in range(blocks):
        h = layers.LayerNormalization(name=f"block{block}_norm1")(x)
        h = layers.MultiHeadAttention(heads, width // heads, name=f"block{block}_attention")(h, h)
        x = layers.Add(name=f"block{block}_residual1")([x, h])
        h = layers.LayerNormalization(name=f"block{block}_norm2")(x)
        h = layers.Dense(hidden, activation="gelu", name=f"block{block}_hidden")(h)
        h = layers.Dense(width, name=f"block{block}_output")(h)
        x = layers.Add(name=f"block{block}_residual2")([x, h])
    x = layers.GlobalAveragePooling1D(name="pool")(layers.LayerNormalization(name="norm")(x))
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="digits_transformer")


def train(model, x, y, epochs, rate):
    model.compile(keras.optimizers.AdamW(rate), LOSS, metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs, for smoke tests")
    parser.add_argument("--out", default="digits_transformer_int8.tflite", help="the int8 file to write")
    args = parser.parse_args(argv)
    epochs, qat_epochs = (10, 2) if args.quick else (30, 5)
    split = load_digits_split()
    x_train, x_test = tokens(split.x_train), tokens(split.x_test)

    model = train(digits_transformer(), x_train, split.y_train, epochs, 2e-3)
    qat = train(tfopt.quantize.quantize_model(model), x_train, split.y_train, qat_epochs, 2e-4)
    int8 = tfopt.export.to_tflite(qat, "int8", path=args.out, overwrite=True)
    float32 = tfopt.export.to_tflite(model)

    int8_predictions = tfopt.export.predict(int8, x_test).argmax(axis=1)
    agreement = float(np.mean(int8_predictions == qat.predict(x_test, verbose=0).argmax(axis=1)))
    print(f"float Keras accuracy {accuracy(model, x_test, split.y_test):.4f}, {model.count_params()} weights")
    print(f"QAT Keras accuracy   {accuracy(qat, x_test, split.y_test):.4f}")
    print(f"int8 TFLite accuracy {float(np.mean(int8_predictions == split.y_test)):.4f} (agrees with QAT Keras on "
          f"{agreement:.1%})")
    print(f"file {len(int8) / 1024:.1f} KiB int8 vs {len(float32) / 1024:.1f} KiB float32; float ops inside: "
          f"{tfopt.export.float_ops_inside(int8) or 'none'}")
    print(tfopt.export.inspect(int8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
