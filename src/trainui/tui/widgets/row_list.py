"""A lazily drawn list of rows with a header, for the experiments and an experiment's runs.

Like the run list (``run_list.py``): only the rows on screen are drawn (Textual's Line API),
each from a cache keyed by its row's revision; the cursor stays on its row as the order
changes. A subclass says which columns fit a width (``columns``) and what a row's cells are
(``cells``); its owner gives the rows (``set_rows``) and the sort the header marks.
"""

from __future__ import annotations

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

from trainui.core.record import Record
from trainui.tui.keymap import bindings
from trainui.tui.widgets.run_list import STATES, ListMoves, sort_title
from trainui.tui.widgets.scrolling import set_virtual_size


class Column(Record):
    """``width``: cells (0: what the fixed columns leave); ``sort``: the sort a click on its
    title picks (None: none); ``right``: aligned right (numbers)."""

    __slots__ = ("key", "title", "width", "sort", "right")
    _defaults = {"sort": None, "right": False}


def fit(columns: list[Column], width: int, dropped: list[str], least: int = 12) -> list[Column]:
    """The columns that fit ``width``: the ``dropped`` ones left out in turn until the column of
    width 0 has ``least`` cells; that column then takes what is left."""
    for drop in [None, *dropped]:
        if drop is not None:
            columns = [c for c in columns if c.key != drop]
        fixed = sum(c.width + 1 for c in columns if c.width)
        if width - fixed >= least:
            break
    fixed = sum(c.width + 1 for c in columns if c.width)
    rest = max(8, width - fixed)
    return [c if c.width else Column(c.key, c.title, rest, c.sort, c.right) for c in columns]


def cut(text: str, width: int, right: bool = False) -> str:
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    if right:
        return " " * (width - cell_len(text)) + text
    return set_cell_size(text, width)


class RowListHeader(Widget):
    """The column titles above a ``RowList``; the sort column carries an arrow; click sorts."""

    DEFAULT_CSS = """
    RowListHeader { height: 1; background: $panel; color: $text-muted; text-style: bold; }
    """

    class SortClicked(Message):
        def __init__(self, sort: str) -> None:
            super().__init__()
            self.sort = sort

    def __init__(self, rows: RowList, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows = rows

    def _width(self) -> int:
        if self.rows.size.width:
            return self.rows.scrollable_content_region.width
        return self.size.width

    def render_line(self, y: int) -> Strip:
        parts = []
        for column in self.rows.columns(self._width()):
            title = column.title
            if column.sort and column.sort == self.rows.sort:
                title = sort_title(title, column.width, self.rows.reverse)
            parts.append(cut(title, column.width, column.right))
        text = " ".join(parts)
        return Strip([Segment(set_cell_size(text, self.size.width), self.rich_style)])

    def on_click(self, event: events.Click) -> None:
        x = 0
        for column in self.rows.columns(self._width()):
            if x <= event.x < x + column.width + 1 and column.sort:
                self.post_message(self.SortClicked(column.sort))
                return
            x += column.width + 1


class RowList(ListMoves, ScrollView, can_focus=True):
    """Rows by key; ``cursor`` is the selected row, kept on the same key as the order changes."""

    BINDINGS = bindings("list")
    COMPONENT_CLASSES = {
        "row-list--cursor",
        "row-list--cursor-blurred",
        "row-list--dim",
        "row-list--best",
        *(f"row-list--{state}" for state in STATES),
    }
    DEFAULT_CSS = """
    RowList { background: $surface; scrollbar-size-vertical: 1; }
    RowList > .row-list--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    RowList > .row-list--cursor-blurred {
        background: $block-cursor-blurred-background; color: $block-cursor-blurred-foreground;
    }
    RowList > .row-list--dim { color: $text-muted; }
    RowList > .row-list--best { color: $success; text-style: bold; }
    RowList > .row-list--pending { color: $text-muted; }
    RowList > .row-list--restarting { color: $warning; text-style: bold; }
    RowList > .row-list--downloading { color: $secondary; }
    RowList > .row-list--running { color: $accent; text-style: bold; }
    RowList > .row-list--storing { color: $secondary; }
    RowList > .row-list--completed { color: $success; }
    RowList > .row-list--failed { color: $error; text-style: bold; }
    RowList > .row-list--halted { color: $warning; }
    """
    STYLES = ("cursor", "cursor-blurred", "dim", "best", *STATES)

    class Highlighted(Message):
        """The cursor moved to another row (or to none)."""

        def __init__(self, rows: RowList, key: str | None) -> None:
            super().__init__()
            self.rows = rows
            self.key = key

    class Opened(Message):
        def __init__(self, rows: RowList, key: str) -> None:
            super().__init__()
            self.rows = rows
            self.key = key

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.keys: list[str] = []
        self.cursor = 0
        self.selected_id: str | None = None
        self.sort = ""
        self.reverse = False
        self._lines: OrderedDict[tuple, Strip] = OrderedDict()
        self._styles: dict[str, Style] | None = None
        self._styles_theme = ""

    # --- for subclasses -------------------------------------------------------------------

    def columns(self, width: int) -> list[Column]:
        raise NotImplementedError

    def cells(self, key: str, columns: list[Column]) -> list[tuple[str, str]]:
        """(text, style name: one of ``STYLES`` or "") of each column of the row ``key``."""
        raise NotImplementedError

    def revision(self, key: str) -> object:
        """Changes when the row ``key`` has to be drawn again."""
        raise NotImplementedError

    def droppable(self, dropped: list[str]) -> list[str]:
        """The columns ``fit`` may leave out, but the one the rows are sorted by: its arrow
        says what the order is (a sort by a column out of sight looked like none)."""
        return [key for key in dropped if key != self.sort]

    # --- state from outside ---------------------------------------------------------------

    def set_rows(self, keys: list[str]) -> None:
        """The rows, in order: the cursor stays on its row; what shows is drawn again."""
        self.keys = keys
        set_virtual_size(self, Size(self.scrollable_content_region.width, len(keys)))
        if self.selected_id is not None and self.selected_id in keys:
            self.cursor = keys.index(self.selected_id)
        self.cursor = max(0, min(self.cursor, len(keys) - 1))
        now = keys[self.cursor] if keys else None
        if now != self.selected_id:
            self.selected_id = now
            self.post_message(self.Highlighted(self, now))
        self.refresh()
        self.screen.query(RowListHeader).refresh()

    @property
    def current(self) -> str | None:
        return self.keys[self.cursor] if 0 <= self.cursor < len(self.keys) else None

    # --- moving ---------------------------------------------------------------------------

    def move_to(self, row: int) -> None:
        before = self.selected_id
        self.cursor = max(0, min(row, len(self.keys) - 1))
        self.selected_id = self.keys[self.cursor] if self.keys else None
        height = self.scrollable_content_region.height
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)
        self.refresh()
        if self.selected_id != before:
            self.post_message(self.Highlighted(self, self.selected_id))

    def _row_count(self) -> int:
        return len(self.keys)

    def on_click(self, event: events.Click) -> None:
        row = event.y + self.scroll_offset.y
        if 0 <= row < len(self.keys):
            self.move_to(row)
            if event.chain >= 2 and self.selected_id:
                self.post_message(self.Opened(self, self.selected_id))

    def on_resize(self, event: events.Resize) -> None:
        self.set_rows(self.keys)

    # --- drawing --------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        if self._styles is None or self._styles_theme != self.app.theme:
            self._styles_theme = self.app.theme
            self._lines.clear()
            self._styles = {
                n: self.get_component_rich_style(f"row-list--{n}", partial=True)
                for n in self.STYLES
            }
            self._styles["base"] = self.rich_style
            self._styles[""] = Style()
        return self._styles[name]

    def render_line(self, y: int) -> Strip:
        row = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        base = self._style("base")
        if row >= len(self.keys):
            return Strip.blank(width, base)
        key = self.keys[row]
        cursor = row == self.cursor
        # the sort too: the columns that fit depend on it (droppable)
        cache_key = (key, self.revision(key), width, cursor, self.has_focus, self.sort)
        strip = self._lines.get(cache_key)
        if strip is None:
            strip = self._render_row(key, width, base, cursor)
            self._lines[cache_key] = strip
            if len(self._lines) > 512:
                self._lines.popitem(last=False)
        return strip

    def _render_row(self, key: str, width: int, base: Style, cursor: bool) -> Strip:
        columns = self.columns(width)
        segments = []
        for column, (text, style) in zip(columns, self.cells(key, columns), strict=True):
            cell = cut(text, column.width, column.right)
            segments.append(Segment(cell + " ", base + self._style(style)))
        strip = Strip(segments).adjust_cell_length(width, base)
        if cursor:
            style = self._style("cursor" if self.has_focus else "cursor-blurred")
            strip = Strip(list(Segment.apply_style(strip, post_style=style)), strip.cell_length)
        return strip
