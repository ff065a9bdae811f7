"""Running the service: one per home (a lock), on the home's Unix socket (mode 0600)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Coroutine

import uvicorn

from trainui.config import ConnectionLimits, Settings, connection_limits, ensure_home, socket_path
from trainui.frameworks import CatalogueError
from trainui.service.app import create_app
from trainui.service.auth import Tokens
from trainui.service.connections import fit_open_files, tcp_protocol
from trainui.service.launchers import Launcher, LauncherError
from trainui.service.launchers.local import LocalLauncher
from trainui.service.notify import ConfigError as NotifyConfigError
from trainui.service.runs import RunManager
from trainui.service.store import StoreTooNew


class AlreadyRunning(Exception):
    pass


LOCK_WAIT = 12.0  # seconds to wait for a service that is exiting (its notifications: 5 s)


def acquire_lock(home: str, unix_socket: str | None = None, wait: float = LOCK_WAIT) -> int:
    """Hold ``<home>/service.lock`` for as long as this process lives. A service that holds it
    and answers on its socket is running: refused at once. One that holds it and answers no
    more is exiting (it delivers its last notifications, up to 5 s): waited for, up to
    ``wait`` seconds, so that a command given meanwhile starts the next service."""
    fd = os.open(os.path.join(home, "service.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            answers = _answers(unix_socket or socket_path(home))
            if answers or time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                said = f"a trainui service is already running for {home}"
                if not answers:
                    said = (
                        f"the trainui service of {home} (PID {holder or '?'}) holds its lock "
                        f"but has not answered on its socket for {wait:.0f} s: it may be stuck "
                        "stopping"
                    )
                raise AlreadyRunning(said) from None
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _answers(path: str) -> bool:
    """Does a service accept connections on the Unix socket ``path``?"""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    else:
        return True
    finally:
        probe.close()


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


def use_home_for_temporary_files(home: str) -> str:
    """Make ``<home>/tmp`` (mode 0700) this process's folder for temporary files: uploads the
    form parser spools to disk (Starlette gives ``SpooledTemporaryFile`` no folder) stay with
    the rest of the home, never in the machine's shared ``/tmp``. Commands the service starts
    keep their own ``TMPDIR``."""
    path = os.path.join(home, "tmp")
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    tempfile.tempdir = path
    return path


class ServeRefused(Exception):
    """A setting the service will not start with, in one sentence."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=512)
    except OSError as error:
        raise ServeRefused(f"cannot listen on {host}:{port}: {error.strerror}") from None
    # accepted connections inherit it (Linux): without it, a response written in two parts
    # waits for the client's delayed ACK, 40 ms a request on a kept-alive connection
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def make_launcher(settings: Settings, runs_dir: str | None = None) -> Launcher:
    """The launcher the settings name: ``local`` (default) or ``ray`` (``ray_address``,
    ``ray_grace_seconds``, ``ray_python``). Raises LauncherError for a setting that cannot work
    (a ray:// address, say)."""
    name = settings.launcher or "local"
    if name == "local":
        return LocalLauncher()
    if name == "ray":
        from trainui.service.launchers.ray import RayLauncher

        return RayLauncher(
            settings.ray_address or "",
            runs_dir or os.path.join(settings.home, "runs"),
            halt_grace=settings.halt_grace_seconds,
            lost_grace=settings.ray_grace_seconds,
            python=settings.ray_python,
            environ=settings.environ,
        )
    raise LauncherError(f"unknown launcher '{name}': use local or ray")


class _Encrypted(Exception):
    pass


def _no_password() -> str:
    raise _Encrypted


def _tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """The service's TLS context, or a refusal that names the file at fault and why."""
    texts = {}
    for flag, path, what in (
        ("--certfile", certfile, "certificate"),
        ("--keyfile", keyfile, "key"),
    ):
        try:
            with open(path, "rb") as file:
                texts[flag] = file.read(1 << 20)
        except OSError as error:
            raise ServeRefused(
                f"the TLS {what} {path} ({flag}) cannot be read: {error.strerror or error}"
            ) from None
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:  # a key with a passphrase would ask for it on the terminal, and a service has none
        tls.load_cert_chain(certfile, keyfile, password=_no_password)
    except _Encrypted:
        raise ServeRefused(
            f"the TLS key {keyfile} (--keyfile) is encrypted with a passphrase, which a service "
            f"cannot type: write it without one (`openssl pkey -in {keyfile} -out NEW.pem`)"
        ) from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise ServeRefused(
                f"the TLS key {keyfile} (--keyfile) is not the key of the certificate {certfile}"
            ) from None
        if b"-----BEGIN CERTIFICATE-----" not in texts["--certfile"]:
            raise ServeRefused(
                f"the TLS certificate {certfile} (--certfile) is not a PEM certificate (no "
                "'-----BEGIN CERTIFICATE-----' line)"
            ) from None
        if b"PRIVATE KEY-----" not in texts["--keyfile"]:
            raise ServeRefused(
                f"the TLS key {keyfile} (--keyfile) is not a PEM private key (no "
                "'-----BEGIN ... PRIVATE KEY-----' line)"
            ) from None
        raise ServeRefused(
            f"cannot use the TLS certificate {certfile} or key {keyfile}: {error}"
        ) from None
    return tls


def serve(
    settings: Settings,
    unix_socket: str | None = None,
    idle_exit: bool = False,
    host: str | None = "127.0.0.1",
    port: int = 8470,
    certfile: str | None = None,
    keyfile: str | None = None,
    limits: ConnectionLimits | None = None,
) -> int:
    """Serve on the home's Unix socket and, unless ``host`` is None, on TCP (its clients held
    to ``limits``, by default those of the environment); in the foreground until interrupted
    (or, with ``idle_exit``, until idle)."""
    limits = limits or connection_limits()
    home = ensure_home(settings.home)
    if host is not None and not _loopback(host) and not Tokens(home).exist():
        raise ServeRefused(
            f"refusing to listen on {host}: no token exists yet, so anyone who reaches it could "
            "run commands on this machine; create one with `trainui token add NAME` "
            "(or listen on 127.0.0.1 and tunnel over SSH)"
        )
    if bool(certfile) != bool(keyfile):
        raise ServeRefused("TLS needs both --certfile and --keyfile")
    tls = _tls_context(certfile, keyfile) if certfile else None
    path = unix_socket or socket_path(home)
    acquire_lock(home, path)  # raises AlreadyRunning
    use_home_for_temporary_files(home)
    tcp = bind_tcp_socket(host, port) if host is not None else None
    try:
        launcher = make_launcher(settings, os.path.join(home, "runs"))
    except LauncherError as error:
        raise ServeRefused(str(error)) from None
    try:
        manager = RunManager(settings, launcher)
    except StoreTooNew as error:
        raise ServeRefused(str(error)) from None
    except NotifyConfigError as error:
        raise ServeRefused(
            "the service config is not valid:\n  " + "\n  ".join(error.problems)
        ) from None
    except CatalogueError as error:  # every problem, located, as a manifest's
        raise ServeRefused(
            "the frameworks catalogue is not valid:\n  " + "\n  ".join(error.problems)
        ) from None
    _check_isolation(settings, manager, home, tcp is not None)
    local = bind_unix_socket(path)
    servers: list[uvicorn.Server] = []

    def stop_all() -> None:
        for server in servers:
            server.should_exit = True

    app = create_app(manager, stop_all if idle_exit else None)
    common = {
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 2,
        "timeout_keep_alive": limits.keep_alive,
        "ws": "none",  # no WebSocket route: an upgrade request is an ordinary one
    }
    servers.append(uvicorn.Server(uvicorn.Config(app, lifespan="on", **common)))
    runs = [servers[0].serve(sockets=[local])]
    where = path
    if tcp is not None:
        limits = fit_open_files(limits)
        http = tcp_protocol(limits, tls)  # TLS included: the head's deadline covers the handshake
        servers.append(uvicorn.Server(uvicorn.Config(app, lifespan="off", http=http, **common)))
        runs.append(servers[1].serve(sockets=[tcp]))
        scheme = "https" if certfile else "http"
        where += (
            f" and {scheme}://{host if ':' not in host else f'[{host}]'}:{tcp.getsockname()[1]}"
        )

    async def main() -> None:
        async def follow_each_other() -> None:
            # a signal reaches only one server: whichever stops, the other follows
            while not any(server.should_exit for server in servers):
                await asyncio.sleep(0.2)
            manager.closing = True  # the logs followed and the events end: clients come back
            stop_all()

        watcher = asyncio.create_task(follow_each_other())
        await asyncio.gather(*runs)
        watcher.cancel()

    print(f"trainui service {os.getpid()} on {where}", file=sys.stderr, flush=True)
    try:
        _run(main())
    finally:
        _remove(path)
    return 0


def _check_isolation(settings: Settings, manager: RunManager, home: str, tcp: bool) -> None:
    """Refuse to serve where runs cannot be sandboxed but must be: ``TRAINUI_ISOLATION=on``, or
    several users over TCP (each one's commands could read the others' secrets) without
    ``--no-isolation``. A local launcher only: a cluster's nodes sandbox on their own."""
    if settings.isolation == "off" or manager.launcher.name != "local":
        return
    if settings.sandbox_user and os.geteuid() == 0:
        from trainui.sandbox import SandboxError, resolve_user

        try:  # a typo here must not quietly run every command unsandboxed
            resolve_user(None, settings.environ)
        except SandboxError as error:
            raise ServeRefused(f"TRAINUI_SANDBOX_USER: {error}") from None
    users = {e["name"] for e in Tokens(home).entries() if not e.get("admin")} if tcp else ()
    if settings.isolation != "on" and len(users) < 2:
        return  # runs are sandboxed where they can be; /v3/health says which
    why = manager.sandbox_unavailable()
    if why is None:
        return
    if settings.isolation == "on":
        raise ServeRefused(f"runs cannot be sandboxed on this machine: {why}")
    raise ServeRefused(
        f"runs cannot be sandboxed on this machine ({why}), and {len(users)} users have "
        "tokens: each one's training commands could read the others' credentials and tokens; "
        "make sandboxing work, or start with --no-isolation to accept that"
    )


def _run(main: Coroutine) -> None:
    """Run the service's loop: uvloop's where it is installed (with httptools, uvicorn's
    default parser then, a submission costs the service about a third less CPU), else
    asyncio's own."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
