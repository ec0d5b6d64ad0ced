"""Matplotlib figures written atomically, without pyplot's global state (safe in scripts, tests and threads).

Example:
    >>> from tfopt import _plotting
    >>> figure, axes = _plotting.new_figure()
    >>> _ = axes.plot([0, 1], [1, 0])
    >>> path = _plotting.save_png(figure, "/tmp/line.png")
"""

import os

from tfopt import _files


def new_figure(size=(6, 4)):
    """A fresh (figure, axes) pair; raises an ImportError naming the extra to install if matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("Plotting needs matplotlib: `pip install tfopt[plot]`.") from error
    figure = Figure(figsize=size, layout="tight")
    return figure, figure.add_subplot()


def save_png(figure, path):
    """Writes `figure` to `path` as a PNG through a temporary file, so a failure leaves no partial file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return _files.write_atomically(path, lambda stream: figure.savefig(stream, format="png", dpi=100))
