"""The key bar at the bottom of each screen: Textual's, recomposed only when it would change."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer as TextualFooter


def shown_bindings(screen: Screen) -> tuple:
    """What a footer on ``screen`` draws from: each active binding, its key, whether it is
    shown and whether it is enabled."""
    return tuple(
        (binding.key, binding.action, binding.description, binding.show, enabled, tooltip)
        for _node, binding, enabled, tooltip in screen.active_bindings.values()
    )


class Footer(TextualFooter):
    """Textual's footer recomposes (removes its keys and mounts new ones) at every change of
    bindings anywhere: each ``refresh_bindings``, each focus change. Opening a run did that five
    times or more in its first second, each a layout and a repaint on the way to showing the log.
    This one does it when what it shows changed."""

    _shown: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        if not (self.is_attached and screen is self.screen and screen.app.app_focus):
            super().bindings_changed(screen)  # (which then draws nothing)
            return
        shown = (shown_bindings(screen), self.app.ENABLE_COMMAND_PALETTE)
        if shown == self._shown:
            return
        self._shown = shown
        super().bindings_changed(screen)
