"""One-line bars: the title and the connection banner."""

from __future__ import annotations

from rich.cells import cell_len
from textual.content import Content
from textual.widgets import Static

MIN_TITLE = 8  # cells a cut title keeps at least (narrower: the right side goes instead)


class TitleBar(Static):
    """``trainui`` and where the screen is, on the left; a short summary on the right."""

    DEFAULT_CSS = """
    TitleBar {
        height: 1; background: $primary 30%; color: $text; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def __init__(self, title: str = "", right: str = "", tail: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.title_text = title
        self.right_text = right
        self.tail_text = tail  # after the title, kept whole when a long title is cut (an ID)
        self._drawn: Content | None = None

    def set(
        self, title: str | None = None, right: str | None = None, tail: str | None = None
    ) -> None:
        if title is not None:
            self.title_text = title
        if right is not None:
            self.right_text = right
        if tail is not None:
            self.tail_text = tail
        self._draw()

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        width = max(0, self.size.width - 2)
        title = Content(self.title_text)
        right = Content(self.right_text)
        # a title too long (a run's name) is cut, so that the tail (its ID) and the right
        # side (its state) stay; down to a few cells of it
        room = width - len("trainui  ") - cell_len(self.tail_text) - right.cell_length - 2
        if title.cell_length > room >= MIN_TITLE:
            title = title.truncate(room, ellipsis=True)
        left = Content.assemble(("trainui", "bold"), "  ", title, self.tail_text)
        gap = width - left.cell_length - right.cell_length
        if gap >= 2:
            content = Content.assemble(left, " " * gap, (self.right_text, "$text-muted"))
        else:
            content = left
        if content != self._drawn:
            self._drawn = content
            self.update(content, layout=False)  # one line, always


class ConnectionBanner(Static):
    """Says the service is out of reach (shown by the app while it reconnects); what else is on
    the screen stays as it was."""

    DEFAULT_CSS = """
    ConnectionBanner {
        height: auto; display: none; background: $error 35%; color: $text;
        padding: 0 1; text-style: bold;
    }
    ConnectionBanner.-shown { display: block; }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "connection_error", self._show, init=True)

    def _show(self, message: str) -> None:
        self.set_class(bool(message), "-shown")
        self.update(f"⚠ {message}" if message else "")
