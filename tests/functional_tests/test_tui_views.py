"""The TUI's dialogs, help, footer, theme memory, GPU pane, results download and manifest view,
driven by their keys (Textual's pilot) against a real service on a private home."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from test_tui import (
    home_client,
    make_app,
    shared_history,
    text,
    type_path,
    until,
    write_model,
)
from textual.app import App

from trainui.client import Client
from trainui.tui.config import TuiConfig, load_config
from trainui.tui.widgets.footer import Footer
from trainui.tui.widgets.gpu_pane import GpuPane

SIZE = (80, 24)


@pytest.fixture(scope="module")
def history(tmp_path_factory, request):
    return shared_history(tmp_path_factory, request.config)


async def loaded(pilot) -> None:
    await until(pilot, lambda: pilot.app.loaded and pilot.app.screen.is_mounted, what="the list")
    await pilot.pause(0.15)


def screen_name(app) -> str:
    return type(app.screen).__name__


def lines(app) -> list[str]:
    return text(app).splitlines()


# --- help -------------------------------------------------------------------------------------


def group_titles(app) -> list[str]:
    return [str(s.render()) for s in app.screen.query(".group")]


async def test_help_puts_the_screens_keys_first_shows_whole_titles_and_ends_at_the_end(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: screen_name(app) == "HelpScreen")
        titles = group_titles(app)
        assert titles[:3] == ["Run list", "Run list: moving", "Everywhere"]
        assert "The keys of the run list first" in text(app)
        await pilot.press("end")
        await until(pilot, lambda: "Confirmation" in text(app), what="the last group")
        assert "confirm.no" in text(app)  # its last line too
        # every title whole ("Run list: moving", not "Run list:…") on a page, read from the top
        await pilot.press("home")
        pages = [text(app)]
        for _ in range(30):
            if all(any(title in page for page in pages) for title in titles):
                break
            await pilot.press("pagedown")
            pages.append(text(app))
        assert [t for t in titles if not any(t in page for page in pages)] == []
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "RunsScreen")
        await pilot.press("n")
        await until(pilot, lambda: screen_name(app) == "EditorScreen")
        await pilot.press("f1")  # ? types a ? in the editor: f1 opens the help there
        await until(pilot, lambda: screen_name(app) == "HelpScreen")
        assert group_titles(app)[:3] == [
            "Manifest editor",
            "Manifest editor: in the text",
            "Everywhere",
        ]
        assert "The keys of the manifest editor first" in text(app)


# --- dialogs over their screen, y and n ---------------------------------------------------------


async def test_the_delete_dialog_shows_over_the_list_says_y_and_n_and_n_cancels(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        selected = app.screen.run_list.current
        await pilot.press("d")
        await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
        await pilot.pause(0.1)
        shown = text(app)
        assert f"Delete {selected}" in shown
        assert "Cancel (n)" in shown and "Delete (y)" in shown
        assert "3 runs" in lines(app)[0]  # the run list's title bar, behind the dialog
        assert "CPU slots" in shown  # and its GPU pane
        assert app.screen.focused.id == "cancel"  # the default answer is no
        await pilot.press("n")
        await until(pilot, lambda: screen_name(app) == "RunsScreen")
        assert len(app.table) == 3


async def test_the_pickers_and_the_help_show_over_their_screen(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: screen_name(app) == "HelpScreen")
        assert "3 runs" in lines(app)[0]
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "RunsScreen")
        await pilot.press("n")
        await until(pilot, lambda: screen_name(app) == "EditorScreen")
        await pilot.press("ctrl+t")
        await until(pilot, lambda: screen_name(app) == "TemplatePicker")
        await pilot.pause(0.1)
        assert "new run" in lines(app)[0]  # the editor's title bar
        assert "model_definition:" in text(app)  # and its text, behind the picker
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "EditorScreen")


async def test_y_halts_from_the_dialog_over_the_run(home, tmp_path):
    model = write_model(tmp_path / "model")
    model_id = home.submit(model, home.manifest("sleep 30", name="sleeper"))
    home.wait(model_id, "running")
    app = make_app(home_client(home), open_run=model_id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "h Halt" in text(app), what="halt in the footer")
        assert "w Wrap" in footer_text(app)  # both, at 80 columns (i and d left out)
        await assert_footer_fits(pilot)
        await pilot.press("h")
        await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
        await pilot.pause(0.1)
        assert f"Halt {model_id}" in text(app) and "Halt (y)" in text(app)
        assert model_id in lines(app)[0]  # the run's title bar, behind the dialog
        await pilot.press("y")
        await until(pilot, lambda: app.table.get(model_id)["status"] == "halted", timeout=20)


# --- the footer -------------------------------------------------------------------------------


def footer_text(app) -> str:
    return lines(app)[-1]


async def assert_footer_fits(pilot) -> None:
    app = pilot.app
    footer = app.screen.query_one(Footer)
    # the footer is composed again after a screen's bindings change: on a loaded machine a
    # frame or two after the screen is
    await until(pilot, lambda: len(footer.children) > 0, timeout=10, what="the footer's keys")
    shown = footer_text(app)
    keys = [k for k in footer.children]
    assert keys, shown
    for key in keys:  # every key drawn whole, inside the screen
        assert key.region.right <= app.size.width, (key.description, shown)
        assert key.description in shown, (key.description, shown)
    assert "Keys" in shown  # ? (or f1) always
    assert "Commands" in shown  # the palette


@pytest.mark.parametrize("width", [60, 80, 120])
async def test_the_footer_leaves_out_whole_keys_and_keeps_help(history, width):
    app = make_app(history)
    async with app.run_test(size=(width, 24)) as pilot:
        await loaded(pilot)
        await assert_footer_fits(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: screen_name(app) == "RunScreen")
        await until(pilot, lambda: "lines" in text(app), what="the log")
        await pilot.pause(0.2)
        await assert_footer_fits(pilot)
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "RunsScreen")
        await pilot.press("n")
        await until(pilot, lambda: screen_name(app) == "EditorScreen")
        await pilot.pause(0.2)
        await assert_footer_fits(pilot)


async def test_the_footer_is_fitted_again_when_the_terminal_narrows(history):
    app = make_app(history)
    async with app.run_test(size=(120, 24)) as pilot:
        await loaded(pilot)
        # the footer's keys come a frame after the screen on a loaded machine (it was empty)
        await until(pilot, lambda: "s Sort" in footer_text(app), what="the wide footer")
        await pilot.resize_terminal(50, 24)
        await until(pilot, lambda: "s Sort" not in footer_text(app), what="a narrower footer")
        await assert_footer_fits(pilot)


# --- the theme is remembered ----------------------------------------------------------------------


async def test_a_theme_chosen_in_the_palette_is_remembered_and_tui_toml_kept(history, tmp_path):
    settings = tmp_path / "config" / "trainui" / "tui.toml"
    settings.parent.mkdir(parents=True)
    original = '# my settings\ntheme = "trainui"  # dark\nrefresh = 3\n'
    settings.write_text(original)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state")}
    app = make_app(history, config=load_config(env))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.theme == "trainui"
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"theme")
        await until(pilot, lambda: "Change the current theme" in text(app), what="the command")
        await pilot.press("enter")
        await pilot.pause(0.3)
        await pilot.press(*"dracula")
        await until(pilot, lambda: "dracula" in text(app), what="the theme")
        await pilot.press("enter")
        await until(pilot, lambda: app.theme == "dracula")
    state = tmp_path / "state" / "trainui" / "tui-state.toml"
    await until_file(state)
    assert settings.read_text() == original  # the user's file is left as written
    again = make_app(history, config=load_config(env))
    async with again.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert again.theme == "dracula"  # reopened with it
    assert make_app(history, config=load_config(env), theme="ansi").theme == "ansi"  # --theme
    settings.write_text(original.replace('"trainui"', '"trainui-light"'))
    assert make_app(history, config=load_config(env)).theme == "trainui-light"  # newer wins


async def until_file(path: Path) -> None:
    for _ in range(100):
        if path.exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def test_a_broken_state_file_is_said_and_forgotten(tmp_path):
    state = tmp_path / "trainui" / "tui-state.toml"
    state.parent.mkdir()
    state.write_text("theme = = broken")
    config = load_config({"XDG_STATE_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)})
    assert config.chosen_theme is None
    assert any("tui-state.toml" in p for p in config.problems)


# --- the GPU pane on a machine without GPUs -----------------------------------------------------


class PaneApp(App):
    """A GPU pane alone, with what the app would give it."""

    def __init__(self, health: dict | None) -> None:
        super().__init__()
        self.service_health = health
        from trainui.tui.runs import RunTable

        self.table = RunTable()

    def compose(self):
        yield GpuPane()


async def test_the_service_saying_cpu_mode_is_enough_to_show_the_cpu_slots():
    app = PaneApp({"cpu_mode": True, "gpus": [], "cpu_slots": 2})
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(GpuPane)
        pane.refresh_text()  # no reading yet: the health says it all
        await pilot.pause()
        assert "CPU slots · 0 of 2 in use" in text(app)
        assert "reading" not in text(app)


async def test_an_unreachable_service_is_said_in_the_gpu_pane(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client(url=f"http://127.0.0.1:{port}", environ={"TRAINUI_HOME": str(tmp_path)})
    app = make_app(client, config=TuiConfig(problems=[]))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "service unreachable" in text(app), what="the GPU pane")
        assert "reading…" not in text(app)


async def test_the_cpu_slots_show_the_runs_holding_them_and_the_queue(home, tmp_path):
    model = write_model(tmp_path / "model")
    first = home.submit(model, home.manifest("sleep 600", name="holder"))
    home.wait(first, "running")
    waiting = home.submit(model, home.manifest("true", name="waiter"))
    app = make_app(home_client(home))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.loaded and len(app.table) == 2)
            await until(pilot, lambda: "CPU slots · 1 of 1 in use · 1 waiting" in text(app))
            # the pane's lines may come a frame after its title: wait for them

            def starting(prefix: str) -> str:
                return next((s for s in lines(app) if s.lstrip().startswith(prefix)), "")

            await until(pilot, lambda: first in starting("slot 1"), what="the slot's run")
            slot = starting("slot 1")
            assert "holder" in slot and "running" in slot, slot
            await until(pilot, lambda: waiting in starting("queue"), what="the queue")
            await pilot.press("ctrl+g")  # full screen: every slot and the whole queue
            await until(pilot, lambda: screen_name(app) == "GpuScreen")
            await until(pilot, lambda: "Queue (first to start first)" in text(app))
            assert "waiting for a CPU slot" in text(app)
            await pilot.press("ctrl+g")
            await until(pilot, lambda: screen_name(app) == "RunsScreen")
            await pilot.press("tab")  # the pane takes the focus; enter enlarges it
            await until(pilot, lambda: app.screen.query_one(GpuPane).has_focus)
            await until(pilot, lambda: "enter: full screen" in text(app))
            await pilot.press("enter")
            await until(pilot, lambda: screen_name(app) == "GpuScreen")
            await pilot.press("escape")
            await until(pilot, lambda: screen_name(app) == "RunsScreen")
    finally:
        home.cli("halt", first)


# --- a run's results and manifest ---------------------------------------------------------------


async def test_w_downloads_a_runs_results_into_the_folder_confirmed(history, tmp_path):
    model_id = history.ids["printer"]
    listing = await history.client().list_results(model_id)
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        app.screen.run_list.move_to(app.table.index(model_id))
        await pilot.press("x")
        await until(pilot, lambda: screen_name(app) == "DownloadScreen")
        assert f"./{model_id}" in text(app)  # the default, as `trainui download ID --results`
        await until(pilot, lambda: f"{listing['count']} files" in text(app), what="the listing")
        dest = tmp_path / "got"
        await pilot.press("ctrl+u")
        assert app.focused.value == ""
        await type_path(pilot, app.focused, str(dest))
        await until(pilot, lambda: "new folder: " in text(app), what="where it goes")
        await pilot.press("enter")
        await until(pilot, lambda: screen_name(app) == "RunsScreen", what="the download")
        assert any(f"to {dest}" in str(n.message) for n in app._notifications)
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == sorted(o["key"] for o in listing["objects"])
    stored = history.path / "buckets" / "results" / model_id
    for key in got:
        assert (dest / key).read_bytes() == (stored / key).read_bytes()


async def test_w_on_a_run_without_results_says_so_and_esc_closes(history):
    model_id = history.ids["stopped"]  # halted while sleeping: it stored at most its log
    app = make_app(history, open_run=model_id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: screen_name(app) == "RunScreen")
        await pilot.press("x")
        await until(pilot, lambda: screen_name(app) == "DownloadScreen")
        await until(pilot, lambda: "files" in text(app) or "nothing is stored" in text(app))
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "RunScreen")
        assert not os.path.exists(model_id)


async def test_enter_on_results_not_there_yet_says_why_again(home, tmp_path):
    model = write_model(tmp_path / "model")
    running = home.submit(model, home.manifest("sleep 600", name="holder"))
    home.wait(running, "running")
    app = make_app(home_client(home))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.loaded and len(app.table) == 1)
            await pilot.press("x")
            await until(pilot, lambda: screen_name(app) == "DownloadScreen")
            said = f"run {running} is still running"
            await until(pilot, lambda: said in text(app), what="why there is nothing")
            await pilot.press("enter")  # not ignored without a word
            await until(pilot, lambda: any(said in str(n.message) for n in app._notifications))
            assert screen_name(app) == "DownloadScreen"
            await pilot.press("escape")
            await until(pilot, lambda: screen_name(app) == "RunsScreen")
        assert not os.path.exists(running)
    finally:
        home.cli("halt", running)


async def test_w_wraps_the_log_and_the_manifest_and_their_footers_say_so(history):
    app = make_app(history, open_run=history.ids["broken"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "ValueError: bad" in text(app), what="the log")
        await until(pilot, lambda: "w Wrap" in footer_text(app), what="w in the footer")
        await assert_footer_fits(pilot)  # at 80 columns, with the run's own keys
        log = app.screen.log_view
        await pilot.press("w")
        assert log.wrap
        await pilot.press("w")
        assert not log.wrap
        await pilot.press("m")
        await until(pilot, lambda: screen_name(app) == "ManifestScreen")
        await until(pilot, lambda: "w Wrap" in footer_text(app), what="w in the footer")
        await assert_footer_fits(pilot)
        area = app.screen.query_one("#manifest")
        assert not area.soft_wrap and "exit(3)" not in text(app)  # the command, cut
        await pilot.press("w")
        assert area.soft_wrap and "read-only · wrapped" in lines(app)[0]
        await until(pilot, lambda: "exit(3)" in text(app), what="the whole command")
        await pilot.press("w")
        assert not area.soft_wrap and lines(app)[0].rstrip().endswith("read-only")
        await until(pilot, lambda: "exit(3)" not in text(app))


async def test_m_shows_the_runs_manifest_read_only_and_highlighted(history):
    model_id = history.ids["broken"]
    manifest = await history.client().manifest(model_id)
    app = make_app(history, open_run=model_id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: screen_name(app) == "RunScreen")
        await pilot.press("m")
        await until(pilot, lambda: screen_name(app) == "ManifestScreen")
        area = app.screen.query_one("#manifest")
        assert area.text == manifest and area.read_only and area.language == "yaml"
        assert "name: broken" in text(app) and "read-only" in lines(app)[0]
        await pilot.press("x", "delete")
        assert area.text == manifest
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "RunScreen")
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "RunsScreen")
        await pilot.press("m")  # from the list: the selected run's
        await until(pilot, lambda: screen_name(app) == "ManifestScreen")


async def test_a_run_waiting_for_its_next_attempt_is_in_the_cpu_queue(home, tmp_path):
    """A run between two attempts (restarting) waits for a slot as a pending one does: the
    pane counts it, it said "none waiting"."""
    home.env["TRAINUI_RESTART_BACKOFF"] = "120"  # the next attempt waits while it is looked at
    model = write_model(tmp_path / "model")
    path = home.manifest("exit 3", name="crasher")
    path.write_text(
        path.read_text().replace(
            "    resource: small\n", "    resource: small\n    max_restarts: 1\n"
        )
    )
    crasher = home.submit(model, path)
    home.wait(crasher, "restarting")
    app = make_app(home_client(home))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and len(app.table) == 1)
        await until(pilot, lambda: "CPU slots · 0 of 1 in use · 1 waiting" in text(app))
