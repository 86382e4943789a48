"""The callback level: create_server / create_connection, a Listener per
connection and its WebSocketTransport."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from typing import Any, Optional, Union

import pytest

from wsfast.asyncio import Listener, WebSocketTransport, create_connection, create_server, serve
from wsfast.exceptions import ConnectionClosed, InvalidHandshake
from wsfast.handshake import error_response
from wsfast.http11 import Request
from wsfast.protocol import State

from .helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClient,
    echo,
    eventually,
    frame,
    parse_close,
    run,
)

MiB = 1024 * 1024


class Recorder(Listener):
    """Records every callback, in order."""

    def __init__(self, echo: bool = False) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.ws: Optional[WebSocketTransport] = None
        self.echo = echo
        self.messages: asyncio.Queue[Union[str, bytes]] = asyncio.Queue()
        self.closed = asyncio.Event()

    def on_open(self, ws: WebSocketTransport) -> None:
        self.ws = ws
        self.events.append(("open",))

    def on_text(self, data: Union[str, bytes]) -> None:
        self.events.append(("text", data))
        self.messages.put_nowait(data)
        if self.echo:
            assert self.ws is not None
            self.ws.send_text(data)

    def on_binary(self, data: bytes) -> None:
        self.events.append(("binary", data))
        self.messages.put_nowait(data)
        if self.echo:
            assert self.ws is not None
            self.ws.send_binary(data)

    def on_fragment(self, data: Union[str, bytes], text: bool, fin: bool) -> None:
        self.events.append(("fragment", data, text, fin))

    def on_ping(self, data: bytes) -> None:
        self.events.append(("ping", data))

    def on_pong(self, data: bytes) -> None:
        self.events.append(("pong", data))

    def on_close(self, code: int, reason: str) -> None:
        self.events.append(("close", code, reason))
        self.closed.set()

    def pause_writing(self) -> None:
        self.events.append(("pause_writing",))

    def resume_writing(self) -> None:
        self.events.append(("resume_writing",))


async def start(factory: Any = None, **kwargs: Any) -> tuple[Any, list[Recorder]]:
    """A callback-level server; returns it and the list of its listeners."""
    listeners: list[Recorder] = []

    def default_factory(ws: WebSocketTransport, request: Request) -> Recorder:
        listener = Recorder(echo=True)
        listeners.append(listener)
        return listener

    server = await create_server(factory or default_factory, "127.0.0.1", 0, **kwargs)
    return server, listeners


def uri(server: Any, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def test_listener_callbacks_in_order() -> None:
    async def main() -> None:
        server_side: list[Recorder] = []

        def factory(ws: WebSocketTransport, request: Request) -> Recorder:
            server_side.append(Recorder())
            return server_side[-1]

        async with (await start(factory))[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server))
            assert client.events == [("open",)] and client.ws is ws
            assert ws.state is State.OPEN
            ws.send_text("hello")
            ws.send_binary(b"\x00\x01")
            rtt = await asyncio.wait_for(ws.ping(b"p1"), 2)
            assert isinstance(rtt, float) and rtt >= 0
            ws.pong(b"unsolicited")
            ws.close(1000, "bye")
            await asyncio.wait_for(ws.wait_closed(), 2)
            await asyncio.wait_for(server_side[0].closed.wait(), 2)
        assert server_side[0].events == [
            ("open",),
            ("text", "hello"),
            ("binary", b"\x00\x01"),
            ("ping", b"p1"),
            ("pong", b"unsolicited"),
            ("close", 1000, "bye"),
        ]
        assert client.events == [("open",), ("pong", b"p1"), ("close", 1000, "")]
        assert ws.close_code == 1000 and ws.state is State.CLOSED

    run(main())


@pytest.mark.parametrize("deflate", ["default", None])
def test_echo_from_on_text(deflate: Optional[str]) -> None:
    kwargs: dict[str, Any] = {} if deflate == "default" else {"deflate": None}
    messages: list[Union[str, bytes]] = [
        "hello",
        "",
        "héllo wörld ☃",
        b"",
        b"\x00\xff" * 100,
        bytes(range(256)) * 4096,  # 1 MiB
        "x" * MiB,
    ]
    if deflate is None:
        # Incompressible: with deflate its frame is larger than 1 MiB (see
        # test_connection.py::test_incompressible_message_of_max_size_with_deflate).
        messages.append(os.urandom(MiB))

    async def main() -> None:
        async with (await start(**kwargs))[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server), **kwargs)
            negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (negotiated is not None) == (deflate == "default")
            for message in messages:
                ws.send(message)
            for message in messages:
                received = await asyncio.wait_for(client.messages.get(), 5)
                assert type(received) is type(message) and received == message
            ws.close()
            await asyncio.wait_for(ws.wait_closed(), 2)

    run(main())


def test_send_types_and_fragments() -> None:
    async def main() -> None:
        async with (await start())[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server))
            ws.send_fragment("ab", False, text=True)
            ws.send_fragment("cd", False)
            ws.send_fragment("é", True)
            ws.send_fragment(b"\x01", False, text=False)
            ws.send_fragment(b"\x02", True)
            ws.send_text(b"utf-8 bytes")  # bytes already encoded: text frame
            ws.send(bytearray(b"ba"))
            ws.send(memoryview(b"mv"))
            with pytest.raises(TypeError):
                ws.send_fragment("str", True, text=False)
            expected = ["abcdé", b"\x01\x02", "utf-8 bytes", b"ba", b"mv"]
            for message in expected:
                assert await asyncio.wait_for(client.messages.get(), 2) == message
            ws.close()
            await ws.wait_closed()

    run(main())


def test_stream_messages_and_text_as_bytes() -> None:
    async def main() -> None:
        class Sender(Listener):
            def on_open(self, ws: WebSocketTransport) -> None:
                self.ws = ws

            def on_text(self, data: Union[str, bytes]) -> None:  # "go"
                ws = self.ws
                ws.send_fragment("ab", False, text=True)
                ws.send_fragment("c€", True)
                ws.send_fragment(b"\x01", False, text=False)
                ws.send_fragment(b"\x02", True)
                ws.send_text("whole")
                ws.close(1000)

        async with (await start(lambda ws, request: Sender()))[0] as server:
            streaming = Recorder()
            ws = await create_connection(streaming, uri(server), stream_messages=True)
            ws.send_text("go")
            await asyncio.wait_for(streaming.closed.wait(), 2)
            assert streaming.events == [
                ("open",),
                ("fragment", "ab", True, False),
                ("fragment", "c€", True, True),
                ("fragment", b"\x01", False, False),
                ("fragment", b"\x02", False, True),
                ("fragment", "whole", True, True),
                ("close", 1000, ""),
            ]
            as_bytes = Recorder()
            ws = await create_connection(as_bytes, uri(server), text_as_bytes=True)
            ws.send_text("go")
            await asyncio.wait_for(as_bytes.closed.wait(), 2)
            assert as_bytes.events[1:] == [
                ("text", "abc€".encode()),
                ("binary", b"\x01\x02"),
                ("text", b"whole"),
                ("close", 1000, ""),
            ]
            assert ws.close_code == 1000

    run(main())


def test_one_read_of_messages_and_control_frames_keeps_order() -> None:
    """One read: whole messages (delivered straight from the reader), then a
    ping, more messages and a fragmented one (through the general path).
    Everything is delivered and answered in order; the pong goes out before
    the echoes of what followed the ping."""

    async def main() -> None:
        server, listeners = await start(close_timeout=0.5)
        async with server:
            peer = await RawClient.connect(server.port)
            try:
                await exchange(peer, listeners)
            finally:
                peer.close()

    async def exchange(peer: RawClient, listeners: list[Recorder]) -> None:
        peer.writer.write(
            frame(OP_BINARY, b"a")
            + frame(OP_TEXT, "é".encode())
            + frame(OP_PING, b"p")
            + frame(OP_BINARY, b"b")
            + frame(OP_TEXT, b"x", fin=False)
            + frame(OP_CONT, b"y")
            + frame(OP_BINARY, b"c")
        )
        got = [await peer.recv() for _ in range(6)]
        assert got == [
            (OP_BINARY, True, b"a"),
            (OP_TEXT, True, "é".encode()),
            (OP_PONG, True, b"p"),
            (OP_BINARY, True, b"b"),
            (OP_TEXT, True, b"xy"),
            (OP_BINARY, True, b"c"),
        ]
        assert listeners[0].events[1:] == [
            ("binary", b"a"),
            ("text", "é"),
            ("ping", b"p"),
            ("binary", b"b"),
            ("text", "xy"),
            ("binary", b"c"),
        ]

    run(main())


def test_one_read_with_invalid_utf8_after_messages_closes_1007() -> None:
    async def main() -> None:
        server, listeners = await start()
        async with server:
            peer = await RawClient.connect(server.port)
            peer.writer.write(
                frame(OP_BINARY, b"a") + frame(OP_TEXT, b"ok") + frame(OP_TEXT, b"\xc3(") + frame(OP_BINARY, b"z")
            )
            assert await peer.recv() == (OP_BINARY, True, b"a")
            assert await peer.recv() == (OP_TEXT, True, b"ok")
            opcode, _, payload = await peer.recv()
            assert opcode == OP_CLOSE and parse_close(payload)[0] == 1007
            assert await peer.at_eof()
            assert [e for e in listeners[0].events if e[0] in ("binary", "text")] == [("binary", b"a"), ("text", "ok")]

    run(main())


def test_broadcast_from_a_listener_keeps_each_connections_order() -> None:
    """A listener that answers, then broadcasts, inside its read: the sender
    gets its answer before the broadcast (the broadcast joins the read's
    batch); the others get the broadcast."""

    async def main() -> None:
        from wsfast.asyncio import broadcast

        class Fanout(Recorder):
            def on_text(self, data: Union[str, bytes]) -> None:
                assert self.ws is not None
                self.ws.send_text(f"ack {data!s}")
                broadcast(server.connections, f"all {data!s}")

        server = await create_server(lambda ws, request: Fanout(), "127.0.0.1", 0)
        async with server:
            peers = [await RawClient.connect(server.port) for _ in range(3)]
            try:
                await eventually(lambda: len(server.connections) == 3)
                peers[0].send(OP_TEXT, b"x")
                assert await peers[0].recv() == (OP_TEXT, True, b"ack x")
                assert await peers[0].recv() == (OP_TEXT, True, b"all x")
                for peer in peers[1:]:
                    assert await peer.recv() == (OP_TEXT, True, b"all x")
            finally:
                for peer in peers:
                    peer.close()

    run(main())


def test_listener_exception_closes_1011(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(Recorder):
        def on_text(self, data: Union[str, bytes]) -> None:
            raise ZeroDivisionError("boom")

    async def main() -> None:
        async with (await start(lambda ws, request: Failing()))[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server))
            ws.send_text("trigger")
            await asyncio.wait_for(client.closed.wait(), 2)
            assert client.events[-1] == ("close", 1011, "internal error")
            assert ws.close_code == 1011 and ws.close_reason == "internal error"

    with caplog.at_level(logging.INFO, logger="wsfast"):
        run(main())
    errors = [r for r in caplog.records if r.name == "wsfast" and r.levelno >= logging.ERROR]
    assert errors, "the listener's exception is logged"
    assert errors[0].exc_info and errors[0].exc_info[0] is ZeroDivisionError
    assert "connection #" in errors[0].getMessage()


@pytest.mark.parametrize("callback", ["on_open", "on_binary", "on_ping", "on_pong"])
def test_exception_in_other_callbacks_closes_1011(callback: str) -> None:
    class Failing(Recorder):
        pass

    def fail(self: Any, *args: Any) -> None:
        if callback == "on_open":
            Recorder.on_open(self, *args)
        raise RuntimeError(callback)

    setattr(Failing, callback, fail)

    async def main() -> None:
        async with (await start(lambda ws, request: Failing()))[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server))
            if callback == "on_binary":
                ws.send_binary(b"x")
            elif callback == "on_ping":
                ws.ping(b"x")
            elif callback == "on_pong":
                ws.pong(b"x")
            await asyncio.wait_for(client.closed.wait(), 2)
            assert client.events[-1] == ("close", 1011, "internal error")

    run(main())


def test_exception_in_on_close_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(Recorder):
        def on_close(self, code: int, reason: str) -> None:
            super().on_close(code, reason)
            raise RuntimeError("in on_close")

    async def main() -> None:
        async with (await start(lambda ws, request: Failing()))[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server))
            ws.close()
            await asyncio.wait_for(ws.wait_closed(), 2)
            await eventually(lambda: not server.connections)

    with caplog.at_level(logging.ERROR, logger="wsfast"):
        run(main())
    assert any("on_close" in r.getMessage() for r in caplog.records if r.name == "wsfast")


def test_create_connection_on_close_codes() -> None:
    async def main() -> None:
        def factory(ws: WebSocketTransport, request: Request) -> Listener:
            class Closer(Listener):
                def on_open(self, ws: WebSocketTransport) -> None:
                    if request.path == "/custom":
                        ws.close(4001, "custom")
                    elif request.path == "/none":
                        ws.close(None)  # type: ignore[arg-type]
                    else:
                        ws.abort()

            return Closer()

        async with (await start(factory))[0] as server:
            for path, expected in [("/custom", (4001, "custom")), ("/none", (1005, "")), ("/abort", (1006, ""))]:
                client = Recorder()
                ws = await create_connection(client, uri(server, path))
                await asyncio.wait_for(client.closed.wait(), 2)
                assert client.events == [("open",), ("close", *expected)]
                assert (ws.close_code, ws.close_reason) == expected
                with pytest.raises(ConnectionClosed):
                    ws.send_text("too late")

    run(main())


def test_factory_answers() -> None:
    """The factory returns a Listener, a Response, None (404), or an awaitable."""

    async def main() -> None:
        async def later(ws: WebSocketTransport, request: Request) -> Any:
            await asyncio.sleep(0.01)
            if request.path == "/async-fail":
                raise ValueError("factory failed")
            return Recorder(echo=True)

        def factory(ws: WebSocketTransport, request: Request) -> Any:
            if request.path == "/ok":
                return Recorder(echo=True)
            if request.path == "/teapot":
                return error_response(418, "I'm a teapot")
            if request.path.startswith("/async"):
                return later(ws, request)
            return None

        async with (await start(factory))[0] as server:
            for path in ("/ok", "/async"):
                client = Recorder()
                ws = await create_connection(client, uri(server, path))
                ws.send_text(path)
                assert await asyncio.wait_for(client.messages.get(), 2) == path
                ws.close()
                await ws.wait_closed()
            for path, status in [("/teapot", 418), ("/nowhere", 404), ("/async-fail", 500)]:
                with pytest.raises(InvalidHandshake) as info:
                    await create_connection(Recorder(), uri(server, path))
                assert info.value.response.status == status
            await eventually(lambda: not server.connections)

    run(main())


def test_transport_properties() -> None:
    async def main() -> None:
        async with (await start(subprotocols=["chat"]))[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server, "/p?q=1"), subprotocols=["chat"])
            assert ws.subprotocol == "chat"
            assert ws.request.target == "/p?q=1" and ws.request.path == "/p"
            assert ws.response.status == 101
            assert ws.remote_address[:2] == ("127.0.0.1", server.port)
            assert ws.close_code == 1006 and ws.close_reason == ""  # nothing received yet
            assert "client" in repr(ws) and "OPEN" in repr(ws)
            assert ws.transport is not None and ws.write_buffer_size() == 0
            (server_ws,) = server.connections
            assert server_ws.request.path == "/p" and server_ws.subprotocol == "chat"
            assert server_ws.remote_address == ws.transport.get_extra_info("sockname")
            ws.close()
            await ws.wait_closed()
            assert ws.transport is None and ws.write_buffer_size() == 0

    run(main())


def test_ping_futures() -> None:
    async def main() -> None:
        async with (await start())[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server))
            first, second = ws.ping(), ws.ping()  # automatic payloads differ
            assert isinstance(await asyncio.wait_for(first, 2), float)
            assert isinstance(await asyncio.wait_for(second, 2), float)
            assert ws.latency > 0
            pending = ws.ping(b"same")
            with pytest.raises(ValueError):
                ws.ping(b"same")
            await asyncio.wait_for(pending, 2)
            # A ping still waiting when the connection is lost fails.
            ws.transport.pause_reading()
            lost = ws.ping(b"lost")
            ws.abort()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(lost, 2)

    run(main())


def test_pause_and_resume_writing() -> None:
    """Above write_limit the listener gets pause_writing, and drain() waits."""

    async def main() -> None:
        async with (await start())[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server), write_limit=4096, deflate=None)
            (server_ws,) = server.connections
            server_ws.transport.pause_reading()  # the server stops reading
            chunk = os.urandom(65536)
            for _ in range(2000):
                if ("pause_writing",) in client.events:
                    break
                ws.send_binary(chunk)
            else:
                pytest.fail("the write buffer never went above write_limit")
            assert ws.write_buffer_size() > 4096
            drain = asyncio.ensure_future(ws.drain())
            await asyncio.sleep(0.05)
            assert not drain.done(), "drain() waits while writing is paused"
            server_ws.transport.resume_reading()
            await asyncio.wait_for(drain, 5)
            assert ("resume_writing",) in client.events
            assert client.events.index(("pause_writing",)) < client.events.index(("resume_writing",))
            ws.close()
            await asyncio.wait_for(ws.wait_closed(), 5)

    run(main(), 20)


def test_keepalive_closes_peer_that_stops_reading() -> None:
    """A peer whose transport does not read does not answer pings: 1011."""

    async def main() -> None:
        server, listeners = await start(ping_interval=0.05, ping_timeout=0.2, close_timeout=0.2)
        async with server:
            client = Recorder()
            ws = await create_connection(client, uri(server), ping_interval=None)
            ws.transport.pause_reading()
            (server_ws,) = server.connections
            await asyncio.wait_for(server_ws.wait_closed(), 3)
            assert server_ws.conn.close_sent == (1011, "keepalive ping timeout")
            assert listeners[0].events[-1] == ("close", 1006, "")  # the client never answered
            ws.transport.resume_reading()
            await asyncio.wait_for(client.closed.wait(), 3)
            assert ("close", 1011, "keepalive ping timeout") in client.events

    run(main())


def test_keepalive_sets_latency() -> None:
    async def main() -> None:
        async with (await start(ping_interval=None))[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server), ping_interval=0.02, ping_timeout=1)
            assert ws.latency == 0.0
            await eventually(lambda: ws.latency > 0)
            assert ("pong", b"") not in client.events
            assert any(e[0] == "pong" and e[1].startswith(b"keepalive") for e in client.events)
            # The connection stays open across several keepalive rounds.
            count = sum(e[0] == "pong" for e in client.events)
            await eventually(lambda: sum(e[0] == "pong" for e in client.events) >= count + 2)
            assert ws.state is State.OPEN
            ws.close()
            await ws.wait_closed()

    run(main())


def test_keepalive_pong_to_a_later_ping_answers_it() -> None:
    """RFC 6455 5.5.3: a peer may answer only the latest of several pings; the
    pong then answers the earlier keepalive ping too (the transport's own rule
    in _got_pong), so the connection must not be closed for a ping timeout."""

    async def main() -> None:
        async with (await start(ping_interval=0.1, ping_timeout=0.4, close_timeout=0.5))[0] as server:
            peer = await RawClient.connect(server.port)
            try:
                await exchange(server, peer)
            finally:
                peer.close()

    async def exchange(server: Any, peer: RawClient) -> None:
        opcode, _, keepalive = await peer.recv()
        assert opcode == OP_PING and keepalive.startswith(b"keepalive")
        (server_ws,) = server.connections
        user_ping = server_ws.ping(b"user")
        assert await peer.recv() == (OP_PING, True, b"user")
        peer.send(OP_PONG, b"user")  # answers both pings
        assert isinstance(await asyncio.wait_for(user_ping, 2), float)
        # Next: another keepalive ping, not a close for a ping timeout.
        opcode, _, payload = await peer.recv()
        assert opcode != OP_CLOSE, f"closed with {parse_close(payload)} although the pong answered the ping"
        assert opcode == OP_PING and payload.startswith(b"keepalive")

    run(main())


def test_send_frame_bytes_checks_state() -> None:
    async def main() -> None:
        async with (await start())[0] as server:
            client = Recorder()
            ws = await create_connection(client, uri(server))
            ws.send_frame_bytes(b"\x81\x80" + b"\x00" * 4)  # an empty masked text frame
            assert await asyncio.wait_for(client.messages.get(), 2) == ""
            ws.close()
            with pytest.raises(ConnectionClosed):
                ws.send_frame_bytes(b"\x81\x80" + b"\x00" * 4)
            await ws.wait_closed()

    run(main())


# ---------------------------------------------------------------- keepalive wheel


def test_keepalive_deadlines_of_many_connections_share_one_timer() -> None:
    from wsfast.asyncio import transport as transport_module

    wheels = transport_module._wheels

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # The same interval and timeout: one resolution, so one wheel throughout.
        async with serve(echo, "127.0.0.1", 0, ping_interval=0.3, ping_timeout=0.3) as server:
            peers = [await RawClient.connect(server.port) for _ in range(30)]
            await eventually(lambda: len(server.connections) == 30)
            mine = [w for w in wheels.values() if w.loop is loop]
            assert len(mine) == 1  # one wheel, one timer handle, for thirty connections
            wheel = mine[0]
            assert wheel.resolution <= 0.3 / 8
            assert sum(len(b) for b in wheel._buckets.values()) == 30
            assert all(ws._wheel is wheel for ws in server.connections)
            # Every connection gets its keepalive ping; answered, it stays open
            # and its deadline moves on (the pong re-arms it).
            for peer in peers:
                opcode, _, payload = await peer.recv_until(OP_PING)
                peer.send(OP_PONG, payload)
            for peer in peers:
                opcode, _, payload = await peer.recv_until(OP_PING)  # the next round
                peer.send(OP_PONG, payload)
            assert len(server.connections) == 30
            assert all(ws.state is State.OPEN for ws in server.connections)
            for peer in peers:
                peer.close()
            await eventually(lambda: not server.connections)
            # Closed connections leave the wheel at once, and the empty wheel goes.
            assert not [w for w in wheels.values() if w.loop is loop]

    run(main())


def test_keepalive_wheel_fires_in_deadline_order_and_forgets_discarded() -> None:
    from wsfast.asyncio.transport import _KeepaliveWheel

    class Fake:
        def __init__(self, loop: asyncio.AbstractEventLoop, name: str, log: list[str]) -> None:
            self._loop, self.name, self.log = loop, name, log
            self._wheel: Any = None
            self._due = 0

        def _wheel_fired(self) -> None:
            self.log.append(self.name)
            if self.name == "boom":
                raise RuntimeError("one connection's bug")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: errors.append(context))
        log: list[str] = []
        late, early, gone, boom = (Fake(loop, name, log) for name in ("late", "early", "gone", "boom"))
        _KeepaliveWheel.add(late, 0.2)  # type: ignore[arg-type]
        _KeepaliveWheel.add(early, 0.05)  # type: ignore[arg-type]  # a finer wheel of its own
        _KeepaliveWheel.add(gone, 0.1)  # type: ignore[arg-type]
        _KeepaliveWheel.add(boom, 0.1)  # type: ignore[arg-type]
        gone._wheel.discard(gone)
        assert gone._wheel is None
        await eventually(lambda: len(log) == 3, timeout=3)
        assert log == ["early", "boom", "late"]
        assert [type(e["exception"]) for e in errors] == [RuntimeError]
        assert all(f._wheel is None for f in (late, early, gone, boom))
        from wsfast.asyncio.transport import _wheels

        assert not [w for w in _wheels.values() if w.loop is loop]

    run(main())


def test_an_idle_server_connection_holds_no_futures_until_someone_waits() -> None:
    # 144 bytes each: made only for a waiter; the outcome is kept without one.
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            peer = await RawClient.connect(server.port)
            await eventually(lambda: len(server.connections) == 1)
            ws = next(iter(server.connections))
            await eventually(lambda: ws.state is State.OPEN)
            assert ws._opened is None and ws._closed is None
            await ws.wait_opened()  # done already: no future either
            assert ws._opened is None
            waiting = asyncio.ensure_future(ws.wait_closed())
            await asyncio.sleep(0)
            assert ws._closed is not None and not waiting.done()
            # A waiter that gives up cancels no other, and leaves no garbage.
            for _ in range(100):
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.wait_closed(), 0.001)
            assert len(ws._closed) <= 3 and not waiting.done()
            peer.close()
            await asyncio.wait_for(waiting, 5)
            await ws.wait_closed()  # once closed, returns at once
            assert ws._closed_future().done()

    run(main())


def test_keepalive_wheel_forgets_connections_lost_around_its_pass() -> None:
    # Half the peers reset their connections before the first ping: those
    # leave the wheel, the others get their pings and stay.
    from wsfast.asyncio import transport as transport_module

    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: errors.append(context))
        async with serve(echo, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=0.2) as server:
            peers = [await RawClient.connect(server.port) for _ in range(40)]
            await eventually(lambda: len(server.connections) == 40)
            for peer in peers[::2]:
                sock = peer.writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                peer.close()  # a reset
            for peer in peers[1::2]:
                opcode, _, payload = await peer.recv_until(OP_PING)
                peer.send(OP_PONG, payload)
            await eventually(lambda: len(server.connections) == 20)
            for peer in peers[1::2]:
                peer.close()
            await eventually(lambda: not server.connections)
            assert not [w for w in transport_module._wheels.values() if w.loop is loop]
        assert errors == []

    run(main())


def test_keepalive_wheel_pass_survives_changes_made_by_its_callbacks() -> None:
    # A connection's ping can end other connections of the same pass (a
    # write error, a close in a listener): they leave their buckets while
    # the wheel walks them; the wheel goes on and ends empty.
    from wsfast.asyncio.transport import _KeepaliveWheel, _wheels

    fired: list[str] = []

    class Fake:
        def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
            self._loop, self.name = loop, name
            self._wheel: Any = None
            self._due = 0
            self.victims: list[Fake] = []

        def _wheel_fired(self) -> None:
            fired.append(self.name)
            for victim in self.victims:  # closes others: out of the wheel
                if victim._wheel is not None:
                    victim._wheel.discard(victim)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first, second, third = (Fake(loop, name) for name in ("first", "second", "third"))
        _KeepaliveWheel.add(first, 0.1)  # type: ignore[arg-type]
        _KeepaliveWheel.add(second, 0.1)  # type: ignore[arg-type]
        _KeepaliveWheel.add(third, 0.12)  # type: ignore[arg-type]  # a later tick of the same wheel
        assert first._wheel is second._wheel is third._wheel
        first.victims = second.victims = [first, second, third]
        await asyncio.sleep(0.3)
        assert len(fired) == 1 and fired[0] in ("first", "second")  # the other was gone before its turn
        assert not [w for w in _wheels.values() if w.loop is loop]

    run(main())
