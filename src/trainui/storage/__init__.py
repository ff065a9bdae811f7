"""Object stores behind one small interface: where training data comes from, results go to.

Each store type is one module (``local`` now; ``s3`` and ``bluemix_objectstore`` next). Methods
block, so callers that must stay responsive run them in threads. This package imports no UI or
web code: the learner uses it on its start-up path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from trainui.core.record import Record

__all__ = [
    "ObjectInfo",
    "ObjectStore",
    "StoreError",
    "iter_files",
    "open_store",
    "safe_key_path",
]

STORE_TYPES = ("s3", "bluemix_objectstore", "local")


class StoreError(Exception):
    """A store refused or failed; ``str(exc)`` is one sentence for the user, never a secret."""


class ObjectInfo(Record):
    """One object of a bucket: its '/'-separated key, size in bytes and ETag ("" if none)."""

    __slots__ = ("key", "size", "etag")
    _defaults = {"etag": ""}


class ObjectStore:
    """One bucket of one store. Subclasses implement every method."""

    description: str = ""  # for messages, e.g. "local bucket 'demo-data' (/home/me/buckets)"

    def list_objects(self) -> Iterator[ObjectInfo]:
        """Every object of the bucket, sorted by key."""
        raise NotImplementedError

    def download(self, key: str, dest: str) -> int:
        """Write object ``key`` to the file ``dest`` (parents created); return its size."""
        raise NotImplementedError

    def upload(self, src: str, key: str) -> None:
        """Store the file ``src`` as object ``key`` (the bucket is created if need be)."""
        raise NotImplementedError

    def check(self, write: bool = False) -> None:
        """Raise StoreError unless the bucket can be read (or, with ``write``, written)."""
        raise NotImplementedError


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
    if store_type in STORE_TYPES:
        raise StoreError(f"the {store_type} store type is not supported yet")
    raise StoreError(f"unknown store type {store_type!r}: expected one of {', '.join(STORE_TYPES)}")


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
