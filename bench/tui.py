"""Issue 7's figures: the TUI in a real terminal (tmux), each against its anchor in the same run.

    python bench/tui.py [--runs 10000] [--lines 1000000] [--repeat 5] [--home DIR]

1. time to first useful screen (the run list drawn), 10 and N runs in the history, against a
   bare Textual app showing a 20-row DataTable (and one with N rows);
2. opening a 1,000,000-line log (about 70 MB) until its last line is on screen, against
   toolong (`tl`) and `less +G`;
3. key-press latency (key sent → the screen changed) while a run prints 100,000 lines a second
   and the log pane follows it (p50, p95);
4. RSS with N runs in the list and that log open: the TUI's, the service's it talks to, and
   their sum; against toolong holding the log alone.

Everything runs in a temporary trainui home with its own service (stopped by PID at the end),
in a private tmux server (killed by its socket at the end). ``--home DIR`` keeps the home (and
reuses it when it already holds the runs). toolong pins an old Textual, so it lives in its own
virtual environment, ``bench/out/toolong`` (made on first use; pip needs the network or a
mirror); ``--no-toolong`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from _common import manifest, pct, stop_home

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TOOLONG = ROOT / "bench" / "out" / "toolong"
WIDTH, HEIGHT = 100, 30
LAST_LINE = "THE-LAST-LINE-OF-THE-LOG"


class Terminal:
    """A private tmux server; one session at a time, WIDTH x HEIGHT."""

    def __init__(self) -> None:
        self.socket = f"trainui-bench-{os.getpid()}"
        self.session = 0

    def tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, command: list[str], env: dict[str, str]) -> float:
        self.session += 1
        flags = []
        for name in ("TRAINUI_HOME", "TRAINUI_GPUS", "PATH", "PYTHONPATH", "TERM", "COLORTERM",
                     "HOME"):  # fmt: skip
            if name in env:
                flags += ["-e", f"{name}={env[name]}"]
        t0 = time.perf_counter()
        self.tmux("new-session", "-d", "-s", f"s{self.session}", "-x", str(WIDTH), "-y",
                  str(HEIGHT), *flags, "exec " + shlex.join(command))  # fmt: skip
        return t0

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", f"s{self.session}", check=False)

    def wait_for(self, text: str, t0: float, timeout: float = 30.0) -> float | None:
        while time.perf_counter() - t0 < timeout:
            if text in self.screen():
                return time.perf_counter() - t0
            time.sleep(0.005)
        return None

    def pid(self) -> int:
        return int(self.tmux("display", "-p", "-t", f"s{self.session}", "#{pane_pid}").strip())

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", f"s{self.session}", *keys)

    def stop(self) -> None:
        self.tmux("kill-session", "-t", f"s{self.session}", check=False)
        time.sleep(0.3)

    def close(self) -> None:
        self.tmux("kill-server", check=False)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the history -------------------------------------------------------------------------------


class History:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "TRAINUI_HOME": str(home),
            "TRAINUI_GPUS": "none",
            "TRAINUI_CPU_SLOTS": "1",
            "TRAINUI_IDLE_EXIT": "3600",
        }
        os.environ.update(self.env)
        (home / "buckets" / "data").mkdir(parents=True, exist_ok=True)
        self.zip = home.parent / "bench-model.zip"
        with zipfile.ZipFile(self.zip, "w") as zf:
            zf.writestr("log.py", LOG_SCRIPT)
            zf.writestr("printer.py", PRINTER_SCRIPT)
        self.state_file = home / "bench-state.json"
        self.state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def save(self) -> None:
        self.state_file.write_text(json.dumps(self.state))

    @staticmethod
    def manifest(command: str, name: str) -> bytes:
        return manifest(command, name)

    async def submit(self, client, command: str, name: str, wait: bool = True) -> str:
        answer = await client.submit(str(self.zip), self.manifest(command, name))
        model_id = answer["model_id"]
        while wait:
            run = await client.get_run(model_id)
            if run["status"] in ("completed", "failed", "halted"):
                break
            await asyncio.sleep(0.1)
        return model_id

    async def prepare(self, lines: int, runs: int, stage: str) -> None:
        from trainui.client import Client

        async with Client() as client:
            if "log_run" not in self.state:
                self.state["log_run"] = await self.submit(
                    client, f"python3 log.py {lines}", "million-lines"
                )
                _data, size, _start = await client.read_log(self.state["log_run"], -1)
                self.state["log_bytes"] = size
                for i in range(9):
                    self.state["newest"] = await self.submit(client, "true", f"quick-{i}")
                self.save()
            if stage == "many" and not self.state.get("many"):
                blocker = await self.submit(client, "sleep 100000", "blocker", wait=False)
                self.state["newest"] = blocker
                _runs, count = await client.list_runs(limit=0)
                for i in range(runs - count):
                    answer = await client.submit(
                        str(self.zip), self.manifest("true", f"queued-{i:05d}")
                    )
                    self.state["newest"] = answer["model_id"]
                    if i % 1000 == 999:
                        print(f"  ... {i + 1:,} runs submitted", flush=True)
                self.state["many"] = True
                self.save()

    def log_path(self) -> Path:
        return self.home / "runs" / self.state["log_run"] / "training-log.txt"

    def stop(self) -> None:
        stop_home(self.home)


LOG_SCRIPT = f"""\
import sys
write = sys.stdout.write
n = int(sys.argv[1])
for i in range(n):
    write(f"{{i:>8}} 2026-11-27T05:00:00.000Z INFO epoch {{i // 1000:>5}} step {{i % 1000:>4}} "
          f"loss 0.{{i % 9973:04d}}\\n")
write("{LAST_LINE}\\n")
"""

PRINTER_SCRIPT = """\
import sys, time
write = sys.stdout.write
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
batch = rate // 100
start = time.monotonic()
i = 0
while time.monotonic() - start < seconds:
    write("".join(f"{i + k:>9} printing a hundred thousand lines a second, loss 0.1234\\n"
                  for k in range(batch)))
    sys.stdout.flush()
    i += batch
    pause = start + i / rate - time.monotonic()
    if pause > 0:
        time.sleep(pause)
"""

BARE_APP = """\
import sys
from textual.app import App
from textual.widgets import DataTable

ROWS = int(sys.argv[1])

class Bare(App):
    def compose(self):
        yield DataTable()

    def on_mount(self):
        table = self.query_one(DataTable)
        table.add_columns("name", "state", "submitted")
        table.add_rows([(f"row-{i}", "completed", "11-27 05:14") for i in range(ROWS)])

Bare().run()
"""


# --- the figures --------------------------------------------------------------------------------


def first_screen(term: Terminal, history: History, label: str, repeat: int, anchor_rows: list):
    marker = history.state["newest"]
    tui = []
    for _ in range(repeat):
        t0 = term.start([PYTHON, "-m", "trainui"], history.env)
        tui.append(term.wait_for(marker, t0) or float("nan"))
        term.stop()
    rows = [f"{'first screen, ' + label:52} {statistics.median(tui):8.3f} s"]
    bare = history.home.parent / "bench_bare_app.py"
    bare.write_text(BARE_APP)
    for count in anchor_rows:
        samples = []
        for _ in range(repeat):
            t0 = term.start([PYTHON, str(bare), str(count)], history.env)
            samples.append(term.wait_for(f"row-{min(count, 20) - 1}", t0) or float("nan"))
            term.stop()
        rows.append(
            f"{f'  anchor: bare Textual app, DataTable of {count:,} rows':52} "
            f"{statistics.median(samples):8.3f} s"
        )
        if count == 20:
            ratio = statistics.median(tui) / statistics.median(samples)
            rows.append(f"{'  ratio to the 20-row bare app (goal < 2x)':52} {ratio:8.2f} x")
    return rows


def open_log(term: Terminal, history: History, repeat: int, toolong: list[str] | None, less: str):
    model_id = history.state["log_run"]
    command = [PYTHON, "-c", f"from trainui.tui import main; main(open_run={model_id!r})"]
    rows = []
    samples = []
    for _ in range(repeat):
        t0 = term.start(command, history.env)
        samples.append(term.wait_for(LAST_LINE, t0) or float("nan"))
        term.stop()
    size = history.state["log_bytes"]
    rows.append(f"{f'open a {size / 1e6:.0f} MB log to its last line: trainui':52} "
                f"{statistics.median(samples):8.3f} s (goal < 1 s)")  # fmt: skip
    if toolong:
        samples = []
        for _ in range(repeat):
            t0 = term.start([*toolong, str(history.log_path())], history.env)
            samples.append(term.wait_for(LAST_LINE, t0) or float("nan"))
            term.stop()
        rows.append(f"{'  anchor: toolong (tl)':52} {statistics.median(samples):8.3f} s")
    samples = []
    for _ in range(repeat):
        t0 = term.start([less, "+G", str(history.log_path())], history.env)
        samples.append(term.wait_for(LAST_LINE, t0) or float("nan"))
        term.stop()
    rows.append(f"{'  anchor: less +G':52} {statistics.median(samples):8.3f} s")
    return rows


def key_latency(term: Terminal, history: History, presses: int) -> list[str]:
    from trainui.client import Client

    async def start() -> str:
        async with Client() as client:
            return await history.submit(
                client, "python3 printer.py 100000 120", "printer", wait=False
            )

    async def halt(model_id: str) -> None:
        async with Client() as client:
            with contextlib.suppress(Exception):
                await client.halt_run(model_id)

    model_id = asyncio.run(start())
    command = [PYTHON, "-c", f"from trainui.tui import main; main(open_run={model_id!r})"]
    t0 = term.start(command, history.env)
    if term.wait_for("printing a hundred thousand", t0, timeout=60) is None:
        asyncio.run(halt(model_id))
        term.stop()
        return ["key-press latency: the printer run did not start"]
    time.sleep(2.0)
    busy = _presses(term, presses)
    size_before = _log_size(history, model_id)
    time.sleep(1.0)
    rate = (_log_size(history, model_id) - size_before) / 60  # about 60 bytes a line
    asyncio.run(halt(model_id))
    time.sleep(3.0)
    idle = _presses(term, presses)
    term.stop()
    return [
        f"{'key-press latency, log following 100k lines/s: p50':52} "
        f"{statistics.median(busy) * 1e3:8.1f} ms",
        f"{'                                                p95':52} "
        f"{pct(busy, 0.95) * 1e3:8.1f} ms (goal < 100 ms)",
        f"{'  the run printed (measured while pressing)':52} {rate:8,.0f} lines/s",
        f"{'  anchor: same keys, the run halted, p50 / p95':52} "
        f"{statistics.median(idle) * 1e3:8.1f} / {pct(idle, 0.95) * 1e3:.1f} ms",
    ]


def _presses(term: Terminal, presses: int) -> list[float]:
    """Toggle the run's fields (``i``): "ModelId" shows, then not, and so on."""
    samples = []
    for _ in range(presses):
        shown = "ModelId" in term.screen()
        t0 = time.perf_counter()
        term.keys("i")
        while time.perf_counter() - t0 < 5:
            if ("ModelId" in term.screen()) != shown:
                break
            time.sleep(0.002)
        samples.append(time.perf_counter() - t0)
        time.sleep(0.1)
    return samples


def _log_size(history: History, model_id: str) -> int:
    with contextlib.suppress(OSError):
        return (history.home / "runs" / model_id / "training-log.txt").stat().st_size
    return 0


def memory(term: Terminal, history: History, runs: int, toolong: list[str] | None) -> list[str]:
    """The TUI with N runs listed and the 1M-line log open, and the service it talks to (the
    PID in the home's service.lock), each process's RSS and their sum."""
    model_id = history.state["log_run"]
    command = [PYTHON, "-c", f"from trainui.tui import main; main(open_run={model_id!r})"]
    t0 = term.start(command, history.env)
    term.wait_for(LAST_LINE, t0)
    time.sleep(2.0)  # the list has loaded behind the log
    tui = rss_mb(term.pid())
    service = rss_mb(service_pid(history.home))
    term.stop()
    rows = [
        f"{f'RSS: TUI + service, {runs:,} runs, the 1M-line log open':52} "
        f"{tui + service:8.0f} MB (goal < 150)",
        f"{'  the TUI':52} {tui:8.0f} MB",
        f"{'  the service':52} {service:8.0f} MB",
    ]
    if toolong:
        t0 = term.start([*toolong, str(history.log_path())], history.env)
        term.wait_for(LAST_LINE, t0)
        time.sleep(3.0)
        rows.append(f"{'  anchor: toolong with the log alone':52} {rss_mb(term.pid()):8.0f} MB")
        term.stop()
    return rows


def service_pid(home: Path) -> int:
    """The home's service (the first word of its lock file)."""
    return int((home / "service.lock").read_text().split()[0])


class Table(list):
    """Rows printed as they come (a run cut short still shows what it measured)."""

    def __iadd__(self, rows):
        for row in rows:
            print(row, flush=True)
        self.extend(rows)
        return self


def find_toolong(command: str | None) -> list[str] | None:
    """``--toolong CMD``, else ``tl`` on the PATH, else bench/out/toolong (made here)."""
    if command:
        return shlex.split(command)
    found = shutil.which("tl")
    if found:
        return [found]
    tl = TOOLONG / "bin" / "tl"
    if not tl.exists():
        print("installing toolong into bench/out/toolong (it pins its own Textual) ...")
        subprocess.run([sys.executable, "-m", "venv", str(TOOLONG)], check=True)
        subprocess.run([str(TOOLONG / "bin" / "pip"), "install", "-q", "toolong"], check=True)
    return [str(tl)] if tl.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--home", help="keep the trainui home here (reused when ready)")
    parser.add_argument("--no-toolong", action="store_true")
    parser.add_argument("--toolong", metavar="CMD", help="how to start toolong (default: tl)")
    parser.add_argument("--less", default="less", help="the less to time (default: less)")
    parser.add_argument(
        "--only", default="first,log,keys,memory", help="figures to measure (comma-separated)"
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not shutil.which("tmux"):
        sys.exit("bench/tui.py needs tmux (apt-get install tmux)")
    toolong = None if args.no_toolong else find_toolong(args.toolong)
    # installed packages have compiled bytecode; these machines set PYTHONDONTWRITEBYTECODE
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="trainui-bench-"))
    home = Path(args.home).resolve() if args.home else tmp / "home"
    history = History(home)
    term = Terminal()
    table = Table()
    try:
        fresh = not history.state.get("many")
        print(f"home {home}; preparing 10 runs and a {args.lines:,}-line log ...", flush=True)
        asyncio.run(history.prepare(args.lines, args.runs, "few"))
        if fresh and "first" in only:
            table += first_screen(term, history, "10 runs", args.repeat, [20])
        if "log" in only:
            table += open_log(term, history, args.repeat, toolong, args.less)
        if "keys" in only and fresh:  # a reused home has a blocker holding the only slot
            table += key_latency(term, history, args.presses)
        print(f"preparing {args.runs:,} runs ...", flush=True)
        asyncio.run(history.prepare(args.lines, args.runs, "many"))
        if "first" in only:
            table += first_screen(
                term, history, f"{args.runs:,} runs", args.repeat, [20, args.runs]
            )
        if "memory" in only:
            table += memory(term, history, args.runs, toolong)
    finally:
        term.close()
        history.stop()
        if not args.home:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntrainui TUI, {WIDTH}x{HEIGHT} tmux terminal, median of {args.repeat}")
    for row in table:
        print(row)


if __name__ == "__main__":
    main()
