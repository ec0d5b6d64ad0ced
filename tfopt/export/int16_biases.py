"""Makes a 16x8 QAT TFLite file runnable: its convolution and fully-connected biases widened from int32 to int64.

The TFLite converter turns a graph fake-quantized with int16 activations (`quantize_model(scheme="16x8")`) into
int16 kernels but gives them int32 biases, which TFLite's 16x8 CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and
TRANSPOSE_CONV reject ("bias->type != kTfLiteInt64"). The bias values and scales are right; only their width is
not. `tfopt.export.to_tflite` calls this for 16x8 models.

Example:
    >>> from tfopt.export.int16_biases import widen_int16_biases
    >>> fixed = widen_int16_biases(flatbuffer)  # doctest: +SKIP
"""

import numpy as np

_WITH_BIAS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
_BIAS_INPUT = {"TRANSPOSE_CONV": 3}  # (output_shape, weights, input, bias); the others: (input, weights, bias)
_DATA_INPUT = {"TRANSPOSE_CONV": 2}


def widen_int16_biases(flatbuffer):
    """The TFLite `flatbuffer` (bytes) with the int32 bias of every int16-input kernel stored as int64."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    kinds = [flatbuffer_utils.opcode_to_name(model, index) for index in range(len(model.operatorCodes))]
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
