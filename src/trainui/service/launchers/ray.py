"""Runs on a Ray cluster: each run becomes a Ray job whose entrypoint is trainui's learner.

The service talks to the cluster's dashboard over HTTP, Ray's Job REST API (``POST /api/jobs/``,
``GET /api/jobs/{id}``, ``POST /api/jobs/{id}/stop``, ``DELETE /api/jobs/{id}``), its package
store and its log API, so it needs no ``ray`` package (every request is in ``ray_api``). The
cluster shares no file system with the service: what the learner needs travels with the job,
and what it reports comes back in the job's log.

- **Shipped**: the run's ``learner.json`` (with a nonce for its status records and the absolute
  path of any ``local`` bucket), ``model.zip`` and ``manifest.yml``, in one zip uploaded as Ray
  does for a ``working_dir`` (``GET``/``PUT /api/packages/gcs/_ray_pkg_<sha1>.zip``); the job is
  ``python3 -m trainui.learner --ray`` (``TRAINUI_RAY_PYTHON`` names another Python: trainui
  must be installed in the workers' Python) with ``runtime_env: {working_dir: gcs://...,
  env_vars}``. Secrets are in the package only, never in the entrypoint, the metadata or the
  environment; the service deletes its own ``learner.json`` once the job is submitted.
- **On the node**: the learner copies the package into a private run folder under its own home
  (``$TRAINUI_HOME`` of the worker, else ``~/.cache/trainui``, with its dataset cache), stages,
  unpacks, runs the command and stores the results as it does locally, and writes its log and
  its status records (marker lines carrying the run's nonce) to stdout, Ray's job log.
- **Mirrored**: a thread per running job follows that log with Ray's streaming log endpoint
  (``GET /api/v0/logs/stream?node_id=...&submission_id=...&lines=-1``), appends the log lines to
  ``<home>/runs/<id>/training-log.txt`` and writes each status record as ``status.json``, so
  the rest of the service sees a Ray run as it sees a local one, and keeps its log once Ray has
  forgotten the job. How much of Ray's log was taken is counted (``ray-log.json``): after a
  reconnect or a restart of the service, that much is skipped, so no line is lost or repeated.
  The job asks for the run's GPUs (``entrypoint_num_gpus``); Ray chooses them and sets
  ``CUDA_VISIBLE_DEVICES``, which the learner keeps (``gpu_ids`` null) and reports.

Our queue stays ours: Ray keeps no durable FIFO, fails jobs that stay PENDING past its start
timeout and does not stop a PENDING job at once, so a run becomes a Ray job only once the
cluster has its GPUs free (``capacity``); a run halted while Ray still holds its job PENDING is
ended here, and Ray's stop, sent at once, ends its learner the moment Ray starts it.

Everything that talks to Ray happens in background threads (one for jobs and the cluster, one
per followed log), so the service's event loop never waits for the cluster: ``start`` queues the
submission, ``alive``, ``capacity`` and ``lost`` read what the threads last learnt. The run's
outcome comes from the learner's status records; Ray's job state is for liveness: a job that
ended while ``status.json`` is not final (once its log is read to the end), a job that
vanished, or a cluster that does not answer for ``lost_grace`` seconds fails the run, with the
reason in a sentence.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import math
import os
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
import zipfile

import httpx

from trainui.config import Settings
from trainui.core import lifecycle
from trainui.core.runs import (
    DEFINITION_FILE,
    FINAL_STATES,
    HALTED,
    LEARNER_FILE,
    LOG_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    METRICS_MARKER,
    RAY_LOG_STATE_FILE,
    STATUS_FILE,
    STATUS_MARKER,
    read_json,
    utc_now,
    write_json_atomic,
)
from trainui.service.launchers import Capacity, Launcher, ray_api
from trainui.service.launchers.local import LocalLauncher
from trainui.service.launchers.ray_api import (
    TIMEOUT,
    json_of,
    normalize_address,
    ray_error,
    ray_sentence,
)

HANDLE_PREFIX = "ray:"  # learner_start of a run executed as a Ray job: ray:<submission id>
JOB_POLL_INTERVAL = 0.5  # seconds between looks at the active jobs
JOB_POLL_RATE = 20.0  # at most this many job lookups a second (many active runs: less often)
CLUSTER_POLL_INTERVAL = 2.0  # seconds between looks at the cluster's resources
FRESH = 3.0  # a contact this recent means the cluster answers (at submit)
FIRST_CONTACT_WAIT = 5.0  # how long a submit waits for the first contact after start-up
DRAIN_IDLE = 15.0  # after a job ended: how long its log may give nothing before it is let go
STORE_ALLOWANCE = 300  # seconds Ray waits after its SIGTERM, beyond the halt grace, for storing
KEEP_ENDED = 600.0  # how long an ended job is remembered
DELETE_TRIES_FOR = 1200.0  # a deleted run's job: DELETE it once it ends, for this long
DELETES_PER_ROUND = 20
# seconds after a DELETE at which a deleted job is looked for again: Ray's job manager may write
# it back (FAILED, "Job supervisor actor died") when the job's supervisor exits after the DELETE
DELETE_RECHECKS = (1.0, 3.0, 8.0, 20.0)
REPORT_MARGIN = 1.0  # seconds of slack when comparing the cluster report's time with ours
DEFAULT_LOST_GRACE = 60.0
# following a job's log: Ray's agent looks at the file every LOG_INTERVAL s; a stream quiet for
# LOG_IDLE s is opened again (the learner says it is alive after 20 s of a quiet log)
LOG_INTERVAL = 0.1
LOG_IDLE = 60.0
LOG_TIMEOUT = httpx.Timeout(10.0, connect=3.0, read=LOG_IDLE)
LOG_RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds before a new try, after 0, 1, 2, ... failures
LOG_GIVE_UP = 10  # failed tries in a row after which a lost cluster's job is let go
LOG_SAVE_INTERVAL = 0.5  # seconds between writes of ray-log.json
HELD_LIMIT = 1 << 20  # a line held back as a possible status record is log text beyond this
PREAMBLE_LIMIT = 1 << 16  # what Ray writes before the learner starts: kept for a failure's log
DEFAULT_PYTHON = "python3"
# Ray's states, and ours for a job that Ray has not (or no longer) answered about
ACTIVE = frozenset({"submitting", "unknown", "PENDING", "RUNNING"})
_NOT_STARTED = frozenset({"submitting", "PENDING"})
_RAY_ENDED = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
# the environment the learner gets from the service (the rest is the Ray worker's); the home is
# the service's, and the learner has one of its own on its node
_SHIPPED = ("PYTHONPATH", "AWS_CA_BUNDLE")
_NOT_SHIPPED = ("TRAINUI_TOKEN", "TRAINUI_HOME")
_MARKER = STATUS_MARKER.encode()
_METRICS = METRICS_MARKER.encode()
_MARKERS = (_MARKER, _METRICS)  # they share their first bytes ("@@trainui-")


def _may_be_marker(head: bytes) -> bool:
    """Could a line that starts with ``head`` be a record (as far as ``head`` goes)?"""
    return any(marker.startswith(head[: len(marker)]) for marker in _MARKERS)


class _Unreachable(Exception):
    """The cluster did not answer: the rest of this round of requests is skipped."""


class _Job:
    """What the launcher knows of one run's Ray job."""

    __slots__ = (
        "sid", "run_dir", "gpus", "state", "message", "exit_code", "payload", "seen_running",
        "ended", "ended_mono", "stop_wanted", "stop_sent", "early_stop_sent", "neutralized",
        "delete_until", "deleted_at", "rechecks", "nonce", "node_id", "mirror", "mirroring",
        "files", "may_restart",
    )  # fmt: skip

    def __init__(self, sid: str, run_dir: str, gpus: int | None, state: str, payload=None):
        self.sid = sid
        self.run_dir = run_dir
        self.gpus = gpus  # None until known (a job adopted after a restart)
        self.state = state
        self.message = ""
        self.exit_code: int | None = None
        self.payload = payload  # what to submit, less the package (made by the thread)
        self.nonce: str | None = None  # of the learner's status records; None: in ray-log.json
        self.node_id: str | None = None  # the node its learner runs on (Ray's driver node)
        self.mirror: _Mirror | None = None  # follows its log into the run folder
        self.mirroring = False  # the mirror has not read the log to its end yet
        self.files = threading.Lock()  # status.json: written by the mirror and by a halt
        self.seen_running: float | None = None  # wall clock, first seen RUNNING
        self.ended: float | None = None  # wall clock, first seen ended
        self.ended_mono = 0.0
        self.stop_wanted = False
        self.stop_sent = False
        self.early_stop_sent = False  # Ray's stop of a PENDING job, acted on once it starts
        self.neutralized = False
        self.delete_until: float | None = None
        self.deleted_at = 0.0  # monotonic, of the last DELETE Ray took (state "deleted")
        self.rechecks = 0  # of DELETE_RECHECKS done since
        self.may_restart = False  # a failure starts the run again: its learner.json stays


class _Cluster:
    __slots__ = ("total", "largest", "used", "report_time")

    def __init__(self, total: int, largest: int, used: float | None, report_time: float | None):
        self.total = total
        self.largest = largest
        self.used = used  # GPUs in use by anyone, from the autoscaler's report (lags ~5 s)
        self.report_time = report_time

    def key(self) -> tuple:
        return (self.total, self.largest, self.used, self.report_time)


class RayLauncher(Launcher):
    """Runs as Ray jobs on the cluster whose dashboard answers at ``address``."""

    name = "ray"

    def __init__(
        self,
        address: str,
        runs_dir: str,
        halt_grace: float = 10.0,
        lost_grace: float = DEFAULT_LOST_GRACE,
        python: str | None = None,
        environ=None,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.address = normalize_address(address)
        self.where = f"the Ray cluster at {self.address}"
        self.runs_dir = runs_dir
        self.halt_grace = halt_grace
        self.lost_grace = lost_grace
        # the workers' Python, with trainui installed (found on their PATH by default)
        self.python = python or Settings(environ).ray_python or DEFAULT_PYTHON
        self.env_vars = _shipped_environment(environ)
        self.env_vars["RAY_JOB_STOP_WAIT_TIME_S"] = str(math.ceil(halt_grace) + STORE_ALLOWANCE)
        self._local = LocalLauncher()  # runs started before the service switched to Ray
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._contact = threading.Event()  # set once the cluster has answered or failed to
        self._closing = False
        self._cluster: _Cluster | None = None
        self._last_ok: float | None = None  # monotonic
        self._down_since: float | None = None  # monotonic, while the cluster does not answer
        self._down_error = ""
        self._upload_error = ""
        self.version = 0
        self._thread = threading.Thread(target=self._loop, name="trainui-ray", daemon=True)
        self._thread.start()

    # --- the manager's side (the service's event loop) ----------------------------------------

    def check(self) -> str | None:
        if self._last_ok is None and self._down_since is None:
            self._contact.wait(FIRST_CONTACT_WAIT)
        if self._down_since is not None:
            return (
                f"{self.where} does not answer ({self._down_error}); no run can be "
                "submitted until it does"
            )
        if self._last_ok is None:
            return f"{self.where} has not answered yet; try again in a moment"
        return None

    def refuse(self, gpus: int) -> str | None:
        """At submit: a sentence when a run needing ``gpus`` GPUs can never start here."""
        cluster = self._cluster
        if cluster is None or not cluster.total or gpus <= cluster.largest:
            return None
        if cluster.largest == cluster.total:
            return f"the run needs {_gpus(gpus)} but {self.where} has {cluster.total}"
        return (
            f"the run needs {_gpus(gpus)} on one node but the largest node of {self.where} "
            f"has {cluster.largest}"
        )

    def capacity(self) -> Capacity:
        cluster = self._cluster
        version = self.version
        if self._down_since is not None:
            problem = f"{self.where} does not answer ({self._down_error})"
            return Capacity(0, 0, 0, problem, version)
        if cluster is None:
            return Capacity(0, 0, 0, f"{self.where} has not answered yet", version)
        with self._lock:
            jobs = list(self._jobs.values())
        active = [job for job in jobs if job.state in ACTIVE]
        if any(job.gpus is None for job in active):
            problem = f"{self.where} has not yet told the state of earlier runs"
            return Capacity(0, 0, 0, problem, version)
        ours = sum(job.gpus for job in active)
        free = cluster.total - ours
        if cluster.used is not None and cluster.report_time is not None:
            # The report lags: jobs of ours placed after it are not in it yet, jobs of ours
            # that ended after it still are. What is left is what others hold.
            since = cluster.report_time - REPORT_MARGIN
            unplaced = sum(
                job.gpus for job in active if job.seen_running is None or job.seen_running > since
            )
            released = sum(
                job.gpus
                for job in jobs
                if job.state not in ACTIVE
                and job.seen_running is not None
                and job.seen_running <= since + 2 * REPORT_MARGIN
                and job.ended is not None
                and job.ended > since
            )
            free = min(free, cluster.total - math.ceil(cluster.used) + released - unplaced)
        return Capacity(cluster.total, max(0, free), cluster.largest, None, version)

    def start(self, run_dir: str, gpus: int) -> tuple[None, str]:
        """Queue the run's job for submission; its handle at once (the package and the POST
        follow, in the thread)."""
        model_id = os.path.basename(os.path.normpath(run_dir))
        # a run's next attempt (SPEC §11) is a job of its own: Ray keeps a submission ID once
        spec = read_json(os.path.join(run_dir, LEARNER_FILE)) or {}
        attempt = spec.get("attempt") if isinstance(spec.get("attempt"), int) else 1
        sid = model_id if attempt <= 1 else f"{model_id}-attempt-{attempt}"
        payload = {
            "entrypoint": f"exec {shlex.quote(self.python)} -m trainui.learner --ray",
            "submission_id": sid,
            "runtime_env": {"env_vars": dict(self.env_vars)},
            "metadata": {"trainui_run": model_id, "trainui_gpus": str(gpus)},
        }
        if gpus:
            payload["entrypoint_num_gpus"] = gpus
        else:  # a cluster without GPUs: runs of every size on a CPU
            payload["entrypoint_num_cpus"] = 1
        job = _Job(sid, run_dir, gpus, "submitting", payload)
        job.nonce = secrets.token_hex(16)
        restarts = spec.get("max_restarts") if isinstance(spec.get("max_restarts"), int) else 0
        last = spec.get("last_attempt") if isinstance(spec.get("last_attempt"), int) else None
        # its learner.json stays for the next attempt
        job.may_restart = attempt < (restarts + 1 if last is None else last)
        with self._lock:
            self._jobs[sid] = job
        self.version += 1
        self._wake.set()
        return None, HANDLE_PREFIX + sid

    def alive(self, pid: int | None, start: str | None) -> bool:
        sid = _sid(start)
        if sid is None:
            return self._local.alive(pid, start)
        job = self._job(sid)
        if job.state in ACTIVE:
            return self._down_for() <= self.lost_grace
        # ended: its log (and so its last status record) may still be on the way
        mirror = job.mirror
        return job.mirroring and mirror is not None and not mirror.stalled()

    def lost(self, pid: int | None, start: str | None, status: dict | None, run_dir: str) -> str:
        sid = _sid(start)
        if sid is None:
            return self._local.lost(pid, start, status, run_dir)
        job = self._job(sid)
        _kill_local_command(status, sid)  # a head on this machine: free the GPUs it holds
        if job.state in ACTIVE:
            job.stop_wanted = True  # should the cluster come back, the job must not go on
            down = self._down_for()
            return (
                f"lost contact with {self.where} for {down:.0f} s ({self._down_error}); "
                f"the run's Ray job {sid} may still be there"
            )
        if job.state == "refused":
            return f"{self.where} refused the run's job: {job.message}"
        if job.state == "gone":
            return (
                f"the run's Ray job {sid} no longer exists on {self.where} "
                "(the cluster was restarted or the job deleted)"
            )
        what = {
            "FAILED": "failed",
            "STOPPED": "was stopped",
            "SUCCEEDED": "ended",
            "cancelled": "was cancelled",
        }.get(job.state, "ended")
        reason = f"the run's Ray job {sid} {what} before the learner recorded an outcome"
        mirror = job.mirror
        if job.state == "FAILED" and mirror is not None and mirror.read_unheard:
            # Ray ran the entrypoint and the learner never said a word: it did not start
            return (
                f"the learner did not start on {self.where} (is trainui installed in the "
                f"workers' Python, {self.python}?): {job.message or what}; the run's log has "
                "what it printed"
            )
        if job.state == "FAILED" and job.message:
            return f"{reason}: {job.message}"
        if job.exit_code is not None:
            return f"{reason} (exit code {job.exit_code})"
        return reason

    def halt(self, pid: int | None, start: str | None) -> bool:
        """Stop the run's job (Ray sends SIGTERM to the learner, which stores what it has and
        ends); a job Ray has not started yet is ended here, since Ray cannot stop it."""
        sid = _sid(start)
        if sid is None:
            return self._local.halt(pid, start)
        job = self._job(sid)
        if job.state not in ACTIVE:
            return False
        job.stop_wanted = True
        self._wake.set()
        return True

    def forget(self, pid: int | None, start: str | None) -> None:
        """The run is deleted (or purged): delete its Ray job too, once Ray says it ended."""
        sid = _sid(start)
        if sid is None:
            return
        with self._lock:
            job = self._jobs.get(sid)
            if job is None:  # an old run's job: nothing to follow, only to delete
                job = _Job(sid, os.path.join(self.runs_dir, sid), 0, "forgotten")
                self._jobs[sid] = job
        if job.state in ACTIVE:
            job.stop_wanted = True
        job.delete_until = time.monotonic() + DELETE_TRIES_FOR
        self._wake.set()

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        for job in self._jobs_now():
            if job.mirror is not None:
                job.mirror.interrupt()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def _job(self, sid: str) -> _Job:
        """The job of a run, followed from now on if it was not yet (after a restart)."""
        with self._lock:
            job = self._jobs.get(sid)
            if job is None:
                job = _Job(sid, os.path.join(self.runs_dir, sid), None, "unknown")
                self._jobs[sid] = job
                self._wake.set()
        return job

    def _down_for(self) -> float:
        since = self._down_since
        return 0.0 if since is None else time.monotonic() - since

    # --- the thread that talks to Ray -----------------------------------------------------

    def _loop(self) -> None:
        next_cluster = next_follow = 0.0
        with httpx.Client(timeout=TIMEOUT) as client:
            while not self._closing:
                self._wake.clear()  # a wake-up from now on starts the next round at once
                try:
                    self._submit(client)
                    if time.monotonic() >= next_follow:
                        looked = self._follow(client)
                        next_follow = time.monotonic() + max(
                            JOB_POLL_INTERVAL, looked / JOB_POLL_RATE
                        )
                    self._stop(client)
                    if time.monotonic() >= next_cluster:
                        self._look_at_cluster(client)
                        next_cluster = time.monotonic() + CLUSTER_POLL_INTERVAL
                    self._delete(client)
                    self._drop_old()
                except _Unreachable:
                    pass
                except Exception as error:  # a surprise must not end the thread: say it
                    what = f"{type(error).__name__}: {error}"
                    print(f"trainui: ray launcher: {what}", file=sys.stderr, flush=True)
                self._contact.set()
                self._wake.wait(JOB_POLL_INTERVAL)

    def _request(self, client: httpx.Client, endpoint, *args) -> httpx.Response:
        """``endpoint`` (a function of ray_api) on the cluster's dashboard; a dashboard that
        does not answer ends this round of requests."""
        try:
            response = endpoint(client, self.address, *args)
        except ray_api.Unreachable as error:
            self._answered(str(error))
            raise _Unreachable from None
        self._answered(None)
        return response

    def _answered(self, error: str | None) -> None:
        now = time.monotonic()
        if error is None:
            self._last_ok = now
            if self._down_since is not None:
                self._down_since = None
                self.version += 1
        else:
            self._down_error = error
            if self._down_since is None:
                self._down_since = now
                self.version += 1
        self._contact.set()

    def _jobs_now(self) -> list[_Job]:
        with self._lock:
            return list(self._jobs.values())

    def _submit(self, client: httpx.Client) -> None:
        for job in self._jobs_now():
            if job.state != "submitting":
                continue
            if job.stop_wanted:  # halted before it was even sent
                self._neutralize(job)
                self._ended(job, "cancelled")
                continue
            if "working_dir" not in job.payload["runtime_env"]:
                try:
                    package = self._package(job)
                except (OSError, ValueError) as error:
                    job.message = f"the run's package could not be made: {_os_error(error)}"
                    self._ended(job, "refused")
                    continue
                uri = self._upload(client, package)
                if uri is None:
                    job.message = self._upload_error
                    self._ended(job, "refused")
                    continue
                job.payload["runtime_env"]["working_dir"] = uri
            response = self._request(client, ray_api.submit_job, job.payload)
            if response.status_code == 200:
                job.state = "PENDING"
            else:
                message = ray_error(response)
                if "already exists" in message:  # a retry of ours whose answer was lost
                    job.state = "PENDING"
                else:
                    job.message = message
                    self._ended(job, "refused")
            if job.state == "PENDING" and not job.may_restart:
                # the secrets are in the package now: no copy here (unless a next attempt
                # needs them: the service removes it when the run ends)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(job.run_dir, LEARNER_FILE))
            self.version += 1

    def _package(self, job: _Job) -> bytes:
        """The run's package: what the learner needs from the run folder, as one zip whose
        files lie at its top (Ray unpacks it as the job's working directory)."""
        spec = read_json(os.path.join(job.run_dir, LEARNER_FILE))
        if spec is None:
            raise ValueError(f"the run folder has no readable {LEARNER_FILE}")
        spec["status_nonce"] = job.nonce
        for key in ("data", "results"):
            store = spec.get(key)
            if isinstance(store, dict) and store.get("type") == "local":
                # a local bucket is a folder of this machine's: the learner, with a home of
                # its own, must find it where the service checked it (a shared path)
                connection = dict(store.get("connection") or {})
                path = connection.get("path") or os.path.join(spec.get("home") or "", "buckets")
                connection["path"] = os.path.abspath(os.path.expanduser(path))
                store["connection"] = connection
        spec.pop("home", None)  # the service's: the learner has one of its own
        # the mirror's state (the nonce first) before anything is sent: a service restarted
        # after the POST follows the job's log with it
        _save_log_state(job.run_dir, {"nonce": job.nonce, "raw": 0, "log": None})
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as package:
            _add(package, LEARNER_FILE, json.dumps(spec).encode(), 0o600, zipfile.ZIP_DEFLATED)
            for name in (DEFINITION_FILE, MANIFEST_FILE):
                with open(os.path.join(job.run_dir, name), "rb") as f:
                    data = f.read()
                method = zipfile.ZIP_STORED if name == DEFINITION_FILE else zipfile.ZIP_DEFLATED
                _add(package, name, data, 0o644, method)
        return buffer.getvalue()

    def _upload(self, client: httpx.Client, package: bytes) -> str | None:
        """Put the package into the cluster's package store, as Ray's JobSubmissionClient
        does (its name is its content's hash; the GET also pins it until a job uses it);
        its URI, or None with the reason in ``_upload_error``."""
        name = ray_api.package_name(package)
        if self._request(client, ray_api.check_package, name).status_code != 200:
            response = self._request(client, ray_api.put_package, name, package)
            if response.status_code != 200:
                self._upload_error = f"its package was refused: {ray_error(response)}"
                return None
        return f"gcs://{name}"

    def _follow(self, client: httpx.Client) -> int:
        """Look at every job Ray may still run; how many that was."""
        looked = 0
        for job in self._jobs_now():
            if job.state not in ("unknown", "PENDING", "RUNNING"):
                continue
            looked += 1
            response = self._request(client, ray_api.job_info, job.sid)
            if response.status_code == 404:
                self._ended(job, "gone")
                continue
            try:
                info = response.json()
            except ValueError:
                continue
            if response.status_code != 200 or not isinstance(info, dict):
                continue
            if job.gpus is None:
                job.gpus = _metadata_gpus(info)
            if isinstance(info.get("driver_node_id"), str) and info["driver_node_id"]:
                job.node_id = info["driver_node_id"]
            state = info.get("status")
            if state == job.state or not isinstance(state, str):
                continue
            if state == "RUNNING" or (state in ("SUCCEEDED", "FAILED", "STOPPED")):
                job.seen_running = job.seen_running or time.time()
                if job.node_id and job.mirror is None:  # its learner started: follow its log
                    self._start_mirror(job)
            if state in ("PENDING", "RUNNING"):
                job.state = state
                self.version += 1
            else:
                job.exit_code = info.get("driver_exit_code")
                job.message = ray_sentence(info.get("message") or "")
                self._ended(job, state)
        return looked

    def _stop(self, client: httpx.Client) -> None:
        for job in self._jobs_now():
            if not job.stop_wanted or job.stop_sent:
                continue
            if job.state == "PENDING":
                # The run ends here. Ray's stop does not end a PENDING job: its supervisor
                # stops the learner the moment it starts it (before it gets to the command),
                # and the stop is sent again once the job is RUNNING.
                self._neutralize(job)
                if not job.early_stop_sent:
                    response = self._request(client, ray_api.stop_job, job.sid)
                    body = json_of(response)
                    job.early_stop_sent = isinstance(body, dict) and body.get("stopped") is True
            elif job.state == "RUNNING":
                self._request(client, ray_api.stop_job, job.sid)
                job.stop_sent = True  # Ray answered: a refusal would be the same next time

    def _delete(self, client: httpx.Client) -> None:
        """The Ray jobs of deleted runs, once they have ended (Ray refuses before); a few a
        round, so that a purge of many old runs never holds up the rest.

        A DELETE Ray took is not the end: Ray's job manager watches a job's supervisor actor,
        and when that actor exits after the DELETE (it does so just after the job ended), the
        manager finds no record of the job and writes one again, FAILED ("Job supervisor actor
        died"). So a deleted job is looked for again ``DELETE_RECHECKS`` after the DELETE, and
        deleted again if it is back. Such a job holds nothing on the cluster: it never counted
        in ``capacity`` (which knows only the jobs followed and the GPUs Ray reports in use)."""
        now = time.monotonic()
        tries = 0
        for job in self._jobs_now():
            if job.delete_until is None or tries >= DELETES_PER_ROUND:
                continue
            if now <= job.delete_until:
                if job.state in ACTIVE:
                    continue  # again next round
                if job.state == "deleted":
                    if now - job.deleted_at < DELETE_RECHECKS[job.rechecks]:
                        continue
                    tries += 1
                    code = self._request(client, ray_api.job_info, job.sid).status_code
                    if code == 200:  # back: deleted again, and looked for again after
                        self._delete_job(client, job)  # (refused: again next round)
                        continue
                    if code != 404:
                        continue  # not an answer: again next round
                    job.rechecks += 1
                    if job.rechecks < len(DELETE_RECHECKS):
                        continue
                    # not back at the last look: let go of it
                elif job.state not in ("refused", "cancelled", "gone"):
                    tries += 1
                    self._delete_job(client, job)
                    continue
            with self._lock:
                self._jobs.pop(job.sid, None)

    def _delete_job(self, client: httpx.Client, job: _Job) -> bool:
        """DELETE the job; whether Ray took it (it is gone, for now: see ``_delete``)."""
        response = self._request(client, ray_api.delete_job, job.sid)
        if response.status_code not in (200, 404):
            return False
        job.state = "deleted"
        job.deleted_at = time.monotonic()
        job.rechecks = 0
        return True

    def _look_at_cluster(self, client: httpx.Client) -> None:
        gpus = ray_api.node_gpus(json_of(self._request(client, ray_api.list_nodes)))
        if gpus is None:
            return  # not an answer we understand: keep what we knew
        status = json_of(self._request(client, ray_api.cluster_status))
        used, report_time = ray_api.gpus_in_use(status)
        cluster = _Cluster(sum(gpus), max(gpus, default=0), used, report_time)
        if self._cluster is None or cluster.key() != self._cluster.key():
            self._cluster = cluster
            self.version += 1

    def _drop_old(self) -> None:
        now = time.monotonic()
        with self._lock:
            for sid, job in list(self._jobs.items()):
                if (
                    job.state not in ACTIVE
                    and job.delete_until is None
                    and not job.mirroring
                    and now - job.ended_mono > KEEP_ENDED
                ):
                    del self._jobs[sid]

    def _ended(self, job: _Job, state: str) -> None:
        job.state = state
        job.ended = time.time()
        job.ended_mono = time.monotonic()
        self.version += 1
        if job.mirror is not None:
            job.mirror.interrupt()  # its stream would wait for more: read the rest at once

    def _start_mirror(self, job: _Job) -> None:
        if not os.path.isdir(job.run_dir):
            return
        job.mirror = _Mirror(self, job)
        job.mirroring = True
        threading.Thread(
            target=job.mirror.run, name=f"trainui-ray-log-{job.sid}", daemon=True
        ).start()

    def _neutralize(self, job: _Job) -> None:
        """End a halted run whose learner has not started: its status says halted (the mirror
        never replaces a final status), and Ray's stop ends its learner should it start."""
        if job.neutralized:
            return
        job.neutralized = True
        status_path = os.path.join(job.run_dir, STATUS_FILE)
        with job.files:
            current = read_json(status_path)
            if current is not None:  # the learner has started: Ray's stop will reach it
                job.neutralized = current.get("status") in FINAL_STATES
                return
            now = utc_now()
            self._write_halted(status_path, now)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(job.run_dir, LEARNER_FILE))

    @staticmethod
    def _write_halted(status_path: str, now: str) -> None:
        status = lifecycle.change(
            lifecycle.Status(progress=lifecycle.no_progress()),
            HALTED,
            status_message="halted before it started on the Ray cluster",
            finished_at=now,
            updated_at=now,
        )
        with contextlib.suppress(OSError):
            write_json_atomic(status_path, lifecycle.encode(status))


class _Mirror:
    """Follows one run's Ray job log into its run folder, in a thread of its own.

    Ray's log of the job is what Ray writes before the entrypoint starts, then the learner's
    stdout: its log (the command's output and its own lines) with status records between the
    lines. Log lines are appended to ``training-log.txt``; a record with the run's nonce is
    written as ``status.json`` (never over a final one), a metrics record's line appended to
    ``metrics.jsonl``; a line that looks like a record but has another nonce is a line of the
    log like any other. Ray's lines before the learner's
    first record are left out, unless the job ends without any (they then say why).

    ``raw`` counts the bytes of Ray's log taken for good (appended, or known to be a record),
    ``log`` and ``metrics`` the sizes of ``training-log.txt`` and ``metrics.jsonl`` at that
    point; all go to ``ray-log.json`` now and then. A new connection, in this service or the
    next one, skips ``raw`` bytes of what Ray sends (it sends from the start) after cutting the
    local files back to those sizes (what was cut comes again, the same bytes: the service's
    metrics index, which waits for a file that got shorter, reads each point once)."""

    def __init__(self, launcher: RayLauncher, job: _Job) -> None:
        self.launcher = launcher
        self.job = job
        self.log_path = os.path.join(job.run_dir, LOG_FILE)
        self.status_path = os.path.join(job.run_dir, STATUS_FILE)
        self.metrics_path = os.path.join(job.run_dir, METRICS_FILE)
        self.metrics = 0  # the size of metrics.jsonl that goes with ``raw``
        self.nonce: bytes | None = job.nonce.encode() if job.nonce else None
        self.raw = 0  # bytes of Ray's log taken for good
        self.log = 0  # the size of training-log.txt that goes with it
        self.mid_line = False  # what was taken ends inside a line of the log
        self.started = False  # a record of the learner's was seen
        self.final = False  # its final record was seen
        self.read_unheard = False  # the ended job's log was read to its end: no record in it
        self.gone = False  # the run folder is gone (the run was deleted)
        self.pos = 0  # offset in Ray's log of what was received
        self.held = b""  # a line begun that may be a record: held until its end
        self.preamble = bytearray()  # Ray's lines before the first record
        self._saved = 0.0
        self._response: httpx.Response | None = None
        self.progress = time.monotonic()  # when something last came from Ray's log

    # --- the thread -----------------------------------------------------------------------

    def run(self) -> None:
        job = self.job
        failures = 0
        try:
            self._load()
            with httpx.Client(timeout=LOG_TIMEOUT) as client:
                while not self.launcher._closing and not self.gone and not self.final:
                    ended = job.state not in ACTIVE
                    try:
                        complete = self._fetch(client, follow=not ended)
                        failures = 0
                    except (httpx.HTTPError, _LogUnavailable):
                        complete = False
                        failures += 1
                    if self.final or self.gone:
                        break
                    if ended:
                        if complete:  # the whole log, and no final record in it
                            self._flush_unmarked()
                            break
                        if job.state not in _RAY_ENDED:
                            break  # refused, gone: Ray has no log of it
                        if self.stalled():
                            break  # the log cannot be read (its node is gone, say)
                    elif job.state not in ACTIVE:
                        continue  # it ended meanwhile: read the rest now
                    elif failures >= LOG_GIVE_UP and self.launcher._down_for() > (
                        self.launcher.lost_grace
                    ):
                        break  # the cluster is lost, and the run with it
                    time.sleep(LOG_RETRY[min(failures, len(LOG_RETRY) - 1)])
        except Exception as error:  # a surprise must not pass unsaid
            what = f"{type(error).__name__}: {error}"
            print(f"trainui: ray log of {job.sid}: {what}", file=sys.stderr, flush=True)
        finally:
            self._save(force=True)
            job.mirroring = False

    def stalled(self) -> bool:
        """The job ended and nothing came from its log for DRAIN_IDLE seconds."""
        return time.monotonic() - max(self.job.ended_mono, self.progress) > DRAIN_IDLE

    def interrupt(self) -> None:
        """End the stream now (from another thread): its job ended, or the service stops."""
        response = self._response
        if response is None:
            return
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _fetch(self, client: httpx.Client, follow: bool) -> bool:
        """Read Ray's log from the start, skipping what was taken: while the job runs, as a
        stream that follows it (until it breaks or is interrupted), else to its current end.
        True when the log was read to its end (an ended job's)."""
        job = self.job
        if not job.node_id:
            raise _LogUnavailable("no node yet")
        self.held = b""
        if not self.started:
            self.preamble.clear()
        self.pos = skip = self.raw
        log = ray_api.job_log(
            client, self.launcher.address, job.node_id, job.sid, follow, LOG_INTERVAL
        )
        with log as response:
            if response.status_code != 200:
                response.read()
                raise _LogUnavailable(ray_error(response))
            self._response = response
            try:
                if follow and job.state not in ACTIVE:
                    return False  # it ended meanwhile: read it to the end instead
                for chunk in response.iter_bytes():
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk = chunk[skip:]
                        skip = 0
                    self._take(chunk)
                    if self.final or self.gone:
                        return True
            finally:
                self._response = None
        return not follow

    # --- taking what Ray sent ---------------------------------------------------------------

    def _take(self, data: bytes) -> None:
        self.progress = time.monotonic()
        buf = self.held + data if self.held else data
        self.pos += len(data)
        out = bytearray()
        points = bytearray()
        status = None
        i, n = 0, len(buf)
        while i < n:
            if self.mid_line:  # inside a line of the log: through its end
                j = buf.find(b"\n", i)
                if j < 0:
                    out += buf[i:]
                    i = n
                    break
                out += buf[i : j + 1]
                i = j + 1
                self.mid_line = False
                continue
            if self.started and not _may_be_marker(buf[i : i + len(_MARKER)]):
                # a line of the log: take it and every line after it up to the next one
                # that may be a record, or to the last whole line (the common case, at once)
                k = buf.find(b"\n" + _MARKER[:1], i)
                last = k if k >= 0 else buf.rfind(b"\n", i)
                if last >= 0:
                    out += buf[i : last + 1]
                    i = last + 1
                    continue
            j = buf.find(b"\n", i)
            end = n if j < 0 else j
            if buf.startswith(_METRICS, i) and j >= 0:
                body = self._body(buf[i + len(_METRICS) : end])
                if body is not None:  # a line of the learner's metrics.jsonl
                    points += body + b"\n"
                    i = j + 1
                    continue
            if buf.startswith(_MARKERS, i) or (j < 0 and _may_be_marker(buf[i:end])):
                if j < 0 and n - i <= HELD_LIMIT:
                    break  # maybe a record: wait for the end of its line
                record = self._record(buf[i:end]) if j >= 0 else None
                if record is not None:
                    if not self.started:
                        self.started = True
                        self.preamble.clear()
                    i = j + 1
                    if "status" in record:
                        status = record
                        if record.get("status") in FINAL_STATES:
                            self.final = True
                            break  # the learner's last word
                    continue
            if not self.started:  # Ray's own lines, before the learner's first record
                if j < 0:
                    break
                self.preamble += buf[i : j + 1]
                del self.preamble[:-PREAMBLE_LIMIT]
                i = j + 1
                continue
            if j < 0:
                out += buf[i:]
                self.mid_line = True
                i = n
                break
            out += buf[i : j + 1]
            i = j + 1
        self.held = b"" if self.final else bytes(buf[i:])
        if out:
            self._append(bytes(out))
        if points:  # before the status: the final one comes after the last points
            self._append_points(bytes(points))
        if status is not None:
            self._status(status)
        self._commit()

    def _body(self, rest: bytes) -> bytes | None:
        """What a record says after its marker, if it carries the run's nonce, else None."""
        nonce, sep, body = rest.partition(b" ")
        if not sep or self.nonce is None or not hmac.compare_digest(nonce, self.nonce):
            return None
        return body

    def _record(self, line: bytes) -> dict | None:
        """The status record on this line, if it carries the run's nonce, else None."""
        if not line.startswith(_MARKER):
            return None
        body = self._body(line[len(_MARKER) :])
        if body is None:
            return None
        try:
            record = json.loads(body)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def _flush_unmarked(self) -> None:
        """The job ended and its log was read to the end without the learner's last record:
        what is left is log text (and, if the learner never started, Ray's lines say why)."""
        rest = (bytes(self.preamble) if not self.started else b"") + self.held
        self.read_unheard = not self.started
        self.started = True
        self.preamble.clear()
        self.held = b""
        if rest:
            self._append(rest)
        self._commit()

    def _forgotten(self) -> bool:
        """The run was deleted: its folder is going, nothing more is written there."""
        if self.job.delete_until is not None:
            self.gone = True
        return self.gone

    def _append(self, data: bytes) -> None:
        if self._write(self.log_path, data, os.O_WRONLY | os.O_APPEND):
            self.log += len(data)

    def _append_points(self, data: bytes) -> None:
        if self._write(self.metrics_path, data, os.O_WRONLY | os.O_APPEND | os.O_CREAT):
            self.metrics += len(data)

    def _write(self, path: str, data: bytes, flags: int) -> bool:
        """Append ``data`` to the run folder's ``path``; False if the run was forgotten or its
        folder is gone."""
        if self._forgotten():
            return False
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:  # the run folder is gone
            self.gone = True
            return False
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return True

    def _status(self, record: dict) -> None:
        if self._forgotten():
            return
        with self.job.files:
            current = read_json(self.status_path)
            if current is not None and current.get("status") in FINAL_STATES:
                return  # ended here already (halted before it started, lost, ...)
            try:
                write_json_atomic(self.status_path, record)
            except FileNotFoundError:
                self.gone = True

    # --- ray-log.json ---------------------------------------------------------------------

    def _commit(self) -> None:
        if self.started:
            self.raw = self.pos - len(self.held)
        self._save()

    def _load(self) -> None:
        state = read_json(os.path.join(self.job.run_dir, RAY_LOG_STATE_FILE)) or {}
        if self.nonce is None and isinstance(state.get("nonce"), str):
            self.nonce = state["nonce"].encode()
        try:
            size = os.path.getsize(self.log_path)
        except FileNotFoundError:
            self.gone = True
            return
        log = state.get("log")
        if isinstance(log, int) and isinstance(state.get("raw"), int) and 0 <= log <= size:
            self.raw, self.log = state["raw"], log
            self.mid_line = bool(state.get("mid_line"))
            self.started = bool(state.get("started"))
            if log < size:  # appended after the last save, by a service that ended: again
                os.truncate(self.log_path, log)
            metrics = state.get("metrics")
            self.metrics = metrics if isinstance(metrics, int) and metrics >= 0 else 0
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(self.metrics_path) > self.metrics:  # the same: again
                    os.truncate(self.metrics_path, self.metrics)
        else:
            self.log = size
            with contextlib.suppress(FileNotFoundError):
                self.metrics = os.path.getsize(self.metrics_path)

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._forgotten() or (not force and now - self._saved < LOG_SAVE_INTERVAL):
            return
        self._saved = now
        state = {
            "nonce": self.nonce.decode() if self.nonce else None,
            "raw": self.raw,
            "log": self.log,
            "mid_line": self.mid_line and not self.held,
            "started": self.started,
            "metrics": self.metrics,
        }
        try:
            _save_log_state(self.job.run_dir, state)
        except FileNotFoundError:
            self.gone = True


class _LogUnavailable(Exception):
    """Ray did not give the job's log this time (not there yet, or refused)."""


# --- helpers ------------------------------------------------------------------------------------


def _add(package: zipfile.ZipFile, name: str, data: bytes, mode: int, method: int) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # the same run, the same zip
    info.external_attr = (0o100000 | mode) << 16  # a regular file; Ray keeps the mode
    info.compress_type = method
    package.writestr(info, data)


def _save_log_state(run_dir: str, state: dict) -> None:
    write_json_atomic(os.path.join(run_dir, RAY_LOG_STATE_FILE), state, mode=0o600)


def _os_error(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror} ({error.filename})" if error.filename else error.strerror
    return str(error)


def _shipped_environment(environ) -> dict[str, str]:
    env = {
        name: value
        for name, value in environ.items()
        if (name.startswith("TRAINUI_") and name not in _NOT_SHIPPED) or name in _SHIPPED
    }
    return env


def _metadata_gpus(info: dict) -> int:
    metadata = info.get("metadata") or {}
    try:
        return int(metadata.get("trainui_gpus", 0))
    except (TypeError, ValueError):
        return 0


def _sid(start: str | None) -> str | None:
    if start and start.startswith(HANDLE_PREFIX):
        return start[len(HANDLE_PREFIX) :]
    return None


def _gpus(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def _kill_local_command(status: dict | None, sid: str) -> None:
    """Kill the training command of a lost run if it runs on this machine (its process group
    leader has TRAINING_ID=<run> in its environment: a number from another node never does)."""
    group = (status or {}).get("command_pgid")
    if not isinstance(group, int) or group <= 1:
        return
    try:
        with open(f"/proc/{group}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return
    if f"TRAINING_ID={sid}".encode() in environ:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
