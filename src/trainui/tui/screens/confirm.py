"""A yes/no question over the screen it concerns, whose default answer is no: enter on the
focused Cancel does nothing, ``y`` confirms, ``n`` and ``escape`` cancel, and the buttons say so."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from trainui.tui.keymap import bindings


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = bindings("confirm")
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 64; max-width: 95%; height: auto; padding: 1 2;
        border: thick $error 70%; background: $surface;
    }
    ConfirmScreen .question { text-style: bold; margin-bottom: 1; }
    ConfirmScreen .detail { color: $text-muted; margin-bottom: 1; }
    ConfirmScreen Horizontal { height: auto; align-horizontal: right; }
    ConfirmScreen Button { margin-left: 2; }
    ConfirmScreen .keys { color: $text-muted; margin-top: 1; text-align: right; }
    """

    def __init__(self, question: str, detail: str, confirm: str) -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.confirm_label = confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, classes="question")
            if self.detail:
                yield Static(self.detail, classes="detail")
            with Horizontal():
                yield Button("Cancel (n)", id="cancel", variant="primary")
                yield Button(f"{self.confirm_label} (y)", id="confirm", variant="error")
            yield Static(
                f"y: {self.confirm_label.lower()} · n or esc: cancel · enter: the selected button",
                classes="keys",
            )

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
