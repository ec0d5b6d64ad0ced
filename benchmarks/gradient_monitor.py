"""Fit time with `GradientMonitor(every=10)` ÷ the same fit without it, measured side by side in one run.

Model: the demo's digits CNN, batch 32, a cached `tf.data` pipeline, Adam, `verbose=0`. Each variant (plain,
GradientMonitor, control) has its own model and fits `--steps` steps per turn; every round fits each of them twice,
in turns (the order rotated each round), and new models are built every few rounds, so neither the machine's slow
spells nor one instance's speed decide a ratio. The monitor is one callback kept across that model's fits, as a
user's script keeps it: its train function is traced at the first (untimed) fit and reused after. TensorFlow is
held to one thread and the process's CPU time is measured. Printed: the ratio's median over the rounds and its
spread (min-max), and a control: a second plain model ÷ the first, which should be 1. Then the time of the one
extra trace (the first fit with a monitor ÷ the first fit without).
Goal: GradientMonitor ÷ plain <= 1.10.

Runtime on 2 shared cores: ~3 min (`--quick`: ~20 s).

Example:
    python benchmarks/gradient_monitor.py --rounds 24 --steps 100
"""

import argparse
import statistics
import sys

import _timing
import keras
import tensorflow as tf

import tfopt
from tfopt.demo.data import load_digits_split
from tfopt.demo.model import digits_cnn

VARIANTS = ("plain", "GradientMonitor", "control")
EVERY = 10


def _first_fits(dataset, steps):
    """CPU seconds of each variant's first fit (its trace included), on new models."""
    def first(callbacks):
        model = digits_cnn()
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return _timing.cpu_seconds(lambda: model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0,
                                                     shuffle=False, callbacks=callbacks))

    return first([]), first([tfopt.callbacks.GradientMonitor(every=EVERY)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (24; quick: 4)")
    parser.add_argument("--per-set", type=int, default=4, help="rounds per set of new models")
    parser.add_argument("--steps", type=int, default=None, help="steps per fit (100; quick: 30)")
    parser.add_argument("--quick", action="store_true", help="a few short rounds, to check that the script runs")
    args = parser.parse_args(argv)
    rounds = args.rounds or (4 if args.quick else 24)
    steps = args.steps or (30 if args.quick else 100)
    print(_timing.one_thread())
    print(_timing.CPU_NOTE)
    split = load_digits_split()
    dataset = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(32).cache().repeat()
    callbacks = {"GradientMonitor": [tfopt.callbacks.GradientMonitor(every=EVERY)]}
    run_round = _timing.fit_rounds(keras, dict.fromkeys(VARIANTS, digits_cnn), dataset, steps, args.per_set,
                                   callbacks)
    times = _timing.collect([run_round() for _ in range(rounds)])
    plain = statistics.median(times["plain"]) / 2
    print(f"digits CNN, Adam, batch 32, {steps} steps per fit, {rounds} rounds of 2 fits per variant, new models "
          f"every {args.per_set} rounds; plain fit {plain:.3f} s CPU ({steps / plain:.0f} steps/s); GradientMonitor "
          f"records every {EVERY}th step")
    print(_timing.ratio_line("GradientMonitor(every=10) ÷ plain",
                             _timing.per_round(times, "GradientMonitor", "plain"), "goal <= 1.10"))
    print(_timing.ratio_line("control ÷ plain", _timing.per_round(times, "control", "plain"),
                             "control: the same work, should be 1"))
    first_plain, first_monitored = _first_fits(dataset, steps)
    print(f"first fit, trace included: {first_plain:.2f} s CPU plain, {first_monitored:.2f} s with GradientMonitor "
          f"(its train function is traced once per compiled model, then reused)")


if __name__ == "__main__":
    main(sys.argv[1:])
