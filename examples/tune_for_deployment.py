"""Tune for the model you ship: the best int8 TFLite accuracy under a size budget, with KerasTuner.

Story: your phone app has room for a 20 KB model. A usual KerasTuner search ranks the float Keras model, so its
winner may be too big, or lose accuracy once quantized. `tfopt.tuning.DeploymentTuner` exports every trial to int8
TFLite, scores the file with the LiteRT interpreter and never ranks a trial over the budget best. The search space
(optimizer, learning-rate schedule, network width) comes from `tfopt.tuning`'s spaces; the Pareto plot shows what
each extra kilobyte buys. Runtime on 2 CPU cores: ~25 s (`--quick`: ~10 s). Data: scikit-learn's digits.

Example:
    python examples/tune_for_deployment.py --quick
"""

import argparse
import pathlib
import sys
import tempfile
import time

import keras
import keras_tuner

import tfopt
from tfopt.demo.data import load_digits_split

BATCH_SIZE = 32


def hypermodel(steps_per_epoch, epochs):
    """The search space: width of a small CNN, the optimizer and its learning-rate schedule."""

    def build(hp):
        width = hp.Choice("width", [4, 8, 16, 32])
        model = keras.Sequential([
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ])
        rate = tfopt.tuning.schedule(hp, total_steps=steps_per_epoch * epochs, choices=["constant", "one_cycle"])
        optimizer = tfopt.tuning.optimizer(hp, choices=["adam", "radam", "lookahead_adam"], learning_rate=rate)
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    return build


def validation_split(digits):
    """The training images split 80/20 into training and validation (the test split stays for the end)."""
    cut = int(0.8 * len(digits.x_train))
    return digits.x_train[:cut], digits.y_train[:cut], digits.x_train[cut:], digits.y_train[cut:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and epochs, for smoke tests")
    parser.add_argument("--trials", type=int, default=None, help="trials to run (default 6, --quick 3)")
    parser.add_argument("--budget-kb", type=float, default=20.0, help="largest int8 file allowed, in KiB")
    parser.add_argument("--out", default=None, help="folder for the search and the plot (default: a temporary one)")
    args = parser.parse_args(argv)
    trials, epochs = (args.trials or (3 if args.quick else 6)), (4 if args.quick else 10)
    out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="tfopt-tuning-"))

    digits = load_digits_split()
    x_train, y_train, x_val, y_val = validation_split(digits)
    steps_per_epoch = -(-len(x_train) // BATCH_SIZE)
    tuner = tfopt.tuning.DeploymentTuner(
        hypermodel(steps_per_epoch, epochs),
        keras_tuner.oracles.RandomSearchOracle(max_trials=trials, seed=1),  # KerasTuner reads seed=0 as "none"
        quantization="int8",
        max_size_kb=args.budget_kb,
        directory=str(out),
        project_name="digits",
        overwrite=True,
    )
    start = time.perf_counter()
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=BATCH_SIZE)
    print(f"{trials} trials in {time.perf_counter() - start:.0f} s")

    best = tuner.best_trials()[0]
    shipped = tuner.tflite_path(best.trial_id)
    test = tfopt.export.evaluate(shipped, digits.x_test, digits.y_test, task="classification")
    print(f"best trial {best.trial_id}: {best.hyperparameters.values}")
    print(f"its int8 file {shipped} ({best.metrics.get_last_value('tflite_size_kb'):.1f} KiB, budget "
          f"{args.budget_kb:g}): test accuracy {test['accuracy']:.4f}")
    front = tfopt.tuning.pareto(tuner)
    print("Pareto front (KiB, int8 accuracy):", [(round(p.x, 1), round(p.y, 4)) for p in front.front])
    print("plot:", front.plot(out / "pareto.png", budget=args.budget_kb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
