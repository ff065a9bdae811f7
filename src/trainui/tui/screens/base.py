"""What every trainui screen shares: actions that change state are hidden in read-only mode."""

from __future__ import annotations

from textual.screen import Screen

from trainui.tui.keymap import CHANGING


class TrainuiScreen(Screen):
    # (group, widget type name or None for the screen) whose actions the command palette lists
    PALETTE: tuple[tuple[str, str | None], ...] = ()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (getattr(self.app, "readonly", False) and action in CHANGING)
