"""The command palette (ctrl+p): every action the current screen allows, and the runs by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from trainui.tui.keymap import ACTIONS, group_of
from trainui.tui.screens.help import key_names


class ActionsProvider(Provider):
    """The actions of the screen under the palette, and those that work everywhere."""

    def _commands(self):
        screen = self.screen
        app = self.app
        seen = set()
        groups = [*getattr(screen, "PALETTE", ()), ("app", "app")]
        for group, where in groups:
            if where == "app":
                namespace = app
            elif where is None:
                namespace = screen
            else:
                found = screen.query(where)
                if not found:
                    continue
                namespace = found.first()
            for action in ACTIONS.values():
                if group_of(action) != group or action.action in seen:
                    continue
                if action.action == "command_palette":
                    continue
                if namespace.check_action(action.action, ()) is False:
                    continue
                seen.add(action.action)
                title = action.help or action.description
                keys = key_names(app, action.id, action.keys)
                yield title, keys, partial(namespace.run_action, action.action)

    async def discover(self) -> Hits:
        for title, keys, callback in self._commands():
            yield DiscoveryHit(title, callback, help=f"key: {keys}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, keys, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=f"key: {keys}")


class RunsProvider(Provider):
    """Open a run by typing part of its name or ID."""

    async def search(self, query: str) -> Hits:
        words = query.lower().split()
        if not words or len(query) < 2:
            return
        matcher = self.matcher(query)
        table = self.app.table
        found = 0
        for model_id in table.view():
            run = table.runs[model_id]
            text = f"Open run {run.get('name', '')} {model_id} ({run.get('status')})"
            lowered = text.lower()
            if not all(w in lowered for w in words):
                continue
            yield Hit(
                max(matcher.match(text), 0.1),
                matcher.highlight(text),
                partial(self.app.open_run, model_id),
                help=run.get("status_message") or "",
            )
            found += 1
            if found >= 20:
                return
