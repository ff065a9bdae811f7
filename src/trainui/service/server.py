"""Running the service: one per home (a lock), on the home's Unix socket (mode 0600)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import sys

import uvicorn

from trainui.config import Settings, ensure_home, socket_path
from trainui.service.app import create_app
from trainui.service.runs import RunManager


class AlreadyRunning(Exception):
    pass


def acquire_lock(home: str) -> int:
    """Hold ``<home>/service.lock`` for as long as this process lives."""
    fd = os.open(os.path.join(home, "service.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"a trainui service is already running for {home}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def bind_unix_socket(path: str) -> socket.socket:
    _remove(path)  # a stale socket of a service that died: we hold the lock, so it is ours
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born 0600: no moment where others could connect
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(512)
    return sock


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def serve(settings: Settings, unix_socket: str | None = None, idle_exit: bool = False) -> int:
    """Serve in the foreground until interrupted (or, with ``idle_exit``, until idle)."""
    home = ensure_home(settings.home)
    acquire_lock(home)  # raises AlreadyRunning
    path = unix_socket or socket_path(home)
    sock = bind_unix_socket(path)
    manager = RunManager(settings)
    server: uvicorn.Server | None = None

    def on_idle() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(manager, on_idle if idle_exit else None)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    print(f"trainui service {os.getpid()} on {path}", file=sys.stderr, flush=True)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        _remove(path)
    return 0
