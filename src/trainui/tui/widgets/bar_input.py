"""The input line for filter, jump and search: made the first time it is needed (an Input costs
start-up time that the first screen need not pay)."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class BarInput(Input):
    """An input line that hides itself again with escape (``Cancelled``)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    DEFAULT_CSS = """
    BarInput { display: none; height: 1; border: none; padding: 0 1; background: $boost; }
    BarInput:focus { border: none; }
    BarInput.-shown { display: block; }
    """

    class Cancelled(Message):
        def __init__(self, bar: BarInput) -> None:
            super().__init__()
            self.bar = bar

        @property
        def control(self) -> BarInput:  # so that @on(BarInput.Cancelled, "#id") can match
            return self.bar

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.purpose = ""

    def open(self, purpose: str, placeholder: str, value: str = "") -> None:
        self.purpose = purpose
        self.placeholder = placeholder
        self.value = value
        self.cursor_position = len(value)
        self.add_class("-shown")
        self.focus()

    def close(self) -> None:
        self.remove_class("-shown")

    @property
    def is_open(self) -> bool:
        return self.has_class("-shown")

    def action_cancel(self) -> None:
        self.post_message(self.Cancelled(self))
