"""The ``bluemix_objectstore`` store against a real OpenStack Swift (SAIO, v1 tempauth)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import textwrap
import threading
import time

import pytest

from trainui.storage import StoreError, check_access, download_prefix, open_store
from trainui.storage.cache import Cache
from trainui.storage.staging import stage

ODD_KEYS = {
    "train.csv": "a,b\n1,2\n",
    "images/cat 1.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "ünïcödé/€uro ☃.txt": "snow",
    "signs/plus+equals=amp&question?pct%20.txt": "signs",
    "empty.txt": b"",
}


def as_bytes(body: bytes | str) -> bytes:
    return body if isinstance(body, bytes) else body.encode()


def files_under(root) -> dict[str, bytes]:
    found = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def store_of(swift, container, **changes):
    return open_store("bluemix_objectstore", container, swift.connection(**changes), "/nowhere")


def test_objects_with_odd_keys_are_listed_and_staged_byte_for_byte(swift_server, tmp_path):
    container = swift_server.container(ODD_KEYS)
    store = store_of(swift_server, container)
    listed = list(store.list_objects())
    assert [o.key for o in listed] == sorted(ODD_KEYS)
    assert all(o.etag == hashlib.md5(as_bytes(ODD_KEYS[o.key])).hexdigest() for o in listed)
    counters = stage(store, listed, str(tmp_path / "data"), cache=Cache(str(tmp_path / "c")))
    assert counters.objects_done == len(ODD_KEYS) and counters.cache_hits == 0
    assert files_under(tmp_path / "data") == {k: as_bytes(v) for k, v in ODD_KEYS.items()}
    again = stage(store, listed, str(tmp_path / "again"), cache=Cache(str(tmp_path / "c")))
    assert again.cache_hits == len(ODD_KEYS) and again.bytes_transferred == 0


def test_a_large_file_is_stored_as_a_static_large_object(swift_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINUI_SWIFT_SEGMENT_BYTES", str(1 << 20))
    data = os.urandom(3_500_000)
    (tmp_path / "weights.bin").write_bytes(data)
    container = swift_server.container()
    moved = []
    store_of(swift_server, container).upload(str(tmp_path / "weights.bin"), "m/w.bin", moved.append)
    assert sum(moved) == len(data)
    headers = swift_server.client.head_object(container, "m/w.bin")
    assert headers["x-static-large-object"] == "True"
    _headers, segments = swift_server.client.get_container(f"{container}_segments")
    assert [s["bytes"] for s in segments] == [1 << 20] * 3 + [len(data) - 3 * (1 << 20)]
    # read back through the listing: its ETag is no MD5 of the bytes, and that is no error
    store = store_of(swift_server, container)
    cache = Cache(str(tmp_path / "cache"))
    stage(store, list(store.list_objects()), str(tmp_path / "data"), cache=cache)
    assert (tmp_path / "data" / "m" / "w.bin").read_bytes() == data
    hits = stage(store, list(store.list_objects()), str(tmp_path / "two"), cache=cache)
    assert hits.cache_hits == 1


def test_download_prefix_fetches_a_runs_folder(swift_server, tmp_path):
    container = swift_server.container({"run/a.txt": "a", "run/b/c.txt": "bc", "other": "x"})
    files, size = download_prefix(store_of(swift_server, container), "run/", str(tmp_path))
    assert (files, size) == (2, 3)
    assert files_under(tmp_path) == {"a.txt": b"a", "b/c.txt": b"bc"}


def test_a_wrong_password_is_refused_without_showing_it(swift_server):
    container = swift_server.container()
    with pytest.raises(StoreError) as caught:
        check_access(
            "bluemix_objectstore",
            container,
            swift_server.connection(password="not-the-password"),
            "/nowhere",
            write=False,
        )
    assert str(caught.value) == (
        f"{swift_server.auth_url} refused to log in user 'test:tester' to reach container"
        f" '{container}': wrong user name or password"
    )


def test_a_missing_container_is_named(swift_server):
    with pytest.raises(StoreError) as caught:
        check_access(
            "bluemix_objectstore", "no-such", swift_server.connection(), "/nowhere", write=False
        )
    assert str(caught.value) == f"container 'no-such' does not exist at {swift_server.auth_url}"


def test_a_user_without_rights_is_refused_and_a_writer_may_write(swift_server):
    container = swift_server.container({"x": "1"})
    check_access(
        "bluemix_objectstore", container, swift_server.connection(), "/nowhere", write=True
    )
    assert list(swift_server.objects(container)) == ["x"]
    reader = swift_server.connection(user_name="test:tester3", password="testing3")
    with pytest.raises(StoreError) as caught:
        check_access("bluemix_objectstore", container, reader, "/nowhere", write=False)
    assert str(caught.value) == (
        f"{swift_server.auth_url} refused to list container '{container}': access denied to"
        " user 'test:tester3'"
    )


def test_a_proxy_that_dies_mid_download_and_comes_back_is_retried(
    swift_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("TRAINUI_STORE_ATTEMPTS", "6")
    data = os.urandom(24 << 20)
    container = swift_server.container()
    swift_server.client.put_object(container, "big.bin", data)
    store = store_of(swift_server, container)
    [info] = store.list_objects()
    killed = []

    def progress(n: int) -> None:
        if not killed:
            killed.append(n)
            swift_server.server.kill_proxy()
            threading.Timer(0.5, swift_server.restart_proxy).start()

    store.download("big.bin", str(tmp_path / "big.bin"), info, progress)
    assert killed and (tmp_path / "big.bin").read_bytes() == data


def test_a_proxy_that_stays_down_fails_after_its_tries(swift_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINUI_STORE_ATTEMPTS", "2")
    container = swift_server.container({"a.bin": os.urandom(1 << 20)})
    store = store_of(swift_server, container)
    [info] = store.list_objects()
    swift_server.server.kill_proxy()
    try:
        with pytest.raises(StoreError) as caught:
            store.download("a.bin", str(tmp_path / "a.bin"), info)
    finally:
        swift_server.restart_proxy()
    assert str(caught.value) == (
        f"object 'a.bin' of Swift container '{container}' at {swift_server.auth_url} could not"
        " be downloaded after 2 tries: connection refused"
    )
    assert not (tmp_path / "a.bin").exists()


TRAIN = """\
import hashlib, os
for root, _dirs, files in sorted(os.walk(os.environ["DATA_DIR"])):
    for name in sorted(files):
        path = os.path.join(root, name)
        digest = hashlib.md5(open(path, "rb").read()).hexdigest()
        print("data", os.path.relpath(path, os.environ["DATA_DIR"]), digest)
with open(os.path.join(os.environ["RESULT_DIR"], "model.txt"), "w") as f:
    f.write("trained on swift")
"""


def test_a_run_through_the_cli_stages_from_swift_and_stores_in_swift(home, swift_server, tmp_path):
    data = swift_server.container(ODD_KEYS)
    results = swift_server.container()
    model = home.model("swift", {"train.py": TRAIN})
    manifest = tmp_path / "swift.yml"
    manifest.write_text(
        textwrap.dedent(
            f"""\
            model_definition:
              name: swift-run
              framework: {{name: python, version: "3.11"}}
              execution:
                command: python3 train.py
                resource: small
            training_data:
              - connection:
                  auth_url: {swift_server.auth_url}
                  user_name: test:tester
                  password: ${{SWIFT_PASSWORD}}
                source: {{bucket: {data}, type: bluemix_objectstore}}
            training_results:
              connection:
                auth_url: {swift_server.auth_url}
                user_name: test:tester
                password: ${{SWIFT_PASSWORD}}
              target: {{bucket: {results}, type: bluemix_objectstore}}
            """
        )
    )
    model_id = home.submit(model, manifest, SWIFT_PASSWORD="testing")
    run = home.wait(model_id, "completed", "failed", timeout=90)
    assert run["status"] == "completed", run
    stored = swift_server.objects(results)
    assert sorted(stored) == [
        f"{model_id}/_submitted_code/model.zip",
        f"{model_id}/manifest.yml",
        f"{model_id}/model.txt",
        f"{model_id}/training-log.txt",
        f"{model_id}/training-status.json",
    ]
    assert stored[f"{model_id}/model.txt"] == b"trained on swift"
    assert b"testing" not in stored[f"{model_id}/manifest.yml"]
    assert json.loads(stored[f"{model_id}/training-status.json"])["status"] == "completed"
    log = stored[f"{model_id}/training-log.txt"].decode()
    for key, body in ODD_KEYS.items():
        assert f"data {key} {hashlib.md5(as_bytes(body)).hexdigest()}" in log


def test_a_segmented_upload_is_checked_segment_by_segment(swift_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINUI_SWIFT_SEGMENT_BYTES", str(1 << 20))
    (tmp_path / "two.bin").write_bytes(b"x" * ((1 << 20) + 10))
    container = swift_server.container()
    started = time.monotonic()
    store_of(swift_server, container).upload(str(tmp_path / "two.bin"), "two.bin")
    assert time.monotonic() - started < 30
    _headers, body = swift_server.client.get_object(container, "two.bin")
    assert body == b"x" * ((1 << 20) + 10)


class _Keystone(http.server.BaseHTTPRequestHandler):
    """A Keystone v3 stand-in: checks a password login scoped to a project and answers with
    a token from the Swift server's tempauth and a catalog pointing at its storage URL."""

    swift = None  # (storage URL, token), set by the test

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["auth"]["identity"]["password"]["user"]
        project = body["auth"]["scope"]["project"]
        ok = (
            self.path == "/v3/auth/tokens"
            and (user["name"], user["password"], user["domain"]["name"])
            == ("tester", "secret", "Bluemix")
            and project == {"id": "proj-1"}
        )
        if not ok:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        url, token = self.swift
        answer = json.dumps(
            {
                "token": {
                    "methods": ["password"],
                    "expires_at": "2099-01-01T00:00:00.000000Z",
                    "issued_at": "2026-01-01T00:00:00.000000Z",
                    "user": {
                        "id": "u1",
                        "name": "tester",
                        "domain": {"id": "d", "name": "Bluemix"},
                    },
                    "project": {
                        "id": "proj-1",
                        "name": "p",
                        "domain": {"id": "d", "name": "Bluemix"},
                    },
                    "catalog": [
                        {
                            "type": "object-store",
                            "name": "swift",
                            "endpoints": [
                                {"interface": "public", "region": "elsewhere", "url": "http://x"},
                                {"interface": "public", "region": "dallas", "url": url},
                            ],
                        }
                    ],
                }
            }
        ).encode()
        self.send_response(201)
        self.send_header("X-Subject-Token", token)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def keystone(swift_server):
    _Keystone.swift = swift_server.client.get_auth()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Keystone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v3"
    server.shutdown()
    server.server_close()


def test_keystone_v3_logs_in_with_domain_project_and_region(swift_server, keystone, tmp_path):
    container = swift_server.container({"k.txt": "via keystone"})
    connection = {
        "auth_url": keystone,
        "user_name": "tester",
        "password": "secret",
        "domain_name": "Bluemix",
        "project_id": "proj-1",
        "region": "dallas",
    }
    check_access("bluemix_objectstore", container, connection, "/nowhere", write=True)
    store = open_store("bluemix_objectstore", container, connection, "/nowhere")
    stage(store, list(store.list_objects()), str(tmp_path / "data"))
    assert (tmp_path / "data" / "k.txt").read_text() == "via keystone"
    with pytest.raises(StoreError) as caught:
        check_access(
            "bluemix_objectstore",
            container,
            {**connection, "password": "wrong"},
            "/nowhere",
            write=False,
        )
    assert str(caught.value) == (
        f"{keystone} refused to log in user 'tester' to reach container '{container}':"
        " wrong user name or password"
    )
