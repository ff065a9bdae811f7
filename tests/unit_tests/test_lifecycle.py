"""The run's lifecycle: legal transitions, illegal ones refused, times stamped, records followed."""

from __future__ import annotations

import json

import pytest

from trainui.core import lifecycle
from trainui.core.lifecycle import IllegalChange, Run, Status, change, follow, update
from trainui.core.runs import STATES

STAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def pending_run() -> Run:
    return Run(
        model_id="training-aaaaaaaaa",
        url="/v3/models/training-aaaaaaaaa",
        status="pending",
        status_message="queued",
        submitted_at="2026-12-04T17:24:56.861Z",
        gpu_ids=[],
        progress=lifecycle.no_progress(),
    )


@pytest.mark.parametrize(
    "path",
    [
        ["downloading", "running", "storing", "completed"],
        ["downloading", "storing", "failed"],  # failed while staging: what was done is stored
        ["downloading", "completed"],  # the learner passed running and storing between looks
        ["halted"],  # halted before it started
        ["failed"],  # its learner could not start
        ["downloading", "running", "halted"],
    ],
)
def test_a_run_moves_forward_and_the_old_record_stays_as_it_was(path):
    run = pending_run()
    for state in path:
        new = change(run, state)
        assert new.status == state and new is not run
        run = new
    assert pending_run().status == "pending"


def test_starting_stamps_started_at_and_ending_stamps_finished_at_once():
    started = change(pending_run(), "downloading", status_message="starting on GPU 0")
    assert started.started_at is not None and started.finished_at is None
    assert started.status_message == "starting on GPU 0"
    running = change(started, "running")
    assert running.started_at == started.started_at  # not stamped again
    ended = change(running, "completed", exit_code=0)
    assert ended.finished_at is not None and ended.finished_epoch is not None
    assert ended.exit_code == 0 and ended.started_at == started.started_at
    import re

    assert re.match(STAMP, ended.started_at) and re.match(STAMP, ended.finished_at)


def test_given_stamps_are_kept_and_a_run_halted_before_it_started_never_started():
    given = change(pending_run(), "running", started_at="2026-01-01T00:00:00.000Z")
    assert given.started_at == "2026-01-01T00:00:00.000Z"
    halted = change(pending_run(), "halted", status_message="halted before it started")
    assert halted.started_at is None and halted.finished_at is not None
    ended = change(given, "failed", finished_at="2026-01-01T00:01:00.000Z", error_code="C201")
    assert ended.finished_at == "2026-01-01T00:01:00.000Z" and ended.error_code == "C201"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (["downloading", "running"], "downloading"),  # never back
        (["downloading", "running", "storing"], "running"),
        (["downloading"], "pending"),
        (["completed"], "failed"),  # an ended run never changes again
        (["halted"], "halted"),
        (["downloading", "failed"], "running"),
    ],
)
def test_an_illegal_change_is_refused_in_a_sentence_naming_the_run(before, after):
    run = pending_run()
    for state in before:
        run = change(run, state)
    with pytest.raises(IllegalChange, match=rf"training-aaaaaaaaa cannot go from {before[-1]}"):
        change(run, after)


def test_an_ended_run_refuses_even_a_new_message_and_an_unknown_state_is_refused():
    with pytest.raises(IllegalChange, match="it has ended"):
        update(change(pending_run(), "completed"), status_message="again")
    with pytest.raises(IllegalChange, match="'rebooting' is not a state"):
        change(pending_run(), "rebooting")


def test_a_failed_attempt_restarts_and_the_next_one_starts_but_a_queued_run_never_restarts():
    running = change(change(pending_run(), "downloading"), "running")
    waiting = change(running, "restarting", attempt=2, status_message="attempt 2 of 3 in 5 s")
    assert waiting.status == "restarting" and waiting.finished_at is None
    assert change(waiting, "downloading").status == "downloading"
    assert change(waiting, "halted").finished_at is not None  # halted between two attempts
    with pytest.raises(IllegalChange, match="cannot go from pending to restarting"):
        change(pending_run(), "restarting")
    with pytest.raises(IllegalChange, match="it has ended"):
        change(change(running, "failed"), "restarting")


def test_every_state_has_its_transitions():
    assert set(lifecycle.TRANSITIONS) == set(STATES)


def test_an_update_within_a_state_changes_only_what_it_names():
    run = pending_run()
    waiting = update(run, status_message="waiting for 1 GPU")
    assert waiting.status == "pending" and waiting.started_at is None
    assert waiting.status_message == "waiting for 1 GPU" and run.status_message == "queued"


def test_a_status_record_goes_through_the_same_change():
    status = change(Status(learner_pid=42), "downloading", status_message="staging")
    assert status.started_at is not None and status.learner_pid == 42
    status = change(status, "storing", progress=lifecycle.no_progress("storing"))
    ended = change(status, "failed", error_code="S303")
    assert ended.finished_at is not None
    with pytest.raises(IllegalChange, match="the run cannot go from failed to running"):
        change(ended, "running")


def test_follow_takes_the_learners_state_stamps_and_a_clusters_gpus():
    run = change(pending_run(), "downloading", started_at="2026-12-04T17:24:57.000Z")
    status = Status(
        status="running",
        status_message="running on GPU 3",
        started_at="2026-12-04T17:24:57.100Z",
        progress=lifecycle.no_progress(),
        gpu_ids=[3],
    )
    followed = follow(run, status)
    assert followed.status == "running" and followed.status_message == "running on GPU 3"
    assert followed.started_at == "2026-12-04T17:24:57.100Z" and followed.gpu_ids == [3]
    assert follow(followed, status) is followed  # nothing new: the same record
    ended = follow(followed, Status(status="completed", exit_code=0))
    assert ended.finished_at is not None and ended.exit_code == 0
    assert ended.progress == lifecycle.no_progress()  # a record without progress keeps it
    with pytest.raises(IllegalChange):
        follow(ended, Status(status="running"))


def test_status_json_round_trips_and_keeps_the_spec_field_names():
    status = change(Status(learner_pid=7, timings={"staged": None}), "downloading")
    data = json.loads(lifecycle.encode(status))
    assert {
        "status", "status_message", "error_code", "exit_code", "started_at", "finished_at",
        "progress", "learner_pid", "command_pgid", "updated_at",
    } <= set(data)  # fmt: skip
    assert lifecycle.decode_status(lifecycle.encode(status)) == status
    # a record of a newer learner (more fields) is read; a broken one is not a status
    assert lifecycle.decode_status(b'{"status": "running", "attempt": 2}').status == "running"
    assert lifecycle.decode_status(b'{"status": 3}') is None
    assert lifecycle.decode_status(b"{half") is None


def test_a_runs_public_object_has_the_spec_fields_and_none_of_the_services():
    shown = lifecycle.public(pending_run())
    assert set(shown) == {
        "model_id", "url", "name", "description", "framework", "resource", "gpus", "gpu_ids",
        "status", "status_message", "error_code", "exit_code", "submitted_at", "started_at",
        "finished_at", "owner", "data", "results", "progress", "metrics", "experiment_id",
        "parameters", "attempt", "max_restarts", "attempts", "resumed_at",
    }  # fmt: skip


# training-status.json's keys, in the order the learner and the service have always written them
TRAINING_STATUS_KEYS = [
    "model_id", "name", "status", "status_message", "error_code", "exit_code", "resource",
    "gpu_ids", "submitted_at", "started_at", "finished_at", "timings", "results_partial",
]  # fmt: skip


def test_the_learners_training_status_has_todays_keys_in_todays_order():
    from types import SimpleNamespace

    from trainui.learner.storing import Storing

    learner = SimpleNamespace(
        model_id="training-aaaaaaaaa",
        config={"name": "mnist", "resource": "small", "submitted_at": "2026-12-04T17:24:56.861Z"},
        final="failed",
        message="results could not be stored: no space",
        error_code="S303",
        exit_code=0,
        status=Status(
            status="storing",
            gpu_ids=[0],
            started_at="2026-12-04T17:24:57.000Z",
            finished_at="2026-12-04T17:25:57.000Z",
            timings={"staged": 1.5},
        ),
        storing_failed=True,
        not_stored=["training-log.txt", "model.bin"],
    )
    record = Storing._training_status(learner)
    assert list(record) == [*TRAINING_STATUS_KEYS, "objects_not_stored"]
    assert record["objects_not_stored"] == ["model.bin", "training-log.txt"]
    assert record["status"] == "failed" and record["results_partial"] is True
    assert record["timings"] == {"staged": 1.5} and record["gpu_ids"] == [0]
    assert record["name"] == "mnist" and record["submitted_at"] == "2026-12-04T17:24:56.861Z"


def test_the_services_salvaged_training_status_has_todays_keys_in_todays_order(tmp_path):
    from trainui.core.runs import STATUS_FILE
    from trainui.service.salvage import salvaged_status

    (tmp_path / STATUS_FILE).write_bytes(
        lifecycle.encode(Status(status="running", timings={"staged": 2.0}))
    )
    run = change(pending_run(), "failed", status_message="its learner vanished", error_code="S300")
    record = lifecycle.training_status_json(salvaged_status(run, str(tmp_path)))
    assert list(record) == TRAINING_STATUS_KEYS  # no objects_not_stored: only a learner knows
    assert record["status"] == "failed" and record["error_code"] == "S300"
    assert record["status_message"] == (
        "its learner vanished; what the learner had not stored is missing"
    )
    assert record["timings"] == {"staged": 2.0} and record["results_partial"] is True
    # and with no status.json of the learner, the timings are an empty object, as before
    (tmp_path / STATUS_FILE).unlink()
    assert lifecycle.training_status_json(salvaged_status(run, str(tmp_path)))["timings"] == {}
