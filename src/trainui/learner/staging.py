"""Staging: the training data copied from its bucket into the run folder (through the dataset
cache), and the model definition unpacked."""

from __future__ import annotations

import os
import time

from trainui.core.lifecycle import update
from trainui.core.runs import (
    DEFINITION_FILE,
)
from trainui.learner.common import (
    PROGRESS_INTERVAL,
    _count,
    _Failed,
    _size,
    _transfer_error,
)
from trainui.storage import ObjectStore, StoreError, open_store

UNPACKING = "unpacking"  # a phase of the learner, shown as `downloading` in status.json


class Staging:
    """The learner's part in staging the data and unpacking the definition (a base of
    ``Learner``: it uses the run's state that ``Learner`` keeps)."""

    # ---------------------------------------------------------------------- 1. staging

    def _stage(self) -> None:
        started = time.monotonic()
        data = self.config["data"]
        data_dir = self.dirs["DATA_DIR"]
        store = None
        try:
            store = open_store(
                data["type"], data["bucket"], data.get("connection") or {}, self.home
            )
            objects = self._listed(store)
            if objects is None:
                self._log(f"staging stopped while {store.description} was being listed")
                return
            total = sum(obj.size for obj in objects)
            what = f"{_count(len(objects), 'object')} ({_size(total)})"
            self._log(f"staging {what} from {store.description}")
            # a key ending in '/' is a folder in DATA_DIR: bytes such an object holds go nowhere
            held = [obj.key for obj in objects if obj.key.endswith("/") and obj.size]
            if held:
                named = ", ".join(repr(key) for key in held[:5])
                more = f" and {len(held) - 5} more" if len(held) > 5 else ""
                self._log(
                    f"warning: {named}{more}: a key ending in '/' is a folder in DATA_DIR;"
                    " the bytes its object holds are not staged"
                )
            self.status = update(
                self.status, status_message=f"staging {what} from {store.description}"
            )
            self.status.progress.update(bytes_total=total, objects_total=len(objects))
            self._write_status()
            counters = self._stage_objects(store, objects, data_dir)
        except StoreError as exc:
            raise _Failed("S302", str(exc)) from None
        except OSError as exc:
            raise _Failed("S302", f"staging failed: {_transfer_error(exc)}") from None
        finally:
            if store is not None:
                store.close()
        done = counters.objects_done
        if self.halt_requested:
            self._log(f"staging stopped after {done} of {_count(len(objects), 'object')}")
            return
        seconds = time.monotonic() - started
        how = ""
        if counters.cached:
            downloaded = done - counters.cache_hits
            how = f": {counters.cache_hits} from the cache, {downloaded} downloaded"
        if counters.bytes_transferred:
            rate = counters.bytes_transferred / max(seconds, 1e-6)
            how += f" ({_size(counters.bytes_transferred)} at {_size(int(rate))}/s)"
        self._log(f"staged {_count(done, 'object')} in {seconds:.2f} s{how}")
        self.status.timings["staged"] = time.time()

    def _listed(self, store: ObjectStore) -> list | None:
        """The bucket's objects, listed in a thread of its own while this one waits for them
        or a halt (None). A server that takes in requests and never answers holds a listing
        for botocore's timeout at each of its tries (minutes): a halt meanwhile stops the
        staging at once, the listing left to end with the learner."""
        import threading

        got: dict = {}

        def listing() -> None:
            try:
                got["objects"] = list(store.list_objects())
            except BaseException as error:  # given to the waiting thread, which raises it
                got["error"] = error

        thread = threading.Thread(target=listing, name="trainui-listing", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
            if self.halt_requested:
                return None
        if "error" in got:
            raise got["error"]
        return got["objects"]

    def _stage_objects(self, store: ObjectStore, objects: list, data_dir: str):
        from trainui.storage import staging

        cache = self._cache() if store.cache_id else None
        counters = staging.Counters()
        try:
            return staging.stage(
                store,
                objects,
                data_dir,
                cache=cache,
                counters=counters,
                on_tick=lambda: self._show_progress(counters),
                should_stop=lambda: self.halt_requested,
            )
        finally:
            self._show_progress(counters, force=True)

    def _cache(self):
        """The dataset cache of this home, or None when TRAINUI_CACHE_MAX_BYTES is 0."""
        from trainui.storage.cache import DEFAULT_MAX_BYTES, Cache, CacheSettingError, max_bytes

        try:
            limit = max_bytes(os.environ)
        except CacheSettingError as exc:
            self._log(f"warning: {exc}; the default size is used")
            limit = DEFAULT_MAX_BYTES
        if limit <= 0:
            return None
        try:
            return Cache(os.path.join(self.home, "cache"), limit)
        except OSError as exc:
            self._log(f"warning: no dataset cache: {_transfer_error(exc)}")
            return None

    def _show_progress(self, counters, force: bool = False) -> None:
        """Copy transfer counters into status.json (at most every PROGRESS_INTERVAL)."""
        progress = self.status.progress
        progress.update(
            bytes_done=counters.bytes_done,
            objects_done=counters.objects_done,
            bytes_total=max(progress["bytes_total"], counters.bytes_total),
            objects_total=max(progress["objects_total"], counters.objects_total),
        )
        if force or time.monotonic() - self._last_write >= PROGRESS_INTERVAL:
            self._write_status()

    def _count_progress(self, size: int) -> None:
        progress = self.status.progress
        progress["bytes_done"] += size
        progress["objects_done"] += 1
        if time.monotonic() - self._last_write >= PROGRESS_INTERVAL:
            self._write_status()

    # --------------------------------------------------------------------- 2. unpacking

    def _unpack(self) -> None:
        self.phase = UNPACKING
        from trainui.core.definition import DefinitionError, Limits, unpack

        try:
            info = unpack(
                os.path.join(self.run_dir, DEFINITION_FILE),
                self.dirs["MODEL_DIR"],
                Limits.from_env(os.environ),
            )
        except DefinitionError as exc:
            raise _Failed("S301", str(exc)) from None
        self._log(
            f"unpacked the model definition: {_count(info.entries, 'file')}"
            f" ({_size(info.total_bytes)})"
        )
        self.status.timings["unpacked"] = time.time()
