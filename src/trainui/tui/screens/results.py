"""Download a run's results (its ``ID/`` folder of the results bucket, through the service) into a
folder the user confirms, with progress: ``trainui download ID --results`` in a dialog."""

from __future__ import annotations

import os

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, ProgressBar, Static

from trainui.client import ClientError, kept_said
from trainui.tui.keymap import bindings
from trainui.tui.runs import format_bytes


def _files(count: int) -> str:
    return f"{count} file{'s' if count != 1 else ''}"


class DownloadScreen(ModalScreen["str | None"]):
    """Dismissed with the folder the results went to, or None (cancelled, refused, failed)."""

    BINDINGS = bindings("results")
    DEFAULT_CSS = """
    DownloadScreen { align: center middle; }
    DownloadScreen > Vertical {
        width: 76; max-width: 98%; height: auto; padding: 1 2;
        border: thick $primary 60%; background: $surface;
    }
    DownloadScreen .question { text-style: bold; margin-bottom: 1; }
    DownloadScreen #listing { color: $text-muted; }
    DownloadScreen #listing.-error { color: $error; }
    DownloadScreen Input { margin-top: 1; }
    DownloadScreen #where { color: $text-muted; height: auto; }
    DownloadScreen ProgressBar { display: none; margin-top: 1; }
    DownloadScreen ProgressBar.-shown { display: block; }
    DownloadScreen #done { height: auto; display: none; }
    DownloadScreen #done.-shown { display: block; }
    DownloadScreen Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    DownloadScreen Button { margin-left: 2; }
    """

    def __init__(self, model_id: str, name: str = "", folder: str | None = None) -> None:
        super().__init__()
        self.model_id = model_id
        self.run_name = name
        self.folder = folder if folder is not None else os.path.join(".", model_id)
        self.listing: dict | None = None
        self.problem = ""  # why the results cannot be listed (the service's words)
        self.downloading = False
        self.done_files: list[str] = []
        self.bytes_done = 0

    def compose(self) -> ComposeResult:
        name = f" ({self.run_name})" if self.run_name else ""
        with Vertical():
            yield Static(f"Download the results of {self.model_id}{name}", classes="question")
            yield Static("reading what it stored…", id="listing")
            yield Input(self.folder, placeholder="a folder", id="folder")
            yield Static("", id="where")
            yield ProgressBar(total=None, show_eta=False, id="bar")
            yield Static("", id="done")
            with Horizontal():
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Download (enter)", id="start", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._where(self.folder)
        self._list()

    # --- what is there ------------------------------------------------------------------

    @work(group="results-list", exclusive=True)
    async def _list(self) -> None:
        listing = self.query_one("#listing", Static)
        try:
            self.listing = await self.app.client.list_results(self.model_id)
        except ClientError as error:
            self.problem = str(error)
            listing.update(self.problem)
            listing.add_class("-error")
            return
        count, size = self.listing["count"], self.listing["bytes"]
        text = f"{_files(count)}, {format_bytes(size)}{kept_said(self.listing)}, into the folder:"
        if self.listing.get("bucket_problem"):
            text = f"{self.listing['bucket_problem']}; what the box kept: {text}"
        listing.update(text)
        self.query_one("#start", Button).disabled = not count

    def on_input_changed(self, event: Input.Changed) -> None:
        self._where(event.value)

    def _where(self, folder: str) -> None:
        path = os.path.abspath(os.path.expanduser(folder)) if folder.strip() else ""
        if not path:
            text = "write a folder"
        elif os.path.isfile(path):
            text = f"{path} is a file: the results go into a folder"
        elif os.path.isdir(path):
            text = f"existing folder (files of the same name are replaced): {path}"
        else:
            text = f"new folder: {path}"
        self.query_one("#where", Static).update(text)

    # --- the download -------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self.start()
        else:
            self.action_cancel()

    def start(self) -> None:
        if self.problem:  # nothing to download (stored nothing yet, a bucket gone): enter says
            self.app.bell()  # it again where the eye is, not nothing at all
            self.app.notify(self.problem, severity="warning")
            return
        if self.downloading or not self.listing or not self.listing["count"]:
            return
        folder = self.query_one(Input).value.strip()
        path = os.path.abspath(os.path.expanduser(folder)) if folder else ""
        if not path or os.path.isfile(path):
            self.app.bell()
            return
        self.downloading = True
        self.query_one(Input).disabled = True
        self.query_one("#start", Button).disabled = True
        self.query_one("#cancel", Button).label = "Stop (esc)"
        bar = self.query_one(ProgressBar)
        bar.update(total=self.listing["bytes"] or None, progress=0)
        bar.add_class("-shown")
        self.query_one("#done").add_class("-shown")
        self._download(path)

    @work(group="results-download", exclusive=True)
    async def _download(self, path: str) -> None:
        client = self.app.client
        total = self.listing["count"]
        bar = self.query_one(ProgressBar)
        done = self.query_one("#done", Static)

        def received(count: int) -> None:
            self.bytes_done += count
            bar.advance(count)

        def file_done(key: str) -> None:
            self.done_files.append(key)
            done.update(f"{len(self.done_files)} of {_files(total)}")

        try:
            await client.download_results(
                self.model_id, self.listing["objects"], path, received, file_done
            )
        except ClientError as error:  # it says how many files are in the folder
            self.downloading = False
            self.app.notify(str(error), severity="error")
            self.dismiss(None)
            return
        self.downloading = False
        self.app.notify(
            f"Downloaded {_files(total)} ({format_bytes(self.listing['bytes'])}) "
            f"of {self.model_id} to {path}{kept_said(self.listing)}"
        )
        self.dismiss(path)

    def action_cancel(self) -> None:
        if self.downloading:
            self.workers.cancel_group(self, "results-download")
            self.downloading = False
            self.app.notify(
                f"Stopped the download of {self.model_id}: "
                f"{len(self.done_files)} of {_files(self.listing['count'])} were written.",
                severity="warning",
            )
        self.dismiss(None)
