"""Issue 19's figures: checkpoint copies and restarts.

    python bench/resilience.py [--gib 1] [--rounds 3] [--restarts 10]

1. A 1 GiB CHECKPOINT_DIR (100 files of 10 MiB) of which 10% changes between two copies: the
   bytes each copy sends (goal: only what changed), against the folder's size; and a
   CPU-bound command's time while the copies run beside it, against the same command alone
   (goal: ≤ 2% slower). The copies are the learner's (``trainui.learner.checkpoints``) into a
   local bucket, the command a separate process.
2. A run whose first attempt fails at once: the time from its crash (the time its command
   printed last) to the next attempt's first line, through the real service, the back-off set
   to 0 (goal: ≤ 1 s plus the back-off), against the first attempt's own submit → first line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _common import manifest, stop_home  # noqa: E402

from trainui.learner.checkpoints import Checkpoints  # noqa: E402

MIB = 1 << 20
WORK = (
    "import hashlib\nh = b'x' * 4096\n"
    "for _ in range({n}):\n    h = hashlib.sha256(h).digest() * 128\n"
)
INTERVAL = 1.0  # seconds between two copies while the command runs


class _Learner:
    """What the checkpoint copies read of a learner: its run, folders, results bucket."""

    def __init__(self, tmp: Path) -> None:
        self.model_id = "training-BENCH0000"
        self.run_dir = str(tmp / "run")
        self.home = str(tmp / "home")
        self.dirs = {"CHECKPOINT_DIR": str(tmp / "checkpoints")}
        self.config = {"results": {"type": "local", "bucket": "results", "connection": {}}}
        os.makedirs(self.run_dir)
        os.makedirs(os.path.join(self.home, "buckets", "results"))
        os.makedirs(self.dirs["CHECKPOINT_DIR"])

    def _log(self, text: str) -> None:
        pass


def command_seconds(n: int) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", WORK.format(n=n)], check=True)
    return time.monotonic() - started


def checkpoint_figures(tmp: Path, gib: float, rounds: int) -> None:
    learner = _Learner(tmp)
    folder = Path(learner.dirs["CHECKPOINT_DIR"])
    files = max(10, int(gib * 100))
    block = os.urandom(10 * MIB)
    for i in range(files):
        (folder / f"shard-{i:03d}.bin").write_bytes(block)
    old = time.time() - 60  # written a while ago: settled
    for path in folder.iterdir():
        os.utime(path, (old, old))
    copies = Checkpoints(learner, interval=None)
    started = time.monotonic()
    first = copies.copy()
    took = time.monotonic() - started
    print(f"\nfirst copy: {first[0]} files, {first[1] / MIB:,.0f} MiB in {took:.2f} s")
    sent = []
    for r in range(rounds):
        for i in range(0, files, 10):  # 10% of the files change
            path = folder / f"shard-{(i + r) % files:03d}.bin"
            path.write_bytes(os.urandom(MIB) + block[MIB:])
            os.utime(path, (old + r + 1, old + r + 1))
        t = time.monotonic()
        sent.append((copies.copy(), time.monotonic() - t))
    total = files * 10 * MIB
    print(f"{'copy after 10% changed':34} {'files':>6} {'sent MiB':>9} {'of MiB':>8} {'s':>6}")
    for (count, size), seconds in sent:
        print(f"{'':34} {count:>6} {size / MIB:>9,.0f} {total / MIB:>8,.0f} {seconds:>6.2f}")
    # the command alone, then with copies going on beside it (each round rewrites 10%)
    n = 400_000  # a few seconds of CPU
    alone = [command_seconds(n) for _ in range(3)]
    stop = threading.Event()

    def keep_copying() -> None:
        r = rounds
        while not stop.is_set():
            r += 1
            for i in range(0, files, 10):
                path = folder / f"shard-{(i + r) % files:03d}.bin"
                path.write_bytes(block)
                os.utime(path, (old + r, old + r))
            copies.copy()
            stop.wait(INTERVAL)

    thread = threading.Thread(target=keep_copying, daemon=True)
    thread.start()
    beside = [command_seconds(n) for _ in range(3)]
    stop.set()
    thread.join()
    a, b = statistics.median(alone), statistics.median(beside)
    print(
        f"\nCPU-bound command, median of 3: alone {a:.2f} s, while 10% is rewritten and copied"
        f" every {INTERVAL:g} s beside it: {b:.2f} s"
    )
    print(f"  slowdown {100 * (b - a) / a:+.1f}% (goal <= 2%)")


def restart_figures(tmp: Path, runs: int) -> None:
    home = tmp / "service-home"
    env = {
        **os.environ,
        "TRAINUI_HOME": str(home),
        "TRAINUI_GPUS": "none",
        "TRAINUI_RESTART_BACKOFF": "0",
        "TRAINUI_IDLE_EXIT": "120",
        "PYTHONPATH": str(ROOT / "src"),
    }
    (home / "buckets" / "data").mkdir(parents=True)
    (home / "buckets" / "results").mkdir(parents=True)
    model = tmp / "model"
    model.mkdir()
    (model / "t.py").write_text("")
    text = (
        manifest('date +%s.%N; [ "$TRAINING_ATTEMPT" -ge 2 ] || exit 1', "restart")
        .decode()
        .replace("resource: small", "resource: small\n    max_restarts: 1")
    )
    path = tmp / "restart.yml"
    path.write_text(text)
    gaps, firsts = [], []
    try:
        for _ in range(runs):
            t0 = time.time()
            out = subprocess.run(
                [sys.executable, "-m", "trainui", "train", str(model), str(path)],
                env=env, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            model_id = out.strip().splitlines()[-1].split("'")[1]
            log = home / "runs" / model_id / "training-log.txt"
            deadline = time.monotonic() + 60
            while True:
                stamps = [float(x) for x in log.read_text().splitlines() if x[:1].isdigit()]
                if len(stamps) >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            firsts.append(stamps[0] - t0)
            gaps.append(stamps[1] - stamps[0])
    finally:
        stop_home(home)
    print(f"\nrestart, {runs} runs, the back-off 0 (p50, max, s):")
    print(
        f"  crash -> the next attempt's first line: {statistics.median(gaps):.3f},"
        f" {max(gaps):.3f} (goal <= 1 s + back-off)"
    )
    print(f"  anchor: the first attempt's submit -> first line: {statistics.median(firsts):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--restarts", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainui-bench-resilience-") as name:
        tmp = Path(name)
        checkpoint_figures(tmp / "copies", args.gib, args.rounds)
        restart_figures(tmp, args.restarts)


if __name__ == "__main__":
    main()
