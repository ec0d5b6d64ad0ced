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


def calibration_samples(data, input_shape, limit=MAX_SAMPLES):
    """Up to `limit` float32 samples of shape `(1, *input_shape[1:])` taken from `data`.

    A batch is recognised by its rank (the model input's rank, batch axis included); an element one rank lower is
    one sample. `(x, y)` pairs give their `x`.

    Example:
    >>> import numpy as np
    >>> len(calibration_samples(np.zeros((300, 4)), (None, 4)))
    200
    """
    samples = []
    for batch in _batches(data):
        batch = batch.astype("float32")
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
