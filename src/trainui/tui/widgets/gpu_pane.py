"""The GPUs at a glance: per GPU a utilisation bar and sparkline, memory, and the run holding it.

Reads ``client.gpus()`` (``GET /v3/gpus``) and tolerates every key missing: a service that only
says which run holds which GPU shows just that. On a machine without GPUs (the service's health
says ``cpu_mode`` at once, before any reading) it shows the CPU slots instead: how many, which
runs hold them, and the queue, from the app's runs.
"""

from __future__ import annotations

import time
from collections import deque

from textual.binding import Binding
from textual.content import Content
from textual.widgets import Static

from trainui.core.runs import ACTIVE_STATES
from trainui.tui.runs import SYMBOLS, format_bytes, format_duration, parse_time

SPARKS = " ▁▂▃▄▅▆▇█"
HISTORY = 60
COMPACT_HOLDERS = 3  # slot holders listed under the run list (all of them full screen)
COMPACT_QUEUE = 3  # waiting runs named under the run list


def bar(fraction: float | None, width: int) -> str:
    """A bar of eighth-blocks, ``width`` cells wide."""
    if fraction is None:
        return "·" * width
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")
    return text.ljust(width, " ")


def sparkline(values, width: int, top: float = 100.0) -> str:
    """The last ``width`` values (0..top) as block characters; missing values blank."""
    values = [v for v in values if v is not None][-width:]
    chars = [SPARKS[max(0, min(8, round(v / top * 8)))] if top else " " for v in values]
    return "".join(chars).rjust(width)


class GpuPane(Static, can_focus=True):
    """A title line, then one line per GPU; on a machine without GPUs, the CPU slots: the runs
    holding them and the queue. ``full``: the whole screen's worth (every slot, every queued run,
    each GPU's processes). It takes the focus (tab, a click); enter shows it full screen."""

    BINDINGS = [Binding("enter", "enlarge", "Full screen")]
    DEFAULT_CSS = """
    GpuPane {
        height: auto; max-height: 12; padding: 0 1; background: $panel;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    GpuPane:focus { background: $boost; }
    GpuPane.-full { background: $background; }
    """

    def __init__(self, full: bool = False, **kwargs) -> None:
        super().__init__("GPUs: reading…", **kwargs)
        self.full = full
        self.set_class(full, "-full")
        if full:  # as tall as it needs: its screen scrolls
            self.styles.max_height = None
        self.data: dict | None = None
        self.stale = False
        self.problem = ""  # why nothing could be read yet (the service is out of reach)
        self._history: dict[str, dict[str, deque]] = {}
        self._lines = -1
        self._drawn: Content | None = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "enlarge" and self.full)

    def action_enlarge(self) -> None:
        self.app.action_toggle_gpus()

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)  # the slot holders' running times

    def _tick(self) -> None:
        if self._cpu_view(self.data):
            self.refresh_text()

    def on_focus(self) -> None:
        self.refresh_text()

    def on_blur(self) -> None:
        self.refresh_text()

    def seed_history(self, history: dict | None, readings: dict | None) -> None:
        """The service's recent readings (``GET /v3/gpus/history``), so the sparklines start
        full; later readings are added one by one."""
        totals = {
            str(g.get("index")): g.get("memory_total") for g in (readings or {}).get("gpus") or []
        }
        for key, series in ((history or {}).get("gpus") or {}).items():
            own = self._series(str(key))
            own["utilization"].extend(series.get("utilization") or [])
            total = totals.get(str(key))
            own["memory"].extend(
                100 * used / total if used is not None and total else None
                for used in series.get("memory_used") or []
            )

    def _series(self, key: str) -> dict[str, deque]:
        return self._history.setdefault(
            key, {"utilization": deque(maxlen=HISTORY), "memory": deque(maxlen=HISTORY)}
        )

    def show_readings(self, data: dict) -> None:
        """A new reading from the service, added to the history of the sparklines."""
        self.data = data
        self.stale = False
        self.problem = ""
        for gpu in data.get("gpus") or []:
            key = str(gpu.get("index"))
            history = self._series(key)
            history["utilization"].append(gpu.get("utilization"))
            used, total = gpu.get("memory_used"), gpu.get("memory_total")
            history["memory"].append(100 * used / total if used is not None and total else None)
        self.refresh_text()

    def show_stale(self) -> None:
        if not self.stale:
            self.stale = True
            self.refresh_text()

    def show_unreachable(self, message: str) -> None:
        """Nothing could be read: say why (rather than "reading…" for ever)."""
        if message != self.problem:
            self.problem = message
            self.refresh_text()

    def runs_changed(self) -> None:
        """The runs changed: the CPU view shows which hold the slots and which wait."""
        if self._cpu_view(self.data):
            self.refresh_text()

    def on_resize(self) -> None:
        self.refresh_text()

    def refresh_text(self) -> None:
        if self.data is None and getattr(self.app, "gpu_readings", None) is not None:
            # a reading that came while the screen was being made (its screen skipped it)
            self.show_readings(self.app.gpu_readings)
            return
        content = self.render_readings(self.data, max(40, self.size.width - 2 or 78))
        if content == self._drawn:
            return
        self._drawn = content
        lines = content.plain.count("\n")
        self.update(content, layout=lines != self._lines)  # a layout only when its height changes
        self._lines = lines

    def _health(self) -> dict:
        return getattr(self.app, "service_health", None) or {}

    def _cpu_view(self, data: dict | None) -> bool:
        """No GPU to show: the service said so (a reading, or its health before any reading)."""
        if data is not None:
            return not data.get("gpus") and data.get("state") != "error"
        health = self._health()
        return bool(health.get("cpu_mode")) and not health.get("gpus")

    def render_readings(self, data: dict | None, width: int) -> Content:
        parts: list[tuple[str, str]] = []
        text = _Parts(parts)
        if self._cpu_view(data):
            self._cpu(text, data or {}, width)
            return Content.assemble(*parts)
        if data is None:
            if self.problem:
                text.append("GPUs", style="bold")
                text.append(f": service unreachable: {self.problem.rstrip('.')}", style="$error")
            else:
                text.append("GPUs: reading…", style="dim")
            return Content.assemble(*parts)
        gpus = data.get("gpus") or []
        state = data.get("state") or "ok"
        message = data.get("message") or ""
        self._title(text, "GPUs")
        if data.get("driver_version"):
            text.append(f" · driver {data['driver_version']}", style="dim")
        if gpus:
            busy = sum(1 for g in gpus if g.get("run") or g.get("processes"))
            text.append(f" · {busy} of {len(gpus)} in use", style="dim")
        if self.stale:
            text.append(" · not updated (no connection)", style="bold $warning")
        self._hint(text)
        if state == "error" or not gpus:
            text.append("\n")
            text.append(message or "the GPUs could not be read", style="$error")
        for gpu in gpus:
            text.append("\n")
            self._gpu_line(text, gpu, width)
            if self.full:
                for process in gpu.get("processes") or []:
                    text.append("\n")
                    text.append(f"      pid {process.get('pid', '?')}", style="dim")
                    if process.get("memory") is not None:
                        text.append(f"  {format_bytes(process['memory'])}", style="dim")
                    if process.get("run"):
                        text.append(f"  {process['run']}", style="$accent")
        return Content.assemble(*parts)

    def _title(self, text: _Parts, title: str) -> None:
        text.append(title, style="bold $accent" if self.has_focus else "bold")

    def _hint(self, text: _Parts) -> None:
        if self.has_focus and not self.full:
            text.append("  enter: full screen", style="$text-muted")

    def _cpu(self, text: _Parts, data: dict, width: int) -> None:
        """The CPU slots: how many, which runs hold them, and the queue."""
        table = getattr(self.app, "table", None)
        runs = list(table.runs.values()) if table is not None else []
        holders = sorted(
            (r for r in runs if r.get("status") in ACTIVE_STATES),
            key=lambda r: r.get("started_at") or r.get("submitted_at") or "",
        )
        queue = sorted(
            (r for r in runs if r.get("status") in ("pending", "restarting")),  # a next attempt too
            key=lambda r: r.get("submitted_at") or "",
        )
        slots = self._health().get("cpu_slots")
        self._title(text, "CPU slots")
        if slots:
            text.append(f" · {len(holders)} of {slots} in use", style="dim")
        else:
            text.append(f" · {len(holders)} in use", style="dim")
        text.append(f" · {len(queue)} waiting" if queue else " · none waiting", style="dim")
        if self.stale:
            text.append(" · not updated (no connection)", style="bold $warning")
        self._hint(text)
        text.append("\n")
        message = data.get("message") or "No NVIDIA GPU or driver on this machine."
        text.append(message, style="$text-muted")  # the title says where runs train
        now = time.time()
        shown = holders if self.full else holders[:COMPACT_HOLDERS]
        for number, run in enumerate(shown, 1):
            text.append("\n")
            text.append(f"slot {number:<2} ", style="bold")
            self._run_words(text, run, now, width)
        if len(holders) > len(shown):
            text.append("\n")
            text.append(f"… and {len(holders) - len(shown)} more (ctrl+g)", style="dim")
        if self.full and slots:
            for number in range(len(holders) + 1, slots + 1):
                text.append("\n")
                text.append(f"slot {number:<2} ", style="bold")
                text.append("free", style="$success")
        if not queue:
            return
        if self.full:
            text.append("\n\n")
            text.append("Queue (first to start first)", style="bold")
            for run in queue:
                text.append("\n")
                self._run_words(text, run, now, width)
                reason = run.get("status_message")
                if reason:
                    text.append(f"  {reason}", style="$text-muted")
            return
        text.append("\n")
        text.append("queue   ", style="bold")
        text.append(", ".join(r.get("model_id", "?") for r in queue[:COMPACT_QUEUE]))
        if len(queue) > COMPACT_QUEUE:
            text.append(f" and {len(queue) - COMPACT_QUEUE} more", style="dim")

    def _run_words(self, text: _Parts, run: dict, now: float, width: int) -> None:
        text.append(run.get("model_id", "?"), style="$accent")
        name = run.get("name") or ""
        if name:
            text.append(f" {name[:24] if width < 100 else name}")
        status = run.get("status", "")
        since = parse_time(run.get("started_at") or run.get("submitted_at"))
        took = "" if since is None else f" {format_duration(max(0.0, now - since))}"
        text.append(f"  {SYMBOLS.get(status, '?')} {status}{took}", style="dim")

    def _gpu_line(self, line: _Parts, gpu: dict, width: int) -> None:
        key = str(gpu.get("index"))
        util_history = self._history.get(key, {}).get("utilization") or []
        utilization = gpu.get("utilization")
        used, total = gpu.get("memory_used"), gpu.get("memory_total")
        holder = gpu.get("run") or next(
            (p.get("run") for p in gpu.get("processes") or [] if p.get("run")), None
        )
        wide = width >= 100
        line.append(f"GPU{key:<2}", style="bold")
        if wide and gpu.get("name"):
            line.append(f" {gpu['name'][:22]:<22}", style="dim")
        fraction = None if utilization is None else utilization / 100
        line.append(" ")
        line.append(bar(fraction, 10 if wide else 8), style=_load_style(fraction))
        line.append(" -- %" if utilization is None else f" {utilization:>3.0f}%")
        line.append(" ")
        line.append(sparkline(util_history, 12 if wide else 8), style="$accent")
        line.append(" mem ")
        memory = used / total if used is not None and total else None
        line.append(bar(memory, 8 if wide else 6), style=_load_style(memory))
        if total:
            line.append(f" {format_bytes(used or 0).split()[0]}/{format_bytes(total)}"
                        if wide else f" {_gib(used or 0)}/{_gib(total)}G")  # fmt: skip
        else:
            line.append(" --")
        if gpu.get("temperature") is not None:
            line.append(f" {gpu['temperature']:.0f}°C", style="dim")
        if wide and gpu.get("power_draw") is not None:
            line.append(f" {gpu['power_draw']:.0f}W", style="dim")
        if gpu.get("mig"):
            line.append(" MIG", style="dim")
        line.append("  ")
        if holder:
            line.append(holder, style="$accent")
        elif gpu.get("state") and gpu.get("state") != "ok":
            line.append(str(gpu["state"]), style="$warning")
        else:
            line.append("free", style="$success")


class _Parts:
    """(text, style) pieces for ``Content.assemble``; styles may name theme variables."""

    def __init__(self, parts: list[tuple[str, str]]) -> None:
        self.parts = parts

    def append(self, text: str, style: str = "") -> None:
        self.parts.append((text, style))


def _gib(count: int) -> str:
    gib = count / (1 << 30)
    return f"{gib:.0f}" if gib >= 10 else f"{gib:.1f}"


def _load_style(fraction: float | None) -> str:
    if fraction is None:
        return "dim"
    if fraction >= 0.9:
        return "$error"
    if fraction >= 0.6:
        return "$warning"
    return "$success"
