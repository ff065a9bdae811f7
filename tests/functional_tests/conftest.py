"""Real object stores for the storage tests: an S3 server (moto), a Swift server (SAIO) and a
TCP proxy that breaks connections on purpose; and a helper that runs a learner by hand.

Servers are session-scoped, on free loopback ports, with their files in pytest's temporary
folders; subprocesses are stopped by PID. Each test gets buckets of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def _root_conftest():
    # Test modules here run `from conftest import Home`; in this folder `conftest` is this
    # file, so it passes on the root conftest's Home, new_home, group_alive, process_alive,
    # process_state, spare_learners, run_cli and multipart_submission (loaded again under a
    # name of its own).
    import importlib.util

    spec = importlib.util.spec_from_file_location("_trainui_root_conftest", TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_root = _root_conftest()
Home, new_home, group_alive, run_cli = _root.Home, _root.new_home, _root.group_alive, _root.run_cli
multipart_submission = _root.multipart_submission
process_alive, process_state = _root.process_alive, _root.process_state
spare_learners = _root.spare_learners


# ------------------------------------------------------------------------------------- S3


class S3Server:
    """moto in server mode, in this process (``ThreadedMotoServer``)."""

    key_id, secret = "AKIATRAINUITEST", "s3cr3t-never-shown"

    def __init__(self) -> None:
        import moto.backends
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request
        # moto lists its own package folder twice per request to route it (a third of its
        # time per GET, measured): once is enough for a server whose code does not change
        modules = tuple(moto.backends.list_of_moto_modules())
        moto.backends.list_of_moto_modules = lambda: iter(modules)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.port = port
        self.endpoint = f"http://{host}:{port}"
        import boto3

        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def stop(self) -> None:
        self._server.stop()

    def connection(self, endpoint: str | None = None, **changes: str) -> dict[str, str]:
        return {
            "endpoint_url": endpoint or self.endpoint,
            "aws_access_key_id": self.key_id,
            "aws_secret_access_key": self.secret,
            **changes,
        }

    def bucket(self, files: dict[str, bytes | str] | None = None, name: str = "") -> str:
        """A new bucket holding ``files`` (real PUT requests)."""
        name = name or f"t-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        for key, body in (files or {}).items():
            self.client.put_object(Bucket=name, Key=key, Body=_bytes(body))
        return name

    def seed(self, bucket: str, files: dict[str, bytes]) -> None:
        """Put objects straight into moto's store: for thousands of them, or hundreds of MB,
        which its HTTP front would take minutes to take in."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key, body in files.items():
            backend.put_object(bucket, key, body)

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of ``bucket``, read back over HTTP."""
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", ()):
                body = self.client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                found[item["Key"]] = body
        return found


@pytest.fixture(scope="session")
def s3_server():
    pytest.importorskip("moto.server")
    server = S3Server()
    yield server
    server.stop()


# ---------------------------------------------------------------------------------- Swift


@pytest.fixture(scope="session")
def swift_server(tmp_path_factory):
    pytest.importorskip("swift")
    pytest.importorskip("swiftclient")
    sys.path.insert(0, str(TESTS))
    try:
        from swift_saio import SwiftAIO
    finally:
        sys.path.remove(str(TESTS))
    with SwiftAIO(tmp_path_factory.mktemp("saio")) as server:
        yield SwiftHelper(server)


class SwiftHelper:
    """The SAIO server with a swiftclient connection for setting up and checking."""

    def __init__(self, server) -> None:
        from swiftclient.client import Connection

        self.server = server
        self.auth_url = server.auth_url
        self.s3_endpoint = server.s3_endpoint
        self.client = Connection(server.auth_url, server.user, server.key, retries=2)

    def connection(self, **changes: str) -> dict[str, str]:
        return self.server.connection(**changes)

    def s3_connection(self, **changes: str) -> dict[str, str]:
        """The same server through its S3 API, which checks signatures (moto does not)."""
        return {
            "endpoint_url": self.s3_endpoint,
            "aws_access_key_id": self.server.user,
            "aws_secret_access_key": self.server.key,
            **changes,
        }

    def container(self, files: dict[str, bytes | str] | None = None) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        self.client.put_container(name)
        for key, body in (files or {}).items():
            self.client.put_object(name, key, _bytes(body))
        return name

    def objects(self, container: str) -> dict[str, bytes]:
        _headers, items = self.client.get_container(container, full_listing=True)
        return {item["name"]: self.client.get_object(container, item["name"])[1] for item in items}

    def restart_proxy(self) -> None:
        self.client.close()
        self.server.start(kinds=("proxy",))


# ------------------------------------------------------------------------------ the proxy


class FaultProxy:
    """A TCP proxy in front of a server that can cut, corrupt or refuse its connections.

    It also records the request line of every request that goes through it.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []  # the head (request line and headers) of each request
        self.cut_after: int | None = None  # close a connection after this many response bytes
        self.cuts_left = 0
        self.corrupt_at: int | None = None  # flip the byte at this offset of a response stream
        self.corruptions_left = 0
        self.rate: float | None = None  # response bytes per second, per connection
        self.dropped: str | None = None  # close a connection on a request line holding this
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._frozen: set[int] = set()  # connections that forward nothing more (their sockets)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        """The connections open now go silent, never closed (a laptop suspended, a NAT that
        forgot them); new ones work."""
        with self._lock:
            self._frozen.update(id(s) for s in self._sockets)

    def _wait_if_frozen(self, s: socket.socket) -> None:
        while id(s) in self._frozen and not self._closed:
            time.sleep(0.05)

    def cut(self, after: int, times: int = 1) -> None:
        """The next ``times`` connections whose responses reach ``after`` bytes are cut."""
        self.cut_after, self.cuts_left = after, times

    def corrupt(self, at: int, times: int = 1) -> None:
        """The next ``times`` responses streams that reach offset ``at`` get a wrong byte."""
        self.corrupt_at, self.corruptions_left = at, times

    def drop(self, request_line_part: str | None) -> None:
        """Close every connection whose next request line holds ``request_line_part`` (once its
        head arrives, before its body goes on), until ``drop(None)``."""
        self.dropped = request_line_part

    def throttle(self, bytes_per_second: float) -> None:
        self.rate = bytes_per_second

    def gets(self) -> list[str]:
        """Heads of the object GETs that went through (not listings)."""
        with self._lock:
            return [r for r in self.requests if r.startswith("GET ") and "list-type" not in r]

    def stop(self) -> None:
        """Close the listener and every connection: the server is gone."""
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._responses, args=(server, client), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        pending = b""
        body_left = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not body_left and self.dropped:
                    end = (pending + data).find(b"\r\n")
                    if end >= 0 and self.dropped in (pending + data)[:end].decode("latin-1"):
                        break  # the request never reaches the server
                self._wait_if_frozen(dst)
                dst.sendall(data)
                pending += data
                while True:
                    if body_left:
                        used = min(body_left, len(pending))
                        body_left -= used
                        pending = pending[used:]
                        if body_left:
                            break
                    end = pending.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = pending[:end].decode("latin-1")
                    pending = pending[end + 4 :]
                    with self._lock:
                        self.requests.append(head)
                    for line in head.split("\r\n")[1:]:
                        name, _, value = line.partition(":")
                        if name.strip().lower() == "content-length":
                            body_left = int(value.strip() or 0)
        except OSError:
            pass
        finally:
            _close(src, dst)

    def _take(self, kind: str, start: int, end: int) -> bool:
        """Is a fault of ``kind`` due within response bytes [start, end)? (It is used up.)"""
        with self._lock:
            at = getattr(self, f"{kind}_at" if kind == "corrupt" else "cut_after")
            left_name = "corruptions_left" if kind == "corrupt" else "cuts_left"
            if at is None or getattr(self, left_name) <= 0 or not start <= at < end:
                return False
            setattr(self, left_name, getattr(self, left_name) - 1)
            return True

    def _responses(self, src: socket.socket, dst: socket.socket) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                end = sent + len(data)
                if self._take("corrupt", sent, end):
                    i = self.corrupt_at - sent
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                if self._take("cut", sent, end):
                    dst.sendall(data[: self.cut_after - sent])
                    break
                self._wait_if_frozen(dst)
                dst.sendall(data)
                sent = end
                if self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            _close(src, dst)


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()


@pytest.fixture
def fault_proxy():
    """``fault_proxy(port)``: a FaultProxy in front of the server on ``port``."""
    proxies = []

    def make(port: int) -> FaultProxy:
        proxy = FaultProxy(port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


# ---------------------------------------------------------------------------- the learner

TRAIN_PY = """\
import hashlib, os
for root, _dirs, files in sorted(os.walk(os.environ["DATA_DIR"])):
    for name in sorted(files):
        path = os.path.join(root, name)
        digest = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        print("data", os.path.relpath(path, os.environ["DATA_DIR"]), digest.hexdigest())
with open(os.path.join(os.environ["RESULT_DIR"], "model.txt"), "w") as f:
    f.write("trained")
"""


class LearnerRun:
    """A run folder written by hand and ``python -m trainui.learner`` run on it."""

    def __init__(
        self, home: Path, data: dict, results: dict, command: str, sandbox: dict | None = None
    ) -> None:
        from trainui.core.runs import new_run_id

        self.home = home
        self.model_id = new_run_id()
        self.dir = home / "runs" / self.model_id
        self.dir.mkdir(parents=True)
        with zipfile.ZipFile(self.dir / "model.zip", "w") as zf:
            zf.writestr("train.py", TRAIN_PY)
        (self.dir / "manifest.yml").write_text("model_definition:\n  name: storage-test\n")
        (self.dir / "training-log.txt").touch()
        config = {
            "model_id": self.model_id,
            "name": "storage-test",
            "command": command,
            "resource": "small",
            "gpu_ids": [],
            "cpu_mode": True,
            "data": data,
            "results": results,
            "home": str(home),
            "halt_grace_seconds": 2,
            "submitted_at": "2026-11-27T06:00:00.000Z",
        }
        if sandbox is not None:  # learner.json's ``sandbox``, as the service writes it
            config["sandbox"] = sandbox
        fd = os.open(self.dir / "learner.json", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)
        self.process: subprocess.Popen | None = None
        self.max_rss_kb = 0

    def start(self, **env: str) -> LearnerRun:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trainui.learner", str(self.dir)],
            env={**os.environ, "TRAINUI_GPUS": "none", **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "learner-errors.txt", "ab"),  # noqa: SIM115
        )
        return self

    def wait(self, timeout: float = 120) -> dict:
        """Wait for the learner to exit; its final status.json."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            self._read_peak_rss()
            if self.process.poll() is not None:
                break
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"the learner did not end in {timeout} s: {self.log()}")
            time.sleep(0.02)
        return self.status()

    def _read_peak_rss(self) -> None:
        # VmHWM, the learner's own peak (ru_maxrss would count what it shared with this
        # process when it was forked)
        with contextlib.suppress(OSError):
            for line in open(f"/proc/{self.process.pid}/status"):  # noqa: SIM115
                if line.startswith("VmHWM:"):
                    self.max_rss_kb = max(self.max_rss_kb, int(line.split()[1]))

    def run(self, timeout: float = 120, **env: str) -> dict:
        return self.start(**env).wait(timeout)

    def halt(self) -> None:
        """Halt the run as the service does: its reason, then SIGTERM to the learner."""
        (self.dir / "halt-reason.txt").write_text("halted by request")
        self.process.send_signal(signal.SIGTERM)

    def status(self) -> dict:
        return json.loads((self.dir / "status.json").read_text())

    def log(self) -> str:
        return (self.dir / "training-log.txt").read_text()

    def errors(self) -> str:
        path = self.dir / "learner-errors.txt"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def learner_run(tmp_path):
    """``learner_run(data, results, command=...)``: a LearnerRun in a home under tmp_path."""
    runs = []

    def make(data: dict, results: dict, command: str = "python3 train.py", home=None, sandbox=None):
        run = LearnerRun(Path(home or tmp_path / "home"), data, results, command, sandbox)
        runs.append(run)
        return run

    yield make
    for run in runs:
        if run.process is not None and run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def _bytes(body: bytes | str) -> bytes:
    return body if isinstance(body, bytes) else body.encode()
