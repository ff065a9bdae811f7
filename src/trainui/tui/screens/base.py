"""What every trainui screen shares: actions that change state are hidden in read-only mode."""

from __future__ import annotations

from textual.screen import Screen

from trainui.tui.keymap import ACTIONS, CHANGING

RESUMABLE = ("halted", "failed")  # the states `resume` takes a run from (SPEC §11)


class TrainuiScreen(Screen):
    # (group, widget type name or None for the screen) whose actions the command palette lists
    PALETTE: tuple[tuple[str, str | None], ...] = ()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (getattr(self.app, "readonly", False) and action in CHANGING)

    def said_why_not(self, event, binding_id: str, why: str) -> bool:
        """``event``, a key of ``binding_id`` whose binding is hidden where it does nothing (the
        footer offers it only where it applies): say ``why`` instead of nothing."""
        keys = getattr(self.app, "_keymap", {}).get(binding_id, ACTIONS[binding_id].keys)
        if event.key not in {key.strip() for key in keys.split(",")}:
            return False
        event.stop()
        event.prevent_default()
        self.notify(why, severity="warning")
        return True

    def said_not_resumable(self, event, binding_id: str, status: str) -> bool:
        """``R`` (``binding_id``) on a run in ``status``, which does not resume: said."""
        why = f"Only a halted or failed run resumes; this one is {status}."
        return self.said_why_not(event, binding_id, why)
