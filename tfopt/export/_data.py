"""Turns what a user calls representative data into the samples the TFLite converter calibrates int8 ranges on."""

import itertools

import numpy as np

from tfopt import _checks

MAX_SAMPLES = 200
_OWNER = "to_tflite"
_RULE = "a NumPy array, a tf.data.Dataset, an iterable or a callable returning an iterator of input batches"


def _batches(data):
    """The batches (or single samples) in `data`, as NumPy arrays of the model's first input."""
    if isinstance(data, np.ndarray):
        return iter([data])
    if callable(data):
        data = data()
    _checks.satisfies(_OWNER, "representative_data", data, hasattr(data, "__iter__"), _RULE, TypeError)
    return (np.asarray(item[0] if isinstance(item, (tuple, list)) else item) for item in data)


def _as_dtype(batch, dtype):
    """`batch` cast to the model input's `dtype`; values an integer input can't hold exactly are refused."""
    exact = not np.issubdtype(dtype, np.integer) or (
        np.issubdtype(batch.dtype, np.number) and np.array_equal(batch, batch.astype(dtype)))
    _checks.satisfies(_OWNER, "representative_data", f"<batch of dtype {batch.dtype}>", exact,
                      f"integers for the model's {dtype} input")
    return batch.astype(dtype)


def calibration_samples(data, input_shape, dtype="float32", limit=MAX_SAMPLES):
    """Up to `limit` samples of shape `(1, *input_shape[1:])` and the model input's `dtype`, taken from `data`.

    A batch is recognised by its rank (the model input's rank, batch axis included); an element one rank lower is
    one sample. `(x, y)` pairs give their `x`.

    Example:
    >>> import numpy as np
    >>> samples = calibration_samples(np.zeros((300, 4)), (None, 4), "int32")
    >>> len(samples), samples[0].dtype
    (200, dtype('int32'))
    """
    dtype = np.dtype(dtype)
    samples = []
    for batch in _batches(data):
        batch = _as_dtype(batch, dtype)
        if batch.ndim == len(input_shape) - 1:
            batch = batch[np.newaxis]
        expected = tuple(input_shape[1:])
        fits = batch.ndim == len(input_shape) and all(e in (None, b) for e, b in zip(expected, batch.shape[1:]))
        _checks.satisfies(
            _OWNER, "representative_data", f"<batch of shape {batch.shape}>", fits,
            f"batches of the model's input shape {(None, *expected)}",
        )
        samples.extend(sample[np.newaxis] for sample in itertools.islice(batch, limit - len(samples)))
        if len(samples) >= limit:
            break
    _checks.satisfies(_OWNER, "representative_data", f"<empty {type(data).__name__}>", samples, "non-empty")
    return samples
