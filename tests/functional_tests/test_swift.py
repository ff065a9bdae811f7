"""The ``bluemix_objectstore`` store against a real OpenStack Swift (SAIO, v1 tempauth)."""

from __future__ import annotations

import hashlib
import http.server
import io
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
    assert sum(moved) == len(data) and max(moved) < 1 << 20  # told as they go, not by segment
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
    # stored again: the new version's segments replace the old ones
    (tmp_path / "weights.bin").write_bytes(data[: 2 << 20] + b"!")
    store.upload(str(tmp_path / "weights.bin"), "m/w.bin")
    assert swift_server.client.get_object(container, "m/w.bin")[1] == data[: 2 << 20] + b"!"
    _headers, segments = swift_server.client.get_container(f"{container}_segments")
    assert [s["bytes"] for s in segments] == [1 << 20, 1 << 20, 1]
    # deleted (a checkpoint the command removed): its segments with it; gone twice: no error
    (tmp_path / "small.bin").write_bytes(b"small")
    store.upload(str(tmp_path / "small.bin"), "m/small.bin")
    for key in ("m/w.bin", "m/small.bin", "m/w.bin"):
        store.delete(key)
    assert swift_server.client.get_container(container)[1] == []
    assert swift_server.client.get_container(f"{container}_segments")[1] == []


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


def logins(proxy) -> int:
    return sum(r.startswith("GET /auth/v1.0 ") for r in proxy.requests)


def test_a_download_cut_short_is_resumed_from_where_it_stopped(swift_server, tmp_path, fault_proxy):
    data = os.urandom(8 << 20)
    container = swift_server.container()
    swift_server.client.put_object(container, "cut.bin", io.BytesIO(data))  # retried if need be
    proxy = fault_proxy(swift_server.server.proxy_port)
    store = store_of(swift_server, container, auth_url=f"{proxy.endpoint}/auth/v1.0")
    [info] = store.list_objects()
    assert logins(proxy) == 1
    proxy.cut(after=3 << 20)
    moved = []
    assert store.download("cut.bin", str(tmp_path / "cut.bin"), info, moved.append) == len(data)
    assert (tmp_path / "cut.bin").read_bytes() == data and sum(moved) == len(data)
    gets = [r for r in proxy.requests if r.startswith("GET ") and "/cut.bin " in r]
    assert len(gets) == 2
    resumed = {
        name.lower(): value for name, value in (h.split(": ", 1) for h in gets[1].split("\r\n")[1:])
    }
    assert resumed["range"].startswith("bytes=") and int(resumed["range"][6:-1]) > 0
    assert resumed["if-match"].strip('"') == info.etag
    # the threads that stage share the store's login
    small = {f"s{i}.txt": f"small {i}" for i in range(6)}
    for key, body in small.items():
        swift_server.client.put_object(container, key, body)
    counters = stage(store, list(store.list_objects()), str(tmp_path / "data"), threads=4)
    assert counters.objects_done == 7 and logins(proxy) == 1


def test_an_object_replaced_after_the_listing_is_refused_not_cached(swift_server, tmp_path):
    container = swift_server.container({"a.txt": "first"})
    store = store_of(swift_server, container)
    [info] = store.list_objects()
    swift_server.client.put_object(container, "a.txt", b"other")  # the same size
    with pytest.raises(StoreError) as caught:
        store.download("a.txt", str(tmp_path / "a.txt"), info)
    assert str(caught.value).startswith(
        f"object 'a.txt' of {store.description} changed after the bucket was listed: it is"
        f" now 5 bytes with ETag {hashlib.md5(b'other').hexdigest()}, listed as 5 bytes"
    )
    assert not (tmp_path / "a.txt").exists()


@pytest.fixture
def short_tokens(swift_server, fault_proxy):
    """A second proxy of the test server whose tokens expire after 1 s, behind a FaultProxy
    (which records every request: logins are counted there)."""
    name = f"short-{os.urandom(3).hex()}"
    auth_url = swift_server.server.add_proxy(name, token_life=1)
    yield fault_proxy(int(auth_url.split(":")[2].split("/")[0]))
    swift_server.server.stop([name])


def test_a_token_that_expires_during_a_long_transfer_is_renewed(
    swift_server, short_tokens, tmp_path, monkeypatch
):
    from swiftclient.client import ClientException, head_account

    proxy = short_tokens
    monkeypatch.setenv("TRAINUI_TRANSFER_THREADS", "2")
    monkeypatch.setenv("TRAINUI_SWIFT_SEGMENT_BYTES", str(1 << 20))
    files = {f"part-{i}.bin": os.urandom(256 << 10) for i in range(6)}
    container = swift_server.container(files)
    store = store_of(swift_server, container, auth_url=f"{proxy.endpoint}/auth/v1.0")
    listed = list(store.list_objects())
    assert logins(proxy) == 1
    # each object takes about 1 s to arrive, two at a time: the tokens expire on the way
    proxy.throttle(256 << 10)
    started = time.monotonic()
    counters = stage(store, listed, str(tmp_path / "data"))
    assert counters.objects_done == len(files)
    assert files_under(tmp_path / "data") == files
    renewed = logins(proxy) - 1
    assert renewed >= 1 and store.logins == logins(proxy), (renewed, time.monotonic() - started)
    # an upload (a large object, by SwiftService's connections) once the token has expired
    proxy.throttle(0)
    url, token = store._token
    deadline = time.monotonic() + 30
    while True:
        try:
            head_account(url, token)
        except ClientException as exc:
            assert exc.http_status == 401
            break
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.1)
    before = logins(proxy)
    data = os.urandom(3_500_000)
    (tmp_path / "w.bin").write_bytes(data)
    moved = []
    store.upload(str(tmp_path / "w.bin"), "w.bin", moved.append)
    assert sum(moved) == len(data) and logins(proxy) > before
    assert swift_server.client.get_object(container, "w.bin")[1] == data


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
