"""Process control: the training command in a process group of its own (sandboxed when the
service says so), its output piped into the log (``_LogPump``), halted on SIGTERM, and what it
left ended; the learner as a subreaper."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from trainui.core.lifecycle import change, update
from trainui.core.runs import (
    DEFAULT_LOG_MAX_BYTES,
    LOG_CUT,
    LOG_FILE,
    MANIFEST_FILE,
    RUNNING,
    STORING,
    disk_full_message,
    is_disk_full,
    signal_name,
)
from trainui.learner.common import (
    _Failed,
    _size,
)

LEFTOVER_GRACE = 2.0  # after the command exits: SIGTERM to what is left, then SIGKILL
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
PUMP_CHUNK = 64 << 10  # bytes the log pump reads from the command's pipe at a time
PUMP_SMALL = 4096  # a read shorter than this is followed by a pause of PUMP_PAUSE seconds
PUMP_PAUSE = 0.002
PIPE_BYTES = 1 << 20  # the pipe's buffer, when the kernel allows: bursts never block the command
# the sandbox made ahead (ProcessControl._sandbox_ahead): for these runtimes, and its first
# process's script: wait for the line on fd 3 (its end: the run never started), then the command
AHEAD_RUNTIMES = ("host", "venv")
_WAIT_FOR_GO = 'read _ <&3 || exit 125; exec 3<&-; exec "$@"'


class ProcessControl:
    """The learner's part in running the training command (a base of ``Learner``: it uses
    the run's state that ``Learner`` keeps)."""

    # ----------------------------------------------------------------------- 3. running

    def _command_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _HIDDEN_VARIABLES}
        parameters = self.config.get("parameters")
        if parameters:  # an experiment's run: its values, under the parameters' names (§9)
            from trainui.core.experiments import as_environment

            env.update({name: as_environment(value) for name, value in parameters.items()})
            env["EXPERIMENT_ID"] = self.config.get("experiment_id") or ""
        env.update(self.dirs)
        env.update(
            TRAINING_ID=self.model_id,
            GPU_COUNT=str(len(self.gpu_ids)),
            CUDA_VISIBLE_DEVICES="" if self.cpu_mode else ",".join(self.gpu_ids),
            LEARNER_ID="1",
            NUM_LEARNERS="1",
            TRAINING_ATTEMPT=str(self.attempt),  # SPEC §11: 1 the first
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
        if self.runtime is not None:
            env = self.runtime.environment(env)
        return env

    def _sandbox(self) -> None:
        """Decide whether the command runs sandboxed (``sandbox`` in learner.json), and as
        whom; make its private folders."""
        wanted = self.config.get("sandbox")
        if not isinstance(wanted, dict):
            return
        from trainui import sandbox

        if self.runtime is not None and not self.runtime.sandboxable:
            # a container is isolated by its runtime; as root, its command runs as the run's
            # user all the same (README: commands never run as root), without capabilities
            if os.geteuid() == 0:
                try:
                    self.sandbox_user = sandbox.resolve_user(wanted.get("unix_user"))
                except sandbox.SandboxError as error:
                    raise _Failed("S300", f"the run cannot be sandboxed: {error}") from None
            return

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

    def _command_line(self, env: dict[str, str], waiting: bool = False) -> list[str]:
        """The command's argv, in its sandbox if it runs in one; ``waiting``: its first
        process waits for a line on fd 3 (``_sandbox_ahead``) before it starts the command."""
        argv = ["/bin/sh", "-c", self.config["command"]]
        if self.runtime is not None:
            argv = self.runtime.command_line(argv, env)
        if not self.sandboxed:
            return argv
        if waiting:
            argv = ["/bin/sh", "-c", _WAIT_FOR_GO, "sh", *argv]
        from trainui import sandbox

        extra = self.config["sandbox"].get("paths") or []
        return sandbox.wrap(
            argv,
            readonly=[self.dirs["DATA_DIR"]],
            writable=self._writable(),
            tmp_dir=self.private["tmp"],
            hide=[self.home, self.run_dir],
            user=self.sandbox_user,
            extra_readonly=[
                *(p for p in extra if isinstance(p, str)),
                *(self.runtime.readonly_paths() if self.runtime is not None else ()),
            ],
            gpu_devices=self.config["sandbox"].get("gpu_devices"),
        )

    def _writable(self) -> list[str]:
        """The folders the sandboxed command may write, bound at their own paths (the first
        is its working folder)."""
        names = ("MODEL_DIR", "RESULT_DIR", "LOG_DIR", "CHECKPOINT_DIR")
        return [*(self.dirs[k] for k in names), self.private["home"]]

    def _sandbox_ahead(self) -> None:
        """Start the sandbox before the data are staged, its command waiting for a line on fd
        3: bubblewrap's namespaces and mounts (5 to 10 ms, the most of a sandboxed command's
        start) are made meanwhile, not once the run is ready. Only where the command line is
        known by then: the host's and a venv's (a container is started by its runtime, a
        conda environment's command line is the runtime's). ``_run_command`` sends the line;
        ``_discard_sandbox_ahead`` ends it unused."""
        if not self.sandboxed or self.runtime is None or self.runtime.kind not in AHEAD_RUNTIMES:
            return
        try:
            os.makedirs(self.dirs["MODEL_DIR"], exist_ok=True)  # bound now: unpacked into later
            become_subreaper()
            pump = self._new_pump()
        except OSError:  # no file descriptor left: started the usual way later, which says so
            return
        try:
            go_read, go_write = os.pipe()
        except OSError:
            pump.close()
            return
        if go_read == 3:  # dup2 onto itself would leave it closed on exec
            moved = os.dup(go_read)
            os.close(go_read)
            go_read = moved
        try:
            if self.sandbox_user is not None:  # empty now: bwrap makes what it needs in it
                os.chown(self.private["tmp"], self.sandbox_user.uid, self.sandbox_user.gid)
            env = self._command_env()
            pid = self._spawn(self._command_line(env, waiting=True), env, pump, go_read)
        except Exception:  # started the usual way later, which says why it cannot be
            pump.close()
            os.close(go_write)
            return
        finally:
            os.close(go_read)
        self.sandbox_ahead = (pid, pump, go_write)

    def _discard_sandbox_ahead(self) -> None:
        """The sandbox started ahead, unused (the run failed or was halted before its command
        started): ended, its command never started."""
        if self.sandbox_ahead is None:
            return
        pid, pump, go_write = self.sandbox_ahead
        self.sandbox_ahead = None
        os.close(go_write)  # its first process reads the end of fd 3 and exits
        _kill_group(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        pump.close()
        _reap_children()

    def _new_pump(self) -> _LogPump:
        return _LogPump(
            self.log_fd,
            os.path.join(self.run_dir, LOG_FILE),
            self.config.get("log_max_bytes", DEFAULT_LOG_MAX_BYTES),
            self._on_log_error,
        )

    def _spawn(self, argv: list[str], env: dict[str, str], pump: _LogPump, go: int = -1) -> int:
        """Start ``argv`` in a session and process group of its own, its output into
        ``pump``; ``go``: a pipe's end, its fd 3."""
        file_actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            *pump.file_actions(),
        ]
        if go >= 0:
            file_actions.append((os.POSIX_SPAWN_DUP2, go, 3))
        # posix_spawn has no working-directory action before Python 3.13: the child inherits
        # the learner's, which nothing else here depends on.
        os.chdir(self.dirs["MODEL_DIR"])
        try:
            return os.posix_spawnp(
                argv[0],
                argv,
                env,
                file_actions=file_actions,
                setsid=True,  # its own session and process group, whose id is its pid
                setsigmask=(),
                setsigdef=_RESTORED_SIGNALS,
            )
        finally:
            os.chdir(self.run_dir)

    def _run_command(self) -> None:
        self.phase = RUNNING
        if self.cpu_mode:
            where = "running on the CPU: no GPU on this machine"
        else:
            where = f"running on GPU {','.join(self.gpu_ids)}"
        from trainui.learner.runtime import describe

        inside = describe(self.config.get("runtime"))
        if inside:
            where = f"{where} {inside}"
        if self.sandboxed:
            who = f" as {self.sandbox_user.name}" if self.sandbox_user is not None else ""
            self._log(f"{where}, sandboxed (bubblewrap){who}")
        elif self.sandbox_user is not None:  # a container's command, as the run's user
            self._log(f"{where}, as {self.sandbox_user.name}, without capabilities")
        else:
            self._log(where)
        parameters = self.config.get("parameters")
        if parameters:
            from trainui.core.experiments import as_environment

            values = " ".join(f"{k}={as_environment(v)}" for k, v in parameters.items())
            self._log(f"experiment {self.config.get('experiment_id')}: {values}")
        become_subreaper()  # orphans of the command are then ours to reap, not init's
        if self.sandboxed:
            from trainui import sandbox

            # (a sandbox made ahead had its /tmp given before: what bwrap made in it since, the
            # folders above its mount points, stays root's)
            given = [] if self.sandbox_ahead is not None else [self.private["tmp"]]
            sandbox.give_to(self.sandbox_user, [*self._writable(), *given])
        from trainui.learner.causes import oom_kills

        kills_before = oom_kills()  # the OOM killer's count: did it kill the command?
        if self.halt_requested:  # the halt came while the above was done: no command at all
            return
        if self.sandbox_ahead is not None:
            pid, pump, go_write = self.sandbox_ahead
            self.sandbox_ahead = None
            try:
                os.write(go_write, b"\n")
            except OSError:  # the sandbox ended before (bubblewrap failed): its exit says why
                pass
            finally:
                os.close(go_write)
        else:
            pump = self._new_pump()
            env = self._command_env()
            try:
                pid = self._spawn(self._command_line(env), env, pump)
            except OSError as exc:
                pump.close()
                raise _Failed("S300", f"the training command could not be started: {exc}") from None
        self.command_pgid = pid  # before the pump starts: a failed write stops the command
        pump.start()
        metrics = self._start_metrics()
        self.checkpoints.start()
        if self.halt_requested:  # the request came while the command was being started
            self._stop_command()
        self.status = change(self.status, RUNNING, status_message=where, command_pgid=pid)
        self.status.progress["phase"] = None
        self.status.timings["command_started"] = time.time()
        self._write_status()
        try:
            # Blocks until the command ends; a halt request's handler runs meanwhile and the
            # wait resumes (PEP 475).
            _, wait_status = os.waitpid(pid, 0)
        finally:
            self.command_done = True
            self._end_process_group(pid)
            if self.runtime is not None:
                self.runtime.finish()
            if not pump.finish(LEFTOVER_GRACE):
                self._log(
                    "warning: a process the command started still holds its output open;"
                    " what it writes is dropped"
                )
            self._end_log_line()
            metrics.stop()  # the final pass: what the command wrote last
            self.checkpoints.stop()
        self.status.timings["command_ended"] = time.time()
        code = os.waitstatus_to_exitcode(wait_status)
        if self.sandboxed:
            from trainui.sandbox import exit_code

            code = exit_code(code)
        self.exit_code = code
        self.status = update(self.status, exit_code=code)
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
            if self.runtime is not None:
                self.runtime.failure(code)
            from trainui.learner.causes import cause, last_line

            log_path = os.path.join(self.run_dir, LOG_FILE)
            known = cause(code, log_path, kills_before)
            if known:
                said = f": {known}"
            else:
                last = last_line(log_path)
                said = f'; the log ends: "{last}"' if last else ""
            raise _Failed("C201", f"the training command {how}{said}")

    def _start_metrics(self):
        """Start following the run's metrics (trainui.learner.metrics) beside the command."""
        from trainui.learner.metrics import Extractor

        variables = {**self.dirs, "JOB_STATE_DIR": self.work, "TRAINING_ID": self.model_id}
        extractor = Extractor(
            self.run_dir,
            self._metric_sources,
            variables,
            self.dirs["MODEL_DIR"],
            os.path.join(self.run_dir, LOG_FILE),
            self._log,
        )
        extractor.start()
        return extractor

    def _metric_sources(self) -> list[dict] | None:
        """The manifest's ``evaluation_metrics`` (learner.json's, else manifest.yml's)."""
        if "evaluation_metrics" in self.config:
            return self.config["evaluation_metrics"]
        from trainui.core.manifest import metric_sources

        try:
            with open(os.path.join(self.run_dir, MANIFEST_FILE), encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            return None
        return metric_sources(text)

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
        self.halt_signal = signal_name(signum)
        self._log(f"halt requested ({self.halt_signal})")
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
        if self.runtime is not None:
            self.runtime.stop(signal.SIGKILL)


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
        held = b""  # near the cap: the end of a line not yet whole, written once it is
        while True:
            try:
                data = read(fd, PUMP_CHUNK)
            except OSError:
                data = b""
            if not data:
                if held and not (self.cut or self.failed):
                    self._write(held)  # the command's last line had no line end
                    self.kept += len(held)
                return  # every process that held the pipe has ended
            if held:
                data, held = held + data, b""
            size = len(data)
            if self.cut or self.failed:
                self.dropped += len(data)
            elif self.max_bytes and self.kept + len(data) > self.max_bytes:
                self._cut(data)
            else:
                if self.max_bytes and self.kept + len(data) > self.max_bytes - PUMP_CHUNK:
                    # within a read of the cap, only whole lines are written, so that the cut
                    # comes at the end of a line (a line that never fits is dropped whole)
                    end = data.rfind(b"\n") + 1
                    data, held = data[:end], data[end:]
                if data:
                    self._write(data)
                    self.kept += len(data)
            if size < PUMP_SMALL:
                # a command writing many small lines would wake this thread at each: a pause
                # lets them gather in the pipe (a line waits PUMP_PAUSE at most, the first none)
                sleep(PUMP_PAUSE)

    def _cut(self, data: bytes) -> None:
        """Write what fits under the cap (to its last whole line), then the notice."""
        room = data[: max(0, self.max_bytes - self.kept)]
        kept = room[: room.rfind(b"\n") + 1]  # whole lines only
        self.cut = True
        self.dropped += len(data) - len(kept)
        self.kept += len(kept)
        if kept:
            self._write(kept)
        notice = (
            f"{LOG_CUT}, at {self.max_bytes:,} bytes of the command's output"
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


def _how_it_ended(exit_code: int) -> str:
    if exit_code < 0:
        return f"was killed by signal {signal_name(-exit_code)}"
    return f"exited with code {exit_code}"


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


_subreaper = False


def become_subreaper() -> None:
    """Make this process the reaper of its descendants' orphans (once: it lasts)."""
    global _subreaper
    if _subreaper or not sys.platform.startswith("linux"):
        return
    _subreaper = True
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass  # then init reaps the orphans, a little later
