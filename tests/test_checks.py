import math

import pytest

from tfopt import _checks


@pytest.mark.parametrize(
    "value, kwargs, rule",
    [
        (5, dict(low=0, high=1, closed="neither"), "in (0, 1)"),
        (5, dict(low=0, high=1, closed="both"), "in [0, 1]"),
        (5, dict(low=0, high=1, closed="low"), "in [0, 1)"),
        (5, dict(low=0, high=1, closed="high"), "in (0, 1]"),
        (1, dict(low=2), ">= 2"),
        (2, dict(low=2, closed="neither"), "> 2"),
        (0, dict(high=-1), "<= -1"),
        (-1, dict(high=-1, closed="neither"), "< -1"),
    ],
)
def test_range_messages(value, kwargs, rule):
    with pytest.raises(ValueError) as raised:
        _checks.number("Owner", "x", value, **kwargs)
    assert str(raised.value) == f"Owner: argument `x` must be {rule}. Received: x={float(value)!r}"


def test_bounds_are_inclusive_only_where_closed():
    assert _checks.number("O", "x", 0, low=0, high=1, closed="low") == 0.0
    with pytest.raises(ValueError):
        _checks.number("O", "x", 1, low=0, high=1, closed="low")


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ValueError, match=f"Owner: argument `x` must be finite. Received: x={value}"):
        _checks.number("Owner", "x", value)


def test_types():
    with pytest.raises(TypeError, match="Owner: argument `x` must be a number. Received: x=True"):
        _checks.number("Owner", "x", True)
    with pytest.raises(TypeError, match="Owner: argument `n` must be an integer. Received: n=2.0"):
        _checks.integer("Owner", "n", 2.0)
    with pytest.raises(TypeError, match="Owner: argument `s` must be a string. Received: s=3"):
        _checks.instance("Owner", "s", 3, str, "a string")


def test_choice_and_less():
    with pytest.raises(ValueError, match="Owner: argument `mode` must be one of 'a', 'b'. Received: mode='c'"):
        _checks.choice("Owner", "mode", "c", ("a", "b"))
    with pytest.raises(ValueError, match="Owner: argument `low` must be smaller than `high`. Received: low=2, high=1"):
        _checks.less("Owner", "low", 2, "high", 1)


@pytest.mark.parametrize("value", [1, 0, 1.0, "no", None])
def test_boolean_accepts_only_bools(value):
    assert _checks.boolean("Owner", "flag", True) is True and _checks.boolean("Owner", "flag", False) is False
    with pytest.raises(TypeError) as raised:
        _checks.boolean("Owner", "flag", value)
    assert str(raised.value) == f"Owner: argument `flag` must be True or False. Received: flag={value!r}"
