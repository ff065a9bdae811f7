"""Path completion for the model definition field: the rest of the first matching name in
that folder is suggested (right arrow or tab takes it)."""

from __future__ import annotations

import os

from textual.binding import Binding
from textual.suggester import Suggester
from textual.widgets import Input


class PathSuggester(Suggester):
    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value or value.startswith("run:"):
            return None
        expanded = os.path.expanduser(value)
        folder, prefix = os.path.split(expanded)
        try:
            with os.scandir(folder or ".") as entries:
                names = sorted(
                    (entry.name + ("/" if entry.is_dir() else ""))
                    for entry in entries
                    if entry.name.startswith(prefix)
                    and (prefix.startswith(".") or not entry.name.startswith("."))
                    and (entry.is_dir() or entry.name.endswith(".zip"))
                )
        except OSError:
            return None
        if not names:
            return None
        return value + names[0][len(prefix) :]


class PathInput(Input):
    """A one-line input with path completion; tab takes the suggestion when there is one.

    Compact (no border: Input's focused border would cover a one-line field and its text), and
    focus puts the cursor at the end instead of selecting the path, so the first key typed
    does not replace a path one cannot see being selected."""

    BINDINGS = [Binding("tab", "complete", "Complete", show=False)]

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("compact", True)
        kwargs.setdefault("select_on_focus", False)
        super().__init__(*args, suggester=PathSuggester(), **kwargs)

    def _on_focus(self, event) -> None:
        self.cursor_position = len(self.value)

    def action_complete(self) -> None:
        if self._suggestion and self._suggestion != self.value:
            self.value = self._suggestion
            self.cursor_position = len(self.value)
        else:
            self.screen.focus_next()
