"""Issue 16's TUI figures, measured in a headless app (Textual's ``App.run_test``) against a real
service in a temporary trainui home:

    python bench/metrics_tui.py [--runs 10000] [--repeat 5] [--presses 200] [--home DIR]

1. the metrics view drawn with 100,000 points (a run of 10 metrics x 10,000 steps): ``v``
   pressed in the run screen until every chart shown has its points, is laid out and the
   screen is drawn (goal <= 100 ms); a redraw of those charts (``l``: log scale); one chart
   of 100,000 points held in the TUI drawn alone (downsampled to its width; the widget's own
   cost). Each measured open starts after a ``gc.collect()``: the apps of the repeats before
   are garbage a lone TUI does not have (collected inside a figure, they cost 15 to 90 ms);
2. the compare screen of 20 runs (2 metrics x 2,000 steps each): ``C`` pressed with 20 runs
   marked until the curves (laid out, with their points), the final values and the manifest
   differences are all drawn (goal <= 300 ms);
3. the TUI's RSS with N runs in the list (``--runs``; queued behind a run that holds the one
   CPU slot, as bench/tui.py does) and the 100,000-point run's metrics view open
   (goal <= 150 MB);
4. key latency (key sent → handled and the screen drawn) while a run writes 10 metrics, 50
   steps a second, and its charts follow it (p50, p95; goal p95 <= 100 ms).

The service and every run it started are stopped by PID at the end; ``--home DIR`` keeps the
home and reuses the runs it already holds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from _common import manifest, pct, stop_home

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

WIDE = (120, 40)
SMALL = (80, 24)

TRAINER = """\
import json, math, os, sys, time
metrics, steps = int(sys.argv[1]), int(sys.argv[2])
rate = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0  # steps a second; 0: at once
seed = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
names = ["loss"] + [f"metric_{k}" for k in range(1, metrics)]
start = time.monotonic()
with open(os.path.join(os.environ["LOG_DIR"], "metrics.jsonl"), "a") as out:
    for step in range(steps):
        point = {"step": step}
        for k, name in enumerate(names):
            point[name] = 1.0 / (1.0 + step / (300.0 * seed * (k + 1))) + 0.01 * math.sin(step)
        out.write(json.dumps(point) + "\\n")
        if rate:
            out.flush()
            pause = start + (step + 1) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
print("trained", flush=True)
"""


def points(metrics: int, steps: range, seed: float = 1.0):
    """The trainer's points in the service's file format (``metric, step, value, time``)."""
    import math

    names = ["loss"] + [f"metric_{k}" for k in range(1, metrics)]
    for step in steps:
        for k, name in enumerate(names):
            value = 1.0 / (1.0 + step / (300.0 * seed * (k + 1))) + 0.01 * math.sin(step)
            yield json.dumps({"metric": name, "step": step, "value": value, "time": time.time()})


class Home:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {
            **os.environ,
            "TRAINUI_HOME": str(path),
            "TRAINUI_GPUS": "none",
            "TRAINUI_CPU_SLOTS": "1",
            "TRAINUI_IDLE_EXIT": "3600",
        }
        self.env.pop("TRAINUI_URL", None)
        (path / "buckets" / "data").mkdir(parents=True, exist_ok=True)
        self.zip = path.parent / "bench-metrics-model.zip"
        with zipfile.ZipFile(self.zip, "w") as zf:
            zf.writestr("metrics.py", TRAINER)
        self.state_file = path / "bench-metrics-state.json"
        self.state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def client(self):
        from trainui.client import Client

        return Client(home=str(self.path), environ=self.env)

    def save(self) -> None:
        self.state_file.write_text(json.dumps(self.state))

    async def submit(self, client, command: str, name: str, wait: bool = True) -> str:
        answer = await client.submit(str(self.zip), manifest(command, name))
        model_id = answer["model_id"]
        while wait:
            run = await client.get_run(model_id)
            if run["status"] in ("completed", "failed", "halted"):
                break
            await asyncio.sleep(0.1)
        if wait:
            self.stand_in(model_id, command)
        return model_id

    def points_file(self, model_id: str) -> Path:
        return self.path / "runs" / model_id / "metrics.jsonl"

    def stand_in(self, model_id: str, command: str) -> None:
        """Where the learner does not extract metrics yet (its branch not merged), the points
        the trainer wrote are put where the learner would put them; said in the output."""
        if self.points_file(model_id).exists() or "metrics.py" not in command:
            return
        words = command.split()
        seed = float(words[5]) if len(words) > 5 else 1.0
        lines = points(int(words[2]), range(int(words[3])), seed)
        self.points_file(model_id).write_text("".join(line + "\n" for line in lines))
        self.state["stand_in"] = True

    async def prepare(self) -> None:
        async with self.client() as client:
            if "big" not in self.state:
                print("  a run of 10 metrics x 10,000 steps ...", flush=True)
                self.state["big"] = await self.submit(
                    client, "python3 metrics.py 10 10000", "hundred-thousand"
                )
                self.save()
            if "compare" not in self.state:
                print("  20 runs of 2 metrics x 2,000 steps ...", flush=True)
                ids = []
                for i in range(20):
                    ids.append(
                        await self.submit(
                            client, f"python3 metrics.py 2 2000 0 {1 + i / 10}", f"lr-{i:02d}"
                        )
                    )
                self.state["compare"] = ids
                self.save()
            await self._wait_for_points(client, self.state["big"], 10_000)

    async def _wait_for_points(self, client, model_id: str, steps: int) -> None:
        for _ in range(300):
            summary = await client.metrics(model_id)  # an ended run's file is read on request
            if all(m["steps"] >= steps for m in summary["metrics"]) and summary["metrics"]:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{model_id}: its points were not all read by the service")

    async def many(self, runs: int) -> None:
        """``runs`` runs in the history: queued behind one that holds the CPU slot."""
        async with self.client() as client:
            _runs, count = await client.list_runs(limit=0)
            if count >= runs:
                return
            if "blocker" not in self.state:
                self.state["blocker"] = await self.submit(
                    client, "sleep 100000", "blocker", wait=False
                )
                self.save()
            print(f"  {runs - count:,} queued runs ...", flush=True)
            for i in range(runs - count):
                await client.submit(str(self.zip), manifest("true", f"queued-{i:05d}"))
                if i % 2000 == 1999:
                    print(f"  ... {i + 1:,}", flush=True)

    def stop(self) -> None:
        stop_home(self.path)


def make_app(home: Home, **kwargs):
    from trainui.tui.app import TrainuiApp
    from trainui.tui.config import TuiConfig

    return TrainuiApp(
        home.client(), config=TuiConfig(problems=[]), theme="trainui", watch_gpus=False, **kwargs
    )


async def until(pilot, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(str(condition))
        await asyncio.sleep(0.002)


def send(app, key: str) -> None:
    """A key as the terminal sends it (what Textual's pilot does, without its waits for idle
    of some 40 ms a key, which would be counted otherwise)."""
    from textual import events

    event = events.Key(key, key if len(key) == 1 else None)
    event.set_sender(app)
    app._driver.send_message(event)


async def until_quick(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(str(condition))
        await asyncio.sleep(0.0005)


def charts_drawn(charts) -> bool:
    """Every chart made (a lazy one is made as it comes into view) is laid out with its points
    and its plot drawn from them: a screen drawn before would show empty charts. Cheap (no DOM
    query): it is asked every half millisecond, in the app's own event loop."""
    for chart in charts:
        if not getattr(chart, "built", True):
            continue
        parts = chart.children  # its title, its plot (with the legend)
        if len(parts) < 2 or not chart.series:
            return False
        if not parts[1].size:  # the plot
            return False
    return True


def draw(app) -> None:
    """The whole screen composed now, as a terminal would be sent it."""
    app.screen._compositor.render_update(full=True)


# --- the figures ------------------------------------------------------------------------------


async def metrics_view(home: Home, repeat: int, size=WIDE) -> dict:
    """``v`` → every chart shown has its points and the screen is drawn; then ``l``."""
    opened, redrawn = [], []
    for _ in range(repeat):
        result = await _open_metrics(home, size)
        opened.append(result["opened"])
        redrawn.append(result["redrawn"])
    return {**result, "opened": opened, "redrawn": redrawn}


async def _open_metrics(home: Home, size) -> dict:
    from trainui.tui.widgets.metrics_view import MetricsView

    app = make_app(home, open_run=home.state["big"])
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.first_view.is_set() and app.loaded)
        await pilot.pause(0.2)
        screen = app.screen
        gc.collect()  # the apps of the repeats before: not collected in the figure of this one
        t0 = time.perf_counter()
        send(app, "v")
        # (each wait asks little: a DOM query every half millisecond would slow the app)
        await until_quick(lambda: screen.query(MetricsView))  # mounted at once
        view = screen.query_one(MetricsView)
        await until_quick(lambda: view.reads)
        charts = view.charts()
        await until_quick(lambda: charts_drawn(charts))  # laid out, with their points
        draw(app)
        opened = time.perf_counter() - t0
        await pilot.pause(0.1)
        t0 = time.perf_counter()
        send(app, "l")
        await until_quick(lambda: view.log_scale)
        draw(app)
        redrawn = time.perf_counter() - t0
        return {
            "opened": opened,
            "redrawn": redrawn,
            "charts": len(view.charts()),
            "held": sum(len(s) for s in view.series.values()),
        }


def one_chart(repeat: int) -> list[float]:
    """A chart of 100,000 points held in the TUI, drawn (downsampled to its width)."""
    import numpy as np
    from textual.app import App

    from trainui.tui.metrics import Series
    from trainui.tui.widgets.metric_chart import ChartPlot, MetricChart

    steps = np.arange(100_000, dtype=float)
    series = Series(steps, 1.0 / (1.0 + steps / 5000.0) + 0.01 * np.sin(steps))

    class ChartApp(App):
        def compose(self):
            yield MetricChart("loss")

    samples = []

    async def measure() -> None:
        app = ChartApp()
        async with app.run_test(size=WIDE) as pilot:
            chart = app.query_one(MetricChart)
            plot = app.query_one(ChartPlot)
            chart.set_series("loss", series)
            await pilot.pause(0.1)
            for _ in range(repeat):
                series.revision += 1  # stale: built again
                t0 = time.perf_counter()
                plot.render()
                samples.append(time.perf_counter() - t0)

    asyncio.run(measure())
    return samples


async def compare(home: Home, repeat: int, size=WIDE) -> list[float]:
    """``C`` with 20 runs marked → the curves, the final values and the differing manifest
    fields all drawn."""
    return [await _compare_once(home, size) for _ in range(repeat)]


async def _compare_once(home: Home, size) -> float:
    from trainui.tui.screens.compare import CompareScreen
    from trainui.tui.widgets.metrics_view import MetricsView

    app = make_app(home)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.loaded)
        await pilot.pause(0.2)
        app.screen.run_list.marked = set(home.state["compare"])
        gc.collect()  # the apps of the repeats before: not collected in the figure of this one
        t0 = time.perf_counter()
        send(app, "C")
        await until_quick(lambda: isinstance(app.screen, CompareScreen) and app.screen.is_mounted)
        screen = app.screen
        view = screen.query_one(MetricsView)
        await until_quick(lambda: view.reads >= 1 and screen.manifests is not None)
        charts = view.charts()
        await until_quick(lambda: charts_drawn(charts))  # laid out, with their points
        draw(app)
        elapsed = time.perf_counter() - t0
        assert len(view.runs) == 20 and screen.differing
        return elapsed


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def memory(home: Home) -> dict[str, float]:
    """RSS of this process (the TUI and its client) with the list loaded and the 100,000-point
    run's metrics view open."""
    import gc

    from trainui.tui.widgets.metrics_view import MetricsView

    gc.collect()
    before = rss_mb()
    app = make_app(home)
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, lambda: app.loaded, timeout=300)
        await pilot.pause(0.5)
        listed = rss_mb()
        runs = len(app.table)
        app.open_run(home.state["big"])
        await pilot.pause(0.5)
        await pilot.press("v")
        view = app.screen.query_one(MetricsView)
        await until(pilot, lambda: view.reads >= 1)
        draw(app)
        await pilot.pause(0.5)
        gc.collect()
        after = rss_mb()
    return {"runs": runs, "before": before, "listed": listed, "after": after}


async def key_latency(home: Home, presses: int) -> dict:
    """j and k pressed in turn in a live run's metrics view while it writes points."""
    from trainui.tui.widgets.metrics_view import MetricsView

    async with home.client() as client:
        model_id = await home.submit(
            client, "python3 metrics.py 10 100000 50", "live-metrics", wait=False
        )
        for _ in range(300):
            if (await client.get_run(model_id))["status"] == "running":
                break
            await asyncio.sleep(0.1)
    stop = threading.Event()
    await asyncio.sleep(3.0)
    if not home.points_file(model_id).exists():  # no learner extraction: write as it would
        home.state["stand_in"] = True

        def write() -> None:
            with open(home.points_file(model_id), "a") as out:
                step = 0
                while not stop.is_set():
                    out.write("".join(line + "\n" for line in points(10, range(step, step + 5))))
                    out.flush()
                    step += 5
                    time.sleep(0.1)  # 50 steps a second, 500 points

        threading.Thread(target=write, daemon=True).start()
    app = make_app(home, open_run=model_id)
    samples = []
    try:
        async with app.run_test(size=WIDE) as pilot:
            await until(pilot, lambda: app.first_view.is_set())
            await pilot.press("v")
            view = app.screen.query_one(MetricsView)
            await until(pilot, lambda: view.reads >= 1 and view.charts(), timeout=60)
            reads = view.reads
            charts = view.charts()
            for i in range(presses):
                before = view._current()
                step = 1 if i % 4 < 2 else -1
                t0 = time.perf_counter()
                send(app, "j" if step > 0 else "k")
                await until_quick(lambda: charts[before + step].has_focus)  # noqa: B023
                draw(app)
                samples.append(time.perf_counter() - t0)
                await asyncio.sleep(0.05)
            reads = view.reads - reads
            held = sum(len(s) for s in view.series.values())
    finally:
        stop.set()
        async with home.client() as client:
            await client.halt_run(model_id)
    return {"samples": samples, "reads": reads, "points": held}


def table(rows: list[tuple[str, str, str, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':{width}}  {'median':>9}  {'p95':>9}  goal"]
    lines += [f"{name:{width}}  {a:>9}  {b:>9}  {goal}" for name, a, b, goal in rows]
    return "\n".join(lines)


def ms(samples: list[float], q: float | None = None) -> str:
    value = statistics.median(samples) if q is None else pct(samples, q)
    return f"{value * 1e3:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--home", help="keep the home here (and reuse its runs)")
    parser.add_argument(
        "--only", choices=("latency",), help="only this figure (on a home of its own)"
    )
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # a fresh process measures it
    args = parser.parse_args()
    if args.memory_of:
        home = Home(Path(args.memory_of))
        os.environ.update(home.env)
        home.state = json.loads(home.state_file.read_text())
        print(json.dumps(asyncio.run(memory(home))))
        return
    base = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="trainui-bench-m-"))
    home = Home(base / "home" if not args.home else base)
    os.environ.update(home.env)
    rows = []
    if args.only == "latency":
        try:
            live = asyncio.run(key_latency(home, args.presses))
        finally:
            home.stop()
        name = f"key latency, live chart ({live['reads']} reads, {live['points']:,} pts)"
        samples = live["samples"]
        print(table([(name, ms(samples), ms(samples, 0.95), "p95 <= 100 ms")]))
        return
    try:
        print("preparing the runs", flush=True)
        asyncio.run(home.prepare())
        print("1. the metrics view", flush=True)
        for size in (WIDE, SMALL):
            view = asyncio.run(metrics_view(home, args.repeat, size))
            where = f"{size[0]}x{size[1]}, {view['charts']} charts"
            rows.append((f"metrics view, 100,000 points: v → drawn ({where})",
                         ms(view["opened"]), ms(view["opened"], 0.95), "<= 100 ms"))  # fmt: skip
            rows.append((f"  redrawn (l: log scale; {where})", ms(view["redrawn"]),
                         ms(view["redrawn"], 0.95), ""))  # fmt: skip
        rows.append((f"  (points held by the view: {view['held']:,}, the display series)",
                     "", "", ""))  # fmt: skip
        chart = one_chart(max(20, args.repeat))
        rows.append(("  one chart of 100,000 points held, drawn at 120 wide", ms(chart),
                     ms(chart, 0.95), ""))  # fmt: skip
        print("2. compare", flush=True)
        samples = asyncio.run(compare(home, args.repeat))
        rows.append(("compare of 20 runs: C → curves, values, manifests drawn", ms(samples),
                     ms(samples, 0.95), "<= 300 ms"))  # fmt: skip
        print("4. key latency while a chart follows a run", flush=True)
        live = asyncio.run(key_latency(home, args.presses))
        rows.append((f"key latency, live chart ({live['reads']} reads, {live['points']:,} pts)",
                     ms(live["samples"]), ms(live["samples"], 0.95), "p95 <= 100 ms"))  # fmt: skip
        print("3. memory", flush=True)
        asyncio.run(home.many(args.runs))
        done = subprocess.run(
            [sys.executable, __file__, "--memory-of", str(home.path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        mem = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((f"TUI RSS, {mem['runs']:,} runs + 100,000-point metrics view",
                     f"{mem['after']:.0f} MB", "", "<= 150 MB"))  # fmt: skip
        rows.append((f"  (before the app: {mem['before']:.0f} MB; list loaded: "
                     f"{mem['listed']:.0f} MB)", "", "", ""))  # fmt: skip
    finally:
        home.stop()
        print()
        print(table(rows))
        if home.state.get("stand_in"):
            print(
                "\n(the learner's extraction was not there: the bench wrote each run's points "
                "where the learner puts them, <run_dir>/metrics.jsonl; the service and the TUI "
                "read them as they would the learner's)"
            )


if __name__ == "__main__":
    main()
