"""Which pending runs start now, and on which GPUs (SPEC §4).

The scheduler is pure and keeps no state between calls: the service hands ``Scheduler.plan``
the pending runs in submission order, the GPUs held by active runs and the current time, and
gets back the runs to start with their GPU ids, and a reason for every run that stays pending.
It reads no clock and does no I/O, so it is called again on every change (a submit, a run that
ends, a restart) and is cheap enough for that.

Rules:

- Submission order, with backfill: the queue is walked in order; a run that fits in the GPUs
  still free starts on the lowest free ids, one that does not fit waits, and later runs that
  fit may still start.
- Starvation guard: once the first run that cannot start (the blocked head) has waited longer
  than ``starvation_seconds``, backfill stops: no run behind it starts until it has started.
- A GPU is never given to two runs. GPU ids held in ``busy`` that are not in the inventory are
  ignored (a GPU removed from the inventory since the run started).
- A pending run that needs more GPUs than the machine has (refused at submit, but the
  inventory may shrink across a restart) is told so and does not block the queue.
- CPU mode (no GPU inventory): every run, whatever its size, takes one of ``cpu_slots`` slots
  and gets no GPU.
- An experiment's ``max_parallel`` (``room``: group -> (limit, active)): a run of a group at
  its limit waits without blocking anyone (it is neither the head nor counted ahead), so an
  experiment never holds GPUs back from other runs, nor takes more than its share.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

from trainui.core.manifest import RESOURCE_GPUS
from trainui.core.record import Record

__all__ = ["Plan", "Scheduler", "Waiting"]

_SIZE_OF = {gpus: size for size, gpus in RESOURCE_GPUS.items()}


class Waiting(Record):
    """A pending run: ``run_id``, the ``gpus`` it needs (1, 2 or 4) and ``queued_at``, in
    seconds on the same clock as the ``now`` given to ``Scheduler.plan``; ``group``: the
    experiment it is one of (None: none), whose ``max_parallel`` may hold it back."""

    __slots__ = ("run_id", "gpus", "queued_at", "group")
    _defaults = {"group": None}


class Plan(Record):
    """What to do now: ``starts``, a list of ``(run_id, gpu_ids)`` in queue order (``gpu_ids``
    is ``()`` in CPU mode), and ``reasons``, a sentence for every run that stays pending."""

    __slots__ = ("starts", "reasons")


def _gpus(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def _ahead(count: int) -> str:
    if count == 0:
        return ""
    return ", 1 run ahead" if count == 1 else f", {count} runs ahead"


class Scheduler:
    """Plans starts for one machine's GPUs (or CPU slots when it has none)."""

    __slots__ = ("_inventory", "cpu_slots", "starvation_seconds")

    def __init__(
        self,
        gpu_ids: Sequence[int] | None,
        cpu_slots: int = 1,
        starvation_seconds: float = 600.0,
    ) -> None:
        if cpu_slots < 1:
            raise ValueError(f"cpu_slots must be at least 1, not {cpu_slots}")
        self._inventory: tuple[int, ...] = tuple(sorted(set(gpu_ids or ())))
        self.cpu_slots = cpu_slots
        self.starvation_seconds = starvation_seconds

    @property
    def cpu_mode(self) -> bool:
        """True when the machine has no GPU: runs of every size take a CPU slot."""
        return not self._inventory

    @property
    def gpu_ids(self) -> tuple[int, ...]:
        """The GPU inventory, sorted."""
        return self._inventory

    def refuse(self, gpus: int) -> str | None:
        """At submit: a sentence when a run needing ``gpus`` GPUs can never fit on this
        machine, None when it can. Never refuses in CPU mode."""
        have = len(self._inventory)
        if not have or gpus <= have:
            return None
        size = _SIZE_OF.get(gpus)
        needs = f"{_gpus(gpus)} ({size})" if size else _gpus(gpus)
        return f"the run needs {needs} but this machine has {have}"

    def waiting_reason(self, gpus: int, free: int, ahead: int) -> str:
        """Why a run that does not fit waits: ``free`` GPUs (or CPU slots) now, ``ahead``
        runs queued before it."""
        if not self._inventory:
            return f"waiting for a CPU slot: {free} of {self.cpu_slots} free{_ahead(ahead)}"
        return f"waiting for {_gpus(gpus)}: {free} free{_ahead(ahead)}"

    def plan(
        self,
        waiting: Sequence[Waiting],
        busy: Mapping[str, Sequence[int]],
        busy_cpu_slots: int,
        now: float,
        room: Mapping[str, tuple[int, int]] | None = None,
    ) -> Plan:
        """Which of ``waiting`` (the pending runs, in submission order) start now.

        ``busy`` maps each active run to the GPU ids it holds; ``busy_cpu_slots`` is the number
        of CPU slots taken (used in CPU mode only); ``room``: each group's ``(limit, active)``.
        """
        held_back: list[Waiting] = []
        everyone = waiting
        if room:
            left = {group: limit - active for group, (limit, active) in room.items()}
            eligible = []
            for run in waiting:
                group = run.group
                if group in left:
                    if left[group] <= 0:
                        held_back.append(run)
                        continue
                    left[group] -= 1  # counted as if it starts; a run that does not start
                    # holds its place all the same (the queue's order is kept)
                eligible.append(run)
            waiting = eligible
        plan = self._plan(waiting, busy, busy_cpu_slots, now)
        if held_back:
            plan.reasons.update(
                self._held_back(held_back, everyone, plan, busy, busy_cpu_slots, room)
            )
        return plan

    def _held_back(self, held_back, everyone, plan, busy, busy_cpu_slots, room) -> dict[str, str]:
        """Why each run ``max_parallel`` held back waits: its experiment's limit when it runs
        that many; else (runs of it ahead wait for a GPU or slot) what those wait for, since
        a larger ``max_parallel`` would start nothing more."""
        started = {run_id for run_id, _ in plan.starts}
        running = {group: active for group, (_limit, active) in room.items()}
        for run in everyone:
            if run.run_id in started and run.group in running:
                running[run.group] += 1
        if self._inventory:
            held = {gpu for ids in busy.values() for gpu in ids}
            held.update(gpu for _, ids in plan.starts for gpu in ids)
            free = sum(1 for gpu in self._inventory if gpu not in held)
        else:
            free = max(0, self.cpu_slots - max(0, busy_cpu_slots) - len(plan.starts))
        order = {run.run_id: i for i, run in enumerate(everyone)}
        waiting_ahead = [order[r.run_id] for r in everyone if r.run_id not in started]  # sorted
        reasons = {}
        for run in held_back:
            limit = room[run.group][0]
            if running[run.group] >= limit:
                reasons[run.run_id] = (
                    f"waiting: its experiment runs at most {limit} at once (max_parallel)"
                )
            else:
                ahead = bisect.bisect_left(waiting_ahead, order[run.run_id])  # 10,000: no n²
                reasons[run.run_id] = self.waiting_reason(run.gpus, free, ahead)
        return reasons

    def _plan(
        self,
        waiting: Sequence[Waiting],
        busy: Mapping[str, Sequence[int]],
        busy_cpu_slots: int,
        now: float,
    ) -> Plan:
        if not self._inventory:
            return self._plan_cpu(waiting, busy_cpu_slots)

        held: set[int] = set()
        for ids in busy.values():
            held.update(ids)
        # Held ids outside the inventory (a GPU removed since) simply never match.
        free = [gpu for gpu in self._inventory if gpu not in held]
        have = len(self._inventory)
        starts: list[tuple[str, tuple[int, ...]]] = []
        reasons: dict[str, str] = {}
        # Pending runs, in queue order: (run, None) when it does not fit in the GPUs free at
        # its turn, (run, head) when it fits but the starvation guard holds it behind head.
        pending: list[tuple[Waiting, Waiting | None]] = []
        head: Waiting | None = None  # the first run that could not start
        guard = False  # the head has waited too long: backfill is off
        limit = self.starvation_seconds

        for run in waiting:
            need = run.gpus
            if need > have:
                reasons[run.run_id] = f"needs {_gpus(need)} but this machine has {have}"
                continue
            if need > len(free):
                pending.append((run, None))
                if head is None:
                    head = run
                    guard = now - run.queued_at > limit
                continue
            if guard:
                pending.append((run, head))
                continue
            starts.append((run.run_id, tuple(free[:need])))
            del free[:need]

        left = len(free)
        for ahead, (run, blocker) in enumerate(pending):
            if blocker is None:
                reasons[run.run_id] = self.waiting_reason(run.gpus, left, ahead)
            else:
                reasons[run.run_id] = (
                    f"waiting behind {blocker.run_id} "
                    f"(queued first, waiting for {_gpus(blocker.gpus)})"
                )
        return Plan(starts, reasons)

    def _plan_cpu(self, waiting: Sequence[Waiting], busy_cpu_slots: int) -> Plan:
        slots = self.cpu_slots
        free = max(0, slots - max(0, busy_cpu_slots))
        starts: list[tuple[str, tuple[int, ...]]] = []
        reasons: dict[str, str] = {}
        for index, run in enumerate(waiting):
            if index < free:
                starts.append((run.run_id, ()))
            else:
                reasons[run.run_id] = self.waiting_reason(run.gpus, 0, index - free)
        return Plan(starts, reasons)
