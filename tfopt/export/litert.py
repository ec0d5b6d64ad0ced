"""Running a TFLite flatbuffer with the LiteRT interpreter: `predict`, `benchmark` (scoring is
`tfopt.export.scoring`'s)."""

import dataclasses
import os
import re
import time
import warnings

import numpy as np

from tfopt import _checks

_TFLITE_IDENTIFIER = b"TFL3"


def read(tflite, owner):
    """The flatbuffer bytes of `tflite` (bytes or a path), checked to be a TFLite model."""
    if isinstance(tflite, (bytes, bytearray, memoryview)):
        content, name = bytes(tflite), f"<{len(tflite)} bytes>"
    elif isinstance(tflite, (str, os.PathLike)):
        name = os.fspath(tflite)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"{owner}: no such TFLite file: {name}")
        with open(name, "rb") as file:
            content = file.read()
    else:
        raise TypeError(f"{owner}: argument `tflite` must be bytes or a path. Received: tflite={tflite!r:.80}")
    if content[4:8] != _TFLITE_IDENTIFIER:
        raise ValueError(f"{owner}: {name} is not a TFLite flatbuffer (its bytes 4-8 are not {_TFLITE_IDENTIFIER!r}).")
    return content


def interpreter(tflite, owner, num_threads=None, delegates=True):
    """A LiteRT `Interpreter` of `tflite` (bytes or a path); tensors are not allocated yet.

    `delegates=False` keeps the runtime's default XNNPACK delegate out, so the graph stays as the file has it.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if num_threads is not None:
        _checks.integer(owner, "num_threads", num_threads, low=1)
    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=read(tflite, owner), num_threads=num_threads,
                       experimental_op_resolver_type=resolver)


def _scale(details):
    scale, zero_point = details["quantization"]
    return (scale, zero_point) if scale else None


def _quantize(x, details):
    quantization, dtype = _scale(details), np.dtype(details["dtype"])
    if quantization is None:
        return x.astype(dtype)
    scale, zero_point = quantization
    limits = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), limits.min, limits.max).astype(dtype)


def _dequantize(y, details):
    quantization = _scale(details)
    if quantization is None:
        return y.astype("float32")
    scale, zero_point = quantization
    return ((y.astype("float32") - zero_point) * scale).astype("float32")


def _in_order(name):
    """Sort key of a signature output name: its trailing number counted as a number (output_10 after output_9)."""
    prefix, number = re.fullmatch(r"(.*?)(\d*)", name).groups()
    return prefix, int(number or -1)


def output_details(runner):
    """The details of `runner`'s output tensors in the model's order: that of its serving signature's names (the
    converter writes a Keras 3 model's outputs as output_0, output_1, ...; the file's own output list can be in
    another order), or the file's order for a file without one signature covering every output. A tf_keras
    model's signature names its outputs after their layers and keeps no other order: they come in name order."""
    details = runner.get_output_details()
    if len(runner.get_signature_list()) != 1:
        return details
    named = runner.get_signature_runner().get_output_details()
    ordered = [named[name]["index"] for name in sorted(named, key=_in_order)]
    by_index = {d["index"]: d for d in details}
    return [by_index[i] for i in ordered] if sorted(ordered) == sorted(by_index) else details


def check_batching(owner, batch_size, num_threads):
    """Checks the `batch_size` and `num_threads` arguments of `owner` (predict or evaluate)."""
    _checks.integer(owner, "batch_size", batch_size, low=1)
    if num_threads is not None:
        _checks.integer(owner, "num_threads", num_threads, low=1)


def _single_input(runner, owner):
    inputs = runner.get_input_details()
    if len(inputs) != 1:
        raise ValueError(f"{owner}: only models with one input are supported. This model has {len(inputs)}.")
    return inputs[0]


def _check_x(runner, x, owner):
    details = _single_input(runner, owner)
    expected = tuple(int(d) for d in details["shape_signature"][1:])
    x = np.asarray(x, dtype="float32")
    fits = x.ndim == len(expected) + 1 and all(e in (-1, s) for e, s in zip(expected, x.shape[1:]))
    _checks.satisfies(owner, "x", f"<array of shape {x.shape}>", fits, f"of shape {(None, *expected)}")
    return x, details


def predict(tflite, x, batch_size=32, num_threads=None):
    """Runs a single-input TFLite model on `x` in batches and returns its float outputs.

    Integer (int8, uint8, int16) input and output tensors are quantized and dequantized with their scale and zero
    point, so `x` and the result are float whatever the file's input/output types.

    Args:
        tflite: the flatbuffer as bytes, or the path of a .tflite file.
        x: a float array of inputs, batch axis first.
        batch_size: samples per `invoke`; the last batch may be smaller. Defaults to 32.
        num_threads: threads of the interpreter's CPU kernels. Defaults to None (LiteRT's default).

    Returns:
        A float32 array with the model's output for every sample (a list of arrays for several outputs, in the
        model's order for a Keras 3 model, by output name for a tf_keras one: see `output_details`).

    Example:
    >>> import keras, numpy as np, tfopt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> tfopt.export.predict(tfopt.export.to_tflite(model), np.ones((5, 4))).shape
    (5, 2)
    """
    check_batching("predict", batch_size, num_threads)
    return run(tflite, x, batch_size, num_threads, "predict")


def _without_xnnpack_if_it_refuses(run, tflite, owner, num_threads):
    """`run(interpreter)` on LiteRT's default interpreter, or, if its XNNPACK delegate fails to prepare the model
    (it refuses some valid int8 models, such as one with a layer whose outputs are all 0), on the builtin kernels,
    with a warning."""
    try:
        return run(interpreter(tflite, owner, num_threads))
    except RuntimeError as error:
        if "XNNPACK" not in str(error):
            raise
        warnings.warn(f"{owner}: LiteRT's XNNPACK delegate can't run this model ({error}); running it on LiteRT's "
                      "builtin kernels instead, which compute the same numbers. An app whose interpreter uses "
                      "XNNPACK (LiteRT's default on CPU) must turn it off for this model.", RuntimeWarning,
                      stacklevel=3)
        return run(interpreter(tflite, owner, num_threads, delegates=False))


def run(tflite, x, batch_size, num_threads, owner):
    """`predict`, its errors naming `owner`."""
    return _without_xnnpack_if_it_refuses(lambda runner: _run_batches(runner, x, batch_size, owner), tflite, owner,
                                          num_threads)


def _run_batches(runner, x, batch_size, owner):
    x, details = _check_x(runner, x, owner)
    outputs, allocated = [], None
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        if allocated != len(batch):
            runner.resize_tensor_input(details["index"], (len(batch), *x.shape[1:]))
            runner.allocate_tensors()
            allocated = len(batch)
        runner.set_tensor(details["index"], _quantize(batch, details))
        runner.invoke()
        outputs.append([_dequantize(runner.get_tensor(out["index"]), out) for out in output_details(runner)])
    results = [np.concatenate(parts) for parts in zip(*outputs)]
    return results[0] if len(results) == 1 else results


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """Latency of one single-sample `invoke`, in milliseconds."""

    p50_ms: float
    p90_ms: float
    mean_ms: float
    runs: int
    threads: int

    def __str__(self):
        return (f"p50 {self.p50_ms:.3f} ms, p90 {self.p90_ms:.3f} ms, mean {self.mean_ms:.3f} ms "
                f"({self.runs} runs, {self.threads} thread{'s' if self.threads > 1 else ''})")


def _allocated_for_one_sample(runner):
    details = _single_input(runner, "benchmark")
    shape = [1 if d == -1 else int(d) for d in details["shape_signature"]] or list(details["shape"])
    runner.resize_tensor_input(details["index"], shape)
    runner.allocate_tensors()
    return runner


def benchmark(tflite, runs=100, threads=1, warmup=10):
    """Times `runs` invokes of the model on one random sample after `warmup` untimed ones.

    Args:
        tflite: the flatbuffer as bytes, or the path of a .tflite file.
        runs: timed invokes. Defaults to 100.
        threads: threads of the interpreter. Defaults to 1.
        warmup: untimed invokes first. Defaults to 10.

    Returns:
        A `Benchmark` with the median, 90th percentile and mean latency in milliseconds.

    Example:
    >>> import keras, tfopt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> tfopt.export.benchmark(tfopt.export.to_tflite(model), runs=5).runs
    5
    """
    _checks.integer("benchmark", "runs", runs, low=1)
    _checks.integer("benchmark", "warmup", warmup, low=0)
    _checks.integer("benchmark", "threads", threads, low=1)
    runner = _without_xnnpack_if_it_refuses(_allocated_for_one_sample, tflite, "benchmark", threads)
    details = _single_input(runner, "benchmark")
    sample = np.random.default_rng(0).uniform(size=details["shape"]).astype("float32")
    runner.set_tensor(details["index"], _quantize(sample, details))
    times = []
    for run in range(warmup + runs):
        start = time.perf_counter()
        runner.invoke()
        if run >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    p50, p90 = np.percentile(times, [50, 90])
    return Benchmark(float(p50), float(p90), float(np.mean(times)), runs, threads)
