"""Slow, idle and too many clients over TCP (issue 13): a request's head has a deadline (its
TLS handshake included), idle kept-alive connections close, connections are capped per client
address and in all, and the Unix socket answers all along. Clients come from several loopback
addresses (127.0.0.2, 127.0.0.3, ...), which Linux gives without any set-up."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest
from test_remote import Remote, free_port

HEADER_TIMEOUT = 3  # seconds: room for a loaded machine to open the flood before it ends
PER_ADDRESS = 30
TOTAL = 300
FLOOD = 300


@pytest.fixture
def guarded(home):
    home.env.update(
        TRAINUI_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        TRAINUI_KEEP_ALIVE="1",
        TRAINUI_MAX_CONNECTIONS_PER_ADDRESS=str(PER_ADDRESS),
        TRAINUI_MAX_CONNECTIONS=str(TOTAL),
    )
    remote = Remote(home)
    yield remote
    remote.kill()


def half_request(port: int, source: str) -> socket.socket:
    """A connection from ``source`` that sends half a request line, and no more."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /v3/mod")
    return sock


def answer(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the service sends until it closes the connection."""
    sock.settimeout(timeout)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def still_open(sock: socket.socket) -> bool:
    """Open and silent: nothing to read, no end."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.setblocking(True)
    return False


def refusal(port: int, source: str) -> bytes:
    with half_request(port, source) as sock:
        return answer(sock)


def wait_closed(socks: list[socket.socket], deadline: float) -> list[bytes]:
    """Wait until the service closed each of ``socks``; what each received before that."""
    received = []
    for sock in socks:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            raise AssertionError("a connection was still open at the deadline") from None
        except (ConnectionResetError, ssl.SSLError):  # aborted (under TLS: no close_notify)
            pass
        received.append(data)
    return received


def unix_health(remote: Remote) -> int:
    transport = httpx.HTTPTransport(uds=str(remote.home.path / "trainui.sock"))
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get("http://trainui/v3/health").status_code


def test_a_flood_of_half_sent_requests_ends_by_the_timeout_and_the_unix_socket_answers(guarded):
    port = guarded.port
    started = time.monotonic()
    flood = [half_request(port, "127.0.0.2") for _ in range(PER_ADDRESS)]
    # one address over its cap: answered and closed at once, without a request
    refused = refusal(port, "127.0.0.2")
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"too many connections from 127.0.0.2 (at most 30 at a time)" in refused
    sources = [f"127.0.0.{3 + i // PER_ADDRESS}" for i in range(FLOOD - PER_ADDRESS)]
    flood += [half_request(port, source) for source in sources]
    # all of them: a new address too is turned away
    refused = refusal(port, "127.0.1.1")
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"the service has too many connections (at most 300)" in refused

    # TCP is full, the home's owner still gets in
    assert unix_health(guarded) == 200
    opened = time.monotonic() - started
    assert all(still_open(sock) for sock in flood), "the flood ended before it was checked"

    received = wait_closed(flood, deadline=time.monotonic() + HEADER_TIMEOUT + 30)
    lasted = time.monotonic() - started
    assert received == [b""] * FLOOD  # closed, not answered: no request ever came whole
    print(
        f"\n{FLOOD} half-sent requests from {len(set(sources)) + 1} addresses: opened in "
        f"{opened:.2f} s, Unix socket answered 200 meanwhile, all closed {lasted:.2f} s after "
        f"the first (header timeout {HEADER_TIMEOUT} s)"
    )
    for sock in flood:
        sock.close()
    # the caps count connections, not history: TCP answers again
    assert httpx.get(f"{guarded.url}/v3/health", timeout=10).status_code == 200


def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_head(guarded):
    request = b"GET /v3/health HTTP/1.1\r\nHost: trainui\r\n\r\n"
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        # a next request whose header trickles in, a byte at a time: uvicorn's keep-alive
        # timer stops at the first byte; the head's deadline does not
        sock.sendall(b"GET /v3/health HTTP/1.1\r\nX-Slow: ")
        deadline = time.monotonic() + HEADER_TIMEOUT + 30
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while time.monotonic() < deadline:
                sock.sendall(b"a")
                time.sleep(0.1)
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(request)
        response = answer(sock)  # idle after its answer: closed (TRAINUI_KEEP_ALIVE=1)
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"}")
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b"GET /v3/health HTTP/1.1\r\nX-Big: " + b"a" * 100_000)
        response = answer(sock)
    assert response.startswith(b"HTTP/1.1 431 ")
    assert b"the request's line and headers are over 65536 bytes" in response


def test_a_log_follow_and_the_event_stream_outlast_the_header_timeout(guarded):
    headers = {"Authorization": f"Bearer {guarded.tokens['alice']}"}
    events: list[dict] = []
    events_open = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{guarded.url}/v3/events", headers=headers, timeout=60) as r:
            events_open.set()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
                    if events[-1].get("status") == "completed":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert events_open.wait(20)
    model_id = guarded.submit("alice", f"echo first; sleep {HEADER_TIMEOUT + 1}; echo last")
    url = f"{guarded.url}/v3/models/{model_id}/logs?follow=true"
    with httpx.stream("GET", url, headers=headers, timeout=60) as response:
        log = response.read().decode()  # one response: a cut would raise, not reconnect
    assert "first" in log and "last" in log.split("first", 1)[1]
    listener.join(30)
    assert [e["status"] for e in events if e.get("model_id") == model_id][-1] == "completed"


def make_certificate(folder, name: str):
    """A self-signed certificate for ``name`` (``IP:...``, ``DNS:...``) and its key: paths."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"),
            *("-subj", f"/CN={name.split(':', 1)[1]}", "-addext", f"subjectAltName={name}"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_a_tls_client_that_never_finishes_its_handshake_is_closed_by_the_timeout(home, tmp_path):
    cert, key = make_certificate(tmp_path, "IP:127.0.0.1")
    trust = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    env = {**home.env, "TRAINUI_HEADER_TIMEOUT": "1"}
    args = ["serve", "--port", str(port), "--certfile", str(cert), "--keyfile", str(key)]
    process = subprocess.Popen([sys.executable, "-m", "trainui", *args], env=env)
    url = f"https://127.0.0.1:{port}/v3/health"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(url, verify=trust, timeout=1).status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "trainui serve did not start"
                time.sleep(0.05)
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        # and one through its handshake that sends half a request line under TLS
        slow = trust.wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
        )
        slow.sendall(b"GET /v3/hea")
        assert wait_closed([*silent, slow], deadline=time.monotonic() + 30) == [b""] * 21
        assert httpx.get(url, verify=trust, timeout=10).status_code == 200
    finally:
        process.kill()
        process.wait()


def test_a_certificate_for_another_name_or_untrusted_is_said_so(home, tmp_path):
    """ssl's refusals as sentences: a certificate made for another name, one not trusted."""
    cert, key = make_certificate(tmp_path, "DNS:localhost")
    port = free_port()
    args = ["serve", "--port", str(port), "--certfile", str(cert), "--keyfile", str(key)]
    process = subprocess.Popen([sys.executable, "-m", "trainui", *args], env=home.env)
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "trainui serve did not start"
                time.sleep(0.05)
        url = f"https://127.0.0.1:{port}"
        mismatch = home.cli("--url", url, "--token", "x", "--cacert", str(cert), "list")
        assert mismatch.returncode == 1 and "Traceback" not in mismatch.stderr
        assert f"TLS with {url} failed: its certificate is not made for 127.0.0.1: use in" in (
            mismatch.stderr
        )
        untrusted = home.cli("--url", f"https://localhost:{port}", "--token", "x", "list")
        assert untrusted.returncode == 1
        assert "its certificate is not trusted (a self-signed certificate? pass --cacert FILE)" in (
            untrusted.stderr
        )
        assert httpx.get(f"https://localhost:{port}/v3/health", verify=trust).status_code == 200
    finally:
        process.kill()
        process.wait()


def test_a_tls_file_that_cannot_be_used_is_named_with_why(home, tmp_path):
    """`serve --certfile/--keyfile`: the file at fault and why, before anything listens; a
    key with a passphrase is refused (OpenSSL would ask for it on a terminal a service lacks)."""
    cert, key = make_certificate(tmp_path, "IP:127.0.0.1")
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = make_certificate(other, "IP:127.0.0.1")
    locked = tmp_path / "locked.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:x", "-out", str(locked)],
        check=True,
        capture_output=True,
    )
    missing = tmp_path / "missing.pem"
    cases = {
        (missing, key): f"the TLS certificate {missing} (--certfile) cannot be read: No such",
        (cert, missing): f"the TLS key {missing} (--keyfile) cannot be read: No such",
        (cert, other_key): f"the TLS key {other_key} (--keyfile) is not the key of the certificate",
        (key, cert): f"the TLS certificate {key} (--certfile) is not a PEM certificate",
        (cert, cert): f"the TLS key {cert} (--keyfile) is not a PEM private key",
        (cert, locked): f"the TLS key {locked} (--keyfile) is encrypted with a passphrase",
    }
    port = str(free_port())
    for (certfile, keyfile), said in cases.items():
        args = ("serve", "--port", port, "--certfile", str(certfile), "--keyfile", str(keyfile))
        result = home.cli(*args, timeout=30, process=True)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(f"trainui: {said}"), result.stderr
        assert len(result.stderr.splitlines()) == 1  # one sentence, no traceback
