"""Object stores behind one small interface: where training data comes from, results go to.

Each store type is one module: ``local`` (a folder), ``s3`` (AWS or any S3-compatible server,
through botocore) and ``swift`` (``bluemix_objectstore``, python-swiftclient). Methods block,
so callers that must stay responsive run them in threads. This package imports no UI or web
code, and botocore or swiftclient only when a store of that type is first used: the learner
uses it on its start-up path.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping

from trainui.core.record import Record

__all__ = [
    "ObjectInfo",
    "ObjectStore",
    "StoreError",
    "TransferCancelled",
    "check_access",
    "download_prefix",
    "iter_files",
    "open_store",
    "safe_key_path",
]

STORE_TYPES = ("s3", "bluemix_objectstore", "local")
CHECK_ATTEMPTS, CHECK_TIMEOUT = 2, 10.0  # check_access: a submit waits at most ~20 s
TRANSFER_THREADS = 8  # objects moved at once; TRAINUI_TRANSFER_THREADS changes it


def setting(attr: str):
    """A TRAINUI_* setting of the stores (trainui.config); its default when the variable is
    malformed (the service says so at its start; a learner started by hand goes on)."""
    from trainui.config import ConfigError, Settings, current

    try:
        return getattr(current(), attr)
    except ConfigError:
        return getattr(Settings, attr).default


def transfer_threads() -> int:
    """TRAINUI_TRANSFER_THREADS, default 8: how many objects move at once."""
    return setting("transfer_threads")


def attempts() -> int:
    """TRAINUI_STORE_ATTEMPTS, default 5: tries of one request or object."""
    return setting("store_attempts")


Progress = Callable[[int], None]  # called with each number of bytes moved (negative: undone)


class StoreError(Exception):
    """A store refused or failed; ``str(exc)`` is one sentence for the user, never a secret."""


class TransferCancelled(Exception):
    """Raised by a progress callback to stop a transfer; the partial file is removed."""


class ObjectInfo(Record):
    """One object of a bucket: its '/'-separated key, size in bytes and ETag ("" if none)."""

    __slots__ = ("key", "size", "etag")
    _defaults = {"etag": ""}


class ObjectStore:
    """One bucket of one store. Subclasses implement every method.

    Methods may be called from several threads at once.
    """

    description: str = ""  # for messages, e.g. "local bucket 'demo-data' (/home/me/buckets)"
    # What identifies the bucket's objects for the dataset cache (never a secret); "" for a
    # store not worth caching (a local folder).
    cache_id: str = ""
    # Tries of a request and seconds of silence before a connection counts as dead; None:
    # TRAINUI_STORE_ATTEMPTS and 60 s. A check at submit time is less patient than a run.
    attempts: int | None = None
    timeout: float | None = None

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object of the bucket whose key starts with ``prefix``, sorted by key."""
        raise NotImplementedError

    def download(
        self, key: str, dest: str, info: ObjectInfo | None = None, progress: Progress | None = None
    ) -> int:
        """Stream object ``key`` into the file ``dest`` (parents created); return its size.

        With ``info`` (from ``list_objects``), the bytes are checked against its size, and its
        ETag when that is an MD5. ``progress`` is called with each number of bytes written. On
        any failure ``dest`` is removed.
        """
        raise NotImplementedError

    def upload(self, src: str, key: str, progress: Progress | None = None) -> None:
        """Store the file ``src`` as object ``key``."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove object ``key`` (one the run wrote: a checkpoint file its command removed);
        one already gone is no error."""
        raise NotImplementedError

    def check(self, write: bool = False) -> None:
        """Raise StoreError unless the bucket can be read (or, with ``write``, written)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections and threads (the store may not be used afterwards)."""


def open_store(
    store_type: str, bucket: str, connection: Mapping[str, str], home: str
) -> ObjectStore:
    """The store for a manifest's ``type``, ``bucket`` and ``connection`` (a str mapping).

    ``home`` is trainui's state folder: a ``local`` store without ``path`` keeps its buckets
    in ``<home>/buckets``.
    """
    if store_type == "local":
        from trainui.storage.local import LocalStore

        path = connection.get("path") or os.path.join(home, "buckets")
        return LocalStore(bucket, os.path.abspath(os.path.expanduser(path)))
    if store_type == "s3":
        from trainui.storage.s3 import S3Store

        return S3Store(bucket, connection)
    if store_type == "bluemix_objectstore":
        from trainui.storage.swift import SwiftStore

        return SwiftStore(bucket, connection)
    raise StoreError(f"unknown store type {store_type!r}: expected one of {', '.join(STORE_TYPES)}")


def check_access(
    store_type: str, bucket: str, connection: Mapping[str, str], home: str, write: bool
) -> None:
    """Raise StoreError (one sentence naming the endpoint, the bucket and what was refused)
    unless ``bucket`` can be read, or with ``write`` written, with these credentials."""
    store = open_store(store_type, bucket, connection, home)
    store.attempts, store.timeout = CHECK_ATTEMPTS, CHECK_TIMEOUT
    try:
        store.check(write=write)
    finally:
        store.close()


def download_prefix(
    store: ObjectStore,
    prefix: str,
    dest_dir: str,
    progress: Callable[[int, int, int, int], None] | None = None,
) -> tuple[int, int]:
    """Download every object under ``prefix`` into ``dest_dir`` (keys less the prefix).

    In parallel; ``progress(files_done, files_total, bytes_done, bytes_total)`` is called from
    the calling thread as it goes. Returns ``(files, bytes)``. StoreError when nothing is there.
    """
    from trainui.storage.staging import plan, run_parallel

    objects = [o for o in store.list_objects(prefix) if o.key.startswith(prefix)]
    objects = [o for o in objects if o.key != prefix]
    if not objects:
        raise StoreError(f"nothing is stored under {prefix!r} in {store.description}")
    files, folders = plan(
        [ObjectInfo(o.key[len(prefix) :], o.size, o.etag) for o in objects], dest_dir
    )
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    total = sum(info.size for info, _dest in files)
    counter = _Counter()

    def fetch(job: tuple[ObjectInfo, str], _may_defer: bool) -> bool:
        info, dest = job
        store.download(prefix + info.key, dest, info, counter.add_bytes)
        counter.add_object()
        return True

    def report() -> None:
        if progress is not None:
            progress(counter.objects, len(files), counter.bytes, total)

    error = run_parallel(files, fetch, on_tick=report)
    report()
    if error is not None:
        raise error
    return len(files), total


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0
        self.objects = 0

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes += n

    def add_object(self) -> None:
        with self._lock:
            self.objects += 1


def safe_key_path(root: str, key: str) -> str:
    """The path of ``key`` under ``root``; StoreError for a key that would escape ``root``.

    Refused: empty keys, NUL characters, absolute keys and '..' components. Empty and '.'
    components are dropped, so ``a//b`` and ``./a/b`` both mean ``a/b``; a trailing '/' (a
    "folder" object) names the folder.
    """
    if "\x00" in key:
        return _refuse(key, "contains a NUL character")
    if key.startswith("/"):
        return _refuse(key, "is an absolute path")
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if ".." in parts:
        return _refuse(key, "contains a '..' path component")
    if not parts:
        return _refuse(key, "names no file")
    return os.path.join(root, *parts)


def _refuse(key: str, problem: str) -> str:
    raise StoreError(f"object key {key!r} {problem}: it would be written outside its folder")


def move_into(source: str, dest: str) -> None:
    """``source``'s files moved into the folder ``dest``: ``source`` renamed when ``dest`` is
    not there, else each file over the one of the same path in ``dest`` (``iter_files``'
    files only). OSError as it comes."""
    if not os.path.isdir(dest):
        os.replace(source, dest)
        return
    for key, path, _size in iter_files(source):
        target = os.path.join(dest, key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(path, target)


def iter_files(root: str) -> Iterator[tuple[str, str, int]]:
    """``(key, path, size)`` for every file under ``root``, sorted by key.

    Symlinks are followed only when they resolve inside ``root`` (a symlink to a folder is
    never descended into), so nothing outside ``root`` is ever read.
    """
    real_root = os.path.realpath(root)
    inside = real_root.rstrip(os.sep) + os.sep
    stack = [("", root)]
    found = []
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                key = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((key + "/", entry.path))
                    continue
                if entry.is_symlink():
                    if not os.path.realpath(entry.path).startswith(inside):
                        continue
                    if not entry.is_file():  # a symlink to a folder or to nothing
                        continue
                elif not entry.is_file(follow_symlinks=False):
                    continue  # FIFOs, sockets, devices
                found.append((key, entry.path, entry.stat().st_size))
    found.sort()
    return iter(found)
