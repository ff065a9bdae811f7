"""Metrics extraction in the learner (SPEC §8): JSONL, TensorBoard event files written by a real
writer (tensorboardX), log lines matched by a pattern; the extractor thread and its points file;
the manifest's ``evaluation_metrics``."""

from __future__ import annotations

import json
import math
import sys
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from trainui.core.manifest import json_schema, metric_sources, parse_manifest
from trainui.learner import metrics
from trainui.learner.metrics import (
    Extractor,
    JsonlSource,
    LogSource,
    Point,
    Tally,
    TensorboardSource,
    expand,
)

tensorboardX = pytest.importorskip("tensorboardX")


class Said(list):
    """What the extraction said in the run's log."""

    def text(self) -> str:
        return "\n".join(self)


def drain(source, final: bool = False) -> list[Point]:
    out: list[Point] = []
    source.poll(out, False)
    while source.more:
        source.poll(out, False)
    if final:
        source.poll(out, True)
    return out


def collect(source, count: int, *writers, timeout: float = 10) -> list[Point]:
    """Poll ``source`` until it gave ``count`` points: tensorboardX writes from a thread of
    its own, and its ``flush()`` does not wait for the events still queued."""
    out: list[Point] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        assert time.monotonic() < deadline, f"{len(out)} points of {count}: {out}"
        for writer in writers:
            writer.flush()
        out += drain(source)
        time.sleep(0.01)
    return out


def triples(points: list[Point]) -> list[tuple[str, int, float]]:
    return [(p.metric, p.step, p.value) for p in points]


# ------------------------------------------------------------------------------------- JSONL


def test_jsonl_torn_line_waits_for_its_newline_and_bad_values_are_counted(tmp_path):
    path = tmp_path / "metrics.jsonl"
    said = Said()
    source = JsonlSource(str(path), Tally(said.append))
    assert drain(source) == []  # not there yet: nothing, and nothing said
    with path.open("w") as f:
        f.write('{"step": 1, "loss": 0.5, "accuracy": 0.25, "time": 1700000000.5}\n')
        f.write('{"step": 2, "lo')  # torn: the writer is halfway through the line
        f.flush()
        got = drain(source)
        assert triples(got) == [("loss", 1, 0.5), ("accuracy", 1, 0.25)]
        assert got[0].time == 1700000000.5
        f.write('ss": 0.4, "done": true, "name": "x", "nested": {"a": 1}}\n')
        # Python's json writes NaN and Infinity: read, then skipped as non-finite
        f.write(json.dumps({"step": 3, "loss": math.nan, "accuracy": math.inf, "lr": 0.1}) + "\n")
        f.write("not json at all\n\n[1, 2]\n")
        f.write('{"loss": 0.3}\n')  # no step: the one after the last line's (3): 4
        f.write('{"step": 1, "loss": 0.9}\n')  # a restarted attempt: the step goes back, kept
        f.write('{"step": "x", "loss": 1}\n')
        f.write('{"step": 1e20, "loss": 1}\n')  # whole, but beyond a 64-bit step
        f.write('{"step": 100000000000000000000, "loss": 1}\n')
        f.write('{"step": 7.0, "loss": 1e400}\n')  # a float step that is whole; 1e400 is inf
        f.write('{"step": 8, "loss": 0.2}')  # the last line, complete JSON without its newline
        f.flush()
        got = drain(source)
        assert triples(got) == [
            ("loss", 2, 0.4),
            ("lr", 3, 0.1),
            ("loss", 4, 0.3),
            ("loss", 1, 0.9),
        ]
        assert all(isinstance(p.step, int) and isinstance(p.value, float) for p in got)
        assert triples(drain(source, final=True)) == [("loss", 8, 0.2)]
    counts = source.tally.counts
    assert counts == {
        "non-finite": 3,
        "jsonl-malformed": 1,
        "jsonl-object": 1,
        "jsonl-step": 3,
    }
    text = said.text()
    assert "not valid JSON" in text and "non-finite value (loss=nan)" in text
    assert text.count("non-finite") == 1  # each kind said once


def test_a_metric_name_with_a_control_character_or_overlong_is_left_out_and_said_escaped(tmp_path):
    """A newline in a name forged a "trainui: completed" line in the run's log and split the
    rows of `trainui metrics`; an escape sequence recoloured the terminal."""
    path = tmp_path / "metrics.jsonl"
    with path.open("w") as f:
        f.write(json.dumps({"step": 0, "x\ntrainui: completed\u001b[2J": math.nan, "ok": 1}))
        f.write("\n" + json.dumps({"step": 1, "lo\u001b[31mss": 2, "y" * 300: 3, "ok": 2}) + "\n")
        f.write(json.dumps({"step": 2, "résumé/accuracy ✓": 0.5, "y" * 256: 4}) + "\n")
    said = Said()
    source = JsonlSource(str(path), Tally(said.append))
    assert triples(drain(source)) == [
        ("ok", 0, 1.0),
        ("ok", 1, 2.0),
        ("résumé/accuracy ✓", 2, 0.5),
        ("y" * 256, 2, 4.0),
    ]
    assert source.tally.counts == {"name": 3}
    text = said.text()
    assert "\x1b" not in text and "\ntrainui: completed" not in text
    assert "'x\\ntrainui: completed\\x1b[2J'" in text, text
    # a TensorBoard tag alike
    writer = tensorboardX.SummaryWriter(str(tmp_path / "tb"))
    writer.add_scalar("good", 1.0, 0)
    writer.file_writer.add_summary(scalar_pb("bad\u001b[31m", 0.5), 0)
    writer.close()
    tb = TensorboardSource.make(str(tmp_path / "tb"), Tally(said.append))
    assert triples(drain(tb, final=True)) == [("good", 0, 1.0)]
    assert tb.tally.counts == {"name": 1}


def test_jsonl_a_torn_last_line_at_the_end_is_counted_not_parsed(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 1}\n{"step": 2, "lo')
    source = JsonlSource(str(path), Tally(Said().append))
    assert triples(drain(source, final=True)) == [("loss", 1, 1.0)]
    assert source.tally.counts == {"jsonl-torn": 1}


def test_jsonl_a_replaced_file_is_read_again_from_its_start(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 1}\n{"step": 2, "loss": 2}\n')
    said = Said()
    source = JsonlSource(str(path), Tally(said.append))
    assert len(drain(source)) == 2
    path.write_text('{"step": 1, "loss": 3}\n')  # shorter: the command started it over
    assert triples(drain(source)) == [("loss", 1, 3.0)]
    assert "read again from its start" in said.text()


def test_jsonl_ten_thousand_tags_and_large_files_read_in_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "READ_BYTES", 64 << 10)  # many passes over one file
    path = tmp_path / "m.jsonl"
    with path.open("w") as f:
        for step in range(3):
            f.write(json.dumps({"step": step, **{f"t{i}": i + step for i in range(10_000)}}))
            f.write("\n")
    source = JsonlSource(str(path), Tally(Said().append))
    got = drain(source, final=True)
    assert len(got) == 30_000
    assert len({p.metric for p in got}) == 10_000
    assert triples(got)[-1] == ("t9999", 2, 10001.0)


# ------------------------------------------------------------------------------------- log


def test_a_pattern_on_a_real_log(tmp_path, monkeypatch):
    monkeypatch.setenv("RESULT_DIR", str(tmp_path / "results"))  # the run's files: in tmp_path
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("CHECKPOINT_DIR", raising=False)
    # the demo's own output, as its run's log holds it (with the learner's lines between)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "demo" / "model"))
    try:
        import train
    finally:
        sys.path.pop(0)
        sys.modules.pop("train", None)  # the demo's module: no other test's "train"
    data = Path(__file__).resolve().parents[2] / "examples" / "demo" / "data" / "spirals.csv"
    log = tmp_path / "training-log.txt"
    import contextlib
    import io

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        args = ["--data", str(data), "--epochs", "4", "--epoch-delay", "0", "--hidden", "16"]
        assert train.main(args) == 0
    lines = output.getvalue().splitlines()
    log.write_text(
        "trainui: running on CPU\n" + "\n".join(lines[:4]) + "\ntrainui: epoch 99/99 loss 1\n"
    )
    pattern = r"epoch (?P<step>\d+)/\d+ loss (?P<loss>[0-9.]+) accuracy (?P<accuracy>[0-9.]+)"
    said = Said()
    source = LogSource(str(log), pattern, Tally(said.append))
    got = drain(source)
    expected = []
    for line in lines:
        if line.startswith("epoch ") and int(line.split()[1].split("/")[0]) <= 2:
            step = int(line.split()[1].split("/")[0])
            expected += [("loss", step, float(line.split()[3])), ("accuracy", step, None)]
    assert [(m, s) for m, s, _ in triples(got)] == [(m, s) for m, s, _ in expected]
    assert [v for m, _, v in triples(got) if m == "loss"] == [v for m, _, v in expected if v]
    with log.open("a") as f:  # the rest of the output comes; a last line without newline
        f.write("\n".join(lines[4:]))
    got = drain(source, final=True)
    assert [p.step for p in got if p.metric == "loss"] == [3, 4]
    assert said == []


def test_a_log_cut_at_its_cap_says_its_pattern_reads_no_further(tmp_path):
    # the command goes on past the cap, its lines dropped: an objective read from them would
    # stop at the cut without a word
    from trainui.core.runs import LOG_CUT

    log = tmp_path / "log.txt"
    log.write_text(f"loss=0.5\n{LOG_CUT}, at 1,024 bytes of the command's output\n")
    said = Said()
    source = LogSource(str(log), r"loss=(?P<loss>\S+)", Tally(said.append), "the run's log")
    assert triples(drain(source, final=True)) == [("loss", 0, 0.5)]
    assert said == [
        "the run's log was cut at its cap (TRAINUI_LOG_MAX_BYTES): the pattern "
        f"{source.pattern!r} reads no line after the cut, its later points are not recorded"
    ]


def test_a_jsonl_line_without_step_comes_after_the_last_step_and_an_empty_name_is_left_out(
    tmp_path,
):
    # the line's ordinal put a step-less line behind an explicit step 10: the point at 10 was
    # then dropped from the curves as a step going back
    path = tmp_path / "metrics.jsonl"
    lines = ["garbage", '{"loss": 1}', '{"loss": 2}', "", '{"step": 10, "loss": 4}',
             '{"loss": 5}', '{"loss": 6, "": 3}']  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    source = JsonlSource(str(path), Tally(Said().append))
    assert triples(drain(source, final=True)) == [
        ("loss", 0, 1.0), ("loss", 1, 2.0), ("loss", 10, 4.0), ("loss", 11, 5.0), ("loss", 12, 6.0),
    ]  # fmt: skip
    assert source.tally.counts == {"jsonl-malformed": 1, "name": 1}


def test_a_pattern_without_step_counts_matches_and_bad_numbers_are_counted(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("loss=0.5\nnoise\nloss=nan\nloss=1.2.3\nloss=0.25\n")
    source = LogSource(str(log), r"loss=(?P<loss>\S+)", Tally(Said().append))
    assert triples(drain(source, final=True)) == [("loss", 0, 0.5), ("loss", 3, 0.25)]
    assert source.tally.counts == {"non-finite": 1, "log-number": 1}


def test_a_progress_bar_s_carriage_returns_end_lines_and_an_endless_line_is_left_out(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(metrics, "LONGEST_LINE", 1000)
    log = tmp_path / "log.txt"
    # tqdm redraws its bar with \r, never a newline: each redraw is a line of its own
    log.write_text("".join(f"\rstep {i} loss {1 / (i + 1):.3f}" for i in range(3)) + "\n")
    source = LogSource(str(log), r"step (?P<step>\d+) loss (?P<loss>\S+)", Tally(Said().append))
    assert triples(drain(source)) == [("loss", 0, 1.0), ("loss", 1, 0.5), ("loss", 2, 0.333)]
    with log.open("a") as f:  # a line that never ends: not held in memory, left out whole
        for _ in range(5):
            f.write("x" * 600)
            f.flush()
            drain(source)
        f.write(" step 9 loss 0.1\nstep 10 loss 0.05\n")
    assert triples(drain(source, final=True)) == [("loss", 10, 0.05)]
    assert len(source.lines.rest) < 1000
    assert source.tally.counts == {"line-too-long": 1}


# ------------------------------------------------------------------------------- tensorboard


def scalar_pb(tag: str, value: float):
    """A TF2-style scalar (a 0-d tensor with the scalars plugin's metadata), by tensorboard."""
    from tensorboard.plugins.scalar.summary import scalar_pb as make
    from tensorboardX.proto.summary_pb2 import Summary

    return Summary.FromString(make(tag, value).SerializeToString())


def test_tensorboard_event_files_followed_as_they_grow_and_appear(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "SCAN_INTERVAL", 0.0)
    folder = tmp_path / "tb"
    said = Said()
    source = TensorboardSource.make(str(folder), Tally(said.append), "$LOG_DIR/tb")
    assert drain(source) == []  # no folder yet
    writer = tensorboardX.SummaryWriter(str(folder), flush_secs=3600)
    for step in range(3):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        writer.add_scalar("lr", 0.5, step)
    writer.add_text("note", "not a scalar", 0)
    writer.add_histogram("weights", [1.0, 2.0, 3.0], 0)
    writer.file_writer.add_summary(scalar_pb("tensor/acc", 0.75), 2)  # a TF2 tensor scalar
    writer.file_writer.add_summary(scalar_pb("tensor/acc", float("nan")), 3)
    writer.flush()
    got = collect(source, 7, writer)
    assert triples(got) == [
        ("loss", 0, 1.0),
        ("lr", 0, 0.5),
        ("loss", 1, 0.5),
        ("lr", 1, 0.5),
        ("loss", 2, pytest.approx(1 / 3)),
        ("lr", 2, 0.5),
        ("tensor/acc", 2, 0.75),
    ]
    assert all(p.time > 1e9 for p in got)
    # a second event file appears while following (a restarted attempt: steps go back)
    second = tensorboardX.SummaryWriter(str(folder / "val"), flush_secs=3600)
    second.add_scalar("loss", 0.9, 0)
    second.flush()
    writer.add_scalar("loss", 0.2, 1)
    writer.flush()
    # simple_value is a float32: 0.2 reads as 0.20000000298...
    assert sorted(triples(collect(source, 2, writer, second))) == [
        ("loss", 1, pytest.approx(0.2)),
        ("val/loss", 0, pytest.approx(0.9)),
    ]
    writer.close()
    second.close()
    assert drain(source, final=True) == []
    assert source.tally.counts == {"non-finite": 1}
    assert "non-finite value (tensor/acc=nan)" in said.text()


def test_tensorboard_a_torn_record_waits_for_the_rest(tmp_path):
    written = tmp_path / "written"
    writer = tensorboardX.SummaryWriter(str(written))
    for step in range(10):
        writer.add_scalar("x", float(step), step)
    writer.close()
    (event_file,) = written.iterdir()
    data = event_file.read_bytes()
    folder = tmp_path / "tb"
    folder.mkdir()
    copy = folder / event_file.name
    source = TensorboardSource.make(str(folder), Tally(Said().append))
    copy.write_bytes(data[: len(data) - 7])  # the last record cut short
    assert [p.step for p in drain(source)] == list(range(9))
    with copy.open("ab") as f:
        f.write(data[len(data) - 7 :])
    assert [p.step for p in drain(source)] == [9]


def test_tensorboard_ten_thousand_tags(tmp_path):
    writer = tensorboardX.SummaryWriter(str(tmp_path / "tb"))
    for step in range(2):
        for i in range(10_000):
            writer.add_scalar(f"layer{i}/norm", float(i), step)
    writer.close()
    source = TensorboardSource.make(str(tmp_path / "tb"), Tally(Said().append))
    got = drain(source, final=True)
    assert len(got) == 20_000 and len({p.metric for p in got}) == 10_000


def test_without_tensorboard_the_run_is_told_what_to_install(monkeypatch):
    # nothing real can uninstall a package for one test: the import is made to fail
    import tensorboard.compat.proto

    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto.event_pb2", None)
    monkeypatch.delattr(tensorboard.compat.proto, "event_pb2", raising=False)
    said = Said()
    assert TensorboardSource.make("/nowhere", Tally(said.append), "$LOG_DIR/tb") is None
    assert "pip install 'trainui[tensorboard]'" in said.text()


# ------------------------------------------------------------------------- the extractor


def in_logs(tmp_path: Path, logs: Path, run_log: Path, specs: list[dict], said) -> Extractor:
    """An extractor of ``specs`` in a run folder ``tmp_path`` whose LOG_DIR is ``logs``."""
    variables = {"LOG_DIR": str(logs)}
    return Extractor(
        str(tmp_path), lambda: specs, variables, str(tmp_path), str(run_log), said.append
    )


def test_the_extractor_follows_while_running_and_writes_the_contracts_lines(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    run_log = tmp_path / "training-log.txt"
    run_log.write_text("")
    said = Said()
    specs = [
        {"type": "jsonl"},
        {"type": "log", "pattern": r"step (?P<step>\d+) speed (?P<speed>[0-9.]+)"},
        {"type": "tensorboard", "in": "$LOG_DIR/tb"},
    ]
    extractor = in_logs(tmp_path, logs, run_log, specs, said)
    extractor.start()
    points = tmp_path / "metrics.jsonl"
    with (logs / "metrics.jsonl").open("w") as f:
        f.write('{"step": 1, "loss": 0.5}\n')
        f.flush()
        deadline = time.monotonic() + 10
        while not points.exists() or not points.read_text():
            assert time.monotonic() < deadline, "no point while the command runs"
            time.sleep(0.02)
        f.write('{"step": 2, "loss": NaN}\n{"step": 3, "loss": 0.25}')  # torn until the end
    with run_log.open("a") as f:
        f.write("step 3 speed 120.5\ntrainui: step 4 speed 1\n")
    writer = tensorboardX.SummaryWriter(str(logs / "tb"))
    writer.add_scalar("eval/f1", 0.5, 3)
    writer.close()
    assert extractor.stop()
    lines = points.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]
    assert list(records[0]) == ["metric", "step", "value", "time"]
    assert records[0]["metric"] == "loss" and records[0]["value"] == 0.5
    assert sorted((r["metric"], r["step"], r["value"]) for r in records) == [
        ("eval/f1", 3, 0.5),
        ("loss", 1, 0.5),
        ("loss", 3, 0.25),
        ("speed", 3, 120.5),
    ]
    assert all(isinstance(r["time"], float) for r in records)
    text = said.text()
    assert all(line.startswith("metrics: ") for line in said)
    assert "non-finite value (loss=nan) in $LOG_DIR/metrics.jsonl" in text
    assert said[-1] == (
        "metrics: 4 points of 3 metrics in metrics.jsonl; skipped: 1 non-finite value"
    )


def test_a_pattern_that_backtracks_without_end_is_given_up_and_holds_nothing(tmp_path):
    # (a|aa)+b on a line of 60 a's: Python's re would try every way to split it (years);
    # the learner's extraction, and its halt with it, would wait for it
    run_log = tmp_path / "training-log.txt"
    run_log.write_text("loss 0.5\n" + "a" * 60 + "\nloss 0.25\n")
    said = Said()
    pattern = r"loss (?P<loss>[0-9.]+)|(a|aa)+b"
    specs = [{"type": "log", "pattern": pattern}]
    extractor = Extractor(
        str(tmp_path), lambda: specs, {}, str(tmp_path), str(run_log), said.append
    )
    extractor.start()
    assert extractor.stop()
    assert (
        f"metrics: the pattern {pattern!r} took over 0.5 s on a line of the run's log: it is"
        " searched no more (a group such as (a|aa)+ tries every way to split a line); the"
        " points it gave before are kept"
    ) in said, said.text()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["metric"], r["value"]) for r in records] == [("loss", 0.5)]


def test_a_metric_two_sources_give_is_said_once_with_both_sources(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    run_log = tmp_path / "training-log.txt"
    run_log.write_text("epoch 1 loss 0.9\nepoch 2 loss 0.8\n")
    (logs / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5, "acc": 0.1}\n')
    writer = tensorboardX.SummaryWriter(str(logs / "tb"))
    writer.add_scalar("loss", 0.7, 1)
    writer.add_scalar("acc", 0.2, 1)
    writer.close()
    said = Said()
    specs = [
        {"type": "log", "pattern": r"epoch (?P<step>\d+) loss (?P<loss>[0-9.]+)"},
        {"type": "jsonl"},
        {"type": "tensorboard", "in": "$LOG_DIR/tb"},
    ]
    extractor = in_logs(tmp_path, logs, run_log, specs, said)
    extractor.start()
    assert extractor.stop()
    warnings = [line for line in said if "comes from" in line]
    assert warnings == [
        "metrics: warning: the metric 'loss' comes from the run's log and from "
        "$LOG_DIR/metrics.jsonl: their points are one series; give one of them another name",
        "metrics: warning: the metric 'acc' comes from $LOG_DIR/metrics.jsonl and from "
        "$LOG_DIR/tb: their points are one series; give one of them another name",
    ], said.text()
    # the points are all kept: a warning, not a refusal
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["metric"], round(r["value"], 4)) for r in records) == [
        ("acc", 0.1), ("acc", 0.2), ("loss", 0.5), ("loss", 0.7), ("loss", 0.8), ("loss", 0.9),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "summary"),
    [
        (
            ["not json", '{"step": 1, "loss": NaN}'],
            "1 point of 1 metric in metrics.jsonl; skipped: 1 malformed line, 1 non-finite value",
        ),
        (
            ["{", '{"step": 1, "loss": NaN}', "[", '{"step": 2, "loss": Infinity}', "7"],
            "1 point of 1 metric in metrics.jsonl; skipped: 2 malformed lines, "
            "2 non-finite values, 1 line not a JSON object",
        ),
    ],
    ids=["one-of-each", "several"],
)
def test_the_extractors_last_word_counts_in_the_singular_and_the_plural(tmp_path, lines, summary):
    """The totals at the end say "1 malformed line" and "2 malformed lines", never
    "1 malformed lines"."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.jsonl").write_text("\n".join(['{"step": 0, "loss": 1.0}', *lines]) + "\n")
    run_log = tmp_path / "training-log.txt"
    run_log.write_text("")
    said = Said()
    extractor = Extractor(
        str(tmp_path),
        lambda: [{"type": "jsonl"}],
        {"LOG_DIR": str(logs)},
        str(tmp_path),
        str(run_log),
        said.append,
    )
    extractor.start()
    assert extractor.stop()
    assert said[-1] == f"metrics: {summary}", said.text()


def test_while_the_command_runs_a_pass_reads_a_bounded_piece_and_the_rest_comes_at_the_end(
    tmp_path, monkeypatch
):
    """A command that logs faster than the extractor's share of a core allows: each pass while
    it runs reads at most FOLLOW_BYTES and then pauses (here for long: a tiny share), and
    nothing is lost: the final pass reads the rest."""
    monkeypatch.setattr(metrics, "CPU_SHARE", 1e-6)
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [
        json.dumps({"step": s, "loss": 1 / (s + 1), "acc": s / 2}) + "\n" for s in range(20_000)
    ]
    data = "".join(lines).encode()
    assert len(data) > 4 * metrics.FOLLOW_BYTES
    (logs / "metrics.jsonl").write_bytes(data)
    in_first_piece = data[: metrics.FOLLOW_BYTES].count(b"\n")
    extractor = Extractor(
        str(tmp_path), None, {"LOG_DIR": str(logs)}, str(tmp_path), "", Said().append
    )
    extractor.start()
    points = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 10
    while not points.exists() or not points.read_bytes().endswith(b"\n"):  # the pass's write
        assert time.monotonic() < deadline, "no point while the command runs"
        time.sleep(0.01)
    assert points.read_bytes().count(b"\n") == 2 * in_first_piece  # one piece, then a pause
    assert extractor.stop()
    got = [json.loads(line) for line in points.read_bytes().splitlines()]
    assert len(got) == 40_000
    assert got[-1]["metric"] == "acc" and got[-1]["step"] == 19_999


def test_the_default_source_says_nothing_when_the_command_writes_no_metrics(tmp_path):
    said = Said()
    extractor = Extractor(
        str(tmp_path), None, {"LOG_DIR": str(tmp_path / "logs")}, str(tmp_path), "", said.append
    )
    extractor.start()
    assert extractor.stop()
    assert said == [] and not (tmp_path / "metrics.jsonl").exists()


def test_in_paths_expand_the_run_folders():
    variables = {"LOG_DIR": "/r/work/logs", "JOB_STATE_DIR": "/r/work"}
    assert expand("$LOG_DIR/tb", variables, "/m") == "/r/work/logs/tb"
    assert expand("${JOB_STATE_DIR}/logs/tb", variables, "/m") == "/r/work/logs/tb"
    assert expand("out/m.jsonl", variables, "/m") == "/m/out/m.jsonl"


# ----------------------------------------------------------------------------- manifest

BASE = """\
model_definition:
  name: x
  framework: {name: numpy, version: "2.0"}
  execution: {command: python3 train.py, resource: small}
training_data_reference:
  connection: {}
  source: {bucket: data, type: local}
training_results_reference:
  connection: {}
  target: {bucket: results, type: local}
"""


def manifest(metrics_yaml: str):
    return parse_manifest(BASE + textwrap.dedent(metrics_yaml), "job.yml")


def test_evaluation_metrics_one_source_or_a_list_read_into_the_manifest():
    report = manifest("evaluation_metrics: {type: tensorboard, in: $JOB_STATE_DIR/logs/tb}\n")
    assert report.ok and report.problems == []
    (source,) = report.manifest.metrics
    assert source.as_spec() == {"type": "tensorboard", "in": "$JOB_STATE_DIR/logs/tb"}
    text = """\
        evaluation_metrics:
          - type: jsonl
          - type: log
            pattern: 'epoch (?P<step>\\d+) loss (?P<loss>[0-9.eE+-]+)'
        """
    report = manifest(text)
    assert report.ok, report.formatted()
    assert [s.type for s in report.manifest.metrics] == ["jsonl", "log"]
    assert metric_sources(BASE + textwrap.dedent(text)) == [
        {"type": "jsonl"},
        {"type": "log", "pattern": r"epoch (?P<step>\d+) loss (?P<loss>[0-9.eE+-]+)"},
    ]
    assert parse_manifest(BASE).manifest.metrics == ()
    assert metric_sources(BASE) is None


def test_the_learner_is_given_the_sources_and_reads_no_yaml(tmp_path):
    """learner.json carries the manifest's sources (what metric_sources would find in it), so
    that a learner parses no YAML on the way to its command's first line."""
    from trainui.config import Settings
    from trainui.service.runs import _learner_spec

    text = """\
        evaluation_metrics:
          - type: log
            pattern: 'loss (?P<loss>[0-9.]+)'
        """
    report = manifest(text)
    spec = _learner_spec("training-x", report.manifest, str(tmp_path), Settings({}), "now")
    assert spec["evaluation_metrics"] == metric_sources(BASE + textwrap.dedent(text))
    assert spec["evaluation_metrics"] == [{"type": "log", "pattern": "loss (?P<loss>[0-9.]+)"}]
    spec = _learner_spec(
        "training-y", parse_manifest(BASE).manifest, str(tmp_path), Settings({}), "now"
    )
    assert spec["evaluation_metrics"] == []  # none given: the learner reads its default one


def test_evaluation_metrics_problems_are_located_at_their_line():
    report = manifest(
        """\
        evaluation_metrics:
          - type: tensorbord
            in: $LOG_DIR/tb
          - type: log
          - type: log
            pattern: 'loss (?P<loss'
          - type: log
            pattern: 'epoch (?P<step>\\d+) loss \\S+'
          - type: tensorboard
          - {type: jsonl, in: $LOGDIR/m.jsonl, colour: red}
        """
    )
    assert report.manifest is None
    assert report.formatted() == [
        "job.yml:12:11: evaluation_metrics[0].type: 'tensorbord' is not one of jsonl,"
        " tensorboard, log; did you mean 'tensorboard'?",
        "job.yml:14:5: evaluation_metrics[1].pattern: required for type log: a regular"
        " expression with a named group per metric, e.g. 'loss (?P<loss>[0-9.eE+-]+)'",
        "job.yml:16:14: evaluation_metrics[2].pattern: does not compile: missing > at position 13",
        "job.yml:18:14: evaluation_metrics[3].pattern: has no named group for a metric:"
        " write (?P<name>...) around each value, e.g. 'loss (?P<loss>[0-9.eE+-]+)'",
        "job.yml:19:5: evaluation_metrics[4].in: required for type tensorboard: the folder of"
        " the event files, e.g. $LOG_DIR/tb",
        "job.yml:20:40: evaluation_metrics[5].colour: unknown key 'colour'; allowed here:"
        " type, in, pattern",
        "job.yml:20:23: evaluation_metrics[5].in: warning: $LOGDIR is not a run folder;"
        " did you mean $LOG_DIR?",
    ]


def test_validate_shows_evaluation_metrics_problems(tmp_path, capsys):
    from trainui.cli import main

    path = tmp_path / "job.yml"
    path.write_text(BASE + "evaluation_metrics: {type: log}\n")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr()
    assert f"{path}:11:21: evaluation_metrics.pattern: required for type log" in out.out + out.err


def test_the_json_schema_knows_evaluation_metrics():
    validator = jsonschema.Draft7Validator(json_schema())

    def accepts(metrics_yaml: str) -> bool:
        return validator.is_valid(yaml.safe_load(BASE + metrics_yaml))

    assert accepts("evaluation_metrics: {type: tensorboard, in: $LOG_DIR/tb}\n")
    assert accepts("evaluation_metrics: [{type: jsonl}, {type: log, pattern: 'a (?P<a>.)'}]\n")
    assert not accepts("evaluation_metrics: {type: log}\n")
    assert not accepts("evaluation_metrics: {type: tensorboard}\n")
    assert not accepts("evaluation_metrics: {type: csv}\n")
    assert not accepts("evaluation_metrics: {type: jsonl, pattern: x}\n")
