"""The trainui TUI: runs, their logs, the manifest editor and the GPUs, over one client.

The app receives its client (local socket or remote service: the same API either way) and
imports nothing of the service's own: the client is its one way in. It stays live through the
service's events (``/v3/events``) and log streams; only the GPU readings are polled, by one
self-rescheduling worker. When the service goes away, a banner says so, what is on screen
stays, and the app reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import ClassVar

from textual import work
from textual.app import App
from textual.css.query import NoMatches
from textual.reactive import reactive

from trainui.client import ClientError, ServiceUnreachable
from trainui.core.runs import FINAL_STATES, stopped_early
from trainui.tui.commands import ActionsProvider, RunsProvider
from trainui.tui.config import DEFAULT_THEME, TuiConfig, load_themes
from trainui.tui.experiments import ExperimentTable
from trainui.tui.keymap import CHANGING, GROUPS, bindings
from trainui.tui.runs import RunTable, is_active

DRAW_EVERY = 0.1  # seconds: run changes arriving closer together are drawn at once
FIRST_PAGE = 500  # runs fetched first, so that a long history draws at once
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 3.0, 5.0)
BANNER_AFTER = 1.0  # seconds: a cut shorter than this (a reconnection) shows no banner
RELOAD_AFTER = 5.0  # seconds: after a longer cut, more may have changed than is replayed
EXPERIMENTS_EVERY = 1.0  # seconds: the experiments' counts are read again at most this often
PREFERRED_THEME = "trainui"


class TrainuiApp(App[int]):
    TITLE = "trainui"
    CSS_PATH = "app.tcss"
    BINDINGS = bindings("app")
    COMMANDS: ClassVar = App.COMMANDS | {ActionsProvider, RunsProvider}

    connection_error: reactive[str] = reactive("")

    def __init__(
        self,
        client,
        *,
        readonly: bool = False,
        theme: str | None = None,
        config: TuiConfig | None = None,
        open_run: str | None = None,
        watch_gpus: bool = True,
        view: str = "runs",
    ) -> None:
        super().__init__()
        self.client = client
        self.readonly = readonly
        self.config = config or TuiConfig(problems=[])
        self.requested_theme = theme
        self.open_run_id = open_run
        self.watch_gpus = watch_gpus
        self.first_screen = view  # "runs" or "experiments"
        self.table = RunTable()
        self.experiments = ExperimentTable()
        self.experiments_loaded = False  # read once (when the experiments were first shown)
        self.experiments_problem = ""
        self._experiments_due = False
        self.loaded = False  # the whole list has been read once
        self.gpu_readings: dict | None = None
        self.service_health: dict | None = None  # GET /v3/health: cpu_mode, gpus, cpu_slots
        self.gpu_history: dict | None = None
        self.cpu_mode: bool | None = None  # the service runs on the CPU (its health says)
        self.events_seen = 0
        self.first_view = asyncio.Event()  # set once the run opened at start shows its log
        self._changed: set[str] | None = set()
        self._change_pending = False
        self._last_told = 0.0
        self._lost_timer = None
        self._service_pid = None
        self._prefetched: dict[str, asyncio.Future] = {}
        # the theme is chosen before the first screen is made: chosen in on_mount, the change
        # parsed the styles again and applied them again to every widget made by then
        themes, self._theme_problems = load_themes()
        for theme in themes:
            self.register_theme(theme)
        self._choose_theme()
        self._theme_kept = self.theme  # the theme remembered (or given): not written again

    # --- start ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._theme_chosen)
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        for problem in [*self.config.problems, *self._theme_problems]:
            self.notify(problem, severity="warning", timeout=10)
        if self.open_run_id:  # its log first; the run list is made when the user goes back
            from trainui.tui.logdoc import TAIL

            # the log's tail is asked for now, while the screen is being made
            self._prefetched[self.open_run_id] = asyncio.ensure_future(
                self.client.read_log(self.open_run_id, -TAIL)
            )
            self.open_run(self.open_run_id)
        elif self.first_screen == "experiments":
            from trainui.tui.screens.experiments import ExperimentsScreen

            self.push_screen(ExperimentsScreen())
        else:
            from trainui.tui.screens.runs import RunsScreen

            self.push_screen(RunsScreen())
        self._watch_events()
        if self.watch_gpus:
            self._poll_gpus()
        self.set_interval(1.0, self._tick)

    def _choose_theme(self) -> None:
        wanted = self.requested_theme or self.config.theme
        chosen = self.config.chosen_theme  # chosen in the TUI last time
        if not self.requested_theme and chosen and chosen in self.available_themes:
            wanted = chosen
        if wanted == "ansi" and "ansi" not in self.available_themes:
            wanted = "ansi-dark"  # Textual's own, when the themes folder was not installed
        if wanted:
            if wanted in self.available_themes:
                self.theme = wanted
                return
            names = ", ".join(sorted(self.available_themes))
            self.notify(f"no theme '{wanted}'; there are: {names}", severity="error", timeout=10)
        self.theme = PREFERRED_THEME if PREFERRED_THEME in self.available_themes else DEFAULT_THEME

    def _theme_chosen(self, theme) -> None:
        """A theme chosen while the app runs (the palette's Theme): remembered."""
        from trainui.tui.config import save_theme

        if theme.name == self._theme_kept:
            return
        self._theme_kept = theme.name
        try:
            self.config = save_theme(self.config, theme.name)
        except OSError as error:
            self.notify(f"The theme is not remembered: {error}", severity="warning")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.readonly and action in CHANGING)

    # --- staying live ---------------------------------------------------------------------

    @work(group="events", exclusive=True)
    async def _watch_events(self) -> None:
        """Read the list, then apply the service's events as they come.

        The client's event stream reconnects by itself and says so (kind ``connection``), and
        resumes after the last event it saw. The list is read again only when events may have
        been lost: the service restarted (its numbering starts again) or the cut was long."""
        failures = 0
        while True:
            try:
                await self._load_runs()
                self.connection_back()
                failures = 0
                lost_at = None
                # from event 0: the service replays its recent events, so nothing that changed
                # between the list and the subscription is missed (applying one twice is fine)
                async for _event_id, kind, data in self.client.events(0):
                    if kind != "connection":
                        self.events_seen += 1
                        self._apply_event(kind, data)
                    elif data.get("state") == "lost":
                        lost_at = time.monotonic()
                        self._lost_timer = self.set_timer(
                            BANNER_AFTER,
                            lambda: self.connection_lost(f"lost the connection to {self._where()}"),
                        )
                    else:
                        if self._lost_timer is not None:
                            self._lost_timer.stop()
                        cut = time.monotonic() - (lost_at or time.monotonic())
                        if cut > RELOAD_AFTER or await self._service_changed():
                            await self._load_runs()
                        self.connection_back()
                # the stream ended (an older client): read everything again
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the list could not be read: the service is away
                self.connection_lost(_describe(error, self._where()))
                self.client.forget_service()
                await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
                failures += 1

    async def _service_changed(self) -> bool:
        """Whether the service is another process than the one the list came from."""
        try:
            pid = (await self.client.health()).get("pid")
        except Exception:  # it will be known at the next try
            return True
        changed = pid != self._service_pid
        self._service_pid = pid
        return changed

    def take_prefetched_log(self, model_id: str) -> asyncio.Future | None:
        """The read of a log's tail that was started at start-up, if any."""
        return self._prefetched.pop(model_id, None)

    async def _after_first_view(self) -> None:
        """With a run opened at start (or the experiments), other reads wait until its log (or
        their list) shows, or 2 s."""
        first = self.open_run_id is not None or self.first_screen == "experiments"
        if first and not self.first_view.is_set():
            # not wait_for: on Python 3.11 it swallows a cancel that comes as the event is set,
            # and the worker cancelled then went on
            waiter = asyncio.ensure_future(self.first_view.wait())
            try:
                await asyncio.wait({waiter}, timeout=2.0)
            finally:
                waiter.cancel()

    def _where(self) -> str:
        return getattr(self.client, "where", None) or "the trainui service"

    async def _load_runs(self) -> None:
        await self._after_first_view()
        with contextlib.suppress(Exception):
            health = await self.client.health()
            self._service_pid = health.get("pid")
            self.cpu_mode = health.get("cpu_mode")
        if not self.loaded:
            # the list comes oldest first: one page tells how many there are, and a long
            # history has its newest page drawn while the rest comes
            runs, count = await self.client.list_runs(limit=FIRST_PAGE)
            if count <= FIRST_PAGE:
                self.table.reconcile(runs)
                self.loaded = True
                self._runs_changed(None)
                return
            runs, _ = await self.client.list_runs(offset=max(0, count - FIRST_PAGE))
            for run in runs:
                self.table.upsert(run)
            self._runs_changed(None)
        runs, _count = await self.client.list_runs()
        self.table.reconcile(runs)
        self.loaded = True
        self._runs_changed(None)
        self._experiments_stale()  # after a reload: what changed meanwhile

    def _apply_event(self, kind: str, data: dict) -> None:
        if kind.startswith("experiment"):
            self._experiment_event(kind, data)
            return
        model_id = data.get("model_id")
        if not model_id:
            return
        if data.get("experiment_id") or kind == "deleted":  # an experiment's counts change
            self._experiments_stale()
        elif kind == "metrics" and self._objective_moved(model_id, data.get("metrics") or {}):
            self._experiments_stale()  # its experiment's best may have changed
        if kind == "deleted":
            changed = self.table.remove(model_id)
        elif kind == "run":
            old = self.table.get(model_id)
            if old is not None and is_active(old) and not is_active(data):
                self._ring(data)  # a run shown ended (tui.toml's notify)
            if old is not None and not data.get("metrics") and old.get("metrics"):
                # a run's points never go away: an event replayed from before they came (or
                # one without them) keeps the ones known
                data = {**data, "metrics": old["metrics"]}
            changed = self.table.upsert(data)
        elif kind == "metrics":
            changed = self._metrics_event(model_id, data.get("metrics") or {})
        else:
            return
        if changed:
            self._runs_changed({model_id})

    def _objective_moved(self, model_id: str, changed: dict) -> bool:
        """Did new points of the run's experiment's objective come (``changed``: a metrics
        event's ``{name: {last, step}}``)?"""
        run = self.table.get(model_id)
        experiment_id = run.get("experiment_id") if run else None
        if not experiment_id:
            return False
        experiment = self.experiments.get(experiment_id) or {}
        return (experiment.get("objective") or {}).get("metric") in changed

    def _ring(self, run: dict) -> None:
        """Tell the person at the terminal that a run ended: the bell, and with ``desktop``
        a desktop notification (OSC 9: iTerm2, kitty, WezTerm, Windows Terminal...)."""
        how = self.config.notify if self.config is not None else "off"
        if how == "off" or run.get("status") not in ("completed", "failed", "halted"):
            return
        if how == "desktop" and self._driver is not None:
            text = f"trainui: {run.get('name') or ''} {run.get('model_id')} {run.get('status')}"
            text = "".join(c for c in text if c.isprintable() and c not in "\x1b\x07;")
            self._driver.write(f"\x1b]9;{text}\x07")
        self.bell()

    def _experiment_event(self, kind: str, data: dict) -> None:
        experiment_id = data.get("experiment_id")
        if not experiment_id or not self.experiments_loaded:
            return  # read whole when the experiments are first shown
        if kind == "experiment_deleted":
            if self.experiments.remove(experiment_id):
                self._tell_experiments()
        elif kind == "experiment" and "status" in data:
            # the events are replayed from the first one kept: an experiment's may be older
            # than the list read, so a known one is read again rather than taken from it
            if self.experiments.get(experiment_id) is None and self.experiments.upsert(data):
                self._tell_experiments()
            self._experiments_stale()

    def _experiments_stale(self) -> None:
        """A run of an experiment changed: its counts, state and best are read again (the
        service sums them up), at most once every ``EXPERIMENTS_EVERY`` seconds."""
        if not self.experiments_loaded or self._experiments_due:
            return
        self._experiments_due = True

        def due() -> None:
            self._experiments_due = False
            self.load_experiments()

        self.set_timer(EXPERIMENTS_EVERY, due)

    @work(group="experiments", exclusive=True)
    async def load_experiments(self) -> None:
        """Read the experiments (each summed up by the service) and tell the screens."""
        try:
            answer = await self.client.list_experiments()
        except asyncio.CancelledError:
            raise
        except ClientError as error:
            if error.status == 404:
                self.experiments_problem = (
                    "This service has no experiments (it is older than this TUI)."
                )
            elif not self.experiments_loaded:
                self.experiments_problem = f"The experiments cannot be read: {error}"
            self._tell_experiments()
            return
        except Exception as error:  # the events worker shows the banner
            if not self.experiments_loaded:
                self.experiments_problem = _describe(error, self._where())
                self._tell_experiments()
            return
        self.experiments_problem = ""
        self.experiments.reconcile(answer.get("experiments") or [])
        self.experiments_loaded = True
        self._tell_experiments()
        if self.first_screen == "experiments":
            self.call_after_refresh(self.first_view.set)

    def _tell_experiments(self) -> None:
        for screen in self.screen_stack:
            if hasattr(screen, "experiments_changed"):
                with contextlib.suppress(NoMatches):
                    screen.experiments_changed()

    def _metrics_event(self, model_id: str, latest: dict) -> bool:
        """New points of a run: its record's ``metrics`` (the list's columns) take the latest
        values, and the screens showing its charts read the new points."""
        for screen in self.screen_stack:
            if hasattr(screen, "metrics_changed"):
                with contextlib.suppress(NoMatches):
                    screen.metrics_changed(model_id, latest)
        run = self.table.get(model_id)
        if run is None or not latest:
            return False
        metrics = dict(run.get("metrics") or {})
        for name, point in latest.items():
            if not isinstance(point, dict):
                continue
            known = dict(metrics.get(name) or {})
            value = point.get("last")
            known.update(point)
            if isinstance(value, (int, float)):  # a summary's bounds hold the new value
                if known.get("min") is None or value < known["min"]:
                    known["min"] = value
                if known.get("max") is None or value > known["max"]:
                    known["max"] = value
            metrics[name] = known
        return self.table.upsert({**run, "metrics": metrics})

    def _runs_changed(self, changed: set[str] | None) -> None:
        """Tell the screens which runs changed; bursts of events are drawn once."""
        if changed is None:
            self._changed = None  # everything
        elif self._changed is not None:
            self._changed |= changed
        if not self._change_pending:
            self._change_pending = True
            wait = self._last_told + DRAW_EVERY - time.monotonic()
            if wait > 0:
                self.set_timer(wait, self._tell_screens)
            else:
                self.call_later(self._tell_screens)

    def _tell_screens(self) -> None:
        changed, self._changed = self._changed, set()
        self._change_pending = False
        self._last_told = time.monotonic()
        for screen in self.screen_stack:
            if hasattr(screen, "runs_changed"):
                with contextlib.suppress(NoMatches):  # a screen being made or taken down
                    screen.runs_changed(changed)
        for pane in self._gpu_panes():
            pane.runs_changed()

    @work(group="gpus", exclusive=True)
    async def _poll_gpus(self) -> None:
        """The service's health first (it says at once whether there is a GPU at all), then one
        reading, and the next once it is drawn and ``refresh`` seconds passed."""
        await self._after_first_view()
        try:
            self.service_health = await self.client.health()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # said in the pane; the events worker shows the banner
            for pane in self._gpu_panes():
                pane.show_unreachable(_describe(error, self._where()))
        else:
            for pane in self._gpu_panes():
                pane.refresh_text()
        with contextlib.suppress(Exception):  # the sparklines start from the service's history
            self.gpu_history = await self.client.gpus_history()
        while True:
            try:
                readings = await self.client.gpus()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the events worker reports the connection
                readings = None
                if self.gpu_readings is None:
                    for pane in self._gpu_panes():
                        pane.show_unreachable(_describe(error, self._where()))
            self.gpu_readings = readings or self.gpu_readings
            for screen in self.screen_stack:
                if hasattr(screen, "gpus_changed"):
                    with contextlib.suppress(NoMatches):
                        screen.gpus_changed(readings)
            await asyncio.sleep(self.config.refresh)

    def _gpu_panes(self) -> list:
        from trainui.tui.widgets.gpu_pane import GpuPane

        panes = []
        for screen in self.screen_stack:
            with contextlib.suppress(NoMatches):
                panes.extend(screen.query(GpuPane))
        return panes

    def _tick(self) -> None:
        for screen in self.screen_stack:
            if hasattr(screen, "tick"):
                with contextlib.suppress(NoMatches):
                    screen.tick()

    def connection_lost(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.connection_error = (
            f"{message}. Reconnecting by itself… (what you see is as of {stamp})"
            if not self.connection_error
            else self.connection_error
        )

    def connection_back(self) -> None:
        if self.connection_error:
            self.connection_error = ""
            self.notify("Connected to the trainui service again.")

    # --- actions shared by the screens ----------------------------------------------------

    def action_help(self) -> None:
        from trainui.tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        # the keys of the screen it is opened from come first
        first = [group for group, _where in getattr(self.screen, "PALETTE", ())]
        where = GROUPS[first[0]].lower() if first else ""
        self.push_screen(HelpScreen(first, where))

    def action_toggle_gpus(self) -> None:
        """The GPU pane full screen, or back from it."""
        from trainui.tui.screens.gpus import GpuScreen

        if isinstance(self.screen, GpuScreen):
            self.pop_screen()
        elif not any(isinstance(s, GpuScreen) for s in self.screen_stack):
            self.push_screen(GpuScreen())

    def current_run(self) -> str | None:
        """The run the screen is about: the run screen's, or the one selected in the list."""
        screen = self.screen
        model_id = getattr(screen, "model_id", None)
        if model_id is None and hasattr(screen, "run_list"):
            model_id = screen.run_list.current
        return model_id

    def action_download_results(self) -> None:
        from trainui.tui.screens.results import DownloadScreen

        model_id = self.current_run()
        if model_id is None:
            self.notify("No run selected.", severity="warning")
            return
        name = (self.table.get(model_id) or {}).get("name", "")
        self.push_screen(DownloadScreen(model_id, name))

    def action_view_manifest(self) -> None:
        model_id = self.current_run()
        if model_id is None:
            self.notify("No run selected.", severity="warning")
            return
        self._view_manifest(model_id)

    @work(group="manifest")
    async def _view_manifest(self, model_id: str) -> None:
        from trainui.tui.screens.manifest import ManifestScreen

        try:
            text = await self.client.manifest(model_id)
        except ClientError as error:
            self._refused(error)
            return
        self.push_screen(ManifestScreen(model_id, text))

    def back(self) -> None:
        """Leave this screen for the one below, or for the run list if there is none."""
        if len(self.screen_stack) > 2:
            self.pop_screen()
        else:
            from trainui.tui.screens.runs import RunsScreen

            self.switch_screen(RunsScreen())

    def action_toggle_experiments(self) -> None:
        """The experiments instead of the runs, or the runs instead of the experiments."""
        from trainui.tui.screens.experiments import ExperimentsScreen
        from trainui.tui.screens.runs import RunsScreen

        if isinstance(self.screen, ExperimentsScreen):
            self.switch_screen(RunsScreen())
        elif isinstance(self.screen, RunsScreen):
            self.switch_screen(ExperimentsScreen())

    def open_experiment(self, experiment_id: str) -> None:
        from trainui.tui.screens.experiment import ExperimentScreen

        self.push_screen(ExperimentScreen(experiment_id))

    def halt_experiment(self, experiment_id: str) -> None:
        experiment = self.experiments.get(experiment_id) or {}
        if experiment and not is_active(experiment):
            self.notify(
                f"{experiment_id} has already ended ({experiment['status']}).", severity="warning"
            )
            return
        from trainui.tui.screens.confirm import ConfirmScreen

        counts = experiment.get("runs_by_status") or {}
        going = sum(n for state, n in counts.items() if state not in FINAL_STATES)
        runs = "each of its runs that goes on or waits"
        if counts:
            runs = f"its {going} run{'s' if going != 1 else ''} that go on or wait"

        def answered(yes: bool | None) -> None:
            if yes:
                self._halt_experiment(experiment_id)

        self.push_screen(
            ConfirmScreen(
                f"Halt {experiment_id} ({experiment.get('name', '')})?",
                f"Halts {runs}; logs, metrics and results stay stored.",
                "Halt",
            ),
            answered,
        )

    @work(group="change")
    async def _halt_experiment(self, experiment_id: str) -> None:
        try:
            experiment = await self.client.halt_experiment(experiment_id)
        except ClientError as error:
            self._refused(error)
            return
        self._experiment_answered(experiment_id, experiment)
        self.notify(f"Halting {experiment_id}.")

    def _experiment_answered(self, experiment_id: str, experiment: object) -> None:
        """The service's answer to a change of the experiment (its summary): shown at once."""
        if isinstance(experiment, dict) and experiment.get("experiment_id") == experiment_id:
            if self.experiments_loaded:
                self.experiments.upsert(experiment)
            self._tell_experiments()

    def resume_experiment(self, experiment_id: str) -> None:
        """Its halted or failed runs started again (asks first: they take the box's GPUs)."""
        from trainui.tui.screens.base import resumable_runs

        experiment = self.experiments.get(experiment_id) or {}
        counts = experiment.get("runs_by_status") or {}
        ended = resumable_runs(experiment)
        if counts and not ended:
            self.notify(f"{experiment_id} has no halted or failed run to resume.",
                        severity="warning")  # fmt: skip
            return
        # those the median rule stopped stay halted (resume experiment leaves them): known
        # from the runs listed, each with its reason
        early = 0
        if experiment.get("early_stopping") and self.loaded:
            early = sum(
                1
                for run in self.table.runs.values()
                if run.get("experiment_id") == experiment_id
                and run.get("status") == "halted"
                and stopped_early(run.get("status_message"))
            )
        if counts and early >= ended:
            self.notify(
                f"None of the {ended} halted or failed runs of {experiment_id} resumes: "
                f"{early} stopped early (the median rule). R on a run's own screen starts it "
                "again anyway.",
                severity="warning",
            )
            return
        from trainui.tui.screens.confirm import ConfirmScreen

        runs = "each of its halted or failed runs"
        if counts:
            halted = counts.get("halted", 0) - early
            said = ", ".join(f"{n} {s}" for s, n in (("failed", counts.get("failed", 0)),
                                                     ("halted", halted)) if n)  # fmt: skip
            runs = f"its {said} run{'s' if ended - early != 1 else ''}"

        def answered(yes: bool | None) -> None:
            if yes:
                self._resume_experiment(experiment_id)

        self.push_screen(
            ConfirmScreen(
                f"Resume {experiment_id} ({experiment.get('name', '')})?",
                f"Starts {runs} again when their turn comes, each from its last checkpoint "
                "(one that never started, from the beginning)"
                + (
                    f"; the {early} stopped early stay halted."
                    if early
                    else "; runs stopped early stay halted."
                    if experiment.get("early_stopping")
                    else "."
                ),
                "Resume",
            ),
            answered,
        )

    @work(group="change")
    async def _resume_experiment(self, experiment_id: str) -> None:
        try:
            answer = await self.client.resume_experiment(experiment_id)
        except ClientError as error:
            self._refused(error)
            return
        resumed, left = answer.pop("resumed", []), answer.pop("not_resumed", [])
        self._experiment_answered(experiment_id, answer)
        said = f"Resuming {len(resumed)} run{'s' if len(resumed) != 1 else ''} of {experiment_id}."
        if left:
            said += f" {len(left)} left as they are: {left[0]['reason']}"
            said += " ..." if len(left) > 1 else ""
        self.notify(said, severity="warning" if left else "information")

    def delete_experiment(self, experiment_id: str) -> None:
        experiment = self.experiments.get(experiment_id) or {}
        count = experiment.get("count")
        runs = f"its {count} run{'s' if count != 1 else ''}" if count is not None else "its runs"
        from trainui.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete_experiment(experiment_id)

        self.push_screen(
            ConfirmScreen(
                f"Delete {experiment_id} ({experiment.get('name', '')}) and {runs}?",
                "Its runs that go on are halted first. What they stored in the results "
                "bucket stays there.",
                "Delete",
            ),
            answered,
        )

    @work(group="change")
    async def _delete_experiment(self, experiment_id: str) -> None:
        from trainui.tui.screens.experiment import ExperimentScreen

        # its screens know before the service's event comes (each said "was deleted" too)
        screens = [
            s
            for s in self.screen_stack
            if isinstance(s, ExperimentScreen) and s.experiment_id == experiment_id
        ]
        for screen in screens:
            screen.deleted = True
        try:
            await self.client.delete_experiment(experiment_id)
        except ClientError as error:
            for screen in screens:
                screen.deleted = False
            self._refused(error)
            return
        while isinstance(self.screen, ExperimentScreen) and self.screen.deleted:
            self.pop_screen()
        self.experiments.remove(experiment_id)
        self._tell_experiments()
        self.notify(f"Deleted {experiment_id}.")

    def open_run(self, model_id: str) -> None:
        from trainui.tui.screens.run import RunScreen

        self.push_screen(RunScreen(model_id))

    def new_run(self) -> None:
        from trainui.tui.screens.editor import EditorScreen
        from trainui.tui.templates import templates

        self.push_screen(EditorScreen(templates()["local"].text, "new run"))

    @work(group="clone")
    async def clone_run(self, model_id: str) -> None:
        from trainui.tui.screens.editor import EditorScreen

        try:
            text = await self.client.manifest(model_id)
        except ClientError as error:
            self._refused(error)
            return
        title = f"new run from {model_id}"
        run = self.table.get(model_id) or {}
        if run.get("experiment_id") and run.get("parameters") is not None:
            # a run of an experiment: that run again, with its own values, not the sweep
            from trainui.core.experiments import one_run_manifest
            from trainui.tui.experiments import parameters_summary

            experiment = self.experiments.get(run["experiment_id"]) or {}
            again = one_run_manifest(
                text, run["parameters"], experiment.get("name", ""), experiment.get("objective")
            )
            if again is not None:
                text = again
                title = f"{model_id} again ({parameters_summary(run['parameters'])})"
        self.push_screen(EditorScreen(text, title, f"run:{model_id}"))

    def submitted(self, model_id: str, editor) -> None:
        """The editor submitted a run: show it."""
        self.notify(f"Submitted {model_id}.")
        self._leave_editor(editor)
        from trainui.tui.screens.runs import RunsScreen

        runs_screen = next((s for s in self.screen_stack if isinstance(s, RunsScreen)), None)
        if runs_screen is not None:
            self.table.set_filter("")
            runs_screen.run_list.selected_id = model_id
        self.open_run(model_id)

    def submitted_experiment(self, experiment_id: str, runs: int, editor) -> None:
        """The editor submitted an experiment: show it, its runs ranked as they go."""
        self.notify(f"Submitted {experiment_id} ({runs} run{'' if runs == 1 else 's'}).")
        self._leave_editor(editor)
        self.open_experiment(experiment_id)

    def _leave_editor(self, editor) -> None:
        if editor in self.screen_stack:
            while self.screen is not editor:
                self.pop_screen()
            self.back()

    def halt_run(self, model_id: str) -> None:
        run = self.table.get(model_id)
        if run is not None and not is_active(run):
            self.notify(f"{model_id} has already ended ({run['status']}).", severity="warning")
            return
        name = (run or {}).get("name", "")
        from trainui.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._halt(model_id)

        self.push_screen(
            ConfirmScreen(
                f"Halt {model_id} ({name})?",
                "The training command is stopped; its log and results are still stored.",
                "Halt",
            ),
            answered,
        )

    def resume_run(self, model_id: str) -> None:
        """A halted or failed run started again as its next attempt (SPEC §11)."""
        run = self.table.get(model_id)
        if run is not None and run.get("status") not in ("halted", "failed"):
            self.notify(
                f"{model_id} is {run['status']}: only a halted or failed run resumes.",
                severity="warning",
            )
            return
        self._resume(model_id)

    @work(group="change")
    async def _resume(self, model_id: str) -> None:
        try:
            run = await self.client.resume_run(model_id)
        except ClientError as error:
            self._refused(error)
            return
        self.table.upsert(run)
        self._runs_changed({model_id})
        self.notify(f"Resuming {model_id}: {run.get('status_message')}")

    @work(group="change")
    async def _halt(self, model_id: str) -> None:
        try:
            run = await self.client.halt_run(model_id)
        except ClientError as error:
            self._refused(error)
            return
        self.table.upsert(run)
        self._runs_changed({model_id})
        self.notify(f"Halting {model_id}.")

    def delete_run(self, model_id: str) -> None:
        run = self.table.get(model_id)
        name = (run or {}).get("name", "")
        active = run is not None and is_active(run)
        from trainui.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(model_id)

        self.push_screen(
            ConfirmScreen(
                f"Delete {model_id} ({name}) from the history?",
                ("It is halted first. " if active else "")
                + "What it stored in the results bucket stays there.",
                "Delete",
            ),
            answered,
        )

    @work(group="change")
    async def _delete(self, model_id: str) -> None:
        try:
            await self.client.delete_run(model_id)
        except ClientError as error:
            self._refused(error)
            return
        if getattr(self.screen, "model_id", None) == model_id:
            self.screen.deleted = True
            self.back()
        self.table.remove(model_id)
        self._runs_changed({model_id})
        self.notify(f"Deleted {model_id}.")

    def _refused(self, error: ClientError) -> None:
        if isinstance(error, ServiceUnreachable):
            self.connection_lost(str(error))
        self.notify(str(error), severity="error", timeout=8)


def _describe(error: BaseException, where: str) -> str:
    if isinstance(error, ClientError):
        return str(error).rstrip(".")
    text = str(error) or type(error).__name__
    return f"lost the connection to {where} ({text})"
