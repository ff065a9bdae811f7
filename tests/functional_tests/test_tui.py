"""The TUI driven by its keys (Textual's pilot) against a real service on a private home.

Most tests share one history of finished runs (module scope: the runs are made once); those
that change runs get a home of their own (the ``home`` fixture).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import Home, run_cli
from trainui.client import Client
from trainui.tui.app import TrainuiApp
from trainui.tui.config import TuiConfig, load_config

SIZE = (80, 24)


# --- a shared history -------------------------------------------------------------------------


class History:
    """A home with a service and runs in their final states, made once for the module."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {
            **os.environ,
            "TRAINUI_HOME": str(path),
            "TRAINUI_GPUS": "none",
            "TRAINUI_CPU_SLOTS": "4",
            "TRAINUI_IDLE_EXIT": "120",
            "TRAINUI_HALT_GRACE": "1",
        }
        self.env.pop("TRAINUI_URL", None)
        self.ids: dict[str, str] = {}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = run_cli(args, self.env)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def submit(self, name: str, command: str, model: Path) -> str:
        manifest = self.path.parent / f"{name}.yml"
        manifest.write_text(manifest_text(name, command))
        out = self.cli("train", str(model), str(manifest)).stdout
        model_id = out.strip().splitlines()[-1].split("'")[1]
        self.ids[name] = model_id
        return model_id

    def wait(self, model_id: str, *states: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = json.loads(self.cli("show", model_id, "--json").stdout)
            if run["status"] in states:
                return run
            assert time.monotonic() < deadline, run
            time.sleep(0.1)

    def client(self, **kwargs) -> Client:
        return Client(home=str(self.path), environ=self.env, **kwargs)

    def stop(self) -> None:
        """Stop the service and the runs by PID, each checked to be this home's."""
        Home(self.path, self.env).stop()


def manifest_text(name: str, command: str, bucket: str = "data") -> str:
    return textwrap.dedent(
        f"""\
        model_definition:
          name: {name}
          framework: {{name: python, version: "3.11"}}
          execution:
            command: {json.dumps(command)}
            resource: small
        training_data:
          connection: {{}}
          source: {{bucket: {bucket}, type: local}}
        training_results:
          connection: {{}}
          target: {{bucket: results, type: local}}
        """
    )


def write_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lines.py").write_text(
        "import sys, time\n"
        "n, pause = int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0\n"
        "for i in range(n):\n"
        "    print(f'line {i} loss {1 / (i + 1):.4f}' + (' needle' if i % 500 == 7 else ''),"
        " flush=bool(pause))\n"
        "    if pause: time.sleep(pause)\n"
        "print('THE END')\n"
    )
    return folder


@contextlib.contextmanager
def finished_runs(root: Path):
    """A home with three runs that ended: completed, failed (C201) and halted."""
    h = History(root / "home")
    (h.path / "buckets" / "data").mkdir(parents=True)
    model = write_model(root / "model")
    try:
        h.submit("printer", "python3 lines.py 3000", model)
        h.submit("broken", "python3 lines.py 30; python3 -c 'print(\"ValueError: bad\"); exit(3)'",
                 model)  # fmt: skip
        h.submit("stopped", "sleep 60", model)
        h.wait(h.ids["stopped"], "running")
        h.cli("halt", h.ids["stopped"])
        for name in ("printer", "broken", "stopped"):
            h.wait(h.ids[name], "completed", "failed", "halted")
        yield h
    finally:
        h.stop()


_SHARED: dict[str, History] = {}


def shared_history(tmp_path_factory, config) -> History:
    """The finished runs, made once for the whole session (the tests that use them only read)."""
    if "history" not in _SHARED:
        runs = finished_runs(tmp_path_factory.mktemp("tui"))
        _SHARED["history"] = runs.__enter__()
        config.add_cleanup(lambda: runs.__exit__(None, None, None))
    return _SHARED["history"]


@pytest.fixture(scope="module")
def history(tmp_path_factory, request):
    return shared_history(tmp_path_factory, request.config)


def make_app(source, **kwargs) -> TrainuiApp:
    client = source.client() if isinstance(source, History) else source
    kwargs.setdefault("config", TuiConfig(problems=[]))
    return TrainuiApp(client, **kwargs)


def home_client(home, **kwargs) -> Client:
    return Client(home=str(home.path), environ=home.env, **kwargs)


async def until(pilot, condition, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}:\n{text(pilot.app)}")
        await pilot.pause(0.05)


async def type_path(pilot, field, path: str) -> None:
    """``path`` in the focused ``field``: all but its last name set at once (a long temporary
    path typed key by key takes seconds), the last name typed at the field's end."""
    head, name = path.rsplit("/", 1)
    field.value = head + "/"
    await pilot.press("end", *name)
    assert field.value == path


def text(app) -> str:
    """What the terminal shows, as plain text."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


async def loaded(pilot) -> None:
    await until(pilot, lambda: pilot.app.loaded and pilot.app.screen.is_mounted, what="the list")
    await pilot.pause(0.15)


# --- the run list -----------------------------------------------------------------------------


async def test_the_list_shows_every_run_newest_first_with_its_state(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        screen = text(app)
        assert "3 runs" in screen
        *rows, selection = [line for line in screen.splitlines() if "training-" in line]
        assert [r.split()[2] for r in rows] == ["stopped", "broken", "printer"]
        assert history.ids["stopped"] in selection  # the selected run's state, under the list
        assert "✗ failed" in screen and "■ halted" in screen and "✓ completed" in screen
        assert "[C201]" in screen  # the error code next to the name
        said = (await app.client.gpus()).get("message") or "No NVIDIA GPU"
        await until(pilot, lambda: said in text(app), what="the no-GPU message")


async def test_j_k_g_G_move_the_cursor_and_enter_opens_the_run(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        run_list = app.screen.run_list
        assert run_list.cursor == 0
        await pilot.press("j", "j")
        assert run_list.cursor == 2
        await pilot.press("k")
        assert run_list.cursor == 1
        await pilot.press("G")
        assert run_list.current == history.ids["printer"]
        await pilot.press("g")
        assert run_list.current == history.ids["stopped"]
        await pilot.press("j", "enter")
        await until(pilot, lambda: "C201" in text(app) and "ValueError: bad" in text(app))
        assert app.screen.model_id == history.ids["broken"]
        assert "training command exited non-zero" in text(app)  # what the code means
        assert "✗ C201: the training command exited with code 3" in text(app)  # said once
        await pilot.press("escape")
        await until(pilot, lambda: hasattr(app.screen, "run_list"))


async def test_slash_filters_and_escape_clears(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("slash", *"fail")
        await until(pilot, lambda: len(app.table.view()) == 1)
        await until(pilot, lambda: "filter 'fail': 1 of 3" in text(app))
        await pilot.press("enter")
        assert app.screen.focused is app.screen.run_list
        assert app.screen.run_list.current == history.ids["broken"]
        await pilot.press("slash", "escape")
        assert len(app.table.view()) == 3


async def test_escape_clears_an_applied_filter_once_no_run_is_marked(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        run_list = app.screen.run_list
        await pilot.press("slash", *"fail")
        await until(pilot, lambda: len(app.table.view()) == 1)
        await pilot.press("enter")  # applied: the list has the keys, the filter stays
        assert app.screen.focused is run_list and app.table.filter == "fail"
        await until(pilot, lambda: "esc Clear" in footer(app), what="escape's word")
        await pilot.press("space")  # a run marked: escape unmarks it first, as before
        assert run_list.marked == {history.ids["broken"]}
        await until(pilot, lambda: "esc Clear" not in footer(app))
        await pilot.press("escape")
        assert not run_list.marked and app.table.filter == "fail"
        await pilot.press("escape")  # none marked: the filter goes, every run shows again
        assert app.table.filter == "" and len(app.table.view()) == 3
        assert run_list.current == history.ids["broken"]  # still the one selected
        assert not app.screen.query_one("#bar").is_open
        await until(pilot, lambda: "filter" not in text(app).splitlines()[0])
        await until(pilot, lambda: "esc Clear" not in footer(app))
        await pilot.press("escape")  # nothing marked, no filter: nothing happens
        assert type(app.screen).__name__ == "RunsScreen" and len(app.table.view()) == 3


async def test_s_sorts_r_reverses_and_a_header_click_sorts(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("s")  # by state
        assert app.table.sort == "status"
        statuses = [app.table.runs[m]["status"] for m in app.table.view()]
        assert statuses == ["completed", "failed", "halted"]  # in the order of the lifecycle
        await pilot.press("s")
        assert app.table.sort == "name"
        await pilot.press("r")
        assert not app.table.reverse or app.table.sort == "name"
        names = [app.table.runs[m]["name"] for m in app.table.view()]
        assert names in (sorted(names), sorted(names, reverse=True))
        await pilot.click("RunListHeader", offset=(2, 0))  # the State column
        assert app.table.sort == "status"


async def test_colon_jumps_to_a_run_by_the_end_of_its_id(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("colon", *history.ids["printer"][-5:], "enter")
        assert app.screen.run_list.current == history.ids["printer"]


async def test_mouse_click_selects_and_double_click_opens(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.click("RunList", offset=(5, 2))
        assert app.screen.run_list.current == history.ids["printer"]
        await pilot.click("RunList", offset=(5, 2), times=2)
        await until(pilot, lambda: getattr(app.screen, "model_id", None) == history.ids["printer"])


async def test_the_list_says_where_each_run_ran_and_its_run_time_under_a_header_that_fits(
    history,
):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.cpu_mode is True  # the service has no GPU (its health says)
        *rows, _selection = [line for line in text(app).splitlines() if "training-" in line]
        assert "Where" in text(app).splitlines()[1]  # at 80 columns: where, not the size
        assert len(rows) == 3 and all(re.search(r"-\w{9} CPU ", row) for row in rows)
        assert all(re.search(r"\d(\.\d)?s\s*$", row) for row in rows)  # how long each ran
        await pilot.resize_terminal(120, 30)
        await until(pilot, lambda: "Resource" in text(app).splitlines()[1])
        assert text(app).count("small · CPU") == 3
        await pilot.press("s", "s", "s")
        assert app.table.sort == "duration"
        header = text(app).splitlines()[1]
        assert "Ran ▼" in header and "…" not in header


async def test_colon_opens_the_jump_line_whose_footer_offers_only_its_keys(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("colon")
        await until(pilot, lambda: "Jump" in text(app).splitlines()[-1], what="the jump footer")
        footer = text(app).splitlines()[-1]
        assert "Cancel" in footer and "Filter" not in footer and "Delete" not in footer
        await pilot.press("escape")
        await until(pilot, lambda: "/ Filter" in text(app).splitlines()[-1])


# --- one run and its log ----------------------------------------------------------------------


async def test_the_log_opens_at_its_end_and_searches_with_a_count(history):
    app = make_app(history, open_run=history.ids["printer"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "THE END" in text(app), what="the last line")
        log = app.screen.log_view
        assert "lines" in app.screen.query_one("#log-status").render().plain
        await pilot.press("slash", *"needle", "enter")
        await until(pilot, lambda: log.current_match is not None, what="a match")
        assert len(log.doc.matches) == 6
        status = str(app.screen.query_one("#log-status").render())
        assert "/needle" in status and "of 6" in status
        first = log.current_match
        await pilot.press("n")
        assert log.current_match == (first + 1) % 6
        await pilot.press("N", "N")
        assert log.current_match == (first - 1) % 6
        assert "needle" in text(app)


async def test_the_last_line_stays_in_view_when_the_log_pane_gets_shorter(history):
    app = make_app(history, open_run=history.ids["printer"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "THE END" in text(app) and "ModelId" in text(app))
        await pilot.press("i")  # the fields go: the pane gets taller
        await until(pilot, lambda: "ModelId" not in text(app))
        assert "THE END" in text(app)
        await pilot.press("i")  # and back: shorter; the view keeps its last line
        await until(pilot, lambda: "ModelId" in text(app))
        assert "THE END" in text(app)
        await pilot.press("k", "i")  # not following: the view keeps its top line instead
        await until(pilot, lambda: "ModelId" not in text(app))
        top = app.screen.log_view.scroll_offset.y
        await pilot.press("i")
        await until(pilot, lambda: "ModelId" in text(app))
        assert app.screen.log_view.scroll_offset.y == top


async def test_wrapping_at_the_end_keeps_the_last_line_and_only_keeps_the_current_match(history):
    app = make_app(history, open_run=history.ids["printer"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "trainui: completed" in text(app), what="the last line")
        log = app.screen.log_view
        await pilot.press("k", "j")  # at the end, not following it
        await pilot.pause(0.1)
        assert not log.following and "trainui: completed" in text(app)
        await pilot.press("w")  # the learner's long lines above it take two rows each now
        await pilot.pause(0.1)
        assert log.wrap and "trainui: completed" in text(app)
        await pilot.press("w")
        await pilot.pause(0.1)
        assert "trainui: completed" in text(app)
        await pilot.press("slash", *"needle", "enter")
        await until(pilot, lambda: log.current_match is not None, what="a match")
        await pilot.press("N")  # the one before the match the search went to
        current = log.current_match
        said = f"/needle: {current + 1} of 6"
        assert said in str(app.screen.query_one("#log-status").render())
        await pilot.press("ampersand", "enter")  # the same search, only its lines shown
        await until(pilot, lambda: log.only and "only matching lines" in text(app))
        await until(pilot, lambda: log.current_match is not None)
        assert log.current_match == current  # not the first from the top of the view
        assert said in str(app.screen.query_one("#log-status").render())


async def test_log_search_takes_a_regex_filters_lines_and_says_when_it_wraps(history):
    app = make_app(history, open_run=history.ids["printer"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "THE END" in text(app), what="the last line")
        log = app.screen.log_view

        def status() -> str:
            return str(app.screen.query_one("#log-status").render())

        def told(words: str) -> bool:
            return any(words in str(n.message) for n in app._notifications)

        await pilot.press("n")
        await until(pilot, lambda: told("No search yet"), what="n without a search, said")
        await pilot.press("f")
        await until(pilot, lambda: told("has ended"), what="f on an ended run, said")
        # as plain text, `$` is a dollar sign: no line matches
        await pilot.press("slash", *"7 loss.*needle$", "enter")
        await until(pilot, lambda: "no match" in status(), what="no plain match")
        # ctrl+r in the search line: a regular expression; lines 7, 507 … 2507 match
        await pilot.press("slash")
        await until(pilot, lambda: "plain text (ctrl+r: regex)" in status(), what="the hint")
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "regex (ctrl+r: plain text)" in status())
        await pilot.press("enter")
        await until(pilot, lambda: log.current_match is not None, what="a match")
        assert len(log.doc.matches) == 6 and log.regex
        # from the end of the log, the first match is found past the last line: said
        assert "search wrapped to the top" in status() and "(regex): 1 of 6" in status()
        # the status line counts the lines shown once the search line has closed
        top, bottom = map(int, re.search(r"lines ([\d,]+)–([\d,]+) of", status()).groups())
        assert bottom - top + 1 == log.scrollable_content_region.height
        await pilot.press("N")
        assert log.current_match == 5 and "search wrapped to the bottom" in status()
        await pilot.press("N")
        assert log.current_match == 4 and "wrapped" not in status()
        # & shows only the matching lines (the same search, regex kept); escape shows all
        await pilot.press("ampersand", "enter")
        await until(pilot, lambda: "only matching lines: 1–6 of 6" in status())
        shown = text(app)
        assert all(f"line {i} loss" in shown for i in (7, 507, 1007, 1507, 2007, 2507))
        assert "line 1006 loss" not in shown and "THE END" not in shown
        await pilot.press("escape")
        await until(pilot, lambda: not log.only and "lines" in status())
        assert type(app.screen).__name__ == "RunScreen"  # escape left the filter only
        # the search line remembers the regex; one that does not compile keeps it open
        await pilot.press("slash", "ctrl+u", *"loss (", "enter")
        await until(pilot, lambda: told("not a regular expression"))
        assert app.screen.query_one("BarInput").is_open and len(log.doc.matches) == 6


async def test_w_wraps_long_lines_and_the_end_stays_in_reach():
    """The log pane alone, over a log with a long line (a client that serves fixed bytes)."""
    from textual.app import App

    from trainui.tui.widgets.log_view import LogView

    data = b"short\n" + b"x" * 200 + b"\n" + b"".join(b"line %d\n" % i for i in range(30))

    class Bytes:
        async def read_log(self, model_id, offset=0, limit=None):
            start = max(0, len(data) + offset) if offset < 0 else offset
            end = len(data) if limit is None else start + limit
            return data[start:end], len(data), start

        async def follow_log(self, model_id, offset=0):  # the run has ended: nothing more
            return
            yield

    class LogApp(App):
        def __init__(self):
            super().__init__()
            self.first_view = asyncio.Event()

        def take_prefetched_log(self, model_id):
            return None

        def compose(self):
            yield LogView(Bytes(), "training-000000001", follow=False)

    app = LogApp()
    async with app.run_test(size=(80, 12)) as pilot:
        log = app.query_one(LogView)
        await until(pilot, lambda: log.doc is not None and "line 29" in text(app))
        log.focus()
        await pilot.press("g")
        await until(pilot, lambda: "short" in text(app))
        assert text(app).count("x" * 79) == 1  # cut at the pane's edge
        await pilot.press("w")
        assert log.wrap
        await until(pilot, lambda: text(app).count("x" * 79) == 2)  # 79 + 79 + 42
        assert "x" * 42 + " " in text(app) and "line 0" in text(app)
        assert "lines 1–" in log.status_text() and "wrapped (w)" in log.status_text()
        await pilot.press("right")
        assert log.scroll_offset.x == 0  # wrapped lines do not scroll sideways
        await pilot.press("G")
        await until(pilot, lambda: "line 29" in text(app))
        await pilot.press("w")
        assert not log.wrap


def test_a_log_range_and_the_runs_are_read_through_the_client(history):
    """A log's byte range from the end, and the runs, as the TUI reads them at start."""
    model_id = history.ids["printer"]
    probe = (
        "import asyncio, json, sys\nfrom trainui.client import Client\n"
        "async def main():\n"
        "    async with Client() as client:\n"
        f"        data, size, start = await client.read_log({model_id!r}, -20, 9)\n"
        "        runs, count = await client.list_runs()\n"
        "        print(json.dumps([data.decode(), size, start, count]))\n"
        "asyncio.run(main())"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=history.env, timeout=60, check=True)  # fmt: skip
    data, size, start, count = json.loads(out.stdout)
    log = (history.path / "runs" / model_id / "training-log.txt").read_bytes()
    assert (size, start, count) == (len(log), len(log) - 20, 3)
    assert data.encode() == log[-20:-11]


def test_show_says_where_a_run_ran_and_logs_from_the_end_start_at_a_line(history):
    model_id = history.ids["printer"]
    shown = history.cli("show", model_id).stdout
    assert re.search(r"^Resource\s+small · CPU$", shown, re.M), shown
    log = (history.path / "runs" / model_id / "training-log.txt").read_bytes()
    for follow in ((), ("--follow",)):
        out = history.cli("logs", model_id, "--offset", "-100", *follow).stdout.encode()
        assert 0 < len(out) < 100 and log.endswith(out)
        assert log[-len(out) - 1 : -len(out)] == b"\n"  # a whole line first
    whole = history.cli("logs", model_id, "--offset", str(-10 * len(log))).stdout.encode()
    assert whole == log  # more than the log asked: all of it


async def test_g_goes_to_the_first_line_and_G_back_to_the_last(history):
    app = make_app(history, open_run=history.ids["printer"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "THE END" in text(app))
        await pilot.press("g")
        await until(pilot, lambda: "line 0 loss" in text(app), what="the first line")
        assert app.screen.log_view.doc.complete
        await pilot.press("G")
        await until(pilot, lambda: "THE END" in text(app))
        await pilot.press("k", "pageup", "home")
        await until(pilot, lambda: "line 0 loss" in text(app))
        await pilot.press("end")
        await until(pilot, lambda: "THE END" in text(app))


async def test_i_hides_the_fields_and_the_run_shows_every_field_of_show(history):
    app = make_app(history, open_run=history.ids["broken"])
    async with app.run_test(size=(100, 40)) as pilot:
        await until(pilot, lambda: "ValueError" in text(app) and "ModelId" in text(app))
        screen = text(app)
        for label in ("ModelId", "State", "Name", "Owner", "Framework", "Resource",
                      "Submitted at", "GPUs", "Started at", "Finished at", "Exit code",
                      "Error code", "Description", "Data", "Results", "url"):  # fmt: skip
            assert label in screen, label
        assert "C201" in screen and "Exit code    3" in screen
        await pilot.press("i")
        await pilot.pause(0.1)
        assert "ModelId" not in text(app)
        await pilot.press("i")
        await pilot.pause(0.1)
        assert "ModelId" in text(app)


async def test_at_80x24_tab_reaches_the_fields_that_do_not_fit(history):
    app = make_app(history, open_run=history.ids["broken"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "ValueError" in text(app) and "ModelId" in text(app))
        screen = app.screen
        details = screen.query_one("#details")
        assert details.max_scroll_y > 0, "the fields fit: nothing to show here"
        assert "url" not in text(app)  # the last field, below the pane's end
        await pilot.press("tab")  # to the fields: the arrows scroll them
        assert details.has_focus
        await pilot.press(*["down"] * details.max_scroll_y)
        await until(pilot, lambda: "url" in text(app), what="the last field")
        assert "ModelId" not in text(app)  # scrolled, not grown over the log
        await pilot.press("escape")  # back to the log first, not out of the run
        assert screen.log_view.has_focus and app.screen is screen
        await pilot.press("tab", "i")  # the fields hidden: the log has the keys again
        await pilot.pause(0.1)
        assert screen.log_view.has_focus and "url" not in text(app)
        await pilot.press("tab")  # shows them again, to be scrolled
        assert details.has_focus and details.display
        await pilot.press("tab")
        assert screen.log_view.has_focus


async def test_help_lists_every_key_and_the_palette_every_action(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: "HelpScreen" in type(app.screen).__name__)
        from trainui.tui.keymap import ACTIONS
        from trainui.tui.screens.help import keys_table

        assert "Run list" in text(app) and "runs.delete" in text(app)
        rendered = "\n".join(
            "".join(s.text for s in line) for line in app.console.render_lines(keys_table(app))
        )
        for action in ACTIONS.values():
            assert action.id in rendered, action.id
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"delete")
        await until(pilot, lambda: "Delete the selected run" in text(app))
        await pilot.press("escape")


async def test_readonly_hides_every_action_that_changes_a_run(history):
    app = make_app(history, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        footer = text(app).splitlines()[-1]
        assert "Open" in footer and "Delete" not in footer and "New" not in footer
        await pilot.press("d", "n", "h", "c")
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "RunsScreen"
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "RunScreen")
        assert "Delete" not in text(app).splitlines()[-1]


async def test_keys_are_remapped_by_binding_id_from_the_config_file(history, tmp_path):
    path = tmp_path / "tui.toml"
    path.write_text('theme = "ansi"\n[keymap]\n"runs.sort" = "o"\n"list.down" = "ctrl+n"\n')
    config = load_config({"TRAINUI_TUI_CONFIG": str(path)})
    app = make_app(history, config=config)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.theme == "ansi"
        await pilot.press("o")
        assert app.table.sort == "status"
        await pilot.press("g", "ctrl+n")
        assert app.screen.run_list.cursor == 1
        await pilot.press("g")  # sorted by state: a completed run first, which R does not
        await pilot.pause(0.1)  # take (a run that may resume has R in the footer: less room)
        assert app.table.get(app.screen.run_list.current)["status"] == "completed"
        assert "o Sort" in text(app).splitlines()[-1]


async def test_an_unknown_theme_is_said_and_the_default_kept(history):
    app = make_app(history, theme="no-such-theme")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.theme == "trainui"
        assert any("no theme 'no-such-theme'" in str(n.message) for n in app._notifications)


async def test_enter_on_the_delete_question_cancels(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("d")
        await until(pilot, lambda: "ConfirmScreen" in type(app.screen).__name__)
        assert "Delete training-" in text(app)
        await pilot.press("enter")  # Cancel has the focus
        await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
        await pilot.press("d", "escape")
        await pilot.pause(0.2)
        assert len(app.table) == 3
        assert history.cli("show", history.ids["stopped"]).returncode == 0


# --- the manifest editor ----------------------------------------------------------------------


async def test_the_editor_checks_as_you_type_and_jumps_to_a_problem(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("n")
        await until(pilot, lambda: type(app.screen).__name__ == "EditorScreen")
        editor = app.screen
        await until(pilot, lambda: "✓ valid" in text(app), what="the template is valid")
        area = editor.area
        area.move_cursor((8, 14))  # resource: small
        await pilot.press("delete", *"x")
        await until(pilot, lambda: "not valid" in text(app), what="the problem")
        problem = editor.problems[0]
        assert problem.path.endswith("resource") and "is not one of" in problem.message
        assert area.problem_lines == {problem.line - 1: "error"}
        assert "✗" in text(app)
        area.move_cursor((0, 0))
        await pilot.press("f8")
        assert area.cursor_location[0] == problem.line - 1
        area.move_cursor((0, 0))
        editor.query_one("#problems").focus()
        await pilot.press("enter")  # the problem, chosen from the list
        assert area.cursor_location == (problem.line - 1, problem.column - 1)
        assert area.has_focus
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "EditorScreen"  # not submitted with errors
        await pilot.press("ctrl+z", "ctrl+z")
        await until(pilot, lambda: "✓ valid" in text(app))
        await pilot.press("delete")  # changed again: closing asks
        await pilot.press("escape", "escape")  # leave the text, then the editor: asks first
        await until(pilot, lambda: "ConfirmScreen" in type(app.screen).__name__)
        await pilot.press("y")
        await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")


async def test_the_editor_asks_before_closing_only_when_the_text_differs_from_the_opened(
    history,
):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        editor = await editor_open(pilot)
        area = editor.area
        opened = area.text
        area.move_cursor((1, 2))
        await pilot.press(*"abc")  # (each change checked: the problems list comes and goes)
        await until(pilot, lambda: "not valid" in text(app), what="the change checked")
        await pilot.press("escape", "escape")  # changed: asks
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is editor)
        area.focus()
        await pilot.press("ctrl+z", "ctrl+z", "ctrl+z")  # undone, back to the text opened
        assert area.text == opened
        await until(pilot, lambda: "✓ valid" in text(app), what="the undone text checked")
        await pilot.press("escape", "escape")  # closes at once
        await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen", timeout=5)

        editor = await editor_open(pilot)  # typed, then erased by hand: the same
        editor.area.move_cursor((1, 2))
        await pilot.press(*"xy")
        await until(pilot, lambda: "not valid" in text(app), what="the change checked")
        await pilot.press("backspace", "backspace")
        await until(pilot, lambda: "✓ valid" in text(app), what="the erased text checked")
        await pilot.press("escape", "escape")
        await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen", timeout=5)


async def test_the_editor_marks_an_unsupported_framework_and_completes_it(tmp_path):
    h = History(tmp_path / "home")
    catalogue = tmp_path / "frameworks.toml"
    catalogue.write_text(
        '[[framework]]\nname = "pytorch"\nversions = ["2.4", "2.5"]\nruntime = "host"\n'
    )
    h.env["TRAINUI_FRAMEWORKS"] = str(catalogue)
    (h.path / "buckets" / "data").mkdir(parents=True)
    try:
        app = make_app(h)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press("n")
            await until(pilot, lambda: type(app.screen).__name__ == "EditorScreen")
            editor = app.screen
            await until(pilot, lambda: editor.frameworks is not None, what="the catalogue")
            # the template's framework is not in this catalogue: C104, as the service would say
            await until(pilot, lambda: "not valid" in text(app), what="the C104 mark")
            (problem,) = editor.problems
            assert problem.path == "model_definition.framework"
            assert (
                "C104 framework" in problem.message
                and "Supported: pytorch 2.4, 2.5" in problem.message
            )
            assert "ctrl+space: framework" in text(app)
            editor._go_to(problem)  # on the name: ctrl+space completes it from the catalogue
            await pilot.press("ctrl+space")
            await until(pilot, lambda: "name: pytorch" in editor.area.text)
            line = editor.area.text.split("\n")[problem.line - 1]
            if "version" in line:  # flow style: the version is on the same line
                editor.area.move_cursor((problem.line - 1, line.index("version") + 10))
            else:
                editor.area.move_cursor(
                    (problem.line, len(editor.area.document.get_line(problem.line)))
                )
            await pilot.press("ctrl+space")
            await until(pilot, lambda: '"2.4"' in editor.area.text or '"2.5"' in editor.area.text)
            await until(pilot, lambda: "✓ valid" in text(app), what="valid once completed")
    finally:
        h.stop()


async def rings(h: History, model: Path, how: str) -> int:
    """The bells the TUI rang (tui.toml's ``notify = how``) while a run it shows ran to its end."""
    app = make_app(h, config=TuiConfig(problems=[], notify=how))
    rung: list[str] = []
    app.bell = lambda: rung.append("bell")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        model_id = h.submit(f"ring-{how}", "sleep 1; echo done", model)
        await until(pilot, lambda: app.table.get(model_id) is not None, what="the run")
        await until(
            pilot,
            lambda: (app.table.get(model_id) or {}).get("status") == "completed",
            what="the run's end",
        )
        await pilot.pause(0.2)
    return len(rung)


async def test_the_terminal_rings_when_a_run_shown_ends_if_asked(tmp_path):
    h = History(tmp_path / "home")
    (h.path / "buckets" / "data").mkdir(parents=True)
    model = write_model(tmp_path / "model")
    try:
        assert await rings(h, model, "bell") == 1
        assert await rings(h, model, "off") == 0
    finally:
        h.stop()


async def test_templates_and_the_external_editor(history, tmp_path, monkeypatch):
    script = tmp_path / "fake-editor.sh"
    script.write_text("#!/bin/sh\nsed -i 's/demo-classifier/edited-elsewhere/' \"$1\"\n")
    script.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(script))
    monkeypatch.delenv("VISUAL", raising=False)
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("n")
        await until(pilot, lambda: type(app.screen).__name__ == "EditorScreen")
        editor = app.screen
        await pilot.press("ctrl+t")
        await until(pilot, lambda: "TemplatePicker" in type(app.screen).__name__)
        await pilot.press("end", "enter")  # the demo run
        await until(pilot, lambda: app.screen is editor)
        assert "demo-classifier" in editor.area.text
        assert editor.definition.value.endswith("demo/model")
        await pilot.press("ctrl+e")  # TextArea's end of line, not $EDITOR
        first_line = editor.area.document.get_line(0)
        await until(pilot, lambda: editor.area.cursor_location == (0, len(first_line)))
        assert "demo-classifier" in editor.area.text
        await pilot.press("ctrl+g")
        await until(pilot, lambda: "edited-elsewhere" in editor.area.text)


async def test_the_definition_field_completes_paths_and_the_tree_picks_one(history, tmp_path):
    (tmp_path / "my-model").mkdir()
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("n")
        await until(pilot, lambda: type(app.screen).__name__ == "EditorScreen")
        field = app.screen.definition
        field.focus()
        field.value = str(tmp_path / "my-m")
        await until(pilot, lambda: field._suggestion.endswith("my-model/"))
        await pilot.press("tab")
        assert field.value == str(tmp_path / "my-model") + "/"
        await pilot.press("ctrl+o")
        await until(pilot, lambda: "DefinitionPicker" in type(app.screen).__name__)
        await pilot.press("u")  # the folder under the cursor: the one in the field
        await until(pilot, lambda: type(app.screen).__name__ == "EditorScreen")
        assert field.value == str(tmp_path / "my-model")


async def editor_open(pilot) -> object:
    """The run list loaded, `n` pressed: the editor, its template checked (valid)."""
    app = pilot.app
    await loaded(pilot)
    await pilot.press("n")
    await until(pilot, lambda: type(app.screen).__name__ == "EditorScreen")
    await until(pilot, lambda: "✓ valid" in text(app), what="the template checked")
    return app.screen


def footer(app) -> str:
    return text(app).splitlines()[-1]


def row_of(app, label: str) -> str:
    return next(line for line in text(app).splitlines() if line.startswith(f" {label}"))


async def test_the_model_field_shows_its_path_and_cursor_while_focused(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        editor = await editor_open(pilot)
        field = editor.definition
        field.value = "examples/demo/model"
        assert editor.area.has_focus and "esc Leave text" in footer(app)
        await pilot.press("escape")  # out of the text: to the model field (no problems listed)
        assert field.has_focus
        assert field.region.height == 1  # no border: the path on the field's one line
        assert row_of(app, "Model definition").split()[2] == "examples/demo/model"
        assert "▔" not in text(app)
        assert field.selection.is_empty and field.cursor_position == len(field.value)
        assert "esc Close" in footer(app)
        await pilot.press(*"-v2")  # the first keys add to the path, in view
        assert field.value == "examples/demo/model-v2"
        await until(pilot, lambda: "examples/demo/model-v2" in row_of(app, "Model definition"))
        await pilot.press("shift+tab")  # back to the text...
        assert editor.area.has_focus
        await pilot.press("shift+tab")  # ...and backwards into the field again: the same
        assert field.has_focus and field.selection.is_empty
        assert field.cursor_position == len(field.value)

        field.value = ""  # ctrl+s without a model definition: to the field, its text in view
        editor.area.focus()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: field.has_focus, what="the field")
        assert "a folder or .zip" in row_of(app, "Model definition")
        await pilot.press(*"my-model")
        await until(pilot, lambda: "my-model" in row_of(app, "Model definition"))
        await pilot.press("escape")  # the second escape: the editor closes (unchanged text)
        await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")


async def test_editor_keys_go_to_the_ends_select_all_and_keep_ctrl_e(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        editor = await editor_open(pilot)
        area = editor.area
        area.move_cursor((3, 2))
        await pilot.press("ctrl+end")
        assert area.cursor_location == area.document.end
        await pilot.press("ctrl+home")
        assert area.cursor_location == (0, 0)
        await pilot.press("ctrl+shift+end")
        assert area.selected_text == area.text
        await pilot.press("ctrl+e")  # end of the line, as in Textual's TextArea
        assert area.cursor_location == area.document.end
        area.move_cursor((1, 0))
        await pilot.press("ctrl+e")
        assert area.cursor_location == (1, len(area.document.get_line(1)))
        await pilot.press("ctrl+a")
        assert area.selected_text == area.text
        await pilot.press("ctrl+shift+home")
        assert area.selection.end == (0, 0)
        await pilot.press("home", *"# ")  # home still goes to the start of the line
        assert area.document.get_line(0).startswith("# model_definition")


async def test_ctrl_f_finds_enter_f3_and_ctrl_r_go_on_escape_closes(history):
    import re

    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        editor = await editor_open(pilot)
        area = editor.area
        doc = area.document
        found = [
            (doc.get_location_from_index(m.start()), doc.get_location_from_index(m.end()))
            for m in re.finditer("local", area.text, re.IGNORECASE)
        ]
        assert len(found) >= 3

        def selected() -> int:
            return found.index((area.selection.start, area.selection.end))

        def count() -> str:
            return str(editor.query_one("#find-count").render())

        area.move_cursor(found[0][1])  # after the first: typing finds the second
        await pilot.press("ctrl+f")
        assert editor.find_bar.has_focus and editor.query_one("#find-row").display
        await pilot.press(*"LOCA")  # a capital: case-sensitive, nothing
        assert count() == "no match"
        await pilot.press(*["backspace"] * 4, *"local")
        assert selected() == 1 and count() == f"2 of {len(found)}"
        assert "Find local" in text(app) and "esc Close find" in footer(app)
        await pilot.press("enter")
        assert selected() == 2
        await pilot.press("ctrl+r")
        assert selected() == 1
        await pilot.press("ctrl+r", "ctrl+r")  # before the first: the last, and said
        assert selected() == len(found) - 1 and count().endswith("(wrapped)")
        await pilot.press("f3")
        assert selected() == 0 and count() == f"1 of {len(found)} (wrapped)"
        await pilot.press("escape")  # closes the bar; the match stays selected in the text
        assert not editor.query_one("#find-row").display
        assert area.has_focus and selected() == 0
        await pilot.press("f3")  # from the text: the next match of the same words
        assert selected() == 1
        await pilot.press("ctrl+f")  # again: the selection is the query, all of it chosen
        assert editor.find_bar.value == "local" and editor.find_bar.selected_text == "local"
        await pilot.press(*"nowhere-in-it")
        assert count() == "no match"
        await pilot.press("escape")
        assert area.has_focus and type(app.screen).__name__ == "EditorScreen"


async def test_the_model_picker_goes_up_and_to_a_typed_folder(history, tmp_path):
    low = tmp_path / "top" / "mid" / "low"
    low.mkdir(parents=True)
    (tmp_path / "top" / "model.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    app = make_app(history)
    async with app.run_test(size=(100, 30)) as pilot:
        editor = await editor_open(pilot)
        editor.definition.value = str(low)
        await pilot.press("ctrl+o")
        await until(pilot, lambda: "DefinitionPicker" in type(app.screen).__name__)
        picker = app.screen
        tree = picker.tree

        def root() -> Path:
            return Path(tree.root.data.path)

        def cursor() -> str:
            node = tree.cursor_node
            return node.data.path.name if node is not None and node.data else ""

        assert root() == low
        await until(pilot, lambda: [c.label.plain for c in tree.root.children] == [".."])
        await pilot.press("backspace")  # up: the parent, the cursor on where we were
        await until(pilot, lambda: root() == low.parent and cursor() == "low")
        assert picker.query_one("#folder").value == str(low.parent)
        await pilot.press("up")  # the first entry: ..
        assert cursor() == ".."
        await pilot.press("enter")
        await until(pilot, lambda: root() == tmp_path / "top" and cursor() == "mid")
        labels = [c.label.plain for c in tree.root.children]
        assert labels == ["..", "mid", "model.zip"]

        field = picker.query_one("#folder")
        field.focus()  # a folder typed in the field: the new root
        await type_path(pilot, field, str(low))
        await pilot.press("enter")
        await until(pilot, lambda: root() == low and tree.has_focus)
        field.focus()  # a .zip typed there: picked
        await type_path(pilot, field, str(tmp_path / "top" / "model.zip"))
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is editor)
        assert editor.definition.value == str(tmp_path / "top" / "model.zip")

        await pilot.press("ctrl+o")  # opens where the field's path is; u takes a folder
        await until(pilot, lambda: "DefinitionPicker" in type(app.screen).__name__)
        picker = app.screen
        await until(pilot, lambda: Path(picker.tree.root.data.path) == tmp_path / "top")
        await until(pilot, lambda: len(picker.tree.root.children) == 3)
        await pilot.press("down", "down", "u")  # .., mid
        await until(pilot, lambda: app.screen is editor)
        assert editor.definition.value == str(tmp_path / "top" / "mid")


# --- changing runs (a home of their own) ------------------------------------------------------


async def test_n_writes_a_manifest_and_ctrl_s_submits_it(home, tmp_path):
    model = write_model(tmp_path / "model")
    home.bucket("data")
    app = make_app(home_client(home))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded, what="the list")
        await pilot.press("n")
        await until(pilot, lambda: type(app.screen).__name__ == "EditorScreen")
        editor = app.screen
        editor.area.text = manifest_text("from-the-editor", "python3 lines.py 20")
        archive = tmp_path / "x.tgz"
        archive.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 100)
        editor.definition.value = str(archive)  # refused, named as the user named it
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "not submitted: x.tgz is a gzip archive" in text(app))
        editor.definition.value = str(model)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: type(app.screen).__name__ == "RunScreen", what="the new run")
        model_id = app.screen.model_id
        await until(pilot, lambda: "THE END" in text(app), what="its log to the end")
        await until(pilot, lambda: (app.table.get(model_id) or {}).get("status") == "completed")
        # a manifest with experiment: submits an experiment, whose screen opens (it was a
        # crash: the answer names an experiment, not a run)
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
        await pilot.press("n")
        await until(pilot, lambda: type(app.screen).__name__ == "EditorScreen")
        app.screen.area.text = manifest_text("sweep", "python3 lines.py $N") + (
            "experiment:\n  method: grid\n  parameters: {N: [1, 2]}\n"
        )
        app.screen.definition.value = str(model)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: type(app.screen).__name__ == "ExperimentScreen")
        experiment_id = app.screen.experiment_id
        await until(pilot, lambda: "2 runs" in text(app), what="its runs")
    assert home.show(model_id)["name"] == "from-the-editor"
    e = json.loads(home.cli("show", "experiment", experiment_id, "--json", check=True).stdout)
    assert e["count"] == 2 and e["name"] == "sweep"


async def test_c_clones_a_run_and_resubmits_it_with_its_model_definition(
    home, tmp_path, monkeypatch
):
    model = write_model(tmp_path / "model")
    first = home.submit(model, home.manifest("python3 lines.py 5", name="original"))
    home.wait(first, "completed")
    # `x` downloads a run's results into ./ID: the clone's run:ID is still the run's own
    # model definition, not that folder
    monkeypatch.chdir(tmp_path)
    decoy = tmp_path / first
    decoy.mkdir()
    (decoy / "lines.py").write_text("print('DECOY')\n")
    app = make_app(home_client(home))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and len(app.table) == 1)
        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "EditorScreen")
        assert "name: original" in app.screen.area.text
        assert app.screen.definition.value == f"run:{first}"
        await until(pilot, lambda: "✓ valid" in text(app))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: getattr(app.screen, "model_id", first) != first)
        second = app.screen.model_id
        await until(pilot, lambda: (app.table.get(second) or {}).get("status") == "completed")
    assert home.show(second)["name"] == "original"
    assert "DECOY" not in home.cli("logs", second, check=True).stdout


async def test_h_halts_a_running_run_after_asking(home, tmp_path):
    model = write_model(tmp_path / "model")
    model_id = home.submit(model, home.manifest("sleep 30", name="sleeper"))
    home.wait(model_id, "running")
    app = make_app(home_client(home))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and len(app.table) == 1)
        await until(pilot, lambda: "h Halt" in text(app), what="halt in the footer")
        await pilot.press("h")
        await until(pilot, lambda: "ConfirmScreen" in type(app.screen).__name__)
        await pilot.press("tab", "enter")  # from Cancel to Halt
        await until(pilot, lambda: app.table.get(model_id)["status"] == "halted", timeout=20)
        await until(pilot, lambda: "■ halted" in text(app))
        await until(pilot, lambda: "h Halt" not in text(app), what="no halt for an ended run")
        # a halted run may resume: R is offered, in the list and in its screen, and does it
        await until(pilot, lambda: "R Resume" in text(app), what="resume in the footer")
        await pilot.press("enter")
        await until(pilot, lambda: "R Resume" in text(app) and "sleeper" in text(app))
        await pilot.press("R")
        await until(pilot, lambda: app.table.get(model_id)["status"] != "halted", timeout=20)
        await until(pilot, lambda: "R Resume" not in text(app), what="no resume once it runs")
    home.cli("halt", model_id, check=True)


async def test_r_is_offered_only_for_a_run_that_may_resume_and_says_why_not(history):
    app = make_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and len(app.table) > 0)
        await pilot.pause(0.1)
        seen = set()
        for _ in range(len(app.table)):
            status = app.table.get(app.screen.run_list.current)["status"]
            await until(
                pilot, lambda s=status: ("R Resume" in text(app)) == (s in ("halted", "failed"))
            )
            seen.add(status)
            if status not in ("halted", "failed"):
                break
            await pilot.press("j")
        assert status not in ("halted", "failed") and seen & {"halted", "failed"}, seen
        await pilot.press("R")
        said = "Only a halted or failed run resumes; this one is completed."
        await until(pilot, lambda: any(str(n.message) == said for n in app._notifications))


async def test_a_waiting_run_says_why_and_moving_data_shows_a_progress_bar(home, tmp_path):
    model = write_model(tmp_path / "model")
    first = home.submit(model, home.manifest("sleep 600", name="first"))
    home.wait(first, "running")
    waiting = home.submit(model, home.manifest("true", name="second"))
    app = make_app(home_client(home), open_run=waiting)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "◌ waiting for a CPU slot" in text(app), what="the reason")
        assert "◌ pending" in text(app).splitlines()[0]
        screen = app.screen
        await until(pilot, lambda: not any(w.is_running for w in screen.workers if w.group ==
                                           "run-refresh"))  # fmt: skip
        app.workers.cancel_group(app, "events")  # what a run shows while its data moves:

        def show(run: dict) -> None:  # in the app's table too: a redraw of the list that was
            app.table.upsert(run)  # read before the events stopped shows the same
            screen.show_run(run)

        show(
            dict(screen.run_data, status="downloading",
                 progress={"phase": "downloading", "bytes_done": 3 << 20,
                           "bytes_total": 12 << 20, "objects_done": 2, "objects_total": 8})
        )  # fmt: skip
        await until(pilot, lambda: "↓ 2/8 objects, 3.0 MiB of 12.0 MiB" in text(app), what="label")
        await until(pilot, lambda: "25%" in text(app), what="the bar")  # its percentage
        show(dict(screen.run_data, status="running", progress={}))
        await pilot.pause(0.1)
        assert "objects" not in text(app)
    home.cli("halt", first)


async def test_d_deletes_a_run_after_asking(home, tmp_path):
    model = write_model(tmp_path / "model")
    model_id = home.submit(model, home.manifest("true", name="doomed"))
    home.wait(model_id, "completed")
    app = make_app(home_client(home))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and len(app.table) == 1)
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "RunScreen")
        await pilot.press("d")
        await until(pilot, lambda: "ConfirmScreen" in type(app.screen).__name__)
        await pilot.press("y")
        await until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
        await until(pilot, lambda: len(app.table) == 0)
        assert "No runs yet" in text(app)
    assert home.cli("show", model_id).returncode != 0


async def test_a_run_deleted_from_another_terminal_says_so_on_its_open_screen(home, tmp_path):
    model = write_model(tmp_path / "model")
    model_id = home.submit(model, home.manifest("sleep 600", name="doomed"))
    home.wait(model_id, "running")
    app = make_app(home_client(home), open_run=model_id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "Halt" in text(app), what="the running run's screen")
        assert home.cli("delete", model_id).returncode == 0  # another terminal
        await until(pilot, lambda: "deleted from the history" in text(app), what="said")
        await pilot.pause(0.2)
        shown = text(app)
        assert "✕ deleted" in shown and "● running" not in shown
        assert "Halt" not in shown and "Delete" not in shown  # nothing to change any more
        duration = next(line for line in shown.splitlines() if "Duration" in line)
        await pilot.pause(1.2)  # its time stopped where it was deleted
        assert duration in text(app)


async def test_the_list_says_why_a_run_waits_and_h_halts_the_marked_runs(home, tmp_path):
    model = write_model(tmp_path / "model")
    first = home.submit(model, home.manifest("sleep 600", name="first"))
    home.wait(first, "running")
    waiting = home.submit(model, home.manifest("true", name="second"))
    app = make_app(home_client(home))
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.loaded and len(app.table) == 2)

        def row(model_id: str) -> str:
            return next(line for line in text(app).splitlines() if f"{model_id} small" in line)

        await until(pilot, lambda: "waiting for a CPU slot" in row(waiting), what="the reason")
        assert "◌ pending" in row(waiting) and "small · CPU" in row(waiting)
        assert re.search(r"wait \d+s\s*$", row(waiting))  # how long it has waited, said so
        assert "small · CPU" in row(first) and "wait" not in row(first)
        selection = next(line for line in text(app).splitlines() if f"◌ {waiting}  " in line)
        assert "waiting for a CPU slot" in selection  # the selected run's reason, in full
        await pilot.press("space", "space")  # each marks a run and moves on to the next
        assert app.screen.run_list.marked == {first, waiting}
        await until(pilot, lambda: "2 marked" in text(app) and "*◌ pending" in text(app))
        await pilot.press("h")
        await until(pilot, lambda: "ConfirmScreen" in type(app.screen).__name__)
        assert "Halt 2 runs?" in text(app)
        await pilot.press("y")
        await until(
            pilot,
            lambda: {app.table.get(m)["status"] for m in (first, waiting)} == {"halted"},
            timeout=20,
            what="both halted",
        )
        assert not app.screen.run_list.marked


async def test_space_marks_runs_and_d_deletes_the_marked_ones_at_once(home, tmp_path):
    model = write_model(tmp_path / "model")
    ids = [
        home.submit(model, home.manifest(f"python3 lines.py {n}", name=f"r{n}")) for n in (1, 2, 3)
    ]
    for model_id in ids:
        home.wait(model_id, "completed")
    app = make_app(home_client(home))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and len(app.table) == 3)
        run_list = app.screen.run_list
        await pilot.press("asterisk")  # every run shown; again: none; escape: none either
        assert run_list.marked == set(ids)
        await pilot.press("asterisk")
        assert not run_list.marked
        await pilot.press("asterisk", "escape")
        assert not run_list.marked
        await pilot.press("space", "space")  # the two newest
        await until(pilot, lambda: "2 marked" in text(app))
        await pilot.press("d")
        await until(pilot, lambda: "ConfirmScreen" in type(app.screen).__name__)
        assert "Delete 2 runs from the history?" in text(app)
        await pilot.press("y")
        await until(pilot, lambda: len(app.table) == 1, what="two deleted")
        assert list(app.table.runs) == [ids[0]] and "2 marked" not in text(app)
    assert home.cli("show", ids[2]).returncode != 0 and home.cli("show", ids[0]).returncode == 0


async def test_the_log_follows_a_running_run_and_f_pauses_it(home, tmp_path):
    model = write_model(tmp_path / "model")
    # the run prints lines until the test makes a file in its RESULT_DIR (the sandbox hides
    # the rest of what the test could write)
    command = (
        "echo results in $RESULT_DIR; i=0;"
        " until [ -e $RESULT_DIR/stop ]; do i=$((i+1)); echo line $i loss 0.1; sleep 0.02; done;"
        " echo THE END"
    )
    model_id = home.submit(model, home.manifest(command, name="slow"))
    home.wait(model_id, "running")
    deadline = time.monotonic() + 30
    while not (said := re.search(r"^results in (/.+)$", home.cli("logs", model_id).stdout, re.M)):
        assert time.monotonic() < deadline, "the run never said where its results go"
    stop = Path(said[1]) / "stop"
    app = make_app(home_client(home), open_run=model_id)
    async with app.run_test(size=SIZE) as pilot:
        log = app.screen.log_view
        await until(
            pilot,
            lambda: "following" in text(app) and log.doc and log.doc.count > 2 * SIZE[1],
            what="more lines than the screen holds",
        )
        assert log.following and log.streaming
        await pilot.press("f")
        assert not log.following
        frozen, count = log.scroll_offset.y, log.doc.count
        await until(pilot, lambda: log.doc.count > count + SIZE[1], what="more lines, paused")
        assert log.scroll_offset.y == frozen
        await pilot.press("G")  # the end, following again
        assert log.following
        stop.touch()
        await until(pilot, lambda: "THE END" in text(app), timeout=40, what="the end of the run")
        await until(pilot, lambda: "completed" in text(app).splitlines()[0])


async def test_a_run_submitted_elsewhere_appears_and_changes_live(home, tmp_path):
    model = write_model(tmp_path / "model")
    app = make_app(home_client(home))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded)
        await until(pilot, lambda: "No runs yet" in text(app), what="the empty list")
        model_id = home.submit(model, home.manifest("python3 lines.py 3 0.3", name="elsewhere"))
        await until(pilot, lambda: model_id in text(app), what="the new run")
        await until(pilot, lambda: "✓ completed" in text(app), what="its completion")
        assert app.events_seen >= 2


async def test_a_lost_service_shows_a_banner_and_the_app_reconnects(home, tmp_path):
    model = write_model(tmp_path / "model")
    model_id = home.submit(model, home.manifest("true", name="survivor"))
    home.wait(model_id, "completed")
    app = make_app(home_client(home, autostart=False))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and len(app.table) == 1)
        home.stop()  # the service dies
        await until(pilot, lambda: "⚠" in text(app), what="the banner")
        assert "Reconnecting" in text(app)
        assert model_id in text(app)  # what was on screen stays
        home.cli("list")  # a service again (the CLI starts one)
        await until(pilot, lambda: "⚠" not in text(app), timeout=20, what="the reconnection")
        assert model_id in text(app)


async def test_the_gpu_pane_shows_each_gpu_and_the_run_holding_it():
    """Fixed readings in the shape of ``GET /v3/gpus`` (this machine has no GPU)."""
    from textual.app import App

    from trainui.tui.widgets.gpu_pane import GpuPane

    class PaneApp(App):
        def compose(self):
            yield GpuPane()

    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(GpuPane)
        pane.seed_history(GPU_HISTORY, GPU_READINGS)
        pane.show_readings(GPU_READINGS)
        await pilot.pause()
        screen = text(app)
        assert "driver 550.54.15" in screen and "1 of 2 in use" in screen
        gpu0 = next(line for line in screen.splitlines() if "GPU0" in line)
        gpu1 = next(line for line in screen.splitlines() if "GPU1" in line)
        assert "83%" in gpu0 and "training-AbCdEfGh1" in gpu0 and "61°C" in gpu0
        assert "█" in gpu0 and any(c in gpu0 for c in "▁▂▃▄▅▆▇")  # a bar, a sparkline
        assert "0%" in gpu1 and "free" in gpu1
        pane.show_stale()
        await pilot.pause()
        assert "not updated" in text(app)


GPU_READINGS = {
    "state": "ok", "message": "", "driver_version": "550.54.15",
    "taken_at": "2026-11-27T05:00:00.000Z",
    "gpus": [
        {"index": 0, "uuid": "GPU-0", "name": "NVIDIA H100 80GB HBM3", "utilization": 83,
         "memory_used": 41 << 30, "memory_total": 80 << 30, "temperature": 61,
         "power_draw": 512.0, "power_limit": 700.0, "mig": False, "state": "ok",
         "processes": [{"pid": 4242, "memory": 40 << 30, "run": "training-AbCdEfGh1"}]},
        {"index": 1, "uuid": "GPU-1", "name": "NVIDIA H100 80GB HBM3", "utilization": 0,
         "memory_used": 1 << 29, "memory_total": 80 << 30, "temperature": 33,
         "power_draw": 70.0, "power_limit": 700.0, "mig": False, "state": "ok",
         "processes": []},
    ],
}  # fmt: skip
GPU_HISTORY = {
    "interval": 1.0,
    "gpus": {
        "0": {"utilization": [5, 20, 45, 70, 90, 100, 95, 83],
              "memory_used": [i << 30 for i in (1, 8, 20, 30, 38, 41, 41, 41)]},
        "1": {"utilization": [0] * 8, "memory_used": [1 << 29] * 8},
    },
}  # fmt: skip
