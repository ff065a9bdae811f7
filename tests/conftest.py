"""Fixtures shared by the test suite: a private trainui home with a real service behind it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


def group_alive(pgid: int, wait: float = 10.0) -> bool:
    """Does any process of the group still run? Zombies do not count: they have ended, and
    this sandbox's PID 1 is slow to collect orphans."""
    deadline = time.monotonic() + wait
    while True:
        alive = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                alive = True
                break
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


class Home:
    """A trainui home for one test, with helpers to run the real CLI against it."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env
        self.buckets = path / "buckets"

    def cli(self, *args: str, timeout: float = 60, check: bool = False, **env: str):
        result = subprocess.run(
            [sys.executable, "-m", "trainui", *args],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def submit(self, model: Path, manifest: Path, **env: str) -> str:
        result = self.cli("train", str(model), str(manifest), check=True, **env)
        line = result.stdout.strip().splitlines()[-1]
        assert line.startswith("Model-ID is 'training-"), result.stdout
        return line.split("'")[1]

    def show(self, model_id: str) -> dict:
        return json.loads(self.cli("show", model_id, "--json", check=True).stdout)

    def wait(self, model_id: str, *states: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.show(model_id)
            if run["status"] in states:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"{model_id} still {run['status']}: {run}")
            time.sleep(0.1)

    def service_pid(self) -> int | None:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int((self.path / "service.lock").read_text().split()[0])
            os.kill(pid, 0)
            return pid
        return None

    def bucket(self, name: str, files: dict[str, str | bytes] | None = None) -> Path:
        folder = self.buckets / name
        folder.mkdir(parents=True, exist_ok=True)
        for key, content in (files or {}).items():
            target = folder / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        return folder

    def model(self, name: str, files: dict[str, str]) -> Path:
        folder = self.path.parent / f"model-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for key, content in files.items():
            (folder / key).write_text(textwrap.dedent(content))
        return folder

    def manifest(
        self,
        command: str,
        resource: str = "small",
        name: str = "test-run",
        data: str = "data",
        results: str = "results",
    ) -> Path:
        self.bucket(data)
        path = self.path.parent / f"manifest-{name}-{abs(hash((command, resource)))}.yml"
        path.write_text(
            textwrap.dedent(
                f"""\
                model_definition:
                  name: {name}
                  framework: {{name: python, version: "3.11"}}
                  execution:
                    command: {json.dumps(command)}
                    resource: {resource}
                training_data:
                  connection: {{}}
                  source: {{bucket: {data}, type: local}}
                training_results:
                  connection: {{}}
                  target: {{bucket: {results}, type: local}}
                """
            )
        )
        return path

    def stop(self) -> None:
        """Stop the service and every learner and command this home started, by PID."""
        pid = self.service_pid()
        if pid and self._ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for status in (self.path / "runs").glob("*/status.json"):
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(status.read_text())
                for group in (data.get("command_pgid"), data.get("learner_pid")):
                    # only a process of this home: a PID from an old status file may since
                    # belong to someone else
                    if group and self._ours(group):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(group, signal.SIGKILL)

    def _ours(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return str(self.path).encode() in f.read()
        except OSError:
            return False


def new_home(path: Path) -> Home:
    """A trainui home at ``path``: no GPU, a quick idle exit and halt grace, never remote."""
    env = {
        **os.environ,
        "TRAINUI_HOME": str(path),
        "TRAINUI_GPUS": "none",
        "TRAINUI_IDLE_EXIT": "30",
        "TRAINUI_HALT_GRACE": "2",
    }
    env.pop("TRAINUI_URL", None)
    return Home(path, env)


@pytest.fixture
def home(tmp_path: Path):
    h = new_home(tmp_path / "home")
    yield h
    h.stop()
