"""The one way to the service, for the CLI and the TUI: async HTTP over the home's Unix socket.

In local mode a service is started (detached, so runs outlive this program) when none answers.
Errors come back as ``ClientError`` with one sentence for the user.

httpx (with httpcore, h11 and anyio under it) costs some 0.15 s of CPU to import and to make
its first request: more than the rest of the TUI's work to show a run's log. So it is imported
on first use, and plain GETs on the local socket (reading runs, a log's byte range, health)
are a few lines of asyncio instead (``_local_request``, also for submissions that fit in memory,
halts and deletes): the TUI shows a log, and ``trainui list`` or ``show`` answer, without it.
Streams, large uploads and the remote service use httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from trainui.config import ensure_home, home_dir, socket_path
from trainui.core.shared import shared_object
from trainui.fastpath import (
    INLINE_UPLOAD,
    multipart,
    parse_head,
    refusal,
    request_bytes,
    submission_fields,
)

if TYPE_CHECKING:
    import httpx

START_TIMEOUT = 15.0
TIMEOUT, CONNECT_TIMEOUT = 30.0, 5.0
RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 5.0)


def _httpx():
    """httpx, imported on first use."""
    # httpx imports its command-line tool on import, which pulls in rich and pygments (about
    # 60 ms) when they are installed, as they are here (textual needs them). Nothing here uses
    # that tool: tell the import it is absent, unless already imported.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import httpx

    return httpx


RESULT_DOWNLOADS = 4  # objects of a run's results downloaded at once


class ClientError(Exception):
    """Something the service refused or could not do, in one sentence."""

    def __init__(
        self, message: str, status: int | None = None, code: str | None = None, errors=None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.errors = errors or []


class ServiceUnreachable(ClientError):
    pass


class Client:
    """Local mode (the default): the home's Unix socket, starting a service when none answers.
    Remote mode: ``url`` (or ``TRAINUI_URL``) with ``token`` (or ``TRAINUI_TOKEN``)."""

    def __init__(
        self,
        home: str | None = None,
        autostart: bool = True,
        environ: Mapping[str, str] = os.environ,
        url: str | None = None,
        token: str | None = None,
        cacert: str | None = None,
    ) -> None:
        self.home = home or home_dir(environ)
        self.socket = socket_path(self.home)
        self.url = (url or environ.get("TRAINUI_URL") or "").rstrip("/") or None
        self.token = token or environ.get("TRAINUI_TOKEN") or None
        self.cacert = cacert or environ.get("TRAINUI_CACERT") or None
        self.autostart = autostart and self.url is None
        self.environ = environ
        self._http: httpx.AsyncClient | None = None
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ClientError(f"'{self.url}' is not an http:// or https:// URL")

    @property
    def remote(self) -> bool:
        return self.url is not None

    @property
    def where(self) -> str:
        """The service, in words, for messages."""
        return self.url if self.url is not None else f"the trainui service ({self.socket})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            httpx = _httpx()
            timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
            if self.url is None:
                self._http = httpx.AsyncClient(
                    # no TLS on a Unix socket: without verify=False httpx would load the CA
                    # bundle for nothing (about 60 ms)
                    transport=httpx.AsyncHTTPTransport(uds=self.socket, retries=0, verify=False),
                    base_url="http://trainui",
                    timeout=timeout,
                )
            else:
                headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
                verify: object = True
                if self.cacert:
                    import ssl

                    verify = ssl.create_default_context(cafile=self.cacert)
                self._http = httpx.AsyncClient(
                    base_url=self.url, headers=headers, timeout=timeout, verify=verify
                )
        return self._http

    # --- the API --------------------------------------------------------------------------

    async def health(self) -> dict:
        return (await self._request("GET", "/v3/health")).json()

    async def submit(
        self,
        definition_zip: str,
        manifest: bytes,
        environment: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> dict:
        """Submit a run. ``check=False`` skips the check that both buckets are reachable from
        the service (for stores only the GPU box's runs can reach)."""
        data = submission_fields(environment, check)
        name = os.path.basename(definition_zip)  # what the service's messages name it by
        with open(definition_zip, "rb") as f:
            if os.fstat(f.fileno()).st_size <= INLINE_UPLOAD:
                # one buffer, sent in one write: httpx streams each part of a multipart body
                # separately, a socket write and a wake-up of the service each
                body, content_type = multipart(f.read(), manifest, data, name)
                response = await self._request(
                    "POST", "/v3/models", content=body, headers={"Content-Type": content_type}
                )
            else:
                files = {
                    "model_definition": (name, f, "application/zip"),
                    "manifest": ("manifest.yml", manifest, "application/yaml"),
                }
                response = await self._request("POST", "/v3/models", files=files, data=data)
        return response.json()

    async def list_runs(
        self, status: str | None = None, limit: int | None = None, offset: int = 0
    ) -> tuple[list[dict], int]:
        params: dict[str, str | int] = {"offset": offset}
        if status:
            params["status"] = status
        if limit is not None:
            params["limit"] = limit
        # equal values of the runs (their framework, data, progress...) as one object each:
        # a 10,000-run history takes half the memory
        response = await self._request("GET", "/v3/models", params=params)
        body = json.loads(response.content, object_hook=shared_object)
        return body["models"], body["count"]

    async def get_run(self, model_id: str) -> dict:
        return (await self._request("GET", f"/v3/models/{model_id}")).json()

    async def delete_run(self, model_id: str) -> None:
        await self._request("DELETE", f"/v3/models/{model_id}")

    async def halt_run(self, model_id: str) -> dict:
        return (await self._request("POST", f"/v3/models/{model_id}/halt")).json()

    async def gpus(self) -> dict:
        """The GPUs: readings, which run holds each (see ``GET /v3/gpus``)."""
        return (await self._request("GET", "/v3/gpus")).json()

    async def gpus_history(self) -> dict:
        """About five minutes of readings per GPU, for sparklines."""
        return (await self._request("GET", "/v3/gpus/history")).json()

    async def manifest(self, model_id: str) -> str:
        return (await self._request("GET", f"/v3/models/{model_id}/manifest")).text

    async def download_definition(self, model_id: str, dest: str) -> int:
        response = await self._request("GET", f"/v3/models/{model_id}/definition")
        tmp = dest + ".part"
        with open(tmp, "wb") as f:
            f.write(response.content)
        os.replace(tmp, dest)
        return len(response.content)

    async def list_results(self, model_id: str) -> dict:
        """What the run stored under ``<id>/`` in its results bucket:
        ``{prefix, objects: [{key, size}], count, bytes}``, keys less the prefix."""
        return (await self._request("GET", f"/v3/models/{model_id}/results")).json()

    async def download_results(
        self,
        model_id: str,
        objects: list[dict],
        dest_dir: str,
        progress: Callable[[int], None] | None = None,
        file_done: Callable[[str], None] | None = None,
        at_once: int = RESULT_DOWNLOADS,
    ) -> None:
        """The ``objects`` of :meth:`list_results` into ``dest_dir``, ``at_once`` at a time
        (:meth:`download_result` each); ``file_done`` gets each key once its file is whole.
        A failure stops the others and is a ClientError that says how many files are there."""
        queue = iter(objects)  # shared by the workers
        done: list[str] = []

        async def worker() -> None:
            for item in queue:
                await self.download_result(model_id, item["key"], dest_dir, progress)
                done.append(item["key"])
                if file_done is not None:
                    file_done(item["key"])

        tasks = [asyncio.create_task(worker()) for _ in range(at_once)]
        try:
            await asyncio.gather(*tasks)
        except (ClientError, asyncio.CancelledError) as error:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if isinstance(error, ClientError) and done:
                raise ClientError(
                    f"{error} ({len(done)} of {len(objects)} files are in {dest_dir})"
                ) from None
            raise

    async def download_result(
        self,
        model_id: str,
        key: str,
        dest_dir: str,
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Object ``key`` of :meth:`list_results` into ``dest_dir``/``key`` (a file of that
        name is replaced); the path. Written to ``PATH.part`` and renamed once whole, so a
        failed download leaves no file. ``progress`` gets each number of bytes received."""
        from trainui.storage import StoreError, safe_key_path

        httpx = _httpx()
        try:
            dest = safe_key_path(dest_dir, key)
        except StoreError as error:
            raise ClientError(
                f"refused to download from the results of {model_id}: {error}"
            ) from None
        await self._ensure_service()
        path = f"/v3/models/{model_id}/results/" + urllib.parse.quote(key, safe="/")
        tmp = dest + ".part"
        received = 0
        started = False
        expected: str | None = None
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            async with self.http.stream(
                "GET", path, timeout=httpx.Timeout(120.0, connect=5.0)
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response, self)
                started = True
                expected = response.headers.get("content-length")
                with open(tmp, "wb") as f:
                    async for chunk in response.aiter_raw():
                        f.write(chunk)
                        received += len(chunk)
                        if progress is not None:
                            progress(len(chunk))
            if expected is not None and expected.isdigit() and received != int(expected):
                raise ClientError(
                    f"the download of {key} was cut short: {received} of {expected} bytes"
                )
            os.replace(tmp, dest)
        except httpx.TransportError as error:
            if not started:
                raise self._unreachable(error) from None
            of = f" of {expected}" if expected and expected.isdigit() else ""
            raise ClientError(
                f"the download of {key} stopped after {received}{of} bytes: the service could "
                "not fetch the rest from the results bucket, or the connection broke (the "
                "service's log says which)"
            ) from None
        except OSError as error:
            where = error.filename or dest
            raise ClientError(f"cannot write {where}: {error.strerror or error}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # gone already when the download succeeded
        return dest

    async def read_log(
        self, model_id: str, offset: int = 0, limit: int | None = None
    ) -> tuple[bytes, int, int]:
        """A byte range of the log (``offset`` < 0 counts from the end): data, size, start."""
        params: dict[str, int] = {"offset": offset}
        if limit is not None:
            params["limit"] = limit
        response = await self._request("GET", f"/v3/models/{model_id}/logs", params=params)
        return (
            response.content,
            int(response.headers.get("x-log-size", 0)),
            int(response.headers.get("x-log-offset", 0)),
        )

    async def follow_log(self, model_id: str, offset: int = 0) -> AsyncIterator[bytes]:
        """The log from ``offset`` as it grows, until the run has ended. Reconnects by itself
        (starting the service again in local mode) and resumes at the byte where it was cut,
        so nothing is lost or repeated."""
        position = offset
        failures = 0
        while True:
            try:
                await self._ensure_service()
                async with self._stream(
                    f"/v3/models/{model_id}/logs", {"follow": "true", "offset": position}
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise _error(response, self)
                    if position < 0:
                        position = int(response.headers.get("x-log-offset", 0))
                    async for chunk in response.aiter_raw():
                        failures = 0
                        position += len(chunk)
                        yield chunk
                return
            except ServiceUnreachable:
                self.forget_service()  # it may have died: look again, start it if needed
                if failures >= len(RECONNECT_DELAYS):
                    raise ServiceUnreachable(
                        f"lost the connection to {self.where} and could not get it back"
                    ) from None
                await asyncio.sleep(RECONNECT_DELAYS[failures])
                failures += 1

    async def events(self, last_id: int | None = None) -> AsyncIterator[tuple[int, str, dict]]:
        """Run changes as (event id, kind, data); kind is ``run`` or ``deleted``. When the
        connection drops, this says so with kind ``connection`` (data ``{"state": "lost"}``),
        reconnects by itself, resumes after the last event seen, and says ``restored``."""
        failures = 0
        lost = False
        while True:
            headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
            try:
                await self._ensure_service()
                async with self._stream("/v3/events", headers=headers) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise _error(response, self)
                    if lost:
                        lost = False
                        yield (last_id or 0), "connection", {"state": "restored"}
                    failures = 0
                    kind, data = "message", []
                    async for line in response.aiter_lines():
                        if line.startswith("id:"):
                            last_id = int(line[3:].strip())
                        elif line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif line == "" and data:
                            text = "\n".join(data)
                            yield (last_id or 0), kind, json.loads(text, object_hook=shared_object)
                            kind, data = "message", []
            except ServiceUnreachable:
                self.forget_service()
            if not lost:
                lost = True
                yield (last_id or 0), "connection", {"state": "lost"}
            await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
            failures += 1

    # --- plumbing -------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs) -> httpx.Response | _Response:
        await self._ensure_service()
        if self.url is None and kwargs.keys() <= {"params", "content", "headers"}:
            try:
                response = await self._local_request(method, path, **kwargs)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as error:
                raise self._unreachable(error) from None
        else:
            httpx = _httpx()
            try:
                response = await self.http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                raise self._unreachable(error) from None
        if response.status_code >= 400:
            raise _error(response, self)
        return response

    async def _local_get(
        self, path: str, params: Mapping | None = None, timeout: float = TIMEOUT
    ) -> _Response:
        return await self._local_request("GET", path, params=params, timeout=timeout)

    async def _local_request(
        self,
        method: str,
        path: str,
        params: Mapping | None = None,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> _Response:
        """One request on the local socket, one connection per request (HTTP/1.1), its body
        sent with its head in one write; through the loop's socket calls (no transport,
        protocol or stream to make per request: half the client's CPU per submission)."""
        if params:
            path = f"{path}?{urlencode(params)}"
        request = request_bytes(method, path, headers, content)

        async def exchange() -> _Response:
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, self.socket)
                await loop.sock_sendall(sock, request)
                return await _read_response(_SocketReader(loop, sock))
            finally:
                sock.close()

        return await _within(timeout, exchange())

    @contextlib.asynccontextmanager
    async def _stream(
        self, path: str, params: Mapping | None = None, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A GET whose answer's body is read as it comes, with no time limit once connected
        (a log followed, the events), through httpx locally and remotely alike; a broken
        connection is ServiceUnreachable."""
        httpx = _httpx()
        try:
            async with self.http.stream(
                "GET", path, params=params, headers=headers,
                timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),
            ) as response:  # fmt: skip
                yield response
        except httpx.TransportError as error:
            raise self._unreachable(error) from None

    def _unreachable(self, error: Exception) -> ServiceUnreachable:
        """A transport failure as one sentence: refused, TLS, timeout, name, ..."""
        text = str(error) or type(error).__name__
        timeout = "httpx" in sys.modules and isinstance(error, _httpx().TimeoutException)
        if timeout or isinstance(error, asyncio.TimeoutError):
            return ServiceUnreachable(f"{self.where} did not answer in time")
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            hint = "" if self.cacert else " (a self-signed certificate? pass --cacert FILE)"
            return ServiceUnreachable(
                f"TLS with {self.where} failed: its certificate is not trusted{hint}"
            )
        if "SSL" in text or "TLS" in text or "WRONG_VERSION_NUMBER" in text:
            return ServiceUnreachable(f"TLS with {self.where} failed: {text}")
        if isinstance(error, asyncio.IncompleteReadError):
            text = "the connection was closed before the answer was complete"
        refused = ("Connection refused", "Errno 111", "All connection attempts failed")
        if any(words in text for words in refused):  # anyio says the last one for a refusal
            return ServiceUnreachable(f"nothing answers at {self.where} (connection refused)")
        if "Name or service not known" in text or "nodename nor servname" in text:
            return ServiceUnreachable(f"the host of {self.where} cannot be found")
        return ServiceUnreachable(f"{self.where} is not reachable: {text}")

    _started = False

    async def _ensure_service(self) -> None:
        """In local mode, start a service for this home when none answers on its socket."""
        if self._started or self.remote:
            return
        if await self._answers():
            self._started = True
            return
        if not self.autostart:
            raise ServiceUnreachable(f"no trainui service answers on {self.socket}")
        self._spawn_service()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if await self._answers():
                self._started = True
                return
        log = os.path.join(self.home, "service.log")
        raise ServiceUnreachable(
            f"the trainui service did not start within {START_TIMEOUT:.0f} s (see {log})"
        )

    async def _answers(self) -> bool:
        if not os.path.exists(self.socket):
            return False
        try:
            response = await self._local_get("/v3/health", timeout=CONNECT_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            return False
        return response.status_code == 200

    def _spawn_service(self) -> None:
        ensure_home(self.home)
        env = {**self.environ, "TRAINUI_HOME": self.home}
        with open(os.path.join(self.home, "service.log"), "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "trainui", "serve", "--no-tcp", "--idle-exit"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # the service outlives this program and its terminal
                close_fds=True,
                env=env,
                cwd="/",
            )

    def forget_service(self) -> None:
        """Look for the service again on the next request (it may have been restarted)."""
        self._started = False


async def _within(seconds: float, coroutine):
    """``await coroutine``, or TimeoutError after ``seconds``. Not ``asyncio.wait_for``: up to
    Python 3.11 it swallows a cancel that comes as the awaited one ends, and a TUI worker
    cancelled then went on. ``asyncio.timeout`` (3.11) cancels in the same task; before it,
    a task of its own."""
    if _timeout is not None:
        async with _timeout(seconds):
            return await coroutine
    task = asyncio.ensure_future(coroutine)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    finally:
        if not task.done():
            task.cancel()
    if not done:
        raise asyncio.TimeoutError
    return task.result()


_timeout = getattr(asyncio, "timeout", None)


class _SocketReader:
    """The calls of ``asyncio.StreamReader`` that ``_read_response`` makes, on a non-blocking
    socket read through the loop's ``sock_recv``."""

    MAX_HEAD = 1 << 20  # a longer line or head is not an answer of the service's

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    async def _fill(self) -> None:
        chunk = await self.loop.sock_recv(self.sock, 1 << 18)
        if chunk:
            self.buffer += chunk
        else:
            self.eof = True

    def _take(self, count: int) -> bytes:
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def readuntil(self, separator: bytes) -> bytes:
        start = 0
        while (found := self.buffer.find(separator, start)) < 0:
            if self.eof:
                raise asyncio.IncompleteReadError(self._take(len(self.buffer)), None)
            if len(self.buffer) > self.MAX_HEAD:
                raise OSError("not an HTTP answer: its head does not end")
            start = max(0, len(self.buffer) - len(separator) + 1)
            await self._fill()
        return self._take(found + len(separator))

    async def readexactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if self.eof:
                raise asyncio.IncompleteReadError(self._take(len(self.buffer)), count)
            await self._fill()
        return self._take(count)

    async def readline(self) -> bytes:
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as error:
            return error.partial  # as StreamReader.readline: what there was, at the end

    async def read(self, most: int = -1) -> bytes:
        """Up to ``most`` bytes, as soon as there are some (b"" at the end); -1: up to the
        end."""
        if most < 0:
            while not self.eof:
                await self._fill()
            return self._take(len(self.buffer))
        if not self.buffer and not self.eof:
            await self._fill()
        return self._take(min(most, len(self.buffer)))


class _Response:
    """What ``_local_get`` read: the parts of an ``httpx.Response`` that this module uses."""

    def __init__(self, status_code: int, reason_phrase: str, headers: dict, content: bytes):
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers  # names in lower case
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


async def _read_response(reader: _SocketReader | asyncio.StreamReader) -> _Response:
    """An HTTP/1.1 response: status line, headers, then its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status, reason, headers = parse_head(head[:-4])
    if "content-length" in headers:
        content = await reader.readexactly(int(headers["content-length"]))
    else:
        content = b"".join([chunk async for chunk in _body(reader, headers)])
    return _Response(status, reason, headers, content)


async def _body(
    reader: _SocketReader | asyncio.StreamReader, headers: dict[str, str]
) -> AsyncIterator[bytes]:
    """An answer's body as it arrives: chunked, or Content-Length bytes, or up to the end of
    the connection. ``asyncio.IncompleteReadError`` when the connection ends before it does."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            async for data in _exactly(reader, size):
                yield data
            await reader.readexactly(2)  # the chunk's line end
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, up to a blank line
            pass
    elif "content-length" in headers:
        async for data in _exactly(reader, int(headers["content-length"])):
            yield data
    else:
        while data := await reader.read(1 << 18):
            yield data


async def _exactly(
    reader: _SocketReader | asyncio.StreamReader, count: int
) -> AsyncIterator[bytes]:
    """``count`` bytes, as they arrive."""
    while count:
        data = await reader.read(count)
        if not data:
            raise asyncio.IncompleteReadError(b"", count)
        count -= len(data)
        yield data


def _error(response: httpx.Response | _Response, client: Client) -> ClientError:
    message, code, errors = refusal(
        response.status_code, response.reason_phrase, response.content, client.where
    )
    return ClientError(message, response.status_code, code, errors)
