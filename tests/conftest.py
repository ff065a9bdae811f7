"""Fixtures shared by the test suite: a private trainui home with a real service behind it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """A test that uses the Swift server is marked ``swift`` (tests/run.sh runs those last)."""
    for item in items:
        if "swift_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.swift)


# --- the CLI, in this process -------------------------------------------------------------------

# What runs as a process of its own all the same: a service, the TUI (a terminal).
PROCESS_COMMANDS = {"serve", "tui"}
_in_process = threading.Lock()  # one command at a time: it borrows os.environ and sys.stdout


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    timeout: float = 60,
    process: bool = False,
) -> subprocess.CompletedProcess:
    """``trainui ARGS`` with the environment ``env``: its exit status, stdout and stderr.

    It runs in this process through ``trainui.cli.main(argv)`` (a new Python process costs
    0.2 s, and tests wait on runs with one ``show`` after another), unless ``process`` is true
    or the command is one of PROCESS_COMMANDS: then ``python -m trainui`` runs.
    """
    command = next((a for a in args if not a.startswith("-")), "tui")
    if process or command in PROCESS_COMMANDS:
        return subprocess.run(
            [sys.executable, "-m", "trainui", *args],
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=timeout,
        )
    from trainui import cli

    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    ended: list[int] = []

    def main() -> None:
        # a thread of its own: it has no event loop (the CLI's asyncio.run works under an
        # async test) and a command that hangs can be left behind after ``timeout``
        try:
            code = cli.main(list(args))
        except SystemExit as stop:  # argparse's usage errors and --help
            code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
        except BaseException:  # as a process would: the traceback on stderr, status 1
            traceback.print_exc()
            code = 1
        ended.append(code)

    with _in_process, _environment(env):
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            thread = threading.Thread(target=main, name=f"trainui {command}", daemon=True)
            thread.start()
            thread.join(timeout)
        if not ended:
            raise subprocess.TimeoutExpired(["trainui", *args], timeout)
    stdout.flush()
    stderr.flush()
    return subprocess.CompletedProcess(
        ["trainui", *args],
        ended[0],
        stdout.buffer.getvalue().decode("utf-8", "replace"),
        stderr.buffer.getvalue().decode("utf-8", "replace"),
    )


@contextlib.contextmanager
def _environment(env: Mapping[str, str]):
    """os.environ is ``env`` meanwhile (changed key by key: never empty for other threads)."""
    saved = dict(os.environ)
    for name in set(saved) - set(env):
        del os.environ[name]
    os.environ.update(env)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)


def process_state(pid: int) -> str | None:
    """The process's state letter from /proc (Z: ended, not yet collected); None once it has
    been collected."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def spare_learners(home: Home) -> dict[int, list[bytes]]:
    """The spare learners of ``home``'s service (waiting, not yet given a run): PID -> its
    arguments."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().rstrip(b"\0").split(b"\0")
            with open(f"/proc/{entry}/environ", "rb") as f:
                ours = f"TRAINUI_HOME={home.path}".encode() in f.read().split(b"\0")
        except OSError:
            continue
        if ours and b"--spare" in args and b"trainui.learner" in b" ".join(args):
            found[int(entry)] = args
    return found


def process_alive(pid: int) -> bool:
    """Does any thread of the process still run? A zombie has ended (this sandbox's PID 1 is
    slow to collect orphans), but a process whose main thread is a zombie has not while
    another of its threads still exits: its files, its listening socket among them, stay open
    until the last thread is done. SIGKILL ends the threads one by one, the main one often
    first; on a busy machine the others follow milliseconds later."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # it ended meanwhile
        if state not in ("Z", "X"):
            return True
    return False


def group_alive(pgid: int, wait: float = 10.0) -> bool:
    """Does any process of the group still run (``process_alive``)?"""
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
            if int(fields[2]) == pgid and process_alive(int(entry)):
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

    def cli(
        self, *args: str, timeout: float = 60, check: bool = False, process: bool = False, **env
    ):
        """``trainui ARGS`` against this home (in this process unless ``process``: run_cli)."""
        result = run_cli(args, {**self.env, **env}, timeout=timeout, process=process)
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
        """The running service's PID, while any thread of it runs (``process_alive``). A
        zombie does not count: a service that the CLI started in this process stays one until
        Python's subprocess module reaps it."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.path / "service.lock").read_text().split()[0])
            return pid if process_alive(pid) else None
        return None

    def kill_service(self) -> None:
        """SIGKILL the service and wait until it is gone, every thread of it: until then its
        socket still accepts connections, which it resets as it dies (a command sent meanwhile
        is cut, not refused). Its main thread alone a zombie is not gone (``process_alive``)."""
        pid = self.service_pid()
        assert pid, "no service runs"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process_alive(pid):
            assert time.monotonic() < deadline, f"the service {pid} outlived SIGKILL"
            time.sleep(0.01)

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


def multipart_submission(
    definition: bytes,
    manifest: bytes,
    fields: dict[str, str] | None = None,
    filename: str = "model.zip",
) -> tuple[bytes, str]:
    """A submission as the client sends it (httpx's multipart encoder), as one body and its
    Content-Type: for tests that send, cut or reshape the bytes themselves."""
    import httpx

    if fields is None:
        fields = {"environment": "{}", "check": "true"}
    request = httpx.Request(
        "POST",
        "http://trainui/v3/models",
        files={
            "model_definition": (filename, definition, "application/zip"),
            "manifest": ("manifest.yml", manifest, "application/yaml"),
        },
        data=fields,
    )
    return request.read(), request.headers["content-type"]
