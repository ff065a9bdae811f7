"""A chart of one metric: a line per series (one run, or several runs overlaid), drawn in
braille (``trainui.tui.braille``), with a legend, the latest value, min and max beside it.

Only the points a column can show are drawn (two per column: the lowest and the highest, so
spikes stay), which makes a chart of 100,000 points cost what one of a few hundred does.
Colours follow the app's theme: the theme's own colours, or the terminal's 16 colours in an
``ansi`` theme, so that a chart reads over SSH as the rest of the screen does.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from trainui.tui import braille
from trainui.tui.metrics import (
    SMOOTHING,
    Series,
    format_step,
    not_positive,
    prepare,
    smooth,
    step_ticks,
)
from trainui.tui.runs import format_value

# the lines' colours in an ansi theme: the terminal's own
ANSI_SERIES = (
    "ansi_cyan", "ansi_yellow", "ansi_magenta", "ansi_green", "ansi_bright_blue", "ansi_red",
    "ansi_bright_cyan", "ansi_bright_yellow", "ansi_bright_magenta", "ansi_bright_green",
    "ansi_blue", "ansi_bright_red",
)  # fmt: skip
# the theme's colours first, then a sequence made for dark and light backgrounds alike
THEME_SERIES = ("primary", "warning", "success", "accent", "error", "secondary")
MORE_SERIES = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (180, 225, 40), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 128, 0),
)  # fmt: skip
SIDE = 22  # the legend's width beside the chart
RAW_BEHIND = 4  # smoothed series up to this many have their raw points drawn faintly behind
NARROW = 56  # narrower than this, the legend goes under the chart's title line


def palette(app) -> tuple[list[str], str | None]:
    """(the lines' colours as Textual styles, the axes' colour: None for the terminal's
    default) for ``app``'s theme."""
    theme = app.current_theme
    if theme.ansi or getattr(app, "ansi_color", None):
        return list(ANSI_SERIES), None
    variables = app.theme_variables
    colors: list[tuple[int, int, int]] = []
    for name in THEME_SERIES:
        try:
            rgb = Color.parse(variables[name]).rgb
        except (KeyError, Exception):  # a variable a theme leaves out, or one Color cannot read
            continue
        if rgb not in colors:
            colors.append(rgb)
    colors += [rgb for rgb in MORE_SERIES if rgb not in colors]
    try:
        background = Color.parse(variables["background"])
        r, g, b = background.blend(Color.parse(variables["foreground"]), 0.6).rgb
        axes: str | None = f"rgb({r},{g},{b})"
    except Exception:
        axes = None
    return [f"rgb({r},{g},{b})" for r, g, b in colors], axes


def rich_color(style: str) -> str:
    """A colour of ``palette`` as Rich spells it (``ansi_bright_cyan`` → ``bright_cyan``)."""
    return style.removeprefix("ansi_")


class ChartPlot(Widget):
    """The plot itself: drawn at this widget's size, again only when the points,
    the size, the theme or the settings changed."""

    DEFAULT_CSS = "ChartPlot { width: 1fr; height: 1fr; }"

    def __init__(self, chart: MetricChart, **kwargs) -> None:
        super().__init__(**kwargs)
        self.chart = chart
        self._key: tuple | None = None
        self._drawn: Content | None = None
        self.frame: dict = {}  # the steps' scale it was drawn at (braille.plot's frame)

    def key(self) -> tuple:
        """What the plot is drawn from: a plot drawn from the same is not drawn again."""
        width, height = self.size
        chart = self.chart
        return (
            width,
            height,
            self.app.theme,
            chart.log_scale,
            chart.smoothing,
            tuple((label, id(s), s.revision, len(s)) for label, s in chart.series.items()),
            chart.has_class("-narrow"),
            chart.cursor,
        )

    def stale(self) -> bool:
        return self._drawn is None or self.key() != self._key

    def render(self) -> Content:
        width, height = self.size
        key = self.key()
        if key != self._key or self._drawn is None:
            self._key = key
            self._drawn = self._with_legend(width, height)
        return self._drawn

    def _with_legend(self, width: int, height: int) -> Content:
        """The plot and, beside it, the legend (one widget: a widget more a chart cost more
        than drawing them both; a narrow chart has its numbers on its title line)."""
        if self.chart.has_class("-narrow"):
            return Content.from_rich_text(self.draw_plot(width, height))
        plot_width = max(1, width - SIDE)
        rows = Content.from_rich_text(self.draw_plot(plot_width, height)).split(allow_blank=True)
        side = self.chart.legend(height)
        lines = []
        for row in range(height):
            left = rows[row] if row < len(rows) else Content("")
            left = left.truncate(plot_width, pad=True)
            right = side[row].truncate(SIDE - 1, ellipsis=True) if row < len(side) else Content("")
            lines.append(Content.assemble(left, " ", right))
        return Content("\n").join(lines)

    def draw_plot(self, width: int, height: int) -> Text:
        """The plot alone, ``width`` x ``height`` cells."""
        chart = self.chart
        if width < 10 or height < 3:
            return Text("")
        drawn = [(label, s) for label, s in chart.series.items() if len(s)]
        if not drawn:
            return Text(chart.empty_text, style="italic")
        styles, axes = palette(self.app)
        columns = max(1, width - 8)  # what the y axis' labels leave
        lines, raw = [], []
        for label, series in drawn:
            steps, values = prepare(series, columns, chart.smoothing, chart.log_scale)
            if len(steps):
                style = rich_color(styles[chart.color_of(label) % len(styles)])
                lines.append(braille.Line(steps, values, style))
                if chart.smoothing and len(drawn) <= RAW_BEHIND:
                    # as TensorBoard: the points themselves, faint, behind the smoothed line
                    steps, values = prepare(series, columns, 0.0, chart.log_scale)
                    raw.append(braille.Line(steps, values, f"dim {style}"))
        lines = raw + lines  # a cell both cross takes the later line's colour: the smoothed
        if not any(np.isfinite(line.ys).any() for line in lines):
            return Text("log scale: no value above 0", style="italic")  # short: a narrow chart
        first = min(float(line.xs[0]) for line in lines)
        last = max(float(line.xs[-1]) for line in lines)
        ticks = step_ticks(first, last, max(2, columns // 9))
        return braille.plot(
            width, height, lines, ticks, chart.log_scale, axes, chart.cursor, self.frame
        )


class MetricChart(Widget, can_focus=True):
    """One metric's chart. ``series``: label → ``Series`` (a run's name, or the metric's own
    name for a single run); ``log_scale`` and ``smoothing`` (a TensorBoard weight, 0: off)."""

    DEFAULT_CSS = """
    MetricChart { height: 11; layout: vertical; padding: 0 0 0 1; }
    MetricChart > .chart-title {
        height: 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis;
    }
    MetricChart:focus > .chart-title { color: $text; text-style: bold; background: $boost; }
    """

    log_scale: reactive[bool] = reactive(False)
    smoothing: reactive[float] = reactive(0.0)

    def __init__(
        self, metric: str, empty_text: str = "no points yet", lazy: bool = False, **kwargs
    ) -> None:
        """``lazy``: the chart's parts (title, plot, legend) are made only when ``build`` is
        called (a view of many charts makes those on screen; the others as they come into
        view): an empty chart of the same size until then."""
        super().__init__(**kwargs)
        self.metric = metric
        self.built = not lazy
        self.empty_text = empty_text
        self.series: dict[str, Series] = {}  # in the legend's order (``order``)
        self.order: list[str] = []  # the labels' order in the legend (a ranking), where given
        self._colors: dict[str, int] = {}  # label → its place in the palette, kept as runs come
        self._title_drawn: Content | None = None
        self.cursor: float | None = None  # a step whose values the legend says (move_cursor)

    def compose(self) -> ComposeResult:
        if self.built:
            yield from self._parts()

    def _parts(self) -> list[Widget]:
        return [Static("", classes="chart-title"), ChartPlot(self)]

    def build(self) -> None:
        """Make a lazy chart's parts now (it came into view), drawn at once."""
        if self.built or not self.is_mounted:
            return
        self.built = True
        self.mount_all(self._parts())
        self.call_after_refresh(self.redraw)  # its title and legend, once they are mounted

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.redraw())
        self.redraw()

    def on_resize(self) -> None:
        self.set_class(self.size.width < NARROW, "-narrow")
        self.redraw()

    # --- data -----------------------------------------------------------------------------

    def color_of(self, label: str) -> int:
        if label not in self._colors:
            self._colors[label] = len(self._colors)
        return self._colors[label]

    def set_series(self, label: str, series: Series, redraw: bool = True) -> None:
        """``label``'s line drawn from ``series``; ``redraw=False``: not yet (many lines set
        at once are drawn once, by ``redraw``)."""
        new = label not in self.series
        self.series[label] = series
        self.color_of(label)
        if new and self.order:
            self._in_order()
        if redraw:
            self.redraw()

    def remove_series(self, labels: set[str]) -> None:
        """Lines no longer drawn (their runs were deleted); the others keep their colours."""
        if labels & self.series.keys():
            self.series = {k: s for k, s in self.series.items() if k not in labels}
            self.redraw()

    def set_order(self, labels: list[str]) -> None:
        """The legend's order: ``labels`` first, in that order (the runs' ranking), then the
        others as they came; each keeps its colour."""
        self.order = list(labels)
        self._in_order()
        self.redraw()

    def _in_order(self) -> None:
        place = {label: i for i, label in enumerate(self.order)}
        ordered = sorted(self.series.items(), key=lambda item: place.get(item[0], len(place)))
        self.series = dict(ordered)  # sorted keeps the unplaced ones as they came

    def watch_log_scale(self) -> None:
        self.redraw()

    def move_cursor(self, columns: int) -> None:
        """The cursor ``columns`` of the plot to the right (left, below 0), on a step some
        series has; the first move puts it on the last step. The legend says each series'
        value there; ``clear_cursor`` takes it away."""
        steps = [s.steps for s in self.series.values() if len(s)]
        if not steps:
            return
        last = max(float(s[-1]) for s in steps)
        if self.cursor is None:
            self.cursor = last
        else:
            first = min(float(s[0]) for s in steps)
            frame = self.query_one(ChartPlot).frame if self.query(ChartPlot) else {}
            width = max(1, frame.get("columns", 60) - 1)
            target = self.cursor + columns * (last - first) / width
            self.cursor = _step_near(steps, self.cursor, target, columns > 0)
        self.redraw()

    def clear_cursor(self) -> bool:
        """Take the cursor away: whether there was one."""
        if self.cursor is None:
            return False
        self.cursor = None
        self.redraw()
        return True

    def watch_smoothing(self) -> None:
        self.redraw()

    # --- drawing --------------------------------------------------------------------------

    def redraw(self) -> None:
        """Draw what changed: the title, and the plot with its legend (its cache decides)."""
        if not self.is_mounted or not self.built or not self.query(ChartPlot):
            return  # made later (lazy), or its parts not mounted yet: drawn once they are
        title = self._title()
        if title != self._title_drawn:
            self._title_drawn = title
            self.query_one(".chart-title", Static).update(title, layout=False)
        plot = self.query_one(ChartPlot)
        if plot.stale():  # else what it drew stands (Textual keeps its lines)
            plot.refresh()

    def _title(self) -> Content:
        flags = []
        if self.log_scale:
            hidden = sum(not_positive(series) for series in self.series.values())
            flags.append(f"log ({hidden:,} ≤ 0 not shown)" if hidden else "log")
        if self.smoothing:
            flags.append(f"smoothed {self.smoothing:g}")
        if self.cursor is not None:
            flags.append(f"at step {format_step(self.cursor)}")
        parts: list = [(self.metric, "bold")]
        if flags:
            parts.append(("  " + " · ".join(flags), "$text-muted"))
        if self.has_class("-narrow") and len(self.series) == 1 and self.cursor is not None:
            value = value_at(next(iter(self.series.values())), self.cursor)
            parts.append(f"  {format_value(value) if value is not None else '-'}")
        elif self.has_class("-narrow") and len(self.series) == 1:
            series = next(iter(self.series.values()))
            bounds = series.bounds()
            if bounds is not None:  # the legend is hidden: its numbers on the title line,
                # those that fit whole (a number cut in the middle would read as another)
                room = self.content_size.width or 1_000
                used = sum(len(part[0] if isinstance(part, tuple) else part) for part in parts)
                for name, value in zip(("last", "min", "max"), (series.last, *bounds), strict=True):
                    text = f"  {name} {format_value(value)}"
                    if used + len(text) > room:
                        break
                    parts.append(text)
                    used += len(text)
        return Content.assemble(*parts)

    def legend(self, room: int) -> list[Content]:
        """The lines beside the plot (``room`` of them): each series' mark and name, its last
        value, min, max (and step, for one series); a line a series where they are many."""
        styles, _axes = palette(self.app)
        lines: list = []
        many = len(self.series) > 1 and 4 * len(self.series) > room
        for label, series in self.series.items():
            style = styles[self.color_of(label) % len(styles)]
            bounds = series.bounds()
            if self.cursor is not None:  # the values at the cursor's step
                lines += self._at_cursor(label, series, style, many)
                continue
            if many:  # one line a series: its mark, name and latest value
                lines.append(_one_line(label, style, format_value(series.last)))
                continue
            lines.append(Content.assemble(("● ", style), (label, "bold")))
            if bounds is None:
                lines.append(Content.styled("  no points yet", "$text-muted"))
                continue
            lines.append(Content.assemble(("  last ", "$text-muted"), format_value(series.last)))
            lines.append(Content.assemble(("  min  ", "$text-muted"), format_value(bounds[0])))
            lines.append(Content.assemble(("  max  ", "$text-muted"), format_value(bounds[1])))
            if len(self.series) == 1:
                lines.append(
                    Content.assemble(("  step ", "$text-muted"), format_step(series.last_step))
                )
        return lines[:room]

    def _at_cursor(self, label: str, series: Series, style: str, many: bool) -> list[Content]:
        """A series' legend lines at the cursor: its value at the step (the last point at or
        before it), smoothed as drawn where smoothing is on."""
        at = value_at(series, self.cursor)
        value = format_value(at) if at is not None else "-"
        if many:
            return [_one_line(label, style, value)]
        lines = [
            Content.assemble(("● ", style), (label, "bold")),
            Content.assemble(("  value ", "$text-muted"), value),
        ]
        if self.smoothing and at is not None:
            smoothed = value_at(series, self.cursor, self.smoothing)
            lines.append(Content.assemble(("  smooth ", "$text-muted"), format_value(smoothed)))
        return lines


def _one_line(label: str, style: str, value: str) -> Content:
    """A series' legend in one line (many series): its mark, name and value, the value whole
    (the name gives way to it)."""
    room = max(1, SIDE - 4 - len(value))
    if len(label) > room:  # cut where it shows: a label cut without a mark reads as another
        label = label[: room - 1] + "…"
    return Content.assemble(("● ", style), f"{label:<{min(room, 11)}} ", value)


def value_at(series: Series, step: float | None, smoothing: float = 0.0) -> float | None:
    """``series``' value at ``step``: its last point at or before it (None before its first),
    smoothed with ``smoothing`` as the chart draws it."""
    if step is None:
        return None
    index = int(np.searchsorted(series.steps, step, side="right")) - 1
    if index < 0:
        return None
    if smoothing:
        return float(smooth(series.values[: index + 1], smoothing)[-1])
    return float(series.values[index])


def _step_near(steps: list[np.ndarray], cursor: float, target: float, right: bool) -> float:
    """The step some series has nearest ``target``, past ``cursor`` in the direction moved
    (points sparser than the plot's columns: the next one); ``cursor`` at the end."""
    near, next_ones = [], []
    for s in steps:
        i = int(np.searchsorted(s, target))
        for j in (i - 1, i):
            if 0 <= j < len(s) and (s[j] > cursor if right else s[j] < cursor):
                near.append(float(s[j]))
        side = "right" if right else "left"
        j = int(np.searchsorted(s, cursor, side=side)) - (0 if right else 1)
        if 0 <= j < len(s):
            next_ones.append(float(s[j]))
    if near:
        return min(near, key=lambda step: abs(step - target))
    if next_ones:
        return min(next_ones) if right else max(next_ones)
    return cursor


def next_smoothing(weight: float) -> float:
    """The smoothing after ``weight`` in TensorBoard's steps (off, light, medium, heavy)."""
    levels = list(SMOOTHING)
    index = levels.index(weight) if weight in levels else 0
    return levels[(index + 1) % len(levels)]
