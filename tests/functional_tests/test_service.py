"""The service itself: one per home, idle exit, retention, API errors, events."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
from test_remote import free_port

from trainui.client import Client, ClientError


def test_one_service_per_home(home):
    home.cli("list", check=True)  # starts the service
    second = home.cli("serve", timeout=30)
    assert second.returncode == 1
    assert f"a trainui service is already running for {home.path}" in second.stderr


def test_a_command_given_while_the_service_exits_starts_the_next_one(home):
    """A service that stops holds its lock while it delivers its last notifications (up to
    5 s), its socket closed: a command given then said "a trainui service is already running"
    for those seconds. It waits for that service to end, then starts the next."""
    home.path.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(  # as an exiting service: the lock held, no socket, 1.5 s more
        [sys.executable, "-c", (
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(home.path / 'service.lock')!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, str(os.getpid()).encode()); print('held', flush=True)\n"
            "time.sleep(1.5)\n"
        )],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        listed = home.cli("list", timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert holder.poll() is not None  # it answered once the old one had gone
    finally:
        holder.kill()
        holder.wait()


def test_a_damaged_run_store_or_token_file_or_a_bad_port_is_a_sentence(home):
    """The box owner's mistakes at the service's start: what to do, never a traceback."""
    bad_port = home.cli("serve", "--port", "99999", timeout=30)
    assert bad_port.returncode == 2 and "'99999' is not a TCP port (1 to 65535)" in (
        bad_port.stderr
    )
    home.path.mkdir(parents=True, exist_ok=True)
    store = home.path / "runs.db"
    store.write_text("garbage\n")
    for said in (home.cli("serve", "--no-tcp", timeout=30), home.cli("list", timeout=60)):
        assert said.returncode == 1 and "Traceback" not in said.stderr, said.stderr
        assert f"the run store {store} cannot be read: file is not a database. Move it aside" in (
            said.stderr
        )
    store.unlink()
    tokens = home.path / "tokens.json"
    tokens.write_text("{bad")
    tokens.chmod(0o600)
    said = home.cli("serve", "--port", str(free_port()), timeout=30)
    assert said.returncode == 1 and "Traceback" not in said.stderr, said.stderr
    assert f"{tokens} cannot be read" in said.stderr


def test_the_service_exits_when_idle_and_comes_back_when_needed(home):
    home.env["TRAINUI_IDLE_EXIT"] = "0.5"
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest("sleep 1"))
    pid = home.service_pid()
    assert pid
    home.wait(model_id, "completed")
    deadline = time.monotonic() + 20
    while home.service_pid() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert home.service_pid() is None, "the idle service did not exit"
    assert home.show(model_id)["status"] == "completed"  # a new service, the same history
    assert home.service_pid() not in (None, pid)


def test_history_is_purged_after_the_retention_time(home):
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest("true"))
    home.wait(model_id, "completed")
    home.stop()
    home.env["TRAINUI_RETENTION_DAYS"] = "0"
    time.sleep(0.1)
    assert "0 records found." in home.cli("list", check=True).stdout
    assert not (home.path / "runs" / model_id).exists()
    assert (home.buckets / "results" / model_id / "training-log.txt").exists()  # never removed


def test_unknown_runs_and_bad_requests_are_sentences(home):
    result = home.cli("show", "training-AAAAAAAAA")
    assert result.returncode == 1
    assert result.stderr.strip() == "trainui: run training-AAAAAAAAA not found"
    assert home.cli("halt", "training-AAAAAAAAA").returncode == 1
    assert home.cli("delete", "trained-models", "training-AAAAAAAAA").returncode == 1
    usage = home.cli("show", "a", "b", "c")
    assert usage.returncode == 2 and "usage: trainui show [trained-models] ID" in usage.stderr


def test_halting_a_run_that_ended_is_refused(home):
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest("true"))
    home.wait(model_id, "completed")
    result = home.cli("halt", model_id)
    assert result.returncode == 1
    assert f"run {model_id} has already ended (completed)" in result.stderr


def test_download_definition_returns_the_submitted_zip(home, tmp_path):
    model = home.model("m", {"train.py": "print(1)\n", "lib.py": "x = 1\n"})
    model_id = home.submit(model, home.manifest("true"))
    out = tmp_path / "out.zip"
    result = home.cli("download", model_id, "--definition", "-o", str(out), check=True)
    assert str(out) in result.stdout
    import zipfile

    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["lib.py", "train.py"]


def test_a_definition_too_big_to_send_from_memory_arrives_whole(home, tmp_path):
    from trainui.client import INLINE_UPLOAD

    model = tmp_path / "big"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(INLINE_UPLOAD + 100_000))  # incompressible
    (model / "train.py").write_text("print(1)\n")
    model_id = home.submit(model, home.manifest("true"))
    out = tmp_path / "out.zip"
    home.cli("download", model_id, "--definition", "-o", str(out), check=True)
    import zipfile

    with zipfile.ZipFile(out) as zf:
        assert zf.read("weights.bin") == (model / "weights.bin").read_bytes()
    assert out.stat().st_size > INLINE_UPLOAD  # it went the streamed way


@pytest.mark.parametrize("shape", ["plain", "semicolon", "unquoted", "epilogue", "medium", "large"])
def test_every_shape_of_submission_body_is_read_the_same(home, tmp_path, shape):
    """Plain bodies, unusual ones (a quoted semicolon, an unquoted name, an epilogue), bodies
    over 1 MiB: Starlette's parser reads each, the same run either way."""
    import io
    import zipfile

    import httpx

    from conftest import multipart_submission

    home.cli("list", check=True)  # a service
    definition = io.BytesIO()
    with zipfile.ZipFile(definition, "w") as zf:
        zf.writestr("train.py", "print('shape ok')\n")
        if shape == "medium":  # over the size kept in the run store, under 1 MiB
            zf.writestr("weights.bin", os.urandom(600_000))
        elif shape == "large":  # a body over 1 MiB (the parser spools it)
            zf.writestr("weights.bin", os.urandom(1_200_000))
    body, content_type = multipart_submission(
        definition.getvalue(), home.manifest("python3 train.py").read_bytes()
    )
    boundary = content_type.split("=", 1)[1].encode()
    if shape == "semicolon":
        body = body.replace(b'filename="model.zip"', b'filename="model;1.zip"', 1)
    elif shape == "unquoted":
        body = body.replace(b'name="manifest"', b"name=manifest", 1)
    elif shape == "epilogue":
        body = body.replace(b"--" + boundary + b"--", b"--" + boundary + b"--" + b"x" * 2000, 1)
    transport = httpx.HTTPTransport(uds=str(home.path / "trainui.sock"))
    with httpx.Client(transport=transport, base_url="http://trainui") as http:
        answer = http.post(
            "/v3/models",
            content=body,
            headers={"Content-Type": content_type},
            timeout=30,
        )
    assert answer.status_code == 201, answer.text
    model_id = answer.json()["model_id"]
    run = home.wait(model_id, "completed", "failed")
    assert run["status"] == "completed", run
    log = home.cli("logs", model_id, check=True).stdout
    assert "shape ok" in log


def test_the_stored_manifest_has_no_secret(home):
    manifest = home.manifest("true")
    text = manifest.read_text().replace(
        "  connection: {}\n  target:", "  connection: {path: /nonexistent-bucket-root}\n  target:"
    )
    manifest.write_text(text)
    model_id = home.submit(home.model("m", {"t.py": ""}), manifest)
    shown = home.cli("show", model_id, "--json", check=True).stdout
    assert "/nonexistent-bucket-root" in shown  # a path is no secret


async def test_events_report_run_changes(home):
    os.environ.update(home.env)
    async with Client(home=str(home.path)) as client:
        await client.health()
        seen: list[tuple[str, str]] = []

        async def listen():
            async for _, kind, data in client.events():
                seen.append((kind, data.get("status")))
                if data.get("status") == "completed":
                    return

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.2)
        model = home.model("m", {"t.py": ""})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trainui", "train", str(model), str(home.manifest("sleep 0.5")),
            env=home.env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()
        await asyncio.wait_for(listener, 30)
    statuses = [status for kind, status in seen if kind == "run"]
    assert statuses[0] == "pending" or statuses[0] == "downloading"
    assert statuses[-1] == "completed"
    assert "running" in statuses


async def test_log_byte_ranges_from_either_end(home):
    model_id = home.submit(
        home.model("m", {"t.py": ""}), home.manifest("for i in 1 2 3 4 5; do echo line-$i; done")
    )
    home.wait(model_id, "completed")
    async with Client(home=str(home.path)) as client:
        whole, size, start = await client.read_log(model_id)
        assert (size, start) == (len(whole), 0)
        tail, size2, start2 = await client.read_log(model_id, offset=-7)
        assert tail == b"line-5\n"[-7:] or tail == whole[-7:]
        assert start2 == size - 7 and size2 == size
        middle, _, _ = await client.read_log(model_id, offset=start2 - 7, limit=7)
        assert middle == whole[size - 14 : size - 7]
        with pytest.raises(ClientError) as refused:
            await client.read_log(model_id, offset=0, limit=-1)
        assert refused.value.status == 400


def test_list_json_prints_the_api_objects(home):
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest("true"))
    home.wait(model_id, "completed")
    runs = json.loads(home.cli("list", "--json", check=True).stdout)
    (run,) = runs
    for key in (
        "model_id", "url", "name", "description", "framework", "resource", "gpus", "gpu_ids",
        "status", "status_message", "error_code", "exit_code", "submitted_at", "started_at",
        "finished_at", "owner", "data", "results", "progress",
    ):  # fmt: skip
        assert key in run, key
    assert run["model_id"] == model_id
    assert run["submitted_at"].endswith("Z")
    assert not any(key in run for key in ("learner_pid", "seq", "deleted"))


def test_list_is_the_same_whether_or_not_a_service_was_running(home):
    first = home.submit(home.model("m", {"t.py": ""}), home.manifest("true", name="first"))
    second = home.submit(home.model("m", {"t.py": ""}), home.manifest("true", name="second"))
    home.wait(first, "completed")
    home.wait(second, "completed")
    home.stop()
    cold = home.cli("list", "--json", check=True).stdout  # the client starts a service
    assert home.service_pid()
    warm = home.cli("list", "--json", check=True).stdout  # asks the running one directly
    assert json.loads(cold) == json.loads(warm)
    assert [run["model_id"] for run in json.loads(warm)] == [first, second]
    assert json.loads(warm)[1] == home.show(second)
    table = home.cli("list", check=True).stdout
    assert "2 records found." in table and first in table and second in table
    only = home.cli("list", "--status", "failed", check=True).stdout
    assert "0 records found." in only and first not in only


async def test_the_list_follows_every_change_of_a_run(home):
    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest("sleep 60"))
    home.wait(model_id, "running")
    (running,) = json.loads(home.cli("list", "--json", check=True).stdout)
    assert running["status"] == "running" and running["finished_at"] is None
    home.cli("halt", model_id, check=True)
    home.wait(model_id, "halted")
    (halted,) = json.loads(home.cli("list", "--json", check=True).stdout)
    assert halted["status"] == "halted" and halted["finished_at"]
    assert halted == home.show(model_id)
    async with Client(home=str(home.path), environ=home.env) as client:
        lines = await client.http.get("/v3/models", headers={"Accept": "application/x-ndjson"})
        assert lines.headers["content-type"].startswith("application/x-ndjson")
        assert lines.headers["x-total-count"] == "1"
        assert [json.loads(line) for line in lines.text.splitlines()] == [halted]
        plain = (await client.http.get("/v3/models", params={"status": "running"})).json()
        assert plain == {"models": [], "count": 0}


def test_a_missing_data_bucket_refuses_the_submission_with_c103(home):
    import shutil

    manifest = home.manifest("true", data="gone")
    shutil.rmtree(home.buckets / "gone")
    model = home.model("m", {"t.py": ""})
    for attempt in range(2):  # a refusal is not remembered: each submission checks again
        result = home.cli("train", str(model), str(manifest))
        assert result.returncode == 1, attempt
        assert result.stderr.strip() == (
            "trainui: the training data bucket is refused: local bucket 'gone' does not exist"
            f" ({home.buckets / 'gone'})"
        )
    assert "0 records found." in home.cli("list", check=True).stdout
    (home.buckets / "gone").mkdir()
    assert home.wait(home.submit(model, manifest), "completed")["status"] == "completed"


def test_gpus_says_plainly_that_there_is_no_gpu(home):
    home.env.pop("TRAINUI_GPUS")  # NVML asked for real: this machine has no NVIDIA driver
    result = home.cli("gpus", check=True)
    assert result.stdout.strip() == (
        "no NVIDIA GPU or driver found (NVML Shared Library Not Found)"
    )
    snapshot = json.loads(home.cli("gpus", "--json", check=True).stdout)
    assert (snapshot["state"], snapshot["gpus"]) == ("no_gpu", [])


def test_gpus_with_monitoring_off(home):
    result = home.cli("gpus", check=True)
    assert "GPU monitoring is off (TRAINUI_GPUS=none)" in result.stdout


class _Imports:
    """A finder that notes every module looked for (and finds none: the others do)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def find_spec(self, name, path=None, target=None):
        self.asked.append(name)
        return None


async def test_the_async_client_imports_nothing_per_request(home):
    # httpcore asks sniffio which event loop runs, several times a request: without it
    # installed, each ask was an import that failed after searching all of sys.path
    home.cli("list", check=True)
    async with Client(home=str(home.path), environ=home.env) as client:
        await client.health()
        await client.list_runs()  # whatever the first requests import, imported now
        imports = _Imports()
        sys.meta_path.insert(0, imports)
        try:
            for _ in range(3):
                await client.health()
                await client.list_runs()
        finally:
            sys.meta_path.remove(imports)
    assert imports.asked == []


async def test_a_status_filter_that_names_no_state_is_refused_not_an_empty_list(home):
    home.cli("list", check=True)
    async with Client(home=str(home.path), environ=home.env) as client:
        answer = await client.http.get("/v3/models", params={"status": "runing"})
        assert answer.status_code == 400
        assert answer.json()["message"].startswith("status: 'runing' is not a state; the states:")
        good = await client.http.get("/v3/models", params={"status": "running,pending"})
        assert good.status_code == 200 and good.json() == {"models": [], "count": 0}
