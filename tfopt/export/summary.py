"""`inspect`: what a TFLite flatbuffer holds — its ops with their tensor types, its inputs, outputs and size."""

import dataclasses

import numpy as np

from tfopt import _compat
from tfopt.export import litert

_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


@dataclasses.dataclass(frozen=True)
class Op:
    """One op of the main graph: its name ("CONV_2D", ...) and the dtypes of its inputs and outputs, in order.

    `weight_zeros` is the fraction of exact zeros in its constant weights (input 1) for CONV_2D, DEPTHWISE_CONV_2D,
    FULLY_CONNECTED and TRANSPOSE_CONV when the file stores them, None otherwise: what pruning left in the file.
    """

    name: str
    inputs: tuple
    outputs: tuple
    weight_zeros: float = None


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """An input or output tensor: dtype, shape (-1 for a free axis) and quantization (scale 0.0 if float)."""

    name: str
    dtype: str
    shape: tuple
    scale: float
    zero_point: int


@dataclasses.dataclass(frozen=True)
class Summary:
    """What `inspect` returns. `str(summary)` is a table of the ops."""

    ops: tuple
    tensor_count: int
    size_bytes: int
    constant_bytes: int
    inputs: tuple
    outputs: tuple

    def ops_of(self, name):
        """The ops named `name` ("CONV_2D", "FULLY_CONNECTED", ...), in graph order."""
        return [op for op in self.ops if op.name == name]

    def __str__(self):
        width = max([len("op")] + [len(op.name) for op in self.ops])
        lines = [f"{self.size_bytes} bytes ({self.constant_bytes} in constant tensors), {len(self.ops)} ops, "
                 f"{self.tensor_count} tensors"]
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            lines += [f"{kind} {s.name}: {s.dtype} {list(s.shape)} scale={s.scale:.6g} zero_point={s.zero_point}"
                      for s in specs]
        lines.append(f"{'op':<{width}}  inputs -> outputs")
        lines += [f"{op.name:<{width}}  {', '.join(op.inputs)} -> {', '.join(op.outputs)}" for op in self.ops]
        return "\n".join(lines)


def _spec(details):
    scale, zero_point = details["quantization"]
    shape = tuple(int(d) for d in details.get("shape_signature", details["shape"]))
    return TensorSpec(details["name"], np.dtype(details["dtype"]).name, shape, float(scale), int(zero_point))


def _weight_zeros(runner, op):
    if op["op_name"] not in _WEIGHTED or len(op["inputs"]) < 2:
        return None
    try:
        weights = runner.get_tensor(op["inputs"][1])
    except ValueError:  # computed while the model runs (dequantized, say), not stored in the file
        return None
    return float(np.mean(weights == 0))


def float_ops_inside(tflite):
    """The ops of a quantized model that compute in float, as "NAME #index": every op with a float input or output
    except a QUANTIZE reading a model input and a DEQUANTIZE writing a model output (the float edges of a model
    whose inputs and outputs stay float).

    Example:
    >>> import keras, numpy as np, tfopt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> tfopt.export.float_ops_inside(tfopt.export.to_tflite(model))
    ['FULLY_CONNECTED #0']
    """
    runner = litert.interpreter(tflite, "float_ops_inside", delegates=False)
    inputs = {d["index"] for d in runner.get_input_details()}
    outputs = {d["index"] for d in runner.get_output_details()}
    inside = []
    for op in _compat.interpreter_ops(runner):
        edge = ((op["op_name"] == "QUANTIZE" and set(op["inputs"]) <= inputs)
                or (op["op_name"] == "DEQUANTIZE" and set(op["outputs"]) <= outputs))
        types = [np.dtype(t) for t in (*op["operand_types"], *op["result_types"])]
        if not edge and any(np.issubdtype(t, np.floating) for t in types):
            inside.append(f"{op['op_name']} #{op['index']}")
    return inside


def _constant_bytes(content):
    """The bytes of a flatbuffer's buffers but its metadata's (the converter's version strings): its constant
    tensors' data, in the file or after it (a model over 2 GB)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    metadata = {model.Metadata(index).Buffer() for index in range(model.MetadataLength())}
    buffers = [model.Buffers(index) for index in range(model.BuffersLength()) if index not in metadata]
    return sum(buffer.DataLength() or (buffer.Size() if buffer.Offset() > 1 else 0) for buffer in buffers)


def inspect(tflite):
    """Lists the ops, tensors, inputs and outputs of a TFLite model, as the LiteRT interpreter reads it.

    Args:
        tflite: the flatbuffer as bytes, or the path of a .tflite file.

    Returns:
        A `Summary`: `ops` (each with `name`, `inputs` and `outputs` dtype names such as "int8"), `tensor_count`,
        `size_bytes`, `constant_bytes` (the data of its constant tensors: weights, biases, shapes; the rest of the
        file is the graph's structure, its tensors' names and quantization parameters, which a small model doesn't
        amortise), `inputs` and `outputs` (`TensorSpec`s with dtype, shape, scale and zero point; outputs in the
        model's order, as `predict` returns them).

    Example:
    >>> import keras, tfopt
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> summary = tfopt.export.inspect(tfopt.export.to_tflite(model))
    >>> [op.name for op in summary.ops], summary.inputs[0].dtype
    (['FULLY_CONNECTED'], 'float32')
    """
    content = litert.read(tflite, "inspect")
    runner = litert.interpreter(content, "inspect", delegates=False)
    runner.allocate_tensors()
    ops = tuple(
        Op(op["op_name"], tuple(np.dtype(t).name for t in op["operand_types"]),
           tuple(np.dtype(t).name for t in op["result_types"]), _weight_zeros(runner, op))
        for op in _compat.interpreter_ops(runner)
    )
    return Summary(
        ops=ops,
        tensor_count=len(runner.get_tensor_details()),
        size_bytes=len(content),
        constant_bytes=_constant_bytes(content),
        inputs=tuple(_spec(d) for d in runner.get_input_details()),
        outputs=tuple(_spec(d) for d in litert.output_details(runner)),
    )
