"""Each tfopt optimizer's step time ÷ `keras.optimizers.Adam`'s on the same model, and its digits accuracy.

Two models: a ~1.1M-parameter MLP (64 -> 1024 -> 1024 -> 10) and the demo's small digits CNN. For each, every
optimizer trains the same number of steps on an in-memory `tf.data` pipeline; many short rounds are interleaved
over the optimizers and the medians compared, so this machine's slow and fast spells hit all alike. Then each optimizer trains the CNN for 5
epochs on scikit-learn's digits and its test accuracy is printed.
Goals: <= 1.25 for the Adam-like optimizers, <= 2.2 for SharpnessAware (two passes per step).

Example:
    python benchmarks/optimizers.py --repeats 15 --steps 30
"""

import argparse
import statistics
import time

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
    "SharpnessAware + Adam": lambda: keras.optimizers.Adam(5e-3),
}


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(1024, activation="relu"),
                             keras.layers.Dense(1024, activation="relu"), keras.layers.Dense(10)])


def _compiled(name, build):
    model = build()
    if name.startswith("SharpnessAware"):
        model = tfopt.models.SharpnessAware(model)
    return compile_for_digits(model, OPTIMIZERS[name]())


def _step_times(build, dataset, steps, repeats):
    models = {name: _compiled(name, build) for name in OPTIMIZERS}
    for model in models.values():  # trace and build before timing
        model.fit(dataset, epochs=1, steps_per_epoch=5, verbose=0, shuffle=False)
    times = {name: [] for name in OPTIMIZERS}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds over all optimizers")
    parser.add_argument("--steps", type=int, default=30, help="steps timed per optimizer per round")
    args = parser.parse_args(argv)
    split = load_digits_split()
    train = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(32)
    shuffled = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).shuffle(2048, seed=0).batch(32)
    test = tf.data.Dataset.from_tensor_slices((split.x_test, split.y_test)).batch(256)
    ratios = {}
    for label, build in (("MLP 1.1M", _mlp), ("digits CNN", digits_cnn)):
        times = _step_times(build, train.repeat(), args.steps, args.repeats)
        ratios[label] = {name: times[name] / times["Adam"] for name in OPTIMIZERS}
        print(f"{label}: Adam {times['Adam'] * 1e3:.2f} ms/step (median of {args.repeats} x {args.steps} steps)")
    print(f"\n{'optimizer':<30}{'MLP ÷ Adam':>12}{'CNN ÷ Adam':>12}{'digits acc (5 ep)':>20}")
    for name in OPTIMIZERS:
        model = _compiled(name, digits_cnn)
        model.fit(shuffled, epochs=5, verbose=0, shuffle=False)
        accuracy = model.evaluate(test, verbose=0)[1]
        print(f"{name:<30}{ratios['MLP 1.1M'][name]:>12.3f}{ratios['digits CNN'][name]:>12.3f}{accuracy:>20.4f}")
    print("\ngoals: <= 1.25 for the Adam-like optimizers, <= 2.2 for SharpnessAware")


if __name__ == "__main__":
    main()
