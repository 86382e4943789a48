"""The awaitable API: WebSocket (send, recv, async for, ping, close) and broadcast."""

from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator, Optional, Union

import pytest

from wsfast.asyncio import Listener, WebSocket, WebSocketTransport, broadcast, connect, create_server, serve
from wsfast.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidState
from wsfast.http11 import Request
from wsfast.protocol import State

from .helpers import echo, eventually, run, shrink_send_buffer, small_buffer_socket

MiB = 1024 * 1024


def uri(server: Any, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


@pytest.mark.parametrize("deflate", ["default", None])
def test_echo(deflate: Optional[str]) -> None:
    kwargs: dict[str, Any] = {} if deflate == "default" else {"deflate": None}
    messages: list[Union[str, bytes]] = [
        "hello",
        "",
        "ünïcødé ☃ 𝄞",
        b"",
        b"\x00\x01\x02",
        "x" * MiB,
        bytes(range(256)) * 4096,
    ]
    if deflate is None:
        messages.append(os.urandom(MiB))

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, **kwargs) as server:
            async with connect(uri(server), **kwargs) as ws:
                assert ("Sec-WebSocket-Extensions" in ws.response.headers) == (deflate == "default")
                for message in messages:
                    await ws.send(message)
                    received = await ws.recv()
                    assert type(received) is type(message) and received == message
                # Pipelined: all sends first, then all receives.
                for message in messages:
                    await ws.send(message)
                for message in messages:
                    assert await ws.recv() == message
                # Memoryview and bytearray are binary.
                await ws.send(bytearray(b"ba"))
                await ws.send(memoryview(b"mv"))
                assert await ws.recv() == b"ba" and await ws.recv() == b"mv"

    run(main(), 30)


def test_text_as_bytes() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, text_as_bytes=True) as server:
            async with connect(uri(server), text_as_bytes=True) as ws:
                await ws.send("é")  # the server echoes validated UTF-8 bytes as text
                assert await ws.recv() == "é".encode()
                await ws.send(b"\xff")
                assert await ws.recv() == b"\xff"

    run(main())


def test_incompressible_message_of_max_size_with_deflate() -> None:
    """max_message_size counts bytes after decompression (Options docstring):
    a 1 MiB message is within the default 1 MiB limit whatever its content,
    with compression negotiated or not. Random bytes grow when deflated (with
    mem_level=5, zlib emits stored blocks of ~2 KiB, 5 bytes of overhead
    each: ~2.5 KiB per MiB), more than the slack that Connection._use_deflate
    allows on the frame limit (limit // 1024 + 64), so the receiver closes
    with 1009 "frame of 1051142 bytes exceeds max_frame_size=1049664"."""

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                message = os.urandom(MiB)
                await ws.send(message)
                try:
                    assert await ws.recv() == message
                except ConnectionClosed as exc:
                    pytest.fail(f"a 1 MiB message (the limit) was refused: {exc}")

    run(main())


def test_async_for_and_normal_close() -> None:
    async def handler(ws: WebSocket) -> None:
        for i in range(5):  # at once, without waiting for the client
            await ws.send(f"message {i}")
        # returning closes with 1000

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                received = [message async for message in ws]
                assert received == [f"message {i}" for i in range(5)]
                assert ws.close_code == 1000 and ws.close_reason == ""
                with pytest.raises(ConnectionClosedOK):
                    await ws.recv()
                with pytest.raises(ConnectionClosedOK):
                    await ws.send("too late")

    run(main())


def test_fragmented_send() -> None:
    """Iterables and async iterables are sent as one fragmented message."""

    class Fragments(Listener):
        def __init__(self) -> None:
            self.fragments: list[tuple[Any, bool, bool]] = []
            self.done: asyncio.Queue[list[tuple[Any, bool, bool]]] = asyncio.Queue()

        def on_fragment(self, data: Union[str, bytes], text: bool, fin: bool) -> None:
            self.fragments.append((data, text, fin))
            if fin:
                self.done.put_nowait(self.fragments)
                self.fragments = []

    async def agen(items: list[Any]) -> AsyncIterator[Any]:
        for item in items:
            await asyncio.sleep(0)
            yield item

    async def main() -> None:
        listeners: list[Fragments] = []

        def factory(ws: WebSocketTransport, request: Request) -> Fragments:
            listeners.append(Fragments())
            return listeners[-1]

        async with await create_server(factory, "127.0.0.1", 0, stream_messages=True) as server:
            async with connect(uri(server)) as ws:
                await ws.send(["ab", "cd", "é"])
                assert await listeners[0].done.get() == [("ab", True, False), ("cd", True, False), ("é", True, True)]
                await ws.send((b"\x01", b"\x02"))
                assert await listeners[0].done.get() == [(b"\x01", False, False), (b"\x02", False, True)]
                await ws.send(iter(["single"]))
                assert await listeners[0].done.get() == [("single", True, True)]
                await ws.send(agen([b"x" * 1000, b"y" * 1000, b""]))
                assert await listeners[0].done.get() == [
                    (b"x" * 1000, False, False),
                    (b"y" * 1000, False, False),
                    (b"", False, True),
                ]
                await ws.send(agen(["a", "b"]))
                assert await listeners[0].done.get() == [("a", True, False), ("b", True, True)]

    run(main())


def test_fragmented_send_echo_and_errors() -> None:
    async def agen() -> AsyncIterator[str]:
        for part in ("as", "ync"):
            yield part

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                await ws.send(["frag", "mented ", "text" * 100])
                assert await ws.recv() == "fragmented " + "text" * 100
                await ws.send([b"\x00" * 70000, b"\x01"])
                assert await ws.recv() == b"\x00" * 70000 + b"\x01"
                await ws.send(agen())
                assert await ws.recv() == "async"
                with pytest.raises(TypeError):
                    await ws.send({"not": "encoded"})  # type: ignore[arg-type]
                with pytest.raises(TypeError):
                    await ws.send(42)  # type: ignore[arg-type]
                await ws.send("still open")
                assert await ws.recv() == "still open"
                with pytest.raises(TypeError):
                    await ws.send(["text", b"bytes"])  # type: ignore[list-item]

    run(main())


def test_ping_returns_rtt_and_pong() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                rtt = await ws.ping()
                assert isinstance(rtt, float) and rtt >= 0
                assert isinstance(await ws.ping(b"payload"), float)
                assert ws.latency > 0
                await ws.pong(b"unsolicited")  # ignored by the server
                await ws.send("after")
                assert await ws.recv() == "after"

    run(main())


def test_keepalive_latency() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
            async with connect(uri(server), ping_interval=0.02, ping_timeout=1) as ws:
                assert ws.latency == 0.0
                await eventually(lambda: ws.latency > 0)
                assert ws.state is State.OPEN

    run(main())


def test_close_codes_both_ways() -> None:
    results: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        path = ws.request.path
        if path == "/return":
            return
        if path == "/raise":
            raise RuntimeError("handler failed")
        if path == "/close":
            await ws.close(4002, "server says bye")
            results["server_close"] = (ws.close_code, ws.close_reason)
            return
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            results["recv"] = exc
            results["codes"] = (ws.close_code, ws.close_reason)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            ws = await connect(uri(server, "/return"))
            with pytest.raises(ConnectionClosedOK) as ok:
                await ws.recv()
            assert (ok.value.code, ws.close_code, ws.close_reason) == (1000, 1000, "")
            await ws.wait_closed()

            ws = await connect(uri(server, "/raise"))
            with pytest.raises(ConnectionClosedError) as error:
                await ws.recv()
            assert (error.value.code, error.value.reason) == (1011, "internal error")
            assert (ws.close_code, ws.close_reason) == (1011, "internal error")

            ws = await connect(uri(server, "/close"))
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
            assert (ws.close_code, ws.close_reason) == (4002, "server says bye")

            ws = await connect(uri(server, "/client-closes"))
            assert ws.close_code is None and ws.close_reason is None  # not closed yet
            await ws.close(4000, "client says bye")
            assert ws.close_code == 4000 and ws.close_reason == ""  # the server echoes the code
            await ws.close()  # idempotent
            with pytest.raises(ConnectionClosed):
                await ws.send("too late")
            await eventually(lambda: "recv" in results)
            assert isinstance(results["recv"], ConnectionClosedError)
            assert results["recv"].code == 4000 and results["recv"].reason == "client says bye"
            assert results["codes"] == (4000, "client says bye")
            assert results["server_close"] == (4002, "")

    run(main())


def test_messages_before_close_are_delivered() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send("one")
        await ws.send("two")
        await ws.close(1001, "going away")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                await ws.wait_closed()
                assert await ws.recv() == "one"
                assert await ws.recv() == "two"
                with pytest.raises(ConnectionClosedOK) as info:
                    await ws.recv()
                assert info.value.code == 1001 and info.value.reason == "going away"

    run(main())


def test_concurrent_recv_is_an_error() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                first = asyncio.ensure_future(ws.recv())
                await asyncio.sleep(0)
                with pytest.raises(RuntimeError):
                    await ws.recv()
                await ws.send("x")
                assert await first == "x"

    run(main())


def test_cancelled_recv_and_abrupt_disconnection() -> None:
    outcome: list[BaseException] = []

    async def handler(ws: WebSocket) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed as exc:
            outcome.append(exc)
            raise

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            ws = await connect(uri(server))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.01)  # a cancelled recv leaves no waiter behind
            await ws.send("after a timeout")
            assert await ws.recv() == "after a timeout"
            ws.transport.abort()  # no closing handshake
            await ws.wait_closed()
            assert ws.close_code == 1006
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1006 and info.value.sent is None
            await eventually(lambda: outcome)
            assert isinstance(outcome[0], ConnectionClosedError) and outcome[0].code == 1006

    run(main())


def test_not_open_yet() -> None:
    ws = WebSocket(1024)
    with pytest.raises(InvalidState):
        _ = ws.transport
    assert "WebSocket" in repr(ws)


@pytest.mark.parametrize("side", ["server", "client"])
def test_max_message_size_closes_1009(side: str) -> None:
    outcome: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        if side == "client":
            await ws.recv()
            await ws.send(b"x" * 2000)
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            outcome["server"] = exc

    async def main() -> None:
        server_limit = 1000 if side == "server" else None
        client_limit = 1000 if side == "client" else None
        async with serve(handler, "127.0.0.1", 0, max_message_size=server_limit) as server:
            async with connect(uri(server), max_message_size=client_limit) as ws:
                if side == "server":
                    await ws.send(os.urandom(999))
                    await ws.send(os.urandom(2000))
                    with pytest.raises(ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.code == 1009  # the server failed the connection
                    await eventually(lambda: "server" in outcome)
                    assert outcome["server"].sent[0] == 1009
                else:
                    await ws.send("go")
                    with pytest.raises(ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.sent is not None and info.value.sent[0] == 1009
                    await eventually(lambda: "server" in outcome)
                    assert outcome["server"].code == 1009

    run(main())


@pytest.mark.parametrize("side", ["server", "client"])
def test_uncompressed_message_just_over_the_limit_with_deflate(side: str) -> None:
    # permessage-deflate negotiated: a compressed frame may be a little over
    # max_message_size on the wire, but a message sent uncompressed may not.
    outcome: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        if side == "client":
            await ws.recv()
            ws.transport.send_binary(b"x" * 1001, compress=False)
        try:
            while True:
                outcome.setdefault("received", []).append(len(await ws.recv()))
        except ConnectionClosed as exc:
            outcome["server"] = exc

    async def main() -> None:
        limit = {"max_message_size": 1000}
        async with serve(handler, "127.0.0.1", 0, **(limit if side == "server" else {})) as server:
            async with connect(uri(server), **(limit if side == "client" else {})) as ws:
                assert ws.transport.conn.deflate is not None
                if side == "server":
                    ws.transport.send_binary(b"x" * 1001, compress=False)
                else:
                    await ws.send("go")
                    with pytest.raises(ConnectionClosedError):
                        await ws.recv()
                await eventually(lambda: "server" in outcome)
                closed = outcome["server"]
                assert (closed.sent[0] if side == "server" else closed.code) == 1009
                assert 1001 not in outcome.get("received", [])

    run(main())


def test_read_backpressure() -> None:
    """A handler that does not recv: the server stops reading above max_queue,
    then the client's send waits once its write buffer is full; nothing grows
    without bound, and everything arrives once the handler reads."""
    max_queue = 65536
    write_limit = 16384
    chunk_size = 16384
    state: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        state["ws"] = ws
        await state["release"].wait()
        received = [await ws.recv() for _ in range(state["count"])]
        state["reading"] = ws.transport.transport.is_reading()  # before the handler's return closes it
        state["received"] = received

    async def main() -> None:
        state["release"] = asyncio.Event()
        async with serve(handler, "127.0.0.1", 0, max_queue=max_queue, deflate=None) as server:
            sock = await small_buffer_socket(server.port)
            async with connect(uri(server), sock=sock, write_limit=write_limit, deflate=None) as ws:
                await eventually(lambda: "ws" in state)
                server_ws: WebSocket = state["ws"]
                sent: list[bytes] = []
                blocked = None
                for i in range(2000):  # bounded: at most ~32 MiB
                    message = i.to_bytes(4, "big") + os.urandom(chunk_size - 4)
                    task = asyncio.ensure_future(ws.send(message))
                    sent.append(message)
                    done, _ = await asyncio.wait({task}, timeout=0.2)
                    if not done:
                        blocked = task
                        break
                    # Bounded memory on both sides at every step.
                    assert server_ws._queued <= max_queue + chunk_size
                    assert ws.transport.write_buffer_size() <= write_limit + chunk_size + 14
                assert blocked is not None, "send never waited"
                assert server_ws._paused
                assert not server_ws.transport.transport.is_reading()
                assert server_ws._queued <= max_queue + chunk_size
                assert ws.transport.write_buffer_size() > write_limit
                state["count"] = len(sent)
                state["release"].set()
                await asyncio.wait_for(blocked, 5)
                await eventually(lambda: "received" in state, timeout=5)
                assert state["received"] == sent
                assert state["reading"]

    run(main(), 30)


def test_write_backpressure() -> None:
    """send() waits while the transport's write buffer is above write_limit."""
    write_limit = 8192
    state: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        shrink_send_buffer(ws.transport.transport)
        sent = 0
        for _ in range(4000):  # bounded
            task = asyncio.ensure_future(ws.send(os.urandom(8192)))
            done, _ = await asyncio.wait({task}, timeout=0.2)
            sent += 1
            if not done:
                state["blocked"] = (sent, ws.transport.write_buffer_size(), ws.transport._writing_paused)
                await task
                break
        state["sent"] = sent
        await ws.send("end")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, write_limit=write_limit, deflate=None) as server:
            sock = await small_buffer_socket(server.port)
            async with connect(uri(server), sock=sock, deflate=None) as ws:
                ws.transport.transport.pause_reading()
                await eventually(lambda: "blocked" in state, timeout=10)
                sent, buffered, paused = state["blocked"]
                assert paused
                assert write_limit < buffered <= write_limit + 8192 + 14
                ws.transport.transport.resume_reading()
                count = 0
                while (await ws.recv()) != "end":
                    count += 1
                assert count == state["sent"] >= sent

    run(main(), 30)


def test_broadcast_skips_a_stalled_client() -> None:
    """50 clients, one of which stops reading: everybody else receives every
    message; the stalled one is skipped once its buffer is above write_limit."""
    n = 50
    write_limit = 16384

    async def main() -> None:
        by_name: dict[str, WebSocket] = {}

        async def handler(ws: WebSocket) -> None:
            name = await ws.recv()
            by_name[str(name)] = ws
            await ws.wait_closed()

        async with serve(handler, "127.0.0.1", 0, write_limit=write_limit) as server:
            clients = []
            for i in range(n):
                client = await connect(uri(server))
                await client.send(f"client-{i}")
                clients.append(client)
            sock = await small_buffer_socket(server.port)
            stalled = await connect(uri(server), sock=sock)
            stalled.transport.transport.pause_reading()
            await stalled.send("stalled")
            await eventually(lambda: len(by_name) == n + 1, timeout=10)
            shrink_send_buffer(by_name["stalled"].transport.transport)
            connections = list(by_name.values())
            payload = "m" * 8000
            for i in range(500):  # bounded
                message = f"{i:04d}{payload}"
                skipped = broadcast(connections, message)
                assert skipped in ([], [by_name["stalled"]])
                for client in clients:
                    assert await asyncio.wait_for(client.recv(), 10) == message
                if skipped:
                    break
            else:
                pytest.fail("the stalled client was never skipped")
            stalled_transport = by_name["stalled"].transport
            assert stalled_transport.write_buffer_size() > write_limit
            assert stalled_transport.write_buffer_size() <= write_limit + len(message) + 10
            # It stays skipped, and is still open: it just reads slowly.
            assert broadcast(connections, "again") == [by_name["stalled"]]
            assert stalled.state is State.OPEN
            stalled.transport.transport.resume_reading()
            for j in range(i):
                assert (await asyncio.wait_for(stalled.recv(), 10))[:4] == f"{j:04d}"
            for client in clients:
                assert await client.recv() == "again"
                await client.close()
            await stalled.close()

    run(main(), 60)  # generous: a loaded 2-core machine slows 50 clients down


def test_broadcast_rules() -> None:
    """Closed connections and those inside a fragmented message are skipped;
    client connections (masked frames) and transports work too."""

    async def main() -> None:
        received: asyncio.Queue[Any] = asyncio.Queue()

        async def handler(ws: WebSocket) -> None:
            async for message in ws:
                received.put_nowait(message)

        async with serve(handler, "127.0.0.1", 0) as server:
            a = await connect(uri(server))
            b = await connect(uri(server))
            c = await connect(uri(server))
            assert broadcast([a, b.transport], b"binary") == []  # clients broadcasting to the server
            assert [await received.get(), await received.get()] == [b"binary", b"binary"]
            c.transport.send_fragment("unfinished", False, text=True)
            await a.close()
            assert broadcast([a, b, c], "text") == [a, c]
            assert await received.get() == "text"
            server_side = [ws for ws in server.connections if ws.state is State.OPEN]
            assert len(server_side) == 2
            assert broadcast(server_side, "to clients") == []
            assert await b.recv() == "to clients"
            c.transport.send_fragment("end", True)
            assert await c.recv() == "to clients"
            assert await received.get() == "unfinishedend"
            d = await connect(uri(server))
            d.transport.transport.abort()  # still OPEN until connection_lost runs: skipped, no exception
            assert d.transport.state is State.OPEN
            assert broadcast([d, b], "after abort") == [d]
            assert await received.get() == "after abort"

    run(main())
