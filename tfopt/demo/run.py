"""The demo pipeline on the digits: LR range test, one-cycle training at the suggested rate, pruning to 80%.

Example:
    >>> from tfopt.demo import run
    >>> results = run("/tmp/tfopt-demo", quick=True)  # doctest: +SKIP
"""

import math
import os

import keras

import tfopt
from tfopt.demo.data import BATCH_SIZE, batches, load_digits_split
from tfopt.demo.model import compile_for_digits, digits_cnn
from tfopt.demo.prune_stage import prune
from tfopt.demo.sizes import tflite_sizes

ACCURACY_TARGET = 0.95


def _find_rate(split, out, log):
    model = compile_for_digits(digits_cnn(), keras.optimizers.AdamW(1e-3))
    finder = tfopt.callbacks.find_lr(model, batches(split.x_train, split.y_train, True), num_steps=100)
    path = finder.plot(os.path.join(out, "lr_find.png"))
    rate = finder.suggestion()
    log(f"LR range test: {len(finder.lrs)} steps from {finder.lrs[0]:.1e} to {finder.lrs[-1]:.1e}; "
        f"suggested rate {rate:.2e} -> {path}")
    return rate


def _train_one_cycle(split, max_lr, epochs, out, log):
    train = batches(split.x_train, split.y_train, True)
    total_steps = epochs * math.ceil(len(split.x_train) / BATCH_SIZE)
    schedule = tfopt.schedules.OneCycle(max_lr=max_lr, total_steps=total_steps)
    path = tfopt.schedules.plot(schedule, total_steps, os.path.join(out, "schedule.png"))
    log(f"Training {epochs} epochs with AdamW + OneCycle(max_lr={max_lr:.2e}, total_steps={total_steps}) -> {path}")
    model = compile_for_digits(digits_cnn(), keras.optimizers.AdamW(learning_rate=schedule))
    model.fit(train, epochs=epochs, verbose=0, shuffle=False)  # the dataset shuffles itself
    _, accuracy = model.evaluate(batches(split.x_test, split.y_test, False), verbose=0)
    return model, float(accuracy)


def _summary(rows, log):
    log(f"\n{'stage':<22}{'test accuracy':>14}{'TFLite KB':>11}{'gzipped KB':>12}")
    for stage, accuracy, (raw, gzipped) in rows:
        log(f"{stage:<22}{accuracy:>14.4f}{raw / 1024:>11.1f}{gzipped / 1024:>12.1f}")


def run(out="tfopt-demo", quick=False, log=print):
    """Runs every stage, writes its figures to `out`, and returns a dict of the headline numbers."""
    os.makedirs(out, exist_ok=True)
    split = load_digits_split()
    log(f"Digits: {len(split.x_train)} training and {len(split.x_test)} test images (80/20 split).")
    max_lr = _find_rate(split, out, log)
    epochs = 4 if quick else 20
    dense, accuracy = _train_one_cycle(split, max_lr, epochs, out, log)
    verdict = "met" if accuracy >= ACCURACY_TARGET else "NOT met"
    log(f"Test accuracy: {accuracy:.4f} (target >= {ACCURACY_TARGET}: {verdict})")
    pruned, pruned_accuracy = prune(split, dense, epochs=2 if quick else 8, log=log)
    rows = [("dense (OneCycle)", accuracy, tflite_sizes(dense)), ("80% sparse", pruned_accuracy, tflite_sizes(pruned))]
    _summary(rows, log)
    return {
        "suggested_lr": max_lr,
        "test_accuracy": accuracy,
        "pruned_accuracy": pruned_accuracy,
        "dense_gzipped_bytes": rows[0][2][1],
        "pruned_gzipped_bytes": rows[1][2][1],
    }
