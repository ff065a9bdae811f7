"""The run list: a lazily drawn table over a ``RunTable``.

Only the rows on screen are drawn (Textual's Line API), each from a cache keyed by the run's
revision, so 10,000 runs cost what 30 do, and a run that changes redraws one row.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from trainui.core.runs import placement
from trainui.tui.experiments import parameter_values, parameters_summary
from trainui.tui.keymap import bindings
from trainui.tui.runs import (
    METRIC_SORT,
    SYMBOLS,
    RunTable,
    format_value,
    is_active,
    local_time,
    pending_reason,
    resource_text,
    time_text,
)
from trainui.tui.widgets.scrolling import set_virtual_size

# (key, title, width; 0 = takes the rest, sort key or None)
COLUMNS = (
    ("status", "State", 14, "status"),  # " ⇣ downloading": the longest
    ("name", "Name", 0, "name"),
    ("model_id", "ID", 18, None),
    ("resource", "Resource", 16, None),  # small · CPU, medium · GPU 0,1
    ("submitted", "Submitted", 11, "submitted"),
    ("duration", "Ran", 8, "duration"),  # the run time; `wait 3m` while pending
)
# narrower than this, the resource column says only where the run runs (CPU, GPU 0,1), so
# that names still read at 80 columns
WIDE = 100
PLACE = ("place", "Where", 7, None)
MARK = "*"  # in the state cell's first column: a marked run (space), acted on together
STATES = (
    "pending", "restarting", "downloading", "running", "storing", "completed", "failed", "halted",
)  # fmt: skip


METRIC = METRIC_SORT  # a metric column's key, and its sort: METRIC + the metric's name


def metric_column(name: str) -> tuple[str, str, int, str]:
    """A column of a metric's last value: as wide as its name, 8 to 12 cells; it sorts by
    that value."""
    return (METRIC + name, name, max(8, min(12, len(name))), METRIC + name)


def layout(width: int, metrics: tuple[str, ...] = ()) -> list[tuple[str, str, int, str | None]]:
    """The columns that fit ``width`` cells, the name column taking what is left; the metric
    columns chosen (``metrics``) after the name, the last ones dropped first when narrow."""
    columns = [PLACE if c[0] == "resource" and width < WIDE else c for c in COLUMNS]
    if width < WIDE:  # a cell less for the state: "restarting" whole, "downloadi…" cut
        columns[0] = (*columns[0][:2], columns[0][2] - 1, *columns[0][3:])
    at = 2  # after the name
    columns[at:at] = [metric_column(name) for name in metrics]
    dropped = ["resource", "place", "submitted", "duration"]
    dropped += [METRIC + name for name in reversed(metrics)]
    for drop in dropped:
        fixed = sum(c[2] + 1 for c in columns if c[2])
        if width - fixed >= 12:
            break
        columns = [c for c in columns if c[0] != drop]
    fixed = sum(c[2] + 1 for c in columns if c[2])
    name_width = max(8, width - fixed)
    return [(k, t, w or name_width, s) for k, t, w, s in columns]


def _cell(text: str, width: int) -> str:
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


def sort_title(title: str, width: int, reverse: bool) -> str:
    """The sort column's title with its arrow; where both do not fit, the title is cut, not
    the arrow (the one sign of the order)."""
    if cell_len(title) + 2 > width >= 3:
        title = _cell(title, width - 2)
    return title + (" ▼" if reverse else " ▲")


def _cells(parts: list[tuple[str, Style]], width: int) -> list[Segment]:
    """Texts of several styles in one cell of ``width``, cut with an ellipsis when too long."""
    total = sum(cell_len(text) for text, _ in parts)
    if total <= width:
        segments = [Segment(text, style) for text, style in parts if text]
        return [*segments, Segment(" " * (width - total), parts[0][1])]
    segments, used = [], 0
    for text, style in parts:
        length = cell_len(text)
        if used + length < width:
            segments.append(Segment(text, style))
            used += length
            continue
        segments.append(Segment(set_cell_size(text, width - 1 - used) + "…", style))
        break
    return segments


class ListMoves:
    """The list keys (``bindings("list")``) and focus redraws of a list with a ``cursor``,
    ``move_to(row)`` and ``_row_count()``: the run list's and ``RowList``'s."""

    def action_cursor_down(self) -> None:
        self.move_to(self.cursor + 1)

    def action_cursor_up(self) -> None:
        self.move_to(self.cursor - 1)

    def action_cursor_top(self) -> None:
        self.move_to(0)

    def action_cursor_bottom(self) -> None:
        self.move_to(self._row_count() - 1)

    def action_page_down(self) -> None:
        self.move_to(self.cursor + max(1, self.scrollable_content_region.height - 1))

    def action_page_up(self) -> None:
        self.move_to(self.cursor - max(1, self.scrollable_content_region.height - 1))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


class RunListHeader(Widget):
    """The column titles above the list; the sort column carries an arrow; click to sort."""

    DEFAULT_CSS = """
    RunListHeader { height: 1; background: $panel; color: $text-muted; text-style: bold; }
    """

    class SortClicked(Message):
        def __init__(self, sort: str) -> None:
            super().__init__()
            self.sort = sort

    def __init__(self, table: RunTable, **kwargs) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.run_list: RunList | None = None  # whose columns to line up with

    @property
    def content_width(self) -> int:
        if self.run_list is not None and self.run_list.size.width:
            return self.run_list.scrollable_content_region.width
        return self.size.width

    def render_line(self, y: int) -> Strip:
        width = self.content_width
        parts = []
        for key, title, column_width, sort in layout(width, self._metrics()):
            if sort and sort == self.table.sort:
                room = column_width - 1 if key == "status" else column_width
                title = sort_title(title, room, self.table.reverse)
            if key.startswith(METRIC):  # numbers align right, so do their titles
                parts.append(_cell(title, column_width).rjust(column_width))
                continue
            parts.append(_cell(" " + title if key == "status" else title, column_width))
        text = " ".join(parts)
        return Strip([Segment(set_cell_size(text, self.size.width), self.rich_style)])

    def _metrics(self) -> tuple[str, ...]:
        return self.run_list.metric_columns if self.run_list is not None else ()

    def on_click(self, event: events.Click) -> None:
        x = 0
        for _key, _title, column_width, sort in layout(self.content_width, self._metrics()):
            if x <= event.x < x + column_width + 1 and sort:
                self.post_message(self.SortClicked(sort))
                return
            x += column_width + 1


class RunList(ListMoves, ScrollView, can_focus=True):
    """Rows of runs; ``cursor`` is the selected row, kept on the same run as the list moves."""

    BINDINGS = bindings("list")
    COMPONENT_CLASSES = {
        "run-list--cursor",
        "run-list--cursor-blurred",
        "run-list--dim",
        "run-list--marked",
        *(f"run-list--{state}" for state in STATES),
    }
    DEFAULT_CSS = """
    RunList { background: $surface; scrollbar-size-vertical: 1; }
    RunList > .run-list--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    RunList > .run-list--cursor-blurred {
        background: $block-cursor-blurred-background; color: $block-cursor-blurred-foreground;
    }
    RunList > .run-list--dim { color: $text-muted; }
    RunList > .run-list--marked { background: $accent 30%; text-style: bold; }
    RunList > .run-list--pending { color: $text-muted; }
    RunList > .run-list--restarting { color: $warning; text-style: bold; }
    RunList > .run-list--downloading { color: $secondary; }
    RunList > .run-list--running { color: $accent; text-style: bold; }
    RunList > .run-list--storing { color: $secondary; }
    RunList > .run-list--completed { color: $success; }
    RunList > .run-list--failed { color: $error; text-style: bold; }
    RunList > .run-list--halted { color: $warning; }
    """

    class Highlighted(Message):
        """The cursor moved to another run (or to none)."""

        def __init__(self, model_id: str | None) -> None:
            super().__init__()
            self.model_id = model_id

    class Opened(Message):
        def __init__(self, model_id: str) -> None:
            super().__init__()
            self.model_id = model_id

    def __init__(self, table: RunTable, **kwargs) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.cursor = 0
        self.metric_columns: tuple[str, ...] = ()  # metrics shown as columns (their last value)
        self._lines: OrderedDict[tuple, Strip] = OrderedDict()
        self._styles: dict[str, Style] | None = None
        self._styles_theme = ""

    @property
    def selected_id(self) -> str | None:
        """The selected run (the table keeps it: a new list, back from the experiments, has
        the same one)."""
        return self.table.selected

    @selected_id.setter
    def selected_id(self, model_id: str | None) -> None:
        self.table.selected = model_id

    @property
    def marked(self) -> set[str]:
        """Runs marked with space, halted or deleted together (kept by the table too)."""
        return self.table.marked

    @marked.setter
    def marked(self, model_ids: set[str]) -> None:
        self.table.marked = model_ids

    def on_mount(self) -> None:
        # the selection kept from before: in view once the list has its size
        self.call_after_refresh(self._scroll_cursor_visible, True)

    # --- state from outside ---------------------------------------------------------------

    def runs_changed(self) -> None:
        """The table changed: size the list, keep the cursor on its run (in view, when it was:
        new runs above it push it down, never out of sight), redraw what shows."""
        order = self.table.view()
        self.marked &= self.table.runs.keys()  # a deleted run is no longer marked
        set_virtual_size(self, Size(self.scrollable_content_region.width, len(order)))
        if self.selected_id is not None:
            position = self.table.index(self.selected_id, self.cursor)
            if position is not None and position != self.cursor:
                top, height = self.scroll_offset.y, self.scrollable_content_region.height
                was_shown = top <= self.cursor < top + height
                self.cursor = position
                if was_shown:
                    self._scroll_cursor_visible()
        self._clamp()
        self.refresh()

    def select(self, model_id: str) -> bool:
        position = self.table.index(model_id)
        if position is None:
            return False
        self.move_to(position)
        return True

    def toggle_mark(self, model_id: str) -> None:
        self.marked ^= {model_id}
        self.refresh()

    def mark_all(self) -> None:
        """Mark every run shown; when they all are already, unmark them."""
        shown = set(self.table.view())
        if shown <= self.marked:
            self.marked -= shown
        else:
            self.marked |= shown
        self.refresh()

    def clear_marks(self) -> None:
        self.marked.clear()
        self.refresh()

    @property
    def current(self) -> str | None:
        order = self.table.view()
        return order[self.cursor] if 0 <= self.cursor < len(order) else None

    # --- moving ---------------------------------------------------------------------------

    def move_to(self, row: int, center: bool = False) -> None:
        order = self.table.view()
        before = self.selected_id
        self.cursor = max(0, min(row, len(order) - 1))
        self.selected_id = order[self.cursor] if order else None
        self._scroll_cursor_visible(center)
        self.refresh()
        if self.selected_id != before:
            self.post_message(self.Highlighted(self.selected_id))

    def _clamp(self) -> None:
        order = self.table.view()
        if not order:
            self.cursor, self.selected_id = 0, None
            return
        self.cursor = max(0, min(self.cursor, len(order) - 1))
        if self.selected_id != order[self.cursor]:
            self.selected_id = order[self.cursor]
            self.post_message(self.Highlighted(self.selected_id))

    def _scroll_cursor_visible(self, center: bool = False) -> None:
        height = self.scrollable_content_region.height
        top = self.scroll_offset.y
        if center:
            self.scroll_to(y=max(0, self.cursor - height // 2), animate=False)
        elif self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)

    def _row_count(self) -> int:
        return len(self.table.view())

    def on_click(self, event: events.Click) -> None:
        row = event.y + self.scroll_offset.y
        if 0 <= row < len(self.table.view()):
            self.move_to(row)
            if event.chain >= 2 and self.selected_id:
                self.post_message(self.Opened(self.selected_id))

    def on_resize(self, event: events.Resize) -> None:
        self.runs_changed()
        self.screen.query(RunListHeader).refresh()

    # --- drawing --------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        if self._styles is None or self._styles_theme != self.app.theme:
            self._styles_theme = self.app.theme
            self._lines.clear()
            self._styles = {
                n: self.get_component_rich_style(f"run-list--{n}", partial=True)
                for n in ("cursor", "cursor-blurred", "dim", "marked", *STATES)
            }
            self._styles["base"] = self.rich_style
        return self._styles[name]

    def render_line(self, y: int) -> Strip:
        order = self.table.view()
        row = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        base = self._style("base")
        if row >= len(order):
            return Strip.blank(width, base)
        model_id = order[row]
        run = self.table.runs[model_id]
        cursor = row == self.cursor
        tick = int(time.time()) if is_active(run) else 0
        marked = model_id in self.marked
        cpu_mode = getattr(self.app, "cpu_mode", None)
        revision = self.table.revision.get(model_id)
        key = (model_id, revision, width, cursor, self.has_focus, tick, marked, cpu_mode,
               self.metric_columns)  # fmt: skip
        strip = self._lines.get(key)
        if strip is None:
            strip = self._render_row(run, width, cursor, base, marked, cpu_mode)
            self._lines[key] = strip
            if len(self._lines) > 512:
                self._lines.popitem(last=False)
        return strip

    def _render_row(
        self, run: dict, width: int, cursor: bool, base: Style, marked: bool, cpu_mode
    ) -> Strip:
        status = run.get("status", "")
        state_style = self._style(status) if status in STATES else Style()
        dim = self._style("dim")
        if marked:
            base = base + self._style("marked")
        segments = []
        for key, _title, column_width, _sort in layout(width, self.metric_columns):
            if key.startswith(METRIC):
                point = (run.get("metrics") or {}).get(key[len(METRIC) :]) or {}
                text = format_value(point.get("last"))
                style = dim if text == "-" else Style()
                cell = text[:column_width].rjust(column_width)
                segments.append(Segment(cell + " ", base + style))
                continue
            if key == "status":
                mark = MARK if marked else " "
                text, style = f"{mark}{SYMBOLS.get(status, '?')} {status}", state_style
            elif key == "name":
                text, style = run.get("name") or "", Style()
                if run.get("error_code"):
                    text += f" [{run['error_code']}]"
                reason = pending_reason(run)
                # a run of an experiment: its parameters after its name, as they tell the
                # experiment's runs apart; why it waits after that (in full under the list)
                parameters = run.get("parameters")
                values, gap = parameters_summary(parameters), "  "
                if values and cell_len(text) + 2 + cell_len(values) > column_width:
                    # too narrow for names and values: the values alone (they tell the runs
                    # apart), close together, the name cut to leave them room
                    values, gap = parameter_values(parameters, "·"), " "
                    room = column_width - 1 - cell_len(values)
                    if cell_len(text) > room:
                        text = _cell(text, max(room, 4))
                after = "  ".join(p for p in (values, reason) if p)
                if after:
                    parts = [(text, base), (gap + after, base + dim)]
                    segments.extend([*_cells(parts, column_width), Segment(" ", base)])
                    continue
            elif key == "model_id":
                text, style = run.get("model_id", ""), dim
            elif key == "resource":
                text, style = resource_text(run, cpu_mode), Style()
            elif key == "place":
                text, style = placement(run, cpu_mode) or "-", Style()
            elif key == "submitted":
                text, style = local_time(run.get("submitted_at"), short=True), dim
            else:
                text, style = time_text(run), dim if status == "pending" else Style()
            segments.append(Segment(_cell(text, column_width) + " ", base + style))
        strip = Strip(segments).adjust_cell_length(width, base)
        if cursor:
            style = self._style("cursor" if self.has_focus else "cursor-blurred")
            strip = Strip(list(Segment.apply_style(strip, post_style=style)), strip.cell_length)
        return strip

    def tick(self) -> None:
        """Redraw the rows of the runs that have not ended (their times run on): once a second."""
        order = self.table.view()
        top = self.scroll_offset.y
        for row in range(top, min(len(order), top + self.size.height)):
            if is_active(self.table.runs[order[row]]):
                self.refresh_line(row)
