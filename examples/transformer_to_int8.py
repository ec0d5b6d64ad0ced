"""Ship a Transformer smaller and all-int8: prune heads and neurons, remove them, then QAT to int8 TFLite.

Story: your model is a small Vision Transformer, and tfmot stops at its first MultiHeadAttention and LayerNorm.
`tfopt.prune.prune_low_magnitude(..., structure="head")` drops half of each attention's heads and `"channel"` half
of each feed-forward's neurons while the model trains on; `strip_pruning(..., shrink=True)` removes them, for a
model with half the weights. `tfopt.quantize.quantize_model` then rewrites attention, LayerNorm, GELU (and the
`keras.ops` calls around them) with learned ranges on every tensor, so after a few epochs of QAT the converter gives
a model whose every op between the input QUANTIZE and the output DEQUANTIZE runs in int8. The model
(`tfopt.demo.model.digits_transformer`): each 8x8 digit cut into 16 tokens of 2x2 pixels, a Dense projection plus a
learned position Embedding, 2 encoder blocks (4-head attention, LayerNorm, GELU feed-forward), pooling, Dense; 18k
weights. Runtime on 2 CPU cores: ~1.5 min (`--quick`: ~40 s). Data: scikit-learn's digits.

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


def train(model, x, y, epochs, rate, callbacks=()):
    model.compile(keras.optimizers.AdamW(rate), LOSS, metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=list(callbacks))
    return model


def prune_heads_and_neurons(model, x, y, epochs):
    """Half the heads of each attention and half the neurons of each feed-forward, dropped over the first half of
    `epochs` while training on, then removed."""
    schedule = tfopt.prune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=len(x) // 32 * epochs // 2, frequency=20)
    pruned = tfopt.prune.prune_low_magnitude(model, schedule, structure="head")
    pruned = tfopt.prune.prune_low_magnitude(pruned, schedule, structure="channel",
                                             layers=lambda layer: layer.name.endswith("_hidden"))
    train(pruned, x, y, epochs, 1e-3, callbacks=[tfopt.prune.UpdatePruningStep()])
    return tfopt.prune.strip_pruning(pruned, shrink=True)


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs, for smoke tests")
    parser.add_argument("--out", default="digits_transformer_int8.tflite", help="the int8 file to write")
    args = parser.parse_args(argv)
    epochs, prune_epochs, qat_epochs = (10, 3, 2) if args.quick else (30, 10, 5)
    split = load_digits_split()
    x_train, x_test = digit_tokens(split.x_train), digit_tokens(split.x_test)

    model = train(digits_transformer(), x_train, split.y_train, epochs, 2e-3)
    small = prune_heads_and_neurons(model, x_train, split.y_train, prune_epochs)
    qat = train(tfopt.quantize.quantize_model(small), x_train, split.y_train, qat_epochs, 2e-4)
    int8 = tfopt.export.to_tflite(qat, "int8", path=args.out, overwrite=True)
    float32 = tfopt.export.to_tflite(model)

    int8_predictions = tfopt.export.predict(int8, x_test).argmax(axis=1)
    agreement = float(np.mean(int8_predictions == qat.predict(x_test, verbose=0).argmax(axis=1)))
    print(f"float Keras accuracy {accuracy(model, x_test, split.y_test):.4f}, {model.count_params()} weights")
    print(f"pruned, shrunk       {accuracy(small, x_test, split.y_test):.4f}, {small.count_params()} weights "
          f"({small.get_layer('block0_attention').num_heads} heads, {small.get_layer('block0_hidden').units} neurons)")
    print(f"QAT Keras accuracy   {accuracy(qat, x_test, split.y_test):.4f}")
    print(f"int8 TFLite accuracy {float(np.mean(int8_predictions == split.y_test)):.4f} (agrees with QAT Keras on "
          f"{agreement:.1%})")
    summary, float_summary = tfopt.export.inspect(int8), tfopt.export.inspect(float32)
    print(f"file {len(int8) / 1024:.1f} KiB int8 vs {len(float32) / 1024:.1f} KiB float32 (constants "
          f"{summary.constant_bytes / 1024:.1f} vs {float_summary.constant_bytes / 1024:.1f} KiB: the rest is graph "
          f"structure); float ops inside: {tfopt.export.float_ops_inside(int8) or 'none'}")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
