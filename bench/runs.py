"""Issue 3's figures: submit → command latency, queue depth, list speed, log throughput.

Each is measured against its anchor in the same run (task-spooler `tsp`, Debian package
`task-spooler`, where installed). Prints one table per figure. Usage:

    python bench/runs.py [--runs 50] [--queue 10000] [--lines 1000000] [--repeats 9]
                         [--only latency|sandbox|lines|queue ...] [--src DIR]

``--src``: the trainui sources to measure (default: this checkout's), e.g. an export of an older
commit, to set its figures beside this one's (each against the same anchors in its own run).
Everything happens in a temporary trainui home with its own service, stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import manifest, pct, row, stop_home

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"  # the trainui measured: --src
TRAINUI = [sys.executable, "-m", "trainui"]
STAMP = re.compile(r"^[0-9]{9,}\.[0-9]+$")


class Bench:
    """A trainui home in ``tmp`` (made if new) for the trainui of ``src``; ``export``: this
    process's environment names it too (its client, in-process, goes there)."""

    def __init__(self, tmp: Path, src: Path | None = None, export: bool = True) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.env = {
            **os.environ,
            "TRAINUI_HOME": str(self.home),
            "TRAINUI_GPUS": "none",
            "TRAINUI_CPU_SLOTS": "1",
            "TRAINUI_IDLE_EXIT": "120",
            "PYTHONPATH": os.pathsep.join(
                [str(src or SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        if export:
            os.environ.update(self.env)
        (self.home / "buckets" / "data").mkdir(parents=True, exist_ok=True)
        self.model = tmp / "model"
        self.model.mkdir(exist_ok=True)
        (self.model / "train.py").write_text("print('hello')\n")
        self.zip = tmp / "model.zip"
        import zipfile

        with zipfile.ZipFile(self.zip, "w") as zf:
            zf.write(self.model / "train.py", "train.py")

    def manifest(self, command: str, name: str = "bench") -> bytes:
        return manifest(command, name)

    def stop(self) -> None:
        """Stop the service and whatever learners and commands are left, by PID."""
        stop_home(self.home)


STEPS = (
    "request (incl. scheduling)",
    "learner start (< 0: before the response)",
    "stage",
    "unpack",
    "command start",
    "total",
)


async def first_line(log: Path) -> float:
    """The time the command printed as its first line (``date +%s.%N``), once in its log."""
    while True:
        with contextlib.suppress(FileNotFoundError):
            for line in log.read_text().splitlines():
                if STAMP.match(line):
                    return float(line)
        await asyncio.sleep(0.002)


async def submit_latencies(bench: Bench, runs: int) -> dict[str, list[float]]:
    """``runs`` submissions of `date +%s.%N`, each to a warm, idle service, step by step."""
    from trainui.client import Client

    samples: dict[str, list[float]] = {k: [] for k in STEPS}
    async with Client() as client:
        await client.health()  # a warm service, as on a machine in use
        for _ in range(runs):
            manifest = bench.manifest("date +%s.%N")
            # each submission to a warm, idle service, as a user's: the previous run's end
            # (its learner storing, the spare learner's start) is not counted in the next one
            await asyncio.sleep(0.5)
            t0 = time.time()
            answer = await client.submit(str(bench.zip), manifest)
            t_response = time.time()
            first = await first_line(bench.home / "runs" / answer["model_id"] / "training-log.txt")
            while True:
                run = await client.get_run(answer["model_id"])
                if run["status"] in ("completed", "failed"):
                    break
                await asyncio.sleep(0.01)
            status = json.loads(
                (
                    bench.home / "buckets" / "results" / answer["model_id"] / "training-status.json"
                ).read_text()
            )
            timings = status["timings"]
            samples["request (incl. scheduling)"].append(t_response - t0)
            samples["learner start (< 0: before the response)"].append(
                timings["learner_started"] - t_response
            )
            samples["stage"].append(timings["staged"] - timings["learner_started"])
            samples["unpack"].append(timings["unpacked"] - timings["staged"])
            samples["command start"].append(first - timings["unpacked"])
            samples["total"].append(first - t0)
    return samples


async def latency(bench: Bench, runs: int, repeats: int) -> None:
    samples = await submit_latencies(bench, runs)
    print(f"\nsubmit -> first line of the command, {runs} runs (client API, warm service)")
    print(f"{'step':44} {'p50':>9} {'p95':>9}")
    for name, values in samples.items():
        print(row(name, values))
    cli, running = [], []
    for _ in range(max(min(runs, 20), repeats)):
        first, started = await cli_train(bench)
        cli.append(first)
        running.append(started)
    print(row(f"`trainui train` -> running ({len(cli)} runs)", running))
    print(row(f"`trainui train` -> first line ({len(cli)} runs)", cli))
    tsp = shutil.which("tsp") or shutil.which("ts")
    if tsp:
        anchor = [tsp_first_line(bench, tsp, i) for i in range(min(runs, 20))]
        print(row("anchor: tsp (task-spooler) command line", anchor))
        subprocess.run([tsp, "-K"], env=tsp_env(bench), capture_output=True)
    else:
        print("anchor: tsp not installed (apt-get install task-spooler)")


async def cli_train(bench: Bench) -> tuple[float, float]:
    """`trainui train` of `date +%s.%N`, in seconds: to the first line of its command, and to
    the run's status `running` (issue 15's figure: the learner's ``command_started``, once the
    command was started); as the API's submissions, to a warm, idle service (the previous run
    ended, its learner stored, the spare learner started), not during the previous run's end."""
    await asyncio.sleep(0.5)
    manifest_path = bench.tmp / "cli.yml"
    manifest_path.write_bytes(bench.manifest("date +%s.%N"))
    t0 = time.time()
    done = subprocess.run([*TRAINUI, "train", str(bench.zip), str(manifest_path)], check=True,
                          capture_output=True, text=True, env=bench.env)  # fmt: skip
    model_id = done.stdout.strip().splitlines()[-1].split("'")[1]
    first = await first_line(bench.home / "runs" / model_id / "training-log.txt")
    await run_end(bench, model_id)
    status = bench.home / "buckets" / "results" / model_id / "training-status.json"
    started = json.loads(status.read_text())["timings"]["command_started"]
    return first - t0, started - t0


async def run_end(bench: Bench, model_id: str) -> None:
    """Once the run has ended (asked of the bench's service)."""
    from trainui.client import Client

    async with Client(home=str(bench.home), environ=bench.env) as client:
        while (await client.get_run(model_id))["status"] not in ("completed", "failed"):
            await asyncio.sleep(0.01)


def tsp_env(bench: Bench) -> dict[str, str]:
    return {**os.environ, "TS_SOCKET": str(bench.tmp / "tsp.sock"), "TMPDIR": str(bench.tmp)}


def tsp_first_line(bench: Bench, tsp: str, i: int) -> float:
    """tsp's `date +%s.%N` to its first line, in seconds: the anchor of `trainui train`."""
    stamp = bench.tmp / f"first-line.tsp{i}"
    t0 = time.time()
    subprocess.run([tsp, "sh", "-c", f"date +%s.%N > {stamp}"], check=True,
                   capture_output=True, env=tsp_env(bench))  # fmt: skip
    while not stamp.exists() or not stamp.read_text().strip():
        time.sleep(0.001)
    return float(stamp.read_text()) - t0


async def compare(tmp: Path, before: Path, runs: int, depth: int, repeats: int) -> None:
    """This checkout's trainui and ``before``'s, each with its own home and service, measured
    turn about in the same run (a loaded machine slows both alike): submit -> first line
    through each one's client API (in a process of its own, ``runs`` a turn), `trainui train`,
    and with ``depth`` runs queued `trainui list` (the table and --json) and --version."""
    from trainui.client import Client

    benches = {
        "before": Bench(tmp / "before", before, export=False),
        "after": Bench(tmp / "after", SRC, export=False),
    }
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(before)], check=True)
    names = ("api", "running", "train", "tsp", "table", "json", "version")
    got: dict[str, dict[str, list[float]]] = {b: {n: [] for n in names} for b in benches}
    tsp = shutil.which("tsp") or shutil.which("ts")
    try:
        for i in range(repeats):
            for name, bench in benches.items():
                worker = [sys.executable, __file__, "--worker", str(bench.tmp), "--runs", str(runs)]
                out = subprocess.run(worker, env=bench.env, capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(out.stderr)
                got[name]["api"] += json.loads(out.stdout.splitlines()[-1])
                first, started = await cli_train(bench)
                got[name]["train"].append(first)
                got[name]["running"].append(started)
                if tsp:
                    got[name]["tsp"].append(tsp_first_line(bench, tsp, i))
        for bench in benches.values():  # the same history in each: `depth` runs queued
            async with Client(home=str(bench.home), environ=bench.env) as client:
                await client.submit(str(bench.zip), bench.manifest("sleep 100000", "blocker"))
                for j in range(depth):
                    await client.submit(str(bench.zip), bench.manifest("true", f"q{j}"))
        commands = {
            "table": [*TRAINUI, "list"],
            "json": [*TRAINUI, "list", "--json"],
            "version": [*TRAINUI, "--version"],
        }
        for _ in range(repeats):
            for name, bench in benches.items():
                for what, command in commands.items():
                    t = time.perf_counter()
                    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=bench.env)
                    got[name][what].append(time.perf_counter() - t)
    finally:
        for bench in benches.values():
            bench.stop()
            if tsp:
                subprocess.run([tsp, "-K"], env=tsp_env(bench), capture_output=True)
    rows = {
        "api": f"submit -> first line, client API ({runs * repeats} runs)",
        "running": f"`trainui train` -> running ({repeats} runs)",
        "train": f"`trainui train` -> first line ({repeats} runs)",
        "tsp": "anchor: tsp -> first line",
        "table": f"trainui list, the table ({depth + 1:,} runs)",
        "json": f"trainui list --json ({depth + 1:,} runs)",
        "version": "anchor: trainui --version",
    }
    print(f"\nbefore: {before}\nafter:  {SRC}\nturn about, p50 (p95) in ms")
    print(f"{'':44} {'before':>17} {'after':>17}")
    for key, label in rows.items():
        cells = []
        for name in benches:
            values = got[name][key]
            if not values:
                cells.append(f"{'-':>17}")
                continue
            p50, p95 = statistics.median(values) * 1e3, pct(values, 0.95) * 1e3
            cells.append(f"{p50:8.1f} ({p95:6.1f})")
        print(f"{label:44} {cells[0]:>17} {cells[1]:>17}")
    for name in benches:
        ratio = statistics.median(got[name]["json"]) / statistics.median(got[name]["version"])
        print(f"  {name}: list --json / --version {ratio:.1f}x")


async def worker(tmp: Path, runs: int) -> None:
    """``compare``'s turn of the client API, in the process of the trainui measured: the
    totals, as JSON on the last line."""
    bench = Bench(tmp)
    print(json.dumps((await submit_latencies(bench, runs))["total"]))


async def sandbox_cost(bench: Bench, runs: int, rounds: int = 2) -> None:
    """Submit -> first line with the sandbox (the default where bubblewrap works) and without
    it (TRAINUI_ISOLATION=off), alternately, a fresh service each time."""
    from trainui.sandbox import unavailable

    why = unavailable()
    print(f"\nthe sandbox's cost on submit -> first line, {rounds} x {runs} runs each way")
    if why is not None:
        print(f"  not measured: {why}")
        return
    totals: dict[str, list[float]] = {"off": [], "auto": []}
    for _ in range(rounds):
        for mode in totals:
            with contextlib.suppress(FileNotFoundError):
                service = int((bench.home / "service.lock").read_text().split()[0])
                stop_home(bench.home)
                while _running(service):  # the next service has this setting
                    time.sleep(0.05)
            os.environ["TRAINUI_ISOLATION"] = bench.env["TRAINUI_ISOLATION"] = mode
            totals[mode] += (await submit_latencies(bench, runs))["total"]
    os.environ["TRAINUI_ISOLATION"] = bench.env["TRAINUI_ISOLATION"] = "auto"
    print(f"{'':44} {'p50':>9} {'p95':>9}")
    print(row("sandboxed (bubblewrap)", totals["auto"]))
    print(row("anchor: the same, TRAINUI_ISOLATION=off", totals["off"]))
    added = (statistics.median(totals["auto"]) - statistics.median(totals["off"])) * 1e3
    print(f"  added by the sandbox, p50: {added:.1f} ms (goal <= 10 ms)")


def _running(pid: int) -> bool:
    """Not ended (a zombie, the service this process started and did not reap, has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


async def queue_depth(bench: Bench, depth: int, repeats: int) -> None:
    from trainui.client import Client

    async with Client() as client:
        blocker = await client.submit(str(bench.zip), bench.manifest("sleep 100000", "blocker"))
        t0 = time.perf_counter()
        first_thousand = None
        for i in range(depth):
            await client.submit(str(bench.zip), bench.manifest("true", f"q{i}"))
            if i == 999:
                first_thousand = time.perf_counter() - t0
        total = time.perf_counter() - t0
        _runs, count = await client.list_runs(status="pending", limit=0)
        print(f"\nqueue depth: {depth:,} runs behind a blocker")
        print(f"  accepted and pending: {count:,}")
        if first_thousand:
            print(f"  first 1,000 enqueued through the client: {first_thousand:.2f} s "
                  "(goal: within 2x of tsp's 2.4 s)")  # fmt: skip
        print(f"  all {depth:,}: {total:.1f} s")
        # list speed with that history: each command in turn, ``repeats`` rounds
        commands = {
            "table": [*TRAINUI, "list"],
            "json": [*TRAINUI, "list", "--json"],
            "version": [*TRAINUI, "--version"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, command in commands.items():
                t = time.perf_counter()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=bench.env)
                times[name].append(time.perf_counter() - t)
        samples, version = times["json"], times["version"]
        pid = int((bench.home / "service.lock").read_text().split()[0])
        rss = int(
            next(
                line.split()[1]
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS")
            )
        )
        print(f"{'':44} {'p50':>9} {'p95':>9}")
        print(row(f"trainui list ({depth + 1:,} runs, the table)", times["table"]))
        print(row(f"trainui list --json ({depth + 1:,} runs)", samples))
        print(row("anchor: trainui --version", version))
        print(f"  ratio {statistics.median(samples) / statistics.median(version):.1f}x (goal < 2x);"
              f" service RSS {rss / 1024:.0f} MB (goal < 150 MB)")  # fmt: skip
        tsp = shutil.which("tsp")
        if tsp:
            env = {**os.environ, "TS_SOCKET": str(bench.tmp / "tspq.sock"),
                   "TMPDIR": str(bench.tmp), "TS_MAXCONN": "100000"}  # fmt: skip
            subprocess.run([tsp, "sleep", "100000"], env=env, check=True, capture_output=True)
            t = last = time.perf_counter()
            accepted = 0
            for _ in range(1000):
                try:  # a full queue makes tsp wait for room: that is its limit
                    done = subprocess.run([tsp, "true"], env=env, capture_output=True, timeout=5)
                except subprocess.TimeoutExpired:
                    break
                if done.returncode == 0:
                    accepted += 1
                    last = time.perf_counter()  # the wait that ends in a timeout is not counted
            took = last - t
            print(f"  anchor: tsp enqueued {accepted} in {took:.2f} s"
                  + (", then its queue was full" if accepted < 1000 else ""))  # fmt: skip
            if first_thousand and accepted:
                per_thousand = took * 1000 / accepted
                ratio = first_thousand / per_thousand
                print(f"  enqueue 1,000: trainui {first_thousand:.2f} s, tsp {per_thousand:.2f} s"
                      f" (scaled to 1,000): ratio {ratio:.2f}x (goal <= 2x)")  # fmt: skip
            # -K stops tsp's server only: its running job (the blocker) is killed first
            subprocess.run([tsp, "-k"], env=env, capture_output=True)
            subprocess.run([tsp, "-K"], env=env, capture_output=True)
        await client.delete_run(blocker["model_id"])


async def log_throughput(bench: Bench, lines: int, rounds: int = 3) -> None:
    """The same command writing to a file directly and under trainui, alternately, ``rounds``
    times (one pair swings with the machine's load): each pair's ratio, and their median."""
    from trainui.client import Client

    script = f"python3 -c \"import sys\nfor i in range({lines}): print('line', i)\""
    direct = bench.tmp / "direct.txt"
    ratios = []
    print(f"\n{lines:,} lines printed as fast as possible, {rounds} rounds")
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(["sh", "-c", f"{script} > {direct}"], check=True)
        baseline = time.perf_counter() - t
        async with Client() as client:
            answer = await client.submit(str(bench.zip), bench.manifest(script, "printer"))
            while (run := await client.get_run(answer["model_id"]))["status"] not in (
                "completed", "failed", "halted",
            ):  # fmt: skip
                await asyncio.sleep(0.05)
        results = bench.home / "buckets" / "results" / answer["model_id"]
        timings = json.loads((results / "training-status.json").read_text())["timings"]
        command = timings["command_ended"] - timings["command_started"]
        with (results / "training-log.txt").open() as log:
            stored = sum(1 for line in log if line.startswith("line "))
        ratios.append(command / baseline)
        print(f"  {run['status']}, {stored:,} lines in the stored training-log.txt; command "
              f"under trainui {command:.2f} s, to a file directly {baseline:.2f} s: "
              f"{ratios[-1]:.2f}x")  # fmt: skip
    print(f"  ratio, median of {rounds}: {statistics.median(ratios):.2f}x (goal <= 1.2x)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--queue", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=9, help="rounds of each CLI command")
    parser.add_argument("--src", type=Path, help="the trainui sources to measure")
    parser.add_argument("--compare", type=Path, metavar="SRC",
                        help="only: this trainui and SRC's, turn about")  # fmt: skip
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("latency", "sandbox", "lines", "queue"),
                        action="append", help="these figures only (repeat it)")  # fmt: skip
    args = parser.parse_args()
    if args.worker:
        return await worker(args.worker, args.runs)
    global SRC
    SRC = (args.src or SRC).resolve()
    sys.path.insert(0, str(SRC))
    # installed packages have compiled bytecode; these machines set PYTHONDONTWRITEBYTECODE
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(SRC)], check=True)
    # a learner may still be storing as the folder goes: what it leaves is not an error here
    with tempfile.TemporaryDirectory(prefix="trainui-bench-", ignore_cleanup_errors=True) as tmp:
        if args.compare:
            return await compare(
                Path(tmp), args.compare.resolve(), args.runs, args.queue, args.repeats
            )
        bench = Bench(Path(tmp))
        try:
            print(f"trainui bench, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {SRC}")
            if not args.only or "latency" in args.only:
                await latency(bench, args.runs, args.repeats)
            if not args.only or "sandbox" in args.only:
                await sandbox_cost(bench, args.runs // 2)
            if not args.only or "lines" in args.only:
                await log_throughput(bench, args.lines)
            if not args.only or "queue" in args.only:
                await queue_depth(bench, args.queue, args.repeats)
        finally:
            bench.stop()


if __name__ == "__main__":
    asyncio.run(main())
