"""An experiment (SPEC §9): its runs ranked by the objective, a column per parameter, and the
objective's curves of the five best runs overlaid.

The experiment and its runs are read once (``get_experiment``); from then on each run is the
app's live record of it (the service's events), ranked again here as they change.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.widgets import Static

from trainui.client import ClientError
from trainui.tui.experiments import (
    counts_words,
    objective,
    objective_value,
    parameter_values,
    parameters_summary,
    rank,
    search_space,
)
from trainui.tui.keymap import bindings
from trainui.tui.runs import _STATE_ORDER, SYMBOLS, format_value, is_active, ran_seconds
from trainui.tui.screens.base import TrainuiScreen, resumable_runs
from trainui.tui.widgets.bars import ConnectionBanner, TitleBar
from trainui.tui.widgets.experiment_list import PARAMETER, RANK, ExperimentRunList
from trainui.tui.widgets.footer import Footer
from trainui.tui.widgets.metrics_view import MetricsView
from trainui.tui.widgets.row_list import RowList, RowListHeader

TOP = 5  # the runs whose curves are overlaid


class ObjectiveCurves(MetricsView):
    """The objective's chart alone, as tall as the pane (a metrics view shows one metric)."""

    def __init__(self, client, runs, metric: str, **kwargs) -> None:
        super().__init__(client, runs, **kwargs)
        self.shown = [metric]

    def _size_rows(self) -> None:  # the metrics view's rows are at least 10 high
        grid = self.query_one("#charts")
        row = max(4, self.size.height - 1)
        if row != self._row or not self._sized:
            self._sized, self._row, self._columns = True, row, 1
            grid.styles.grid_size_columns = 1
            grid.styles.grid_rows = str(row)


class ExperimentScreen(TrainuiScreen):
    BINDINGS = bindings("experiment")
    PALETTE = (("experiment", None), ("list", "RowList"), ("metrics", "MetricsView"))
    DEFAULT_CSS = """
    ExperimentScreen .summary {
        height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis;
    }
    ExperimentScreen ExperimentRunList { height: 1fr; min-height: 3; }
    ExperimentScreen #selection {
        height: 1; background: $boost; color: $text-muted; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    ExperimentScreen ObjectiveCurves { height: 45%; min-height: 7; }
    ExperimentScreen ObjectiveCurves MetricChart { height: 1fr; }
    ExperimentScreen.-no-curves ObjectiveCurves { display: none; }
    """

    def __init__(self, experiment_id: str) -> None:
        super().__init__()
        self.experiment_id = experiment_id
        self.experiment: dict | None = None  # as read, then as the app's list says it now
        self.read: dict[str, dict] = {}  # each run as read with the experiment
        self.order: list[str] = []  # the runs in the service's order (best first)
        self.ranked: list[str] = []
        self.sort = RANK
        self.reverse = False
        self.deleted = False
        self._top: list[str] = []
        self._valued = False  # a run has a value of the objective (its curves are drawn)
        self._shown: tuple = ()

    def compose(self) -> ComposeResult:
        rows = ExperimentRunList(self._run, self._changed, id="experiment-runs")
        yield TitleBar(f"experiment  {self.experiment_id}", "loading…", id="title")
        yield ConnectionBanner()
        yield Static("reading the experiment…", id="summary", classes="summary", markup=False)
        yield Static("", id="progress", classes="summary", markup=False)
        yield RowListHeader(rows, id="header")
        yield rows
        yield Static("", id="selection", markup=False)
        yield Footer(compact=True)

    @property
    def rows(self) -> ExperimentRunList:
        return self.query_one(ExperimentRunList)

    def on_mount(self) -> None:
        self.rows.focus()
        self._read()

    def _run(self, model_id: str) -> dict:
        return self.app.table.get(model_id) or self.read.get(model_id) or {"model_id": model_id}

    def _changed(self, model_id: str) -> object:
        return self.app.table.revision.get(model_id) or id(self.read.get(model_id))

    @work(group="experiment-read", exclusive=True)
    async def _read(self) -> None:
        try:
            experiment = await self.app.client.get_experiment(self.experiment_id)
        except ClientError as error:
            self.query_one("#summary", Static).update(f"The experiment cannot be read: {error}")
            self.query_one(TitleBar).set(right="not read")
            return
        runs = experiment.pop("runs", [])
        self.read = {run["model_id"]: run for run in runs}
        self.order = [run["model_id"] for run in runs]
        self.experiment = experiment
        rows = self.rows
        rows.set_parameters(list(experiment.get("parameters") or {}), runs)
        rows.metric = objective(experiment)[0]
        self.runs_changed(None)

    # --- from the app ---------------------------------------------------------------------

    def runs_changed(self, changed: set[str] | None = None) -> None:
        if not self.is_mounted or self.experiment is None:
            return
        if changed is not None and not changed & self.read.keys():
            return
        if self.app.loaded:  # runs deleted since the experiment was read (another terminal)
            gone = {m for m in (changed or self.read.keys()) & self.read.keys()
                    if self.app.table.get(m) is None}  # fmt: skip
            if gone:
                self.order = [m for m in self.order if m not in gone]
                for model_id in gone:
                    del self.read[model_id]
        self.experiment = self.app.experiments.get(self.experiment_id) or self.experiment
        metric, goal = objective(self.experiment)
        runs = [self._run(m) for m in self.order]
        ranked = [run["model_id"] for run in rank(runs, metric, goal)]
        self.ranked = ranked
        rows = self.rows
        has_value = [m for m in ranked if objective_value(self._run(m), metric) is not None]
        # a place for each run with a value of the objective: the others have none ("-")
        rows.ranks = {m: i for i, m in enumerate(has_value, 1)} if metric else {}
        # the best: the first ranked, unless even it failed (a crash's last value)
        rows.best = (
            has_value[0]
            if has_value and self._run(has_value[0]).get("status") != "failed"
            else None
        )
        rows.sort, rows.reverse = self.sort, self.reverse
        rows.set_rows(self._sorted(ranked))
        self._valued = bool(has_value)
        self._summary()
        self._show_selection()
        if metric:
            self._curves(has_value[:TOP], metric)
        else:
            self.add_class("-no-curves")

    def experiments_changed(self) -> None:
        """The app's list of experiments changed: this one's state, counts or best."""
        if self.experiment is None:
            return
        if self.app.experiments_loaded and self.app.experiments.get(self.experiment_id) is None:
            if not self.deleted:  # deleted elsewhere: nothing left to show
                self.deleted = True
                self.notify(f"{self.experiment_id} was deleted.", severity="warning")
                self.app.pop_screen()
            return
        self.runs_changed(None)

    def metrics_changed(self, model_id: str, latest: dict) -> None:
        if model_id in self._top:
            self.query_one(ObjectiveCurves).metrics_event(model_id, latest)

    def tick(self) -> None:
        rows = self.rows
        top = rows.scroll_offset.y
        for row in range(top, min(len(rows.keys), top + rows.size.height)):
            if is_active(self._run(rows.keys[row])):
                rows.refresh_line(row)

    # --- what is shown --------------------------------------------------------------------

    def _sorted(self, ranked: list[str]) -> list[str]:
        """The runs in the order picked with s: by rank (the service's), state, a parameter's
        value (numbers before words), or submission."""
        if self.sort == RANK:
            order = list(ranked)
        elif self.sort == "status":
            order = sorted(ranked, key=lambda m: _STATE_ORDER.get(self._run(m).get("status"), 99))
        elif self.sort.startswith(PARAMETER):
            name = self.sort[len(PARAMETER) :]

            def key(model_id: str):
                value = (self._run(model_id).get("parameters") or {}).get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return (0, float(value), "")
                return (1, 0.0, str(value))

            order = sorted(ranked, key=key)
        else:  # by the time each ran (the Ran column): those that have not started after

            def ran(model_id: str) -> tuple[bool, float]:
                seconds = ran_seconds(self._run(model_id))
                return (seconds is None, seconds or 0.0)

            order = sorted(ranked, key=ran)
        return order[::-1] if self.reverse else order

    def _sorts(self) -> list[str]:
        names = list((self.experiment or {}).get("parameters") or {})
        return [RANK, "status", *(PARAMETER + n for n in names), "ran"]

    def _summary(self) -> None:
        experiment = self.experiment or {}
        status = experiment.get("status", "")
        name = experiment.get("name") or self.experiment_id
        count = experiment.get("count", len(self.order))
        self.query_one(TitleBar).set(
            f"experiment  {name}",
            f"{SYMBOLS.get(status, '?')} {status} · {count} run{'s' if count != 1 else ''}",
        )
        metric, goal = objective(experiment)
        first = [self.experiment_id, experiment.get("method", "")]
        if experiment.get("max_parallel"):
            first.append(f"{experiment['max_parallel']} at once")
        first.append(f"objective {metric} ({goal})" if metric else "no objective")
        # the counts and the best from the runs shown, which are live (the experiment's own
        # summary comes a refresh later)
        counts: dict[str, int] = {}
        for model_id in self.order:
            status = self._run(model_id).get("status", "")
            counts[status] = counts.get(status, 0) + 1
        second = [counts_words({"runs_by_status": counts})]
        if self.rows.best is not None:
            best = self._run(self.rows.best)
            second.append(
                f"best {format_value(objective_value(best, metric))}: "
                + parameters_summary(best.get("parameters"))
            )
        else:
            if metric and not self._valued:  # where its curves would be: why there are none
                second.append(f"no {metric} points yet")
            second.append(search_space(experiment))
        for line, parts in (("#summary", first), ("#progress", second)):
            text = " · ".join(p for p in parts if p)
            widget = self.query_one(line, Static)
            if str(widget.render()) != text:
                widget.update(text, layout=False)

    def on_row_list_highlighted(self, event: RowList.Highlighted) -> None:
        self._show_selection()

    def _show_selection(self) -> None:
        model_id = self.rows.current
        text = ""
        if model_id:
            run = self._run(model_id)
            status = run.get("status", "")
            message = run.get("status_message") or status
            text = f"{SYMBOLS.get(status, '?')} {model_id}  "
            text += f"{parameters_summary(run.get('parameters'))}  {message}"
        line = self.query_one("#selection", Static)
        if str(line.render()) != text:
            line.update(text, layout=False)
        shown = tuple(self.check_action(a, ()) for a in ("halt_experiment", "resume_experiment"))
        if shown != self._shown:  # the footer offers halt and resume only where they apply
            self._shown = shown
            self.refresh_bindings()

    def _curves(self, top: list[str], metric: str) -> None:
        """The objective's curves of the best runs: made again when they are other runs."""
        if top == self._top:
            return
        labels = [(m, _label(self._run(m))) for m in top]
        if set(top) == set(self._top) and self.query(ObjectiveCurves):
            self._top = top  # the same runs ranked again: their legend in the new order
            self.query_one(ObjectiveCurves).reorder(labels)
            return
        self._top = top
        for old in self.query(ObjectiveCurves):
            old.remove()
        if top:
            curves = ObjectiveCurves(self.app.client, labels, metric, live=self._live)
            self.mount(curves, before=self.query_one(Footer))

    def _live(self) -> bool:
        return any(is_active(self._run(m)) for m in self._top)

    # --- actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not super().check_action(action, parameters):
            return False
        if action == "halt_experiment":
            return self.experiment is not None and is_active(self.experiment)
        if action == "resume_experiment":
            return resumable_runs(self.experiment) > 0
        return True

    def on_key(self, event) -> None:
        """``R`` where no run resumes, ``h`` on an experiment that ended: their bindings are
        hidden, so say why."""
        if not self.said_no_run_resumes(event, "experiment.resume", self.experiment):
            self.said_ended(event, "experiment.halt", self.experiment)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_open_run(self) -> None:
        if model_id := self.rows.current:
            self.app.open_run(model_id)

    def on_row_list_opened(self, event: RowList.Opened) -> None:
        self.app.open_run(event.key)

    def action_halt_experiment(self) -> None:
        self.app.halt_experiment(self.experiment_id)

    def action_resume_experiment(self) -> None:
        self.app.resume_experiment(self.experiment_id)

    def action_delete_experiment(self) -> None:
        self.app.delete_experiment(self.experiment_id)

    def action_sort(self) -> None:
        sorts = self._sorts()
        current = sorts.index(self.sort) if self.sort in sorts else -1
        self.sort = sorts[(current + 1) % len(sorts)]
        self.reverse = False
        self.runs_changed(None)

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self.runs_changed(None)

    def on_row_list_header_sort_clicked(self, event: RowListHeader.SortClicked) -> None:
        if event.sort == self.sort:
            self.reverse = not self.reverse
        else:
            self.sort, self.reverse = event.sort, False
        self.runs_changed(None)

    def action_toggle_curves(self) -> None:
        if not objective(self.experiment or {})[0]:
            self.notify("This experiment has no objective: no curves to show.", severity="warning")
            return
        self.toggle_class("-no-curves")

    def action_pick_metrics(self) -> None:
        """``p`` from the screen (its note says "p picks"), not only with the chart focused."""
        curves = self.query(ObjectiveCurves)
        if not curves or self.has_class("-no-curves"):
            self.notify("No curves shown: v shows them.", severity="warning")
            return
        curves.first().action_pick_metrics()

    def action_compare(self) -> None:
        from trainui.tui.screens.compare import CompareScreen

        top = self.ranked[:TOP]
        if not top:
            self.notify("No runs to compare.", severity="warning")
            return
        self.app.push_screen(CompareScreen(top))


def _label(run: dict) -> str:
    """A run's name in the curves' legend: its parameters' values, in the columns' order (the
    legend is narrow), else its ID."""
    return parameter_values(run.get("parameters")) or run["model_id"]
