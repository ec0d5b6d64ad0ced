"""Fit time with tfopt's per-batch LR callbacks ÷ the same fit without them, measured side by side in one run.

Model: the demo's digits CNN, batch 32, a cached `tf.data` pipeline, AdamW, `verbose=0`. Each variant (no callback,
`LRScheduler`, `OneCyclePolicy`) has its own model; every round fits each of them twice, in the order plain,
LRScheduler, OneCyclePolicy, control, plain, ... (rotated each round); new models are built every few rounds, so
neither the machine's slow spells nor one instance's speed decide a ratio. TensorFlow is held to one thread and
the process's CPU time is measured. Printed: each ratio's median over the rounds and its spread (min-max), and a
control: a second plain model ÷ the first, which should be 1.
Goal: LRScheduler ÷ plain <= 1.05.

Runtime on 2 shared cores: ~2 min (`--quick`: ~15 s).

Example:
    python benchmarks/lr_callbacks.py --rounds 32
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

VARIANTS = ("plain", "LRScheduler", "OneCyclePolicy", "control")
# A model's one cycle spans all its fits here (warm-up, settling and timed ones): a fit past the cycle is refused, and
# a step costs the same anywhere in it.
CYCLE_FITS = 100


def _callbacks(kind, total_steps):
    if kind == "LRScheduler":
        return [tfopt.callbacks.LRScheduler(tfopt.schedules.OneCycle(max_lr=1e-2, total_steps=total_steps))]
    if kind == "OneCyclePolicy":
        return [tfopt.callbacks.OneCyclePolicy(max_lr=1e-2, total_steps=total_steps)]
    return []


def _fit(model, kind, dataset, epochs, total_steps):
    """A fit with the callbacks of `kind`, new ones each time as a user's script makes them."""
    return lambda: model.fit(dataset, epochs=epochs, verbose=0, shuffle=False,
                             callbacks=_callbacks(kind, total_steps))


def _makers(dataset, epochs):
    """{variant: make()}, each making a compiled, traced and warmed-up model and returning its fit."""
    total_steps = CYCLE_FITS * epochs * int(dataset.cardinality())

    def maker(kind):
        return lambda: _timing.warmed(
            _fit(compile_for_digits(digits_cnn(), keras.optimizers.AdamW(1e-3)), kind, dataset, epochs, total_steps))

    return {kind: maker(kind) for kind in VARIANTS}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (32; quick: 4)")
    parser.add_argument("--per-set", type=int, default=4, help="rounds per set of new models")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fit (2; quick: 1)")
    parser.add_argument("--quick", action="store_true", help="a few short rounds, to check that the script runs")
    args = parser.parse_args(argv)
    rounds = args.rounds or (4 if args.quick else 32)
    epochs = args.epochs or (1 if args.quick else 2)
    print(_timing.one_thread())
    print(_timing.CPU_NOTE)
    split = load_digits_split()
    dataset = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(32).cache()
    run_round = _timing.Rounds(_makers(dataset, epochs), args.per_set)
    times = _timing.collect([run_round() for _ in range(rounds)])
    steps = epochs * int(dataset.cardinality())
    plain = statistics.median(times["plain"]) / 2
    print(f"digits CNN, {steps} steps per fit, {rounds} rounds of 2 fits per variant, new models every "
          f"{args.per_set} rounds; plain fit {plain:.3f} s CPU ({steps / plain:.0f} steps/s)")
    notes = {"LRScheduler": "goal <= 1.05", "control": "control: the same work, should be 1"}
    for kind in VARIANTS[1:]:
        print(_timing.ratio_line(f"{kind} ÷ plain", _timing.per_round(times, kind, "plain"), notes.get(kind)))


if __name__ == "__main__":
    main(sys.argv[1:])
