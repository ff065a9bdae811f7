"""The metric charts' plot, drawn in braille (trainui.tui.braille)."""

from __future__ import annotations

import numpy as np

from trainui.tui.braille import Line, plot


def rows(text) -> list[str]:
    return text.plain.split("\n")


def cells(row: str, label_width: int) -> str:
    return row[label_width + 1 : -1]  # between the frame's two sides


def test_a_rising_line_from_corner_to_corner_with_its_frame_and_labels():
    text = plot(30, 10, [Line([0, 100], [0.0, 1.0], "red")], ([0, 50, 100], ["0", "50", "100"]))
    lines = rows(text)
    assert len(lines) == 10  # the frame's top, 7 rows, its bottom, the ticks' labels
    top, bottom, under = lines[0], lines[-2], lines[-1]
    width = top.index("┌")
    assert top.endswith("┐") and set(top[width + 1 : -1]) == {"─"}
    assert lines[1].strip().startswith("1.00┤") and lines[7].strip().startswith("0.00┤")
    plotted = [cells(line, width) for line in lines[1:8]]
    assert plotted[0][-1] != " " and plotted[-1][0] != " "  # top right, bottom left
    assert plotted[0][0] == " " and plotted[-1][-1] == " "
    # every braille cell between the corners is on the diagonal: one dot row a cell row at least
    assert all(any(0x2800 < ord(c) <= 0x28FF for c in row) for row in plotted)
    assert bottom.count("┬") == 3 and bottom.startswith(" " * width + "└")
    assert under.split() == ["0", "50", "100"]
    braille = [s for s in text.spans if any(ord(c) > 0x2800 for c in text.plain[s.start : s.end])]
    assert braille and {str(s.style) for s in braille} == {"red"}


def test_braille_dots_are_unicode_order():
    # one point at the top left of the plot: dot 1 (U+2801); at the bottom right: dot 8 (U+2880)
    text = plot(12, 5, [Line([0, 1], [1.0, 0.0], "")], ([], []))
    lines = rows(text)
    width = lines[0].index("┌")
    first, last = cells(lines[1], width), cells(lines[2], width)
    assert ord(first[0]) & 0x01  # dot 1: the cell's top left
    assert ord(last[-1]) & 0x80  # dot 8: the cell's bottom right


def test_a_flat_line_and_a_single_point_are_drawn_in_the_middle():
    text = plot(20, 9, [Line([5, 6, 7], [2.0, 2.0, 2.0], "")], ([5], ["5"]))
    lines = rows(text)
    width = lines[0].index("┌")
    plotted = [cells(line, width) for line in lines[1:-2]]
    drawn = [i for i, row in enumerate(plotted) if row.strip()]
    assert drawn and 0 < drawn[0] < len(plotted) - 1  # neither the top nor the bottom row
    one = plot(20, 9, [Line([3], [1.5], "")], ([3], ["3"]))
    assert sum(1 for c in one.plain if 0x2800 < ord(c) <= 0x28FF) == 1
    labels = [line.split("┤")[0].strip() for line in rows(one) if "┤" in line]
    assert labels[0] == "1.650" and labels[-1] == "1.350"  # a tenth of the value each side


def test_the_later_line_colours_a_cell_two_lines_share():
    text = plot(
        20, 8, [Line([0, 10], [0.0, 1.0], "red"), Line([0, 10], [0.0, 1.0], "blue")], ([], [])
    )
    styles = {str(span.style) for span in text.spans}
    assert "blue" in styles and "red" not in styles  # the same points: blue drawn over red


def test_a_log_scale_labels_the_values_not_their_logarithms():
    text = plot(30, 10, [Line(np.arange(3), np.array([1000.0, 10.0, 0.1]), "")], ([], []))
    lines = rows(text)
    assert lines[1].strip().startswith("1000┤")  # the top row: the highest value
    log = plot(30, 10, [Line(np.arange(3), np.array([1000.0, 10.0, 0.1]), "")], ([], []), log=True)
    labels = [line.split("┤")[0].strip() for line in rows(log) if "┤" in line]
    assert labels == ["1000", "46.4", "2.15", "0.1"]  # evenly spaced in log10


def test_tick_labels_never_overlap():
    ticks = ([0, 1, 2, 3, 4, 5], ["10000", "10001", "10002", "10003", "10004", "10005"])
    text = plot(24, 6, [Line([0, 5], [0.0, 1.0], "")], ticks)
    under = rows(text)[-1]
    assert all(len(word) == 5 for word in under.split())  # whole labels, apart


def test_a_gap_in_a_line_is_left_blank_and_the_steps_keep_their_axis():
    # a log scale's values at or below zero (NaN from prepare): no line bridges them, and the
    # x axis still runs from the first step to the last
    ys = np.array([10.0, 10.0, np.nan, np.nan, np.nan, np.nan, 10.0, 10.0])
    text = plot(30, 6, [Line(np.arange(8), ys, "")], ([0, 7], ["0", "7"]), log=True)
    lines = rows(text)
    width = lines[0].index("┌")
    plotted = [cells(line, width) for line in lines[1:-2]]
    marked = sorted({i for row in plotted for i, c in enumerate(row) if c != " "})
    columns = len(plotted[0])
    assert marked[0] == 0 and marked[-1] == columns - 1  # both ends: the whole axis
    gap = [i for i in range(marked[0], marked[-1]) if i not in marked]
    assert len(gap) > columns // 3, plotted  # the middle is blank, not a flat line
    # negative values on a log scale are the same gaps
    negative = plot(
        30, 6, [Line(np.arange(8), np.where(np.isnan(ys), -5.0, ys), "")], ([], []), log=True
    )
    assert rows(negative)[1:-2] == lines[1:-2]
