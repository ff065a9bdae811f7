"""Every key, grouped by where it works, with the binding IDs the config file remaps."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from trainui.tui.keymap import ACTIONS, CHANGING, GROUPS, group_of


def key_names(app, binding_id: str, default: str) -> str:
    """The keys an action has now (the config file's keymap wins), as the footer writes them."""
    keys = app._keymap.get(binding_id, default) if hasattr(app, "_keymap") else default
    return " ".join(
        app.get_key_display(Binding(key.strip(), "")) for key in keys.split(",") if key.strip()
    )


def keys_table(app, readonly: bool = False) -> Table:
    table = Table(box=None, show_header=True, header_style="bold", expand=True, padding=(0, 1))
    table.add_column("Keys", no_wrap=True, width=10)
    table.add_column("Action", ratio=1)
    table.add_column("ID", style="dim", no_wrap=True, width=19)
    for group, title in GROUPS.items():
        actions = [
            a
            for a in ACTIONS.values()
            if group_of(a) == group and not (readonly and a.action in CHANGING)
        ]
        if not actions:
            continue
        table.add_row(f"[bold]{title}[/]", "", "")
        for action in actions:
            table.add_row(key_names(app, action.id, action.keys), action.help, action.id)
        table.add_row("", "", "")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "Close", show=False),
        Binding("j,down", "scroll('down')", show=False),
        Binding("k,up", "scroll('up')", show=False),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 100; max-width: 100%; height: 90%; border: thick $primary 60%;
        background: $surface; padding: 0 1;
    }
    HelpScreen .title { text-style: bold; margin-bottom: 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(
                "Keys (escape closes; remap them by ID in ~/.config/trainui/tui.toml)",
                classes="title",
            )
            yield Static(keys_table(self.app, getattr(self.app, "readonly", False)), id="keys")

    async def action_dismiss(self, result=None) -> None:
        self.dismiss(None)

    def action_scroll(self, direction: str) -> None:
        scroll = self.query_one(VerticalScroll)
        if direction == "down":
            scroll.scroll_down(animate=False)
        else:
            scroll.scroll_up(animate=False)
