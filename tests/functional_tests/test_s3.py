"""The ``s3`` store against real S3 servers: moto over HTTP, and the Swift server's S3 API
(which, unlike moto, checks signatures and keys)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import spare_learners
from trainui.storage import (
    StoreError,
    check_access,
    download_prefix,
    open_store,
)
from trainui.storage import s3 as s3_module
from trainui.storage.cache import Cache
from trainui.storage.staging import stage

ODD_KEYS = {
    "train.csv": "a,b\n1,2\n",
    "images/cat 1.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "ünïcödé/€uro ☃.txt": "snow",
    "signs/plus+equals=amp&question?hash#pct%20.txt": "signs",
    "tilde~/quote'star*(paren).bin": b"\x00\x01\x02",
    "empty.txt": b"",
    "deep/a/b/c/d/e/f.txt": "deep",
}


def md5(data: bytes | str) -> str:
    return hashlib.md5(data if isinstance(data, bytes) else data.encode()).hexdigest()


def store_of(server, bucket, **changes):
    return open_store("s3", bucket, server.connection(**changes), home="/nowhere")


def files_under(root) -> dict[str, bytes]:
    found = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


# ------------------------------------------------------------------------ the store itself


def test_objects_with_odd_keys_are_listed_and_staged_byte_for_byte(s3_server, tmp_path):
    bucket = s3_server.bucket(ODD_KEYS)
    store = store_of(s3_server, bucket)
    listed = list(store.list_objects())
    assert [o.key for o in listed] == sorted(ODD_KEYS)
    assert {o.key: (o.size, o.etag) for o in listed} == {
        k: (len(v if isinstance(v, bytes) else v.encode()), md5(v)) for k, v in ODD_KEYS.items()
    }
    counters = stage(store, listed, str(tmp_path / "data"))
    assert counters.objects_done == len(ODD_KEYS)
    assert counters.bytes_done == sum(o.size for o in listed)
    expected = {k: v if isinstance(v, bytes) else v.encode() for k, v in ODD_KEYS.items()}
    assert files_under(tmp_path / "data") == expected


def test_listing_a_prefix_and_folder_objects(s3_server, tmp_path):
    bucket = s3_server.bucket({"a/1.txt": "1", "a/2.txt": "2", "ab.txt": "x", "empty-dir/": ""})
    store = store_of(s3_server, bucket)
    assert [o.key for o in store.list_objects("a/")] == ["a/1.txt", "a/2.txt"]
    stage(store, list(store.list_objects()), str(tmp_path / "data"))
    assert (tmp_path / "data" / "empty-dir").is_dir()
    assert sorted(files_under(tmp_path / "data")) == ["a/1.txt", "a/2.txt", "ab.txt"]


def test_a_listing_of_several_pages_is_read_to_its_end(s3_server):
    bucket = s3_server.bucket()
    s3_server.seed(bucket, {f"k/{i:04d}": b"%d" % i for i in range(2345)})
    keys = [o.key for o in store_of(s3_server, bucket).list_objects()]
    assert keys == [f"k/{i:04d}" for i in range(2345)]


def test_a_large_file_is_uploaded_in_parts_and_downloads_whole(s3_server, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 6 << 20)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 << 20)
    data = os.urandom(12 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    bucket = s3_server.bucket()
    store = store_of(s3_server, bucket)
    moved = []
    store.upload(str(tmp_path / "big.bin"), "models/big.bin", moved.append)
    store.close()
    assert sum(moved) == len(data)
    [info] = store_of(s3_server, bucket).list_objects()
    assert info.etag.endswith("-3")  # three parts, so no MD5 to check: the size is
    size = store_of(s3_server, bucket).download(info.key, str(tmp_path / "back.bin"), info)
    assert size == len(data) and (tmp_path / "back.bin").read_bytes() == data


def test_uploads_are_signed_as_a_server_that_checks_signatures_accepts(
    swift_server, tmp_path, monkeypatch
):
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 6 << 20)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 << 20)
    big, small = os.urandom(11 << 20), b"small"
    (tmp_path / "big.bin").write_bytes(big)
    (tmp_path / "small.txt").write_bytes(small)
    bucket = swift_server.container()
    store = open_store("s3", bucket, swift_server.s3_connection(), "/nowhere")
    store.upload(str(tmp_path / "big.bin"), "run 1/ünï big.bin")
    store.upload(str(tmp_path / "small.txt"), "run 1/sm+all.txt")
    assert swift_server.objects(bucket) == {"run 1/ünï big.bin": big, "run 1/sm+all.txt": small}
    store.delete("run 1/ünï big.bin")  # signed as botocore signs it, checked by the server
    store.delete("run 1/ünï big.bin")  # gone already: no error (S3 answers 204)
    store.close()
    assert swift_server.objects(bucket) == {"run 1/sm+all.txt": small}


def test_a_refused_upload_is_one_sentence(swift_server, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"x" * 1000)
    bucket = swift_server.container()
    connection = swift_server.s3_connection(aws_secret_access_key="not-the-secret")
    store = open_store("s3", bucket, connection, "/nowhere")
    with pytest.raises(StoreError) as caught:
        store.upload(str(tmp_path / "m.bin"), "m.bin")
    assert str(caught.value) == (
        f"{swift_server.s3_endpoint} refused to write to bucket '{bucket}': the secret access"
        " key is not the one of the access key ID 'test:tester'"
    )


def test_a_failed_multipart_upload_is_aborted(s3_server, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 6 << 20)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 << 20)
    monkeypatch.setenv("TRAINUI_TRANSFER_THREADS", "1")  # parts one after the other
    monkeypatch.setenv("TRAINUI_STORE_ATTEMPTS", "2")
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(12 << 20))
    bucket = s3_server.bucket()
    store = store_of(s3_server, bucket)
    moved = []

    def shrink_after_the_first_part(n: int) -> None:
        moved.append(n)
        if len(moved) == 1:
            os.truncate(path, 6 << 20)  # the second part finds the file ended

    with pytest.raises(StoreError, match=r"big\.bin changed while it was being sent"):
        store.upload(str(path), "big.bin", shrink_after_the_first_part)
    store.close()
    assert sum(moved) == 5 << 20  # what was undone was counted back
    assert s3_server.objects(bucket) == {}
    assert s3_server.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def multipart_setup(s3_server, tmp_path, monkeypatch, size_mb: int):
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 6 << 20)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 << 20)
    monkeypatch.setenv("TRAINUI_STORE_ATTEMPTS", "2")
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(size_mb << 20))
    return path, s3_server.bucket()


def test_a_part_that_fails_while_others_are_sent_aborts_the_upload_after_them(
    s3_server, tmp_path, monkeypatch, fault_proxy
):
    monkeypatch.setenv("TRAINUI_TRANSFER_THREADS", "4")
    path, bucket = multipart_setup(s3_server, tmp_path, monkeypatch, 40)
    proxy = fault_proxy(s3_server.port)
    proxy.drop("partNumber=3 HTTP/")  # the network loses every try of part 3
    store = store_of(s3_server, bucket, endpoint=proxy.endpoint)
    with pytest.raises(StoreError, match=r"cannot write to S3 bucket .* \(after 2 tries\)"):
        store.upload(str(path), "big.bin")
    store.close()
    lines = [head.split("\r\n")[0] for head in proxy.requests]
    assert lines[-1].startswith(f"DELETE /{bucket}/big.bin?uploadId=")  # after every part
    assert sum(line.startswith("DELETE ") for line in lines) == 1
    assert s3_server.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_server.objects(bucket) == {}


def test_an_abort_the_network_lost_is_tried_again_when_the_store_closes(
    s3_server, tmp_path, monkeypatch, fault_proxy
):
    monkeypatch.setenv("TRAINUI_TRANSFER_THREADS", "2")
    path, bucket = multipart_setup(s3_server, tmp_path, monkeypatch, 12)
    proxy = fault_proxy(s3_server.port)
    store = store_of(s3_server, bucket, endpoint=proxy.endpoint)
    proxy.drop("uploadId=")  # every part and the abort: the server is out of reach a while
    with pytest.raises(StoreError):
        store.upload(str(path), "big.bin")
    assert len(s3_server.client.list_multipart_uploads(Bucket=bucket)["Uploads"]) == 1
    proxy.drop(None)  # back
    store.close()
    assert s3_server.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_results_the_bucket_took_only_in_part_say_so_in_training_status_json(
    s3_server, learner_run, fault_proxy
):
    # 65 MiB: over MULTIPART_THRESHOLD, so the learner sends it in parts; the network loses
    # every try of its second part
    command = (
        "import os; r = os.environ['RESULT_DIR']; "
        "open(os.path.join(r, 'model.bin'), 'wb').write(os.urandom(65 << 20)); "
        "open(os.path.join(r, 'notes.txt'), 'w').write('small')"
    )
    results = s3_server.bucket()
    proxy = fault_proxy(s3_server.port)
    proxy.drop("partNumber=2 HTTP/")
    run = learner_run(
        {
            "type": "s3",
            "bucket": s3_server.bucket({"x.csv": "1"}),
            "connection": s3_server.connection(),
        },
        {"type": "s3", "bucket": results, "connection": s3_server.connection(proxy.endpoint)},
        command=f"python3 -c {shlex.quote(command)}",
    )
    status = run.run(TRAINUI_STORE_ATTEMPTS="2", TRAINUI_TRANSFER_THREADS="1")
    assert status["status"] == "failed" and status["error_code"] == "S303", run.log()
    assert s3_server.client.list_multipart_uploads(Bucket=results).get("Uploads", []) == []
    stored = s3_server.objects(results)
    prefix = f"{run.model_id}/"
    assert prefix + "model.bin" not in stored
    training_status = json.loads(stored[prefix + "training-status.json"])
    assert training_status["status"] == "failed"
    assert training_status["results_partial"] is True
    assert "model.bin" in training_status["objects_not_stored"]
    not_stored = set(training_status["objects_not_stored"])
    expected = {"model.bin", "notes.txt", "_submitted_code/model.zip", "manifest.yml"}
    assert not_stored <= expected and not_stored == {
        k for k in expected if prefix + k not in stored
    }
    log = stored[prefix + "training-log.txt"].decode()
    assert log == run.log()  # the whole log, and nothing written after it was stored
    assert log.splitlines()[-1].startswith("trainui: failed (S303): results could not be stored:")


def test_a_log_the_bucket_did_not_take_is_said_in_the_status_not_after_the_logs_last_line(
    s3_server, learner_run, fault_proxy
):
    results = s3_server.bucket()
    proxy = fault_proxy(s3_server.port)
    run = learner_run(
        {
            "type": "s3",
            "bucket": s3_server.bucket({"x.csv": "1"}),
            "connection": s3_server.connection(),
        },
        {"type": "s3", "bucket": results, "connection": s3_server.connection(proxy.endpoint)},
    )
    proxy.drop(f"PUT /{results}/{run.model_id}/training-log.txt")
    status = run.run(TRAINUI_STORE_ATTEMPTS="2")
    assert status["error_code"] == "S303", run.log()
    assert "results could not be stored" in status["status_message"]
    assert run.log().splitlines()[-1] == "trainui: completed"  # the final line stays the last
    stored = s3_server.objects(results)
    assert f"{run.model_id}/training-log.txt" not in stored
    training_status = json.loads(stored[f"{run.model_id}/training-status.json"])
    assert training_status["status"] == "failed" and training_status["error_code"] == "S303"
    assert training_status["results_partial"] is True
    assert training_status["objects_not_stored"] == ["training-log.txt"]


def test_downloading_a_missing_object_names_it(s3_server, tmp_path):
    store = store_of(s3_server, s3_server.bucket())
    with pytest.raises(StoreError, match=r"^object 'nope\.txt' does not exist in S3 bucket"):
        store.download("nope.txt", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_download_prefix_fetches_a_runs_folder(s3_server, tmp_path):
    bucket = s3_server.bucket(
        {"run-1/model/w.bin": b"w" * 1000, "run-1/log.txt": "log", "run-10/other": "no"}
    )
    seen = []
    files, size = download_prefix(
        store_of(s3_server, bucket), "run-1/", str(tmp_path / "out"), lambda *a: seen.append(a)
    )
    assert (files, size) == (2, 1003)
    assert files_under(tmp_path / "out") == {"model/w.bin": b"w" * 1000, "log.txt": b"log"}
    assert seen[-1] == (2, 2, 1003, 1003)
    with pytest.raises(StoreError, match="nothing is stored under 'run-2/'"):
        download_prefix(store_of(s3_server, bucket), "run-2/", str(tmp_path / "none"))


# ------------------------------------------------------------------------------- checks


def test_check_access_reads_and_writes_a_bucket(s3_server):
    bucket = s3_server.bucket({"x": "1"})
    check_access("s3", bucket, s3_server.connection(), "/nowhere", write=False)
    check_access("s3", bucket, s3_server.connection(), "/nowhere", write=True)
    assert list(s3_server.objects(bucket)) == ["x"]  # the write probe is gone


def test_a_missing_bucket_is_named_with_its_endpoint(s3_server):
    with pytest.raises(StoreError) as caught:
        check_access("s3", "no-such-bucket", s3_server.connection(), "/nowhere", write=False)
    assert str(caught.value) == f"bucket 'no-such-bucket' does not exist at {s3_server.endpoint}"


def test_a_wrong_secret_is_refused_in_one_sentence_without_the_secret(swift_server):
    bucket = swift_server.container({"x": "1"})
    connection = swift_server.s3_connection(aws_secret_access_key="not-the-secret")
    with pytest.raises(StoreError) as caught:
        check_access("s3", bucket, connection, "/nowhere", write=False)
    message = str(caught.value)
    assert message == (
        f"{swift_server.s3_endpoint} refused to list bucket '{bucket}': the secret access key"
        " is not the one of the access key ID 'test:tester'"
    )
    assert "not-the-secret" not in message


def test_an_unknown_access_key_cannot_write(swift_server):
    bucket = swift_server.container()
    connection = swift_server.s3_connection(aws_access_key_id="nobody:none")
    with pytest.raises(StoreError, match=f"refused to write to bucket '{bucket}'"):
        check_access("s3", bucket, connection, "/nowhere", write=True)


def test_signatures_of_odd_keys_are_accepted_by_a_server_that_checks_them(swift_server, tmp_path):
    keys = {k: v for k, v in ODD_KEYS.items() if "#" not in k}  # Swift's own rule
    bucket = swift_server.container(keys)
    store = open_store("s3", bucket, swift_server.s3_connection(), "/nowhere")
    listed = list(store.list_objects())
    assert sorted(o.key for o in listed) == sorted(keys)
    stage(store, listed, str(tmp_path / "data"))
    assert files_under(tmp_path / "data") == {
        k: v if isinstance(v, bytes) else v.encode() for k, v in keys.items()
    }


def test_an_endpoint_nobody_listens_on_cannot_be_reached(monkeypatch):
    monkeypatch.setenv("TRAINUI_STORE_ATTEMPTS", "2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    connection = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "aws_access_key_id": "k",
        "aws_secret_access_key": "s",
    }
    with pytest.raises(StoreError) as caught:
        check_access("s3", "data", connection, "/nowhere", write=False)
    assert str(caught.value) == (
        f"cannot list S3 bucket 'data' at http://127.0.0.1:{port}: connection refused"
        " (after 2 tries)"
    )


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        ({"aws_access_key_id": "k"}, "has aws_access_key_id but no aws_secret_access_key"),
        ({"aws_session_token": "t"}, "has aws_session_token but no aws_access_key_id"),
        ({"addressing_style": "sideways"}, "expected one of path, virtual, auto"),
        (
            {"endpoint_url": "ftp://x", "aws_access_key_id": "k", "aws_secret_access_key": "s"},
            "'ftp://x' is not an http(s) URL",
        ),
    ],
)
def test_an_incomplete_connection_is_refused(connection, message):
    with pytest.raises(StoreError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_store("s3", "data", connection, "/nowhere")


# -------------------------------------------------------------------------------- cache


def test_a_second_staging_comes_from_the_cache_without_a_byte_moved(
    s3_server, tmp_path, fault_proxy
):
    bucket = s3_server.bucket(ODD_KEYS)
    proxy = fault_proxy(s3_server.port)
    store = store_of(s3_server, bucket, endpoint=proxy.endpoint)
    cache = Cache(str(tmp_path / "cache"))
    first = stage(store, list(store.list_objects()), str(tmp_path / "one"), cache=cache)
    assert first.bytes_transferred == first.bytes_total and first.cache_hits == 0
    gets = proxy.gets()
    assert len({get.split()[1] for get in gets}) == len(ODD_KEYS)
    second = stage(store, list(store.list_objects()), str(tmp_path / "two"), cache=cache)
    assert second.bytes_transferred == 0 and second.cache_hits == len(ODD_KEYS)
    assert proxy.gets() == gets  # only the listing went out
    assert files_under(tmp_path / "two") == files_under(tmp_path / "one")
    assert os.stat(tmp_path / "two" / "train.csv").st_nlink == 3  # the cache and two runs


def test_a_changed_object_is_downloaded_again(s3_server, tmp_path):
    bucket = s3_server.bucket({"data.txt": "version 1"})
    store = store_of(s3_server, bucket)
    cache = Cache(str(tmp_path / "cache"))
    stage(store, list(store.list_objects()), str(tmp_path / "one"), cache=cache)
    s3_server.client.put_object(Bucket=bucket, Key="data.txt", Body=b"version 2!")
    counters = stage(store, list(store.list_objects()), str(tmp_path / "two"), cache=cache)
    assert counters.cache_hits == 0
    assert (tmp_path / "two" / "data.txt").read_text() == "version 2!"
    assert (tmp_path / "one" / "data.txt").read_text() == "version 1"


# ---------------------------------------------------------------------- big and many


@pytest.mark.slow
def test_a_300_mb_object_is_staged_with_flat_memory(s3_server, learner_run):
    block = os.urandom(1 << 20)
    body = block * 300
    data = s3_server.bucket()
    s3_server.seed(data, {"big/model.bin": body, "small.txt": b"small"})
    results = s3_server.bucket()
    run = learner_run(
        {"type": "s3", "bucket": data, "connection": s3_server.connection()},
        {"type": "s3", "bucket": results, "connection": s3_server.connection()},
    )
    run.start()
    seen = []
    while run.process.poll() is None and not (run.dir / "work" / "model").exists():
        progress = (run.status() if (run.dir / "status.json").exists() else {}).get("progress")
        if progress and progress["phase"] == "downloading":
            seen.append((progress["bytes_done"], progress["objects_done"]))
        run._read_peak_rss()
        time.sleep(0.02)
    status = run.wait(timeout=180)
    assert status["status"] == "completed", run.log() + run.errors()
    assert f"data big/model.bin {hashlib.md5(body).hexdigest()}" in run.log()
    assert run.max_rss_kb < 150 * 1024, f"peak RSS {run.max_rss_kb} kB"
    # progress counts bytes while the big object is still coming, not only whole objects
    assert any(0 < done < len(body) and objects < 2 for done, objects in seen), seen


@pytest.mark.slow
def test_ten_thousand_small_objects_are_staged_then_served_from_the_cache(
    s3_server, learner_run, tmp_path
):
    data = s3_server.bucket()
    s3_server.seed(data, {f"shard-{i % 10}/{i:05d}.txt": b"%d\n" % i for i in range(10_000)})
    results = s3_server.bucket()
    home = tmp_path / "home"

    def one_run():
        run = learner_run(
            {"type": "s3", "bucket": data, "connection": s3_server.connection()},
            {"type": "s3", "bucket": results, "connection": s3_server.connection()},
            command="find $DATA_DIR -type f | wc -l",
            home=home,
        )
        status = run.run(timeout=240)
        assert status["status"] == "completed", run.log() + run.errors()
        return run

    first = one_run()
    assert "staging 10000 objects (48.9 kB)" in first.log()
    assert "\n10000\n" in first.log()
    assert ": 0 from the cache, 10000 downloaded (" in first.log()
    second = one_run()
    assert "staged 10000 objects in" in second.log()
    assert ": 10000 from the cache, 0 downloaded\n" in second.log()


# ---------------------------------------------------------------------- end to end


TRAIN = """\
import hashlib, os
for root, _dirs, files in sorted(os.walk(os.environ["DATA_DIR"])):
    for name in sorted(files):
        path = os.path.join(root, name)
        digest = hashlib.md5(open(path, "rb").read()).hexdigest()
        print("data", os.path.relpath(path, os.environ["DATA_DIR"]), digest)
os.makedirs(os.path.join(os.environ["RESULT_DIR"], "model"))
with open(os.path.join(os.environ["RESULT_DIR"], "model", "weights.bin"), "wb") as f:
    f.write(b"w" * 100000)
"""


def s3_manifest(path, name, endpoint, data, results):
    path.write_text(
        textwrap.dedent(
            f"""\
            model_definition:
              name: {name}
              framework: {{name: python, version: "3.11"}}
              execution:
                command: python3 train.py
                resource: small
            training_data_reference:
              connection:
                endpoint_url: {endpoint}
                aws_access_key_id: ${{S3_KEY_ID}}
                aws_secret_access_key: ${{S3_SECRET}}
              source: {{bucket: {data}, type: s3}}
            training_results_reference:
              connection:
                endpoint_url: {endpoint}
                aws_access_key_id: ${{S3_KEY_ID}}
                aws_secret_access_key: ${{S3_SECRET}}
              target: {{bucket: {results}, type: s3}}
            """
        )
    )
    return path


def test_a_run_through_the_cli_stages_from_s3_and_stores_in_s3(home, s3_server, tmp_path):
    data = s3_server.bucket(ODD_KEYS)
    results = s3_server.bucket()
    model = home.model("s3", {"train.py": TRAIN})
    manifest = s3_manifest(tmp_path / "s3.yml", "s3-run", s3_server.endpoint, data, results)
    secrets = {"S3_KEY_ID": s3_server.key_id, "S3_SECRET": s3_server.secret}

    model_id = home.submit(model, manifest, **secrets)
    run = home.wait(model_id, "completed", "failed", timeout=90)
    assert run["status"] == "completed", run
    assert run["data"] == {"type": "s3", "bucket": data, "endpoint": s3_server.endpoint}
    stored = s3_server.objects(results)
    assert sorted(stored) == [
        f"{model_id}/_submitted_code/model.zip",
        f"{model_id}/manifest.yml",
        f"{model_id}/model/weights.bin",
        f"{model_id}/training-log.txt",
        f"{model_id}/training-status.json",
    ]
    assert stored[f"{model_id}/model/weights.bin"] == b"w" * 100000
    assert s3_server.secret.encode() not in stored[f"{model_id}/manifest.yml"]
    assert json.loads(stored[f"{model_id}/training-status.json"])["status"] == "completed"
    log = stored[f"{model_id}/training-log.txt"].decode()
    for key, body in ODD_KEYS.items():
        assert f"data {key} {md5(body)}" in log
    assert "staging 7 objects (" in log and f"from S3 bucket '{data}' at" in log
    # the learner kept ready for the next run now prepares botocore (the last run used S3)
    spare = _one_spare(home, {status_pid(home, model_id)})
    assert spare[1][-1] == b"s3", spare

    # the same bucket again: every object from the cache
    again = home.submit(model, manifest, **secrets)
    assert home.wait(again, "completed", "failed", timeout=90)["status"] == "completed"
    assert status_pid(home, again) == spare[0]  # the prepared spare took it
    log = s3_server.objects(results)[f"{again}/training-log.txt"].decode()
    assert ": 7 from the cache, 0 downloaded\n" in log

    # a run of local buckets: the next spare does without botocore
    local = home.submit(model, home.manifest("true"))
    assert home.wait(local, "completed", "failed", timeout=90)["status"] == "completed"
    spare = _one_spare(home, {spare[0], status_pid(home, local)})
    assert spare[1][-1] == b"--spare", spare


def status_pid(home, model_id: str) -> int:
    """The PID of the learner that ran the run (its status.json)."""
    return json.loads((home.path / "runs" / model_id / "status.json").read_text())["learner_pid"]


def _one_spare(home, gone: set[int], timeout: float = 20.0) -> tuple[int, list[bytes]]:
    """The one spare learner of ``home`` that is none of ``gone``, with its arguments."""
    deadline = time.monotonic() + timeout
    while True:
        found = {pid: args for pid, args in spare_learners(home).items() if pid not in gone}
        if len(found) == 1:
            return found.popitem()
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def test_staging_from_s3_loads_botocore_but_not_boto3(s3_server, tmp_path):
    """The learner sits on the submit-to-first-line path: botocore signs its requests, boto3's
    resource layer and s3transfer would only add start-up time."""
    bucket = s3_server.bucket({"a.txt": "a"})
    code = (
        "import json, sys\nfrom trainui.storage import open_store\n"
        "from trainui.storage.cache import Cache\nfrom trainui.storage.staging import stage\n"
        "store = open_store('s3', sys.argv[1], json.loads(sys.argv[2]), '/nowhere')\n"
        "stage(store, list(store.list_objects()), sys.argv[3], cache=Cache(sys.argv[4]))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} &"
        " {'boto3', 'botocore', 's3transfer', 'swiftclient'}))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            bucket,
            json.dumps(s3_server.connection()),
            str(tmp_path / "data"),
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "['botocore']"
    assert (tmp_path / "data" / "a.txt").read_text() == "a"
