"""Issue 18's figure: submit → first line of the command in each runtime (host, venv,
container), against the same command started directly in that runtime, in the same run:
what trainui adds on top of the runtime's own start (goal ≤ 30 ms).

    python bench/frameworks.py [--runs 15] [--only host venv container]

- host: `date +%s.%N` (trainui's run) against `sh -c 'date +%s.%N'` started by this process;
- venv: `python -c ...` printing the time, in a venv, against `VENV/bin/python -c ...`;
- container: `stamp` (a static program printing the time: busybox's date has no %N) in an
  image made from a tarball as the tests make it, against `podman run --rm --init IMAGE stamp`.
Each trainui figure is the client's submit to the command's first line (its printed time), on
a warm, idle service (bench/runs.py's method); each anchor is the start of the process to the
same printed time. The two are taken turn about (a run through trainui, then the anchor). The
sandbox is on where bubblewrap works (host and venv runs are sandboxed, as by default); a
container run is not (isolated by its runtime).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(1, str(ROOT / "tests" / "functional_tests"))

from _common import row, stop_home  # noqa: E402
from runs import Bench, submit_latencies  # noqa: E402

PY_STAMP = "import time; print('%.6f' % time.time())"


def direct(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds from starting ``argv`` to the time it prints (its first line)."""
    t0 = time.time()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    return float(out.split()[0]) - t0


def catalogue(tmp: Path, text: str) -> None:
    path = tmp / "frameworks.toml"
    path.write_text(text)
    os.environ["TRAINUI_FRAMEWORKS"] = str(path)


async def measure(
    bench: Bench, framework: str, command: str, runs: int, anchor
) -> tuple[list[float], list[float]]:
    """``runs`` of ``command`` through trainui in ``framework``, each followed by one start of
    ``anchor()`` (the same command started directly): turn about, so that a machine whose
    speed drifts during the bench (these are shared) slows both alike."""
    original = bench.manifest

    def manifest(cmd: str, name: str = "bench") -> bytes:
        text = original(command, name).decode()
        return text.replace("name: sh,", f"name: {framework},").encode()

    bench.manifest = manifest  # the same measurement as bench/runs.py, in this framework
    samples: dict[str, list[float]] = {}
    direct_samples: list[float] = []
    try:
        for _ in range(runs):
            for key, values in (await submit_latencies(bench, 1)).items():
                samples.setdefault(key, []).extend(values)
            direct_samples.append(anchor())
        steps = ", ".join(
            f"{k.split(' (')[0]} {statistics.median(v) * 1e3:.1f}" for k, v in samples.items()
        )
        print(f"{framework} steps, p50 ms: {steps}", flush=True)
        return samples["total"], direct_samples
    finally:
        bench.manifest = original


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--only", nargs="*", default=["host", "venv", "container"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainui-bench-fw-") as tmp_name:
        tmp = Path(tmp_name)
        venv = tmp / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        podman = None
        why_not = None
        if "container" in args.only:
            from podman_env import IMAGE, Podman, PodmanUnavailable

            try:
                (tmp / "podman").mkdir()
                podman = Podman(tmp / "podman").start()
                os.environ.update(podman.env)
            except PodmanUnavailable as error:
                why_not = str(error)
        catalogue(
            tmp,
            f'[[framework]]\nname = "onhost"\nversions = ["*"]\nruntime = "host"\n'
            f'[[framework]]\nname = "invenv"\nversions = ["*"]\nruntime = "venv"\npath = "{venv}"\n'
            f'[[framework]]\nname = "incontainer"\nversions = ["*"]\nruntime = "container"\n'
            f'image = "localhost/trainui-test:1"\n',
        )
        bench = Bench(tmp)
        results: list[tuple[str, list[float], list[float]]] = []
        try:
            if "host" in args.only:
                ours, anchor = await measure(
                    bench, "onhost", "date +%s.%N", args.runs,
                    lambda: direct(["sh", "-c", "date +%s.%N"]),
                )  # fmt: skip
                results.append(("host", ours, anchor))
            if "venv" in args.only:
                ours, anchor = await measure(
                    bench, "invenv", f'python -c "{PY_STAMP}"', args.runs,
                    lambda: direct([str(venv / "bin" / "python"), "-c", PY_STAMP]),
                )  # fmt: skip
                results.append(("venv", ours, anchor))
            if "container" in args.only and podman is not None:
                # busybox's date has no %N: the image's /bin/stamp prints the time
                env = {**os.environ, **podman.env}
                ours, anchor = await measure(
                    bench, "incontainer", "stamp", args.runs,
                    lambda: direct(["podman", "run", "--rm", "--init", IMAGE, "stamp"], env),
                )  # fmt: skip
                results.append(("container (podman)", ours, anchor))
        finally:
            bench.stop()
            stop_home(bench.home)
            if podman is not None:
                podman.stop()
    print(f"\nsubmit -> first line, {args.runs} runs each, against the runtime's own start")
    print(f"{'':44} {'p50':>9} {'p95':>9}")
    for name, ours, anchor in results:
        print(row(f"{name}: trainui", ours))
        print(row(f"{name}: anchor, started directly", anchor))
        added = (statistics.median(ours) - statistics.median(anchor)) * 1e3
        print(f"  {name}: added by trainui, p50: {added:.1f} ms (goal <= 30 ms)")
    if why_not:
        print(f"container: not measured: {why_not}")


if __name__ == "__main__":
    asyncio.run(main())
