"""One request over the home's Unix socket with nothing but ``socket``, for the commands whose
start-up is their cost: ``trainui list`` (one GET) and ``trainui train`` (one POST) start as fast
as ``trainui --version`` plus the request.

The client (httpx over asyncio) costs about 100 ms of imports before its first byte. When this
path cannot answer (no service yet, a remote service, an answer it does not expect) it says so
before anything was sent, and the command goes the client's way, which starts the service and
words the errors. The service is the same either way: this is the client's wire, not a back door.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

try:  # the C module: ``socket`` adds enums and selectors, 5 ms of imports for nothing used here
    import _socket as socket
except ImportError:  # not CPython
    import socket  # type: ignore[no-redef]

TIMEOUT = 30.0
INLINE_UPLOAD = 8 << 20  # model definitions up to this size are sent from memory, in one write


class Lost(Exception):
    """The request was sent, but no whole answer came back (the service died, or was stopped)."""


def local_socket(remote: Mapping[str, str | None]) -> str | None:
    """The home's socket, unless this command line or the environment names a remote service."""
    if remote.get("url") or os.environ.get("TRAINUI_URL"):
        return None
    from trainui.config import home_dir, socket_path

    return socket_path(home_dir())


def get(home_socket: str, target: str, accept: str) -> tuple[dict[str, str], bytearray] | None:
    """``GET target``: the headers (lower-case names) and body of a 200 answer of type
    ``accept``, or None for anything else (the client's way then says what went wrong)."""
    try:
        answer = request(home_socket, "GET", target, {"Accept": accept})
    except Lost:
        return None
    if answer is None:
        return None
    status, headers, body = answer
    if status != 200 or headers.get("content-type", "").split(";")[0].strip() != accept:
        return None  # a refusal (the client words it), or an older service
    return headers, body


def request(
    home_socket: str,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytearray] | None:
    """One HTTP/1.1 request: the status, headers (lower-case names) and body of the answer.

    None when nothing answers at ``home_socket`` (nothing was sent); ``Lost`` when the request
    went out but the answer did not come back whole.
    """
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        conn.settimeout(TIMEOUT)
        try:
            conn.connect(home_socket)
        except OSError:
            return None
        try:
            conn.sendall(request_bytes(method, target, headers, body))
            return _answer(conn)
        except OSError as error:
            raise Lost(f"the trainui service ({home_socket}) stopped answering: {error}") from None
    finally:
        conn.close()


def _answer(conn) -> tuple[int, dict[str, str], bytearray]:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("the connection closed before the answer")
        received += chunk
    head, _, start = received.partition(b"\r\n\r\n")
    status, _reason, headers = parse_head(head)
    length = headers.get("content-length", "")
    if not length.isdigit() or len(start) > int(length):
        raise OSError("an answer without a length")  # chunked: not what this service sends
    body = bytearray(int(length))  # read in place: a long list is megabytes
    view = memoryview(body)
    view[: len(start)] = start
    done = len(start)
    while done < len(body):
        n = conn.recv_into(view[done:])
        if not n:
            raise OSError(f"the answer was cut after {done} of {len(body)} bytes")
        done += n
    return status, headers, body


def request_bytes(
    method: str, target: str, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> bytes:
    """An HTTP/1.1 request on a connection used once: its head and body in one buffer."""
    head = [f"{method} {target} HTTP/1.1", "Host: trainui", "Connection: close"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        head.append(f"Content-Length: {len(body)}")
    return "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body


def parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """An answer's status line and headers (without the blank line): status, reason, headers
    with names in lower case. OSError when it is not HTTP."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise OSError(f"not an HTTP answer: {lines[0].strip()[:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[2].strip() if len(parts) > 2 else "", headers


def submission_fields(environment: Mapping[str, str] | None, check: bool) -> dict[str, str]:
    """A submission's form fields besides its two files."""
    import json

    return {"environment": json.dumps(dict(environment or {})), "check": str(check).lower()}


def multipart(
    definition: bytes, manifest: bytes, fields: Mapping[str, str], filename: str = "model.zip"
) -> tuple[bytes, str]:
    """A submission as one multipart/form-data body, and its Content-Type; ``filename``: the
    model definition's, which the service's messages name it by."""
    boundary = os.urandom(16).hex()
    while boundary.encode() in definition or boundary.encode() in manifest:
        boundary = os.urandom(16).hex()
    dash = f"--{boundary}\r\n".encode()
    parts = [
        dash,
        b'Content-Disposition: form-data; name="model_definition"; filename="'
        + _quoted(filename)
        + b'"\r\nContent-Type: application/zip\r\n\r\n',
        definition,
        b"\r\n",
        dash,
        b'Content-Disposition: form-data; name="manifest"; filename="manifest.yml"\r\n'
        b"Content-Type: application/yaml\r\n\r\n",
        manifest,
        b"\r\n",
    ]
    for name, value in fields.items():
        parts += [dash, f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()]
        parts += [value.encode(), b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _quoted(filename: str) -> bytes:
    """A file name as a quoted form-data parameter: ASCII, without quotes, backslashes or
    line breaks (anything else is named "model.zip", as before)."""
    if filename.isascii() and filename.isprintable() and not set('"\\') & set(filename):
        return filename.encode()
    return b"model.zip"


def refusal(status: int, reason: str, body: bytes, where: str) -> tuple[str, str | None, list]:
    """An error answer as the client says it: the sentence, the error code, the problems."""
    import json

    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    message = data.get("message") or f"{where} answered {status} {reason}".rstrip()
    if status == 401:
        message = f"{where} refused the request: {message}"
    return message, data.get("error_code"), data.get("errors") or []
