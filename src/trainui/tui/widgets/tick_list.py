"""A list of entries to tick, whose ticks show without colour.

Textual's ``SelectionList`` draws ``▐X▌`` before every entry and tells ticked from unticked by
the X's colour alone: on a monochrome terminal, in ``tmux capture-pane`` or to a colour-blind
eye, every entry looks ticked. This one draws the X only in the ticked entries' boxes (``▐X▌``),
a blank in the others' (``▐ ▌``); the colours stay as they were.
"""

from __future__ import annotations

from typing import TypeVar

from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import SelectionList
from textual.widgets._toggle_button import ToggleButton
from textual.widgets.option_list import OptionDoesNotExist

TICKED = ToggleButton.BUTTON_INNER  # "X"
UNTICKED = " "  # as wide as the X: the names stay where they are
Value = TypeVar("Value")


class TickList(SelectionList[Value]):
    """A ``SelectionList`` whose unticked entries draw an empty box."""

    def render_line(self, y: int) -> Strip:
        line = super().render_line(y)
        # as SelectionList.render_line finds the entry: one line each (its CSS: nowrap)
        try:
            selection = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:
            return line
        if selection.value in self._selected:
            return line
        segments = list(line)
        # the box drawn before the entry: BUTTON_LEFT, BUTTON_INNER, BUTTON_RIGHT, a space
        if len(segments) < 3 or segments[1].text != TICKED:
            return line
        inner = segments[1]
        segments[1] = Segment(UNTICKED, inner.style, inner.control)
        return Strip(segments, line.cell_length)
