"""A run's record, its learner's status record, and the one function that changes a run's state.

``Run`` is the run as the service keeps it (SPEC §6's fields, then the service's own), ``Status``
what a learner records of it (``status.json``, a Ray job's status lines). Both are immutable
``msgspec.Struct``s: every change makes a new record, through ``change`` (a state change, or
new values within a state) or ``follow`` (a run brought up to date with its learner's record).
``change`` knows the legal transitions and stamps the times; an illegal one raises
``IllegalChange``. The JSON field names are SPEC's and never change (add, never rename).

msgspec, not a dataclass or pydantic: bench/records.py measures the three on 10,000 runs. It
costs about 10 ms to import (typing comes with it), so the CLI's start-up path never imports
this module; the learner does, in the spare learner the service starts ahead.
"""

from __future__ import annotations

import time

import msgspec

from trainui.core.runs import (
    COMPLETED,
    DOWNLOADING,
    FAILED,
    FINAL_STATES,
    HALTED,
    PENDING,
    RESTARTING,
    RUNNING,
    STORING,
    utc_now,
)

# state -> the states a run in it may move to. Forward only: a run may skip states (its
# learner may pass one between two looks of the service), never go back; an ended run never
# changes again. A record may also change within its state (a message, progress), unless ended.
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({DOWNLOADING, RUNNING, STORING, *FINAL_STATES}),
    DOWNLOADING: frozenset({RUNNING, STORING, RESTARTING, *FINAL_STATES}),
    RUNNING: frozenset({STORING, RESTARTING, *FINAL_STATES}),
    STORING: frozenset({RESTARTING, *FINAL_STATES}),
    # its next attempt starts (a new learner), or it is halted or given up while it waits
    RESTARTING: frozenset({DOWNLOADING, RUNNING, STORING, *FINAL_STATES}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    HALTED: frozenset(),
}


class IllegalChange(ValueError):
    """A state change the lifecycle does not allow, said in one sentence."""


def no_progress(phase: str | None = None) -> dict:
    """A transfer's progress before anything moved (``phase``: downloading, storing, None)."""
    return {"phase": phase, "bytes_done": 0, "bytes_total": 0, "objects_done": 0,
            "objects_total": 0}  # fmt: skip


class Run(msgspec.Struct, frozen=True):
    """A run as the service keeps it: the API's fields (``PUBLIC``), then the service's own."""

    model_id: str
    url: str = ""
    name: str | None = None
    description: str | None = None
    framework: dict | None = None
    resource: str | None = None
    gpus: int | None = None
    gpu_ids: list | None = None
    status: str = PENDING
    status_message: str | None = None
    error_code: str | None = None
    exit_code: int | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    owner: str | None = None
    data: dict | None = None
    results: dict | None = None
    progress: dict | None = None
    # each metric's summary {name: {last, step, min, max, steps}} (SPEC §8), or None: what the
    # service read of <run_dir>/metrics.jsonl (service/metrics.py), the first 100 metrics
    metrics: dict | None = None
    # the experiment the run is one of (SPEC §9), and its values of the experiment's
    # parameters {name: value}; None for a run of its own
    experiment_id: str | None = None
    parameters: dict | None = None
    # restarts (SPEC §11): the attempt now (1 the first), the times it may start again, and
    # each attempt that ended: {attempt, status, error_code, exit_code, status_message,
    # started_at, finished_at}
    attempt: int = 1
    max_restarts: int = 0
    attempts: list | None = None
    # when `trainui resume` last started it again (its wait counts from then); None if never
    resumed_at: str | None = None
    # the service's own, never in the API
    seq: int | None = None
    queued_epoch: float | None = None
    learner_pid: int | None = None
    learner_start: str | None = None
    finished_epoch: float | None = None
    deleted: int = 0


INTERNAL = ("seq", "queued_epoch", "learner_pid", "learner_start", "finished_epoch", "deleted")
PUBLIC = tuple(f for f in Run.__struct_fields__ if f not in INTERNAL)


def public(run: Run) -> dict:
    """The run as the API shows it: SPEC §6's object, without the service's fields."""
    return {name: getattr(run, name) for name in PUBLIC}


class Status(msgspec.Struct, frozen=True):
    """A learner's record of its run: ``status.json``, or a status line of a Ray job's log."""

    status: str = PENDING
    status_message: str | None = None
    error_code: str | None = None
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    progress: dict | None = None
    learner_pid: int | None = None
    command_pgid: int | None = None
    timings: dict | None = None
    updated_at: str | None = None
    gpu_ids: list | None = None  # those a cluster chose (Ray), reported by the learner


class TrainingStatus(msgspec.Struct, frozen=True):
    """``training-status.json``: a run's outcome, stored beside its results (SPEC §3), by its
    learner or, when the learner vanished, by the service (``service/salvage.py``). The fields
    are the file's keys in the file's order (add, never rename); ``objects_not_stored`` only
    the learner knows, so the service's record leaves it out (``UNSET``)."""

    model_id: str
    name: str | None = None
    status: str = FAILED
    status_message: str | None = None
    error_code: str | None = None
    exit_code: int | None = None
    resource: str | None = None
    gpu_ids: list | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    timings: dict | None = None
    # what the results bucket holds of the run is not all it should: see status_message
    results_partial: bool = False
    objects_not_stored: list[str] | msgspec.UnsetType = msgspec.UNSET  # keys under <id>/


def training_status_json(record: TrainingStatus) -> dict:
    """The record as the JSON object stored (its keys in order, ``UNSET`` fields left out), for
    ``write_json_atomic``, which writes it as the file has always been written."""
    return msgspec.to_builtins(record)


def change(record, to_state: str, **fields):
    """``record`` (a ``Run`` or a ``Status``) in ``to_state``, with ``fields`` replaced: a new
    record; ``record`` itself is unchanged. Starting stamps ``started_at``, ending
    stamps ``finished_at`` (and a run's ``finished_epoch``), unless ``fields`` give them.
    ``to_state`` may be the record's own state (new values within it) unless the run ended.
    Raises ``IllegalChange`` for a transition ``TRANSITIONS`` does not allow."""
    state = record.status
    if to_state != state or state in FINAL_STATES:
        allowed = TRANSITIONS.get(state)
        if allowed is None or to_state not in TRANSITIONS:
            raise IllegalChange(f"{to_state!r} is not a state of a run (from {state!r})")
        if to_state not in allowed:
            name = getattr(record, "model_id", "the run")
            why = "it has ended" if not allowed else "a run never goes back"
            raise IllegalChange(f"{name} cannot go from {state} to {to_state}: {why}")
        started = state == PENDING and to_state not in FINAL_STATES  # ended before it started
        if started and "started_at" not in fields and record.started_at is None:
            fields["started_at"] = utc_now()
        if to_state in FINAL_STATES:
            if not fields.get("finished_at") and not record.finished_at:
                fields["finished_at"] = utc_now()
            if isinstance(record, Run) and "finished_epoch" not in fields:
                fields["finished_epoch"] = time.time()
    return msgspec.structs.replace(record, status=to_state, **fields)


def resumed(run: Run, message: str, attempt: int | None = None) -> Run:
    """A halted or failed ``run`` started again as its next attempt (``trainui resume``, SPEC
    §11), or as ``attempt`` (one that never began): the one way an ended run changes again,
    and only on a user's word. A run halted before it ever started is ``pending`` again, as
    it was: it has nothing to restart."""
    if run.status not in (FAILED, HALTED):
        name = run.model_id
        raise IllegalChange(f"{name} is {run.status}: only a halted or failed run resumes")
    never_started = run.started_at is None and not run.attempts
    return msgspec.structs.replace(
        run,
        status=PENDING if never_started else RESTARTING,
        attempt=run.attempt + 1 if attempt is None else attempt,
        status_message=message,
        error_code=None,
        exit_code=None,
        finished_at=None,
        finished_epoch=None,
        resumed_at=utc_now(),
    )


def with_metrics(run: Run, metrics: dict | None) -> Run:
    """``run`` with its metrics' summary replaced, in any state: the summary follows the run's
    points file, whose last points the service may read after it saw the run end."""
    return msgspec.structs.replace(run, metrics=metrics)


def update(record, **fields):
    """``record`` with ``fields`` replaced, in the state it is in (refused once it ended)."""
    return change(record, record.status, **fields)


# the learner's fields a run takes from its status record, when the record has them
_FOLLOWED = ("status_message", "error_code", "exit_code", "progress")


def follow(run: Run, status: Status) -> Run:
    """``run`` brought up to date with its learner's record: the same object when nothing
    changed. Its state follows the learner's (``change``'s rules apply); the times the learner
    stamped are taken; ``gpu_ids`` only when a cluster chose them (the run had none)."""
    fields: dict = {}
    for name in _FOLLOWED:
        value = getattr(status, name)
        if value != getattr(run, name) and (value is not None or name != "progress"):
            fields[name] = value
    for name in ("started_at", "finished_at"):
        value = getattr(status, name)
        if value and value != getattr(run, name):
            fields[name] = value
    if status.gpu_ids and not run.gpu_ids:
        fields["gpu_ids"] = status.gpu_ids
    if status.status == run.status and not fields:
        return run
    return change(run, status.status, **fields)


_encoder = msgspec.json.Encoder()
_status_decoder = msgspec.json.Decoder(Status)


def encode(record) -> bytes:
    """A record as JSON (SPEC's field names)."""
    return _encoder.encode(record)


def decode_status(data: bytes | str) -> Status | None:
    """A learner's status record from its JSON, or None when it is not one (fields it does not
    know are ignored: a newer learner's record)."""
    try:
        return _status_decoder.decode(data)
    except msgspec.DecodeError:
        return None


def read_status(path: str) -> Status | None:
    """The status record at ``path``, or None if missing or (being replaced) unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return decode_status(data)


def as_status(value: dict) -> Status | None:
    """A status record from an already-parsed JSON object, or None when it is not one."""
    try:
        return msgspec.convert(value, Status)
    except msgspec.ValidationError:
        return None
