"""The learner's metrics extraction (trainui.learner.metrics), measured.

(a) A command logging 100,000 points (10 metrics x 10,000 steps) to ``$LOG_DIR/metrics.jsonl``
    as fast as it can (a flush a line, as a training loop does), run as the learner runs it:
    a child process, the extractor a thread of the process that started it. Its wall time with
    the extractor following against the same command alone, alternated, median of repeats;
    the final pass after the command ended and the extractor's CPU time beside.
(b) The same 100,000 points as TensorBoard event files (written by tensorboardX), read by
    trainui's extractor, by tbparse's SummaryReader, by tensorboard's EventAccumulator and by
    tensorboard's own event_file_loader: each in a fresh process, import and read timed apart.

    python bench/metrics_learner.py [--repeats N] [--busy N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

METRICS, STEPS = 10, 10_000
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

COMMAND = f"""\
import json, os
with open(os.path.join(os.environ["LOG_DIR"], "metrics.jsonl"), "w") as f:
    for step in range({STEPS}):
        point = {{"step": step}}
        for m in range({METRICS}):
            point[f"metric{{m}}"] = 1.0 / (step + m + 1)
        f.write(json.dumps(point) + "\\n")
        f.flush()
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def command_once(folder: str, follow: bool) -> dict[str, float]:
    """Run the logging command once; with ``follow``, the extractor follows it meanwhile."""
    from trainui.learner.metrics import Extractor

    run_dir = os.path.join(folder, "run")
    logs = os.path.join(run_dir, "logs")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(logs)
    said: list[str] = []
    extractor = Extractor(run_dir, None, {"LOG_DIR": logs}, run_dir, "", said.append)
    cpu0 = time.process_time()
    if follow:
        extractor.start()
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", COMMAND], env={**_env(), "LOG_DIR": logs})
    child.wait()
    wall = time.perf_counter() - started
    final = 0.0
    if follow:
        extractor.stop()
        final = time.perf_counter() - started - wall
        with open(os.path.join(run_dir, "metrics.jsonl"), "rb") as f:
            lines = sum(1 for _ in f)
        assert lines == METRICS * STEPS, (lines, said)
    return {"wall": wall, "final": final, "cpu": time.process_time() - cpu0}


def bench_follow(repeats: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"alone": [], "follow": [], "final": [], "cpu": []}
    with tempfile.TemporaryDirectory(prefix="trainui-bench-metrics-") as folder:
        command_once(folder, False)  # warm the page cache and Python's
        for i in range(repeats):
            for follow in (False, True) if i % 2 == 0 else (True, False):
                got = command_once(folder, follow)
                if follow:
                    results["follow"].append(got["wall"])
                    results["final"].append(got["final"])
                    results["cpu"].append(got["cpu"])
                else:
                    results["alone"].append(got["wall"])
    return results


def write_events(folder: str) -> None:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(folder, max_queue=1000, flush_secs=3600)
    for step in range(STEPS):
        for m in range(METRICS):
            writer.add_scalar(f"metric{m}", 1.0 / (step + m + 1), step)
    writer.close()


READERS = {
    "trainui (learner.metrics)": (
        "from trainui.learner.metrics import TensorboardSource, Tally",
        """
source = TensorboardSource.make(FOLDER, Tally(print))
out = []
source.poll(out, True)
while source.more:
    source.poll(out, False)
n = len(out)
""",
    ),
    "tbparse SummaryReader": (
        "from tbparse import SummaryReader",
        "n = len(SummaryReader(FOLDER).scalars)",
    ),
    "tensorboard EventAccumulator": (
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator",
        """
acc = EventAccumulator(FOLDER, size_guidance={"scalars": 0})
acc.Reload()
n = sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"])
""",
    ),
    "tensorboard event_file_loader": (
        "from tensorboard.backend.event_processing.event_file_loader import EventFileLoader",
        """
import glob
n = 0
for path in sorted(glob.glob(FOLDER + "/*tfevents*")):
    for event in EventFileLoader(path).Load():
        n += sum(1 for v in event.summary.value if v.tag.startswith("metric"))
""",
    ),
}


def read_once(folder: str, name: str) -> dict[str, float]:
    imports, body = READERS[name]
    probe = (
        "import json, time\nt0 = time.perf_counter()\n"
        + imports
        + f"\nt1 = time.perf_counter()\nFOLDER = {folder!r}\n"
        + body
        + "\nt2 = time.perf_counter()\n"
        + "print(json.dumps({'import': t1 - t0, 'read': t2 - t1, 'n': n}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=_env(), capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n"] == METRICS * STEPS, (name, got)
    return got


def bench_read(repeats: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="trainui-bench-tb-") as folder:
        write_events(folder)
        for name in READERS:
            read_once(folder, name)  # warm
        for _ in range(repeats):
            for name in READERS:
                got = read_once(folder, name)
                entry = results.setdefault(name, {"import": [], "read": []})
                entry["import"].append(got["import"])
                entry["read"].append(got["read"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-follow", action="store_true")
    parser.add_argument("--skip-read", action="store_true")
    parser.add_argument(
        "--busy", type=int, default=0, metavar="N",
        help="(a) with N other processes spinning meanwhile (a machine whose other cores work)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    med = statistics.median
    print(f"{METRICS * STEPS:,} points ({METRICS} metrics x {STEPS:,} steps), "
          f"median of {args.repeats}")  # fmt: skip
    if not args.skip_follow:
        spin = "import time\nwhile True: time.process_time()"
        hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(args.busy)]
        try:
            r = bench_follow(args.repeats)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        if args.busy:
            print(f"\n    ({args.busy} other process(es) spinning meanwhile)")
        alone, follow = med(r["alone"]), med(r["follow"])
        print("\n(a) JSONL, the command's wall time               median      min")
        for label, key in (("command alone", "alone"), ("command, extractor following", "follow")):
            print(f"    {label:43} {med(r[key]):7.3f} s {min(r[key]):7.3f} s")
        print(f"    ratio (goal <= 1.02x)                       {follow / alone:7.3f} x")
        print(f"    final pass after the command ended          {med(r['final']) * 1e3:7.1f} ms")
        print(f"    extractor CPU (learner process)             {med(r['cpu']):7.3f} s")
    if not args.skip_read:
        r2 = bench_read(args.repeats)
        ours = med(r2["trainui (learner.metrics)"]["read"])
        print("\n(b) TensorBoard events, read        import     read   read+import  vs trainui")
        for name, times in r2.items():
            imp, read = med(times["import"]), med(times["read"])
            print(f"    {name:30} {imp:6.3f} s {read:6.3f} s {imp + read:8.3f} s"
                  f" {read / ours:8.1f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
