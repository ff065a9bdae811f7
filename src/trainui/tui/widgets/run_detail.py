"""A run's fields: every field of ``trainui show`` (the API object never holds a secret), the
pending reason, and the error code with its meaning for a failed run."""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from textual.content import Content
from textual.widgets import Static

from trainui.core.runs import ERROR_CODES, last_attempt, resource_placement
from trainui.tui.experiments import parameters_summary
from trainui.tui.runs import (
    SYMBOLS,
    format_bytes,
    format_duration,
    local_time,
    ran_seconds,
    waited_seconds,
)

STATE_STYLES = {
    "pending": "$text-muted",
    "restarting": "bold $warning",
    "downloading": "$secondary",
    "running": "bold $accent",
    "storing": "$secondary",
    "completed": "$success",
    "failed": "bold $error",
    "halted": "$warning",
}
LABEL = 13
WRAPPED = ("Status", "Description")  # wide fields of words, wrapped rather than cut
WRAPPED_LINES = 3


def where(place: dict | None) -> str:
    place = place or {}
    text = f"{place.get('type')} bucket '{place.get('bucket')}'"
    if place.get("endpoint"):
        text += f" at {place['endpoint']}"
    if place.get("prefix"):
        text += f", under {place['prefix']}"
    return text


def fields(run: dict, cpu_mode: bool | None = None) -> list[tuple[str, str, str, bool]]:
    """(label, value, style, wide) for every field ``trainui show`` prints, in its order;
    ``cpu_mode``: the service runs on the CPU (says where a pending run will run)."""
    framework = run.get("framework") or {}
    status = run.get("status", "")
    progress = run.get("progress") or {}
    exit_code = run.get("exit_code")
    rows = [
        ("ModelId", run.get("model_id", ""), "bold", False),
        ("State", f"{SYMBOLS.get(status, '?')} {status}", STATE_STYLES.get(status, ""), False),
        ("Name", run.get("name") or "-", "", False),
        ("Owner", run.get("owner") or "-", "", False),
        (
            "Framework",
            f"{framework.get('name', '')} {framework.get('version', '')}".strip(),
            "",
            False,
        ),
        ("Resource", resource_placement(run, cpu_mode), "", False),
        ("Submitted at", local_time(run.get("submitted_at")), "", False),
        ("GPUs", ",".join(str(i) for i in run.get("gpu_ids") or []) or "-", "", False),
        ("Started at", local_time(run.get("started_at")), "", False),
        ("Finished at", local_time(run.get("finished_at")), "", False),
        ("Waited", format_duration(waited_seconds(run)), "", False),
        ("Duration", format_duration(ran_seconds(run)), "", False),
        (
            "Exit code",
            "-" if exit_code is None else str(exit_code),
            "$error" if exit_code not in (None, 0) else "",
            False,
        ),
        (  # a line of its own when there is one: the code's meaning is not cut
            "Error code",
            _error(run.get("error_code")),
            "$error" if run.get("error_code") else "",
            bool(run.get("error_code")),
        ),
        ("Status", run.get("status_message") or "-", STATE_STYLES.get(status, ""), True),
        ("Description", run.get("description") or "-", "", True),
        ("Data", where(run.get("data")), "", True),
        ("Results", where(run.get("results")), "", True),
        ("url", run.get("url") or "-", "dim", True),
    ]
    if run.get("max_restarts") or run.get("attempts"):  # SPEC §11: the attempts, how each ended
        done = ", ".join(
            f"{a['attempt']} {a['status']}"
            + (f" (exit {a['exit_code']})" if a.get("exit_code") is not None else "")
            for a in run.get("attempts") or ()
        )
        attempt = run.get("attempt", 1)
        text = f"{attempt} of {last_attempt(attempt, run['max_restarts'], run.get('attempts'))}"
        rows.append(("Attempt", f"{text}; ended: {done}" if done else text, "", True))
    if run.get("experiment_id"):  # a run of an experiment (SPEC §9): which, and its values
        rows.append(("Experiment", run["experiment_id"], "", True))
        rows.append(("Parameters", parameters_summary(run.get("parameters")) or "-", "", True))
    if progress.get("phase"):
        rows.append(
            (
                "Progress",
                f"{progress['phase']}: {progress.get('objects_done', 0)}/"
                f"{progress.get('objects_total', 0)} objects, "
                f"{format_bytes(progress.get('bytes_done', 0))} of "
                f"{format_bytes(progress.get('bytes_total', 0))}",
                "",
                True,
            )
        )
    return rows


def _error(code: str | None) -> str:
    if not code:
        return "-"
    meaning = ERROR_CODES.get(code)
    return f"{code} ({meaning})" if meaning else code


def headline(run: dict) -> tuple[str, str] | None:
    """What needs saying first: why a run waits, or why it failed."""
    status = run.get("status")
    message = run.get("status_message") or ""
    if status == "failed":  # the code, then the service's words (its meaning is in the fields)
        code = run.get("error_code") or ""
        head = f"✗ {code}" if code else "✗"
        if message:
            return f"{head}: {message}", "bold $error"
        meaning = ERROR_CODES.get(code, "")
        return (f"{head} {meaning}" if meaning else head), "bold $error"
    if status == "pending":
        return f"◌ {message or 'waiting for a free GPU'}", "$warning"
    if status == "halted":
        return f"■ {message or 'halted'}", "$warning"
    if status == "restarting":
        return f"↻ {message}", "bold $warning"
    return None


class RunDetail(Static):
    """The fields of one run, two short ones a line where the width allows."""

    DEFAULT_CSS = """
    RunDetail { height: auto; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, run: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_data = run
        self._drawn: Content | None = None
        self._lines = -1

    def show_run(self, run: dict) -> None:
        self.run_data = run
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if not self.size.width and self._drawn is not None:
            return  # hidden: nothing to draw, and its last drawing holds for when it shows
        if self.run_data is None:
            self.update("")
            return
        width = self.size.width - 2 if self.size.width else 78
        cpu_mode = getattr(self.app, "cpu_mode", None)
        content = render_fields(self.run_data, max(40, width), cpu_mode)
        if content != self._drawn:
            lines = content.plain.count("\n")
            self.update(content, layout=lines != self._lines)  # a layout when its height changes
            self._drawn, self._lines = content, lines


def render_fields(run: dict, width: int, cpu_mode: bool | None = None) -> Content:
    parts: list[tuple[str, str] | str] = []
    first = headline(run)
    if first:
        parts.append((first[0] + "\n", first[1]))
    half = (width - 2) // 2
    every = fields(run, cpu_mode)
    short = [f for f in every if not f[3]]
    wide = [f for f in every if f[3] and not (f[0] == "Status" and first)]
    columns = 2 if half >= LABEL + 20 else 1
    for i in range(0, len(short), columns):
        for j, (label, value, style, _wide) in enumerate(short[i : i + columns]):
            parts.append((f"{label:<{LABEL}}", "$text-muted"))
            room = (half if columns == 2 else width) - LABEL
            if j + 1 < columns:
                parts.append((_fit(value, room) + "  ", style))
            else:
                parts.append((value, style))
        parts.append("\n")
    for label, value, style, _wide in wide:
        parts.append((f"{label:<{LABEL}}", "$text-muted"))
        if label in WRAPPED:  # words: read whole, up to a few lines (the rest: m, the manifest)
            value = ("\n" + " " * LABEL).join(wrap_cells(value, width - LABEL, WRAPPED_LINES))
        parts.append((value, style))
        parts.append("\n")
    content = Content.assemble(*parts)
    return content.rstrip()


def wrap_cells(text: str, width: int, most: int) -> list[str]:
    """``text`` in lines of at most ``width`` cells (Textual's wrapping: between words, a word
    longer than a line folded, its own line ends kept); at most ``most`` lines, the last ending
    with "…" where some was left out."""
    width = max(1, width)
    lines = [line.plain.rstrip() for line in Content(text).wrap(width)] or [""]
    if len(lines) > most:
        last = lines[most - 1]
        lines = [*lines[: most - 1], f"{last} …" if cell_len(last) + 2 <= width else ""]
        if not lines[-1]:
            lines[-1] = set_cell_size(last, width - 1).rstrip() + "…"
    return lines


def _fit(text: str, width: int) -> str:
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)
