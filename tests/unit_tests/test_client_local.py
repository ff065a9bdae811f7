"""The client on the home's Unix socket (httpx's Unix-socket transport), against services that
misbehave: a bare socket that a thread answers (or not) as each test needs, the cases a real
service only shows when it dies at the wrong moment. The CLI is driven through ``main(argv)``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile

import pytest

from trainui.cli import main
from trainui.client import BlockingClient, Client, ClientError, ServiceUnreachable


def test_no_service_on_the_socket_is_said_in_one_sentence(tmp_path):
    client = Client(home=str(tmp_path), autostart=False, environ={})
    with pytest.raises(ServiceUnreachable, match="no trainui service answers"):
        asyncio.run(client.get_run("training-abcdefghi"))


def test_a_socket_nobody_listens_on_is_refused(tmp_path):
    import socket

    client = Client(home=str(tmp_path), environ={})
    with socket.socket(socket.AF_UNIX) as s:  # bound, never listening: connect is refused
        s.bind(client.socket)
        client._started = True  # as if it had answered before, then went away
        with pytest.raises(ServiceUnreachable, match="connection refused"):
            asyncio.run(client.read_log("training-abcdefghi", -10))
    assert isinstance(ServiceUnreachable("x"), ClientError)


def test_importing_the_client_and_making_one_imports_no_httpx(tmp_path):
    probe = (
        "import sys\nfrom trainui.client import Client\n"
        f"Client(home={str(tmp_path)!r}).where\nprint('httpx' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINUI_")}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "False"


FAKE_SERVICE = r"""
import asyncio, json, sys
from trainui.client import Client

requests = []
RUN = {"model_id": "training-a", "status": "running", "framework": {"name": "sh", "version": "1"}}


async def answer(reader, writer):
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    target = head.split()[1]
    requests.append(target)
    if target == "/v3/health":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\n\r\n{}")
    elif target == "/v3/models/training-a/logs?follow=true&offset=0&idle=10":
        # two chunks, then the connection breaks in the middle of the third
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"6\r\nhello \r\n3\r\nwor\r\n9\r\nld")
    elif target == "/v3/models/training-a/logs?follow=true&offset=11&idle=10":
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"1\r\n\n\r\n0\r\n\r\n")
    elif target == "/v3/models/training-a":  # the follow ended: has the run?
        body = json.dumps({**RUN, "status": "completed"}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    elif target == "/v3/models/training-a/logs?offset=12":  # and nothing came after
        writer.write(b"HTTP/1.1 200 OK\r\nX-Log-Size: 12\r\nX-Log-Offset: 12\r\n"
                     b"Content-Length: 0\r\n\r\n")
    elif target == "/v3/events":
        event = f"id: 7\nevent: run\ndata: {json.dumps(RUN)}\n\n".encode()
        body = b": trainui events\n\n" + event + event.replace(b"id: 7", b"id: 8")
        # an event cut across chunks, in the middle of a line
        parts = [body[:30], body[30:70], body[70:]]
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in parts:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
    await writer.drain()
    writer.close()


async def main(home):
    client = Client(home=home, autostart=False, environ={})
    server = await asyncio.start_unix_server(answer, client.socket)
    async with server:
        log = b"".join([chunk async for chunk in client.follow_log("training-a")])
        events = []
        async for event_id, kind, data in client.events():
            events.append((event_id, kind, data))
            if len(events) == 2:
                break
    same = events[0][2]["framework"] is events[1][2]["framework"]
    print(json.dumps({"log": log.decode(), "events": events, "requests": requests,
                      "shared": same, "httpx": "httpx" in sys.modules}))

asyncio.run(main(sys.argv[1]))
"""


def test_a_followed_log_and_the_events_are_read_as_they_come(tmp_path):
    """On the local socket: chunked bodies read as they arrive, a log cut in the middle of a
    chunk resumed at the byte where it stopped, events whose lines span chunks, their equal
    values shared."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINUI_")}
    out = subprocess.run(
        [sys.executable, "-c", FAKE_SERVICE, str(tmp_path)],
        capture_output=True, text=True, check=True, env=env, timeout=60,
    )  # fmt: skip
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["log"] == "hello world\n"
    assert "/v3/models/training-a/logs?follow=true&offset=11&idle=10" in got["requests"]
    run = {
        "model_id": "training-a",
        "status": "running",
        "framework": {"name": "sh", "version": "1"},
    }
    assert got["events"] == [[7, "run", run], [8, "run", run]]
    assert got["shared"] is True


class Peer:
    """A Unix socket at ``<home>/trainui.sock`` that reads each request whole and answers it
    with ``reply`` (bytes, or None to close the connection without an answer)."""

    def __init__(self, home, reply: bytes | None, unanswered: int = 0) -> None:
        self.path = str(home / "trainui.sock")
        self.reply = reply
        self.unanswered = unanswered  # the first connections closed with no answer
        self.requests: list[bytes] = []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")),
                    0,
                )  # fmt: skip
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + body)
                if len(self.requests) <= self.unanswered:
                    continue  # as a service that is exiting: the connection closes unanswered
                if self.reply is not None:
                    conn.sendall(self.reply)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A home (its service played by a Peer), a model definition and a manifest; the CLI's
    environment names the home."""
    home = tmp_path / "home"
    home.mkdir()
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as zf:
        zf.writestr("train.py", "print(1)\n")
    (tmp_path / "job.yml").write_text(
        "model_definition:\n  name: x\n  framework: {name: sh, version: '1'}\n"
        "  execution: {command: 'true', resource: small}\n"
        "training_data:\n  connection: {}\n  source: {bucket: d, type: local}\n"
        "training_results:\n  connection: {}\n  target: {bucket: r, type: local}\n"
    )
    for name in list(os.environ):
        if name.startswith("TRAINUI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRAINUI_HOME", str(home))
    return tmp_path, home


def train(tmp_path) -> int:
    return main(["train", str(tmp_path / "m.zip"), str(tmp_path / "job.yml")])


def test_a_service_that_dies_after_the_submission_is_not_sent_it_twice(project, capsys):
    tmp_path, home = project
    with Peer(home, reply=None) as peer:
        code = train(tmp_path)
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "stopped answering" in err
    assert "`trainui list` shows whether the run was accepted" in err
    assert len(peer.requests) == 1  # never a second submission of the same run
    request = peer.requests[0]
    assert request.startswith(b"POST /v3/models HTTP/1.1\r\n")
    assert b'name="model_definition"; filename="m.zip"' in request
    assert b"model_definition:\n  name: x" in request  # the manifest went in the same body


def test_a_refusal_is_said_as_the_service_words_it(project, capsys):
    tmp_path, home = project
    body = b'{"error_code": "S100", "message": "this machine has 2 GPUs", "errors": []}'
    reply = (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    with Peer(home, reply):
        code = train(tmp_path)
    assert code == 1
    assert capsys.readouterr().err.strip() == "trainui: this machine has 2 GPUs"


def test_a_manifests_problems_are_located_in_the_users_file(project, capsys):
    tmp_path, home = project
    errors = [{"line": 3, "column": 14, "path": "model_definition.execution", "message": "bad"}]
    body = json.dumps({"error_code": "C101", "message": "not valid", "errors": errors}).encode()
    reply = b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    with Peer(home, reply):
        code = train(tmp_path)
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err == [
        f"{tmp_path / 'job.yml'}:3:14: model_definition.execution: bad",
        f"trainui: {tmp_path / 'job.yml'} is not a valid manifest",
    ]


def test_an_answer_cut_short_is_one_sentence_and_a_list_is_asked_once(project, capsys):
    _tmp_path, home = project
    reply = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncontent-length: 100\r\n\r\n{}"
    )
    with Peer(home, reply) as peer:
        code = main(["list"])
    captured = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in captured.err
    assert captured.err.startswith(f"trainui: the trainui service ({peer.path}) is not reachable")
    assert len(peer.requests) == 1


def test_the_list_table_asks_for_its_columns_only(project, capsys):
    _tmp_path, home = project
    run = {
        "model_id": "training-abcdefghi",
        "name": "x",
        "status": "running",
        "submitted_at": "2026-12-05T07:12:45.075Z",
    }
    body = json.dumps(run).encode() + b"\n"
    reply = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\nx-total-count: 7\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    with Peer(home, reply) as peer:
        assert main(["list", "--status", "running"]) == 0
    target = peer.requests[0].split(b"\r\n")[0]
    assert target == (
        b"GET /v3/models?status=running&fields=name%2Cmodel_id%2Cstatus%2Csubmitted_at HTTP/1.1"
    )
    out = capsys.readouterr().out.splitlines()
    assert out[2].split() == ["1", "x", "training-abcdefghi", "running", "2026-12-05T07:12:45Z"]
    assert "7 records found." in out


def test_the_blocking_client_says_when_nothing_answers(tmp_path):
    client = BlockingClient(home=str(tmp_path), autostart=False, environ={})
    with client, pytest.raises(ServiceUnreachable, match="no trainui service answers"):
        client.get_run("training-abcdefghi")


def test_remote_options_come_from_the_settings_or_the_arguments(tmp_path):
    environ = {"TRAINUI_URL": "https://gpu-box:8470/", "TRAINUI_TOKEN": "t0k"}
    client = Client(environ=environ)
    assert (client.url, client.token, client.remote) == ("https://gpu-box:8470", "t0k", True)
    client = Client(environ=environ, url="http://other:1", token="mine")
    assert (client.url, client.token) == ("http://other:1", "mine")
    with pytest.raises(ClientError, match="is not an http:// or https:// URL"):
        BlockingClient(environ={}, url="gpu-box:8470")


def test_serve_takes_its_options_as_settings_and_leaves_the_environment_alone(project, capsys):
    """--launcher ray without an address is refused by the settings check (the option reached
    it), and nothing of it was written to os.environ."""
    before = dict(os.environ)
    code = main(["serve", "--no-tcp", "--launcher", "ray", "--no-isolation"])
    assert code == 2
    assert "the ray launcher needs the cluster's address" in capsys.readouterr().err
    assert dict(os.environ) == before


def test_list_json_prints_the_services_runs_as_one_json_array(project, capsys):
    _tmp_path, home = project
    runs = [{"model_id": f"training-{i}", "name": "x", "status": "pending"} for i in range(3)]
    body = b"".join(json.dumps(run).encode() + b"\n" for run in runs)
    reply = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\nx-total-count: 3\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    with Peer(home, reply):
        assert main(["list", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == runs
    assert out == "[\n" + ",\n".join(json.dumps(run) for run in runs) + "\n]\n"  # a run a line


def test_a_get_closed_unanswered_by_an_exiting_service_is_sent_again(project, capsys):
    """A service exiting (idle, or stopped) may take a connection and close it: a GET is asked
    again, a submission never (test_a_service_that_dies_after_the_submission...)."""
    _tmp_path, home = project
    body = json.dumps({"model_id": "training-abcdefghi", "status": "running"}).encode()
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    with Peer(home, reply, unanswered=1) as peer:
        code = main(["show", "training-abcdefghi", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["status"] == "running"
    assert [r.split(b"\r\n")[0] for r in peer.requests] == [
        b"GET /v3/models/training-abcdefghi HTTP/1.1"
    ] * 2
