"""Tests for trainui.service.store: the run store gives back what it was given, and runs of one
manifest share their equal values (one object for 10,000 runs), which nothing can change in
place."""

from __future__ import annotations

import copy
import json

import pytest
from msgspec.structs import replace

from trainui.core.lifecycle import Run
from trainui.core.shared import shared, shared_object
from trainui.service.store import RunStore, public


def new_run(model_id: str, seq: int, endpoint: str = "") -> Run:
    return Run(**new_fields(model_id, seq, endpoint))


def new_fields(model_id: str, seq: int, endpoint: str = "") -> dict:
    return {
        "model_id": model_id,
        "url": f"/v3/models/{model_id}",
        "name": f"run-{seq}",
        "description": "",
        "framework": {"name": "sh", "version": "1"},
        "resource": "small",
        "gpus": 1,
        "gpu_ids": [],
        "status": "pending",
        "status_message": "queued",
        "error_code": None,
        "exit_code": None,
        "submitted_at": "2026-12-04T17:24:56.861Z",
        "started_at": None,
        "finished_at": None,
        "owner": "alice",
        "data": {"type": "local", "bucket": "data", "endpoint": endpoint},
        "results": {"type": "local", "bucket": "results", "endpoint": "", "prefix": f"{model_id}/"},
        "progress": {"phase": None, "bytes_done": 0, "bytes_total": 0},
        "seq": seq,
        "queued_epoch": 1796405096.5,
        "learner_pid": None,
        "learner_start": None,
        "finished_epoch": None,
        "deleted": 0,
    }


@pytest.fixture
def store(tmp_path):
    store = RunStore(str(tmp_path))
    yield store
    store.close()


def test_runs_come_back_as_they_were_saved(store):
    runs = [new_run(f"training-{i}", i) for i in range(1, 4)]
    store.save_many(runs)

    loaded = store.load()

    assert [json.loads(json.dumps(public(run))) for run in loaded] == [public(r) for r in runs]


def test_equal_values_of_loaded_runs_are_one_object_and_different_ones_stay_apart(store):
    store.save_many(new_run(f"training-{i}", i) for i in range(1, 4))

    first, second, third = store.load()

    for field in ("framework", "gpu_ids", "data", "progress"):
        assert getattr(first, field) is getattr(second, field) is getattr(third, field)
    assert first.results["prefix"] == "training-1/"
    assert second.results["prefix"] == "training-2/"
    assert first.owner is second.owner


def test_a_shared_value_refuses_a_change_in_place(store):
    store.save_many(new_run(f"training-{i}", i) for i in range(1, 3))
    first, second = store.load()

    with pytest.raises(TypeError):
        first.progress["bytes_done"] = 10
    with pytest.raises(TypeError):
        first.gpu_ids.append(0)
    with pytest.raises(TypeError):
        first.data.update(bucket="other")
    with pytest.raises(AttributeError):  # a record is replaced whole too
        first.status = "running"
    first = replace(first, progress={**first.progress, "bytes_done": 10})  # this run only
    copied = copy.deepcopy(second.progress)  # a copy is plain, to change
    copied["bytes_done"] = 20

    assert second.progress["bytes_done"] == 0 and second.gpu_ids == []
    assert first.progress["bytes_done"] == 10


def test_a_submitted_value_is_shared_with_equal_ones():
    assert shared({"name": "sh", "version": "1"}) is shared({"name": "sh", "version": "1"})
    assert shared({"name": "sh", "version": "2"}) == {"name": "sh", "version": "2"}
    assert shared([]) is not shared({})


def test_a_recorded_endpoint_with_credentials_comes_back_masked(store):
    store.save(new_run("training-1", 1, endpoint="http://user:secret@127.0.0.1:9"))

    (run,) = store.load()

    assert run.data["endpoint"] == "http://***@127.0.0.1:9"


def test_runs_decoded_from_a_list_share_their_equal_flat_values():
    text = json.dumps(
        {"models": [new_fields(f"training-{i}", i) for i in range(1, 4)], "count": 3, "extra": [{}]}
    )

    runs = json.loads(text, object_hook=shared_object)["models"]

    assert runs[0]["data"] is runs[1]["data"] is runs[2]["data"]
    assert runs[0]["results"]["prefix"] != runs[1]["results"]["prefix"]
    with pytest.raises(TypeError):
        runs[0]["framework"]["version"] = "2"
    assert runs == json.loads(text)["models"]
