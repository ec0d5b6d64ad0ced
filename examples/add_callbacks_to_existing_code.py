"""Add tfopt's LR range test and one-cycle policy to Keras code you already have.

Story: you have a Keras model, an optimizer with a float learning rate and a `model.fit` call. Without changing any
of them, you find a learning rate with `find_lr` and train with `OneCyclePolicy` as one more callback.
Runtime on 2 CPU cores: ~15 s (`--quick`: ~5 s). Data: scikit-learn's digits, no download.

Example:
    python examples/add_callbacks_to_existing_code.py --quick
"""

import argparse
import sys

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tfopt


def existing_code():
    """The user's code as it was: data, model, optimizer, compile."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model, (x_train, y_train), (x_test, y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs, for smoke tests")
    args = parser.parse_args(argv)
    epochs, batch_size = (3, 32) if args.quick else (15, 32)

    model, (x_train, y_train), (x_test, y_test) = existing_code()

    # 1. The LR range test: weights and optimizer state are untouched afterwards.
    finder = tfopt.callbacks.find_lr(model, x_train, y_train, batch_size=batch_size, num_steps=100)
    max_lr = finder.suggestion()
    print(f"find_lr suggests a learning rate of {max_lr:.3g}")

    # 2. The same fit call with one more callback: one-cycle learning rate and momentum, batch by batch.
    total_steps = epochs * -(-len(x_train) // batch_size)
    one_cycle = tfopt.callbacks.OneCyclePolicy(max_lr=max_lr, total_steps=total_steps)
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[one_cycle])

    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy after {epochs} one-cycle epochs: {accuracy:.4f}")
    target = 0.85 if args.quick else 0.95
    assert accuracy >= target, f"expected test accuracy >= {target}, got {accuracy:.4f}"
    return accuracy


if __name__ == "__main__":
    main(sys.argv[1:])
