"""What `DeploymentTuner` takes from the arguments of `search` (those of `model.fit`): the validation arrays the
exported model is scored on, and the training inputs that calibrate a post-training int8 export.

Example:
    >>> import numpy as np
    >>> from tfopt.tuning import _fit_data
    >>> x, y = _fit_data.validation_arrays({"validation_data": (np.zeros((4, 2)), np.ones(4))})
    >>> x.shape, y.shape
    ((4, 2), (4,))
"""

import numpy as np

from tfopt import _checks

_OWNER = "DeploymentTuner.search"
_RULE = "an (x, y) tuple of arrays or a tf.data.Dataset of (x, y) batches: the exported model is scored on it"


def _dataset_arrays(dataset):
    xs, ys = [], []
    for batch in dataset.as_numpy_iterator():
        _checks.satisfies(_OWNER, "validation_data", "<a dataset of single tensors>",
                          isinstance(batch, tuple) and len(batch) >= 2, _RULE)
        xs.append(batch[0])
        ys.append(batch[1])
    _checks.satisfies(_OWNER, "validation_data", "<an empty dataset>", xs, _RULE)
    return np.concatenate(xs), np.concatenate(ys)  # batched, as `fit` takes it


def validation_arrays(fit_kwargs):
    """(x, y) as NumPy arrays from `validation_data` (a tuple or a dataset), else a ValueError."""
    data = fit_kwargs.get("validation_data")
    if hasattr(data, "as_numpy_iterator"):
        return _dataset_arrays(data)
    is_pair = isinstance(data, (tuple, list)) and len(data) in (2, 3)
    _checks.satisfies(_OWNER, "validation_data", data if data is None else f"<{type(data).__name__}>", is_pair,
                      _RULE)
    return np.asarray(data[0]), np.asarray(data[1])


def training_inputs(fit_args, fit_kwargs):
    """The training inputs given to `search` (`x`: an array, or a dataset of `x` or `(x, y)`), or None."""
    return fit_args[0] if fit_args else fit_kwargs.get("x")
