import os
import re
import sys

import keras
import numpy as np
import pytest

from tfopt.schedules import OneCycle, WarmUp, plot, values

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_values_are_the_rates_of_steps_from_zero():
    schedule = WarmUp(keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5), warmup_steps=5)
    rates = values(schedule, 30)
    assert rates.shape == (30,)
    np.testing.assert_allclose(rates, [float(schedule(step)) for step in range(30)], rtol=1e-6)


def test_values_of_a_constant_function_fill_every_step():
    np.testing.assert_array_equal(values(lambda step: 0.5, 4), [0.5] * 4)


def test_plot_writes_a_png_and_returns_its_path(tmp_path):
    pyplot_was_loaded = "matplotlib.pyplot" in sys.modules
    path = str(tmp_path / "one_cycle.png")
    assert plot(OneCycle(1e-2, total_steps=200), 200, path, title="1cycle") == path
    with open(path, "rb") as file:
        assert file.read(8) == PNG_SIGNATURE
    assert os.listdir(tmp_path) == ["one_cycle.png"]
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_was_loaded


def test_plot_keeps_the_old_file_if_writing_fails(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "curve.png"
    path.write_bytes(b"old curve")

    def failing_savefig(self, file, **kwargs):
        file.write(PNG_SIGNATURE)
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", failing_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot(OneCycle(1e-2, total_steps=50), 50, path)
    assert path.read_bytes() == b"old curve"
    assert os.listdir(tmp_path) == ["curve.png"]


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=re.escape("pip install tfopt[plot]")):
        plot(OneCycle(1e-2, total_steps=50), 50, tmp_path / "curve.png")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "function, arguments, error, message",
    [
        (values, (0,), ValueError, "values: argument `steps` must be >= 1. Received: steps=0"),
        (values, (10.0,), TypeError, "values: argument `steps` must be an integer. Received: steps=10.0"),
        (plot, (-3, "curve.png"), ValueError, "plot: argument `steps` must be >= 1. Received: steps=-3"),
        (plot, (3, "curve.png", 7), TypeError, "plot: argument `title` must be a string or None. Received: title=7"),
    ],
)
def test_rejects(function, arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        function(OneCycle(1e-2, total_steps=50), *arguments)


@pytest.mark.parametrize("function", [values, plot])
def test_rejects_a_schedule_that_is_not_callable(function, tmp_path):
    with pytest.raises(TypeError, match=re.escape(f"{function.__name__}: argument `schedule` must be a "
                                                  "LearningRateSchedule or a function of the step. Received: "
                                                  "schedule=0.1")):
        function(0.1, 5, *([tmp_path / "curve.png"] if function is plot else []))
    assert list(tmp_path.iterdir()) == []
