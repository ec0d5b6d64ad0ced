"""QAT step time ÷ float step time for tfopt (Keras 3) and tfmot (tf_keras), and int8 ÷ float32 TFLite latency.

1. Training: the digits CNN trains on a `tf.data` pipeline, batch 32, Adam, as it is and as a QAT copy
   (`tfopt.quantize.quantize_model`). Keras 3 (tfopt's QAT) runs in this process; tf_keras (tfmot's QAT, reached
   through the same `quantize_model` on the CNN carried over with `tfopt.compat.to_tf_keras`) in a child process
   started with TF_USE_LEGACY_KERAS=1. The two processes take turns, round by round, and inside a round float and
   QAT fits alternate; fits are short (15 steps) and rounds many, because on a shared machine the speed swings
   from second to second by up to 2x. A step's time is the time between two consecutive batch ends (the first
   batch of each fit is left out); the medians of all steps are compared.
   Goal: tfopt's QAT ÷ float no larger than tfmot's.
2. Inference: each model is exported float32, int8 by post-training quantization (PTQ, calibrated on 100 inputs)
   and int8 from a QAT copy fitted on two batches, then timed by `tfopt.export.benchmark` (one sample per
   `invoke`, one thread, LiteRT's default XNNPACK delegate), variants interleaved over the repeats. The digits CNN
   takes 8x8 inputs, so a call is ~20 us and per-op overhead dominates; the 96x96x3 MobileNet-style models show
   the arithmetic. The int8 speed-up depends on the CPU's int8 instructions (AVX-VNNI, AVX512-VNNI, ARM dotprod),
   so the CPU and its flags are printed with the latencies.

Runtime on 2 CPU cores shared with other jobs: ~4 min (`--quick`: ~1.5 min).

Example:
    python benchmarks/quantization.py --repeats 31
    python benchmarks/quantization.py --quick
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH_SIZE = 32
_VARIANTS = ("float32", "int8 PTQ", "int8 QAT")


# -- 1. training step time ------------------------------------------------------------------------------------------


def _step_models(legacy):
    """{"float": ..., "QAT": ...}: the digits CNN compiled as it is and as a QAT copy, in Keras 3 or tf_keras."""
    import tfopt
    from tfopt.demo.model import digits_cnn

    if legacy:
        import tf_keras as keras_module

        build = lambda: tfopt.compat.to_tf_keras(digits_cnn())  # noqa: E731
    else:
        import keras as keras_module

        build = digits_cnn
    models = {"float": build(), "QAT": tfopt.quantize.quantize_model(build())}
    for model in models.values():
        model.compile(keras_module.optimizers.Adam(1e-3),
                      keras_module.losses.SparseCategoricalCrossentropy(from_logits=True))
    return models, keras_module


class _Steps:
    """Runs rounds of short fits over models and keeps every step's time in seconds."""

    def __init__(self, legacy, steps):
        import tensorflow as tf

        from tfopt.demo.data import load_digits_split

        split = load_digits_split()
        self.dataset = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(BATCH_SIZE).repeat()
        self.models, keras_module = _step_models(legacy)
        self.steps, self.stamps, self.rounds = steps, [], 0
        self.timer = keras_module.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: self.stamps.append(time.perf_counter())
        )
        for model in self.models.values():  # trace before timing
            model.fit(self.dataset, epochs=1, steps_per_epoch=5, verbose=0, shuffle=False)

    def round(self):
        """One fit of `steps` steps per model, in alternating order; {name: [seconds per step, ...]}."""
        names = list(self.models)
        names = names if self.rounds % 2 == 0 else names[::-1]
        self.rounds += 1
        times = {}
        for name in names:
            self.stamps.clear()
            self.models[name].fit(self.dataset, epochs=1, steps_per_epoch=self.steps, verbose=0, shuffle=False,
                                  callbacks=[self.timer])
            times[name] = [end - start for start, end in zip(self.stamps, self.stamps[1:])]
        return times


def _tf_keras_worker(steps):
    """The child's side: set up, say "ready", then run one round per line read and answer with its times as JSON."""
    rounds = _Steps(legacy=True, steps=steps)
    print("ready", flush=True)
    for _ in sys.stdin:
        print(json.dumps(rounds.round()), flush=True)


class _Child:
    """The tf_keras worker process, driven one round at a time."""

    def __init__(self, steps):
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--tf-keras-worker", "--steps", str(steps)],
            env={**os.environ, "TF_USE_LEGACY_KERAS": "1"}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True,
        )

    def _answer(self, start):
        """The next line of the worker's that starts with `start` (anything else it prints is skipped)."""
        for line in self.process.stdout:
            if line.startswith(start):
                return line
        self.process.wait()
        self.log.seek(0)
        raise RuntimeError(f"the tf_keras worker exited with code {self.process.returncode}:\n"
                           f"{self.log.read()[-3000:]}")

    def wait_ready(self):
        self._answer("ready")

    def round(self):
        self.process.stdin.write("round\n")
        self.process.stdin.flush()
        return json.loads(self._answer("{"))

    def close(self):
        self.process.stdin.close()
        self.process.wait()
        self.log.close()


def step_times(steps, repeats):
    """{"tfopt (Keras 3)": {"float": ms, "QAT": ms}, "tfmot (tf_keras)": {...}}: median step times, in turns."""
    child = _Child(steps)  # sets up while this process does
    try:
        ours = _Steps(legacy=False, steps=steps)
        child.wait_ready()
        sides = {"tfopt (Keras 3)": ours.round, "tfmot (tf_keras)": child.round}
        times = {side: {"float": [], "QAT": []} for side in sides}
        for _ in range(repeats):
            for side, run in sides.items():
                for name, values in run().items():
                    times[side][name].extend(values)
    finally:
        child.close()
    return {side: {name: 1e3 * statistics.median(values) for name, values in by_name.items()}
            for side, by_name in times.items()}


# -- 2. TFLite latency ----------------------------------------------------------------------------------------------


def _mobilenet_style(size, width=2, seed=0):
    """Conv-BN-ReLU6, six depthwise-separable blocks (DepthwiseConv-BN-ReLU6, Conv 1x1-BN-ReLU6), pooling, Dense."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    x = inputs = keras.Input((size, size, 3))
    x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(16 * width, 3, 2, "same", use_bias=False)(x)))
    for filters, stride in ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2)):
        x = layers.DepthwiseConv2D(3, stride, "same", use_bias=False)(x)
        x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
        x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(filters * width, 1, use_bias=False)(x)))
    outputs = layers.Dense(10)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name=f"mobilenet_style_{size}")


def _latency_models(quick):
    """[(label, build, x, y)]: the models to export, each with training inputs and labels for PTQ and QAT."""
    import keras
    import numpy as np

    from tfopt.demo.data import load_digits_split
    from tfopt.demo.model import digits_cnn

    split = load_digits_split()
    rng = np.random.default_rng(0)
    size = 64 if quick else 96

    def random_data():
        return rng.uniform(size=(100, size, size, 3)).astype("float32"), rng.integers(0, 10, 100).astype("int32")

    models = [("digits CNN 8x8x1", digits_cnn, split.x_train[:100], split.y_train[:100]),
              (f"MobileNet-style {size}x{size}x3, width 2", lambda: _mobilenet_style(size), *random_data())]
    if not quick:
        models.append(("MobileNetV2 alpha 0.35 96x96x3", lambda: keras.applications.MobileNetV2(
            input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10, classifier_activation=None), *random_data()))
    return models


def _exports(build, x, y):
    """{variant: flatbuffer} for float32, PTQ int8 and QAT int8 (a QAT copy fitted on two batches)."""
    import keras

    import tfopt

    model = build()
    qat = tfopt.quantize.quantize_model(model)
    qat.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x[:2 * BATCH_SIZE], y[:2 * BATCH_SIZE], batch_size=BATCH_SIZE, epochs=1, verbose=0)
    return {
        "float32": tfopt.export.to_tflite(model),
        "int8 PTQ": tfopt.export.to_tflite(model, "int8", representative_data=x),
        "int8 QAT": tfopt.export.to_tflite(qat, "int8"),
    }


def latencies(quick, runs, repeats):
    """{label: {variant: median p50 ms}}, every model's variants timed in turn, `repeats` times over."""
    import tfopt

    flatbuffers = {label: _exports(build, x, y) for label, build, x, y in _latency_models(quick)}
    p50s = {label: {variant: [] for variant in _VARIANTS} for label in flatbuffers}
    for _ in range(repeats):
        for label, by_variant in flatbuffers.items():
            for variant, flatbuffer in by_variant.items():
                p50s[label][variant].append(tfopt.export.benchmark(flatbuffer, runs=runs, warmup=5).p50_ms)
    return {label: {variant: statistics.median(values) for variant, values in by_variant.items()}
            for label, by_variant in p50s.items()}


def cpu_description():
    """The CPU's name and which of its int8 dot-product instruction sets are present (Linux; else the platform)."""
    try:
        with open("/proc/cpuinfo") as file:
            info = file.read()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith(("model name", "Model name"))), platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines()
                      if line.startswith(("flags", "Features"))), []))
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimddp", "i8mm")
    present = [flag for flag in wanted if flag in flags]
    absent = [flag for flag in wanted if flag not in flags]
    return f"{name}; has {', '.join(present) or 'none of them'}; lacks {', '.join(absent) or 'none'}"


# -- report ---------------------------------------------------------------------------------------------------------


def _report_steps(times, steps, repeats):
    print(f"digits CNN, batch {BATCH_SIZE}, Adam: median step time over {repeats} rounds x {steps} steps")
    for side, by_name in times.items():
        print(f"  {side:<17} float {by_name['float']:.3f} ms, QAT {by_name['QAT']:.3f} ms")
    ours, theirs = (times[side]["QAT"] / times[side]["float"] for side in times)
    verdict = "goal met" if ours <= theirs else f"goal NOT met ({100 * (ours - theirs):+.1f} points of step time)"
    print(f"QAT/float step time: tfopt (Keras 3) {ours:.3f}, tfmot (tf_keras) {theirs:.3f} -> {verdict}")


def _report_latencies(medians, runs, repeats):
    print(f"\nTFLite latency, one sample, 1 thread, median of {repeats} x p50 of {runs} invokes")
    print(f"CPU: {cpu_description()}")
    for label, by_variant in medians.items():
        float_ms = by_variant["float32"]
        ratios = ", ".join(f"{variant[5:]} {by_variant[variant] / float_ms:.2f}" for variant in _VARIANTS[1:])
        print(f"int8/float32 latency: {label}: {ratios} (float32 {float_ms:.3f} ms)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="rounds of training and of latency (21; quick: 5)")
    parser.add_argument("--steps", type=int, default=None, help="steps per fit per round (15; quick: 10)")
    parser.add_argument("--runs", type=int, default=None, help="invokes per latency measurement (100; quick: 30)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller inputs, for smoke tests")
    parser.add_argument("--tf-keras-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 21)
    steps = args.steps or (10 if args.quick else 15)
    runs = args.runs or (30 if args.quick else 100)
    if args.tf_keras_worker:
        _tf_keras_worker(steps)
        return
    _report_steps(step_times(steps, repeats), steps, repeats)
    _report_latencies(latencies(args.quick, runs, repeats), runs, repeats)


if __name__ == "__main__":
    main(sys.argv[1:])
