"""The key bar at the bottom of each screen: Textual's, recomposed only when it would change, and
fitted to the width: keys that do not fit are left out from the right (they stay in `?` and the
command palette), the help key and the palette's key always stay."""

from __future__ import annotations

from rich.cells import cell_len
from textual.screen import Screen
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey

ALWAYS = ("help",)  # actions the footer never leaves out
# left out first where there is no room for all (they are in `?`): where a wide terminal has
# room, the run list says that e switches to the experiments
FIRST_LEFT_OUT = ("app.toggle_experiments",)
# left out last (after every other key but help): a running run's halt (at 80 columns its
# screen leaves out i and d rather than h, or the log's w)
LAST_LEFT_OUT = ("halt_run",)


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
    This one does it when what it shows changed. Textual's also cuts what does not fit (at 80
    columns the editor's ended in ``? Ke``); this one leaves out whole keys instead."""

    _shown: tuple | None = None

    def _plan(self, screen: Screen) -> tuple[list, object]:
        """The keys to draw, ``(binding, enabled, tooltip)`` each, one per action, and the
        palette's key (or None), fitted to the footer's width."""
        keys, seen = [], set()
        palette = None
        for _node, binding, enabled, tooltip in screen.active_bindings.values():
            if self.app.ENABLE_COMMAND_PALETTE and binding.action == "command_palette":
                if self.show_command_palette:
                    palette = (binding, enabled, binding.tooltip or binding.description)
                continue
            if binding.show and binding.action not in seen:
                seen.add(binding.action)
                keys.append((binding, enabled, tooltip))
        width = self.size.width or self.app.size.width
        # compact: "key description" and a space after; the palette's key has a bar before it
        extra = 1 if self.compact else 4
        sizes = [self._width(binding) + extra for binding, _, _ in keys]
        room = width - (self._width(palette[0]) + extra if palette else 0)
        while keys and sum(sizes) > room:
            droppable = [i for i, (b, _, _) in enumerate(keys) if b.action not in ALWAYS]
            if not droppable:
                break
            first = [i for i in droppable if keys[i][0].action in FIRST_LEFT_OUT]
            then = [i for i in droppable if keys[i][0].action not in LAST_LEFT_OUT]
            gone = (first or then or droppable)[-1]
            del keys[gone], sizes[gone]
        if palette is not None and sum(sizes) > room:  # a very narrow terminal: `?` first
            palette = None
        return keys, palette

    def _width(self, binding) -> int:
        return cell_len(self.app.get_key_display(binding)) + 1 + cell_len(binding.description)

    def _summary(self, screen: Screen) -> tuple:
        keys, palette = self._plan(screen)
        return (
            tuple((b.key, b.action, b.description, e, t) for b, e, t in keys),
            palette is not None and (palette[0].key, palette[1]),
            shown_bindings(screen),
        )

    def compose(self):
        if not self._bindings_ready:
            return
        keys, palette = self._plan(self.screen)
        for binding, enabled, tooltip in keys:
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip,
            ).data_bind(compact=TextualFooter.compact)
        if palette is not None:
            binding, enabled, tooltip = palette
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                classes="-command-palette",
                disabled=not enabled,
                tooltip=tooltip,
            )

    def bindings_changed(self, screen: Screen) -> None:
        if not (self.is_attached and screen is self.screen and screen.app.app_focus):
            super().bindings_changed(screen)  # (which then draws nothing)
            return
        shown = self._summary(screen)
        if shown == self._shown:
            return
        self._shown = shown
        super().bindings_changed(screen)

    def on_resize(self) -> None:
        if self._bindings_ready and self.is_attached:
            self.bindings_changed(self.screen)
