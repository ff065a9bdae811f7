"""What a run stored in its results bucket, fetched through the service (`download --results`).

The service keeps each run's results store in ``results.json`` (secrets included, mode 0600),
so a client, remote or local, needs no credentials of its own. A listing is one request to the
store; an object is streamed while the service downloads it: a thread writes it into a
temporary file under the home, and the response reads that file as it grows. A download that
fails once bytes were sent cuts the response short, which the client sees and reports.

Stores block: everything that touches them runs in this module's threads, never on the event
loop. An open store is kept for a minute per run, so that a folder of many objects does not log
in again for each one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.responses import Response, StreamingResponse

from trainui.core.lifecycle import Run
from trainui.core.runs import (
    FINAL_STATES,
    KEPT_CHECKPOINTS,
    KEPT_RESULTS,
    RESULTS_FILE,
    read_json,
)
from trainui.service.runs import Refusal, RunManager
from trainui.storage import (
    ObjectInfo,
    ObjectStore,
    StoreError,
    TransferCancelled,
    iter_files,
    open_store,
    safe_key_path,
    transfer_threads,
)

STORE_IDLE = 60.0  # seconds an unused open store is kept
CHUNK = 1 << 20
# what a run keeps in its folder when its results bucket refused it, and the keys (less the
# run's prefix) it would have had there: listed and served with the bucket's (``kept``)
KEPT = ((KEPT_RESULTS, ""), (KEPT_CHECKPOINTS, "checkpoints/"))


class _Entry:
    """An open results store of one run, and its last listing (keys less the prefix)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.objects: dict[str, ObjectInfo] | None = None
        self.users = 0
        self.last_used = time.monotonic()


class ResultsFetcher:
    """Lists and streams the objects a run stored under ``<id>/`` in its results bucket."""

    def __init__(self, manager: RunManager) -> None:
        self.manager = manager
        self._entries: dict[str, _Entry] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._executor: ThreadPoolExecutor | None = None

    # --- stores ---------------------------------------------------------------------------

    def _run(self, func, *args):
        """``func(*args)`` in one of this module's threads, awaited."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=max(4, transfer_threads()), thread_name_prefix="trainui-results"
            )
        return asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def _entry(self, model_id: str, run: Run) -> _Entry:
        """The run's open results store: 409 while the run is active or for a run from before
        results.json; 502 when the store cannot be opened."""
        if run.status not in FINAL_STATES:
            raise Refusal(
                409,
                f"run {model_id} is still {run.status}: its results are stored when it ends",
            )
        self._expire()
        entry = self._entries.get(model_id)
        if entry is not None:
            entry.last_used = time.monotonic()
            return entry
        lock = self._opening.setdefault(model_id, asyncio.Lock())
        try:
            async with lock:
                entry = self._entries.get(model_id)
                if entry is not None:
                    return entry
                spec = read_json(self.manager.run_file(model_id, RESULTS_FILE))
                if spec is None:
                    raise Refusal(
                        409,
                        f"run {model_id} was submitted to an older trainui service, which did "
                        f"not keep where its results go: fetch {model_id}/ from its results "
                        "bucket directly",
                    )
                try:
                    store = await self._run(
                        open_store,
                        spec["type"],
                        spec["bucket"],
                        spec.get("connection") or {},
                        self.manager.home,
                    )
                except StoreError as error:
                    raise Refusal(502, f"the results bucket cannot be opened: {error}") from None
                entry = self._entries[model_id] = _Entry(store)
                return entry
        finally:
            self._opening.pop(model_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for model_id, entry in list(self._entries.items()):
            if entry.users == 0 and now - entry.last_used > STORE_IDLE:
                del self._entries[model_id]
                self._run(_close, entry.store)

    def close(self) -> None:
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            _close(entry.store)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # --- the API --------------------------------------------------------------------------

    async def listing(self, model_id: str, run: Run) -> dict:
        """``{prefix, objects: [{key, size, kept}], count, bytes, kept, bucket_problem}``; keys
        less the prefix. What the run kept on the box, its bucket having refused it, is listed
        too (``kept``: true; over the bucket's object of the same key, which is older); when
        the bucket cannot be reached, that alone, with the bucket's problem said."""
        kept = await self._run(self._kept, model_id) if run.status in FINAL_STATES else {}
        prefix = f"{model_id}/"
        problem = None
        try:
            found = await self._found(model_id, run, prefix)
        except Refusal as refusal:
            if not kept or refusal.status not in (404, 502):
                raise
            found, problem = {}, (None if refusal.status == 404 else str(refusal))
        objects = {key: (info.size, False) for key, info in found.items()}
        objects.update((key, (size, True)) for key, (_path, size) in kept.items())
        return {
            "prefix": prefix,
            "objects": [
                {"key": key, "size": size, "kept": on_box}
                for key, (size, on_box) in sorted(objects.items())
            ],
            "count": len(objects),
            "bytes": sum(size for size, _ in objects.values()),
            "kept": len(kept),
            "bucket_problem": problem,
        }

    async def _found(self, model_id: str, run: Run, prefix: str) -> dict[str, ObjectInfo]:
        """What the results bucket holds under the run's prefix (kept for ``stream``)."""
        entry = await self._entry(model_id, run)
        entry.users += 1
        try:
            found = await self._run(_list, entry.store, prefix)
        except StoreError as error:
            raise Refusal(502, f"the results bucket cannot be listed: {error}") from None
        finally:
            entry.users -= 1
            entry.last_used = time.monotonic()
        if not found:
            raise Refusal(
                404,
                f"nothing is stored under {prefix} in {entry.store.description} "
                f"(run {model_id} {run.status})",
            )
        entry.objects = found
        return found

    def _kept(self, model_id: str) -> dict[str, tuple[str, int]]:
        """What the run kept in its folder: key (as in the bucket, less the prefix) -> (path,
        size). Only files inside those folders (``iter_files``)."""
        kept = {}
        for folder, under in KEPT:
            root = self.manager.run_file(model_id, folder)
            if os.path.isdir(root) and not os.path.islink(root):
                with contextlib.suppress(OSError):
                    kept.update((under + k, (path, n)) for k, path, n in iter_files(root))
        return kept

    def _kept_file(self, model_id: str, key: str) -> tuple[str, int] | None:
        """The file the run kept for ``key`` (as ``_kept`` lists it: the later folder first),
        without listing the folders: one lookup an object."""
        for folder, under in reversed(KEPT):
            root = self.manager.run_file(model_id, folder)
            if not key.startswith(under) or os.path.islink(root) or not os.path.isdir(root):
                continue
            try:
                path = os.path.realpath(safe_key_path(root, key[len(under) :]))
            except StoreError:
                continue
            if path.startswith(os.path.realpath(root) + os.sep) and os.path.isfile(path):
                return path, os.path.getsize(path)
        return None

    async def stream(self, model_id: str, run: Run, key: str) -> Response:
        """Object ``<id>/<key>``, streamed while the service downloads it; one the run kept
        in its folder, from there."""
        if run.status in FINAL_STATES:
            kept = self._kept_file(model_id, key)
            if kept is not None:
                return self._send_kept(*kept)
        entry = await self._entry(model_id, run)
        prefix = f"{model_id}/"
        entry.users += 1
        try:
            info = (entry.objects or {}).get(key)
            if info is None:  # not in the last listing: look for it alone
                try:
                    found = await self._run(_list, entry.store, prefix + key)
                except StoreError as error:
                    raise Refusal(502, f"the results bucket cannot be listed: {error}") from None
                info = found.get(key)
                if info is None:
                    raise Refusal(404, f"{prefix}{key} is not stored in {entry.store.description}")
            return await self._start(entry, ObjectInfo(prefix + key, info.size, info.etag))
        except BaseException:
            entry.users -= 1
            entry.last_used = time.monotonic()
            raise

    async def _start(self, entry: _Entry, info: ObjectInfo) -> Response:
        """Start the download; answer once its first bytes are in (or it has failed)."""
        fd, tmp = tempfile.mkstemp(prefix="result-", suffix=".part", dir=self.manager.runs_dir)
        transfer = _Transfer(asyncio.get_running_loop(), tmp)
        self._run(transfer.fetch, entry.store, info)
        try:
            while transfer.written <= 0 and not transfer.done:
                transfer.event.clear()  # then look again: a wake-up from now on is not lost
                if transfer.written <= 0 and not transfer.done:
                    await transfer.event.wait()
            if transfer.error is not None:
                raise Refusal(502, _sentence(transfer.error, info.key))
        except BaseException:
            os.close(fd)
            transfer.cancel()
            raise

        def finished() -> None:
            os.close(fd)
            transfer.cancel()
            self.manager.open_streams -= 1
            entry.users -= 1
            entry.last_used = time.monotonic()

        self.manager.open_streams += 1
        return _ObjectResponse(
            _body(transfer, fd, info),
            finished,
            media_type="application/octet-stream",
            headers={"Content-Length": str(info.size)},
        )

    def _send_kept(self, path: str, size: int) -> Response:
        """A file the run kept, sent as it is on disk (its size when listed)."""
        try:
            fd = os.open(path, os.O_RDONLY)  # resolved, inside its folder (``_kept_file``)
        except OSError as error:
            raise Refusal(
                404, f"{path} cannot be read on the box: {error.strerror or error}"
            ) from None

        async def body():
            sent = 0
            while sent < size:
                data = os.pread(fd, min(size - sent, CHUNK), sent)
                if not data:
                    raise TransferFailed(f"{path} is {sent} bytes, but was listed as {size}")
                sent += len(data)
                yield data

        def finished() -> None:
            os.close(fd)
            self.manager.open_streams -= 1

        self.manager.open_streams += 1
        return _ObjectResponse(
            body(),
            finished,
            media_type="application/octet-stream",
            headers={"Content-Length": str(size)},
        )


class _ObjectResponse(StreamingResponse):
    """A streamed object whose ``finished`` runs once the response is over, however it ends
    (sent whole, cut short, or the client gone before the body began)."""

    def __init__(self, body, finished, **kwargs) -> None:
        super().__init__(body, **kwargs)
        self._finished = finished

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except TransferFailed as error:
            # Returning with the body short of its Content-Length: the server closes the
            # connection, and the client sees the cut (a traceback here would say no more).
            print(
                f"trainui: a results download was cut short: {error}", file=sys.stderr, flush=True
            )
        finally:
            finished, self._finished = self._finished, None
            if finished is not None:
                finished()


async def _body(transfer: _Transfer, fd: int, info: ObjectInfo):
    """The object's bytes as they land in the file. The last byte waits for the download to
    end and pass its checks (size, MD5): a body that reaches its Content-Length is whole, and a
    failure cuts it short, which the client sees."""
    sent = 0
    while True:
        if transfer.error is not None:
            why = _sentence(transfer.error, info.key)
            raise TransferFailed(f"{info.key}: sent {sent} of {info.size} bytes: {why}")
        if transfer.done and transfer.written != info.size:
            raise TransferFailed(
                f"{info.key} is {transfer.written} bytes, but was listed as {info.size}"
            )
        ready = min(transfer.written, info.size if transfer.done else info.size - 1)
        if ready > sent:
            data = os.pread(fd, min(ready - sent, CHUNK), sent)
            if data:
                sent += len(data)
                yield data
            else:  # restarting from the beginning: the file was emptied
                await asyncio.sleep(0.01)
            continue
        if transfer.done:
            return
        transfer.event.clear()  # then look again: a wake-up from now on is not lost
        if not transfer.done and min(transfer.written, info.size - 1) <= sent:
            await transfer.event.wait()


class TransferFailed(Exception):
    """An object's download failed after its response had begun: the response is cut short."""


class _Transfer:
    """One object downloading into ``path`` in a thread, watched from the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, path: str) -> None:
        self.loop = loop
        self.path = path
        self.event = asyncio.Event()
        self.written = 0  # bytes in the file now (less after a restart from the beginning)
        self.done = False
        self.error: BaseException | None = None
        self.cancelled = False

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self.loop.call_soon_threadsafe(self.event.set)

    def progress(self, n: int) -> None:  # in the download's thread
        if self.cancelled:
            raise TransferCancelled()
        self.written += n  # only this thread writes it
        self._wake()

    def fetch(self, store: ObjectStore, info: ObjectInfo) -> None:  # in a thread
        try:
            store.download(info.key, self.path, info, self.progress)
        except BaseException as error:
            self.error = error
        finally:
            self.done = True
            if self.cancelled or self.error is not None:
                _unlink(self.path)
            self._wake()

    def cancel(self) -> None:
        """Stop the download (if it still runs) and remove the file."""
        self.cancelled = True
        _unlink(self.path)


def _list(store: ObjectStore, prefix: str) -> dict[str, ObjectInfo]:
    """The objects under ``<id>/``, by key less the run's prefix; folder markers left out."""
    base = prefix[: prefix.index("/") + 1]
    return {
        o.key[len(base) :]: o
        for o in store.list_objects(prefix)
        if o.key.startswith(prefix) and o.key != base and not o.key.endswith("/")
    }


def _sentence(error: BaseException, key: str) -> str:
    if isinstance(error, StoreError):
        return str(error)
    if isinstance(error, OSError):
        return f"the service could not keep {key} while fetching it: {error.strerror or error}"
    return f"{key} could not be fetched: {type(error).__name__}"


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _close(store: ObjectStore) -> None:
    with contextlib.suppress(Exception):
        store.close()
