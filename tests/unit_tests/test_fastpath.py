"""The CLI's direct wire to a running service: what it does when the service misbehaves.

The service here is a bare Unix socket that a thread answers (or not) as the test needs: the
cases a real service only shows when it dies at the wrong moment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import zipfile

import pytest

from trainui import fastpath


class Peer:
    """A Unix socket at ``<home>/trainui.sock`` that answers each connection with ``reply``
    (bytes, or None to close it once the request was read)."""

    def __init__(self, home, reply: bytes | None) -> None:
        self.path = str(home / "trainui.sock")
        self.reply = reply
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
                if self.reply is not None:
                    conn.sendall(self.reply)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def project(tmp_path):
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINUI_")}
    env["TRAINUI_HOME"] = str(home)
    return tmp_path, home, env


def train(tmp_path, env):
    command = ["train", str(tmp_path / "m.zip"), str(tmp_path / "job.yml")]
    return subprocess.run(
        [sys.executable, "-m", "trainui", *command],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_a_service_that_dies_after_the_request_is_not_sent_it_twice(project):
    tmp_path, home, env = project
    peer = Peer(home, reply=None)
    try:
        result = train(tmp_path, env)
    finally:
        peer.close()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "stopped answering" in result.stderr
    assert "`trainui list` shows whether the run was accepted" in result.stderr
    assert len(peer.requests) == 1  # never a second submission of the same run
    assert b'name="model_definition"' in peer.requests[0]


def test_a_refusal_is_said_as_the_service_words_it(project):
    tmp_path, home, env = project
    body = b'{"error_code": "S100", "message": "this machine has 2 GPUs", "errors": []}'
    reply = (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    peer = Peer(home, reply)
    try:
        result = train(tmp_path, env)
    finally:
        peer.close()
    assert result.returncode == 1
    assert result.stderr.strip() == "trainui: this machine has 2 GPUs"


def test_an_answer_cut_short_is_lost_not_misread(tmp_path):
    reply = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncontent-length: 100\r\n\r\n{}"
    )
    peer = Peer(tmp_path, reply)
    try:
        with pytest.raises(fastpath.Lost, match="cut after 2 of 100 bytes"):
            fastpath.request(peer.path, "GET", "/v3/models", {})
        assert fastpath.get(peer.path, "/v3/models", "application/x-ndjson") is None
    finally:
        peer.close()


def test_nothing_listening_is_none_and_nothing_is_sent(tmp_path):
    assert fastpath.request(str(tmp_path / "trainui.sock"), "GET", "/v3/health", {}) is None
