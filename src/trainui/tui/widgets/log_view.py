"""The log pane: shows a ``LogDocument`` (only the lines on screen are drawn), follows the
log as it grows, reads older parts as the user scrolls up, and searches the whole log.

Following at 100,000 lines a second stays responsive: new bytes are indexed as they come,
and the pane is redrawn at most 20 times a second.
"""

from __future__ import annotations

import asyncio
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
        self.current_match: int | None = None  # index into doc.matches
        self._str_pattern: re.Pattern[str] | None = None
        self._lines: OrderedDict[tuple, Strip] = OrderedDict()
        self._redraw_pending = False
        self._fetching = False
        self._extending = False
        self._styles: dict[str, Style] = {}
        self._styles_theme = ""

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
        longest = min(doc.longest, MAX_LINE) + (24 if doc.trimmed else 0)
        width = max(self.scrollable_content_region.width, longest)
        set_virtual_size(self, Size(width, doc.count))

    # --- older parts, missing blocks ------------------------------------------------------

    def _maybe_extend(self) -> None:
        doc = self.doc
        if doc is None or doc.start == 0 or doc.dropped or self._extending:
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
            self._lines.clear()
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
        self._maybe_extend()
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
        self.scroll_to(x=max(0, self.scroll_offset.x - SCROLL_COLUMNS), animate=False)

    def action_scroll_right(self) -> None:
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
        if self.following and self.doc is not None:
            self._to_end()
        return resized

    def watch_following(self, following: bool) -> None:
        if following:
            self._to_end()
            self.start_follow()
        self._status()

    # --- search ---------------------------------------------------------------------------

    def search(self, text: str) -> None:
        """Find ``text`` in the whole log (case-insensitive unless it has a capital)."""
        if self.doc is None:
            return
        self.search_text = text
        self.current_match = None
        self._lines.clear()
        if not text:
            self.doc.clear_search()
            self._str_pattern = None
            self.refresh()
            self._status()
            return
        flags = 0 if any(c.isupper() for c in text) else re.IGNORECASE
        self._str_pattern = re.compile(re.escape(text), flags)
        self._search(re.compile(re.escape(text.encode()), flags))

    @work(group="log-search", exclusive=True)
    async def _search(self, pattern: re.Pattern[bytes]) -> None:
        doc = self.doc

        def progress(fraction: float) -> None:
            self.activity = f"searching… reading the log {fraction:.0%}"
            self._status()

        self.activity = "searching…"
        self._status()
        try:
            await doc.search(pattern, progress)
        except ServiceUnreachable as error:
            self.app.connection_lost(str(error))
            return
        except (ClientError, OSError) as error:
            self.error = str(error)
            return
        finally:
            self.activity = ""
        self._update_size()
        self._lines.clear()
        self.refresh()
        self.next_match(from_line=self._top_line())
        self._status()

    def _top_line(self) -> int:
        return int(self.scroll_offset.y)

    def next_match(self, forward: bool = True, from_line: int | None = None) -> None:
        doc = self.doc
        if doc is None or not len(doc.matches):
            self._status()
            return
        if from_line is None:
            if self.current_match is not None and self.current_match < len(doc.matches):
                step = 1 if forward else -1
                index = (self.current_match + step) % len(doc.matches)
            else:
                index = doc.match_index(self._top_line(), forward)
        else:
            index = doc.match_index(max(0, from_line - 1), forward)
        if index is None:
            return
        self.current_match = index
        line = doc.line_of(int(doc.matches[index]))
        self._stop_following()
        self.scroll_to(
            y=max(0, line - self.size.height // 3), animate=False, immediate=True, force=True
        )
        self._lines.clear()
        self.refresh()
        self._status()

    # --- drawing --------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        """The component styles and the widget's own (``base``), read once per theme."""
        if self._styles_theme != self.app.theme:
            self._styles_theme = self.app.theme
            self._lines.clear()
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
        i = scroll_y + y
        if doc is None or i >= doc.count:
            if doc is None and y == 0:
                message = self.error or self.activity or "reading the log…"
                strip = Strip([Segment(message, base + self._style("placeholder"))])
                return strip.adjust_cell_length(width, base)
            return Strip.blank(width, base)
        s, e = doc.span(i)
        current = (
            self.current_match is not None
            and self.current_match < len(doc.matches)
            and int(doc.matches[self.current_match]) == s
        )
        key = (s, e, scroll_x, width, self.search_text, current)
        strip = self._lines.get(key)
        if strip is not None:
            self._lines.move_to_end(key)
            return strip
        got = doc.line(i)
        if got is None:
            if not self._fetching:
                self._fetch()
            return Strip([Segment("…", base + self._style("placeholder"))]).adjust_cell_length(
                width, base
            )
        strip = self._render_text(got[0], got[1], base, current).crop_extend(
            scroll_x, scroll_x + width, base
        )
        self._lines[key] = strip
        if len(self._lines) > 1024:
            self._lines.popitem(last=False)
        return strip

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
        parts = []
        if self.streaming:
            parts.append("following" if self.following else "paused")
        count = doc.count
        top = int(self.scroll_offset.y)
        bottom = min(count, top + self.scrollable_content_region.height)
        if count == 0:
            parts.append("the log is empty" if doc.size == 0 else "reading…")
        elif doc.complete:
            parts.append(f"lines {top + 1:,}–{bottom:,} of {count:,}")
        else:
            parts.append(
                f"last {count:,} lines of {format_bytes(doc.size)} (older ones read as you scroll)"
            )
        if self.search_text:
            matches = len(doc.matches)
            if self.activity.startswith("search"):
                parts.append(f"/{self.search_text}")
            elif not matches:
                parts.append(f"/{self.search_text}: no match")
            elif self.current_match is not None:
                parts.append(f"/{self.search_text}: {self.current_match + 1:,} of {matches:,}")
            else:
                parts.append(f"/{self.search_text}: {matches:,} lines match")
        if self.scroll_offset.x:
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
