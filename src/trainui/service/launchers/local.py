"""The local launcher: one detached learner process per run, on this machine.

Its handle is the learner's PID and the PID's start time (so a PID that the kernel gave to
another process after the learner ended is never mistaken for it). A spare learner, its imports
done, waits for the next run (``tick``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from trainui.core.runs import LEARNER_ERRORS_FILE
from trainui.service.launchers import Launcher

SPARE = "--spare"  # the learner's argument: wait for a run folder on stdin (see tick)
# and, after it, what the spare prepares besides: botocore and its S3 model (about 0.3 s of
# CPU a learner, spent only where the last run used S3)
SPARE_S3 = "s3"
SPARE_AFTER = 0.2  # seconds without a learner started before a spare one is started
SPARE_RETRY = 30.0  # more seconds to wait after a spare ended unused
ENDED_KEPT = 1000  # learners of ours that ended whose exit status is kept (for lost())


def learner_command(*args: str) -> list[str]:
    """The command line of a local learner: this Python without ``site`` (its ``.pth`` files
    cost 5 to 20 ms per learner, on the submit-to-first-line path), given the service's own
    module path instead, so that it imports the same trainui and packages."""
    paths = [path for path in sys.path if path and os.path.isabs(path)]
    if any(os.pathsep in path for path in paths):  # cannot be passed as one argument
        return [sys.executable, "-m", "trainui.learner", *args]
    bootstrap = (
        f"import sys; sys.path[1:1] = sys.argv.pop(1).split({os.pathsep!r}); "
        "from trainui.learner import main; sys.exit(main())"
    )
    return [sys.executable, "-S", "-c", bootstrap, os.pathsep.join(paths), *args]


class LocalLauncher(Launcher):
    """One detached learner process per run, on this machine."""

    name = "local"

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}
        self._ended: dict[int, int] = {}  # learners of ours that ended: PID -> exit status
        # a learner started ahead, its imports done, waiting on its stdin for a run folder:
        # a run's learner then needs no interpreter start (about half of submit-to-first-line)
        self._spare: subprocess.Popen | None = None
        self._quiet_since = 0.0  # no learner or spare started since (monotonic)
        self._spare_s3 = False  # the next spare prepares S3 (expect)

    def start(self, run_dir: str, gpus: int = 0) -> tuple[int, str]:
        """Start the learner of the run in ``run_dir``; return its PID and start time."""
        process = self._hand_to_spare(run_dir)
        if process is None:
            errors = open(os.path.join(run_dir, LEARNER_ERRORS_FILE), "ab")  # noqa: SIM115
            try:
                process = subprocess.Popen(
                    learner_command(run_dir),
                    stdin=subprocess.DEVNULL,
                    stdout=errors,
                    stderr=errors,
                    start_new_session=True,
                    close_fds=True,
                    cwd=run_dir,
                )
            finally:
                errors.close()
        self._children[process.pid] = process
        self._quiet_since = time.monotonic()
        return process.pid, process_start_time(process.pid) or ""

    def tick(self) -> None:
        """Collect learners that ended; keep a spare learner ready, started once learners have
        not been started for a moment (never on a run's way: its start would take CPU from the
        runs starting)."""
        self.reap()
        if self._spare is not None:
            if self._spare.poll() is None:
                return
            # it ended unused (killed, or it cannot start): not again at once, lest a spare
            # that cannot start is started ten times a second
            self._spare = None
            self._quiet_since = time.monotonic() + SPARE_RETRY
        now = time.monotonic()
        if now - self._quiet_since < SPARE_AFTER:
            return
        self._quiet_since = now  # one try a while, also when it fails
        try:
            self._spare = subprocess.Popen(
                learner_command(SPARE, *([SPARE_S3] if self._spare_s3 else [])),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                cwd="/",
            )
        except OSError:
            self._spare = None

    def expect(self, store_types: frozenset[str]) -> None:
        self._spare_s3 = "s3" in store_types

    def _hand_to_spare(self, run_dir: str) -> subprocess.Popen | None:
        """The spare learner, told to run ``run_dir`` (None: there is none, or it is gone)."""
        spare, self._spare = self._spare, None
        if spare is None or spare.poll() is not None or spare.stdin is None:
            return None
        try:
            spare.stdin.write(os.fsencode(os.path.abspath(run_dir)) + b"\n")
            spare.stdin.close()  # flushes: the spare reads its line and goes
        except OSError:  # it ended meanwhile
            with contextlib.suppress(OSError):
                spare.kill()
            spare.wait()
            return None
        return spare

    def close(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None and spare.stdin is not None:
            with contextlib.suppress(OSError):
                spare.stdin.close()  # the spare reads the end of its input and exits
            try:
                spare.wait(timeout=2)
            except subprocess.TimeoutExpired:
                spare.kill()

    def alive(self, pid: int | None, start: str | None) -> bool:
        """Is the learner with this PID and start time still running?"""
        self.reap()
        if not pid:
            return False
        current = process_start_time(pid)
        return current is not None and (not start or current == start)

    def lost(self, pid: int | None, start: str | None, status: dict | None, run_dir: str) -> str:
        if not pid and start and ":" in start:  # another launcher's run (a Ray job)
            kind = start.split(":", 1)[0]
            return (
                f"the run was started by the {kind} launcher and this service uses the local "
                f"launcher, so it cannot follow it (restart the service with --launcher {kind})"
            )
        return super().lost(pid, start, status, run_dir)

    def halt(self, pid: int | None, start: str | None) -> bool:
        """Ask the learner to halt its run (it stops the command and stores the results)."""
        if not self.alive(pid, start):
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def reap(self) -> None:
        """Collect learners of ours that ended, so none is left a zombie."""
        for pid, process in list(self._children.items()):
            if process.poll() is not None:
                del self._children[pid]
                self._ended[pid] = process.returncode
                while len(self._ended) > ENDED_KEPT:  # the oldest first
                    del self._ended[next(iter(self._ended))]

    def how_ended(self, pid: int | None) -> str | None:
        self.reap()
        code = self._ended.get(pid) if pid else None
        if code is None:
            return None
        if code < 0:
            from trainui.core.runs import signal_name

            return f"killed by signal {signal_name(-code)}"
        return f"exit status {code}"


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (from /proc), None if it is gone.

    A zombie counts as gone: it has ended, it only waits to be collected."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]
