"""Issue 17's figures (experiments, SPEC §9), each against its anchor in the same run:

    python bench/experiments.py [--loop 1000] [--repeat 15] [--accept 3] [--draws 5]
                                [--only accept,show,tui] [--keep]

1. an experiment of 1,000 runs accepted (all recorded, the IDs printed; goal <= 2 s):
   ``trainui train MODEL sweep.yml`` of a 10 x 10 x 10 grid, process start to exit, ``--accept``
   times (each a new experiment), every one checked (1,000 ``Model-ID`` lines printed, 1,000 runs
   in ``trainui list --experiment ID --json``); anchors: a shell loop of ``--loop`` N ``trainui
   train`` of one run each (the same manifest without ``experiment:``), and N ``tsp true``
   enqueues (task-spooler, Debian package ``task-spooler``; left empty where it is not
   installed), each total scaled to 1,000 items where N < 1,000 (said so);
2. ``trainui show experiment ID`` of that 1,000-run experiment (p50, p95 of ``--repeat`` calls;
   goal p50 <= 100 ms) and ``GET /v3/experiments/ID`` alone through ``BlockingClient`` in this
   process; anchors of the same home: ``trainui show RUN_ID``, ``trainui list --experiment ID
   --json`` (the same 1,000 runs as a list), ``trainui list --json`` (every run) and
   ``trainui --version``;
3. the TUI's experiments view drawn first with 100 experiments x 100 runs, against a bare
   Textual app showing a DataTable of 100 rows (tmux, as bench/tui.py does). The home is made
   here (100 sweeps of 100 submitted through the client); the TUI's part is measured only when
   the keymap (src/trainui/tui/keymap.py) has an experiments action, else skipped, said so.

Every run is queued behind a blocker (``sleep 100000``) that holds the one CPU slot
(TRAINUI_CPU_SLOTS=1): the figures are the acceptance and the reads, with no learner running
meanwhile; tsp's jobs queue behind a blocker of their own likewise. Each part has its own home,
/tmp/bench-exp-*/home, with its own service, stopped by PID at the end (``--keep`` keeps the
folders); tsp runs with its own TS_SOCKET and TMPDIR there, its server stopped with ``tsp -K``
on that socket. Prints a markdown table: each figure, its goal, met or missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from _common import manifest, pct, stop_home

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
TRAINUI = [sys.executable, "-m", "trainui"]
GRID = 10  # values a parameter: a grid of GRID ** 3 runs
MODEL_ID = re.compile(r"^Model-ID is '([^']+)'$", re.M)
EXPERIMENT_ID = re.compile(r"^Experiment-ID is '([^']+)'$", re.M)


class Home:
    """A fresh trainui home, /tmp/bench-exp-*/home, for the trainui of this checkout."""

    def __init__(self, label: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-exp-{label}-", dir="/tmp"))
        self.path = self.tmp / "home"
        self.env = {
            **os.environ,
            "TRAINUI_HOME": str(self.path),
            "TRAINUI_GPUS": "none",
            "TRAINUI_CPU_SLOTS": "1",
            "TRAINUI_IDLE_EXIT": "3600",
            "PYTHONPATH": os.pathsep.join(
                [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        for name in ("TRAINUI_URL", "TRAINUI_TOKEN"):
            self.env.pop(name, None)
        (self.path / "buckets" / "data").mkdir(parents=True)
        self.zip = self.tmp / "model.zip"
        with zipfile.ZipFile(self.zip, "w") as zf:
            zf.writestr("train.py", "print('hello')\n")
        self.blocker: str | None = None

    def client(self):
        from trainui.client import BlockingClient

        return BlockingClient(home=str(self.path), environ=self.env)

    def start(self) -> None:
        """The service started (warm, as on a machine in use) and the one CPU slot held."""
        with self.client() as client:
            client.health()
            self.blocker = client.submit(str(self.zip), manifest("sleep 100000", "blocker"))[
                "model_id"
            ]

    def cli(self, *words: str) -> tuple[float, str]:
        """``trainui WORDS``: its wall time, process start to exit, and its output."""
        t0 = time.perf_counter()
        done = subprocess.run([*TRAINUI, *words], capture_output=True, text=True, env=self.env)
        took = time.perf_counter() - t0
        if done.returncode:
            raise SystemExit(f"trainui {' '.join(words)}: exit {done.returncode}\n{done.stderr}")
        return took, done.stdout

    def write(self, name: str, text: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(text)
        return str(path)

    def stop(self, keep: bool) -> None:
        stop_home(self.path)
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def sweep(name: str, values: int, parameters: int = 3, command: str = "true") -> bytes:
    """The bench's manifest with an ``experiment:`` block: a grid of ``values ** parameters``."""
    listed = ", ".join(str(v) for v in range(values))
    lines = ["experiment:", f"  name: {name}", "  method: grid", "  parameters:"]
    lines += [f"    p{k}: {{values: [{listed}]}}" for k in range(parameters)]
    lines.append("  objective: {metric: loss, goal: minimize}")
    return manifest(command, "bench-sweep") + ("\n".join(lines) + "\n").encode()


# --- 1. acceptance ------------------------------------------------------------------------------


def accept(home: Home, repeat: int) -> dict:
    """``trainui train`` of a 1,000-run grid, ``repeat`` times; each checked."""
    path = home.write("sweep.yml", sweep("grid-1000", GRID))
    times, ids = [], []
    for i in range(repeat):
        took, out = home.cli("train", str(home.zip), path)
        experiment = EXPERIMENT_ID.search(out)
        printed = MODEL_ID.findall(out)
        if not experiment or len(printed) != GRID**3 or len(set(printed)) != GRID**3:
            raise SystemExit(f"train #{i}: {len(printed)} Model-ID lines, not {GRID**3}\n{out}")
        _, listed = home.cli("list", "--experiment", experiment[1], "--json")
        recorded = {run["model_id"] for run in json.loads(listed)}
        if recorded != set(printed):
            raise SystemExit(
                f"train #{i}: {len(recorded)} runs recorded, not the {GRID**3} printed"
            )
        times.append(took)
        ids.append((experiment[1], printed))
        print(f"  trainui train, {GRID**3:,}-run grid: {took:.2f} s (checked)", flush=True)
    return {"times": times, "ids": ids}


def loop(home: Home, n: int) -> float:
    """N ``trainui train`` of one run each, one after the other (a shell loop): the total."""
    path = home.write("single.yml", manifest("true", "bench-single"))
    t0 = time.perf_counter()
    for i in range(n):
        _, out = home.cli("train", str(home.zip), path)
        if not MODEL_ID.search(out):
            raise SystemExit(f"loop #{i}: no Model-ID line\n{out}")
        if i % 100 == 99:
            print(f"  ... {i + 1:,} trainui train, {time.perf_counter() - t0:.0f} s", flush=True)
    return time.perf_counter() - t0


def tsp_loop(home: Home, n: int) -> tuple[float | None, int, str]:
    """N ``tsp true`` enqueued behind a blocker on a tsp server of its own: the time the
    accepted ones took, how many were accepted (a full queue makes tsp wait for room: its limit,
    some 1,000 connections), and what was seen; None where tsp is not there."""
    tsp = shutil.which("tsp") or shutil.which("ts")
    if not tsp:
        return None, 0, "tsp not installed (apt-get install task-spooler)"
    if "TS_SOCKET" not in subprocess.run([tsp, "-h"], capture_output=True, text=True).stdout:
        return None, 0, f"{tsp} is not task-spooler"
    socket = home.tmp / "tsp.sock"
    env = {**os.environ, "TS_SOCKET": str(socket), "TMPDIR": str(home.tmp),
           "TS_MAXCONN": "100000", "TS_MAXFINISHED": "100000"}  # fmt: skip
    try:
        subprocess.run([tsp, "-S", "1"], env=env, check=True, capture_output=True)
        subprocess.run([tsp, "sleep", "100000"], env=env, check=True, capture_output=True)
        t0 = last = time.perf_counter()
        accepted = 0
        for _ in range(n):
            try:
                subprocess.run([tsp, "true"], env=env, check=True, capture_output=True, timeout=5)
            except subprocess.TimeoutExpired:
                break  # the wait that ends in the timeout is not counted
            accepted += 1
            last = time.perf_counter()
        queued = subprocess.run([tsp], env=env, capture_output=True, text=True).stdout
        pending = sum(1 for line in queued.splitlines()[1:] if " queued " in f" {line} ")
        said = f"{pending:,} queued behind its blocker"
        if accepted < n:
            said += f"; then its queue was full ({accepted:,} of {n:,} accepted, scaled)"
        return last - t0, accepted, said
    finally:
        # -k: its running job (the blocker); -K: its server (the queued jobs' waits end with it)
        subprocess.run([tsp, "-k"], env=env, capture_output=True)
        subprocess.run([tsp, "-K"], env=env, capture_output=True)
        time.sleep(0.5)
        for pid in ours(str(socket)):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def ours(marker: str) -> list[int]:
    """This user's processes whose environment names ``marker`` (a path of this bench's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker.encode() in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
    return pids


# --- 2. show ------------------------------------------------------------------------------------


def show(home: Home, experiment_id: str, model_id: str, repeat: int) -> dict[str, list[float]]:
    """Each command in turn, ``repeat`` rounds (a loaded machine slows them alike); then the
    request alone, in this process."""
    commands = {
        "show experiment": ["show", "experiment", experiment_id],
        "show experiment --json": ["show", "experiment", experiment_id, "--json"],
        "show run": ["show", model_id],
        "list --experiment --json": ["list", "--experiment", experiment_id, "--json"],
        "list --json": ["list", "--json"],
        "version": ["--version"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for words in commands.values():  # a first call of each, not counted (page cache)
        home.cli(*words)
    for _ in range(repeat):
        for name, words in commands.items():
            times[name].append(home.cli(*words)[0])
    with home.client() as client:
        experiment = client.get_experiment(experiment_id)
        assert len(experiment["runs"]) == GRID**3, len(experiment["runs"])
        times["GET experiment"] = []
        times["GET run"] = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            client.get_experiment(experiment_id)
            times["GET experiment"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            client.get_run(model_id)
            times["GET run"].append(time.perf_counter() - t0)
        times["runs in the home"] = [float(client.list_runs(limit=0)[1])]
        times["answer bytes"] = [
            float(len(client.http.get(f"/v3/experiments/{experiment_id}").content))
        ]
    return times


# --- 3. the TUI's experiments view (issue 17: filled in with the TUI's experiments view) --------


def experiments_action():
    """The keymap's action that shows the experiments (its ID or method names experiments), or
    None while the TUI has none."""
    try:
        from trainui.tui.keymap import ACTIONS
    except ImportError:
        return None
    for action in ACTIONS.values():
        named = "experiment" in action.id or "experiment" in action.action
        if named and action.id.split(".")[0] in ("app", "runs"):
            return action
    return None


def tui_home(experiments: int, runs: int) -> tuple[Home, float, list[str]]:
    """A home with ``experiments`` sweeps of ``runs`` each (behind a blocker): the time to submit
    them through the client, and their names (the newest last)."""
    home = Home("tui")
    os.environ.update(home.env)
    home.start()
    values = round(runs ** (1 / 2))
    assert values * values == runs, "runs: a square (a grid of two parameters)"
    names = [f"sweep-{i:03d}" for i in range(experiments)]
    t0 = time.perf_counter()
    with home.client() as client:
        for name in names:
            answer = client.submit(str(home.zip), sweep(name, values, parameters=2))
            assert len(answer["model_ids"]) == runs
    return home, time.perf_counter() - t0, names


def tui_figures(home: Home, names: list[str], repeat: int) -> dict:
    """The bare Textual app (a DataTable of as many rows as experiments) from process start to
    drawn; the TUI's first screen (its run list); and, where the TUI has an experiments view,
    the key pressed on that first screen until the newest experiment's name is drawn."""
    from tui import BARE_APP, Terminal

    if not shutil.which("tmux"):
        return {"why": "tmux not installed"}
    term = Terminal()
    got: dict = {"bare": [], "first": [], "view": [], "action": experiments_action()}
    bare = home.tmp / "bench_bare_app.py"
    bare.write_text(BARE_APP)
    try:
        for _ in range(repeat):
            t0 = term.start([sys.executable, str(bare), str(len(names))], home.env)
            got["bare"].append(term.wait_for(f"row-{min(len(names), 20) - 1}", t0) or float("nan"))
            term.stop()
            t0 = term.start([*TRAINUI], home.env)
            # the run list drawn: the newest runs are the last sweep's, named bench-sweep
            got["first"].append(term.wait_for("bench-sweep", t0) or float("nan"))
            action = got["action"]
            if action is not None:
                # the experiments view drawn: the newest experiment's name on screen after the
                # key (the run list shows runs' names, never an experiment's)
                key = action.keys.split(",")[0]
                time.sleep(1.0)  # the list loaded behind the first screen
                t1 = time.perf_counter()
                term.keys(key if len(key) == 1 else key.replace("ctrl+", "C-"))
                got["view"].append(term.wait_for(names[-1], t1) or float("nan"))
            term.stop()
    finally:
        term.close()
    return got


# --- the table ----------------------------------------------------------------------------------


def ms(value: float) -> str:
    if value < 0.01:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e3:,.0f} ms" if value < 10 else f"{value:,.1f} s"


def verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else "**missed**"


class Table:
    """The figures as markdown rows; ``notes`` printed below them."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.notes: list[str] = []

    def add(self, figure: str, p50: str = "", p95: str = "", goal: str = "", met: str = "") -> None:
        self.rows.append((figure, p50, p95, goal, met))

    def print(self) -> None:
        print("\n| figure | p50 / value | p95 | goal | |")
        print("|---|--:|--:|---|---|")
        for row in self.rows:
            print("| " + " | ".join(row) + " |")
        for note in self.notes:
            print(f"\n{note}")


def part_cli(table: Table, args: argparse.Namespace, only: set[str]) -> None:
    """1. and 2.: a home, its 1,000-run experiments, show, then the loop of single runs."""
    scale, scaled = args.loop_scale
    home = Home("cli")
    os.environ.update(home.env)
    try:
        home.start()
        print(f"home {home.path}: the service up, a blocker holding the slot", flush=True)
        accepted = accept(home, args.accept if "accept" in only else 1)
        experiment_id, model_ids = accepted["ids"][0]
        times = accepted["times"]
        p50 = statistics.median(times)
        table.add(
            f"1. `trainui train` of a {GRID**3:,}-run experiment, accepted "
            f"(median of {len(times)}; max)",
            ms(p50),
            ms(max(times)),
            f"<= 2 s ({ms(p50 / GRID**3)} a run)",
            verdict(p50, 2.0),
        )
        if "show" in only:
            print(f"2. show experiment, {args.repeat} calls each", flush=True)
            show_rows(table, show(home, experiment_id, model_ids[len(model_ids) // 2], args.repeat))
        if "accept" in only:
            print(f"1. anchor: {args.loop:,} x trainui train of one run", flush=True)
            total = loop(home, args.loop)
            table.add(
                f"   anchor: shell loop of `trainui train`, one run each{scaled}",
                ms(total * scale),
                "",
                f"{ms(total / args.loop)} an item",
            )
            share = p50 / (total * scale)
            table.notes.append(f"the experiment took {share:.2%} of the loop's time for 1,000 runs")
    finally:
        home.stop(args.keep)


def show_rows(table: Table, got: dict[str, list[float]]) -> None:
    count = int(got.pop("runs in the home")[0])
    size = got.pop("answer bytes")[0]
    table.notes.append(
        f"GET /v3/experiments/ID answers {size / 1e6:.2f} MB for {GRID**3:,} runs, "
        f"{size / GRID**3:.0f} bytes a run"
    )
    labels = {
        "show experiment": f"2. `trainui show experiment` ({GRID**3:,} runs)",
        "show experiment --json": "   the same, --json",
        "GET experiment": "   GET /v3/experiments/ID, BlockingClient in-process",
        "show run": "   anchor: `trainui show RUN_ID`",
        "GET run": "   anchor: GET /v3/models/ID in-process",
        "list --experiment --json": f"   anchor: `trainui list --experiment ID --json` "
        f"({GRID**3:,} runs)",
        "list --json": f"   anchor: `trainui list --json` ({count:,} runs)",
        "version": "   anchor: `trainui --version`",
    }
    for key, label in labels.items():
        p50 = statistics.median(got[key])
        goal = "p50 <= 100 ms" if key == "show experiment" else ""
        met = verdict(p50, 0.1) if goal else ""
        table.add(label, ms(p50), ms(pct(got[key], 0.95)), goal, met)


def part_tsp(table: Table, args: argparse.Namespace) -> None:
    print(f"1. anchor: {args.loop:,} x tsp true", flush=True)
    spool = Home("tsp")
    try:
        total, accepted, said = tsp_loop(spool, args.loop)
    finally:
        spool.stop(args.keep)
    if total is None or not accepted:
        table.add("   anchor: `tsp true` enqueued (task-spooler)", "", "", said)
        return
    scaled = f" ({accepted:,} accepted, scaled to 1,000)" if accepted != 1000 else ""
    table.add(
        f"   anchor: `tsp true` enqueued (task-spooler){scaled}",
        ms(total * 1000 / accepted),
        "",
        f"{ms(total / accepted)} an item; {said}",
    )


def part_tui(table: Table, args: argparse.Namespace) -> None:
    """3.: the home of 100 x 100 and the first draws (the experiments view's when there is one)."""
    print("3. 100 experiments x 100 runs for the TUI ...", flush=True)
    home, took, names = tui_home(100, 100)
    try:
        table.add(
            "3. home: 100 sweeps of 100 runs submitted (client, in-process)",
            ms(took),
            "",
            f"{ms(took / 100)} a sweep",
        )
        got = tui_figures(home, names, args.draws)
    finally:
        home.stop(args.keep)
    if "why" in got:
        table.add("   experiments view: not measured", "", "", got["why"])
        return
    draws = f"{args.draws} draws, tmux 100x30"
    if got["action"] is None:
        table.add(
            "   experiments view, first draw: **skipped**",
            "",
            "",
            "the TUI has no experiments view yet (no experiments action in "
            "src/trainui/tui/keymap.py)",
        )
    else:
        view = statistics.median(got["view"])
        table.add(
            f"   experiments view: `{got['action'].keys}` on the first screen -> the newest "
            f"experiment drawn ({draws})",
            ms(view),
            ms(pct(got["view"], 0.95)),
        )
        start = statistics.median(got["first"]) + view
        ratio = start / statistics.median(got["bare"])
        table.add(
            "   experiments view from process start (first screen + key)",
            ms(start),
            "",
            f"{ratio:.2f}x the bare app",
        )
    table.add(
        f"   anchor: TUI first screen, the run list ({len(names) * 100 + 1:,} runs; {draws})",
        ms(statistics.median(got["first"])),
        ms(pct(got["first"], 0.95)),
    )
    table.add(
        f"   anchor: bare Textual app, DataTable of {len(names)} rows ({draws})",
        ms(statistics.median(got["bare"])),
        ms(pct(got["bare"], 0.95)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--loop", type=int, default=1000, help="N: the anchors' items (trainui train, tsp)"
    )
    parser.add_argument("--accept", type=int, default=3, help="1,000-run experiments submitted")
    parser.add_argument("--repeat", type=int, default=15, help="calls of each show/list command")
    parser.add_argument("--draws", type=int, default=5, help="first draws of each app (TUI part)")
    parser.add_argument("--only", default="accept,show,tui", help="parts, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the homes (/tmp/bench-exp-*)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    scaled = f" (N = {args.loop:,}, scaled to 1,000)" if args.loop < 1000 else ""
    args.loop_scale = (1000 / args.loop, scaled)
    sys.path.insert(0, str(SRC))
    # installed packages have compiled bytecode; these machines set PYTHONDONTWRITEBYTECODE
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(SRC)], check=True)
    print(
        f"trainui experiments bench, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"{SRC}; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    table = Table()
    try:
        if only & {"accept", "show"}:
            part_cli(table, args, only)
        if "accept" in only:
            part_tsp(table, args)
        if "tui" in only:
            part_tui(table, args)
    finally:
        table.print()
        load = os.getloadavg()[0]
        print(f"\nload at the end {load:.2f} ({os.cpu_count()} CPUs: compare within a run)")


if __name__ == "__main__":
    main()
