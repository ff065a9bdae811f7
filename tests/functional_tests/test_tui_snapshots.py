"""Snapshots of the main screens at 80x24 (pytest-textual-snapshot; Textual is pinned).

The runs come from a real service and end in fixed final states; their IDs and times are then
masked (replaced by fixed ones, live updates stopped) so that the pictures hold still. The GPU
pane is drawn from fixed readings: the test machines have no GPU. Update the pictures with
``pytest tests/functional_tests/test_tui_snapshots.py --snapshot-update`` and look at them.
"""

from __future__ import annotations

import time

import pytest
from test_tui import GPU_HISTORY, GPU_READINGS, make_app, shared_history, text, until
from textual.app import App

from trainui.tui.widgets.gpu_pane import GpuPane

SIZE = (80, 24)
NAMES = ("printer", "broken", "stopped")


@pytest.fixture(scope="module")
def history(tmp_path_factory, request):
    return shared_history(tmp_path_factory, request.config)


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def masked(run: dict, i: int) -> dict:
    """The run with a fixed ID, owner and times (the rest is as the service says)."""
    model_id = f"training-SNAPSHOT{i}"
    fixed = dict(run, model_id=model_id, url=f"/v3/models/{model_id}", owner="ada")
    fixed["submitted_at"] = f"2026-11-27T05:1{i}:00.000Z"
    if run.get("started_at"):
        fixed["started_at"] = f"2026-11-27T05:1{i}:01.500Z"
    if run.get("finished_at"):
        fixed["finished_at"] = f"2026-11-27T05:1{i}:{13 + 11 * i}.250Z"
    if run.get("results"):
        fixed["results"] = dict(run["results"], prefix=f"{model_id}/")
    return fixed


async def hold_still(pilot) -> None:
    """Wait for the list and the GPU pane, then stop live updates and mask the runs."""
    app = pilot.app
    await until(pilot, lambda: app.loaded and app.gpu_readings is not None, what="the list")
    # the readings are drawn a moment after they arrive (late on a busy machine)
    await until(pilot, lambda: "GPUs: reading" not in text(app), what="the GPU pane")
    await pilot.pause(0.3)
    app.workers.cancel_group(app, "events")
    app.workers.cancel_group(app, "gpus")
    runs = sorted(app.table.runs.values(), key=lambda r: r["submitted_at"])
    app.table.reconcile([masked(run, i) for i, run in enumerate(runs)])
    app._runs_changed(None)
    if runs:
        await until(pilot, lambda: "training-SNAPSHOT0" in text(app), what="the masked runs")
    await pilot.pause(0.3)


def test_the_run_list(snap_compare, history):
    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=hold_still)


def test_the_run_list_in_the_ansi_theme(snap_compare, history):
    app = make_app(history, theme="ansi")
    assert snap_compare(app, terminal_size=SIZE, run_before=hold_still)


def test_the_run_list_filtered(snap_compare, history):
    async def run_before(pilot):
        await hold_still(pilot)
        await pilot.press("slash", *"fail")
        pilot.app.screen.query_one("#bar").cursor_blink = False
        await pilot.pause(0.2)

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run_before)


def test_two_runs_marked(snap_compare, history):
    async def run_before(pilot):
        await hold_still(pilot)
        await pilot.press("space", "space")
        await pilot.pause(0.3)

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run_before)


def test_the_delete_question(snap_compare, history):
    async def run_before(pilot):
        await hold_still(pilot)
        await pilot.press("d")
        await pilot.pause(0.3)

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run_before)


def test_the_help_screen(snap_compare, history):
    async def run_before(pilot):
        await hold_still(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.3)

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run_before)


async def log_settled(pilot, screen) -> None:
    """The log of an ended run opened, its follow started after the first screen and ended,
    and the refresh of the run that its end asks for done: only then may a test stand in a
    fake run ID (a refresh still to come would find no such run)."""
    await until(pilot, lambda: pilot.app.first_view.is_set(), what="the first view")
    await until(pilot, lambda: not screen.log_view.streaming, what="the follow to end")
    await pilot.pause(0.2)  # the follow's end posted a message: let it be handled
    await until(
        pilot,
        lambda: all(w.is_finished for w in pilot.app.workers if w.group == "run-refresh"),
        what="the run's refresh",
    )


def test_a_failed_run_and_its_log(snap_compare, history):
    model_id = history.ids["broken"]

    async def run_before(pilot):
        app = pilot.app
        await until(pilot, lambda: "ValueError: bad" in text(app) and "ModelId" in text(app))
        await until(pilot, lambda: app.loaded)
        await pilot.pause(0.3)
        screen = app.screen
        await log_settled(pilot, screen)
        for group in ("events", "gpus"):
            app.workers.cancel_group(app, group)
        app.workers.cancel_group(screen, "run-refresh")
        screen.model_id = "training-SNAPSHOT1"
        screen.show_run(masked(screen.run_data, 1))
        log = screen.log_view
        log.scroll_to(y=10, animate=False, immediate=True, force=True)  # the command's lines
        await pilot.pause(0.3)

    app = make_app(history, open_run=model_id)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_a_log_searched(snap_compare, history):
    async def run_before(pilot):
        app = pilot.app
        await until(pilot, lambda: "THE END" in text(app) and "ModelId" in text(app))
        await until(pilot, lambda: app.loaded)
        screen = app.screen
        await log_settled(pilot, screen)
        for group in ("events", "gpus"):
            app.workers.cancel_group(app, group)
        app.workers.cancel_group(screen, "run-refresh")
        screen.model_id = "training-SNAPSHOT0"
        screen.show_run(masked(screen.run_data, 0))
        await pilot.press("i", "slash", *"needle", "enter")
        await until(pilot, lambda: screen.log_view.current_match is not None)
        await pilot.press("n", "n")
        await pilot.pause(0.3)

    app = make_app(history, open_run=history.ids["printer"])
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_a_log_filtered_by_a_regex(snap_compare, history):
    async def run_before(pilot):
        app = pilot.app
        await until(pilot, lambda: "THE END" in text(app) and "ModelId" in text(app))
        await until(pilot, lambda: app.loaded)
        screen = app.screen
        await log_settled(pilot, screen)
        for group in ("events", "gpus"):
            app.workers.cancel_group(app, group)
        app.workers.cancel_group(screen, "run-refresh")
        screen.model_id = "training-SNAPSHOT0"
        screen.show_run(masked(screen.run_data, 0))
        await pilot.press("i", "ampersand", "ctrl+r", *"7 loss.*needle$", "enter")
        await until(pilot, lambda: "only matching lines: 1–6 of 6" in text(app))
        await pilot.pause(0.3)

    app = make_app(history, open_run=history.ids["printer"])
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_manifest_editor_with_a_problem(snap_compare, history):
    async def run_before(pilot):
        app = pilot.app
        await hold_still(pilot)
        await pilot.press("n")
        await until(pilot, lambda: "✓ valid" in text(app))
        editor = app.screen
        editor.area.cursor_blink = False
        editor.definition.cursor_blink = False
        editor.definition.value = "examples/demo/model"
        editor.area.move_cursor((8, 14))
        await pilot.press("delete", "delete", "delete", "delete", "delete", *"huge")
        await until(pilot, lambda: "not valid" in text(app))
        await pilot.pause(0.2)

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run_before)


def test_the_model_field_focused(snap_compare, history):
    """The path and the cursor at its end in view while the field has the focus."""

    async def run_before(pilot):
        app = pilot.app
        await hold_still(pilot)
        await pilot.press("n")
        await until(pilot, lambda: "✓ valid" in text(app))
        editor = app.screen
        editor.area.cursor_blink = False
        editor.definition.cursor_blink = False
        editor.definition.value = "examples/demo/model"
        await pilot.press("escape")  # from the text to the field
        await until(pilot, lambda: editor.definition.has_focus)
        await pilot.press(*"-v2")
        await pilot.pause(0.2)

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run_before)


def test_the_manifest_editor_finding(snap_compare, history):
    async def run_before(pilot):
        app = pilot.app
        await hold_still(pilot)
        await pilot.press("n")
        await until(pilot, lambda: "✓ valid" in text(app))
        editor = app.screen
        editor.area.cursor_blink = False
        editor.definition.value = "examples/demo/model"
        await pilot.press("ctrl+f")
        editor.find_bar.cursor_blink = False
        await pilot.press(*"local", "enter")
        await until(pilot, lambda: "2 of" in text(app))
        await pilot.pause(0.2)

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run_before)


class GpuApp(App):
    """The GPU pane alone, with readings of two H100s, one of them busy (not focused, as under
    the run list)."""

    AUTO_FOCUS = None

    def compose(self):
        yield GpuPane()

    def on_mount(self):
        pane = self.query_one(GpuPane)
        pane.seed_history(GPU_HISTORY, GPU_READINGS)
        pane.show_readings(GPU_READINGS)


def test_the_gpu_pane(snap_compare):
    assert snap_compare(GpuApp(), terminal_size=(80, 6))


def test_the_gpu_pane_wide(snap_compare):
    assert snap_compare(GpuApp(), terminal_size=(120, 6))


def test_the_cpu_slots_full_screen(snap_compare, history):
    async def run_before(pilot):
        await hold_still(pilot)
        await pilot.press("ctrl+g")
        await until(pilot, lambda: "slot 4" in text(pilot.app), what="every slot")
        await pilot.pause(0.2)

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run_before)


# --- metrics ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    from test_tui_metrics import shared_metric_runs

    return shared_metric_runs(tmp_path_factory, request.config)


async def charts_still(pilot, screen) -> None:
    """Every chart read and drawn, then nothing live: the events, the run's refresh and the
    charts' reads stopped."""
    app = pilot.app
    view = screen.query_one("MetricsView")
    await until(pilot, lambda: view.reads and view.charts(), what="the charts")
    await until(pilot, lambda: app.loaded)
    await pilot.pause(0.3)
    for group in ("events", "gpus"):
        app.workers.cancel_group(app, group)
    app.workers.cancel_group(screen, "run-refresh")
    app.workers.cancel_group(view, "metrics")
    await pilot.pause(0.2)


def test_the_metrics_view(snap_compare, trained):
    async def run_before(pilot):
        app = pilot.app
        await until(pilot, lambda: "trained 0.1" in text(app), what="the log")
        screen = app.screen
        await log_settled(pilot, screen)
        await pilot.press("v")
        await charts_still(pilot, screen)
        screen.model_id = "training-SNAPSHOT0"
        screen.show_run(masked(screen.run_data, 0))
        await pilot.pause(0.2)

    app = make_app(trained, open_run=trained.ids["lr-fast"])
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_metrics_view_in_the_ansi_theme_log_scale_smoothed(snap_compare, trained):
    async def run_before(pilot):
        app = pilot.app
        await until(pilot, lambda: "trained 0.01" in text(app), what="the log")
        screen = app.screen
        await log_settled(pilot, screen)
        await pilot.press("v")
        await charts_still(pilot, screen)
        screen.model_id = "training-SNAPSHOT1"
        screen.show_run(masked(screen.run_data, 1))
        await pilot.press("l", "s", "s")
        await pilot.pause(0.2)

    app = make_app(trained, open_run=trained.ids["lr-slow"], theme="ansi")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def compare_two(pilot, trained) -> None:
    """lr-fast and lr-slow marked and compared, the curves drawn, the manifests read."""
    app = pilot.app
    await until(pilot, lambda: app.loaded and len(app.table) >= 2, what="the list")
    await pilot.pause(0.2)
    for name in ("lr-fast", "lr-slow"):
        app.screen.run_list.select(trained.ids[name])
        await pilot.press("space")
    await pilot.press("C")
    await until(pilot, lambda: "compare  2 runs" in text(app), what="the compare screen")
    screen = app.screen
    await until(pilot, lambda: screen.manifests is not None, what="the manifests")
    await charts_still(pilot, screen)


def test_two_runs_compared(snap_compare, trained):
    async def run_before(pilot):
        await compare_two(pilot, trained)

    assert snap_compare(make_app(trained), terminal_size=SIZE, run_before=run_before)


def test_two_runs_compared_their_manifests(snap_compare, trained):
    async def run_before(pilot):
        await compare_two(pilot, trained)
        await pilot.press("3")
        await pilot.pause(0.3)

    assert snap_compare(make_app(trained), terminal_size=SIZE, run_before=run_before)
