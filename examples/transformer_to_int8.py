"""Ship a Transformer as an all-int8 TFLite model: quantization-aware training of attention, LayerNorm and GELU.

Story: your model is a small Vision Transformer, and tfmot stops at its first MultiHeadAttention and LayerNorm.
`tfopt.quantize.quantize_model` rewrites them (and the `keras.ops` calls around them) with learned ranges on every
tensor, so after a few epochs of QAT the converter gives a model whose every op between the input QUANTIZE and the
output DEQUANTIZE runs in int8. The model (`tfopt.demo.model.digits_transformer`): each 8x8 digit cut into 16
tokens of 2x2 pixels, a Dense projection plus a learned position Embedding, 2 encoder blocks (4-head attention,
LayerNorm, GELU feed-forward), pooling, Dense; 18k weights. Runtime on 2 CPU cores: ~1 min (`--quick`: ~30 s).
Data: scikit-learn's digits.

Example:
    python examples/transformer_to_int8.py --quick
"""

import argparse
import sys

import keras
import numpy as np

import tfopt
from tfopt.demo.data import load_digits_split
from tfopt.demo.model import digit_tokens, digits_transformer

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


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
    x_train, x_test = digit_tokens(split.x_train), digit_tokens(split.x_test)

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
