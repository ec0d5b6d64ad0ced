"""What each stage's TFLite file gives on the test split: accuracy, size raw and gzipped, single-sample latency.

Example:
    >>> import tfopt
    >>> from tfopt.demo.data import load_digits_split
    >>> from tfopt.demo.measure import measure
    >>> from tfopt.demo.model import digits_cnn
    >>> flatbuffer = tfopt.export.to_tflite(digits_cnn())
    >>> row = measure("untrained float32", 0.1, flatbuffer, load_digits_split(), runs=10)
    >>> row.size_kb > row.gzipped_kb
    True
"""

import dataclasses
import gzip

import tfopt


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the final table. Sizes in KB (1024 bytes), latency in milliseconds."""

    stage: str
    keras_accuracy: float
    tflite_accuracy: float
    size_kb: float
    gzipped_kb: float
    p50_ms: float


def measure(stage, keras_accuracy, flatbuffer, split, runs=300):
    """Scores `flatbuffer` on the test split with the LiteRT interpreter and times `runs` single-sample invokes on
    one thread. Gzip shows what sparsity saves: the flatbuffer stores zeros densely, but they compress."""
    accuracy = tfopt.export.evaluate(flatbuffer, split.x_test, split.y_test)["accuracy"]
    latency = tfopt.export.benchmark(flatbuffer, runs=runs, threads=1)
    gzipped = len(gzip.compress(flatbuffer, compresslevel=9))
    return Row(stage, keras_accuracy, accuracy, len(flatbuffer) / 1024, gzipped / 1024, latency.p50_ms)
