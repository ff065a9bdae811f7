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

The package: this module is the run's course (``Learner``: its state, status.json, the end) and
the three ways in (``main``, ``spare_main``, ``ray_main``); ``Learner`` gets its phases from its
bases, one module each: ``staging`` (the data, the definition unpacked), ``process`` (the
command: process group, sandbox, log pump, halt) and ``storing`` (the results bucket); ``relay``
is the stdout of a learner on a Ray node; ``common`` what they share. None of them imports this
module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence

from msgspec.structs import replace

from trainui.core import lifecycle
from trainui.core.lifecycle import Status, change, no_progress
from trainui.core.runs import (
    COMPLETED,
    CONTAINER_FILE,
    DEFINITION_FILE,
    DOWNLOADING,
    FAILED,
    HALTED,
    HALTED_BY_REQUEST,
    LEARNER_ERRORS_FILE,
    LEARNER_FILE,
    LOG_FILE,
    MANIFEST_FILE,
    PREPARING,
    STATUS_FILE,
    STATUS_MARKER,
    STORING,
    WORK_DIR,
    disk_full_message,
    halt_reason,
    is_disk_full,
    outside_halt,
    read_json,
    utc_now,
    write_json_atomic,
)
from trainui.core.urls import mask_urls
from trainui.learner.common import (
    _count,
    _Failed,
    _learner_error,
    _size,
    _transfer_error,
)
from trainui.learner.process import (
    ProcessControl,
)
from trainui.learner.relay import (
    _Relay,
)
from trainui.learner.staging import (
    UNPACKING,
    Staging,
)
from trainui.learner.storing import Storing

_STARTED = time.time()  # once the learner's imports are done

USAGE = """\
usage: python -m trainui.learner RUN_DIR
       python -m trainui.learner --ray
       python -m trainui.learner --spare [s3]

Executes the run prepared in RUN_DIR (learner.json, model.zip, manifest.yml): stages the
training data, unpacks the model definition, runs the training command and stores the results,
recording each state change in RUN_DIR/status.json. SIGTERM halts the run.

With --ray, the run's files are in the current folder (a Ray job's working_dir): the learner
works in a private folder of its own and reports the log and each state change on stdout.

With --spare (what the service starts ahead), the learner imports what a run needs and waits
for RUN_DIR on stdin, then runs it as above; with s3, it also prepares botocore's S3 client.
"""

_PHASE_ERROR_CODES = {
    DOWNLOADING: "S302", UNPACKING: "S301", PREPARING: "S304", STORING: "S303"
}  # fmt: skip
COMPLETED_MESSAGE = "completed: the training command exited with code 0"
RESERVE_FILE = "status.reserve"  # space kept for the final status.json, freed when the disk is full
RESERVE_BYTES = 64 << 10


class Learner(Staging, ProcessControl, Storing):
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
        self.runtime = None  # the framework's runtime (trainui.learner.runtime), from learner.json
        self.attempt = int(config.get("attempt") or 1)  # SPEC §11: 1 the first
        from trainui.learner.checkpoints import Checkpoints, interval_of

        self.checkpoints = Checkpoints(self, interval_of(config))
        self.sandbox_user = None  # as this user (the learner runs as root)
        self.private: dict[str, str] = {}  # the sandbox's /tmp and HOME
        self.phase = DOWNLOADING
        self.halt_requested = False
        self.halt_signal = "SIGTERM"  # the signal that asked for it
        self.command_pgid: int | None = None
        self.sandbox_ahead: tuple | None = None  # (pid, log pump, go): _sandbox_ahead
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
        self.storing_reasons: set[str] = set()  # said in the log (each once)
        self.not_stored: list[str] = []  # keys under <id>/ the results bucket did not take
        self.log_failure: str | None = None  # the log could not be written: why, in a sentence
        self._last_write = 0.0
        self.status = _new_status(
            DOWNLOADING,
            "staging the training data",
            gpu_ids=[int(g) if g.isdigit() else g for g in self.gpu_ids],
        )

    # ------------------------------------------------------------------------- the run

    def run(self) -> int:
        log_path = os.path.join(self.run_dir, LOG_FILE)
        self.log_fd = os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        if self.nonce is not None:
            # stdout is the job's log: only the relay writes there, and what the learner says
            # on stderr (a traceback) goes into the log, between the command's lines
            os.dup2(self.log_fd, 2)
            self.relay = _Relay(log_path, self.nonce)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_halt_signal)
        signal.signal(signal.SIGALRM, self._on_grace_over)
        if self.nonce is not None:
            # on a Ray node the first record starts the run's log: the service takes the
            # lines before it for Ray's own (the "attempt 2 of 3" line would be lost)
            self._write_status()
        restarts = int(self.config.get("max_restarts") or 0)
        if restarts or self.attempt > 1:
            # a resumed run's attempts may go past its restarts: "attempt 2 of 2", not "of 1"
            last = self.config.get("last_attempt") or restarts + 1
            self._log(f"attempt {self.attempt} of {max(last, self.attempt)}")
        try:
            # first the sandbox's start (bubblewrap's 5 to 10 ms, the most of a sandboxed
            # command's start), which then goes on beside the rest of the learner's work
            self._prepare_work()
            self._sandbox_ahead()
            if self.nonce is None:
                self._reserve_space()
                self._write_status()
            if self.config.get("check_results"):  # not checked at submit (--no-check)
                self._check_results()
            self._stage()
            if not self.halt_requested:
                self._unpack()
            if not self.halt_requested and self.attempt > 1:
                self._restore_checkpoints()
            if not self.halt_requested:
                self._prepare_runtime()
            if not self.halt_requested:
                self._run_command()
            if self.halt_requested:
                self._set_outcome(*self.halt_outcome())
        except _Failed as failure:
            self._set_outcome(FAILED, failure.code, failure.message)
        except Exception as exc:
            if is_disk_full(exc):
                code = _PHASE_ERROR_CODES.get(self.phase, "S300")
                self._set_outcome(FAILED, code, disk_full_message(exc))
            else:
                # a fault of the learner's own (the phases turn what the stores, the data
                # and the runtime refuse into their codes): S300, which a restart may cure,
                # not the phase's code, which says the user's data or bucket is at fault
                self._report_crash()
                self._set_outcome(FAILED, "S300", _learner_error(exc))
        self._discard_sandbox_ahead()
        if self.command_pgid is not None and (
            self.final in (FAILED, HALTED) or self.checkpoints.in_use()
        ):  # what the next attempt starts from (SPEC §11); completed: the bucket has the last
            self._copy_checkpoints()
        try:
            self._store()
        except Exception as exc:
            self._report_crash()
            self._storing_failed(_learner_error(exc))
        self._finish()
        return 0

    def halt_outcome(self) -> tuple[str, str | None, str]:
        """How a halt ends the run: halted, for the reason the service wrote before it sent
        the signal (a user's request, an experiment's median rule). Without one the signal
        came from outside trainui (a ``kill``, the machine shutting down): the learner was
        lost (S300), which a run's restarts start again. On a cluster's node the run folder
        is not there to read: the service tells the two apart."""
        reason = halt_reason(self.run_dir)
        if reason is None and self.nonce is None:
            return FAILED, "S300", outside_halt(self.halt_signal)
        return HALTED, None, reason or HALTED_BY_REQUEST

    def _check_results(self) -> None:
        """The results bucket takes a write with the run's credentials, before hours of
        training make results it would refuse (C103, as at submit); a run submitted with
        ``--no-check`` (a store only this machine reaches) was not checked."""
        from trainui.storage import StoreError, check_access

        results = self.config["results"]
        try:
            check_access(
                results["type"], results["bucket"], results.get("connection") or {}, self.home,
                write=True,
            )  # fmt: skip
        except StoreError as error:
            raise _Failed("C103", f"the results bucket is refused: {error}") from None

    def _set_outcome(self, final: str, code: str | None, message: str) -> None:
        self.final, self.error_code, self.message = final, code, mask_urls(message)

    def _prepare_work(self) -> None:
        if os.path.lexists(self.work):  # left by an earlier learner of this run
            import shutil

            if self.attempt > 1:
                self._copy_left_checkpoints()
            shutil.rmtree(self.work)
        for name in ("DATA_DIR", "RESULT_DIR", "LOG_DIR", "CHECKPOINT_DIR"):
            os.makedirs(self.dirs[name])
        from trainui.learner.runtime import for_spec

        self.runtime = for_spec(self.config.get("runtime"), self)
        self.runtime.begin()
        self._sandbox()

    # ------------------------------------------------------------------------ the end

    def _prepare_runtime(self) -> None:
        """The framework's runtime made ready (an image pulled: the phase ``preparing``)."""
        self.phase = PREPARING
        self.runtime.prepare()

    def _preparing(self, message: str, layers: int) -> None:
        """The ``preparing`` phase's progress: what is done, and the layers pulled so far."""
        self.status = lifecycle.update(self.status, status_message=message)
        self.status.progress.update(phase=PREPARING, objects_done=layers)
        self._write_status()

    def _restore_checkpoints(self) -> None:
        """A next attempt (a restart, a resume) starts from the run's last checkpoint."""
        from trainui.learner.checkpoints import RestoreError

        try:
            self.checkpoints.restore()
        except RestoreError as error:
            # the results bucket's (gone, refusing): not the training data's (S302)
            raise _Failed("C103", f"the checkpoints could not be restored: {error}") from None

    def _copy_left_checkpoints(self) -> None:
        """An earlier attempt whose learner was lost (killed, out of memory) could not copy
        CHECKPOINT_DIR at its end: what it left there is copied now, before the folder is made
        anew, so that this attempt restores the latest checkpoint (SPEC §11)."""
        folder = self.dirs["CHECKPOINT_DIR"]
        if os.path.islink(folder) or not os.path.isdir(folder):
            return
        try:
            files, size = self.checkpoints.copy(final=True)
        except Exception as error:
            self._log(
                "warning: the checkpoints the earlier attempt left could not be copied: "
                f"{_transfer_error(error)}"
            )
            self.checkpoints.keep()
            return
        if files:
            self._log(
                f"copied {_count(files, 'checkpoint file')} ({_size(size)}) that the earlier "
                "attempt left, its learner having ended before it could"
            )

    def _copy_checkpoints(self) -> None:
        """The last copy of CHECKPOINT_DIR (the run failed or was halted; or completed, its
        checkpoints copied as it went or taken from the box); a failure to copy is said (they
        are kept on the box), and changes nothing of the outcome."""
        try:
            files, size = self.checkpoints.copy(final=True)
        except Exception as error:
            self._log(f"warning: the checkpoints could not be copied: {_transfer_error(error)}")
            self.checkpoints.keep()
            return
        if files:
            self.checkpoints._said(files, size)

    def _finish(self) -> None:
        # learner.json holds the stores' secrets: a completed run's go now; a failed or halted
        # run keeps them (0600, in the private home) for its next attempt or `trainui resume`,
        # until it is deleted or purged
        if self.final == COMPLETED:
            _remove(os.path.join(self.run_dir, LEARNER_FILE))
        _remove(os.path.join(self.run_dir, CONTAINER_FILE))  # removed with the command
        import shutil

        shutil.rmtree(self.work, ignore_errors=True)  # first: on a full disk, it frees space
        self.status = change(  # finished_at: when storing ended (or now, if it never began)
            self.status,
            self.final,
            status_message=self.message,
            error_code=self.error_code,
            exit_code=self.exit_code,
        )
        self.status.progress["phase"] = None
        self._write_status(final=True)
        if self.relay is not None:
            self.relay.close()  # the whole log, then the final record
        _remove(os.path.join(self.run_dir, RESERVE_FILE))
        os.close(self.log_fd)

    # -------------------------------------------------------------------------- helpers

    def _write_status(self, final: bool = False) -> None:
        """Replace status.json. On a full disk the old one stays and the run goes on (the
        next change is written again); the final one may use the space kept for it."""
        self.status = status = replace(self.status, updated_at=utc_now())
        record = lifecycle.encode(status)
        if self.relay is not None:
            self.relay.record(record, os.fstat(self.log_fd).st_size)
            self._last_write = time.monotonic()
            return
        path = os.path.join(self.run_dir, STATUS_FILE)
        try:
            write_json_atomic(path, record)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            reserve = os.path.join(self.run_dir, RESERVE_FILE)
            if final and os.path.exists(reserve):
                _remove(reserve)
                with contextlib.suppress(OSError):  # nothing more to free: the old one stays
                    write_json_atomic(path, record)
        self._last_write = time.monotonic()

    def _make_room(self) -> None:
        """On a full disk, give the space kept for the outcome to the last things written: the
        log's last lines, training-status.json and status.json (a few KiB of what was kept)."""
        if self.relay is not None:
            return
        try:
            stat = os.statvfs(self.run_dir)
        except OSError:
            return
        if stat.f_bavail * stat.f_frsize < RESERVE_BYTES:
            _remove(os.path.join(self.run_dir, RESERVE_FILE))

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


# ------------------------------------------------------------------------------ functions


def _new_status(state: str, message: str, **fields) -> Status:
    """A fresh status record for a learner that has just started (stamped ``started_at``)."""
    new = Status(
        learner_pid=os.getpid(),
        progress=no_progress(DOWNLOADING if state == DOWNLOADING else None),
        timings={
            "learner_started": _STARTED,
            "staged": None,
            "unpacked": None,
            "command_started": None,
            "command_ended": None,
            "stored": None,
        },
    )
    return change(new, state, status_message=message, started_at=utc_now(), **fields)


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
    if args in (["--spare"], ["--spare", "s3"]):
        return spare_main(s3=args[1:] == ["s3"])
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


def spare_main(s3: bool = True) -> int:
    """A learner started ahead by the service: import what a run needs, then wait for the
    run folder on stdin (a line) and run it as ``main`` would, its output into the run's
    ``learner-errors.txt``. The end of stdin without a line (the service went) ends it."""
    global _STARTED
    # the imports a run makes, done while waiting
    import encodings.cp437  # noqa: F401  (the names of a zip's members)
    import pwd  # noqa: F401  (the sandbox's user)

    import trainui.config
    import trainui.core.definition
    import trainui.learner.causes
    import trainui.learner.checkpoints
    import trainui.learner.metrics
    import trainui.learner.runtime
    import trainui.sandbox
    import trainui.storage.local
    import trainui.storage.s3
    import trainui.storage.staging
    from trainui.learner.process import become_subreaper

    become_subreaper()  # for the run's command, ahead: ctypes' import is ~3 ms
    if os.geteuid() == 0:  # the sandbox's user: the system's user database (NSS) loaded
        with contextlib.suppress(Exception):  # the run says what is wrong, if anything is
            trainui.sandbox.resolve_user(None)
    # and, where the service expects S3 (the last run used it), botocore's: its import and
    # the S3 model (a run's staging would wait for them; a run without S3 needs neither, and
    # they cost about 0.3 s of CPU)
    if s3:
        with contextlib.suppress(Exception):  # the run that needs it will say what is wrong
            trainui.storage.s3.prepare()
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
    now = utc_now()
    status = _new_status(FAILED, message, error_code="S300", finished_at=now, updated_at=now)
    sys.stderr.write(f"trainui {message}\n")
    sys.stderr.flush()
    if nonce is not None:
        line = f"{STATUS_MARKER}{nonce} ".encode() + lifecycle.encode(status) + b"\n"
        with contextlib.suppress(OSError):
            os.write(1, line)
        return 1
    with contextlib.suppress(OSError):
        write_json_atomic(os.path.join(run_dir, STATUS_FILE), lifecycle.encode(status))
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
