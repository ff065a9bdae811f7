"""Streaming one object into a file over HTTP: resumed after a cut, retried, checked.

The Swift store authorises a GET with its client library, then moves the
bytes here on a plain ``http.client`` connection kept per thread: reading straight into one
reused buffer and writing it out costs a fraction of the CPU that boto3's or requests' layers
spend per byte and per request, and memory stays flat whatever the object's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping

from trainui.storage import Progress, StoreError, attempts

CHUNK = 1 << 20
BACKOFF = 0.25  # seconds before the 2nd try; doubled each time, at most MAX_BACKOFF
MAX_BACKOFF = 4.0
TIMEOUT = 60.0  # seconds without a byte before a connection counts as dead

_MD5 = re.compile(r"^[0-9a-f]{32}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class Transient(Exception):
    """A failure worth another try (a cut connection, a 5xx, a timeout)."""


def backoff(attempt: int) -> float:
    """Seconds to wait before try ``attempt + 1`` (full jitter, as AWS recommends)."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF, BACKOFF * 2 ** (attempt - 1))


def md5_of(etag: str) -> str | None:
    """The MD5 an ETag stands for, or None (a multipart or SLO ETag is not one)."""
    etag = etag.strip('"').lower()
    return etag if _MD5.match(etag) else None


class Endpoint:
    """Persistent HTTP(S) connections to one server, one per thread."""

    def __init__(self, url: str, cafile: str | None = None, verify: bool = True) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StoreError(f"{url!r} is not an http(s) URL")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.cafile = cafile or os.environ.get("AWS_CA_BUNDLE") or None
        self.verify = verify
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        # the Host header http.client sends
        self.host_header = host if self.port in (None, default) else f"{host}:{self.port}"
        self._prefix = ""  # the scheme and host, for requests through a plain HTTP proxy
        self._proxy = _proxy_for(url)
        self._local = threading.local()
        self._ssl = None
        self.timeout = TIMEOUT

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self.host, self.port
        if self._proxy is not None:
            host, port = self._proxy.hostname, self._proxy.port
        if self.scheme == "http":
            if self._proxy is not None:
                self._prefix = f"http://{self.host_header}"
            return http.client.HTTPConnection(host, port, timeout=self.timeout)
        if self._ssl is None:
            import ssl

            context = ssl.create_default_context(cafile=self.cafile)
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl = context
        conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._ssl)
        if self._proxy is not None:
            conn.set_tunnel(self.host, self.port, headers=_proxy_auth(self._proxy))
        return conn

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
    ) -> http.client.HTTPResponse:
        """Send a request on this thread's connection; Transient if it could not be made.

        A connection the server closed while it was idle is replaced once, silently.
        """
        for fresh in (False, True):
            conn = getattr(self._local, "conn", None)
            reused = conn is not None and not fresh
            if conn is None or fresh:
                self.discard()
                conn = self._local.conn = self._connect()
            try:
                if self._prefix and self._proxy is not None:
                    headers = {**headers, **_proxy_auth(self._proxy)}
                conn.request(method, self._prefix + target, body=body, headers=dict(headers))
                return conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self.discard()
                if not reused:
                    raise Transient(_network_error(exc)) from None
        raise AssertionError("unreachable")

    def discard(self) -> None:
        """Close this thread's connection (after an error, or a response not read to its end)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()


def _proxy_for(url: str) -> urllib.parse.SplitResult | None:
    """The proxy the environment (``https_proxy``, ``no_proxy``...) sets for ``url``."""
    names = ("http_proxy", "https_proxy", "all_proxy")
    if not any(os.environ.get(n) or os.environ.get(n.upper()) for n in names):
        return None
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    return urllib.parse.urlsplit(proxy)


def _proxy_auth(proxy: urllib.parse.SplitResult) -> dict[str, str]:
    if not proxy.username:
        return {}
    import base64

    user = urllib.parse.unquote(proxy.username)
    password = urllib.parse.unquote(proxy.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Proxy-Authorization": f"Basic {token}"}


def _network_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed after {len(exc.partial)} more bytes"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


# open_at(offset) sends the GET (with a Range from ``offset`` when it is not 0) and returns the
# response, whose status it has checked, or raises StoreError (final) or Transient.
Opener = Callable[[int], http.client.HTTPResponse]


def fetch(
    open_at: Opener,
    endpoint: Endpoint,
    dest: str,
    what: str,
    size: int | None = None,
    md5: str | None = None,
    progress: Progress | None = None,
) -> int:
    """Stream the object that ``open_at`` reads into ``dest``; return its size.

    ``what`` names the object in messages. A cut transfer is resumed where it stopped (a
    Range request) up to ``attempts()`` tries, with backoff. The bytes are checked against
    ``size`` and ``md5`` when given. On failure ``dest`` is removed and StoreError raised
    (OSError for the local disk, TransferCancelled when ``progress`` asked to stop).
    """
    tries = attempts()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    digest = hashlib.md5() if md5 else None
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        fd = os.open(dest, flags, 0o644)
    except FileNotFoundError:  # its folder is made only when missing: a syscall per object
        parent = os.path.dirname(dest)
        if not parent:
            raise
        os.makedirs(parent, exist_ok=True)
        fd = os.open(dest, flags, 0o644)
    offset = 0
    attempt = 0
    try:
        while True:
            attempt += 1
            try:
                response = open_at(offset)
                try:
                    start, total = _placement(response, offset)
                    if _segmented(response):
                        # Swift large objects: the ETag is not the MD5 of the bytes, and a
                        # dynamic one is listed with the size of its manifest
                        digest = md5 = None
                        if response.getheader("X-Object-Manifest"):
                            size = None
                    if start != offset:  # the server sent the whole object again
                        os.ftruncate(fd, 0)
                        os.lseek(fd, 0, os.SEEK_SET)
                        if digest is not None:
                            digest = hashlib.md5()
                        if progress is not None and offset:
                            progress(-offset)
                        offset = 0
                    if size is not None and total is not None and total != size:
                        raise StoreError(
                            f"{what} changed after the bucket was listed: it is now"
                            f" {total} bytes, listed as {size}"
                        )
                    offset = _copy(response, fd, view, offset, digest, progress)
                finally:
                    if not response.isclosed():
                        endpoint.discard()  # not read to its end: the connection is unusable
                expected = total if total is not None else size
                if expected is not None and offset < expected:
                    raise Transient(f"the connection closed after {offset} of {expected} bytes")
                break
            except Transient as exc:
                if attempt >= tries:
                    raise StoreError(
                        f"{what} could not be downloaded after {tries} tries: {exc}"
                    ) from None
                time.sleep(backoff(attempt))
        if size is not None and offset != size:
            raise StoreError(f"{what} is {offset} bytes, but the bucket listing said {size}")
        if digest is not None and digest.hexdigest() != md5:
            raise StoreError(
                f"{what} arrived corrupted: its MD5 is {digest.hexdigest()}, its ETag says {md5}"
            )
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(dest)
        if progress is not None and offset:
            with contextlib.suppress(Exception):
                progress(-offset)  # what was counted for the removed file
        raise
    os.close(fd)
    return offset


def _segmented(response: http.client.HTTPResponse) -> bool:
    slo = (response.getheader("X-Static-Large-Object") or "").lower() == "true"
    return slo or bool(response.getheader("X-Object-Manifest"))


def _placement(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """Where the response's body starts in the object, and the object's size if known."""
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.getheader("Content-Range") or "")
        if not match or int(match.group(1)) != offset:
            raise Transient(f"the server answered a range request with {match and match[0]!r}")
        return offset, None if match.group(3) == "*" else int(match.group(3))
    length = response.getheader("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _copy(
    response: http.client.HTTPResponse,
    fd: int,
    view: memoryview,
    offset: int,
    digest,
    progress: Progress | None,
) -> int:
    while True:
        try:
            n = response.readinto(view)
        except (OSError, http.client.HTTPException) as exc:
            raise Transient(_network_error(exc)) from None
        if not n:
            return offset
        chunk = view[:n]
        if digest is not None:
            digest.update(chunk)
        written = 0
        while written < n:
            written += os.write(fd, chunk[written:])
        offset += n
        if progress is not None:
            progress(n)


def error_body(response: http.client.HTTPResponse, endpoint: Endpoint) -> bytes:
    """The body of an error response (64 KiB at most); the connection is dropped if unusable."""
    body = b""
    with contextlib.suppress(OSError, http.client.HTTPException):
        body = response.read(65536)
    if not response.isclosed():
        endpoint.discard()
    return body
