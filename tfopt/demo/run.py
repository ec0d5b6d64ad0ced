"""The demo pipeline: LR range test, then one-cycle training at the suggested rate, on the digits.

Example:
    >>> from tfopt.demo import run
    >>> results = run("/tmp/tfopt-demo", quick=True)  # doctest: +SKIP
"""

import math
import os

import keras
import tensorflow as tf

import tfopt
from tfopt.demo.data import load_digits_split
from tfopt.demo.model import compile_for_digits, digits_cnn

BATCH_SIZE = 32
ACCURACY_TARGET = 0.95


def _batches(x, y, shuffle):
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=0, reshuffle_each_iteration=True)
    return dataset.batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE)


def _find_rate(split, out, log):
    model = compile_for_digits(digits_cnn(), keras.optimizers.AdamW(1e-3))
    finder = tfopt.callbacks.find_lr(model, _batches(split.x_train, split.y_train, True), num_steps=100)
    path = finder.plot(os.path.join(out, "lr_find.png"))
    rate = finder.suggestion()
    log(f"LR range test: {len(finder.lrs)} steps from {finder.lrs[0]:.1e} to {finder.lrs[-1]:.1e}; "
        f"suggested rate {rate:.2e} -> {path}")
    return rate


def _train_one_cycle(split, max_lr, epochs, out, log):
    train = _batches(split.x_train, split.y_train, True)
    total_steps = epochs * math.ceil(len(split.x_train) / BATCH_SIZE)
    schedule = tfopt.schedules.OneCycle(max_lr=max_lr, total_steps=total_steps)
    path = tfopt.schedules.plot(schedule, total_steps, os.path.join(out, "schedule.png"))
    log(f"Training {epochs} epochs with AdamW + OneCycle(max_lr={max_lr:.2e}, total_steps={total_steps}) -> {path}")
    model = compile_for_digits(digits_cnn(), keras.optimizers.AdamW(learning_rate=schedule))
    model.fit(train, epochs=epochs, verbose=0, shuffle=False)  # the dataset shuffles itself
    _, accuracy = model.evaluate(_batches(split.x_test, split.y_test, False), verbose=0)
    return model, float(accuracy)


def run(out="tfopt-demo", quick=False, log=print):
    """Runs every stage, writes its figures to `out`, and returns a dict of the headline numbers."""
    os.makedirs(out, exist_ok=True)
    split = load_digits_split()
    log(f"Digits: {len(split.x_train)} training and {len(split.x_test)} test images (80/20 split).")
    max_lr = _find_rate(split, out, log)
    epochs = 4 if quick else 20
    _, accuracy = _train_one_cycle(split, max_lr, epochs, out, log)
    verdict = "met" if accuracy >= ACCURACY_TARGET else "NOT met"
    log(f"Test accuracy: {accuracy:.4f} (target >= {ACCURACY_TARGET}: {verdict})")
    return {"suggested_lr": max_lr, "test_accuracy": accuracy}
