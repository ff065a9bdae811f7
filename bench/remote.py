"""Issue 5's figures: the service over TCP.

- submit → command running over TCP (p50/p95), against Ray Jobs' REST API (`POST /api/jobs/` →
  the entrypoint running) on a private Ray head started here (when `ray` is installed);
- log delivery latency: a line written by the run → received by a remote follower;
- `GET /v3/models` with 10,000 runs: a page of 100, and the whole history;
- 200 concurrent followers: the service's CPU and RSS.

Usage: python bench/remote.py [--runs 30] [--history 10000] [--followers 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
from _common import free_port, manifest, stop_home
from _common import row as _row

ROOT = Path(__file__).resolve().parents[1]


def row(name: str, samples: list[float]) -> str:
    return _row(name, samples, width=52)


class Service:
    def __init__(self, tmp: Path, slots: int) -> None:
        self.home = tmp / "home"
        (self.home / "buckets" / "data").mkdir(parents=True)
        self.env = {
            **os.environ,
            "TRAINUI_HOME": str(self.home),
            "TRAINUI_GPUS": "none",
            "TRAINUI_CPU_SLOTS": str(slots),
            # the followers all come from 127.0.0.1
            "TRAINUI_MAX_CONNECTIONS_PER_ADDRESS": "1024",
        }
        token = subprocess.run(
            [sys.executable, "-m", "trainui", "token", "add", "bench"],
            env=self.env, capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trainui", "serve", "--port", str(self.port)], env=self.env
        )
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/v3/health").status_code == 200:
                    break
            time.sleep(0.05)
        self.zip = tmp / "model.zip"
        with zipfile.ZipFile(self.zip, "w") as zf:
            zf.writestr("train.py", "print('hello')\n")

    async def submit(self, http: httpx.AsyncClient, command: str, name: str = "bench") -> str:
        files = {
            "model_definition": ("model.zip", self.zip.read_bytes(), "application/zip"),
            "manifest": ("manifest.yml", manifest(command, name), "application/yaml"),
        }
        response = await http.post("/v3/models", files=files)
        response.raise_for_status()
        return response.json()["model_id"]

    def stop(self) -> None:
        stop_home(self.home, self.process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def usage(self) -> tuple[float, float]:
        """CPU seconds used so far and RSS in MB, of the service process."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(stat[11]) + int(stat[12])) / ticks
        rss = next(
            int(line.split()[1])
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS")
        )
        return cpu, rss / 1024


async def submit_latency(service: Service, tmp: Path, runs: int) -> list[float]:
    samples = []
    async with httpx.AsyncClient(base_url=service.url, headers=service.headers) as http:
        for i in range(runs):
            stamp = tmp / f"stamp.{i}"
            t0 = time.time()
            model_id = await service.submit(http, f"date +%s.%N > {stamp}")
            while not stamp.exists() or not stamp.read_text().strip():
                await asyncio.sleep(0.002)
            samples.append(float(stamp.read_text()) - t0)
            while (await http.get(f"/v3/models/{model_id}")).json()["status"] != "completed":
                await asyncio.sleep(0.01)
    return samples


async def log_delivery(service: Service, lines: int = 200) -> list[float]:
    command = (
        'python3 -c "import time\nfor i in range('
        f"{lines}):\n print('stamp', repr(time.time()), flush=True); time.sleep(0.02)\""
    )
    samples = []
    async with httpx.AsyncClient(
        base_url=service.url, headers=service.headers, timeout=None
    ) as http:
        model_id = await service.submit(http, command, "printer")
        buffer = b""
        async with http.stream(
            "GET", f"/v3/models/{model_id}/logs", params={"follow": "true"}
        ) as response:
            async for chunk in response.aiter_raw():
                now = time.time()
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    if line.startswith(b"stamp "):
                        samples.append(now - float(line.split()[1]))
    return samples


async def listing(service: Service, history: int) -> tuple[list[float], list[float], float]:
    async with httpx.AsyncClient(
        base_url=service.url, headers=service.headers, timeout=None
    ) as http:
        # behind a blocker the history stays pending: a quiet service, measured for its list
        blocker = await service.submit(http, "sleep 100000", "blocker")
        t0 = time.perf_counter()
        for i in range(history):
            await service.submit(http, "true", f"h{i}")
        fill = time.perf_counter() - t0
        page, whole = [], []
        for _ in range(20):
            t = time.perf_counter()
            (await http.get("/v3/models", params={"limit": 100, "offset": history // 2})).json()
            page.append(time.perf_counter() - t)
        for _ in range(5):
            t = time.perf_counter()
            body = (await http.get("/v3/models")).json()
            whole.append(time.perf_counter() - t)
        assert body["count"] >= history
        await http.delete(f"/v3/models/{blocker}")
    return page, whole, fill


async def followers(service: Service, count: int) -> tuple[float, float, float]:
    command = (
        "python3 -c \"import time\nfor i in range(600):\n print('line', i, 'x' * 60, flush=True);"
        ' time.sleep(0.01)"'
    )
    async with httpx.AsyncClient(
        base_url=service.url,
        headers=service.headers,
        timeout=None,
        limits=httpx.Limits(max_connections=count + 10),
    ) as http:
        model_id = await service.submit(http, command, "followed")

        async def follow() -> int:
            size = 0
            async with http.stream(
                "GET", f"/v3/models/{model_id}/logs", params={"follow": "true"}
            ) as response:
                async for chunk in response.aiter_raw():
                    size += len(chunk)
            return size

        cpu0, _ = service.usage()
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(follow()) for _ in range(count)]
        peak = 0.0
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.5)
            peak = max(peak, service.usage()[1])
        sizes = {t.result() for t in tasks}
        wall = time.perf_counter() - t0
        cpu1, _ = service.usage()
    assert len(sizes) == 1, f"followers received different logs: {sizes}"
    return (cpu1 - cpu0) / wall, peak, wall


def ray_latency(tmp: Path, runs: int) -> list[float] | None:
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        return None
    ports = {name: free_port() for name in ("gcs", "dash", "client", "agent")}
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray wants a short path
    head = subprocess.run(
        [ray, "start", "--head", "--num-cpus", "2", "--num-gpus", "4",
         "--node-ip-address", "127.0.0.1", "--port", str(ports["gcs"]),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(ports["dash"]),
         "--ray-client-server-port", str(ports["client"]),
         "--dashboard-agent-listen-port", str(ports["agent"]),
         "--temp-dir", str(temp), "--disable-usage-stats"],
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{ports['dash']}"
    samples = []
    try:
        if head.returncode != 0:
            print("ray start failed:", head.stderr[-500:])
            return None
        for i in range(runs):
            stamp = tmp / f"ray.{i}"
            t0 = time.time()
            response = httpx.post(
                f"{url}/api/jobs/", json={"entrypoint": f"date +%s.%N > {stamp}"}, timeout=30
            )
            response.raise_for_status()
            deadline = time.time() + 60
            while (not stamp.exists() or not stamp.read_text().strip()) and time.time() < deadline:
                time.sleep(0.005)
            samples.append(float(stamp.read_text()) - t0)
    finally:
        # stop our head by PID, never `ray stop` (it would stop every Ray on the machine)
        for pidfile in temp.rglob("*.pid"):
            with contextlib.suppress(Exception):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(Exception):
                    if str(temp) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                        os.kill(int(proc.name), signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--followers", type=int, default=200)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    with tempfile.TemporaryDirectory(prefix="trainui-bench-") as name:
        tmp = Path(name)
        service = Service(tmp, slots=1)
        try:
            print(f"trainui over TCP, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
            print(f"{'':52} {'p50':>9} {'p95':>9}")
            latency = await submit_latency(service, tmp, args.runs)
            print(row(f"submit -> command running, trainui over TCP ({args.runs})", latency))
            ray = ray_latency(tmp, min(args.runs, 10))
            if ray:
                print(row(f"anchor: Ray Jobs REST API ({len(ray)})", ray))
                ratio = statistics.median(latency) / statistics.median(ray)
                print(f"{'  ratio (goal: under 0.1)':52} {ratio:9.3f}")
            else:
                print("anchor: Ray not installed (pip install 'ray[default]')")
            delivery = await log_delivery(service)
            print(row("log line written -> received by a TCP follower", delivery))
            cpu, rss, wall = await followers(service, args.followers)
            print(
                f"{args.followers} followers of one run ({wall:.1f} s): service CPU "
                f"{cpu * 100:.0f}% of a core, peak RSS {rss:.0f} MB"
            )
            page, whole, fill = await listing(service, args.history)
            print(f"history of {args.history:,} pending runs submitted in {fill:.1f} s")
            print(row("GET /v3/models?limit=100 (goal p50 < 20 ms)", page))
            print(row(f"GET /v3/models, all {args.history:,} (goal < 1 s)", whole))
        finally:
            service.stop()


if __name__ == "__main__":
    asyncio.run(main())
