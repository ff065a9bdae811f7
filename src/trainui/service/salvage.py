"""What the service stores for a run whose learner vanished without storing anything (and for
a run halted between two attempts: its status and log's last line say so).

A learner killed outright (SIGKILL, the kernel's OOM killer, a lost Ray node) cannot store the
run's log, yet SPEC §3 stores logs on failure too. When the run manager finds a learner gone,
it hands the run's folder to ``store_what_is_left`` in a thread of its own (stores block; the
service's loop must not): the run's log, with a final line saying how the run ended, its
manifest (secrets removed), its model definition and a ``training-status.json`` that says the
run failed and that the results are partial go into the results bucket under ``<id>/``, with
the metric points the learner took (``metrics.jsonl``) and LOG_DIR's files (``logs/``), through
the same storage code as the learner's, with the connection kept in ``results.json``.
"""

from __future__ import annotations

import os
import shutil
import sys

from trainui.core.lifecycle import Run, TrainingStatus, read_status, training_status_json
from trainui.core.runs import (
    DEFINITION_FILE,
    FAILED,
    HALTED,
    KEPT_CHECKPOINTS,
    KEPT_RESULTS,
    LOG_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    RESULTS_FILE,
    STATUS_FILE,
    WORK_DIR,
    read_json,
    write_json_atomic,
)
from trainui.learner.storing import DEFINITION_KEY, LOGS_KEY, TRAINING_STATUS_FILE
from trainui.storage import StoreError, iter_files, move_into, open_store

SALVAGED_STATUS_FILE = "training-status.salvaged.json"  # in the run folder, what is stored


def store_what_is_left(run_dir: str, run: Run, home: str) -> None:
    """Store what the run's folder holds into its results bucket; ``run`` is the run as the
    service failed it. Never raises: a problem is one line on the service's stderr."""
    try:
        _store(run_dir, run, home)
    except (StoreError, OSError) as exc:
        print(
            f"trainui: the log of {run.model_id}, whose learner vanished, could not be stored: "
            f"{exc}",
            file=sys.stderr,
            flush=True,
        )


def _store(run_dir: str, run: Run, home: str) -> None:
    spec = read_json(os.path.join(run_dir, RESULTS_FILE))
    if spec is None:  # a run from before results.json, or deleted meanwhile
        return
    log_path = os.path.join(run_dir, LOG_FILE)
    if run.status == HALTED:  # halted between two attempts: the last one's results are stored
        end_log(log_path, f"trainui: halted: {run.status_message}")
    else:
        kept = keep_what_is_left(run_dir)
        if kept:
            end_log(
                log_path,
                f"trainui: {' and '.join(kept)} the command left are kept on the box until the "
                f"run is deleted: `trainui download {run.model_id} --results` gets them, "
                f"`trainui resume {run.model_id}` starts from the checkpoints",
            )
        end_log(log_path, f"trainui: failed ({run.error_code}): {run.status_message}")
    status_path = os.path.join(run_dir, SALVAGED_STATUS_FILE)
    write_json_atomic(status_path, training_status_json(salvaged_status(run, run_dir)))
    prefix = f"{run.model_id}/"
    files = [
        (os.path.join(run_dir, name), prefix + key)
        for name, key in (
            (DEFINITION_FILE, DEFINITION_KEY),
            (MANIFEST_FILE, MANIFEST_FILE),
            (SALVAGED_STATUS_FILE, TRAINING_STATUS_FILE),
        )
    ]
    if run.status != HALTED:  # (halted between attempts: the last one stored these)
        # the metric points the learner took (SPEC §8) and LOG_DIR (TensorBoard's event
        # files), as the learner stores them: the curves up to the crash are what tells why
        files.append((os.path.join(run_dir, METRICS_FILE), prefix + METRICS_FILE))
        logs = os.path.join(run_dir, WORK_DIR, "logs")
        if os.path.isdir(logs) and not os.path.islink(logs):
            files += [(path, prefix + LOGS_KEY + key) for key, path, _size in iter_files(logs)]
    files.append((os.path.join(run_dir, LOG_FILE), prefix + LOG_FILE))  # last, as the learner
    store = open_store(spec["type"], spec["bucket"], spec.get("connection") or {}, home)
    try:
        for path, key in files:
            if os.path.isfile(path):
                store.upload(path, key)
    finally:
        store.close()


def keep_what_is_left(run_dir: str) -> list[str]:
    """RESULT_DIR and CHECKPOINT_DIR of the work folder a vanished learner left (it would have
    stored them) moved where a stored run keeps what its bucket refused: ``download
    --results`` lists them, a resume starts from the checkpoints (newer than the bucket's last
    copy). What was kept, in words; a move that fails leaves things as they were."""
    kept = []
    work = os.path.join(run_dir, WORK_DIR)
    for folder, into, what in (
        ("results", KEPT_RESULTS, "the results"),
        ("checkpoints", KEPT_CHECKPOINTS, "the checkpoints"),
    ):
        source, dest = os.path.join(work, folder), os.path.join(run_dir, into)
        try:
            if os.path.islink(source) or not os.path.isdir(source) or not os.listdir(source):
                continue
            if folder == "checkpoints" and os.path.isdir(dest):  # older than these
                shutil.rmtree(dest)
            move_into(source, dest)  # over an earlier attempt's results
        except OSError:
            continue
        kept.append(what)
    return kept


def salvaged_status(run: Run, run_dir: str) -> TrainingStatus:
    """The ``training-status.json`` the service stores for ``run``: failed, with the results
    partial (the command's results are not stored), and the timings its learner recorded."""
    learner_status = read_status(os.path.join(run_dir, STATUS_FILE))
    if run.status == HALTED:  # between two attempts: what the last one stored stays whole
        return TrainingStatus(
            model_id=run.model_id, name=run.name, status=HALTED,
            status_message=run.status_message, resource=run.resource, gpu_ids=run.gpu_ids,
            submitted_at=run.submitted_at, started_at=run.started_at,
            finished_at=run.finished_at, timings={},
        )  # fmt: skip
    return TrainingStatus(
        model_id=run.model_id,
        name=run.name,
        status=FAILED,
        status_message=f"{run.status_message}; what the learner had not stored is missing",
        error_code=run.error_code,
        exit_code=run.exit_code,
        resource=run.resource,
        gpu_ids=run.gpu_ids,
        submitted_at=run.submitted_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        timings=(learner_status.timings if learner_status else None) or {},
        results_partial=True,  # stored by the service: the command's results are not
    )


def end_log(path: str, line: str) -> None:
    """Append the run's final line (or its attempt's) to its log, on a line of its own; a log
    that cannot be written to (gone, a full disk) is left as it is."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except OSError:
        return
    try:
        size = os.fstat(fd).st_size
        start = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
        os.write(fd, start + line.encode() + b"\n")
    except OSError:
        pass
    finally:
        os.close(fd)
