"""The experiments as the TUI holds them: ranking by the objective, the list's order, and the
words and symbols of their cells (pure Python, no Textual)."""

from __future__ import annotations

from trainui.tui.experiments import (
    ExperimentTable,
    counts_text,
    parameter_text,
    parameters_summary,
    rank,
    runs_done,
    search_space,
)


def run(model_id: str, value: float | None) -> dict:
    metrics = {"val_loss": {"last": value}} if value is not None else {}
    return {"model_id": model_id, "metrics": metrics}


def test_runs_are_ranked_best_first_and_those_without_a_value_keep_their_order_after():
    runs = [run("a", None), run("b", 0.5), run("c", 0.1), run("d", None), run("e", 0.5)]
    assert [r["model_id"] for r in rank(runs, "val_loss")] == ["c", "b", "e", "a", "d"]
    assert [r["model_id"] for r in rank(runs, "val_loss", "maximize")][:3] == ["b", "e", "c"]
    assert [r["model_id"] for r in rank(runs, None)] == ["a", "b", "c", "d", "e"]
    assert [r["model_id"] for r in rank([run("x", float("nan")), run("y", 2.0)], "val_loss")] == [
        "y",
        "x",
    ]


def experiment(experiment_id: str, submitted: str, status: str, best: float | None) -> dict:
    return {
        "experiment_id": experiment_id,
        "name": experiment_id[-1],
        "submitted_at": submitted,
        "status": status,
        "best": {"value": best} if best is not None else None,
    }


def test_the_list_is_newest_first_and_sorts_by_state_name_and_best_value():
    table = ExperimentTable()
    table.reconcile(
        [
            experiment("experiment-a", "2026-12-01", "completed", 0.3),
            experiment("experiment-b", "2026-12-03", "running", None),
            experiment("experiment-c", "2026-12-02", "failed", 0.1),
        ]
    )
    assert table.view() == ["experiment-b", "experiment-c", "experiment-a"]
    table.set_sort("status")
    assert table.view() == ["experiment-b", "experiment-a", "experiment-c"]
    table.set_sort("best")  # the smallest first; none after
    assert table.view() == ["experiment-c", "experiment-a", "experiment-b"]
    revision = table.revision["experiment-a"]
    assert not table.upsert(experiment("experiment-a", "2026-12-01", "completed", 0.3))
    assert table.upsert(experiment("experiment-a", "2026-12-01", "completed", 0.05))
    assert table.revision["experiment-a"] > revision
    assert table.view()[0] == "experiment-a"
    assert table.reconcile([experiment("experiment-a", "2026-12-01", "completed", 0.05)])
    assert table.view() == ["experiment-a"]


def test_sorted_by_best_each_objective_keeps_together_its_best_first():
    def of(experiment_id: str, metric: str, goal: str, best: float) -> dict:
        one = experiment(experiment_id, f"2026-12-0{experiment_id[-1]}", "completed", best)
        return dict(one, objective={"metric": metric, "goal": goal})

    table = ExperimentTable()
    table.reconcile(
        [
            of("experiment-1", "val_loss", "minimize", 0.4),
            of("experiment-2", "accuracy", "maximize", 0.7),
            of("experiment-3", "val_loss", "minimize", 0.2),
            of("experiment-4", "accuracy", "maximize", 0.9),
            experiment("experiment-5", "2026-12-05", "running", None),
        ]
    )
    table.set_sort("best")  # the most accurate first, not the least (0.7 < 0.9)
    assert table.view() == [
        "experiment-4", "experiment-2", "experiment-3", "experiment-1", "experiment-5"
    ]  # fmt: skip
    table.set_sort("best", reverse=True)  # the worst of each first; none still after
    assert table.view() == [
        "experiment-1", "experiment-3", "experiment-2", "experiment-4", "experiment-5"
    ]  # fmt: skip


def test_cells_say_counts_parameters_and_search_spaces_briefly():
    counts = {"pending": 3, "running": 2, "completed": 10, "failed": 1, "halted": 0}
    assert counts_text({"runs_by_status": counts}) == "◌3 ●2 ✓10 ✗1"
    assert runs_done({"runs_by_status": counts}) == 11
    assert parameter_text(0.001) == "0.001" and parameter_text(3e-05) == "3e-05"
    assert parameter_text(128) == "128" and parameter_text(True) == "true"
    assert parameters_summary({"lr": 0.1, "act": "relu"}) == "lr=0.1 act=relu"
    space = {"lr": {"min": 0.001, "max": 0.5, "log": True}, "layers": {"values": [2, 3]}}
    assert search_space({"parameters": space}) == "lr: 0.001 to 0.5 (log) · layers: 2, 3"


def test_a_run_that_failed_is_ranked_after_the_others_as_the_service_ranks_it():
    runs = [run("a", 0.1), run("b", 0.5), run("c", 0.3)]
    runs[0]["status"] = "failed"  # the lowest loss, where it crashed
    assert [r["model_id"] for r in rank(runs, "val_loss")] == ["c", "b", "a"]


def test_new_points_of_an_experiments_objective_make_its_best_read_again():
    # the experiments' best is summed up by the service: the list is read again (at most once
    # a second) when a run's objective gets points, not only when a run changes state
    from trainui.tui.app import TrainuiApp
    from trainui.tui.config import TuiConfig

    app = TrainuiApp(None, config=TuiConfig(problems=[]))
    app.experiments_loaded = True
    app.experiments.upsert(
        {"experiment_id": "experiment-A", "status": "running", "submitted_at": "",
         "objective": {"metric": "acc", "goal": "maximize"}}
    )  # fmt: skip
    app.table.upsert({"model_id": "training-1", "experiment_id": "experiment-A"})
    app.table.upsert({"model_id": "training-2"})
    stale = []
    app._experiments_stale = lambda: stale.append(True)
    app._runs_changed = lambda changed: None
    app._metrics_event = lambda model_id, changed: False
    app._apply_event("metrics", {"model_id": "training-1", "metrics": {"loss": {"last": 1}}})
    app._apply_event("metrics", {"model_id": "training-2", "metrics": {"acc": {"last": 1}}})
    assert stale == []  # not the objective; not an experiment's run
    app._apply_event("metrics", {"model_id": "training-1", "metrics": {"acc": {"last": 0.8}}})
    assert stale == [True]


def test_a_sort_columns_title_gives_way_to_its_arrow():
    from trainui.tui.widgets.run_list import sort_title

    assert sort_title("learning_rate", 8, reverse=False) == "learn… ▲"
    assert sort_title("Ran", 8, reverse=True) == "Ran ▼"
    assert sort_title("hidden", 8, reverse=False) == "hidden ▲"


def test_each_parameter_shows_its_widest_value_whole_and_the_objective_its_value():
    """A log-uniform draw (0.000165) showed as 0.000… in a column as wide as the name lr: every
    row of a sweep over lr then read the same."""
    from trainui.tui.widgets.experiment_list import ExperimentRunList
    from trainui.tui.widgets.row_list import cut

    runs = {
        "training-a": {"parameters": {"lr": 0.000165, "tag": "alpha", "layers": 2}},
        "training-b": {
            "parameters": {"lr": 0.0123, "tag": "a-much-longer-value", "layers": 12},
            "metrics": {"val_loss": {"last": -1.23e-05}},
        },
    }
    rows = ExperimentRunList(lambda m: runs[m], lambda m: 0)
    rows.set_parameters(["lr", "tag", "layers"], list(runs.values()))
    rows.metric = "val_loss"
    for width in (80, 120):
        columns = rows.columns(width)
        assert sum(c.width + 1 for c in columns) - 1 <= width
        for key in runs:
            shown = {
                c.key: cut(text, c.width, c.right).strip()
                for c, (text, _style) in zip(columns, rows.cells(key, columns), strict=True)
            }
            parameters = runs[key]["parameters"]
            for name, value in parameters.items():
                if f"param:{name}" in shown:
                    assert shown[f"param:{name}"] == parameter_text(value), (width, shown)
            assert "param:lr" in shown and "param:tag" in shown  # the first two stay
            value = runs[key].get("metrics", {}).get("val_loss", {}).get("last")
            assert shown["objective"] == ("-1.23e-05" if value else "-")
