"""What the service stores for a run whose learner vanished without storing anything.

A learner killed outright (SIGKILL, the kernel's OOM killer, a lost Ray node) cannot store the
run's log, yet SPEC §3 stores logs on failure too. When the run manager finds a learner gone,
it hands the run's folder to ``store_what_is_left`` in a thread of its own (stores block; the
service's loop must not): the run's log, with a final line saying how the run ended, its
manifest (secrets removed), its model definition and a ``training-status.json`` that says the
run failed and that the results are partial go into the results bucket under ``<id>/``, through
the same storage code as the learner's, with the connection kept in ``results.json``.
"""

from __future__ import annotations

import os
import sys

from trainui.core.runs import (
    DEFINITION_FILE,
    FAILED,
    LOG_FILE,
    MANIFEST_FILE,
    RESULTS_FILE,
    STATUS_FILE,
    read_json,
    write_json_atomic,
)
from trainui.learner import DEFINITION_KEY, TRAINING_STATUS_FILE
from trainui.storage import StoreError, open_store

SALVAGED_STATUS_FILE = "training-status.salvaged.json"  # in the run folder, what is stored


def store_what_is_left(run_dir: str, run: dict, home: str) -> None:
    """Store what the run's folder holds into its results bucket; ``run`` is the run as the
    service failed it (a copy). Never raises: a problem is one line on the service's stderr."""
    model_id = run["model_id"]
    try:
        _store(run_dir, run, home)
    except (StoreError, OSError) as exc:
        print(
            f"trainui: the log of {model_id}, whose learner vanished, could not be stored: {exc}",
            file=sys.stderr,
            flush=True,
        )


def _store(run_dir: str, run: dict, home: str) -> None:
    spec = read_json(os.path.join(run_dir, RESULTS_FILE))
    if spec is None:  # a run from before results.json, or deleted meanwhile
        return
    message = f"{run['status_message']}; what the learner had not stored is missing"
    log_path = os.path.join(run_dir, LOG_FILE)
    _end_log(log_path, f"trainui: failed ({run['error_code']}): {run['status_message']}")
    learner_status = read_json(os.path.join(run_dir, STATUS_FILE)) or {}
    status_path = os.path.join(run_dir, SALVAGED_STATUS_FILE)
    write_json_atomic(
        status_path,
        {
            "model_id": run["model_id"],
            "name": run.get("name"),
            "status": FAILED,
            "status_message": message,
            "error_code": run["error_code"],
            "exit_code": run.get("exit_code"),
            "resource": run.get("resource"),
            "gpu_ids": run.get("gpu_ids"),
            "submitted_at": run.get("submitted_at"),
            "started_at": run.get("started_at"),
            "finished_at": run.get("finished_at"),
            "timings": learner_status.get("timings") or {},
            "results_partial": True,  # stored by the service: the command's results are not
        },
    )
    prefix = f"{run['model_id']}/"
    store = open_store(spec["type"], spec["bucket"], spec.get("connection") or {}, home)
    try:
        for name, key in (
            (DEFINITION_FILE, DEFINITION_KEY),
            (MANIFEST_FILE, MANIFEST_FILE),
            (SALVAGED_STATUS_FILE, TRAINING_STATUS_FILE),
            (LOG_FILE, LOG_FILE),  # last, as the learner does
        ):
            path = os.path.join(run_dir, name)
            if os.path.isfile(path):
                store.upload(path, prefix + key)
    finally:
        store.close()


def _end_log(path: str, line: str) -> None:
    """Append the run's final line to its log (on a line of its own)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        start = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
        os.write(fd, start + line.encode() + b"\n")
    finally:
        os.close(fd)
