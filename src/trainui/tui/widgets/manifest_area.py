"""The manifest editor's text area: YAML highlighting, and the lines with problems marked in
the gutter (✗ an error, ! a warning) and tinted."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.strip import Strip
from textual.widgets import TextArea

from trainui.tui.keymap import bindings


class ManifestArea(TextArea):
    """Textual's TextArea with the keys its users expect besides (``manifest.*``: ctrl+home and
    ctrl+end, ctrl+a selects all) and escape as a binding, so that the footer says it."""

    BINDINGS = bindings("manifest")
    COMPONENT_CLASSES = TextArea.COMPONENT_CLASSES | {
        "manifest-area--error",
        "manifest-area--warning",
        "manifest-area--error-gutter",
        "manifest-area--warning-gutter",
    }
    DEFAULT_CSS = """
    ManifestArea, ManifestArea:focus { border: none; padding: 0; }
    ManifestArea > .manifest-area--error { background: $error 20%; }
    ManifestArea > .manifest-area--warning { background: $warning 15%; }
    ManifestArea > .manifest-area--error-gutter { color: $error; text-style: bold; }
    ManifestArea > .manifest-area--warning-gutter { color: $warning; text-style: bold; }
    """

    def __init__(self, text: str = "", **kwargs) -> None:
        super().__init__(
            text,
            language="yaml",
            show_line_numbers=True,
            tab_behavior="indent",  # tab indents; escape: see _on_key
            soft_wrap=False,
            **kwargs,
        )
        self.indent_width = 2
        self.problem_lines: dict[int, str] = {}  # 0-based line → "error" | "warning"

    async def _on_key(self, event: events.Key) -> None:
        # TextArea would take escape itself (to the next field), unsaid in the footer and not
        # remappable: manifest.leave does that instead. Its key never gets here (the manifest.*
        # bindings are priority ones, run in the order keys come, before a key typed after);
        # when it is remapped, escape goes on to the screen: close the editor.
        if event.key == "escape":
            event.prevent_default()

    def action_leave_text(self) -> None:
        self.screen.focus_next()

    def action_complete(self) -> None:
        complete = getattr(self.screen, "complete_framework", None)
        if complete is not None:
            complete()

    def action_document_start(self, select: bool = False) -> None:
        self.move_cursor((0, 0), select=select)

    def action_document_end(self, select: bool = False) -> None:
        self.move_cursor(self.document.end, select=select)

    def set_problems(self, lines: dict[int, str]) -> None:
        if lines != self.problem_lines:
            self.problem_lines = lines
            self._line_cache.clear()
            self.refresh()

    def _render_line(self, y: int) -> Strip:
        strip = super()._render_line(y)
        if not self.problem_lines:
            return strip
        try:
            line_index, section = self.wrapped_document._offset_to_line_info[
                y + self.scroll_offset.y
            ]
        except (IndexError, TypeError):
            return strip
        severity = self.problem_lines.get(line_index)
        if severity is None:
            return strip
        gutter = self.gutter_width
        tint = Style(bgcolor=self.get_component_rich_style(f"manifest-area--{severity}").bgcolor)
        body = strip.crop(gutter)
        body = Strip(list(Segment.apply_style(body, post_style=tint)), body.cell_length)
        if not gutter:
            return body
        marker = ("✗" if severity == "error" else "!") if section == 0 else " "
        number = str(line_index + self.line_number_start) if section == 0 else ""
        mark_style = self.get_component_rich_style(f"manifest-area--{severity}-gutter")
        head = strip.crop(0, gutter)
        base = head.apply_style(Style())
        text = f"{marker}{number:>{gutter - 3}}  "[:gutter]
        gutter_strip = Strip([Segment(text, _first_style(base) + mark_style)], gutter)
        return Strip.join([gutter_strip, body])


def _first_style(strip: Strip) -> Style:
    for segment in strip:
        if segment.style is not None:
            return segment.style
    return Style()
