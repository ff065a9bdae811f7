"""A chart's legend line, with many series: a run's label cut to leave its value whole is
marked as cut (``0.000165 · 2`` read as another run's values, hidden 2 for 256)."""

from __future__ import annotations

from trainui.tui.widgets.metric_chart import SIDE, _one_line


def test_a_label_cut_for_its_value_says_so():
    line = _one_line("0.000165 · 256", "red", "1.114").plain
    assert line.endswith(" 1.114") and len(line) <= SIDE
    assert "…" in line and "· 2 " not in line
    short = _one_line("lr 0.1", "red", "1.114").plain
    assert "…" not in short and short.startswith("● lr 0.1")
