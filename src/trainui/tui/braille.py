"""A chart's plot drawn in braille with numpy: lines through a run's points, a frame with the
y axis' values on the left and the steps' ticks below, as a Rich ``Text``.

This replaces plotext (through textual-plotext) for the metric charts. Measured on this
project's 2-core machine (README, "Metrics"): plotext built a 60x17 chart of one series in
3.4 ms and its ANSI text was parsed again (0.8 ms) before Textual drew it; a compare chart of
20 runs took it 30 to 40 ms. Here every line is rasterised at once (numpy), and the text is
made with its colours as spans, never as escape codes: 0.2 to 1 ms a chart. The look follows
plotext's (a frame of box-drawing lines, ``┤`` at a labelled row, ``┬`` at a tick), so a chart
reads as before.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from rich.style import Style
from rich.text import Text

# the dot of each of a braille cell's 2 x 4 places (x, y from the top left): Unicode's order
_DOTS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint8)
BLANK = 0x2800


class Line:
    """One series: its x (steps) and y values, drawn in ``style`` (a Rich colour)."""

    __slots__ = ("xs", "ys", "style")

    def __init__(self, xs: np.ndarray, ys: np.ndarray, style: str) -> None:
        self.xs = np.asarray(xs, dtype=np.float64)
        self.ys = np.asarray(ys, dtype=np.float64)
        self.style = style


def plot(
    width: int,
    height: int,
    lines: Sequence[Line],
    x_ticks: tuple[Sequence[float], Sequence[str]],
    log: bool = False,
    axes: str | None = None,
    cursor: float | None = None,
    frame: dict | None = None,
) -> Text:
    """The plot ``width`` x ``height`` cells: ``lines`` (at least one with a value that can be
    drawn: above zero where ``log``) over the frame, the y axis labelled, ``x_ticks`` (steps,
    labels) below. A line without points is left out; a NaN value (or one at or below zero
    where ``log``) is a gap in its line. ``cursor``: a step, marked by a rule across the plot.
    ``frame``, when given, is filled with the steps' scale: ``x_low``, ``x_high``, ``columns``."""
    lines = [line for line in lines if len(line.xs)]
    axes_style = Style.parse(axes) if axes else Style()
    ys = [_log10(line.ys) if log else line.ys for line in lines]
    drawn = [y[np.isfinite(y)] for y in ys]
    low = min(float(y.min()) for y in drawn if len(y))
    high = max(float(y.max()) for y in drawn if len(y))
    if high - low < 1e-12 * max(1.0, abs(high)):  # a flat line: in the middle
        pad = 0.5 if log or not high else abs(high) * 0.1  # a tenth of its value, each side
        low, high = low - pad, high + pad
    x_low = min(float(line.xs[0]) for line in lines)
    x_high = max(float(line.xs[-1]) for line in lines)
    if x_high <= x_low:
        x_low, x_high = x_low - 0.5, x_high + 0.5
    rows = max(1, height - 3)  # the frame's top and bottom, the ticks' labels
    labels = _y_labels(low, high, rows, log)
    label_width = max(len(label) for label in labels.values()) + 1
    columns = max(1, width - label_width - 2)
    if frame is not None:
        frame.update(x_low=x_low, x_high=x_high, columns=columns)
    codes = np.zeros((rows, columns), dtype=np.uint8)
    colour = np.full((rows, columns), -1, dtype=np.int16)
    for index, (line, y) in enumerate(zip(lines, ys, strict=True)):
        px = (line.xs - x_low) * ((2 * columns - 1) / (x_high - x_low))
        py = (high - y) * ((4 * rows - 1) / (high - low))
        dots_x, dots_y = _trace_gaps(px, py)
        if not len(dots_x):
            continue
        np.clip(dots_x, 0, 2 * columns - 1, out=dots_x)
        np.clip(dots_y, 0, 4 * rows - 1, out=dots_y)
        cell_y, cell_x = dots_y >> 2, dots_x >> 1
        np.bitwise_or.at(codes, (cell_y, cell_x), _DOTS[dots_y & 3, dots_x & 1])
        colour[cell_y, cell_x] = index  # a cell two lines cross: the later one's colour
    styles = [Style.parse(line.style) if line.style else Style() for line in lines]
    rule = None
    if cursor is not None and x_low <= cursor <= x_high:
        dot = round((cursor - x_low) * (2 * columns - 1) / (x_high - x_low))  # as a line's
        rule = min(columns - 1, dot >> 1)
        styles.append(axes_style)  # the rule's cells where no line passes: index len(lines)
    text = Text(no_wrap=True, end="")
    pad = " " * label_width
    text.append(pad + "┌" + "─" * columns + "┐\n", axes_style)
    for row in range(rows):
        label = labels.get(row)
        if label is None:
            text.append(pad + "│", axes_style)
        else:
            text.append(label.rjust(label_width) + "┤", axes_style)
        _append_cells(text, codes[row], colour[row], styles, rule)
        text.append("│\n", axes_style)
    tick_columns, tick_labels = _x_ticks(x_ticks, x_low, x_high, columns)
    bottom = ["─"] * columns
    for column in tick_columns:
        bottom[column] = "┬"
    text.append(pad + "└" + "".join(bottom) + "┘\n", axes_style)
    under = [" "] * (label_width + columns + 2)
    free = 0  # the first place a label may start (labels never touch)
    for column, label in zip(tick_columns, tick_labels, strict=True):
        start = max(free, label_width + 1 + column - len(label) // 2)
        if start + len(label) > len(under):
            break
        under[start : start + len(label)] = label
        free = start + len(label) + 1
    text.append("".join(under).rstrip(), axes_style)
    return text


def _log10(values: np.ndarray) -> np.ndarray:
    """The logarithms of ``values``; NaN for those at or below zero (a gap)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.where(values > 0, values, np.nan))


def _trace_gaps(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The dots of the line through the points, none across a NaN (a gap)."""
    shown = np.isfinite(py)
    if shown.all():
        return _trace(px, py)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], shown.view(np.int8), [0]))))
    pieces = [_trace(px[a:b], py[a:b]) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    if not pieces:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate([x for x, _ in pieces]), np.concatenate([y for _, y in pieces])


def _trace(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The dots (integer x, y) on the straight segments between consecutive points."""
    if len(px) == 1:
        return np.rint(px).astype(np.int64), np.rint(py).astype(np.int64)
    dx, dy = np.diff(px), np.diff(py)
    steps = np.maximum(np.ceil(np.maximum(np.abs(dx), np.abs(dy))), 1).astype(np.int64)
    starts = np.repeat(np.arange(len(dx)), steps)
    offsets = np.arange(int(steps.sum())) - np.repeat(np.cumsum(steps) - steps, steps)
    t = offsets / steps[starts]
    x = np.concatenate((px[starts] + dx[starts] * t, px[-1:]))
    y = np.concatenate((py[starts] + dy[starts] * t, py[-1:]))
    return np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)


def _append_cells(
    text: Text, codes: np.ndarray, colour: np.ndarray, styles: list, rule: int | None = None
) -> None:
    """One row of the plot: runs of cells of the same colour, each one span; ``rule``: the
    cursor's column, a ``│`` (in the last style) where no line passes."""
    chars = "".join(map(chr, (codes.astype(np.int32) + BLANK).tolist())).replace("\u2800", " ")
    if rule is not None and not codes[rule]:
        chars = chars[:rule] + "│" + chars[rule + 1 :]
        colour = colour.copy()
        colour[rule] = len(styles) - 1
    changes = np.flatnonzero(np.diff(colour)) + 1
    bounds = [0, *changes.tolist(), len(colour)]
    for start, end in itertools.pairwise(bounds):
        index = int(colour[start])
        text.append(chars[start:end], styles[index] if index >= 0 else None)


def _y_labels(low: float, high: float, rows: int, log: bool) -> dict[int, str]:
    """Labels of every other row from the top (the highest value) down to the last row (the
    lowest), each the value at its row; in one format, so that they line up."""
    places = list(range(0, rows, 2))
    if rows > 1 and places[-1] != rows - 1:
        if rows - 1 - places[-1] == 1 and len(places) > 1:
            places[-1] = rows - 1  # never two labels on adjacent rows
        else:
            places.append(rows - 1)
    values = {row: high - (high - low) * row / max(1, rows - 1) for row in places}
    if log:
        return {row: _short(10**value) for row, value in values.items()}
    spread = high - low
    decimals = max(0, min(8, 2 - math.floor(math.log10(spread)))) if spread > 0 else 2
    biggest = max(abs(low), abs(high))
    if biggest >= 1e6 or (biggest < 1e-4 and biggest > 0):
        return {row: f"{value:.2e}" for row, value in values.items()}
    return {row: f"{value:.{decimals}f}" for row, value in values.items()}


def _short(value: float) -> str:
    """A log axis' value in three significant digits: ``1000``, ``0.1``, ``0.0123``, ``3e+07``."""
    if value == 0 or not 1e-3 <= abs(value) < 1e5:
        return f"{value:.2g}"
    return np.format_float_positional(value, precision=3, fractional=False, trim="-")


def _x_ticks(
    ticks: tuple[Sequence[float], Sequence[str]], low: float, high: float, columns: int
) -> tuple[list[int], list[str]]:
    """The ticks' columns (in the plot, from 0) and labels, those within the steps shown."""
    places, labels = [], []
    for value, label in zip(*ticks, strict=True):
        if low - 1e-9 <= value <= high + 1e-9:
            column = round((value - low) * (columns - 1) / (high - low))
            if not places or column > places[-1]:
                places.append(column)
                labels.append(label)
    return places, labels
