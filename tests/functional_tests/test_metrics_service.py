"""A run's metrics through the service (SPEC §8): real runs whose command writes
$LOG_DIR/metrics.jsonl (the learner's zero-configuration source), the REST API, the client,
the CLI, the events, and a service SIGKILLed mid-run."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
import time

import pytest

from trainui.client import BlockingClient, Client, ClientError

POINTS = "$LOG_DIR/metrics.jsonl"  # where the command writes; the learner reads it

# SPEC §8's JSONL: a line a step, its numbers the metrics. loss and eval/acc for steps 0..29,
# then a restarted attempt from step 20 (loss only)
TRAIN = """\
import json, os, time
path = os.path.expandvars("{points}")
with open(path, "a") as f:
    def put(step, **metrics):
        f.write(json.dumps({{"step": step, **metrics, "time": 1.7e9 + step}}) + "\\n")
        f.flush()
    for step in range(30):
        put(step, **{{"loss": 10.0 / (step + 1), "eval/acc": step / 30}})
        time.sleep({pause})
    for step in range(20, 25):
        put(step, loss=50.0 + step)
print("trained")
"""


def train_py(pause: float = 0.01, points: str = POINTS) -> dict[str, str]:
    return {"train.py": TRAIN.format(points=points, pause=pause)}


def file_points(home, model_id: str) -> list[dict]:
    text = (home.path / "runs" / model_id / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_a_runs_metrics_through_rest_client_cli_list_and_events(home):
    model_id = home.submit(home.model("m", train_py()), home.manifest("python3 train.py"))
    run = home.wait(model_id, "completed", "failed", "halted", timeout=90)
    assert run["status"] == "completed", home.cli("logs", model_id).stdout
    written = file_points(home, model_id)
    assert len(written) == 65
    # the run record's summary, persisted: show, and list's fields
    # min and max of the points shown (the restart from step 20 went over the first
    # attempt's 20..29, down to 10/30); steps: every point written
    loss = {"last": 74.0, "step": 24, "min": 0.5, "max": 74.0, "steps": 35}
    acc = {"last": 29 / 30, "step": 29, "min": 0.0, "max": 29 / 30, "steps": 30}
    assert run["metrics"] == {"loss": loss, "eval/acc": acc}
    with BlockingClient(home=str(home.path)) as client:
        summary = client.metrics(model_id)
        assert summary["model_id"] == model_id
        assert [m["name"] for m in summary["metrics"]] == ["loss", "eval/acc"]
        assert {k: summary["metrics"][0][k] for k in loss} == loss
        assert summary["metrics"][0]["time"] == 1.7e9 + 24
        # the display series: the restart from step 20 purged the first attempt's 20..29
        shown = client.metric_points(model_id, "loss")
        assert shown["steps"] == list(range(25)) and shown["downsampled"] is False
        assert shown["values"][19:] == [0.5, 70.0, 71.0, 72.0, 73.0, 74.0]
        assert client.metric_points(model_id, "loss", after_step=22)["steps"] == [23, 24]
        small = client.metric_points(model_id, "eval/acc", max_points=6)
        assert small["downsampled"] is True and len(small["steps"]) <= 6
        assert small["steps"][0] == 0 and small["steps"][-1] == 29
        # every point as written (the export), from an offset
        every = client.metric_points(model_id, "loss", offset=0)
        assert every["steps"] == [*range(30), *range(20, 25)]
        assert client.metric_points(model_id, "loss", offset=33)["steps"] == [23, 24]
        # a view's charts in one request: the summary with the display series of the metrics
        # named (a name with '/', one the run lacks: left out), each as metric_points answers
        with_series = client.metrics(model_id, max_points=6, names=["eval/acc", "loss", "nope"])
        assert with_series["metrics"] == summary["metrics"]
        assert list(with_series["series"]) == ["eval/acc", "loss"]
        series_keys = ("steps", "values", "times", "downsampled")
        assert with_series["series"]["eval/acc"] == {k: small[k] for k in series_keys}
        assert with_series["series"]["loss"]["steps"][-1] == 24  # the purged series, downsampled
        every_metric = client.metrics(model_id, max_points=1000)["series"]  # none named: all
        assert list(every_metric) == ["loss", "eval/acc"]
        assert every_metric["loss"] == {k: shown[k] for k in series_keys}
        assert client.metrics(model_id, names=["loss"])["series"]["loss"]["steps"] == shown["steps"]
        assert "series" not in client.metrics(model_id)  # the summary alone, as before
        answer = client.http.get(f"/v3/models/{model_id}/metrics?max_points=1")
        assert answer.status_code == 400
        assert answer.json()["message"] == "max_points must be at least 2"
        # refusals: an unknown metric (404, naming what there is), a bad query (400, located),
        # an unknown run (404 as everywhere)
        with pytest.raises(ClientError) as refused:
            client.metric_points(model_id, "los")
        assert refused.value.status == 404
        assert (
            str(refused.value)
            == f"run {model_id} has no metric 'los' (its metrics: loss, eval/acc)"
        )
        with pytest.raises(ClientError, match="max_points must be at least 2") as refused:
            client.metric_points(model_id, "loss", max_points=1)
        assert refused.value.status == 400
        answer = client.http.get(f"/v3/models/{model_id}/metrics/loss?after_step=ten")
        assert answer.status_code == 400
        assert answer.json()["message"] == "after_step must be a whole number, not 'ten'"
        answer = client.http.get(f"/v3/models/{model_id}/metrics/loss?offset=0&max_points=9")
        assert answer.status_code == 400 and "offset" in answer.json()["message"]
        with pytest.raises(ClientError, match="not found") as refused:
            client.metrics("training-000000000")
        assert refused.value.status == 404
    # the CLI: the summary table, JSON lines, CSV, --metric
    table = home.cli("metrics", model_id, check=True).stdout.splitlines()
    assert table[0].split() == ["metric", "last", "min", "max", "steps"]
    assert table[1].split() == ["loss", "74", "0.5", "74", "35"]
    assert table[2].split() == ["eval/acc", "0.966667", "0", "0.966667", "30"]
    lines = home.cli("metrics", model_id, "--json", check=True).stdout.splitlines()
    exported = [json.loads(line) for line in lines]
    by_metric = sorted(written, key=lambda p: p["metric"] != "loss")  # metric by metric
    assert exported == by_metric
    rows = list(csv.reader(io.StringIO(home.cli("metrics", model_id, "--csv", check=True).stdout)))
    assert rows[0] == ["metric", "step", "value", "time"]
    assert [(r[0], int(r[1]), float(r[2]), float(r[3])) for r in rows[1:]] == [
        (p["metric"], p["step"], p["value"], p["time"]) for p in by_metric
    ]
    only = home.cli("metrics", model_id, "--json", "--metric", "eval/acc", check=True).stdout
    assert [json.loads(line)["metric"] for line in only.splitlines()] == ["eval/acc"] * 30
    wrong = home.cli("metrics", model_id, "--metric", "los")
    assert wrong.returncode == 1 and f"run {model_id} has no metric 'los'" in wrong.stderr
    # followed, the run having ended: said too, not a silent success
    wrong = home.cli("metrics", model_id, "--follow", "--metric", "los")
    assert wrong.returncode == 1 and f"run {model_id} has no metric 'los'" in wrong.stderr
    assert wrong.stdout == ""
    # followed to its end: every point, then how the run ended (0: it completed)
    followed = home.cli("metrics", model_id, "--follow", "--metric", "eval/acc")
    assert followed.returncode == 0 and len(followed.stdout.splitlines()) == 30
    assert f"Run {model_id} completed" in followed.stderr
    # list --metric: a column each, "-" for a run without that metric (or without any)
    other = home.submit(home.model("n", {"t.py": ""}), home.manifest("true", name="other"))
    home.wait(other, "completed", timeout=60)
    listed = home.cli("list", "--metric", "loss", "--metric", "eval/acc", check=True).stdout
    header, *rows_ = listed.splitlines()[1:4]
    assert header.split()[-2:] == ["loss", "eval/acc"]
    row = next(r for r in rows_ if model_id in r)
    assert row.split()[-2:] == ["74", "0.966667"]
    cells = next(r for r in rows_ if other in r).split()
    assert cells[-3].endswith("Z") and cells[-2:] == ["-", "-"]  # no values
    fields = home.cli("show", other, "--json", check=True).stdout
    assert json.loads(fields)["metrics"] is None
    # as `logs --follow`: a run that did not complete is not a success for a script
    point = '{"step": 1, "loss": 0.5}'
    broken = home.submit(
        home.model("b", {"t.py": ""}),
        home.manifest(f"echo '{point}' > $LOG_DIR/metrics.jsonl; exit 3", name="broken"),
    )
    home.wait(broken, "failed", timeout=60)
    followed = home.cli("metrics", broken, "--follow", "--csv")
    assert followed.returncode == 1, followed.stderr
    lines = followed.stdout.splitlines()  # the header and its point
    assert len(lines) == 2 and lines[1].startswith("loss,1,0.5,"), lines
    assert f"Run {broken} failed:" in followed.stderr and "exited with code 3" in followed.stderr

    # the events: metrics events were sent for the run (kept for Last-Event-ID)
    async def metrics_events() -> list[dict]:
        seen = []
        async with Client(home=str(home.path)) as client:
            async for _id, kind, data in client.events(last_id=0):
                if kind == "metrics" and data["model_id"] == model_id:
                    seen.append(data)
                if kind == "run" and data.get("model_id") == other:
                    return seen  # the events of the second run came after all of the first's

    events = asyncio.run(asyncio.wait_for(metrics_events(), 30))
    assert events and all(e["owner"] == run["owner"] for e in events)
    last = {}
    for event in events:
        last.update(event["metrics"])
    assert last == {"loss": {"last": 74.0, "step": 24}, "eval/acc": {"last": 29 / 30, "step": 29}}


def test_a_service_killed_mid_run_loses_and_repeats_no_point(home):
    model_id = home.submit(home.model("m", train_py(pause=0.15)), home.manifest("python3 train.py"))
    follow = subprocess.Popen(
        [sys.executable, "-m", "trainui", "metrics", model_id, "--follow", "--json"],
        env=home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (home.show(model_id).get("metrics") or {}).get("loss", {}).get("steps", 0) > 8:
            assert time.monotonic() < deadline, home.show(model_id)
            time.sleep(0.1)
        home.kill_service()
        time.sleep(0.5)  # points are written meanwhile, with no service to read them
        out, err = follow.communicate(timeout=90)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0, err
    run = home.wait(model_id, "completed", "failed", timeout=60)
    assert run["status"] == "completed"
    written = file_points(home, model_id)
    assert len(written) == 65
    followed = [json.loads(line) for line in out.splitlines()]
    # each point once: per metric in the order written (the follower asks metric by metric)
    for metric in ("loss", "eval/acc"):
        assert [p for p in followed if p["metric"] == metric] == [
            p for p in written if p["metric"] == metric
        ]
    assert len(followed) == len(written)
    # the restarted service read the file again, from the start: the same summary, once
    summary = {
        m["name"]: m["steps"]
        for m in BlockingClient(home=str(home.path)).metrics(model_id)["metrics"]
    }
    assert summary == {"loss": 35, "eval/acc": 30}
    assert run["metrics"]["loss"]["steps"] == 35 and run["metrics"]["loss"]["last"] == 74.0
