"""The experiments (SPEC §9), beside the runs (``e`` switches): one row each, summed up by the
service (``list_experiments``), so that drawing the list never reads the runs themselves."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from trainui.tui.experiments import EXPERIMENT_SORTS, counts_words, parameters_summary
from trainui.tui.keymap import bindings
from trainui.tui.runs import SYMBOLS, format_value, is_active
from trainui.tui.screens.base import TrainuiScreen, resumable_runs
from trainui.tui.widgets.bars import ConnectionBanner, TitleBar
from trainui.tui.widgets.experiment_list import ExperimentList
from trainui.tui.widgets.footer import Footer
from trainui.tui.widgets.row_list import RowList, RowListHeader


class ExperimentsScreen(TrainuiScreen):
    BINDINGS = bindings("experiments")
    PALETTE = (("experiments", None), ("list", "RowList"))
    DEFAULT_CSS = """
    ExperimentsScreen ExperimentList { height: 1fr; }
    ExperimentsScreen #empty { display: none; height: auto; padding: 1 2; color: $text-muted; }
    ExperimentsScreen #empty.-shown { display: block; }
    ExperimentsScreen #selection {
        height: 1; background: $boost; color: $text-muted; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    _shown: tuple = ()

    def compose(self) -> ComposeResult:
        rows = ExperimentList(self.app.experiments, id="experiments")
        yield TitleBar("experiments", "loading…", id="title")
        yield ConnectionBanner()
        yield RowListHeader(rows, id="header")
        yield rows
        yield Static(id="empty")
        yield Static("", id="selection", markup=False)
        yield Footer(compact=True)

    @property
    def rows(self) -> ExperimentList:
        return self.query_one(ExperimentList)

    def on_mount(self) -> None:
        self.rows.focus()
        self.call_after_refresh(self.experiments_changed)  # what is known, until read again
        self.app.load_experiments()  # read again each time the view opens: it may be stale

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not super().check_action(action, parameters):
            return False
        if action == "halt_experiment":
            return is_active(self._selected() or {"status": "completed"})
        if action == "resume_experiment":
            return resumable_runs(self._selected()) > 0
        return True

    def on_key(self, event) -> None:
        """``R`` where no run resumes, ``h`` on an experiment that ended: their bindings are
        hidden, so say why."""
        if not self.said_no_run_resumes(event, "experiments.resume", self._selected()):
            self.said_ended(event, "experiments.halt", self._selected())

    def _selected(self) -> dict | None:
        return self.app.experiments.get(self.rows.current or "")

    # --- from the app ---------------------------------------------------------------------

    def experiments_changed(self) -> None:
        if not self.is_mounted:
            return
        app = self.app
        table = app.experiments
        rows = self.rows
        rows.sort, rows.reverse = table.sort, table.reverse
        rows.set_rows(table.view())
        going = sum(1 for e in table.experiments.values() if is_active(e))
        count = len(table)
        right = f"{going} going on · {count:,} experiment{'s' if count != 1 else ''}"
        if not app.experiments_loaded:
            right = app.experiments_problem or "loading…"
        self.query_one(TitleBar).set("experiments", right)
        empty = self.query_one("#empty", Static)
        if app.experiments_problem and not count:
            empty.update(app.experiments_problem)
        else:
            empty.update(
                "No experiments yet. An experiment is a manifest with an experiment: block "
                "(a sweep: press e for the runs, n there and ctrl+t for the sweep template)."
            )
        shown = bool(app.experiments_problem) or (app.experiments_loaded and not count)
        empty.set_class(shown, "-shown")
        self._show_selection()

    def on_row_list_highlighted(self, event: RowList.Highlighted) -> None:
        self._show_selection()

    def _show_selection(self) -> None:
        """Under the list: the selected experiment's ID, its runs in words, its best run."""
        experiment = self._selected()
        text = ""
        if experiment is not None:
            status = experiment.get("status", "")
            text = f"{SYMBOLS.get(status, '?')} {experiment['experiment_id']}  "
            text += f"{experiment.get('method', '')} · {counts_words(experiment)}"
            best = experiment.get("best")
            metric = (experiment.get("objective") or {}).get("metric")
            if best:
                text += f" · best {metric} {format_value(best.get('value'))}: "
                text += parameters_summary(best.get("parameters"))
        line = self.query_one("#selection", Static)
        if str(line.render()) != text:
            line.update(text, layout=False)
        shown = tuple(self.check_action(a, ()) for a in ("halt_experiment", "resume_experiment"))
        if shown != self._shown:  # the footer offers halt and resume only where they apply
            self._shown = shown
            self.refresh_bindings()

    # --- actions --------------------------------------------------------------------------

    def _current(self) -> str | None:
        experiment_id = self.rows.current
        if experiment_id is None:
            self.notify("No experiment selected.", severity="warning")
        return experiment_id

    def action_open_experiment(self) -> None:
        if experiment_id := self._current():
            self.app.open_experiment(experiment_id)

    def on_row_list_opened(self, event: RowList.Opened) -> None:
        self.app.open_experiment(event.key)

    def action_halt_experiment(self) -> None:
        if experiment_id := self._current():
            self.app.halt_experiment(experiment_id)

    def action_resume_experiment(self) -> None:
        if experiment_id := self._current():
            self.app.resume_experiment(experiment_id)

    def action_delete_experiment(self) -> None:
        if experiment_id := self._current():
            self.app.delete_experiment(experiment_id)

    def action_sort(self) -> None:
        table = self.app.experiments
        current = EXPERIMENT_SORTS.index(table.sort) if table.sort in EXPERIMENT_SORTS else -1
        table.set_sort(EXPERIMENT_SORTS[(current + 1) % len(EXPERIMENT_SORTS)])
        self.experiments_changed()

    def action_reverse(self) -> None:
        table = self.app.experiments
        table.set_sort(table.sort, not table.reverse)
        self.experiments_changed()

    def on_row_list_header_sort_clicked(self, event: RowListHeader.SortClicked) -> None:
        table = self.app.experiments
        if event.sort == table.sort:
            table.set_sort(table.sort, not table.reverse)
        else:
            table.set_sort(event.sort)
        self.experiments_changed()
