"""Launchers: what starts, follows and stops the learners of runs.

The run manager keeps the queue, the history and the runs' states; a launcher only executes
learners somewhere. ``LocalLauncher`` runs each learner as a detached process on this machine;
``trainui.service.ray.RayLauncher`` hands each run to a Ray cluster as a Ray job. Either way
``status.json`` and ``training-log.txt`` appear in the run folder, which the manager follows:
a local learner writes them there, a Ray job's learner reports them in the job's log, which the
Ray launcher mirrors there. A launcher only says whether a learner is still there and, when it
vanished, why.

A started learner is known by a handle of two values kept in the run's record, ``learner_pid``
and ``learner_start``: for a local learner, its PID and the PID's start time (so a PID that the
kernel gave to another process after the learner ended is never mistaken for it); for a Ray job,
no PID and ``ray:<submission id>``.

A further launcher (SLURM, Kubernetes) implements ``Launcher`` and is chosen in ``make_launcher``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from trainui.core.record import Record
from trainui.core.runs import LEARNER_ERRORS_FILE


class LauncherError(ValueError):
    """A launcher setting that cannot be used, in one sentence."""


class Capacity(Record):
    """What a cluster launcher can take now, for the scheduler.

    ``total``: GPUs in the cluster (0: runs go to CPUs); ``free``: GPUs that runs may take now;
    ``largest``: the most GPUs one node has (a run never gets more); ``problem``: a sentence
    while the cluster cannot take runs (unreachable, not answered yet), else None;
    ``version``: changes whenever what the launcher knows of the cluster changed, so the
    manager plans again."""

    __slots__ = ("total", "free", "largest", "problem", "version")


class Launcher:
    """The interface between the run manager and whatever executes learners."""

    name = "?"
    where = "this machine"  # where runs execute, in words: "the Ray cluster at http://..."
    version = 0  # changes when the manager should plan again (a cluster's resources changed)

    def check(self) -> str | None:
        """At submit: None when runs can be taken, else a sentence why not (HTTP 503)."""
        return None

    def capacity(self) -> Capacity | None:
        """None: runs use this machine's GPUs (the service's inventory); else the cluster's."""
        return None

    def refuse(self, gpus: int) -> str | None:
        """At submit, for a launcher with a capacity: a sentence when a run needing ``gpus``
        GPUs can never start, else None."""
        return None

    def start(self, run_dir: str, gpus: int) -> tuple[int | None, str]:
        """Start the learner of the run in ``run_dir`` needing ``gpus`` GPUs; its handle."""
        raise NotImplementedError

    def alive(self, pid: int | None, start: str | None) -> bool:
        """Is the learner still there (or, for a cluster, may it still be)?"""
        raise NotImplementedError

    def lost(self, pid: int | None, start: str | None, status: dict | None, run_dir: str) -> str:
        """The learner is gone without recording an outcome: clean up what it left that holds
        GPUs, and say why in a sentence (the run fails with it)."""
        _kill_group((status or {}).get("command_pgid"))
        return (
            "the learner process ended unexpectedly "
            f"(see {os.path.join(run_dir, LEARNER_ERRORS_FILE)})"
        )

    def halt(self, pid: int | None, start: str | None) -> bool:
        """Ask the learner to halt its run (it stops the command and stores the results)."""
        raise NotImplementedError

    def forget(self, pid: int | None, start: str | None) -> None:
        """The run is deleted from the history: forget what the launcher keeps of it."""

    def tick(self) -> None:
        """Called about ten times a second by the run manager, for housekeeping."""

    def close(self) -> None:
        """The service stops."""


SPARE = "--spare"  # the learner's argument: wait for a run folder on stdin (see tick)
SPARE_AFTER = 0.2  # seconds without a learner started before a spare one is started
SPARE_RETRY = 30.0  # more seconds to wait after a spare ended unused


def learner_command(run_dir: str) -> list[str]:
    """The command line of a local learner: this Python without ``site`` (its ``.pth`` files
    cost 5 to 20 ms per learner, on the submit-to-first-line path), given the service's own
    module path instead, so that it imports the same trainui and packages."""
    paths = [path for path in sys.path if path and os.path.isabs(path)]
    if any(os.pathsep in path for path in paths):  # cannot be passed as one argument
        return [sys.executable, "-m", "trainui.learner", run_dir]
    bootstrap = (
        f"import sys; sys.path[1:1] = sys.argv.pop(1).split({os.pathsep!r}); "
        "from trainui.learner import main; sys.exit(main())"
    )
    return [sys.executable, "-S", "-c", bootstrap, os.pathsep.join(paths), run_dir]


class LocalLauncher(Launcher):
    """One detached learner process per run, on this machine."""

    name = "local"

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}
        # a learner started ahead, its imports done, waiting on its stdin for a run folder:
        # a run's learner then needs no interpreter start (about half of submit-to-first-line)
        self._spare: subprocess.Popen | None = None
        self._quiet_since = 0.0  # no learner or spare started since (monotonic)

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
        """Keep a spare learner ready, started once learners have not been started for a
        moment (never on a run's way: its start would take CPU from the runs starting)."""
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
                learner_command(SPARE),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                cwd="/",
            )
        except OSError:
            self._spare = None

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


def make_launcher(settings, runs_dir: str | None = None) -> Launcher:
    """The launcher the settings name: ``local`` (default) or ``ray`` (``ray_address``).
    Raises LauncherError for a setting that cannot work (a ray:// address, say)."""
    name = getattr(settings, "launcher", None) or "local"
    if name == "local":
        return LocalLauncher()
    if name == "ray":
        from trainui.service.ray import RayLauncher, lost_grace_seconds

        return RayLauncher(
            settings.ray_address or "",
            runs_dir or os.path.join(settings.home, "runs"),
            halt_grace=settings.halt_grace_seconds,
            lost_grace=lost_grace_seconds(settings),
        )
    raise LauncherError(f"unknown launcher '{name}': use local or ray")


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


def _kill_group(pgid: int | None) -> None:
    if pgid:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
