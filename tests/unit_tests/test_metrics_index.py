"""The service's index of a run's metrics.jsonl (service/metrics.py), on real files."""

from __future__ import annotations

import json
import random

from trainui.service.metrics import MetricsIndex, MetricsKeeper, downsample


def line(metric: str, step: int, value: float, time: float = 1.7e9) -> str:
    return json.dumps({"metric": metric, "step": step, "value": value, "time": time}) + "\n"


def test_complete_lines_only_a_torn_line_is_read_once_whole_and_bad_lines_are_counted(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(line("loss", 0, 1.0) + line("acc", 0, 0.1) + '{"metric": "loss", "st')
    index = MetricsIndex(str(path))
    assert index.read() == 2
    assert index.offset == len(line("loss", 0, 1.0) + line("acc", 0, 0.1))
    assert index.read() == 0  # the torn line stays unread
    with path.open("a") as f:
        f.write('ep": 1, "value": 0.5, "time": 1.7e9}\n')  # its end: now whole
        f.write("not json at all\n")
        f.write('{"metric": "loss", "step": 2, "value": 1e999}\n')  # inf: not a point
        f.write('{"metric": "loss", "step": "x", "value": 1}\n')  # not a step
        f.write('{"metric": "loss", "step": 100000000000000000000, "value": 1}\n')  # > 64 bits
        f.write(line("loss", 3, 0.25))
    assert index.read() == 2
    assert index.skipped == 4
    assert index.points == 4
    assert index.read() == 0  # read once: nothing taken again
    points = index.points_of("loss", offset=0)
    assert points["steps"] == [0, 1, 3] and points["values"] == [1.0, 0.5, 0.25]
    assert index.summary() == [
        {"name": "loss", "last": 0.25, "step": 3, "min": 0.25, "max": 1.0, "steps": 3,
         "time": 1.7e9},
        {"name": "acc", "last": 0.1, "step": 0, "min": 0.1, "max": 0.1, "steps": 1,
         "time": 1.7e9},
    ]  # fmt: skip
    # a file read again from the start (a restarted service) has the same points, once each
    again = MetricsIndex(str(path))
    again.read()
    assert again.summary() == index.summary()
    assert again.points_of("loss", offset=0) == points
    # read a bit at a time (the poll's limit): the same again
    slow = MetricsIndex(str(path))
    while slow.read(limit=1):
        pass
    assert slow.summary() == index.summary()


def test_a_step_going_backwards_purges_the_display_series_as_tensorboard_does(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = "".join(line("loss", s, 10.0 - s) for s in range(10))
    restarted = "".join(line("loss", s, 100.0 + s) for s in range(5, 8))
    path.write_text(first + restarted + line("acc", 0, 0.5))
    index = MetricsIndex(str(path))
    index.read()
    shown = index.points_of("loss")
    assert shown["steps"] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert shown["values"] == [10.0, 9.0, 8.0, 7.0, 6.0, 105.0, 106.0, 107.0]
    # every point is kept for export, in the order written, and counted; min and max are of
    # the points shown, as the chart's are (the first attempt's 1.0 at step 9 was gone over)
    every = index.points_of("loss", offset=0)
    assert every["steps"] == [*range(10), 5, 6, 7]
    loss = index.summary()[0]
    assert (loss["last"], loss["step"], loss["steps"], loss["min"], loss["max"]) == (
        107.0, 7, 13, 6.0, 107.0
    )  # fmt: skip
    assert index.points_of("loss", offset=11)["steps"] == [6, 7]
    # after_step on the display series; a second restart, further back
    assert index.points_of("loss", after_step=5)["steps"] == [6, 7]
    with path.open("a") as f:
        f.write(line("loss", 2, 50.0) + line("loss", 2, 51.0) + line("loss", 3, 52.0))
    index.read()
    assert index.points_of("loss")["values"] == [10.0, 9.0, 50.0, 51.0, 52.0]
    loss = index.summary()[0]
    assert (loss["steps"], loss["min"], loss["max"]) == (16, 9.0, 52.0)
    assert index.points_of("loss", after_step=2)["steps"] == [3]
    assert index.points_of("acc")["steps"] == [0]  # another metric is not touched


def test_downsampling_keeps_a_one_step_spike_and_dip_and_the_ends(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rng = random.Random(16)
    values = [1.0 + rng.random() * 0.01 for _ in range(10_000)]
    values[4321] = 1000.0  # a spike of one step
    values[4322] = -5.0  # and a dip just after it, in the same bucket
    path.write_text("".join(line("loss", s, v) for s, v in enumerate(values)))
    index = MetricsIndex(str(path))
    index.read()
    shown = index.points_of("loss", max_points=200)
    assert shown["downsampled"] is True
    assert len(shown["steps"]) <= 200
    assert shown["steps"] == sorted(shown["steps"])
    assert 4321 in shown["steps"] and 4322 in shown["steps"]
    assert max(shown["values"]) == 1000.0 and min(shown["values"]) == -5.0
    assert shown["steps"][0] == 0 and shown["steps"][-1] == 9999
    # each point shown is a real point: its step's value
    assert all(values[s] == v for s, v in zip(shown["steps"], shown["values"], strict=True))
    assert index.points_of("loss", max_points=20_000)["downsampled"] is False
    # after_step then downsampled
    late = index.points_of("loss", after_step=9000, max_points=50)
    assert late["steps"][0] == 9001 and late["steps"][-1] == 9999 and len(late["steps"]) <= 50
    for budget in (2, 3, 4, 5, 7, 100):
        kept = downsample(values, budget)
        assert len(kept) <= budget and kept[0] == 0 and kept[-1] == 9999


def test_the_keeper_reads_running_runs_at_each_poll_and_keeps_few_ended_ones(tmp_path, monkeypatch):
    from trainui.service import metrics

    runs = tmp_path / "runs"
    for number in range(4):
        folder = runs / f"training-00000000{number}"
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text(line("loss", 0, float(number)))
    keeper = MetricsKeeper(str(runs))
    live = keeper.poll("training-000000000")
    assert live.points == 1 and live.changed == {"loss"}
    assert live.take_changed() == {"loss": {"last": 0.0, "step": 0}} and not live.changed
    with (runs / "training-000000000" / "metrics.jsonl").open("a") as f:
        f.write(line("loss", 1, 0.5))
    assert keeper.poll("training-000000000").points == 2
    assert live.record() == {"loss": {"last": 0.5, "step": 1, "min": 0.0, "max": 0.5, "steps": 2}}
    ended = keeper.finish("training-000000000")
    assert ended is live and "training-000000000" not in keeper.live
    monkeypatch.setattr(metrics, "ENDED_KEPT", 2)
    for number in (1, 2, 3):
        keeper.index(f"training-00000000{number}", active=False)
    assert list(keeper.ended) == ["training-000000002", "training-000000003"]
    assert keeper.cached("training-000000002") is not None
    assert list(keeper.ended)[-1] == "training-000000002"  # most recently used last
    keeper.forget("training-000000002")
    assert keeper.cached("training-000000002") is None
    # the record holds the first RECORD_METRICS metrics
    monkeypatch.setattr(metrics, "RECORD_METRICS", 2)
    many = runs / "many.jsonl"
    many.write_text("".join(line(f"m{i}", 0, 1.0) for i in range(5)))
    index = MetricsIndex(str(many))
    index.read()
    assert list(index.record()) == ["m0", "m1"] and len(index.summary()) == 5
    assert MetricsIndex(str(runs / "none.jsonl")).record() is None


def test_a_keeper_catching_up_says_it_is_behind_and_leaves_a_large_rest_to_a_thread(
    tmp_path, monkeypatch
):
    # a service restarted beside a large points file reads it a piece a beat: until it caught
    # up, what it read is no summary (it would go backwards); an ended run with much left is
    # not read by the service's loop at all
    from trainui.service import metrics

    folder = tmp_path / "training-000000000"
    folder.mkdir()
    text = "".join(line("loss", step, 1.0 / (step + 1)) for step in range(8000))
    (folder / "metrics.jsonl").write_text(text)
    assert len(text) > 3 * (1 << 16)  # a read takes 64 KiB at least
    monkeypatch.setattr(metrics, "POLL_BYTES", 1 << 16)
    keeper = MetricsKeeper(str(tmp_path))
    polls = 1
    while keeper.poll("training-000000000").behind:
        polls += 1
    index = keeper.live["training-000000000"]
    assert polls >= 3 and index.points == 8000 and not index.behind
    assert index.record()["loss"]["steps"] == 8000
    monkeypatch.setattr(metrics, "FINISH_BYTES", len(text) // 3)
    fresh = MetricsKeeper(str(tmp_path))  # a service started after the run ended
    assert fresh.finish("training-000000000") is None
    assert fresh.index("training-000000000", active=False).points == 8000  # read when asked
