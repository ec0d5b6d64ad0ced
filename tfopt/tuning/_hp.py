"""What the search spaces share: their argument checks, which raise KerasTuner's fatal errors in the house form, and
registering a Float over a (low, high) pair.

Example:
    >>> import keras_tuner
    >>> from tfopt.tuning import _hp
    >>> _hp.register(keras_tuner.HyperParameters(), "rate", (1e-4, 1e-1), 1e-3, sampling="log")
    0.001
"""

import numbers

from tfopt import _checks


def fail(owner, name, value, rule, type_error=False):
    """Raises KerasTuner's fatal error in the house form (imported here only: `hp` comes from keras_tuner)."""
    from keras_tuner import errors

    _checks.satisfies(owner, name, value, False, rule, errors.FatalTypeError if type_error else errors.FatalValueError)


def names(owner, name, value, valid, rule=None):
    """Returns `value` (a non-empty sequence of distinct names, each valid per `valid(name)`) as a list."""
    rule = rule or "a non-empty list of distinct names, each one of " + ", ".join(repr(v) for v in valid)
    is_list = isinstance(value, (list, tuple)) and len(value) > 0
    if not is_list or len(set(value)) != len(value) or not all(valid_name(item, valid) for item in value):
        fail(owner, name, value, rule)
    return list(value)


def valid_name(item, valid):
    return valid(item) if callable(valid) else isinstance(item, str) and item in valid


def number(owner, name, value, low, high, low_open):
    """`value` as a float within [low, high] ((low, high] if `low_open`), else a fatal error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(owner, name, value, "a number or a (low, high) pair", type_error=True)
    in_range = (value > low if low_open else value >= low) and (high is None or value <= high)
    if not in_range:
        rule = f"in {'(' if low_open else '['}{low}, {high}]" if high is not None else f"> {low}"
        fail(owner, name, value, rule)
    return float(value)


def checked(owner, name, value, low=0.0, high=None, low_open=True):
    """A number (fixed: returned as a float) or a (low, high) pair with low < high, both within the bounds."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            fail(owner, name, value, "a number or a (low, high) pair")
        pair = tuple(number(owner, name, v, low, high, low_open) for v in value)
        if not pair[0] < pair[1]:
            fail(owner, name, value, "a (low, high) pair with low < high")
        return pair
    return number(owner, name, value, low, high, low_open)


def register(hp, name, value, default, sampling="linear", step=None):
    """Registers a Float over the pair `value` (default clipped into it), or returns the fixed number `value`."""
    if not isinstance(value, tuple):
        return value
    low, high = value
    return hp.Float(name, low, high, step=step, sampling=sampling, default=min(max(default, low), high))
