"""What the benches share: percentiles, table rows, a local-bucket manifest, free ports, and
stopping a trainui home's processes, by PID, only those that are that home's."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import textwrap
import time
from pathlib import Path

# the commands measured write as in a user's terminal or pipe: buffered (a shell or CI that sets
# PYTHONUNBUFFERED makes each line of `trainui list` a write of its own)
os.environ.pop("PYTHONUNBUFFERED", None)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(name: str, samples: list[float], width: int = 44, digits: int = 1, unit: float = 1e3,
        suffix: str = "ms") -> str:  # fmt: skip
    """``name`` then the median and p95 of ``samples`` (seconds, shown times ``unit``)."""
    p50, p95 = statistics.median(samples) * unit, pct(samples, 0.95) * unit
    return f"{name:{width}} {p50:9.{digits}f} {p95:9.{digits}f} {suffix}"


def manifest(command: str, name: str = "bench", resource: str = "small") -> bytes:
    """A manifest whose data and results are local buckets ``data`` and ``results``."""
    return textwrap.dedent(
        f"""\
        model_definition:
          name: {name}
          framework: {{name: sh, version: "1"}}
          execution:
            command: {json.dumps(command)}
            resource: {resource}
        training_data:
          connection: {{}}
          source: {{bucket: data, type: local}}
        training_results:
          connection: {{}}
          target: {{bucket: results, type: local}}
        """
    ).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ours(pid: int, home: Path) -> bool:
    """Whether process ``pid`` is of this home (its command line or environment names it): an
    old PID read from a file may since be someone else's."""
    marker = str(home).encode()
    for name in ("cmdline", "environ"):
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{pid}/{name}").read_bytes():
                return True
    return False


def stop_home(home: Path, service_pid: int | None = None) -> None:
    """Stop the home's service (``service_pid``, else the one its lock names), then its learners
    and commands, by PID, each only if it is ours (the service first, so that it starts no
    learner meanwhile; twice over the runs, for one that was starting)."""
    with contextlib.suppress(Exception):
        pid = service_pid or int((home / "service.lock").read_text().split()[0])
        if ours(pid, home):
            os.kill(pid, signal.SIGTERM)
    for _ in range(2):
        time.sleep(0.5)
        for status in (home / "runs").glob("*/status.json"):
            with contextlib.suppress(Exception):
                data = json.loads(status.read_text())
                for group in (data.get("command_pgid"), data.get("learner_pid")):
                    if group and ours(group, home):
                        os.killpg(group, signal.SIGKILL)
