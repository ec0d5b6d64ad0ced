"""Distil a big model into a small one when most of your inputs have no label.

Story: you have a trained model that is too big to ship, a pile of inputs, and labels for only a tenth of them. You
train the small model on every input with `tfopt.distill.Distiller`: the teacher's softened outputs teach it where
there is no label (label -1), the labels where there are. Against the small model trained on the labeled tenth
alone, it gains about 15 points here (0.81 -> 0.96). Runtime on 2 CPU cores: ~30 s (`--quick`: ~20 s). Data:
scikit-learn's digits.

Example:
    python examples/distill_with_few_labels.py --quick
"""

import argparse
import sys

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tfopt

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp(width, depth, seed):
    keras.utils.set_random_seed(seed)
    hidden = [keras.layers.Dense(width, activation="relu") for _ in range(depth)]
    return keras.Sequential([keras.Input((64,)), *hidden, keras.layers.Dense(10)])


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs, for smoke tests")
    args = parser.parse_args(argv)
    epochs = 15 if args.quick else 60
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )

    # The model you have: trained on every label you ever had.
    teacher = mlp(256, 2, seed=0)
    teacher.compile("adam", CE)
    teacher.fit(x_train, y_train, epochs=20, verbose=0)

    # Now only a tenth of the inputs keep their label; the rest are marked -1.
    labeled = np.random.default_rng(0).permutation(len(y_train))[: len(y_train) // 10]
    few_labels = np.full_like(y_train, -1)
    few_labels[labeled] = y_train[labeled]

    alone = mlp(24, 1, seed=1)  # ~47x fewer parameters than the teacher
    alone.compile("adam", CE)
    alone.fit(x_train[labeled], y_train[labeled], epochs=epochs, verbose=0)

    distiller = tfopt.distill.Distiller(teacher, mlp(24, 1, seed=1), tfopt.distill.SoftTargets(temperature=4.0),
                                        student_loss_weight=0.5)
    distiller.compile("adam", loss=CE, metrics=["accuracy"])
    distiller.fit(x_train, few_labels, epochs=epochs, verbose=0)

    results = {
        f"teacher ({teacher.count_params()} parameters)": accuracy(teacher, x_test, y_test),
        f"student on the {len(labeled)} labels alone ({alone.count_params()} parameters)":
            accuracy(alone, x_test, y_test),
        "student distilled on every input": accuracy(distiller.student, x_test, y_test),
    }
    for name, value in results.items():
        print(f"{name:<58} test accuracy {value:.4f}")
    alone_accuracy, distilled_accuracy = list(results.values())[1:]
    if not args.quick:
        assert distilled_accuracy > alone_accuracy, f"expected distillation to help: {results}"
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
