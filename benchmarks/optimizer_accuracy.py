"""Every optimizer's digits test accuracy after 5 epochs, as a Markdown table (docs/optimizer_accuracy.md).

Each optimizer of `tfopt.optimizers.__all__` (the wrappers around Keras's Adam) and Keras's Adam, AdamW and
SGD(momentum=0.9) train the same small CNN on scikit-learn's digits for 5 epochs at batch 32, with their default
hyper-parameters except the learning rate. The rate is the one of default x 1/3, 1, 3, 10, 30, 100 whose model
(seed 0) scores best on a validation set, a stratified 20% of the demo's training split (ties: the lower validation
loss); Prodigy and DAdaptAdam, which estimate their own step size, keep their 1.0. At that rate seeds 1 and 2 train
too (a seed sets the initial weights and the shuffling): the table gives the three seeds' test accuracy, mean ±
sample std (min-max), and their final training loss (the last epoch's mean, as `fit` logs it), averaged.

The model is not the demo's `digits_cnn`: its BatchNorm moving statistics (momentum 0.99) still lag after these
~180 steps, so test accuracy measured them more than the optimizer (RAdam: 0.997 training accuracy in `fit`, 0.67
on the same images in inference). TensorFlow is held to one thread. Runtime: 27 min on 2 cores that five other busy
processes shared (`--quick`, three optimizers, one epoch, no file written: 35 s).

Example:
    python benchmarks/optimizer_accuracy.py
"""

import argparse
import datetime
import inspect
import math
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import time
from typing import NamedTuple

import _timing
import keras
import tensorflow as tf
from sklearn.model_selection import train_test_split

import tfopt
from tfopt.demo.data import BATCH_SIZE, load_digits_split
from tfopt.demo.model import compile_for_digits

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "optimizer_accuracy.md"
FACTORS = (1 / 3, 1, 3, 10, 30, 100)
SELF_TUNING = ("Prodigy", "DAdaptAdam")  # their rate scales the step size they estimate; their authors advise 1.0
QUICK = ("Adam", "RAdam", "Lookahead(Adam)")


class Run(NamedTuple):
    validation_accuracy: float
    validation_loss: float
    test_accuracy: float
    train_loss: float


def _default_rate(cls):
    return inspect.signature(cls).parameters["learning_rate"].default


def optimizers():
    """{name: (make(learning_rate), default learning rate)}: Keras's three, then tfopt's, wrappers around Adam."""
    adam = keras.optimizers.Adam
    table = {
        "Adam": (adam, _default_rate(adam)),
        "AdamW": (keras.optimizers.AdamW, _default_rate(keras.optimizers.AdamW)),
        "SGD(momentum=0.9)": (lambda rate: keras.optimizers.SGD(rate, momentum=0.9),
                              _default_rate(keras.optimizers.SGD)),
    }
    for name in tfopt.optimizers.__all__:
        cls = getattr(tfopt.optimizers, name)
        if "inner_optimizer" in inspect.signature(cls).parameters:
            table[f"{name}(Adam)"] = (lambda rate, cls=cls: cls(adam(rate)), _default_rate(adam))
        else:
            table[name] = (cls, _default_rate(cls))
    return table


def small_cnn(seed):
    """Conv-ReLU-pool twice and a Dense layer giving 10 logits: 6k weights, no BatchNorm."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(10),
    ])


def splits():
    """{"train": (x, y), "validation": dataset, "test": dataset}: the demo's split, its training part cut 80/20."""
    split = load_digits_split()
    x_train, x_val, y_train, y_val = train_test_split(split.x_train, split.y_train, test_size=0.2, random_state=0,
                                                      stratify=split.y_train)

    def batched(x, y):
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(512).cache()

    return {"train": (x_train, y_train), "validation": batched(x_val, y_val),
            "test": batched(split.x_test, split.y_test)}


def train(make, rate, seed, data, epochs):
    """The `Run` of one model trained with `make(rate)` from `seed`."""
    model = compile_for_digits(small_cnn(seed), make(rate))
    x, y = data["train"]
    batches = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(BATCH_SIZE)
    history = model.fit(batches, epochs=epochs, verbose=0, shuffle=False)
    validation_loss, validation_accuracy = model.evaluate(data["validation"], verbose=0)
    return Run(validation_accuracy, validation_loss, model.evaluate(data["test"], verbose=0)[1],
               history.history["loss"][-1])


def measure(name, make, default, data, factors, seeds, epochs):
    """({factor: seed 0's Run}, the best factor, [Run per seed at it])."""
    grid = {factor: train(make, default * factor, 0, data, epochs)
            for factor in ((1,) if name in SELF_TUNING else factors)}

    def score(factor):
        run = grid[factor]
        return run.validation_accuracy, -run.validation_loss if math.isfinite(run.validation_loss) else -math.inf

    best = max(grid, key=score)
    return grid, best, [grid[best], *(train(make, default * best, seed, data, epochs) for seed in range(1, seeds))]


def _factor(factor):
    return "1/3" if factor < 1 else f"{factor:g}"


def row(name, default, grid, best, runs):
    """One Markdown table row."""
    accuracy = [run.test_accuracy for run in runs]
    tried = " / ".join(f"**{grid[f].validation_accuracy:.3f}**" if f == best else f"{grid[f].validation_accuracy:.3f}"
                       for f in grid)
    return (f"| {name} | {default * best:.2g} (default {default:g} x {_factor(best)}) | "
            f"{statistics.mean(accuracy):.3f} ± {statistics.stdev(accuracy):.3f} "
            f"({min(accuracy):.3f}-{max(accuracy):.3f}) | "
            f"{statistics.mean(run.train_loss for run in runs):.4f} | {tried} |")


def _cpu():
    """The CPU's model name (Linux), else what `platform` knows."""
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or platform.machine())


def provenance(argv, minutes):
    """The line saying which command made the table, when, on what machine and from which tfopt commit."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "tfopt"], capture_output=True, text=True).stdout
    return (f"Made by `{shlex.join(['python', 'benchmarks/optimizer_accuracy.py', *argv])}` on "
            f"{datetime.date.today().isoformat()} in {minutes:.1f} min: tfopt at {commit or 'an unknown commit'}"
            f"{' with uncommitted changes' if dirty else ''}, Python {platform.python_version()}, TensorFlow "
            f"{tf.__version__}, Keras {keras.__version__}; {platform.system()} {platform.machine()}, {_cpu()}, "
            f"{os.cpu_count()} cores, TensorFlow held to 1 thread.")


def markdown(rows, header, factors, seeds, epochs):
    """The document: title, how it was made, the rule, the table."""
    return "\n".join([
        f"# Digits accuracy after {epochs} epochs, every optimizer",
        "",
        header,
        "",
        "A 6k-weight CNN (two Conv-ReLU-pool blocks, one Dense layer) trains on scikit-learn's digits for "
        f"{epochs} epochs at batch 32 with each optimizer's default hyper-parameters except the learning rate: the "
        f"best by validation accuracy (seed 0) of the default x {', '.join(map(_factor, factors))} (validation: a "
        "stratified 20% of the training split; the test split is never used to choose). Prodigy and DAdaptAdam "
        f"estimate their own step size and keep their rate of 1.0. Then seeds 1 to {seeds - 1} (initial weights and "
        f"shuffling) train at that rate. Test accuracy: mean ± sample std (min-max) over the {seeds} seeds; final "
        "train loss: the last epoch's mean training loss, averaged over the seeds. The wrappers wrap Keras's `Adam`.",
        "",
        "| optimizer | learning rate | test accuracy | final train loss | validation accuracy at each rate "
        "(chosen in bold) |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{', '.join(QUICK)} only, default rates, 2 seeds, 1 epoch; writes no file")
    parser.add_argument("--out", type=pathlib.Path, help=f"the Markdown file (default {OUT.relative_to(ROOT)}; "
                                                         "--quick: none)")
    args = parser.parse_args(argv)
    print(_timing.one_thread())
    factors, seeds, epochs = ((1,), 2, 1) if args.quick else (FACTORS, 3, 5)
    data, start, rows = splits(), time.monotonic(), []
    for name, (make, default) in optimizers().items():
        if args.quick and name not in QUICK:
            continue
        rows.append(row(name, default, *measure(name, make, default, data, factors, seeds, epochs)))
        print(rows[-1], flush=True)
    text = markdown(rows, provenance(argv, (time.monotonic() - start) / 60), factors, seeds, epochs)
    print(text)
    out = args.out or (None if args.quick else OUT)
    if out:
        out.write_text(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
