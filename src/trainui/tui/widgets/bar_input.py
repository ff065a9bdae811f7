"""The input line for filter, jump and search: made the first time it is needed (an Input costs
start-up time that the first screen need not pay)."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

from trainui.tui.keymap import bindings

DONE_WORDS = {
    "filter": "Filter", "jump": "Jump", "search": "Search", "only": "Show only these",
    "find": "Next",
}  # fmt: skip
# the purposes whose text may be a regular expression (ctrl+r): the log's search and filter
REGEX_PURPOSES = ("search", "only")


class BarInput(Input):
    """An input line that hides itself again with escape (``Cancelled``)."""

    # the footer says what enter does for this line's purpose, and how to leave it
    BINDINGS = [
        *(
            Binding("enter", f"done('{purpose}')", word, key_display="⏎")
            for purpose, word in DONE_WORDS.items()
        ),
        Binding("escape", "cancel", "Cancel"),
        *bindings("bar"),
    ]

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

    class ModeChanged(Message):
        """Regular expression on or off (ctrl+r)."""

        def __init__(self, bar: BarInput) -> None:
            super().__init__()
            self.bar = bar

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.purpose = ""
        self.regex = False

    def open(self, purpose: str, placeholder: str, value: str = "", regex: bool = False) -> None:
        self.purpose = purpose
        self.regex = regex
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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_regex":
            return self.purpose in REGEX_PURPOSES
        if action == "done":
            return parameters == (self.purpose,)
        return super().check_action(action, parameters)

    async def action_done(self, purpose: str) -> None:
        await self.action_submit()

    def action_toggle_regex(self) -> None:
        self.regex = not self.regex
        self.post_message(self.ModeChanged(self))
