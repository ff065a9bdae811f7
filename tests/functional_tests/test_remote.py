"""The service over TCP: tokens, users, remote CLI, streams that survive the network."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from trainui.client import Client, ClientError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Remote:
    """A real `trainui serve` on a free TCP port, with three users' tokens."""

    def __init__(self, home) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens = {
            name: home.cli("token", "add", name, *flags, check=True).stdout.strip().splitlines()[-1]
            for name, flags in (("alice", ()), ("bob", ()), ("root", ("--admin",)))
        }
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trainui", "serve", "--port", str(self.port)]
            # several users' tokens: the service refuses to start unsandboxed unless told to;
            # these tests are of the API (test_sandbox.py tests the sandbox, skipped there too)
            + ([] if shutil.which("bwrap") else ["--no-isolation"]),
            env=self.home.env,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v3/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("trainui serve did not start: " + self.process.stderr.read())

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def cli(self, user: str, *args: str, **kw):
        return self.home.cli("--url", self.url, "--token", self.tokens[user], *args, **kw)

    def follow(self, user: str, model_id: str) -> tuple[subprocess.Popen, str]:
        """``trainui logs --follow`` of ``model_id`` as ``user``, in a process of its own, once
        it printed its first line (it is connected); and that line."""
        argv = ["--url", self.url, "--token", self.tokens[user], "logs", "--follow", model_id]
        process = subprocess.Popen(
            [sys.executable, "-m", "trainui", *argv],
            env=self.home.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # unbuffered: communicate() later gets every byte after the line
        )
        return process, process.stdout.readline().decode()

    def client(self, user: str) -> Client:
        return Client(url=self.url, token=self.tokens[user])

    def submit(self, user: str, command: str = "echo hi", **kw) -> str:
        result = self.cli(user, "train", str(self.model), str(self.home.manifest(command, **kw)))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1].split("'")[1]

    @property
    def model(self):
        return self.home.model("remote", {"train.py": "print('hi')\n"})


@pytest.fixture
def remote(home):
    r = Remote(home)
    yield r
    r.kill()


ENDPOINTS = [
    ("GET", "/v3/models/{id}"),
    ("DELETE", "/v3/models/{id}"),
    ("POST", "/v3/models/{id}/halt"),
    ("GET", "/v3/models/{id}/logs"),
    ("GET", "/v3/models/{id}/definition"),
    ("GET", "/v3/models/{id}/manifest"),
]


def test_every_request_needs_a_valid_token_but_health_and_the_openapi_document(remote):
    model_id = remote.submit("alice")
    paths = [("GET", "/v3/models"), ("GET", "/v3/gpus"), ("GET", "/v3/events")]
    paths += [(m, p.format(id=model_id)) for m, p in ENDPOINTS]
    for headers in ({}, {"Authorization": "Bearer tui_wrong"}, {"Authorization": "Basic x"}):
        for method, path in paths:
            response = httpx.request(method, remote.url + path, headers=headers, timeout=5)
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["message"]
    assert httpx.get(remote.url + "/v3/health").status_code == 200
    assert httpx.get(remote.url + "/openapi.json").json()["openapi"].startswith("3.")
    result = remote.home.cli("--url", remote.url, "list")
    assert result.returncode == 1
    assert "refused the request: a token is required" in result.stderr
    # HEAD, as curl -I asks, is GET without a body (it was a 500 on four routes)
    auth = {"Authorization": f"Bearer {remote.tokens['alice']}"}
    for path in ("/v3/models", f"/v3/models/{model_id}", "/v3/experiments"):
        head = httpx.head(remote.url + path, headers=auth, timeout=5)
        assert head.status_code == 200 and head.content == b"", (path, head.status_code)
    # the hooks are the box's: a user may not fire them (nor read where they go)
    fired = httpx.post(remote.url + "/v3/notify/test", headers=auth, timeout=5)
    assert fired.status_code == 403 and "only an admin" in fired.json()["message"]


def test_a_revoked_token_stops_working_at_once(remote):
    assert remote.cli("bob", "list").returncode == 0
    remote.home.cli("token", "revoke", "bob", check=True)
    result = remote.cli("bob", "list")
    assert result.returncode == 1
    assert "the token is not valid (mistyped or revoked)" in result.stderr
    listed = remote.home.cli("token", "list", check=True).stdout
    assert "alice" in listed and "bob" not in listed and "root" in listed
    assert "tui_" not in listed  # never the tokens themselves
    # token manages this machine's home: aimed at a service elsewhere, it says so, not
    # listing this machine's tokens as if they were that service's
    aimed = remote.home.cli("--url", remote.url, "token", "list")
    assert aimed.returncode == 2 and "run it on the service's machine" in aimed.stderr
    assert "alice" not in aimed.stdout


def test_users_see_only_their_own_runs_and_admins_see_all(remote):
    mine = remote.submit("alice", "sleep 1000")
    theirs = remote.submit("bob")
    for method, path in ENDPOINTS:
        response = httpx.request(
            method,
            remote.url + path.format(id=mine),
            headers={"Authorization": f"Bearer {remote.tokens['bob']}"},
        )
        assert response.status_code == 404, (method, path)
        assert response.json()["message"] == f"run {mine} not found"
    bob = json.loads(remote.cli("bob", "list", "--json", check=True).stdout)
    assert [r["model_id"] for r in bob] == [theirs]
    assert bob[0]["owner"] == "bob"
    admin = json.loads(remote.cli("root", "list", "--json", check=True).stdout)
    assert {r["model_id"] for r in admin} == {mine, theirs}
    local = json.loads(remote.home.cli("list", "--json", check=True).stdout)  # the Unix socket
    assert {r["model_id"] for r in local} == {mine, theirs}
    assert remote.cli("root", "halt", mine).returncode == 0
    assert remote.cli("root", "delete", theirs).returncode == 0


async def test_events_reach_only_their_owner(remote):
    seen: dict[str, list] = {"alice": [], "bob": []}

    async def listen(user):
        async with remote.client(user) as client:
            # from the first event: each sees the run's events whenever its stream began
            async for _, kind, data in client.events(last_id=0):
                if kind != "connection":
                    seen[user].append((data.get("model_id"), data.get("status")))

    listeners = [asyncio.create_task(listen(u)) for u in seen]
    model_id = await asyncio.to_thread(remote.submit, "alice")
    deadline = time.monotonic() + 30
    while (model_id, "completed") not in seen["alice"]:  # every event of the run
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.05)
    assert not any(task.done() for task in listeners)  # both streams still open
    for task in listeners:
        task.cancel()
    assert seen["bob"] == []


def test_secrets_never_appear_in_responses_or_logs(remote):
    secret = "s3cr3t-Value-9f8e7d"
    manifest = remote.home.manifest("echo training")
    text = manifest.read_text().replace(
        "  connection: {}\n  source: {bucket: data, type: local}",
        "  connection:\n"
        "    endpoint_url: http://127.0.0.1:9\n"
        "    aws_access_key_id: AKIA\n"
        "    aws_secret_access_key: ${BENCH_SECRET}\n"
        "  source: {bucket: data, type: s3}",
    )
    manifest.write_text(text)
    result = remote.cli(
        "alice", "train", "--no-check", str(remote.model), str(manifest), BENCH_SECRET=secret
    )
    assert result.returncode == 0, result.stderr
    model_id = result.stdout.strip().splitlines()[-1].split("'")[1]
    run = remote.home.wait(model_id, "completed", "failed", "halted")
    headers = {"Authorization": f"Bearer {remote.tokens['alice']}"}
    seen = ""
    for path in ("", "/{id}", "/{id}/logs", "/{id}/manifest"):
        seen += httpx.get(
            remote.url + "/v3/models" + path.format(id=model_id), headers=headers
        ).text
    seen += json.dumps(run)
    seen += (
        remote.cli("alice", "show", model_id).stdout + remote.cli("alice", "logs", model_id).stdout
    )
    for folder, _, files in os.walk(remote.home.path):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith((".txt", ".yml", ".json", ".log")) and name != "learner.json":
                with open(path, errors="replace") as f:
                    seen += f.read()
    assert secret not in seen
    assert (
        "${BENCH_SECRET}"
        in httpx.get(f"{remote.url}/v3/models/{model_id}/manifest", headers=headers).text
    )
    # the learner's own copy: a run that did not complete keeps it for `trainui resume`, mode
    # 0600 in the home (the service user's alone); a completed run's goes
    spec = remote.home.path / "runs" / model_id / "learner.json"
    assert run["status"] != "completed" and spec.stat().st_mode & 0o777 == 0o600


def test_a_public_bind_without_tokens_is_refused(home):
    result = home.cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), timeout=30)
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0: no token exists yet" in result.stderr
    assert "trainui token add NAME" in result.stderr


def test_remote_errors_are_sentences(home):
    port = free_port()
    result = home.cli("--url", f"http://127.0.0.1:{port}", "--token", "x", "list")
    assert result.returncode == 1
    assert f"nothing answers at http://127.0.0.1:{port} (connection refused)" in result.stderr
    bad = home.cli("--url", "ftp://example.invalid", "list")
    assert bad.returncode == 1 and "is not an http:// or https:// URL" in bad.stderr
    demo = home.cli("--url", f"http://127.0.0.1:{port}", "demo")
    assert demo.returncode == 1 and "run it on the GPU box" in demo.stderr
    # a mistyped URL or a token pasted with a quote: a sentence, never a traceback
    for url in ("https://[::1", "http://127.0.0.1:abc", "https://127.0.0.1:99999", "https://"):
        mistyped = home.cli("--url", url, "--token", "x", "list")
        assert mistyped.returncode == 1 and "is not a valid URL" in mistyped.stderr, (url, mistyped)
        assert "Traceback" not in mistyped.stderr
    quoted = home.cli("--url", f"http://127.0.0.1:{port}", "--token", "\u201cabc\u201d", "list")
    assert quoted.returncode == 1 and "Traceback" not in quoted.stderr
    assert "holds '\u201c' at character 1" in quoted.stderr and "abc" not in quoted.stderr


def test_a_fault_of_the_service_is_said_as_its_own_not_as_another_servers(home):
    """A run folder damaged on the box (its manifest.yml made a folder): the service fails on
    it, says so in its JSON (the traceback goes to its log), and the client says that."""
    from trainui.client import BlockingClient, ClientError

    model_id = home.submit(home.model("m", {"t.py": ""}), home.manifest("true"))
    home.wait(model_id, "completed", "failed")
    manifest = home.path / "runs" / model_id / "manifest.yml"
    manifest.unlink()
    manifest.mkdir()
    with (
        BlockingClient(home=str(home.path), environ=home.env) as client,
        pytest.raises(ClientError) as raised,
    ):
        client.manifest(model_id)
    assert raised.value.status == 500
    assert str(raised.value) == (
        f"the trainui service failed on GET /v3/models/{model_id}/manifest (an internal error, "
        "IsADirectoryError): its log, service.log in its home, says where; please report it"
    )
    deadline = time.monotonic() + 10  # written once the answer is sent
    while "IsADirectoryError" not in (home.path / "service.log").read_text():
        assert time.monotonic() < deadline, (home.path / "service.log").read_text()
        time.sleep(0.05)


def test_a_url_of_something_that_is_not_trainui_is_said_so(home, tmp_path):
    # a proxy's login page, another server at that port: tracebacks, or "0 records found. OK"
    www = tmp_path / "www"
    (www / "v3" / "models").mkdir(parents=True)  # a folder: http.server answers 301
    (www / "v3" / "experiments").write_text("<html>proxy login</html>")
    (www / "v3" / "frameworks").write_text("null")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=www,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        for args in (["list"], ["list", "--json"], ["list", "experiments"], ["frameworks"]):
            said = home.cli("--url", url, "--token", "t", *args)
            assert said.returncode == 1 and "Traceback" not in said.stderr, (args, said)
            assert f"{url} is not a trainui service, or not its root" in said.stderr, said
            assert "records found" not in said.stdout and "<html>" not in said.stdout
        shown = home.cli("--url", url, "--token", "t", "show", "training-abcdefghi")
        assert shown.returncode == 1 and "Traceback" not in shown.stderr
        # a 404 of another server (its own page, not trainui's JSON sentence): said so
        assert f"{url} is not a trainui service, or not its root: it answered 404" in (
            shown.stderr
        ), shown.stderr
        tls = home.cli("--url", url.replace("http:", "https:"), "--token", "t", "list")
        assert tls.returncode == 1 and "it does not speak TLS (a service without --certfile:" in (
            tls.stderr
        ), tls.stderr
    finally:
        server.kill()
        server.wait()


def test_the_remote_cli_works_as_locally(remote, tmp_path):
    model_id = remote.submit("alice", "echo remote-ok; echo r > $RESULT_DIR/r.txt")
    result = remote.cli("alice", "logs", "--follow", model_id, check=True)
    assert "remote-ok" in result.stdout
    shown = remote.cli("alice", "show", "trained-models", model_id, check=True).stdout
    assert "State          completed" in shown and "Owner          alice" in shown
    out = tmp_path / "def.zip"
    remote.cli("alice", "download", model_id, "-o", str(out), check=True)
    assert out.stat().st_size > 0
    assert "1 records found." in remote.cli("alice", "list", "trained-models", check=True).stdout
    assert "Delete trained-models successful" in remote.cli("alice", "delete", model_id).stdout


async def test_100_concurrent_followers_each_receive_the_whole_log(home):
    home.env["TRAINUI_MAX_CONNECTIONS_PER_ADDRESS"] = "128"  # all of them come from 127.0.0.1
    remote = await asyncio.to_thread(Remote, home)
    script = "for i in $(seq 1 300); do echo follow-line-$i; sleep 0.005; done"
    model_id = await asyncio.to_thread(remote.submit, "alice", script)

    async def follow() -> bytes:
        async with remote.client("alice") as client:
            return b"".join([chunk async for chunk in client.follow_log(model_id)])

    try:
        logs = await asyncio.gather(*(follow() for _ in range(100)))
    finally:
        remote.kill()
    assert len(set(logs)) == 1
    lines = [line for line in logs[0].decode().splitlines() if line.startswith("follow-line-")]
    assert lines == [f"follow-line-{i}" for i in range(1, 301)]


async def test_a_follower_survives_the_service_restarting_and_says_so(remote, monkeypatch):
    # mid-stream, the follower cut off: every line once; it gave up after ten tries (15 s),
    # shorter than a box's restart, and said nothing meanwhile
    import trainui.client

    monkeypatch.setattr(trainui.client, "RECONNECT_DELAYS", (0.02,))  # tries at once, often
    script = "for i in $(seq 1 60); do echo tick-$i; sleep 0.05; done"
    model_id = await asyncio.to_thread(remote.submit, "alice", script)
    received: list[bytes] = []
    said: list[str] = []

    async def follow():
        async with remote.client("alice") as client:
            async for chunk in client.follow_log(model_id, 0, said.append):
                received.append(chunk)

    follower = asyncio.create_task(follow())
    deadline = time.monotonic() + 30
    while b"tick-" not in b"".join(received):
        assert time.monotonic() < deadline, "the follower received no tick"
        await asyncio.sleep(0.05)
    await asyncio.to_thread(remote.kill)
    await asyncio.sleep(1.5)  # some 70 tries in vain
    assert said == ["lost"] and not follower.done()
    await asyncio.to_thread(remote.start)
    await asyncio.wait_for(follower, 60)
    assert said == ["lost", "restored"]
    ticks = [line for line in b"".join(received).decode().splitlines() if line.startswith("tick-")]
    assert ticks == [f"tick-{i}" for i in range(1, 61)]


async def test_a_follow_gone_silent_or_quiet_goes_on_to_the_end(remote, fault_proxy, monkeypatch):
    # a connection that goes silent without closing (a laptop suspended) hung the follow
    # forever; a log quiet for longer than the service's idle time is asked for again
    import trainui.client

    monkeypatch.setattr(trainui.client, "SILENCE", 1.5)
    monkeypatch.setattr(trainui.client, "FOLLOW_IDLE", 1)
    proxy = fault_proxy(remote.port)
    script = "echo first; sleep 4; for i in $(seq 1 40); do echo tick-$i; sleep 0.05; done"
    model_id = await asyncio.to_thread(remote.submit, "alice", script)
    received: list[bytes] = []

    async def follow():
        async with Client(url=proxy.endpoint, token=remote.tokens["alice"]) as client:
            async for chunk in client.follow_log(model_id):
                received.append(chunk)

    follower = asyncio.create_task(follow())
    deadline = time.monotonic() + 30
    while b"tick-1\n" not in b"".join(received):
        assert time.monotonic() < deadline, b"".join(received)
        await asyncio.sleep(0.02)
    proxy.freeze()  # mid-stream
    await asyncio.wait_for(follower, 30)
    text = b"".join(received).decode()
    ticks = [line for line in text.splitlines() if line.startswith("tick-")]
    assert ticks == [f"tick-{i}" for i in range(1, 41)] and text.count("first\n") == 1
    asked = [r for r in proxy.requests if r.startswith(f"GET /v3/models/{model_id}/logs")]
    assert len(asked) >= 3  # quiet, asked again; frozen, asked again


SLOW = "for i in $(seq 1 200); do echo line-$i; sleep 0.1; done"


def test_a_follow_whose_token_is_revoked_or_whose_run_fails_exits_1_saying_why(remote):
    slow = remote.submit("bob", SLOW)
    follow, _first = remote.follow("bob", slow)
    try:
        remote.home.cli("token", "revoke", "bob", check=True)
        out, err = (part.decode() for part in follow.communicate(timeout=30))
    finally:
        if follow.poll() is None:
            follow.kill()
    # it ended with exit 0 and no word, as if the run had ended
    assert follow.returncode == 1, (out[-200:], err)
    assert "token" in err and "Traceback" not in err, err
    assert remote.cli("root", "show", slow, check=True).stdout.count("running") >= 1
    failing = remote.submit("alice", "echo before; exit 3")
    followed = remote.cli("alice", "logs", "--follow", failing)
    assert followed.returncode == 1 and "before" in followed.stdout
    assert f"Run {failing} failed" in followed.stderr


def test_a_service_stopped_with_streams_open_ends_them_at_once(remote):
    # it waited for its graceful-shutdown timeout, then wrote a CancelledError traceback
    slow = remote.submit("alice", SLOW)
    follow, first = remote.follow("alice", slow)
    try:
        remote.process.terminate()
        _, service_err = remote.process.communicate(timeout=30)
        assert "Traceback" not in service_err and "graceful shutdown" not in service_err, (
            service_err
        )
        remote.start()  # the follow gets its connection back and goes on to the end
        out, err = (part.decode() for part in follow.communicate(timeout=60))
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0, err
    lines = [line for line in (first + out).splitlines() if line.startswith("line-")]
    assert lines == [f"line-{i}" for i in range(1, 201)]


async def test_a_log_tail_is_read_without_the_rest(remote):
    script = "for i in $(seq 1 20000); do echo line-$i; done"
    model_id = await asyncio.to_thread(remote.submit, "alice", script)
    await asyncio.to_thread(remote.home.wait, model_id, "completed")
    async with remote.client("alice") as client:
        tail, size, start = await client.read_log(model_id, offset=-4096)
        assert len(tail) == 4096 and start == size - 4096
        assert tail.decode().rstrip().endswith("trainui: completed")


async def test_an_upload_over_the_limit_is_refused(home):
    home.env["TRAINUI_MAX_UPLOAD_BYTES"] = "100000"
    remote = Remote(home)
    try:
        big = home.model("big", {"data.bin": os.urandom(300_000).hex()})
        result = remote.cli("alice", "train", str(big), str(home.manifest("true")))
        assert result.returncode == 1
        assert "larger than" in result.stderr
    finally:
        remote.kill()


async def test_a_bad_manifest_over_tcp_lists_every_problem(remote):
    async with remote.client("alice") as client:
        zip_path = remote.home.path.parent / "m.zip"
        import zipfile

        with zipfile.ZipFile(zip_path, "w") as zf:
            zf.writestr("t.py", "")
        with pytest.raises(ClientError) as refused:
            await client.submit(str(zip_path), b"model_definition:\n  nme: x\n")
    assert refused.value.status == 400 and refused.value.code == "C101"
    paths = {e["path"] for e in refused.value.errors}
    assert "model_definition.nme" in paths and "training_data_reference" in paths
    assert all(e["line"] >= 1 and e["column"] >= 1 for e in refused.value.errors)


def test_a_remote_user_may_not_name_the_boxs_folders_as_a_local_bucket(remote, tmp_path):
    # a local bucket's path is read (data) and written (results) by the learner, as the
    # service's user: the home holds every user's tokens, run store and credentials
    shared = tmp_path / "shared"
    (shared / "sets").mkdir(parents=True)
    for path, bucket in ((remote.home.path, "runs"), (Path("/"), "etc"), (shared, "sets")):
        manifest = remote.home.manifest("true")
        manifest.write_text(
            manifest.read_text()
            .replace("  connection: {}\n  source:", f"  connection: {{path: {path}}}\n  source:")
            .replace("{bucket: data, type: local}", f"{{bucket: {bucket}, type: local}}")
        )
        refused = remote.cli("alice", "train", str(remote.model), str(manifest))
        assert refused.returncode == 1, (path, refused.stdout)
        assert f"the training data bucket's path {path} is not a folder remote users may" in (
            refused.stderr
        )
        assert "Model-ID" not in refused.stdout
    # the box's owner (the Unix socket) and an admin name any folder
    manifest = remote.home.manifest("true")
    manifest.write_text(
        manifest.read_text()
        .replace("  connection: {}\n  source:", f"  connection: {{path: {shared}}}\n  source:")
        .replace("{bucket: data, type: local}", "{bucket: sets, type: local}")
    )
    assert remote.cli("root", "train", str(remote.model), str(manifest)).returncode == 0
    assert remote.home.cli("train", str(remote.model), str(manifest)).returncode == 0


def test_a_remote_user_may_not_use_the_boxs_own_aws_credentials(remote):
    """An S3 bucket without keys (or with a profile) is reached with the service's AWS chain,
    the box owner's identity: a remote user brings their keys, unless the owner allows it."""
    s3 = "  connection: {endpoint_url: 'http://127.0.0.1:9'%s}\n  source:"
    for extra, how in (("", "gives no keys"), (", profile: default", "names a profile")):
        manifest = remote.home.manifest("true")
        manifest.write_text(
            manifest.read_text()
            .replace("  connection: {}\n  source:", s3 % extra)
            .replace("{bucket: data, type: local}", "{bucket: data, type: s3}")
        )
        refused = remote.cli("alice", "train", "--no-check", str(remote.model), str(manifest))
        assert refused.returncode == 1 and "Model-ID" not in refused.stdout
        assert f"the training data bucket's s3 connection {how}: a remote user's buckets" in (
            refused.stderr
        )
        assert "TRAINUI_REMOTE_CREDENTIALS=box" in refused.stderr
        # the box's owner (the Unix socket) and an admin use the machine's chain
        owner = remote.home.cli("train", "--no-check", str(remote.model), str(manifest))
        assert owner.returncode == 0, owner.stderr
        admin = remote.cli("root", "train", "--no-check", str(remote.model), str(manifest))
        assert admin.returncode == 0, admin.stderr
    keys = "  connection: {endpoint_url: 'http://127.0.0.1:9', aws_access_key_id: a,"
    keys += " aws_secret_access_key: b}\n  source:"
    manifest.write_text(
        manifest.read_text().replace(s3 % ", profile: default", keys)
    )  # fmt: skip
    own = remote.cli("alice", "train", "--no-check", str(remote.model), str(manifest))
    assert own.returncode == 0, own.stderr  # their own keys: taken


def test_a_bad_cacert_or_output_folder_is_a_sentence_not_a_traceback(home, tmp_path):
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    missing = tmp_path / "missing"  # not a path of the machine's that someone may make
    for cacert, why in ((str(missing), "No such file"), (str(tmp_path), "Is a directory"),
                        (str(not_pem), "it holds no certificate")):  # fmt: skip
        result = home.cli(
            "--url", "https://127.0.0.1:9", "--token", "x", "--cacert", cacert, "list"
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"the CA certificate {cacert} (--cacert, TRAINUI_CACERT) cannot be used: {why}" in (
            result.stderr
        )
    model_id = home.submit(home.model("d", {"t.py": ""}), home.manifest("true"))
    result = home.cli("download", model_id, "-o", str(missing / "dir" / "x.zip"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"the folder {missing / 'dir'} does not exist" in result.stderr
