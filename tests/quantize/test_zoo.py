"""keras.applications models through quantize_model -> fit -> to_tflite("int8") with every op between the input
QUANTIZE and the output DEQUANTIZE in int8: the whole zoo of issue 13, tfmot 0.8.1 manages two of the six it loads.
"""

import numpy as np
import pytest
from zoo_models import ZOO, random_images, zoo_model

import tfopt


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_application_exports_with_every_op_in_int8(name):
    x, y = random_images(16)
    quantized = tfopt.quantize.quantize_model(zoo_model(name))
    quantized.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
    quantized.fit(x, y, epochs=1, verbose=0)
    flatbuffer = tfopt.export.to_tflite(quantized, "int8")  # raises if an op computed in float inside
    assert tfopt.export.float_ops_inside(flatbuffer) == []
    convolutions = tfopt.export.inspect(flatbuffer).ops_of("CONV_2D")
    assert convolutions and {op.outputs[0] for op in convolutions} == {"int8"}
    agreement = np.mean(tfopt.export.predict(flatbuffer, x).argmax(1) == quantized.predict(x, verbose=0).argmax(1))
    assert agreement >= 0.8
