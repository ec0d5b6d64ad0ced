"""The demo's pruning stage: the student distilled from the teacher while its kernels are pruned to 80%.

Example:
    >>> from tfopt.demo.prune_stage import distill_and_prune  # doctest: +SKIP
    >>> pruned, accuracy = distill_and_prune(split, teacher, digits_student(), epochs=30, log=print)  # doctest: +SKIP
"""

import math

import keras

import tfopt
from tfopt.demo.data import BATCH_SIZE, batches

TARGET_SPARSITY = 0.8
LEARNING_RATE = 3e-3
TEMPERATURE = 4.0


def distiller_for(teacher, student, optimizer):
    """A `tfopt.distill.Distiller` with soft targets at `TEMPERATURE`, compiled for the digits labels."""
    distiller = tfopt.distill.Distiller(teacher, student, tfopt.distill.SoftTargets(TEMPERATURE))
    distiller.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    return distiller


def distill_and_prune(split, teacher, student, epochs, log):
    """Trains `student` from the teacher's soft targets and the labels while its kernels' sparsity rises to 80%
    (Zhu & Gupta's polynomial schedule over the first two thirds of the steps, Adam on a cosine-decaying rate);
    returns the stripped plain Keras student and its test accuracy."""
    steps = epochs * math.ceil(len(split.x_train) / BATCH_SIZE)
    schedule = tfopt.prune.PolynomialDecay(
        initial=0.0, final=TARGET_SPARSITY, begin_step=0, end_step=2 * steps // 3, frequency=max(1, steps // 30)
    )
    rate = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    distiller = distiller_for(teacher, tfopt.prune.prune_low_magnitude(student, schedule), keras.optimizers.Adam(rate))
    distiller.fit(batches(split.x_train, split.y_train, True), epochs=epochs, verbose=0, shuffle=False,
                  callbacks=[tfopt.prune.UpdatePruningStep()])
    stripped = tfopt.prune.strip_pruning(distiller.student)
    accuracy = float(keras.ops.mean(keras.ops.argmax(stripped.predict(split.x_test, verbose=0), -1) == split.y_test))
    table = tfopt.prune.sparsity(stripped)
    log(f"Student distilled (SoftTargets, T={TEMPERATURE:g}) while pruned to 80%: "
        + ", ".join(f"{row.name} {row.sparsity:.0%}" for row in table) + f"; test accuracy {accuracy:.4f}")
    return stripped, accuracy
