"""The demo's pruning stage: fine-tune the trained CNN to 80% sparse kernels with `tfopt.prune`.

Example:
    >>> from tfopt.demo.prune_stage import prune  # doctest: +SKIP
    >>> pruned, accuracy = prune(split, trained_model, epochs=6, log=print)  # doctest: +SKIP
"""

import math

import keras

import tfopt
from tfopt.demo.data import BATCH_SIZE, batches
from tfopt.demo.model import compile_for_digits

TARGET_SPARSITY = 0.8


def prune(split, model, epochs, log):
    """Fine-tunes `model` while its kernels' sparsity rises to 80% (Zhu & Gupta's polynomial schedule over the
    first two thirds of the steps); returns the stripped plain Keras model and its test accuracy."""
    steps = epochs * math.ceil(len(split.x_train) / BATCH_SIZE)
    schedule = tfopt.prune.PolynomialDecay(
        initial=0.0, final=TARGET_SPARSITY, begin_step=0, end_step=2 * steps // 3, frequency=max(1, steps // 30)
    )
    pruned = compile_for_digits(tfopt.prune.prune_low_magnitude(model, schedule), keras.optimizers.Adam(1e-3))
    pruned.fit(batches(split.x_train, split.y_train, True), epochs=epochs, verbose=0, shuffle=False,
               callbacks=[tfopt.prune.UpdatePruningStep()])
    stripped = compile_for_digits(tfopt.prune.strip_pruning(pruned), keras.optimizers.Adam(1e-3))
    _, accuracy = stripped.evaluate(batches(split.x_test, split.y_test, False), verbose=0)
    table = tfopt.prune.sparsity(stripped)
    log("Pruned to 80% during fine-tuning: " + ", ".join(f"{row.name} {row.sparsity:.0%}" for row in table))
    return stripped, float(accuracy)
