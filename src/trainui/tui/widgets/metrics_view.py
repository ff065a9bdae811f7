"""The metrics of one run, or of several runs overlaid: a chart per metric, live.

What it reads comes through the client only: each run's summary (``metrics``) with, in the
same answer, the service's display series (at most ``POINTS`` points) of the metrics shown that
it does not hold yet (named from the run's record the first time: one request a run, not one a
metric); then only the points after the last step held (``metric_points``, ``after_step``). It
reads again when the app says new points came (the service's ``metrics`` events) and, while a
run goes on, every ``POLL`` seconds: one self-rescheduling worker, so reads never pile up.

Only the charts in view are made whole (title, plot, legend); the others are empty boxes of the
same size until they are scrolled or moved to (``MetricChart(lazy=True)``): opening a view of
ten metrics at 80x24 makes two.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from trainui.client import ClientError, ServiceUnreachable
from trainui.tui.keymap import bindings
from trainui.tui.metrics import Series
from trainui.tui.widgets.metric_chart import MetricChart, next_smoothing

POINTS = 1000  # the display series asked for: five points a column of a 200-column chart
# (a chart draws two a column: the lowest and the highest; more would cost every read for nothing)
POLL = 2.0  # seconds between reads while a run goes on (events wake it sooner)
SHOWN_AT_FIRST = 12  # charts made at first; the others are picked (p)
READS_AT_ONCE = 16
TWO_COLUMNS = 120  # this wide, the charts go two a row
ROW = 12  # a chart's height, about: the rows fill the view's height (row_height)
ROW_MAX = 16  # the tallest a chart grows when there are few (each line costs drawing)
SLIVER = 3  # a chart with fewer of its lines in view is not made yet
EMPTY = (
    "No metrics yet. A run's metrics come from $LOG_DIR/metrics.jsonl (a JSON object a line), "
    "or from the manifest's evaluation_metrics (tensorboard, log pattern)."
)


class MetricsView(Vertical, can_focus=True):
    """``runs``: (model ID, label) of each run drawn; with one run and no label, each chart's
    line is named after its metric. ``live()``: whether a run may still grow."""

    BINDINGS = bindings("metrics")
    DEFAULT_CSS = """
    MetricsView { height: 1fr; }
    MetricsView > #metrics-note {
        height: auto; max-height: 3; color: $text-muted; padding: 0 1; background: $boost;
    }
    MetricsView > #charts {
        height: 1fr; layout: grid; grid-size: 1; grid-rows: 10; scrollbar-gutter: stable;
    }
    MetricsView > #charts > MetricChart { height: 1fr; }
    MetricsView.-zoomed > #charts { layout: vertical; }
    MetricsView.-zoomed MetricChart { display: none; }
    MetricsView.-zoomed MetricChart.-zoom { display: block; height: 1fr; }
    """

    class Read(Message):
        """New summaries or points were read (a compare screen redraws its tables)."""

    def __init__(
        self,
        client,
        runs: list[tuple[str, str | None]],
        live: Callable[[], bool] = lambda: False,
        ahead: dict[str, asyncio.Future] | None = None,
        **kwargs,
    ) -> None:
        """``ahead``: model ID → a summary with its display series read ahead (``read_ahead``;
        a future: it may still be on its way, its result None when it failed): the first read
        takes it instead of asking the service again."""
        super().__init__(**kwargs)
        self.client = client
        self.runs = runs
        self.live = live
        self._ahead = dict(ahead or {})
        self.summaries: dict[str, dict[str, dict]] = {}  # model ID → metric → its summary
        self.names: list[str] = []  # every metric of the runs, sorted
        self.shown: list[str] | None = None  # picked with p; None: the first SHOWN_AT_FIRST
        self.series: dict[tuple[str, str], Series] = {}
        self.log_scale = False
        self.smoothing = 0.0
        self.selected = 0
        self.problem = ""
        self.reads = 0  # complete reads so far (tests and the bench wait on it)
        self._wake = asyncio.Event()
        self._refetch: set[tuple[str, str]] = set()  # a step went backwards: read it all again
        self._taken: set[tuple[str, str]] = set()  # series read with a summary, to be drawn
        self._columns = 1  # the grid's, and its rows' height (on_resize)
        self._row = 10
        self._sized = False

    def compose(self) -> ComposeResult:
        yield Static("reading the metrics…", id="metrics-note", markup=False)
        yield ChartGrid(id="charts", can_focus=False)

    def on_mount(self) -> None:
        self.watch(self.query_one("#charts"), "scroll_y", self._fill, init=False)
        self._follow()

    def on_resize(self) -> None:
        self._size_rows()
        self._fill()

    def _size_rows(self) -> None:
        """The grid's columns and rows' height for this size and the charts it holds."""
        count = len(self.charts())
        # one chart has the whole width: a second column would stay empty
        columns = 2 if self.size.width >= TWO_COLUMNS and count > 1 else 1
        row = row_height(self.size.height - 1, count, columns)
        if (columns, row) != (self._columns, self._row) or not self._sized:
            self._sized = True  # set only when it changes: each set is a layout of the grid
            self._columns, self._row = columns, row
            grid = self.query_one("#charts")
            grid.styles.grid_size_columns = columns
            grid.styles.grid_rows = str(row)

    def _in_view(self, count: int) -> range:
        """The places (0 to ``count - 1``) of the charts the grid shows now, from its rows'
        height and its scroll (known before the charts are laid out: they are made at once)."""
        if self.has_class("-zoomed"):
            return range(min(self.selected, count), min(self.selected + 1, count))
        grid = self.query_one("#charts")
        height = grid.size.height or self.size.height - 1
        if height <= 0:  # not laid out yet: as a terminal of 24 lines would
            height = 23
        top = int(grid.scroll_y)
        # a row of which only a few lines show (the grid's last lines) is made once scrolled to
        first = (top + self._row - SLIVER) // self._row
        last = max(first, (top + height - SLIVER) // self._row)
        return range(first * self._columns, min(count, (last + 1) * self._columns))

    def _fill(self, *_args) -> None:
        """Make the charts that came into view (the others stay empty until they do)."""
        charts = self.charts()
        for i in self._in_view(len(charts)):
            charts[i].build()

    def on_focus(self) -> None:
        charts = self.charts()
        if charts:
            charts[min(self.selected, len(charts) - 1)].focus(scroll_visible=True)

    # --- what is shown --------------------------------------------------------------------

    def charts(self) -> list[MetricChart]:
        return list(self.query_one("#charts").query_children(MetricChart))

    def chart(self, metric: str) -> MetricChart | None:
        for chart in self.charts():
            if chart.metric == metric:
                return chart
        return None

    def shown_names(self) -> list[str]:
        if self.shown is None:
            return self.names[:SHOWN_AT_FIRST]
        return [n for n in self.shown if n in self.names]

    def label(self, model_id: str, metric: str) -> str:
        for run_id, label in self.runs:
            if run_id == model_id:
                return label or metric
        return model_id

    def forget(self, gone: set[str]) -> None:
        """Runs that are no longer there (deleted): their lines and legends go."""
        for chart in self.charts():
            chart.remove_series({self.label(m, chart.metric) for m in gone})
        self.runs = [(m, label) for m, label in self.runs if m not in gone]
        for key in [key for key in self.series if key[0] in gone]:
            del self.series[key]
        for model_id in gone:
            self.summaries.pop(model_id, None)

    def reorder(self, runs: list[tuple[str, str | None]]) -> None:
        """The same runs in another order (ranked again): each chart's legend follows it."""
        self.runs = runs
        for chart in self.charts():
            chart.set_order([self.label(model_id, chart.metric) for model_id, _label in runs])

    async def _arrange(self) -> None:
        """One chart per metric shown, in order; charts no longer shown go."""
        wanted = self.shown_names()
        grid = self.query_one("#charts")
        have = {chart.metric: chart for chart in self.charts()}
        for metric, chart in have.items():
            if metric not in wanted:
                await chart.remove()
        new = []
        in_view = self._in_view(len(wanted))
        for place, metric in enumerate(wanted):
            if metric not in have:
                chart = MetricChart(metric, lazy=place not in in_view)
                for model_id, _label in self.runs:  # a run's colour is the same in every chart
                    chart.color_of(self.label(model_id, metric))
                chart.order = [self.label(model_id, metric) for model_id, _label in self.runs]
                chart.log_scale, chart.smoothing = self.log_scale, self.smoothing
                for model_id, _label in self.runs:  # the points held: drawn once mounted
                    series = self.series.get((model_id, metric))
                    if series is not None:
                        chart.set_series(self.label(model_id, metric), series, redraw=False)
                new.append(chart)
        if new:
            await grid.mount_all(new)
        order = {metric: i for i, metric in enumerate(wanted)}
        charts = sorted(self.charts(), key=lambda c: order[c.metric])
        if [c.metric for c in charts] != [c.metric for c in self.charts()]:
            grid.sort_children(key=lambda c: order.get(getattr(c, "metric", ""), 0))
        self._size_rows()  # fewer charts than the view holds: taller ones
        self._fill()
        self._note()
        if new and self.has_focus:  # focused before its charts came: the selected one takes it
            self.on_focus()

    def _note(self) -> None:
        if self.problem:
            text = self.problem
        elif not self.reads:
            text = "reading the metrics…"
        elif not self.names:
            text = EMPTY
        else:
            shown = len(self.shown_names())
            count = f"{len(self.names):,} metric{'s' if len(self.names) != 1 else ''}"
            if shown < len(self.names):
                count = f"{shown} of {count} shown (p picks)"
            flags = []
            if self.log_scale:
                flags.append("log scale")
            if self.smoothing:
                flags.append(f"smoothed {self.smoothing:g}")
            text = " · ".join([count, *flags, "live" if self.live() else "ended"])
        for note in self.query("#metrics-note").results(Static):  # none: being taken down
            note.update(text, layout=False)

    # --- reading --------------------------------------------------------------------------

    def wake(self) -> None:
        """New points came (a ``metrics`` event): read them now."""
        self._wake.set()

    @work(exclusive=True, group="metrics")
    async def _follow(self) -> None:
        while True:
            try:
                await self.read()
            except asyncio.CancelledError:
                raise
            except ServiceUnreachable as error:
                self.problem = f"The metrics cannot be read: {error}"
            except ClientError as error:
                self.problem = (
                    "This service does not serve metrics (it is older than this TUI)."
                    if error.status == 404 and not self.summaries
                    else f"The metrics cannot be read: {error}"
                )
            else:
                self.problem = ""
            self._note()
            waiter = asyncio.ensure_future(self._wake.wait())
            try:  # not wait_for: see TrainuiApp._after_first_view
                await asyncio.wait({waiter}, timeout=POLL if self.live() else None)
            finally:
                waiter.cancel()
            self._wake.clear()

    async def read(self) -> None:
        """Each run's summary, with the display series of the metrics it is thought to show
        and does not hold yet (one request a run), then the new points of the metrics shown."""
        ids = [model_id for model_id, _label in self.runs]
        limit = asyncio.Semaphore(READS_AT_ONCE)

        async def with_series(model_id: str, names: list[str]) -> dict:
            async with limit:  # a few connections, kept alive, not one a run
                return await self.client.metrics(model_id, **self._series_query(names))

        async def first(model_id: str) -> dict:
            ahead = self._ahead.pop(model_id, None)
            if ahead is not None and not self.names:
                summary = await ahead
                if summary is not None:
                    return summary
            return await with_series(model_id, self._guess(model_id))

        async def unless_gone(model_id: str) -> dict | None:
            try:
                return await first(model_id)
            except ClientError as error:
                if error.status == 404 and str(error) == f"run {model_id} not found":
                    return None  # deleted meanwhile (from another terminal): left out
                raise

        summaries = await asyncio.gather(*(unless_gone(m) for m in ids))
        gone = {m for m, summary in zip(ids, summaries, strict=True) if summary is None}
        if gone:
            self.forget(gone)
            summaries = [s for s in summaries if s is not None]
            ids = [m for m in ids if m not in gone]
        names: set[str] = set()
        for model_id, summary in zip(ids, summaries, strict=True):
            by_name = {m["name"]: m for m in summary.get("metrics") or []}
            self.summaries[model_id] = by_name
            names.update(by_name)
            self._take_series(model_id, summary.get("series"))
        if names != set(self.names):
            self.names = sorted(names)
        # what the guess missed (no run record to guess from, or more metrics than it
        # holds): one more request a run for them all, not one a metric
        missing = {m: self._unheld(m) for m in ids}
        more = [m for m in ids if missing[m]]
        answers = await asyncio.gather(*(with_series(m, missing[m]) for m in more))
        for model_id, answer in zip(more, answers, strict=True):
            self._take_series(model_id, answer.get("series"))
        await self._arrange()
        wanted = []
        for metric in self.shown_names():
            for model_id in ids:
                summary = self.summaries[model_id].get(metric)
                if summary is not None:
                    wanted.append((model_id, metric, summary))

        async def one(model_id: str, metric: str, summary: dict) -> tuple[str, str] | None:
            async with limit:
                return await self._read_points(model_id, metric, summary)

        changed = set(await asyncio.gather(*(one(*w) for w in wanted))) | self._taken
        self._taken = set()
        if not self.is_attached or not self.query("#charts"):
            return  # its screen was left while the points came: nothing to draw them in
        charts = {chart.metric: chart for chart in self.charts()}
        redraw = {}
        for key in changed:
            chart = charts.get(key[1]) if key is not None else None
            if chart is not None:
                chart.set_series(self.label(*key), self.series[key], redraw=False)
                redraw[key[1]] = chart
        for chart in redraw.values():  # each chart drawn once, however many lines changed
            chart.redraw()
        self.reads += 1
        self._note()
        self.post_message(self.Read())

    @staticmethod
    def _series_query(names: list[str]) -> dict:
        return {"max_points": POINTS, "names": names} if names else {}

    def _guess(self, model_id: str) -> list[str]:
        """The metrics of ``model_id`` to be shown whose series is not held yet: as known from
        the last read, else (the first read) from the run's record (its first 100 metrics)."""
        if self.names:
            return self._unheld(model_id)
        table = getattr(self.app, "table", None)
        known = first_shown(table.get(model_id) if table is not None else None, self.shown)
        return [n for n in known if self._stale(model_id, n)]

    def _unheld(self, model_id: str) -> list[str]:
        """The metrics shown that ``model_id`` has and whose series is not held (or is to be
        read again: a step went backwards)."""
        has = self.summaries.get(model_id) or {}
        return [n for n in self.shown_names() if n in has and self._stale(model_id, n)]

    def _stale(self, model_id: str, metric: str) -> bool:
        key = (model_id, metric)
        return key not in self.series or key in self._refetch

    def _take_series(self, model_id: str, series: dict | None) -> None:
        """Display series read with a summary: held (replacing what was), drawn by ``read``."""
        for metric, points in (series or {}).items():
            key = (model_id, metric)
            held = self.series.get(key)
            if held is None:
                held = self.series[key] = Series()
            held.replace(points.get("steps") or [], points.get("values") or [])
            self._refetch.discard(key)
            self._taken.add(key)

    async def _read_points(self, model_id: str, metric: str, summary: dict):
        key = (model_id, metric)
        series = self.series.get(key)
        step = summary.get("step")
        if series is not None and key not in self._refetch:
            last = series.last_step
            if last is not None and step is not None and step == last:
                return None  # nothing new
            if last is not None and step is not None and step > last:
                points = await self.client.metric_points(
                    model_id, metric, after_step=int(last), max_points=POINTS
                )
                series.extend(points.get("steps") or [], points.get("values") or [])
                return key
        points = await self.client.metric_points(model_id, metric, max_points=POINTS)
        self._refetch.discard(key)
        if series is None:
            series = self.series[key] = Series()
        series.replace(points.get("steps") or [], points.get("values") or [])
        return key

    def metrics_event(self, model_id: str, metrics: dict) -> None:
        """A ``metrics`` event: a step before the one held means a restarted attempt."""
        for metric, latest in (metrics or {}).items():
            series = self.series.get((model_id, metric))
            step = (latest or {}).get("step")
            last = series.last_step if series is not None else None
            if last is not None and step is not None and step < last:
                self._refetch.add((model_id, metric))
        self.wake()

    # --- keys -----------------------------------------------------------------------------

    def _each_chart(self, **settings) -> None:
        for chart in self.charts():
            for name, value in settings.items():
                setattr(chart, name, value)
        self._note()

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        self._each_chart(log_scale=self.log_scale)

    def action_smooth(self) -> None:
        self.smoothing = next_smoothing(self.smoothing)
        self._each_chart(smoothing=self.smoothing)

    def action_pick_metrics(self) -> None:
        from trainui.tui.screens.metric_picker import MetricPicker

        if not self.names:
            self.notify("No metrics to pick from yet.", severity="warning")
            return

        async def arranged() -> None:
            await self._arrange()
            # the first chart selected (zoomed, if the view was): the chart that had the keys,
            # or the zoom, may be one no longer shown
            self._select(0)

        def picked(names: list[str] | None) -> None:
            if names is not None:
                self.shown = names
                self.selected = 0
                self.run_worker(arranged(), group="arrange")
                self.wake()

        self.app.push_screen(MetricPicker("Charts", self.names, self.shown_names()), picked)

    def _select(self, index: int) -> None:
        charts = self.charts()
        if not charts:
            return
        self.selected = max(0, min(index, len(charts) - 1))
        chart = charts[self.selected]
        chart.build()
        if self.has_class("-zoomed"):
            for other in charts:
                other.set_class(other is chart, "-zoom")
        chart.focus(scroll_visible=False)
        chart.scroll_visible(animate=False)

    def _current(self) -> int:
        charts = self.charts()
        for i, chart in enumerate(charts):
            if chart.has_focus:
                return i
        return min(self.selected, max(0, len(charts) - 1))

    def action_next_chart(self) -> None:
        self._select(self._current() + 1)

    def action_previous_chart(self) -> None:
        self._select(self._current() - 1)

    def action_first_chart(self) -> None:
        self._select(0)

    def action_last_chart(self) -> None:
        self._select(len(self.charts()) - 1)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # escape: the cursor away, else every chart, else it goes on to the screen's (back)
        if action == "clear_cursor":
            return self._with_cursor() is not None
        if action == "unzoom":
            return self.has_class("-zoomed") and self._with_cursor() is None
        return True

    def _with_cursor(self) -> MetricChart | None:
        return next((chart for chart in self.charts() if chart.cursor is not None), None)

    def action_cursor(self, columns: int) -> None:
        charts = self.charts()
        if not charts:
            return
        chart = charts[self._current()]
        other = self._with_cursor()
        if other is not None and other is not chart:
            other.clear_cursor()  # one cursor at a time: on the selected chart
        chart.build()
        chart.move_cursor(columns)
        self.refresh_bindings()  # escape takes the cursor away now

    def action_clear_cursor(self) -> None:
        chart = self._with_cursor()
        if chart is not None:
            chart.clear_cursor()
            self.refresh_bindings()

    def action_unzoom(self) -> None:
        if self.has_class("-zoomed"):
            self.action_zoom()

    def action_zoom(self) -> None:
        current = self._current()
        self.toggle_class("-zoomed")
        for i, chart in enumerate(self.charts()):
            chart.set_class(i == current, "-zoom")
        self._fill()
        with contextlib.suppress(IndexError):
            self._select(current)
        self.refresh_bindings()  # escape: every chart again, or not


class ChartGrid(VerticalScroll, inherit_bindings=False):
    """The charts' grid: left and right are the charts' cursor's (``metrics.left``), not a
    sideways scroll the grid never needs."""

    BINDINGS = [b for b in VerticalScroll.BINDINGS if b.key not in ("left", "right")]


def row_height(lines: int, charts: int = 0, columns: int = 1) -> int:
    """The charts' height in a grid ``lines`` high: whole charts fill it (no chart cut at the
    bottom), about ``ROW`` high and at least 10, two where two of 10 fit; ``charts`` (in
    ``columns``) that need fewer rows than that get taller ones, up to ``ROW_MAX``; one chart
    alone fills it (the view is that chart)."""
    rows = max(1, lines // ROW, min(2, lines // 10))
    needed = -(-charts // columns)
    if charts == 1:
        return max(10, lines)
    if 0 < needed < rows:
        return max(10, min(ROW_MAX, lines // needed))
    return max(10, lines // rows)


def first_shown(run: dict | None, shown: list[str] | None = None) -> list[str]:
    """The metrics a view of ``run`` (its record) shows first: ``shown`` (picked), else the
    first ``SHOWN_AT_FIRST`` of its metrics by name."""
    known = sorted((run or {}).get("metrics") or ())
    if shown is not None:
        known = [n for n in shown if n in known]
    return known[:SHOWN_AT_FIRST]


async def read_ahead(client, model_id: str, run: dict) -> dict | None:
    """What a metrics view of ``run`` reads first (its summary and the display series of the
    metrics it shows first), read before it is opened; None when the run has no metrics."""
    names = first_shown(run)
    if not names:
        return None
    return await client.metrics(model_id, max_points=POINTS, names=names)
