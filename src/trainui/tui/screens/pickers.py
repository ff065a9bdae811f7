"""Small dialogs of the editor: pick a template, pick a model definition from a folder tree
(which goes up, and anywhere a typed folder says)."""

from __future__ import annotations

import os
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, OptionList, Static
from textual.widgets.directory_tree import DirEntry
from textual.widgets.option_list import Option

from trainui.tui.templates import Template
from trainui.tui.widgets.path_input import PathInput


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
    """Folders and .zip files; the root's first entry is ``..``, its parent folder."""

    def filter_paths(self, paths):
        return [
            p
            for p in paths
            if p.name == ".."
            or (
                not p.name.startswith(".")
                and p.name != "__pycache__"
                and (p.is_dir() or p.suffix == ".zip")
            )
        ]

    def _directory_content(self, location: Path, worker):
        # the root's listing starts with ".." (never empty, so the tree always shows it)
        if location == Path(self.path).expanduser().resolve() and location.parent != location:
            yield location / ".."
        yield from super()._directory_content(location, worker)

    def render_label(self, node, base_style, style):
        if node.data is None or node.data.path.name != ".." or not self.is_mounted:
            return super().render_label(node, base_style, style)
        label = Text("..", style=style)  # a folder (not a file's icon), and what it does
        label.stylize_before(self.get_component_rich_style("directory-tree--folder", partial=True))
        return Text.assemble((self.ICON_NODE, base_style), label, (" (up)", "dim"))

    def _populate_node(self, node, content) -> None:
        content = sorted(content, key=lambda p: p.name != "..")  # ".." first (a stable sort)
        super()._populate_node(node, content)
        for child in node.children:
            if child.data is not None and child.data.path.name == "..":
                child.allow_expand = False  # enter goes up rather than opening it below


class DefinitionPicker(ModalScreen["str | None"]):
    """A folder tree under a path field: enter on a .zip picks it; `u` (or the button) picks
    the folder under the cursor; enter on a folder opens it; enter on ``..`` or backspace goes
    up to the parent folder; a folder typed in the field (enter) becomes the tree's root, a
    .zip typed there is picked."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("u", "use_folder", "Use folder", show=False),
        Binding("backspace", "up", "Up", show=False),
    ]
    DEFAULT_CSS = """
    DefinitionPicker { align: center middle; }
    DefinitionPicker > Vertical {
        width: 90; max-width: 98%; height: 90%; border: thick $primary 60%;
        background: $surface; padding: 0 1;
    }
    DefinitionPicker #folder-row { height: 1; background: $boost; margin-bottom: 1; }
    DefinitionPicker #folder-row Label { width: auto; padding: 0 1 0 0; color: $text-muted; }
    DefinitionPicker PathInput { height: 1; border: none; padding: 0; width: 1fr; }
    DefinitionPicker DirectoryTree { height: 1fr; }
    DefinitionPicker #buttons { height: auto; align-horizontal: right; }
    DefinitionPicker Button { margin-left: 2; }
    """

    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                "Model definition: enter on a .zip picks it, u picks the folder under the "
                "cursor, backspace or .. goes up; type a folder above to go there"
            )
            with Horizontal(id="folder-row"):
                yield Label("Folder")
                yield PathInput(self.start, id="folder")
            yield ZipAndFolderTree(self.start)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Use folder", id="use", variant="primary")

    @property
    def tree(self) -> ZipAndFolderTree:
        return self.query_one(ZipAndFolderTree)

    @property
    def folder(self) -> str:
        return str(Path(self.tree.path).expanduser().resolve())

    def on_mount(self) -> None:
        self.tree.focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        if event.path.name == "..":
            event.stop()
            self.action_up()

    def action_up(self) -> None:
        here = Path(self.folder)
        if here.parent != here:
            self.go_to(str(here.parent), select=str(here))

    @work(exclusive=True, group="reroot")
    async def go_to(self, folder: str, select: str | None = None) -> None:
        """Make ``folder`` the tree's root (the cursor on ``select``, a folder in it)."""
        tree = self.tree
        path = Path(folder).expanduser().resolve()
        tree.set_reactive(DirectoryTree.path, path)  # its watcher would reload a second time
        tree.reset_node(tree.root, str(path), DirEntry(path))
        field = self.query_one("#folder", PathInput)
        with field.prevent(Input.Changed):
            field.value = str(path)
        await tree.reload()
        line = 0
        for child in tree.root.children:
            if select and child.data is not None and str(child.data.path) == select:
                line = child.line
        tree.cursor_line = line
        tree.scroll_to_line(line, animate=False)
        tree.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        path = os.path.expanduser(event.value.strip())
        if os.path.isdir(path):
            self.go_to(path)
        elif os.path.isfile(path):
            self.dismiss(os.path.abspath(path))
        else:
            self.notify(f"{event.value.strip() or 'nothing'}: no such folder", severity="error")

    def action_use_folder(self) -> None:
        node = self.tree.cursor_node
        path = Path(node.data.path) if node is not None and node.data else Path(self.folder)
        if not path.is_dir():
            path = path.parent
        self.dismiss(str(path.resolve()) if path.name == ".." else str(path))

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
