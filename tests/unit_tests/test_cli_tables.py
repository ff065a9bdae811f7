"""The CLI's tables (`trainui list`, `list experiments`): a long or wide name is cut, and every
column lines up in a terminal's cells whatever the names' characters."""

from __future__ import annotations

from rich.cells import cell_len

from trainui import cli

LONG = "flood ünïcödé 日本語 ✓ a very long run name that goes on and on and on to see how it is cut"


def run(name: str, model_id: str, metrics: dict | None = None) -> dict:
    return {
        "name": name,
        "model_id": model_id,
        "status": "completed",
        "submitted_at": "2026-12-05T07:12:45.075Z",
        "metrics": metrics,
    }


def table(capsys, runs: list[dict], metrics=()) -> list[str]:
    assert cli._print_list(runs, len(runs), metrics) == 0
    return capsys.readouterr().out.splitlines()


def test_a_long_or_wide_name_is_cut_and_the_columns_line_up_by_cells(capsys):
    runs = [
        run("demo-classifier", "training-AAAAAAAAA"),
        run(LONG, "training-BBBBBBBBB"),
        run("日本語の実験", "training-CCCCCCCCC"),
        run("x" * 60, "training-DDDDDDDDD"),
    ]
    lines = table(capsys, runs)
    rows = lines[1:5]
    where = {cell_len(line[: line.index("training-")]) for line in rows}
    assert len(where) == 1, rows  # the guid column starts at the same cell on every row
    assert all(cell_len(line) < 120 for line in rows)  # not as wide as the longest name
    assert "flood ünïcödé 日本語 ✓ a very long run…" in rows[1]
    assert "x" * 39 + "…" in rows[3] and "x" * 40 not in rows[3]
    assert "日本語の実験" in rows[2]
    # ASCII names only: the usual table, unchanged
    lines = table(capsys, [run("demo", "training-AAAAAAAAA")])
    assert lines[1].split() == [
        "1",
        "demo",
        "training-AAAAAAAAA",
        "completed",
        "2026-12-05T07:12:45Z",
    ]


def test_a_metric_column_says_dash_where_a_run_lacks_the_metric(capsys):
    runs = [
        run("a", "training-AAAAAAAAA", {"loss": {"last": 0.25}}),
        run("b", "training-BBBBBBBBB", {}),
    ]
    lines = table(capsys, runs, ["loss"])
    assert lines[1].split()[-1] == "0.25" and lines[2].split()[-1] == "-"
