"""wsfast.sync.serve: handlers in threads, routing, process_request, shutdown,
Unix sockets, TLS, sock=, and websockets' clients as peers."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import tempfile
import threading
from typing import Any, Optional

import pytest

from wsfast.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake
from wsfast.handshake import error_response
from wsfast.http11 import Request, Response
from wsfast.sync import WebSocket, connect, serve, unix_serve

from .helpers import TIMEOUT, echo, in_thread, running, uri


def test_handler_return_closes_1000() -> None:
    def handler(ws: WebSocket) -> None:
        ws.send("hi")

    with running(handler) as server, connect(uri(server)) as ws:
        assert ws.recv(timeout=TIMEOUT) == "hi"
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1000


def test_handler_exception_closes_1011(caplog: pytest.LogCaptureFixture) -> None:
    def handler(ws: WebSocket) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="wsfast"):
        with running(handler) as server, connect(uri(server)) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=TIMEOUT)
            assert info.value.code == 1011
    assert any("error in the connection handler" in r.getMessage() and r.exc_info for r in caplog.records)


def test_routing() -> None:
    def a(ws: WebSocket) -> None:
        ws.send("a")

    def b(ws: WebSocket) -> None:
        ws.send(ws.request.path if ws.request else "")

    with running({"/a": a, "/b": b}) as server:
        with connect(uri(server, "/a")) as ws:
            assert ws.recv(timeout=TIMEOUT) == "a"
        with connect(uri(server, "/b?x=1")) as ws:
            assert ws.recv(timeout=TIMEOUT) == "/b"
        with pytest.raises(InvalidHandshake) as info:
            connect(uri(server, "/c"))
        assert isinstance(info.value.response, Response) and info.value.response.status == 404


def test_process_request_403() -> None:
    seen: list[Any] = []

    def process_request(ws: WebSocket, request: Request) -> Optional[Response]:
        seen.append(ws.remote_address)
        if request.headers.get("Authorization") != "Bearer good":
            return error_response(403, "Forbidden")
        return None

    with running(process_request=process_request) as server:
        with pytest.raises(InvalidHandshake) as info:
            connect(uri(server))
        assert isinstance(info.value.response, Response) and info.value.response.status == 403
        with connect(uri(server), extra_headers=[("Authorization", "Bearer good")]) as ws:
            ws.send("in")
            assert ws.recv(timeout=TIMEOUT) == "in"
    assert len(seen) == 2 and seen[0][0] == "127.0.0.1"


def test_process_request_error_500(caplog: pytest.LogCaptureFixture) -> None:
    def process_request(ws: WebSocket, request: Request) -> Optional[Response]:
        raise ValueError("oops")

    with caplog.at_level(logging.ERROR, logger="wsfast"), running(process_request=process_request) as server:
        with pytest.raises(InvalidHandshake) as info:
            connect(uri(server))
        assert isinstance(info.value.response, Response) and info.value.response.status == 500


def test_shutdown_closes_1001() -> None:
    server = serve(lambda ws: list(ws), "127.0.0.1", 0, close_timeout=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    clients = [connect(uri(server)) for _ in range(3)]
    readers = [in_thread(lambda ws=ws: ws.recv(timeout=TIMEOUT)) for ws in clients]  # type: ignore[misc]
    server.shutdown()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    for (reader, outcome), ws in zip(readers, clients):
        reader.join(TIMEOUT)
        assert isinstance(outcome[0], ConnectionClosedOK)
        assert outcome[0].code == 1001
        ws.close()
    with pytest.raises(OSError):
        connect(uri(server), open_timeout=2)


def test_shutdown_aborts_a_peer_that_never_closes() -> None:
    """A peer that never answers the close frame: shutdown returns after
    close_timeout, the connection aborted."""
    with running(lambda ws: list(ws), close_timeout=0.3) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = sock.recv(4096)
        assert data.startswith(b"HTTP/1.1 101")
    while True:  # the close frame, then the end of the connection
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    frame = data.split(b"\r\n\r\n", 1)[1]
    assert frame[:1] == b"\x88" and frame[2:4] == (1001).to_bytes(2, "big")
    sock.close()


def test_silent_socket_dropped_after_open_timeout() -> None:
    with running(open_timeout=0.2) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        assert sock.recv(100) == b""  # closed by the server, no answer
        sock.close()


def test_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        server = unix_serve(echo, path)
        with running(server=server):
            with connect("ws://localhost/", path=path) as ws:
                ws.send("over unix")
                assert ws.recv(timeout=TIMEOUT) == "over unix"


def test_tls(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    with running(ssl=server_ssl) as server:
        with connect(uri(server, scheme="wss"), ssl=client_ssl) as ws:
            ws.send("secret")
            assert ws.recv(timeout=TIMEOUT) == "secret"
            ws.send(os.urandom(300000))
            assert len(ws.recv(timeout=TIMEOUT)) == 300000
            assert ws.ping().wait(TIMEOUT) >= 0
        with pytest.raises(ssl.SSLError):
            connect(uri(server, scheme="wss"))  # the default context does not trust the test CA


def test_sock_both_sides() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    server = serve(echo, sock=listener)
    with running(server=server):
        client_sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        with connect("ws://example.com/", sock=client_sock) as ws:
            ws.send("via sock")
            assert ws.recv(timeout=TIMEOUT) == "via sock"


def test_websockets_sync_client() -> None:
    ws_client = pytest.importorskip("websockets.sync.client")
    with running() as server:
        with ws_client.connect(uri(server), open_timeout=TIMEOUT) as ws:
            ws.send("hello")
            assert ws.recv(timeout=TIMEOUT) == "hello"
            ws.send(b"\x01" * 200000)
            assert ws.recv(timeout=TIMEOUT) == b"\x01" * 200000
            ws.send(["frag", "ments"])
            assert ws.recv(timeout=TIMEOUT) == "fragments"


def test_websockets_asyncio_client() -> None:
    ws_client = pytest.importorskip("websockets.asyncio.client")

    async def main(port: int) -> list[Any]:
        async with ws_client.connect(f"ws://127.0.0.1:{port}/", compression="deflate") as ws:
            out = []
            for message in ("a" * 1000, b"b" * 70000):
                await ws.send(message)
                out.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
            return out

    with running() as server:
        assert asyncio.run(main(server.port)) == ["a" * 1000, b"b" * 70000]


def test_stream_messages_rejected() -> None:
    with pytest.raises(ValueError, match="stream_messages"):
        serve(lambda ws: None, "127.0.0.1", 0, stream_messages=True)
    with pytest.raises(TypeError, match="unexpected"):
        serve(lambda ws: None, "127.0.0.1", 0, nonsense=1)


def test_shutdown_from_a_handler() -> None:
    done = threading.Event()

    def handler(ws: WebSocket) -> None:
        ws.recv(timeout=TIMEOUT)
        server.shutdown()
        done.set()

    server = serve(handler, "127.0.0.1", 0, close_timeout=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with connect(uri(server)) as ws:
        ws.send("stop")
        with pytest.raises(ConnectionClosedOK) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.code == 1001
    assert done.wait(TIMEOUT)
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_shutdown_without_serving() -> None:
    server = serve(echo, "127.0.0.1", 0)
    with server:
        pass
    assert server.socket.fileno() == -1
