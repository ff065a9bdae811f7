"""The TUI: ``trainui`` in a terminal. ``main()`` makes the client and runs the app."""

from __future__ import annotations


def main(
    readonly: bool = False,
    theme: str | None = None,
    open_run: str | None = None,
    remote: dict[str, str] | None = None,
    view: str = "runs",
) -> int:
    """Run the TUI on the same client as the CLI; ``open_run`` opens that run at start;
    ``remote``: the client's url, token and cacert (else it reads TRAINUI_URL...); ``view``:
    the first screen, ``runs`` or ``experiments``."""
    from trainui.client import Client
    from trainui.tui.app import TrainuiApp
    from trainui.tui.config import load_config

    app = TrainuiApp(
        Client(**(remote or {})),
        readonly=readonly,
        theme=theme,
        config=load_config(),
        open_run=open_run,
        view=view,
    )
    app.run()
    return app.return_code or 0
