"""Swap the optimizer of existing Keras code for a tfopt one, and wrap it.

Story: your code trains with `keras.optimizers.Adam`. You change one line to try RAdam wrapped in Lookahead, and
another to train the same model with sharpness-aware minimization — the data, the model and `fit` stay as they were.
Runtime on 2 CPU cores: ~30 s (`--quick`: ~10 s). Data: scikit-learn's digits, no download.

Example:
    python examples/swap_the_optimizer.py --quick
"""

import argparse
import sys

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tfopt


def existing_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])


def train(model, optimizer, data, epochs):
    (x_train, y_train), (x_test, y_test) = data
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)
    return model.evaluate(x_test, y_test, verbose=0)[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs, for smoke tests")
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else 10
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    data = ((x_train, y_train), (x_test, y_test))

    runs = {
        "keras Adam (before)": (existing_model(), keras.optimizers.Adam(1e-3)),
        # the one-line swap: any tfopt optimizer, wrapped in any tfopt wrapper (RAdam warms itself up: a
        # larger rate than Adam's is safe)
        "tfopt Lookahead(RAdam)": (existing_model(), tfopt.optimizers.Lookahead(tfopt.optimizers.RAdam(1e-2))),
        # sharpness-aware minimization: wrap the model, keep the optimizer
        "tfopt SharpnessAware + Adam": (tfopt.models.SharpnessAware(existing_model()), keras.optimizers.Adam(1e-3)),
    }
    accuracies = {name: train(model, optimizer, data, epochs) for name, (model, optimizer) in runs.items()}
    for name, accuracy in accuracies.items():
        print(f"{name:<30} test accuracy {accuracy:.4f}")
    target = 0.85 if args.quick else 0.95
    assert min(accuracies.values()) >= target, f"expected every test accuracy >= {target}: {accuracies}"
    return accuracies


if __name__ == "__main__":
    main(sys.argv[1:])
