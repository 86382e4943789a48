"""Abuse probes: what a hostile or broken peer can make a wsfast server or
client hold, each bounded in time (a few seconds) and run with both codecs
(the suite runs once per codec).

* a flood of empty or tiny messages to a reader that does not read: reading
  pauses at a bounded memory (``max_queue`` counts a per-message overhead);
* a ping flood from a peer that never reads: the pongs do not pile up in the
  write buffer (only the latest ping is answered while writing is paused),
  through both APIs and the client;
* a peer that never reads what a handler sends: the write buffer stays near
  ``write_limit`` and a shutdown still ends in ``close_timeout``;
* silent sockets and slowloris requests: they do not count toward
  ``max_connections``, ``max_handshakes`` bounds them, ``open_timeout`` ends
  them;
* many connect/close cycles: no file descriptor leaks.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
import time
from typing import Any

import pytest

from wsfast.asyncio import Listener, WebSocket, WebSocketTransport, connect, create_server, serve
from wsfast.asyncio.connection import MESSAGE_OVERHEAD
from wsfast.asyncio.transport import READ_BUFFER_SIZE
from wsfast.http11 import Request

from .helpers import (
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClient,
    accept_key,
    echo,
    eventually,
    frame,
    port_of,
    raw_accept,
    raw_server,
    run,
    shrink_send_buffer,
    small_buffer_socket,
    upgrade_request,
)

KiB = 1024


def uri(server: Any) -> str:
    return f"ws://127.0.0.1:{server.port}/"


async def silent_reader_socket(port: int) -> socket.socket:
    """A raw client that completes the handshake, then never reads (small
    receive buffer, so that the server's writes back up at once)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request, _ = upgrade_request()
    await loop.sock_sendall(sock, request)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)  # byte by byte: nothing after the head is read
    assert head.startswith(b"HTTP/1.1 101")
    return sock


# ---------------------------------------------------------------- tiny-message floods


@pytest.mark.parametrize("size", [0, 1])
def test_flood_of_tiny_messages_to_a_handler_that_does_not_read(size: int) -> None:
    """200,000 empty (or one-byte) messages to a handler that never reads:
    reading pauses once they count max_queue (today empty messages counted
    nothing and were queued without limit)."""
    max_queue = 64 * KiB
    count = 200_000
    state: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        state["ws"] = ws
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, deflate=None, max_queue=max_queue, close_timeout=0.5) as server:
            client = await RawClient.connect(server.port)
            one = frame(OP_TEXT, b"x" * size)
            client.writer.write(one * count)  # the client's own buffer holds what the server does not read
            await eventually(lambda: "ws" in state)
            ws: WebSocket = state["ws"]
            await eventually(lambda: ws._paused, timeout=5)
            await asyncio.sleep(0.2)  # would it go on reading?
            bound = max_queue // MESSAGE_OVERHEAD + READ_BUFFER_SIZE // len(one) + 1
            assert len(ws._queue or ()) + (ws._next is not None) <= bound < count
            assert not ws.transport.transport.is_reading()
            client.close()

    run(main(), timeout=20)


def test_flood_of_empty_messages_to_a_client_that_does_not_read() -> None:
    """The same against connect: the client stops reading."""
    max_queue = 64 * KiB
    count = 200_000

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_accept(reader, writer)
        writer.write(frame(OP_TEXT, b"", mask=False) * count)
        try:
            await asyncio.wait_for(reader.read(), 10)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        writer.close()

    async def main() -> None:
        server = await raw_server(on_connection)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port_of(server)}", deflate=None, max_queue=max_queue)
            await eventually(lambda: ws._paused, timeout=5)
            await asyncio.sleep(0.2)
            assert len(ws._queue) <= max_queue // MESSAGE_OVERHEAD + READ_BUFFER_SIZE // 2 + 1 < count
            assert await ws.recv() == ""
            ws.transport.abort()

    run(main(), timeout=20)


# ---------------------------------------------------------------- ping floods


class Quiet(Listener):
    """A callback-API listener that does nothing."""

    __slots__ = ("ws",)

    def on_open(self, ws: WebSocketTransport) -> None:
        self.ws = ws


async def ping_flood(sock: socket.socket, count: int) -> bytes:
    """Send ``count`` pings of 125 bytes, then one text message (sent after
    every ping, so handled after them); return the last ping's payload."""
    loop = asyncio.get_running_loop()
    last = b""
    batch: list[bytes] = []
    for i in range(count):
        last = i.to_bytes(4, "big") + b"p" * 121
        batch.append(frame(OP_PING, last))
        if len(batch) == 1000:
            await loop.sock_sendall(sock, b"".join(batch))
            batch = []
    await loop.sock_sendall(sock, b"".join(batch) + frame(OP_TEXT, b"end"))
    return last


async def last_pong(sock: socket.socket, last: bytes) -> None:
    """Read the server's (unmasked) frames until the pong to the latest ping
    (the answer that must not be lost)."""
    loop = asyncio.get_running_loop()
    buffer = bytearray()
    while True:
        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        assert data, "EOF before the last pong"
        buffer += data
        while len(buffer) >= 2:
            length, start = buffer[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                break
            opcode, payload = buffer[0] & 0x0F, bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == OP_PONG and payload == last:
                return


@pytest.mark.parametrize("api", ["awaitable", "callback"])
def test_ping_flood_from_a_client_that_never_reads(api: str) -> None:
    """20,000 pings (2.6 MB) from a client that never reads: the server's
    write buffer stays near write_limit (today: one pong per ping, 2.5 MB),
    and the latest ping still gets its pong once the client reads."""
    write_limit = 16 * KiB
    state: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        state["ws"] = ws.transport
        state["end"] = await ws.recv()
        await ws.wait_closed()

    def factory(ws: WebSocketTransport, request: Request) -> Listener:
        state["ws"] = ws

        class End(Quiet):
            def on_text(self, data: Any) -> None:
                state["end"] = data

        return End()

    async def main() -> None:
        options: dict[str, Any] = dict(deflate=None, write_limit=write_limit, ping_interval=None, close_timeout=0.5)
        starting = (
            serve(handler, "127.0.0.1", 0, **options)
            if api == "awaitable"
            else create_server(factory, "127.0.0.1", 0, **options)
        )
        async with starting as server:
            sock = await silent_reader_socket(server.port)
            await eventually(lambda: "ws" in state)
            ws: WebSocketTransport = state["ws"]
            shrink_send_buffer(ws.transport, 4096)
            last = await ping_flood(sock, 20_000)
            await eventually(lambda: "end" in state, timeout=10)
            assert ws.write_buffer_size() <= 2 * write_limit + KiB, ws.write_buffer_size()
            await last_pong(sock, last)
            sock.close()

    run(main(), timeout=30)


def test_ping_flood_to_a_client_from_a_server_that_never_reads() -> None:
    """A server floods a connect() client with pings and never reads: the
    client's write buffer stays bounded too (today: one pong per ping)."""
    write_limit = 16 * KiB

    async def flood(listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        sock, _ = await loop.sock_accept(listening)
        with sock:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await loop.sock_recv(sock, 4096)
            key = next(
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            await loop.sock_sendall(
                sock,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n",
            )
            for i in range(20):  # 20,000 pings, never reading the pongs
                pings = (frame(OP_PING, i.to_bytes(4, "big") + bytes(121), mask=False) for _ in range(1000))
                await loop.sock_sendall(sock, b"".join(pings))
            await loop.sock_sendall(sock, frame(OP_TEXT, b"end", mask=False))
            await asyncio.sleep(10)

    async def main() -> None:
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited: no autotuning
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        listening.setblocking(False)
        with listening:
            task = asyncio.ensure_future(flood(listening))
            port = listening.getsockname()[1]
            sock = await small_buffer_socket(port, 4096)  # set before connecting: the kernel keeps to it
            ws = await connect(
                f"ws://127.0.0.1:{port}", sock=sock, deflate=None, write_limit=write_limit, ping_interval=None
            )
            assert await asyncio.wait_for(ws.recv(), 10) == "end"
            assert ws.transport.write_buffer_size() <= 2 * write_limit + KiB, ws.transport.write_buffer_size()
            ws.transport.abort()
            task.cancel()

    run(main(), timeout=30)


# ---------------------------------------------------------------- non-reading peers


def test_handler_sending_to_a_peer_that_never_reads() -> None:
    """A handler streams 1 KiB messages to a client that never reads: send
    waits, the write buffer stays near write_limit, and a shutdown ends
    within close_timeout (the close frame cannot go: abort)."""
    write_limit = 16 * KiB
    state: dict[str, Any] = {"sent": 0}

    async def handler(ws: WebSocket) -> None:
        state["ws"] = ws
        shrink_send_buffer(ws.transport.transport, 4096)
        payload = b"z" * KiB
        while True:
            await ws.send(payload)
            state["sent"] += 1
            state["max"] = max(state.get("max", 0), ws.transport.write_buffer_size())

    async def main() -> None:
        server = await serve(handler, "127.0.0.1", 0, deflate=None, write_limit=write_limit, close_timeout=0.5)
        sock = await silent_reader_socket(server.port)
        await eventually(lambda: state["sent"] > 10)
        await asyncio.sleep(0.3)
        sent = state["sent"]
        await asyncio.sleep(0.3)
        assert state["sent"] == sent, "send did not wait"
        assert state["max"] <= write_limit + 2 * KiB
        started = time.monotonic()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
        assert time.monotonic() - started < 3
        sock.close()

    run(main(), timeout=20)


# ---------------------------------------------------------------- handshakes


def test_silent_sockets_do_not_count_toward_max_connections() -> None:
    """20 sockets that connect and say nothing, against max_connections=20:
    a real client still gets in (today: 503 until open_timeout)."""

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_connections=20, open_timeout=10) as server:
            silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
            await eventually(lambda: len(server.connections) == 20)
            async with connect(uri(server)) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"
            for sock in silent:
                sock.close()

    run(main())


def test_max_connections_still_counts_open_connections() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_connections=2) as server:
            async with connect(uri(server)), connect(uri(server)):
                client = await RawClient.connect(server.port)
                assert client.status == 503
                client.close()

    run(main())


def dropped(sock: socket.socket) -> bool:
    """Whether the server closed this silent socket (EOF), without blocking."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_max_handshakes_drops_the_oldest_silent_socket() -> None:
    """max_handshakes=5: a sixth silent socket makes the server drop the
    oldest; a real client still connects."""

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_handshakes=5, open_timeout=10) as server:
            silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(8)]
            for sock in silent:
                sock.setblocking(False)
            await eventually(lambda: [dropped(sock) for sock in silent] == [True] * 3 + [False] * 5)
            assert len(server.connections) == 5
            async with connect(uri(server)) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"
            for sock in silent:
                sock.close()

    run(main())


def test_slowloris_request_ends_at_open_timeout() -> None:
    """A request sent one byte every 50 ms never completes: open_timeout
    drops the connection."""

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, open_timeout=0.5) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            request, _ = upgrade_request()
            started = time.monotonic()

            async def trickle() -> None:
                for byte in request[:-2]:
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)

            task = asyncio.ensure_future(trickle())
            try:
                assert await asyncio.wait_for(reader.read(), 3) == b""
            except ConnectionError:
                pass
            closed = time.monotonic() - started
            task.cancel()
            assert 0.4 < closed < 2.0, closed
            writer.close()

    run(main())


# ---------------------------------------------------------------- cycles


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")
def test_connect_close_cycles_leak_no_file_descriptors() -> None:
    """300 connect/echo/close cycles, some closed by the client, some aborted,
    some refused in the handshake: the process ends with the file
    descriptors it had."""

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_connections=1000) as server:
            async with connect(uri(server)) as ws:  # warm up (lazy imports, loop internals)
                await ws.send("x")
                await ws.recv()
            gc.collect()
            before = open_fds()
            for i in range(300):
                if i % 3 == 0:
                    ws = await connect(uri(server))
                    await ws.send("ping")
                    assert await ws.recv() == "ping"
                    await ws.close()
                elif i % 3 == 1:
                    ws = await connect(uri(server))
                    ws.transport.abort()
                    await ws.wait_closed()
                else:
                    client = await RawClient.connect(server.port, path="/", extra="Sec-WebSocket-Version: 8\r\n")
                    client.close()
            await eventually(lambda: len(server.connections) == 0, timeout=5)
            gc.collect()
            await eventually(lambda: open_fds() <= before, timeout=5)

    run(main(), timeout=30)
