"""A home made by an older trainui opens with today's: its run store migrated, every run there."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

from trainui.service.store import MIGRATIONS

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "home-v0"
COMPLETED, FAILED, BLOCKER, PENDING = (
    "training-K0d6ebJfp", "training-6Ny449Zbp", "training-ZaSosCwTZ", "training-pH6uCciWo",
)  # fmt: skip


def test_a_home_of_stop_11_opens_with_every_run_intact(home):
    shutil.copytree(FIXTURE, home.path, ignore=shutil.ignore_patterns("README.md"))
    before = sqlite3.connect(home.path / "runs.db")
    assert before.execute("PRAGMA user_version").fetchone()[0] == 0
    before.row_factory = sqlite3.Row
    records = {row["model_id"]: dict(row) for row in before.execute("SELECT * FROM runs")}
    before.close()
    runs = {
        run["model_id"]: run for run in json.loads(home.cli("list", "--json", check=True).stdout)
    }
    assert set(runs) == {COMPLETED, FAILED, BLOCKER, PENDING} == set(records)
    assert runs[COMPLETED]["status"] == "completed" and runs[COMPLETED]["exit_code"] == 0
    assert runs[FAILED]["status"] == "failed" and runs[FAILED]["error_code"] == "C201"
    assert runs[FAILED]["exit_code"] == 3
    for model_id, run in runs.items():  # what the API shows of each, as the old store had it
        for field in ("name", "owner", "resource", "submitted_at", "description"):
            assert run[field] == records[model_id][field], (model_id, field)
    assert runs[COMPLETED]["description"] == "made by trainui before schema versions"
    # issue 16's step: a run before it has no metrics (null), and says so
    assert all(run["metrics"] is None for run in runs.values())
    assert "has no metric points" in home.cli("metrics", COMPLETED, check=True).stdout
    # issue 17's step: no run was of an experiment, and there is none
    assert all(run["experiment_id"] is None and run["parameters"] is None for run in runs.values())
    assert json.loads(home.cli("list", "experiments", "--json", check=True).stdout) == []
    # issue 19's step: each run had its one attempt, and no restarts
    assert all(
        (run["attempt"], run["max_restarts"], run["attempts"]) == (1, 0, None)
        for run in runs.values()
    )
    assert "hello from the model" in home.cli("logs", COMPLETED, check=True).stdout
    # the blocker ended while no service ran: its status file says how, and the store learns it
    blocker = home.wait(BLOCKER, "failed", timeout=30)
    assert blocker["status_message"] == "the training command was killed by signal SIGKILL"
    # the run that waited behind it, its files kept in the old store, now runs with today's
    pending = home.wait(PENDING, "completed", "failed", timeout=60)
    log = home.cli("logs", PENDING, check=True).stdout
    assert pending["status"] == "completed", log
    assert "started after the upgrade" in log
    after = sqlite3.connect(home.path / "runs.db")
    assert after.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    after.close()
    # the store as it was is kept beside it, 0600
    aside = home.path / "runs.db.v0"
    assert aside.stat().st_mode & 0o777 == 0o600
    copy = sqlite3.connect(aside)
    assert copy.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4
    copy.close()


def test_a_home_of_a_newer_trainui_is_refused_in_a_sentence(home):
    home.path.mkdir(parents=True)
    db = sqlite3.connect(home.path / "runs.db")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    refused = home.cli("serve", "--no-tcp")
    assert refused.returncode != 0
    assert "written by a newer trainui" in refused.stderr and "Traceback" not in refused.stderr


def test_control_characters_kept_by_an_older_trainui_are_escaped_on_upgrade(home):
    """Before stop 27, a name or a parameter value could hold an escape sequence, which then
    rewrote the terminal of whoever listed the runs (the TUI's too). A home of schema 4 with
    such records opens with them written as \\xNN; a description keeps its line ends."""
    model = home.model("m", {"train.py": "print(1)\n"})
    sweep = home.manifest("echo $LR", name="sweep")
    sweep.write_text(
        sweep.read_text() + "experiment:\n  method: grid\n  parameters:\n    LR: [a, b]\n"
    )
    out = home.cli("train", str(model), str(sweep), check=True).stdout
    experiment_id = re.search(r"experiment-\w+", out).group()
    model_id = re.findall(r"training-\w+", out)[0]
    home.wait(model_id, "completed", "failed")
    home.kill_service()
    db = sqlite3.connect(home.path / "runs.db")
    evil = "x\x1b[2J\x1b[31mred"
    db.execute("PRAGMA user_version = 4")  # as stop 26 left it: without the later columns
    db.execute("ALTER TABLE runs DROP COLUMN resumed_at")  # step 6's
    db.execute(
        "UPDATE runs SET name = ?, description = ?, parameters = ?, metrics = ? WHERE model_id = ?",
        (
            evil,
            "two\nlines\x07",
            json.dumps({"LR": evil}),
            json.dumps({evil: {"last": 1.0, "step": 1, "min": 1.0, "max": 1.0, "steps": 1}}),
            model_id,
        ),
    )
    (spec,) = db.execute(
        "SELECT spec FROM experiments WHERE experiment_id = ?", (experiment_id,)
    ).fetchone()
    spec = json.loads(spec)
    spec["name"], spec["parameters"]["LR"]["values"][0] = evil, evil
    db.execute(
        "UPDATE experiments SET name = ?, spec = ? WHERE experiment_id = ?",
        (evil, json.dumps(spec), experiment_id),
    )
    db.commit()
    db.close()
    shown = "x\\x1b[2J\\x1b[31mred"
    texts = [
        home.cli(*words, check=True).stdout
        for words in (
            ("list",),
            ("show", model_id),
            ("list", "experiments"),
            ("show", "experiment", experiment_id),
        )
    ]
    for text in texts:
        assert "\x1b" not in text and shown in text, text
    # a description's second line in the value's column, not at the line's start
    assert "Description    two\n               lines\\x07\n" in texts[1], texts[1]
    run = home.show(model_id)
    assert (run["name"], run["parameters"], run["description"], list(run["metrics"])) == (
        shown, {"LR": shown}, "two\nlines\\x07", [shown],
    )  # fmt: skip
    after = sqlite3.connect(home.path / "runs.db")
    assert after.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    after.close()
    assert (home.path / "runs.db.v4").exists()


def test_a_number_that_is_not_finite_recorded_by_an_older_trainui_is_null_not_a_500(home):
    """An older trainui took a random range as wide as a float holds, and drew infinity: the
    run's parameters kept it. Every run of the home is still listed and shown, as JSON that
    any reader takes (null, not Infinity, which no JSON reader does)."""
    model = home.model("m", {"train.py": "print(1)\n"})
    sweep = home.manifest("echo $B", name="wide")
    sweep.write_text(sweep.read_text() + "experiment:\n  method: grid\n  parameters:\n    B: [1]\n")
    out = home.cli("train", str(model), str(sweep), check=True).stdout
    experiment_id = re.search(r"experiment-\w+", out).group()
    model_id = re.findall(r"training-\w+", out)[0]
    other = home.submit(model, home.manifest("true", name="other"))
    home.wait(model_id, "completed", "failed")
    home.wait(other, "completed", "failed")
    home.kill_service()
    db = sqlite3.connect(home.path / "runs.db")
    db.execute("UPDATE runs SET parameters = ? WHERE model_id = ?", ('{"B": Infinity}', model_id))
    db.commit()
    db.close()
    listed = home.cli("list", "--json", check=True).stdout
    assert "Infinity" not in listed
    runs = {run["model_id"]: run for run in json.loads(listed)}
    assert set(runs) == {model_id, other} and runs[model_id]["parameters"] == {"B": None}
    assert "wide" in home.cli("list", check=True).stdout
    fields = home.cli("list", "--json", "--experiment", experiment_id, check=True).stdout
    assert json.loads(fields)[0]["parameters"] == {"B": None}
    assert home.show(model_id)["parameters"] == {"B": None}
    assert "Parameters" in home.cli("show", model_id, check=True).stdout
    shown = home.cli("show", "experiment", experiment_id, "--json", check=True).stdout
    assert json.loads(shown)["runs"][0]["parameters"] == {"B": None}
