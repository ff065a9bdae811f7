"""Launchers: what starts, follows and stops the learners of runs.

The run manager keeps the queue, the history and the runs' states; a launcher only executes
learners somewhere. ``local.LocalLauncher`` runs each learner as a detached process on this
machine; ``ray.RayLauncher`` hands each run to a Ray cluster as a Ray job (``ray_api`` is all
it says to Ray's dashboard over HTTP). Either way ``status.json`` and ``training-log.txt``
appear in the run folder, which the manager follows: a local learner writes them there, a Ray
job's learner reports them in the job's log, which the Ray launcher mirrors there. A launcher
only says whether a learner is still there and, when it vanished, why.

A started learner is known by a handle of two values kept in the run's record, ``learner_pid``
and ``learner_start``: for a local learner, its PID and the PID's start time (so a PID that the
kernel gave to another process after the learner ended is never mistaken for it); for a Ray job,
no PID and ``ray:<submission id>``.

This module is the interface the manager sees. It imports no launcher, and no launcher imports
another's caller: ``ray`` imports ``local`` (runs started before the service switched to Ray)
and ``ray_api``, which import only this module. The service chooses its launcher
(``trainui.service.server.make_launcher``); a further launcher (SLURM, Kubernetes) implements
``Launcher`` in a module of its own and is added there.
"""

from __future__ import annotations

import contextlib
import os
import signal

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

    def expect(self, store_types: frozenset[str]) -> None:
        """The types of object store (``local``, ``s3``, ``bluemix_objectstore``) the next runs
        will likely use: the last started run's. A launcher that prepares learners ahead
        prepares them for these."""

    def alive(self, pid: int | None, start: str | None) -> bool:
        """Is the learner still there (or, for a cluster, may it still be)?"""
        raise NotImplementedError

    def lost(self, pid: int | None, start: str | None, status: dict | None, run_dir: str) -> str:
        """The learner is gone without recording an outcome: clean up what it left that holds
        GPUs, and say why in a sentence (the run fails with it)."""
        _kill_group((status or {}).get("command_pgid"))
        from trainui.learner.runtime import remove_left_container

        remove_left_container(run_dir)  # a container run's container outlives its client
        return lost_reason(run_dir, self.how_ended(pid))

    def how_ended(self, pid: int | None) -> str | None:
        """How the learner ``pid`` ended, in words ("killed by signal SIGKILL"), when this
        launcher saw it end; else None."""
        return None

    def halt(self, pid: int | None, start: str | None) -> bool:
        """Ask the learner to halt its run (it stops the command and stores the results)."""
        raise NotImplementedError

    def forget(self, pid: int | None, start: str | None) -> None:
        """The run is deleted from the history: forget what the launcher keeps of it."""

    def tick(self) -> None:
        """Called about ten times a second by the run manager, for housekeeping."""

    def close(self) -> None:
        """The service stops."""


ATTEMPT_MARK = "trainui: attempt "  # learner-errors.txt: the line before each attempt's


def mark_attempt(run_dir: str, attempt: int) -> None:
    """Note in ``learner-errors.txt`` that an attempt's learner starts (``lost_reason``
    reads what follows the last note)."""
    with contextlib.suppress(OSError):
        fd = os.open(os.path.join(run_dir, LEARNER_ERRORS_FILE),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)  # fmt: skip
        try:
            os.write(fd, f"{ATTEMPT_MARK}{attempt} starts\n".encode())
        finally:
            os.close(fd)


def lost_reason(run_dir: str, how: str | None) -> str:
    """Why a run failed whose learner vanished: how it ended, when known, and the last line it
    wrote to ``learner-errors.txt`` (a traceback's), which is named only when it holds one."""
    reason = "the learner process ended unexpectedly" + (f" ({how})" if how else "")
    path = os.path.join(run_dir, LEARNER_ERRORS_FILE)
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        lines = []
    last = None
    for line in reversed(lines):
        if line.startswith(ATTEMPT_MARK):
            break  # what an earlier attempt's learner wrote is not this one's reason
        if line:
            last = line
            break
    if last is None:
        return reason
    shown = last if len(last) <= 200 and last.isprintable() else ascii(last[:200])[1:-1]
    return f"{reason}: {shown} (see {path})"


def _kill_group(pgid: int | None) -> None:
    if pgid:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
