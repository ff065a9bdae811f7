"""Experiments as the service keeps them (SPEC §9): their records, their runs ranked by the
objective, their state, and the median rule that stops a run early.

An experiment's runs are ordinary runs (``Run.experiment_id``, ``Run.parameters``): they queue,
start, end, are halted and deleted like any other. What is the experiment's own is here: the
record (its manifest's ``experiment:`` block, the seed drawn, who submitted it), what its runs
add up to (``describe``), and ``median_stop``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

import msgspec

from trainui.core.lifecycle import Run
from trainui.core.runs import (
    ACTIVE_STATES,
    COMPLETED,
    FAILED,
    FINAL_STATES,
    HALTED,
    PENDING,
    RESTARTING,
    STOPPED_EARLY,
)


class ExperimentRecord(msgspec.Struct, frozen=True):
    """An experiment: ``spec`` is its ``experiment:`` block as JSON (``Experiment.as_json``,
    with the seed the service drew when the manifest gave none)."""

    experiment_id: str
    name: str
    owner: str
    submitted_at: str
    spec: dict
    seq: int
    halted_at: str | None = None
    deleted: int = 0

    @property
    def url(self) -> str:
        return f"/v3/experiments/{self.experiment_id}"

    def row(self) -> dict:
        """The run store's row."""
        return msgspec.structs.asdict(self)


def objective_value(run: Run, metric: str | None) -> float | None:
    """The run's objective: the last value of ``metric`` it wrote (None: none yet)."""
    if not metric or not run.metrics:
        return None
    summary = run.metrics.get(metric)
    if not summary:
        return None
    value = summary.get("last")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def ranked(record: ExperimentRecord, runs: Iterable[Run]) -> list[Run]:
    """The runs, best first by the objective; runs that failed after the others (a crashed
    run's last value is not the experiment's answer), then runs without a value, in
    submission order; with no objective, in submission order."""
    objective = record.spec.get("objective") or {}
    metric = objective.get("metric")
    sign = -1.0 if objective.get("goal") == "maximize" else 1.0
    runs = sorted(runs, key=lambda r: r.seq or 0)
    if not metric:
        return runs
    scored = [(objective_value(r, metric), r) for r in runs]
    with_value = sorted(
        ((v, r) for v, r in scored if v is not None),
        key=lambda p: (p[1].status == FAILED, sign * p[0]),
    )
    return [r for _, r in with_value] + [r for v, r in scored if v is None]


def state(record: ExperimentRecord, runs: Sequence[Run]) -> str:
    """The experiment's state: ``pending`` (no run started yet), ``running``, or once every
    run has ended ``halted`` (halted by a user, though some runs completed first: what the
    user did, as Determined's canceled; its best run stays the best), ``completed`` (at least
    one run completed) or ``failed``."""
    statuses = [r.status for r in runs]
    if any(s in ACTIVE_STATES or s == RESTARTING for s in statuses):  # a run between attempts too
        return "running"
    if any(s == PENDING for s in statuses):
        started = any(r.started_at for r in runs)
        return "running" if started else PENDING
    if record.halted_at:
        return HALTED
    if any(s == COMPLETED for s in statuses):
        return COMPLETED
    if statuses and all(s == HALTED for s in statuses):
        return HALTED
    return FAILED if statuses else COMPLETED


def counts(runs: Iterable[Run]) -> dict[str, int]:
    """How many of the runs are in each state (every state named, 0 included)."""
    out = dict.fromkeys(
        ("pending", "restarting", "downloading", "running", "storing", *sorted(FINAL_STATES)), 0
    )
    for run in runs:
        out[run.status] = out.get(run.status, 0) + 1
    return out


def describe(record: ExperimentRecord, runs: Sequence[Run]) -> dict:
    """The experiment as the API shows it (without its runs)."""
    return described(record, runs)[0]


def described(record: ExperimentRecord, runs: Sequence[Run]) -> tuple[dict, list[Run]]:
    """The experiment as the API shows it without its runs, and its runs ranked."""
    order = ranked(record, runs)
    metric = (record.spec.get("objective") or {}).get("metric")
    best = None
    if order and metric:
        value = objective_value(order[0], metric)
        if value is not None and order[0].status != FAILED:
            summary = order[0].metrics.get(metric) or {}
            best = {
                "model_id": order[0].model_id,
                "value": value,
                "step": summary.get("step"),
                "parameters": order[0].parameters,
            }
    finished = [r.finished_at for r in runs if r.finished_at]
    ended = bool(runs) and all(r.status in FINAL_STATES for r in runs)
    out = {
        "experiment_id": record.experiment_id,
        "url": record.url,
        "name": record.name,
        "owner": record.owner,
        "submitted_at": record.submitted_at,
        "finished_at": max(finished) if ended and finished else None,
        "status": state(record, runs),
        **record.spec,
        "runs_by_status": counts(runs),
        "best": best,
    }
    out["count"] = len(runs)
    return out, order


def median_stop(
    steps: Sequence[int],
    values: Sequence[float],
    others: Iterable[tuple[Sequence[int], Sequence[float]]],
    goal: str,
    after_steps: int,
    min_runs: int,
) -> tuple[float, int, float] | None:
    """The median rule: ``(value, step, median)`` when the run whose objective curve is
    ``steps``/``values`` is worse than the median of the ``others``' values at a step (each
    one's last value at or before it, among the runs that reached it), once past
    ``after_steps`` and with at least ``min_runs`` others to compare; else None. The step is
    the run's last, or, for a run ahead of the others, the latest one that ``min_runs`` of
    them reached: a fast bad run is judged as soon as enough others catch up, not never."""
    if not steps:
        return None
    others = [(s, v) for s, v in others if s]
    reached = sorted((s[-1] for s, _ in others), reverse=True)
    if len(reached) < min_runs:
        return None
    step = min(steps[-1], reached[min_runs - 1])
    if step < after_steps:
        return None
    mine = bisect.bisect_right(steps, step) - 1
    if mine < 0 or not math.isfinite(values[mine]):
        return None
    value = values[mine]
    at_step = []
    for other_steps, other_values in others:
        if other_steps[-1] < step:
            continue  # it has not reached this step (yet)
        i = bisect.bisect_right(other_steps, step) - 1
        if i >= 0 and math.isfinite(other_values[i]):
            at_step.append(other_values[i])
    if len(at_step) < min_runs:
        return None
    at_step.sort()
    n = len(at_step)
    median = at_step[n // 2] if n % 2 else (at_step[n // 2 - 1] + at_step[n // 2]) / 2
    worse = value > median if goal != "maximize" else value < median
    return (value, step, median) if worse else None


def stop_reason(metric: str, value: float, step: int, median: float) -> str:
    """``stopped early: val_loss 0.41 at step 300, median 0.33``."""
    return f"{STOPPED_EARLY}{metric} {value:.4g} at step {step}, median {median:.4g}"
