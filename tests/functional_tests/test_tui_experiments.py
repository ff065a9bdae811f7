"""The TUI's experiments (SPEC §9), driven by its keys (Textual's pilot) against a real service:
the experiments beside the runs (e switches), an experiment's runs ranked by its objective with
a column per parameter, the best runs' curves, halt and delete with one question; and snapshots
of the experiments list and of an experiment (IDs and times masked so that they hold still)."""

from __future__ import annotations

import contextlib
import json
import textwrap
import time
from pathlib import Path

import pytest
from test_tui import History, make_app, text, until

from trainui.tui.runs import ran_seconds

SIZE = (80, 24)
WIDE = (120, 40)

SWEEP = """\
import json, math, os, sys
lr, layers = float(sys.argv[1]), int(sys.argv[2])
with open(os.path.join(os.environ["LOG_DIR"], "metrics.jsonl"), "w") as out:
    for step in range(1, 6):
        loss = abs(math.log10(lr) + 2) + layers / 10 + 1 / step
        out.write(json.dumps({"step": step, "val_loss": round(loss, 4)}) + "\\n")
"""
# val_loss at the last step, by (lr, layers): lr 0.01 is best, fewer layers better
FINAL = {(lr, layers): round(abs(__import__("math").log10(lr) + 2) + layers / 10 + 0.2, 4)
         for lr in (0.1, 0.01, 0.001) for layers in (2, 3)}  # fmt: skip


def sweep_manifest(folder: Path, name: str, command: str, block: str) -> Path:
    path = folder / f"{name}.yml"
    path.write_text(
        textwrap.dedent(
            f"""\
            model_definition:
              name: {name}
              framework: {{name: python, version: "3.11"}}
              execution:
                command: {json.dumps(command)}
                resource: small
            training_data:
              connection: {{}}
              source: {{bucket: data, type: local}}
            training_results:
              connection: {{}}
              target: {{bucket: results, type: local}}
            experiment:
            """
        )
        + textwrap.indent(textwrap.dedent(block), "  ")
    )
    return path


GRID = """\
name: lr-layers
method: grid
parameters:
  lr: {values: [0.1, 0.01, 0.001]}
  layers: {values: [2, 3]}
objective: {metric: val_loss, goal: minimize}
"""
SLEEPERS = """\
name: sleepers
method: grid
max_parallel: 1
parameters:
  lr: {values: [0.1, 0.01]}
objective: {metric: val_loss, goal: minimize}
"""


class Experiments(History):
    def submit_experiment(self, name: str, command: str, block: str, model: Path) -> list[str]:
        """Submit a sweep: [its experiment ID, then each run's ID]."""
        manifest = sweep_manifest(self.path.parent, name, command, block)
        out = self.cli("train", str(model), str(manifest)).stdout
        ids = [line.split("'")[1] for line in out.splitlines() if "-ID is '" in line]
        assert ids and ids[0].startswith("experiment-"), out
        return ids

    def experiment(self, experiment_id: str) -> dict:
        return json.loads(self.cli("show", "experiment", experiment_id, "--json").stdout)

    def wait_experiment(self, experiment_id: str, *states: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while (found := self.experiment(experiment_id))["status"] not in states:
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
        return found


def write_sweep_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.py").write_text(SWEEP)
    return folder


@contextlib.contextmanager
def experiments_home(root: Path, halted: bool = True):
    """A home with a finished grid experiment (6 runs, ranked by val_loss) and, when
    ``halted``, an experiment of two sleepers halted at once."""
    h = Experiments(root / "home")
    (h.path / "buckets" / "data").mkdir(parents=True)
    model = write_sweep_model(root / "model")
    try:
        grid = h.submit_experiment("lr-layers", "python3 sweep.py $lr $layers", GRID, model)
        h.ids["grid"] = grid[0]
        h.ids["grid-runs"] = grid[1:]
        if halted:
            sleepers = h.submit_experiment("sleepers", "sleep 60", SLEEPERS, model)
            h.ids["sleepers"] = sleepers[0]
            h.wait(sleepers[1], "running")
            h.cli("halt", "experiment", sleepers[0])
            h.wait_experiment(sleepers[0], "halted")
        h.wait_experiment(grid[0], "completed")
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    with experiments_home(tmp_path_factory.mktemp("tui-experiments")) as h:
        yield h


def screen_name(app) -> str:
    return type(app.screen).__name__


async def loaded(pilot) -> None:
    await until(pilot, lambda: pilot.app.loaded and pilot.app.screen.is_mounted, what="the list")
    await pilot.pause(0.1)


async def experiments_shown(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: screen_name(app) == "ExperimentsScreen", what="the experiments")
    await until(pilot, lambda: app.experiments_loaded and "lr-layers" in text(app))
    await pilot.pause(0.1)


async def open_grid(pilot, sweeps, name: str = "grid", runs: int = 6) -> object:
    """The grid experiment (or ``name``'s) opened from the experiments, its runs read."""
    app = pilot.app
    await experiments_shown(pilot)
    screen = app.screen
    screen.rows.move_to(screen.rows.keys.index(sweeps.ids[name]))
    await pilot.press("enter")
    await until(pilot, lambda: screen_name(app) == "ExperimentScreen")
    experiment = app.screen
    await until(pilot, lambda: len(experiment.rows.keys) == runs, what="the experiment's runs")
    return experiment


def best_first() -> list[tuple[float, int]]:
    return sorted(FINAL, key=lambda p: FINAL[p])


# --- switching views ------------------------------------------------------------------------


async def test_e_switches_between_the_runs_and_the_experiments(sweeps):
    app = make_app(sweeps)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert screen_name(app) == "RunsScreen"
        await pilot.press("j", "j", "j", "space")  # a run selected, another marked
        await pilot.press("j")
        chosen, marked = app.screen.run_list.current, set(app.screen.run_list.marked)
        assert chosen is not None and len(marked) == 1 and chosen not in marked
        await pilot.press("e")
        await experiments_shown(pilot)
        shown = text(app)
        assert "2 experiments" in shown.splitlines()[0]
        grid_row = next(line for line in shown.splitlines() if "lr-layers" in line)
        assert "✓ completed" in grid_row and "6/6" in grid_row and "✓6" in grid_row
        assert f"{FINAL[best_first()[0]]:.4g}" in grid_row  # the best value of its objective
        sleepers_row = next(line for line in shown.splitlines() if "sleepers" in line)
        assert "■ halted" in sleepers_row and "2/2" in sleepers_row
        assert "e Runs" in shown.splitlines()[-1]  # the footer says how to go back
        await pilot.press("e")
        await until(pilot, lambda: screen_name(app) == "RunsScreen", what="the runs again")
        await until(pilot, lambda: "8 runs" in text(app))
        # the same run selected (h, d act on it), the same one marked: not the top row
        assert app.screen.run_list.current == chosen
        assert app.screen.run_list.marked == marked
        assert chosen in app.screen.query_one("#selection").render().plain


async def test_the_experiments_can_be_the_first_screen_and_are_sorted_with_s(sweeps):
    app = make_app(sweeps, view="experiments")
    async with app.run_test(size=SIZE) as pilot:
        await experiments_shown(pilot)
        await until(pilot, lambda: app.first_view.is_set(), what="the first view said")
        rows = app.screen.rows
        assert rows.keys == [sweeps.ids["sleepers"], sweeps.ids["grid"]]  # newest first
        await pilot.press("s")  # by state: completed before halted
        await until(pilot, lambda: rows.keys == [sweeps.ids["grid"], sweeps.ids["sleepers"]])
        assert "State ▲" in text(app)
        await pilot.press("r")
        await until(pilot, lambda: rows.keys == [sweeps.ids["sleepers"], sweeps.ids["grid"]])


# --- an experiment --------------------------------------------------------------------------


async def test_an_experiment_ranks_its_runs_by_the_objective_with_a_column_per_parameter(sweeps):
    app = make_app(sweeps, view="experiments")
    async with app.run_test(size=WIDE) as pilot:
        experiment = await open_grid(pilot, sweeps)
        shown = text(app)
        header = next(line for line in shown.splitlines() if "State" in line and "lr" in line)
        assert "layers" in header and "val_loss" in header
        rows = [line for line in shown.splitlines() if "training-" in line][:6]
        ranked = [(float(r.split()[3]), int(r.split()[4])) for r in rows]
        assert ranked == best_first()  # best first, by val_loss
        assert rows[0].split()[0] == "★1"  # the best run starred
        assert [float(r.split()[5]) for r in rows] == sorted(FINAL.values())
        assert "objective val_loss (minimize)" in shown and "6 completed" in shown
        # the five best runs' curves of the objective, overlaid
        await until(pilot, lambda: "val_loss" in text(app) and "ended" in text(app))
        curves = experiment.query_one("ObjectiveCurves")
        assert [m for m, _label in curves.runs] == experiment.rows.keys[:5]
        assert curves.shown_names() == ["val_loss"]
        (chart,) = curves.charts()
        await until(pilot, lambda: len(chart.series) == 5, what="the five curves")
        labels = [label for _m, label in curves.runs]
        assert list(chart.series) == labels  # the legend in the runs' order: by rank
        legend = [str(line) for line in chart.legend(100) if str(line).startswith("●")]
        assert legend == [f"● {label}" for label in labels]
        await pilot.press("v")  # the curves hidden: the list takes the room
        await until(pilot, lambda: not curves.display or curves.size.height == 0)
        await pilot.press("v")
        await pilot.press("p")  # the note's "p picks", from the list too
        await until(pilot, lambda: screen_name(app) == "MetricPicker", what="the picker")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is experiment)
        # s sorts by state, then by each parameter
        await pilot.press("s", "s")
        await until(pilot, lambda: experiment.sort == "param:lr")
        lrs = [experiment._run(m)["parameters"]["lr"] for m in experiment.rows.keys]
        assert lrs == sorted(lrs)
        await pilot.press("r")
        await until(pilot, lambda: experiment.reverse)
        lrs = [experiment._run(m)["parameters"]["lr"] for m in experiment.rows.keys]
        assert lrs == sorted(lrs, reverse=True)
        await pilot.press("r")
        # the last sort is by the Ran column: the time each run ran
        while experiment.sort != "ran":
            await pilot.press("s")
        await until(pilot, lambda: experiment.rows.sort == "ran")
        times = [ran_seconds(experiment._run(m)) for m in experiment.rows.keys]
        assert times == sorted(times)
        await pilot.press("s")
        await until(pilot, lambda: experiment.sort == "rank")
        # enter opens the selected run, escape comes back
        selected = experiment.rows.current
        await pilot.press("enter")
        await until(pilot, lambda: screen_name(app) == "RunScreen")
        await until(pilot, lambda: "Parameters" in text(app) and "Experiment" in text(app))
        assert app.screen.model_id == selected
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "ExperimentScreen")
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "ExperimentsScreen")


async def test_runs_without_a_value_of_the_objective_have_no_place(sweeps):
    app = make_app(sweeps, view="experiments")
    async with app.run_test(size=SIZE) as pilot:
        experiment = await open_grid(pilot, sweeps, "sleepers", runs=2)
        lines = [line.split() for line in text(app).splitlines()]
        rows = [w for w in lines if len(w) > 3 and w[1:3] == ["■", "halted"] and "-" in w[3:]]
        assert len(rows) == 2 and [r[0] for r in rows] == ["-", "-"], rows  # not 1 and 2
        assert experiment.rows.ranks == {}


async def test_a_sort_by_a_column_that_is_left_out_when_narrow_brings_it_back(sweeps):
    app = make_app(sweeps, view="experiments")
    async with app.run_test(size=(60, 24)) as pilot:  # a terminal split in two
        experiment = await open_grid(pilot, sweeps)

        def header() -> str:
            return next(line for line in text(app).splitlines() if "State" in line)

        assert "Ran" not in header()  # narrow: the run time is the first left out
        while experiment.sort != "ran":
            await pilot.press("s")
        # sorted by it, it is shown with its arrow, and each row's run time under it
        await until(pilot, lambda: "Ran ▲" in header(), what="the Ran column")
        await pilot.press("r")
        await until(pilot, lambda: "Ran ▼" in header(), what="the reversed arrow")
        lines = text(app).splitlines()
        rows = [line for line in lines if " completed " in line and "trainin" in line]
        assert len(rows) == 6 and all(line.rstrip().endswith("s") for line in rows), lines
        await pilot.press("s")  # by rank again: left out again
        await until(pilot, lambda: "Ran" not in header(), what="Ran left out")
        # the list too: sorted by when they were submitted, that column stays
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "ExperimentsScreen")
        screen = app.screen
        while screen.rows.sort != "submitted":
            await pilot.press("s")
        await until(pilot, lambda: "Submitted" in text(app), what="the Submitted column")


async def test_compare_opens_the_five_best_runs(sweeps):
    app = make_app(sweeps, view="experiments")
    async with app.run_test(size=SIZE) as pilot:
        experiment = await open_grid(pilot, sweeps)
        best = experiment.ranked[:5]
        await pilot.press("C")
        await until(pilot, lambda: screen_name(app) == "CompareScreen")
        assert app.screen.model_ids == best
        assert "compare  5 runs" in text(app)
        # the runs share a name: each is named by its values, as on the experiment's screen
        names = app.screen.names
        assert len(set(names.values())) == 5, names
        assert all(" · " in name for name in names.values()), names
        # and their manifests differ by their parameters (one manifest for all of them)
        await pilot.press("3")
        await until(pilot, lambda: "differ between the runs" in text(app), what="the fields")
        assert [field for field, _ in app.screen.differing] == [
            "parameters.lr",
            "parameters.layers",
        ]


async def test_the_run_list_shows_a_runs_parameters(sweeps):
    app = make_app(sweeps)
    async with app.run_test(size=WIDE) as pilot:
        await loaded(pilot)
        assert "lr-layers  lr=0.01 layers=2" in text(app)
        await pilot.press("slash", *sweeps.ids["grid"])  # the filter knows the experiment
        await until(pilot, lambda: len(app.table.view()) == 6, what="the experiment's runs")
        app.table.set_filter("lr=0.01 layers=3")  # and the parameters shown
        assert len(app.table.view()) == 1


async def test_c_on_a_run_of_an_experiment_clones_that_run_with_its_values(sweeps):
    """Not the whole sweep under the title "new run": that run again, its own values."""
    app = make_app(sweeps)
    async with app.run_test(size=WIDE) as pilot:
        await loaded(pilot)
        app.table.set_filter("lr=0.001 layers=2")
        target = app.table.view()[0]
        await pilot.press("colon", *target, "enter")
        await pilot.press("c")
        await until(pilot, lambda: screen_name(app) == "EditorScreen")
        editor = app.screen
        assert "lr: [0.001]" in editor.area.text and "layers: [2]" in editor.area.text
        assert "0.1" not in editor.area.text.split("experiment:")[1]
        assert f"{target} again (lr=0.001 layers=2)" in text(app)
        await until(pilot, lambda: "✓ valid" in text(app), what="a valid manifest")


# --- halt and delete, one question each ---------------------------------------------------------


@pytest.fixture
def sleepers(tmp_path):
    h = Experiments(tmp_path / "home")
    h.env["TRAINUI_CPU_SLOTS"] = "2"
    (h.path / "buckets" / "data").mkdir(parents=True)
    model = write_sweep_model(tmp_path / "model")
    try:
        ids = h.submit_experiment("sleepers", "sleep 60", SLEEPERS, model)
        h.ids["sleepers"] = ids[0]
        h.ids["runs"] = ids[1:]
        h.wait(ids[1], "running")
        yield h
    finally:
        h.stop()


async def test_h_halts_an_experiment_after_one_question_whose_default_is_no(sleepers):
    experiment_id = sleepers.ids["sleepers"]
    app = make_app(sleepers, view="experiments")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: experiment_id in text(app), what="the experiment")
        await until(pilot, lambda: "h Halt" in text(app), what="halt in the footer")
        await pilot.press("h")
        await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
        await pilot.pause(0.1)
        assert f"Halt {experiment_id} (sleepers)?" in text(app)
        assert app.screen.focused.id == "cancel"  # the safe default
        await pilot.press("enter")  # enter on Cancel: nothing happens
        await until(pilot, lambda: screen_name(app) == "ExperimentsScreen")
        assert sleepers.experiment(experiment_id)["status"] == "running"
        await pilot.press("enter")  # from the experiment's own screen this time
        await until(pilot, lambda: screen_name(app) == "ExperimentScreen")
        await until(pilot, lambda: "h Halt" in text(app), what="halt in the footer")
        # no run has an objective value yet: said where the curves would be
        await until(pilot, lambda: "no val_loss points yet" in text(app), what="why no curves")
        await pilot.press("h")
        await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
        await pilot.press("y")
        await until(pilot, lambda: screen_name(app) == "ExperimentScreen")
        await until(
            pilot,
            lambda: (app.experiments.get(experiment_id) or {}).get("status") == "halted",
            timeout=20,
            what="the experiment halted",
        )
        await until(pilot, lambda: "■ halted · 2 runs" in text(app), what="its title")
        for model_id in sleepers.ids["runs"]:
            sleepers.wait(model_id, "halted")
        await until(pilot, lambda: "h Halt" not in text(app), what="no halt once halted")
        await pilot.press("h")  # its binding hidden: the key says why
        said = "sleepers has already ended (halted)."
        await until(pilot, lambda: any(str(n.message) == said for n in app._notifications))


async def test_r_resumes_a_halted_experiment_after_one_question(sleepers):
    experiment_id = sleepers.ids["sleepers"]
    sleepers.cli("halt", "experiment", experiment_id)
    sleepers.wait_experiment(experiment_id, "halted")
    app = make_app(sleepers, view="experiments")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: experiment_id in text(app), what="the experiment")
        await until(pilot, lambda: "R Resume" in text(app), what="resume in the footer")
        await pilot.press("R")
        await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
        await pilot.pause(0.1)
        assert f"Resume {experiment_id} (sleepers)?" in text(app)
        assert "its 2 halted runs again" in text(app)
        assert app.screen.focused.id == "cancel"  # the safe default
        await pilot.press("escape")
        await until(pilot, lambda: screen_name(app) == "ExperimentsScreen")
        assert sleepers.experiment(experiment_id)["status"] == "halted"
        await pilot.press("enter")  # from the experiment's own screen
        await until(pilot, lambda: screen_name(app) == "ExperimentScreen")
        await until(pilot, lambda: "R Resume" in text(app), what="resume in the footer")
        await pilot.press("R")
        await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
        await pilot.press("y")
        await until(pilot, lambda: screen_name(app) == "ExperimentScreen")
        await until(
            pilot,
            lambda: (app.experiments.get(experiment_id) or {}).get("status") == "running",
            timeout=20,
            what="the experiment running again",
        )
        first = sleepers.wait(sleepers.ids["runs"][0], "running")
        assert first["attempt"] == 2
        # the other was halted before it ever started: pending again, nothing to restart
        second = json.loads(sleepers.cli("show", sleepers.ids["runs"][1], "--json").stdout)
        assert (second["status"], second["attempt"], second["started_at"]) == ("pending", 1, None)
        assert "its experiment runs at most 1 at once" in second["status_message"], second
        await until(pilot, lambda: "R Resume" not in text(app), what="no resume once resumed")
        await pilot.press("R")  # its binding hidden: the key says why
        said = "No run of sleepers is halted or failed."
        await until(pilot, lambda: any(str(n.message) == said for n in app._notifications))
        resumed = f"Resuming 2 runs of {experiment_id}."
        assert any(str(n.message) == resumed for n in app._notifications)
        assert (app.experiments.get(experiment_id) or {}).get("status") == "running"


async def test_an_experiments_counts_follow_its_runs_without_waiting_for_its_summary(sleepers):
    """The runs shown are live (events); the experiment's summary is read again at most once a
    second or so: the counts under the title come from the runs, not a refresh behind."""
    experiment_id = sleepers.ids["sleepers"]
    app = make_app(sleepers, view="experiments")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: experiment_id in text(app), what="the experiment")
        await pilot.press("enter")
        await until(pilot, lambda: screen_name(app) == "ExperimentScreen")
        await until(pilot, lambda: "1 pending · 1 running" in text(app), what="the counts")
        app.load_experiments = lambda: None  # the summary no longer read again
        app.workers.cancel_group(app, "experiments")
        sleepers.cli("halt", sleepers.ids["runs"][0])
        await until(pilot, lambda: "1 running · 1 halted" in text(app), what="counts from runs")


async def test_d_deletes_an_experiment_and_its_runs_after_one_question(sleepers):
    experiment_id = sleepers.ids["sleepers"]
    app = make_app(sleepers)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("e")
        await until(pilot, lambda: experiment_id in text(app), what="the experiment")
        await pilot.press("enter")
        await until(pilot, lambda: screen_name(app) == "ExperimentScreen")
        await pilot.press("d")
        await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
        await pilot.pause(0.1)
        assert f"Delete {experiment_id} (sleepers) and its 2 runs?" in text(app)
        await pilot.press("escape")  # no
        await until(pilot, lambda: screen_name(app) == "ExperimentScreen")
        await pilot.press("d")
        await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
        await pilot.press("y")
        await until(pilot, lambda: screen_name(app) == "ExperimentsScreen", what="back")
        await until(pilot, lambda: "No experiments yet" in text(app), what="an empty list")
        await until(pilot, lambda: not set(sleepers.ids["runs"]) & app.table.runs.keys())
        assert sleepers.cli("list", "experiments").stdout.count("sleepers") == 0


# --- snapshots ----------------------------------------------------------------------------------


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def masked_experiment(experiment: dict, i: int, ids: dict[str, str]) -> dict:
    fixed = dict(experiment, experiment_id=f"experiment-SNAPSHOT{i}", owner="ada")
    fixed["url"] = f"/v3/experiments/{fixed['experiment_id']}"
    fixed["submitted_at"] = f"2026-12-04T09:0{i}:00.000Z"
    if experiment.get("finished_at"):
        fixed["finished_at"] = f"2026-12-04T09:0{i}:42.000Z"
    if experiment.get("best"):
        fixed["best"] = dict(experiment["best"], model_id=ids.get(experiment["best"]["model_id"]))
    return fixed


def masked_run(run: dict, model_id: str, i: int) -> dict:
    fixed = dict(run, model_id=model_id, url=f"/v3/models/{model_id}", owner="ada")
    fixed["experiment_id"] = "experiment-SNAPSHOT0"
    fixed["submitted_at"] = "2026-12-04T09:00:00.000Z"
    if run.get("started_at"):
        fixed["started_at"] = f"2026-12-04T09:00:0{i}.500Z"
    if run.get("finished_at"):
        fixed["finished_at"] = f"2026-12-04T09:00:{12 + i}.250Z"
    if run.get("results"):
        fixed["results"] = dict(run["results"], prefix=f"{model_id}/")
    return fixed


async def hold_still(pilot) -> None:
    """Live updates stopped; the experiments (and an opened experiment's runs) masked."""
    app = pilot.app
    app.load_experiments = lambda: None  # a read already due would bring the real IDs back
    for group in ("events", "gpus", "experiments"):
        app.workers.cancel_group(app, group)
    for curves in app.screen.query("ObjectiveCurves"):
        app.workers.cancel_group(curves, "metrics")
    await pilot.pause(0.1)
    ordered = sorted(app.experiments.experiments.values(), key=lambda e: e["submitted_at"])
    grid = next(e for e in ordered if e["name"] == "lr-layers")
    screen = app.screen
    ids = {}
    if screen_name(app) == "ExperimentScreen":
        ids = {m: f"training-SNAP{i}" for i, m in enumerate(screen.order)}
        runs = [masked_run(screen._run(m), ids[m], i) for i, m in enumerate(screen.order)]
        app.table.reconcile(runs)
        screen.read = {run["model_id"]: run for run in runs}
        screen.order = [ids[m] for m in screen.order]
        screen._top = [ids[m] for m in screen._top]
        screen.experiment_id = "experiment-SNAPSHOT0"
        screen.experiment = masked_experiment(screen.experiment, 0, ids)
    others = [e for e in ordered if e is not grid]
    app.experiments.reconcile([masked_experiment(e, i, ids) for i, e in enumerate([grid, *others])])
    app._tell_experiments()
    await pilot.pause(0.3)


def test_the_experiments_list(snap_compare, sweeps, utc):
    async def run_before(pilot):
        await experiments_shown(pilot)
        await hold_still(pilot)

    app = make_app(sweeps, view="experiments")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_an_experiment_ranked_with_its_best_curves(snap_compare, sweeps, utc):
    async def run_before(pilot):
        app = pilot.app
        experiment = await open_grid(pilot, sweeps)
        await until(pilot, lambda: experiment.query("ObjectiveCurves"), what="the curves")
        curves = experiment.query_one("ObjectiveCurves")
        await until(pilot, lambda: curves.reads >= 1 and "ended" in text(app), what="the read")
        await pilot.pause(0.3)
        await hold_still(pilot)
        assert "training-SNAP" in text(app)

    app = make_app(sweeps, view="experiments")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_a_run_deleted_from_another_terminal_leaves_the_experiments_screen(tmp_path):
    # it stayed as a row, counted, with its time going on; and the curves of every run were
    # replaced by "This service does not serve metrics" (the deleted run's 404)
    with experiments_home(tmp_path, halted=False) as h:
        app = make_app(h, view="experiments")
        async with app.run_test(size=WIDE) as pilot:
            experiment = await open_grid(pilot, h)
            await until(pilot, lambda: experiment.query("ObjectiveCurves"), what="the curves")
            curves = experiment.query_one("ObjectiveCurves")
            await until(pilot, lambda: curves.reads >= 1, what="the curves read")
            best = experiment.rows.keys[0]
            assert h.cli("delete", best).returncode == 0
            await until(pilot, lambda: best not in experiment.rows.keys, what="its row gone")
            assert len(experiment.rows.keys) == 5 and "5 completed" in text(app)
            assert best not in text(app)

            def curves_now():
                found = experiment.query("ObjectiveCurves")
                return found.first() if found else None

            await until(
                pilot,
                lambda: (
                    curves_now() is not None
                    and [m for m, _ in curves_now().runs] == experiment.rows.keys
                    and curves_now().reads >= 1
                ),
                what="the curves of the five runs left",
            )
            assert curves_now().problem == "" and "does not serve metrics" not in text(app)
            (chart,) = curves_now().charts()
            await until(pilot, lambda: len(chart.series) == 5, what="their five lines")


async def test_the_curves_of_a_run_deleted_before_they_are_read_go_quietly(tmp_path):
    # the run's 404 took the whole view for an old service's ("does not serve metrics")
    with experiments_home(tmp_path, halted=False) as h:
        from trainui.tui.widgets.metrics_view import MetricsView

        runs = h.ids["grid-runs"][:3]
        assert h.cli("delete", runs[0]).returncode == 0
        app = make_app(h)
        async with app.run_test(size=WIDE) as pilot:
            await loaded(pilot)
            view = MetricsView(app.client, [(m, m[-4:]) for m in runs], id="probe")
            await app.screen.mount(view)
            await until(pilot, lambda: view.reads >= 1, what="the read")
            assert view.problem == "" and [m for m, _ in view.runs] == runs[1:]
            await until(pilot, lambda: len(view.charts()) == 1, what="the chart")
            await until(pilot, lambda: len(view.charts()[0].series) == 2, what="two lines")
