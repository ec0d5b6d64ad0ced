"""QAT step time ÷ float step time for tfopt (Keras 3) and tfmot (tf_keras), and int8 ÷ float32 TFLite latency.

1. Training: the digits CNN trains on a `tf.data` pipeline, batch 32, Adam, as it is, as a QAT copy
   (`tfopt.quantize.quantize_model`) and as it is once more (the control). Keras 3 (tfopt's QAT) runs in this
   process; tf_keras (tfmot's QAT, reached through the same `quantize_model` on the CNN carried over with
   `tfopt.compat.to_tf_keras`) in a worker process started with TF_USE_LEGACY_KERAS=1. The two processes take
   turns round by round; in a round each of a process's models fits `--steps` steps twice, in turns, and new
   models are built every few rounds. TensorFlow is held to one thread and each process's CPU time is measured.
   Goal: tfopt's QAT ÷ float no larger than tfmot's. The digits Transformer (`tfopt.demo.model`) is timed the same
   way on Keras 3 alone (tfmot has no QAT for its layers); goal: QAT ÷ float <= 1.3.
2. Inference: each model is exported float32, int8 by post-training quantization (PTQ, calibrated on 100 inputs)
   and int8 from a QAT copy fitted on two batches, then timed by `tfopt.export.benchmark` (p50 wall time of one
   sample per `invoke` over at least `--runs` invokes and 50 ms, one thread, LiteRT's default XNNPACK delegate),
   each variant twice per round, in turns.
   The digits CNN and the digits Transformer take tiny inputs, so a call is ~10 us and per-op overhead dominates
   (the Transformer's PTQ file computes LayerNorm's NEG in float); the 96x96x3
   MobileNet-style models show the arithmetic. The int8 speed-up depends on the CPU's int8 instructions
   (AVX-VNNI, AVX512-VNNI, ARM dotprod), so the CPU and its flags are printed with the latencies.
Every ratio is printed as its median over the rounds and its spread (min-max).

Runtime on 2 CPU cores shared with other jobs: ~4 min (`--quick`: ~1 min).

Example:
    python benchmarks/quantization.py --rounds 21
    python benchmarks/quantization.py --quick
"""

import argparse
import functools
import math
import platform
import statistics
import sys

import _timing

BATCH_SIZE = 32
SIDES = ("tfopt (Keras 3)", "tfmot (tf_keras)")
_VARIANTS = ("float32", "int8 PTQ", "int8 QAT")


# -- 1. training step time ------------------------------------------------------------------------------------------


def _step_models(legacy):
    """(keras module, {"float", "QAT", "control": make()}): the digits CNN, its QAT copy and the CNN once more."""
    import tfopt
    from tfopt.demo.model import digits_cnn

    if legacy:
        import tf_keras as keras_module

        def build():
            return tfopt.compat.to_tf_keras(digits_cnn())
    else:
        import keras as keras_module

        build = digits_cnn
    return keras_module, {"float": build, "QAT": lambda: tfopt.quantize.quantize_model(build()), "control": build}


def _step_rounds(legacy, steps, per_set):
    """The training rounds of one side, Keras 3 or tf_keras (`legacy`): {name: CPU seconds of 2 fits} per call."""
    import tensorflow as tf

    from tfopt.demo.data import load_digits_split

    split = load_digits_split()
    dataset = tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(BATCH_SIZE).repeat()

    keras_module, models = _step_models(legacy)

    return _timing.fit_rounds(keras_module, models, dataset, steps, per_set)


def transformer_step_times(steps, rounds, per_set):
    """{name: [CPU seconds per round]} of the digits Transformer, float, QAT and control (Keras 3 only: tfmot has no
    QAT for attention or LayerNorm)."""
    import keras
    import tensorflow as tf

    import tfopt
    from tfopt.demo.data import load_digits_split
    from tfopt.demo.model import digit_tokens, digits_transformer

    split = load_digits_split()
    dataset = tf.data.Dataset.from_tensor_slices((digit_tokens(split.x_train), split.y_train))
    dataset = dataset.batch(BATCH_SIZE).repeat()
    models = {"float": digits_transformer, "QAT": lambda: tfopt.quantize.quantize_model(digits_transformer()),
              "control": digits_transformer}
    run_round = _timing.fit_rounds(keras, models, dataset, steps, per_set)
    return _timing.collect([run_round() for _ in range(rounds)])


def step_times(steps, rounds, per_set):
    """{side: {name: [CPU seconds per round]}}, the Keras 3 side here and the tf_keras one in a worker, in turns."""
    args = ["--tf-keras-worker", "--steps", str(steps), "--per-set", str(per_set)]
    return _timing.with_tf_keras_worker(lambda: _step_rounds(False, steps, per_set), __file__, args, rounds, SIDES)


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
    from tfopt.demo.model import digit_tokens, digits_cnn, digits_transformer

    split = load_digits_split()
    rng = np.random.default_rng(0)
    size = 64 if quick else 96

    def random_data():
        return rng.uniform(size=(100, size, size, 3)).astype("float32"), rng.integers(0, 10, 100).astype("int32")

    tokens = digit_tokens(split.x_train[:100])
    models = [("digits CNN 8x8x1", digits_cnn, split.x_train[:100], split.y_train[:100]),
              ("digits Transformer 16x4 tokens", digits_transformer, tokens, split.y_train[:100]),
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


def _invokes(flatbuffer, runs, seconds):
    """At least `runs`, and enough invokes of the float32 `flatbuffer` to last `seconds` (the digits CNN takes ~8 us:
    100 invokes lasted under 1 ms and its ratios moved by 5% between runs)."""
    import tfopt

    p50_ms = tfopt.export.benchmark(flatbuffer, runs=runs, warmup=5).p50_ms
    return max(runs, math.ceil(1e3 * seconds / p50_ms))


def latencies(quick, runs, rounds, seconds):
    """{label: {variant: [p50 ms summed over 2 turns, per round]}}: every model's variants timed in turns."""
    import tfopt

    flatbuffers = {label: _exports(build, x, y) for label, build, x, y in _latency_models(quick)}
    invokes = {label: _invokes(by_variant["float32"], runs, seconds) for label, by_variant in flatbuffers.items()}
    per_label = {label: [] for label in flatbuffers}
    for index in range(rounds):
        for label, by_variant in flatbuffers.items():
            timings = {variant: functools.partial(tfopt.export.benchmark, flatbuffer, runs=invokes[label], warmup=5)
                       for variant, flatbuffer in by_variant.items()}
            per_label[label].append(_timing.interleaved_round(timings, index, lambda run: run().p50_ms))
    return {label: _timing.collect(values) for label, values in per_label.items()}


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


def _report_steps(times, steps, rounds, per_set):
    print(f"digits CNN, batch {BATCH_SIZE}, Adam: {rounds} rounds of 2 fits x {steps} steps per model, new models "
          f"every {per_set} rounds")
    medians = {}
    for side, by_name in times.items():
        print(f"{side}: float step {1e3 * statistics.median(by_name['float']) / (2 * steps):.2f} ms CPU")
        ratios = _timing.per_round(by_name, "QAT", "float")
        medians[side] = statistics.median(ratios)
        print(_timing.ratio_line(f"{side} QAT ÷ float step time", ratios))
        print(_timing.ratio_line(f"{side} control ÷ float step time", _timing.per_round(by_name, "control", "float"),
                                 "the same work, should be 1"))
    ours, theirs = medians.values()
    verdict = "goal met" if ours <= theirs else "goal NOT met"
    print(f"goal: tfopt's QAT ÷ float no larger than tfmot's: {verdict}; "
          f"difference {100 * (ours - theirs):+.1f} points")


def _report_transformer_steps(times, steps):
    print(f"\ndigits Transformer (18k weights: attention, LayerNorm, GELU), batch {BATCH_SIZE}, Adam, Keras 3 only: "
          f"float step {1e3 * statistics.median(times['float']) / (2 * steps):.2f} ms CPU")
    ratios = _timing.per_round(times, "QAT", "float")
    verdict = "goal met" if statistics.median(ratios) <= 1.3 else "goal NOT met"
    print(_timing.ratio_line("digits Transformer QAT ÷ float step time", ratios, f"goal <= 1.3: {verdict}"))
    print(_timing.ratio_line("digits Transformer control ÷ float step time",
                             _timing.per_round(times, "control", "float"), "the same work, should be 1"))


def _report_latencies(p50s, runs, rounds, seconds):
    print(f"\nTFLite latency, one sample, 1 thread (LiteRT, XNNPACK), p50 of >= {runs} invokes (>= {seconds:g} s of "
          f"float32), {rounds} rounds of 2 per variant; wall time")
    print(f"CPU: {cpu_description()}")
    for label, by_variant in p50s.items():
        print(f"{label}: float32 {statistics.median(by_variant['float32']) / 2:.3f} ms")
        for variant in _VARIANTS[1:]:
            print(_timing.ratio_line(f"{label}: {variant} ÷ float32 latency",
                                     _timing.per_round(by_variant, variant, "float32")))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds of training and of latency (21; quick: 2)")
    parser.add_argument("--steps", type=int, default=None, help="steps per fit (45; quick: 10)")
    parser.add_argument("--per-set", type=int, default=5, help="training rounds per set of new models")
    parser.add_argument("--runs", type=int, default=None, help="invokes per latency measurement (100; quick: 20)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller inputs, for smoke tests")
    parser.add_argument("--tf-keras-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 21)
    steps = args.steps or (10 if args.quick else 45)
    runs = args.runs or (20 if args.quick else 100)
    note = _timing.one_thread()
    if args.tf_keras_worker:
        _timing.serve(_step_rounds(True, steps, args.per_set))
        return
    print(note)
    print(_timing.CPU_NOTE)
    _report_steps(step_times(steps, rounds, args.per_set), steps, rounds, args.per_set)
    _report_transformer_steps(transformer_step_times(steps, rounds, args.per_set), steps)
    seconds = 0.01 if args.quick else 0.05
    _report_latencies(latencies(args.quick, runs, rounds, seconds), runs, rounds, seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
