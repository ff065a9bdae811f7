"""Checkpoints (SPEC §11): ``CHECKPOINT_DIR`` copied to ``<id>/checkpoints/`` in the results
bucket every ``checkpoint_interval`` while the command runs, and once more when it failed or was
halted, each time only what changed (size and modification time; a file the command removed
goes from the bucket too, once nothing is being written); restored into
``CHECKPOINT_DIR`` before a run's next attempt (a restart, ``trainui resume``).

When the last copy fails (the results bucket is gone, refuses the write, the disk behind it is
full), ``CHECKPOINT_DIR`` is kept in the run folder (``checkpoints-not-copied``) instead of going
with the work folder, and the next attempt starts from it: it is newer than what the bucket has.

A file modified in the last ``SETTLE`` seconds is being written: a periodic copy leaves it for
the next one (the final copy, the command ended, takes it). What was copied is noted in the run
folder (``checkpoints.json``), so that a next attempt sends only what it changes. The copies
run in a thread of their own at a low priority, so that the command is not slowed visibly."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

from trainui.core.runs import KEPT_CHECKPOINTS, write_json_atomic

STATE_FILE = "checkpoints.json"  # relative path -> [size, mtime_ns] of what the bucket has
SETTLE = 1.0  # seconds a file must be left alone before a periodic copy takes it
DEFAULT_INTERVAL = 300.0  # with max_restarts and no checkpoint_interval (SPEC §11)


class Checkpoints:
    def __init__(self, learner, interval: float | None) -> None:
        self.learner = learner
        self.folder = learner.dirs["CHECKPOINT_DIR"]
        self.prefix = f"{learner.model_id}/checkpoints/"
        self.interval = interval
        self.state_path = os.path.join(learner.run_dir, STATE_FILE)
        self.kept = os.path.join(learner.run_dir, KEPT_CHECKPOINTS)
        self.sent: dict[str, list[int]] = self._load()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one copy at a time (the thread's, the final one)
        self.copies = 0  # copies that sent something
        self.restored_kept = False  # this attempt started from checkpoints kept on the box

    # --- the results bucket ------------------------------------------------------------------

    def _store(self):
        from trainui.storage import open_store

        results = self.learner.config["results"]
        return open_store(
            results["type"], results["bucket"], results.get("connection") or {}, self.learner.home
        )

    def restore(self) -> None:
        """The run's checkpoints from the results bucket into ``CHECKPOINT_DIR`` (a next
        attempt); said in the log. A key that would land outside the folder is refused. Those
        an earlier attempt kept here, the bucket having refused them, are taken instead."""
        from trainui.learner.common import _count, _size
        from trainui.storage import StoreError

        if os.path.isdir(self.kept) and not os.path.islink(self.kept):
            self._restore_kept()
            return
        store = self._store()
        try:
            objects = [o for o in store.list_objects(self.prefix) if o.key != self.prefix]
            restored, total = 0, 0
            for info in objects:
                relative = info.key[len(self.prefix) :]
                dest = os.path.normpath(os.path.join(self.folder, relative))
                if (
                    not relative
                    or relative.startswith("/")
                    or ".." in relative.split("/")
                    or not dest.startswith(self.folder.rstrip(os.sep) + os.sep)
                ):
                    self.learner._log(f"checkpoint {info.key!r} not restored: not a file name")
                    continue
                total += store.download(info.key, dest, info)
                st = os.stat(dest)
                self.sent[relative] = [st.st_size, st.st_mtime_ns]  # the bucket has it
                restored += 1
        except (StoreError, OSError) as error:
            raise RestoreError(str(error)) from None
        finally:
            with contextlib.suppress(Exception):
                store.close()
        self._save()
        where = f"{store.description} under {self.prefix}"
        if restored:
            self.learner._log(
                f"restored {_count(restored, 'checkpoint file')} ({_size(total)}) from {where}"
            )
        else:
            self.learner._log(f"no checkpoint to restore in {where}")

    def copy(self, final: bool = False) -> tuple[int, int]:
        """Send what changed since the last copy: ``(files, bytes)`` sent. A periodic copy
        leaves the files still being written; the final one takes everything."""
        from trainui.storage import iter_files

        with self._lock:
            now = time.time()
            changed = []
            try:
                files = list(iter_files(self.folder))
            except OSError:
                return 0, 0
            settling = False
            for relative, path, _size in files:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                mark = [st.st_size, st.st_mtime_ns]
                if self.sent.get(relative) == mark:
                    continue
                if not final and now - st.st_mtime < SETTLE:
                    settling = True
                    continue  # being written: the next copy takes it
                changed.append((relative, path, mark))
            # those the command removed (an older checkpoint, once a newer one is written) go
            # from the bucket too, or the next attempt would find them back; not while a file
            # is still being written: it may be the newer one, which the bucket lacks yet; nor
            # when the folder is empty (wiped, not rotated: the bucket's last ones stay)
            present = {relative for relative, _, _ in files}
            removed = (
                [] if settling or not present else sorted(r for r in self.sent if r not in present)
            )
            if not changed and not removed and not (final and files):
                return 0, 0
            store = self._store()
            sent = 0
            try:
                for relative, path, mark in changed:
                    store.upload(path, self.prefix + relative)
                    sent += mark[0]
                    with contextlib.suppress(OSError):  # written to meanwhile: sent again
                        st = os.stat(path)
                        if [st.st_size, st.st_mtime_ns] == mark:
                            self.sent[relative] = mark
                for relative in removed:  # after the newer ones are in the bucket
                    store.delete(self.prefix + relative)
                    del self.sent[relative]
                if final:  # what the next attempt starts from: still there?
                    self._check_held(store, present)
            finally:
                with contextlib.suppress(Exception):
                    store.close()
                self._save()
            if changed:
                self.copies += 1
            return len(changed), sent

    def _check_held(self, store, present: set[str]) -> None:
        """The bucket holds every checkpoint file of the folder as it was copied (one listing);
        else StoreError (the last copy failed: the folder is kept). A bucket emptied or deleted
        since an earlier copy is found here, when nothing changed to be sent."""
        from trainui.storage import StoreError

        held = {o.key[len(self.prefix) :]: o.size for o in store.list_objects(self.prefix)}
        lost = sorted(r for r in present if r in self.sent and held.get(r) != self.sent[r][0])
        if lost:
            for relative in lost:
                del self.sent[relative]  # sent again by the next copy that can
            raise StoreError(
                f"the results bucket no longer holds {len(lost)} checkpoint file"
                f"{'s' if len(lost) != 1 else ''} copied before ({', '.join(lost[:3])}"
                f"{', ...' if len(lost) > 3 else ''})"
            )

    def in_use(self) -> bool:
        """Whether the run's checkpoints go to the bucket as it trains (an interval) or this
        attempt started from some: its last ones are copied however it ends."""
        return bool(self.interval or self.sent or self.restored_kept)

    def keep(self) -> None:
        """The last copy failed: ``CHECKPOINT_DIR`` is moved into the run folder, where the next
        attempt (a restart, ``trainui resume``) finds it; said in the log. Nothing to keep, or
        a folder that cannot be moved, leaves things as they were."""
        try:
            if not os.path.isdir(self.folder) or not os.listdir(self.folder):
                return  # none, or kept already
            if os.path.lexists(self.kept):  # an earlier attempt's, older than this one's
                import shutil

                shutil.rmtree(self.kept)
            os.replace(self.folder, self.kept)
        except OSError as error:
            self.learner._log(
                f"warning: the checkpoints could not be kept in {self.kept} either: "
                f"{error.strerror or error}"
            )
            return
        self.learner._log(
            f"the checkpoints are kept in {self.kept}: the next attempt (a restart, trainui "
            "resume) starts from them"
        )

    def _restore_kept(self) -> None:
        """What an earlier attempt kept (``keep``) moved into the new ``CHECKPOINT_DIR``. What
        the bucket lacks of it is sent at this attempt's next copy."""
        from trainui.learner.common import _count, _size
        from trainui.storage import iter_files

        files, total = 0, 0
        try:
            for name in os.listdir(self.kept):
                os.replace(os.path.join(self.kept, name), os.path.join(self.folder, name))
            os.rmdir(self.kept)
            for _relative, _path, size in iter_files(self.folder):
                files += 1
                total += size
        except OSError as error:
            raise RestoreError(
                f"those kept in {self.kept} could not be taken: {error.strerror or error}"
            ) from None
        self.restored_kept = True
        self.learner._log(
            f"restored {_count(files, 'checkpoint file')} ({_size(total)}) kept in the run "
            "folder by an earlier attempt (the results bucket refused them, or that attempt's "
            "learner was lost before it could copy them)"
        )

    # --- while the command runs ----------------------------------------------------------------

    def start(self) -> None:
        if not self.interval:
            return
        self._thread = threading.Thread(target=self._loop, name="trainui-checkpoints", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # behind the command
        while not self._stop.wait(self.interval):
            try:
                files, size = self.copy()
            except Exception as error:  # said, and tried again at the next interval
                self.learner._log(f"warning: checkpoints not copied: {error}")
                continue
            if files:
                self._said(files, size)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _said(self, files: int, size: int) -> None:
        from trainui.learner.common import _count, _size

        self.learner._log(
            f"checkpoint: {_count(files, 'file')} ({_size(size)}) copied under {self.prefix}"
        )

    # --- checkpoints.json ----------------------------------------------------------------------

    def _load(self) -> dict:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _save(self) -> None:
        with contextlib.suppress(OSError):
            write_json_atomic(self.state_path, self.sent, mode=0o600)


class RestoreError(Exception):
    """The checkpoints could not be restored (a sentence)."""


def interval_of(config: dict) -> float | None:
    """learner.json's ``checkpoint_interval``, else the default when the run may restart."""
    value = config.get("checkpoint_interval")
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    return DEFAULT_INTERVAL if config.get("max_restarts") else None
