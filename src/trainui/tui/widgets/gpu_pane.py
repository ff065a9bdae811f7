"""The GPUs at a glance: per GPU a utilisation bar and sparkline, memory, and the run holding it.

Reads ``client.gpus()`` (``GET /v3/gpus``) and tolerates every key missing: a service that only
says which run holds which GPU shows just that; one without GPUs shows the no-GPU message.
"""

from __future__ import annotations

from collections import deque

from textual.content import Content
from textual.widgets import Static

from trainui.tui.runs import format_bytes

SPARKS = " ▁▂▃▄▅▆▇█"
HISTORY = 60


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


class GpuPane(Static):
    """A title line, then one line per GPU (two at widths under 70 cells)."""

    DEFAULT_CSS = """
    GpuPane {
        height: auto; max-height: 12; padding: 0 1; background: $panel;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("GPUs: reading…", **kwargs)
        self.data: dict | None = None
        self.stale = False
        self._history: dict[str, dict[str, deque]] = {}
        self._lines = -1

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

    def on_resize(self) -> None:
        self.refresh_text()

    def refresh_text(self) -> None:
        content = self.render_readings(self.data, max(40, self.size.width - 2 or 78))
        lines = content.plain.count("\n")
        self.update(content, layout=lines != self._lines)  # a layout only when its height changes
        self._lines = lines

    def render_readings(self, data: dict | None, width: int) -> Content:
        parts: list[tuple[str, str]] = []
        text = _Parts(parts)
        if data is None:
            text.append("GPUs: reading…", style="dim")
            return Content.assemble(*parts)
        gpus = data.get("gpus") or []
        state = data.get("state") or ("no_gpu" if data.get("cpu_mode") and not gpus else "ok")
        message = data.get("message") or ""
        text.append("GPUs", style="bold")
        if data.get("driver_version"):
            text.append(f" · driver {data['driver_version']}", style="dim")
        if gpus:
            busy = sum(1 for g in gpus if g.get("run") or g.get("processes"))
            text.append(f" · {busy} of {len(gpus)} in use", style="dim")
        if self.stale:
            text.append(" · not updated (no connection)", style="bold $warning")
        if state == "no_gpu" or not gpus:
            text.append("\n")
            text.append(
                message or "No NVIDIA GPU or driver on this machine: runs train on the CPU.",
                style="$text-muted",
            )
            return Content.assemble(*parts)
        if state == "error":
            text.append("\n")
            text.append(message or "the GPUs could not be read", style="$error")
        for gpu in gpus:
            text.append("\n")
            self._gpu_line(text, gpu, width)
        return Content.assemble(*parts)

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
