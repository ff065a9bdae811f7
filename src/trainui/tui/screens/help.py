"""Every key, grouped by where it works, with the binding IDs the config file remaps: the keys of
the screen it was opened from first, over that screen."""

from __future__ import annotations

import os
from collections.abc import Iterable

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from trainui.tui.config import config_path
from trainui.tui.keymap import ACTIONS, CHANGING, GROUPS, group_of


def key_names(app, binding_id: str, default: str) -> str:
    """The keys an action has now (the config file's keymap wins), as the footer writes them."""
    keys = app._keymap.get(binding_id, default) if hasattr(app, "_keymap") else default
    return " ".join(
        app.get_key_display(Binding(key.strip(), "")) for key in keys.split(",") if key.strip()
    )


def group_order(first: Iterable[str] = ()) -> list[str]:
    """The groups of the help screen: ``first`` (the screen's own), then those that work
    everywhere, then the others as the keymap declares them."""
    order = [g for g in first if g in GROUPS]
    if "app" not in order:
        order.append("app")
    return order + [g for g in GROUPS if g not in order]


def _actions(group: str, readonly: bool) -> list:
    return [
        a
        for a in ACTIONS.values()
        if group_of(a) == group and not (readonly and a.action in CHANGING)
    ]


def keys_table(app, readonly: bool = False, group: str | None = None) -> Table:
    """The keys of ``group`` (every group when None) as three columns: keys, what they do, ID.
    The keys and the IDs are never cut; what they do wraps when the screen is narrow."""
    groups = [group] if group is not None else list(GROUPS)
    rows = [
        (key_names(app, a.id, a.keys), a.help, a.id) for g in groups for a in _actions(g, readonly)
    ]
    table = Table(box=None, show_header=False, expand=True, padding=(0, 1), pad_edge=False)
    table.add_column("Keys", no_wrap=True, min_width=_widest(app, 0, readonly))
    table.add_column("Action", ratio=1)
    table.add_column("ID", style="dim", no_wrap=True, min_width=_widest(app, 2, readonly))
    for row in rows:
        table.add_row(*row)
    return table


def _widest(app, column: int, readonly: bool) -> int:
    """The widest cell of a column over every group, so that the groups' columns line up."""
    cells = [
        (key_names(app, a.id, a.keys), a.help, a.id)[column]
        for g in GROUPS
        for a in _actions(g, readonly)
    ]
    return max((len(c) for c in cells), default=0)


class HelpScreen(ModalScreen[None]):
    """``first``: the groups of the screen below, shown first."""

    BINDINGS = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close", show=False),
        Binding("j,down", "scroll('down')", show=False),
        Binding("k,up", "scroll('up')", show=False),
        Binding("g,home", "scroll('home')", show=False),
        Binding("G,end", "scroll('end')", show=False),
        Binding("pagedown,space", "scroll('pagedown')", show=False),
        Binding("pageup,b", "scroll('pageup')", show=False),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 100; max-width: 100%; height: 90%; border: thick $primary 60%;
        background: $surface; padding: 0 1;
    }
    HelpScreen .title { text-style: bold; margin-bottom: 1; }
    HelpScreen .group { text-style: bold; color: $accent; }
    HelpScreen .keys { margin-bottom: 1; }
    """

    def __init__(self, first: Iterable[str] = (), where: str = "") -> None:
        super().__init__()
        self.first = tuple(first)
        self.where = where

    def compose(self) -> ComposeResult:
        readonly = getattr(self.app, "readonly", False)
        with VerticalScroll(can_focus=False) as scroll:
            scroll.border_title = "Keys"
            scroll.border_subtitle = "esc closes"
            here = f"The keys of the {self.where} first. " if self.where else ""
            yield Static(
                f"{here}Remap a key by its ID in {_shown_path(config_path())}, table [keymap].",
                classes="title",
                markup=False,
            )
            for group in group_order(self.first):
                table = keys_table(self.app, readonly, group)
                if not table.row_count:
                    continue
                yield Static(GROUPS[group], classes="group", id=f"group-{group}")
                yield Static(table, classes="keys")

    async def action_dismiss(self, result=None) -> None:
        self.dismiss(None)

    def action_scroll(self, where: str) -> None:
        scroll = self.query_one(VerticalScroll)
        if where == "down":
            scroll.scroll_down(animate=False)
        elif where == "up":
            scroll.scroll_up(animate=False)
        elif where == "home":
            scroll.scroll_home(animate=False)
        elif where == "end":
            scroll.scroll_end(animate=False)
        elif where == "pagedown":
            scroll.scroll_page_down(animate=False)
        else:
            scroll.scroll_page_up(animate=False)


def _shown_path(path) -> str:
    """The TUI's settings file as the user knows it: ``~/...`` under their home."""
    home = os.path.expanduser("~").rstrip("/")
    text = str(path)
    return "~" + text[len(home) :] if home and text.startswith(home + "/") else text
