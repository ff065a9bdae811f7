"""`trainui` in a real terminal (tmux, 100x30) through the demo run: open it, watch it complete,
read its log, delete it (the question's default is Cancel), quit; and the manifest editor at
80x24 (the keys as a terminal sends them); at 80x24 too, two demo runs: one's curves, both
compared."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import trainui

DEMO = Path(trainui.__file__).resolve().parent / "demo"

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"
)


class Tmux:
    """One tmux server of our own (its own socket), killed at the end."""

    def __init__(self, name: str) -> None:
        self.socket = name

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui").stdout

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "tui", *keys)

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "") -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; the terminal shows:\n{self.screen()}")

    def alive(self) -> bool:
        return self("has-session", "-t", "tui").returncode == 0


@pytest.fixture
def tmux(tmp_path):
    server = Tmux(f"trainui-test-{tmp_path.name}")
    yield server
    server("kill-server")


def test_the_demo_run_in_a_real_terminal(home, tmux):
    home.bucket("demo-data", {p.name: p.read_bytes() for p in (DEMO / "data").iterdir()})
    model_id = home.submit(DEMO / "model", DEMO / "manifest.yml")
    env = [f"{k}={v}" for k, v in home.env.items() if k.startswith(("TRAINUI_", "PATH", "HOME"))]
    command = "exec " + shlex.join([sys.executable, "-m", "trainui"])
    flags = [item for pair in (("-e", e) for e in env) for item in pair]
    started = tmux("new-session", "-d", "-s", "tui", "-x", "100", "-y", "30", *flags, command)
    assert started.returncode == 0, started.stderr

    tmux.wait_for(lambda s: model_id in s and "demo-classifier" in s, what="the run in the list")
    tmux.keys("Enter")  # open it
    tmux.wait_for(lambda s: "ModelId" in s and model_id in s, what="the run's fields")
    screen = tmux.wait_for(
        lambda s: "✓ completed" in s.splitlines()[0] and "trainui: completed" in s,
        timeout=60,
        what="the run to complete, its log followed to the end",
    )
    assert "validation loss" in screen

    tmux.keys("/")  # its log, searched
    tmux.wait_for(lambda s: "search the whole log" in s, what="the search line")
    tmux.keys(*"epoch 15/30", "Enter")
    tmux.wait_for(lambda s: "/epoch 15/30: 1 of 1" in s, what="the search")
    tmux.keys("G")
    tmux.wait_for(lambda s: "trainui: completed" in s, what="the end of the log")

    tmux.keys("d")  # delete: the question's default answer is Cancel
    tmux.wait_for(lambda s: "stays there" in s, what="the question")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "stays there" not in s and "ModelId" in s, what="cancelled")
    assert home.show(model_id)["status"] == "completed"
    tmux.keys("d")
    tmux.wait_for(lambda s: "stays there" in s, what="the question again")
    tmux.keys("Tab", "Enter")  # to Delete, and press it
    tmux.wait_for(lambda s: "No runs yet" in s, what="the empty list")
    assert home.cli("show", model_id).returncode != 0

    tmux.keys("q")
    deadline = time.monotonic() + 10
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tmux.alive(), "trainui did not quit"


def test_the_editor_in_a_real_terminal(home, tmux):
    """80x24: the model field shows what one types into it (no border over it), the text's
    ctrl+end and ctrl+home come through, ctrl+f finds, esc closes the find and leaves."""
    env = [f"{k}={v}" for k, v in home.env.items() if k.startswith(("TRAINUI_", "PATH", "HOME"))]
    command = "exec " + shlex.join([sys.executable, "-m", "trainui"])
    flags = [item for pair in (("-e", e) for e in env) for item in pair]
    started = tmux("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", *flags, command)
    assert started.returncode == 0, started.stderr
    tmux.wait_for(lambda s: "No runs yet" in s, what="the empty list")
    tmux.keys("n")
    tmux.wait_for(lambda s: "✓ valid" in s and "esc Leave text" in s, what="the editor")
    tmux.keys("Escape")  # to the model field
    tmux.wait_for(lambda s: "esc Close" in s, what="the field's footer")
    tmux("send-keys", "-t", "tui", "-l", "examples/demo/model")
    screen = tmux.wait_for(
        lambda s: " Model definition examples/demo/model" in s, what="the path as typed"
    )
    assert "▔" not in screen
    tmux.keys("BTab")  # back to the text
    tmux.wait_for(lambda s: "esc Leave text" in s, what="the text")
    tmux.keys("C-End")
    tmux.keys("x")
    tmux.wait_for(lambda s: "✗ 20:1 YAML syntax error" in s, what="x typed on the last line")
    tmux.keys("BSpace")
    tmux.wait_for(lambda s: "✓ valid" in s, what="x taken back")
    tmux.keys("C-Home")
    tmux.keys("#")
    tmux.wait_for(lambda s: " 1  #model_definition:" in s, what="# typed on the first line")
    tmux.keys("C-f")
    tmux.wait_for(lambda s: "esc Close find" in s, what="the find bar")
    tmux("send-keys", "-t", "tui", "-l", "local")
    tmux.wait_for(lambda s: "1 of 3" in s, what="the first match")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "2 of 3" in s, what="the next match")
    tmux.keys("C-r")
    tmux.wait_for(lambda s: "1 of 3" in s, what="the previous match")
    tmux.keys("Escape")
    tmux.wait_for(lambda s: " Find local" not in s and "esc Leave text" in s, what="find closed")


def test_the_demos_curves_and_two_runs_compared_in_a_real_terminal(home, tmux):
    """80x24: the demo and a second demo with another learning rate; the first one's curves,
    then both marked and compared: curves overlaid with a legend, and their final values."""
    home.bucket("demo-data", {p.name: p.read_bytes() for p in (DEMO / "data").iterdir()})
    other = home.path.parent / "slower.yml"
    other.write_text(
        (DEMO / "manifest.yml")
        .read_text()
        .replace("--epochs 30", "--epochs 30 --learning-rate 0.03")
        .replace("name: demo-classifier", "name: demo-lr-0.03")
    )
    first = home.submit(DEMO / "model", DEMO / "manifest.yml")
    second = home.submit(DEMO / "model", other)
    for model_id in (first, second):
        assert home.wait(model_id, "completed", "failed", timeout=90)["status"] == "completed"
    shown = home.cli("show", first, check=True).stdout  # `show` names the last values
    assert re.search(r"^Metrics +loss [0-9.]+, accuracy [0-9.]+, val_loss", shown, re.M), shown
    env = [f"{k}={v}" for k, v in home.env.items() if k.startswith(("TRAINUI_", "PATH", "HOME"))]
    command = "exec " + shlex.join([sys.executable, "-m", "trainui"])
    flags = [item for pair in (("-e", e) for e in env) for item in pair]
    started = tmux("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", *flags, command)
    assert started.returncode == 0, started.stderr

    tmux.wait_for(lambda s: first in s and second in s, what="both runs in the list")
    tmux.keys("Enter")  # the newest: demo-lr-0.03
    tmux.wait_for(lambda s: "ModelId" in s and second in s, what="the run's fields")
    tmux.keys("v")  # its metrics: a chart per metric, with its last, min and max
    screen = tmux.wait_for(
        lambda s: "4 metrics" in s and "● loss" in s and "last" in s, what="the demo's curves"
    )
    assert "min " in screen and "max " in screen and "┤" in screen
    assert any(ch in screen for ch in "⠁⠂⠄⡀⠈⠐⠠⢀"), screen  # a braille line was drawn
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "Compare" in s and "ModelId" not in s, what="back to the list")
    tmux.keys("Space", "Down", "Space")  # mark both
    tmux.wait_for(lambda s: "2 marked" in s, what="both runs marked")
    tmux.keys("C")
    screen = tmux.wait_for(
        lambda s: "compare" in s and "● demo-lr-0.03" in s and "● demo-classifier" in s,
        what="the curves overlaid, a legend of both runs",
    )
    tmux.keys("2")
    screen = tmux.wait_for(lambda s: "val_loss" in s and "Run" in s, what="the final values")
    rows = {line.split()[1]: line for line in screen.splitlines() if "● demo" in line}
    assert set(rows) == {"demo-lr-0.03", "demo-classifier"}, screen
    final = home.show(first)["metrics"]["loss"]["last"]
    assert f"{final:.4g}" in rows["demo-classifier"], screen
    tmux.keys("q")


def test_a_sweep_in_a_real_terminal(home, tmux):
    """80x24: the example sweep (6 demo runs); e shows the experiments, enter opens it: its
    runs ranked by val_loss, the best starred, the best ones' curves; e goes back to the runs."""
    home.bucket("demo-data", {p.name: p.read_bytes() for p in (DEMO / "data").iterdir()})
    sweep = Path(__file__).resolve().parents[2] / "examples" / "sweep" / "manifest.yml"
    out = home.cli("train", str(DEMO / "model"), str(sweep), check=True).stdout
    experiment_id = out.split("Experiment-ID is '")[1].split("'")[0]
    env = [f"{k}={v}" for k, v in home.env.items() if k.startswith(("TRAINUI_", "PATH", "HOME"))]
    command = "exec " + shlex.join([sys.executable, "-m", "trainui"])
    flags = [item for pair in (("-e", e) for e in env) for item in pair]
    started = tmux("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", *flags, command)
    assert started.returncode == 0, started.stderr

    tmux.wait_for(lambda s: "demo-sweep 0.3·128" in s, what="its runs, their values")
    tmux.keys("e")
    tmux.wait_for(lambda s: "demo-lr-hidden" in s and experiment_id in s, what="the experiment")
    row = tmux.wait_for(lambda s: "6/6" in s, timeout=120, what="its 6 runs to end")
    assert "✓6" in row, row
    tmux.keys("Enter")
    screen = tmux.wait_for(
        lambda s: "★1" in s and "val_loss" in s and "┤" in s, what="its runs ranked, the curves"
    )
    assert "learning_ra" in screen and "hidden" in screen, screen
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "e Runs" in s, what="back to the experiments")
    tmux.keys("e")
    tmux.wait_for(lambda s: "6 runs" in s.splitlines()[0], what="back to the runs")
    tmux.keys("q")
