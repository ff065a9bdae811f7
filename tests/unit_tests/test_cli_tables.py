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


def experiment(runs: list[dict], best: str | None = None) -> dict:
    return {
        "experiment_id": "experiment-AAAAAAAAA",
        "url": "/v3/experiments/experiment-AAAAAAAAA",
        "name": "sweep",
        "status": "running",
        "method": "grid",
        "count": len(runs),
        "submitted_at": "2026-12-05T07:12:45.075Z",
        "runs_by_status": {"completed": len(runs)},
        "parameters": {"lr": {}, "wide": {}},
        "objective": {"metric": "loss", "goal": "minimize"},
        "best": {"model_id": best, "value": 0.125, "step": 3} if best else None,
        "runs": runs,
    }


def test_show_experiment_ranks_its_runs_in_aligned_columns():
    runs = [
        {**run("s", "training-BBBBBBBBB", {"loss": {"last": 0.125}}), "parameters": {"lr": 1e-05}},
        {**run("s", "training-AAAAAAAAA", None), "parameters": {"lr": 0.1, "wide": True}},
    ]
    text = cli._experiment_text(experiment(runs, best="training-BBBBBBBBB"))
    lines = text.splitlines()
    head = lines.index(next(line for line in lines if line.lstrip().startswith("Rank")))
    assert lines[head].split() == ["Rank", "Model-ID", "status", "lr", "wide", "loss"]
    # the best marked, each parameter as its command sees it, '-' for what a run lacks
    assert lines[head + 1].split() == [
        "*1",
        "training-BBBBBBBBB",
        "completed",
        "1e-05",
        "-",
        "0.125",
    ]
    assert lines[head + 2].split() == ["2", "training-AAAAAAAAA", "completed", "0.1", "true", "-"]
    # rank and objective right-aligned, the rest left: each column starts at one place
    assert {len(line) for line in lines[head : head + 3]} == {len(lines[head])}
    assert lines[head + 1].index("training-") == lines[head + 2].index("training-")
    assert lines[head + 3 :] == ["", "2 runs.", "OK"]
    # an experiment without runs yet: the head alone
    empty = cli._experiment_text(experiment([])).splitlines()
    assert empty[-3:] == ["", "0 runs.", "OK"] and empty[-4].split()[0] == "Rank"


def test_metric_columns_and_cjk_parameter_values_line_up_by_cells(capsys):
    runs = [
        run("学習率スイープ-モデル", "training-AAAAAAAAA", {"loss": {"last": 0.25}}),
        run("plain", "training-BBBBBBBBB", {"loss": {"last": 0.5}}),
    ]
    lines = table(capsys, runs, ["loss"])
    assert len({cell_len(line) for line in lines[:3]}) == 1, lines[:3]  # loss ends alike
    runs = [
        {**run("s", "training-AAAAAAAAA", None), "parameters": {"lr": "アダム最適化"}},
        {**run("s", "training-BBBBBBBBB", None), "parameters": {"lr": "sgd", "wide": 1}},
    ]
    lines = cli._experiment_text(experiment(runs)).splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("Rank"))
    rows = lines[head : head + 3]
    # each column starts at the same cell on every row, and the objective ends alike
    after = [("lr", "wide"), ("最適化", "-"), ("sgd", "1")]  # the column after lr's
    starts = {
        cell_len(line[: line.index(word, line.index(value) + len(value))])
        for line, (value, word) in zip(rows, after, strict=True)
    }
    assert len(starts) == 1, rows
    assert len({cell_len(line) for line in rows}) == 1, rows


def test_show_experiment_json_is_the_same_json_with_a_run_a_line():
    import json

    runs = [
        {**run(LONG, "training-AAAAAAAAA", {"loss": {"last": 0.25}}), "parameters": {"lr": 0.1}},
        {**run("b", "training-BBBBBBBBB", None), "parameters": {"lr": "アダム"}},
    ]
    e = experiment(runs, best="training-AAAAAAAAA")
    text = cli._json_with_rows(e, "runs")
    assert json.loads(text) == e  # what a script reads: the experiment, whole
    # each run on a line of its own (greppable, as `list --json` prints runs)
    rows = [line for line in text.splitlines() if line.startswith("  {")]
    assert [json.loads(line.rstrip(",")) for line in rows] == runs
    assert json.loads(cli._json_with_rows(experiment([]), "runs"))["runs"] == []
