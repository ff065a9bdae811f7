"""A private Ray head for tests and benchmarks: pretend GPUs, free ports, its own temp dir.

Never ``ray stop``: it stops every Ray on the machine. This head is stopped by PID: every process
whose command line names its temp dir (GCS, raylet, dashboard, monitors), everything below them
(workers, job supervisors, drivers, what those started) and the processes of its raylet.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class RayHead:
    """``ray start --head`` on loopback; ``address`` is its dashboard (the Job API)."""

    def __init__(self, num_gpus: int = 4, num_cpus: int = 2) -> None:
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        # short: Ray's socket paths live under it and have a length limit
        self.temp_dir = tempfile.mkdtemp(prefix="trh", dir="/tmp")
        self.address = ""
        self.gcs_port = 0
        self.log = os.path.join(self.temp_dir, "ray-start.log")

    @property
    def node_home(self) -> str:
        """The trainui home of the head's workers (the learners on it): their dataset cache
        and private run folders."""
        return os.path.join(self.temp_dir, "node-home")

    def start(self, timeout: float = 90.0) -> RayHead:
        gcs, dashboard, client, agent, agent_grpc, env_agent, metrics = free_ports(7)
        ray = os.path.join(os.path.dirname(sys.executable), "ray")
        command = [
            ray, "start", "--head",
            "--num-cpus", str(self.num_cpus), "--num-gpus", str(self.num_gpus),
            "--node-ip-address", "127.0.0.1", "--port", str(gcs),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
            "--ray-client-server-port", str(client),
            "--dashboard-agent-listen-port", str(agent),
            "--dashboard-agent-grpc-port", str(agent_grpc),
            "--runtime-env-agent-port", str(env_agent),
            "--metrics-export-port", str(metrics),
            "--temp-dir", self.temp_dir, "--disable-usage-stats",
        ]  # fmt: skip
        env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",  # the cluster report lags less
            # as on a cluster's workers: trainui installed in the Python their jobs find first
            # on PATH, and a trainui home of their own (not the service's)
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
            "TRAINUI_HOME": self.node_home,
        }
        self.address = f"http://127.0.0.1:{dashboard}"
        self.gcs_port = gcs
        with open(self.log, "ab") as log:
            result = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout
            )
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed ({result.returncode}); see {self.log}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("/api/version") is not None and self._nodes_with_gpus():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Ray dashboard did not answer on {self.address}")

    def _nodes_with_gpus(self) -> bool:
        nodes = self.get("/api/v0/nodes") or {}
        found = nodes.get("data", {}).get("result", {}).get("result", [])
        return any(n.get("resources_total", {}).get("GPU") for n in found)

    def get(self, path: str):
        """The dashboard's JSON answer, None for 404 or no answer."""
        try:
            with urllib.request.urlopen(self.address + path, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def job(self, submission_id: str) -> dict | None:
        return self.get(f"/api/jobs/{submission_id}")

    def alive(self) -> bool:
        return bool(self.address) and self.get("/api/version") is not None

    def pids(self) -> set[int]:
        """The head's processes and everything below them."""
        table: dict[int, tuple[int, list[str], bytes]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read().decode("ascii", "replace")
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().decode("utf-8", "replace").split("\0")
                with open(f"/proc/{entry}/environ", "rb") as f:
                    environ = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields[0] in ("Z", "X"):  # ended; only waits to be collected
                continue
            table[int(entry)] = (int(fields[1]), cmdline, environ)
        gcs = f":{self.gcs_port}"

        def ours(args: list[str]) -> bool:
            # the temp dir, or the GCS address (the Ray client server names only that)
            return any(
                self.temp_dir in arg or ("address=" in arg and arg.endswith(gcs)) for arg in args
            )

        roots = {pid for pid, (_, cmdline, _) in table.items() if ours(cmdline)}
        roots.discard(os.getpid())
        raylets = {f"RAY_RAYLET_PID={pid}".encode() for pid in roots}
        for pid, (_, _, environ) in table.items():
            if any(marker in environ.split(b"\0") for marker in raylets):
                roots.add(pid)
        found = set(roots)
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _, _) in table.items():
                if ppid in found and pid not in found:
                    found.add(pid)
                    changed = True
        return found

    def kill(self, wait: float = 10.0) -> None:
        """SIGKILL the head and everything it started, as a machine that dies would."""
        deadline = time.monotonic() + wait
        while True:
            pids = self.pids()
            if not pids or time.monotonic() > deadline:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def restart(self) -> RayHead:
        """A fresh head (new ports, new temp dir) in place of this one."""
        self.stop()
        self.temp_dir = tempfile.mkdtemp(prefix="trh", dir="/tmp")
        self.log = os.path.join(self.temp_dir, "ray-start.log")
        return self.start()
