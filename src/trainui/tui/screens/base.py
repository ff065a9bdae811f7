"""What every trainui screen shares: actions that change state are hidden in read-only mode."""

from __future__ import annotations

from textual.screen import Screen

from trainui.tui.keymap import ACTIONS, CHANGING

RESUMABLE = ("halted", "failed")  # the states `resume` takes a run from (SPEC §11)


def resumable_runs(experiment: dict | None) -> int:
    """How many of the experiment's runs are halted or failed (``resume experiment`` takes
    them, but for those the median rule stopped)."""
    counts = (experiment or {}).get("runs_by_status") or {}
    return sum(counts.get(state, 0) for state in RESUMABLE)


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

    def said_no_run_resumes(self, event, binding_id: str, experiment: dict | None) -> bool:
        """``R`` (``binding_id``) on an experiment none of whose runs is halted or failed."""
        if experiment is None or resumable_runs(experiment) or getattr(self.app, "readonly", False):
            return False
        why = f"No run of {experiment.get('name') or 'this experiment'} is halted or failed."
        return self.said_why_not(event, binding_id, why)

    def said_ended(self, event, binding_id: str, experiment: dict | None) -> bool:
        """``h`` (``binding_id``) on an experiment that has ended: its binding is hidden."""
        status = (experiment or {}).get("status")
        if status not in ("completed", "failed", "halted") or getattr(self.app, "readonly", False):
            return False
        name = experiment.get("name") or "this experiment"
        return self.said_why_not(event, binding_id, f"{name} has already ended ({status}).")

    def said_not_resumable(self, event, binding_id: str, status: str) -> bool:
        """``R`` (``binding_id``) on a run in ``status``, which does not resume: said."""
        why = f"Only a halted or failed run resumes; this one is {status}."
        return self.said_why_not(event, binding_id, why)
