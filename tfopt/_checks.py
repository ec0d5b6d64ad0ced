"""The validators that write tfopt's one error message.

Every public constructor checks its arguments with these, so that a bad value raises at construction (never inside
a traced graph) with a message naming the owner, the argument, the rule and the value received:

    OneCycle: argument `pct_start` must be in (0, 1). Received: pct_start=1.5

Example:
    >>> from tfopt import _checks
    >>> _checks.number("OneCycle", "pct_start", 0.3, low=0, high=1, closed="neither")
    0.3
"""

import math
import numbers

_BRACKETS = {"both": "[]", "neither": "()", "low": "[)", "high": "(]"}


def _fail(owner, name, rule, value, error=ValueError):
    raise error(f"{owner}: argument `{name}` must be {rule}. Received: {name}={value!r}")


def _range_rule(low, high, closed):
    if low is not None and high is not None:
        left, right = _BRACKETS[closed]
        return f"in {left}{low}, {high}{right}"
    if low is not None:
        return f">= {low}" if closed in ("both", "low") else f"> {low}"
    return f"<= {high}" if closed in ("both", "high") else f"< {high}"


def number(owner, name, value, low=None, high=None, closed="both", expected="a number"):
    """Returns `value` as a float if it is a finite real number within the bounds, else raises.

    `closed` says which bounds are allowed values: "both", "neither", "low" or "high". `expected` describes the
    valid types in the TypeError, for arguments that also take something other than a number.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(owner, name, expected, value, TypeError)
    value = float(value)
    if not math.isfinite(value):
        _fail(owner, name, "finite", value)
    low_ok = low is None or value > low or (value == low and closed in ("both", "low"))
    high_ok = high is None or value < high or (value == high and closed in ("both", "high"))
    if not (low_ok and high_ok):
        _fail(owner, name, _range_rule(low, high, closed), value)
    return value


def fraction(owner, name, value):
    """Returns `value` as a float if it is in [0, 1) (a decay rate such as `beta_1` or `momentum`), else raises."""
    return number(owner, name, value, low=0, high=1, closed="low")


def optimizer_rates(owner, learning_rate, weight_decay):
    """Checks an optimizer's `learning_rate` (a number >= 0 unless a schedule or callable) and `weight_decay`."""
    if not callable(learning_rate):
        number(owner, "learning_rate", learning_rate, low=0)
    if weight_decay is not None:
        number(owner, "weight_decay", weight_decay, low=0)


def integer(owner, name, value, low=None, high=None):
    """Returns `value` as an int if it is an integer within [low, high], else raises."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(owner, name, "an integer", value, TypeError)
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        _fail(owner, name, _range_rule(low, high, "both"), value)
    return value


def boolean(owner, name, value):
    """Returns `value` if it is a bool (not 1, 1.0 or "no": they would be stored as given or read as True), else
    raises a TypeError."""
    if not isinstance(value, bool):
        _fail(owner, name, "True or False", value, TypeError)
    return value


def choice(owner, name, value, choices):
    """Returns `value` if it is one of `choices`, else raises."""
    if value not in choices:
        _fail(owner, name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def instance(owner, name, value, types, expected):
    """Returns `value` if it is an instance of `types`, else raises a TypeError describing them as `expected`."""
    if not isinstance(value, types):
        _fail(owner, name, expected, value, TypeError)
    return value


def less(owner, small_name, small, large_name, large):
    """Raises unless `small < large`, naming both arguments."""
    if not small < large:
        raise ValueError(
            f"{owner}: argument `{small_name}` must be smaller than `{large_name}`. "
            f"Received: {small_name}={small!r}, {large_name}={large!r}"
        )


def satisfies(owner, name, value, condition, rule, error=ValueError):
    """Returns `value` if `condition` holds, else raises stating `rule` (for rules the validators above don't cover).

    Example: `_checks.satisfies("prune_low_magnitude", "structure", "2:x", False, 'None, "channel" or "N:M"')`
    raises `prune_low_magnitude: argument `structure` must be None, "channel" or "N:M". Received: structure='2:x'`.
    """
    if not condition:
        _fail(owner, name, rule, value, error)
    return value
