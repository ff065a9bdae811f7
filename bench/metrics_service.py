"""The service's side of metrics (issue 16): how fast points are ingested, and how fast a run's
points come out of `trainui metrics ID --json` against tbparse reading the same points from
TensorBoard event files (written with tensorboardX), in the same run.

A points file of 100,000 points (10 metrics x 10,000 steps, as the learner writes
metrics.jsonl) and the same scalars as TensorBoard events. Measured:

- the index alone (service/metrics.py's MetricsIndex reading the file), in this process;
- through the real service: ended runs holding the file, each asked for its summary once (an
  ended run's file is read on its first request): points / the request's time;
- `trainui metrics ID --json > /dev/null` as a process (Python's start and imports included),
  the service warm; against tbparse's SummaryReader(...).scalars on the event files, in this
  process (its import not counted) and as a process.

    python bench/metrics_service.py [--steps 10000] [--metrics 10] [--repeat 5]

Everything happens in a temporary trainui home with its own service, stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import manifest, row, stop_home

SRC = Path(__file__).resolve().parents[1] / "src"
TRAINUI = [sys.executable, "-m", "trainui"]


def write_points(path: Path, metrics: int, steps: int) -> int:
    """metrics.jsonl as the learner writes it: a line a point; how many points."""
    with path.open("w") as f:
        for step in range(steps):
            t = 1.7e9 + step * 0.01
            f.write(
                "".join(
                    json.dumps({"metric": f"m{m}", "step": step, "value": 1.0 / (step + m + 1),
                                "time": t}) + "\n"
                    for m in range(metrics)
                )
            )  # fmt: skip
    return metrics * steps


def write_events(folder: Path, metrics: int, steps: int) -> None:
    """The same scalars as TensorBoard event files, by tensorboardX's writer."""
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(folder), flush_secs=3600, max_queue=100_000)
    for step in range(steps):
        for m in range(metrics):
            writer.add_scalar(f"m{m}", 1.0 / (step + m + 1), step, walltime=1.7e9 + step * 0.01)
    writer.close()


def index_alone(path: Path, repeat: int) -> list[float]:
    from trainui.service.metrics import MetricsIndex

    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        index = MetricsIndex(str(path))
        index.read()
        times.append(time.perf_counter() - t0)
    return times


def service_ingest(env: dict, home: Path, points_file: Path, repeat: int) -> tuple[list, str]:
    """Ended runs holding the points file, each asked for its summary once: its time (the
    service reads an ended run's file on the first request). One run's ID for the CLI."""
    from trainui.client import BlockingClient

    data = home.parent / "manifest.yml"
    data.write_bytes(manifest("true"))
    model = home.parent / "model"
    model.mkdir(exist_ok=True)
    (model / "t.py").write_text("")
    ids = []
    for _ in range(repeat):
        out = subprocess.run(
            [*TRAINUI, "train", str(model), str(data)], env=env, capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
        ids.append(out.strip().splitlines()[-1].split("'")[1])
    times = []
    with BlockingClient(home=str(home)) as client:
        for model_id in ids:
            while client.get_run(model_id)["status"] not in ("completed", "failed"):
                time.sleep(0.1)
            os.link(points_file, home / "runs" / model_id / "metrics.jsonl")
        for model_id in ids:
            t0 = time.perf_counter()
            summary = client.metrics(model_id)
            times.append(time.perf_counter() - t0)
            assert len(summary["metrics"]) > 0
    return times, ids[0]


def cli_json(env: dict, model_id: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(
            [*TRAINUI, "metrics", model_id, "--json"], env=env, stdout=subprocess.DEVNULL,
            check=True,
        )  # fmt: skip
        times.append(time.perf_counter() - t0)
    return times


def tbparse_in_process(folder: Path, repeat: int) -> tuple[list[float], int]:
    from tbparse import SummaryReader

    times, count = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        frame = SummaryReader(str(folder)).scalars
        times.append(time.perf_counter() - t0)
        count = len(frame)
    return times, count


def tbparse_process(folder: Path, repeat: int) -> list[float]:
    code = f"from tbparse import SummaryReader; SummaryReader({str(folder)!r}).scalars"
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainui-bench-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        env = {
            **os.environ,
            "TRAINUI_HOME": str(home),
            "TRAINUI_GPUS": "none",
            "TRAINUI_IDLE_EXIT": "300",
            "PYTHONPATH": os.pathsep.join(
                [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        os.environ.update(env)
        (home / "buckets" / "data").mkdir(parents=True)
        points_file = tmp / "metrics.jsonl"
        points = write_points(points_file, args.metrics, args.steps)
        events = tmp / "tb"
        write_events(events, args.metrics, args.steps)
        try:
            alone = index_alone(points_file, args.repeat)
            served, model_id = service_ingest(env, home, points_file, args.repeat)
            cli = cli_json(env, model_id, args.repeat)
            tb_in, tb_count = tbparse_in_process(events, args.repeat)
            tb_proc = tbparse_process(events, args.repeat)
        finally:
            stop_home(home)
        assert tb_count == points, (tb_count, points)
        size = points_file.stat().st_size
        print(f"{points:,} points ({args.metrics} metrics x {args.steps:,} steps), "
              f"metrics.jsonl {size / 1e6:.1f} MB; {args.repeat} repeats")  # fmt: skip
        print(f"{'':44} {'median':>9} {'p95':>9}")
        print(row("index alone: read the file", alone))
        print(row("service: an ended run's first summary", served))
        rate = sorted(points / t for t in served)
        print(f"{'  = points/s ingested by the service':44} {rate[len(rate) // 2]:9,.0f}")
        rate = sorted(points / t for t in alone)
        print(f"{'  = points/s, the index alone':44} {rate[len(rate) // 2]:9,.0f}")
        print(row("trainui metrics ID --json (a process)", cli))
        print(row("tbparse .scalars, in process (no import)", tb_in))
        print(row("tbparse .scalars, a process", tb_proc))
        med = sorted(cli)[len(cli) // 2]
        for label, samples in (("in process", tb_in), ("a process", tb_proc)):
            ratio = sorted(samples)[len(samples) // 2] / med
            print(f"trainui metrics --json is {ratio:.1f}x faster than tbparse ({label})")


if __name__ == "__main__":
    main()
