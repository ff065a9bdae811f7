"""The ``local`` store: a bucket is a folder ``<path>/<bucket>`` on this machine.

For data that is already on the box and for the offline default (``<home>/buckets``). Files
are copied, never linked, so a run cannot change the bucket it read from.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from collections.abc import Iterator

from trainui.storage import (
    ObjectInfo,
    ObjectStore,
    Progress,
    StoreError,
    iter_files,
    safe_key_path,
)


class LocalStore(ObjectStore):
    """Bucket ``bucket`` under the folder ``path``."""

    def __init__(self, bucket: str, path: str) -> None:
        if bucket in ("", ".", "..") or "/" in bucket or "\x00" in bucket:
            raise StoreError(f"{bucket!r} is not a valid local bucket name: it must name a folder")
        self.bucket = bucket
        self.path = path
        self.root = os.path.join(path, bucket)
        self.description = f"local bucket '{bucket}' ({path})"

    def _missing(self) -> StoreError:
        return StoreError(f"local bucket '{self.bucket}' does not exist ({self.root})")

    def _require_bucket(self) -> None:
        if not os.path.isdir(self.root):
            raise self._missing()

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._require_bucket()
        try:
            files = list(iter_files(self.root))
        except OSError as exc:
            raise StoreError(
                f"cannot list {self.description}: {exc.strerror or exc} ({exc.filename})"
            ) from None
        return (ObjectInfo(key, size) for key, _path, size in files if key.startswith(prefix))

    def _object_path(self, key: str) -> str:
        path = safe_key_path(self.root, key)
        # A symlink inside the bucket may point outside it; such objects are not listed, so
        # they cannot be read either.
        real_root = os.path.realpath(self.root)
        if not os.path.realpath(path).startswith(real_root.rstrip(os.sep) + os.sep):
            raise StoreError(f"object {key!r} does not exist in {self.description}")
        return path

    def download(
        self, key: str, dest: str, info: ObjectInfo | None = None, progress: Progress | None = None
    ) -> int:
        self._require_bucket()
        src = self._object_path(key)
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(src, dest)
            size = os.path.getsize(dest)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(dest)  # never half a file
            if isinstance(exc, FileNotFoundError) and exc.filename == src:
                raise StoreError(f"object {key!r} does not exist in {self.description}") from None
            raise StoreError(_copy_failed(key, "from", self.description, exc, dest)) from None
        if progress is not None:
            progress(size)
        return size

    def upload(self, src: str, key: str, progress: Progress | None = None) -> None:
        dest = safe_key_path(self.root, key)
        parent, name = os.path.split(dest)
        # A hidden temporary name in the same folder, renamed into place: readers of the
        # bucket never see half a file.
        tmp = os.path.join(parent, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self._make_folders(parent)
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
            if progress is not None:
                progress(os.path.getsize(dest))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreError(_copy_failed(key, "to", self.description, exc, dest)) from None

    def delete(self, key: str) -> None:
        path = safe_key_path(self.root, key)
        self._require_bucket()
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(
                f"cannot delete {key!r} from {self.description}: {exc.strerror or exc}"
            ) from None
        folder = os.path.dirname(path)  # and its folders left empty, up to the bucket's
        while folder != self.root and folder.startswith(self.root + os.sep):
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)

    def _make_folders(self, folder: str) -> None:
        """``folder``, a folder of the bucket, made with those above it, but not the bucket:
        a bucket that was removed is not made again by a write (S3 answers NoSuchBucket), or
        a run resumed after it would find no checkpoint and start again from its first step
        without a word. (Submitting a run makes its local results bucket: ``check``.)"""
        self._require_bucket()
        path = self.root
        for part in os.path.relpath(folder, self.root).split(os.sep):
            if part == ".":
                continue
            path = os.path.join(path, part)
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            except FileNotFoundError:  # the bucket was removed meanwhile
                raise self._missing() from None

    def check(self, write: bool = False) -> None:
        if not write:
            self._require_bucket()
            if not os.access(self.root, os.R_OK | os.X_OK):
                raise StoreError(f"{self.description} cannot be read: permission denied")
            return
        # unique per thread: the service checks several submissions at once
        probe = os.path.join(self.root, f".trainui-check.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            os.makedirs(self.root, exist_ok=True)
            with open(probe, "wb"):
                pass
            os.unlink(probe)
        except OSError as exc:
            raise StoreError(
                f"{self.description} cannot be written: {exc.strerror or exc}"
            ) from None


def _copy_failed(
    key: str, direction: str, description: str, exc: OSError, dest: str | None = None
) -> str:
    """A copy's failure in a sentence; a full disk names the file being written (the copy's
    error names the file read: a full results bucket read as a full home)."""
    if exc.errno == errno.ENOSPC and dest:
        where = f" (writing {os.path.dirname(dest)})"
    else:
        where = f" ({exc.filename})" if exc.filename else ""
    return f"copying {key!r} {direction} {description} failed: {exc.strerror or exc}{where}"
