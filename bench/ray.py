"""Issue 8's figure: submit -> running through trainui on Ray, against Ray's own Job API.

Both sides run the same command (`date +%s.%N > STAMP`: the moment the training command
starts) on the same private Ray head (4 pretend GPUs), one run at a time: trainui through its
client API and a warm service with the ray launcher (submit, queue, Ray job, learner staging and
unpacking, command), the anchor with a direct `POST /api/jobs/` asking for one GPU. The
difference is trainui's overhead on top of Ray. Usage:

    python bench/ray.py [--runs 10]

Everything happens in temporary folders; the head and the service are stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# in place of this script's folder, where `ray` would name this file, not the Ray package
sys.path[:1] = [str(ROOT / "tests" / "functional_tests")]

from ray_head import RayHead, ray_installed  # noqa: E402


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(name: str, samples: list[float]) -> str:
    return f"{name:56} {statistics.median(samples) * 1e3:9.0f} {pct(samples, 0.95) * 1e3:9.0f} ms"


def manifest(command: str) -> bytes:
    return textwrap.dedent(
        f"""\
        model_definition:
          name: bench
          framework: {{name: sh, version: "1"}}
          execution:
            command: {json.dumps(command)}
            resource: small
        training_data:
          connection: {{}}
          source: {{bucket: data, type: local}}
        training_results:
          connection: {{}}
          target: {{bucket: results, type: local}}
        """
    ).encode()


async def wait_stamp(stamp: Path, timeout: float = 120.0) -> float:
    deadline = time.monotonic() + timeout
    while not stamp.exists() or not stamp.read_text().strip():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stamp} never appeared")
        await asyncio.sleep(0.002)
    return float(stamp.read_text())


async def through_trainui(tmp: Path, runs: int) -> dict[str, list[float]]:
    from trainui.client import Client

    model = tmp / "model.zip"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("train.py", "")
    samples: dict[str, list[float]] = {
        k: []
        for k in (
            "request (incl. scheduling)",
            "Ray job start (to the learner's start)",
            "learner: stage, unpack, command start",
            "total: submit -> command running",
        )
    }
    async with Client() as client:
        await client.health()  # a warm service, as on a machine in use
        for i in range(runs):
            stamp = tmp / f"trainui.{i}"
            t0 = time.time()
            answer = await client.submit(str(model), manifest(f"date +%s.%N > {stamp}"))
            t_response = time.time()
            first = await wait_stamp(stamp)
            while (await client.get_run(answer["model_id"]))["status"] not in (
                "completed",
                "failed",
                "halted",
            ):
                await asyncio.sleep(0.02)
            status_file = tmp / "home" / "buckets" / "results" / answer["model_id"]
            timings = json.loads((status_file / "training-status.json").read_text())["timings"]
            samples["request (incl. scheduling)"].append(t_response - t0)
            samples["Ray job start (to the learner's start)"].append(
                timings["learner_started"] - t_response
            )
            samples["learner: stage, unpack, command start"].append(
                first - timings["learner_started"]
            )
            samples["total: submit -> command running"].append(first - t0)
    return samples


async def through_ray(head: RayHead, tmp: Path, runs: int, env_vars: dict | None) -> list[float]:
    import httpx

    samples = []
    async with httpx.AsyncClient(base_url=head.address, timeout=30) as client:
        for i in range(runs):
            stamp = tmp / f"ray.{uuid.uuid4().hex[:8]}.{i}"
            sid = f"bench-{uuid.uuid4().hex[:12]}"
            job = {
                "entrypoint": f"date +%s.%N > {stamp}",
                "submission_id": sid,
                "entrypoint_num_gpus": 1,
            }
            if env_vars:
                job["runtime_env"] = {"env_vars": env_vars}
            t0 = time.time()
            (await client.post("/api/jobs/", json=job)).raise_for_status()
            samples.append(await wait_stamp(stamp) - t0)
            while (await client.get(f"/api/jobs/{sid}")).json()["status"] not in (
                "SUCCEEDED",
                "FAILED",
                "STOPPED",
            ):
                await asyncio.sleep(0.02)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if not ray_installed():
        print("ray is not installed: pip install 'ray[default]'", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="trainui-bench-ray-"))
    home = tmp / "home"
    (home / "buckets" / "data").mkdir(parents=True)
    print("starting a private Ray head (4 pretend GPUs) ...", file=sys.stderr)
    t = time.monotonic()
    head = RayHead(num_gpus=4, num_cpus=2).start()
    print(f"  up in {time.monotonic() - t:.1f} s at {head.address}", file=sys.stderr)
    os.environ.update(
        TRAINUI_HOME=str(home),
        TRAINUI_GPUS="none",
        TRAINUI_IDLE_EXIT="120",
        TRAINUI_LAUNCHER="ray",
        TRAINUI_RAY_ADDRESS=head.address,
    )
    try:
        # one of each first: the head's first job starts its worker pool
        asyncio.run(through_ray(head, tmp, 1, None))
        trainui = asyncio.run(through_trainui(tmp, args.runs))
        anchor = asyncio.run(through_ray(head, tmp, args.runs, None))
        from trainui.service.ray import _shipped_environment

        shipped = {**_shipped_environment(os.environ), "RAY_JOB_STOP_WAIT_TIME_S": "310"}
        anchor_env = asyncio.run(through_ray(head, tmp, args.runs, shipped))
    finally:
        with contextlib.suppress(Exception):
            pid = int((home / "service.lock").read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
        head.stop()
    print(f"\nsubmit -> training command running, {args.runs} runs each, one at a time")
    print(f"{'':56} {'p50':>9} {'p95':>9}")
    for name, values in trainui.items():
        print(row(f"trainui on Ray: {name}", values))
    print(row("anchor: POST /api/jobs/ (same command, 1 GPU)", anchor))
    print(row("anchor: the same with trainui's runtime_env", anchor_env))
    overhead = [a - b for a, b in zip(sorted(trainui["total: submit -> command running"]),
                                      sorted(anchor), strict=True)]  # fmt: skip
    print(row("trainui's overhead (total - anchor, by rank)", overhead))
    return 0


if __name__ == "__main__":
    sys.exit(main())
