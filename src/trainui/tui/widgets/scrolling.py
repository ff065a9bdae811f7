"""Growing a scrollable widget without laying out the whole screen each time."""

from __future__ import annotations

from textual.geometry import Size
from textual.widget import Widget


def set_virtual_size(widget: Widget, size: Size) -> None:
    """Set ``widget.virtual_size``. Assigning it lays out the whole screen (some 10 to 30 ms):
    too much ten times a second while a log grows by 100,000 lines a second. Only the
    scrollbars change with it, so only they are updated (a layout still follows when one of them
    appears or goes)."""
    if size == widget.virtual_size:
        return
    update = getattr(widget, "_scroll_update", None)
    if update is None:  # another Textual: the plain way
        widget.virtual_size = size
        return
    widget.set_reactive(Widget.virtual_size, size)
    update(size)
    widget.refresh()
