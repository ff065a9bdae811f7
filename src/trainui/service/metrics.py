"""A run's metric points, as the service keeps them: read from ``<run_dir>/metrics.jsonl``.

The file is the truth (SPEC §8): the learner (or, for a Ray run, the service's Ray mirror)
appends one JSON object a line, ``{"metric", "step", "value", "time"}``. The service reads it
by byte offset, complete lines only (a torn last line is read once its newline came), so a
service that restarts reads it again from the start and ends with the same points: nothing lost,
nothing repeated, and nothing of it in the run store but each metric's summary (``Run.metrics``).

Each metric is kept compactly, three ``array``\\ s (step: ``q``, value and time: ``d``, 24 bytes a
point; a list of floats takes about 4 times that):

- every point, in file order: the export (``trainui metrics --json``, ``offset=``), and the
  summary (last, step, min, max, steps: the number of points);
- the display series: like TensorBoard, a step that goes backwards (a restarted attempt) purges
  the earlier points with a step at or after it, so the curve is the latest attempt's. It shares
  the arrays above until the first purge (the common case costs nothing more).

The display series is downsampled for a chart (``max_points``) by min/max per bucket (M4-like,
without the first/last of each bucket): each bucket of consecutive points keeps its lowest and
its highest value, in step order, so a one-step spike of the loss is always drawn, which a mean
or a stride would hide. LTTB was the other candidate: it keeps one point a bucket, the one that
makes the largest triangle, which drops one of a spike and a dip falling in one bucket, and its
choice for a bucket changes as points are appended (a live curve would shimmer).

Running runs are read from the service's poll loop (``MetricsKeeper.poll``), at most
``POLL_BYTES`` a run a beat (a service restarted beside a large file catches up without
stalling its event loop); ended runs only when asked, kept in a small LRU.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import time
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from typing import Annotated

import msgspec

from trainui.core.runs import METRICS_FILE, RECORD_METRICS

POLL_BYTES = 4 << 20  # read of a running run's file per poll of the service, at most
FINISH_BYTES = 16 << 20  # read of an ended run's file by the service's loop, at most
READ_CHUNK = 8 << 20  # read at a time when a whole file is read (an ended run)
ENDED_KEPT = 64  # ended runs whose points stay in memory (least recently used dropped first;
# more than a compare screen of 20 or 50 runs reads, which an LRU of fewer would read again whole
# at every open)
ENDED_POINTS = 4_000_000  # and at most this many points between them (about 100 MB)


# a step beyond 64 bits would not fit the index's array('q'): such a line is malformed
Step = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class Point(msgspec.Struct):
    """A line of ``metrics.jsonl``; ``time`` is optional (0 when the writer left it out)."""

    metric: str
    step: Step
    value: float
    time: float = 0.0


_decoder = msgspec.json.Decoder(Point)


class Series:
    """One metric's points: every point in file order, and the display series (purged)."""

    __slots__ = ("steps", "values", "times", "d_steps", "d_values", "d_times", "min", "max")

    def __init__(self) -> None:
        self.steps = array("q")
        self.values = array("d")
        self.times = array("d")
        # the display series: None while it is every point (no step went backwards yet)
        self.d_steps: array | None = None
        self.d_values: array | None = None
        self.d_times: array | None = None
        self.min = math.inf
        self.max = -math.inf

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, value: float, t: float) -> None:
        steps = self.steps
        if self.d_steps is None and steps and step < steps[-1]:
            # the first purge: the display series parts from every point
            self.d_steps, self.d_values, self.d_times = (
                array("q", steps), array("d", self.values), array("d", self.times)
            )  # fmt: skip
        if self.d_steps is not None:
            d_steps = self.d_steps
            if d_steps and step < d_steps[-1]:  # TensorBoard's purge of an earlier attempt
                cut = bisect.bisect_left(d_steps, step)
                del d_steps[cut:], self.d_values[cut:], self.d_times[cut:]  # type: ignore[index]
                # the summary is of the points shown: what an earlier attempt reached after
                # the step this one went back to is no longer its min or max
                self.min = min(self.d_values, default=math.inf)  # type: ignore[type-var]
                self.max = max(self.d_values, default=-math.inf)  # type: ignore[type-var]
            d_steps.append(step)
            self.d_values.append(value)  # type: ignore[union-attr]
            self.d_times.append(t)  # type: ignore[union-attr]
        steps.append(step)
        self.values.append(value)
        self.times.append(t)
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def display(self) -> tuple[array, array, array]:
        if self.d_steps is None:
            return self.steps, self.values, self.times
        return self.d_steps, self.d_values, self.d_times  # type: ignore[return-value]

    def summary(self) -> dict:
        """``{last, step, min, max, steps, time}``: ``min`` and ``max`` of the points shown
        (those of an earlier attempt that a restart went back over are not, as in the chart);
        ``steps``: how many points were written (what ``offset=`` counts)."""
        return {
            "last": self.values[-1],
            "step": self.steps[-1],
            "min": self.min,
            "max": self.max,
            "steps": len(self.steps),
            "time": self.times[-1],
        }


class MetricsIndex:
    """One run's ``metrics.jsonl`` read so far: ``offset`` bytes, as ``Series`` per metric."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0  # bytes read: always the end of a line
        self.behind = False  # the file held more than the last poll read
        self.series: dict[str, Series] = {}  # in the order metrics first appeared
        self.points = 0
        self.skipped = 0  # lines that are not a point (malformed, non-finite)
        self.changed: set[str] = set()  # metrics with new points since ``take_changed``

    def read(self, limit: int | None = None) -> int:
        """Read what was appended since (complete lines, at most about ``limit`` bytes);
        the number of points taken. A file shorter than what was read (a Ray mirror cutting
        back what it will append again, the same bytes) is waited for, never re-read."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        taken = 0
        try:
            size = os.fstat(fd).st_size
            while self.offset < size:
                want = size - self.offset
                if limit is not None:
                    want = min(want, max(limit, 1 << 16))
                want = min(want, READ_CHUNK)
                data = os.pread(fd, want, self.offset)
                end = data.rfind(b"\n") + 1
                if end == 0:
                    if len(data) < want or want >= size - self.offset:
                        break  # a torn last line: read once its newline came
                    data = os.pread(fd, size - self.offset, self.offset)  # one long line
                    end = data.rfind(b"\n") + 1
                    if end == 0:
                        break
                taken += self._take(memoryview(data)[:end])
                self.offset += end
                if limit is not None:
                    limit -= end
                    if limit <= 0:
                        break
        finally:
            os.close(fd)
        return taken

    def _take(self, data: memoryview) -> int:
        try:
            points: Iterable[Point] = _decoder.decode_lines(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            points = self._one_by_one(bytes(data))
        series = self.series
        changed = self.changed
        taken = 0
        isfinite = math.isfinite
        for p in points:
            value = p.value
            if not isfinite(value) or not isfinite(p.time):
                self.skipped += 1
                continue
            name = p.metric
            s = series.get(name)
            if s is None:
                s = series[name] = Series()
            s.add(p.step, value, p.time)
            changed.add(name)
            taken += 1
        self.points += taken
        return taken

    def _one_by_one(self, data: bytes) -> list[Point]:
        """The block's points, line by line: a malformed line is counted and left out."""
        points = []
        decode = _decoder.decode
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                points.append(decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.skipped += 1
        return points

    # --- answers ---------------------------------------------------------------------------

    def summary(self) -> list[dict]:
        return [{"name": name, **s.summary()} for name, s in self.series.items()]

    def record(self, also: str | None = None) -> dict | None:
        """The run record's ``metrics``: ``{name: {last, step, min, max, steps}}`` of the
        first ``RECORD_METRICS`` metrics, and of ``also`` (its experiment's objective, which
        ranks it) wherever it came; None when there is none."""
        if not self.series:
            return None
        names = list(itertools.islice(self.series, RECORD_METRICS))
        if also is not None and also in self.series and also not in names:
            names.append(also)
        out = {}
        for name in names:
            s = self.series[name]
            out[name] = {
                "last": s.values[-1], "step": s.steps[-1], "min": s.min, "max": s.max,
                "steps": len(s.steps),
            }  # fmt: skip
        return out

    def take_changed(self) -> dict[str, dict]:
        """``{name: {last, step}}`` of the metrics with new points since the last call."""
        out = {}
        for name in self.changed:
            s = self.series[name]
            out[name] = {"last": s.values[-1], "step": s.steps[-1]}
        self.changed = set()
        return out

    def display_series(
        self, names: list[str] | None = None, max_points: int | None = None
    ) -> dict[str, dict]:
        """The display series of the metrics ``names`` (None: every metric), each as
        ``points_of`` answers it without its name, downsampled to ``max_points``: what a chart
        of each draws, in one answer. A name the run does not have is left out."""
        wanted = self.series if names is None else dict.fromkeys(names)
        out = {}
        for name in wanted:
            if name in self.series:
                points = self.points_of(name, max_points=max_points)
                del points["name"]
                out[name] = points
        return out

    def points_of(
        self,
        name: str,
        after_step: int | None = None,
        max_points: int | None = None,
        offset: int | None = None,
    ) -> dict:
        """A metric's points (KeyError: no such metric): with ``offset``, every point as
        written from the ``offset``-th on; else the display series, after ``after_step``,
        downsampled to ``max_points`` (min/max per bucket)."""
        s = self.series[name]
        if offset is not None:
            steps, values, times = s.steps[offset:], s.values[offset:], s.times[offset:]
            return _answer(name, steps, values, times, False)
        steps, values, times = s.display()
        if after_step is not None:
            start = bisect.bisect_right(steps, after_step)  # the display series is in order
            steps, values, times = steps[start:], values[start:], times[start:]
        if max_points is not None and len(steps) > max_points:
            import numpy as np

            keep = np.asarray(downsample(values, max_points), dtype=np.int64)
            return _answer(  # copies taken (np.array), so the arrays may still grow
                name,
                np.array(steps, dtype=np.int64)[keep].tolist(),
                np.array(values, dtype=np.float64)[keep].tolist(),
                np.array(times, dtype=np.float64)[keep].tolist(),
                True,
            )
        return _answer(name, steps, values, times, False)


def _answer(name: str, steps, values, times, downsampled: bool) -> dict:
    return {
        "name": name,
        "steps": steps.tolist() if isinstance(steps, array) else steps,
        "values": values.tolist() if isinstance(values, array) else values,
        "times": times.tolist() if isinstance(times, array) else times,
        "downsampled": downsampled,
    }


def downsample(values, max_points: int) -> list[int]:
    """The indexes of the points of ``values`` kept for a chart of at most ``max_points``
    (at least 2): the first and the last, and of each bucket of consecutive points between,
    the lowest and the highest (one when they are the same point), in order."""
    import numpy as np

    n = len(values)
    if n <= max_points:
        return list(range(n))
    if max_points < 4:
        return [0, n - 1]
    v = np.array(values, dtype=np.float64)  # a copy: the array may grow meanwhile
    buckets = (max_points - 2) // 2
    inner = v[1 : n - 1]
    edges = np.unique(np.linspace(0, n - 2, buckets + 1).astype(np.int64)[:-1])
    bucket = np.repeat(np.arange(len(edges)), np.diff(np.append(edges, n - 2)))
    kept = [np.array([0, n - 1])]
    for reduce in (np.minimum, np.maximum):
        extreme = reduce.reduceat(inner, edges)
        at = np.flatnonzero(inner == extreme[bucket])  # the first of each bucket's extreme
        _, first = np.unique(bucket[at], return_index=True)
        kept.append(at[first] + 1)
    return np.unique(np.concatenate(kept)).tolist()


class MetricsKeeper:
    """Every run's ``MetricsIndex`` the service keeps: running runs' (read at each poll),
    and the ended runs last asked about (an LRU)."""

    def __init__(self, runs_dir: str) -> None:
        self.runs_dir = runs_dir
        self.live: dict[str, MetricsIndex] = {}
        self.ended: OrderedDict[str, MetricsIndex] = OrderedDict()
        self.last_event: dict[str, float] = {}  # run -> when its last metrics event went

    def path(self, model_id: str) -> str:
        return os.path.join(self.runs_dir, model_id, METRICS_FILE)

    def poll(self, model_id: str) -> MetricsIndex:
        """A running run's index, brought up to date (at most ``POLL_BYTES`` read); its
        ``behind`` says whether the file held more than that (a restarted service catching
        up: what it read so far is no summary yet)."""
        index = self.live.get(model_id)
        kept = self.ended.pop(model_id, None)  # read between two attempts: the live one goes on
        if index is None:
            index = kept or MetricsIndex(self.path(model_id))
            self.live[model_id] = index
        try:
            size = os.stat(index.path).st_size  # a stat: the common case
        except FileNotFoundError:
            size = 0
        if size > index.offset:
            index.read(POLL_BYTES)
        index.behind = size > index.offset
        return index

    def finish(self, model_id: str) -> MetricsIndex | None:
        """The run ended: its index read to the end of the file, kept among the ended. None
        when more than ``FINISH_BYTES`` are left to read (a service that was down while the run
        wrote them): reading them here would hold up the service; the run's points are read
        in a thread once asked for (``index``), and its record follows them then."""
        index = self.live.pop(model_id, None) or self.ended.pop(model_id, None)
        if index is None:
            index = MetricsIndex(self.path(model_id))
        try:
            left = os.stat(index.path).st_size - index.offset
        except FileNotFoundError:
            left = 0
        if left > FINISH_BYTES:
            return None
        index.read()
        if index.points:
            self.ended.pop(model_id, None)  # one read before its end is behind this one
            self.keep(model_id, index)
        return index

    def index(self, model_id: str, active: bool) -> MetricsIndex:
        """The run's index read to now, for a request (blocking): a running run's as the poll
        keeps it, an ended run's kept in the LRU."""
        if active:
            index = self.live.get(model_id)
            return index if index is not None else self.poll(model_id)
        index = self.cached(model_id)
        if index is None:
            index = MetricsIndex(self.path(model_id))
            index.read()
            self.keep(model_id, index)
        return index

    def cached(self, model_id: str) -> MetricsIndex | None:
        """An ended run's index if kept (now the most recently used), else None."""
        index = self.ended.get(model_id)
        if index is not None:
            self.ended.move_to_end(model_id)
        return index

    def keep(self, model_id: str, index: MetricsIndex) -> MetricsIndex:
        """Keep an ended run's index (or the one kept meanwhile); drop the least recently
        used beyond ``ENDED_KEPT`` runs or ``ENDED_POINTS`` points."""
        index = self.ended.setdefault(model_id, index)
        self.ended.move_to_end(model_id)
        total = sum(i.points for i in self.ended.values())
        while len(self.ended) > 1 and (len(self.ended) > ENDED_KEPT or total > ENDED_POINTS):
            _, dropped = self.ended.popitem(last=False)
            total -= dropped.points
        return index

    def forget(self, model_id: str) -> None:
        self.live.pop(model_id, None)
        self.ended.pop(model_id, None)
        self.last_event.pop(model_id, None)

    def due(self, model_id: str, interval: float) -> bool:
        """Has ``interval`` passed since the run's last metrics event (stamped now if so)?"""
        now = time.monotonic()
        if now - self.last_event.get(model_id, -math.inf) < interval:
            return False
        self.last_event[model_id] = now
        return True
