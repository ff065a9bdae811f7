"""One GET over the home's Unix socket with nothing but ``socket``: for commands that print what
one request returns (``trainui list``), so that they start as fast as ``trainui --version``.

The client (httpx over asyncio) costs about 100 ms of imports before its first byte. When this
path cannot answer (no service yet, a remote service, an answer it does not expect), it returns
None and the command goes the client's way, which starts the service and words the errors.
"""

from __future__ import annotations

import os

try:  # the C module: ``socket`` adds enums and selectors, 5 ms of imports for nothing used here
    import _socket as socket
except ImportError:  # not CPython
    import socket  # type: ignore[no-redef]

TIMEOUT = 30.0


def get(home_socket: str, target: str, accept: str) -> tuple[dict[str, str], bytearray] | None:
    """``GET target`` on the service at ``home_socket``: the headers (lower-case names) and
    body of a 200 answer of type ``accept``, or None for anything else."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        conn.settimeout(TIMEOUT)
        conn.connect(home_socket)
        conn.sendall(
            f"GET {target} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            head += chunk
        head, _, start = head.partition(b"\r\n\r\n")
        headers = _headers(head)
        if headers is None or headers.get("content-type", "").split(";")[0].strip() != accept:
            return None  # a refusal (the client words it), or an older service
        length = headers.get("content-length", "")
        if not length.isdigit() or len(start) > int(length):
            return None  # chunked: not what this service sends
        body = bytearray(int(length))  # read in place: a long list is megabytes
        view = memoryview(body)
        view[: len(start)] = start
        done = len(start)
        while done < len(body):
            n = conn.recv_into(view[done:])
            if not n:
                return None  # cut short
            done += n
    except OSError:
        return None
    finally:
        conn.close()
    return headers, body


def _headers(head: bytes) -> dict[str, str] | None:
    """The headers of a 200 answer, names in lower case; None for another status."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "200":
        return None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def local_socket(remote: dict) -> str | None:
    """The home's socket, unless this command line or the environment names a remote service."""
    if remote.get("url") or os.environ.get("TRAINUI_URL"):
        return None
    from trainui.config import home_dir, socket_path

    return socket_path(home_dir())
