"""A run's metrics as the TUI holds and draws them: series of points, their downsampling to a
chart's width, TensorBoard's smoothing, and the manifest fields that differ between runs.

No Textual here (the charts draw what these functions return), so it is tested and measured
alone. Points are kept in numpy arrays: 100,000 of them cost 1.6 MB, and drawing a chart never
touches more than two points per column of it.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np

# TensorBoard's smoothing slider, in a few steps: off, light, medium, heavy
SMOOTHING = (0.0, 0.6, 0.9, 0.99)
KEEP = 50_000  # points held per series; beyond, the oldest part is thinned (min/max kept)


class Series:
    """One metric's points, steps ascending. A step going backwards (a restarted attempt)
    drops the points at or after it, as TensorBoard's display does. ``revision`` grows at
    every change, so what was drawn from it is known to be stale."""

    __slots__ = ("steps", "values", "revision")

    def __init__(self, steps=(), values=()) -> None:
        self.steps = np.asarray(steps, dtype=np.float64)
        self.values = np.asarray(values, dtype=np.float64)
        self.revision = 0

    def __len__(self) -> int:
        return len(self.steps)

    def extend(self, steps, values) -> None:
        """Points after the ones held (``after_step`` reads); a step at or before the last one
        held starts the series again from there."""
        steps = np.asarray(steps, dtype=np.float64)
        if not len(steps):
            return
        values = np.asarray(values, dtype=np.float64)
        if len(self.steps) and steps[0] <= self.steps[-1]:
            keep = int(np.searchsorted(self.steps, steps[0], side="left"))
            self.steps, self.values = self.steps[:keep], self.values[:keep]
        self.steps = np.concatenate((self.steps, steps))
        self.values = np.concatenate((self.values, values))
        if len(self.steps) > KEEP:
            self.steps, self.values = downsample(self.steps, self.values, KEEP // 4)
        self.revision += 1

    def replace(self, steps, values) -> None:
        self.steps = np.asarray(steps, dtype=np.float64)
        self.values = np.asarray(values, dtype=np.float64)
        self.revision += 1

    @property
    def last_step(self) -> float | None:
        return float(self.steps[-1]) if len(self.steps) else None

    @property
    def last(self) -> float | None:
        return float(self.values[-1]) if len(self.values) else None

    def bounds(self) -> tuple[float, float] | None:
        if not len(self.values):
            return None
        return float(self.values.min()), float(self.values.max())


def downsample(steps: np.ndarray, values: np.ndarray, buckets: int):
    """At most two points per bucket of steps (a chart's column): each bucket's lowest and
    highest value, in the order they came, and the first and last points. A spike stays
    visible, which an average or a stride would lose."""
    n = len(steps)
    if buckets < 1 or n <= 2 * buckets:
        return steps, values
    first, last = steps[0], steps[-1]
    if last <= first:
        return steps[[0, -1]], values[[0, -1]]
    bucket = ((steps - first) * (buckets / (last - first))).astype(np.int64)
    np.minimum(bucket, buckets - 1, out=bucket)
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [n])) - 1
    # sorted by bucket, then value: each bucket's first is its minimum, its last its maximum
    order = np.lexsort((values, bucket))
    picked = np.unique(np.concatenate((order[starts], order[ends], [0, n - 1])))
    return steps[picked], values[picked]


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average, debiased so that the first
    points are not pulled towards zero."""
    if weight <= 0 or len(values) < 2:
        return values
    keep = 1.0 - weight
    averaged = itertools.accumulate(
        values.tolist(), lambda a, v: a * weight + keep * v, initial=0.0
    )
    averaged = np.fromiter(averaged, dtype=np.float64, count=len(values) + 1)[1:]
    debias = 1.0 - np.power(weight, np.arange(1, len(values) + 1, dtype=np.float64))
    return averaged / debias


def prepare(series: Series, width: int, weight: float = 0.0, log: bool = False):
    """The points a chart ``width`` columns wide draws: smoothed, thinned to two per column;
    on a log scale, the values it cannot show (zero and below) are NaN: gaps in the line,
    which keeps its steps (the x axis stays the run's)."""
    steps, values = series.steps, series.values
    if weight > 0:
        values = smooth(values, weight)
    steps, values = downsample(steps, values, max(1, width))
    if log:
        positive = values > 0
        if not positive.all():
            values = np.where(positive, values, np.nan)
    return steps, values


def not_positive(series: Series) -> int:
    """How many of ``series``' values a log scale cannot show."""
    return int(np.count_nonzero(series.values <= 0))


def step_ticks(first: float, last: float, count: int) -> tuple[list[float], list[str]]:
    """About ``count`` round steps between ``first`` and ``last`` and their short labels
    (``0``, ``25k``, ``1.5M``), for a chart's x axis."""
    if count < 2 or last <= first:
        return [first], [format_count(first)]
    raw = (last - first) / (count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    # steps are whole numbers: no tick between two (2.5, 7.5 of a run of 10 steps)
    spacings = [m * magnitude for m in (0.5, 1, 2, 2.5, 5, 10) if (m * magnitude) % 1 == 0]
    spacings = spacings or [1]
    spacing = next(s for s in spacings if s >= raw)
    # at least two ticks where the steps allow (1 to 30 in three: 10, 20, 30, not 20 alone)
    while spacing > spacings[0] and math.floor(last / spacing) - math.ceil(first / spacing) < 1:
        spacing = spacings[spacings.index(spacing) - 1]
    start = math.ceil(first / spacing) * spacing
    ticks = []
    tick = start
    while tick <= last + spacing * 1e-9:
        ticks.append(tick)
        tick += spacing
    return ticks, [format_count(t) for t in ticks]


def format_count(value: float) -> str:
    """A step count in a few cells: ``750``, ``25k``, ``2.5k``, ``1.2M``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}" if not float(value).is_integer() else str(int(value))


def format_step(step: float | None) -> str:
    if step is None:
        return "-"
    return f"{int(step):,}"


# --- comparing runs ---------------------------------------------------------------------------


def flatten(manifest, prefix: str = "") -> dict[str, str]:
    """A manifest's leaves by their dotted path (``model_definition.execution.command``)."""
    out: dict[str, str] = {}
    if isinstance(manifest, dict):
        for key, value in manifest.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                out.update(flatten(value, path))
            else:
                out[path] = _leaf(value)
    elif prefix:
        out[prefix] = _leaf(manifest)
    return out


def _leaf(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def differences(manifests: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """The fields whose values are not the same in every run (missing counts as different),
    each with its value in each run, in the order of the first manifest that has it."""
    flat = {key: flatten(m) for key, m in manifests.items()}
    fields: dict[str, None] = {}
    for leaves in flat.values():
        fields.update(dict.fromkeys(leaves))
    out = []
    for field in fields:
        values = [leaves.get(field) for leaves in flat.values()]
        if len(set(values)) > 1:
            out.append((field, ["-" if v is None else v for v in values]))
    return out
