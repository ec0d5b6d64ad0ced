"""Each tfopt optimizer's step time ÷ `keras.optimizers.Adam`'s on the same model, and its digits accuracy.

Two models: a ~1.1M-parameter MLP (64 -> 1024 -> 1024 -> 10) and the demo's small digits CNN. For each, every
optimizer has its own model, and a second Adam model is the control; every round fits each model `--steps` steps
on an in-memory `tf.data` pipeline twice, in turns (the order rotated each round), and new models are built every
few rounds, so neither the machine's slow spells nor one instance's speed decide a ratio. TensorFlow is held to one
thread and the process's CPU time is measured. Adam's time in a round is the mean of its two models'; the control
row is one of them ÷ the other. Each ratio is printed as its median over the rounds and its spread (min-max).
Then each optimizer trains the CNN for 5 epochs on scikit-learn's digits and its test accuracy is printed.
Goals: <= 1.25 for the Adam-like optimizers, <= 2.2 for SharpnessAware (two passes per step), <= 2.5 for SOAP and
Shampoo (issue 14; at their default preconditioning frequency they are far above it on the 1024-wide MLP, whose
1024 x 1024 kernel costs them matrix products and decompositions of that size per step).

Runtime on 2 shared cores: ~6 min for the first 13 optimizers, about as much again for the issue-14 first-order
ones, and several minutes each for SOAP and Shampoo (`--only NAME ...` runs some; `--quick`, four optimizers: ~1 min).

Example:
    python benchmarks/optimizers.py --rounds 24 --steps 15
    python benchmarks/optimizers.py --only SOAP Shampoo --rounds 4
"""

import argparse
import functools
import statistics
import sys

import _timing
import keras
import tensorflow as tf

import tfopt
from tfopt.demo.data import load_digits_split
from tfopt.demo.model import compile_for_digits, digits_cnn

# Rates picked by hand for 5 epochs at batch 32 on digits (Adam's default 1e-3 reaches ~0.79 there); Prodigy sets
# its own. LARS is made for very large batches: at batch 32 it lags whatever its rate.
OPTIMIZERS = {
    "Adam": lambda: keras.optimizers.Adam(5e-3),
    "RAdam": lambda: tfopt.optimizers.RAdam(1e-2),
    "AdaBelief": lambda: tfopt.optimizers.AdaBelief(5e-3),
    "Adan": lambda: tfopt.optimizers.Adan(5e-3),
    "AdEMAMix": lambda: tfopt.optimizers.AdEMAMix(5e-3),
    "Yogi": lambda: tfopt.optimizers.Yogi(1e-2),
    "NovoGrad": lambda: tfopt.optimizers.NovoGrad(5e-2),
    "LARS": lambda: tfopt.optimizers.LARS(1.0, eta=0.01),
    "Prodigy": lambda: tfopt.optimizers.Prodigy(),
    "LazyAdam": lambda: tfopt.optimizers.LazyAdam(5e-3),
    "Lookahead(Adam)": lambda: tfopt.optimizers.Lookahead(keras.optimizers.Adam(5e-3)),
    "GradientCentralization(Adam)": lambda: tfopt.optimizers.GradientCentralization(keras.optimizers.Adam(5e-3)),
    "Cautious(Adam)": lambda: tfopt.optimizers.Cautious(keras.optimizers.Adam(5e-3)),
    "ADOPT": lambda: tfopt.optimizers.ADOPT(5e-3),
    "QHAdam": lambda: tfopt.optimizers.QHAdam(5e-3, beta_1=0.995, nu_1=0.7),
    "LaProp": lambda: tfopt.optimizers.LaProp(2e-3),
    "AdaBound": lambda: tfopt.optimizers.AdaBound(5e-3),
    "StableAdamW": lambda: tfopt.optimizers.StableAdamW(5e-3),
    "AdamP": lambda: tfopt.optimizers.AdamP(5e-3),
    "SGDP": lambda: tfopt.optimizers.SGDP(5e-2, momentum=0.9),
    "MADGRAD": lambda: tfopt.optimizers.MADGRAD(1e-2),
    "MARS": lambda: tfopt.optimizers.MARS(3e-3),
    "ScheduleFreeSGD": lambda: tfopt.optimizers.ScheduleFreeSGD(0.2),
    "ScheduleFreeRAdam": lambda: tfopt.optimizers.ScheduleFreeRAdam(5e-3),
    "DAdaptAdam": lambda: tfopt.optimizers.DAdaptAdam(),
    "SOAP": lambda: tfopt.optimizers.SOAP(3e-3),
    "Shampoo": lambda: tfopt.optimizers.Shampoo(1e-2),
    "SharpnessAware + Adam": lambda: keras.optimizers.Adam(5e-3),
}
CONTROL = "Adam (control)"
QUICK = ("Adam", "RAdam", "Lookahead(Adam)", "SharpnessAware + Adam")  # one of each kind of model and optimizer
MODELS = ("MLP 1.1M", "digits CNN")


def _mlp():
    keras.utils.set_random_seed(0)
    layers = keras.layers
    return keras.Sequential([keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(1024, activation="relu"),
                             layers.Dense(1024, activation="relu"), layers.Dense(10)])


def _compiled(name, build):
    model = build()
    if name.startswith("SharpnessAware"):
        model = tfopt.models.SharpnessAware(model)
    return compile_for_digits(model, OPTIMIZERS[name]())


def _makers(names, build, dataset, steps):
    """{name: make()} for each optimizer of `names` and the control, making a traced and warmed-up model's fit."""

    def maker(name):
        def make():
            model = _compiled(name if name != CONTROL else "Adam", build)
            return _timing.warmed(functools.partial(model.fit, dataset, epochs=1, steps_per_epoch=steps, verbose=0,
                                                    shuffle=False))
        return make

    return {name: maker(name) for name in [*names, CONTROL]}


def step_ratios(names, build, dataset, steps, rounds, per_set):
    """({name: [per-round ratio to Adam]}, Adam's median CPU seconds per step). Adam's time in a round is the mean
    of its two models' (halving the noise of the baseline every ratio shares); the control row is one Adam model ÷
    the other."""
    run_round = _timing.Rounds(_makers(names, build, dataset, steps), per_set)
    times = _timing.collect([run_round() for _ in range(rounds)])
    baseline = [(adam + control) / 2 for adam, control in zip(times["Adam"], times[CONTROL])]
    ratios = {name: [value / base for value, base in zip(times[name], baseline)] for name in times}
    ratios[CONTROL] = _timing.per_round(times, CONTROL, "Adam")
    return ratios, statistics.median(times["Adam"]) / (2 * steps)


def accuracies(names, epochs):
    """{optimizer: digits test accuracy after `epochs` epochs of the CNN}."""
    split = load_digits_split()
    shuffled = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).shuffle(2048, seed=0).batch(32)
    test = tf.data.Dataset.from_tensor_slices((split.x_test, split.y_test)).batch(256)
    result = {}
    for name in names:
        model = _compiled(name, digits_cnn)
        model.fit(shuffled, epochs=epochs, verbose=0, shuffle=False)
        result[name] = model.evaluate(test, verbose=0)[1]
    return result


def _cell(ratios):
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"


def report(names, ratios, accuracy, epochs):
    print(f"\nstep time ÷ Adam's: median (spread min-max) over the rounds; digits accuracy after {epochs} epochs")
    print(f"{'optimizer':<30}{'MLP ÷ Adam':>22}{'CNN ÷ Adam':>22}{'digits acc':>12}")
    for name in [*names, CONTROL]:
        acc = f"{accuracy[name]:>12.4f}" if name in accuracy else f"{'(control)':>12}"
        print(f"{name:<30}{_cell(ratios[MODELS[0]][name]):>22}{_cell(ratios[MODELS[1]][name]):>22}{acc}")
    print("goals: <= 1.25 for the Adam-like optimizers, <= 2.2 for SharpnessAware, <= 2.5 for SOAP and Shampoo; the "
          "control (a second Adam model) should be 1")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per model (24; quick: 2)")
    parser.add_argument("--steps", type=int, default=None, help="steps per fit (15; quick: 5)")
    parser.add_argument("--per-set", type=int, default=12, help="rounds per set of new models")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the accuracy runs (5; quick: 1)")
    parser.add_argument("--quick", action="store_true", help=f"a few short rounds of {', '.join(QUICK)} only")
    parser.add_argument("--only", nargs="+", choices=list(OPTIMIZERS), help="these optimizers (and Adam) only")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 24)
    steps = args.steps or (5 if args.quick else 15)
    epochs = args.epochs or (1 if args.quick else 5)
    print(_timing.one_thread())
    print(_timing.CPU_NOTE)
    split = load_digits_split()
    train = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(32).cache().repeat()
    names = QUICK if args.quick else list(OPTIMIZERS)
    if args.only:
        names = ["Adam", *(name for name in args.only if name != "Adam")]
    ratios = {}
    for label, build in zip(MODELS, (_mlp, digits_cnn)):
        ratios[label], adam = step_ratios(names, build, train, steps, rounds, args.per_set)
        print(f"{label}: Adam {adam * 1e3:.2f} ms CPU per step; {rounds} rounds of 2 fits x {steps} steps per "
              f"optimizer, new models every {args.per_set} rounds")
    report(names, ratios, accuracies(names, epochs), epochs)


if __name__ == "__main__":
    main(sys.argv[1:])
