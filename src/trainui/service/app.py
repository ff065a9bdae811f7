"""The HTTP API of SPEC §6, as a Starlette app over a RunManager."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Mapping, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from trainui import __version__
from trainui.core.lifecycle import Run
from trainui.core.runs import (
    DEFINITION_FILE,
    EXPERIMENT_STATES,
    FINAL_STATES,
    LOG_FILE,
    MANIFEST_FILE,
    STATES,
)
from trainui.core.urls import mask_urls
from trainui.gpu import GpuMonitor, off_snapshot, owner_by_process_tree
from trainui.service.auth import TokenError, Tokens, User
from trainui.service.openapi import openapi_document
from trainui.service.results import ResultsFetcher
from trainui.service.runs import Refusal, RunManager, watch
from trainui.service.store import disk_full

LOG_CHUNK = 1 << 20
NDJSON = "application/x-ndjson"
FOLLOW_POLL_MIN, FOLLOW_POLL_MAX = 0.02, 0.25
SSE_KEEPALIVE = 15.0
MAX_MANIFEST_BYTES = 1 << 20
# a model definition up to this size waits in the run store until its run starts; a larger
# one is written to the run folder at once (its own file costs little next to its size)
SMALL_DEFINITION = 256 << 10


PUBLIC_PATHS = frozenset({"/v3/health", "/openapi.json"})
REVALIDATE = 1.0  # seconds between two looks, by a long stream, at whether its token was revoked
MAX_DIGITS = 18  # of a number in a query or a header: any file offset, within a 64-bit integer
_WHOLE = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}")
_DIGITS = re.compile(r"-?[0-9]+")


class Authenticate:
    """ASGI middleware: who the request comes from. The Unix socket is the machine's owner;
    TCP needs ``Authorization: Bearer TOKEN``."""

    def __init__(self, app, tokens: Tokens, local_name: str) -> None:
        self.app = app
        self.tokens = tokens
        self.local_name = local_name

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        user = None
        server = scope.get("server")
        if server is None or server[1] is None:  # a Unix socket: no port (uvicorn gives path)
            user = User(self.local_name, local=True)
        else:
            header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            scheme, _, token = header.partition(" ")
            given = scheme.lower() == "bearer" and token.strip()
            public = scope["path"] in PUBLIC_PATHS
            try:
                user = self.tokens.user_for(token.strip()) if given else None
            except TokenError:
                if not public:
                    raise
                user = None
            # a public path answers anyone (less to those without a valid token)
            if not public:
                if not given:
                    return await _unauthorized(
                        send, "a token is required: pass --token or set TRAINUI_TOKEN"
                    )
                if user is None:
                    return await _unauthorized(send, "the token is not valid (mistyped or revoked)")
        scope.setdefault("state", {})["user"] = user
        return await self.app(scope, receive, send)


async def _unauthorized(send, message: str) -> None:
    body = json.dumps({"error_code": None, "message": message, "errors": [{"message": message}]})
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b"Bearer"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def _user(request: Request) -> User:
    return request.state.user


def _definition_label(filename: str | None) -> str:
    """How messages name an uploaded model definition: the file name its part gave (the last
    part of it, when short and printable), else "the model definition"; never the name of
    the service's own copy."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or len(name) > 100 or not name.isprintable():
        return "the model definition"
    return name


def create_app(manager: RunManager, on_idle=None) -> Starlette:
    """The service's ASGI app; ``on_idle`` is called when it has been idle long enough."""
    tokens = Tokens(manager.home)

    async def health(request: Request) -> Response:
        user = request.state.user
        if user is None:  # over TCP without a valid token: that it lives, nothing of its runs
            return JSONResponse({"status": "ok", "version": __version__})
        return JSONResponse({**manager.health(user), "version": __version__})

    async def notify_test(request: Request) -> Response:
        """``trainui notify test``: one event to every hook, and how each went. The box's
        (an admin's): it runs the hooks' commands, and says where they go."""
        import asyncio

        if not _user(request).admin:
            raise Refusal(403, "only an admin may test the hooks (trainui notify test on the box)")
        notifier = manager.notifier_now(fresh=True)  # the file as it is now
        results = await asyncio.to_thread(notifier.test)
        answer: dict = {"hooks": results}
        if manager.hooks_problems:  # the file changed and has errors: the hooks were kept
            answer["problems"] = manager.hooks_problems
        return JSONResponse(answer)

    async def frameworks(_request: Request) -> Response:
        """The frameworks catalogue (SPEC §10): what this box runs, and in which runtime."""
        return JSONResponse(manager.frameworks_json())

    async def submit(request: Request) -> Response:
        manager.check_space()  # before taking in the upload
        limit = manager.settings.max_definition_bytes
        size = _int(request.headers.get("content-length"), "Content-Length", minimum=0)
        if size is not None and size > limit + MAX_MANIFEST_BYTES:
            raise Refusal(413, f"the upload is larger than the limit of {limit:,} bytes", "C102")
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise Refusal(400, "a submission is multipart/form-data: model_definition, manifest")
        # bound what is read, whatever the headers say
        receive = _bounded(request.receive, limit + MAX_MANIFEST_BYTES)
        # Starlette's form parser (python-multipart) spools files to disk
        try:
            form = await Request(request.scope, receive).form(max_files=2, max_fields=5)
        except MultiPartException as error:
            raise Refusal(400, f"the upload is not valid multipart data: {error.message}") from None
        try:
            upload = form.get("model_definition")
            return await accept(request, form, getattr(upload, "filename", None))
        finally:
            await form.close()

    async def accept(request: Request, form: Mapping, filename: str | None) -> Response:
        """Submit what a submission's form holds: a file part as an ``UploadFile`` (spooled),
        a field as text; ``filename``: the model definition's, as the client named it."""
        limit = manager.settings.max_definition_bytes
        upload = form.get("model_definition")
        manifest = form.get("manifest")
        if upload is None or isinstance(upload, str):
            raise Refusal(400, "the request has no model_definition file", "C102")
        if manifest is None:
            raise Refusal(400, "the request has no manifest", "C101")
        if isinstance(manifest, str):
            manifest_bytes = manifest.encode()
        else:  # more is refused as too big
            manifest_bytes = await manifest.read(MAX_MANIFEST_BYTES + 1)
        environment = _environment(form.get("environment"))
        report = manager.check_manifest(manifest_bytes, environment)
        manager.check_local_paths(report.manifest, _user(request))
        manager.check_remote_credentials(report.manifest, _user(request))
        check = form.get("check", "true")
        if check not in ("true", "false"):
            raise Refusal(400, f"check: expected true or false, not {str(check)[:40]!r}")
        if check == "true":
            stores = (report.manifest.data, report.manifest.results)
            if all(store.type == "local" for store in stores):
                # a few system calls: a thread's wake-up would cost more (milliseconds
                # on a busy machine, where the GIL hands over every 5 ms)
                manager.check_stores(report.manifest)
            else:  # network round trips: never on the event loop
                await asyncio.to_thread(manager.check_stores, report.manifest)
        owner = _user(request).name
        label = _definition_label(filename)
        sweep = report.manifest.experiment is not None
        if request.url.path.startswith("/v3/experiments") and not sweep:
            raise Refusal(
                400,
                "the manifest has no experiment: block (SPEC §9); a single run is submitted to "
                "/v3/models",
                "C101",
            )
        submit = functools.partial(
            manager.submit_experiment if sweep else manager.submit, checked=check == "true"
        )
        head, rest = await upload.read(SMALL_DEFINITION + 1), upload
        if len(head) <= min(SMALL_DEFINITION, limit):  # all of it: waits in the run store
            accepted = submit(report, head, owner, label)
        else:
            accepted = await _submit_large(submit, manager, report, head, rest, owner, label)
        if sweep:  # an experiment: its ID and each run's, in order
            record, runs = accepted
            return JSONResponse(
                {
                    "experiment_id": record.experiment_id,
                    "url": record.url,
                    "model_ids": [run.model_id for run in runs],
                    "status": "pending",
                },
                status_code=201,
            )
        return JSONResponse(
            {"model_id": accepted.model_id, "url": accepted.url, "status": accepted.status},
            status_code=201,
        )

    async def list_runs(request: Request) -> Response:
        q = request.query_params
        _states(q.get("status"))
        limit = _int(q.get("limit"), "limit", minimum=0)
        offset = _int(q.get("offset"), "offset", minimum=0) or 0
        user = _user(request)
        if NDJSON in request.headers.get("accept", ""):
            # one run a line, the total in a header: what `trainui list` reads
            unfiltered = not q.get("status") and not q.get("experiment")
            if user.admin and unfiltered and limit is None and not offset:
                body, count = manager.every_run_ndjson()
            else:
                models, count = manager.list_json(
                    q.get("status"), limit, offset, user, q.get("experiment")
                )
                body = "".join(f"{text}\n" for text in models).encode()
            if q.get("fields"):
                body = only_fields(body, q["fields"])
            return Response(body, media_type=NDJSON, headers={"X-Total-Count": str(count)})
        models, count = manager.list_json(q.get("status"), limit, offset, user, q.get("experiment"))
        body = f'{{"models": [{", ".join(models)}], "count": {count}}}'
        return Response(body, media_type="application/json")

    async def list_experiments(request: Request) -> Response:
        """The experiments in submission order; ``status=a,b`` only those in these states,
        then ``offset`` and ``limit`` a page of them (``count``: how many matched)."""
        q = request.query_params
        wanted = _experiment_states(q.get("status"))
        limit = _int(q.get("limit"), "limit", minimum=0)
        offset = _int(q.get("offset"), "offset", minimum=0) or 0
        experiments = manager.list_experiments(_user(request))
        if wanted:
            experiments = [e for e in experiments if e["status"] in wanted]
        count = len(experiments)
        end = None if limit is None else offset + limit
        return _msgspec_json({"experiments": experiments[offset:end], "count": count})

    async def show_experiment(request: Request) -> Response:
        record = manager.get_experiment(request.path_params["experiment_id"], _user(request))
        fields = request.query_params.get("fields")
        # of each run, only these keys (what a table shows)
        names = [name.strip() for name in fields.split(",") if name.strip()] if fields else None
        body = manager.experiment_body(record, names)
        return Response(body, media_type="application/json")

    async def delete_experiment(request: Request) -> Response:
        experiment_id = request.path_params["experiment_id"]
        manager.delete_experiment(experiment_id, _user(request))
        return JSONResponse({"experiment_id": experiment_id, "deleted": True})

    async def halt_experiment(request: Request) -> Response:
        described = manager.halt_experiment(request.path_params["experiment_id"], _user(request))
        return _msgspec_json(described, status_code=202)

    async def resume_experiment(request: Request) -> Response:
        """Its halted or failed runs resumed (``status=failed``: only those in that state)."""
        wanted = _experiment_states(
            request.query_params.get("status"), ("failed", "halted"), "a state a run resumes from"
        )
        described = manager.resume_experiment(
            request.path_params["experiment_id"], _user(request), sorted(wanted)
        )
        return _msgspec_json(described, status_code=202)

    def run_answer(run, status_code: int = 200) -> Response:
        """The run as the API shows it (its cached JSON text: a number that is not finite, in
        a run an older trainui recorded, is null, not a 500)."""
        return Response(manager.run_json(run), status_code, media_type="application/json")

    async def show(request: Request) -> Response:
        return run_answer(manager.get(request.path_params["model_id"], _user(request)))

    async def delete(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        manager.delete(model_id, _user(request))
        return JSONResponse({"model_id": model_id, "deleted": True})

    async def halt(request: Request) -> Response:
        run = manager.halt(request.path_params["model_id"], _user(request))
        return run_answer(run, 202)

    async def resume(request: Request) -> Response:
        run = manager.resume(request.path_params["model_id"], _user(request))
        return run_answer(run, 202)

    async def definition(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        manager.get(model_id, _user(request))
        path = manager.run_file(model_id, DEFINITION_FILE)
        return FileResponse(path, media_type="application/zip", filename=f"{model_id}.zip")

    async def manifest(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        manager.get(model_id, _user(request))
        with open(manager.run_file(model_id, MANIFEST_FILE), "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
        # a run recorded before manifests refused credentials in a URL: never shown
        body = mask_urls(text).encode("utf-8", "surrogateescape")
        return Response(body, media_type="application/yaml")

    only_fields = _FieldPicker()
    results = ResultsFetcher(manager)

    async def results_list(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        run = manager.get(model_id, _user(request))
        return JSONResponse(await results.listing(model_id, run))

    async def result_object(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        run = manager.get(model_id, _user(request))
        return await results.stream(model_id, run, request.path_params["key"])

    async def logs(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        run = manager.get(model_id, _user(request))
        q = request.query_params
        said = q.get("follow", "false").lower()
        if said not in ("0", "1", "true", "false", "yes", "no"):
            raise Refusal(400, f"follow: expected true or false, not {said[:40]!r}")
        follow = said in ("1", "true", "yes")
        offset = _int(q.get("offset"), "offset") or 0
        limit = _int(q.get("limit"), "limit", minimum=0)
        idle = _int(q.get("idle"), "idle", minimum=1)
        path = os.path.join(manager.run_dir(model_id), LOG_FILE)
        size = _size(path)
        start = max(0, size + offset) if offset < 0 else offset
        headers = {"X-Log-Size": str(size), "X-Log-Offset": str(start)}
        if not follow:
            end = size if limit is None else min(size, start + limit)
            data = b""
            if end > start:
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read(end - start)
            return Response(data, media_type="text/plain; charset=utf-8", headers=headers)
        return StreamingResponse(
            _follow(manager, run, path, start, _still_allowed(tokens, _user(request)), idle),
            media_type="text/plain; charset=utf-8",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def events(request: Request) -> Response:
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        last_id = _int(last, "Last-Event-ID", minimum=0)
        user = _user(request)
        return StreamingResponse(
            _sse(manager, last_id, user, _still_allowed(tokens, user)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def metrics_index(request: Request):
        """The run (404 as everywhere) and its metric points read so far."""
        model_id = request.path_params["model_id"]
        run = manager.get(model_id, _user(request))
        index = manager.metrics_index(run)
        if index is None:  # an ended run's file, read once (in a thread) and kept
            index = manager.keep_metrics(
                run, await asyncio.to_thread(manager.load_metrics, model_id)
            )
        return model_id, index

    async def metrics_summary(request: Request) -> Response:
        """The summary; with ``max_points`` or ``metric`` (repeatable) also ``series``: the
        display series of those metrics (of every metric with no ``metric``), downsampled to
        ``max_points``: a view's charts in one request rather than one a metric."""
        q = request.query_params
        max_points = _int(q.get("max_points"), "max_points", minimum=2)
        names = q.getlist("metric") or None
        model_id, index = await metrics_index(request)
        answer = {"model_id": model_id, "metrics": index.summary()}
        if max_points is not None or names is not None:
            answer["series"] = index.display_series(names, max_points)
        return _msgspec_json(answer)

    async def metric_points(request: Request) -> Response:
        q = request.query_params
        after_step = _int(q.get("after_step"), "after_step")
        max_points = _int(q.get("max_points"), "max_points", minimum=2)
        offset = _int(q.get("offset"), "offset", minimum=0)
        if offset is not None and (after_step is not None or max_points is not None):
            raise Refusal(
                400,
                "offset reads every point as written: it does not go with after_step or "
                "max_points (the display series)",
            )
        model_id, index = await metrics_index(request)
        name = request.path_params["name"]
        try:
            points = index.points_of(name, after_step, max_points, offset)
        except KeyError:
            names = list(index.series)
            known = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            has = f"its metrics: {known}" if names else "it has no metric points yet"
            raise Refusal(404, f"run {model_id} has no metric '{name}' ({has})") from None
        return _msgspec_json({"model_id": model_id, **points})

    monitor: GpuMonitor | None = None

    async def gpus(request: Request) -> Response:
        if monitor is None:
            snapshot = off_snapshot("GPU monitoring is off (TRAINUI_GPUS=none)")
        else:
            snapshot = await asyncio.to_thread(monitor.snapshot)
        user = _user(request)
        if not user.admin:  # another user's run is not named to this one
            for gpu in snapshot.get("gpus", []):
                for process in gpu.get("processes", []):
                    run = manager.runs.get(process.get("run") or "")
                    if run is not None and not user.sees(run):
                        process["run"] = "another user's run"
        return JSONResponse(snapshot)

    async def gpus_history(request: Request) -> Response:
        if monitor is None:
            return JSONResponse({"interval": 1.0, "gpus": {}})
        return JSONResponse(monitor.history())

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    document = openapi_document()

    async def refused(request: Request, error: Refusal) -> Response:
        return JSONResponse(error.body(), status_code=error.status)

    async def http_error(request: Request, error: HTTPException) -> Response:
        """Starlette's own refusals (unknown path, wrong method, bad form) in our JSON shape."""
        message = str(error.detail)
        body = {"error_code": None, "message": message, "errors": [{"message": message}]}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    async def failed(request: Request, error: Exception) -> Response:
        """A fault of the service's own (its traceback goes to its log all the same): said as
        the service's, in our JSON shape; not taken by the client for another server's page."""
        message = (
            f"the trainui service failed on {request.method} {request.url.path} (an internal "
            f"error, {type(error).__name__}): its log, service.log in its home, says where; "
            "please report it"
        )
        body = {"error_code": None, "message": message, "errors": [{"message": message}]}
        return JSONResponse(body, status_code=500)

    task: asyncio.Task | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        nonlocal task, monitor
        manager.reconcile()
        manager.purge()
        manager.schedule()
        if manager.settings.gpus != ():  # TRAINUI_GPUS=none: no GPU monitoring
            roots = manager  # read from the monitor's thread: gpu_roots is replaced, not changed
            monitor = GpuMonitor(
                process_owner=lambda pid: owner_by_process_tree(pid, roots.gpu_roots)
            ).start()
        task = asyncio.create_task(watch(manager, on_idle))
        # numpy (a metric's display series is downsampled with it) imported off the event loop,
        # a while after the start (which it would slow): the first chart a TUI asks for would
        # otherwise wait for the import (100 ms or more on a busy machine)
        loop = asyncio.get_running_loop()

        def warm() -> None:
            with contextlib.suppress(RuntimeError):  # the service stopping meanwhile
                loop.run_in_executor(None, _warm_imports)

        warming = loop.call_later(WARM_AFTER, warm)
        try:
            yield
        finally:
            warming.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if monitor is not None:
                await asyncio.to_thread(monitor.stop)
            results.close()
            manager.close()

    def refusing_full_disk(endpoint):
        """A write that a full disk refused is a 507 that says so, never a 500."""

        async def guarded(request: Request) -> Response:
            try:
                return await endpoint(request)
            except (OSError, sqlite3.Error) as error:
                if not disk_full(error):
                    raise
                raise manager.disk_full_refusal() from None

        return guarded

    model = "/v3/models/{model_id}"
    routes = [
        Route("/v3/health", health),
        # one route per path, so that a 405 lists every method the path has in its Allow
        Route(
            "/v3/models",
            _by_method(GET=list_runs, POST=refusing_full_disk(submit)),
            methods=["GET", "POST"],
        ),
        Route(
            model,
            _by_method(GET=show, DELETE=refusing_full_disk(delete)),
            methods=["GET", "DELETE"],
        ),
        Route(model + "/halt", refusing_full_disk(halt), methods=["POST"]),
        Route(model + "/resume", refusing_full_disk(resume), methods=["POST"]),
        Route(
            "/v3/experiments",
            _by_method(GET=list_experiments, POST=refusing_full_disk(submit)),
            methods=["GET", "POST"],
        ),
        Route(
            "/v3/experiments/{experiment_id}",
            _by_method(GET=show_experiment, DELETE=refusing_full_disk(delete_experiment)),
            methods=["GET", "DELETE"],
        ),
        Route(
            "/v3/experiments/{experiment_id}/halt",
            refusing_full_disk(halt_experiment),
            methods=["POST"],
        ),
        Route(
            "/v3/experiments/{experiment_id}/resume",
            refusing_full_disk(resume_experiment),
            methods=["POST"],
        ),
        Route(model + "/logs", logs),
        Route(model + "/metrics", metrics_summary),
        Route(model + "/metrics/{name:path}", metric_points),
        # these write the files of a run that has not started yet
        Route(model + "/definition", refusing_full_disk(definition)),
        Route(model + "/manifest", refusing_full_disk(manifest)),
        Route(model + "/results", refusing_full_disk(results_list)),
        Route(model + "/results/{key:path}", refusing_full_disk(result_object)),
        Route("/v3/gpus", gpus),
        Route("/v3/frameworks", frameworks),
        Route("/v3/notify/test", notify_test, methods=["POST"]),
        Route("/v3/gpus/history", gpus_history),
        Route("/v3/events", events),
        Route("/openapi.json", openapi),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={Refusal: refused, HTTPException: http_error, Exception: failed},
        lifespan=lifespan,
    )
    app.add_middleware(Authenticate, tokens=tokens, local_name=manager.owner)
    return app


WARM_AFTER = 0.5  # seconds after the service started: numpy is imported then, in a thread


def _warm_imports() -> None:
    with contextlib.suppress(ImportError):
        import numpy  # noqa: F401


def _msgspec_json(data: dict, status_code: int = 200) -> Response:
    """JSON of many numbers (metric points, an experiment's runs): msgspec encodes them about
    5 times faster."""
    import msgspec

    return Response(
        msgspec.json.encode(data), status_code=status_code, media_type="application/json"
    )


def _by_method(**handlers):
    if "GET" in handlers:  # Starlette routes HEAD with GET: answered as GET, without a body
        handlers.setdefault("HEAD", handlers["GET"])

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method](request)

    return dispatch


class _FieldPicker:
    """``fields=a,b`` of the run list: of each run (a JSON text a line), only those keys,
    the others left out (a table of 10,000 runs is read in a ninth of the bytes). The answer
    for the last (list, fields) asked is kept: a list that did not change is answered again
    at no cost."""

    def __init__(self) -> None:
        self._last: tuple[bytes, str, bytes] | None = None

    def __call__(self, body: bytes, fields: str) -> bytes:
        last = self._last
        if last is not None and last[0] is body and last[1] == fields:
            return last[2]
        import msgspec

        names = [name.strip() for name in fields.split(",") if name.strip()]
        runs = msgspec.json.decode(b"[" + b",".join(body.splitlines()) + b"]")
        encode = msgspec.json.Encoder().encode
        picked = b"".join(
            encode({name: run[name] for name in names if name in run}) + b"\n" for run in runs
        )
        self._last = (body, fields, picked)
        return picked


def _bounded(receive, limit: int):
    """``receive`` that refuses a request body longer than ``limit`` bytes."""
    seen = 0

    async def bounded_receive():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise Refusal(
                    413, f"the upload is larger than the limit of {limit:,} bytes", "C102"
                )
        return message

    return bounded_receive


async def _submit_large(
    submit, manager: RunManager, report, head: bytes, upload, owner: str, label: str
):
    """Submit a model definition larger than ``SMALL_DEFINITION``: ``head``, then what
    ``upload`` still holds (None: nothing), written to a file first (within the size limit),
    which ``RunManager.submit`` moves into the run folder; ``label``: how messages name it."""
    limit = manager.settings.max_definition_bytes
    fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=".zip", dir=manager.runs_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            size = 0
            chunk = head
            while chunk:
                size += len(chunk)
                if size > limit:
                    raise Refusal(
                        413, f"the model definition is larger than {limit:,} bytes", "C102"
                    )
                out.write(chunk)
                chunk = await upload.read(LOG_CHUNK) if upload is not None else b""
        return submit(report, tmp, owner, label)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _still_allowed(tokens: Tokens, user: User):
    """A check, for a long stream, that the token it was opened with was not revoked since;
    it looks at most once every ``REVALIDATE`` seconds (a stat of the token file)."""
    next_look = time.monotonic() + REVALIDATE

    def allowed() -> bool:
        nonlocal next_look
        now = time.monotonic()
        if now < next_look:
            return True
        next_look = now + REVALIDATE
        return tokens.still_valid(user)

    return allowed


async def _follow(
    manager: RunManager, run: Run, path: str, position: int, allowed, idle: int | None = None
):
    """Stream the log from ``position``; end once the run has ended and all was sent, once
    ``allowed()`` says the token was revoked, or (``idle``) after that many seconds without
    a new byte: the client asks which, and follows again where the run goes on. A run that
    has not started has no log yet: it is opened once its learner created it."""
    manager.open_streams += 1
    delay = FOLLOW_POLL_MIN
    f = None
    quiet_since = time.monotonic()
    try:
        while True:
            if not allowed() or manager.closing:
                return
            if f is None:
                f = _open_at(path, position)
            chunk = f.read(LOG_CHUNK) if f is not None else b""
            if chunk:
                delay = FOLLOW_POLL_MIN
                quiet_since = time.monotonic()
                yield chunk
                continue
            if idle is not None and time.monotonic() - quiet_since >= idle:
                return
            # the learner writes its last lines before its final status: once the run is
            # seen ended, one more read gets everything
            # (the run's record as it is now: a change replaces it)
            now = manager.runs.get(run.model_id)
            if now is None or now.status in FINAL_STATES:
                f = f or _open_at(path, position)
                rest = f.read() if f is not None else b""
                if rest:
                    yield rest
                return
            await asyncio.sleep(delay)
            delay = min(FOLLOW_POLL_MAX, delay * 2)
    finally:
        manager.open_streams -= 1
        if f is not None:
            f.close()


def _open_at(path: str, position: int):
    """The file opened for reading at ``position``, or None while it does not exist."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        return None
    f.seek(position)
    return f


async def _sse(manager: RunManager, last_id: int | None, user: User, allowed):
    """Server-sent events of the runs ``user`` sees, until ``allowed()`` says the token was
    revoked."""
    manager.open_streams += 1
    stream = manager.events.subscribe(last_id).__aiter__()
    pending: asyncio.Task | None = None
    quiet_since = time.monotonic()
    try:
        yield b": trainui events\n\n"
        while True:
            if not allowed() or manager.closing:
                return
            # one pending read, kept across keep-alives (wait_for would cancel it, and with it
            # the subscription)
            if pending is None:
                pending = asyncio.ensure_future(stream.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=REVALIDATE)
            if not done:
                if time.monotonic() - quiet_since >= SSE_KEEPALIVE:
                    quiet_since = time.monotonic()
                    yield b": keep-alive\n\n"
                continue
            task, pending = pending, None
            try:
                seq, kind, data = task.result()
            except StopAsyncIteration:
                return
            if not user.admin and json.loads(data).get("owner") != user.name:
                continue
            quiet_since = time.monotonic()
            yield f"id: {seq}\nevent: {kind}\ndata: {data}\n\n".encode()
    finally:
        if pending is not None:
            pending.cancel()
        manager.open_streams -= 1


def _environment(field) -> dict[str, str]:
    if field is None:
        return {}
    try:
        env = json.loads(field if isinstance(field, (str, bytes)) else field.file.read())
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        raise Refusal(400, "the environment field is not a JSON object", "C101") from None
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise Refusal(400, "the environment field must map names to text", "C101")
    return env


def _states(value: str | None) -> None:
    """``status=a,b``: each one a state (a misspelt one would list nothing, silently)."""
    for state in (value or "").split(","):
        if state.strip() and state.strip() not in STATES:
            raise Refusal(
                400, f"status: '{state.strip()[:40]}' is not a state; the states: "
                + ", ".join(STATES)
            )  # fmt: skip


def _experiment_states(
    value: str | None,
    allowed: Sequence[str] = EXPERIMENT_STATES,
    what: str = "an experiment's state",
) -> set[str]:
    """``status=a,b`` of experiments: each one an experiment's state (``allowed``), or a
    400."""
    wanted = {s.strip() for s in (value or "").split(",") if s.strip()}
    for state in wanted:
        if state not in allowed:
            raise Refusal(
                400, f"status: '{state[:40]}' is not {what}; they are: " + ", ".join(allowed)
            )
    return wanted


def _int(value: str | None, name: str, minimum: int | None = None) -> int | None:
    """A whole number from a query parameter or a header: ASCII digits only (Python's ``int``
    also takes '٣', '1_000' and spaces), at most ``MAX_DIGITS`` of them (a file offset)."""
    if value is None or value == "":
        return None
    if not _WHOLE.fullmatch(value):
        if _DIGITS.fullmatch(value):
            raise Refusal(400, f"{name} is too large: at most {MAX_DIGITS} digits")
        shown = value if len(value) <= 40 and value.isprintable() else ascii(value[:40])[1:-1]
        raise Refusal(400, f"{name} must be a whole number, not '{shown}'")
    number = int(value)
    if minimum is not None and number < minimum:
        raise Refusal(400, f"{name} must be at least {minimum}")
    return number


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
