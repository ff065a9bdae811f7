"""One run: its fields, a progress bar while data moves, and its log or its metrics (``v``
switches: a chart per metric, live)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from trainui.client import ClientError, ServiceUnreachable
from trainui.tui.keymap import ACTIONS, bindings, group_of
from trainui.tui.runs import SYMBOLS, format_bytes, is_active
from trainui.tui.screens.base import RESUMABLE, TrainuiScreen
from trainui.tui.widgets.bars import ConnectionBanner, TitleBar
from trainui.tui.widgets.footer import Footer
from trainui.tui.widgets.log_view import LogView
from trainui.tui.widgets.run_detail import RunDetail

if TYPE_CHECKING:
    from textual.widgets import Input


# the screen's own actions: hidden from the footer while the search line is open
_OWN = frozenset(a.action for a in ACTIONS.values() if group_of(a) == "run")
# the log's own actions: hidden while the metrics are shown
_LOG_ONLY = frozenset(
    {"follow", "search", "only_matching", "next_match", "previous_match", "toggle_details"}
)


class RunScreen(TrainuiScreen):
    BINDINGS = bindings("run")
    PALETTE = (("run", None), ("log", "LogView"), ("metrics", "MetricsView"))
    DEFAULT_CSS = """
    RunScreen #details { height: auto; max-height: 45%; background: $panel; }
    RunScreen #details.-hidden { display: none; }
    RunScreen #details:focus { background-tint: $foreground 6%; }
    RunScreen #progress { height: 1; display: none; padding: 0 1; background: $panel; }
    RunScreen #progress.-shown { display: block; }
    RunScreen #progress Label { width: auto; margin-right: 1; }
    RunScreen LogView { height: 1fr; }
    RunScreen #log-status {
        height: 1; background: $boost; color: $text-muted; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def __init__(self, model_id: str) -> None:
        super().__init__()
        self.model_id = model_id
        self.run_data = None
        self._ahead: dict | None = None  # the metrics view's first read, read ahead
        self._ahead_asked = False
        self.deleted = False
        self._status_text = ""
        self._progress_made = False

    def compose(self) -> ComposeResult:
        run = self.app.table.get(self.model_id)
        yield TitleBar(self.model_id, id="title")
        yield ConnectionBanner()
        with VerticalScroll(id="details"):  # tab: its fields scroll where they do not fit
            yield RunDetail(run)
        yield Horizontal(id="progress")  # its bar is made when data first moves
        yield LogView(
            self.app.client, self.model_id, follow=run is None or is_active(run), id="log"
        )
        yield Static("", id="log-status")
        yield Footer(compact=True)

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    @property
    def details(self) -> VerticalScroll:
        """The run's fields (``tab`` scrolls them where they do not all fit)."""
        return self.query_one("#details", VerticalScroll)

    def on_mount(self) -> None:
        self.log_view.focus()
        self.call_after_refresh(self._bar)
        self.set_timer(0.5, _load_charts)  # imported while idle: v then shows them at once
        run = self.app.table.get(self.model_id)
        if run is not None:
            self.show_run(run)
        self._refresh_run()

    @work(group="run-refresh", exclusive=True)
    async def _refresh_run(self) -> None:
        try:
            run = await self.app.client.get_run(self.model_id)
        except ServiceUnreachable as error:
            self.app.connection_lost(str(error))
            return
        except ClientError as error:
            if error.status == 404:
                self.run_deleted()
            else:
                self.notify(str(error), severity="error")
            return
        self.app.table.upsert(run)
        self.show_run(run)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not super().check_action(action, parameters):
            return False
        if action in _OWN and getattr(self.focused, "purpose", None) is not None:
            return False  # the search line has the keys (its footer: enter, escape, ctrl+r)
        if action in _LOG_ONLY and self.has_class("-metrics"):
            return False
        if action == "focus_fields" and self.has_class("-metrics"):
            return False  # the fields are hidden with the log: tab moves among the charts
        if action in ("halt_run", "follow"):  # only while the run goes on
            return self._going_on()
        if action == "resume_run":  # only a halted or failed run
            return self._resumable()
        if action in ("delete_run", "clone_run"):  # what is left of a deleted run: its screen
            return not self.deleted
        return True

    def _resumable(self) -> bool:
        return (
            self.run_data is not None
            and self.run_data.get("status") in RESUMABLE
            and not self.deleted
            and not getattr(self.app, "readonly", False)
        )

    def _going_on(self) -> bool:
        return self.run_data is not None and is_active(self.run_data) and not self.deleted

    def on_key(self, event) -> None:
        """``f`` on an ended run, ``R`` on one that cannot resume: their bindings are hidden
        (the footer offers them where they apply), so the key would do nothing; say why."""
        if self.run_data is None or getattr(self.focused, "purpose", None) is not None:
            return
        status = self.run_data.get("status")
        if (
            not self._resumable()
            and not getattr(self.app, "readonly", False)
            and self.said_not_resumable(event, "run.resume", status)
        ):
            return
        if self.focused is self.log_view and not self._going_on():
            self.said_why_not(event, "run.follow", "This run has ended: its log no longer grows.")

    # --- from the app ---------------------------------------------------------------------

    def runs_changed(self, changed: set[str] | None = None) -> None:
        if not self.is_mounted:
            return
        if changed is not None and self.model_id not in changed:
            return
        run = self.app.table.get(self.model_id)
        if run is None:
            if self.run_data is not None and not self.deleted:
                self.run_deleted()
        else:
            self.show_run(run)

    def metrics_changed(self, model_id: str, latest: dict) -> None:
        """New points of a run (a ``metrics`` event): the charts read them, if shown."""
        if model_id == self.model_id:
            for view in self.query("MetricsView"):
                view.metrics_event(model_id, latest)

    def run_deleted(self) -> None:
        """The run was deleted (here, or from another terminal): the screen says so, its
        fields stop where they were, and it offers nothing that changes the run."""
        self.deleted = True
        if not self.query(TitleBar):  # the screen is being taken down
            return
        self.query_one(TitleBar).set(right=f"{SYMBOLS['deleted']} deleted from the history")
        if self.run_data is not None:
            self.query_one(RunDetail).show_run(_as_deleted(self.run_data))
        self.refresh_bindings()  # h, R, f: gone from the footer
        self.notify(f"{self.model_id} was deleted from the history.", severity="warning")

    def show_run(self, run: dict) -> None:
        self.run_data = run
        if not self.query(TitleBar):  # an update that came while the screen is taken down
            return
        if not self._ahead_asked:  # once the screen is drawn
            self._ahead_asked = True
            self.call_after_refresh(self._read_metrics_ahead)
        status = run.get("status", "")
        self.query_one(TitleBar).set(
            run.get("name", ""), f"{SYMBOLS.get(status, '?')} {status}", f"  {self.model_id}"
        )
        self.query_one(RunDetail).show_run(run)
        progress = run.get("progress") or {}
        moving = status in ("downloading", "storing") and progress.get("phase")
        box = self.query_one("#progress")
        box.set_class(bool(moving), "-shown")
        if moving:
            self._show_progress(box, progress)
        if is_active(run):
            self.log_view.start_follow()
        self.refresh_bindings()

    def _show_progress(self, box: Horizontal, progress: dict) -> None:
        from textual.widgets import Label, ProgressBar

        if not self._progress_made:
            self._progress_made = True
            box.mount(Label("", id="progress-label"))
            box.mount(ProgressBar(total=None, show_eta=False, id="progress-bar"))
            self.call_after_refresh(self._show_progress, box, progress)
            return
        if not box.query("#progress-bar"):  # still being mounted: the call above follows
            return
        total = progress.get("bytes_total") or None
        arrow = "↓" if progress.get("phase") == "downloading" else "↑"
        box.query_one("#progress-label", Label).update(
            f"{arrow} {progress.get('objects_done', 0)}/{progress.get('objects_total', 0)} "
            f"objects, {format_bytes(progress.get('bytes_done', 0))} of "
            f"{format_bytes(total or 0)}"
        )
        box.query_one(ProgressBar).update(total=total, progress=progress.get("bytes_done", 0))

    def tick(self) -> None:
        if self.run_data is not None and is_active(self.run_data) and not self.deleted:
            self.query_one(RunDetail).show_run(self.run_data)

    # --- the log --------------------------------------------------------------------------

    def on_log_view_status_changed(self, event: LogView.StatusChanged) -> None:
        bar = self.query("BarInput")
        if bar and bar.first().is_open:
            text = _bar_hint(bar.first())  # what the search line does, above it
        else:
            text = self.log_view.status_text()
        if text != self._status_text:  # one line: no layout needed, only a redraw
            self._status_text = text
            self.query_one("#log-status", Static).update(text, layout=False)

    def on_log_view_ended(self, event: LogView.Ended) -> None:
        if not self.deleted:
            self._refresh_run()

    def action_follow(self) -> None:
        log = self.log_view
        log.following = not log.following
        self.notify("Following the log." if log.following else "Stopped following the log.")

    async def _bar(self):
        """The search line under the log (made once the first screen is drawn)."""
        from trainui.tui.widgets.bar_input import BarInput

        found = self.query(BarInput)
        if found:
            return found.first()
        bar = BarInput(id="bar")
        await self.mount(bar, after=self.query_one("#log-status"))
        return bar

    async def action_search(self) -> None:
        bar = await self._bar()
        log = self.log_view
        bar.open("search", "search the whole log", log.search_text, log.regex)
        self.on_log_view_status_changed(None)

    async def action_only_matching(self) -> None:
        bar = await self._bar()
        log = self.log_view
        bar.open("only", "show only the lines that match (empty: every line)", log.search_text,
                 log.regex)  # fmt: skip
        self.on_log_view_status_changed(None)

    def on_bar_input_mode_changed(self, event) -> None:
        self.on_log_view_status_changed(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        bar = event.input
        if bar.id != "bar":
            return
        log = self.log_view
        if bar.purpose == "only" and not event.value:
            log.show_only(False)
            problem = None
        else:
            problem = log.search(event.value, bar.regex, True if bar.purpose == "only" else None)
        if problem:  # the line stays open to be put right
            self.notify(problem, severity="error")
            return
        bar.close()
        log.focus()
        self.on_log_view_status_changed(None)

    def on_bar_input_cancelled(self, event) -> None:
        event.bar.close()
        self.log_view.focus()
        self.on_log_view_status_changed(None)

    def action_next_match(self) -> None:
        self._next(forward=True)

    def action_previous_match(self) -> None:
        self._next(forward=False)

    def _next(self, forward: bool) -> None:
        log = self.log_view
        if not log.search_text:
            self.notify("No search yet: / searches the log (& shows only the lines that match).",
                        severity="warning")  # fmt: skip
        elif log.doc is not None and not len(log.doc.matches) and not log.activity:
            self.notify(f"No line matches {log.search_text!r}.", severity="warning")
        else:
            log.next_match(forward=forward)

    # --- the metrics ----------------------------------------------------------------------

    @work(group="metrics-ahead", exclusive=True)
    async def _read_metrics_ahead(self) -> None:
        """An ended run with metrics: what its metrics view reads first, read now (v then
        draws its curves without waiting for the service). A run that goes on is read when
        the view opens: what is read ahead would be old by then."""
        from trainui.tui.widgets.metrics_view import MetricsView, read_ahead

        run = self.run_data
        if run is None or self._going_on() or self.query(MetricsView):
            return
        # held while it is read: a view opened meanwhile awaits it rather than asking again
        self._ahead = ahead = asyncio.get_running_loop().create_future()
        answer = None
        try:
            with contextlib.suppress(ClientError):
                answer = await read_ahead(self.app.client, self.model_id, run)
        finally:  # also when cancelled: a view waiting on it then asks for itself
            ahead.set_result(answer)

    async def action_toggle_metrics(self) -> None:
        """The log, or the metrics: a chart per metric (made the first time)."""
        from trainui.tui.widgets.metrics_view import MetricsView

        showing = not self.has_class("-metrics")
        if showing and not self.query(MetricsView):
            ahead = {self.model_id: self._ahead} if self._ahead is not None else None
            self._ahead = None
            view = MetricsView(
                self.app.client,
                [(self.model_id, None)],
                live=self._going_on,
                ahead=ahead,
                id="metrics",
            )
            await self.mount(view, after=self.log_view)
        # the class names the mode (actions ask it); the widgets are shown and hidden one by
        # one: a class on the screen restyles every widget in it (about 28 ms at 120x40)
        self.set_class(showing, "-metrics", update=False)
        for widget in (self.log_view, *self.query("#log-status, #bar, #details")):
            if showing:
                widget.display = False
            else:  # back to what their CSS says (#details may be hidden by its class)
                widget.styles.clear_rule("display")
        metrics = self.query_one(MetricsView)
        metrics.display = showing
        if showing:
            self.PALETTE = (("metrics", "MetricsView"), ("run", None), ("log", "LogView"))
            metrics.focus()
        else:
            self.PALETTE = type(self).PALETTE
            self.log_view.focus()
        self.refresh_bindings()

    def action_toggle_details(self) -> None:
        details = self.details
        details.toggle_class("-hidden")
        if details.has_focus:  # hidden: the log has the keys again
            self.log_view.focus()

    def action_focus_fields(self) -> None:
        """To the run's fields (shown, if hidden; at 80x24 they do not all fit, and the arrow
        keys scroll them), and back to the log."""
        details = self.details
        if details.has_focus:
            self.log_view.focus()
            return
        details.remove_class("-hidden")
        details.focus()

    # --- changing the run -----------------------------------------------------------------

    def action_back(self) -> None:
        if self.details.has_focus:  # escape leaves the fields first
            self.log_view.focus()
            return
        if self.log_view.only:  # escape leaves the filtered view first
            self.log_view.show_only(False)
            return
        self.app.back()

    def action_halt_run(self) -> None:
        self.app.halt_run(self.model_id)

    def action_resume_run(self) -> None:
        self.app.resume_run(self.model_id)

    def action_delete_run(self) -> None:
        self.app.delete_run(self.model_id)

    def action_clone_run(self) -> None:
        self.app.clone_run(self.model_id)


def _as_deleted(run: dict) -> dict:
    """A run's fields as its screen shows them once it is deleted: its time stops there."""
    from trainui.core.runs import utc_now

    said = "deleted from the history; what it stored in the results bucket stays there"
    return {
        **run,
        "status": "deleted",
        "status_message": said,
        "finished_at": run.get("finished_at") or (utc_now() if run.get("started_at") else None),
    }


def _load_charts() -> None:
    import trainui.tui.widgets.metrics_view  # noqa: F401 (numpy: some tens of ms)


def _bar_hint(bar) -> str:
    """The status line while the search line is open: what it does, and how."""
    kind = "regex" if bar.regex else "plain text"
    other = "plain text" if bar.regex else "regex"
    what = "only matching lines" if bar.purpose == "only" else "search the whole log"
    return f"{what} · {kind} (ctrl+r: {other}) · a capital: match case"
