"""One GET over the home's Unix socket with nothing but ``socket``: for commands that print what
one request returns (``trainui list``), so that they start as fast as ``trainui --version``.

The client (httpx over asyncio) costs about 100 ms of imports before its first byte. When this
path cannot answer (no service yet, a remote service, an answer it does not expect), it returns
None and the command goes the client's way, which starts the service and words the errors.
"""

from __future__ import annotations

import os
import socket

TIMEOUT = 30.0


def get(home_socket: str, target: str, accept: str) -> tuple[dict[str, str], bytes] | None:
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
        chunks = []
        while chunk := conn.recv(1 << 20):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        conn.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "200":
        return None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "")
    if not length.isdigit() or int(length) != len(body):  # chunked, or cut short
        return None
    if headers.get("content-type", "").split(";")[0].strip() != accept:
        return None  # an older service
    return headers, body


def local_socket(remote: dict) -> str | None:
    """The home's socket, unless this command line or the environment names a remote service."""
    if remote.get("url") or os.environ.get("TRAINUI_URL"):
        return None
    from trainui.config import home_dir, socket_path

    return socket_path(home_dir())
