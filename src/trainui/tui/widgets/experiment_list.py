"""The experiments list, and an experiment's runs with a column per parameter (SPEC §9)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.cells import cell_len

from trainui.tui.experiments import (
    ExperimentTable,
    best_text,
    counts_text,
    parameter_text,
    runs_done,
)
from trainui.tui.runs import SYMBOLS, format_value, is_active, local_time, time_text
from trainui.tui.widgets.row_list import Column, RowList, fit

PARAMETER = "param:"  # a parameter's column key, and its sort: PARAMETER + its name
PARAMETER_VALUE_WIDTH = 24  # the most cells a parameter's column takes for its values
RANK = "rank"


def _state(status: str) -> tuple[str, str]:
    return f" {SYMBOLS.get(status, '?')} {status}", status


class ExperimentList(RowList):
    """A row an experiment: its state, name, ID, runs done of all, runs by state, the best
    value of its objective and when it was submitted."""

    def __init__(self, table: ExperimentTable, **kwargs) -> None:
        super().__init__(**kwargs)
        self.table = table

    def columns(self, width: int) -> list[Column]:
        every = [
            Column("status", " State", 12, "status"),
            Column("name", "Name", 0, "name"),
            Column("id", "ID", 20),
            Column("runs", "Runs", 7, right=True),
            Column("counts", "By state", 14),
            Column("best", "Best", 9, "best", right=True),
            Column("submitted", "Submitted", 11, "submitted"),
        ]
        # narrow, the ID goes first (it is under the list, in full): names still read at 80
        dropped = ["id", "submitted", "counts"] if width < 110 else ["id"]
        return fit(every, width, self.droppable(dropped))

    def revision(self, key: str) -> object:
        return self.table.revision.get(key)

    def cells(self, key: str, columns: list[Column]) -> list[tuple[str, str]]:
        experiment = self.table.experiments[key]
        out = []
        for column in columns:
            if column.key == "status":
                out.append(_state(experiment.get("status", "")))
            elif column.key == "name":
                out.append((experiment.get("name") or "", ""))
            elif column.key == "id":
                out.append((key, "dim"))
            elif column.key == "runs":
                out.append((f"{runs_done(experiment)}/{experiment.get('count', 0)}", ""))
            elif column.key == "counts":
                out.append((counts_text(experiment), ""))
            elif column.key == "best":
                text = best_text(experiment)
                out.append((text, "dim" if text == "-" else "best"))
            else:
                out.append((local_time(experiment.get("submitted_at"), short=True), "dim"))
        return out


class ExperimentRunList(RowList):
    """An experiment's runs: rank (the best starred), state, a column per parameter, the
    objective's value, ID and run time. ``run(model_id)`` gives a run's record, and
    ``changed(model_id)`` something that changes with it."""

    def __init__(
        self, run: Callable[[str], dict], changed: Callable[[str], object], **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.changed = changed
        self.parameters: list[str] = []
        self.value_widths: dict[str, int] = {}  # a parameter → the cells of its widest value
        self.metric: str | None = None
        self.ranks: dict[str, int] = {}  # model ID → its place by the objective, from 1
        self.best: str | None = None

    def set_parameters(self, names: list[str], runs: list[dict]) -> None:
        """The experiment's parameters, each column as wide as the widest of the ``runs``'
        values (a run's values are its own from its submission on)."""
        self.parameters = names
        self.value_widths = {
            name: max(
                (cell_len(parameter_text((r.get("parameters") or {}).get(name))) for r in runs),
                default=1,
            )
            for name in names
        }

    def columns(self, width: int) -> list[Column]:
        every = [Column(RANK, "#", 4, RANK, right=True), Column("status", " State", 14, "status")]
        for name in self.parameters:
            # as wide as its widest value (0.000165, a-longer-value), or its name
            values = min(PARAMETER_VALUE_WIDTH, self.value_widths.get(name, 0))
            size = max(4, min(16, len(name)), values)
            every.append(Column(PARAMETER + name, name, size, PARAMETER + name, right=True))
        if self.metric:
            size = max(9, min(12, len(self.metric)))  # a value: at most 9 cells (-1.23e-05)
            every.append(Column("objective", self.metric, size, right=True))
        every += [Column("id", "ID", 0), Column("ran", "Ran", 8, "ran")]
        dropped = ["ran", *(PARAMETER + n for n in reversed(self.parameters[2:]))]
        return fit(every, width, self.droppable(dropped), least=10)

    def revision(self, key: str) -> object:
        run = self.run(key)
        tick = int(time.time()) if is_active(run) else 0  # its run time goes on
        return (self.changed(key), tick, self.ranks.get(key), key == self.best, self.metric)

    def cells(self, key: str, columns: list[Column]) -> list[tuple[str, str]]:
        run = self.run(key)
        parameters = run.get("parameters") or {}
        out = []
        for column in columns:
            if column.key == RANK:
                place = self.ranks.get(key)
                if key == self.best:
                    out.append((f"★{place}", "best"))
                else:
                    out.append((str(place) if place else "-", "dim"))
            elif column.key == "status":
                out.append(_state(run.get("status", "")))
            elif column.key.startswith(PARAMETER):
                value = parameters.get(column.key[len(PARAMETER) :])
                out.append((parameter_text(value), ""))
            elif column.key == "objective":
                point = (run.get("metrics") or {}).get(self.metric or "") or {}
                text = format_value(point.get("last"))
                out.append((text, "best" if key == self.best else "dim" if text == "-" else ""))
            elif column.key == "id":
                out.append((key, "dim"))
            else:
                out.append((time_text(run), "dim"))
        return out
