"""Notifications (SPEC §11): the service's [[notify]] hooks, a webhook received by a real local
HTTP server with a valid signature, a command, a dead webhook that delays nothing, `trainui
notify test`, and a config with errors refused at the service's start."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
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


class FlakyReceiver(Receiver):
    """Answers 503 to each event's first try, then takes it."""

    tried: set[str] = set()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), self.path, body))
        event = json.loads(body)["event"]
        first = event not in self.tried
        self.tried.add(event)
        self.send_response(503 if first else 204)
        self.end_headers()


def test_an_events_tries_carry_one_delivery_id_a_hook_can_tell_repeats_by(home, tmp_path):
    FlakyReceiver.received, FlakyReceiver.tried = [], set()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen = tmp_path / "deliveries.txt"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        hooks(
            home,
            f'[[notify]]\nurl = "{url}"\nsecret = "{SECRET}"\nevents = ["completed"]\n'
            f'[[notify]]\ncommand = "echo $TRAINING_DELIVERY >> {seen}"\n'
            'events = ["completed"]\n',
        )
        model_id = home.submit(home.model("d", {"t.py": ""}), home.manifest("echo fine"))
        assert home.wait(model_id, "completed")["status"] == "completed"
        received = FlakyReceiver.received
        deadline = time.monotonic() + 20
        while len(received) < 2 or not seen.exists():
            assert time.monotonic() < deadline, received
            time.sleep(0.05)
    finally:
        server.shutdown()
    (first, _, body1), (again, _, body2) = received[:2]
    assert body1 == body2  # the same event, tried again after the 503
    delivery = json.loads(body1)["delivery"]
    assert len(delivery) == 32 and int(delivery, 16) >= 0
    assert first["X-Trainui-Delivery"] == again["X-Trainui-Delivery"] == delivery
    assert seen.read_text() == f"{delivery}\n"  # each hook of an event: the same ID


def test_notify_test_reads_the_config_as_it_is_now(home, receiver):
    url, received = receiver
    hooks(home, f'[[notify]]\nurl = "{url}/before"\nsecret = "{SECRET}"\n')
    out = home.cli("notify", "test")
    assert out.returncode == 0 and out.stdout.strip().endswith(f"{url}/before: OK"), out
    config = home.path.parent / "service.toml"
    config.write_text(f'[[notify]]\nurl = "{url}/after"\nsecret = "{SECRET}"\n')
    out = home.cli("notify", "test")  # the service still runs: it reads the file again
    assert out.returncode == 0 and out.stdout.strip().endswith(f"{url}/after: OK"), out
    assert [path for _, path, _ in received] == ["/before", "/after"]
    # a change with errors: said, located, and the hooks before are kept (and tested)
    config.write_text(f'[[notify]]\nurl = "{url}/broken"\nsecert = "{SECRET}"\n')
    out = home.cli("notify", "test")
    assert out.returncode == 1
    assert "config changed and has errors; its hooks are those before" in out.stderr
    assert ":1: [[notify]] #1: unknown key 'secert' (did you mean secret?)" in out.stderr
    assert out.stdout.strip().endswith(f"{url}/after: OK")
    assert "Traceback" not in out.stderr
    # the runs' events go to the hooks of the file as it is now, once fixed
    config.write_text(f'[[notify]]\nurl = "{url}/fixed"\nsecret = "{SECRET}"\n')
    assert home.cli("notify", "test").returncode == 0
    model_id = home.submit(home.model("r", {"t.py": ""}), home.manifest("echo fine"))
    assert home.wait(model_id, "completed")["status"] == "completed"
    deadline = time.monotonic() + 20
    while not any(path == "/fixed" and b'"completed"' in body for _, path, body in received):
        assert time.monotonic() < deadline, received
        time.sleep(0.05)


def test_a_command_hook_that_hangs_is_stopped_with_what_it_started(tmp_path, monkeypatch):
    """A hook past its time is killed with its whole process group: nothing is left running
    (five tries of a hung hook left five orphans before)."""
    from conftest import process_alive
    from trainui.service import notify

    monkeypatch.setattr(notify, "TIMEOUT", 1.0)
    child = tmp_path / "child"
    hook = {"command": f"sleep 1000 & echo $! > {child}; wait"}
    said = notify.Notifier._deliver(hook, "completed", {"model_id": "training-A"}, b"{}", "d1")
    assert said == "the command did not end within 1 s: it was stopped, with what it started"
    pid = int(child.read_text())
    deadline = time.monotonic() + 5
    while process_alive(pid):
        assert time.monotonic() < deadline, f"the hook's child {pid} outlived it"
        time.sleep(0.05)
    failed = notify.Notifier._deliver({"command": "echo nope >&2; exit 3"}, "failed", {}, b"", "")
    assert failed == "the command exited with code 3 nope"


def test_an_event_a_stopped_service_had_not_delivered_is_delivered_at_its_next_start(home):
    """The webhook is down when the run completes; the service is stopped (SIGTERM) while it
    retries: the event is kept in the home, without the hook's secret, and delivered, with its
    delivery ID, by the next service once the webhook is back."""
    import signal
    import socket

    with socket.socket() as probe:  # a port nothing listens on, for now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    hooks(home, f'[[notify]]\nurl = "{url}"\nsecret = "{SECRET}"\nevents = ["completed"]\n')
    model_id = home.submit(home.model("spool", {"t.py": ""}), home.manifest("echo fine"))
    assert home.wait(model_id, "completed")["status"] == "completed"
    pid = home.service_pid()
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while home.service_pid() is not None:
        assert time.monotonic() < deadline, "the service did not stop"
        time.sleep(0.05)
    spool = home.path / "notify-pending.jsonl"
    kept = [json.loads(line) for line in spool.read_text().splitlines()]
    assert [(k["event"], k["run"]["model_id"]) for k in kept] == [("completed", model_id)]
    assert SECRET not in spool.read_text() and url not in spool.read_text()
    assert spool.stat().st_mode & 0o777 == 0o600

    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        home.cli("list", check=True)  # a new service
        deadline = time.monotonic() + 20
        while not Receiver.received:
            assert time.monotonic() < deadline, "the kept event never came"
            time.sleep(0.05)
    finally:
        server.shutdown()
    headers, _path, body = Receiver.received[0]
    assert json.loads(body)["event"] == "completed"
    assert headers["X-Trainui-Delivery"] == kept[0]["delivery"]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Trainui-Signature"], expected)
    assert not spool.exists()
