"""The experiments as the TUI holds them (SPEC §9), and how an experiment's runs are ranked.

Pure Python (no Textual). The experiments list draws from an ``ExperimentTable``, filled from
``list_experiments`` (the service sums each experiment's runs up: the list never needs the
runs themselves) and kept live by the service's ``experiment`` events and, for the counts, by
reading the list again a moment after its runs changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from trainui.core.runs import FINAL_STATES, STATES
from trainui.tui.runs import SYMBOLS, format_value

EXPERIMENT_SORTS = ("submitted", "status", "name", "best")
_STATE_ORDER = {state: i for i, state in enumerate(STATES)}


def objective(experiment: dict) -> tuple[str | None, str]:
    """(the objective's metric or None, ``minimize`` or ``maximize``)."""
    found = experiment.get("objective") or {}
    return found.get("metric"), found.get("goal") or "minimize"


def objective_value(run: dict, metric: str | None) -> float | None:
    """The run's objective: the last finite value of ``metric`` it wrote, else None."""
    if not metric:
        return None
    value = ((run.get("metrics") or {}).get(metric) or {}).get("last")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def rank(runs: Iterable[dict], metric: str | None, goal: str = "minimize") -> list[dict]:
    """The runs best first by the objective, as the service ranks them: the runs that failed
    after the others, then those without a value; ties keep the order given (the service's:
    submission order)."""
    runs = list(runs)
    if not metric:
        return runs
    sign = -1.0 if goal == "maximize" else 1.0
    scored = [(objective_value(r, metric), r) for r in runs]
    valued = sorted(
        ((v, r) for v, r in scored if v is not None),
        key=lambda p: (p[1].get("status") == "failed", sign * p[0]),
    )
    return [r for _, r in valued] + [r for v, r in scored if v is None]


def parameter_text(value: object) -> str:
    """A parameter's value in a few cells: ``0.001``, ``3e-05``, ``128``, ``relu``."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "-"
    if isinstance(value, (int, float)):
        return format_value(value)
    return str(value)


def parameter_values(parameters: dict | None, between: str = " · ") -> str:
    """``0.1 · 32``: a run's parameters' values alone, where their names do not fit."""
    return between.join(parameter_text(v) for v in (parameters or {}).values())


def parameters_summary(parameters: dict | None) -> str:
    """``learning_rate=0.1 hidden=32``: a run's parameters on one line."""
    return " ".join(f"{k}={parameter_text(v)}" for k, v in (parameters or {}).items())


def runs_done(experiment: dict) -> int:
    counts = experiment.get("runs_by_status") or {}
    return sum(n for state, n in counts.items() if state in FINAL_STATES)


def counts_text(experiment: dict) -> str:
    """The runs by state, a symbol each, the states with none left out: ``●2 ◌3 ✓10 ✗1``."""
    counts = experiment.get("runs_by_status") or {}
    return " ".join(f"{SYMBOLS.get(s, '?')}{counts[s]}" for s in STATES if counts.get(s))


def _best_key(experiment: dict) -> tuple:
    """Experiments of one objective together (a loss is not compared with an accuracy), by
    its metric's name, the best of each first: the smallest of a loss minimized, the largest
    of an accuracy maximized."""
    objective = experiment.get("objective") or {}
    value = experiment["best"]["value"]
    maximize = objective.get("goal") == "maximize"
    return (
        objective.get("metric") or "",
        maximize,
        -value if maximize else value,
        experiment.get("submitted_at") or "",
    )


def counts_words(experiment: dict) -> str:
    """The runs by state in words: ``2 running · 3 pending · 10 completed``."""
    counts = experiment.get("runs_by_status") or {}
    return " · ".join(f"{counts[s]} {s}" for s in STATES if counts.get(s)) or "no runs"


def best_text(experiment: dict) -> str:
    best = experiment.get("best") or {}
    return format_value(best.get("value")) if best else "-"


def search_space(experiment: dict) -> str:
    """``learning_rate: 0.3, 0.1, 0.01 · dropout: 0.1 to 0.5 (log)``."""
    parts = []
    for name, spec in (experiment.get("parameters") or {}).items():
        spec = spec or {}
        if "values" in spec:
            text = ", ".join(parameter_text(v) for v in spec["values"])
        else:
            text = f"{parameter_text(spec.get('min'))} to {parameter_text(spec.get('max'))}"
            if spec.get("log"):
                text += " (log)"
            if spec.get("integer"):
                text += " (integers)"
        parts.append(f"{name}: {text}")
    return " · ".join(parts)


class ExperimentTable:
    """Every experiment the service listed, by ID, and the order the list shows them in
    (newest first unless sorted otherwise); ``revision[id]`` grows at each change of one."""

    def __init__(self) -> None:
        self.experiments: dict[str, dict] = {}
        self.revision: dict[str, int] = {}
        self.sort = "submitted"
        self.reverse = True
        self._order: list[str] | None = None
        self._sequence = 0

    def __len__(self) -> int:
        return len(self.experiments)

    def get(self, experiment_id: str) -> dict | None:
        return self.experiments.get(experiment_id)

    def upsert(self, experiment: dict) -> bool:
        experiment_id = experiment["experiment_id"]
        old = self.experiments.get(experiment_id)
        if old is not None:  # an event's object may lack what the list's has
            experiment = {**old, **experiment}
        if old == experiment:
            return False
        self.experiments[experiment_id] = experiment
        self._sequence += 1
        self.revision[experiment_id] = self._sequence
        self._order = None
        return True

    def remove(self, experiment_id: str) -> bool:
        if self.experiments.pop(experiment_id, None) is None:
            return False
        self.revision.pop(experiment_id, None)
        self._order = None
        return True

    def reconcile(self, experiments: Iterable[dict]) -> bool:
        """Hold exactly these experiments; True when anything changed."""
        seen, changed = set(), False
        for experiment in experiments:
            seen.add(experiment["experiment_id"])
            changed |= self.upsert(experiment)
        for experiment_id in [e for e in self.experiments if e not in seen]:
            changed |= self.remove(experiment_id)
        return changed

    def set_sort(self, sort: str, reverse: bool | None = None) -> None:
        if sort not in EXPERIMENT_SORTS:
            raise ValueError(f"cannot sort experiments by {sort!r}")
        if reverse is None:
            reverse = self.reverse if sort == self.sort else sort == "submitted"
        self.sort, self.reverse = sort, reverse
        self._order = None

    def view(self) -> list[str]:
        if self._order is None:
            every = list(self.experiments.values())
            if self.sort == "best":  # by the best value; those without one after the others
                valued = [e for e in every if (e.get("best") or {}).get("value") is not None]
                valued.sort(key=_best_key)
                if self.reverse:
                    valued.reverse()
                every = valued + [e for e in every if e not in valued]
            else:
                every.sort(key=self._sort_key, reverse=self.reverse)
            self._order = [e["experiment_id"] for e in every]
        return self._order

    def _sort_key(self, experiment: dict):
        submitted = experiment.get("submitted_at") or ""
        if self.sort == "status":
            return (_STATE_ORDER.get(experiment.get("status"), 99), submitted)
        if self.sort == "name":
            return ((experiment.get("name") or "").lower(), submitted)
        return (submitted, experiment["experiment_id"])
