"""TFLite export and on-device checks: convert a Keras model, then inspect, run, score and time the flatbuffer.

```python
flatbuffer = tfopt.export.to_tflite(model, "int8", representative_data=x_train, path="model.tflite")
print(tfopt.export.inspect(flatbuffer))
tfopt.export.evaluate(flatbuffer, x_test, y_test)      # {"accuracy": ...}, with the LiteRT interpreter
print(tfopt.export.evaluate(model, x_test, y_test, task="classification"))  # precision, recall, F1 per class
tfopt.export.confusion_matrix(flatbuffer, x_test, y_test).plot("confusion.png")
tfopt.export.benchmark(flatbuffer).p50_ms
```
TensorFlow is imported when converting; running uses `ai_edge_litert` only.
"""

from tfopt.export.litert import Benchmark, benchmark, predict
from tfopt.export.metrics import ConfusionMatrix, Evaluation
from tfopt.export.scoring import confusion_matrix, evaluate
from tfopt.export.summary import Op, Summary, TensorSpec, float_ops_inside, inspect
from tfopt.export.tflite import QUANTIZATIONS, is_quantization_aware, to_tflite

__all__ = [
    "Benchmark",
    "ConfusionMatrix",
    "Evaluation",
    "Op",
    "QUANTIZATIONS",
    "Summary",
    "TensorSpec",
    "benchmark",
    "confusion_matrix",
    "evaluate",
    "float_ops_inside",
    "inspect",
    "is_quantization_aware",
    "predict",
    "to_tflite",
]
