"""Metrics of a real local run (SPEC §8): the real CLI and service, a real learner following the
demo's JSONL, its log by a pattern and the TensorBoard example's event files (tensorboardX), the
points file in the run folder and in the results bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tensorboardX")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

METRICS = r"""
evaluation_metrics:
  - type: jsonl
  - type: log
    pattern: 'epoch (?P<step>\d+)/\d+ loss \S+ accuracy (?P<log_accuracy>[0-9.]+)'
  - type: tensorboard
    in: $JOB_STATE_DIR/logs/tb
"""


def test_a_runs_metrics_are_extracted_while_it_trains_and_stored(home):
    home.bucket("data", {"spirals.csv": (EXAMPLES / "demo" / "data" / "spirals.csv").read_text()})
    model = home.model(
        "metrics",
        {
            "train.py": (EXAMPLES / "demo" / "model" / "train.py").read_text(),
            "tb_train.py": (EXAMPLES / "tensorboard" / "model" / "train.py").read_text(),
        },
    )
    manifest = home.manifest(
        "python3 train.py --data $DATA_DIR/spirals.csv --epochs 5 --epoch-delay 0 --hidden 16"
        " && python3 tb_train.py --data $DATA_DIR/spirals.csv --steps 20 --delay 0"
    )
    manifest.write_text(manifest.read_text() + METRICS)
    assert home.cli("validate", str(manifest)).returncode == 0
    model_id = home.submit(model, manifest)
    run = home.wait(model_id, "completed", "failed")
    assert run["status"] == "completed", run

    points_file = home.path / "runs" / model_id / "metrics.jsonl"
    data = points_file.read_bytes()
    assert data.endswith(b"\n")
    points = [json.loads(line) for line in data.splitlines()]
    assert all(list(p) == ["metric", "step", "value", "time"] for p in points)
    series: dict[str, list[int]] = {}
    for p in points:
        series.setdefault(p["metric"], []).append(p["step"])
    assert series == {
        "loss": [1, 2, 3, 4, 5],
        "accuracy": [1, 2, 3, 4, 5],
        "log_accuracy": [1, 2, 3, 4, 5],
        "val_loss": [1, 2, 3, 4, 5],
        "val_accuracy": [1, 2, 3, 4, 5],
        "train/loss": [5, 10, 15, 20],
        "train/accuracy": [5, 10, 15, 20],
        "val/loss": [5, 10, 15, 20],
        "val/accuracy": [5, 10, 15, 20],
        "learning_rate": [5, 10, 15, 20],
    }
    log = (home.path / "runs" / model_id / "training-log.txt").read_text()
    accuracy = {p["step"]: p["value"] for p in points if p["metric"] == "accuracy"}
    logged = {p["step"]: p["value"] for p in points if p["metric"] == "log_accuracy"}
    assert logged == {step: round(value, 3) for step, value in accuracy.items()}
    assert "trainui: metrics: 45 points of 10 metrics in metrics.jsonl" in log
    stored = home.buckets / "results" / model_id / "metrics.jsonl"
    assert stored.read_bytes() == data
    # LOG_DIR is stored under logs/: TensorBoard reads the event files from the results bucket
    # (`tensorboard --logdir s3://results/ID/logs/tb`) as it read them on the box
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = home.buckets / "results" / model_id / "logs"
    assert (logs / "metrics.jsonl").exists()  # the command's own file, as it wrote it
    events = EventAccumulator(str(logs / "tb" / "train"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == series["train/loss"]


def test_what_extraction_says_never_cuts_a_line_of_the_command(home):
    # the command is halfway through a line when a malformed metrics line arrives: the
    # learner's word about it waits for the command's end, the command's line stays whole
    command = (
        "printf 'epoch 3 lo'; echo 'not json' > $LOG_DIR/metrics.jsonl; sleep 1; echo 'ss 0.5';"
        ' echo \'{"step": 1, "loss": 0.5}\' >> $LOG_DIR/metrics.jsonl'
    )
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest(command))
    assert home.wait(model_id, "completed", "failed")["status"] == "completed"
    log = home.cli("logs", model_id, check=True).stdout
    assert "\nepoch 3 loss 0.5\n" in log, log
    assert "trainui: metrics: a line of" in log and "not valid JSON" in log, log
    assert home.show(model_id)["metrics"]["loss"]["last"] == 0.5


def test_the_learner_never_reads_a_metrics_file_through_a_link_out_of_the_run(home, tmp_path):
    # the learner reads what the (sandboxed) command may not: a link in LOG_DIR to another
    # file must not lead it there, nor a FIFO make it wait for a writer forever
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"step": 1, "secret_number": 42}\n')
    secret.chmod(0o600)
    tb = tmp_path / "tb"  # a folder of event files out of the run, linked in
    tb.mkdir()
    linked = home.submit(
        home.model("l", {"t.py": ""}),
        home.manifest(
            f"ln -s {secret} $LOG_DIR/metrics.jsonl; mkdir $LOG_DIR/sub;"
            f" ln -s {secret} $LOG_DIR/sub/m.jsonl; echo linked"
        ),
    )
    fifo = home.submit(
        home.model("f", {"t.py": ""}),
        home.manifest("mkfifo $LOG_DIR/metrics.jsonl; echo made; sleep 1; echo bye"),
    )
    for model_id in (linked, fifo):
        assert home.wait(model_id, "completed", "failed", timeout=60)["status"] == "completed"
    shown = home.cli("metrics", linked).stdout + home.cli("metrics", fifo).stdout
    assert "secret_number" not in shown and "42" not in shown
    stored = home.buckets / "results" / linked / "metrics.jsonl"
    assert not stored.exists() or "secret" not in stored.read_text()


WIDE_METRICS = """\
import json, os
with open(os.path.join(os.environ["LOG_DIR"], "metrics.jsonl"), "w") as out:
    out.write(json.dumps({"step": 0, **{f"layer{i}/norm": float(i) for i in range(150)}}) + "\\n")
    out.write(json.dumps({"step": 1, "loss": 0.25}) + "\\n")
"""


def test_a_metric_past_the_records_first_hundred_is_listed_all_the_same(home):
    # per-layer statistics written before the loss: the run's record sums up the first 100
    model_id = home.submit(home.model("w", {"w.py": WIDE_METRICS}), home.manifest("python3 w.py"))
    assert home.wait(model_id, "completed", "failed", timeout=60)["status"] == "completed"
    listed = home.cli("list", "--metric", "loss", "--metric", "layer3/norm", check=True).stdout
    row = next(line for line in listed.splitlines() if model_id in line)
    assert row.split()[-2:] == ["0.25", "3"], listed
    shown = home.cli("show", model_id, check=True).stdout
    assert f"more or over: trainui metrics {model_id})" in shown, shown
