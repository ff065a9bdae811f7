"""How light is `trainui validate`? Wall time against `python3 -c 'import yaml'`, same run.

Goal (issue 2): at most 2x the bare import. Usage: python bench/validate_startup.py [RUNS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(argv: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    trainui = shutil.which("trainui", path=str(BIN)) or shutil.which("trainui")
    if trainui is None:
        sys.exit("trainui is not installed in this environment (pip install -e .)")
    # An installed package has its bytecode compiled; an editable install under
    # PYTHONDONTWRITEBYTECODE=1 (set on these machines) would recompile every module each run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    seed = str(ROOT / "examples" / "seed-s3.yml")
    cases = {
        "python3 -c 'import yaml' (anchor)": [sys.executable, "-c", "import yaml"],
        "trainui --version": [trainui, "--version"],
        "trainui validate seed-s3.yml": [trainui, "validate", seed],
        "trainui validate demo + model dir": [
            trainui,
            "validate",
            str(ROOT / "examples" / "demo" / "manifest.yml"),
            str(ROOT / "examples" / "demo" / "model"),
        ],
    }
    results = {}
    for name, argv in cases.items():
        timed(argv, 3)  # warm the page cache
        results[name] = timed(argv, runs)
    anchor = statistics.median(results["python3 -c 'import yaml' (anchor)"])
    print(f"{runs} runs each, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'command':40} {'median ms':>10} {'p90 ms':>8} {'x anchor':>9}")
    for name, samples in results.items():
        median = statistics.median(samples)
        p90 = sorted(samples)[int(0.9 * (len(samples) - 1))]
        print(f"{name:40} {median * 1e3:10.1f} {p90 * 1e3:8.1f} {median / anchor:9.2f}")
    ratio = statistics.median(results["trainui validate seed-s3.yml"]) / anchor
    print(f"goal: validate <= 2.0x anchor -> {'met' if ratio <= 2 else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
