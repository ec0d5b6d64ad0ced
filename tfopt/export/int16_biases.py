"""Makes a 16x8 QAT TFLite file runnable: its convolution and fully-connected biases widened from int32 to int64.

The TFLite converter turns a graph fake-quantized with int16 activations (`quantize_model(scheme="16x8")`) into
int16 kernels but gives them int32 biases, which TFLite's 16x8 CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and
TRANSPOSE_CONV reject ("bias->type != kTfLiteInt64"). The bias values and scales are right; only their width is
not. `tfopt.export.to_tflite` calls this for 16x8 models, and `int8_into_int16_ops` to refuse a file with an op that
takes an int8 activation and writes an int16 one: the converter makes one from an activation left with an int8 range
in a 16x8 graph, and TFLite runs it without an error and with wrong outputs (a FULLY_CONNECTED gives every unit the
same value).

Example:
    >>> from tfopt.export.int16_biases import widen_int16_biases
    >>> fixed = widen_int16_biases(flatbuffer)  # doctest: +SKIP
"""

import numpy as np

_WITH_BIAS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
_BIAS_INPUT = {"TRANSPOSE_CONV": 3}  # (output_shape, weights, input, bias); the others: (input, weights, bias)
_DATA_INPUT = {"TRANSPOSE_CONV": 2}


def _parse(flatbuffer):
    """(schema module, flatbuffer_utils module, the model as an object, the op kind of every opcode index)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    kinds = [flatbuffer_utils.opcode_to_name(model, index) for index in range(len(model.operatorCodes))]
    return schema, flatbuffer_utils, model, kinds


def int8_into_int16_ops(flatbuffer):
    """The ops of the TFLite `flatbuffer` (bytes), as `"KIND (output name)"`, that read an int8 activation (an input
    of the graph or another op's output, not a constant) and write an int16 tensor, QUANTIZE (a legitimate
    requantization) aside."""
    schema, _, model, kinds = _parse(flatbuffer)
    found = []
    for subgraph in model.subgraphs:
        activations = set(subgraph.inputs).union(*(op.outputs for op in subgraph.operators))
        for op in subgraph.operators:
            kind = kinds[op.opcodeIndex]
            int8_in = any(index in activations and subgraph.tensors[index].type == schema.TensorType.INT8
                          for index in op.inputs if index >= 0)
            int16_out = [subgraph.tensors[index] for index in op.outputs
                         if subgraph.tensors[index].type == schema.TensorType.INT16]
            if kind != "QUANTIZE" and int8_in and int16_out:
                name = int16_out[0].name
                found.append(f"{kind} ({name.decode() if isinstance(name, bytes) else name})")
    return found


def widen_int16_biases(flatbuffer):
    """The TFLite `flatbuffer` (bytes) with the int32 bias of every int16-input kernel stored as int64."""
    schema, flatbuffer_utils, model, kinds = _parse(flatbuffer)
    widened = set()  # buffers already widened: the converter may share one buffer between equal biases
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            kind = kinds[op.opcodeIndex]
            bias_input = _BIAS_INPUT.get(kind, 2)
            if kind not in _WITH_BIAS or len(op.inputs) <= bias_input or op.inputs[bias_input] < 0:
                continue
            data, bias = subgraph.tensors[op.inputs[_DATA_INPUT.get(kind, 0)]], subgraph.tensors[op.inputs[bias_input]]
            if data.type == schema.TensorType.INT16 and bias.type == schema.TensorType.INT32:
                if bias.buffer not in widened:
                    buffer = model.buffers[bias.buffer]
                    buffer.data = np.frombuffer(bytes(buffer.data), "<i4").astype("<i8").tobytes()
                    widened.add(bias.buffer)
                bias.type = schema.TensorType.INT64
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
