"""The runs as the TUI holds them: one record per run, kept by ID, and the list's view of them.

Pure Python (no Textual): the run list widget draws from a ``RunTable``; events update it one
run at a time, and the filtered, sorted order is recomputed only when something it depends on
changed, so a 10,000-run history is never rebuilt on a tick.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from trainui.core.runs import FINAL_STATES, STATES, parse_time, resource_placement

SORTS = ("submitted", "status", "name", "duration")
METRIC_SORT = "metric:"  # METRIC_SORT + a metric's name: by its last value
_STATE_ORDER = {state: i for i, state in enumerate(STATES)}

# One symbol per state, so a run's state reads without colour too (monochrome terminals).
SYMBOLS = {
    "pending": "◌",
    "restarting": "↻",
    "downloading": "↓",
    "running": "●",
    "storing": "↑",
    "completed": "✓",
    "failed": "✗",
    "halted": "■",
    "deleted": "✕",  # not a run's state: what its open screen says once it is deleted
}


def local_time(stamp: str | None, short: bool = False) -> str:
    """A stamp in the local time zone: ``2026-11-27 05:14:03 UTC``, short: ``11-27 05:14``."""
    seconds = parse_time(stamp)
    if seconds is None:
        return "-"
    moment = time.localtime(seconds)
    if short:
        return time.strftime("%m-%d %H:%M", moment)
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", moment)


WAITING_STATES = ("pending", "restarting")  # for a slot, or between two attempts


def ran_seconds(run: dict, now: float | None = None) -> float | None:
    """How long the run ran: started → finished, or → now while it goes on; None if it never
    started; None while it waits (pending or restarting: started_at is then the attempt
    before's, and the clock would run on from it)."""
    if run.get("status") in WAITING_STATES:
        return None
    started = parse_time(run.get("started_at"))
    if started is None:
        return None
    finished = parse_time(run.get("finished_at"))
    if finished is None:
        if run.get("status") in FINAL_STATES:
            return None
        finished = now or time.time()
    return max(0.0, finished - started)


def waited_seconds(run: dict, now: float | None = None) -> float | None:
    """How long the run's attempt waited for a GPU or CPU slot: submitted → started, or → now
    while pending, or → finished when it ended before it started. A later attempt waits from
    when the one before it ended (a restart: its back-off, then the queue) or was resumed; a
    run halted before it ever started, then resumed, from when it was resumed."""
    queued = parse_time(run.get("submitted_at"))
    attempt = run.get("attempt") or 1
    attempts = run.get("attempts") or ()
    if attempt > 1 and attempts:
        # the attempt before this one (once this one ended, the list has it too)
        before = next((a for a in attempts if a.get("attempt") == attempt - 1), attempts[-1])
        queued = parse_time(before.get("resumed_at")) or parse_time(before.get("finished_at"))
    resumed = parse_time(run.get("resumed_at"))
    if resumed is not None and (queued is None or resumed > queued):
        queued = resumed  # resumed since (one halted before it ever started: days after)
    if queued is None:
        return None
    # started_at and finished_at are the last attempt's until this one starts or ends
    until = next(
        (t for t in map(parse_time, (run.get("started_at"), run.get("finished_at")))
         if t is not None and t >= queued),
        None,
    )  # fmt: skip
    if until is None:
        if run.get("status") not in WAITING_STATES:
            return None
        until = now or time.time()
    return max(0.0, until - queued)


# the run time; a pending run has none (its wait is ``waited_seconds``)
duration_seconds = ran_seconds


def time_text(run: dict, now: float | None = None) -> str:
    """The list's ``Ran`` cell: ``3m05s`` once started, ``wait 3m`` while pending or
    restarting (between two attempts)."""
    if run.get("status") in WAITING_STATES:
        return "wait " + format_wait(waited_seconds(run, now))
    return format_duration(ran_seconds(run, now))


def format_wait(seconds: float | None) -> str:
    """A wait, coarse (it fits the list's narrow column): ``12s``, ``3m``, ``2h``, ``3d``."""
    if seconds is None:
        return "-"
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= scale * (2 if unit == "d" else 1):
            return f"{int(seconds // scale)}{unit}"
    return f"{int(seconds)}s"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_bytes(count: int | float | None) -> str:
    if count is None:
        return "-"
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"


def format_value(value: float | None) -> str:
    """A metric's value in at most about 9 cells (the run list's columns, the charts'
    legends): ``0.5321``, ``1.23e-05``, ``12345``."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3g}"
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def resource_text(run: dict, cpu_mode: bool | None = None) -> str:
    """``small · GPU 0``, ``medium · GPU 0,1``, ``small · CPU`` (ran, runs or will run on the
    CPU), ``small · 1 GPU`` (waits for one)."""
    return resource_placement(run, cpu_mode)


def pending_reason(run: dict) -> str:
    """Why a pending run waits (the service's words), else ``""``."""
    if run.get("status") != "pending":
        return ""
    return run.get("status_message") or "waiting for a free GPU"


def is_active(run: dict) -> bool:
    return run.get("status") not in FINAL_STATES


def _haystack(run: dict) -> str:
    """What the filter searches: the row's words, a run's parameters as shown (lr=0.1)."""
    text = " ".join(
        str(run.get(key) or "")
        for key in (
            "name",
            "model_id",
            "status",
            "resource",
            "error_code",
            "description",
            "experiment_id",
        )
    )
    if run.get("parameters"):
        from trainui.tui.experiments import parameters_summary

        text += " " + parameters_summary(run["parameters"])
    return text.lower()


class RunTable:
    """Every run the service listed, by ID, and the order the list shows them in.

    ``upsert`` and ``remove`` change one run; ``view()`` gives the filtered, sorted IDs,
    recomputing them only after a change that can move a run (a new run, a state change while
    sorted by state, a new filter...). ``revision[id]`` grows at every change of a run, so the
    list knows which drawn rows are stale.
    """

    def __init__(self) -> None:
        self.runs: dict[str, dict] = {}
        self.revision: dict[str, int] = {}
        self.sort = "submitted"
        self.reverse = True  # newest first
        self.filter = ""
        self._words: list[str] = []
        self._order: list[str] = []
        self._dirty = True
        self._sequence = 0
        self._counts: dict[str, int] = {}
        # the order runs came in (the service's: by submission), which orders runs submitted
        # at the same time (an experiment's) as their IDs (random) would not
        self._arrival: dict[str, int] = {}
        # the run list's selection and marks, kept here: they outlive its screen (the
        # experiments shown in between, then the runs again)
        self.selected: str | None = None
        self.marked: set[str] = set()

    def __len__(self) -> int:
        return len(self.runs)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self.runs

    def get(self, model_id: str) -> dict | None:
        return self.runs.get(model_id)

    # --- changes --------------------------------------------------------------------------

    def upsert(self, run: dict) -> bool:
        """Add or replace a run; True when anything the list shows changed."""
        model_id = run["model_id"]
        old = self.runs.get(model_id)
        if old == run:
            return False
        self.runs[model_id] = run
        self._sequence += 1
        self.revision[model_id] = self._sequence
        self._count(old, -1)
        self._count(run, +1)
        if old is None:
            self._arrival[model_id] = self._sequence
            self._place_new(run)
        elif self._key_changed(old, run):
            self._dirty = True
        return True

    def remove(self, model_id: str) -> bool:
        if model_id not in self.runs:
            return False
        if not self._dirty:
            position = self.index(model_id)
            if position is not None:
                del self._order[position]
        run = self.runs.pop(model_id)
        self._count(run, -1)
        self.revision.pop(model_id, None)
        self._arrival.pop(model_id, None)
        return True

    def _count(self, run: dict | None, step: int) -> None:
        if run is not None:
            status = run.get("status", "")
            self._counts[status] = self._counts.get(status, 0) + step

    def reconcile(self, runs: Iterable[dict]) -> None:
        """Make the table hold exactly these runs (after a reload): changed ones replaced,
        vanished ones removed, the rest kept as they are."""
        seen = set()
        for run in runs:
            seen.add(run["model_id"])
            self.upsert(run)
        for model_id in [m for m in self.runs if m not in seen]:
            self.remove(model_id)

    def set_filter(self, text: str) -> None:
        if text != self.filter:
            self.filter = text
            self._words = text.lower().split()
            self._dirty = True

    def set_sort(self, sort: str, reverse: bool | None = None) -> None:
        if sort not in SORTS and not sort.startswith(METRIC_SORT):
            raise ValueError(f"cannot sort by {sort!r}")
        if reverse is None:
            reverse = self.reverse if sort == self.sort else sort in ("submitted", "duration")
        if (sort, reverse) != (self.sort, self.reverse):
            self.sort, self.reverse = sort, reverse
            self._dirty = True

    # --- the view -------------------------------------------------------------------------

    def view(self) -> list[str]:
        """The IDs the list shows, in order (recomputed only when stale)."""
        if self._dirty:
            runs = [r for r in self.runs.values() if self.matches(r)]
            if self.sort.startswith(METRIC_SORT):
                # by a metric's last value (smallest first: a loss); runs without it after
                # the others, whichever the direction
                name = self.sort[len(METRIC_SORT) :]
                valued = [r for r in runs if _last(r, name) is not None]
                valued.sort(key=lambda r: (_last(r, name), r.get("submitted_at") or ""))
                if self.reverse:
                    valued.reverse()
                runs = valued + [r for r in runs if _last(r, name) is None]
            else:
                runs.sort(key=self._sort_key, reverse=self.reverse)
            self._order = [r["model_id"] for r in runs]
            self._dirty = False
        return self._order

    def index(self, model_id: str, hint: int | None = None) -> int | None:
        """Where a run is in the view (None when not shown); ``hint``: where it was."""
        order = self.view()
        if hint is not None:
            for guess in (hint, hint + 1, hint - 1):
                if 0 <= guess < len(order) and order[guess] == model_id:
                    return guess
        if model_id not in self.runs:
            return None
        try:
            return order.index(model_id)  # a C loop: some 50 µs for 10,000 runs
        except ValueError:
            return None

    def matches(self, run: dict) -> bool:
        if not self._words:
            return True
        haystack = _haystack(run)
        return all(word in haystack for word in self._words)

    def find(self, text: str) -> str | None:
        """The run a user means by ``text``: an ID, the end of one, or a name (newest first)."""
        text = text.strip()
        if not text:
            return None
        if text in self.runs:
            return text
        lowered = text.lower()
        candidates = sorted(
            self.runs.values(), key=lambda r: r.get("submitted_at") or "", reverse=True
        )
        for test in (
            lambda r: r["model_id"].lower().endswith(lowered),
            lambda r: (r.get("name") or "").lower() == lowered,
            lambda r: lowered in r["model_id"].lower(),
            lambda r: lowered in (r.get("name") or "").lower(),
        ):
            for run in candidates:
                if test(run):
                    return run["model_id"]
        return None

    def counts(self) -> dict[str, int]:
        """How many runs are in each state."""
        return {state: n for state, n in self._counts.items() if n}

    # --- plumbing -------------------------------------------------------------------------

    def _sort_key(self, run: dict):
        submitted = run.get("submitted_at") or ""
        came = self._arrival.get(run["model_id"], 0)
        if self.sort == "status":
            return (_STATE_ORDER.get(run.get("status"), 99), submitted, came)
        if self.sort == "name":
            return ((run.get("name") or "").lower(), submitted, came)
        if self.sort == "duration":  # the run time; the pending ones by how long they wait
            waited = (waited_seconds(run) or 0.0) if run.get("status") in WAITING_STATES else 0.0
            return (ran_seconds(run) or 0.0, waited, submitted, came)
        return (submitted, came)

    def _key_changed(self, old: dict, new: dict) -> bool:
        if self._words and self.matches(old) != self.matches(new):
            return True
        if self.sort.startswith(METRIC_SORT):
            name = self.sort[len(METRIC_SORT) :]
            return _last(old, name) != _last(new, name)
        if self.sort == "status":
            return old.get("status") != new.get("status")
        if self.sort == "name":
            return old.get("name") != new.get("name")
        if self.sort == "duration":
            return True
        return old.get("submitted_at") != new.get("submitted_at")

    def _place_new(self, run: dict) -> None:
        """A new run: at the top of a newest-first list, without sorting the rest again."""
        if self._dirty:
            return
        if not self.matches(run):
            return
        if not self._order:
            self._order.append(run["model_id"])
            return
        if self.sort == "submitted":
            key = self._sort_key(run)
            if self.reverse and key >= self._sort_key(self.runs[self._order[0]]):
                self._order.insert(0, run["model_id"])
                return
            if not self.reverse and key >= self._sort_key(self.runs[self._order[-1]]):
                self._order.append(run["model_id"])
                return
        self._dirty = True


def _last(run: dict, metric: str) -> float | None:
    """The run's last value of ``metric``, if it has a finite one."""
    value = ((run.get("metrics") or {}).get(metric) or {}).get("last")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
