"""The learner: executes one run end to end, as ``python -m trainui.learner RUN_DIR``.

The service writes the run folder (``learner.json``, ``model.zip``, ``manifest.yml``) and starts
one learner per run, detached. The learner stages the training data, unpacks the model
definition, runs the training command, stores the results and records every state change by
replacing ``status.json`` (SPEC §3). SIGTERM asks it to halt the run.

On a Ray cluster it runs as ``python -m trainui.learner --ray`` in the job's working directory,
the Ray package holding the same three files. It copies them into a private run folder on its
node (mode 0700, under its own home: ``$TRAINUI_HOME``, else ``~/.cache/trainui``, which also
holds its dataset cache), deletes ``learner.json`` once read, and does the run exactly as above.
What the service learns of it passes through the learner's stdout, which Ray keeps as the job's
log: a thread copies ``training-log.txt`` there as it grows, and each status record as a line
``@@trainui-status:<nonce> <json>``, with the run's nonce from ``learner.json`` (the command
never sees it, so it cannot forge one), only between two lines of the log, never inside one.

It sits on the submit-to-first-log-line path, so it imports only what it needs (no yaml, no
asyncio, no concurrent.futures) and defers the rest to the phase that uses it. The training
command's output comes through a pipe that a thread copies into ``training-log.txt`` in large
blocks (``_LogPump``): that is where the log's cap (``log_max_bytes``) is kept, and where a
full disk is caught and said, instead of the command's writes failing unseen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence

from trainui.core.runs import (
    COMPLETED,
    DEFAULT_LOG_MAX_BYTES,
    DEFINITION_FILE,
    DOWNLOADING,
    FAILED,
    HALTED,
    LEARNER_ERRORS_FILE,
    LEARNER_FILE,
    LOG_FILE,
    MANIFEST_FILE,
    RUNNING,
    STATUS_FILE,
    STATUS_MARKER,
    STORING,
    WORK_DIR,
    disk_full_message,
    is_disk_full,
    read_json,
    utc_now,
    write_json_atomic,
)
from trainui.core.urls import mask_urls
from trainui.storage import ObjectStore, StoreError, iter_files, open_store

_STARTED = time.time()  # once the learner's imports are done

USAGE = """\
usage: python -m trainui.learner RUN_DIR
       python -m trainui.learner --ray
       python -m trainui.learner --spare

Executes the run prepared in RUN_DIR (learner.json, model.zip, manifest.yml): stages the
training data, unpacks the model definition, runs the training command and stores the results,
recording each state change in RUN_DIR/status.json. SIGTERM halts the run.

With --ray, the run's files are in the current folder (a Ray job's working_dir): the learner
works in a private folder of its own and reports the log and each state change on stdout.

With --spare (what the service starts ahead), the learner imports what a run needs and waits
for RUN_DIR on stdin, then runs it as above.
"""

UNPACKING = "unpacking"  # a phase of the learner, shown as `downloading` in status.json
PROGRESS_INTERVAL = 0.25  # seconds between progress writes of status.json
LEFTOVER_GRACE = 2.0  # after the command exits: SIGTERM to what is left, then SIGKILL
TRAINING_STATUS_FILE = "training-status.json"
DEFINITION_KEY = "_submitted_code/model.zip"
_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
# Python ignores these; a training command must get the defaults back (SIGINT and SIGQUIT too:
# a shell starting the learner in the background may have ignored them).
_RESTORED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGPIPE", "SIGXFSZ", "SIGINT", "SIGQUIT", "SIGTERM", "SIGHUP")
    if hasattr(signal, name)
)
# never in the command's environment: where the service keeps its secrets, and its token
_HIDDEN_VARIABLES = frozenset(("TRAINUI_HOME", "TRAINUI_TOKEN"))
# nor, in the sandbox, the credentials of the service's own environment
_SANDBOX_HIDDEN_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "OS_PASSWORD",
    "OS_TOKEN", "ST_KEY", "SSH_AUTH_SOCK", "XDG_RUNTIME_DIR",
)  # fmt: skip
_PHASE_ERROR_CODES = {DOWNLOADING: "S302", UNPACKING: "S301", STORING: "S303"}
COMPLETED_MESSAGE = "completed: the training command exited with code 0"
RELAY_CHUNK = 1 << 20  # bytes the relay copies from the log to stdout at a time
RELAY_IDLE = 0.05  # seconds the relay sleeps when the log has not grown
HEARTBEAT = 20.0  # seconds of a quiet log after which the relay says it is alive (an empty record)
PUMP_CHUNK = 64 << 10  # bytes the log pump reads from the command's pipe at a time
PUMP_SMALL = 4096  # a read shorter than this is followed by a pause of PUMP_PAUSE seconds
PUMP_PAUSE = 0.002
PIPE_BYTES = 1 << 20  # the pipe's buffer, when the kernel allows: bursts never block the command
RESERVE_FILE = "status.reserve"  # space kept for the final status.json, freed when the disk is full
RESERVE_BYTES = 64 << 10


class _Failed(Exception):
    """The run failed: ``code`` is its SPEC error code, ``message`` the sentence for the user."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Learner:
    """One run, executed from its run folder. ``run()`` returns the learner's exit status."""

    def __init__(self, run_dir: str, config: dict, nonce: str | None = None) -> None:
        self.run_dir = run_dir
        self.config = config
        self.nonce = nonce  # on a Ray node: status records go to stdout, marked with it
        self.relay: _Relay | None = None
        self.model_id: str = config["model_id"]
        # The service gives its home; a run folder is <home>/runs/<id> otherwise.
        self.home: str = config.get("home") or os.path.dirname(os.path.dirname(run_dir))
        gpu_ids = config.get("gpu_ids")
        if gpu_ids is None and "gpu_ids" in config:
            # null: a cluster (Ray) chose the GPUs and says which in CUDA_VISIBLE_DEVICES
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
            gpu_ids = [g.strip() for g in visible.split(",") if g.strip()]
        self.gpu_ids = [str(i) for i in gpu_ids or ()]
        self.cpu_mode = bool(config.get("cpu_mode")) or not self.gpu_ids
        self.grace = float(config.get("halt_grace_seconds", 10))
        work = os.path.join(run_dir, WORK_DIR)
        self.work = work
        self.dirs = {
            "DATA_DIR": os.path.join(work, "data"),
            "MODEL_DIR": os.path.join(work, "model"),
            "RESULT_DIR": os.path.join(work, "results"),
            "LOG_DIR": os.path.join(work, "logs"),
            "CHECKPOINT_DIR": os.path.join(work, "checkpoints"),
        }
        self.sandboxed = False  # the command runs in the sandbox (trainui.sandbox)
        self.sandbox_user = None  # as this user (the learner runs as root)
        self.private: dict[str, str] = {}  # the sandbox's /tmp and HOME
        self.phase = DOWNLOADING
        self.halt_requested = False
        self.command_pgid: int | None = None
        self.command_done = False
        self.term_sent = False  # SIGTERM went to the command's group (a halt)
        self.kill_sent = False  # and SIGKILL
        self.halt_deadline = 0.0
        self.log_fd = -1
        self.final = COMPLETED
        self.error_code: str | None = None
        self.message = COMPLETED_MESSAGE
        self.exit_code: int | None = None
        self.storing_failed = False
        self.not_stored: list[str] = []  # keys under <id>/ the results bucket did not take
        self.log_failure: str | None = None  # the log could not be written: why, in a sentence
        self._last_write = 0.0
        self.status = _new_status(DOWNLOADING, "staging the training data")
        self.status["gpu_ids"] = [int(g) if g.isdigit() else g for g in self.gpu_ids]

    # ------------------------------------------------------------------------- the run

    def run(self) -> int:
        log_path = os.path.join(self.run_dir, LOG_FILE)
        self.log_fd = os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        if self.nonce is not None:
            # stdout is the job's log: only the relay writes there, and what the learner says
            # on stderr (a traceback) goes into the log, between the command's lines
            os.dup2(self.log_fd, 2)
            self.relay = _Relay(log_path, self.nonce)
        else:
            self._reserve_space()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_halt_signal)
        signal.signal(signal.SIGALRM, self._on_grace_over)
        self._write_status()
        try:
            self._prepare_work()
            self._stage()
            if not self.halt_requested:
                self._unpack()
            if not self.halt_requested:
                self._run_command()
            if self.halt_requested:
                self._set_outcome(HALTED, None, "halted by request")
        except _Failed as failure:
            self._set_outcome(FAILED, failure.code, failure.message)
        except Exception as exc:
            code = _PHASE_ERROR_CODES.get(self.phase, "S300")
            if is_disk_full(exc):
                self._set_outcome(FAILED, code, disk_full_message(exc))
            else:
                self._report_crash()
                self._set_outcome(FAILED, code, _learner_error(exc))
        try:
            self._store()
        except Exception as exc:
            self._report_crash()
            self._storing_failed(_learner_error(exc))
        self._finish()
        return 0

    def _set_outcome(self, final: str, code: str | None, message: str) -> None:
        self.final, self.error_code, self.message = final, code, mask_urls(message)

    def _prepare_work(self) -> None:
        if os.path.lexists(self.work):  # left by an earlier learner of this run
            import shutil

            shutil.rmtree(self.work)
        for name in ("DATA_DIR", "RESULT_DIR", "LOG_DIR", "CHECKPOINT_DIR"):
            os.makedirs(self.dirs[name])
        self._sandbox()

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
            objects = list(store.list_objects())
            total = sum(obj.size for obj in objects)
            what = f"{_count(len(objects), 'object')} ({_size(total)})"
            self._log(f"staging {what} from {store.description}")
            self.status["status_message"] = f"staging {what} from {store.description}"
            self.status["progress"].update(bytes_total=total, objects_total=len(objects))
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
        self.status["timings"]["staged"] = time.time()

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
        progress = self.status["progress"]
        progress.update(
            bytes_done=counters.bytes_done,
            objects_done=counters.objects_done,
            bytes_total=max(progress["bytes_total"], counters.bytes_total),
            objects_total=max(progress["objects_total"], counters.objects_total),
        )
        if force or time.monotonic() - self._last_write >= PROGRESS_INTERVAL:
            self._write_status()

    def _count_progress(self, size: int) -> None:
        progress = self.status["progress"]
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
        self.status["timings"]["unpacked"] = time.time()

    # ----------------------------------------------------------------------- 3. running

    def _command_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _HIDDEN_VARIABLES}
        env.update(self.dirs)
        env.update(
            TRAINING_ID=self.model_id,
            GPU_COUNT=str(len(self.gpu_ids)),
            CUDA_VISIBLE_DEVICES="" if self.cpu_mode else ",".join(self.gpu_ids),
            LEARNER_ID="1",
            NUM_LEARNERS="1",
            PYTHONUNBUFFERED="1",
        )
        # `python3` in the command is trainui's Python (with numpy) unless the user's PATH
        # already puts it first.
        bin_dir = os.path.dirname(sys.executable)
        path = env.get("PATH", "")
        if bin_dir and path.split(os.pathsep)[0] != bin_dir:
            env["PATH"] = bin_dir + os.pathsep + path if path else bin_dir
        if self.sandboxed:
            # in the sandbox, the user's home and the system's temporary folder do not exist:
            # both are the run's own
            env.update(HOME=self.private["home"], TMPDIR="/tmp")
            for name in _SANDBOX_HIDDEN_VARIABLES:
                env.pop(name, None)
        return env

    def _sandbox(self) -> None:
        """Decide whether the command runs sandboxed (``sandbox`` in learner.json), and as
        whom; make its private folders."""
        wanted = self.config.get("sandbox")
        if not isinstance(wanted, dict):
            return
        from trainui import sandbox

        if not sandbox.installed():
            if wanted.get("required", True):
                raise _Failed("S300", f"the run cannot be sandboxed: {sandbox.unavailable()}")
            self._log(f"warning: not sandboxed on this node: {sandbox.unavailable()}")
            return
        if os.geteuid() == 0:
            try:
                self.sandbox_user = sandbox.resolve_user(wanted.get("unix_user"))
            except sandbox.SandboxError as error:
                raise _Failed("S300", f"the run cannot be sandboxed: {error}") from None
        self.sandboxed = True
        for name in ("tmp", "home"):
            self.private[name] = os.path.join(self.work, name)
            os.makedirs(self.private[name], mode=0o700, exist_ok=True)

    def _command_line(self) -> list[str]:
        argv = ["/bin/sh", "-c", self.config["command"]]
        if not self.sandboxed:
            return argv
        from trainui import sandbox

        writable = [self.dirs[k] for k in ("MODEL_DIR", "RESULT_DIR", "LOG_DIR", "CHECKPOINT_DIR")]
        writable.append(self.private["home"])
        sandbox.give_to(self.sandbox_user, [*writable, self.private["tmp"]])
        extra = self.config["sandbox"].get("paths") or []
        return sandbox.wrap(
            argv,
            readonly=[self.dirs["DATA_DIR"]],
            writable=writable,
            tmp_dir=self.private["tmp"],
            hide=[self.home, self.run_dir],
            user=self.sandbox_user,
            extra_readonly=[p for p in extra if isinstance(p, str)],
            gpu_devices=self.config["sandbox"].get("gpu_devices"),
        )

    def _run_command(self) -> None:
        self.phase = RUNNING
        if self.cpu_mode:
            where = "running on the CPU: no GPU on this machine"
        else:
            where = f"running on GPU {','.join(self.gpu_ids)}"
        if self.sandboxed:
            who = f" as {self.sandbox_user.name}" if self.sandbox_user is not None else ""
            self._log(f"{where}, sandboxed (bubblewrap){who}")
        else:
            self._log(where)
        _become_subreaper()  # orphans of the command are then ours to reap, not init's
        pump = _LogPump(
            self.log_fd,
            os.path.join(self.run_dir, LOG_FILE),
            self.config.get("log_max_bytes", DEFAULT_LOG_MAX_BYTES),
            self._on_log_error,
        )
        file_actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            *pump.file_actions(),
        ]
        # posix_spawn has no working-directory action before Python 3.13: the child inherits
        # the learner's, which nothing else here depends on.
        os.chdir(self.dirs["MODEL_DIR"])
        argv = self._command_line()
        try:
            pid = os.posix_spawnp(
                argv[0],
                argv,
                self._command_env(),
                file_actions=file_actions,
                setsid=True,  # its own session and process group, whose id is its pid
                setsigmask=(),
                setsigdef=_RESTORED_SIGNALS,
            )
        except OSError as exc:
            pump.close()
            raise _Failed("S300", f"the training command could not be started: {exc}") from None
        finally:
            os.chdir(self.run_dir)
        self.command_pgid = pid  # before the pump starts: a failed write stops the command
        pump.start()
        if self.halt_requested:  # the request came while the command was being started
            self._stop_command()
        self.status.update(status=RUNNING, status_message=where, command_pgid=pid)
        self.status["progress"]["phase"] = None
        self.status["timings"]["command_started"] = time.time()
        self._write_status()
        try:
            # Blocks until the command ends; a halt request's handler runs meanwhile and the
            # wait resumes (PEP 475).
            _, wait_status = os.waitpid(pid, 0)
        finally:
            self.command_done = True
            self._end_process_group(pid)
            if not pump.finish(LEFTOVER_GRACE):
                self._log(
                    "warning: a process the command started still holds its output open;"
                    " what it writes is dropped"
                )
        self.status["timings"]["command_ended"] = time.time()
        code = os.waitstatus_to_exitcode(wait_status)
        if self.sandboxed:
            from trainui.sandbox import exit_code

            code = exit_code(code)
        self.exit_code = self.status["exit_code"] = code
        self._end_log_line()
        if pump.cut:
            self._log(
                f"the log's cap (TRAINUI_LOG_MAX_BYTES) dropped {_size(pump.dropped)}"
                " of the command's output"
            )
        how = _how_it_ended(code)
        self._log(f"command {how}")
        if self.log_failure is not None:
            raise _Failed("S300", self.log_failure)
        if code != 0 and not self.halt_requested:
            raise _Failed("C201", f"the training command {how}")

    def _on_log_error(self, error: OSError, path: str) -> None:
        """The log pump could not write the log (called once, from its thread): the run
        fails saying why, and its command is stopped, so that it fills the disk no further."""
        if is_disk_full(error):
            reason = disk_full_message(error, path)
        else:
            reason = f"the log could not be written: {error.strerror or error} ({path})"
        self.log_failure = f"{reason}; the training command was stopped"
        self._stop_command()

    def _end_process_group(self, pgid: int) -> None:
        """Stop whatever the command left running in its process group, so no GPU stays held."""
        deadline = self.halt_deadline if self.term_sent else time.monotonic() + LEFTOVER_GRACE
        give_up = deadline + LEFTOVER_GRACE
        signalled = False
        while True:
            _reap_children()
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            except PermissionError:  # a member changed its user id: nothing more to do
                break
            now = time.monotonic()
            if self.sandboxed and not signalled and now < deadline:
                # the sandbox's first process is ending, and takes every process of the run
                # with it: nothing is left to stop, only a moment to wait
                pass
            elif not signalled and not self.term_sent:
                self._log(f"stopping what the command left running (process group {pgid})")
                _kill_group(pgid, signal.SIGTERM)
                signalled = True
            elif now >= deadline and not self.kill_sent:
                self._kill_command()
            elif now >= give_up:
                self._log(f"warning: process group {pgid} is still there after SIGKILL")
                break
            time.sleep(0.02)
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _stop_command(self) -> None:
        if self.term_sent or self.command_pgid is None:
            return
        self.term_sent = True
        self.halt_deadline = time.monotonic() + self.grace
        self._log(f"stopping the training command: SIGTERM now, SIGKILL after {self.grace:g} s")
        if self.sandboxed:
            from trainui.sandbox import command_group

            group = command_group(self.command_pgid)
            if group is None:  # the sandbox is still being made: nothing of the command yet
                self.kill_sent = True
                self._log("the command had not started yet: SIGKILL to its sandbox")
                _kill_group(self.command_pgid, signal.SIGKILL)
                return
            _kill_group(group, signal.SIGTERM)
        else:
            _kill_group(self.command_pgid, signal.SIGTERM)
        signal.setitimer(signal.ITIMER_REAL, max(self.grace, 0.001))

    def _on_halt_signal(self, signum: int, _frame: object) -> None:
        # Runs in the main thread between two bytecodes: set flags, signal the command, log a
        # line; never write status.json here (the main thread may be halfway through it).
        if self.halt_requested or self.command_done or self.phase == STORING:
            return  # storing (and what leads to it once the command has ended) always finishes
        self.halt_requested = True
        self._log(f"halt requested ({_signal_name(signum)})")
        if self.command_pgid is not None:
            self._stop_command()

    def _on_grace_over(self, _signum: int, _frame: object) -> None:
        if not self.command_done:
            self._kill_command()

    def _kill_command(self) -> None:
        if self.kill_sent or self.command_pgid is None:
            return
        self.kill_sent = True
        if self.term_sent:
            self._log(f"the training command did not stop within {self.grace:g} s: SIGKILL")
        else:
            self._log(
                f"what the command left running did not stop in {LEFTOVER_GRACE:g} s: SIGKILL"
            )
        _kill_group(self.command_pgid, signal.SIGKILL)

    # ----------------------------------------------------------------------- 4. storing

    def _store(self) -> None:
        self.phase = STORING
        results = self.config["results"]
        prefix = f"{self.model_id}/"
        progress = _progress(STORING)
        self.status.update(status=STORING, progress=progress)
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

        self.status["finished_at"] = utc_now()
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
            done = progress["objects_done"] + 1  # the log, stored next
            count = _count(total, "file") if done == total else f"{done} of {total} files"
            self._log(f"stored {count} in {store.description} under {prefix}")
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
        self.status["timings"]["stored"] = time.time()

    def _store_results(self, store: ObjectStore, prefix: str) -> None:
        """Store RESULT_DIR, the model definition and the manifest (not yet status and log)."""
        where = f"{store.description} under {prefix}"
        jobs = [
            (prefix + key, path, size) for key, path, size in iter_files(self.dirs["RESULT_DIR"])
        ]
        for key, name in ((DEFINITION_KEY, DEFINITION_FILE), (MANIFEST_FILE, MANIFEST_FILE)):
            path = os.path.join(self.run_dir, name)
            if os.path.isfile(path):
                jobs.append((prefix + key, path, os.path.getsize(path)))
        count = len(jobs) + 2  # and training-status.json and training-log.txt
        self.status["status_message"] = f"storing results in {where}"
        self.status["progress"].update(bytes_total=sum(job[2] for job in jobs), objects_total=count)
        self._write_status()
        self._log(f"storing {_count(count, 'file')} in {where}")

        from trainui.storage import staging

        progress = self.status["progress"]
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

    def _upload(self, store: ObjectStore, path: str, key: str) -> None:
        size = os.path.getsize(path)
        store.upload(path, key)
        self.status["progress"]["bytes_total"] += size
        self._count_progress(size)

    def _storing_failed(self, reason: str, log: bool = True) -> None:
        if log:
            self._log(f"results could not be stored: {reason}")
        if self.storing_failed:
            return  # the first reason is the one to fix
        self.storing_failed = True
        if self.final == FAILED:
            # The earlier failure is what the user must fix first; keep its code.
            self.message += mask_urls(f"; results could not be stored: {reason}")
        else:
            halted = "halted by request; " if self.final == HALTED else ""
            self._set_outcome(FAILED, "S303", f"{halted}results could not be stored: {reason}")

    def _training_status(self) -> dict:
        config = self.config
        return {
            "model_id": self.model_id,
            "name": config.get("name"),
            "status": self.final,
            "status_message": self.message,
            "error_code": self.error_code,
            "exit_code": self.exit_code,
            "resource": config.get("resource"),
            "gpu_ids": self.status["gpu_ids"],
            "submitted_at": config.get("submitted_at"),
            "started_at": self.status["started_at"],
            "finished_at": self.status["finished_at"],
            "timings": self.status["timings"],
            # what the results bucket holds of the run is not all it should: see status_message
            "results_partial": self.storing_failed,
            "objects_not_stored": sorted(self.not_stored),  # keys under <id>/ known missing
        }

    def _outcome_line(self) -> str:
        if self.final == COMPLETED:
            return "completed"
        if self.final == HALTED:
            return "halted by request"
        return (
            f"failed ({self.error_code}): {self.message}"
            if self.error_code
            else f"failed: {self.message}"
        )

    # ------------------------------------------------------------------------ the end

    def _finish(self) -> None:
        _remove(os.path.join(self.run_dir, LEARNER_FILE))  # it holds the stores' secrets
        import shutil

        shutil.rmtree(self.work, ignore_errors=True)  # first: on a full disk, it frees space
        self.status.update(
            status=self.final,
            status_message=self.message,
            error_code=self.error_code,
            exit_code=self.exit_code,
        )
        self.status["finished_at"] = self.status["finished_at"] or utc_now()
        self.status["progress"]["phase"] = None
        self._write_status(final=True)
        if self.relay is not None:
            self.relay.close()  # the whole log, then the final record
        _remove(os.path.join(self.run_dir, RESERVE_FILE))
        os.close(self.log_fd)

    # -------------------------------------------------------------------------- helpers

    def _write_status(self, final: bool = False) -> None:
        """Replace status.json. On a full disk the old one stays and the run goes on (the
        next change is written again); the final one may use the space kept for it."""
        self.status["updated_at"] = utc_now()
        if self.relay is not None:
            self.relay.record(self.status, os.fstat(self.log_fd).st_size)
            self._last_write = time.monotonic()
            return
        path = os.path.join(self.run_dir, STATUS_FILE)
        try:
            write_json_atomic(path, self.status)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            reserve = os.path.join(self.run_dir, RESERVE_FILE)
            if final and os.path.exists(reserve):
                _remove(reserve)
                with contextlib.suppress(OSError):  # nothing more to free: the old one stays
                    write_json_atomic(path, self.status)
        self._last_write = time.monotonic()

    def _reserve_space(self) -> None:
        """Keep a little space for the final status.json, which says how the run ended even
        when the disk fills up (a full disk must never leave a run without its outcome)."""
        path = os.path.join(self.run_dir, RESERVE_FILE)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        except OSError:  # a file system without fallocate: written, then
            with contextlib.suppress(OSError):
                os.pwrite(fd, bytes(RESERVE_BYTES), 0)
        finally:
            os.close(fd)

    def _log(self, text: str) -> None:
        # Never raises: a full disk must not stop the learner from recording the outcome,
        # and the halt handler calls this between any two bytecodes of the main code.
        # a URL's user-info is a password (of a run recorded before manifests refused them)
        with contextlib.suppress(OSError):
            os.write(self.log_fd, f"trainui: {mask_urls(text)}\n".encode())

    def _end_log_line(self) -> None:
        """Start the learner's next line on a line of its own if the command's output did not."""
        size = os.fstat(self.log_fd).st_size
        if size and os.pread(self.log_fd, 1, size - 1) != b"\n":
            with contextlib.suppress(OSError):  # a full disk: the failure is said elsewhere
                os.write(self.log_fd, b"\n")

    @staticmethod
    def _report_crash() -> None:
        import traceback

        with contextlib.suppress(OSError):  # learner-errors.txt on a full disk
            traceback.print_exc()  # into learner-errors.txt
            sys.stderr.flush()


class _LogPump:
    """The command's stdout and stderr, from a pipe into the run's log, copied by a thread.

    The command writes into a pipe, not into the log file, so that the learner keeps a hand
    on what reaches the disk: this thread copies what comes into the log, up to ``max_bytes``
    of it (0: no cap); there it says in the log where it cut, then reads on and drops the
    rest, so the command never blocks on its output. A write that fails (a full disk) is
    reported once, through ``on_error(error, path)``, and what follows is dropped too.

    ``file_actions()`` gives the command the pipe as its stdout and stderr; ``start()``, once
    it was started, closes the learner's copy of that end (the pipe ends when the command's
    last process does) and starts the thread; ``finish(timeout)`` waits for that end."""

    def __init__(self, log_fd: int, log_path: str, max_bytes: int, on_error) -> None:
        self.log_fd = log_fd
        self.log_path = log_path
        self.max_bytes = max_bytes
        self.on_error = on_error
        self.read_fd, self.write_fd = os.pipe()  # neither is inherited across exec
        with contextlib.suppress(OSError, AttributeError, ImportError):
            import fcntl

            fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self.kept = 0  # bytes of the command's output written to the log
        self.dropped = 0  # bytes read and not written (beyond the cap, or after a failure)
        self.cut = False
        self.failed = False
        self.line_ended = True  # what was written ends a line
        self.closed = False  # the learner is done with the log: nothing more is written
        import threading

        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # a write and closing never overlap

    def file_actions(self) -> list[tuple]:
        return [
            (os.POSIX_SPAWN_DUP2, self.write_fd, 1),
            (os.POSIX_SPAWN_DUP2, self.write_fd, 2),
        ]

    def start(self) -> None:
        import threading

        os.close(self.write_fd)
        self.write_fd = -1
        self._thread = threading.Thread(target=self._run, name="trainui-log", daemon=True)
        self._thread.start()

    def finish(self, timeout: float) -> bool:
        """Wait until the pipe is drained and closed; False when something the command started
        still holds it after ``timeout`` seconds (from then on its output is dropped)."""
        assert self._thread is not None
        self._thread.join(timeout)
        done = not self._thread.is_alive()
        with self._lock:
            self.closed = True
        if done:
            os.close(self.read_fd)
        return done

    def close(self) -> None:
        """The command was never started: close both ends."""
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                os.close(fd)

    def _run(self) -> None:
        read, fd, sleep = os.read, self.read_fd, time.sleep
        while True:
            try:
                data = read(fd, PUMP_CHUNK)
            except OSError:
                return
            if not data:
                return  # every process that held the pipe has ended
            if self.cut or self.failed:
                self.dropped += len(data)
            elif self.max_bytes and self.kept + len(data) > self.max_bytes:
                self._cut(data)
            else:
                self._write(data)
                self.kept += len(data)
            if len(data) < PUMP_SMALL:
                # a command writing many small lines would wake this thread at each: a pause
                # lets them gather in the pipe (a line waits PUMP_PAUSE at most, the first none)
                sleep(PUMP_PAUSE)

    def _cut(self, data: bytes) -> None:
        """Write what fits under the cap (to its last whole line), then the notice."""
        room = data[: max(0, self.max_bytes - self.kept)]
        end = room.rfind(b"\n") + 1 or len(room)
        kept = room[:end]
        self.cut = True
        self.dropped += len(data) - len(kept)
        self.kept += len(kept)
        if kept:
            self._write(kept)
        notice = (
            f"trainui: the log is cut here, at {self.max_bytes:,} bytes of the command's output"
            " (TRAINUI_LOG_MAX_BYTES); the command goes on, its further output is dropped\n"
        ).encode()
        self._write(notice if self.line_ended else b"\n" + notice)

    def _write(self, data: bytes) -> None:
        if self.failed:
            self.dropped += len(data)
            return
        view = memoryview(data)
        with self._lock:
            try:
                while view and not self.closed:
                    view = view[os.write(self.log_fd, view) :]
            except OSError as error:
                failure = error
            else:
                failure = None
            self.dropped += len(view)
        if failure is not None:
            self.failed = True
            self.on_error(failure, self.log_path)
        self.line_ended = data.endswith(b"\n")


class _Relay:
    """Copies the run's log to stdout as it grows, and status records between its lines.

    The command's output goes into the log file, as it does locally; this thread reads what
    was added, in large blocks, and writes it to stdout (on a Ray node, the job's log). A record
    is written at the first line boundary at or after the point of the log where it was made,
    so it never splits a line of the command's output. ``close`` copies the rest and ends."""

    def __init__(self, log_path: str, nonce: str, out_fd: int = 1) -> None:
        import collections
        import threading

        self.fd = os.open(log_path, os.O_RDONLY)
        self.out = out_fd
        self.prefix = f"{STATUS_MARKER}{nonce} ".encode()
        self.pos = 0  # bytes of the log copied
        self.boundary = True  # what was copied ends a line
        self.pending: collections.deque[tuple[int, bytes]] = collections.deque()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.last_write = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="trainui-relay", daemon=True)
        self.thread.start()

    def record(self, status: dict, log_size: int) -> None:
        import json

        line = self.prefix + json.dumps(status, separators=(",", ":")).encode() + b"\n"
        with self.lock:
            self.pending.append((log_size, line))
        self.wake.set()

    def close(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join()
        os.close(self.fd)

    def _run(self) -> None:
        while True:
            stopping = self.stopping  # read first: after it is set, the log no longer grows
            if self._pump():
                continue
            if stopping:
                with self.lock:
                    rest = list(self.pending)
                    self.pending.clear()
                if rest and not self.boundary:  # a last line without its newline
                    self._write(b"\n")
                for _, line in rest:
                    self._write(line)
                return
            if self.boundary and time.monotonic() - self.last_write >= HEARTBEAT:
                self._write(self.prefix + b"{}\n")
            self.wake.wait(RELAY_IDLE)
            self.wake.clear()

    def _pump(self) -> bool:
        """Copy some of the log, or write the next record that is due; False: nothing to do."""
        with self.lock:
            first = self.pending[0] if self.pending else None
            # what a record queued from now on is made after: never read beyond it, so that
            # a record comes before what the learner logged after making it
            end = os.fstat(self.fd).st_size
        if first is not None and self.pos >= first[0] and self.boundary:
            self._write(first[1])
            with self.lock:
                self.pending.popleft()
            return True
        limit = min(RELAY_CHUNK, end - self.pos)
        if first is not None and self.pos < first[0]:
            limit = min(limit, first[0] - self.pos)
        if limit <= 0:
            return False
        try:
            data = os.pread(self.fd, limit, self.pos)
        except OSError:
            return False
        if not data:
            return False
        if first is not None and self.pos >= first[0]:
            end = data.find(b"\n")  # the record is due: copy only up to the end of this line
            if end >= 0:
                data = data[: end + 1]
        self._write(data)
        self.pos += len(data)
        self.boundary = data.endswith(b"\n")
        return True

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.out, view)
            except OSError:
                return  # stdout is gone: nobody is left to tell
            view = view[written:]
        self.last_write = time.monotonic()


# ------------------------------------------------------------------------------ functions


def _new_status(state: str, message: str) -> dict:
    """A fresh status.json for a learner that has just started."""
    return {
        "status": state,
        "status_message": message,
        "error_code": None,
        "exit_code": None,
        "started_at": utc_now(),
        "finished_at": None,
        "progress": _progress(DOWNLOADING if state == DOWNLOADING else None),
        "learner_pid": os.getpid(),
        "command_pgid": None,
        "timings": {
            "learner_started": _STARTED,
            "staged": None,
            "unpacked": None,
            "command_started": None,
            "command_ended": None,
            "stored": None,
        },
        "updated_at": None,
    }


def _progress(phase: str | None) -> dict:
    return {
        "phase": phase,
        "bytes_done": 0,
        "bytes_total": 0,
        "objects_done": 0,
        "objects_total": 0,
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _size(n: int) -> str:
    """Bytes the way the log shows them: ``512 bytes``, ``38.2 kB``, ``1.5 GB``."""
    if n < 1000:
        return "1 byte" if n == 1 else f"{n} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            break
    return f"{n:.1f} {unit}"


def _how_it_ended(exit_code: int) -> str:
    if exit_code < 0:
        return f"was killed by signal {_signal_name(-exit_code)}"
    return f"exited with code {exit_code}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _transfer_error(exc: BaseException) -> str:
    if isinstance(exc, StoreError):
        return str(exc)
    if is_disk_full(exc):
        return disk_full_message(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return _learner_error(exc)


def _learner_error(exc: BaseException) -> str:
    return f"learner error: {type(exc).__name__}: {exc}"


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _reap_children() -> None:
    """Collect every child that has ended (the learner is their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _become_subreaper() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass  # then init reaps the orphans, a little later


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _config_problem(config: dict | None) -> str | None:
    """Why learner.json cannot drive a run, or None."""
    if config is None:
        return f"{LEARNER_FILE} is missing or is not a JSON object"
    for key in ("model_id", "command"):
        if not isinstance(config.get(key), str) or not config[key]:
            return f"{LEARNER_FILE} has no {key!r}"
    for key in ("data", "results"):
        ref = config.get(key)
        if not isinstance(ref, dict) or not ref.get("type") or not ref.get("bucket"):
            return f"{LEARNER_FILE} has no {key!r} with a type and a bucket"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    if args == ["--ray"]:
        return ray_main()
    if args == ["--spare"]:
        return spare_main()
    if len(args) != 1:
        sys.stderr.write(USAGE)
        return 2
    run_dir = os.path.abspath(args[0])
    if not os.path.isdir(run_dir):
        sys.stderr.write(f"trainui learner: {run_dir} is not a run folder\n")
        return 2
    config = read_json(os.path.join(run_dir, LEARNER_FILE))
    problem = _config_problem(config)
    if problem is not None:
        return _give_up(run_dir, f"learner error: {problem}")
    try:
        return Learner(run_dir, config).run()
    except Exception as exc:
        # Learner.run records every failure it can; this is for the ones it cannot (an
        # unwritable run folder, a learner.json with values of the wrong type).
        Learner._report_crash()
        return _give_up(run_dir, _learner_error(exc))


def spare_main() -> int:
    """A learner started ahead by the service: import what a run needs, then wait for the
    run folder on stdin (a line) and run it as ``main`` would, its output into the run's
    ``learner-errors.txt``. The end of stdin without a line (the service went) ends it."""
    global _STARTED
    # the imports a run makes, done while waiting
    import trainui.core.definition
    import trainui.sandbox
    import trainui.storage.local
    import trainui.storage.s3
    import trainui.storage.staging  # noqa: F401

    line = sys.stdin.buffer.readline()
    if not line.endswith(b"\n"):
        return 0
    _STARTED = time.time()
    run_dir = os.fsdecode(line[:-1])
    try:
        os.chdir(run_dir)
        errors = os.open(
            os.path.join(run_dir, LEARNER_ERRORS_FILE),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o644,
        )
    except OSError as exc:
        sys.stderr.write(f"trainui learner: {run_dir} is not a run folder: {exc}\n")
        return 2
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)
    os.dup2(errors, 1)
    os.dup2(errors, 2)
    os.close(nothing)
    os.close(errors)
    return main([run_dir])


def _give_up(run_dir: str, message: str, nonce: str | None = None) -> int:
    """Record a failure that happened before or outside the run; exit status 1."""
    status = _new_status(FAILED, message)
    status["error_code"] = "S300"
    status["finished_at"] = status["updated_at"] = status["started_at"]
    sys.stderr.write(f"trainui {message}\n")
    sys.stderr.flush()
    if nonce is not None:
        import json

        line = f"{STATUS_MARKER}{nonce} {json.dumps(status, separators=(',', ':'))}\n"
        with contextlib.suppress(OSError):
            os.write(1, line.encode())
        return 1
    with contextlib.suppress(OSError):
        write_json_atomic(os.path.join(run_dir, STATUS_FILE), status)
    return 1


def node_home(environ=None) -> str:
    """The learner's home on a Ray node (its dataset cache and private run folders):
    ``$TRAINUI_HOME``, else ``$XDG_CACHE_HOME/trainui`` (``~/.cache/trainui``)."""
    environ = os.environ if environ is None else environ
    home = (environ.get("TRAINUI_HOME") or "").strip()
    if not home:
        cache = (environ.get("XDG_CACHE_HOME") or "").strip() or os.path.join(
            os.path.expanduser("~"), ".cache"
        )
        home = os.path.join(cache, "trainui")
    return os.path.abspath(os.path.expanduser(home))


def ray_main() -> int:
    """The learner of a run on a Ray node, in the job's working directory (the run's package).

    The package's files are copied into a private run folder, ``learner.json`` (it holds the
    stores' secrets) is deleted from both once read, and the run goes as locally, its state
    reported on stdout; the private folder is removed at the end."""
    import shutil
    import tempfile

    package = os.getcwd()
    source = os.path.join(package, LEARNER_FILE)
    if not os.path.isfile(source):
        sys.stderr.write(f"trainui learner: no {LEARNER_FILE} in {package} (the run's package)\n")
        return 2
    home = node_home()
    try:
        os.makedirs(os.path.join(home, "runs"), mode=0o700, exist_ok=True)
        run_dir = tempfile.mkdtemp(prefix="ray-", dir=os.path.join(home, "runs"))  # mode 0700
    except OSError as exc:
        _remove(source)
        sys.stderr.write(f"trainui learner: no run folder in {home}: {_transfer_error(exc)}\n")
        return 2
    try:
        for name in (LEARNER_FILE, DEFINITION_FILE, MANIFEST_FILE):
            with contextlib.suppress(FileNotFoundError):
                shutil.copyfile(os.path.join(package, name), os.path.join(run_dir, name))
        _remove(source)
        config = read_json(os.path.join(run_dir, LEARNER_FILE))
        _remove(os.path.join(run_dir, LEARNER_FILE))
        nonce = (config or {}).get("status_nonce")
        if not isinstance(nonce, str) or not nonce:
            sys.stderr.write(f"trainui learner: {LEARNER_FILE} has no status_nonce\n")
            return 2
        problem = _config_problem(config)
        if problem is not None:
            return _give_up(run_dir, f"learner error: {problem}", nonce)
        config["home"] = home  # the node's, not the service's
        try:
            return Learner(run_dir, config, nonce).run()
        except Exception as exc:
            Learner._report_crash()
            return _give_up(run_dir, _learner_error(exc), nonce)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
