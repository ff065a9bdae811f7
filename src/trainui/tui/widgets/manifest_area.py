"""The manifest editor's text area: YAML highlighting, and the lines with problems marked in
the gutter (✗ an error, ! a warning) and tinted."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widgets import TextArea


class ManifestArea(TextArea):
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
            tab_behavior="indent",  # escape leaves the text (a second one closes the editor)
            soft_wrap=False,
            **kwargs,
        )
        self.indent_width = 2
        self.problem_lines: dict[int, str] = {}  # 0-based line → "error" | "warning"

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
