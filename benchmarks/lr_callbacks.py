"""Fit time with tfopt's per-batch LR callbacks ÷ the same fit without them, measured side by side in one run.

Model: the demo's digits CNN, batch 32, a `tf.data` pipeline, `verbose=0`. Repeats are interleaved (plain,
LRScheduler, OneCyclePolicy, plain, ...) and the medians compared, so machine noise hits all three alike.
Goal: LRScheduler ÷ plain <= 1.05.

Example:
    python benchmarks/lr_callbacks.py --repeats 7
"""

import argparse
import statistics
import time

import keras
import tensorflow as tf

import tfopt
from tfopt.demo.data import load_digits_split
from tfopt.demo.model import compile_for_digits, digits_cnn


def _callbacks(kind, total_steps):
    if kind == "LRScheduler":
        return [tfopt.callbacks.LRScheduler(tfopt.schedules.OneCycle(max_lr=1e-2, total_steps=total_steps))]
    if kind == "OneCyclePolicy":
        return [tfopt.callbacks.OneCyclePolicy(max_lr=1e-2, total_steps=total_steps)]
    return []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    split = load_digits_split()
    dataset = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(32).cache()
    total_steps = args.epochs * int(dataset.cardinality())
    kinds = ["plain", "LRScheduler", "OneCyclePolicy"]
    models = {kind: compile_for_digits(digits_cnn(), keras.optimizers.AdamW(1e-3)) for kind in kinds}
    for kind, model in models.items():  # trace and warm up every train function first
        model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=_callbacks(kind, total_steps))
    times = {kind: [] for kind in kinds}
    for _ in range(args.repeats):
        for kind in kinds:
            callbacks = _callbacks(kind, total_steps)
            start = time.perf_counter()
            models[kind].fit(dataset, epochs=args.epochs, verbose=0, shuffle=False, callbacks=callbacks)
            times[kind].append(time.perf_counter() - start)
    plain = statistics.median(times["plain"])
    print(f"digits CNN, {total_steps} steps per fit, median of {args.repeats} interleaved fits")
    print(f"plain fit: {plain:.3f} s ({total_steps / plain:.0f} steps/s)")
    for kind in kinds[1:]:
        ratio = statistics.median(times[kind]) / plain
        goal = " (goal <= 1.05)" if kind == "LRScheduler" else ""
        print(f"{kind} / plain: {ratio:.3f}{goal}")


if __name__ == "__main__":
    main()
