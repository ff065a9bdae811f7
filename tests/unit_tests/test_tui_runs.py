"""The run table behind the run list: updated by key, filtered and sorted lazily."""

from __future__ import annotations

import time

from trainui.tui.runs import (
    RunTable,
    duration_seconds,
    format_bytes,
    format_duration,
    parse_time,
    pending_reason,
    ran_seconds,
    resource_text,
    time_text,
    waited_seconds,
)


def run(n: int, status: str = "completed", name: str | None = None, **extra) -> dict:
    return {
        "model_id": f"training-{n:09d}",
        "name": name or f"run-{n}",
        "status": status,
        "resource": "small",
        "gpus": 1,
        "gpu_ids": [],
        "submitted_at": f"2026-11-27T05:{n // 60:02d}:{n % 60:02d}.000Z",
        "started_at": None,
        "finished_at": None,
        **extra,
    }


def test_newest_first_and_a_new_run_goes_on_top_without_sorting_again():
    table = RunTable()
    table.reconcile([run(i) for i in range(5)])
    assert table.view()[0] == "training-000000004"
    table.upsert(run(9))
    assert table._dirty is False  # placed, not sorted
    assert table.view()[:2] == ["training-000000009", "training-000000004"]
    assert table.index("training-000000004") == 1


def test_runs_submitted_at_once_keep_the_order_they_came_in_not_their_ids():
    # an experiment's runs share their submission time; their IDs are random
    at_once = "2026-11-27T06:00:00.000Z"
    ids = ["training-zzz", "training-aaa", "training-mmm", "training-bbb"]
    runs = [{**run(0), "model_id": m, "submitted_at": at_once} for m in ids]
    table = RunTable()
    table.reconcile([run(1), *runs[:2]])
    table.upsert(runs[2])  # one by one, as events bring them
    table.upsert(runs[3])
    assert table.view() == [*ids[::-1], "training-000000001"]  # newest first: the last on top
    table.set_sort("status")
    assert table.view() == ["training-000000001", *ids]
    table._dirty = True  # sorted again whole: the same order
    table.set_sort("submitted")
    assert table.view() == [*ids[::-1], "training-000000001"]


def test_a_changed_run_keeps_its_place_and_gets_a_new_revision():
    table = RunTable()
    table.reconcile([run(i) for i in range(3)])
    before = table.revision["training-000000001"]
    assert table.upsert(run(1, status="failed", error_code="C201"))
    assert table.revision["training-000000001"] > before
    assert not table.upsert(run(1, status="failed", error_code="C201"))  # same: no change
    assert table.view() == ["training-000000002", "training-000000001", "training-000000000"]
    assert table.counts() == {"completed": 2, "failed": 1}


def test_filter_words_sort_and_reverse():
    table = RunTable()
    table.reconcile(
        [run(1, "failed", "mnist"), run(2, "running", "cifar"), run(3, "completed", "mnist-b")]
    )
    table.set_filter("mnist")
    assert table.view() == ["training-000000003", "training-000000001"]
    table.set_filter("mnist failed")
    assert table.view() == ["training-000000001"]
    table.set_filter("")
    table.set_sort("name")
    assert [table.runs[m]["name"] for m in table.view()] == ["cifar", "mnist", "mnist-b"]
    table.set_sort("name", reverse=True)
    assert table.runs[table.view()[0]]["name"] == "mnist-b"
    table.set_sort("status", reverse=False)
    assert [table.runs[m]["status"] for m in table.view()] == ["running", "completed", "failed"]


def test_sorted_by_a_metric_the_runs_without_it_come_last_either_way():
    def loss(value):
        return {"loss": {"last": value, "step": 3, "min": value, "max": value, "steps": 3}}

    table = RunTable()
    table.reconcile(
        [run(1, metrics=loss(0.5)), run(2), run(3, metrics=loss(0.1)), run(4, metrics=loss(0.9))]
    )
    table.set_sort("metric:loss")  # smallest first, as a loss is read
    assert table.view() == [f"training-00000000{n}" for n in (3, 1, 4, 2)]
    table.set_sort("metric:loss", reverse=True)
    assert table.view() == [f"training-00000000{n}" for n in (4, 1, 3, 2)]
    table.upsert(run(2, metrics=loss(0.7)))  # its first point: it takes its place
    assert table.view() == [f"training-00000000{n}" for n in (4, 2, 1, 3)]


def test_removed_and_reconciled_runs_leave_the_view():
    table = RunTable()
    table.reconcile([run(i) for i in range(4)])
    table.view()
    assert table.remove("training-000000002")
    assert not table.remove("training-000000002")
    assert "training-000000002" not in table.view()
    table.reconcile([run(0), run(1)])
    assert table.view() == ["training-000000001", "training-000000000"]
    assert table.counts() == {"completed": 2}


def test_find_by_id_end_of_id_or_name():
    table = RunTable()
    table.reconcile([run(1, name="alpha"), run(22, name="beta")])
    assert table.find("training-000000001") == "training-000000001"
    assert table.find("022") == "training-000000022"
    assert table.find("BETA") == "training-000000022"
    assert table.find("nothing") is None


def test_ten_thousand_runs_update_by_key_quickly():
    table = RunTable()
    table.reconcile([run(i) for i in range(10_000)])
    table.view()
    t = time.perf_counter()
    for i in range(1000):
        table.upsert(run(i, status="failed"))
        table.index(f"training-{i:09d}", hint=10_000 - 1 - i)
    assert time.perf_counter() - t < 0.5
    assert table.counts() == {"completed": 9000, "failed": 1000}


def test_times_durations_and_sizes_read_well():
    assert parse_time("1970-01-01T00:01:00.500Z") == 60.5
    assert parse_time(None) is None and parse_time("garbage") is None
    finished = run(1, started_at="2026-11-27T05:00:00Z", finished_at="2026-11-27T06:02:03Z")
    assert format_duration(duration_seconds(finished)) == "1h02m"
    assert format_duration(3.25) == "3.2s" and format_duration(75) == "1m15s"
    assert format_duration(None) == "-"
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(12) == "12 B"


STARTED = {"started_at": "2026-11-27T05:00:05Z"}


def test_the_resource_says_where_the_run_runs_ran_or_will_run():
    medium = run(1, gpu_ids=[0, 1], resource="medium", gpus=2, status="running", **STARTED)
    assert resource_text(medium) == "medium · GPU 0,1"
    assert resource_text(run(1, gpu_ids=[3], **STARTED), cpu_mode=False) == "small · GPU 3"
    # no GPU: the same words running, ended, and while it waits on a CPU-only service
    assert resource_text(run(1, status="running", **STARTED), cpu_mode=True) == "small · CPU"
    assert resource_text(run(1, **STARTED)) == "small · CPU"
    assert resource_text(run(1, status="pending"), cpu_mode=True) == "small · CPU"
    # waiting on a service with GPUs: how many it waits for; not known: the resource alone
    assert resource_text(run(1, status="pending", gpus=2), cpu_mode=False) == "small · 2 GPUs"
    assert resource_text(run(1, status="pending")) == "small"
    assert resource_text(run(1, status="halted"), cpu_mode=True) == "small"  # never started


def test_waiting_and_running_are_counted_apart():
    now = parse_time("2026-11-27T05:03:01Z")
    waiting = run(1, status="pending")  # submitted at 05:00:01
    assert duration_seconds(waiting, now) is None
    assert waited_seconds(waiting, now) == 180
    assert time_text(waiting, now) == "wait 3m"
    going = run(1, status="running", **STARTED)
    assert waited_seconds(going, now) == 4 and duration_seconds(going, now) == 176
    assert time_text(going, now) == "2m56s"
    never = run(1, status="halted", finished_at="2026-11-27T05:00:31Z")
    assert waited_seconds(never, now) == 30 and time_text(never, now) == "-"
    assert time_text(run(1, status="pending"), parse_time("2026-11-29T05:00:01Z")) == "wait 2d"
    # halted before it ever started, resumed a minute ago: it has waited since then
    resumed = run(1, status="pending", resumed_at="2026-11-27T05:02:01Z")
    assert waited_seconds(resumed, now) == 60 and time_text(resumed, now) == "wait 1m"
    began = run(1, status="running", resumed_at="2026-11-27T05:02:01Z",
                started_at="2026-11-27T05:02:06Z")  # fmt: skip
    assert waited_seconds(began, now) == 5


def test_a_later_attempt_waits_from_its_resume_or_its_restart_not_from_the_submission():
    now = parse_time("2026-11-29T05:03:01Z")  # two days after the submission
    first = {
        "attempt": 1,
        "status": "halted",
        "started_at": "2026-11-27T05:00:05Z",
        "finished_at": "2026-11-27T06:00:00Z",
        "resumed_at": "2026-11-29T05:00:01Z",
    }
    fields = {"attempt": 2, "attempts": [first], "started_at": first["started_at"]}
    resumed = run(1, status="restarting", **fields)
    assert waited_seconds(resumed, now) == 180  # since the resume; not its first start
    started = run(1, status="running", **dict(fields, started_at="2026-11-29T05:00:11Z"))
    assert waited_seconds(started, now) == 10
    restarted = dict(first, status="failed")
    del restarted["resumed_at"]  # a restart: from the end of the attempt before (its back-off)
    going = run(1, status="running", **dict(fields, attempts=[restarted],
                started_at="2026-11-27T06:00:30Z"))  # fmt: skip
    assert waited_seconds(going, now) == 30
    # once the second attempt ended, the list of attempts has it too: its wait is still from
    # the first one's end (it read 0.0s), and its run time its own
    second = {"attempt": 2, "status": "failed", "started_at": "2026-11-27T06:00:30Z",
              "finished_at": "2026-11-27T06:00:31Z"}  # fmt: skip
    ended = run(1, status="failed", **dict(fields, attempts=[restarted, second],
                started_at=second["started_at"], finished_at=second["finished_at"]))  # fmt: skip
    assert waited_seconds(ended, now) == 30 and ran_seconds(ended, now) == 1


def test_between_two_attempts_a_run_waits_and_its_clock_does_not_run():
    """A restarting run showed its first attempt's start as a run time going on (30s while
    its command ran 0.1 s): it waits, as a pending one."""
    now = parse_time("2026-11-27T06:00:30Z")
    first = {"attempt": 1, "status": "failed", "started_at": "2026-11-27T06:00:00Z",
             "finished_at": "2026-11-27T06:00:01Z"}  # fmt: skip
    waiting = run(1, status="restarting", attempt=2, attempts=[first],
                  started_at=first["started_at"])  # fmt: skip
    assert ran_seconds(waiting, now) is None
    assert waited_seconds(waiting, now) == 29
    assert time_text(waiting, now) == "wait 29s"


def test_only_a_pending_run_has_a_reason_to_wait():
    assert pending_reason(run(1, status="pending", status_message="waiting for 1 GPU: 0 free"))
    assert pending_reason(run(1, status="pending")) == "waiting for a free GPU"
    assert pending_reason(run(1, status="running", status_message="running")) == ""


def test_sorted_by_duration_the_run_time_counts_not_the_wait():
    table = RunTable()
    long_wait = run(1, status="pending", submitted_at="2026-11-27T01:00:00.000Z")
    ran = run(2, started_at="2026-11-27T05:00:00Z", finished_at="2026-11-27T05:00:09Z")
    table.reconcile([long_wait, ran])
    table.set_sort("duration")
    assert table.view() == [ran["model_id"], long_wait["model_id"]]
