"""Contract tests of Ray's dashboard: every endpoint the Ray launcher uses, one test each, through
``trainui.service.launchers.ray_api`` against a real Ray head, checking the shape of the answer
the launcher relies on (not Ray's whole answer). Run them against a new Ray before widening the
range of pyproject's ``ray`` extra.

Skipped where Ray is not installed.
"""

from __future__ import annotations

import io
import socket
import time
import uuid
import zipfile

import httpx
import pytest
from ray_head import RayHead, ray_installed

from trainui.service.launchers import ray_api
from trainui.service.launchers.ray_api import json_of, ray_error, ray_sentence

if not ray_installed():
    pytest.skip("ray is not installed (pip install 'ray[default]')", allow_module_level=True)

pytestmark = pytest.mark.ray

ENDED = ("SUCCEEDED", "FAILED", "STOPPED")


@pytest.fixture(scope="module")
def head():
    head = RayHead(num_gpus=4, num_cpus=2).start()
    yield head
    head.stop()


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=ray_api.TIMEOUT) as client:
        yield client


def package(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A zip as the launcher makes one: files at its top, with their modes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            zipped.writestr(info, data)
    return buffer.getvalue()


def payload(sid: str, entrypoint: str, gpus: int = 1, working_dir: str | None = None) -> dict:
    """A job as the launcher submits one (RayLauncher.start)."""
    runtime_env: dict = {"env_vars": {"TRAINUI_PROBE": sid}}
    if working_dir:
        runtime_env["working_dir"] = working_dir
    return {
        "entrypoint": entrypoint,
        "submission_id": sid,
        "runtime_env": runtime_env,
        "metadata": {"trainui_run": sid, "trainui_gpus": str(gpus)},
        "entrypoint_num_gpus": gpus,
    }


def submit(client, head, entrypoint: str, gpus: int = 1, working_dir: str | None = None) -> str:
    sid = f"contract-{uuid.uuid4().hex[:8]}"
    response = ray_api.submit_job(client, head.address, payload(sid, entrypoint, gpus, working_dir))
    assert response.status_code == 200, response.text
    return sid


def wait_for(client, head, sid: str, *states: str, timeout: float = 60) -> dict:
    """The job's details once its status is one of ``states`` (and, once it runs, its node is
    known: the log endpoints need it)."""
    deadline = time.monotonic() + timeout
    while True:
        info = json_of(ray_api.job_info(client, head.address, sid))
        if (
            info
            and info["status"] in states
            and (info["status"] == "PENDING" or info["driver_node_id"])
        ):
            return info
        assert time.monotonic() < deadline, f"job {sid}: {info}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def finished(client, head):
    """A job run from a package, to its end: (submission id, its details)."""
    zipped = package(
        {"hello.txt": (b"hello from the package\n", 0o644), "secret.json": (b"{}", 0o600)}
    )
    name = ray_api.package_name(zipped)
    assert ray_api.put_package(client, head.address, name, zipped).status_code == 200
    entrypoint = "cat hello.txt; stat -c 'mode=%a' secret.json; echo probe=$TRAINUI_PROBE"
    sid = submit(client, head, entrypoint, working_dir=f"gcs://{name}")
    return sid, wait_for(client, head, sid, *ENDED)


@pytest.fixture
def running(client, head):
    """A job that printed a line and sleeps: its details; stopped afterwards."""
    sid = submit(client, head, "echo tick; exec sleep 300")
    yield wait_for(client, head, sid, "RUNNING")
    ray_api.stop_job(client, head.address, sid)


def test_submit_job_answers_the_submission_id_and_refuses_it_twice(client, head):
    sid = f"contract-{uuid.uuid4().hex[:8]}"
    job = payload(sid, "true")
    response = ray_api.submit_job(client, head.address, job)
    assert response.status_code == 200, response.text
    assert response.json()["submission_id"] == sid
    again = ray_api.submit_job(client, head.address, job)  # a retry whose answer was lost
    assert again.status_code != 200
    assert "already exists" in ray_error(again)  # the launcher takes it as submitted


def test_job_info_has_the_status_node_exit_code_message_and_metadata(client, head, finished):
    sid, info = finished
    assert info["status"] == "SUCCEEDED", info
    assert info["driver_exit_code"] == 0
    assert isinstance(info["driver_node_id"], str) and info["driver_node_id"]
    assert isinstance(info["message"], str)
    assert info["metadata"] == {"trainui_run": sid, "trainui_gpus": "1"}
    failing = submit(client, head, "echo about to fail; exit 3")
    failed = wait_for(client, head, failing, *ENDED)
    assert (failed["status"], failed["driver_exit_code"]) == ("FAILED", 3), failed
    assert "exit code 3" in ray_sentence(failed["message"])
    assert ray_api.job_info(client, head.address, "contract-no-such-job").status_code == 404


def test_stop_job_says_stopped_for_a_running_and_a_pending_job(client, head, running):
    sid = running["submission_id"]
    assert json_of(ray_api.stop_job(client, head.address, sid)) == {"stopped": True}
    assert wait_for(client, head, sid, *ENDED)["status"] == "STOPPED"
    pending = submit(client, head, "echo never", gpus=8)  # more GPUs than the cluster has
    assert wait_for(client, head, pending, "PENDING")["status"] == "PENDING"
    assert json_of(ray_api.stop_job(client, head.address, pending)) == {"stopped": True}


def test_delete_job_refuses_a_running_job_and_deletes_an_ended_one(client, head, running):
    refused = ray_api.delete_job(client, head.address, running["submission_id"])
    assert refused.status_code not in (200, 404)  # the launcher tries again once it ended
    sid = submit(client, head, "true")
    wait_for(client, head, sid, *ENDED)
    assert ray_api.delete_job(client, head.address, sid).status_code == 200
    assert ray_api.job_info(client, head.address, sid).status_code == 404
    assert ray_api.delete_job(client, head.address, sid).status_code == 404  # already gone


def test_check_package_answers_404_until_the_package_is_stored(client, head):
    zipped = package({"f.txt": (uuid.uuid4().bytes, 0o644)})
    name = ray_api.package_name(zipped)
    assert ray_api.check_package(client, head.address, name).status_code == 404
    assert ray_api.put_package(client, head.address, name, zipped).status_code == 200
    assert ray_api.check_package(client, head.address, name).status_code == 200


def test_put_package_gives_a_job_its_files_their_modes_and_its_environment(client, head, finished):
    sid, info = finished
    with ray_api.job_log(client, head.address, info["driver_node_id"], sid, False) as response:
        log = response.read().decode()
    assert "hello from the package\n" in log
    assert "mode=600\n" in log  # the learner's secrets stay private on the node
    assert f"probe={sid}\n" in log


def test_job_log_file_gives_an_ended_jobs_whole_log(client, head, finished):
    sid, info = finished
    node = info["driver_node_id"]
    with ray_api.job_log(client, head.address, node, sid, False) as response:
        assert response.status_code == 200
        log = response.read()
    lines = log.decode().splitlines()
    # the learner's output, whole and in order, after what Ray wrote before it started
    ours = [line for line in lines if line.startswith(("hello", "mode=", "probe="))]
    assert ours == ["hello from the package", "mode=600", f"probe={sid}"]
    with ray_api.job_log(client, head.address, node, "contract-no-such-job", False) as response:
        assert response.status_code != 200


def test_job_log_stream_gives_a_running_jobs_lines_as_they_come(client, head, running):
    sid, node = running["submission_id"], running["driver_node_id"]
    received = b""
    with ray_api.job_log(client, head.address, node, sid, True, 0.1) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():  # the job goes on: the stream stays open
            received += chunk
            if b"tick\n" in received:
                break
    assert b"tick\n" in received


def test_list_nodes_tells_each_live_nodes_gpus(client, head):
    response = ray_api.list_nodes(client, head.address)
    assert response.status_code == 200
    assert ray_api.node_gpus(json_of(response)) == [4]


def test_cluster_status_tells_the_gpus_in_use_and_when(client, head):
    deadline = time.monotonic() + 30
    while True:  # the autoscaler's first report comes a moment after the head starts
        used, when = ray_api.gpus_in_use(json_of(ray_api.cluster_status(client, head.address)))
        if used is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert used is not None and 0 <= used <= 4
    assert isinstance(when, float) and abs(when - time.time()) < 60  # seconds since the epoch


def test_a_dashboard_that_does_not_answer_is_unreachable_in_words():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening
        with (
            httpx.Client(timeout=ray_api.TIMEOUT) as client,
            pytest.raises(ray_api.Unreachable, match="connection refused"),
        ):
            ray_api.job_info(client, address, "any")
