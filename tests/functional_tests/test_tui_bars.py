"""The title bar: a long title (a run's name) is cut so that what follows it (the run's ID)
and the right side (its state) stay on screen."""

from __future__ import annotations

from textual.app import App, ComposeResult

from trainui.tui.widgets.bars import TitleBar

LONG = "flood ünïcödé 日本語 ✓ a very long run name that goes on and on and on and on to the end"


class BarApp(App):
    def compose(self) -> ComposeResult:
        yield TitleBar("training-AAAAAAAAA")


async def test_a_long_name_is_cut_and_the_id_and_state_stay():
    app = BarApp()
    for width in (80, 120):
        async with app.run_test(size=(width, 5)) as pilot:
            bar = app.query_one(TitleBar)
            bar.set(LONG, "✓ completed", "  training-AAAAAAAAA")
            await pilot.pause()
            line = bar.render().plain
            assert "…  training-AAAAAAAAA" in line and line.rstrip().endswith("✓ completed")
            assert line.startswith("trainui  flood ünïcödé 日本語")
            bar.set("short", "✓ completed", "  training-AAAAAAAAA")
            await pilot.pause()
            line = bar.render().plain
            assert line.startswith("trainui  short  training-AAAAAAAAA  ") and "…" not in line
        app = BarApp()
