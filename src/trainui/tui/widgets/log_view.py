"""The log pane: shows a ``LogDocument`` (only the lines on screen are drawn), follows the
log as it grows, reads older parts as the user scrolls up, and searches the whole log.

Following at 100,000 lines a second stays responsive: new bytes are indexed as they come,
and the pane is redrawn at most 20 times a second.
"""

from __future__ import annotations

import asyncio
import bisect
import re
from collections import OrderedDict

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from trainui.client import ClientError, ServiceUnreachable
from trainui.tui.keymap import bindings
from trainui.tui.runs import format_bytes
from trainui.tui.widgets.scrolling import set_virtual_size

REDRAW_EVERY = 0.1  # seconds: at most 10 redraws a second however fast the log grows
SCROLL_COLUMNS = 8
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class LogView(ScrollView, can_focus=True):
    """A run's log. ``following``: keep the last line in view as the log grows."""

    BINDINGS = bindings("log")
    COMPONENT_CLASSES = {
        "log-view--learner",
        "log-view--error",
        "log-view--match",
        "log-view--current",
        "log-view--placeholder",
        "log-view--trimmed",
    }
    DEFAULT_CSS = """
    LogView { background: $surface; scrollbar-size-vertical: 1; scrollbar-size-horizontal: 0; }
    LogView > .log-view--learner { color: $secondary; }
    LogView > .log-view--error { color: $error; }
    LogView > .log-view--match { background: $warning 50%; color: $text; }
    LogView > .log-view--current { background: $accent 25%; }
    LogView > .log-view--placeholder { color: $text-disabled; }
    LogView > .log-view--trimmed { color: $text-muted; text-style: italic; }
    """

    following = reactive(True)

    class StatusChanged(Message):
        """The words under the log changed (position, follow, search, trimmed lines)."""

    class Ended(Message):
        """The follow ended: the run has ended and the whole log was read."""

    def __init__(self, client, model_id: str, follow: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.model_id = model_id
        self.doc = None  # a LogDocument once opened
        self.set_reactive(LogView.following, follow)
        self.streaming = False  # a follow is running
        self.activity = ""  # what is being read, for the status line
        self.error = ""
        self.search_text = ""
        self.regex = False  # the search text is a regular expression
        self.only = False  # only the lines that match are shown (like less's &)
        self.wrap = False  # long lines are wrapped (else cut, with ← → to see the rest)
        self.notice = ""  # said first in the status line until the view moves (search wrapped)
        self.current_match: int | None = None  # index into doc.matches
        self._str_pattern: re.Pattern[str] | None = None
        self._lines: OrderedDict[tuple, Strip] = OrderedDict()
        self._redraw_pending = False
        self._fetching = False
        self._extending = False
        self._styles: dict[str, Style] = {}
        self._styles_theme = ""
        self._generation = 0  # grows when drawn lines are forgotten (wrapping's layout too)
        self._layout_key: tuple | None = None
        self._layout_rows: list[tuple[int, int]] = []

    # --- opening and following ------------------------------------------------------------

    def on_mount(self) -> None:
        self._open()

    async def _read(self, offset: int, limit: int | None):
        return await self.client.read_log(self.model_id, offset, limit)

    @work(group="log-open", exclusive=True)
    async def _open(self) -> None:
        from trainui.tui.logdoc import LogDocument  # numpy: only once a log is opened

        self.activity = "reading the log…"
        self._status()
        first = self.app.take_prefetched_log(self.model_id)
        while True:
            doc = LogDocument(self._read)
            try:
                await doc.open(first=first)
                break
            except ServiceUnreachable as error:
                self.app.connection_lost(str(error))
            except ClientError as error:
                self.error = str(error)
                self.activity = ""
                self._status()
                self.refresh()
                return
            first = None
            await asyncio.sleep(1.0)
        self.doc = doc
        self.activity = ""
        self._update_size()
        self._to_end()
        self._maybe_extend()
        self._status()
        # the follow (and httpx, which it is the first to need) waits for the first screen
        self.call_after_refresh(self._opened)

    def _opened(self) -> None:
        if self.following:
            self.start_follow()
        self.app.first_view.set()

    def start_follow(self) -> None:
        if self.doc is not None and not self.streaming:
            self.streaming = True
            self._follow()

    @work(group="log-follow", exclusive=True)
    async def _follow(self) -> None:
        doc = self.doc
        try:
            while True:
                try:
                    async for chunk in self.client.follow_log(self.model_id, doc.size):
                        doc.append(chunk)
                        self._schedule_redraw()
                    break
                except ServiceUnreachable as error:
                    self.app.connection_lost(str(error))
                    await asyncio.sleep(1.0)
                except ClientError as error:
                    self.error = str(error)
                    break
        finally:
            self.streaming = False
            self._schedule_redraw()
        self.post_message(self.Ended())

    def _schedule_redraw(self) -> None:
        if not self._redraw_pending:
            self._redraw_pending = True
            self.set_timer(REDRAW_EVERY, self._redraw)

    def _redraw(self) -> None:
        self._redraw_pending = False
        if self.doc is None:
            return
        self._update_size()
        if self.following:
            self._to_end()
        self.refresh()
        self._status()

    def _update_size(self) -> None:
        from trainui.tui.logdoc import MAX_LINE

        doc = self.doc
        region = self.scrollable_content_region
        if self.wrap:  # scrolled by lines; at the end, the last lines fill the pane
            height = self._last_top() + region.height if self._view_count() else 0
            set_virtual_size(self, Size(region.width, height))
            return
        longest = min(doc.longest, MAX_LINE) + (24 if doc.trimmed else 0)
        width = max(region.width, longest)
        set_virtual_size(self, Size(width, self._view_count()))

    def _forget_drawn(self) -> None:
        self._lines.clear()
        self._generation += 1

    # --- the lines shown: all of them, or only those that match (``only``) ----------------

    def _view_count(self) -> int:
        doc = self.doc
        if doc is None:
            return 0
        return len(doc.matches) if self.only else doc.count

    def _doc_line(self, k: int) -> int:
        """The log line shown as the pane's line ``k``."""
        return self.doc.line_of(int(self.doc.matches[k])) if self.only else k

    def _doc_top_line(self) -> int:
        """The log line at the top of the pane."""
        top = int(self.scroll_offset.y)
        if not self.only:
            return top
        doc = self.doc
        if top < len(doc.matches):
            return doc.line_of(int(doc.matches[top]))
        return max(0, doc.count - 1)

    def show_only(self, on: bool) -> None:
        """Show only the lines that match the search, or every line again; the line at the
        top stays in view (following, the end does)."""
        doc = self.doc
        if doc is None or on == self.only:
            return
        line = self._doc_top_line()
        self.only = on
        self._forget_drawn()
        self._update_size()
        if self.following:
            self._to_end()
        elif on:
            position = bisect.bisect_left(doc.matches, doc.starts[line]) if doc.count else 0
            self.scroll_to(y=position, animate=False, immediate=True, force=True)
        else:
            y = max(0, line - self.size.height // 3)
            self.scroll_to(y=y, animate=False, immediate=True, force=True)
        self.refresh()
        self._status()

    def action_toggle_wrap(self) -> None:
        """Wrap long lines, or cut them again (← → scroll them)."""
        self.wrap = not self.wrap
        if self.wrap:
            self.scroll_to(x=0, animate=False, immediate=True, force=True)
        if self.doc is not None:
            top = int(self.scroll_offset.y)
            at_end = top >= self.max_scroll_y  # the log's last line shown: it stays in view
            self._forget_drawn()
            self._update_size()
            if self.following or at_end:
                self._to_end()
            else:
                self.scroll_to(y=top, animate=False, immediate=True, force=True)
        self.refresh()
        self._status()

    # --- wrapping: the pane's rows, each a part of a line ---------------------------------

    def _last_top(self) -> int:
        """The first line of the last pane-full: the top of the view at the end of the log."""
        count = self._view_count()
        height = self.scrollable_content_region.height
        rows, k = 0, count
        while k > 0:
            wrapped = self._wrapped(k - 1)
            rows += 1 if wrapped is None else len(wrapped)
            if rows > height:
                break
            k -= 1
        return min(k, max(0, count - 1))

    def _layout(self) -> list[tuple[int, int]]:
        """(pane line, row of it) for each row of the pane, from the line at the top."""
        region = self.scrollable_content_region
        top = int(self.scroll_offset.y)
        count = self._view_count()
        key = (top, region.width, region.height, count, self._generation, self.current_match)
        if key == self._layout_key:
            return self._layout_rows
        rows: list[tuple[int, int]] = []
        complete = True
        k = top
        while len(rows) < region.height and k < count:
            wrapped = self._wrapped(k)
            complete = complete and wrapped is not None
            rows.extend((k, j) for j in range(1 if wrapped is None else len(wrapped)))
            k += 1
        rows = rows[: region.height]
        if complete:  # a line still being read is drawn as one row until it comes
            self._layout_key, self._layout_rows = key, rows
        return rows

    def _wrapped(self, k: int) -> list[Strip] | None:
        """Pane line ``k`` cut into rows of the pane's width; None while it is being read."""
        doc = self.doc
        i = self._doc_line(k)
        s, e = doc.span(i)
        width = max(1, self.scrollable_content_region.width)
        current = self._is_current(s)
        key = ("wrap", s, e, width, self.search_text, self.regex, current)
        rows = self._lines.get(key)
        if rows is not None:
            self._lines.move_to_end(key)
            return rows
        got = doc.line(i)
        if got is None:
            if not self._fetching:
                self._fetch()
            return None
        base = self._style("base")
        strip = self._render_text(got[0], got[1], base, current)
        length = strip.cell_length
        parts = strip.divide([*range(width, length, width), length]) if length > width else [strip]
        rows = [part.crop_extend(0, width, base) for part in parts]
        self._lines[key] = rows
        if len(self._lines) > 1024:
            self._lines.popitem(last=False)
        return rows

    def _is_current(self, start: int) -> bool:
        doc = self.doc
        return (
            self.current_match is not None
            and self.current_match < len(doc.matches)
            and int(doc.matches[self.current_match]) == start
        )

    # --- older parts, missing blocks ------------------------------------------------------

    def _maybe_extend(self) -> None:
        doc = self.doc
        if doc is None or doc.start == 0 or doc.dropped or self._extending or self.only:
            return
        if self.scroll_offset.y < max(self.size.height, 20):
            self._extend()

    @work(group="log-extend")
    async def _extend(self, to_start: bool = False) -> None:
        doc = self.doc
        self._extending = True
        try:
            if to_start:
                before = doc.count

                def progress(fraction: float) -> None:
                    self.activity = f"reading the start of the log… {fraction:.0%}"
                    self._status()

                await doc.extend_to_start(progress)
                added = doc.count - before
            else:
                self.activity = "reading older lines…"
                self._status()
                added = await doc.extend_back()
        except ServiceUnreachable as error:
            self.app.connection_lost(str(error))
            return
        except (ClientError, OSError) as error:
            self.error = str(error)
            return
        finally:
            self._extending = False
            self.activity = ""
            self._status()
        if added:
            y = self.scroll_offset.y + added
            self._update_size()
            self.scroll_to(y=y, animate=False, immediate=True, force=True)
            self._forget_drawn()
            self.refresh()
        if to_start:
            self.scroll_home(animate=False, immediate=True, force=True)
        else:
            self._maybe_extend()

    @work(group="log-fetch")
    async def _fetch(self) -> None:
        self._fetching = True
        try:
            while self.doc.wanted:
                await self.doc.fetch_wanted()
                if self.wrap:  # the lines read may take more rows than guessed
                    self._update_size()
                    if self.following:
                        self._to_end()
                self.refresh()
        except ServiceUnreachable as error:
            self.app.connection_lost(str(error))
        except ClientError as error:
            self.error = str(error)
        finally:
            self._fetching = False

    # --- moving ---------------------------------------------------------------------------

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.notice = ""
        self._maybe_extend()
        self._status()

    def on_resize(self, event: events.Resize) -> None:
        """The pane got taller or shorter (the search line closed, the fields hidden): the
        lines it shows, and so the status line, change."""
        if self.wrap and self.doc is not None:
            self._update_size()
        self._status()

    def watch_scroll_x(self, old: float, new: float) -> None:
        super().watch_scroll_x(old, new)
        self._status()

    def _stop_following(self) -> None:
        if self.following:
            self.following = False

    def _to_end(self) -> None:
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)

    def action_line_down(self) -> None:
        self.scroll_down(animate=False)

    def action_line_up(self) -> None:
        self._stop_following()
        self.scroll_up(animate=False)

    def action_page_down(self) -> None:
        self.scroll_page_down(animate=False)

    def action_page_up(self) -> None:
        self._stop_following()
        self.scroll_page_up(animate=False)

    def action_scroll_left(self) -> None:
        if not self.wrap:
            self.scroll_to(x=max(0, self.scroll_offset.x - SCROLL_COLUMNS), animate=False)

    def action_scroll_right(self) -> None:
        if not self.wrap:
            self.scroll_to(x=self.scroll_offset.x + SCROLL_COLUMNS, animate=False)

    def action_scroll_end(self) -> None:
        """The end of the log; follows it again while the run is going."""
        self.following = True
        self._to_end()

    def action_scroll_top(self) -> None:
        self._stop_following()
        doc = self.doc
        if doc is not None and doc.start > 0 and not doc.dropped:
            self._extend(to_start=True)
        else:
            self.scroll_home(animate=False, immediate=True, force=True)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._stop_following()

    def _size_updated(self, *args, **kwargs) -> bool:
        """Following, the last line stays in view when the pane gets shorter (the run's fields
        arriving above it, say, just as the log is first drawn). Textual calls this in the
        layout, before drawing; a handler of ``Resize`` would move the lines only after a
        frame was drawn with the last line out of view."""
        resized = super()._size_updated(*args, **kwargs)
        if resized and self.wrap and self.doc is not None:
            self._update_size()
        if self.following and self.doc is not None:
            self._to_end()
        return resized

    def watch_following(self, following: bool) -> None:
        if following:
            self._to_end()
            self.start_follow()
        self._status()

    # --- search ---------------------------------------------------------------------------

    def search(self, text: str, regex: bool = False, only: bool | None = None) -> str | None:
        """Find ``text`` in the whole log: plain text, or with ``regex`` a regular expression
        (case-insensitive unless it has a capital). ``only``: show only the lines that match
        (None: as before). What is wrong with the text, if anything (the search is not
        started then)."""
        doc = self.doc
        if doc is None:
            return None
        patterns = None
        if text:
            try:
                patterns = _patterns(text, regex)
            except (re.error, ValueError) as error:
                return f"not a regular expression: {error}"
            if patterns[1].search(b"") is not None:
                return f"'{text}' matches empty text: every line would match"
        current = self.current_match
        if (
            text == self.search_text
            and regex == self.regex
            and current is not None
            and current < len(doc.matches)
        ):  # the same search again (``&`` after ``/``): the current match stays current
            anchor = int(doc.matches[current])
        else:  # the first match from the line at the top of the view
            anchor = doc.starts[self._doc_top_line()] if doc.count else 0
        self.search_text = text
        self.regex = regex
        self.current_match = None
        doc.clear_search()
        if only is not None and not text:
            only = False
        if only is not None and only != self.only:
            self.only = only
            if not self.following:
                self.scroll_to(y=0, animate=False, immediate=True, force=True)
        if patterns is None:
            self._str_pattern = None
            self.show_only(False)
            self._after_search_change()
            return None
        self._str_pattern = patterns[0]
        self._after_search_change()
        self._search(patterns[1], anchor)
        return None

    def _after_search_change(self) -> None:
        self._forget_drawn()
        self._update_size()
        if self.following:
            self._to_end()
        self.refresh()
        self._status()

    @work(group="log-search", exclusive=True)
    async def _search(self, pattern: re.Pattern[bytes], anchor: int) -> None:
        doc = self.doc

        def progress(fraction: float) -> None:
            self.activity = f"searching… reading the log {fraction:.0%}"
            self._status()

        def found(fraction: float) -> None:
            self.activity = f"searching… {fraction:.0%}"
            if self.only:  # the lines found so far show while the rest is searched
                self._update_size()
                if self.following:
                    self._to_end()
                self.refresh()
            self._status()

        self.activity = "searching…"
        self._status()
        try:
            await doc.search(pattern, progress, found)
        except ServiceUnreachable as error:
            self.app.connection_lost(str(error))
            return
        except (ClientError, OSError) as error:
            self.error = str(error)
            return
        finally:
            self.activity = ""
        self._update_size()
        self._forget_drawn()
        self.refresh()
        if self.only:
            if self.following:  # a live filter: the matching lines as they come
                self._to_end()
            else:
                position = bisect.bisect_left(doc.matches, anchor)
                if position < len(doc.matches):
                    self.current_match = position
                y = max(0, position - self.size.height // 3)  # where `n` puts it
                self.scroll_to(y=y, animate=False, immediate=True, force=True)
        else:
            self.next_match(from_line=doc.line_of(anchor))
        self._status()

    def next_match(self, forward: bool = True, from_line: int | None = None) -> None:
        """To the next (or previous) match; ``from_line``: the first at or after that line of
        the log. Past the last match it goes on at the first, and says so."""
        doc = self.doc
        if doc is None or not len(doc.matches):
            self._status()
            return
        count = len(doc.matches)
        if from_line is None and self.current_match is not None and self.current_match < count:
            index = self.current_match + (1 if forward else -1)
            wrapped = not 0 <= index < count
            index %= count
        else:  # from the line at the top (the matches after it), or at or after from_line
            line = self._doc_top_line() if from_line is None else from_line
            start = doc.starts[line] if line < len(doc.starts) else doc.size
            at = from_line is not None
            if forward:
                index = (bisect.bisect_left if at else bisect.bisect_right)(doc.matches, start)
            else:
                index = (bisect.bisect_right if at else bisect.bisect_left)(doc.matches, start) - 1
            wrapped = not 0 <= index < count
            index %= count
        self.current_match = index
        target = index if self.only else doc.line_of(int(doc.matches[index]))
        self._stop_following()
        self.scroll_to(
            y=max(0, target - self.size.height // 3), animate=False, immediate=True, force=True
        )
        if wrapped:
            self.notice = "search wrapped to the top" if forward else "search wrapped to the bottom"
        self._forget_drawn()
        self.refresh()
        self._status()

    # --- drawing --------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        """The component styles and the widget's own (``base``), read once per theme."""
        if self._styles_theme != self.app.theme:
            self._styles_theme = self.app.theme
            self._lines.clear()
            self._generation += 1
            self._styles = {
                n: self.get_component_rich_style(f"log-view--{n}")
                for n in ("learner", "error", "match", "current", "placeholder", "trimmed")
            }
            self._styles["base"] = self.rich_style
        return self._styles[name]

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self._style("base")
        doc = self.doc
        if doc is None:
            if y == 0:
                message = self.error or self.activity or "reading the log…"
                strip = Strip([Segment(message, base + self._style("placeholder"))])
                return strip.adjust_cell_length(width, base)
            return Strip.blank(width, base)
        if self.wrap:
            layout = self._layout()
            if y >= len(layout):
                return Strip.blank(width, base)
            k, row = layout[y]
            rows = self._wrapped(k)
            if rows is None or row >= len(rows):
                return self._placeholder(width, base)
            return rows[row]
        k = scroll_y + y
        if k >= self._view_count():
            return Strip.blank(width, base)
        i = self._doc_line(k)
        s, e = doc.span(i)
        current = self._is_current(s)
        key = (s, e, scroll_x, width, self.search_text, self.regex, current)
        strip = self._lines.get(key)
        if strip is not None:
            self._lines.move_to_end(key)
            return strip
        got = doc.line(i)
        if got is None:
            if not self._fetching:
                self._fetch()
            return self._placeholder(width, base)
        strip = self._render_text(got[0], got[1], base, current).crop_extend(
            scroll_x, scroll_x + width, base
        )
        self._lines[key] = strip
        if len(self._lines) > 1024:
            self._lines.popitem(last=False)
        return strip

    def _placeholder(self, width: int, base: Style) -> Strip:
        return Strip([Segment("…", base + self._style("placeholder"))]).adjust_cell_length(
            width, base
        )

    def _render_text(self, data: bytes, cut: int, base: Style, current: bool) -> Strip:
        line = data.decode("utf-8", "replace")
        if "\r" in line:  # a progress bar redrawn in place: the last state is what shows
            line = line.rstrip("\r").rsplit("\r", 1)[-1]
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        text = Text(line.expandtabs(8), end="")
        if line.startswith("trainui: "):
            text.stylize(self._style("learner"))
        elif "Traceback (most recent call last)" in line or re.search(
            r"\b(Error|ERROR|FATAL|Exception)\b", line
        ):
            text.stylize(self._style("error"))
        if self._str_pattern is not None:
            for match in self._str_pattern.finditer(text.plain):
                text.stylize(self._style("match"), match.start(), match.end())
        if cut:
            text.append(f" … [{format_bytes(cut)} more]", self._style("trimmed"))
        segments = list(text.render(self.app.console))
        strip = Strip(segments)
        if current:
            strip = Strip(
                list(Segment.apply_style(strip, post_style=self._style("current"))),
                strip.cell_length,
            )
        return Strip(list(Segment.apply_style(strip, base)), strip.cell_length)

    # --- the status line ------------------------------------------------------------------

    def _status(self) -> None:
        self.post_message(self.StatusChanged())

    def status_text(self) -> str:
        doc = self.doc
        if doc is None:
            return self.error or self.activity or "reading the log…"
        parts = [self.notice] if self.notice else []
        if self.streaming:
            parts.append("following" if self.following else "paused")
        count = doc.count
        shown = self._view_count()
        top = int(self.scroll_offset.y)
        if self.wrap:
            layout = self._layout()
            bottom = layout[-1][0] + 1 if layout else top
        else:
            bottom = min(shown, top + self.scrollable_content_region.height)
        if self.only:
            if not shown:
                parts.append("no line matches" + (" yet" if self.activity else ""))
            else:
                parts.append(f"only matching lines: {top + 1:,}–{bottom:,} of {shown:,}")
        elif count == 0:
            parts.append("the log is empty" if doc.size == 0 else "reading…")
        elif doc.complete:
            parts.append(f"lines {top + 1:,}–{bottom:,} of {count:,}")
        else:
            parts.append(
                f"last {count:,} lines of {format_bytes(doc.size)} (older ones read as you scroll)"
            )
        if self.search_text:
            matches = len(doc.matches)
            what = f"/{self.search_text}" + (" (regex)" if self.regex else "")
            if self.activity.startswith("search"):
                parts.append(what)
            elif not matches:
                parts.append(f"{what}: no match")
            elif self.current_match is not None:
                parts.append(f"{what}: {self.current_match + 1:,} of {matches:,}")
            else:
                parts.append(f"{what}: {matches:,} lines match")
        if self.wrap:
            parts.append("long lines wrapped (w)")
        elif self.scroll_offset.x:
            parts.append(f"from column {int(self.scroll_offset.x) + 1} (← →)")
        if doc.trimmed:
            parts.append(f"{doc.trimmed:,} long lines cut at 4 KiB")
        if doc.dropped:
            parts.append(f"{doc.dropped:,} oldest lines dropped (use `trainui logs`)")
        if self.activity:
            parts.append(self.activity)
        if self.error:
            parts.append(self.error)
        return " · ".join(parts)


def _patterns(text: str, regex: bool) -> tuple[re.Pattern[str], re.Pattern[bytes]]:
    """The search as patterns for the drawn text and for the log's bytes; case-insensitive
    unless the text has a capital (as in vim's smartcase; a regex's escapes, ``\\S``, do not
    count)."""
    source = text if regex else re.escape(text)
    letters = re.sub(r"\\.", "", text) if regex else text
    flags = re.MULTILINE | (0 if any(c.isupper() for c in letters) else re.IGNORECASE)
    return re.compile(source, flags), re.compile(source.encode(), flags)
