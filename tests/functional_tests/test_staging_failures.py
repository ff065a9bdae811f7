"""What goes wrong while a learner stages its data: wrong data, a server that dies, cut or
corrupted connections, objects that vanish, a full disk, and two runs staging one bucket."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from trainui.storage import StoreError, open_store
from trainui.storage.cache import ENTRY_MTIME_NS, Cache
from trainui.storage.staging import stage


def s3(server, bucket, endpoint=None) -> dict:
    return {"type": "s3", "bucket": bucket, "connection": server.connection(endpoint)}


def cache_is_consistent(home) -> list[str]:
    """Every entry whole (size of its object, untouched); nothing left in tmp/."""
    problems = [f"left in tmp: {name}" for name in os.listdir(home / "cache" / "tmp")]
    for shard in (home / "cache" / "objects").iterdir():
        for entry in shard.iterdir():
            if entry.stat().st_mtime_ns != ENTRY_MTIME_NS:
                problems.append(f"changed entry {entry}")
    return problems


def wait_for_bytes(run, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if run.status()["progress"]["bytes_done"] >= at_least:
                return
        assert run.process.poll() is None, run.log()
        time.sleep(0.02)
    raise AssertionError(f"the learner did not stage {at_least} bytes: {run.log()}")


def test_a_key_that_would_escape_data_dir_fails_the_run_with_s302(s3_server, learner_run, tmp_path):
    data = s3_server.bucket()
    s3_server.seed(data, {"ok.txt": b"fine", "../../evil.txt": b"evil"})
    results = s3_server.bucket()
    run = learner_run(s3(s3_server, data), s3(s3_server, results))
    status = run.run()
    assert status["status"] == "failed" and status["error_code"] == "S302"
    assert status["status_message"] == (
        "object key '../../evil.txt' contains a '..' path component: it would be written"
        " outside its folder"
    )
    assert not list(tmp_path.rglob("evil.txt"))
    stored = s3_server.objects(results)
    assert f"{run.model_id}/training-log.txt" in stored  # the log is stored all the same


def test_keys_that_collide_fail_the_run_naming_both(s3_server, learner_run):
    data = s3_server.bucket({"a": "file", "a/b": "file under a"})
    run = learner_run(s3(s3_server, data), s3(s3_server, s3_server.bucket()))
    status = run.run()
    assert status["error_code"] == "S302"
    assert status["status_message"] == (
        "object keys 'a' and 'a/b' conflict: 'a' would have to be both a file and a folder"
    )


def test_a_missing_data_bucket_fails_the_run_with_s302(s3_server, learner_run):
    run = learner_run(s3(s3_server, "no-such-data"), s3(s3_server, s3_server.bucket()))
    status = run.run()
    assert status["error_code"] == "S302"
    assert status["status_message"] == (
        f"bucket 'no-such-data' does not exist at {s3_server.endpoint}"
    )


def test_an_object_deleted_after_the_listing_is_named(s3_server, tmp_path):
    bucket = s3_server.bucket({"a.txt": "a", "b.txt": "b"})
    store = open_store("s3", bucket, s3_server.connection(), "/nowhere")
    listed = list(store.list_objects())
    s3_server.client.delete_object(Bucket=bucket, Key="b.txt")
    with pytest.raises(StoreError) as caught:
        stage(store, listed, str(tmp_path / "data"), cache=Cache(str(tmp_path / "cache")))
    assert str(caught.value) == (
        f"object 'b.txt' no longer exists in S3 bucket '{bucket}' at {s3_server.endpoint}:"
        " it was deleted after the bucket was listed"
    )
    assert not (tmp_path / "data" / "b.txt").exists()
    assert os.listdir(tmp_path / "cache" / "tmp") == []


def test_a_cut_connection_is_resumed_where_it_stopped(s3_server, fault_proxy, tmp_path):
    body = os.urandom(3 << 20)
    bucket = s3_server.bucket({"model.bin": body})
    proxy = fault_proxy(s3_server.port)
    proxy.cut(after=1_000_000)
    store = open_store("s3", bucket, s3_server.connection(proxy.endpoint), "/nowhere")
    [info] = store.list_objects()
    moved = []
    store.download("model.bin", str(tmp_path / "model.bin"), info, moved.append)
    assert (tmp_path / "model.bin").read_bytes() == body
    first, second = proxy.gets()
    assert "range:" not in first.lower()
    resumed_at = next(
        int(line.split("=")[1].rstrip("-"))
        for line in second.split("\r\n")
        if line.lower().startswith("range:")
    )
    assert 0 < resumed_at < 1_000_000
    assert sum(moved) == len(body)


def test_corrupted_bytes_fail_the_run_with_s302(s3_server, fault_proxy, learner_run):
    body = os.urandom(1 << 20)
    data = s3_server.bucket({"weights.bin": body})
    proxy = fault_proxy(s3_server.port)
    proxy.corrupt(at=200_000)
    run = learner_run(s3(s3_server, data, proxy.endpoint), s3(s3_server, s3_server.bucket()))
    status = run.run()
    assert status["error_code"] == "S302", run.log()
    assert status["status_message"].startswith(
        f"object 'weights.bin' of S3 bucket '{data}' at {proxy.endpoint} arrived corrupted:"
        " its MD5 is "
    )
    assert status["status_message"].endswith(f", its ETag says {hashlib.md5(body).hexdigest()}")
    assert cache_is_consistent(run.home) == []
    assert list((run.home / "cache" / "objects").rglob("*")) == []


def test_a_server_that_dies_mid_download_is_retried_then_fails_s302(
    s3_server, fault_proxy, learner_run
):
    data = s3_server.bucket()
    s3_server.seed(data, {"big.bin": os.urandom(32 << 20), "small.txt": b"small"})
    results = s3_server.bucket()
    proxy = fault_proxy(s3_server.port)
    proxy.throttle(8 << 20)
    run = learner_run(s3(s3_server, data, proxy.endpoint), s3(s3_server, results))
    run.start(TRAINUI_STORE_ATTEMPTS="3")
    wait_for_bytes(run, 1 << 20)
    proxy.stop()
    status = run.wait()
    assert status["status"] == "failed" and status["error_code"] == "S302"
    assert status["status_message"] == (
        f"object 'big.bin' of S3 bucket '{data}' at {proxy.endpoint} could not be downloaded"
        " after 3 tries: connection refused"
    )
    log = run.log()
    assert "failed (S302): object 'big.bin'" in log
    assert cache_is_consistent(run.home) == []
    assert f"{run.model_id}/training-log.txt" in s3_server.objects(results)


def test_two_runs_staging_one_bucket_at_once_download_each_object_once(
    s3_server, fault_proxy, learner_run, tmp_path
):
    files = {f"part-{i:02d}.bin": os.urandom(256 << 10) for i in range(24)}
    data = s3_server.bucket()
    s3_server.seed(data, files)
    results = s3_server.bucket()
    proxy = fault_proxy(s3_server.port)
    proxy.throttle(2 << 20)  # both runs stage for about a second and a half
    home = tmp_path / "shared-home"
    runs = [
        learner_run(s3(s3_server, data, proxy.endpoint), s3(s3_server, results), home=home)
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        assert run.wait()["status"] == "completed", run.log()
    assert sorted(get.split()[1].split("/")[-1] for get in proxy.gets()) == sorted(files)
    for run in runs:
        for key, body in files.items():
            assert f"data {key} {hashlib.md5(body).hexdigest()}" in run.log()
    downloaded = [int(r.log().split(" from the cache, ")[1].split()[0]) for r in runs]
    assert sum(downloaded) == len(files)
    assert cache_is_consistent(home) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB file system (tmpfs), for a disk that fills up; skipped where none can be made."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_run_cleanly_and_keeps_the_cache_whole(
    s3_server, learner_run, small_disk
):
    files = {f"shard-{i}.bin": os.urandom(5 << 20) for i in range(3)}
    data = s3_server.bucket()
    s3_server.seed(data, files)
    results = s3_server.bucket()
    home = small_disk / "home"
    run = learner_run(s3(s3_server, data), s3(s3_server, results), home=home)
    status = run.run()
    assert status["status"] == "failed" and status["error_code"] == "S302", run.log()
    assert status["status_message"].startswith("the disk is full: object 'shard-")
    assert status["status_message"].endswith("(partial files were removed)")
    assert cache_is_consistent(home) == []
    entries = [p for p in (home / "cache" / "objects").rglob("*") if p.is_file()]
    assert entries and all(p.stat().st_size == 5 << 20 for p in entries)
    assert not (run.dir / "work").exists()
    assert f"{run.model_id}/training-log.txt" in s3_server.objects(results)


def test_halting_a_run_while_it_stages_stops_the_transfers(s3_server, fault_proxy, learner_run):
    data = s3_server.bucket()
    s3_server.seed(data, {"big.bin": os.urandom(48 << 20)})
    proxy = fault_proxy(s3_server.port)
    proxy.throttle(4 << 20)  # twelve seconds for the whole object
    results = s3_server.bucket()
    run = learner_run(s3(s3_server, data, proxy.endpoint), s3(s3_server, results))
    run.start()
    wait_for_bytes(run, 1 << 20)
    halted_at = time.monotonic()
    run.halt()
    status = run.wait(timeout=30)
    assert status["status"] == "halted", run.log()
    assert time.monotonic() - halted_at < 8
    assert "staging stopped after 0 of 1 object" in run.log()
    assert cache_is_consistent(run.home) == []
    # stored as for any halt: the log to its last line, and the status
    stored = s3_server.objects(results)
    assert (
        stored[f"{run.model_id}/training-log.txt"].decode().endswith("trainui: halted by request\n")
    )
    assert json.loads(stored[f"{run.model_id}/training-status.json"])["status"] == "halted"


def test_a_learner_killed_while_it_stages_has_its_log_stored_by_the_service(
    home, s3_server, fault_proxy, tmp_path
):
    data = s3_server.bucket()
    s3_server.seed(data, {"big.bin": os.urandom(32 << 20)})
    proxy = fault_proxy(s3_server.port)
    proxy.throttle(2 << 20)  # sixteen seconds for the whole object
    results = s3_server.bucket()
    connection = (
        "  connection:\n"
        "    aws_access_key_id: ${S3_KEY_ID}\n"
        "    aws_secret_access_key: ${S3_SECRET}\n"
        "    endpoint_url: "
    )
    manifest = tmp_path / "killed.yml"
    manifest.write_text(
        "model_definition:\n"
        "  name: killed\n"
        "  framework: {name: python, version: '3.11'}\n"
        "  execution: {command: echo never, resource: small}\n"
        f"training_data:\n{connection}{proxy.endpoint}\n"
        f"  source: {{bucket: {data}, type: s3}}\n"
        f"training_results:\n{connection}{s3_server.endpoint}\n"
        f"  target: {{bucket: {results}, type: s3}}\n"
    )
    secrets = {"S3_KEY_ID": s3_server.key_id, "S3_SECRET": s3_server.secret}
    model_id = home.submit(home.model("k", {"t.py": ""}), manifest, **secrets)
    deadline = time.monotonic() + 30
    while home.show(model_id)["progress"]["bytes_done"] < (1 << 20):
        assert time.monotonic() < deadline, home.show(model_id)
        time.sleep(0.1)
    status_file = home.path / "runs" / model_id / "status.json"
    learner = json.loads(status_file.read_text())["learner_pid"]
    assert home._ours(learner)  # a learner of this test's home, never anyone else's process
    os.kill(learner, signal.SIGKILL)

    run = home.wait(model_id, "failed", timeout=30)
    assert run["error_code"] == "S300"
    assert run["status_message"].startswith("the learner process ended unexpectedly")
    deadline = time.monotonic() + 30
    while f"{model_id}/training-log.txt" not in (stored := s3_server.objects(results)):
        assert time.monotonic() < deadline, sorted(stored)
        time.sleep(0.1)
    assert sorted(stored) == [
        f"{model_id}/_submitted_code/model.zip",
        f"{model_id}/manifest.yml",
        f"{model_id}/training-log.txt",
        f"{model_id}/training-status.json",
    ]
    log = stored[f"{model_id}/training-log.txt"].decode()
    assert "staging 1 object (" in log
    assert log.endswith(f"trainui: failed (S300): {run['status_message']}\n")
    assert log == home.cli("logs", model_id, check=True).stdout
    training_status = json.loads(stored[f"{model_id}/training-status.json"])
    assert training_status["status"] == "failed" and training_status["error_code"] == "S300"
    assert training_status["results_partial"] is True
    assert training_status["model_id"] == model_id and training_status["name"] == "killed"
    assert s3_server.secret.encode() not in stored[f"{model_id}/manifest.yml"]
    assert (home.path / "runs" / model_id / "results.json").exists()  # kept for downloads


def test_results_that_cannot_be_stored_fail_the_run_with_s303(s3_server, learner_run):
    data = s3_server.bucket({"a.txt": "a"})
    run = learner_run(s3(s3_server, data), s3(s3_server, "no-such-results"))
    status = run.run()
    assert status["status"] == "failed" and status["error_code"] == "S303"
    kept = run.dir / "results-not-stored"
    assert status["status_message"] == (
        "results could not be stored: bucket 'no-such-results' does not exist at"
        f" {s3_server.endpoint}; the results are kept in {kept} until the run is deleted"
    )
    # the trained model was deleted with the work folder: it is kept, and the log says where
    assert (kept / "model.txt").read_text() == "trained"
    assert f"trainui: the results are kept in {kept} until the run is deleted\n" in run.log()
    # nothing was stored, and it is said so, once (not "stored 1 of 5 files", and twice)
    log = run.log()
    assert log.count("trainui: results could not be stored: bucket 'no-such-results'") == 1, log
    assert "trainui: stored 0 of 5 files in S3 bucket 'no-such-results'" in log, log


def test_halting_a_run_whose_data_server_never_answers_its_listing_stops_it_at_once(
    s3_server, learner_run
):
    # a server that takes in connections and requests and never answers (a hung gateway):
    # botocore would wait its read timeout at each of its tries, minutes in all
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held: list[socket.socket] = []

    def take() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(silent.accept()[0])

    threading.Thread(target=take, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        results = s3_server.bucket()
        run = learner_run(s3(s3_server, "data", endpoint), s3(s3_server, results))
        run.start()
        deadline = time.monotonic() + 30
        while not held:  # the listing's request went out, and waits
            assert time.monotonic() < deadline and run.process.poll() is None, run.log()
            time.sleep(0.02)
        halted_at = time.monotonic()
        run.halt()
        status = run.wait(timeout=60)
        assert time.monotonic() - halted_at < 10, run.log()
    finally:
        for s in [silent, *held]:
            s.close()
    assert status["status"] == "halted", run.log()
    assert f"staging stopped while S3 bucket 'data' at {endpoint} was being listed" in run.log()
    stored = s3_server.objects(results)
    assert json.loads(stored[f"{run.model_id}/training-status.json"])["status"] == "halted"


def test_a_folder_object_that_holds_bytes_is_said_not_dropped_silently(s3_server, learner_run):
    data = s3_server.bucket({"dir/": "6bytes", "dir/a.txt": "a"})
    run = learner_run(s3(s3_server, data), s3(s3_server, s3_server.bucket()))
    status = run.run()
    log = run.log()
    assert status["status"] == "completed", log
    assert (
        "trainui: warning: 'dir/': a key ending in '/' is a folder in DATA_DIR; the bytes its"
        " object holds are not staged\n" in log
    )
