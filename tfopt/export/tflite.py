"""`to_tflite`: a Keras 3 or tf_keras model to a TFLite flatbuffer (float32, float16, dynamic range or int8)."""

import contextlib
import io
import os
import sys
import warnings

import keras

from tfopt import _checks, _compat, _files, _surgery, distribute, quantize
from tfopt.export import _data, summary
from tfopt.export.int16_biases import int8_into_int16_ops, widen_int16_biases

QUANTIZATIONS = (None, "float16", "dynamic", "int8")
_OWNER = "to_tflite"
_DYNAMIC_MIN_ELEMENTS = 1024  # the converter's threshold for dynamic range quantization of a weight tensor


def is_quantization_aware(model):
    """True if `model` was prepared for quantization-aware training, so its int8 (or 16x8) ranges are in its graph.

    Args:
        model: a Keras 3 or tf_keras model.

    Example:
    >>> import keras, tfopt
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> quantized = tfopt.quantize.quantize_model(model)
    >>> tfopt.export.is_quantization_aware(model), tfopt.export.is_quantization_aware(quantized)
    (False, True)
    """
    return quantize.scheme_of(model) is not None


def _check_ranges_learned(model):
    """Raises unless every activation range of a tfopt QAT model has seen a training batch."""
    untrained = quantize.unlearned_ranges(model)
    if len(untrained) > 4:
        untrained = [*untrained[:3], f"... {len(untrained)} in all"]
    _checks.satisfies(_OWNER, "model", model, not untrained,
                      f"trained before export: its activation ranges are learned in `fit` (untrained: {untrained})")


def _check_integer_only(flatbuffer):
    """Raises unless every op of a QAT model's flatbuffer computes in integers (float only at its inputs/outputs)."""
    floating = summary.float_ops_inside(flatbuffer)
    if floating:
        raise ValueError(
            f"{_OWNER}: the quantization-aware model converts with {len(floating)} op(s) computing in float between "
            f"integer ones: {', '.join(floating)}. Quantize the layers behind them (or drop them from "
            "`quantize_model(skip=...)`), or pass `allow_float_ops=True` to export the mixed model anyway."
        )


def _check_int16_activations(flatbuffer):
    """Raises if a 16x8 QAT model's flatbuffer has an op reading int8 activations into int16 outputs, which TFLite
    runs without an error and with wrong outputs."""
    mixed = int8_into_int16_ops(flatbuffer)
    if mixed:
        raise ValueError(
            f"{_OWNER}: the 16x8 quantization-aware model converts with {len(mixed)} op(s) that read an int8 "
            f"activation into an int16 output, which TFLite computes wrong without an error: {', '.join(mixed)}. "
            'Every layer before them must be quantized with scheme="16x8" (int16 output ranges); '
            'or train with scheme="int8".'
        )


@contextlib.contextmanager
def _quiet():
    """Silences the converter: Python output, warnings and the C++ logs on file descriptors 1 and 2."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as null, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _check_arguments(model, quantization, representative_data, int8_io, scheme, allow_float_ops):
    if not _compat.is_legacy(model):
        _checks.instance(_OWNER, "model", model, keras.Model, "a Keras 3 or tf_keras Model")
    _checks.satisfies(_OWNER, "model", model, model.built,
                      "built: give it a `keras.Input` (Sequential, Functional) or call a subclassed model once")
    _checks.choice(_OWNER, "quantization", quantization, QUANTIZATIONS)
    _checks.boolean(_OWNER, "int8_io", int8_io)
    _checks.boolean(_OWNER, "allow_float_ops", allow_float_ops)
    int8_io_fits = not int8_io or (quantization == "int8" and scheme != "16x8")
    _checks.satisfies(_OWNER, "int8_io", int8_io, int8_io_fits,
                      'False unless quantization="int8" (and the model is not a 16x8 QAT model)')
    _checks.satisfies(_OWNER, "quantization", quantization, scheme is None or quantization == "int8",
                      '"int8" for a quantization-aware model, whose fake-quant ops make integer kernels (export the '
                      "float model it was made from for float32, float16 or dynamic range)")
    half = sorted({layer.dtype_policy.name for layer in _surgery.layers(model, containers=True)
                   if not _compat.is_legacy(layer)
                   and getattr(layer, "dtype_policy", None) is not None
                   and layer.dtype_policy.compute_dtype in ("float16", "bfloat16")})
    kernels = "int8 kernels" if quantization == "int8" else "TFLite's float32 kernels"
    _checks.satisfies(
        _OWNER, "model", model, not half,
        f"computing in float32 for {kernels}, not in {half}: build it under "
        "keras.config.set_dtype_policy('float32') and copy the weights in (model.set_weights(trained.get_weights()))",
    )
    if quantization != "int8":
        return
    if scheme is None:
        _checks.satisfies(
            _OWNER, "representative_data", representative_data, representative_data is not None,
            'given for quantization="int8" of a model that is not quantization-aware (calibration inputs, e.g. '
            "100-200 training samples)",
        )
        _checks.satisfies(_OWNER, "model", model, bool(getattr(model, "inputs", None)),
                          'a model with symbolic `inputs` (Sequential with a `keras.Input`, or Functional) for '
                          'quantization="int8" with `representative_data`, which is shaped after its input: wrap a '
                          "subclassed model as `keras.Model(x := keras.Input(shape), model(x))` (a tfopt "
                          "`Distiller`: export its `student`)")
        inputs = len(model.inputs)
        _checks.satisfies(_OWNER, "model", f"<model with {inputs} inputs>", inputs == 1,
                          'a model with one input for quantization="int8" with `representative_data` (its '
                          "calibration batches feed one input)")
        return
    _checks.satisfies(_OWNER, "representative_data", representative_data, representative_data is None,
                      "None for a quantization-aware model: its ranges were learned in training")
    _check_ranges_learned(model)


def _check_weights_quantized(flatbuffer):
    """Raises if a dynamic range conversion left every weight float32 (the converter skips small weight tensors)."""
    quantized = any("int8" in op.inputs for op in summary.inspect(flatbuffer).ops)
    _checks.satisfies(_OWNER, "quantization", "dynamic", quantized,
                      f'"float16" or "int8" (with `representative_data`) for this model: "dynamic" quantizes only '
                      f"weight tensors of {_DYNAMIC_MIN_ELEMENTS} elements or more, and it has none, so every weight "
                      "would stay float32")


def _check_path(path, overwrite):
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{_OWNER}: argument `path` must be a file's path, not a folder's. Received: "
                                f"path={path!r} (e.g. {os.path.join(path, 'model.tflite')!r})")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{_OWNER}: {path} already exists. Pass `overwrite=True` to replace it.")
    if not os.path.isdir(os.path.dirname(path)):
        raise FileNotFoundError(f"{_OWNER}: the folder of {path} does not exist.")
    return path


def _converter(model, quantization, representative_data, int8_io, scheme):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization is None:
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8" and representative_data is not None:  # else a QAT model: ranges from fake-quant ops
        model_input = model.inputs[0]
        dtype = getattr(model_input.dtype, "as_numpy_dtype", model_input.dtype)  # a tf.DType in tf_keras
        samples = _data.calibration_samples(representative_data, tuple(model_input.shape), dtype)
        converter.representative_dataset = lambda: ([sample] for sample in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if quantization == "int8" and scheme == "16x8":
        sixteen_by_eight = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        converter.target_spec.supported_ops = [sixteen_by_eight]
    if int8_io:
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter


def to_tflite(model, quantization=None, representative_data=None, path=None, int8_io=False, overwrite=False,
              allow_float_ops=False):
    """Converts `model` with TensorFlow's TFLite converter and returns the flatbuffer, optionally written to `path`.

    | quantization | weights | activations | needs                                                  |
    | ------------ | ------- | ----------- | ------------------------------------------------------ |
    | None         | float32 | float32     |                                                        |
    | "float16"    | float16 | float32     |                                                        |
    | "dynamic"    | int8    | float32     | weight tensors of 1024 elements or more                |
    | "int8"       | int8    | int8        | `representative_data`, unless the model is QAT-trained |

    "dynamic" leaves weight tensors under 1024 elements float32 (the converter's threshold), and raises a
    ValueError if that is all of them.

    "int8" with `representative_data` is full-integer post-training quantization: every op must have an int8 kernel
    (`TFLITE_BUILTINS_INT8`) or conversion fails. A quantization-aware model (`is_quantization_aware`; from
    `tfopt.quantize.quantize_model` or tfmot) carries its ranges in its fake-quant ops and takes no calibration data;
    an op its fake-quant ops don't cover would stay float between integer ones: that raises a ValueError naming
    it, unless `allow_float_ops=True` (for layers kept in float on purpose, `quantize_model(skip=...)`).
    "int8" of a 16x8 QAT model
    (`quantize_model(scheme="16x8")`) gives TFLite's 16x8 mode: int8 weights, int16 activations; an op reading an
    int8 activation into an int16 output (which TFLite runs with wrong outputs) raises a ValueError naming it,
    whatever `allow_float_ops`. The converter's logs are silenced.

    Args:
        model: a Keras 3 model, or a tf_keras model in a process run with `TF_USE_LEGACY_KERAS=1`. Single input.
            Its layers compute in float32 (a mixed precision model is refused: rebuild it in float32).
        quantization: None, "float16", "dynamic" or "int8". Defaults to None (float32).
        representative_data: inputs to calibrate "int8" on: a NumPy array of samples, a `tf.data.Dataset` (batched
            or not, of `x` or `(x, y)`), an iterable or a callable returning an iterator of batches, for a model
            with one input; cast to that input's dtype (token ids for an int32 input). Up to 200 samples are used.
            Defaults to None.
        path: if given, the file to write; it is written atomically (temporary file, then rename). Under a
            multi-worker strategy only the chief writes it (`tfopt.distribute.is_chief`). Defaults to None.
        int8_io: makes the input and output tensors int8 (only with "int8"); `tfopt.export.predict` still takes and
            returns floats. Defaults to False.
        overwrite: replace an existing `path`; otherwise a `FileExistsError` is raised before converting.
            Defaults to False.
        allow_float_ops: export a quantization-aware model even if some of its ops compute in float between
            integer ones. Defaults to False.

    Returns:
        The flatbuffer as `bytes`.

    Example:
    >>> import keras, numpy as np, tfopt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> flatbuffer = tfopt.export.to_tflite(model, "int8", representative_data=np.random.rand(50, 4))
    >>> tfopt.export.inspect(flatbuffer).ops_of("FULLY_CONNECTED")[0].outputs
    ('int8',)
    """
    scheme = quantize.scheme_of(model)
    _check_arguments(model, quantization, representative_data, int8_io, scheme, allow_float_ops)
    if path is not None and not distribute.is_chief(getattr(model, "distribute_strategy", None)):
        path = None  # under a multi-worker strategy only the chief writes the file
    if path is not None:
        path = _check_path(path, overwrite)
    converter = _converter(model, quantization, representative_data, int8_io, scheme)
    try:
        with _quiet():
            flatbuffer = converter.convert()
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(
            f"{_OWNER}: the TFLite converter failed for quantization={quantization!r}: {reason}"
        ) from error
    if scheme == "16x8":
        _check_int16_activations(flatbuffer)
        flatbuffer = widen_int16_biases(flatbuffer)
    if scheme is not None and not allow_float_ops:
        _check_integer_only(flatbuffer)
    if quantization == "dynamic":
        _check_weights_quantized(flatbuffer)
    if path is not None:
        _files.write_atomically(path, lambda file: file.write(flatbuffer))
    return flatbuffer
