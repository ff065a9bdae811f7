"""Small dialogs of the editor: pick a template, pick a model definition from a folder tree."""

from __future__ import annotations

import os
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, OptionList, Static
from textual.widgets.option_list import Option

from trainui.tui.templates import Template


class TemplatePicker(ModalScreen["Template | None"]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]
    DEFAULT_CSS = """
    TemplatePicker { align: center middle; }
    TemplatePicker > Vertical {
        width: 80; max-width: 95%; height: auto; border: thick $primary 60%;
        background: $surface; padding: 0 1;
    }
    TemplatePicker OptionList { height: auto; max-height: 12; }
    """

    def __init__(self, templates: dict[str, Template]) -> None:
        super().__init__()
        self.templates = templates

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Start from a template (it replaces the text; ctrl+z undoes)")
            yield OptionList(*(Option(t.title, id=t.key) for t in self.templates.values()))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.templates[event.option.id])

    def action_cancel(self) -> None:
        self.dismiss(None)


class ZipAndFolderTree(DirectoryTree):
    def filter_paths(self, paths):
        return [
            p
            for p in paths
            if not p.name.startswith(".")
            and p.name != "__pycache__"
            and (p.is_dir() or p.suffix == ".zip")
        ]


class DefinitionPicker(ModalScreen["str | None"]):
    """A folder tree: enter on a .zip picks it; `u` (or the button) picks the folder under the
    cursor; enter on a folder opens it."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("u", "use_folder", "Use folder", show=False),
    ]
    DEFAULT_CSS = """
    DefinitionPicker { align: center middle; }
    DefinitionPicker > Vertical {
        width: 90; max-width: 98%; height: 90%; border: thick $primary 60%;
        background: $surface; padding: 0 1;
    }
    DefinitionPicker DirectoryTree { height: 1fr; }
    DefinitionPicker Horizontal { height: auto; align-horizontal: right; }
    DefinitionPicker Button { margin-left: 2; }
    """

    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                "Model definition: enter on a .zip picks it, u picks the folder under the cursor"
            )
            yield ZipAndFolderTree(self.start)
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Use folder", id="use", variant="primary")

    def on_mount(self) -> None:
        self.query_one(DirectoryTree).focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    def action_use_folder(self) -> None:
        tree = self.query_one(DirectoryTree)
        node = tree.cursor_node
        path = Path(node.data.path) if node is not None and node.data else Path(self.start)
        if not path.is_dir():
            path = path.parent
        self.dismiss(str(path))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "use":
            self.action_use_folder()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def start_folder(value: str) -> str:
    """Where the tree opens: the folder in the field, else the working folder."""
    path = os.path.expanduser(value) if value and not value.startswith("run:") else ""
    if path and os.path.isdir(path):
        return os.path.abspath(path)
    if path and os.path.isdir(os.path.dirname(path)):
        return os.path.abspath(os.path.dirname(path))
    return os.getcwd()
