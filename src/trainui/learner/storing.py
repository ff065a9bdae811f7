"""Storing: the results, the log and the submitted code put into the results bucket, and the
run's outcome in words."""

from __future__ import annotations

import contextlib
import os
import time

from trainui.core.lifecycle import (
    TrainingStatus,
    change,
    no_progress,
    training_status_json,
    update,
)
from trainui.core.runs import (
    COMPLETED,
    DEFINITION_FILE,
    FAILED,
    HALTED,
    KEPT_RESULTS,
    LOG_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    STORING,
    utc_now,
    write_json_atomic,
)
from trainui.core.urls import mask_urls
from trainui.learner.common import (
    PROGRESS_INTERVAL,
    _count,
    _learner_error,
    _transfer_error,
)
from trainui.storage import ObjectStore, StoreError, iter_files, move_into, open_store

TRAINING_STATUS_FILE = "training-status.json"
DEFINITION_KEY = "_submitted_code/model.zip"
LOGS_KEY = "logs/"  # LOG_DIR's files, under the run's prefix
# after storing failed: the tries (and seconds without a byte) of each file left to store
LAST_TRY_ATTEMPTS, LAST_TRY_TIMEOUT = 2, 10.0


class Storing:
    """The learner's part in storing the results (a base of ``Learner``: it uses the run's
    state that ``Learner`` keeps)."""

    # ----------------------------------------------------------------------- 4. storing

    def _store(self) -> None:
        self.phase = STORING
        self._make_room()
        self._end_log_line()  # after a line the command's output left torn (a full disk)
        results = self.config["results"]
        prefix = f"{self.model_id}/"
        progress = no_progress(STORING)
        self.status = change(self.status, STORING, progress=progress)
        store = None
        try:
            store = open_store(
                results["type"], results["bucket"], results.get("connection") or {}, self.home
            )
            self._store_results(store, prefix)
        except StoreError as exc:
            self._storing_failed(str(exc))
        except Exception as exc:
            self._report_crash()
            self._storing_failed(_learner_error(exc))

        self.status = update(self.status, finished_at=utc_now())
        if self.storing_failed and store is not None:
            # a store that failed (timed out at each of its tries: minutes) gets one short try
            # for each of the two files left, not its whole patience again, while the run
            # holds its GPUs
            with contextlib.suppress(Exception):
                store.close()
            try:
                store = open_store(
                    results["type"], results["bucket"], results.get("connection") or {}, self.home
                )
                store.attempts, store.timeout = LAST_TRY_ATTEMPTS, LAST_TRY_TIMEOUT
            except Exception:  # nothing more can be stored: the log says why already
                store = None
        # The status and the log go last, each on its own, so that the log is stored whenever
        # the store takes anything at all; the log's last lines say how the run ended.
        status_path = os.path.join(self.work, TRAINING_STATUS_FILE)
        if store is not None:
            try:
                write_json_atomic(status_path, self._training_status())
                self._upload(store, status_path, prefix + TRAINING_STATUS_FILE)
            except (StoreError, OSError) as exc:
                self.not_stored.append(TRAINING_STATUS_FILE)
                self._storing_failed(_transfer_error(exc))
            total = progress["objects_total"]
            done = progress["objects_done"]
            if not self.storing_failed:
                done += 1  # the log, stored next (after a failure, not counted before it is)
            count = _count(total, "file") if done == total else f"{done} of {total} files"
            self._log(f"stored {count} in {store.description} under {prefix}")
        if self.storing_failed:
            self._keep_results()
            if self.command_pgid is not None:
                self.checkpoints.keep()  # the bucket failed: a resume starts from these
        self._log(self._outcome_line())  # the log's final line: nothing is written after it
        if store is not None:
            try:
                self._upload(store, os.path.join(self.run_dir, LOG_FILE), prefix + LOG_FILE)
            except (StoreError, OSError) as exc:
                self.not_stored.append(LOG_FILE)
                self._storing_failed(_transfer_error(exc), log=False)
                if TRAINING_STATUS_FILE not in self.not_stored:
                    with contextlib.suppress(StoreError, OSError):  # it says the log is missing
                        write_json_atomic(status_path, self._training_status())
                        store.upload(status_path, prefix + TRAINING_STATUS_FILE)
            with contextlib.suppress(Exception):
                store.close()
        self.status.timings["stored"] = time.time()

    def _store_results(self, store: ObjectStore, prefix: str) -> None:
        """Store RESULT_DIR, the model definition and the manifest (not yet status and log)."""
        where = f"{store.description} under {prefix}"
        jobs = [
            (prefix + key, path, size) for key, path, size in iter_files(self.dirs["RESULT_DIR"])
        ]
        # LOG_DIR under logs/ (TensorBoard's event files: `tensorboard --logdir` works on them
        # afterwards, as FfDL kept the job's logs); a RESULT_DIR file of the same key wins
        logs = self.dirs.get("LOG_DIR")
        if logs and os.path.isdir(logs):
            made = {job[0] for job in jobs}
            jobs += [
                (key, path, size)
                for relative, path, size in iter_files(logs)
                if (key := prefix + LOGS_KEY + relative) not in made
            ]
        # the run's metric points too (SPEC §8), in place of a file of RESULT_DIR's so named
        ours = ((DEFINITION_KEY, DEFINITION_FILE), (MANIFEST_FILE, MANIFEST_FILE))
        ours += ((METRICS_FILE, METRICS_FILE),)
        # what an earlier attempt kept, the bucket having refused it, and this one did not make
        kept = os.path.join(self.run_dir, KEPT_RESULTS)
        had_kept = os.path.isdir(kept) and not os.path.islink(kept)
        earlier = []
        if had_kept:
            made = {job[0] for job in jobs}
            earlier = [(prefix + k, p, n) for k, p, n in iter_files(kept) if prefix + k not in made]
        jobs = [job for job in jobs + earlier if job[0] != prefix + METRICS_FILE]
        for key, name in ours:
            path = os.path.join(self.run_dir, name)
            if os.path.isfile(path):
                jobs.append((prefix + key, path, os.path.getsize(path)))
        count = len(jobs) + 2  # and training-status.json and training-log.txt
        self.status = update(self.status, status_message=f"storing results in {where}")
        self.status.progress.update(bytes_total=sum(job[2] for job in jobs), objects_total=count)
        self._write_status()
        self._log(f"storing {_count(count, 'file')} in {where}")

        from trainui.storage import staging

        progress = self.status.progress
        counters = staging.Counters(len(jobs) + 2, progress["bytes_total"])
        stored: set[str] = set()

        def upload(job: tuple[str, str, int], _may_defer: bool) -> bool:
            store.upload(job[1], job[0], counters.add_bytes)
            stored.add(job[0])
            counters.object_done()
            return True

        def show() -> None:
            progress.update(bytes_done=counters.bytes_done, objects_done=counters.objects_done)
            if time.monotonic() - self._last_write >= PROGRESS_INTERVAL:
                self._write_status()

        error = staging.run_parallel(jobs, upload, on_tick=show)
        show()
        self._write_status()
        if error is not None:
            # the one that failed, and those not tried after it
            self.not_stored += [key[len(prefix) :] for key, _, _ in jobs if key not in stored]
            self._storing_failed(_transfer_error(error))
        elif had_kept:
            import shutil

            shutil.rmtree(kept, ignore_errors=True)
            if earlier:
                self._log(
                    f"stored {_count(len(earlier), 'file')} of the results an earlier attempt "
                    f"kept in {kept}"
                )

    def _upload(self, store: ObjectStore, path: str, key: str) -> None:
        size = os.path.getsize(path)
        store.upload(path, key)
        self.status.progress["bytes_total"] += size
        self._count_progress(size)

    def _storing_failed(self, reason: str, log: bool = True) -> None:
        if log and reason not in self.storing_reasons:  # each reason said once
            self._log(f"results could not be stored: {reason}")
        self.storing_reasons.add(reason)
        if self.storing_failed:
            return  # the first reason is the one to fix
        self.storing_failed = True
        if self.final == FAILED:
            # The earlier failure is what the user must fix first; keep its code.
            self.message += mask_urls(f"; results could not be stored: {reason}")
        else:
            halted = f"{self.message}; " if self.final == HALTED else ""
            self._set_outcome(FAILED, "S303", f"{halted}results could not be stored: {reason}")

    def _training_status(self) -> dict:
        config = self.config
        return training_status_json(
            TrainingStatus(
                model_id=self.model_id,
                name=config.get("name"),
                status=self.final,
                status_message=self.message,
                error_code=self.error_code,
                exit_code=self.exit_code,
                resource=config.get("resource"),
                gpu_ids=self.status.gpu_ids,
                submitted_at=config.get("submitted_at"),
                started_at=self.status.started_at,
                finished_at=self.status.finished_at,
                timings=self.status.timings,
                results_partial=self.storing_failed,
                objects_not_stored=sorted(self.not_stored),
            )
        )

    def _keep_results(self) -> None:
        """The results could not all be stored: RESULT_DIR is kept in the run's folder (the
        work folder goes when the learner ends), said in the log and the run's message, until
        the run is deleted. A trained model is hours of GPU time. An earlier attempt's, kept
        the same way, stay with this one's."""
        kept = os.path.join(self.run_dir, KEPT_RESULTS)
        earlier = os.path.isdir(kept) and not os.path.islink(kept)
        results = self.dirs.get("RESULT_DIR")
        if not results or not os.path.isdir(results) or not os.listdir(results):
            if earlier:
                self.message += f"; the results are kept in {kept} until the run is deleted"
            return
        try:
            move_into(results, kept)  # an earlier attempt's, not stored either: these over them
        except OSError as exc:
            self._log(f"the results could not be kept in {kept} either: {exc.strerror or exc}")
            return
        said = f"the results are kept in {kept} until the run is deleted"
        self._log(said)
        self.message += f"; {said}"

    def _outcome_line(self) -> str:
        if self.final == COMPLETED:
            return "completed"
        if self.final == HALTED:
            return self.message
        return (
            f"failed ({self.error_code}): {self.message}"
            if self.error_code
            else f"failed: {self.message}"
        )
