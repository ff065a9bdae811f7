"""The service's run manager: submit, schedule, launch, follow learners, halt, delete, purge.

All state lives in memory (``self.runs``), is written through to the run store, and changes
are published as events. Everything here runs on the service's event loop; the work that
could block for long (learners, object stores) happens in other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import getpass
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence

import msgspec

from trainui import frameworks
from trainui.config import Settings
from trainui.core import definition, lifecycle
from trainui.core.experiments import new_experiment_id
from trainui.core.lifecycle import PUBLIC, IllegalChange, Run
from trainui.core.manifest import Manifest, ManifestReport, Problem, parse_manifest_bytes
from trainui.core.runs import (
    ACTIVE_STATES,
    COMPLETED,
    DEFINITION_FILE,
    DOWNLOADING,
    FAILED,
    FINAL_STATES,
    HALT_REASON_FILE,
    HALTED,
    HALTED_BY_REQUEST,
    LEARNER_FILE,
    LOG_FILE,
    MANIFEST_FILE,
    PENDING,
    RAY_LOG_STATE_FILE,
    RESTARTING,
    RESULTS_FILE,
    RUNNING,
    STATUS_FILE,
    disk_full_message,
    halt_reason,
    last_attempt,
    new_run_id,
    outside_halt,
    parse_time,
    read_json,
    stopped_early,
    utc_now,
    within,
    write_json_atomic,
)
from trainui.core.shared import shared
from trainui.core.urls import mask_urls
from trainui.service import notify
from trainui.service.auth import Tokens, User
from trainui.service.experiments import ExperimentRecord, median_stop, stop_reason
from trainui.service.experiments import describe as describe_experiment
from trainui.service.experiments import described as experiment_described
from trainui.service.launchers import Capacity, Launcher, mark_attempt
from trainui.service.launchers.local import LocalLauncher
from trainui.service.metrics import MetricsIndex, MetricsKeeper
from trainui.service.scheduler import Plan, Scheduler, Waiting
from trainui.service.store import RunStore, disk_full, public
from trainui.storage import StoreError, check_access

WATCH_INTERVAL = 0.1  # how often active runs' status files are looked at (a stat each)
LIVENESS_INTERVAL = 1.0  # how often learners are checked to be alive
PURGE_INTERVAL = 3600.0
CHECK_FRESH = 10.0  # seconds a bucket found reachable with given credentials stays so at submit
NOTIFY_WAIT = 5.0  # seconds a stopping service waits for the hooks (what is left is kept)
SALVAGE_WAIT = 30.0  # seconds a stopping service waits for what vanished learners left to be stored
# a submission is refused (507) while the home's file system has less than this free: a run
# needs some space for its folder, its status and its log
MIN_FREE_BYTES = 1 << 20
DISK_RETRY = 5.0  # seconds between tries of what a full disk held back (saving, starting)
# a running run's new metric points: its record and a ``metrics`` event at most this often
METRICS_INTERVAL = 1.0
# what restarts a run that has restarts left (SPEC §11): its command failed, its learner was
# lost or failed (a node, a GPU); never a halt, nor a refusal of its manifest, data or code
RESTARTABLE = frozenset({"C201", "S300"})
MAX_BACKOFF = 300.0  # seconds: the back-off doubles per attempt up to this


def json_text(data) -> str:
    """``data`` as JSON text, a number that is not finite as ``null``: JSON has none (``inf``
    in a run recorded by an older trainui made ``Infinity``, which no JSON reader takes)."""
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError:
        return msgspec.json.encode(data).decode()


class Refusal(Exception):
    """A request the service refuses: HTTP status, error code and the problems in words."""

    def __init__(self, status: int, message: str, code: str | None = None, errors=None) -> None:
        # what a store or a library says may hold a URL with a password in it: never shown
        message = mask_urls(message)
        super().__init__(message)
        self.status = status
        self.code = code
        self.errors = [
            {**e, "message": mask_urls(e["message"])} if "message" in e else e
            for e in errors or [{"message": message}]
        ]

    def body(self) -> dict:
        return {"error_code": self.code, "message": str(self), "errors": self.errors}


class EventHub:
    """Run changes for live UIs: a sequence number per event, the last ones kept for resuming
    (``Last-Event-ID``), and a bounded queue per subscriber (a slow one is dropped, never
    buffered without end)."""

    def __init__(self, keep: int = 1000, queue_size: int = 1000) -> None:
        self.seq = 0
        self.recent: deque[tuple[int, str, str]] = deque(maxlen=keep)
        self.queue_size = queue_size
        self.subscribers: set[asyncio.Queue] = set()

    def publish(self, kind: str, data: dict | str) -> None:
        """``data``: an object, or its JSON text."""
        self.seq += 1
        event = (self.seq, kind, data if isinstance(data, str) else json_text(data))
        self.recent.append(event)
        for queue in list(self.subscribers):
            if queue.qsize() >= self.queue_size:
                self.subscribers.discard(queue)
                queue.put_nowait(None)  # tells the subscriber it fell behind
            else:
                queue.put_nowait(event)

    async def subscribe(self, last_id: int | None = None) -> AsyncIterator[tuple[int, str, str]]:
        queue: asyncio.Queue = asyncio.Queue()
        self.subscribers.add(queue)
        try:
            if last_id is not None:
                for event in list(self.recent):
                    if event[0] > last_id:
                        yield event
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield event
        finally:
            self.subscribers.discard(queue)


class RunManager:
    def __init__(self, settings: Settings, launcher: Launcher | None = None) -> None:
        self.settings = settings
        self.home = settings.home
        self.runs_dir = os.path.join(self.home, "runs")
        os.makedirs(self.runs_dir, mode=0o700, exist_ok=True)
        self.store = RunStore(self.home)
        # every run's record; a change replaces it (``_change``), never changes it in place
        self.runs: dict[str, Run] = {run.model_id: run for run in self.store.load()}
        # experiments (SPEC §9): their records, and their runs' IDs in submission order
        self.experiments: dict[str, ExperimentRecord] = {
            row["experiment_id"]: ExperimentRecord(**row) for row in self.store.load_experiments()
        }
        self._experiment_runs: dict[str, list[str]] = {e: [] for e in self.experiments}
        for run in self.runs.values():
            if run.experiment_id in self._experiment_runs:
                self._experiment_runs[run.experiment_id].append(run.model_id)
        # early stopping: experiment -> run -> its objective's curve (steps, values) as read
        self._early: dict[str, dict[str, tuple]] = {}
        self._stopped_early: dict[str, str] = {}  # run -> why it was halted (the median rule)
        self.seq = self.store.next_seq()
        self.scheduler = Scheduler(
            settings.gpu_ids, settings.cpu_slots, settings.starvation_seconds
        )
        self.launcher = launcher or LocalLauncher()
        if self.runs:  # its learners prepared for the stores the newest run used
            self.launcher.expect(_store_types(max(self.runs.values(), key=lambda r: r.seq)))
        # the hooks told of runs' events (SPEC §11); a config with errors refuses the start
        self._hooks_stamp = notify.stamp(settings.environ)
        self.notifier = self._new_notifier(notify.load_hooks(settings.environ))
        self._hooks_seen = time.monotonic()
        self.hooks_problems: list[str] = []  # a changed config's errors: the hooks were kept
        # the frameworks catalogue (SPEC §10): read now (errors refuse the service's start),
        # and again when the file changes
        self._catalogue = frameworks.load(settings.environ)
        self._catalogue_problem: str | None = None  # a changed catalogue that has errors
        self._catalogue_seen = time.monotonic()
        self._cluster_scheduler: Scheduler | None = None  # for a cluster launcher's GPUs
        self._checked: dict[tuple, float] = {}  # check_stores' successes, until when fresh
        self._json: dict[str, str] = {}  # run_json's cache; a change to a run drops its entry
        self._every_run: bytes | None = None  # every_run_ndjson's cache; any change drops it
        self._every_run_count = 0
        self._capacity_version: int | None = None  # the launcher's, at the last schedule()
        self.events = EventHub()
        self.metrics = MetricsKeeper(self.runs_dir)  # the runs' metric points (SPEC §8)
        self.owner = getpass.getuser()
        self._status_mtimes: dict[str, float] = {}
        self._unwritten = self.store.with_unwritten()  # runs whose files wait in the store
        for run in self.runs.values():  # an experiment's runs get theirs when they start
            if (
                run.experiment_id
                and run.status == PENDING
                and not os.path.exists(os.path.join(self.run_dir(run.model_id), LEARNER_FILE))
            ):
                self._unwritten.add(run.model_id)
        self._waiting: dict[str, Waiting] = {}  # the scheduler's view of pending runs
        self._full = False  # the last plan left no GPU (or CPU slot) free
        self._command_groups: dict[str, int] = {}  # run -> its command's process group
        # process -> run, for the GPU monitor's thread: replaced whole, never changed in place
        self.gpu_roots: dict[int, str] = {}
        self._last_liveness = 0.0
        self._last_purge = 0.0
        # writes to the run store that a full disk refused, in order, tried again every
        # DISK_RETRY: ("save" | "written" | "delete", run id)
        self._held_back: dict[tuple[str, str], None] = {}
        self._retry_held_back_at = 0.0
        self._retry_start_at = 0.0  # a run could not start for want of space: plan again then
        self.open_streams = 0
        self.closing = False  # the service stops: long answers (a log followed) end now
        self.last_activity = time.monotonic()
        self._salvages: list[threading.Thread] = []  # storing what vanished learners left
        # restarting runs -> when their back-off ends (time.monotonic); one missing (after a
        # service restart) is due at once
        self._restart_due: dict[str, float] = {}
        self._halt_asked: set[str] = set()  # runs halted while their learner worked
        self._tokens = Tokens(self.home)  # a run's owner may map to a Unix user (--unix-user)
        self._sandbox_why: str | None = None  # why runs are not sandboxed here (None: they are)
        self._sandbox_probe: threading.Thread | None = None
        self._gpu_minors: dict[int, int] = {}  # GPU index -> /dev/nvidiaN's N (NVML's)
        if settings.isolation != "off":
            # tried once, aside: it takes a few ms the service's start need not wait for
            self._sandbox_probe = threading.Thread(target=self._probe_sandbox, daemon=True)
            self._sandbox_probe.start()

    # --- isolation ------------------------------------------------------------------------

    def _probe_sandbox(self) -> None:
        from trainui.sandbox import unavailable

        self._sandbox_why = unavailable()
        if self._sandbox_why is None and self.settings.gpu_ids:
            from trainui.gpu import nvml_minor_numbers

            self._gpu_minors = nvml_minor_numbers()

    def sandbox_unavailable(self) -> str | None:
        """Why this machine cannot sandbox runs (one sentence), or None when it can (or when
        isolation is off)."""
        if self._sandbox_probe is not None:
            self._sandbox_probe.join()
        return self._sandbox_why

    def isolation(self) -> dict:
        """What the service says of isolation (``/v3/health``)."""
        if self.settings.isolation == "off":
            return {"sandbox": False, "reason": "isolation is off (--no-isolation)"}
        why = self.sandbox_unavailable()
        return {"sandbox": why is None, "reason": why}

    def _sandbox_spec(self, run: Run, gpu_ids: list[int], cluster: bool) -> dict | None:
        """learner.json's ``sandbox``: None runs the command unsandboxed."""
        if self.settings.isolation == "off":
            return None
        if not cluster and self.sandbox_unavailable() is not None:
            return None  # auto: said by /v3/health and `serve`
        devices = None  # every /dev/nvidia*: which node is which GPU is not known
        if not cluster and all(i in self._gpu_minors for i in gpu_ids):
            devices = [f"/dev/nvidia{self._gpu_minors[i]}" for i in gpu_ids]
        return {
            "gpu_devices": devices,
            # a cluster's node that cannot sandbox runs the command as it is, and says so
            "required": not cluster,
            "unix_user": self._tokens.unix_user(run.owner or ""),
            "paths": list(self.settings.sandbox_paths),
        }

    # --- frameworks (SPEC §10) -------------------------------------------------------------

    def catalogue(self) -> frameworks.Catalogue:
        """The catalogue as it is now: read again (at most every second) when its file
        changed; a changed one with errors keeps the last good one, and refuses submissions
        until it is fixed (``catalogue_problem``)."""
        now = time.monotonic()
        if now - self._catalogue_seen < 1.0:
            return self._catalogue
        self._catalogue_seen = now
        path = frameworks.catalogue_path(self.settings.environ)
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = None
        if mtime == (self._catalogue.mtime if self._catalogue.present else None):
            # the good one is back as it was (a backup restored with its time): fine again
            self._catalogue_problem = None
            return self._catalogue
        try:
            self._catalogue = frameworks.load(self.settings.environ)
            self._catalogue_problem = None
        except frameworks.CatalogueError as error:
            self._catalogue_problem = "; ".join(error.problems)
        return self._catalogue

    def frameworks_json(self) -> dict:
        catalogue = self.catalogue()
        out = catalogue.describe()
        if not catalogue.present:  # where the service reads one (not the client's machine)
            out["looked_in"] = frameworks.catalogue_path(self.settings.environ)
        if self._catalogue_problem:
            out["problem"] = self._catalogue_problem
        return out

    def check_framework(self, manifest: Manifest) -> None:
        """The manifest's framework is one this box supports, or a C104 refusal saying which
        are, with a "did you mean", located at the manifest's framework."""
        catalogue = self.catalogue()
        if self._catalogue_problem:
            raise Refusal(
                503,
                "the service's frameworks catalogue has errors, and it takes no run until its "
                f"owner fixes them: {self._catalogue_problem}",
            )
        if not catalogue.present:
            return
        problem = frameworks.manifest_problem(manifest, catalogue.describe()["frameworks"])
        if problem is None:
            return
        why, line, column = problem
        error = {
            "line": line,
            "column": column,
            "path": "model_definition.framework",
            "message": f"C104 {why}",  # as validate says it
            "severity": "error",
        }
        raise Refusal(400, why, "C104", [error])

    def _runtime_spec(self, run: Run) -> tuple[str | None, dict | None]:
        """(Why the run's framework is not supported now, learner.json's ``runtime``: the
        catalogue's entry for it; None for the host)."""
        framework = run.framework or {}
        name, version = framework.get("name", ""), framework.get("version", "")
        catalogue = self.catalogue()
        why = catalogue.check(name, version)
        entry = catalogue.find(name, version) if why is None else None
        if entry is None or entry.runtime == "host":
            return why, None
        return None, entry.runtime_spec(version)

    # --- reading --------------------------------------------------------------------------

    def get(self, model_id: str, user: User | None = None) -> Run:
        """The run, for a user allowed to see it: another user's run is "not found" too."""
        run = self.runs.get(model_id)
        if run is None or run.deleted or (user is not None and not user.sees(run)):
            raise Refusal(404, f"run {model_id} not found")
        return run

    def list_json(
        self,
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        user: User | None = None,
        experiment: str | None = None,
    ) -> tuple[list[str], int]:
        """The runs a user sees, in submission order, filtered by ``status`` (comma-separated),
        paged; each as its JSON text, kept from one change to the next (listing 10,000 runs
        costs a join, not 10,000 encodings); and how many there are in all."""
        wanted = set(status.split(",")) if status else None
        runs = [
            r
            for r in self.runs.values()
            if not r.deleted
            and (user is None or user.sees(r))
            and (wanted is None or r.status in wanted)
            and (experiment is None or r.experiment_id == experiment)
        ]
        page = runs[offset : offset + limit if limit is not None else None]
        return [self.run_json(r) for r in page], len(runs)

    def every_run_ndjson(self) -> tuple[bytes, int]:
        """Every run, one JSON text a line, and their count: what an admin's unfiltered list
        answers, kept as one buffer until a run changes."""
        if self._every_run is None:
            texts, count = self.list_json()
            self._every_run = "".join(f"{text}\n" for text in texts).encode()
            self._every_run_count = count
        return self._every_run, self._every_run_count

    def _changed(self, model_id: str) -> None:
        """Drop what was kept of a run that changed (or went)."""
        self._json.pop(model_id, None)
        self._every_run = None

    def _new_notifier(self, hooks: list[dict]) -> notify.Notifier:
        return notify.Notifier(
            hooks,
            on_problem=lambda text: print(f"trainui: notify: {text}", file=sys.stderr),
            spool=os.path.join(self.home, notify.SPOOL_FILE),
        )

    def notifier_now(self, fresh: bool = False) -> notify.Notifier:
        """The hooks as the service's config says now: read again (at most every second, or
        ``fresh``: at once) when the file changed. A changed file with errors keeps the hooks
        as they were; its errors are said on stderr and by ``trainui notify test``
        (``hooks_problems``) until it is fixed."""
        now = time.monotonic()
        if now - self._hooks_seen < 1.0 and not fresh:
            return self.notifier
        self._hooks_seen = now
        stamp = notify.stamp(self.settings.environ)
        if stamp == self._hooks_stamp:
            return self.notifier
        self._hooks_stamp = stamp
        try:
            hooks = notify.load_hooks(self.settings.environ)
        except notify.ConfigError as error:
            self.hooks_problems = error.problems
            print(
                f"trainui: notify: {error.path} changed and has errors; the hooks as they were"
                f" are kept: {'; '.join(error.problems)}",
                file=sys.stderr,
            )
            return self.notifier
        self.hooks_problems = []
        old, self.notifier = self.notifier, self._new_notifier(hooks)
        old.close()
        print(
            f"trainui: notify: {notify.config_path(self.settings.environ)} read again:"
            f" {len(hooks)} hook{'' if len(hooks) == 1 else 's'}",
            file=sys.stderr,
        )
        return self.notifier

    def _put(self, run: Run) -> Run:
        """``run``'s new record in place of the old one, what was kept of the old dropped; a
        state change the hooks are told of goes to them (``service/notify.py``)."""
        notifier = self.notifier_now()
        if notifier.hooks and not run.deleted:
            before = self.runs.get(run.model_id)
            event = notify.event_of(before.status if before else None, run.status)
            if event is not None:
                notifier.notify(event, public(run))
        self.runs[run.model_id] = run
        self._changed(run.model_id)
        return run

    def _change(self, run: Run, to_state: str, save: bool = True, **fields) -> Run:
        """Every change to a run: ``lifecycle.change``'s new record replaces ``run``, and is
        saved and published (unless ``save`` is False: the caller saves a batch)."""
        new = self._put(lifecycle.change(run, to_state, **fields))
        if save:
            self._save(new)
        return new

    def run_json(self, run: Run) -> str:
        """The run as the API shows it, as JSON text (cached until the run changes)."""
        text = self._json.get(run.model_id)
        if text is None:
            text = self._json[run.model_id] = json_text(public(run))
        return text

    def run_dir(self, model_id: str) -> str:
        return os.path.join(self.runs_dir, model_id)

    def health(self, user: User | None = None) -> dict:
        """The service's state, with the counts of the runs ``user`` sees (None: all)."""
        counts: dict[str, int] = {}
        for run in self.runs.values():
            if not run.deleted and (user is None or user.sees(run)):
                counts[run.status] = counts.get(run.status, 0) + 1
        return {
            "status": "ok",
            "launcher": self.launcher.name,
            "where": self.launcher.where,
            "gpus": list(self.settings.gpu_ids),
            "cpu_mode": self.scheduler.cpu_mode,
            "cpu_slots": self.settings.cpu_slots,  # runs at once in CPU mode
            "isolation": self.isolation(),
            "runs": counts,
            "pid": os.getpid(),
        }

    # --- submitting -----------------------------------------------------------------------

    def check_manifest(
        self, manifest_bytes: bytes, environment: Mapping[str, str]
    ) -> ManifestReport:
        """The manifest of a submission, or a C101 refusal listing every problem located."""
        report = parse_manifest_bytes(manifest_bytes, "manifest.yml", environment)
        if not report.ok:
            problems = report.errors
            if report.framework is not None:  # an unsupported framework said with the others
                try:
                    self.check_framework(report.framework)
                except Refusal as refusal:
                    if refusal.code == "C104":
                        found = [Problem(**e) for e in refusal.errors]
                        problems = sorted([*problems, *found], key=lambda p: (p.line, p.column))
            errors = [p.as_dict() for p in problems]
            first = problems[0].format("manifest.yml")
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise Refusal(400, f"the manifest is not valid: {first}{more}", "C101", errors)
        self.check_framework(report.manifest)  # before the buckets: no round trip to refuse it
        return report

    def check_local_paths(self, manifest: Manifest, user: User | None) -> None:
        """A remote user's ``local`` buckets are folders of this box read and written by the
        learner (as the service's user, root maybe): only ``<home>/buckets`` and the folders
        the box's owner lists in ``TRAINUI_LOCAL_PATHS``, never the home (tokens, the run
        store, other users' runs and credentials) or the rest of the machine. The machine's
        owner (the Unix socket) and admins name any folder."""
        if user is None or user.admin:
            return
        buckets = os.path.realpath(os.path.join(self.home, "buckets"))
        allowed = [buckets, *(os.path.realpath(p) for p in self.settings.local_paths)]
        home = os.path.realpath(self.home)
        for store, role in ((manifest.data, "training data"), (manifest.results, "results")):
            path = store.connection.get("path") if store.type == "local" else None
            if not path:
                continue
            real = os.path.realpath(os.path.expanduser(path))
            named = any(within(real, top) for top in allowed)
            if not named or (within(real, home) and not within(real, buckets)):
                raise Refusal(
                    403,
                    f"the {role} bucket's path {path} is not a folder remote users may name: "
                    f"{buckets}"
                    + "".join(f", {p}" for p in self.settings.local_paths)
                    + " (TRAINUI_LOCAL_PATHS, set by the box's owner)",
                    "C103",
                )

    def check_remote_credentials(self, manifest: Manifest, user: User | None) -> None:
        """A remote user's S3 bucket without keys (or with a ``profile``) would be reached with
        this machine's own AWS credentials (its environment, shared files, instance role), the
        box owner's identity: refused unless the owner allows it
        (``TRAINUI_REMOTE_CREDENTIALS=box``). The machine's owner and admins use the chain."""
        if user is None or user.admin or self.settings.remote_credentials == "box":
            return
        for store, role in ((manifest.data, "training data"), (manifest.results, "results")):
            if store.type != "s3":
                continue
            connection = store.connection
            if connection.get("aws_access_key_id") and not connection.get("profile"):
                continue
            how = "names a profile" if connection.get("profile") else "gives no keys"
            raise Refusal(
                403,
                f"the {role} bucket's s3 connection {how}: a remote user's buckets are reached "
                "with the keys the manifest gives (aws_access_key_id and aws_secret_access_key, "
                "from ${VARIABLES} of your shell), not with this machine's own AWS credentials "
                "(TRAINUI_REMOTE_CREDENTIALS=box, set by the box's owner, allows them)",
                "C103",
            )

    def check_stores(self, manifest: Manifest) -> None:
        """Both buckets reachable with the given credentials, or a C103 refusal naming the
        store and what was refused (never the secret); both, when both are refused (one fix,
        not two submissions). Blocking: call it in a thread."""
        refused = []
        for store, write in ((manifest.data, False), (manifest.results, True)):
            # a burst of submissions to one bucket checks it once, not once each (for a remote
            # store, round trips; for a local one, a probe file written and removed)
            key = (store.type, store.bucket, tuple(sorted(store.connection.items())), write)
            if time.monotonic() < self._checked.get(key, 0.0):
                continue
            try:
                check_access(store.type, store.bucket, store.connection, self.home, write)
            except StoreError as error:
                role = "results" if write else "training data"
                refused.append(f"the {role} bucket is refused: {error}")
                continue
            if len(self._checked) > 1000:
                self._checked.clear()
            self._checked[key] = time.monotonic() + CHECK_FRESH
        if refused:
            raise Refusal(400, "; ".join(refused), "C103")

    def submit(
        self,
        report: ManifestReport,
        definition_data: bytes | str,
        owner: str | None = None,
        label: str = DEFINITION_FILE,
        checked: bool = True,
    ) -> Run:
        """Accept a run whose manifest passed ``check_manifest``. ``definition_data``: the
        model definition's bytes (a small one), or the path of a file moved into the run
        folder; ``label``: how messages name it (the user's file, not the service's copy).
        A small run's files wait in the run store until it starts (``run_file``)."""
        manifest = report.manifest
        if manifest.experiment is not None:
            raise Refusal(
                400,
                "the manifest is an experiment (it has experiment:): submit it to /v3/experiments",
                "C101",
            )
        self._check_submission(manifest, definition_data, label)
        model_id = self._new_id()
        now = utc_now()
        files = self._files(report, model_id, now, checked)
        if isinstance(definition_data, bytes):
            files[DEFINITION_FILE] = definition_data
        else:  # a large one: its own file already, moved (no copy through the database)
            run_dir = self.run_dir(model_id)
            os.makedirs(run_dir, mode=0o700)
            shutil.move(definition_data, os.path.join(run_dir, DEFINITION_FILE))
        run = self._new_run(model_id, manifest, owner, now)
        self.seq += 1
        self._put(run)
        run, queued = self._queue_when_full(run)
        try:
            self._save(run, files)
        except Exception as error:  # nothing of the run is kept
            self.runs.pop(model_id, None)
            self._waiting.pop(model_id, None)
            self._changed(model_id)
            if not isinstance(definition_data, bytes):
                shutil.rmtree(self.run_dir(model_id), ignore_errors=True)
            if disk_full(error):
                raise self.disk_full_refusal() from None
            raise
        self._unwritten.add(model_id)
        if not queued:
            self.schedule()
        return run

    def _files(
        self, report: ManifestReport, model_id: str, now: str, checked: bool = True
    ) -> dict[str, bytes]:
        """The files a submission's run folder gets: the manifest (secrets removed), the
        learner's spec and the results store's (secrets included). Not ``checked`` at submit
        (``--no-check``): the learner checks the results bucket before the data are staged."""
        manifest = report.manifest
        spec = _learner_spec(model_id, manifest, self.home, self.settings, now)
        if not checked:
            spec["check_results"] = True
        return {
            MANIFEST_FILE: report.redacted_text().encode(),
            LEARNER_FILE: json.dumps(spec).encode(),
            RESULTS_FILE: json.dumps(_store_spec(manifest.results)).encode(),
        }

    def _check_submission(self, manifest: Manifest, definition_data, label: str) -> None:
        """What every submission is checked for once its manifest is: space, the model
        definition, the launcher, and GPUs enough (refusals)."""
        self.check_space()
        limits = definition.Limits.from_env(os.environ, service=True)
        try:
            if isinstance(definition_data, bytes):
                definition.check_zip_bytes(definition_data, label, limits)
            else:
                definition.check_zip(definition_data, limits, label)
        except definition.DefinitionError as error:
            raise Refusal(400, str(error), "C102") from None
        problem = self.launcher.check()
        if problem:
            raise Refusal(503, problem)
        if self.launcher.capacity() is None:
            too_big = self.scheduler.refuse(manifest.gpus)
        else:
            too_big = self.launcher.refuse(manifest.gpus)
        if too_big:
            raise Refusal(400, too_big, "S100")

    def _new_id(self) -> str:
        model_id = new_run_id()
        while model_id in self.runs:
            model_id = new_run_id()
        return model_id

    def _new_run(
        self,
        model_id: str,
        manifest: Manifest,
        owner: str | None,
        now: str,
        experiment_id: str | None = None,
        parameters: dict | None = None,
    ) -> Run:
        """A run just accepted, pending (``seq``: the next; the caller counts it)."""
        return Run(
            model_id=model_id,
            url=f"/v3/models/{model_id}",
            name=manifest.name,
            description=manifest.description,
            # values runs of one manifest have in common are shared (never changed in place)
            framework=shared(
                {"name": manifest.framework_name, "version": manifest.framework_version}
            ),
            resource=sys.intern(manifest.resource),
            gpus=manifest.gpus,
            gpu_ids=shared([]),
            status=PENDING,
            status_message="queued",
            submitted_at=now,
            owner=sys.intern(owner or self.owner),
            data=shared(manifest.data.describe()),
            results=shared({**manifest.results.describe(), "prefix": f"{model_id}/"}),
            progress=shared(lifecycle.no_progress()),
            experiment_id=experiment_id,
            parameters=parameters,
            max_restarts=manifest.max_restarts,
            seq=self.seq,
            queued_epoch=time.time(),
        )

    # --- experiments (SPEC §9) ------------------------------------------------------------

    def submit_experiment(
        self,
        report: ManifestReport,
        definition_data: bytes | str,
        owner: str | None = None,
        label: str = DEFINITION_FILE,
        checked: bool = True,
    ) -> tuple[ExperimentRecord, list[Run]]:
        """Accept an experiment whose manifest passed ``check_manifest``: its record and all
        its runs in one transaction. The files its runs share (the model definition, the
        manifest, the stores) are kept once, under the experiment's ID; each run's folder gets
        them when it starts (``run_file``)."""
        manifest = report.manifest
        block = manifest.experiment
        if block is None:
            raise Refusal(
                400, "the manifest has no experiment: block; submit it to /v3/models", "C101"
            )
        self._check_submission(manifest, definition_data, label)
        experiment_id = new_experiment_id()
        while experiment_id in self.experiments:
            experiment_id = new_experiment_id()
        spec = block.as_json()
        if block.method == "random" and spec["seed"] is None:
            import secrets

            spec["seed"] = secrets.randbelow(1 << 31)  # recorded: the draws can be made again
        values = block.expand(spec["seed"])
        now = utc_now()
        owner = sys.intern(owner or self.owner)
        record = ExperimentRecord(
            experiment_id=experiment_id,
            name=block.name or manifest.name,
            owner=owner,
            submitted_at=now,
            spec=spec,
            seq=self.seq,
        )
        files = self._files(report, "", now, checked)  # learner.json: made for each run from it
        folder = self.experiment_dir(experiment_id)
        if isinstance(definition_data, bytes):
            files[DEFINITION_FILE] = definition_data
        else:  # a large one: its own file already, moved (no copy through the database)
            os.makedirs(folder, mode=0o700)
            shutil.move(definition_data, os.path.join(folder, DEFINITION_FILE))
        runs = []
        taken = set()
        for parameters in values:
            model_id = self._new_id()
            while model_id in taken:
                model_id = self._new_id()
            taken.add(model_id)
            runs.append(self._new_run(model_id, manifest, owner, now, experiment_id, parameters))
            self.seq += 1
        try:
            self.store.save_experiment(record.row(), runs, files)
        except Exception as error:  # nothing of it is kept
            self.seq = record.seq
            if not isinstance(definition_data, bytes):
                shutil.rmtree(folder, ignore_errors=True)
            if disk_full(error):
                raise self.disk_full_refusal() from None
            raise
        self.experiments[experiment_id] = record
        self._experiment_runs[experiment_id] = [run.model_id for run in runs]
        for run in runs:
            self._put(run)
            self._unwritten.add(run.model_id)
        self.events.publish("experiment", self.experiment_json(record))
        for run in runs:
            self.events.publish("run", self.run_json(run))
        self.schedule()
        return record, [self.runs[run.model_id] for run in runs]

    def experiment_dir(self, experiment_id: str) -> str:
        return os.path.join(self.home, "experiments", experiment_id)

    def get_experiment(self, experiment_id: str, user: User | None = None) -> ExperimentRecord:
        record = self.experiments.get(experiment_id)
        if (
            record is None
            or record.deleted
            or (user is not None and not user.admin and record.owner != user.name)
        ):
            raise Refusal(404, f"experiment {experiment_id} not found")
        return record

    def experiment_runs(self, experiment_id: str) -> list[Run]:
        """The experiment's runs still in the history, in submission order."""
        runs = self.runs
        return [
            runs[m]
            for m in self._experiment_runs.get(experiment_id, ())
            if m in runs and not runs[m].deleted
        ]

    def experiment_json(self, record: ExperimentRecord) -> dict:
        return describe_experiment(record, self.experiment_runs(record.experiment_id))

    def experiment_body(self, record: ExperimentRecord, fields: list[str] | None = None) -> bytes:
        """``GET /v3/experiments/ID``'s JSON: the experiment and its runs ranked, each run's
        text the one kept from one change to the next (``run_json``: 1,000 runs cost a join,
        not 1,000 encodings), or with ``fields``: only these keys of each run."""
        out, order = experiment_described(record, self.experiment_runs(record.experiment_id))
        if fields is None:
            runs = ",".join(self.run_json(r) for r in order).encode()
        else:
            keep = [name for name in dict.fromkeys(fields) if name in PUBLIC]
            runs = msgspec.json.encode([{n: getattr(r, n) for n in keep} for r in order])[1:-1]
        return msgspec.json.encode(out)[:-1] + b',"runs":[' + runs + b"]}"

    def list_experiments(self, user: User | None = None) -> list[dict]:
        return [
            self.experiment_json(record)
            for record in self.experiments.values()
            if not record.deleted and (user is None or user.admin or record.owner == user.name)
        ]

    def halt_experiment(self, experiment_id: str, user: User | None = None) -> dict:
        """Halt every run of the experiment that has not ended (pending ones end at once)."""
        record = self.get_experiment(experiment_id, user)
        runs = self.experiment_runs(experiment_id)
        if all(run.status in FINAL_STATES for run in runs):
            raise Refusal(409, f"experiment {experiment_id} has already ended")
        record = msgspec.structs.replace(record, halted_at=utc_now())
        self.experiments[experiment_id] = record
        self.store.save_experiment(record.row())
        pending = [r for r in runs if r.status in (PENDING, RESTARTING)]
        for run in pending:
            self._halt_waiting(run, " (its experiment was halted)")
        for run in runs:
            if run.status in ACTIVE_STATES:
                run = self._change(run, run.status, status_message="halting")
                self._halt_asked.add(run.model_id)
                self._ask_halt(run, f"{HALTED_BY_REQUEST} (its experiment was halted)")
        if pending:
            self.schedule()
        described = self.experiment_json(record)
        self.events.publish("experiment", described)
        return described

    def delete_experiment(self, experiment_id: str, user: User | None = None) -> None:
        """Delete the experiment and its runs from the history (active ones are halted
        first); what they stored in the results bucket stays."""
        record = self.get_experiment(experiment_id, user)
        for run in self.experiment_runs(experiment_id):
            if run.status in ACTIVE_STATES:
                run = self._change(run, run.status, deleted=1)
                self.launcher.halt(run.learner_pid, run.learner_start)
                self.events.publish("deleted", {"model_id": run.model_id, "owner": run.owner})
            else:
                self._forget(run.model_id)
        self.experiments.pop(experiment_id, None)
        self._experiment_runs.pop(experiment_id, None)
        self._early.pop(experiment_id, None)
        shutil.rmtree(self.experiment_dir(experiment_id), ignore_errors=True)
        self.store.delete_experiment(experiment_id)
        self.events.publish(
            "experiment_deleted", {"experiment_id": experiment_id, "owner": record.owner}
        )
        self.schedule()
        self.store.scrub()

    def _experiment_files(self, run: Run) -> dict[str, bytes | str]:
        """The files a run of an experiment starts with: the experiment's shared ones (as
        paths, linked into the run's folder), its learner.json made for this run."""
        folder = self.experiment_dir(run.experiment_id)
        if not os.path.exists(os.path.join(folder, LEARNER_FILE)):
            os.makedirs(folder, mode=0o700, exist_ok=True)
            for name, data in self.store.unwritten(run.experiment_id).items():
                path = os.path.join(folder, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
        files: dict[str, bytes | str] = {}
        for name in (DEFINITION_FILE, MANIFEST_FILE, RESULTS_FILE):
            files[name] = os.path.join(folder, name)
        spec = read_json(os.path.join(folder, LEARNER_FILE)) or {}
        spec.update(
            model_id=run.model_id,
            experiment_id=run.experiment_id,
            parameters=run.parameters or {},
        )
        files[LEARNER_FILE] = json.dumps(spec).encode()
        return files

    def check_space(self) -> None:
        """Refuse a submission (507) while the home's file system is (nearly) full."""
        if self._home_full():
            raise self.disk_full_refusal()

    def _home_full(self) -> bool:
        """Has the home's file system less than MIN_FREE_BYTES left?"""
        try:
            stat = os.statvfs(self.home)
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize < MIN_FREE_BYTES

    def disk_full_refusal(self) -> Refusal:
        free = ""
        with contextlib.suppress(OSError):
            stat = os.statvfs(self.home)
            free = f" ({stat.f_bavail * stat.f_frsize // 1024:,} KiB free)"
        return Refusal(
            507,
            f"disk full: the file system of the service's home has no space left{free}; "
            "delete runs (trainui delete ID) or free space there, then try again",
        )

    def run_file(self, model_id: str, name: str) -> str:
        """The path of one of the run's files, after writing the files that waited in the
        run store (a run that has not started has its folder only once something asks)."""
        if model_id in self._unwritten:
            run_dir = self.run_dir(model_id)
            os.makedirs(run_dir, mode=0o700, exist_ok=True)
            run = self.runs.get(model_id)
            if run is not None and run.experiment_id:
                for file_name, data in self._experiment_files(run).items():
                    path = os.path.join(run_dir, file_name)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    if isinstance(data, str):  # one copy on the disk for all of its runs
                        try:
                            os.link(data, path)
                        except OSError:
                            shutil.copyfile(data, path)
                            os.chmod(path, 0o600)
                        continue
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                self._unwritten.discard(model_id)
                return os.path.join(run_dir, name)
            for file_name, data in self.store.unwritten(model_id).items():
                if file_name == MANIFEST_FILE:  # the copy that is shown and stored: a run
                    # recorded before URLs with credentials were refused has them masked
                    text = mask_urls(data.decode("utf-8", "surrogateescape"))
                    data = text.encode("utf-8", "surrogateescape")
                path = os.path.join(run_dir, file_name)
                # 0600: two of them hold the stores' secrets; O_TRUNC: a service killed
                # between writing and forgetting them writes them again
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            try:
                self.store.written(model_id)
            except sqlite3.Error as error:
                if not disk_full(error):
                    raise
                self._hold_back("written", model_id)
            self._unwritten.discard(model_id)
        return os.path.join(self.run_dir(model_id), name)

    # --- scheduling and launching ---------------------------------------------------------

    def _queue_when_full(self, submitted: Run) -> tuple[Run, bool]:
        """Queue the run just accepted when nothing is free and nothing was
        released since the last plan (a release plans again): the new run waits, and only its
        own reason is new. This keeps a submission O(1) behind a long queue instead of
        re-planning every pending run. False when a full plan is needed; the run as it is now."""
        if not self._full or self.launcher.capacity() is not None:
            return submitted, False
        ahead = len(self._waiting)
        self._waiting[submitted.model_id] = Waiting(
            submitted.model_id, submitted.gpus, submitted.queued_epoch, submitted.experiment_id
        )
        reason = self.scheduler.waiting_reason(submitted.gpus, 0, ahead)
        return self._change(submitted, PENDING, save=False, status_message=reason), True

    def schedule(self) -> None:
        """Start what can start; give every pending run its reason."""
        waiting = []
        now = time.monotonic()
        for r in self.runs.values():
            if (
                r.status == RESTARTING
                and not r.deleted
                and self._restart_due.get(r.model_id, 0.0) <= now
            ) or (r.status == PENDING and not r.deleted):
                entry = self._waiting.get(r.model_id)
                if entry is None:  # made once per run: this runs at every submit and release
                    entry = Waiting(r.model_id, r.gpus, r.queued_epoch, r.experiment_id)
                    self._waiting[r.model_id] = entry
                waiting.append(entry)
        self._capacity_version = self.launcher.version
        if not waiting:
            self._full = False  # the next submission plans in full
            return
        active = [r for r in self.runs.values() if r.status in ACTIVE_STATES]
        room = self._experiment_room(waiting, active)
        capacity = self.launcher.capacity()
        if capacity is None:  # this machine's GPUs, by id
            busy = {r.model_id: r.gpu_ids or [] for r in active}
            plan = self.scheduler.plan(waiting, busy, len(active), time.time(), room)
        elif capacity.problem:
            plan = Plan([], {w.run_id: f"waiting: {capacity.problem}" for w in waiting})
        else:  # a cluster's: counted, the cluster chooses which
            scheduler = self._cluster_scheduler
            if scheduler is None or len(scheduler.gpu_ids) != capacity.total:
                scheduler = Scheduler(
                    range(capacity.total),
                    self.settings.cpu_slots,
                    self.settings.starvation_seconds,
                )
                self._cluster_scheduler = scheduler
            busy = {"": range(max(0, capacity.total - capacity.free))}
            plan = scheduler.plan(waiting, busy, len(active), time.time(), room)
            where = self.launcher.where
            plan = Plan(
                plan.starts, {k: v.replace("this machine", where) for k, v in plan.reasons.items()}
            )
        for model_id, gpu_ids in plan.starts:
            self._start(self.runs[model_id], list(gpu_ids), capacity)
        self._full = capacity is None and self._nothing_free()
        changed = []
        for model_id, reason in plan.reasons.items():
            run = self.runs[model_id]
            if run.status == RESTARTING:
                total = _may_reach(run)
                reason = f"attempt {run.attempt} of {total}: {reason}"
            if run.status_message != reason:
                changed.append(self._change(run, run.status, save=False, status_message=reason))
        if changed:  # one transaction: when a large run ends, thousands of reasons may change
            try:
                self.store.save_many(changed)
            except sqlite3.Error as error:
                if not disk_full(error):
                    raise
                for run in changed:
                    self._hold_back("save", run.model_id)
            for run in changed:
                self.events.publish("run", self.run_json(run))

    def _experiment_room(self, waiting: list[Waiting], active: list[Run]) -> dict:
        """For the experiments with runs waiting that have a ``max_parallel``: how many more
        of their runs may start now (the scheduler's ``room``)."""
        room: dict[str, tuple[int, int]] = {}
        for entry in waiting:
            group = entry.group
            if group is None or group in room:
                continue
            record = self.experiments.get(group)
            limit = record.spec.get("max_parallel") if record is not None else None
            if limit:
                room[group] = (limit, 0)
        if room:
            for run in active:
                if run.experiment_id in room:
                    limit, busy = room[run.experiment_id]
                    room[run.experiment_id] = (limit, busy + 1)
        return room

    def _start(self, run: Run, gpu_ids: list[int], capacity: Capacity | None = None) -> None:
        self._waiting.pop(run.model_id, None)
        run_dir = self.run_dir(run.model_id)
        cpu_mode = self.scheduler.cpu_mode if capacity is None else not capacity.total
        if self._home_full():  # a restart after a full disk too: it waits, not fails again
            self._wait_for_space(run, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.home))
            return
        try:
            spec_path = self.run_file(run.model_id, LEARNER_FILE)
            # a started run has a log, empty at first (a cluster launcher's mirror appends to it)
            open(os.path.join(run_dir, LOG_FILE), "ab").close()
            spec = read_json(spec_path) or {}
            if capacity is not None and not cpu_mode:
                gpu_ids = []  # the cluster chooses; the learner reports them (gpu_ids null)
                spec.update(gpu_ids=None, cpu_mode=False)
            else:
                spec.update(gpu_ids=gpu_ids, cpu_mode=cpu_mode)
            spec["sandbox"] = self._sandbox_spec(run, gpu_ids, cluster=capacity is not None)
            spec["home"] = self.home  # where it is now (a home may have moved since submit)
            why, spec["runtime"] = self._runtime_spec(run)
            if why is not None:  # the catalogue changed since the run was accepted
                # its log says why, stored with its manifest as for any failed run
                self._store_what_is_left(self._finish(run, FAILED, why, "C104"))
                return
            spec["attempt"], spec["max_restarts"] = run.attempt, run.max_restarts
            spec["last_attempt"] = _may_reach(run)
            self._restart_due.pop(run.model_id, None)
            write_json_atomic(spec_path, spec, mode=0o600)
            if run.attempt > 1:  # what an earlier learner wrote there is not this one's
                mark_attempt(run_dir, run.attempt)
            self.launcher.expect(_store_types(run))  # the next runs are likely alike
            pid, start = self.launcher.start(run_dir, 0 if cpu_mode else run.gpus)
        except (OSError, sqlite3.Error) as error:
            if disk_full(error):
                self._wait_for_space(run, error)
            elif isinstance(error, OSError):
                why = f"the learner could not be started: {error}"
                self._store_what_is_left(self._finish(run, FAILED, why, "S300"))
            else:
                raise
            return
        if capacity is not None:
            where = f"on {self.launcher.where}" + (", on a CPU" if cpu_mode else "")
        else:
            where = "on the CPU" if cpu_mode else f"on GPU {_ids(gpu_ids)}"
        self._change(  # started_at: stamped now
            run,
            DOWNLOADING,
            status_message=f"starting {where}",
            gpu_ids=gpu_ids,
            learner_pid=pid,
            learner_start=start,
        )
        self._refresh_gpu_roots()

    def _wait_for_space(self, run: Run, error: BaseException) -> None:
        """The run could not start for want of space: it stays pending, first in line, and
        starts once space is freed (tried again every DISK_RETRY seconds, and at a delete)."""
        if isinstance(error, OSError):
            why = disk_full_message(error, error.filename or self.run_dir(run.model_id))
        else:
            why = "the run store's database is full"
        reason = f"waiting for disk space: {why}"
        if run.status_message != reason:  # a restart keeps its state (its attempt is due)
            self._change(run, run.status, status_message=reason)
        self._retry_start_at = time.monotonic() + DISK_RETRY

    def _nothing_free(self) -> bool:
        """No GPU (or, in CPU mode, no CPU slot) of this machine is free."""
        active = [r for r in self.runs.values() if r.status in ACTIVE_STATES]
        if self.scheduler.cpu_mode:
            return len(active) >= self.settings.cpu_slots
        held = {gpu for r in active for gpu in r.gpu_ids or []}
        return all(gpu in held for gpu in self.scheduler.gpu_ids)

    def _refresh_gpu_roots(self) -> None:
        """Which processes belong to which active run (learners, commands' groups)."""
        roots: dict[int, str] = {}
        for run in self.runs.values():
            if run.status in ACTIVE_STATES:
                if run.learner_pid:
                    roots[run.learner_pid] = run.model_id
                group = self._command_groups.get(run.model_id)
                if group:
                    roots[group] = run.model_id
        self.gpu_roots = roots

    # --- following learners ---------------------------------------------------------------

    def poll(self) -> None:
        """Bring active runs up to date with their learners' status files."""
        now = time.monotonic()
        check_liveness = now - self._last_liveness >= LIVENESS_INTERVAL
        if check_liveness:
            self._last_liveness = now
        released = False
        for run in [r for r in self.runs.values() if r.status in ACTIVE_STATES]:
            status_path = os.path.join(self.run_dir(run.model_id), STATUS_FILE)
            try:
                mtime = os.stat(status_path).st_mtime_ns
            except FileNotFoundError:
                mtime = None
            if mtime is not None and mtime != self._status_mtimes.get(run.model_id):
                status = lifecycle.read_status(status_path)
                if status is not None:
                    self._status_mtimes[run.model_id] = mtime
                    released |= self._apply(run, status)
                    continue
            if check_liveness and not self.launcher.alive(run.learner_pid, run.learner_start):
                raw = read_json(status_path)  # it may have ended between the two looks
                status = lifecycle.as_status(raw) if raw is not None else None
                if status is not None and status.status in FINAL_STATES:
                    released |= self._apply(run, status)
                else:
                    # the launcher frees what holds GPUs and says why the learner is gone
                    reason = self.launcher.lost(
                        run.learner_pid, run.learner_start, raw, self.run_dir(run.model_id)
                    )
                    lost = lifecycle.change(run, FAILED, status_message=reason, error_code="S300")
                    restarting = self._restart(run, lost)
                    if restarting is not None:  # the log says how this attempt ended
                        from trainui.service.salvage import end_log

                        end_log(
                            os.path.join(self.run_dir(run.model_id), LOG_FILE),
                            f"trainui: failed (S300): {reason}",
                        )
                        self._say_restart(run)
                        self._command_groups.pop(run.model_id, None)
                        self._save(self._put(restarting))
                        self._refresh_gpu_roots()
                        released = True
                        continue
                    run = self._finish(run, FAILED, reason, "S300")
                    if not run.deleted:
                        self._store_what_is_left(run)
                    released = True
        self._poll_metrics()
        if self._held_back and now >= self._retry_held_back_at:
            self._retry_held_back_at = now + DISK_RETRY
            self._write_held_back()
        due = [r for r, when in self._restart_due.items() if when <= now]
        for model_id in due:  # a back-off ended: the run waits in the queue from now on
            del self._restart_due[model_id]
            released = True
        retry_start = bool(self._retry_start_at) and now >= self._retry_start_at
        if retry_start:
            self._retry_start_at = 0.0
        if (
            released
            or retry_start
            or (self._waiting and self.launcher.version != self._capacity_version)
        ):
            self.schedule()  # GPUs were released, space freed, or a cluster's resources changed
        self.launcher.tick()
        if now - self._last_purge >= PURGE_INTERVAL:
            self._last_purge = now
            self.purge()
        self.store.scrub()  # the credentials of runs started since the last beat

    # --- metrics ----------------------------------------------------------------------------

    def _poll_metrics(self) -> None:
        """Read what running runs' learners appended to their points files; for each run
        with new points, at most every METRICS_INTERVAL: its record and a ``metrics`` event.
        A run between two attempts too: the last points of the attempt that failed came
        after its last read (its record said its first points through a long back-off)."""
        polled = [
            r for r in self.runs.values() if r.status in ACTIVE_STATES or r.status == RESTARTING
        ]
        for run in polled:
            index = self.metrics.poll(run.model_id)
            # (not while catching up: a summary of half the file would go backwards)
            if (
                index.changed
                and not index.behind
                and self.metrics.due(run.model_id, METRICS_INTERVAL)
            ):
                run = self._metrics_changed(run, index)
                if run.experiment_id:
                    self._early_stop(run, index)

    def _objective(self, run: Run) -> str | None:
        """The metric that ranks the run in its experiment (kept in its record, however many
        metrics came before it); None outside an experiment or without an objective."""
        record = self.experiments.get(run.experiment_id) if run.experiment_id else None
        objective = record.spec.get("objective") if record is not None else None
        return objective.get("metric") if objective else None

    def _early_stopping(self, experiment_id: str | None) -> tuple[dict, str, str] | None:
        """The experiment's ``early_stopping``, objective metric and goal, when it has both."""
        record = self.experiments.get(experiment_id) if experiment_id else None
        if record is None:
            return None
        rule, objective = record.spec.get("early_stopping"), record.spec.get("objective")
        if not rule or not objective:
            return None
        return rule, objective["metric"], objective.get("goal", "minimize")

    def _curves(self, experiment_id: str) -> dict[str, tuple] | None:
        """The objective's curve of each run of the experiment, as read so far; None while
        those of runs that ended before this service started are being read (in a thread)."""
        curves = self._early.get(experiment_id)
        if curves is not None:
            return curves if "" not in curves else None
        metric = self._early_stopping(experiment_id)[1]
        ended = [
            m
            for m in self._experiment_runs.get(experiment_id, ())
            if m in self.runs and self.runs[m].status in FINAL_STATES and self.runs[m].metrics
        ]
        curves = self._early[experiment_id] = {}
        if not ended:
            return curves
        curves[""] = ()  # reading

        def read() -> None:
            for model_id in ended:
                index = MetricsIndex(self.metrics.path(model_id))
                with contextlib.suppress(OSError):
                    index.read()
                series = index.series.get(metric)
                if series is not None:
                    curves.setdefault(model_id, series.display()[:2])
            curves.pop("", None)

        threading.Thread(target=read, name="trainui-curves", daemon=True).start()
        return None

    def _early_stop(self, run: Run, index: MetricsIndex) -> None:
        """The median rule (SPEC §9): ``run`` wrote new points of its experiment's objective;
        halt it, or a sibling still running, whose objective is worse than the median of the
        others' at its last step (or, ahead of them, at the latest step enough of them
        reached: ``median_stop``)."""
        stopping = self._early_stopping(run.experiment_id)
        if stopping is None:
            return
        rule, metric, goal = stopping
        series = index.series.get(metric)
        curves = self._curves(run.experiment_id)
        if series is None or curves is None:
            return
        curves[run.model_id] = series.display()[:2]
        # the run, then its siblings still running: its new points may let the rule judge one
        # that is ahead of it
        for model_id in [run.model_id, *(m for m in curves if m != run.model_id)]:
            judged = self.runs.get(model_id)
            if judged is None or judged.status != RUNNING or model_id in self._stopped_early:
                continue
            if any(stopped_early(a.get("status_message")) for a in judged.attempts or ()):
                continue  # the rule stopped it once and its user resumed it: their call
            steps, values = curves[model_id]
            others = (curve for m, curve in curves.items() if m != model_id)
            found = median_stop(
                steps, values, others, goal, rule["after_steps"], rule.get("min_runs", 3)
            )
            if found is None:
                continue
            reason = stop_reason(metric, *found)
            self._stopped_early[model_id] = reason
            judged = self._change(judged, judged.status, status_message=f"halting: {reason}")
            self._ask_halt(judged, reason)  # the learner says it as the run's outcome

    def _metrics_changed(self, run: Run, index: MetricsIndex) -> Run:
        """The run's record follows its index (saved, without a ``run`` event: the
        ``metrics`` event says what changed, ``{name: {last, step}}`` of the metrics with new
        points)."""
        changed = index.take_changed()
        record = index.record(self._objective(run))
        if record != run.metrics:
            run = self._put(lifecycle.with_metrics(run, record))
            if not run.deleted:
                try:
                    self.store.save(run)
                except sqlite3.Error as error:
                    if not disk_full(error):
                        raise
                    self._hold_back("save", run.model_id)
        if changed and not run.deleted:
            self.events.publish(
                "metrics", {"model_id": run.model_id, "owner": run.owner, "metrics": changed}
            )
        return run

    def _final_metrics(self, run: Run) -> Run:
        """An ended run's record with its points file read to the end (the learner's last
        pass came before its last status)."""
        index = self.metrics.finish(run.model_id)
        if index is None:  # too much to read here: read once asked for (keep_metrics)
            return run
        stopping = self._early_stopping(run.experiment_id)
        curves = self._early.get(run.experiment_id) if stopping else None
        if curves is not None and stopping[1] in index.series:
            curves[run.model_id] = index.series[stopping[1]].display()[:2]
        record = index.record(self._objective(run))
        changed = index.take_changed()
        if changed and not run.deleted:
            self.events.publish(
                "metrics", {"model_id": run.model_id, "owner": run.owner, "metrics": changed}
            )
        return run if record == run.metrics else lifecycle.with_metrics(run, record)

    def metrics_index(self, run: Run) -> MetricsIndex | None:
        """The run's points as read so far, when kept (a running run's always), else None:
        ``load_metrics`` reads them (in a thread) and ``keep_metrics`` keeps them."""
        if run.status in ACTIVE_STATES:
            return self.metrics.index(run.model_id, True)
        if run.status == RESTARTING:  # between two attempts: its live index, read to now
            return self.metrics.poll(run.model_id)
        return self.metrics.cached(run.model_id)

    def load_metrics(self, model_id: str) -> MetricsIndex:
        """An ended run's points file read whole (blocking: called in a thread)."""
        index = MetricsIndex(self.metrics.path(model_id))
        index.read()
        return index

    def keep_metrics(self, run: Run, index: MetricsIndex) -> MetricsIndex:
        """Keep an ended run's index read by ``load_metrics``; its record follows it (when a
        service stopped before it saved the summary of the run's last points)."""
        current = self.runs.get(run.model_id)
        if current is None:  # deleted while its points were read
            return index
        index = self.metrics.keep(run.model_id, index)
        if current is not None and current.status in FINAL_STATES:
            index.take_changed()
            if index.record(self._objective(current)) != current.metrics:
                self._metrics_changed(current, index)
        return index

    def _apply(self, run: Run, status: lifecycle.Status) -> bool:
        """Bring the run up to date with its learner's record; True when the run ended."""
        group = status.command_pgid
        if group and self._command_groups.get(run.model_id) != group:
            self._command_groups[run.model_id] = group
            self._refresh_gpu_roots()
        try:
            new = lifecycle.follow(run, status)
        except IllegalChange as error:  # a record out of order: said, and not taken
            print(f"trainui: {run.model_id}'s status record ignored: {error}", file=sys.stderr)
            return False
        if new is run:
            return False
        ended = new.status in FINAL_STATES
        outside = new.status == HALTED and not self._halt_was_asked(run)
        if outside:  # a learner that could not tell (on a cluster's node, or an older one)
            new = msgspec.structs.replace(
                new, status=FAILED, error_code="S300", status_message=outside_halt()
            )
        if ended:
            self._command_groups.pop(run.model_id, None)
            if run.model_id in self._halt_asked:
                # halted as its attempt was failing: a halt is never restarted (SPEC §11)
                self._halt_asked.discard(run.model_id)
                if self._restartable(run, new):
                    new = msgspec.structs.replace(
                        new, status_message=f"{new.status_message}; halted by request: not "
                        "restarted"
                    )  # fmt: skip
                restarting = None
            else:
                restarting = self._restart(run, new)
            if restarting is not None:
                self._say_restart(run)
                self._save(self._put(restarting))
                self._refresh_gpu_roots()
                return True
            if new.status == COMPLETED:
                self._forget_secrets(run.model_id)
            new = _last_attempt(new)
            reason = self._stopped_early.pop(run.model_id, None) or halt_reason(
                self.run_dir(run.model_id)
            )
            if reason and new.status == HALTED and new.status_message != reason:
                # a learner that could not read the reason (on a cluster's node) said "halted"
                new = msgspec.structs.replace(new, status_message=reason)
            if outside and not new.deleted:  # the bucket's status said halted
                self._store_what_is_left(new)
            if not new.deleted:
                new = self._final_metrics(new)
            if new.deleted:
                self._put(new)
                self._forget(run.model_id)
                self._refresh_gpu_roots()
                return True
        self._save(self._put(new))
        if ended:
            self._refresh_gpu_roots()
        return ended

    def _restartable(self, run: Run, ended: Run) -> bool:
        """Does ``ended`` (how ``run``'s attempt ended) fail for a reason that restarts it,
        with restarts left (SPEC §11)?"""
        return (
            ended.status == FAILED
            and ended.error_code in RESTARTABLE
            and run.attempt < _may_reach(run)
            and not run.deleted
        )

    def _restart(self, run: Run, ended: Run) -> Run | None:
        """``run`` (as it was) restarting, when its attempt ended restartable (``ended``);
        else None. Its attempt is kept in ``attempts``; it waits its back-off, then the queue
        at its place by submission (``schedule``)."""
        if not self._restartable(run, ended):
            return None
        record = _attempt_record(msgspec.structs.replace(ended, attempt=run.attempt))
        delay = self._backoff(run.attempt)
        following = run.attempt + 1
        self._restart_due[run.model_id] = time.monotonic() + delay
        restarting = lifecycle.change(
            run,
            RESTARTING,
            attempt=following,
            attempts=[*(run.attempts or ()), record],
            # when, besides how long: the message is read later than it was written
            status_message=f"attempt {following} of {_may_reach(run)} in {delay:g} s, at "
            f"{time.strftime('%H:%M:%SZ', time.gmtime(time.time() + delay))} "
            f"(attempt {run.attempt}: {ended.status_message})",
            error_code=None,
            exit_code=None,
        )
        return self._fresh_attempt(restarting)

    def _say_restart(self, run: Run) -> None:
        """After the line that ends ``run``'s attempt, the log says that another follows (a
        reader would take that line for the run's end)."""
        from trainui.service.salvage import end_log

        following = run.attempt + 1
        end_log(
            os.path.join(self.run_dir(run.model_id), LOG_FILE),
            f"trainui: restarting: attempt {following} of {_may_reach(run)} in"
            f" {self._backoff(run.attempt):g} s",
        )

    def _backoff(self, attempt: int) -> float:
        """Seconds between the end of ``attempt`` and the start of the next: growing."""
        return min(self.settings.restart_backoff * 2 ** (attempt - 1), MAX_BACKOFF)

    def _backoff_end(self, run: Run) -> float:
        """When (monotonic) a restarting run's back-off ends, from its last attempt's end (a
        service started again meanwhile: not at once)."""
        last = (run.attempts or [{}])[-1]
        ended = parse_time(last.get("finished_at"))
        if ended is None:
            return 0.0
        left = ended + self._backoff(run.attempt - 1) - time.time()
        return time.monotonic() + min(max(left, 0.0), MAX_BACKOFF)

    def _fresh_attempt(self, run: Run) -> Run:
        """``run`` between two attempts: no learner, GPUs or progress; its folder without the
        last attempt's status record (the next learner's must not be taken for it) and Ray
        log state (the next job's log is mirrored anew)."""
        for name in (STATUS_FILE, RAY_LOG_STATE_FILE, HALT_REASON_FILE):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.run_dir(run.model_id), name))
        self._status_mtimes.pop(run.model_id, None)
        return msgspec.structs.replace(
            run,
            gpu_ids=shared([]),
            progress=shared(lifecycle.no_progress()),
            learner_pid=None,
            learner_start=None,
        )

    def _forget_secrets(self, model_id: str) -> None:
        """The run completed: learner.json (the stores' secrets) goes. A failed or halted
        run keeps it for `trainui resume` until it is deleted or purged."""
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.run_dir(model_id), LEARNER_FILE))

    def _finish(self, run: Run, status: str, message: str, code: str | None) -> Run:
        """End the run here (halted before it started, its learner lost or not started)."""
        self._waiting.pop(run.model_id, None)
        self._command_groups.pop(run.model_id, None)
        run = self._change(run, status, save=False, status_message=message, error_code=code)
        run = _last_attempt(run)
        self._restart_due.pop(run.model_id, None)
        if not run.deleted and (run.started_at or run.model_id in self.metrics.live):
            run = self._put(self._final_metrics(run))
        if run.deleted:
            self._forget(run.model_id)
        else:
            self._save(run)
        self._refresh_gpu_roots()
        return run

    def reconcile(self) -> None:
        """After a (re)start: follow learners that still run, fail those that vanished; a run
        between two attempts waits what is left of its back-off."""
        for run in list(self.runs.values()):
            if run.deleted and run.status not in ACTIVE_STATES:
                self._forget(run.model_id)
            elif run.status == RESTARTING and run.model_id not in self._restart_due:
                self._restart_due[run.model_id] = self._backoff_end(run)
        self._last_liveness = 0.0
        self._refresh_gpu_roots()
        self.poll()

    def _store_what_is_left(self, run: Run) -> None:
        """A vanished learner stored nothing: store the run's log, manifest and status in its
        results bucket, in a thread (stores block)."""
        from trainui.service.salvage import store_what_is_left

        thread = threading.Thread(
            target=store_what_is_left,
            args=(self.run_dir(run.model_id), run, self.home),  # frozen: safe to share
            name=f"trainui-salvage-{run.model_id}",
            daemon=True,
        )
        thread.start()
        self._salvages = [t for t in self._salvages if t.is_alive()] + [thread]

    # --- halting and deleting -------------------------------------------------------------

    def halt(self, model_id: str, user: User | None = None) -> Run:
        run = self.get(model_id, user)
        if run.status in FINAL_STATES:
            raise Refusal(409, f"run {model_id} has already ended ({run.status})")
        if run.status in (PENDING, RESTARTING):
            run = self._halt_waiting(run)
            self.schedule()
        else:
            run = self._change(run, run.status, status_message="halting")
            self._halt_asked.add(model_id)  # whatever its attempt reports, it is not restarted
            self._ask_halt(run, HALTED_BY_REQUEST)
        return run

    def _ask_halt(self, run: Run, reason: str) -> None:
        """Tell ``run``'s learner to halt, for ``reason`` (what the run will say), written in
        its folder first: a learner sent a halt signal without one was stopped from outside
        trainui, a loss its restarts start again."""
        with contextlib.suppress(OSError):
            path = os.path.join(self.run_dir(run.model_id), HALT_REASON_FILE)
            write_json_atomic(path, reason.encode())
        self.launcher.halt(run.learner_pid, run.learner_start)

    def _halt_was_asked(self, run: Run) -> bool:
        """Did trainui halt ``run`` (a user, its experiment, the median rule, a delete)?"""
        return (
            run.model_id in self._halt_asked
            or run.model_id in self._stopped_early
            or bool(run.deleted)
            or (run.status_message or "").startswith("halting")
            or halt_reason(self.run_dir(run.model_id)) is not None
        )

    def _halt_waiting(self, run: Run, why: str = "") -> Run:
        """Halt ``run``, which waits to start (pending) or to start its next attempt
        (restarting). That attempt never began: it is not listed among the attempts, and the
        run's attempt is its last one that did, so a resume starts the one that never began."""
        if run.status == PENDING:
            return self._finish(run, HALTED, f"halted before it started{why}", None)
        message = f"halted before attempt {run.attempt} started{why}"
        run = msgspec.structs.replace(run, attempt=run.attempt - 1)
        run = self._finish(run, HALTED, message, None)
        self._store_what_is_left(run)  # the bucket's status said the last attempt failed
        return run

    def resume(self, model_id: str, user: User | None = None) -> Run:
        """A halted or failed run starts again as its next attempt, from its last checkpoint
        (SPEC §11): it waits in the queue at its place by submission."""
        run = self.get(model_id, user)
        if run.status not in (HALTED, FAILED):
            raise Refusal(
                409, f"run {model_id} is {run.status}: only a halted or failed run resumes"
            )
        self._resume(run)
        self.schedule()
        return self.runs[model_id]

    def resume_experiment(
        self, experiment_id: str, user: User | None = None, states: Sequence[str] = ()
    ) -> dict:
        """Each halted or failed run of the experiment (``states``: only those in these)
        starts again as its next attempt, as ``resume`` does one; runs the median rule stopped
        stay halted (the experiment's own verdict). The experiment, with ``resumed`` (their
        IDs) and ``not_resumed`` (``model_id`` and ``reason`` of each run left)."""
        record = self.get_experiment(experiment_id, user)
        wanted = set(states or (HALTED, FAILED))
        resumed: list[str] = []
        left: list[dict] = []
        for run in self.experiment_runs(experiment_id):
            if run.status not in wanted:
                continue
            if run.status == HALTED and stopped_early(run.status_message):
                left.append({"model_id": run.model_id, "reason": run.status_message})
                continue
            try:
                self._resume(run)
            except Refusal as refusal:
                left.append({"model_id": run.model_id, "reason": str(refusal)})
            else:
                resumed.append(run.model_id)
        if not resumed:
            said = " or ".join(sorted(wanted))
            if not left:
                raise Refusal(409, f"experiment {experiment_id} has no {said} run to resume")
            early = sum(stopped_early(n["reason"]) for n in left)
            why = f"{early} stopped early (the median rule), " if early else ""
            why += f"{len(left) - early} cannot resume" if len(left) > early else ""
            raise Refusal(
                409,
                f"none of the {len(left)} {said} runs of experiment {experiment_id} resumes: "
                f"{why.rstrip(', ')}; `trainui resume ID` resumes one run",
                errors=[{"message": n["reason"], "model_id": n["model_id"]} for n in left],
            )
        if record.halted_at:  # resumed: no longer what the user halted
            record = msgspec.structs.replace(record, halted_at=None)
            self.experiments[experiment_id] = record
            self.store.save_experiment(record.row())
        self.schedule()
        described = self.experiment_json(record)
        self.events.publish("experiment", described)
        return {**described, "resumed": resumed, "not_resumed": left}

    def _resume(self, run: Run) -> None:
        """The run (halted or failed) recorded as its next attempt, waiting for its turn; the
        caller schedules."""
        model_id = run.model_id
        # a run halted before it started: its files still wait in the run store
        missing = [
            name
            for name in (LEARNER_FILE, DEFINITION_FILE, MANIFEST_FILE)
            if not os.path.exists(self.run_file(model_id, name))
        ]
        if missing:
            raise Refusal(
                409,
                f"run {model_id} cannot resume: its {' and '.join(missing)} "
                "are no longer kept (a run that ended before trainui kept them); submit it again",
            )
        if run.started_at is None and not run.attempts:  # halted before it ever started
            following = run.attempt
            message = "resumed (it never started), waiting for its turn"
        else:
            run = _last_attempt(run, always=True)
            # when it was resumed: its next attempt's wait counts from then (not from its
            # submission, days before perhaps)
            attempts = [*run.attempts[:-1], {**run.attempts[-1], "resumed_at": utc_now()}]
            run = msgspec.structs.replace(run, attempts=attempts)
            following = run.attempt + 1
            total = last_attempt(following, run.max_restarts, run.attempts)
            message = f"attempt {following} of {total}: resumed, waiting for its turn"
        run = lifecycle.resumed(run, message, following)
        self._save(self._put(self._fresh_attempt(run)))

    def delete(self, model_id: str, user: User | None = None) -> None:
        run = self.get(model_id, user)
        if run.status in ACTIVE_STATES:
            # the learner stores what it has and ends; the run is forgotten when it does
            run = self._change(run, run.status, deleted=1)
            self._ask_halt(run, HALTED_BY_REQUEST)
            self.events.publish("deleted", {"model_id": model_id, "owner": run.owner})
        else:
            self._forget(model_id)
            self.schedule()
            self.store.scrub()

    def _forget(self, model_id: str) -> None:
        self._restart_due.pop(model_id, None)
        run = self.runs.pop(model_id, None)
        self._changed(model_id)
        if run is not None and run.learner_start:
            self.launcher.forget(run.learner_pid, run.learner_start)
        self._waiting.pop(model_id, None)
        self._status_mtimes.pop(model_id, None)
        self._stopped_early.pop(model_id, None)
        self.metrics.forget(model_id)
        self._unwritten.discard(model_id)
        # the folder first: on a full disk, that frees the space the database may need
        shutil.rmtree(self.run_dir(model_id), ignore_errors=True)
        try:
            self.store.delete(model_id)
        except sqlite3.Error as error:
            if not disk_full(error):
                raise
            self._hold_back("delete", model_id)
        owner = run.owner if run is not None else None
        self.events.publish("deleted", {"model_id": model_id, "owner": owner})

    def purge(self) -> int:
        """Forget runs that ended longer ago than the retention time (SPEC §3: 7 days)."""
        before = time.time() - self.settings.retention_days * 86400
        expired = self.store.ended_before(before)
        for model_id in expired:
            self._forget(model_id)
        for experiment_id, record in list(self.experiments.items()):
            # an experiment whose every run was purged goes with them
            if not self.experiment_runs(experiment_id) and record.submitted_at:
                self.experiments.pop(experiment_id, None)
                self._experiment_runs.pop(experiment_id, None)
                shutil.rmtree(self.experiment_dir(experiment_id), ignore_errors=True)
                self.store.delete_experiment(experiment_id)
        return len(expired)

    # --- idling ---------------------------------------------------------------------------

    def idle_for(self) -> float:
        """Seconds with nothing to do: nothing pending or active, no stream open."""
        busy = (
            self.open_streams
            or any(t.is_alive() for t in self._salvages)
            or self.notifier.pending()  # a webhook still retried: the service waits for it
            or any(r.status == PENDING or r.status in ACTIVE_STATES for r in self.runs.values())
        )
        if busy:
            self.last_activity = time.monotonic()
        return time.monotonic() - self.last_activity

    def _save(self, run: Run, files: dict[str, bytes] | None = None) -> None:
        """Every run's new record is saved here (or in ``schedule``'s batch of reasons) and
        published; ``files``: a new run's, kept in the run store until it starts."""
        if files is None:
            try:
                self.store.save(run)
            except sqlite3.Error as error:
                if not disk_full(error):
                    raise
                self._hold_back("save", run.model_id)  # memory has it; the disk, later
        else:
            self.store.save_new(run, files)  # a full disk refuses the submission
        if not run.deleted:
            self.events.publish("run", self.run_json(run))

    def _hold_back(self, kind: str, model_id: str) -> None:
        """A write to the run store that a full disk refused: tried again every DISK_RETRY
        seconds, in order, until it is taken (the service goes on meanwhile)."""
        if not self._held_back:
            self._retry_held_back_at = time.monotonic() + DISK_RETRY
            with contextlib.suppress(OSError):  # the service's log is on that disk too
                print(
                    f"trainui: the run store ({self.home}) is full; changes are kept in memory "
                    "and written once there is space",
                    file=sys.stderr,
                    flush=True,
                )
        self._held_back.pop((kind, model_id), None)
        self._held_back[(kind, model_id)] = None  # last in order

    def _write_held_back(self) -> None:
        for kind, model_id in list(self._held_back):
            try:
                if kind == "save":
                    run = self.runs.get(model_id)
                    if run is not None:  # else deleted meanwhile
                        self.store.save(run)
                elif kind == "written":
                    self.store.written(model_id)
                else:
                    self.store.delete(model_id)
            except sqlite3.Error as error:
                if not disk_full(error):
                    raise
                return
            del self._held_back[(kind, model_id)]

    def close(self) -> None:
        self.launcher.close()
        deadline = time.monotonic() + SALVAGE_WAIT
        for thread in self._salvages:  # let a log being stored reach its bucket
            thread.join(max(0.0, deadline - time.monotonic()))
        # the events the hooks have not taken yet: kept for the next start
        left = self.notifier.shutdown(min(NOTIFY_WAIT, max(0.0, deadline - time.monotonic())))
        if left:
            print(
                f"trainui: notify: {left} event{'s' if left != 1 else ''} not delivered yet:"
                " kept, for the service's next start",
                file=sys.stderr,
            )
        self.store.close()


def _may_reach(run: Run) -> int:
    """The attempt ``run`` may reach by its restarts (``attempt 2 of 4``: 4)."""
    return last_attempt(run.attempt, run.max_restarts, run.attempts)


def _attempt_record(run: Run) -> dict:
    """How an attempt of ``run`` ended, as ``attempts`` keeps it."""
    return {
        "attempt": run.attempt,
        "status": run.status,
        "error_code": run.error_code,
        "exit_code": run.exit_code,
        "status_message": run.status_message,
        "started_at": run.started_at,
        "finished_at": run.finished_at or utc_now(),
    }


def _last_attempt(run: Run, always: bool = False) -> Run:
    """An ended run that could restart (``always``: any): its last attempt in ``attempts``
    too (SPEC §11)."""
    if not always and not run.max_restarts and not run.attempts and run.attempt == 1:
        return run
    if any(a.get("attempt") == run.attempt for a in run.attempts or ()):
        return run
    return msgspec.structs.replace(run, attempts=[*(run.attempts or ()), _attempt_record(run)])


def _store_spec(store) -> dict:
    """A manifest's store as the learner and the results download open it (secrets included)."""
    return {"type": store.type, "bucket": store.bucket, "connection": dict(store.connection)}


def _learner_spec(model_id: str, manifest: Manifest, home: str, settings, now: str) -> dict:
    return {
        "model_id": model_id,
        "name": manifest.name,
        "command": manifest.command,
        "resource": manifest.resource,
        "gpu_ids": [],
        "cpu_mode": False,
        "data": _store_spec(manifest.data),
        "results": _store_spec(manifest.results),
        "home": home,
        "halt_grace_seconds": settings.halt_grace_seconds,
        "max_restarts": manifest.max_restarts,
        "checkpoint_interval": manifest.checkpoint_interval,
        "log_max_bytes": settings.log_max_bytes,
        "submitted_at": now,
        # read from the manifest here, once: the learner then parses no YAML
        "evaluation_metrics": [source.as_spec() for source in manifest.metrics],
    }


def _store_types(run: Run) -> frozenset[str]:
    """The types of object store a run reads its data from and stores its results in."""
    return frozenset(ref.get("type", "") for ref in (run.data, run.results) if ref)


def _ids(ids: list[int]) -> str:
    return ",".join(str(i) for i in ids)


async def watch(manager: RunManager, on_idle=None) -> None:
    """The service's heartbeat: follow learners, purge history, exit when idle."""
    while True:
        try:
            manager.poll()
        except Exception:  # one bad status file must not stop the heartbeat: say it, go on
            traceback.print_exc()
        if on_idle is not None and manager.idle_for() >= manager.settings.idle_exit_seconds:
            on_idle()
            return
        await asyncio.sleep(WATCH_INTERVAL)
