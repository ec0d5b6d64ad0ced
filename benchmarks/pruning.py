"""Training step time with pruning ÷ without, for tfopt on Keras 3 and for tfmot on tf_keras, in one run.

The digits CNN trains on a `tf.data` pipeline, batch 32, Adam, pruned to 80% with a mask update every 10 steps.
Keras 3 (tfopt's own pruning) is measured in this process; tf_keras (tfmot) in a worker process started with
TF_USE_LEGACY_KERAS=1, on the same CNN carried over with `tfopt.compat.to_tf_keras`. The two processes take
turns round by round; in a round each of a process's models (plain, pruned, and a second plain one as a control)
fits `--steps` steps twice, in turns (plain, pruned, control, plain, pruned, control); new models are built
every few rounds. TensorFlow is held to one thread and each process's CPU time is measured. Printed: each ratio's
median over the rounds and its spread (min-max).
Goal: tfopt's overhead no larger than tfmot's.

Runtime on 2 shared cores: ~3 min (`--quick`: ~40 s).

Example:
    python benchmarks/pruning.py --rounds 21
"""

import argparse
import statistics
import sys

import _timing

SIDES = ("tfopt (Keras 3)", "tfmot (tf_keras)")


def _keras3_models():
    """(keras, {"plain", "pruned", "control": make()}, the pruned model's callbacks) for tfopt on Keras 3."""
    import keras

    import tfopt
    from tfopt.demo.model import digits_cnn

    schedule = tfopt.prune.ConstantSparsity(0.8, begin_step=0, frequency=10)
    models = {"plain": digits_cnn, "pruned": lambda: tfopt.prune.prune_low_magnitude(digits_cnn(), schedule),
              "control": digits_cnn}
    return keras, models, [tfopt.prune.UpdatePruningStep()]


def _tf_keras_models():
    """The same for tfmot's pruning on tf_keras."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    import tfopt
    from tfopt.demo.model import digits_cnn

    def plain():
        return tfopt.compat.to_tf_keras(digits_cnn())

    def pruned():
        schedule = tfmot.sparsity.keras.ConstantSparsity(0.8, begin_step=0, frequency=10)
        return tfmot.sparsity.keras.prune_low_magnitude(plain(), pruning_schedule=schedule)

    models = {"plain": plain, "pruned": pruned, "control": plain}
    return tf_keras, models, [tfmot.sparsity.keras.UpdatePruningStep()]


def _rounds(legacy, steps, per_set):
    """The rounds of one side, Keras 3 or tf_keras (`legacy`)."""
    import tensorflow as tf

    from tfopt.demo.data import load_digits_split

    split = load_digits_split()
    dataset = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(32).repeat()

    keras_module, models, callbacks = (_tf_keras_models if legacy else _keras3_models)()

    return _timing.fit_rounds(keras_module, models, dataset, steps, per_set, {"pruned": callbacks})


def measure(steps, rounds, per_set):
    """{side: {name: [CPU seconds per round]}}, the two sides taking turns round by round."""
    args = ["--tf-keras-worker", "--steps", str(steps), "--per-set", str(per_set)]
    return _timing.with_tf_keras_worker(lambda: _rounds(False, steps, per_set), __file__, args, rounds, SIDES)


def report(times, steps, rounds, per_set):
    print(f"digits CNN, 80% sparsity, {rounds} rounds of 2 fits x {steps} steps per model, new models every "
          f"{per_set} rounds")
    medians = {}
    for side in SIDES:
        plain = statistics.median(times[side]["plain"]) / (2 * steps)
        print(f"{side}: plain step {1e3 * plain:.2f} ms CPU")
        ratios = _timing.per_round(times[side], "pruned", "plain")
        medians[side] = statistics.median(ratios)
        print(_timing.ratio_line(f"{side} pruned ÷ plain step time", ratios))
        control = _timing.per_round(times[side], "control", "plain")
        print(_timing.ratio_line(f"{side} control ÷ plain step time", control, "the same work, should be 1"))
    ours, theirs = medians.values()
    verdict = "goal met" if ours <= theirs else "goal NOT met"
    print(f"goal: tfopt's overhead no larger than tfmot's: {verdict}; difference {100 * (ours - theirs):+.1f} points")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds per side (21; quick: 3)")
    parser.add_argument("--steps", type=int, default=None, help="steps per fit (45; quick: 20)")
    parser.add_argument("--per-set", type=int, default=5, help="rounds per set of new models")
    parser.add_argument("--quick", action="store_true", help="a few short rounds, to check that the script runs")
    parser.add_argument("--tf-keras-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 21)
    steps = args.steps or (20 if args.quick else 45)
    note = _timing.one_thread()
    if args.tf_keras_worker:
        _timing.serve(_rounds(True, steps, args.per_set))
        return
    print(note)
    print(_timing.CPU_NOTE)
    report(measure(steps, rounds, args.per_set), steps, rounds, args.per_set)


if __name__ == "__main__":
    main(sys.argv[1:])
