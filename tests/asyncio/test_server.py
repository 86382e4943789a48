"""Servers: serve() and create_server(), the opening handshake as a server,
timeouts, keepalive, shutdown, limits, TLS, Unix sockets, logging, interop
with the websockets and aiohttp clients."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any, Optional

import pytest

import wsfast
from wsfast.asyncio import Server, WebSocket, WebSocketTransport, connect, serve
from wsfast.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidURI
from wsfast.http11 import Headers, Request, Response

from .helpers import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClient,
    close_payload,
    echo,
    eventually,
    frame,
    parse_close,
    read_frame,
    run,
    upgrade_request,
)

MiB = 1024 * 1024


def uri(server: Any, path: str = "/", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{server.port}{path}"


# ---------------------------------------------------------------- handler and handshake


def test_handler_outcomes_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(ws: WebSocket) -> None:
        if await ws.recv() == "raise":
            raise KeyError("handler bug")

    ids: list[int] = []

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                await ws.send("return")
                await ws.wait_closed()
                assert ws.close_code == 1000
            async with connect(uri(server)) as ws:
                await ws.send("raise")
                await ws.wait_closed()
                assert (ws.close_code, ws.close_reason) == (1011, "internal error")
                ids.append(ws.id)

    with caplog.at_level(logging.INFO, logger="wsfast"):
        run(main())
    records = [r for r in caplog.records if r.name == "wsfast"]
    failures = [r for r in records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and failures[0].exc_info[0] is KeyError
    assert "error in the connection handler" in failures[0].getMessage()
    messages = [r.getMessage() for r in records]
    assert any("open (server" in m for m in messages) and any("open (client" in m for m in messages)
    assert any(m.startswith(f"connection #{ids[0]}: closed (code 1011)") for m in messages)
    assert all(m.startswith("connection #") for m in messages)


def test_cancelled_or_sync_failing_handlers_close_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    # The handler's coroutine is the task itself: a cancelled one closes with
    # 1001, a plain function that raises closes with 1011 and is logged.
    tasks: list[asyncio.Task[Any]] = []

    async def cancelled(ws: WebSocket) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        task.cancel()
        await asyncio.sleep(10)

    def raises(ws: WebSocket) -> Any:
        raise ValueError("not even a coroutine")

    async def main() -> None:
        async with serve({"/cancel": cancelled, "/raise": raises}, "127.0.0.1", 0) as server:
            async with connect(uri(server) + "cancel") as ws:
                await ws.wait_closed()
                assert (ws.close_code, ws.close_reason) == (1001, "handler cancelled")
            async with connect(uri(server) + "raise") as ws:
                await ws.wait_closed()
                assert (ws.close_code, ws.close_reason) == (1011, "internal error")
            assert not server._tasks  # the finished handlers are forgotten

    with caplog.at_level(logging.ERROR, logger="wsfast"):
        run(main())
    assert tasks and tasks[0].cancelled()
    failures = [r for r in caplog.records if r.name == "wsfast" and r.levelno == logging.ERROR]
    assert len(failures) == 1 and failures[0].exc_info[0] is ValueError


def test_handler_that_aborts_returns_quietly() -> None:
    # The handler returns with the transport already aborted: closing it with
    # 1000 afterwards is nothing to do, not an error of the handler's task.
    async def handler(ws: WebSocket) -> None:
        ws.transport.abort()

    reported: list[Any] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1006

    run(main())
    assert reported == []


def test_remote_address_and_headers() -> None:
    seen: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        seen["remote_address"] = ws.remote_address
        seen["request"] = ws.request
        seen["response"] = ws.response
        await ws.send("ok")
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, extra_headers=[("X-Server", "yes")]) as server:
            async with connect(
                uri(server, "/path?query=1"), extra_headers=[("X-Client", "hello")], origin="https://o.example"
            ) as ws:
                assert await ws.recv() == "ok"
                assert seen["remote_address"] == ws.transport.transport.get_extra_info("sockname")
                assert ws.remote_address[:2] == ("127.0.0.1", server.port)
                request: Request = seen["request"]
                assert request.target == "/path?query=1" and request.path == "/path"
                assert request.headers["X-Client"] == "hello"
                assert request.headers["Origin"] == "https://o.example"
                assert request.headers["Host"] == f"127.0.0.1:{server.port}"
                assert request.headers["User-Agent"] == f"wsfast/{wsfast.__version__}"
                assert ws.request.headers["X-Client"] == "hello"  # the client's view of its request
                assert ws.response.status == 101
                assert ws.response.headers["X-Server"] == "yes"
                assert ws.response.headers["Server"] == f"wsfast/{wsfast.__version__}"
                assert seen["response"].headers["X-Server"] == "yes"

    run(main())


def test_subprotocols() -> None:
    async def handler(ws: WebSocket) -> None:
        async for _ in ws:
            await ws.send(str(ws.subprotocol))

    def pick_last(request: Request, offered: Any) -> Optional[str]:
        return offered[-1] if offered else None

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, subprotocols=["superchat", "chat"]) as server:
            # The server's order of preference wins.
            async with connect(uri(server), subprotocols=["chat", "superchat"]) as ws:
                await ws.send("?")
                assert ws.subprotocol == "superchat" and await ws.recv() == "superchat"
                assert ws.response.headers["Sec-WebSocket-Protocol"] == "superchat"
            async with connect(uri(server), subprotocols=["other", "chat"]) as ws:
                assert ws.subprotocol == "chat"
            # Nothing in common: no subprotocol, and the connection goes on.
            async with connect(uri(server), subprotocols=["other"]) as ws:
                await ws.send("?")
                assert ws.subprotocol is None and await ws.recv() == "None"
                assert "Sec-WebSocket-Protocol" not in ws.response.headers
            async with connect(uri(server)) as ws:
                assert ws.subprotocol is None
        async with serve(handler, "127.0.0.1", 0, select_subprotocol=pick_last) as server:
            async with connect(uri(server), subprotocols=["a", "b", "c"]) as ws:
                await ws.send("?")
                assert ws.subprotocol == "c" and await ws.recv() == "c"
        # A selector choosing what was not offered is the server's mistake: 500.
        async with serve(handler, "127.0.0.1", 0, select_subprotocol=lambda r, o: "unoffered") as server:
            with pytest.raises(InvalidHandshake) as info:
                await connect(uri(server), subprotocols=["a"])
            assert info.value.response.status == 500

    run(main())


def test_permessage_deflate_negotiation() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
                assert ws.transport.conn.deflate is not None
                await ws.send("a" * 10000)
                assert await ws.recv() == "a" * 10000
            async with connect(uri(server), deflate=None) as ws:
                assert "Sec-WebSocket-Extensions" not in ws.request.headers
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
                assert ws.transport.conn.deflate is None
        async with serve(echo, "127.0.0.1", 0, deflate=None) as server:
            async with connect(uri(server)) as ws:
                assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
                assert ws.transport.conn.deflate is None
                await ws.send("a" * 10000)
                assert await ws.recv() == "a" * 10000

    run(main())


def test_origin_allow_list() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, origins=["https://good.example"]) as server:
            async with connect(uri(server), origin="https://good.example") as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
            for origin in ("https://evil.example", None):
                with pytest.raises(InvalidHandshake) as info:
                    await connect(uri(server), origin=origin)
                assert info.value.response.status == 403
                assert b"Origin not allowed" in info.value.response.body
        async with serve(echo, "127.0.0.1", 0, origins=["https://good.example", None]) as server:
            async with connect(uri(server)) as ws:  # no Origin header: allowed by None
                await ws.send("hi")
                assert await ws.recv() == "hi"

    run(main())


def http_get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_process_request_plain_http_and_401() -> None:
    def process_request(ws: WebSocketTransport, request: Request) -> Optional[Response]:
        if request.path == "/health":
            return Response(200, Headers([("Content-Type", "text/plain")]), b"OK\n")
        if request.headers.get("Authorization") != "Bearer secret":
            return Response(401, Headers([("WWW-Authenticate", "Bearer")]), b"who are you?")
        return None

    async def main() -> None:
        async with serve({"/": echo, "/health": echo}, "127.0.0.1", 0, process_request=process_request) as server:
            status, headers, body = await asyncio.get_running_loop().run_in_executor(
                None, http_get, f"http://127.0.0.1:{server.port}/health"
            )
            assert (status, body) == (200, b"OK\n")
            assert headers["Content-Type"] == "text/plain" and headers["Content-Length"] == "3"
            with pytest.raises(InvalidHandshake) as info:
                await connect(uri(server))
            response = info.value.response
            assert response.status == 401 and response.body == b"who are you?"
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "401" in str(info.value)
            async with connect(uri(server), extra_headers=[("Authorization", "Bearer secret")]) as ws:
                await ws.send("authorized")
                assert await ws.recv() == "authorized"
            await eventually(lambda: len(server.connections) == 0)

    run(main())


def test_process_request_answers_unrouted_paths() -> None:
    """ProcessRequest's docstring: "Called with each request before the
    upgrade: return a Response to answer it (authentication, health checks,
    plain HTTP pages)". With routing, a health check at a path that has no
    WebSocket handler must still reach process_request, not get 404."""

    def process_request(ws: WebSocketTransport, request: Request) -> Optional[Response]:
        if request.path == "/healthz":
            return Response(200, Headers([("Content-Type", "text/plain")]), b"OK\n")
        return None

    async def main() -> None:
        async with serve({"/ws": echo}, "127.0.0.1", 0, process_request=process_request) as server:
            status, _, body = await asyncio.get_running_loop().run_in_executor(
                None, http_get, f"http://127.0.0.1:{server.port}/healthz"
            )
            assert (status, body) == (200, b"OK\n")

    run(main())


def test_async_process_request() -> None:
    calls: list[str] = []

    async def process_request(ws: WebSocketTransport, request: Request) -> Optional[Response]:
        await asyncio.sleep(0.01)  # e.g. a token lookup
        calls.append(request.path)
        if request.path == "/fail":
            raise RuntimeError("lookup failed")
        if request.headers.get("X-Token") != "t0ken":
            return Response(401, Headers(), b"bad token")
        return None

    async def main() -> None:
        routes = {"/": echo, "/fail": echo}
        async with serve(routes, "127.0.0.1", 0, process_request=process_request) as server:
            async with connect(uri(server), extra_headers=[("X-Token", "t0ken")]) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"
            with pytest.raises(InvalidHandshake) as info:
                await connect(uri(server))
            assert info.value.response.status == 401 and info.value.response.body == b"bad token"
            with pytest.raises(InvalidHandshake) as info:
                await connect(uri(server, "/fail"))
            assert info.value.response.status == 500
            assert calls == ["/", "/", "/fail"]

    run(main())


@pytest.mark.parametrize("early", ["ping", "close"])
@pytest.mark.parametrize("process_request", ["none", "sync", "async"])
def test_frames_sent_with_the_request(process_request: str, early: str) -> None:
    """A client may send frames right behind its upgrade request. Their
    automatic replies (a pong, the close reply) must go out, and the close
    must end the connection, whether process_request is synchronous or not.
    With a coroutine, WebSocketTransport._request_decided runs _answer_request
    outside buffer_updated, and nothing writes conn.data_to_send() then."""

    async def async_pr(ws: WebSocketTransport, request: Request) -> None:
        await asyncio.sleep(0.01)
        return None

    kwargs: dict[str, Any] = {}
    if process_request == "sync":
        kwargs["process_request"] = lambda ws, request: None
    elif process_request == "async":
        kwargs["process_request"] = async_pr

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, close_timeout=0.5, **kwargs) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                request, _ = upgrade_request()
                if early == "ping":  # a ping and a message right behind the request, in one write
                    writer.write(request + frame(OP_PING, b"early") + frame(OP_TEXT, b"hello"))
                    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
                    replies = {await asyncio.wait_for(read_frame(reader), 1) for _ in range(2)}
                    assert replies == {(OP_PONG, True, b"early"), (OP_TEXT, True, b"hello")}
                else:  # a close frame right behind the request
                    writer.write(request + frame(OP_CLOSE, close_payload(1000, "early")))
                    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
                    assert await asyncio.wait_for(read_frame(reader), 1) == (OP_CLOSE, True, close_payload(1000))
                    assert await asyncio.wait_for(reader.read(), 1) == b""
            finally:
                writer.close()

    run(main())


@pytest.mark.parametrize("callback", ["process_request", "select_subprotocol"])
def test_sync_handshake_callback_error_answers_500(caplog: pytest.LogCaptureFixture, callback: str) -> None:
    """An exception in a synchronous callback of the handshake gets the same
    answer as one in an asynchronous process_request (see
    test_async_process_request): HTTP 500, and a log record."""

    def fail(*args: Any) -> Any:
        raise RuntimeError(f"{callback} bug")

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, **{callback: fail}) as server:
            try:
                await connect(uri(server), subprotocols=["chat"])
            except InvalidHandshake as exc:
                assert exc.response is not None, f"no HTTP response: {exc}"
                assert exc.response.status == 500
            else:
                pytest.fail("the handshake succeeded")

    with caplog.at_level(logging.ERROR, logger="wsfast"):
        run(main())
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)


def test_routing() -> None:
    async def one(ws: WebSocket) -> None:
        async for _ in ws:
            await ws.send("one")

    async def two(ws: WebSocket) -> None:
        async for _ in ws:
            await ws.send("two")

    async def main() -> None:
        async with serve({"/one": one, "/two": two}, "127.0.0.1", 0) as server:
            for path, expected in [("/one", "one"), ("/two?x=1", "two")]:
                ws = await connect(uri(server, path))
                await ws.send("which?")
                assert await ws.recv() == expected
                await ws.close()
            for path in ("/three", "/", "/one/"):
                with pytest.raises(InvalidHandshake) as info:
                    await connect(uri(server, path))
                assert info.value.response.status == 404

    run(main())


def test_unix_socket(tmp_path: Any) -> None:
    path = str(tmp_path / "ws.sock")

    async def main() -> None:
        async with serve(echo, path=path) as server:
            assert server.sockets[0].family == socket.AF_UNIX
            async with connect("ws://localhost/chat", path=path) as ws:
                assert ws.request.headers["Host"] == "localhost"
                await ws.send("over a unix socket")
                assert await ws.recv() == "over a unix socket"
                await ws.send(b"\x00" * 70000)
                assert await ws.recv() == b"\x00" * 70000

    run(main())


def test_serve_on_given_sockets(tmp_path: Any) -> None:
    async def main() -> None:
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        unix = socket.socket(socket.AF_UNIX)
        unix.bind(str(tmp_path / "given.sock"))
        async with serve(echo, sock=tcp) as server:
            async with connect(uri(server)) as ws:
                await ws.send("tcp")
                assert await ws.recv() == "tcp"
        async with serve(echo, sock=unix):
            async with connect("ws://localhost/", path=str(tmp_path / "given.sock")) as ws:
                await ws.send("unix")
                assert await ws.recv() == "unix"

    run(main())


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT on this platform")
@pytest.mark.parametrize("own_transport", [True, False])
def test_reuse_port_two_servers_on_one_port(own_transport: bool) -> None:
    """Two servers bound to one port with reuse_port=True both accept
    (wsfast's socket transport accepts on duplicates of the sockets: they
    stay in the port's SO_REUSEPORT group)."""

    def named(name: str) -> Any:
        async def handler(ws: WebSocket) -> None:
            async for _ in ws:
                await ws.send(name)

        return handler

    async def main() -> None:
        kwargs: dict[str, Any] = {"reuse_port": True, "own_transport": own_transport}
        async with serve(named("a"), "127.0.0.1", 0, **kwargs) as a:
            async with serve(named("b"), "127.0.0.1", a.port, **kwargs) as b:
                assert b.port == a.port
                seen: set[str] = set()
                for _ in range(200):  # the kernel hashes each connection to one of them
                    async with connect(uri(a)) as ws:
                        await ws.send("who?")
                        seen.add(await ws.recv())
                    if seen == {"a", "b"}:
                        break
                assert seen == {"a", "b"}

    run(main(), timeout=30)


def test_reuse_port_without_so_reuseport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "SO_REUSEPORT", raising=False)
    with pytest.raises(ValueError, match=r"reuse_port=True needs socket\.SO_REUSEPORT.*\(" + sys.platform):
        serve(echo, "127.0.0.1", 0, reuse_port=True)
    serve(echo, "127.0.0.1", 0, reuse_port=False)  # no error: nothing asked for


def test_wss(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ssl=server_ssl) as server:
            async with connect(uri(server, scheme="wss"), ssl=client_ssl) as ws:
                assert ws.transport.transport.get_extra_info("ssl_object") is not None
                for message in ("secure", b"\x00\x01" * 40000, "é" * 100000):
                    await ws.send(message)
                    assert await ws.recv() == message
            async with connect(f"wss://localhost:{server.port}/", ssl=client_ssl) as ws:
                await ws.send("by name")
                assert await ws.recv() == "by name"
            with pytest.raises(InvalidURI):
                await connect(uri(server), ssl=client_ssl)  # an SSL context for ws://

    run(main())


def test_wss_default_context_rejects_self_signed(server_ssl: ssl.SSLContext) -> None:
    async def main() -> None:
        server = await serve(echo, "127.0.0.1", 0, ssl=server_ssl)
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(uri(server, scheme="wss"))
        finally:
            server.close()

    run(main())


@pytest.mark.parametrize("client", ["untrusted", "plain"])
def test_failed_tls_handshake_is_forgotten(server_ssl: ssl.SSLContext, client: str) -> None:
    """A connection whose TLS handshake fails (an untrusted certificate, a
    plain ws:// client) never reaches connection_made, but Server._protocol
    already put its WebSocketTransport in server.connections, where it stays
    for ever: it leaks, counts against max_connections, and server.wait_closed()
    never returns."""

    async def main() -> None:
        server = await serve(echo, "127.0.0.1", 0, ssl=server_ssl)
        if client == "untrusted":
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(uri(server, scheme="wss"))
        else:
            with pytest.raises((InvalidHandshake, ConnectionError)):
                await connect(uri(server), open_timeout=1)
        try:
            await eventually(lambda: not server.connections)
        finally:
            server.close()
        await asyncio.wait_for(server.wait_closed(), 2)

    run(main())


# ---------------------------------------------------------------- timeouts and keepalive


def test_open_timeout_drops_silent_clients() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, open_timeout=0.2) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            partial_reader, partial_writer = await asyncio.open_connection("127.0.0.1", server.port)
            partial_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
            assert await asyncio.wait_for(reader.read(), 3) == b""  # dropped, without an answer
            assert await asyncio.wait_for(partial_reader.read(), 3) == b""
            await eventually(lambda: not server.connections)
            writer.close()
            partial_writer.close()
            # A client that does complete the handshake in time is not affected.
            async with connect(uri(server)) as ws:
                await asyncio.sleep(0.3)
                await ws.send("still here")
                assert await ws.recv() == "still here"

    run(main())


def test_close_timeout_aborts_a_peer_that_never_answers() -> None:
    async def main() -> None:
        closed = asyncio.Event()

        async def handler(ws: WebSocket) -> None:
            await ws.close(1000, "bye")  # the peer never answers
            closed.set()

        async with serve(handler, "127.0.0.1", 0, close_timeout=0.2, ping_interval=None) as server:
            peer = await RawClient.connect(server.port)
            try:
                opcode, _, payload = await peer.recv()
                assert opcode == OP_CLOSE and parse_close(payload) == (1000, "bye")
                assert await peer.at_eof(3), "the server aborts after close_timeout"
                await asyncio.wait_for(closed.wait(), 1)
            finally:
                peer.close()

    run(main())


def test_close_timeout_with_keepalive_enabled() -> None:
    """Same as above with a keepalive interval shorter than close_timeout (the
    default ping_interval=20 > close_timeout=10 hides it): the keepalive timer
    armed before the close stays in place of the close timer, then finds the
    connection CLOSING and returns, so nothing ever aborts the connection."""

    async def main() -> None:
        async def handler(ws: WebSocket) -> None:
            await ws.close(1000, "bye")

        async with serve(handler, "127.0.0.1", 0, close_timeout=0.2, ping_interval=0.1) as server:
            peer = await RawClient.connect(server.port)
            try:
                opcode, _, payload = await peer.recv()
                assert opcode == OP_CLOSE
                assert await peer.at_eof(1.5), "not aborted after close_timeout"
            finally:
                peer.close()

    run(main())


def test_close_timeout_after_a_keepalive_ping_was_sent() -> None:
    """Same with the ping-timeout timer pending when the close starts: it
    fires, close() is a no-op since a close frame was sent, and nothing
    aborts the connection."""

    async def main() -> None:
        async def handler(ws: WebSocket) -> None:
            await eventually(lambda: ws.transport._pings)  # the keepalive ping is out
            await ws.close(1000, "bye")

        async with serve(handler, "127.0.0.1", 0, close_timeout=0.2, ping_interval=0.05, ping_timeout=0.1) as server:
            peer = await RawClient.connect(server.port)
            try:
                assert (await peer.recv())[0] == OP_PING  # not answered
                assert (await peer.recv())[0] == OP_CLOSE
                assert await peer.at_eof(1.5), "not aborted after close_timeout"
            finally:
                peer.close()

    run(main())


def test_keepalive_closes_a_peer_that_stops_answering() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=0.1, close_timeout=0.2) as server:
            peer = await RawClient.connect(server.port)
            try:
                for _ in range(3):  # answered pings keep the connection open
                    opcode, _, payload = await peer.recv()
                    assert opcode == OP_PING and payload.startswith(b"keepalive")
                    peer.send(OP_PONG, payload)
                (server_ws,) = server.connections
                await eventually(lambda: server_ws.latency > 0)
                # Now the peer stops answering.
                opcode, _, payload = await peer.recv()
                assert opcode == OP_PING
                opcode, _, payload = await peer.recv(timeout=2)
                assert opcode == OP_CLOSE and parse_close(payload) == (1011, "keepalive ping timeout")
                assert await peer.at_eof(3)
                await eventually(lambda: not server.connections)
            finally:
                peer.close()

    run(main())


# ---------------------------------------------------------------- shutdown and limits


def test_graceful_shutdown() -> None:
    async def main() -> None:
        finished: list[int] = []
        errors: list[BaseException] = []

        async def handler(ws: WebSocket) -> None:
            try:
                async for message in ws:
                    await ws.send(message)
            except ConnectionClosed as exc:  # pragma: no cover - not expected
                errors.append(exc)
            await asyncio.sleep(0.05)  # some cleanup, waited for by wait_closed
            finished.append(ws.id)

        server = await serve(handler, "127.0.0.1", 0)
        url = uri(server)
        clients = [await connect(url) for _ in range(3)]
        for client in clients:
            await client.send("hi")
            assert await client.recv() == "hi"
        silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await eventually(lambda: len(server.connections) == 4)
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
        assert len(finished) == 3 and not errors
        assert not server.connections and not server._tasks
        for client in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                await client.recv()
            assert (info.value.code, info.value.reason) == (1001, "server shutting down")
            assert client.close_code == 1001
        assert await asyncio.wait_for(silent_reader.read(), 2) == b""  # aborted
        silent_writer.close()
        with pytest.raises(OSError):
            await connect(url, open_timeout=1)

    run(main())


def test_context_manager_shuts_down() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            assert isinstance(server, Server)
            ws = await connect(uri(server))
        await ws.wait_closed()
        assert ws.close_code == 1001

    run(main())


def test_max_connections() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_connections=2) as server:
            first = await connect(uri(server))
            second = await connect(uri(server))
            with pytest.raises(InvalidHandshake) as info:
                await connect(uri(server))
            assert info.value.response.status == 503
            assert info.value.response.headers["Retry-After"] == "1"
            await first.close()
            await eventually(lambda: len(server.connections) == 1)
            async with connect(uri(server)) as third:
                await third.send("in")
                assert await third.recv() == "in"
            await second.close()

    run(main())


def test_serve_rejects_stream_messages() -> None:
    with pytest.raises(ValueError):
        serve(echo, "127.0.0.1", 0, stream_messages=True)


def test_seed_tutorial(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's tutorial, with port 0 and the client in the same loop."""

    async def handler(websocket: WebSocket) -> None:
        logging.info("Client connected")
        await websocket.send("Hello, client!")
        async for message in websocket:
            logging.info("Received: %s", message)

    async def server_main(started: asyncio.Future[Server]) -> None:
        async with wsfast.serve(handler, "127.0.0.1", 0) as server:
            started.set_result(server)
            await server.serve_forever()

    async def client_main(port: int) -> None:
        async with wsfast.connect(f"ws://127.0.0.1:{port}") as websocket:
            await websocket.send("Hello, server!")
            try:
                print(await asyncio.wait_for(websocket.recv(), 2))
            except asyncio.TimeoutError:
                pytest.fail(
                    "the greeting sent by the handler on connection never arrived "
                    "(see test_client.py::test_messages_sent_with_the_handshake_response)"
                )

    async def main() -> None:
        started: asyncio.Future[Server] = asyncio.get_running_loop().create_future()
        serving = asyncio.ensure_future(server_main(started))
        server = await started
        try:
            await client_main(server.port)
            await eventually(lambda: "Received: Hello, server!" in caplog.text)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)

    with caplog.at_level(logging.INFO):
        run(main())
    assert "Client connected" in caplog.text
    assert "Received: Hello, server!" in caplog.text
    assert capsys.readouterr().out == "Hello, client!\n"


# ---------------------------------------------------------------- interop


def test_websockets_client() -> None:
    ws_client = pytest.importorskip("websockets.asyncio.client")
    from websockets.exceptions import ConnectionClosedError as WSClosedError
    from websockets.exceptions import ConnectionClosedOK as WSClosedOK

    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            if message == "close 4001":
                await ws.close(4001, "as asked")
            elif message == "raise":
                raise RuntimeError("as asked")
            elif message == "return":
                return
            else:
                await ws.send(message)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with ws_client.connect(uri(server)) as client:
                assert "permessage-deflate" in client.response.headers["Sec-WebSocket-Extensions"]
                for message in ("text ☃", b"\x00binary", "", b"", "y" * MiB, bytes(range(256)) * 4096):
                    await client.send(message)
                    assert await client.recv() == message
                await client.send(["frag", "mented"])
                assert await client.recv() == "fragmented"
                latency = await (await client.ping())
                assert latency >= 0
            for command, exception, code, reason in [
                ("return", WSClosedOK, 1000, ""),
                ("raise", WSClosedError, 1011, "internal error"),
                ("close 4001", WSClosedError, 4001, "as asked"),
            ]:
                async with ws_client.connect(uri(server)) as client:
                    await client.send(command)
                    with pytest.raises(exception):
                        await client.recv()
                    assert (client.close_code, client.close_reason) == (code, reason)
            seen: list[Any] = []

            async def record(ws: WebSocket) -> None:
                try:
                    await ws.recv()
                except ConnectionClosed as exc:
                    seen.append(exc)

            async with serve(record, "127.0.0.1", 0) as server2:
                async with ws_client.connect(uri(server2)) as client:
                    await client.close(4002, "client closes")
                await eventually(lambda: seen)
                assert (seen[0].code, seen[0].reason) == (4002, "client closes")

    run(main(), 20)


def test_websockets_client_incompressible_max_size_message() -> None:
    """The websockets client deflates a random 1 MiB message (within both
    sides' default 1 MiB limit) into a frame ~2.5 KiB larger; the wsfast
    server must accept it (see test_connection.py::test_incompressible_message_of_max_size_with_deflate)."""
    ws_client = pytest.importorskip("websockets.asyncio.client")

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with ws_client.connect(uri(server), max_size=2 * MiB) as client:
                message = os.urandom(MiB)
                await client.send(message)
                assert await client.recv() == message

    run(main())


def test_aiohttp_client() -> None:
    aiohttp = pytest.importorskip("aiohttp")

    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            if message == "close":
                await ws.close(4003, "bye aiohttp")
            else:
                await ws.send(message)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(uri(server), compress=15, autoping=True) as client:
                    assert client.compress, "permessage-deflate negotiated"
                    for message in ("text ☃", "", "z" * MiB):
                        await client.send_str(message)
                        received = await client.receive(timeout=5)
                        assert received.type == aiohttp.WSMsgType.TEXT and received.data == message
                    for data in (b"\x00\x01", b"", bytes(range(256)) * 4096):
                        await client.send_bytes(data)
                        received = await client.receive(timeout=5)
                        assert received.type == aiohttp.WSMsgType.BINARY and received.data == data
                    await client.send_str("close")
                    received = await client.receive(timeout=5)
                    assert received.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                    assert client.close_code == 4003
                async with session.ws_connect(uri(server)) as client:
                    await client.close(code=4004, message=b"from aiohttp")
                    assert client.close_code == 4004

    run(main(), 20)


def test_uvloop_echo() -> None:
    try:
        import uvloop
    except ImportError:
        pytest.skip("uvloop is not installed (pip install uvloop to run the echo under it)")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert "uvloop" in type(loop).__module__
        errors: list[str] = []
        loop.set_exception_handler(lambda loop, context: errors.append(f"{context.get('exception')!r}"))
        server = await serve(echo, "127.0.0.1", 0)
        try:
            try:
                ws = await connect(uri(server), open_timeout=1)
            except asyncio.TimeoutError:
                pytest.fail(f"no handshake under uvloop; errors in event loop callbacks: {errors}")
            for message in ("uv", b"loop", "x" * 100000):
                await ws.send(message)
                assert await ws.recv() == message
            assert isinstance(await ws.ping(), float)
            await ws.close()
        finally:
            server.close()
        await asyncio.wait_for(server.wait_closed(), 2)
        assert not errors

    run(main(), timeout=5, loop_factory=uvloop.new_event_loop)
