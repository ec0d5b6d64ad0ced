"""The demo's final table, one row per stage: as Markdown (printed and saved) and as a PNG figure.

Example:
    >>> from tfopt.demo.measure import Row
    >>> from tfopt.demo.report import markdown
    >>> print(markdown([Row("dense float32", 0.97, 0.97, 156.2, 140.1, 0.05)]).splitlines()[2])
    | dense float32 | 0.9700 | 0.9700 | 156.2 | 140.1 | 0.050 |
"""

import os

from tfopt import _files, _plotting

HEADERS = ("stage", "Keras accuracy", "TFLite accuracy", "file size (KB)", "gzipped (KB)", "latency p50 (ms)")


def _cells(row):
    return (row.stage, f"{row.keras_accuracy:.4f}", f"{row.tflite_accuracy:.4f}", f"{row.size_kb:.1f}",
            f"{row.gzipped_kb:.1f}", f"{row.p50_ms:.3f}")


def markdown(rows):
    """A Markdown table of `rows` (`tfopt.demo.measure.Row`s), numbers right-aligned."""
    lines = ["| " + " | ".join(HEADERS) + " |", "| --- |" + " ---: |" * (len(HEADERS) - 1)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def _figure(rows):
    figure, axes = _plotting.new_figure(size=(10, 0.45 * (len(rows) + 2)))
    axes.axis("off")
    table = axes.table(cellText=[_cells(row) for row in rows], colLabels=HEADERS, loc="center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1, 1.4)
    for (line, column), cell in table.get_celld().items():
        if line == 0:
            cell.set_text_props(weight="bold")
        if column == 0:
            cell.set_text_props(ha="left")
    table.auto_set_column_width(range(len(HEADERS)))
    axes.set_title("tfopt demo: digits CNN on the test split (LiteRT interpreter, 1 thread)")
    return figure


def save(rows, out):
    """Writes `results.md` and `results.png` in the folder `out` (atomically); returns their two paths."""
    text = (markdown(rows) + "\n").encode("utf-8")
    path = _files.write_atomically(os.path.join(out, "results.md"), lambda file: file.write(text))
    return path, _plotting.save_png(_figure(rows), os.path.join(out, "results.png"))
