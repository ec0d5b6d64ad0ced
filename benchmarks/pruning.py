"""Training step time with pruning ÷ without, for tfopt on Keras 3 and for tfmot on tf_keras, in one run.

The digits CNN trains on a `tf.data` pipeline, batch 32, pruned to 80% with a mask update every 10 steps.
Keras 3 (tfopt's own pruning) is measured in this process; tf_keras (tfmot) in a child process started with
TF_USE_LEGACY_KERAS=1, on the same CNN carried over with `tfopt.compat.to_tf_keras`. Plain and pruned fits
alternate and medians are compared. Goal: tfopt's overhead no larger than tfmot's.

Example:
    python benchmarks/pruning.py --repeats 9
"""

import argparse
import os
import statistics
import subprocess
import sys
import time


def _measure(plain, pruned, dataset, callbacks, steps, repeats):
    for model, extra in ((plain, []), (pruned, callbacks)):  # trace before timing
        model.fit(dataset, epochs=1, steps_per_epoch=5, verbose=0, callbacks=extra)
    times = {"plain": [], "pruned": []}
    for _ in range(repeats):
        for name, model, extra in (("plain", plain, []), ("pruned", pruned, callbacks)):
            start = time.perf_counter()
            model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=extra)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["pruned"]) / statistics.median(times["plain"])


def _setup():
    import tensorflow as tf

    from tfopt.demo.data import load_digits_split
    from tfopt.demo.model import digits_cnn

    split = load_digits_split()
    dataset = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(32).repeat()
    return dataset, digits_cnn


def keras3_ratio(steps, repeats):
    import keras

    import tfopt

    dataset, digits_cnn = _setup()
    schedule = tfopt.prune.ConstantSparsity(0.8, begin_step=0, frequency=10)
    plain, pruned = digits_cnn(), tfopt.prune.prune_low_magnitude(digits_cnn(), schedule)
    for model in (plain, pruned):
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return _measure(plain, pruned, dataset, [tfopt.prune.UpdatePruningStep()], steps, repeats)


def tf_keras_ratio(steps, repeats):
    import tensorflow_model_optimization as tfmot
    import tf_keras

    import tfopt

    dataset, digits_cnn = _setup()
    plain, base = tfopt.compat.to_tf_keras(digits_cnn()), tfopt.compat.to_tf_keras(digits_cnn())
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.8, begin_step=0, frequency=10)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
    for model in (plain, pruned):
        model.compile(tf_keras.optimizers.Adam(1e-3), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return _measure(plain, pruned, dataset, [tfmot.sparsity.keras.UpdatePruningStep()], steps, repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=45)
    parser.add_argument("--tf-keras-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tf_keras_only:
        print(f"{tf_keras_ratio(args.steps, args.repeats):.4f}")
        return
    ours = keras3_ratio(args.steps, args.repeats)
    child = subprocess.run(
        [sys.executable, __file__, "--tf-keras-only", "--steps", str(args.steps), "--repeats", str(args.repeats)],
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1"}, capture_output=True, text=True, check=True,
    )
    theirs = float(child.stdout.strip().splitlines()[-1])
    print(f"digits CNN, 80% sparsity, median of {args.repeats} x {args.steps} steps")
    print(f"tfopt (Keras 3) pruned ÷ plain step time: {ours:.3f}")
    print(f"tfmot (tf_keras) pruned ÷ plain step time: {theirs:.3f}")
    print(f"goal: tfopt's overhead no larger than tfmot's; difference {100 * (ours - theirs):+.1f} points of step time")


if __name__ == "__main__":
    main()
