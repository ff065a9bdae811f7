"""Issue 8's figure: submit -> running through trainui on Ray, against Ray's own Job API.

Both sides run the same command (`date +%s.%N > STAMP; sleep 1`: the moment the training
command starts) on the same private Ray head (4 pretend GPUs), one run at a time: trainui
through its client API and a warm service with the ray launcher (submit, queue, the run's Ray
package made and uploaded, Ray job, learner copying the package, staging and unpacking,
command), the anchor with a direct `POST /api/jobs/` asking for one GPU, alone and then with a
package of its own uploaded first (`GET`/`PUT /api/packages/gcs/...`, as trainui and Ray's
JobSubmissionClient do) as its working_dir and trainui's environment. The difference is
trainui's overhead on top of Ray. A last row is how long after the command started trainui
showed the run `running`: the status record's way through Ray's log and the service's mirror of
it (the client looks every 20 ms). Usage:

    python bench/ray.py [--runs 10]

Everything happens in temporary folders; the head and the service are stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import signal
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# in place of this script's folder, where `ray` would name this file, not the Ray package
sys.path.insert(1, str(ROOT / "tests" / "functional_tests"))

from _common import manifest  # noqa: E402
from _common import row as _row  # noqa: E402
from ray_head import RayHead, ray_installed  # noqa: E402


def row(name: str, samples: list[float]) -> str:
    return _row(name, samples, width=56, digits=0)


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
            "command running -> trainui shows it running",
        )
    }
    async with Client() as client:
        await client.health()  # a warm service, as on a machine in use
        for i in range(runs):
            stamp = tmp / f"trainui.{i}"
            t0 = time.time()
            answer = await client.submit(str(model), manifest(f"date +%s.%N > {stamp}; sleep 1"))
            t_response = time.time()
            shown = None
            while True:
                status = (await client.get_run(answer["model_id"]))["status"]
                if status == "running" and shown is None:
                    shown = time.time()
                if status in ("completed", "failed", "halted"):
                    break
                await asyncio.sleep(0.02)
            first = await wait_stamp(stamp)
            if shown is None:
                raise RuntimeError(f"{answer['model_id']} was never shown running: {status}")
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
            samples["command running -> trainui shows it running"].append(shown - first)
    return samples


def package() -> bytes:
    """A package the size of a small run's (learner.json, model.zip, manifest.yml), new each
    time as a run's is (its nonce), so that Ray unpacks it anew."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("learner.json", json.dumps({"nonce": uuid.uuid4().hex, "pad": "x" * 600}))
        zf.writestr("model.zip", os.urandom(120))
        zf.writestr("manifest.yml", manifest("true"))
    return buffer.getvalue()


async def through_ray(
    head: RayHead, tmp: Path, runs: int, env_vars: dict | None, with_package: bool = False
) -> list[float]:
    import httpx

    samples = []
    async with httpx.AsyncClient(base_url=head.address, timeout=30) as client:
        for i in range(runs):
            stamp = tmp / f"ray.{uuid.uuid4().hex[:8]}.{i}"
            sid = f"bench-{uuid.uuid4().hex[:12]}"
            job = {
                "entrypoint": f"date +%s.%N > {stamp}; sleep 1",
                "submission_id": sid,
                "entrypoint_num_gpus": 1,
            }
            if env_vars:
                job["runtime_env"] = {"env_vars": env_vars}
            data = package() if with_package else b""
            t0 = time.time()
            if with_package:
                path = f"/api/packages/gcs/_ray_pkg_{hashlib.sha1(data).hexdigest()}.zip"
                if (await client.get(path)).status_code != 200:
                    (await client.put(path, content=data)).raise_for_status()
                job.setdefault("runtime_env", {})["working_dir"] = "gcs://" + path.rsplit("/")[-1]
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
        from trainui.service.launchers.ray import _shipped_environment

        shipped = {**_shipped_environment(os.environ), "RAY_JOB_STOP_WAIT_TIME_S": "310"}
        anchor_env = asyncio.run(through_ray(head, tmp, args.runs, shipped, with_package=True))
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
    print(row("anchor: the same, its package uploaded, trainui's env", anchor_env))
    overhead = [a - b for a, b in zip(sorted(trainui["total: submit -> command running"]),
                                      sorted(anchor), strict=True)]  # fmt: skip
    print(row("trainui's overhead (total - anchor, by rank)", overhead))
    overhead = [a - b for a, b in zip(sorted(trainui["total: submit -> command running"]),
                                      sorted(anchor_env), strict=True)]  # fmt: skip
    print(row("trainui's overhead (total - anchor with package)", overhead))
    return 0


if __name__ == "__main__":
    sys.exit(main())
