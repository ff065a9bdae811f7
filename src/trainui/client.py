"""The one way to the service, for the CLI and the TUI: httpx, over the home's Unix socket
(local mode, httpx's Unix-socket transport) or TCP with a token (remote mode). The only code
that knows the service's URLs.

Each call of the API is written once (``_Api``: the request, and how its answer reads) and
sent by one of two drivers:

- ``BlockingClient``: httpx's synchronous client, for the CLI's one-shot commands (``trainui
  train``, ``list``, ``show``...): no event loop to import and start, about 45 ms of CPU less
  per command than the async client (measured on ``show``; httpx's own import, some 50 ms,
  is paid either way);
- ``Client``: httpx's async client, for the TUI, a followed log, the events and downloads.

In local mode a service is started (detached, so runs outlive this program) when none
answers. Errors come back as ``ClientError`` with one sentence for the user.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from trainui.config import Settings, current, ensure_home, socket_path

if TYPE_CHECKING:
    import httpx

START_TIMEOUT = 15.0
EXITING_PAUSE = 0.2  # seconds before a GET closed unanswered by an exiting service is sent again
TIMEOUT, CONNECT_TIMEOUT = 30.0, 5.0
RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 5.0)
RECONNECT_FOR = 300.0  # seconds a followed log tries to get a lost connection back
FOLLOW_IDLE = 10  # seconds: a followed log this quiet is ended by the service, asked again
SILENCE = 45.0  # seconds without a byte on a stream: the connection is taken as lost
INLINE_UPLOAD = 8 << 20  # a submission up to this size is sent from memory, in one write
RESULT_DOWNLOADS = 4  # objects of a run's results downloaded at once
NDJSON = "application/x-ndjson"


def _httpx():
    """httpx, imported on first use."""
    # httpx imports its command-line tool on import, which pulls in rich and pygments (about
    # 60 ms) when they are installed, as they are here (textual needs them). Nothing here uses
    # that tool: tell the import it is absent, unless already imported.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import httpx

    return httpx


def kept_said(listing: dict) -> str:
    """Of a results listing (``list_results``): how many of its files come from the box, the
    results bucket having refused them; "" when none."""
    kept = listing.get("kept") or 0
    # kept there when the bucket refused them, or when the learner was lost before it could
    # copy them (the OOM killer): not said as the bucket's fault, which it may not be
    return f" ({kept} of them from the box: not in the results bucket)" if kept else ""


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


class _Call(NamedTuple):
    """One request of the API and how its answer is read (``read(response)``)."""

    method: str
    path: str
    read: Callable[[httpx.Response], Any]
    params: Mapping[str, str | int] | Sequence[tuple[str, str | int]] | None = None
    headers: Mapping[str, str] | None = None
    files: Mapping | None = None
    data: Mapping[str, str] | None = None
    closing: Any = None  # closed once the request is done (the uploaded file)
    once: bool = False  # sent at most once: a lost answer is not a lost request
    stream: bool = False  # ``read`` reads the body as it comes (``iter_raw``), not whole


class _NotTrainui(Exception):
    """An answer that is not the service's: not JSON where JSON was asked (a proxy's login
    page, another server at that port)."""


def _expect(response: httpx.Response, *kinds: str) -> None:
    """The answer's media type is one of ``kinds`` (``json``), else it is not trainui's."""
    media = response.headers.get("content-type", "")
    if not any(kind in media for kind in kinds):
        raise _NotTrainui(media.split(";")[0] or "no content type")


def _json(response: httpx.Response):
    import json

    _expect(response, "json")
    try:
        return json.loads(response.content)
    except ValueError:
        raise _NotTrainui("JSON that cannot be read") from None


def _json_numbers(response: httpx.Response):
    """JSON of many numbers (metric points; the service encodes them with msgspec): msgspec
    decodes them in about half json's time."""
    import msgspec

    _expect(response, "json")
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        raise _NotTrainui("JSON that cannot be read") from None


def _text(response: httpx.Response) -> str:
    return response.text


def _checked_url(given: str) -> str:
    """The service's URL (``TRAINUI_URL``, ``--url``) without its trailing ``/``; a mistyped
    one (no host, a port that is not one) is said, not met as a traceback later."""
    url = given.strip().rstrip("/")
    if not given.strip().startswith(("http://", "https://")):
        raise ClientError(f"'{given}' is not an http:// or https:// URL")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number from 0 to 65535 raises
    except ValueError as error:
        raise ClientError(f"'{given}' is not a valid URL: {error}") from None
    if not parts.hostname or any(c.isspace() for c in url):
        raise ClientError(f"'{given}' is not a valid URL: it names no host (https://HOST:PORT)")
    return url


def _check_token(token: str) -> None:
    """A token is printable ASCII without spaces: a character pasted with it (a typographic
    quote, a line end) is said, where it is, never the token itself."""
    for index, char in enumerate(token):
        if not (char.isascii() and char.isprintable()) or char == " ":
            raise ClientError(
                f"the token (--token, TRAINUI_TOKEN) holds {char!r} at character {index + 1}, "
                "which a token never has: copy it again (the last line of `trainui token add`)"
            )


class _Api:
    """The service's API (SPEC §6), each call once; what a call returns depends on the driver:
    the value itself (``BlockingClient``) or an awaitable of it (``Client``)."""

    def __init__(
        self,
        home: str | None = None,
        autostart: bool = True,
        environ: Mapping[str, str] | None = None,
        url: str | None = None,
        token: str | None = None,
        cacert: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        """Local mode (the default): the home's Unix socket, starting a service when none
        answers. Remote mode: ``url`` (else ``TRAINUI_URL``) with ``token`` (else
        ``TRAINUI_TOKEN``), trusting ``cacert`` (else ``TRAINUI_CACERT``) too."""
        if settings is None:
            settings = current() if environ is None else Settings(environ)
        self.settings = settings
        self.environ = settings.environ
        self.home = home or settings.home
        self.socket = socket_path(self.home)
        given = url or settings.url
        self.url = _checked_url(given) if given else None
        self.token = token or settings.token
        self.cacert = cacert or settings.cacert
        self.autostart = autostart and self.url is None
        self._started = False  # the service answered: a refused connection is not a restart
        if self.token:
            _check_token(self.token)

    @property
    def remote(self) -> bool:
        return self.url is not None

    @property
    def where(self) -> str:
        """The service, in words, for messages."""
        return self.url if self.url is not None else f"the trainui service ({self.socket})"

    def _do(self, call: _Call):  # the driver's
        raise NotImplementedError

    # --- the API --------------------------------------------------------------------------

    def health(self):
        return self._do(_Call("GET", "/v3/health", _json))

    def notify_test(self):
        """One test event to every notification hook: ``{hooks: [{hook, to, ok, problem}]}``."""
        return self._do(_Call("POST", "/v3/notify/test", _json))

    def frameworks(self):
        """The frameworks catalogue (SPEC §10): ``{catalogue, frameworks, message}``."""
        return self._do(_Call("GET", "/v3/frameworks", _json))

    def submit(
        self,
        definition_zip: str,
        manifest: bytes,
        environment: Mapping[str, str] | None = None,
        check: bool = True,
    ):
        """Submit a run: ``{model_id, url, status}``; a manifest with an ``experiment:`` block
        submits an experiment: ``{experiment_id, url, model_ids, status}`` (SPEC §9).
        ``check=False`` skips the check that both buckets are reachable from the service (for
        stores only the GPU box's runs can reach). Sent once: when the answer is lost, the
        run may have been accepted (the error says so)."""
        import json

        upload = open(definition_zip, "rb")  # noqa: SIM115 (closed with the request)
        # the name the service's messages call it by
        files = {
            "model_definition": (os.path.basename(definition_zip), upload, "application/zip"),
            "manifest": ("manifest.yml", manifest, "application/yaml"),
        }
        data = {"environment": json.dumps(dict(environment or {})), "check": str(check).lower()}
        call = _Call("POST", "/v3/models", _json, files=files, data=data, closing=upload, once=True)
        return self._do(call)

    def list_runs(
        self,
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        fields: tuple[str, ...] | None = None,
        shared: bool = True,
        experiment: str | None = None,
    ):
        """The runs, in submission order, and how many there are: ``(runs, count)``;
        ``experiment``: only that experiment's runs.
        ``fields``: only these keys of each run (what a table shows). ``shared``: equal values
        of the runs (their framework, data, progress...) as one object each, a 10,000-run
        history in half the memory (the TUI keeps it); not worth its time for a command that
        prints the list and exits. (json, not msgspec, here: httpx imports json already, and
        importing msgspec costs more than it saves on a table's columns.)"""
        params: dict[str, str | int] = {"offset": offset} if offset else {}
        if status:
            params["status"] = status
        if experiment:
            params["experiment"] = experiment
        if limit is not None:
            params["limit"] = limit
        if fields:
            params["fields"] = ",".join(fields)

        def read(response: httpx.Response) -> tuple[list[dict], int]:
            import json

            _expect(response, "json")
            text = b"[" + b",".join(response.content.splitlines()) + b"]"
            try:
                if shared:
                    from trainui.core.shared import shared_object

                    runs = json.loads(text, object_hook=shared_object)
                else:
                    runs = json.loads(text)
            except ValueError:
                raise _NotTrainui("JSON that cannot be read") from None
            return runs, int(response.headers.get("x-total-count", len(runs)))

        # one run a line, the total in a header
        return self._do(_Call("GET", "/v3/models", read, params, {"Accept": NDJSON}))

    def list_runs_ndjson(
        self,
        write: Callable[[bytes], object],
        status: str | None = None,
        experiment: str | None = None,
    ):
        """The runs as the service's JSON texts, one a line, undecoded, given to ``write``
        as they arrive (a 10,000-run history is megabytes): what ``trainui list --json``
        prints. Only for a blocking client (``write`` is called in the driver's thread)."""

        def read(response: httpx.Response) -> None:
            _expect(response, "json")
            for chunk in response.iter_raw():
                write(chunk)

        params = {"status": status} if status else {}
        if experiment:
            params["experiment"] = experiment
        call = _Call("GET", "/v3/models", read, params or None, {"Accept": NDJSON}, stream=True)
        return self._do(call)

    # --- experiments (SPEC §9) ----------------------------------------------------------

    def list_experiments(self, status: str | None = None):
        """``{experiments: [...], count}``: each experiment summed up (its state, its runs'
        counts by state, its best run); ``status``: only those in these states (``a,b``)."""
        params = {"status": status} if status else None
        return self._do(_Call("GET", "/v3/experiments", _json, params))

    def get_experiment(self, experiment_id: str, fields: tuple[str, ...] | None = None):
        """The experiment, with ``runs``: its runs, best first by the objective (``fields``:
        only these keys of each run)."""
        params = {"fields": ",".join(fields)} if fields else None
        return self._do(_Call("GET", _experiment_path(experiment_id), _json, params))

    def halt_experiment(self, experiment_id: str):
        return self._do(_Call("POST", _experiment_path(experiment_id, "halt"), _json))

    def resume_experiment(self, experiment_id: str, status: Sequence[str] = ()):
        """Each halted or failed run of the experiment (``status``: only those in these
        states) started again as its next attempt; ``resumed`` and ``not_resumed`` say which."""
        params = {"status": ",".join(status)} if status else None
        return self._do(_Call("POST", _experiment_path(experiment_id, "resume"), _json, params))

    def delete_experiment(self, experiment_id: str):
        return self._do(_Call("DELETE", _experiment_path(experiment_id), _json))

    def get_run(self, model_id: str):
        return self._do(_Call("GET", _run_path(model_id), _json))

    def delete_run(self, model_id: str):
        return self._do(_Call("DELETE", _run_path(model_id), _json))

    def halt_run(self, model_id: str):
        return self._do(_Call("POST", _run_path(model_id, "halt"), _json))

    def resume_run(self, model_id: str):
        """A halted or failed run started again as its next attempt (SPEC §11)."""
        return self._do(_Call("POST", _run_path(model_id, "resume"), _json))

    def gpus(self):
        """The GPUs: readings, which run holds each (see ``GET /v3/gpus``)."""
        return self._do(_Call("GET", "/v3/gpus", _json))

    def gpus_history(self):
        """About five minutes of readings per GPU, for sparklines."""
        return self._do(_Call("GET", "/v3/gpus/history", _json))

    def manifest(self, model_id: str):
        return self._do(_Call("GET", _run_path(model_id, "manifest"), _text))

    def download_definition(self, model_id: str, dest: str):
        """The run's model definition into the file ``dest``; its size."""

        def write(response: httpx.Response) -> int:
            tmp = dest + ".part"
            with open(tmp, "wb") as f:
                f.write(response.content)
            os.replace(tmp, dest)
            return len(response.content)

        return self._do(_Call("GET", _run_path(model_id, "definition"), write))

    def list_results(self, model_id: str):
        """What the run stored under ``<id>/`` in its results bucket:
        ``{prefix, objects: [{key, size}], count, bytes}``, keys less the prefix."""
        return self._do(_Call("GET", _run_path(model_id, "results"), _json))

    def read_log(self, model_id: str, offset: int = 0, limit: int | None = None):
        """A byte range of the log (``offset`` < 0 counts from the end): data, size, start."""
        params: dict[str, int] = {"offset": offset}
        if limit is not None:
            params["limit"] = limit

        def read(response: httpx.Response) -> tuple[bytes, int, int]:
            return (
                response.content,
                int(response.headers.get("x-log-size", 0)),
                int(response.headers.get("x-log-offset", 0)),
            )

        return self._do(_Call("GET", _run_path(model_id, "logs"), read, params))

    def metrics(
        self,
        model_id: str,
        max_points: int | None = None,
        names: Sequence[str] | None = None,
    ):
        """The run's metrics, each summed up: ``{model_id, metrics: [{name, last, step, min,
        max, steps, time}]}`` (``step``: the last point's, ``steps``: how many points). With
        ``max_points`` or ``names``, also ``series``: ``{name: {steps, values, times,
        downsampled}}``, the display series of the metrics ``names`` (None or empty: every one)
        as ``metric_points`` answers them, downsampled to ``max_points``, in one request."""
        params: list[tuple[str, str | int]] = []
        if max_points is not None:
            params.append(("max_points", max_points))
        params += [("metric", name) for name in names or ()]
        path = _run_path(model_id, "metrics")
        return self._do(_Call("GET", path, _json_numbers, params or None))

    def metric_points(
        self,
        model_id: str,
        name: str,
        after_step: int | None = None,
        max_points: int | None = None,
        offset: int | None = None,
    ):
        """A metric's points: ``{model_id, name, steps, values, times, downsampled}``. The
        display series (a step going backwards purges the points at or after it, as
        TensorBoard does), after ``after_step``, downsampled to ``max_points`` (the lowest and
        the highest of each bucket: spikes stay); or, with ``offset``, every point as written
        from the ``offset``-th on (the export; not with the other two)."""
        params: dict[str, int] = {}
        for key, value in (("after_step", after_step), ("max_points", max_points)):
            if value is not None:
                params[key] = value
        if offset is not None:
            params["offset"] = offset
        path = _run_path(model_id, "metrics/" + urllib.parse.quote(name, safe="/"))
        return self._do(_Call("GET", path, _json_numbers, params or None))

    # --- what both drivers share ----------------------------------------------------------

    def _client_options(self, httpx) -> dict:
        """httpx's client options for this service."""
        timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
        if self.url is None:
            # no TLS on a Unix socket: without verify=False httpx would load the CA bundle
            # for nothing (about 60 ms)
            return {"base_url": "http://trainui", "timeout": timeout, "verify": False}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        verify: object = True
        if self.cacert:
            import ssl

            try:
                verify = ssl.create_default_context(cafile=self.cacert)
            except (OSError, ssl.SSLError) as error:  # missing, a folder, not a certificate
                if isinstance(error, ssl.SSLError):
                    why = "it holds no certificate (PEM) that can be read"
                else:
                    why = error.strerror or error
                raise ClientError(
                    f"the CA certificate {self.cacert} (--cacert, TRAINUI_CACERT) cannot be "
                    f"used: {why}"
                ) from None
        return {"base_url": self.url, "headers": headers, "timeout": timeout, "verify": verify}

    def _request(self, http, call: _Call) -> httpx.Request:
        request = http.build_request(
            call.method,
            call.path,
            params=call.params,
            headers=call.headers,
            files=call.files,
            data=call.data,
        )
        length = request.headers.get("content-length", "")
        if call.files and length.isdigit() and int(length) <= INLINE_UPLOAD:
            # one buffer, sent in one write: httpx sends each part of a multipart body
            # separately, a socket write and a wake-up of the service each
            request.read()
        return request

    def _failed(self, call: _Call, error: Exception) -> ClientError:
        """A transport failure of ``call`` once it may have reached the service."""
        if call.once:  # never sent twice: it may have been accepted
            text = str(error) or type(error).__name__
            return ServiceUnreachable(
                f"{self.where} stopped answering: {text}; `trainui list` shows whether the run "
                "was accepted"
            )
        return self._unreachable(error)

    def _unreachable(self, error: Exception) -> ServiceUnreachable:
        """A transport failure as one sentence: refused, TLS, timeout, name, ..."""
        text = str(error) or type(error).__name__
        if isinstance(error, _httpx().TimeoutException):
            return ServiceUnreachable(f"{self.where} did not answer in time")
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return ServiceUnreachable(f"TLS with {self.where} failed: {self._untrusted(text)}")
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
            plain = (self.url or "").replace("https://", "http://", 1)
            return ServiceUnreachable(
                f"TLS with {self.where} failed: it does not speak TLS (a service without "
                f"--certfile: {plain})"
            )
        if "SSL" in text or "TLS" in text:
            return ServiceUnreachable(f"TLS with {self.where} failed: {text}")
        refused = ("Connection refused", "Errno 111", "All connection attempts failed")
        if any(words in text for words in refused):  # anyio says the last one for a refusal
            return ServiceUnreachable(f"nothing answers at {self.where} (connection refused)")
        if "Name or service not known" in text or "nodename nor servname" in text:
            return ServiceUnreachable(f"the host of {self.where} cannot be found")
        return ServiceUnreachable(f"{self.where} is not reachable: {text}")

    def _untrusted(self, text: str) -> str:
        """Why the service's certificate was refused, from ssl's words, in a sentence."""
        host = urllib.parse.urlsplit(self.url or "").hostname
        if "mismatch" in text:  # "Hostname mismatch", "IP address mismatch"
            return (
                f"its certificate is not made for {host}: use in the URL a name the certificate "
                "names (openssl x509 -noout -ext subjectAltName -in CERT lists them)"
            )
        if "has expired" in text:
            return "its certificate has expired"
        if "not yet valid" in text:
            return "its certificate is not valid yet (is this machine's clock right?)"
        hint = "" if self.cacert else " (a self-signed certificate? pass --cacert FILE)"
        return f"its certificate is not trusted{hint}"

    def _may_resend(self, call: _Call) -> bool:
        """May a request closed unanswered be sent again? A GET of the local service, before
        any answer of this client: the service that took it was exiting."""
        return call.method == "GET" and not call.once and not self.remote and not self._started

    def _start_or_refuse(self, error: Exception) -> None:
        """Nothing answered on the socket: start a service (local mode, autostart) or say why
        not."""
        if self.remote or self._started:
            raise self._unreachable(error) from None
        if not self.autostart:
            raise ServiceUnreachable(f"no trainui service answers on {self.socket}") from None
        self._spawn_service()

    def _spawn_service(self) -> None:
        import subprocess

        ensure_home(self.home)
        env = {**self.environ, "TRAINUI_HOME": self.home}
        with open(os.path.join(self.home, "service.log"), "ab") as log:
            self._log_offset = log.tell()
            self._spawned = subprocess.Popen(
                [sys.executable, "-m", "trainui", "serve", "--no-tcp", "--idle-exit"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # the service outlives this program and its terminal
                close_fds=True,
                env=env,
                cwd="/",
            )

    def _refused_to_start(self) -> ServiceUnreachable | None:
        """The service this client started exited at once, refusing to start (a broken
        frameworks catalogue, say): what it said, from its log."""
        spawned = getattr(self, "_spawned", None)
        if spawned is None or spawned.poll() in (None, 0):
            return None
        log = os.path.join(self.home, "service.log")
        try:
            with open(log, "rb") as f:
                f.seek(getattr(self, "_log_offset", 0))
                said = f.read(8192).decode("utf-8", "replace").strip()
        except OSError:
            said = ""
        said = said.removeprefix("trainui: ").strip() or f"it exited with code {spawned.returncode}"
        return ServiceUnreachable(f"the trainui service could not start: {said}")

    def _not_started(self) -> ServiceUnreachable:
        log = os.path.join(self.home, "service.log")
        return ServiceUnreachable(
            f"the trainui service did not start within {START_TIMEOUT:.0f} s (see {log})"
        )

    def forget_service(self) -> None:
        """Look for the service again on the next request (it may have been restarted)."""
        self._started = False


class BlockingClient(_Api):
    """The API through httpx's synchronous client: for a command that makes a few requests
    and exits. Use it as a context manager (or call ``close``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._http: httpx.Client | None = None

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            httpx = _httpx()
            transport = None
            if self.url is None:
                transport = httpx.HTTPTransport(uds=self.socket, retries=0, verify=False)
            self._http = httpx.Client(transport=transport, **self._client_options(httpx))
        return self._http

    def _do(self, call: _Call):
        httpx = _httpx()
        try:
            request = self._request(self.http, call)
            response = self._first_send(request, call)
            self._started = True
            if not call.stream:
                response.read()
            if response.status_code >= 300:
                response.read()
                raise _error(response, self, call)
            try:
                return call.read(response)
            except _NotTrainui as error:
                raise _not_trainui(self, call, error) from None
            finally:
                response.close()
        except httpx.ConnectError as error:
            raise self._unreachable(error) from None
        except httpx.TransportError as error:
            raise self._failed(call, error) from None
        finally:
            if call.closing is not None:
                call.closing.close()

    def _first_send(self, request, call: _Call):
        """Send; where nothing answered, start a service (``_start_or_refuse``) and send again.
        A GET closed unanswered was taken by a service that was exiting (idle, or stopped):
        it is sent again, once (``_may_resend``)."""
        httpx = _httpx()
        try:  # the answer's head only (stream=True): a body cut short is no cause to resend
            return self.http.send(request, stream=True)
        except httpx.ConnectError as error:  # nothing was sent
            self._start_or_refuse(error)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if not self._may_resend(call):
                raise
            time.sleep(EXITING_PAUSE)
            try:
                return self.http.send(request, stream=True)
            except httpx.ConnectError as error:
                self._start_or_refuse(error)
        self._wait_for_service()
        return self.http.send(request, stream=True)

    def _wait_for_service(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            time.sleep(0.05)
            with contextlib.suppress(_httpx().TransportError):
                if self.http.get("/v3/health", timeout=CONNECT_TIMEOUT).status_code == 200:
                    self._started = True
                    return
            refused = self._refused_to_start()
            if refused is not None:
                raise refused
        raise self._not_started()


class Client(_Api):
    """The API through httpx's async client (the TUI, and what streams): each call of
    ``_Api`` is awaited; a log followed, the events and downloads besides."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._http: httpx.AsyncClient | None = None

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
            transport = None
            if self.url is None:
                transport = httpx.AsyncHTTPTransport(uds=self.socket, retries=0, verify=False)
            self._http = httpx.AsyncClient(transport=transport, **self._client_options(httpx))
        return self._http

    async def _do(self, call: _Call):
        httpx = _httpx()
        try:
            request = self._request(self.http, call)
            response = await self._first_send(request, call)
            await response.aread()
        except httpx.ConnectError as error:
            raise self._unreachable(error) from None
        except httpx.TransportError as error:
            raise self._failed(call, error) from None
        finally:
            if call.closing is not None:
                call.closing.close()
        self._started = True
        if response.status_code >= 300:
            raise _error(response, self, call)
        try:
            return call.read(response)
        except _NotTrainui as error:
            raise _not_trainui(self, call, error) from None

    async def _first_send(self, request, call: _Call):
        """As ``BlockingClient._first_send``, awaited."""
        import asyncio

        httpx = _httpx()
        try:
            return await self.http.send(request, stream=True)
        except httpx.ConnectError as error:  # nothing was sent
            self._start_or_refuse(error)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if not self._may_resend(call):
                raise
            await asyncio.sleep(EXITING_PAUSE)
            try:
                return await self.http.send(request, stream=True)
            except httpx.ConnectError as error:
                self._start_or_refuse(error)
        await self._wait_for_service()
        return await self.http.send(request, stream=True)

    async def _wait_for_service(self) -> None:
        import asyncio

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            with contextlib.suppress(_httpx().TransportError):
                response = await self.http.get("/v3/health", timeout=CONNECT_TIMEOUT)
                if response.status_code == 200:
                    self._started = True
                    return
            refused = self._refused_to_start()
            if refused is not None:
                raise refused
        raise self._not_started()

    async def _ensure_service(self) -> None:
        """In local mode, start a service for this home when none answers on its socket."""
        if not self._started:
            await self.health()

    # --- what streams -----------------------------------------------------------------------

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
        import asyncio

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
        path = _run_path(model_id, "results/" + urllib.parse.quote(key, safe="/"))
        tmp = dest + ".part"
        received = 0
        started = False
        expected: str | None = None
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            async with self.http.stream(
                "GET", path, timeout=httpx.Timeout(120.0, connect=5.0)
            ) as response:
                if response.status_code >= 300:
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

    async def follow_log(
        self,
        model_id: str,
        offset: int = 0,
        on_connection: Callable[[str], None] | None = None,
    ) -> AsyncIterator[bytes]:
        """The log from ``offset`` as it grows, until the run has ended. Reconnects by itself
        (starting the service again in local mode) for up to RECONNECT_FOR seconds, telling
        ``on_connection`` ``"lost"`` and ``"restored"``, and resumes at the byte where it was
        cut, so nothing is lost or repeated. A connection silent for SILENCE seconds is taken
        as lost (the service ends a quiet follow every FOLLOW_IDLE seconds; this asks the
        run's state then, which also says a revoked token or a deleted run)."""
        import asyncio

        from trainui.core.runs import FINAL_STATES

        position = offset
        failures = 0
        connected = False
        lost_since: float | None = None
        while True:
            try:
                await self._ensure_service()
                params = {"follow": "true", "offset": position, "idle": FOLLOW_IDLE}
                async with self._stream(
                    _run_path(model_id, "logs"), params, silence=SILENCE
                ) as response:
                    if response.status_code >= 300:
                        await response.aread()
                        raise _error(response, self)
                    connected, failures = True, 0
                    if lost_since is not None:
                        lost_since = None
                        if on_connection is not None:
                            on_connection("restored")
                    if position < 0:
                        position = int(response.headers.get("x-log-offset", 0))
                    async for chunk in response.aiter_raw():
                        position += len(chunk)
                        yield chunk
                # ended: the run has, or the log was quiet, or the token was revoked (the
                # run's state raises its refusal), or the service stops (it is unreachable)
                run = await self.get_run(model_id)
                if run.get("status") in FINAL_STATES:
                    rest, _size, _start = await self.read_log(model_id, position)
                    if rest:  # what came between the follow's end and the run's
                        yield rest
                    return
            except ServiceUnreachable as error:
                self.forget_service()  # it may have died: look again, start it if needed
                if not connected:
                    raise  # never reached: no connection to get back
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                    if on_connection is not None:
                        on_connection("lost")
                elif now - lost_since > RECONNECT_FOR:
                    raise ServiceUnreachable(
                        f"lost the connection to {self.where} and could not get it back in "
                        f"{RECONNECT_FOR / 60:g} minutes ({error})"
                    ) from None
                await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
                failures += 1

    async def events(self, last_id: int | None = None) -> AsyncIterator[tuple[int, str, dict]]:
        """Run changes as (event id, kind, data); kind is ``run`` or ``deleted``. When the
        connection drops, this says so with kind ``connection`` (data ``{"state": "lost"}``),
        reconnects by itself, resumes after the last event seen, and says ``restored``."""
        import asyncio
        import json

        from trainui.core.shared import shared_object

        failures = 0
        lost = False
        while True:
            headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
            try:
                await self._ensure_service()
                async with self._stream("/v3/events", headers=headers, silence=SILENCE) as response:
                    if response.status_code >= 300:
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

    @contextlib.asynccontextmanager
    async def _stream(
        self,
        path: str,
        params: Mapping | None = None,
        headers: Mapping[str, str] | None = None,
        silence: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A GET whose answer's body is read as it comes, with no time limit once connected
        (a log followed, the events) but ``silence``, the longest wait for a byte; a broken
        connection, or one silent for longer, is ServiceUnreachable."""
        httpx = _httpx()
        try:
            async with self.http.stream(
                "GET", path, params=params, headers=headers,
                timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT, read=silence),
            ) as response:  # fmt: skip
                yield response
        except httpx.TransportError as error:
            raise self._unreachable(error) from None


def _experiment_path(experiment_id: str, *rest: str) -> str:
    _an_id(experiment_id, "an experiment's", "experiment-XXXXXXXXX")
    return "/".join(("/v3/experiments", urllib.parse.quote(experiment_id, safe=""), *rest))


def _run_path(model_id: str, what: str = "") -> str:
    """The URL path of a run (and of ``what`` under it)."""
    _an_id(model_id, "a run's", "training-XXXXXXXXX")
    path = "/v3/models/" + urllib.parse.quote(model_id, safe="")
    return f"{path}/{what}" if what else path


def _an_id(given: str, whose: str, looks: str) -> None:
    """An ID as a path's part: letters, digits, ``-``, ``_``, ``.`` (a ``/`` would reach
    another resource, or none that the service knows: said as not trainui's)."""
    if not given or not given.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ClientError(f"{given!r} is not {whose} ID (they look like {looks})", 400)


def _not_trainui(client: _Api, call: _Call, error: _NotTrainui) -> ClientError:
    return ClientError(
        f"{client.where} is not a trainui service, or not its root: it answered {error} to "
        f"{call.method} {call.path}"
    )


def _error(response: httpx.Response, client: _Api, call: _Call | None = None) -> ClientError:
    """An error answer as the client says it: the sentence, the error code, the problems."""
    import json

    status, where = response.status_code, client.where
    try:
        data = json.loads(response.content)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    message = data.get("message") or f"{where} answered {status} {response.reason_phrase}".rstrip()
    what = f" to {call.method} {call.path}" if call is not None else ""
    if status < 400:  # the API never redirects: another server (a proxy's login page)
        message = (
            f"{where} is not a trainui service, or not its root: it answered {status} "
            f"{response.reason_phrase}{what}"
        )
    elif status == 404 and not data.get("error_code") and message == "Not Found":
        # the router's, not a run's: the URL is not the service's root (.../v3, a prefix)
        message = f"{where} has no {call.path if call else 'such path'}: is it the service's root?"
    elif not data.get("message") and response.content.strip() != b"Not Found":
        # trainui says every refusal in JSON with its sentence: another server answered
        message = (
            f"{where} is not a trainui service, or not its root: it answered {status} "
            f"{response.reason_phrase}{what}"
        )
    elif status == 401:
        message = f"{where} refused the request: {message}"
    return ClientError(message, status, data.get("error_code"), data.get("errors") or [])
