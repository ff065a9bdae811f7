"""The client's plain GETs on the local socket: a few lines of asyncio instead of httpx."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from trainui.client import (
    Client,
    ClientError,
    ServiceUnreachable,
    _read_response,
    _SocketReader,
    _within,
)


def answer(raw: bytes):
    """``raw`` read as an answer from a socket (as the client reads), byte by byte too; and
    from an ``asyncio.StreamReader``: the same outcome each way."""

    async def from_stream():
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await _read_response(reader)

    async def from_socket(step: int):
        import socket

        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.setblocking(False)

            async def send():
                for i in range(0, len(raw), step):
                    theirs.sendall(raw[i : i + step])
                    await asyncio.sleep(0)
                theirs.shutdown(socket.SHUT_WR)

            sender = asyncio.ensure_future(send())
            try:
                return await _read_response(_SocketReader(asyncio.get_running_loop(), ours))
            finally:
                await sender

    outcomes = []
    for read in (from_stream, lambda: from_socket(1), lambda: from_socket(1 << 16)):
        try:
            got = asyncio.run(read())
            outcomes.append((got.status_code, got.reason_phrase, got.headers, got.content))
        except Exception as error:  # the same error each way
            outcomes.append(error)
    first = outcomes[0]
    for other in outcomes[1:]:
        if isinstance(first, Exception):
            assert type(other) is type(first) and str(other) == str(first)
        else:
            assert other == first
    if isinstance(first, Exception):
        raise first
    return asyncio.run(from_stream())


def test_a_body_of_content_length_bytes_and_the_headers_in_lower_case():
    got = answer(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Log-Size: 123\r\n"
        b"X-Log-Offset: 118\r\n\r\nhello and what follows is not read"
    )
    assert (got.status_code, got.reason_phrase, got.content) == (200, "OK", b"hello")
    assert got.headers["x-log-size"] == "123" and got.headers["x-log-offset"] == "118"


def test_a_chunked_body_and_a_body_to_the_end_of_the_connection():
    chunked = answer(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    )
    assert chunked.content == b"hello world"
    assert answer(b"HTTP/1.1 200 OK\r\n\r\nall of it").text == "all of it"


def test_an_error_answer_is_read_as_the_service_said_it():
    body = json.dumps({"message": "run training-x not found", "error_code": None}).encode()
    got = answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert got.status_code == 404 and got.reason_phrase == "Not Found"
    assert got.json()["message"] == "run training-x not found"


def test_a_cut_answer_or_one_that_is_not_http_is_an_error():
    with pytest.raises(asyncio.IncompleteReadError):
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort")
    with pytest.raises(asyncio.IncompleteReadError):
        answer(b"HTTP/1.1 200 OK\r\nContent-Len")
    with pytest.raises(OSError, match="not an HTTP answer"):
        answer(b"SSH-2.0-OpenSSH\r\n\r\n")


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


def test_a_cancel_that_comes_as_the_answer_does_is_not_lost():
    """A TUI worker cancelled just as its read ended went on (``asyncio.wait_for`` on 3.11)."""

    async def race(wait):
        answer = asyncio.get_running_loop().create_future()
        request = asyncio.ensure_future(wait(answer))
        await asyncio.sleep(0)  # the request waits for its answer
        answer.set_result("the runs")
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request

    asyncio.run(race(lambda answer: _within(5.0, answer)))


def test_an_answer_that_does_not_come_times_out():
    async def never():
        await asyncio.sleep(60)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(_within(0.05, never()))


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
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    elif target == "/v3/models/training-a/logs?follow=true&offset=0":
        # two chunks, then the connection breaks in the middle of the third
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"6\r\nhello \r\n3\r\nwor\r\n9\r\nld")
    elif target == "/v3/models/training-a/logs?follow=true&offset=11":
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"1\r\n\n\r\n0\r\n\r\n")
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
    assert "/v3/models/training-a/logs?follow=true&offset=11" in got["requests"]
    run = {
        "model_id": "training-a",
        "status": "running",
        "framework": {"name": "sh", "version": "1"},
    }
    assert got["events"] == [[7, "run", run], [8, "run", run]]
    assert got["shared"] is True
