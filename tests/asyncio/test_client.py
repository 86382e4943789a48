"""Clients: connect() and create_connection(), the opening handshake as a
client, URIs, timeouts, keepalive, interop with the websockets and aiohttp
servers."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Optional, Union

import pytest

import wsfast
from wsfast.asyncio import Listener, WebSocket, WebSocketTransport, connect, create_connection, parse_uri, serve
from wsfast.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidURI,
    NegotiationError,
)

from .helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    accept_key,
    eventually,
    frame,
    parse_close,
    port_of,
    raw_accept,
    raw_server,
    read_frame,
    run,
)

MiB = 1024 * 1024

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def start_raw(handler: Handler) -> tuple[asyncio.AbstractServer, str]:
    """A hand-written server; returns it and its ws:// URI. The writer is
    closed when ``handler`` returns."""

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await raw_server(wrapped)
    return server, f"ws://127.0.0.1:{port_of(server)}/"


# ---------------------------------------------------------------- URIs


@pytest.mark.parametrize(
    "uri, secure, host, port, target, host_header",
    [
        ("ws://example.com", False, "example.com", 80, "/", "example.com"),
        ("ws://example.com:80/", False, "example.com", 80, "/", "example.com"),
        ("wss://example.com", True, "example.com", 443, "/", "example.com"),
        ("wss://example.com:8443/chat?room=1", True, "example.com", 8443, "/chat?room=1", "example.com:8443"),
        ("ws://127.0.0.1:8765/a/b", False, "127.0.0.1", 8765, "/a/b", "127.0.0.1:8765"),
        ("ws://[::1]:9000/", False, "::1", 9000, "/", "[::1]:9000"),
        ("wss://[::1]/", True, "::1", 443, "/", "[::1]"),
        ("WS://EXAMPLE.com/Path", False, "example.com", 80, "/Path", "example.com"),
        ("ws://example.com?x=1", False, "example.com", 80, "/?x=1", "example.com"),
    ],
)
def test_parse_uri(uri: str, secure: bool, host: str, port: int, target: str, host_header: str) -> None:
    parsed = parse_uri(uri)
    assert (parsed.secure, parsed.host, parsed.port, parsed.target) == (secure, host, port, target)
    assert parsed.host_header == host_header
    assert "WebSocketURI(" in repr(parsed)


@pytest.mark.parametrize(
    "uri",
    [
        "http://example.com/",
        "example.com",
        "ws://",
        "ws:///path",
        "ws://example.com/#fragment",
        "ws://user@example.com/",
        "ws://example.com:99999/",
        "ws://example.com:port/",
        "ws://[::1/",
    ],
)
def test_parse_uri_rejects(uri: str) -> None:
    with pytest.raises(InvalidURI) as info:
        parse_uri(uri)
    assert isinstance(info.value, ValueError) and uri in str(info.value)


# ---------------------------------------------------------------- the handshake


def test_request_headers() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await raw_accept(reader, writer))
        opcode, _, payload = await read_frame(reader)
        assert opcode == OP_CLOSE
        writer.write(frame(OP_CLOSE, payload, mask=False))

    async def main() -> None:
        server, uri = await start_raw(handler)
        port = port_of(server)
        async with server:
            async with connect(
                uri + "path?x=1",
                origin="https://o.example",
                subprotocols=["chat", "v2"],
                extra_headers=[("X-Token", "abc"), ("X-Token", "def")],
            ):
                pass
            async with connect(uri, user_agent=None, deflate=None):
                pass
        head = heads[0].decode()
        lines = head.split("\r\n")
        assert lines[0] == "GET /path?x=1 HTTP/1.1"
        assert f"Host: 127.0.0.1:{port}" in lines
        assert "Upgrade: websocket" in lines and "Connection: Upgrade" in lines
        assert "Sec-WebSocket-Version: 13" in lines
        assert "Origin: https://o.example" in lines
        assert "Sec-WebSocket-Protocol: chat, v2" in lines
        assert "X-Token: abc" in lines and "X-Token: def" in lines
        assert f"User-Agent: wsfast/{wsfast.__version__}" in lines
        assert any(line.startswith("Sec-WebSocket-Extensions: permessage-deflate") for line in lines)
        assert any(line.startswith("Sec-WebSocket-Key: ") for line in lines)
        second = heads[1].decode()
        assert "User-Agent" not in second and "Sec-WebSocket-Extensions" not in second
        assert "Origin" not in second and "Sec-WebSocket-Protocol" not in second

    run(main())


def test_messages_sent_with_the_handshake_response() -> None:
    """A server may send messages right after its 101 response, and they often
    arrive in the same read as the response (a handler that greets the
    client, as in the README's tutorial). ClientConnection parses them before
    the transport has set conn.sink, so they come back as TextMessage /
    BinaryMessage events, which WebSocketTransport._handle_events ignores:
    the messages are lost."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        greeting = frame(OP_TEXT, b"Hello, client!", mask=False) + frame(OP_BINARY, b"\x01", mask=False)
        await raw_accept(reader, writer, extra=greeting)  # one write: 101 + two frames
        opcode, _, payload = await read_frame(reader)
        writer.write(frame(OP_CLOSE, payload, mask=False))

    class Collect(Listener):
        def __init__(self) -> None:
            self.events: list[Any] = []

        def on_open(self, ws: WebSocketTransport) -> None:
            self.events.append("open")

        def on_text(self, data: Union[str, bytes]) -> None:
            self.events.append(data)

        def on_binary(self, data: bytes) -> None:
            self.events.append(data)

    async def main() -> None:
        server, uri = await start_raw(handler)
        async with server:
            async with connect(uri) as ws:
                assert await asyncio.wait_for(ws.recv(), 1) == "Hello, client!"
                assert await asyncio.wait_for(ws.recv(), 1) == b"\x01"
            listener = Collect()
            transport = await create_connection(listener, uri)
            await asyncio.sleep(0.05)
            assert listener.events == ["open", "Hello, client!", b"\x01"]
            transport.close()
            await transport.wait_closed()

    run(main())


async def answer_with(response: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()

    return handler


@pytest.mark.parametrize(
    "response, status, body",
    [
        (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 7\r\n\r\nno way!", 401, b"no way!"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>a page</html>", 200, b"<html>a page</html>"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
            101,
            b"",
        ),
        (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", 101, b""),
        (b"HELLO WORLD\r\n\r\n", None, None),
        (b"", None, None),  # closed during the handshake
    ],
)
def test_failed_handshakes(response: bytes, status: Optional[int], body: Optional[bytes]) -> None:
    async def main() -> None:
        server, uri = await start_raw(await answer_with(response))
        async with server:
            with pytest.raises(InvalidHandshake) as info:
                await connect(uri)
            if status is None:
                assert info.value.response is None
            else:
                assert info.value.response.status == status
                assert info.value.response.body == body

    run(main())


def test_negotiation_errors() -> None:
    async def accept_with(headers: bytes) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            key = next(line.split(": ", 1)[1] for line in head.split("\r\n") if line.startswith("Sec-WebSocket-Key"))
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n" + headers + b"\r\n"
            )
            await reader.read()

        return handler

    async def main() -> None:
        for headers, kwargs in [
            (b"Sec-WebSocket-Protocol: unoffered\r\n", {"subprotocols": ["chat"]}),
            (b"Sec-WebSocket-Protocol: chat\r\n", {}),
            (b"Sec-WebSocket-Extensions: x-unknown\r\n", {}),
            (b"Sec-WebSocket-Extensions: permessage-deflate\r\n", {"deflate": None}),
        ]:
            server, uri = await start_raw(await accept_with(headers))
            async with server:
                with pytest.raises(NegotiationError) as info:
                    await connect(uri, **kwargs)
                assert info.value.response.status == 101

    run(main())


def test_connect_errors() -> None:
    async def main() -> None:
        server, uri = await start_raw(await answer_with(b""))
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await connect(uri)
        with pytest.raises(InvalidURI):
            await connect("http://127.0.0.1/")
        with pytest.raises(InvalidURI):
            import ssl

            await connect(uri, ssl=ssl.create_default_context())
        with pytest.raises(ValueError):
            await connect(uri, stream_messages=True)

    run(main())


# ---------------------------------------------------------------- timeouts and keepalive


def test_open_timeout() -> None:
    """A TCP server that never answers the upgrade request."""

    async def main() -> None:
        got_request = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            got_request.set()
            await reader.read()  # until the client gives up

        server, uri = await start_raw(handler)
        async with server:
            with pytest.raises(asyncio.TimeoutError):
                await connect(uri, open_timeout=0.2)
            assert got_request.is_set()
            with pytest.raises(asyncio.TimeoutError):
                await create_connection(Listener(), uri, open_timeout=0.2)

    run(main())


@pytest.mark.parametrize("answer", [False, True])
def test_close_timeout(answer: bool) -> None:
    """The client gives up on the closing handshake after close_timeout: when
    the server never answers the close frame, and when it answers but does
    not close the TCP connection (RFC 6455 7.1.1: the server closes first)."""

    async def main() -> None:
        eof = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw_accept(reader, writer)
            opcode, _, payload = await read_frame(reader)
            assert opcode == OP_CLOSE and parse_close(payload) == (1000, "done")
            if answer:
                writer.write(frame(OP_CLOSE, payload, mask=False))
            assert await reader.read() == b""
            eof.set()

        server, uri = await start_raw(handler)
        async with server:
            ws = await connect(uri, close_timeout=0.2, ping_interval=None)
            await asyncio.wait_for(ws.close(1000, "done"), 2)
            await asyncio.wait_for(eof.wait(), 2)
            assert ws.close_code == (1000 if answer else 1006)

    run(main())


def test_keepalive_closes_a_server_that_stops_answering() -> None:
    async def main() -> None:
        closes: list[tuple[int, str]] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await raw_accept(reader, writer)
            while True:
                opcode, _, payload = await read_frame(reader)
                if opcode == OP_CLOSE:
                    closes.append(parse_close(payload))
                    writer.write(frame(OP_CLOSE, payload, mask=False))
                    return
                assert opcode == OP_PING  # never answered

        server, uri = await start_raw(handler)
        async with server:
            ws = await connect(uri, ping_interval=0.05, ping_timeout=0.1, close_timeout=1)
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(ws.recv(), 3)
            assert closes == [(1011, "keepalive ping timeout")]
            assert ws.close_code == 1011

    run(main())


# ---------------------------------------------------------------- the awaitable client


def test_connect_styles() -> None:
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            ws = await connect(uri)
            await ws.send("awaited")
            assert await ws.recv() == "awaited"
            await ws.close()
            assert ws.close_code == 1000
            with pytest.raises(ZeroDivisionError):
                async with connect(uri) as ws:
                    raise ZeroDivisionError
            await ws.wait_closed()
            assert ws.close_code == 1000  # closed normally on the way out
            ws = await wsfast.connect(uri)  # also importable from the top level
            assert isinstance(ws, wsfast.WebSocket)
            await ws.close()

    run(main())


# ---------------------------------------------------------------- interop


def test_websockets_server() -> None:
    ws_server = pytest.importorskip("websockets.asyncio.server")
    closed_with: list[Any] = []

    async def handler(websocket: Any) -> None:
        try:
            async for message in websocket:
                if message == "close 4001":
                    await websocket.close(4001, "websockets closes")
                elif message == "finish":
                    return
                else:
                    await websocket.send(message)
        finally:
            closed_with.append((websocket.close_code, websocket.close_reason))

    async def main() -> None:
        async with ws_server.serve(handler, "127.0.0.1", 0) as server:
            uri = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
            async with connect(uri) as ws:
                assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
                assert ws.transport.conn.deflate is not None
                for message in ("text ☃", b"\x00binary", "", b"", "y" * MiB, bytes(range(256)) * 4096):
                    await ws.send(message)
                    assert await ws.recv() == message
                await ws.send(["frag", "mented"])
                assert await ws.recv() == "fragmented"
                assert isinstance(await ws.ping(), float)
            await eventually(lambda: closed_with)
            assert closed_with[-1] == (1000, "")
            async with connect(uri) as ws:
                await ws.send("close 4001")
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                assert (ws.close_code, ws.close_reason) == (4001, "websockets closes")
            async with connect(uri) as ws:
                await ws.send("finish")
                with pytest.raises(ConnectionClosedOK):
                    await ws.recv()
                assert ws.close_code == 1000
            ws = await connect(uri)
            await ws.close(4002, "wsfast closes")
            await eventually(lambda: len(closed_with) == 4)
            assert closed_with[-1] == (4002, "wsfast closes")

    run(main(), 20)


def test_aiohttp_server() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    closed_with: list[Any] = []

    async def handler(request: Any) -> Any:
        websocket = web.WebSocketResponse(compress=True)
        await websocket.prepare(request)
        async for msg in websocket:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "close 4003":
                    await websocket.close(code=4003, message=b"aiohttp closes")
                else:
                    await websocket.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await websocket.send_bytes(msg.data)
        closed_with.append(websocket.close_code)
        return websocket

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            uri = f"ws://127.0.0.1:{port}/"
            async with connect(uri) as ws:
                assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
                for message in ("text ☃", b"\x00binary", "", b"", "y" * MiB, bytes(range(256)) * 4096):
                    await ws.send(message)
                    assert await ws.recv() == message
                await ws.send(["frag", "mented"])
                assert await ws.recv() == "fragmented"
                assert isinstance(await ws.ping(), float)
            async with connect(uri) as ws:
                await ws.send("close 4003")
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                assert (ws.close_code, ws.close_reason) == (4003, "aiohttp closes")
            ws = await connect(uri)
            await ws.close(4004, "wsfast closes")
            await eventually(lambda: 4004 in closed_with)
        finally:
            await runner.cleanup()

    run(main(), 20)


def test_echo_of_a_message_that_came_with_the_101_precedes_the_failure_close() -> None:
    """Autobahn 3.2 against a client: the server's message and a bad frame
    arrive with (or right after) the 101. A listener that echoes from
    on_text must get the message while the connection is still open, and
    the client must leave the TCP close to the server (RFC 6455 7.1.1)."""
    received: list[tuple[int, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        burst = frame(OP_TEXT, b"Hello, world!", mask=False)
        burst += bytes([0xA1, 0x00])  # FIN, RSV2, text: reserved bits without an extension
        await raw_accept(reader, writer, extra=burst)  # one write: 101 + both frames
        for _ in range(2):
            opcode, _, payload = await read_frame(reader)
            received.append((opcode, payload))
        writer.write(frame(OP_CLOSE, received[-1][1][:2], mask=False))
        writer.close()

    class Echo(Listener):
        def on_open(self, ws: WebSocketTransport) -> None:
            self.ws = ws

        def on_text(self, data: Union[str, bytes]) -> None:
            self.ws.send_text(data)

    async def main() -> None:
        server, uri = await start_raw(handler)
        async with server:
            transport = await create_connection(Echo(), uri, deflate=None)
            await asyncio.wait_for(transport.wait_closed(), 2)
            assert received[0] == (OP_TEXT, b"Hello, world!")
            assert received[1][0] == OP_CLOSE and received[1][1][:2] == (1002).to_bytes(2, "big")
            assert transport.conn.close_sent is not None and transport.conn.close_sent[0] == 1002

    run(main())
