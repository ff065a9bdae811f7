"""The GPU pane full screen (ctrl+g, or enter on the pane): every GPU and its processes, or on a
machine without GPUs every CPU slot and the whole queue."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll

from trainui.tui.keymap import bindings
from trainui.tui.screens.base import TrainuiScreen
from trainui.tui.widgets.bars import ConnectionBanner, TitleBar
from trainui.tui.widgets.footer import Footer
from trainui.tui.widgets.gpu_pane import GpuPane


class GpuScreen(TrainuiScreen):
    BINDINGS = bindings("gpus")
    PALETTE = (("gpus", None),)
    DEFAULT_CSS = """
    GpuScreen VerticalScroll { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield TitleBar("GPUs", "ctrl+g or esc: back", id="title")
        yield ConnectionBanner()
        with VerticalScroll():
            yield GpuPane(full=True, id="gpus")
        yield Footer(compact=True)

    @property
    def pane(self) -> GpuPane:
        return self.query_one(GpuPane)

    def on_mount(self) -> None:
        self.pane.focus()
        if self.app.gpu_readings is not None:
            self.pane.seed_history(self.app.gpu_history, self.app.gpu_readings)
            self.pane.show_readings(self.app.gpu_readings)
        else:
            self.pane.refresh_text()

    def gpus_changed(self, readings: dict | None) -> None:
        if not self.is_mounted:
            return
        if readings is None:
            self.pane.show_stale()
        else:
            self.pane.show_readings(readings)

    def action_back(self) -> None:
        self.app.pop_screen()
