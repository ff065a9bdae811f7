"""Starting and stopping learners on this machine: one detached process per run.

A learner runs in its own session, so it outlives the service, the CLI and the SSH session
that started it. It is known by its PID and the PID's start time, so a PID that the kernel
gave to another process after the learner ended is never mistaken for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from trainui.core.runs import LEARNER_ERRORS_FILE


class LocalLauncher:
    name = "local"

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}

    def start(self, run_dir: str) -> tuple[int, str]:
        """Start the learner of the run in ``run_dir``; return its PID and start time."""
        errors = open(os.path.join(run_dir, LEARNER_ERRORS_FILE), "ab")  # noqa: SIM115
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "trainui.learner", run_dir],
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
        return process.pid, process_start_time(process.pid) or ""

    def alive(self, pid: int | None, start: str | None) -> bool:
        """Is the learner with this PID and start time still running?"""
        self.reap()
        if not pid:
            return False
        current = process_start_time(pid)
        return current is not None and (not start or current == start)

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
