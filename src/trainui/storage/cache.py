"""The dataset cache: objects of S3 and Swift buckets kept in ``<home>/cache``, shared by runs.

An entry is one object, keyed by its store, bucket, key, ETag and size (so a changed object is
a new entry), stored as ``objects/<xx>/<sha256>``. Runs get their data as hard links to the
entries (copies when ``DATA_DIR`` is on another file system), so a second run on an unchanged
bucket transfers no bytes and writes none.

- Consistency: an entry is downloaded to ``tmp/`` and checked (size, MD5) before it is renamed
  into place, so ``objects/`` holds only whole, checked objects, whatever happens (a full disk,
  a killed learner). Entries are read-only and their modification time is set to a fixed
  value: a run that writes into its data in place changes it, and the entry is then dropped
  instead of being served again.
- Concurrency: a file lock per entry (``locks/<sha256>``, removed by whoever releases it):
  runs staging the same bucket at once download each object once; a run that finds an entry
  locked goes on with other objects and comes back to it.
- Size: at most ``TRAINUI_CACHE_MAX_BYTES`` (default 20 GiB; ``0`` turns the cache off). The
  least recently used entries go first; an entry that a run's ``DATA_DIR`` links to (more than
  one link) is in use and is never evicted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Mapping

from trainui.storage import ObjectInfo, ObjectStore, Progress

DEFAULT_MAX_BYTES = 20 << 30
# Every entry's modification time (2001-09-09): any write into the file changes it.
ENTRY_MTIME_NS = 1_000_000_000 * 1_000_000_000
STALE_TMP_SECONDS = 6 * 3600
TOUCH_NS = 60 * 1_000_000_000  # use times closer than this are not worth a write


class CacheSettingError(ValueError):
    pass


def max_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """TRAINUI_CACHE_MAX_BYTES: bytes, or with a K, M, G or T suffix (powers of 1024)."""
    from trainui.config import ConfigError, Settings

    try:
        return Settings(environ).cache_max_bytes
    except ConfigError as error:
        raise CacheSettingError(str(error)) from None


class Cache:
    """The cache under ``root`` (``<home>/cache``), holding at most ``limit`` bytes."""

    def __init__(self, root: str, limit: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.limit = limit
        self.objects = os.path.join(root, "objects")
        self.tmp = os.path.join(root, "tmp")
        self.locks = os.path.join(root, "locks")
        for folder in (self.objects, self.tmp, self.locks):
            os.makedirs(folder, mode=0o700, exist_ok=True)

    def entry(self, cache_id: str, info: ObjectInfo) -> Entry:
        name = hashlib.sha256(
            "\0".join((cache_id, info.key, info.etag, str(info.size))).encode("utf-8", "replace")
        ).hexdigest()
        return Entry(self, name, info)

    # ------------------------------------------------------------------------- eviction

    def usage(self) -> tuple[int, int]:
        """``(entries, bytes)`` in the cache."""
        count = total = 0
        for _path, st in self._entries():
            count += 1
            total += st.st_size
        return count, total

    def _entries(self):
        with contextlib.suppress(FileNotFoundError), os.scandir(self.objects) as shards:
            for shard in shards:
                if not shard.is_dir(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError), os.scandir(shard.path) as files:
                    for f in files:
                        with contextlib.suppress(FileNotFoundError):
                            yield f.path, f.stat(follow_symlinks=False)

    def trim(self, limit: int | None = None) -> tuple[int, int]:
        """Evict least recently used entries not in use until at most ``limit`` bytes (the
        cache's limit by default) are left. Returns ``(entries, bytes)`` evicted."""
        limit = self.limit if limit is None else limit
        with _flock(os.path.join(self.root, "trim.lock")):
            self._remove_stale_tmp()
            total = 0
            idle = []
            for path, st in self._entries():
                total += st.st_size
                if st.st_nlink == 1:
                    idle.append((st.st_atime_ns, st.st_size, path))
            evicted = freed = 0
            if total <= limit:
                return evicted, freed
            idle.sort()
            for _atime, _size, path in idle:
                if total <= limit:
                    break
                lock = _acquire(os.path.join(self.locks, os.path.basename(path)), blocking=False)
                if lock is None:
                    continue  # a run is staging it right now
                try:
                    st = os.stat(path, follow_symlinks=False)
                    if st.st_nlink == 1:
                        os.unlink(path)
                        total -= st.st_size
                        evicted += 1
                        freed += st.st_size
                except FileNotFoundError:
                    pass
                finally:
                    _release(lock)
            return evicted, freed

    def _remove_stale_tmp(self) -> None:
        """Downloads left by learners that died (a name holds its writer's PID)."""
        now = time.time()
        with contextlib.suppress(FileNotFoundError), os.scandir(self.tmp) as files:
            for f in files:
                parts = f.name.split(".")
                pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0
                with contextlib.suppress(FileNotFoundError):
                    old = now - f.stat(follow_symlinks=False).st_mtime > STALE_TMP_SECONDS
                    if old or not _alive(pid):
                        os.unlink(f.path)


class Entry:
    """One object's place in the cache. Lock it before anything else."""

    def __init__(self, cache: Cache, name: str, info: ObjectInfo) -> None:
        self.cache = cache
        self.name = name
        self.info = info
        self.path = f"{cache.objects}/{name[:2]}/{name}"
        self._lock: tuple[int, str] | None = None

    def lock(self, blocking: bool = True) -> bool:
        """Take the entry's lock; False if ``blocking`` is False and another holds it."""
        self._lock = _acquire(os.path.join(self.cache.locks, self.name), blocking)
        return self._lock is not None

    def unlock(self) -> None:
        if self._lock is not None:
            _release(self._lock)
            self._lock = None

    def valid(self) -> bool:
        """Is the object here, whole and unchanged? A changed entry is removed."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if st.st_size == self.info.size and st.st_mtime_ns == ENTRY_MTIME_NS:
            return True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # written into by a run: never serve it again
        return False

    def fill(self, store: ObjectStore, progress: Progress | None = None) -> None:
        """Download the object into the cache (checked by the store before it goes in)."""
        tmp = os.path.join(
            self.cache.tmp, f"{self.name}.{os.getpid()}.{threading.get_ident()}.part"
        )
        store.download(self.info.key, tmp, self.info, progress)
        try:
            os.chmod(tmp, 0o444)
            os.utime(tmp, ns=(time.time_ns(), ENTRY_MTIME_NS))
            try:
                os.replace(tmp, self.path)
            except FileNotFoundError:  # the entry's shard is made when first needed
                os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def touch(self) -> None:
        """Mark the entry as just used (its access time orders eviction)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path, ns=(time.time_ns(), ENTRY_MTIME_NS))

    def link_to(self, dest: str) -> bool:
        """Hard-link a whole, unchanged entry to ``dest`` without taking its lock; False
        (and nothing at ``dest``) if the entry is missing, changed or on another device."""
        try:
            os.link(self.path, dest)
        except OSError:
            return False
        try:
            st = os.stat(dest)
            if st.st_size == self.info.size and st.st_mtime_ns == ENTRY_MTIME_NS:
                now = time.time_ns()
                if now - st.st_atime_ns > TOUCH_NS:
                    os.utime(dest, ns=(now, ENTRY_MTIME_NS))  # just used
                return True
        except OSError:
            pass
        with contextlib.suppress(OSError):
            os.unlink(dest)
        return False

    def place(self, dest: str) -> bool:
        """Put the object at ``dest``: a hard link, or a copy across file systems. True if
        it was linked."""
        try:
            os.link(self.path, dest)
            return True
        except FileNotFoundError:
            parent = os.path.dirname(dest)
            if os.path.isdir(parent) or not os.path.exists(self.path):
                raise
            os.makedirs(parent, exist_ok=True)
            return self.place(dest)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.EACCES):
                raise
        shutil.copyfile(self.path, dest)
        return False


# ---------------------------------------------------------------------------------- locks


def _acquire(path: str, blocking: bool) -> tuple[int, str] | None:
    """An exclusive lock on the file ``path``, created if need be; None if not ``blocking``
    and another holds it. The holder removes the file when it releases the lock, so a waiter
    that locked a file removed meanwhile tries again on the new one."""
    flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, path
        os.close(fd)


def _release(lock: tuple[int, str]) -> None:
    fd, path = lock
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


@contextlib.contextmanager
def _flock(path: str):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
