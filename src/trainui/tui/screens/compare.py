"""Runs compared: their curves overlaid per metric (a line per run, named in the legend), a
table of each run's final values, and a table of the manifest fields that differ between them.

Everything comes through the client: the metrics as in a run's own metrics view, and each run's
manifest (secrets removed by the service) as the manifest screen reads it.
"""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from trainui.client import ClientError
from trainui.tui.keymap import bindings
from trainui.tui.runs import SYMBOLS, format_value, is_active
from trainui.tui.screens.base import TrainuiScreen
from trainui.tui.widgets.bars import ConnectionBanner, TitleBar
from trainui.tui.widgets.footer import Footer
from trainui.tui.widgets.metric_chart import palette, rich_color
from trainui.tui.widgets.metrics_view import MetricsView

CELL = 32  # a manifest value's cells in the table (the rest is cut; shown whole below it)
CONTEXT = 10  # characters alike shown before where a row's values differ
MANIFESTS_AT_ONCE = 8  # requests in flight at once (each more in flight: a connection more)


def labels(runs: list[dict]) -> dict[str, str]:
    """A name for each run in the legends: its name; runs that share it (an experiment's) by
    their parameters' values where those tell them apart (``0.3 · 128``, as the experiment's
    screen names them), else by the end of their ID first (a narrow legend cuts the end)."""
    from trainui.tui.experiments import parameter_values

    names = [run.get("name") or run["model_id"] for run in runs]
    values = [parameter_values(run.get("parameters")) for run in runs]
    out = {}
    for run, name, value in zip(runs, names, values, strict=True):
        if names.count(name) > 1:
            unique = value and values.count(value) == 1
            name = value if unique else f"{run['model_id'][-4:]}·{name}"
        out[run["model_id"]] = name
    return out


NAME_CELLS = 30  # a run's name in the tables: a long one hid the values beside it


class CompareTable(DataTable):
    """A table of the compared runs: the run list's keys move in it too (j, k, g, G...)."""

    BINDINGS = [*DataTable.BINDINGS, *bindings("list")]

    def action_cursor_top(self) -> None:
        self.move_cursor(row=0)

    def action_cursor_bottom(self) -> None:
        self.move_cursor(row=max(0, self.row_count - 1))


def _named(text: Text) -> Text:
    """A run's name cut to ``NAME_CELLS``, marked where cut."""
    text.truncate(NAME_CELLS, overflow="ellipsis")
    return text


class CompareScreen(TrainuiScreen):
    BINDINGS = bindings("compare")
    AUTO_FOCUS = "#metrics"  # the curves' keys in the footer from the start (not drawn twice)
    PALETTE = (("compare", None), ("metrics", "MetricsView"))
    DEFAULT_CSS = """
    CompareScreen TabbedContent { height: 1fr; }
    CompareScreen TabPane { padding: 0; height: 1fr; }
    CompareScreen DataTable { height: 1fr; }
    /* the fields that differ, then the selected one's values right under them */
    CompareScreen #manifest-table { height: auto; max-height: 60%; }
    CompareScreen .compare-note { height: auto; color: $text-muted; padding: 0 1; }
    CompareScreen #manifest-detail {
        height: auto; max-height: 50%; padding: 0 1; background: $boost; overflow-y: auto;
    }
    CompareScreen #manifest-detail.-empty { display: none; }
    """

    def __init__(self, model_ids: list[str]) -> None:
        super().__init__()
        self.model_ids = model_ids
        self.manifests: dict[str, dict] | None = None
        self.manifest_problem = ""
        self.differing: list[tuple[str, list[str]]] = []

    def _runs(self) -> list[dict]:
        table = self.app.table
        return [table.get(m) or {"model_id": m} for m in self.model_ids]

    def compose(self) -> ComposeResult:
        self.names = labels(self._runs())
        count = len(self.model_ids)
        yield TitleBar(f"compare  {count} run{'s' if count != 1 else ''}", id="title")
        yield ConnectionBanner()
        with TabbedContent(initial="curves"):
            with TabPane("Curves", id="curves"):
                yield MetricsView(
                    self.app.client,
                    [(m, self.names[m]) for m in self.model_ids],
                    live=self._live,
                    id="metrics",
                )
            with TabPane("Final values", id="values"):
                yield CompareTable(id="values-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Manifests", id="manifest"):
                yield Static("reading the manifests…", classes="compare-note", id="manifest-note")
                yield CompareTable(id="manifest-table", cursor_type="row", zebra_stripes=True)
                # the selected field's values whole, wrapped: a cell shows a part of each
                yield Static("", id="manifest-detail", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(MetricsView).focus()
        self._show_values()
        self._read_manifests()

    def _live(self) -> bool:
        return any(is_active(run) for run in self._runs() if "status" in run)

    # --- from the app ---------------------------------------------------------------------

    def metrics_changed(self, model_id: str, latest: dict) -> None:
        if model_id in self.model_ids:
            self.query_one(MetricsView).metrics_event(model_id, latest)

    def runs_changed(self, changed: set[str] | None = None) -> None:
        if not self.is_mounted:
            return
        if changed is None or changed & set(self.model_ids):
            self._show_values()

    # --- the tables -----------------------------------------------------------------------

    def on_metrics_view_read(self, event: MetricsView.Read) -> None:
        self._show_values()

    def _show_values(self) -> None:
        """A row a run: its mark (the colour of its line), state and the last value of each
        metric shown in the curves."""
        view = self.query_one(MetricsView)
        table = self.query_one("#values-table", DataTable)
        metrics = view.shown_names()
        styles, _axes = palette(self.app)
        table.clear(columns=True)
        # names and values are the user's text, never Rich markup (a metric `[/]`, a command
        # `pip install .[dev]`): DataTable reads a str as markup, a Text as it is
        table.add_columns("Run", "State", *map(Text, metrics))
        for model_id, run in zip(self.model_ids, self._runs(), strict=True):
            label = self.names[model_id]
            chart = view.chart(metrics[0]) if metrics else None
            color = styles[chart.color_of(label) % len(styles)] if chart else ""
            mark = _named(Text.assemble(("● ", rich_color(color)), label))
            status = run.get("status", "")
            cells = [mark, f"{SYMBOLS.get(status, '?')} {status}" if status else "-"]
            summary = view.summaries.get(model_id, {})
            for metric in metrics:
                value = (summary.get(metric) or {}).get("last")
                cells.append(Text(format_value(value), justify="right"))
            table.add_row(*cells, key=model_id)

    @work(group="compare-manifests")
    async def _read_manifests(self) -> None:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 5 to 10 times faster

        limit = asyncio.Semaphore(MANIFESTS_AT_ONCE)

        async def one(model_id: str):
            try:
                async with limit:  # a few connections, kept alive, not one a run
                    text = await self.app.client.manifest(model_id)
                return yaml.load(text, Loader=loader) or {}
            except ClientError as error:
                return error

        texts = await asyncio.gather(*(one(m) for m in self.model_ids))
        manifests, problems = {}, []
        for model_id, manifest in zip(self.model_ids, texts, strict=True):
            if isinstance(manifest, ClientError):
                problems.append(f"{model_id}: {manifest}")
            elif isinstance(manifest, dict):
                manifests[model_id] = manifest
        self.manifests = manifests
        self.manifest_problem = "; ".join(problems)
        self._show_manifests()

    def _show_manifests(self) -> None:
        from trainui.tui.metrics import differences

        # an experiment's runs share one manifest: what sets them apart is their parameters,
        # which each one's command gets as variables (SPEC §9)
        runs = dict(zip(self.model_ids, self._runs(), strict=True))
        compared = {
            m: {**manifest, "parameters": runs[m].get("parameters") or {}}
            if runs.get(m, {}).get("parameters")
            else manifest
            for m, manifest in (self.manifests or {}).items()
        }
        self.differing = differences(compared)
        ids = [m for m in self.model_ids if m in (self.manifests or {})]
        table = self.query_one("#manifest-table", DataTable)
        table.clear(columns=True)
        table.add_columns("Field", *(_named(Text(self.names[m])) for m in ids))
        for field, values in self.differing:
            start = _first_difference(values)
            table.add_row(Text(field), *(Text(_cut(v, start)) for v in values))
        self._show_detail(0)
        if len(ids) < 2:
            note = "One manifest: nothing to compare it with."
        elif not self.differing:
            note = "The manifests are the same."
        else:
            count = len(self.differing)
            note = f"{count} field{'s differ' if count != 1 else ' differs'} between the runs."
        if self.manifest_problem:
            note += f" Not read: {self.manifest_problem}"
        self.query_one("#manifest-note", Static).update(Text(note))

    def _show_detail(self, row: int) -> None:
        """The field of row ``row``, each run's value whole under the table."""
        detail = self.query_one("#manifest-detail", Static)
        if not 0 <= row < len(self.differing):
            detail.update("")
            detail.add_class("-empty")
            return
        field, values = self.differing[row]
        ids = [m for m in self.model_ids if m in (self.manifests or {})]
        lines = [field, *(f"{self.names[m]}: {v}" for m, v in zip(ids, values, strict=True))]
        detail.update("\n".join(lines))
        detail.remove_class("-empty")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "manifest-table":
            self._show_detail(event.cursor_row)

    # --- keys -----------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = tab
        target = {"curves": "#metrics", "values": "#values-table", "manifest": "#manifest-table"}
        self.query_one(target[tab]).focus()

    def action_back(self) -> None:
        self.app.pop_screen()


def _first_difference(values: list[str]) -> int:
    """Where a row's cells start: a few characters before the values first differ, when that
    is past what a cell shows (two commands alike for their first 40 characters looked the
    same, cut after 32)."""
    texts = [v.replace("\n", " ⏎ ") for v in values]
    if all(len(t) <= CELL for t in texts):
        return 0
    common = 0
    for chars in zip(*texts, strict=False):  # the shortest ends it
        if len(set(chars)) > 1:
            break
        common += 1
    if common <= CELL - CONTEXT:
        return 0
    want = common - CONTEXT  # from a word's start where one is near: "…--epochs 5", not "…-5"
    space = texts[0].rfind(" ", max(0, want - CONTEXT), want + 1)
    return space if space > 0 else want


def _cut(value: str, start: int = 0) -> str:
    """The value in at most CELL characters, from ``start`` ("…" says what is left out)."""
    value = value.replace("\n", " ⏎ ")
    if start > 0:
        value = "…" + value[start + 1 :]
    return value if len(value) <= CELL else value[: CELL - 1] + "…"
