"""Metrics in the TUI: a chart alone (pilot), then the run screen's metrics view, the run
list's metric columns and the compare screen, driven by keys against a real service whose
runs write ``$LOG_DIR/metrics.jsonl``."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import numpy as np
import pytest
from rich.color import ColorType
from test_tui import SIZE, History, loaded, make_app, text, until
from textual.app import App, ComposeResult

from trainui.tui.config import load_config, load_themes
from trainui.tui.metrics import Series, format_step
from trainui.tui.runs import format_value
from trainui.tui.widgets.metric_chart import ChartPlot, MetricChart

# --- a chart alone ----------------------------------------------------------------------------


class ChartApp(App):
    def __init__(self, theme: str = "trainui") -> None:
        super().__init__()
        for theme_ in load_themes()[0]:
            self.register_theme(theme_)
        self.theme = theme

    def compose(self) -> ComposeResult:
        yield MetricChart("loss")


def plot_lines(app) -> list[str]:
    plot = app.query_one(ChartPlot)
    return [line.plain for line in plot.render().split("\n")]


async def test_a_chart_of_100000_points_keeps_its_spike_and_says_last_min_max():
    steps = np.arange(100_000, dtype=float)
    values = 1.0 / (1.0 + steps / 5000.0)
    values[60_000] = 3.0  # one spike among 100,000 points
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        chart = app.query_one(MetricChart)
        chart.set_series("loss", Series(steps, values))
        await pilot.pause(0.1)
        screen = text(app)
        assert "last 0.04762" in screen and "min  0.04762" in screen and "max  3" in screen
        assert "step 99,999" in screen
        top = plot_lines(app)[1]  # the frame's first row holds the highest value
        assert top.strip().startswith("3.00┤") and any(0x2800 < ord(c) <= 0x28FF for c in top)
        chart.log_scale = True
        chart.smoothing = 0.9
        await pilot.pause(0.1)
        assert "loss  log · smoothed 0.9" in text(app)
        # the smoothed line, and faint behind it the points themselves, spike and all (as
        # TensorBoard draws them)
        plot = app.query_one(ChartPlot).render()
        drawn = {str(span.style) for span in plot.spans if ord(plot.plain[span.start]) > 0x2800}
        assert len(drawn) == 2 and sum("dim" in style.split() for style in drawn) == 1, drawn
        assert plot_lines(app)[1].strip().startswith("3┤")
        chart.log_scale = False
        noisy = 0.5 + np.random.default_rng(7).random(len(steps))  # raw and smoothed apart
        chart.set_series("other", Series(steps, noisy))
        await pilot.pause(0.1)
        plot = app.query_one(ChartPlot).render()
        drawn = {str(span.style) for span in plot.spans if ord(plot.plain[span.start]) > 0x2800}
        assert sum("dim" in style.split() for style in drawn) == 2, drawn


async def test_legends_and_title_lines_show_numbers_whole_or_not_at_all():
    # a number cut in the middle reads as another one (`0.` for `0.1`, `-1.23e-` for a value)
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        chart = app.query_one(MetricChart)
        for i in range(6):  # a line a series: the name gives way to the value
            chart.set_series(f"a-run-with-a-long-name-{i}", Series([0, 1], [1.0, -1.23456e-05]))
        await pilot.pause(0.1)
        legend = [line for line in plot_lines(app) if "●" in line]
        assert len(legend) == 6 and all(line.rstrip().endswith(" -1.23e-05") for line in legend)
    app = ChartApp()
    app.CSS = "MetricChart { width: 40; }"  # narrow: the numbers go on the title line
    async with app.run_test(size=SIZE) as pilot:
        chart = app.query_one(MetricChart)
        chart.metric = "val/cross_entropy"
        chart.set_series("val/cross_entropy", Series([0, 1, 2], [0.5, 0.04762, 0.1]))
        await pilot.pause(0.1)
        title = str(chart.query_one(".chart-title").render())
        assert title == "val/cross_entropy  last 0.1", title


async def test_a_legend_lists_its_series_in_the_order_given_whenever_they_come():
    # an experiment's best runs, ranked: their points come in whatever order the reads end
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        chart = app.query_one(MetricChart)
        chart.order = ["first", "second", "third"]
        for label in ("third", "other", "first", "second"):
            chart.set_series(label, Series(np.arange(3.0), np.arange(3.0)))
        await pilot.pause(0.1)

        def legend() -> list[str]:
            return [line.split("●")[1].split()[0] for line in plot_lines(app) if "●" in line]

        assert legend() == ["first", "second", "third", "other"]
        colours = dict(chart._colors)
        chart.set_order(["second", "third", "first"])  # ranked again
        await pilot.pause(0.1)
        assert legend() == ["second", "third", "first", "other"]
        assert chart._colors == colours  # each keeps its colour


async def test_a_log_scale_says_how_many_values_it_cannot_show():
    app = ChartApp()
    async with app.run_test(size=SIZE) as pilot:
        chart = app.query_one(MetricChart)
        chart.set_series("loss", Series(np.arange(6), np.array([5.0, -1, 0, 2, 3, 4])))
        chart.log_scale = True
        await pilot.pause(0.1)
        assert "loss  log (2 ≤ 0 not shown)" in text(app)
        chart.set_series("loss", Series([0, 1], [0.0, -2.0]))
        await pilot.pause(0.1)
        assert "log scale: no value above 0" in text(app)


async def test_in_an_ansi_theme_the_curves_use_the_terminals_own_colours():
    app = ChartApp("ansi")
    async with app.run_test(size=SIZE) as pilot:
        chart = app.query_one(MetricChart)
        chart.set_series("a", Series([0, 1, 2], [1.0, 2.0, 1.5]))
        chart.set_series("b", Series([0, 1, 2], [2.0, 1.0, 0.5]))
        await pilot.pause(0.1)
        plot = app.query_one(ChartPlot)
        rendered = plot.draw_plot(*plot.size)
        colors = {span.style.color for span in rendered.spans if span.style.color is not None}
        assert colors and all(c.type is ColorType.STANDARD for c in colors)
        assert {c.number for c in colors} >= {6, 3}  # cyan and yellow: the first two lines


# --- runs that write metrics ------------------------------------------------------------------

TRAIN = """\
import json, os, sys, time
lr, steps = float(sys.argv[1]), int(sys.argv[2])
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
hold = int(sys.argv[4]) if len(sys.argv) > 4 else -1  # this many points, then wait for "go"
with open(os.path.join(os.environ["LOG_DIR"], "metrics.jsonl"), "a") as out:
    for step in range(steps):
        if step == hold:  # at most two minutes: a test that failed meanwhile leaves no run behind
            waited = 0
            while not os.path.exists(os.path.join(os.environ["DATA_DIR"], "go")) and waited < 6000:
                time.sleep(0.02)
                waited += 1
        loss = 2.0 / (1.0 + lr * step)
        out.write(json.dumps({"step": step, "loss": round(loss, 6),
                              "accuracy": round(1.0 - loss / 2.5, 6)}) + "\\n")
        out.flush()
        if pause:
            time.sleep(pause)
print("trained", lr, flush=True)
"""


def write_trainer(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text(TRAIN)
    return folder


@contextlib.contextmanager
def metric_runs(root: Path):
    """A home with two completed runs that wrote 400 points of loss and accuracy each."""
    h = History(root / "home")
    (h.path / "buckets" / "data").mkdir(parents=True)
    model = write_trainer(root / "model")
    try:
        h.submit("lr-fast", "python3 train.py 0.1 200", model)
        h.submit("lr-slow", "python3 train.py 0.01 200", model)
        for name in ("lr-fast", "lr-slow"):
            h.wait(h.ids[name], "completed")
        yield h
    finally:
        h.stop()


_SHARED: dict[str, History] = {}


def shared_metric_runs(tmp_path_factory, config) -> History:
    if "runs" not in _SHARED:
        runs = metric_runs(tmp_path_factory.mktemp("tui-metrics"))
        _SHARED["runs"] = runs.__enter__()
        config.add_cleanup(lambda: runs.__exit__(None, None, None))
    return _SHARED["runs"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    return shared_metric_runs(tmp_path_factory, request.config)


def final(lr: float, steps: int = 200) -> dict[str, float]:
    loss = round(2.0 / (1.0 + lr * (steps - 1)), 6)
    return {"loss": loss, "accuracy": round(1.0 - loss / 2.5, 6)}


# --- the run screen's metrics view ------------------------------------------------------------


def counting_metrics_calls(app) -> list[tuple[str, list[str] | None]]:
    """The real client's metrics calls from now on, each (method, the metrics it names)."""
    asked = []
    for method in ("metrics", "metric_points"):
        real = getattr(app.client, method)

        def counted(*args, _real=real, _method=method, **kwargs):
            asked.append((_method, kwargs.get("names")))
            return _real(*args, **kwargs)

        setattr(app.client, method, counted)
    return asked


async def metrics_of_lr_fast(app, pilot):
    """The run screen of the trained run lr-fast, its log, then `v`: its metrics view, once
    its two charts are drawn."""
    await until(pilot, lambda: "trained 0.1" in text(app), what="the log")
    await pilot.press("v")
    view = app.screen.query_one("MetricsView")
    await until(pilot, lambda: view.reads and len(view.charts()) == 2, what="the charts")
    await pilot.pause(0.2)
    return view


async def test_the_metrics_view_draws_a_chart_per_metric_with_its_keys(trained):
    app = make_app(trained, open_run=trained.ids["lr-fast"])
    async with app.run_test(size=SIZE) as pilot:
        view = await metrics_of_lr_fast(app, pilot)
        screen = text(app)
        expected = final(0.1)
        assert "2 metrics" in screen and "ended" in screen
        assert "accuracy" in screen and "loss" in screen
        assert f"last {format_value(expected['accuracy'])}" in screen
        assert "step 199" in screen
        assert "trained 0.1" not in screen  # the log is hidden
        await pilot.press("l", "s")
        await pilot.pause(0.2)
        assert "log scale · smoothed 0.6" in text(app)
        await pilot.press("s", "s", "s")  # 0.9, 0.99, off
        await pilot.pause(0.1)
        assert "smoothed" not in text(app)
        await pilot.press("p")  # untick accuracy: only loss stays
        await until(pilot, lambda: "Charts" in text(app), what="the picker")
        await pilot.press("space", "enter")
        await until(pilot, lambda: [c.metric for c in view.charts()] == ["loss"])
        await pilot.pause(0.1)
        assert "1 of 2 metrics shown (p picks)" in text(app)
        await pilot.press("question_mark")
        await until(pilot, lambda: "metrics.smooth" in text(app), what="the help")
        await pilot.press("escape", "v")
        await until(pilot, lambda: "trained 0.1" in text(app), what="the log again")


async def test_unticking_the_zoomed_chart_zooms_the_first_one_left(trained):
    # the view was blank (every chart hidden by the zoom), and j then skipped a chart
    app = make_app(trained, open_run=trained.ids["lr-fast"])
    async with app.run_test(size=SIZE) as pilot:
        view = await metrics_of_lr_fast(app, pilot)
        assert [c.metric for c in view.charts()] == ["accuracy", "loss"]
        await pilot.press("z")
        await until(pilot, lambda: view.has_class("-zoomed"))
        await pilot.press("p")  # untick accuracy, the zoomed one
        await until(pilot, lambda: "Charts" in text(app), what="the picker")
        await pilot.press("space", "enter")
        await until(pilot, lambda: [c.metric for c in view.charts()] == ["loss"])
        (chart,) = view.charts()
        await until(pilot, lambda: chart.has_class("-zoom") and chart.region.height > 10)
        await until(pilot, lambda: "last " in text(app), what="the loss chart drawn")
        assert chart.has_focus


async def test_one_chart_alone_has_the_whole_view_at_120x40(trained):
    app = make_app(trained, open_run=trained.ids["lr-fast"])
    async with app.run_test(size=(120, 40)) as pilot:
        view = await metrics_of_lr_fast(app, pilot)
        first, _second = view.charts()
        assert first.size.width < view.size.width / 2 + 2  # two charts: two a row
        await pilot.press("p")  # untick accuracy: loss alone
        await until(pilot, lambda: "Charts" in text(app), what="the picker")
        await pilot.press("space", "enter")
        await until(pilot, lambda: [c.metric for c in view.charts()] == ["loss"])
        (chart,) = view.charts()
        await until(pilot, lambda: chart.size.width > view.size.width * 0.9, what="full width")
        assert chart.size.height >= view.size.height - 3  # and its height


async def test_a_cursor_on_a_chart_says_the_value_at_its_step(trained):
    """TensorBoard's hover, by keys: right puts a cursor on the selected chart, left and right
    move it from point to point, and the legend says the value there; escape takes it away."""
    app = make_app(trained, open_run=trained.ids["lr-fast"])
    async with app.run_test(size=SIZE) as pilot:
        view = await metrics_of_lr_fast(app, pilot)
        chart = view.charts()[view._current()]
        (series,) = chart.series.values()
        await pilot.press("right")
        await until(pilot, lambda: f"{chart.metric}  at step 199" in text(app))
        assert f"value {format_value(series.last)}" in text(app)
        await pilot.press("left")
        step = chart.cursor
        frame = chart.query_one(ChartPlot).frame
        per_column = 199 / (frame["columns"] - 1)  # 200 points in fewer columns
        assert abs(step - (199 - per_column)) <= 1 and step in series.steps, (step, frame)
        await until(pilot, lambda: f"at step {format_step(step)}" in text(app))
        assert f"value {format_value(float(series.values[int(step)]))}" in text(app)
        await pilot.press("shift+left")
        assert chart.cursor < 190
        drawn = [line.plain for line in chart.query_one(ChartPlot).render().split("\n")]
        plot = [line for line in drawn if "┤" in line or line.lstrip().startswith("│")]
        rules = {i for line in plot for i, c in enumerate(line[: line.rindex("│")]) if c == "│"}
        assert len(rules) == 2, plot  # the frame's left side, and the cursor's rule
        await pilot.press("s")  # smoothed: the smoothed value too, as drawn
        await until(pilot, lambda: "smooth " in text(app))
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert chart.cursor is None and "at step" not in text(app)
        assert "value " not in text(app) and "last " in text(app)
        assert view.is_attached and view.display  # escape took the cursor, nothing else
        await pilot.press("escape")
        await until(pilot, lambda: not view.is_attached or not view.display, what="back")


async def test_a_run_training_draws_its_points_as_they_come(trained, tmp_path):
    model = write_trainer(tmp_path / "model")
    # 30 points, then the trainer waits (for a file in its data folder) until they are drawn
    model_id = trained.submit("live", "python3 train.py 0.05 60 0.02 30", model)
    app = make_app(trained, open_run=model_id)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        view = app.screen.query_one("MetricsView")
        await until(pilot, lambda: view.charts(), what="the first points")

        def points() -> int:
            series = view.series.get((model_id, "loss"))
            return len(series) if series is not None else 0

        await until(pilot, lambda: points() == 30, what="the first 30 points")
        # drawn while it trains, not only at its end
        await until(pilot, lambda: "step 29" in text(app), what="the first 30 drawn")
        (trained.path / "runs" / model_id / "work" / "data" / "go").touch()
        await until(pilot, lambda: points() == 60, what="the last 30 points")
        series = view.series[(model_id, "loss")]
        assert series.steps.tolist() == list(range(60))  # no point lost or repeated
        await until(pilot, lambda: "step 59" in text(app), what="the last step")
    trained.wait(model_id, "completed")


MANY = """\
import json, os
with open(os.path.join(os.environ["LOG_DIR"], "metrics.jsonl"), "a") as out:
    for step in range(50):
        out.write(json.dumps({"step": step, **{f"m{k}": k + 1.0 / (1 + step) for k in range(8)}}))
        out.write("\\n")
"""


async def test_eight_charts_read_in_one_request_made_as_they_come_into_view(trained, tmp_path):
    model = tmp_path / "many"
    model.mkdir()
    (model / "many.py").write_text(MANY)
    model_id = trained.submit("many", "python3 many.py", model)
    trained.wait(model_id, "completed")
    app = make_app(trained, open_run=model_id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.table.get(model_id), what="the run")
        asked = counting_metrics_calls(app)
        await pilot.press("v")
        screen = app.screen
        view = screen.query_one("MetricsView")
        await until(pilot, lambda: view.reads and len(view.charts()) == 8, what="the charts")
        await pilot.pause(0.2)
        # the summary and the 8 display series in one request (the names from the run's
        # record); a read again (an event) asks for the summary alone: nothing new to draw
        assert asked[0] == ("metrics", [f"m{k}" for k in range(8)])
        assert [call for call in asked[1:] if call != ("metrics", None)] == []
        assert all(len(view.series[(model_id, f"m{k}")]) == 50 for k in range(8))
        charts = view.charts()
        built = [chart.built for chart in charts]
        assert built[:2] == [True, True] and not any(built[3:])  # 80x24: two charts on screen
        assert "m0" in text(app) and "last 0.02" in text(app)
        await pilot.press("G")  # the last chart: made as it comes into view, with its points
        await until(pilot, lambda: charts[-1].built and "m7" in text(app), what="the last one")
        await pilot.pause(0.1)
        assert "last 7.02" in text(app) and "max  8" in text(app) and "step 49" in text(app)
        assert not charts[3].built  # passed over: still not made
        await pilot.press("k", "k", "k", "z")  # m4 alone, as tall as the view: made then
        await until(pilot, lambda: charts[4].built and "last 4.02" in text(app), what="m4")
        assert "m5" not in text(app) and not charts[3].built
        await pilot.press("escape", "g")  # every chart again (not the run list), the first
        await until(pilot, lambda: "m0" in text(app), what="the first again")
        assert app.screen is screen and not view.has_class("-zoomed")
        assert [chart.built for chart in charts].count(False) >= 1  # m2 or m3 never shown
        await pilot.press("escape")  # nothing zoomed: back to the run list
        await until(pilot, lambda: app.screen is not screen, what="the run list")


async def test_an_ended_runs_curves_are_read_ahead_and_v_asks_nothing_more(trained):
    app = make_app(trained, open_run=trained.ids["lr-fast"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(
            pilot, lambda: screen._ahead is not None and screen._ahead.done(), what="the read"
        )
        assert set(screen._ahead.result()["series"]) == {"accuracy", "loss"}
        asked = counting_metrics_calls(app)
        await pilot.press("v")
        view = screen.query_one("MetricsView")
        await until(pilot, lambda: view.reads and len(view.charts()) == 2, what="the charts")
        assert asked == []  # its first read was the one made ahead
        assert screen._ahead is None  # taken: a later view reads afresh
        assert len(view.series[(trained.ids["lr-fast"], "loss")]) == 200
        said = f"last {format_value(final(0.1)['loss'])}"
        await until(pilot, lambda: said in text(app), what="the last value in the legend")


async def test_v_pressed_while_the_read_ahead_is_on_its_way_waits_for_it(trained):
    # a busy machine: the read ahead still on its way when v is pressed; the view takes it
    # when it comes rather than asking the service the same again
    app = make_app(trained, open_run=trained.ids["lr-fast"])
    asked = []
    real = app.client.metrics

    async def slow(*args, **kwargs):
        asked.append(kwargs.get("names"))
        await asyncio.sleep(0.5)
        return await real(*args, **kwargs)

    app.client.metrics = slow
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen._ahead is not None, what="the read ahead asked")
        assert not screen._ahead.done()
        await pilot.press("v")
        view = screen.query_one("MetricsView")
        await until(pilot, lambda: view.reads and len(view.charts()) == 2, what="the charts")
        # one request with the series, made ahead (a read later, on an event, may ask for
        # the summary alone)
        assert asked[0] == ["accuracy", "loss"]
        assert all(names is None for names in asked[1:]), asked
        assert len(view.series[(trained.ids["lr-fast"], "loss")]) == 200


# --- the run list's columns and the compare screen --------------------------------------------


async def test_metric_columns_are_picked_shown_and_remembered(trained, tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state")}
    app = make_app(trained, config=load_config(env))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await until(pilot, lambda: all(r.get("metrics") for r in app.table.runs.values()))
        await pilot.press("M")
        await until(pilot, lambda: "Metric columns" in text(app), what="the picker")
        await pilot.press("down", "space", "enter")  # accuracy, loss: tick loss
        await pilot.pause(0.2)
        rows = {line.split()[2]: line for line in text(app).splitlines() if "lr-" in line}
        header = next(line for line in text(app).splitlines() if "State" in line)
        assert "loss" in header
        assert format_value(final(0.1)["loss"]) in rows["lr-fast"]
        assert format_value(final(0.01)["loss"]) in rows["lr-slow"]
    again = make_app(trained, config=load_config(env))
    async with again.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert again.config.metric_columns == ("loss",)
        assert "loss" in next(line for line in text(again).splitlines() if "State" in line)
        # typed to filter, then space ticks what was found (it typed a space in the filter)
        await pilot.press("M")
        await until(pilot, lambda: "Metric columns" in text(again), what="the picker")
        await pilot.press("a", "c", "c", "space", "enter")
        await pilot.pause(0.2)
        assert again.config.metric_columns == ("accuracy", "loss")


def ticks(app) -> dict[str, str]:
    """accuracy and loss in the open picker, each with what its box draws (``X``: ticked, a
    blank: not), as a monochrome terminal or ``tmux capture-pane`` shows it: no colour. (Other
    tests of this module add runs with other metrics.)"""
    found = {}
    for line in text(app).splitlines():
        entry = re.search(r"▐(.)▌ (\S+)", line)
        if entry and entry.group(2) in ("accuracy", "loss"):
            found[entry.group(2)] = entry.group(1)
    return found


async def test_both_metric_pickers_show_what_is_ticked_without_colour(trained):
    app = make_app(trained)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        ids = [trained.ids["lr-fast"], trained.ids["lr-slow"]]
        await until(pilot, lambda: all(app.table.runs[m].get("metrics") for m in ids))
        await pilot.press("M")  # the run list's columns: none ticked
        await until(pilot, lambda: "Metric columns" in text(app), what="the columns picker")
        assert ticks(app) == {"accuracy": " ", "loss": " "}
        await pilot.press("down", "space")
        await until(pilot, lambda: ticks(app) == {"accuracy": " ", "loss": "X"})
        await pilot.press("escape")
        await until(pilot, lambda: "Metric columns" not in text(app))
        assert app.screen.run_list.metric_columns == ()  # escape: nothing kept

        app.screen.run_list.select(trained.ids["lr-fast"])
        await pilot.press("enter")
        await until(pilot, lambda: "trained 0.1" in text(app), what="the log")
        await pilot.press("v")
        view = app.screen.query_one("MetricsView")
        await until(pilot, lambda: view.reads and len(view.charts()) == 2, what="the charts")
        await pilot.press("p")  # the charts: both shown, both ticked
        await until(pilot, lambda: "Charts" in text(app), what="the charts picker")
        assert ticks(app) == {"accuracy": "X", "loss": "X"}
        await pilot.press("space")
        await until(pilot, lambda: ticks(app) == {"accuracy": " ", "loss": "X"})
        await pilot.press("space")
        await until(pilot, lambda: ticks(app) == {"accuracy": "X", "loss": "X"})
        await pilot.press("escape")


async def test_two_marked_runs_compared(trained):
    app = make_app(trained)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        ids = [trained.ids["lr-fast"], trained.ids["lr-slow"]]
        app.screen.run_list.select(ids[0])
        await pilot.press("space")
        app.screen.run_list.select(ids[1])
        await pilot.press("space", "C")
        await until(pilot, lambda: "compare  2 runs" in text(app), what="the compare screen")
        view = app.screen.query_one("MetricsView")
        await until(pilot, lambda: view.reads and len(view.charts()) == 2, what="the curves")
        await pilot.pause(0.2)
        screen = text(app)
        assert "● lr-fast" in screen and "● lr-slow" in screen  # the legend: the run names
        assert all(len(view.series[(m, "loss")]) == 200 for m in ids)
        await pilot.press("2")
        await pilot.pause(0.2)
        screen = text(app)
        fast = next(line for line in screen.splitlines() if "lr-fast" in line)
        assert "completed" in fast and format_value(final(0.1)["loss"]) in fast
        await pilot.press("3")
        await until(pilot, lambda: "differ between the runs" in text(app), what="the manifests")
        screen = text(app)
        assert "model_definition.name" in screen and "execution.command" in screen
        differing = dict(app.screen.differing)  # the values, in the order of the run list
        assert differing["model_definition.execution.command"] == [
            "python3 train.py 0.01 200", "python3 train.py 0.1 200",
        ]  # fmt: skip
        assert "python3 train.py 0.01 200" in screen  # the table scrolls to the others
        assert "training_data" not in screen  # the same in both: not shown
        await pilot.press("escape")
        await until(pilot, lambda: "2 marked" in text(app), what="the list again")


@contextlib.contextmanager
def completed_runs(tmp_path: Path, runs: list[tuple[str, str]]):
    """A home of its own with ``runs`` (name, command of the trainer), each completed."""
    h = History(tmp_path / "home")
    (h.path / "buckets" / "data").mkdir(parents=True)
    model = write_trainer(tmp_path / "model")
    try:
        for name, command in runs:
            h.wait(h.submit(name, command, model), "completed")
        yield h
    finally:
        h.stop()


async def compared(pilot) -> None:
    """Every run marked (``*``), then compared (``C``)."""
    await loaded(pilot)
    await pilot.press("asterisk", "C")
    await until(pilot, lambda: "compare  " in text(pilot.app), what="the compare screen")


async def test_long_manifest_values_show_where_they_differ_and_whole_below(tmp_path):
    # two commands alike for their first 50 characters looked the same, each cut after 32
    common = ": python3 train.py --data /data/spirals.csv --epochs"
    commands = [f"{common} 5 --hidden 32", f"{common} 50 --hidden 32"]
    with completed_runs(tmp_path, [(f"long{i}", c) for i, c in enumerate(commands)]) as h:
        app = make_app(h)
        async with app.run_test(size=(120, 40)) as pilot:
            await compared(pilot)
            await pilot.press("3")
            await until(pilot, lambda: "differ between" in text(app), what="the manifests")
            await pilot.press("down")  # the command's row (after the name's)
            lines = [line.strip() for line in text(app).splitlines()]
            row = next(line for line in lines if "execution.command" in line and "…" in line)
            assert "--epochs 5 --hidden 32" in row and "--epochs 50 --hidden 32" in row, row
            for i, command in enumerate(commands):  # below the table, each whole
                assert f"long{i}: {command}" in lines, lines
            table, detail = (
                app.screen.query_one("#manifest-table"),
                app.screen.query_one("#manifest-detail"),
            )
            # right under its rows (a header, two rows, a scroll bar): no gap between them
            assert detail.region.y == table.region.bottom <= table.region.y + 4


async def test_a_long_run_name_leaves_room_for_the_values_and_j_k_move_in_the_tables(tmp_path):
    long_name = "long-name-run-with-a-really-long-descriptive-name-for-testing-truncation"
    runs = [(name, "python3 train.py 0.1 5") for name in ("short", long_name)]
    with completed_runs(tmp_path, runs) as h:
        app = make_app(h)
        async with app.run_test(size=SIZE) as pilot:
            await compared(pilot)
            await pilot.press("2")
            table = app.screen.query_one("#values-table")
            await until(pilot, lambda: table.row_count == 2 and "loss" in text(app))
            row = next(line for line in text(app).splitlines() if "long-name-run" in line)
            assert "✓ completed" in row and format_value(final(0.1, 5)["loss"]) in row, row
            assert "…" in row  # the name cut, said so
            await pilot.press("j")
            assert table.cursor_row == 1
            await pilot.press("k")
            assert table.cursor_row == 0
            await pilot.press("G")
            assert table.cursor_row == 1


async def test_names_and_values_that_look_like_markup_are_shown_as_written(tmp_path):
    # a metric, a run name and a command are the user's text: `[/]` would end a Rich markup
    # parse (and the app), `[bold]` and `[dev]` would vanish
    point = '{"step": 1, "[/]": 1.5, "ok[bold]x": 2.5}'
    runs = [(f"odd{extra}", f": pip install .{extra}; echo '{point}' > $LOG_DIR/metrics.jsonl")
            for extra in ("[dev]", "[gpu]")]  # fmt: skip
    with completed_runs(tmp_path, runs) as h:
        app = make_app(h)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press("M")  # the metric picker
            await until(pilot, lambda: "ok[bold]x" in text(app), what="the names in the picker")
            assert "[/]" in text(app)
            await pilot.press("escape")
            await pilot.press("asterisk", "C")  # both marked, compared
            await until(pilot, lambda: "compare  2 runs" in text(app), what="the compare screen")
            await pilot.press("2")
            await until(pilot, lambda: "ok[bold]x" in text(app), what="the values' columns")
            assert "[/]" in text(app) and "2.5" in text(app)
            await pilot.press("3")
            await until(pilot, lambda: "differ between" in text(app), what="the manifests")
            screen = text(app)
            assert "odd[dev]" in screen and "odd[gpu]" in screen
            shown = [f": pip install .{e};" in screen for e in ("[dev]", "[gpu]")]
            assert any(shown), screen  # (the second column is cut at 80 columns)
