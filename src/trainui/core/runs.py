"""Runs: their IDs, states, error codes and the run folder contract between service and learner.

One definition of each, used by the service, the learner, the CLI and the TUI.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import json
import os
import string
import time

# pending → downloading → running → storing → completed | failed | halted  (SPEC §3)
PENDING, DOWNLOADING, RUNNING, STORING = "pending", "downloading", "running", "storing"
COMPLETED, FAILED, HALTED = "completed", "failed", "halted"
# SPEC §11: a failed run waiting to start its next attempt (its back-off, then the queue)
RESTARTING = "restarting"
STATES = (PENDING, RESTARTING, DOWNLOADING, RUNNING, STORING, COMPLETED, FAILED, HALTED)
ACTIVE_STATES = frozenset({DOWNLOADING, RUNNING, STORING})  # a learner is working on it
FINAL_STATES = frozenset({COMPLETED, FAILED, HALTED})
# an experiment's, from its runs' (SPEC §9)
EXPERIMENT_STATES = (PENDING, RUNNING, COMPLETED, FAILED, HALTED)

ERROR_CODES = {
    "C101": "invalid manifest",
    "C102": "invalid model definition zip",
    "C103": "object-store credentials or bucket refused",
    "C104": "framework not supported here",
    "C201": "training command exited non-zero",
    "S100": "resources unavailable",
    # not in the seed: a learner that could not do its job (crashed, killed, cannot start)
    "S300": "the learner failed",
    "S301": "model definition could not be unpacked",
    "S302": "training data could not be loaded",
    "S303": "results could not be stored",
    "S304": "the framework's runtime could not be prepared",
}


def placement(run: dict, cpu_mode: bool | None = None) -> str:
    """Where a run runs, ran or will run: ``GPU 0``, ``GPU 0,1``, ``CPU``; waiting on a machine
    with GPUs: ``1 GPU`` (how many it waits for); ``""`` when not known or it never started.

    ``cpu_mode``: the service runs on the CPU (``GET /v3/health``), None when not known. A run
    that started with no GPU ran on the CPU, except while a cluster has yet to report the GPUs
    it chose."""
    gpu_ids = run.get("gpu_ids") or []
    if gpu_ids:
        return "GPU " + ",".join(str(i) for i in gpu_ids)
    status = run.get("status")
    if run.get("started_at") or status in ACTIVE_STATES:
        if cpu_mode is False and status in ACTIVE_STATES:
            return "GPU"  # chosen by a cluster, reported by the learner in a moment
        return "CPU"
    if status == PENDING:
        if cpu_mode:
            return "CPU"
        if cpu_mode is False:
            gpus = run.get("gpus") or 1
            return f"{gpus} GPU" + ("s" if gpus != 1 else "")
    return ""


def resource_placement(run: dict, cpu_mode: bool | None = None) -> str:
    """The resource and where it runs: ``small · CPU``, ``medium · GPU 0,1``, ``small``."""
    resource = run.get("resource") or "-"
    where = placement(run, cpu_mode)
    return f"{resource} · {where}" if where else resource


ID_PREFIX = "training-"
_ID_ALPHABET = string.ascii_letters + string.digits


def new_run_id() -> str:
    """``training-`` + 9 characters of [A-Za-z0-9], like ``training-DOl4q2LkR``."""
    return new_id(ID_PREFIX)


def is_run_id(text: str) -> bool:
    return is_id(text, ID_PREFIX)


def new_id(prefix: str) -> str:
    """``prefix`` + 9 random characters of [A-Za-z0-9] (runs', experiments' IDs)."""
    import secrets  # here, not at the top: it costs ~7 ms of every start-up that never needs it

    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))


def is_id(text: str, prefix: str) -> bool:
    suffix = text[len(prefix) :]
    return text.startswith(prefix) and len(suffix) == 9 and all(c in _ID_ALPHABET for c in suffix)


def last_attempt(attempt: int, max_restarts: int, attempts) -> int:
    """The attempt a run may reach by its restarts (SPEC §11: ``attempt 2 of 4``): its
    ``max_restarts`` count from its first attempt, or from the attempt its last ``trainui
    resume`` started (a resume is the user's word, not a failure: it does not spend them).
    Never less than ``attempt`` (resumed past its restarts: ``2 of 2``)."""
    resumed = [a["attempt"] + 1 for a in attempts or () if a.get("resumed_at")]
    return max(max(resumed, default=1) + max_restarts, attempt)


def parse_time(stamp: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 UTC stamp (``2026-11-27T05:14:03.123Z``)."""
    if not stamp or len(stamp) < 19:
        return None
    try:
        seconds = calendar.timegm(
            (
                int(stamp[0:4]),
                int(stamp[5:7]),
                int(stamp[8:10]),
                int(stamp[11:13]),
                int(stamp[14:16]),
                int(stamp[17:19]),
                0,
                0,
                0,
            )
        )
    except ValueError:
        return None
    if len(stamp) > 20 and stamp[19] == ".":
        digits = stamp[20:].rstrip("Z")
        if digits.isdigit():
            seconds += int(digits) / 10 ** len(digits)
    return float(seconds)


def utc_now() -> str:
    """Now as RFC 3339 UTC with milliseconds: ``2017-10-26T11:16:51.123Z``."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


# --- the run folder: <home>/runs/<id>/ ----------------------------------------------------------
# Written by the service before the learner starts:
LEARNER_FILE = "learner.json"  # what the learner needs, secrets included (mode 0600)
# the results store {type, bucket, connection}, secrets included (mode 0600): kept while the
# run is in the history, so that the service can fetch what the run stored
RESULTS_FILE = "results.json"
DEFINITION_FILE = "model.zip"  # the model definition as submitted
MANIFEST_FILE = "manifest.yml"  # the manifest with secrets removed
# why the service halted the run (a user's request, an experiment's median rule): written
# before the learner is told to halt, said as the run's outcome; a halt signal without it came
# from outside trainui
HALT_REASON_FILE = "halt-reason.txt"
HALTED_BY_REQUEST = "halted by request"
# Written by the learner:
STATUS_FILE = "status.json"  # the run's state, replaced atomically at every change
LOG_FILE = "training-log.txt"  # learner messages and the command's merged stdout/stderr
LEARNER_ERRORS_FILE = "learner-errors.txt"  # the learner's own stderr, if it ever crashes
CONTAINER_FILE = "container.json"  # a container run's runtime command and container name
KEPT_RESULTS = "results-not-stored"  # RESULT_DIR, kept when the results could not be stored
KEPT_CHECKPOINTS = "checkpoints-not-copied"  # CHECKPOINT_DIR, kept when the bucket refused it
PREPARING = "preparing"  # the learner's phase while a framework's image is pulled (SPEC §10)
STOPPED_EARLY = "stopped early: "  # how the median rule's halt message begins (SPEC §9)


def stopped_early(status_message: str | None) -> bool:
    """Whether a halted run's message is the median rule's."""
    return bool(status_message) and status_message.startswith(STOPPED_EARLY)


LOG_CUT = "trainui: the log is cut here"  # the learner's line where the log's cap cut it
METRICS_FILE = "metrics.jsonl"  # the run's metric points, one JSON object a line (SPEC §8)
NAME_LONGEST = 256  # a run's or an experiment's name: the most characters it may have
RECORD_METRICS = 100  # metrics in a run's record (GET /v3/models): the first ones written
WORK_DIR = "work"  # DATA_DIR, MODEL_DIR, RESULT_DIR, LOG_DIR, CHECKPOINT_DIR; removed at the end
# Written by the service for a run on a Ray cluster, whose learner has a run folder of its own
# on its node and reports through its job's log (status records as marker lines):
RAY_LOG_STATE_FILE = "ray-log.json"  # the records' nonce and how much of Ray's log was mirrored
STATUS_MARKER = "@@trainui-status:"  # a status record: <marker><nonce> <status json>
# a line of the run's metrics.jsonl, relayed: <marker><nonce> <the line> (the mirror appends
# the line to the service's <run_dir>/metrics.jsonl)
METRICS_MARKER = "@@trainui-metrics:"
# learner.json's log_max_bytes (TRAINUI_LOG_MAX_BYTES) when it does not say: the log keeps this
# much of the command's output
DEFAULT_LOG_MAX_BYTES = 1 << 30


def within(path: str, top: str) -> bool:
    """Is ``path`` (normalised) ``top`` or under it?"""
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def write_json_atomic(path: str, data: dict | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (an object, or its JSON already encoded) so that readers
    never see a half-written file. When it fails (a full disk), ``path`` is left as it was and
    no temporary file is left behind."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else json.dumps(data).encode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# a write that failed for want of space: the file system is full, or the user's quota
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(error: BaseException) -> bool:
    """Did ``error`` happen because the file system (or the quota) is full?"""
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


def disk_full_message(error: OSError, path: str | None = None) -> str:
    """``no space left on device writing /home/.../training-log.txt`` (or ``disk quota
    exceeded writing ...``): what a failed write says to the user."""
    reason = os.strerror(error.errno or errno.ENOSPC)
    reason = reason[:1].lower() + reason[1:]
    where = path or error.filename
    return f"{reason} writing {os.fsdecode(where)}" if where else reason


def read_json(path: str) -> dict | None:
    """The JSON object at ``path``, or None if it is missing or (being replaced) unreadable."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def halt_reason(run_dir: str) -> str | None:
    """The reason trainui wrote for halting the run in ``run_dir``: None when it wrote none
    (it did not halt it), ``""`` when it cannot be read."""
    try:
        with open(os.path.join(run_dir, HALT_REASON_FILE), "rb") as f:
            return f.read(1000).decode(errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError:
        return ""


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``signal 99`` for a number that names no signal."""
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def outside_halt(signal_name: str | None = None) -> str:
    """Why a run failed whose learner was sent a halt signal (``signal_name``; None: on a
    cluster, unknown) by something other than trainui."""
    if signal_name is None:
        by, causes = "", "a `kill`, the machine shutting down, the cluster stopping its job"
    else:
        by, causes = f" by {signal_name}", "a `kill`, the machine shutting down"
    return f"the learner was stopped{by} from outside trainui ({causes}), not by `trainui halt`"
