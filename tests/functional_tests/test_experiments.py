"""Experiments end to end (SPEC §9): one manifest with `experiment:`, one `trainui train`, many
runs, through the real CLI, the real service on its socket and real learners."""

from __future__ import annotations

import asyncio
import json
import shutil
import textwrap
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from trainui.core.experiments import is_experiment_id

ROOT = Path(__file__).resolve().parents[2]


def sweep_manifest(home, command: str, experiment: str, name: str = "sweep", **kwargs) -> Path:
    """The home's manifest for ``command`` with an ``experiment:`` block (YAML text)."""
    path = home.manifest(command, name=name, **kwargs)
    text = path.read_text() + "experiment:\n" + textwrap.indent(textwrap.dedent(experiment), "  ")
    path.write_text(text)
    return path


def train(home, model: Path, manifest: Path) -> tuple[str, list[str]]:
    """``trainui train`` of a sweep: the experiment's ID and its runs' IDs, as printed."""
    out = home.cli("train", str(model), str(manifest), check=True).stdout.splitlines()
    first = next(i for i, line in enumerate(out) if line.startswith("Experiment-ID is "))
    experiment_id = out[first].split("'")[1]
    runs = [line.split("'")[1] for line in out[first + 1 :] if line.startswith("Model-ID is ")]
    assert is_experiment_id(experiment_id), out
    return experiment_id, runs


def experiment(home, experiment_id: str) -> dict:
    return json.loads(home.cli("show", "experiment", experiment_id, "--json", check=True).stdout)


def wait_ended(home, experiment_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        e = experiment(home, experiment_id)
        if e["status"] in ("completed", "failed", "halted"):
            return e
        assert time.monotonic() < deadline, f"{experiment_id} still {e['status']}: {e}"
        time.sleep(0.2)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_grid_is_one_submission_whose_runs_get_their_values_through_the_shell(home):
    model = home.model("p", {"t.py": ""})
    manifest = sweep_manifest(
        home,
        # ${...} and $name as a shell expands them; quoting kept
        'echo "lr=${learning_rate} layers=$layers act=${act}" > $RESULT_DIR/p.txt',
        """\
        method: grid
        parameters:
          learning_rate: {values: [0.1, 0.001, 1.0e-5]}
          layers: [2, 3]
          act: {values: ["relu", "two words"]}
        """,
    )
    experiment_id, runs = train(home, model, manifest)
    assert len(runs) == 12 and len(set(runs)) == 12
    e = wait_ended(home, experiment_id)
    assert e["status"] == "completed" and e["count"] == 12
    assert e["runs_by_status"]["completed"] == 12
    seen = set()
    for run in e["runs"]:
        assert run["experiment_id"] == experiment_id
        p = run["parameters"]
        text = (home.buckets / "results" / run["model_id"] / "p.txt").read_text()
        lr = {0.1: "0.1", 0.001: "0.001", 1e-05: "1e-05"}[p["learning_rate"]]
        assert text == f"lr={lr} layers={p['layers']} act={p['act']}\n"
        seen.add((p["learning_rate"], p["layers"], p["act"]))
    assert len(seen) == 12  # every combination, once
    # the first parameter varies slowest, in submission order
    ordered = [home.show(m)["parameters"] for m in runs[:3]]
    assert ordered == [
        {"learning_rate": 0.1, "layers": 2, "act": "relu"},
        {"learning_rate": 0.1, "layers": 2, "act": "two words"},
        {"learning_rate": 0.1, "layers": 3, "act": "relu"},
    ]
    shown = home.cli("show", runs[0], check=True).stdout
    assert f"Experiment     {experiment_id}" in shown
    assert "Parameters     learning_rate=0.1, layers=2, act=relu" in shown
    log = (home.path / "runs" / runs[0] / "training-log.txt").read_text()
    assert f"trainui: experiment {experiment_id}: learning_rate=0.1 layers=2 act=relu" in log
    # the list of one experiment's runs, and the experiments
    listed = json.loads(home.cli("list", "--experiment", experiment_id, "--json").stdout)
    assert sorted(r["model_id"] for r in listed) == sorted(runs)
    table = home.cli("list", "experiments", check=True).stdout
    assert experiment_id in table and "1 records found." in table
    # the model definition is kept once: every run's copy is the same file
    inodes = {(home.path / "runs" / m / "model.zip").stat().st_ino for m in runs}
    assert len(inodes) == 1
    # the API's experiment holds each run as GET /v3/models/ID shows it, or only the fields
    # asked for (each once; a name that is not a run's field is no key)
    transport = httpx.HTTPTransport(uds=str(home.path / "trainui.sock"))
    with httpx.Client(transport=transport, base_url="http://trainui") as api:
        full = api.get(f"/v3/experiments/{experiment_id}").json()
        assert [r["model_id"] for r in full["runs"]] == [r["model_id"] for r in e["runs"]]
        for run in full["runs"]:
            assert run == api.get(f"/v3/models/{run['model_id']}").json()
        assert {k: v for k, v in full.items() if k != "runs"} == {
            k: v for k, v in e.items() if k != "runs"
        }
        narrow = api.get(
            f"/v3/experiments/{experiment_id}",
            params={"fields": "model_id, parameters,model_id,seq,bogus"},
        ).json()
        assert narrow["runs"] == [
            {"model_id": r["model_id"], "parameters": r["parameters"]} for r in full["runs"]
        ]
        assert narrow["count"] == 12 and narrow["status"] == "completed"


def test_max_parallel_is_never_exceeded_and_leaves_room_for_other_runs(home):
    home.env["TRAINUI_GPUS"] = "0,1,2,3"  # a GPU inventory (no NVML here: no device exists)
    model = home.model("mp", {"t.py": ""})
    manifest = sweep_manifest(
        home,
        "sleep 0.6",
        """\
        method: grid
        max_parallel: 2
        parameters:
          i: [1, 2, 3, 4, 5, 6]
        """,
    )
    experiment_id, _ = train(home, model, manifest)
    other = home.submit(model, home.manifest("sleep 0.3", name="other"))
    e = wait_ended(home, experiment_id)
    assert e["runs_by_status"]["completed"] == 6
    spans = [(epoch(r["started_at"]), epoch(r["finished_at"]), r["gpu_ids"]) for r in e["runs"]]
    for start, _, _ in spans:
        active = [s for s in spans if s[0] <= start < s[1]]
        assert len(active) <= 2, spans
        held = [g for s in active for g in s[2]]
        assert len(held) == len(set(held)), spans  # no GPU given twice
    # the single run submitted after the experiment did not wait for the experiment's queue
    single = home.wait(other, "completed", timeout=30)
    assert epoch(single["started_at"]) < max(s[0] for s in spans)


MEDIAN_SCRIPT = """\
    import json, os, sys, time
    scale = float(sys.argv[1])
    first = os.environ["TRAINING_ATTEMPT"] == "1"
    pause = {pause}
    with open(os.path.join(os.environ["LOG_DIR"], "metrics.jsonl"), "a") as f:
        for step in {steps}:
            f.write(json.dumps({{"step": step, "loss": scale / (step + 1)}}) + "\\n")
            f.flush()
            time.sleep(pause)
    """


def median_sweep(home, name: str, pause: str, steps: str) -> tuple[dict, dict]:
    """An experiment of four runs writing ``loss = scale / (step + 1)``, the good ones
    scales 1.0, 1.1, 1.2, the bad one 9.0, with the median rule from step 5; ``pause`` and
    ``steps``: Python expressions of the script (``scale``, ``first``: its first attempt).
    The experiment once it ended, and its runs by scale."""
    home.env["TRAINUI_CPU_SLOTS"] = "4"
    script = MEDIAN_SCRIPT.format(pause=pause, steps=steps)
    model = home.model(name, {"train.py": script})
    manifest = sweep_manifest(
        home,
        "python3 train.py $scale",
        """\
        method: grid
        parameters:
          scale: [1.0, 1.1, 1.2, 9.0]
        objective: {metric: loss, goal: minimize}
        early_stopping: {rule: median, after_steps: 5}
        """,
    )
    experiment_id, _ = train(home, model, manifest)
    e = wait_ended(home, experiment_id, timeout=120)
    return e, {r["parameters"]["scale"]: r for r in e["runs"]}


async def tui_resume_experiment(home, experiment_id: str) -> str:
    """R on the experiment in the TUI's experiments view: the screen then (a question or a
    notice)."""
    from test_tui import home_client, make_app, text, until

    app = make_app(home_client(home), view="experiments")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.loaded and app.experiments_loaded, what="loaded")
        await until(pilot, lambda: experiment_id in str(app.screen.rows.keys), what="listed")
        screen = app.screen
        screen.rows.move_to(screen.rows.keys.index(experiment_id))
        await pilot.press("R")
        await until(pilot, lambda: app._notifications or screen is not app.screen, what="R")
        return text(app) + "\n".join(str(n.message) for n in app._notifications)


def test_the_median_rule_halts_the_run_that_falls_behind_with_its_reason(home):
    # the three good runs go fast (they set the median), the bad one slowly; resumed, it
    # goes on from its checkpoint (step 10)
    e, by_scale = median_sweep(
        home,
        "es",
        "(0.3 if first else 0.1) if scale > 5 else 0.02",
        "range(0 if first else 10, 40)",
    )
    bad = by_scale[9.0]
    assert bad["status"] == "halted", bad
    message = bad["status_message"]
    assert message.startswith("stopped early: loss "), message
    value, step, median = _parse_reason(message)
    assert step >= 5
    assert value == pytest.approx(9.0 / (step + 1), rel=1e-3)
    assert median == pytest.approx(1.1 / (step + 1), rel=1e-3)  # of 1.0, 1.1, 1.2
    for scale in (1.0, 1.1, 1.2):
        assert by_scale[scale]["status"] == "completed"
    # its results were stored as for any halt, its outcome says why
    stored = json.loads(
        (home.buckets / "results" / bad["model_id"] / "training-status.json").read_text()
    )
    assert stored["status"] == "halted" and stored["status_message"] == message
    assert e["best"]["model_id"] == by_scale[1.0]["model_id"]
    assert e["runs"][0]["model_id"] == by_scale[1.0]["model_id"]  # ranked best first
    # the median rule's verdict stands: resuming the experiment leaves that run halted
    refused = home.cli("resume", "experiment", e["experiment_id"])
    assert refused.returncode == 1, refused.stdout
    assert "none of the 1 failed or halted runs" in refused.stderr
    assert "1 stopped early (the median rule)" in refused.stderr, refused.stderr
    assert home.show(bad["model_id"])["status"] == "halted"
    # the TUI's R says so before asking (its question promised to start the halted run)
    said = asyncio.run(tui_resume_experiment(home, e["experiment_id"]))
    assert "None of the 1 halted or failed runs" in said and "1 stopped early" in said, said
    # its user disagrees: `trainui resume ID`, and the rule leaves it alone this time
    home.cli("resume", bad["model_id"], check=True)
    again = home.wait(bad["model_id"], "completed", "halted", "failed", timeout=60)
    assert again["status"] == "completed", again
    assert again["attempt"] == 2


def test_the_median_rule_judges_a_bad_run_that_is_ahead_of_the_others(home):
    """The bad run is the fast one: when it writes a step, no other has reached it; it is
    judged once enough others reach a step it passed, not left to run to its end."""
    e, by_scale = median_sweep(home, "lead", "0.05 if scale > 5 else 0.15", "range(60)")
    bad = by_scale[9.0]
    assert bad["status"] == "halted", bad
    assert bad["status_message"].startswith("stopped early: loss "), bad["status_message"]
    value, step, median = _parse_reason(bad["status_message"])
    assert step >= 5 and value > median
    assert bad["metrics"]["loss"]["step"] < 59  # stopped before its end
    # the better half goes on (1.2, worse than the median of 1.0, 1.1 and 9.0 at a step, may
    # be stopped too: the rule's own verdict)
    assert all(by_scale[s]["status"] == "completed" for s in (1.0, 1.1)), by_scale
    assert e["best"]["model_id"] == by_scale[1.0]["model_id"]


def _parse_reason(message: str) -> tuple[float, int, float]:
    # stopped early: loss 1.5 at step 5, median 0.1833
    words = message.replace(",", "").split()
    return float(words[3]), int(words[6]), float(words[8])


def test_halting_then_deleting_a_whole_experiment(home):
    model = home.model("h", {"t.py": ""})
    manifest = sweep_manifest(
        home,
        "echo started; sleep 1000",
        """\
        method: random
        count: 4
        seed: 11
        parameters:
          lr: {min: 0.0001, max: 0.1, log: true}
        """,
    )
    experiment_id, runs = train(home, model, manifest)
    home.wait(runs[0], "running")  # one CPU slot: the others wait
    assert home.show(runs[1])["status"] == "pending"
    out = home.cli("halt", "experiment", experiment_id, check=True).stdout
    assert f"Halting the experiment '{experiment_id}'" in out
    e = wait_ended(home, experiment_id, timeout=60)
    assert e["status"] == "halted"
    assert {r["status"] for r in e["runs"]} == {"halted"}
    pending = [r for r in e["runs"] if r["model_id"] != runs[0]]
    assert all("its experiment was halted" in r["status_message"] for r in pending)
    stored = home.buckets / "results" / runs[0] / "training-log.txt"
    assert "started" in stored.read_text()

    # hundreds of experiments are paged and filtered by state, as runs are
    other, _ = train(
        home, model, sweep_manifest(home, "true", "method: grid\nparameters: {a: [1]}")
    )
    wait_ended(home, other)
    transport = httpx.HTTPTransport(uds=str(home.path / "trainui.sock"))
    with httpx.Client(transport=transport, base_url="http://trainui") as api:
        answer = api.get("/v3/experiments", params={"limit": 1, "offset": 1}).json()
        assert answer["count"] == 2
        assert [e["experiment_id"] for e in answer["experiments"]] == [other]
        answer = api.get("/v3/experiments", params={"status": "halted,failed"}).json()
        assert [e["experiment_id"] for e in answer["experiments"]] == [experiment_id]
        assert answer["count"] == 1
        wrong = api.get("/v3/experiments", params={"status": "haltd"})
        assert wrong.status_code == 400 and "'haltd' is not an experiment's state" in wrong.text
    home.cli("delete", "experiment", other, check=True)

    home.cli("delete", "experiment", experiment_id, check=True)
    assert json.loads(home.cli("list", "experiments", "--json", check=True).stdout) == []
    assert json.loads(home.cli("list", "--json", check=True).stdout) == []
    gone = home.cli("show", "experiment", experiment_id)
    assert gone.returncode == 1 and "not found" in gone.stderr
    assert stored.exists()  # what the results bucket got stays
    assert not (home.path / "experiments" / experiment_id).exists()


def test_random_draws_are_reproducible_by_the_recorded_seed(home):
    home.env["TRAINUI_CPU_SLOTS"] = "1"
    model = home.model("r", {"t.py": ""})
    block = """\
        method: random
        count: 5
        parameters:
          lr: {min: 0.0001, max: 0.1, log: true}
          units: {min: 16, max: 256, integer: true}
          opt: [sgd, adam]
        """
    first, runs = train(home, model, sweep_manifest(home, "true", block, name="a"))
    e = experiment(home, first)
    seed = e["seed"]
    assert isinstance(seed, int)
    drawn = [home.show(m)["parameters"] for m in runs]
    assert all(1e-4 <= p["lr"] <= 0.1 and 16 <= p["units"] <= 256 for p in drawn)
    again, runs2 = train(
        home, model, sweep_manifest(home, "true ", block + f"seed: {seed}\n", name="b")
    )
    assert [home.show(m)["parameters"] for m in runs2] == drawn
    assert experiment(home, again)["seed"] == seed


def test_a_sweep_of_the_demo_model_finds_the_best_learning_rate(home, tmp_path):
    home.env["TRAINUI_CPU_SLOTS"] = "2"
    home.bucket("demo-data")
    shutil.copy(ROOT / "examples/demo/data/spirals.csv", home.buckets / "demo-data")
    manifest = tmp_path / "sweep.yml"
    # the example, with fewer epochs and no pause: the same ranking, sooner
    text = (ROOT / "examples/sweep/manifest.yml").read_text()
    manifest.write_text(text.replace("--epochs 30", "--epochs 12 --epoch-delay 0"))
    experiment_id, runs = train(home, ROOT / "examples/demo/model", manifest)
    assert len(runs) == 6
    e = wait_ended(home, experiment_id, timeout=180)
    assert e["runs_by_status"]["completed"] == 6, e["runs_by_status"]
    best = e["best"]
    assert best["parameters"]["learning_rate"] == 0.3, e["runs"]
    values = [r["metrics"]["val_loss"]["last"] for r in e["runs"]]
    assert values == sorted(values)  # ranked best first
    table = home.cli("show", "experiment", experiment_id, check=True).stdout
    first_row = next(line for line in table.splitlines() if line.strip().startswith("*1"))
    assert best["model_id"] in first_row and "0.3" in first_row


def test_a_bad_sweep_is_refused_at_validate_and_at_submit_with_located_errors(home, tmp_path):
    model = home.model("v", {"t.py": ""})
    manifest = sweep_manifest(
        home,
        "true",
        """\
        method: grid
        count: 3
        parameters:
          PATH: [1, 2]
          lr: {min: 0.5, max: 0.1}
          empty: []
        early_stopping: {after_steps: 10}
        """,
    )
    result = home.cli("validate", str(manifest))
    assert result.returncode == 1
    out = result.stdout + result.stderr
    lines = manifest.read_text().splitlines()
    at = lines.index("experiment:") + 1  # its 1-based line: method is the next
    assert f"{manifest}:{at + 2}:3: experiment.count: a grid runs every combination" in out
    assert f"{manifest}:{at + 4}:5: experiment.parameters.PATH: 'PATH' would shadow" in out
    assert f"{manifest}:{at + 5}:15: experiment.parameters.lr.min: min (0.5) is greater" in out
    assert f"{manifest}:{at + 6}:12: experiment.parameters.empty: an empty list" in out
    assert "experiment.early_stopping: early stopping compares runs by the objective" in out
    submitted = home.cli("train", str(model), str(manifest))
    assert submitted.returncode == 1
    assert "experiment.count" in submitted.stderr and "Traceback" not in submitted.stderr
    assert json.loads(home.cli("list", "experiments", "--json", check=True).stdout) == []


def test_the_cli_says_what_is_missing_or_unknown_instead_of_guessing(home):
    for verb in ("show", "halt", "delete"):  # "experiment" taken for a run's ID, before
        result = home.cli(verb, "experiment")
        assert result.returncode == 2, (verb, result.stderr)
        assert f"usage: trainui {verb} experiment ID (the experiment's ID is missing" in (
            result.stderr
        )
    plural = home.cli("show", "experiments")  # the list was meant: said where it is
    assert plural.returncode == 2 and plural.stderr.strip().endswith(
        "(the experiment's ID is missing; trainui list experiments lists them)"
    ), plural.stderr
    missing = home.cli("list", "--experiment", "experiment-AAAAAAAAA")  # no such experiment
    assert missing.returncode == 1 and "not found" in missing.stderr, missing
    as_json = home.cli("list", "--experiment", "experiment-AAAAAAAAA", "--json")
    assert as_json.returncode == 1 and as_json.stdout == "" and "not found" in as_json.stderr
    for verb in ("logs", "metrics", "download"):  # an experiment's ID where a run's goes
        wrong = home.cli(verb, "experiment-AAAAAAAAA")
        assert wrong.returncode == 1 and wrong.stderr == (
            "trainui: experiment-AAAAAAAAA is an experiment's ID, not a run's: trainui show "
            "experiment experiment-AAAAAAAAA shows its runs, trainui list --experiment "
            "experiment-AAAAAAAAA lists them\n"
        ), wrong.stderr
    for bad in ("../../etc/passwd", "a b"):  # not an ID: said so, not "is it the root?"
        wrong = home.cli("logs", bad)
        assert wrong.returncode == 1
        assert f"{bad!r} is not a run's ID (they look like training-XXXXXXXXX)" in wrong.stderr
    numbered = home.cli("show", "1")  # the SI No of `list`'s first row
    assert numbered.returncode == 1
    assert "run 1 not found: an SI No of trainui list numbers the rows" in numbered.stderr
    done, _ = train(
        home,
        home.model("s", {"t.py": ""}),
        sweep_manifest(home, "true", "method: grid\nparameters: {X: [1]}\n"),
    )
    wait_ended(home, done)
    going, _ = train(
        home,
        home.model("s", {"t.py": ""}),
        sweep_manifest(home, "sleep 60", "method: grid\nparameters: {X: [1]}\n"),
    )
    for states, expected in (("completed,halted", {done}), ("pending,running", {going})):
        filtered = home.cli("list", "experiments", "--status", states, "--json")
        assert filtered.returncode == 0, filtered.stderr
        assert {e["experiment_id"] for e in json.loads(filtered.stdout)} == expected, states
    home.cli("halt", "experiment", going, check=True)
    table = home.cli("list", "experiments", "--status", "bogus")
    # a usage error, as for runs (2, said before the service is asked), naming the states
    assert table.returncode == 2 and "'bogus' is not an experiment's state" in table.stderr
    assert "pending, running, completed, failed, halted" in table.stderr
    of_runs = home.cli("list", "experiments", "--metric", "loss")  # of runs: said
    assert of_runs.returncode == 2 and "--metric is of runs" in of_runs.stderr
    unknown = home.cli("list", "--status", "bogus")
    assert unknown.returncode == 2 and "'bogus' is not a state" in unknown.stderr
    broken = home.manifest("true")
    broken.write_text(broken.read_text() + "oops: [unclosed\n")
    submitted = home.cli("train", str(home.model("b", {"t.py": ""})), str(broken))
    assert submitted.returncode == 1
    located = [line for line in submitted.stderr.splitlines() if line.startswith(str(broken))]
    assert located and ": : " not in located[0], submitted.stderr  # as validate says it
    assert "Traceback" not in submitted.stderr


def test_a_run_that_crashed_with_the_best_value_is_not_the_experiments_best(home):
    model = home.model("c", {"t.py": ""})
    metrics = 'echo "{\\"step\\": 1, \\"acc\\": $v}" > $LOG_DIR/metrics.jsonl'
    manifest = sweep_manifest(
        home,
        f'{metrics}; [ "$v" != 0.9 ]',  # the run with v=0.9 writes acc 0.9, then fails
        """\
        method: grid
        parameters: {v: [0.9, 0.5, 0.7]}
        objective: {metric: acc, goal: maximize}
        """,
    )
    experiment_id, _runs = train(home, model, manifest)
    e = wait_ended(home, experiment_id)
    by_value = {r["parameters"]["v"]: r for r in e["runs"]}
    assert by_value[0.9]["status"] == "failed"
    assert [r["parameters"]["v"] for r in e["runs"]] == [0.7, 0.5, 0.9]
    assert e["best"]["model_id"] == by_value[0.7]["model_id"] and e["best"]["value"] == 0.7
    shown = home.cli("show", "experiment", experiment_id, check=True).stdout
    assert f"best {by_value[0.7]['model_id']}: 0.7" in shown
    # an objective no run reports (misspelt): said, not a column of dashes alone
    misspelt = sweep_manifest(
        home, metrics, "method: grid\nparameters: {v: [0.5]}\nobjective: {metric: accuracy}\n"
    )
    other, _ = train(home, model, misspelt)
    wait_ended(home, other)
    shown = home.cli("show", "experiment", other, check=True).stdout
    assert "Objective      accuracy (minimize); no run has reported accuracy" in shown, shown


def test_the_objective_ranks_runs_that_wrote_a_hundred_metrics_before_it(home):
    """Per-layer statistics first, the loss last: a run's record sums up its first hundred
    metrics, and its objective too, wherever it came."""
    model = home.model("layers", {"t.py": """\
        import json, os
        v = float(os.environ["v"])
        line = {"step": 1, **{f"grad/layer{i}": 0.1 for i in range(120)}, "val_loss": v}
        with open(os.path.join(os.environ["LOG_DIR"], "metrics.jsonl"), "w") as f:
            f.write(json.dumps(line) + "\\n")
        """})  # fmt: skip
    manifest = sweep_manifest(
        home,
        "python3 t.py",
        """\
        method: grid
        parameters: {v: [0.3, 0.1, 0.2]}
        objective: {metric: val_loss}
        """,
    )
    experiment_id, _runs = train(home, model, manifest)
    e = wait_ended(home, experiment_id)
    assert [r["parameters"]["v"] for r in e["runs"]] == [0.1, 0.2, 0.3], e["runs"]
    best = next(r for r in e["runs"] if r["parameters"]["v"] == 0.1)
    assert e["best"]["model_id"] == best["model_id"] and e["best"]["value"] == 0.1
    run = home.show(best["model_id"])
    assert len(run["metrics"]) == 101 and run["metrics"]["val_loss"]["last"] == 0.1
    listed = json.loads(home.cli("list", "experiments", "--json", check=True).stdout)
    assert listed[0]["best"]["value"] == 0.1


def test_the_data_bucket_is_staged_once_for_all_runs_of_an_experiment(home, s3_server):
    home.env["TRAINUI_CPU_SLOTS"] = "3"
    files = {f"part-{i}.csv": f"{i}," * 50_000 for i in range(3)}
    bucket = s3_server.bucket(files)
    connection = json.dumps(s3_server.connection())
    manifest = home.manifest("cat $DATA_DIR/part-1.csv | wc -c > $RESULT_DIR/n.txt", name="s3")
    text = manifest.read_text()
    text = text.replace(
        "training_data:\n  connection: {}\n  source: {bucket: data, type: local}",
        f"training_data:\n  connection: {connection}\n  source: {{bucket: {bucket}, type: s3}}",
    )
    manifest.write_text(text + "experiment:\n  method: grid\n  parameters: {i: [1, 2, 3]}\n")
    experiment_id, runs = train(home, home.model("s3", {"t.py": ""}), manifest)
    e = wait_ended(home, experiment_id)
    assert e["runs_by_status"]["completed"] == 3, e["runs"]
    downloaded = 0
    for model_id in runs:
        log = (home.path / "runs" / model_id / "training-log.txt").read_text()
        line = next(x for x in log.splitlines() if x.startswith("trainui: staged 3 objects"))
        downloaded += int(line.split(" from the cache, ")[1].split(" downloaded")[0])
        assert (home.buckets / "results" / model_id / "n.txt").read_text().strip() == "100000"
    assert downloaded == 3  # each object once, for the three runs (they ran at once)


def test_a_followed_sweep_says_why_each_failed_run_failed_and_the_counts(home):
    manifest = sweep_manifest(home, "exit $X", "method: grid\nparameters: {X: [0, 3]}\n")
    model = home.model("follow", {"t.py": ""})
    result = home.cli("train", str(model), str(manifest), "--follow", timeout=90)
    assert result.returncode == 0, result.stderr  # a run completed: the sweep's own exit code
    ended = [line for line in result.stdout.splitlines() if line.startswith("training-")]
    assert sorted(line.split(" ", 1)[1] for line in ended) == [
        "completed (X=0)",
        "failed: C201, exit 3 (X=3)",
    ], result.stdout
    assert "(1 completed, 1 failed)" in result.stderr.splitlines()[-1], result.stderr


def test_a_followed_sweep_halted_by_its_user_exits_1_as_a_halted_run(home):
    """`train --follow && next-step`: a halted experiment is not one that completed, though a
    run of it completed first (it exited 0, as if the sweep had ended)."""
    import subprocess
    import sys

    home.env["TRAINUI_CPU_SLOTS"] = "1"
    manifest = sweep_manifest(home, "sleep $X", "method: grid\nparameters: {X: [0, 1000]}\n")
    model = home.model("halted", {"t.py": ""})
    follow = subprocess.Popen(
        [sys.executable, "-m", "trainui", "train", str(model), str(manifest), "--follow"],
        env=dict(home.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            listed = json.loads(home.cli("list", "--json", check=True).stdout)
            if sorted(r["status"] for r in listed) == ["completed", "running"]:
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.2)
        experiment_id = listed[0]["experiment_id"]
        home.cli("halt", "experiment", experiment_id, check=True)
        out, err = follow.communicate(timeout=60)
    finally:
        follow.kill()
    assert follow.returncode == 1, out + err
    assert f"Experiment {experiment_id} halted (1 completed, 1 halted)" in err, err


def test_resuming_an_experiment_starts_its_failed_and_halted_runs_again(home):
    """`trainui resume experiment ID`: after a crash of some runs (or a halt to free the
    box), each halted or failed run starts again as its next attempt; `--status failed`
    only the failed ones; the runs that completed are left alone."""
    home.env["TRAINUI_CPU_SLOTS"] = "3"
    script = """\
        import os, sys, time
        x, attempt = sys.argv[1], os.environ["TRAINING_ATTEMPT"]
        print(f"x={x} attempt={attempt}", flush=True)
        if attempt == "1" and x == "2":
            sys.exit(3)  # a crash the next attempt does not have
        if attempt == "1" and x == "3":
            time.sleep(1000)  # halted with its experiment
        """
    model = home.model("resume-sweep", {"t.py": script})
    manifest = sweep_manifest(home, "python3 t.py $x", "method: grid\nparameters: {x: [1, 2, 3]}")
    experiment_id, runs = train(home, model, manifest)
    by_x = dict(zip((1, 2, 3), runs, strict=True))
    home.wait(by_x[1], "completed")
    home.wait(by_x[2], "failed")
    home.wait(by_x[3], "running")
    home.cli("halt", "experiment", experiment_id, check=True)
    assert wait_ended(home, experiment_id)["status"] == "halted"

    out = home.cli("resume", "experiment", experiment_id, "--status", "failed", check=True).stdout
    assert f"Resuming the experiment '{experiment_id}'" in out
    assert "Resumed 1 run: each waits for its turn" in out, out
    assert home.wait(by_x[2], "completed")["attempt"] == 2
    assert home.show(by_x[3])["status"] == "halted"  # not asked for
    # what the user halted was resumed in part: no longer the user's halt
    assert experiment(home, experiment_id)["status"] == "completed"

    out = home.cli("resume", experiment_id, check=True).stdout  # the ID alone says it too
    assert "Resumed 1 run" in out, out
    e = wait_ended(home, experiment_id)
    assert e["status"] == "completed"
    assert {r["model_id"]: (r["status"], r["attempt"]) for r in e["runs"]} == {
        by_x[1]: ("completed", 1),
        by_x[2]: ("completed", 2),
        by_x[3]: ("completed", 2),
    }
    log = home.cli("logs", by_x[3], check=True).stdout
    assert "x=3 attempt=1" in log and "x=3 attempt=2" in log

    again = home.cli("resume", "experiment", experiment_id)
    assert again.returncode == 1
    assert f"experiment {experiment_id} has no failed or halted run to resume" in again.stderr
    transport = httpx.HTTPTransport(uds=str(home.path / "trainui.sock"))
    with httpx.Client(transport=transport, base_url="http://trainui") as api:
        wrong = api.post(f"/v3/experiments/{experiment_id}/resume", params={"status": "completed"})
        assert wrong.status_code == 400, wrong.text
        assert "'completed' is not a state a run resumes from" in wrong.text
        assert api.post("/v3/experiments/experiment-aaaaaaaaa/resume").status_code == 404
    misuse = home.cli("resume", by_x[1], "--status", "failed")
    assert misuse.returncode == 2 and "--status chooses an experiment's runs" in misuse.stderr
