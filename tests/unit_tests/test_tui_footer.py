"""The footer is remade when its keys change, and only then."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from trainui.tui.widgets.footer import Footer


class Keys(App):
    BINDINGS = [Binding("x", "act", "Act"), Binding("y", "other", "Other")]

    def __init__(self) -> None:
        super().__init__()
        self.allowed = True

    def compose(self):
        yield Static("keys")
        yield Footer(compact=True, show_command_palette=False)

    def check_action(self, action, parameters):
        return self.allowed if action == "act" else True

    def action_act(self) -> None:
        pass

    def action_other(self) -> None:
        pass


def keys(app: App) -> list[FooterKey]:
    return list(app.query(FooterKey))


async def test_the_same_keys_are_not_remade_and_changed_ones_are():
    app = Keys()
    async with app.run_test() as pilot:
        await pilot.pause(0.1)
        before = keys(app)
        assert [k.description for k in before] == ["Act", "Other"]
        for _ in range(5):
            app.screen.refresh_bindings()
            await pilot.pause(0.05)
        assert keys(app) == before  # the very same widgets
        app.allowed = False  # "act" is hidden now
        app.screen.refresh_bindings()
        await pilot.pause(0.1)
        assert [k.description for k in keys(app)] == ["Other"]
        app.allowed = True
        app.screen.refresh_bindings()
        await pilot.pause(0.1)
        assert [k.description for k in keys(app)] == ["Act", "Other"]
