"""The fixed, fast counterparts: a client that measures servers and a server
that measures clients.

Neither does per-message WebSocket work. The client sends one pre-built
masked frame and counts the bytes of the reply, whose length it knows (it
checks the reply byte for byte before and after each timed run, so a
desynchronised count cannot go unnoticed). The server answers every
complete request frame with one pre-built frame, looking at one byte per
frame (to see a close frame). Both read with :class:`asyncio.BufferedProtocol`
into one buffer per process, so a read allocates nothing.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import ssl
import time
import zlib
from typing import Any, Optional

from ._common import (
    OP_BINARY,
    OP_CLOSE,
    CpuMeter,
    Window,
    accept_key,
    frame,
    header_length,
    parse_frame,
    payload,
    upgrade_request,
)

__all__ = ["Driver", "FixedServer", "DEFLATE_OFFER"]

DEFLATE_OFFER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
"""The benchmark client's offer: every message compressed on its own, so
that the echo of one message always has the same length."""

_BUFFER = memoryview(bytearray(262144))
DIRECT = hasattr(select, "epoll")
"""Whether the fixed client counts plain runs in its own epoll loop
(:func:`_count_direct`; Linux), else on the event loop."""
GREETING = b"hi"
"""What the raw broadcast server writes to each connection it accepts, so
that the client knows it is registered (a WebSocket server's 101 says so)."""
_HANDSHAKE, _VERIFY, _COUNT, _IDLE, _CLOSING = range(5)


class _Message:
    """What a run sends and expects: the request frame and the reply check."""

    def __init__(self, size: int, *, raw: bool, deflate: bool) -> None:
        self.data = payload(size, compressible=deflate)
        if deflate:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            body = compressor.compress(self.data) + compressor.flush(zlib.Z_SYNC_FLUSH)
            self.frame = frame(body[:-4], masked=True, rsv1=True)
        else:
            self.frame = frame(self.data, masked=True)
        self.raw = raw

    def check(self, reply: bytes) -> Optional[int]:
        """The length of the complete reply at the start of ``reply`` (``None``
        while incomplete); raises if it is not the expected echo."""
        if self.raw:
            if len(reply) < len(self.frame):
                return None
            if reply[: len(self.frame)] != self.frame:
                raise AssertionError("the raw echo differs from the frame sent")
            return len(self.frame)
        parsed = parse_frame(reply)
        if parsed is None:
            return None
        opcode, rsv1, body, total = parsed
        if opcode != OP_BINARY:
            raise AssertionError(f"expected a binary echo, got opcode {opcode}")
        if rsv1:
            body = zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff")
        if body != self.data:
            raise AssertionError(f"the echo differs from the message sent ({len(body)} vs {len(self.data)} bytes)")
        return total


class _Run:
    """The shared state of the connections of one run."""

    def __init__(self, message: _Message, expect_deflate: bool) -> None:
        self.message = message
        self.expect_deflate = expect_deflate
        self.window: Optional[Window] = None
        self.active = 0
        self.finished: Optional[asyncio.Future[None]] = None
        self.desync = False

    def complete(self, conn: _ClientConn, now: int) -> None:
        if self.window.done(conn.sent_at, now):  # type: ignore[union-attr]
            conn.sent_at = now
            conn.transport.write(self.message.frame)  # type: ignore[union-attr]
        else:
            conn.state = _IDLE
            self.stopped()

    def stopped(self) -> None:
        self.active -= 1
        if self.active == 0 and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


class _ClientConn(asyncio.BufferedProtocol):
    """One connection of the benchmark client."""

    def __init__(self, run: _Run, request: Optional[bytes]) -> None:
        self.run = run
        self.request = request
        self.transport: Optional[asyncio.Transport] = None
        self.state = _HANDSHAKE if request else _IDLE
        self.acc = bytearray()
        self.got = 0
        self.expected = 0
        self.sent_at = 0
        self.waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.request is GREETING:
            return
        if self.request:
            self.transport.write(self.request)  # type: ignore[union-attr]
        else:
            self.waiter.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        if self.state == _COUNT:
            got = self.got + nbytes
            if got < self.expected:
                self.got = got
                return
            if got > self.expected:
                self.run.desync = True
            self.got = got - self.expected
            self.run.complete(self, time.perf_counter_ns())
        elif self.state == _CLOSING:
            return
        else:
            self.acc += _BUFFER[:nbytes]
            try:
                self._progress()
            except Exception as exc:
                if not self.waiter.done():
                    self.waiter.set_exception(exc)

    def _progress(self) -> None:
        if self.state == _HANDSHAKE and self.request is GREETING:
            if self.acc.startswith(GREETING):
                del self.acc[: len(GREETING)]
                self.state = _IDLE
                self.waiter.set_result(None)
        elif self.state == _HANDSHAKE:
            end = self.acc.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.acc[:end]).decode("latin-1").lower()
            del self.acc[: end + 4]
            if not head.startswith("http/1.1 101"):
                raise ConnectionError(f"handshake refused: {head.splitlines()[0]}")
            if f"sec-websocket-accept: {accept_key(self.request_key).decode().lower()}" not in head:
                raise ConnectionError("wrong Sec-WebSocket-Accept")
            if self.run.expect_deflate and "permessage-deflate" not in head:
                raise ConnectionError("the server did not accept permessage-deflate")
            self.state = _IDLE
            self.waiter.set_result(None)
        elif self.state == _VERIFY:
            total = self.run.message.check(bytes(self.acc))
            if total is None:
                return
            if len(self.acc) != total:
                raise AssertionError(f"{len(self.acc) - total} unexpected bytes after the echo")
            self.acc.clear()
            self.expected = total
            self.state = _IDLE
            self.waiter.set_result(None)

    @property
    def request_key(self) -> bytes:
        return self.request.split(b"Sec-WebSocket-Key: ", 1)[1].split(b"\r\n", 1)[0]  # type: ignore[union-attr]

    def verify(self) -> asyncio.Future[None]:
        """Send the message once and check the whole reply."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.state = _VERIFY
        self.transport.write(self.run.message.frame)  # type: ignore[union-attr]
        return self.waiter

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))
        if not self.lost.done():
            self.lost.set_result(None)
        if self.state == _COUNT:
            self.state = _IDLE
            self.run.desync = True
            self.run.stopped()


def _count_direct(conns: list[_ClientConn], run: _Run, deadline: int) -> None:
    """The counted phase of a plain (not TLS) run, without the event loop:
    the connections' sockets (duplicated, their transports paused) in one
    epoll loop, one Python frame per round trip, so that the fixed client
    costs less per message than the cheapest server it measures (the raw
    echo pays the event loop's protocol callbacks for each read)."""
    window = run.window
    assert window is not None
    frame = run.message.frame
    size = len(frame)
    poller = select.epoll(len(conns))
    state: dict[int, list[Any]] = {}  # fd: [socket, bytes of the reply so far, sent at, unsent rest]
    try:
        for conn in conns:
            conn.transport.pause_reading()  # type: ignore[union-attr]
            fd = os.dup(conn.transport.get_extra_info("socket").fileno())  # type: ignore[union-attr]
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            state[fd] = [sock, 0, 0, None]
            poller.register(fd, select.EPOLLIN)
        expected = conns[0].expected
        view = _BUFFER
        active = len(state)
        perf_counter_ns = time.perf_counter_ns
        for fd, entry in state.items():
            entry[2] = perf_counter_ns()
            _send(poller, fd, entry, frame, size)
        while active:
            events = poller.poll(1.0)
            now = perf_counter_ns()
            if now > deadline:
                raise AssertionError("the run did not end before its deadline")
            for fd, mask in events:
                entry = state[fd]
                if mask & select.EPOLLOUT and entry[3] is not None:
                    _send(poller, fd, entry, entry[3], len(entry[3]))
                if not mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    continue
                try:
                    n = entry[0].recv_into(view)
                except BlockingIOError:
                    continue
                if n == 0:
                    raise ConnectionError("connection closed by the server")
                got = entry[1] + n
                if got < expected:
                    entry[1] = got
                    continue
                if got > expected:
                    run.desync = True
                entry[1] = got - expected
                if window.done(entry[2], now):
                    entry[2] = now
                    _send(poller, fd, entry, frame, size)
                else:
                    poller.unregister(fd)
                    active -= 1
    finally:
        poller.close()
        for entry in state.values():
            entry[0].close()  # the duplicate: the transport's socket stays open
        for conn in conns:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.resume_reading()


def _send(poller: Any, fd: int, entry: list[Any], data: Any, size: int) -> None:
    """Send ``data``; what the socket does not take now waits for EPOLLOUT."""
    try:
        sent = entry[0].send(data)
    except BlockingIOError:
        sent = 0
    if sent == size:
        if entry[3] is not None:
            entry[3] = None
            poller.modify(fd, select.EPOLLIN)
        return
    rest = memoryview(data)[sent:]
    if entry[3] is None:
        poller.modify(fd, select.EPOLLIN | select.EPOLLOUT)
    entry[3] = rest


class Driver:
    """The benchmark client: opens connections with a real handshake and
    drives a server with pre-built frames."""

    def __init__(self) -> None:
        self.held: list[_ClientConn] = []

    async def _open(
        self,
        run: _Run,
        port: int,
        count: int,
        *,
        raw: bool,
        tls: Optional[ssl.SSLContext] = None,
        deflate: bool = False,
        path: str = "/",
        greeting: bool = False,
    ) -> list[_ClientConn]:
        """Open ``count`` connections: a WebSocket handshake each, or with
        ``raw`` none (``greeting``: wait for the raw server's greeting)."""
        loop = asyncio.get_running_loop()
        if raw:
            request = GREETING if greeting else None
        else:
            request = upgrade_request("127.0.0.1", port, path, DEFLATE_OFFER if deflate else None)
        conns: list[_ClientConn] = []
        batch = 50  # a backlog of 100 (asyncio's default) must not overflow
        for first in range(0, count, batch):
            made = await asyncio.gather(
                *(
                    loop.create_connection(
                        lambda: _ClientConn(run, request),
                        "127.0.0.1",
                        port,
                        ssl=tls,
                        server_hostname="127.0.0.1" if tls else None,
                    )
                    for _ in range(first, min(count, first + batch))
                )
            )
            opened = [protocol for _, protocol in made]
            conns.extend(opened)
            await asyncio.gather(*(conn.waiter for conn in opened))
        return conns

    async def _close(self, conns: list[_ClientConn], raw: bool) -> None:
        close = frame((1000).to_bytes(2, "big"), opcode=OP_CLOSE, masked=True)
        for conn in conns:
            conn.state = _CLOSING
            if conn.transport is None or conn.transport.is_closing():
                continue
            if raw:
                conn.transport.close()
            else:
                conn.transport.write(close)
        pending = [conn.lost for conn in conns if not conn.lost.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        for conn in conns:
            if conn.transport is not None and not conn.lost.done():
                conn.transport.abort()

    async def request_response(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Each of ``connections`` connections sends the message and waits for
        its echo, in a loop, for a :class:`Window`."""
        raw, deflate = cmd["raw"], cmd.get("deflate", False)
        tls = _client_tls(cmd.get("cafile"))
        run = _Run(_Message(cmd["size"], raw=raw, deflate=deflate), expect_deflate=deflate)
        conns = await self._open(
            run, cmd["port"], cmd["connections"], raw=raw, tls=tls, deflate=deflate, path=cmd.get("path", "/")
        )
        try:
            await asyncio.gather(*(conn.verify() for conn in conns))
            loop = asyncio.get_running_loop()
            run.finished = loop.create_future()
            meter = CpuMeter(cmd.get("peer_pid"))
            window = run.window = Window(cmd)
            limit = cmd["warmup"] + cmd["max_seconds"] + cmd["grace"]
            if DIRECT and tls is None:
                _count_direct(conns, run, time.perf_counter_ns() + int(limit * 1e9))
            else:
                run.active = len(conns)
                for conn in conns:
                    conn.state = _COUNT
                    conn.got = 0
                    conn.sent_at = time.perf_counter_ns()
                    conn.transport.write(run.message.frame)  # type: ignore[union-attr]
                await asyncio.wait_for(run.finished, limit)
            own_cpu, peer_cpu = meter.shares()
            if run.desync:
                raise AssertionError("the replies were not the expected echoes (extra bytes or a lost connection)")
            await asyncio.gather(*(conn.verify() for conn in conns))
        finally:
            await self._close(conns, raw)
        result = window.result()
        result.update(client_cpu=own_cpu, server_cpu=peer_cpu)
        return result

    async def broadcast(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Open ``connections`` connections; ``rounds`` times, send one
        message on the first and time until every connection has the
        server's broadcast of it."""
        raw = cmd["raw"]
        message = _Message(cmd["size"], raw=raw, deflate=False)
        run = _Run(message, expect_deflate=False)
        conns = await self._open(run, cmd["port"], cmd["connections"], raw=raw, greeting=raw)
        loop = asyncio.get_running_loop()
        times: list[float] = []
        try:
            await asyncio.sleep(0.2)  # a server may register a connection just after its 101
            for _ in range(cmd["rounds"]):
                for conn in conns:
                    conn.waiter = loop.create_future()
                    conn.state = _VERIFY
                start = time.perf_counter_ns()
                conns[0].transport.write(message.frame)  # type: ignore[union-attr]
                await asyncio.wait_for(asyncio.gather(*(conn.waiter for conn in conns)), cmd["timeout"])
                times.append((time.perf_counter_ns() - start) / 1e6)
                await asyncio.sleep(0.02)
        finally:
            await self._close(conns, raw)
        return {"ms_to_last": times}

    async def hold(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Open ``connections`` more connections, echo one message on each,
        and keep them open until :meth:`release`."""
        raw = cmd["raw"]
        run = _Run(_Message(64, raw=raw, deflate=False), expect_deflate=False)
        conns = await self._open(run, cmd["port"], cmd["connections"], raw=raw)
        self.held.extend(conns)
        for first in range(0, len(conns), 200):
            await asyncio.gather(*(conn.verify() for conn in conns[first : first + 200]))
        return {"held": len(self.held)}

    async def release(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Close the connections opened by :meth:`hold`."""
        held, self.held = self.held, []
        await self._close(held, raw=cmd["raw"])
        return {"released": len(held)}


def _client_tls(cafile: Optional[str]) -> Optional[ssl.SSLContext]:
    if cafile is None:
        return None
    return ssl.create_default_context(cafile=cafile)


# ---------------------------------------------------------------- the fixed server


class _ServerConn(asyncio.BufferedProtocol):
    """One connection of the fixed server: ``GET /<size>`` sets the size of
    the client's messages; each one is answered with a pre-built frame."""

    replies: dict[int, bytes] = {}

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.head = bytearray()
        self.expected = 0
        self.got = 0  # bytes of the current request frame received so far
        self.reply = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return _BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        if self.expected <= 0:
            if self.expected == 0:
                self.head += _BUFFER[:nbytes]
                self._handshake()
            return
        pos = 0
        got = self.got
        expected = self.expected
        while pos < nbytes:
            if got == 0 and _BUFFER[pos] & 0x0F == OP_CLOSE:
                self._close()
                return
            take = min(expected - got, nbytes - pos)
            pos += take
            got += take
            if got == expected:
                got = 0
                self.transport.write(self.reply)  # type: ignore[union-attr]
        self.got = got

    def _handshake(self) -> None:
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(self.head[:end]).split(b"\r\n")
        if len(self.head) > end + 4:  # a client waits for the 101 before sending
            self.transport.abort()  # type: ignore[union-attr]
            return
        size = int(lines[0].split()[1].lstrip(b"/") or b"0")
        key = next(line.split(b":", 1)[1].strip() for line in lines if line.lower().startswith(b"sec-websocket-key:"))
        self.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
        )
        if size not in self.replies:
            self.replies[size] = frame(payload(size))
        self.reply = self.replies[size]
        self.expected = header_length(size, masked=True) + size

    def _close(self) -> None:
        self.transport.write(frame((1000).to_bytes(2, "big"), opcode=OP_CLOSE))  # type: ignore[union-attr]
        self.transport.close()  # type: ignore[union-attr]
        self.expected = -1  # ignore whatever follows


class FixedServer:
    """The benchmark server for measuring clients."""

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(_ServerConn, "127.0.0.1", 0, backlog=1024)
        return int(self.server.sockets[0].getsockname()[1])
