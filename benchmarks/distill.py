"""Distillation's cost: a `Distiller` epoch ÷ (teacher forward + student training), and the epoch with
`cache_teacher_outputs` ÷ without, measured side by side in one run.

Models: the demo's teacher CNN (69k weights, ~235k multiply-adds per image) and an MLP student (4.8k weights, ~5k
multiply-adds), the digits' training split in batches of 128 from a cached `tf.data` pipeline, Adam, `verbose=0`.
Variants, each with its own models: the student trained alone (`fit`), the teacher's forward pass alone
(`predict`), a `Distiller` with `SoftTargets` on the dataset, the same on the dataset from `cache_teacher_outputs`
(filled before timing: the epochs after the first), and a control (a second Distiller). Every round runs each of
them twice, in an order rotated each round; new models every few rounds. TensorFlow is held to one thread and the
process's CPU time is measured. Printed: each ratio's median over the rounds and its spread (min-max).
Goals: Distiller ÷ (teacher forward + student step) <= 1.10; cached ÷ uncached Distiller epoch <= 0.7.

Runtime on 2 shared cores: ~1.5 min (`--quick`: ~15 s).

Example:
    python benchmarks/distill.py --rounds 16
"""

import argparse
import statistics
import sys

import _timing
import keras
import tensorflow as tf

import tfopt
from tfopt.demo.data import load_digits_split
from tfopt.demo.model import compile_for_digits, digits_cnn

VARIANTS = ("student", "teacher", "distiller", "cached", "control")
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def student_mlp():
    """The student: an MLP with 14x fewer weights than the teacher CNN and ~50x fewer multiply-adds per image."""
    keras.utils.set_random_seed(1)
    layers = keras.layers
    return keras.Sequential([keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(64, activation="relu"),
                             layers.Dense(10)], name="student_mlp")


def _distiller(teacher):
    distiller = tfopt.distill.Distiller(teacher, student_mlp(), tfopt.distill.SoftTargets(4.0))
    distiller.compile(keras.optimizers.Adam(1e-3), loss=CE)
    return distiller


def _makers(dataset, epochs):
    """{variant: make()}, each making its models (traced and warmed up) and returning what is timed."""
    teacher = compile_for_digits(digits_cnn(), keras.optimizers.Adam(1e-3))

    def fit(model, data):
        return lambda: model.fit(data, epochs=epochs, verbose=0, shuffle=False)

    def cached():
        data = tfopt.distill.cache_teacher_outputs(teacher, dataset)
        for _ in data:  # fill the cache: what is timed are the epochs after the first
            pass
        return _timing.warmed(fit(_distiller(teacher), data))

    return {
        "student": lambda: _timing.warmed(fit(compile_for_digits(student_mlp(), keras.optimizers.Adam(1e-3)),
                                              dataset)),
        "teacher": lambda: _timing.warmed(lambda: [teacher.predict(dataset, verbose=0) for _ in range(epochs)]),
        "distiller": lambda: _timing.warmed(fit(_distiller(teacher), dataset)),
        "cached": cached,
        "control": lambda: _timing.warmed(fit(_distiller(teacher), dataset)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (16; quick: 2)")
    parser.add_argument("--per-set", type=int, default=4, help="rounds per set of new models")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fit (8; quick: 1)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (128)")
    parser.add_argument("--quick", action="store_true", help="a few short rounds, to check that the script runs")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 16)
    epochs = args.epochs or (1 if args.quick else 8)
    print(_timing.one_thread())
    print(_timing.CPU_NOTE)
    split = load_digits_split()
    dataset = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(args.batch_size).cache()
    run_round = _timing.Rounds(_makers(dataset, epochs), args.per_set)
    times = _timing.collect([run_round() for _ in range(rounds)])
    alone = [student + teacher for student, teacher in zip(times["student"], times["teacher"])]
    steps = epochs * int(dataset.cardinality())
    print(f"teacher {digits_cnn().count_params()} weights, student {student_mlp().count_params()}; {steps} steps "
          f"per fit, {rounds} rounds of 2 fits per variant, new models every {args.per_set} rounds; Distiller fit "
          f"{statistics.median(times['distiller']) / 2:.3f} s CPU")
    print(_timing.ratio_line("Distiller ÷ (teacher forward + student step)",
                             [d / a for d, a in zip(times["distiller"], alone)], "goal <= 1.10"))
    print(_timing.ratio_line("cached ÷ uncached Distiller epoch", _timing.per_round(times, "cached", "distiller"),
                             "goal <= 0.7"))
    print(_timing.ratio_line("control ÷ Distiller", _timing.per_round(times, "control", "distiller"),
                             "control: the same work, should be 1"))


if __name__ == "__main__":
    main(sys.argv[1:])
