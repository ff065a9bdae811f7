"""Pick metrics: which ones get a chart, or a column in the run list."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, SelectionList, Static
from textual.widgets.selection_list import Selection

from trainui.tui.widgets.tick_list import TickList

SHOWN_IN_PICKER = 500  # a run with ten thousand tags: the filter finds the others


class _Filter(Input):
    """The picker's filter: ``space`` ticks the metric found (as the hint says), never types a
    space into the filter (an Input takes printable keys before any binding is looked at)."""

    async def _on_key(self, event) -> None:
        if event.key == "space":
            event.stop()
            event.prevent_default()
            self.screen.action_tick()
            return
        await super()._on_key(event)


class MetricPicker(ModalScreen["list[str] | None"]):
    """Every metric, the chosen ones ticked (``▐X▌``, the others ``▐ ▌``: seen without colour);
    ``space`` ticks, ``enter`` keeps the choice, ``escape`` leaves it as it was. Typing filters
    the list. Returns the chosen names in the order of ``names``."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("enter", "done", "Done", show=False, priority=True),
    ]
    DEFAULT_CSS = """
    MetricPicker { align: center middle; }
    MetricPicker > Vertical {
        width: 60; max-width: 95%; height: auto; max-height: 90%;
        border: thick $primary 60%; background: $surface; padding: 0 1;
    }
    MetricPicker Input { margin: 0; }
    MetricPicker SelectionList { height: auto; max-height: 16; }
    MetricPicker .hint { color: $text-muted; }
    """

    def __init__(self, title: str, names: list[str], chosen: list[str]) -> None:
        super().__init__()
        self.title_text = title
        self.names = names
        self.chosen = set(chosen)

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(
                "space ticks · enter keeps · esc cancels · typing filters",
                classes="hint",
            )
            # a letter typed in the list starts the filter: focused, it keeps that letter
            yield _Filter(placeholder="filter", id="picker-filter", select_on_focus=False)
            yield TickList[str](*self._selections(""), id="picker-list")

    def _selections(self, words: str) -> list[Selection]:
        lowered = words.lower()
        names = [n for n in self.names if lowered in n.lower()] if lowered else self.names
        # a metric's name is the user's text, never markup (`[/]` would end the app)
        return [Selection(Text(n), n, n in self.chosen) for n in names[:SHOWN_IN_PICKER]]

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def on_key(self, event) -> None:
        """Typing a letter in the list starts the filter; in the filter, ``down`` goes to the
        list."""
        field = self.query_one(Input)
        options = self.query_one(SelectionList)
        typed = event.character
        if self.focused is not field:
            if typed and typed.isprintable() and typed != " ":
                field.focus()
                field.value += typed
                field.cursor_position = len(field.value)
                event.stop()
            return
        if event.key in ("down", "up") and options.option_count:
            event.stop()
            event.prevent_default()
            if options.highlighted is None:
                options.highlighted = 0
            options.focus()

    def action_tick(self) -> None:
        """Tick (or untick) the highlighted metric, the first one found after a filter."""
        options = self.query_one(SelectionList)
        if not options.option_count:
            return
        if options.highlighted is None:
            options.highlighted = 0
        options.focus()
        options.toggle(options.get_option_at_index(options.highlighted).value)

    def on_input_changed(self, event: Input.Changed) -> None:
        options = self.query_one(SelectionList)
        options.clear_options()
        options.add_options(self._selections(event.value))
        if options.option_count:
            options.highlighted = 0  # tab, then space, ticks the first one found

    def on_selection_list_selection_toggled(self, event: SelectionList.SelectionToggled) -> None:
        self.chosen ^= {event.selection.value}

    def action_done(self) -> None:
        self.dismiss([n for n in self.names if n in self.chosen])

    def action_cancel(self) -> None:
        self.dismiss(None)
