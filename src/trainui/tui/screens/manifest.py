"""A run's manifest as the service returns it (its secrets removed), read-only, YAML highlighted."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import TextArea

from trainui.tui.keymap import bindings
from trainui.tui.screens.base import TrainuiScreen
from trainui.tui.widgets.bars import ConnectionBanner, TitleBar
from trainui.tui.widgets.footer import Footer


class ManifestScreen(TrainuiScreen):
    BINDINGS = bindings("viewer")
    PALETTE = (("viewer", None),)
    DEFAULT_CSS = """
    ManifestScreen TextArea { height: 1fr; border: none; padding: 0; }
    ManifestScreen TextArea:focus { border: none; }
    """

    def __init__(self, model_id: str, text: str) -> None:
        super().__init__()
        self.model_id = model_id
        self.text = text

    def compose(self) -> ComposeResult:
        run = self.app.table.get(self.model_id) or {}
        name = run.get("name", "")
        title = f"manifest  {name}  {self.model_id}" if name else f"manifest  {self.model_id}"
        yield TitleBar(title, "read-only", id="title")
        yield ConnectionBanner()
        yield TextArea(
            self.text,
            language="yaml",
            read_only=True,
            show_line_numbers=True,
            soft_wrap=False,
            id="manifest",
        )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_clone_run(self) -> None:
        self.app.clone_run(self.model_id)

    def action_toggle_wrap(self) -> None:
        """Wrap long lines, or cut them again at the right edge (w)."""
        area = self.query_one(TextArea)
        area.soft_wrap = not area.soft_wrap
        self.query_one(TitleBar).set(right="read-only · wrapped" if area.soft_wrap else "read-only")
