"""Staging a bucket into a folder: every object, in parallel, through the dataset cache.

``stage`` is what the learner runs before the training command: it plans where each key goes
(refusing keys that escape the folder or collide), then moves objects on a few threads,
largest first, through the cache when the store has one, counting bytes and objects as they
go. ``run_parallel`` is the small thread pool behind it, also used to store results and to
download a run's results.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import threading
from collections.abc import Callable, Sequence

from trainui.storage import (
    ObjectInfo,
    ObjectStore,
    StoreError,
    TransferCancelled,
    safe_key_path,
    transfer_threads,
)

JOIN_TIMEOUT = 10.0  # how long a stopped pool waits for objects under way


class Counters:
    """What a transfer has done so far; updated from worker threads, read from any."""

    def __init__(self, objects_total: int = 0, bytes_total: int = 0) -> None:
        self._lock = threading.Lock()
        self.objects_total = objects_total
        self.bytes_total = bytes_total
        self.objects_done = 0
        self.bytes_done = 0
        self.bytes_transferred = 0  # over the network (not from the cache)
        self.cache_hits = 0
        self.cached = False  # the objects went through the dataset cache

    def add_bytes(self, n: int, transferred: bool = True) -> None:
        with self._lock:
            self.bytes_done += n
            if transferred:
                self.bytes_transferred += n

    def object_done(self, hit: bool = False) -> None:
        with self._lock:
            self.objects_done += 1
            self.cache_hits += hit


SAID_KEYS = 5  # the keys a refusal of a bucket's keys names (then: "and N more")


def plan(objects: Sequence[ObjectInfo], root: str) -> tuple[list[tuple[ObjectInfo, str]], list]:
    """Where each object goes under ``root``: ``(files, folders)``.

    ``files`` pairs each object with its path; ``folders`` are the paths of "folder" objects
    (keys ending in '/', which S3 consoles create). StoreError for keys that escape ``root``
    or that would collide (``a`` and ``a/b``, ``a/b`` and ``a//b``): every one of them named
    (up to ``SAID_KEYS``), not the first only, so that one fix of the bucket is enough.
    """
    files: list[tuple[ObjectInfo, str]] = []
    folders: list[str] = []
    owner: dict[str, str] = {}  # relative path -> the key that makes it a file
    folder_keys: dict[str, str] = {}  # relative path -> a key that needs it to be a folder
    problems: list[str] = []
    prefix = os.path.join(root, "")
    for info in objects:
        key = info.key
        parts = key.split("/")
        if "\x00" in key or not key.strip("/") or "" in parts[:-1] or "." in parts or ".." in parts:
            try:
                rel = safe_key_path(root, key)[len(prefix) :]  # refuses, or normalises `a//b`
            except StoreError as error:
                problems.append(str(error))
                continue
        else:
            rel = key[:-1] if key.endswith("/") else key
        path = prefix + rel
        if key.endswith("/"):
            folders.append(path)
            parents = [rel]
        else:
            if rel in owner:
                problems.append(
                    f"object keys {owner[rel]!r} and {key!r} would both be written to {rel!r}"
                )
                continue
            owner[rel] = key
            files.append((info, path))
            parents = []
        head = rel.rpartition("/")[0]
        while head:
            parents.append(head)
            head = head.rpartition("/")[0]
        for parent in parents:
            folder_keys.setdefault(parent, key)
    for rel, key in owner.items():
        if rel in folder_keys:
            problems.append(
                f"object keys {key!r} and {folder_keys[rel]!r} conflict: {rel!r} would have"
                " to be both a file and a folder"
            )
    if problems:
        said = problems[:SAID_KEYS]
        more = len(problems) - len(said)
        raise StoreError("; ".join(said) + (f"; and {more} more" if more else ""))
    return files, folders


def run_parallel(
    jobs: Sequence,
    work: Callable[[object, bool], bool],
    threads: int | None = None,
    on_tick: Callable[[], None] | None = None,
    tick: float = 0.25,
    should_stop: Callable[[], bool] | None = None,
    stopped: threading.Event | None = None,
) -> BaseException | None:
    """Call ``work(job, may_defer)`` for every job on up to ``threads`` threads.

    ``work`` returns False to put a job off (only when ``may_defer``): it comes back once
    every other job has been started. The calling thread calls ``on_tick`` every ``tick``
    seconds and stops the pool when ``should_stop()`` says so; objects under way then stop
    at their next chunk (their progress callbacks raise TransferCancelled when ``stopped``,
    the event set on a stop or a first error, is set). Returns the first error (no job is
    started after it), or None.
    """
    if not jobs:
        return None
    threads = threads or transfer_threads()
    pending = collections.deque(jobs)
    deferred: collections.deque = collections.deque()
    lock = threading.Lock()
    errors: list[BaseException] = []
    stopped = stopped or threading.Event()
    finished = threading.Event()
    count = min(threads, len(jobs))
    running = [count]

    def worker() -> None:
        try:
            while True:
                with lock:
                    if stopped.is_set():
                        return
                    if pending:
                        job, may_defer = pending.popleft(), True
                    elif deferred:
                        job, may_defer = deferred.popleft(), False
                    else:
                        return
                try:
                    done = work(job, may_defer)
                except BaseException as exc:
                    with lock:
                        errors.append(exc)
                        stopped.set()
                    return
                if not done:
                    with lock:
                        deferred.append(job)
        finally:
            with lock:
                running[0] -= 1
                if not running[0]:
                    finished.set()

    pool = [
        threading.Thread(target=worker, name=f"transfer-{i}", daemon=True) for i in range(count)
    ]
    for thread in pool:
        thread.start()
    while not finished.wait(tick):
        if on_tick is not None:
            on_tick()
        if should_stop is not None and should_stop():
            stopped.set()
        if stopped.is_set():
            break
    stopped.set()
    finished.wait(JOIN_TIMEOUT)  # objects under way stop at their next chunk
    real = [e for e in errors if not isinstance(e, TransferCancelled)]
    return real[0] if real else None


def stage(
    store: ObjectStore,
    objects: Sequence[ObjectInfo],
    root: str,
    cache=None,
    counters: Counters | None = None,
    on_tick: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    threads: int | None = None,
) -> Counters:
    """Stage ``objects`` of ``store`` into the folder ``root``; raise StoreError on failure.

    With a ``cache`` (``trainui.storage.cache.Cache``) and a store that has a ``cache_id``,
    objects come from the cache when they are there and go into it when they are not; the
    cache is trimmed to its size limit at the end. Objects are verified by the store (size,
    MD5 where the ETag is one). A full disk gives a StoreError saying so; partial files are
    removed. Returns the counters (also updated as it goes, for progress).
    """
    files, folders = plan(objects, root)
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    if counters is None:
        counters = Counters()
    counters.objects_total = len(files) + len(folders)
    counters.bytes_total = sum(info.size for info, _path in files)
    for _ in folders:
        counters.object_done()
    for parent in {os.path.dirname(path) for _info, path in files}:
        os.makedirs(parent, exist_ok=True)
    use_cache = cache is not None and bool(store.cache_id)
    counters.cached = use_cache
    if use_cache:
        # Cache hits need no lock: a hard link keeps the entry's bytes whatever happens to
        # the entry afterwards. Done here, before any thread starts: a warm staging is this.
        missing = []
        for info, path in files:
            if info.etag and cache.entry(store.cache_id, info).link_to(path):
                counters.add_bytes(info.size, transferred=False)
                counters.object_done(hit=True)
            else:
                missing.append((info, path))
        files = missing
    stop = threading.Event()

    def moved(n: int) -> None:
        if stop.is_set():
            raise TransferCancelled()
        counters.add_bytes(n)

    def work(job: tuple[ObjectInfo, str], may_defer: bool) -> bool:
        info, dest = job
        try:
            if not use_cache or not info.etag:
                store.download(info.key, dest, info, moved)
                counters.object_done()
                return True
            return _through_cache(store, cache, info, dest, may_defer, moved, counters)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreError(
                    f"the disk is full: object {info.key!r} ({info.size} bytes) could not be"
                    f" written under {root} (partial files were removed)"
                ) from None
            raise

    # Largest first: the long transfers start at once and the small ones fill in around them.
    jobs = sorted(files, key=lambda job: -job[0].size)
    error = run_parallel(jobs, work, threads, on_tick, should_stop=should_stop, stopped=stop)
    stop.set()
    if use_cache and counters.bytes_transferred:
        with contextlib.suppress(OSError):  # it stays consistent; trimmed again next time
            cache.trim()
    if error is not None:
        raise error
    return counters


def _through_cache(store, cache, info, dest, may_defer, moved, counters) -> bool:
    entry = cache.entry(store.cache_id, info)
    if not entry.lock(blocking=not may_defer):
        return False  # another run is downloading it: come back when the rest is started
    try:
        if entry.valid():
            entry.touch()
            entry.place(dest)
            counters.add_bytes(info.size, transferred=False)
            counters.object_done(hit=True)
            return True
        try:
            entry.fill(store, moved)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # Make room by evicting whatever no run uses, then try once more.
            cache.trim(limit=0)
            entry.fill(store, moved)
        entry.place(dest)
        counters.object_done()
        return True
    finally:
        entry.unlock()
