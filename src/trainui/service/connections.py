"""Clients over TCP that are slow, idle or too many.

uvicorn closes idle kept-alive connections but gives a request's head no deadline (a client
that sends half a request line holds its connection for ever), and its ``limit_concurrency``
answers 503 only to a request it has parsed. The TCP listener therefore uses uvicorn's own HTTP
protocol (httptools', else h11's) with a deadline, as Go's ``ReadHeaderTimeout``: from the
connection's start (its TLS handshake included) or the end of the previous response, the next
request's head must be in within ``header_timeout``; once it is, the request and its response
(a log follow, the event stream) take as long as they take. Connections over a cap, per client
address or in all, are closed as they arrive (answered 503 first, without TLS). The Unix socket
is left out: only the home's owner reaches it, and it must answer while TCP is flooded.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import resource
import ssl
import sys
from collections import Counter
from collections.abc import Callable

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from trainui.config import ConnectionLimits

# A request's line and headers: httptools sets no limit of its own (h11's is 16 KiB)
MAX_HEAD_BYTES = 64 * 1024
# Open files the service keeps for itself (its database, the Unix socket and its clients,
# learners' pipes) besides two a TCP connection may hold (its socket and a log it follows)
_RESERVED_FILES = 256


class Gate:
    """The TCP connections open, in all and by client address."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.total = 0
        self.by_address: Counter[str] = Counter()

    def enter(self, address: str) -> str | None:
        """Count a new connection in; or say, in a sentence, why it may not open."""
        most = self.limits.max_per_address
        if self.by_address[address] >= most:
            return (
                f"too many connections from {address} (at most {most} at a time); "
                "close some and try again"
            )
        if self.total >= self.limits.max_connections:
            return (
                f"the service has too many connections (at most {self.limits.max_connections}); "
                "try again later"
            )
        self.by_address[address] += 1
        self.total += 1
        return None

    def leave(self, address: str) -> None:
        self.total -= 1
        self.by_address[address] -= 1
        if not self.by_address[address]:
            del self.by_address[address]


def client_address(host: str) -> str:
    """Whom a connection counts against: its IPv4 address (also when it comes mapped into
    IPv6, on a dual-stack listener), or its IPv6 /64 (one site's, that it may vary at will)."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def tcp_protocol(limits: ConnectionLimits, tls: ssl.SSLContext | None) -> type[asyncio.Protocol]:
    """The HTTP protocol class for ``uvicorn.Config(http=...)`` of the TCP listener, with its
    own gate; with ``tls``, it does the TLS handshake itself (under the head's deadline), so
    that uvicorn gets no ``ssl_*`` settings."""
    return type(
        "GuardedHTTPProtocol",
        (_Guarded, AutoHTTPProtocol),
        {"limits": limits, "tls": tls, "gate": Gate(limits)},
    )


def fit_open_files(limits: ConnectionLimits) -> ConnectionLimits:
    """Raise this process's soft limit of open files to its hard limit (as Go programs do),
    and lower ``max_connections`` to what that limit leaves room for, saying so."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # an infinite hard limit Linux refuses as a soft one: keep what we have
    if soft == resource.RLIM_INFINITY:
        return limits
    room = max(1, (soft - _RESERVED_FILES) // 2)
    if limits.max_connections <= room:
        return limits
    print(
        f"trainui: TRAINUI_MAX_CONNECTIONS lowered to {room}: this process may open only {soft} "
        "files (ulimit -n)",
        file=sys.stderr,
        flush=True,
    )
    return ConnectionLimits(**{**limits.as_dict(), "max_connections": room})


def _tls_layer(loop: asyncio.AbstractEventLoop, timeout: float) -> Callable[..., asyncio.Protocol]:
    """The TLS protocol of ``loop``'s own ``start_tls`` and ``create_server(ssl=...)``, with
    ``timeout`` for its handshake and for its close (a client that does not answer the close
    of TLS holds its socket no longer)."""
    timeouts = {"ssl_handshake_timeout": timeout, "ssl_shutdown_timeout": timeout}
    try:
        import uvloop
        from uvloop.loop import SSLProtocol
    except ImportError:
        uvloop = None
    if uvloop is None or not isinstance(loop, uvloop.Loop):
        from asyncio.sslproto import SSLProtocol

        if sys.version_info < (3, 11):  # asyncio's takes a close timeout from 3.11 on
            del timeouts["ssl_shutdown_timeout"]
    return functools.partial(SSLProtocol, **timeouts)


def _answer(status: str, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class _Guarded:
    """What ``tcp_protocol`` adds to uvicorn's HTTP protocol."""

    limits: ConnectionLimits
    tls: ssl.SSLContext | None
    gate: Gate

    _address: str | None = None  # set while the connection counts in the gate
    _socket: asyncio.Transport | None = None  # the TCP connection, under TLS if any
    _deadline: asyncio.TimerHandle | None = None  # armed while a request's head is awaited
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:
        if self._socket is not None:  # called again by the TLS layer, its handshake done
            super().connection_made(transport)
            return
        peer = transport.get_extra_info("peername")
        address = client_address(str(peer[0])) if peer else ""
        refusal = self.gate.enter(address)
        if refusal is not None:
            if self.tls is None:
                transport.write(_answer("503 Service Unavailable", refusal))
            transport.close()
            return
        self._address, self._socket = address, transport
        self._arm()
        if self.tls is None:
            super().connection_made(transport)
        else:
            self._start_tls(transport)

    def _start_tls(self, transport: asyncio.Transport) -> None:
        """Put TLS between the connection and this protocol, as ``loop.start_tls`` does, but
        before its first byte is read: that coroutine starts a turn of the loop later, and
        uvloop reads in between. The TLS layer calls ``connection_made`` again once its
        handshake is done, which the head's deadline (armed already) covers."""
        handshake = self.loop.create_future()
        handshake.add_done_callback(self._handshake_done)
        layer = _tls_layer(self.loop, self.limits.header_timeout)(
            self.loop, self, self.tls, handshake, server_side=True
        )
        transport.set_protocol(layer)
        layer.connection_made(transport)

    def _handshake_done(self, handshake: asyncio.Future) -> None:
        # A handshake that failed, or that the deadline cut (the TLS layer then says nothing
        # to this protocol, and may end ``handshake`` without an error): the connection is gone
        if not handshake.cancelled():
            handshake.exception()  # seen: no "never retrieved" in the log
        if self.transport is None:  # uvicorn never got the connection
            self._leave()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:  # refused: uvicorn never saw it
            return
        self._leave()
        super().connection_lost(exc)

    def _leave(self) -> None:
        self._disarm()
        if self._address is not None:
            self.gate.leave(self._address)
            self._address = None

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self._deadline is None:
            return
        if self.cycle is not cycle:  # the head is in: what follows has no deadline here
            self._disarm()
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._disarm()
            message = f"the request's line and headers are over {MAX_HEAD_BYTES} bytes"
            self.transport.write(_answer("431 Request Header Fields Too Large", message))
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # on a kept-alive connection, the next request's head has the same deadline (uvicorn's
        # keep-alive timer stops at its first byte)
        if self.cycle.response_complete and not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_bytes = 0
        self._deadline = self.loop.call_later(self.limits.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        # abort, not close: a client that does not read would keep a closing socket open
        self._socket.abort()
