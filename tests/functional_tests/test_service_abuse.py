"""The service against what a careless or hostile token holder sends, over a real TCP socket:
credentials in URLs, revoked tokens with streams open, numbers and JSON that Python's parsers
take badly, uploads named and spooled by the service, public health, secrets in the run store."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import threading
import time
import uuid
import zipfile

import httpx
import pytest
from test_remote import Remote

from conftest import multipart_submission
from trainui.core.urls import masked_url
from trainui.storage import StoreError, check_access, open_store

PASSWORD = "PASSWORD-9c1e"  # what a URL's user-info holds in these tests

CREDENTIALS_IN_URLS = f"""\
model_definition:
  name: creds
  framework: {{name: python, version: "3.11"}}
  execution:
    command: echo hi
    resource: small
training_data:
  connection:
    endpoint_url: http://user:{PASSWORD}@127.0.0.1:9
    aws_access_key_id: AKIA
    aws_secret_access_key: x
  source: {{bucket: data, type: s3}}
training_results:
  connection:
    auth_url: https://user:{PASSWORD}@swift.example/auth/v1.0
    user_name: u
    password: p
  target: {{bucket: results, type: bluemix_objectstore}}
"""


@pytest.fixture
def remote(home):
    # the S3 endpoints here refuse connections: one try each, not five with backoff
    home.env["TRAINUI_STORE_ATTEMPTS"] = "1"
    r = Remote(home)
    yield r
    r.kill()


def s3_manifest(remote: Remote, endpoint: str, secret: str = "x") -> str:
    """A manifest whose training data is an S3 bucket at ``endpoint`` (nothing answers there:
    the run fails at staging), its results a local bucket."""
    path = remote.home.manifest("echo training")
    path.write_text(
        path.read_text().replace(
            "  connection: {}\n  source: {bucket: data, type: local}",
            "  connection:\n"
            f"    endpoint_url: {endpoint}\n"
            "    aws_access_key_id: AKIA\n"
            f"    aws_secret_access_key: {secret}\n"
            "  source: {bucket: data, type: s3}",
        )
    )
    return str(path)


def auth(remote: Remote, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {remote.tokens[user]}"}


def model_id_of(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1].split("'")[1]


# --------------------------------------------------------------------- credentials in URLs


def test_credentials_in_an_endpoint_url_are_refused_where_they_are_and_never_shown(remote):
    path = remote.home.path.parent / "creds.yml"
    path.write_text(CREDENTIALS_IN_URLS)
    expected = [
        f"{path}:9:19: training_data.connection.endpoint_url: credentials in a URL are not "
        "accepted; put them in aws_access_key_id / aws_secret_access_key",
        f"{path}:15:15: training_results.connection.auth_url: credentials in a URL are not "
        "accepted; put them in user_name / password",
    ]
    validated = remote.home.cli("validate", str(path))
    assert validated.returncode == 1
    assert validated.stdout.splitlines()[:2] == expected
    submitted = remote.cli("alice", "train", "--no-check", str(remote.model), str(path))
    assert submitted.returncode == 1
    assert submitted.stderr.splitlines()[:2] == expected
    # taken from the submitter's environment, the same
    from_env = s3_manifest(remote, "${ENDPOINT}")
    refused = remote.cli(
        "alice",
        "train",
        "--no-check",
        str(remote.model),
        from_env,
        ENDPOINT=f"http://me:{PASSWORD}@127.0.0.1:9",
    )
    assert refused.returncode == 1
    assert "endpoint_url: credentials in a URL are not accepted" in refused.stderr
    seen = validated.stdout + validated.stderr + submitted.stdout + submitted.stderr
    assert PASSWORD not in seen + refused.stdout + refused.stderr


def test_a_run_recorded_with_credentials_in_its_url_never_shows_them(remote):
    """A run accepted before such URLs were refused (written into the run store here, as an
    older trainui left it): its endpoint is masked in every answer, its log and its errors."""
    blocker = remote.submit("alice", "sleep 120")  # one CPU slot: the next run waits
    remote.home.wait(blocker, "running")
    result = remote.cli(
        "alice", "train", "--no-check", str(remote.model), s3_manifest(remote, "http://127.0.0.1:9")
    )
    model_id = model_id_of(result)
    assert remote.home.show(model_id)["status"] == "pending"
    remote.home.stop()  # the service, the blocker's learner and command
    remote.process.wait()
    with sqlite3.connect(remote.home.path / "runs.db") as db:
        plain, with_password = "http://127.0.0.1:9", f"http://user:{PASSWORD}@127.0.0.1:9"
        for column in ("data", "results"):
            db.execute(
                f"UPDATE runs SET {column} = replace({column}, ?, ?)", (plain, with_password)
            )
        rows = db.execute("SELECT name, data FROM unwritten WHERE model_id = ?", (model_id,))
        for name, data in rows.fetchall():
            db.execute(
                "UPDATE unwritten SET data = ? WHERE model_id = ? AND name = ?",
                (bytes(data).replace(plain.encode(), with_password.encode()), model_id, name),
            )
    remote.start()
    run = remote.home.wait(model_id, "failed", timeout=60)
    assert run["data"]["endpoint"] == "http://***@127.0.0.1:9"
    assert run["error_code"] == "S302" and "http://***@127.0.0.1:9" in run["status_message"]

    headers = auth(remote, "alice")
    seen = json.dumps(run)
    for path in ("", f"/{model_id}", f"/{model_id}/logs", f"/{model_id}/manifest"):
        seen += httpx.get(f"{remote.url}/v3/models{path}", headers=headers).text
    for args in (("show", model_id), ("show", model_id, "--json"), ("list", "--json")):
        seen += remote.cli("alice", *args, check=True).stdout
    seen += remote.cli("alice", "logs", model_id, check=True).stdout
    with httpx.stream(
        "GET", f"{remote.url}/v3/events?last_event_id=0", headers=headers, timeout=10
    ) as events:
        for line in events.iter_lines():  # the events since the restart, replayed
            seen += line
            if model_id in line and '"status": "failed"' in line:
                break
    assert (
        "http://***@127.0.0.1:9"
        in httpx.get(f"{remote.url}/v3/models/{model_id}/manifest", headers=headers).text
    )
    assert "***@127.0.0.1:9" in remote.cli("alice", "logs", model_id).stdout
    for folder, _, files in os.walk(remote.home.path):
        for name in files:
            if name.endswith((".txt", ".yml", ".json", ".log")) and name != "learner.json":
                with open(os.path.join(folder, name), errors="replace") as f:
                    seen += f.read()
    assert PASSWORD not in seen


def _with_userinfo(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://user:{PASSWORD}@{rest}"


def test_a_store_whose_url_holds_credentials_works_and_never_shows_them(s3_server, swift_server):
    """The stores of a run recorded before such URLs were refused: the user-info is neither
    shown nor sent (S3 and Swift have keys of their own for credentials)."""
    bucket = s3_server.bucket({"x": "1"})
    s3 = s3_server.connection(endpoint=_with_userinfo(s3_server.endpoint))
    check_access("s3", bucket, s3, "/nowhere", write=True)
    store = open_store("s3", bucket, s3, "/nowhere")
    assert store.description == f"S3 bucket '{bucket}' at {masked_url(s3['endpoint_url'])}"
    assert PASSWORD not in store.description + repr(store)
    with pytest.raises(StoreError) as missing:
        check_access("s3", "no-such-bucket", s3, "/nowhere", write=False)
    assert "http://***@127.0.0.1" in str(missing.value)

    container = swift_server.container({"x": "1"})
    swift = swift_server.connection(auth_url=_with_userinfo(swift_server.auth_url))
    check_access("bluemix_objectstore", container, swift, "/nowhere", write=True)
    wrong = {**swift, "password": "not-the-password"}
    with pytest.raises(StoreError) as refused:
        check_access("bluemix_objectstore", container, wrong, "/nowhere", write=False)
    assert str(refused.value).startswith(f"{masked_url(swift['auth_url'])} refused to log in")
    assert PASSWORD not in str(missing.value) + str(refused.value)


# ------------------------------------------------------------------------ revoked tokens


async def test_a_revoked_tokens_log_follow_and_event_stream_end(remote):
    script = "for i in $(seq 1 3000); do echo tick-$i; sleep 0.1; done"
    model_id = await asyncio.to_thread(remote.submit, "alice", script)
    async with (
        httpx.AsyncClient(base_url=remote.url, headers=auth(remote, "alice"), timeout=30) as http,
        http.stream("GET", f"/v3/models/{model_id}/logs", params={"follow": "true"}) as log,
        http.stream("GET", "/v3/events") as events,
    ):
        assert log.status_code == 200 and events.status_code == 200
        chunks, lines = log.aiter_bytes(), events.aiter_lines()
        received = b""
        while b"tick-" not in received:
            received += await anext(chunks)
        assert await anext(lines) == ": trainui events"

        await asyncio.to_thread(remote.home.cli, "token", "revoke", "alice", check=True)

        async def to_the_end(stream) -> None:
            async for _ in stream:
                pass

        # both end by themselves: the deadline is only there so that a failure is not a hang
        await asyncio.wait_for(asyncio.gather(to_the_end(chunks), to_the_end(lines)), 30)
    assert remote.home.show(model_id)["status"] == "running"  # ended by the revocation alone
    denied = httpx.get(f"{remote.url}/v3/models/{model_id}/logs", headers=auth(remote, "alice"))
    assert denied.status_code == 401
    assert remote.cli("root", "halt", model_id).returncode == 0


# --------------------------------------------------------- numbers and JSON, parsed strictly


def test_numbers_python_would_take_badly_are_refused_with_a_sentence(remote):
    model_id = remote.submit("alice", "echo done")
    remote.home.wait(model_id, "completed")
    logs = f"/v3/models/{model_id}/logs"
    cases = [
        ("/v3/events", {"Last-Event-ID": b"\xb2"}, "Last-Event-ID must be a whole number, not '²'"),
        ("/v3/events?last_event_id=%C2%B2", {}, "Last-Event-ID must be a whole number, not '²'"),
        (f"{logs}?follow=true&offset={'9' * 30}", {}, "offset is too large: at most 18 digits"),
        (f"{logs}?offset={'9' * 30}", {}, "offset is too large: at most 18 digits"),
        (f"{logs}?offset=%D9%A3", {}, "offset must be a whole number, not '٣'"),  # Arabic 3
        (f"{logs}?limit=1_0", {}, "limit must be a whole number, not '1_0'"),
        ("/v3/models?offset=%201", {}, "offset must be a whole number, not ' 1'"),
    ]
    for path, headers, message in cases:
        response = httpx.get(
            remote.url + path, headers={**auth(remote, "alice"), **headers}, timeout=10
        )
        assert response.status_code == 400, (path, response.text)
        assert response.headers["content-type"] == "application/json"
        assert response.json()["message"] == message, path
    # a negative offset still counts from the end
    tail = httpx.get(f"{remote.url}{logs}?offset=-10", headers=auth(remote, "alice"))
    assert tail.status_code == 200 and tail.text == "completed\n"[-10:]


def _zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _post(remote, body: bytes, content_type: str) -> httpx.Response:
    """A submission's body (``multipart_submission``) posted as alice."""
    return httpx.post(
        f"{remote.url}/v3/models",
        content=body,
        headers={**auth(remote, "alice"), "Content-Type": content_type},
        timeout=30,
    )


def test_a_deeply_nested_environment_field_is_refused_with_a_sentence(remote):
    manifest = remote.home.manifest("echo hi").read_bytes()
    deep = "[" * 200_000 + "]" * 200_000
    for fields in ({"environment": deep}, {"environment": '{"A": ' + deep + "}"}):
        body, content_type = multipart_submission(_zip({"t.py": b""}), manifest, fields)
        response = _post(remote, body, content_type)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "C101"
        assert response.json()["message"] in (
            "the environment field is not a JSON object",
            "the environment field must map names to text",
        )
    assert remote.cli("alice", "list").returncode == 0  # and the service goes on


def test_check_follow_and_a_manifest_over_the_limit_say_what_is_wrong(remote):
    manifest = remote.home.manifest("echo hi").read_bytes()
    for fields, said in (
        ({"environment": "{}", "check": "bogus"}, "check: expected true or false, not 'bogus'"),
        ({"environment": "{}"}, None),  # check left out: true
    ):
        body, content_type = multipart_submission(_zip({"t.py": b""}), manifest, fields)
        response = _post(remote, body, content_type)
        if said is None:
            assert response.status_code == 201, response.text
            model_id = response.json()["model_id"]
        else:
            assert response.status_code == 400 and response.json()["message"] == said
    follow = httpx.get(
        f"{remote.url}/v3/models/{model_id}/logs",
        params={"follow": "maybe"},
        headers=auth(remote, "alice"),
        timeout=30,
    )
    assert follow.status_code == 400
    assert follow.json()["message"] == "follow: expected true or false, not 'maybe'"
    # two MiB of manifest: the service reads one byte past the most, and says so
    big = manifest + b"#" * (2 << 20)
    body, content_type = multipart_submission(_zip({"t.py": b""}), big)
    response = _post(remote, body, content_type)
    assert response.status_code == 400
    assert "is over 1 MiB, the most a manifest may be" in response.text, response.text


# ------------------------------------------------------------------------------- uploads


@pytest.mark.parametrize("size", [1_000, 3 << 20], ids=["small", "spooled"])
def test_a_refused_upload_is_named_as_the_user_named_it(remote, size):
    broken = remote.home.path.parent / "my-broken-model.zip"
    broken.write_bytes(b"PK\x03\x04" + os.urandom(size))  # a zip's head, and nothing of one
    result = remote.cli("alice", "train", str(broken), str(remote.home.manifest("echo hi")))
    assert result.returncode == 1
    assert "my-broken-model.zip is a corrupt zip file" in result.stderr
    assert "upload-" not in result.stderr


def test_a_part_without_a_usable_file_name_is_called_the_model_definition(remote):
    manifest = remote.home.manifest("echo hi").read_bytes()
    for filename, shown in (
        ("C:\\Users\\me\\mine.zip", "mine.zip"),
        ("x" * 200, "the model definition"),
    ):
        response = httpx.post(
            f"{remote.url}/v3/models",
            files={
                "model_definition": (filename, b"not a zip", "application/zip"),
                "manifest": ("manifest.yml", manifest, "application/yaml"),
            },
            headers=auth(remote, "alice"),
        )
        assert response.status_code == 400, response.text
        assert response.json()["message"] == f"{shown} is not a zip file"


def _open_files(pid: int) -> list[str]:
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return links


def test_an_upload_spools_in_the_home_not_in_the_system_temporary_folder(home, tmp_path):
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    home.env["TMPDIR"] = str(system_tmp)
    remote = Remote(home)
    try:
        definition = _zip({"weights.bin": os.urandom(3 << 20)}, zipfile.ZIP_STORED)
        manifest = home.manifest("echo spooled").read_bytes()
        body, content_type = multipart_submission(definition, manifest)
        cut = 2 * len(body) // 3  # the file part is past the parser's 1 MiB in memory
        sent_part, go_on = threading.Event(), threading.Event()

        def chunks():
            for start in range(0, cut, 1 << 16):
                yield body[start : min(cut, start + (1 << 16))]
            sent_part.set()
            go_on.wait(60)
            yield body[cut:]

        answer: dict[str, httpx.Response] = {}

        def upload() -> None:
            answer["response"] = httpx.post(
                f"{remote.url}/v3/models",
                content=chunks(),
                headers={
                    **auth(remote, "alice"),
                    "Content-Type": content_type,
                    "Content-Length": str(len(body)),
                },
                timeout=60,
            )

        uploader = threading.Thread(target=upload)
        uploader.start()
        try:
            assert sent_part.wait(30)
            spool = str(home.path / "tmp")
            deadline = time.monotonic() + 30
            while not any(link.startswith(spool) for link in _open_files(remote.process.pid)):
                assert time.monotonic() < deadline, _open_files(remote.process.pid)
                time.sleep(0.05)
            open_now = _open_files(remote.process.pid)
        finally:
            go_on.set()
            uploader.join(60)
        assert not [link for link in open_now if link.startswith(str(system_tmp))]
        assert list(system_tmp.iterdir()) == []
        assert (home.path / "tmp").stat().st_mode & 0o777 == 0o700
        assert answer["response"].status_code == 201, answer["response"].text
    finally:
        remote.kill()


# ---------------------------------------------------------------------------------- health


def test_health_without_a_token_says_only_that_the_service_lives(remote):
    alice = remote.submit("alice", "echo a")
    remote.submit("bob", "echo b")
    remote.submit("bob", "echo c")
    remote.home.wait(alice, "completed")
    for headers in ({}, {"Authorization": "Bearer tui_wrong"}):
        answer = httpx.get(f"{remote.url}/v3/health", headers=headers)
        assert answer.status_code == 200
        assert set(answer.json()) == {"status", "version"}, answer.json()
        assert answer.json()["status"] == "ok"

    def counted(user: str) -> int:
        answer = httpx.get(f"{remote.url}/v3/health", headers=auth(remote, user)).json()
        return sum(answer["runs"].values())

    assert counted("alice") == 1
    assert counted("bob") == 2
    assert counted("root") == 3

    async def local() -> dict:
        from trainui.client import Client

        async with Client(
            home=str(remote.home.path), autostart=False, environ=remote.home.env
        ) as client:
            return await client.health()

    assert sum(asyncio.run(local())["runs"].values()) == 3  # the Unix socket: the owner's


# --------------------------------------------------------------------------- the run store


def test_no_copy_of_a_runs_credentials_stays_in_the_run_store(remote):
    secret = f"wal-secret-{uuid.uuid4().hex}".encode()
    manifest = s3_manifest(remote, "http://127.0.0.1:9", "${STORE_SECRET}")
    result = remote.cli(
        "alice", "train", "--no-check", str(remote.model), manifest, STORE_SECRET=secret.decode()
    )
    model_id = model_id_of(result)
    remote.home.wait(model_id, "failed")
    files = [remote.home.path / name for name in ("runs.db", "runs.db-wal")]

    def holding_the_secret() -> list[str]:
        return [f.name for f in files if f.exists() and secret in f.read_bytes()]

    # the run has started: its credentials left the store for its folder (0600), and the
    # service's next beat leaves no copy in the database's files
    deadline = time.monotonic() + 10
    while holding_the_secret():
        assert time.monotonic() < deadline, holding_the_secret()
        time.sleep(0.1)
    assert remote.cli("alice", "delete", model_id).returncode == 0
    assert holding_the_secret() == []
