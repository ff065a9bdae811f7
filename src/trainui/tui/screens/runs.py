"""The first screen: every run, newest first, and the GPUs below."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.widgets import Static

from trainui.client import ClientError
from trainui.core.runs import FINAL_STATES
from trainui.tui.keymap import ACTIONS, bindings, group_of
from trainui.tui.runs import METRIC_SORT, SORTS, SYMBOLS, is_active
from trainui.tui.screens.base import RESUMABLE, TrainuiScreen
from trainui.tui.widgets.bars import ConnectionBanner, TitleBar
from trainui.tui.widgets.footer import Footer
from trainui.tui.widgets.gpu_pane import GpuPane
from trainui.tui.widgets.run_list import RunList, RunListHeader

if TYPE_CHECKING:
    from textual.widgets import Input

# the screen's own actions: hidden from the footer while the filter or jump line is open
_OWN = frozenset(a.action for a in ACTIONS.values() if group_of(a) == "runs")
NAMED = 5  # marked runs named in the halt or delete question; the rest are counted


class RunsScreen(TrainuiScreen):
    BINDINGS = bindings("runs")
    PALETTE = (("runs", None), ("list", "RunList"))
    DEFAULT_CSS = """
    RunsScreen RunList { height: 1fr; }
    RunsScreen #empty { display: none; height: auto; padding: 1 2; color: $text-muted; }
    RunsScreen #empty.-shown { display: block; }
    RunsScreen #selection {
        height: 1; background: $boost; color: $text-muted; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    _current_active: tuple | None = None

    def compose(self) -> ComposeResult:
        table = self.app.table
        yield TitleBar("runs", id="title")
        yield ConnectionBanner()
        yield RunListHeader(table, id="header")
        yield RunList(table, id="runs")
        yield Static(id="empty")
        yield Static("", id="selection")  # the selected run's status, in full
        yield GpuPane(id="gpus")
        yield Footer(compact=True)

    @property
    def run_list(self) -> RunList:
        return self.query_one(RunList)

    def on_mount(self) -> None:
        self.run_list.metric_columns = tuple(self.app.config.metric_columns)
        self.run_list.focus()
        self.call_after_refresh(self._bar)  # made once the first screen is drawn
        self.runs_changed()
        # not mounted yet during on_mount: once it is (back from the experiments, with nothing
        # changing meanwhile, the title would wait for the next event)
        self.call_after_refresh(self.runs_changed)
        if self.app.gpu_readings is not None:
            self.query_one(GpuPane).seed_history(self.app.gpu_history, self.app.gpu_readings)
            self.gpus_changed(self.app.gpu_readings)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not super().check_action(action, parameters):
            return False
        if action in _OWN and getattr(self.focused, "purpose", None) is not None:
            return False  # the filter or jump line has the keys (its footer: enter, escape)
        if action == "halt_run":  # only for a run that has not ended (or marked ones)
            return any(is_active(run) for run in self._targets())
        if action == "resume_run":  # only a halted or failed run (the selected one)
            run = self.app.table.runs.get(self.run_list.current or "")
            return run is not None and run.get("status") in RESUMABLE
        if action == "clear_marks":
            return bool(self.run_list.marked)
        if action == "clear_filter":  # escape: the marks first, then the filter
            return bool(self.app.table.filter) and not self.run_list.marked
        return True

    def _targets(self) -> list[dict]:
        """The runs that halt and delete act on: the marked ones, else the selected one."""
        table = self.app.table
        if self.run_list.marked:
            ids = [m for m in table.view() if m in self.run_list.marked]
            ids += sorted(self.run_list.marked - set(ids))  # marked, hidden by the filter
        else:
            ids = [self.run_list.current] if self.run_list.current else []
        return [table.runs[m] for m in ids if m in table.runs]

    def on_run_list_highlighted(self, event: RunList.Highlighted) -> None:
        self._bindings_for(event.model_id)
        self._show_selection()

    def _show_selection(self) -> None:
        """The line under the list: the selected run's state in the service's words (why it
        waits, why it failed), which its row may cut."""
        run = self.app.table.get(self.run_list.current or "")
        text = ""
        if run is not None:
            status = run.get("status", "")
            message = run.get("status_message") or status
            text = f"{SYMBOLS.get(status, '?')} {run['model_id']}  {message}"
        line = self.query_one("#selection", Static)
        if str(line.render()) != text:
            line.update(text, layout=False)

    # --- from the app ---------------------------------------------------------------------

    def runs_changed(self, changed: set[str] | None = None) -> None:
        if not self.is_mounted:
            return
        run_list = self.run_list
        run_list.runs_changed()
        header = self.query_one(RunListHeader)
        header.run_list = run_list
        header.refresh()
        table = self.app.table
        shown = len(table.view())
        active = sum(n for state, n in table.counts().items() if state not in FINAL_STATES)
        title = "runs"
        if table.filter:
            title += f"  filter '{table.filter}': {shown:,} of {len(table):,}"
        right = f"{active} active · {len(table):,} run{'s' if len(table) != 1 else ''}"
        if run_list.marked:
            right = f"{len(run_list.marked)} marked · {right}"
        if not self.app.loaded:
            right = "loading…"
        self.query_one(TitleBar).set(title, right)
        empty = self.query_one("#empty", Static)
        if self.app.loaded and not shown:
            if table.filter:
                empty.update(f"No run matches '{table.filter}' (escape clears the filter).")
            elif self.app.readonly:
                empty.update("No runs yet.")
            else:
                empty.update(
                    "No runs yet. Press n to write a manifest and submit a run, "
                    "or run `trainui demo` in a shell."
                )
        empty.set_class(self.app.loaded and not shown, "-shown")
        self._bindings_for(run_list.current)
        self._show_selection()

    def _bindings_for(self, model_id: str | None) -> None:
        """Show halt only for a run that goes on, resume for one that may resume: redraw the
        footer when that changes."""
        current = self.app.table.runs.get(self.run_list.current or "") or {}
        active = (
            any(is_active(run) for run in self._targets()),
            current.get("status") in RESUMABLE,
        )
        if active != self._current_active:
            self._current_active = active
            self.refresh_bindings()

    def on_key(self, event) -> None:
        """``R`` on a run that cannot resume: its binding is hidden (the footer offers it only
        for a halted or failed run), so the key would do nothing; say why."""
        if getattr(self.focused, "purpose", None) is not None or getattr(
            self.app, "readonly", False
        ):
            return
        current = self.app.table.runs.get(self.run_list.current or "")
        if current is not None and current.get("status") not in RESUMABLE:
            self.said_not_resumable(event, "runs.resume", current.get("status"))

    def gpus_changed(self, readings: dict | None) -> None:
        if not self.is_mounted:
            return
        pane = self.query_one(GpuPane)
        if pane.data is None and readings is not None:
            pane.seed_history(self.app.gpu_history, readings)
        if readings is None:
            pane.show_stale()
        else:
            pane.show_readings(readings)

    def tick(self) -> None:
        self.run_list.tick()

    # --- actions --------------------------------------------------------------------------

    def _current(self) -> str | None:
        model_id = self.run_list.current
        if model_id is None:
            self.notify("No run selected.", severity="warning")
        return model_id

    def action_open_run(self) -> None:
        if model_id := self._current():
            self.app.open_run(model_id)

    def on_run_list_opened(self, event: RunList.Opened) -> None:
        self.app.open_run(event.model_id)

    def on_run_list_header_sort_clicked(self, event: RunListHeader.SortClicked) -> None:
        table = self.app.table
        if event.sort == table.sort:
            table.set_sort(table.sort, not table.reverse)
        else:
            table.set_sort(event.sort)
        self.runs_changed()

    def action_new_run(self) -> None:
        self.app.new_run()

    def action_clone_run(self) -> None:
        if model_id := self._current():
            self.app.clone_run(model_id)

    def action_halt_run(self) -> None:
        if self.run_list.marked:
            self._halt_marked()
        elif model_id := self._current():
            self.app.halt_run(model_id)

    def action_resume_run(self) -> None:
        if model_id := self._current():
            self.app.resume_run(model_id)

    def action_delete_run(self) -> None:
        if self.run_list.marked:
            self._delete_marked()
        elif model_id := self._current():
            self.app.delete_run(model_id)

    # --- metrics --------------------------------------------------------------------------

    def action_pick_columns(self) -> None:
        """Pick the metrics shown as columns (each run's last value); remembered."""
        from trainui.tui.screens.metric_picker import MetricPicker

        names: set[str] = set()
        for run in self.app.table.runs.values():
            names.update(run.get("metrics") or ())
        current = list(self.run_list.metric_columns)
        if not names and not current:
            self.notify("No run has metrics yet.", severity="warning")
            return

        def picked(columns: list[str] | None) -> None:
            if columns is None:
                return
            self.run_list.metric_columns = tuple(columns)
            table = self.app.table
            if table.sort.startswith(METRIC_SORT) and table.sort[len(METRIC_SORT) :] not in columns:
                table.set_sort("submitted")  # its column is gone
            self.run_list.runs_changed()
            self.query_one(RunListHeader).refresh()
            from trainui.tui.config import save_metric_columns

            try:
                self.app.config = save_metric_columns(self.app.config, columns)
            except OSError as error:
                self.notify(f"The columns are not remembered: {error}", severity="warning")

        every = sorted(names | set(current))
        self.app.push_screen(MetricPicker("Metric columns", every, current), picked)

    def action_compare(self) -> None:
        """The marked runs side by side (or the selected one alone)."""
        from trainui.tui.screens.compare import CompareScreen

        ids = [run["model_id"] for run in self._targets()]
        if not ids:
            self.notify("No run selected.", severity="warning")
            return
        self.app.push_screen(CompareScreen(ids))

    # --- marked runs ----------------------------------------------------------------------

    def action_toggle_mark(self) -> None:
        if model_id := self._current():
            self.run_list.toggle_mark(model_id)
            self.run_list.move_to(self.run_list.cursor + 1)  # as in k9s: on to the next run
            self._marks_changed()

    def action_mark_all(self) -> None:
        self.run_list.mark_all()
        self._marks_changed()

    def action_clear_marks(self) -> None:
        self.run_list.clear_marks()
        self._marks_changed()

    def action_clear_filter(self) -> None:
        """Escape with no run marked: the filter cleared, every run shown again (the selected
        one stays selected)."""
        from trainui.tui.widgets.bar_input import BarInput

        self.app.table.set_filter("")
        for bar in self.query(BarInput):  # the filter's line, left open after enter
            if bar.purpose == "filter":
                bar.close()
        self.runs_changed()
        self.run_list.move_to(self.run_list.cursor)
        self.refresh_bindings()

    def _marks_changed(self) -> None:
        self.runs_changed(set())
        self._current_active = None  # halt may apply now, or no longer
        self._bindings_for(None)

    def _halt_marked(self) -> None:
        runs = [run for run in self._targets() if is_active(run)]
        ended = len(self._targets()) - len(runs)
        if not runs:
            self.notify("None of the marked runs goes on: nothing to halt.", severity="warning")
            return
        detail = (
            "Its training command is stopped; its log and results stay stored."
            if len(runs) == 1
            else "Their training commands are stopped; logs and results stay stored."
        )
        if ended:
            detail += f" ({ended} marked run{'s have' if ended != 1 else ' has'} ended already.)"
        self._ask(f"Halt {_count(runs)}?", runs, detail, "Halt", self._halt_runs)

    def _delete_marked(self) -> None:
        runs = self._targets()
        active = sum(1 for run in runs if is_active(run))
        detail = (
            f"What {'it' if len(runs) == 1 else 'they'} stored in the results bucket stays there."
        )
        if active:
            going = f"{active} going on {'is' if active == 1 else 'are'} halted first."
            detail = f"{going} {detail}"
        question = f"Delete {_count(runs)} from the history?"
        self._ask(question, runs, detail, "Delete", self._delete_runs)

    def _ask(self, question: str, runs: list[dict], detail: str, confirm: str, act) -> None:
        from trainui.tui.screens.confirm import ConfirmScreen

        names = ", ".join(f"{r['model_id']} ({r.get('name', '')})" for r in runs[:NAMED])
        if len(runs) > NAMED:
            names += f" and {len(runs) - NAMED} more"
        ids = [run["model_id"] for run in runs]

        def answered(yes: bool | None) -> None:
            if yes:
                act(ids)

        self.app.push_screen(ConfirmScreen(question, f"{names}.\n{detail}", confirm), answered)

    @work(group="change")
    async def _halt_runs(self, ids: list[str]) -> None:
        done = await self._each(ids, self.app.client.halt_run, "halt")
        self.notify(f"Halting {_count(done)}.")

    @work(group="change")
    async def _delete_runs(self, ids: list[str]) -> None:
        done = await self._each(ids, self.app.client.delete_run, "delete")
        for model_id in done:
            self.app.table.remove(model_id)
            self.run_list.marked.discard(model_id)
        self.app._runs_changed(set(done))
        self.notify(f"Deleted {_count(done)}.")

    async def _each(self, ids: list[str], change, verb: str) -> list[str]:
        """Halt or delete each run; the ones done (a refusal is said, and the rest go on)."""
        done = []
        for model_id in ids:
            try:
                run = await change(model_id)
            except ClientError as error:
                self.app._refused(error)
                continue
            if isinstance(run, dict) and run.get("model_id") == model_id:
                self.app.table.upsert(run)
            done.append(model_id)
        if verb == "halt":
            self.app._runs_changed(set(done))
        self.run_list.marked -= set(done)
        self._marks_changed()
        return done

    def action_sort(self) -> None:
        table = self.app.table
        # the list's own orders, then one by each metric column shown
        cycle = (*SORTS, *(METRIC_SORT + name for name in self.run_list.metric_columns))
        current = cycle.index(table.sort) if table.sort in cycle else -1
        table.set_sort(cycle[(current + 1) % len(cycle)])
        self.runs_changed()
        self.run_list.move_to(self.run_list.cursor)

    def action_reverse(self) -> None:
        table = self.app.table
        table.set_sort(table.sort, not table.reverse)
        self.runs_changed()

    async def _bar(self):
        """The input line under the list (made the first time it is wanted)."""
        from trainui.tui.widgets.bar_input import BarInput

        found = self.query(BarInput)
        if found:
            return found.first()
        bar = BarInput(id="bar")
        await self.mount(bar, before=self.query_one(GpuPane))
        return bar

    async def action_filter(self) -> None:
        bar = await self._bar()
        bar.open(
            "filter",
            "filter: words every shown run has (name, ID, state, error code)",
            self.app.table.filter,
        )

    async def action_jump(self) -> None:
        bar = await self._bar()
        bar.open("jump", "jump to a run: its ID, the end of it, or a name")

    def on_input_changed(self, event: Input.Changed) -> None:
        bar = event.input
        if bar.id == "bar" and bar.purpose == "filter":
            self.app.table.set_filter(event.value)
            self.runs_changed()
            self.run_list.move_to(0)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        bar = event.input
        if bar.id != "bar":
            return
        if bar.purpose == "jump":
            self._jump(event.value)
            bar.close()
        elif not event.value:
            bar.close()
        self.run_list.focus()

    def on_bar_input_cancelled(self, event) -> None:
        bar = event.bar
        if bar.purpose == "filter":
            self.app.table.set_filter("")
            self.runs_changed()
        bar.close()
        self.run_list.focus()

    def _jump(self, text: str) -> None:
        table = self.app.table
        model_id = table.find(text)
        if model_id is None:
            self.notify(f"No run is called '{text}'.", severity="warning")
            return
        if table.index(model_id) is None:  # hidden by the filter
            table.set_filter("")
            self.query_one("#bar").close()
            self.runs_changed()
        self.run_list.move_to(table.index(model_id) or 0, center=True)


def _count(runs: list) -> str:
    return f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
