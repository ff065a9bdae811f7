"""Issue 16's figures in one run: the three parts one after the other, each printing its table.

    python bench/metrics.py [--quick]

1. bench/metrics_learner.py: a command logging 100,000 points (10 metrics x 10,000 steps) as
   fast as it can, with the learner's extraction following it against the same command alone
   (goal <= 1.02x); the same points read as TensorBoard events: trainui's extraction against
   tbparse, TensorBoard's EventAccumulator and its event_file_loader;
2. bench/metrics_service.py: points/s ingested by the service; ``trainui metrics ID --json``
   against tbparse on the same points as TensorBoard events (goal >= 5x faster);
3. bench/metrics_tui.py: the metrics view drawn with 100,000 points (goal <= 100 ms), compare of
   20 runs (goal <= 300 ms), the TUI's RSS with 10,000 runs and 100,000 points (goal <= 150 MB),
   key latency while a chart updates live (goal p95 <= 100 ms).

Each part runs in its own process (a fresh interpreter: import costs count as a user pays
them) on a quiet machine; ``--quick`` takes fewer repeats and 1,000 runs instead of 10,000.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 1,000 runs")
    args = parser.parse_args()
    repeats = "3" if args.quick else "7"
    runs = "1000" if args.quick else "10000"
    parts = [
        ("metrics_learner.py", "--repeats", repeats),
        ("metrics_service.py", "--repeat", "3" if args.quick else "5"),
        ("metrics_tui.py", "--repeat", "3" if args.quick else "5", "--runs", runs),
    ]
    failed = 0
    for script, *flags in parts:
        print(f"\n== bench/{script} {' '.join(flags)}", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / script), *flags])
        print(f"== bench/{script}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        failed |= code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
