"""Notifications (SPEC §11): the service's [[notify]] hooks, a webhook received by a real local
HTTP server with a valid signature, a command, a dead webhook that delays nothing, `trainui
notify test`, and a config with errors refused at the service's start."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest

SECRET = "s3cr3t-for-the-test"


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict, str, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), self.path, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Receiver.received
    server.shutdown()


def hooks(home, text: str) -> None:
    path = home.path.parent / "service.toml"
    path.write_text(text)
    home.env["TRAINUI_SERVICE_CONFIG"] = str(path)


def test_a_webhook_gets_each_event_signed_and_a_dead_one_delays_nothing(home, receiver, tmp_path):
    url, received = receiver
    seen = tmp_path / "seen.txt"
    hooks(
        home,
        f'[[notify]]\nurl = "{url}/hook"\nsecret = "{SECRET}"\n'
        '[[notify]]\nurl = "http://127.0.0.1:9/dead"\nsecret = "x"\n'
        f'[[notify]]\ncommand = "echo $TRAINING_EVENT $TRAINING_ID >> {seen}"\n'
        'events = ["failed"]\n',
    )
    model = home.model("n", {"t.py": ""})
    ok = home.submit(model, home.manifest("echo fine", name="ok"))
    bad = home.submit(model, home.manifest("exit 2", name="bad"))
    started = time.monotonic()
    assert home.wait(ok, "completed")["status"] == "completed"
    assert home.wait(bad, "failed")["error_code"] == "C201"
    assert time.monotonic() - started < 20  # the dead hook's retries held nothing up
    deadline = time.monotonic() + 20
    while len(received) < 4:
        assert time.monotonic() < deadline, received
        time.sleep(0.05)
    events = []
    for headers, path, body in received:
        assert path == "/hook"
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Trainui-Signature"], expected)
        message = json.loads(body)
        assert headers["X-Trainui-Event"] == message["event"]
        events.append((message["run"]["model_id"], message["event"], message["run"]["status"]))
    assert sorted(events) == sorted(
        [(ok, "started", "downloading"), (ok, "completed", "completed"),
         (bad, "started", "downloading"), (bad, "failed", "failed")]
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not seen.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert seen.read_text() == f"failed {bad}\n"  # the command's filter: failed only
    out = home.cli("notify", "test")
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0].endswith(f": {url}/hook: OK")
    assert "http://127.0.0.1:9/dead: FAILED: ConnectError" in lines[1]
    assert lines[2].endswith(": OK")
    assert any(json.loads(b)["event"] == "test" for _, _, b in received)


def test_a_service_config_with_errors_refuses_the_start_located(home):
    hooks(home, '[[notify]]\nurl = "ftp://x"\n\n[[notify]]\ncomand = "true"\n')
    result = home.cli("list")
    assert result.returncode == 1
    said = result.stderr
    assert "the service config is not valid" in said
    assert ":1: [[notify]] #1: url must be an http:// or https:// URL" in said
    assert ":1: [[notify]] #1: a webhook needs a secret" in said
    assert ":4: [[notify]] #2: unknown key 'comand' (did you mean command?)" in said
    assert "Traceback" not in said
