"""wsfast.sync.connect: the opening handshake, its timeout and failures,
credentials from the URI, and websockets' servers as peers."""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from typing import Any, Optional

import pytest

from wsfast.exceptions import ConnectionClosedOK, InvalidHandshake, InvalidURI
from wsfast.http11 import Request, Response
from wsfast.sync import WebSocket, connect

from .helpers import TIMEOUT, RawServer, running, uri


def test_open_timeout_against_a_silent_server() -> None:
    raw = RawServer()
    try:
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{raw.port}/", open_timeout=0.2)
    finally:
        raw.close()


def test_server_closing_during_handshake() -> None:
    raw = RawServer()
    try:
        thread = threading.Thread(target=lambda: raw.accept(upgrade=False).close(), daemon=True)
        thread.start()
        with pytest.raises((InvalidHandshake, OSError)):
            connect(f"ws://127.0.0.1:{raw.port}/", open_timeout=TIMEOUT)
        thread.join(TIMEOUT)
    finally:
        raw.close()


def test_credentials_from_the_uri() -> None:
    seen: list[Optional[str]] = []

    def process_request(ws: WebSocket, request: Request) -> Optional[Response]:
        seen.append(request.headers.get("Authorization"))
        return None

    with running(process_request=process_request) as server:
        with connect(f"ws://al%20ice:p%40ss@127.0.0.1:{server.port}/"):
            pass
        with connect(f"ws://u:p@127.0.0.1:{server.port}/", extra_headers=[("Authorization", "Bearer x")]):
            pass
    assert seen == ["Basic " + base64.b64encode(b"al ice:p@ss").decode(), "Bearer x"]


def test_bad_arguments() -> None:
    with pytest.raises(InvalidURI):
        connect("http://127.0.0.1/")
    with pytest.raises(InvalidURI):
        connect("ws://127.0.0.1:1/", ssl=ssl.create_default_context())
    with pytest.raises(ValueError, match="stream_messages"):
        connect("ws://127.0.0.1:1/", stream_messages=True)


def test_rejection_carries_the_response() -> None:
    def process_request(ws: WebSocket, request: Request) -> Optional[Response]:
        return Response(418, body=b"teapot")

    with running(process_request=process_request) as server:
        with pytest.raises(InvalidHandshake) as info:
            connect(uri(server))
    response = info.value.response
    assert isinstance(response, Response) and response.status == 418 and response.body == b"teapot"


def test_websockets_sync_server() -> None:
    ws_server = pytest.importorskip("websockets.sync.server")

    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    with ws_server.serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        try:
            with connect(f"ws://127.0.0.1:{port}/", subprotocols=()) as ws:
                ws.send("hello")
                assert ws.recv(timeout=TIMEOUT) == "hello"
                ws.send(b"\x02" * 300000)
                assert ws.recv(timeout=TIMEOUT) == b"\x02" * 300000
                ws.send(iter(["a", "b"]))
                assert ws.recv(timeout=TIMEOUT) == "ab"
                assert ws.conn.deflate is not None  # negotiated with websockets
                assert ws.ping().wait(TIMEOUT) >= 0
        finally:
            server.shutdown()
            thread.join(TIMEOUT)


def test_websockets_asyncio_server_closing_first() -> None:
    ws_server = pytest.importorskip("websockets.asyncio.server")
    ready = threading.Event()
    stop: list[Any] = []
    ports: list[int] = []

    async def handler(ws: Any) -> None:
        message = await ws.recv()
        await ws.send(message)
        await ws.close(1001, "going away")

    async def main() -> None:
        async with ws_server.serve(handler, "127.0.0.1", 0) as server:
            ports.append(server.sockets[0].getsockname()[1])
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            stop.append((loop, done))
            ready.set()
            await asyncio.wait_for(done, TIMEOUT)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(TIMEOUT)
    try:
        with connect(f"ws://127.0.0.1:{ports[0]}/") as ws:
            ws.send("one")
            assert ws.recv(timeout=TIMEOUT) == "one"
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=TIMEOUT)
            assert (info.value.code, info.value.reason) == (1001, "going away")
    finally:
        loop, done = stop[0]
        loop.call_soon_threadsafe(done.set_result, None)
        thread.join(TIMEOUT)


def test_tls_against_websockets(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    ws_server = pytest.importorskip("websockets.sync.server")

    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    with ws_server.serve(echo, "127.0.0.1", 0, ssl=server_ssl) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        try:
            with connect(f"wss://localhost:{port}/", ssl=client_ssl) as ws:
                ws.send("over tls")
                assert ws.recv(timeout=TIMEOUT) == "over tls"
        finally:
            server.shutdown()
            thread.join(TIMEOUT)
