"""wsfast.trio against a peer that is not wsfast: websockets (its threaded
API, in a worker thread), both roles, plain and TLS."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from typing import Any, Optional

import pytest
import trio

import wsfast.trio
from wsfast.exceptions import ConnectionClosedOK

from .helpers import run, server

websockets_sync_server = pytest.importorskip("websockets.sync.server")
websockets_sync_client = pytest.importorskip("websockets.sync.client")


def _echo(ws: Any) -> None:
    for message in ws:
        if message == "close 4001":
            ws.close(4001, "as asked")
            return
        ws.send(message)


def _websockets_server(ssl_context: Optional[ssl.SSLContext] = None) -> Iterator[int]:
    srv = websockets_sync_server.serve(_echo, "127.0.0.1", 0, ssl=ssl_context, compression="deflate")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.socket.getsockname()[1]
    finally:
        srv.shutdown()
        thread.join(5)


@pytest.fixture
def websockets_port() -> Iterator[int]:
    yield from _websockets_server()


@pytest.fixture
def websockets_tls_port(server_ssl: ssl.SSLContext) -> Iterator[int]:
    yield from _websockets_server(server_ssl)


def test_client_against_websockets(websockets_port: int) -> None:
    async def test() -> None:
        async with wsfast.trio.connect(f"ws://127.0.0.1:{websockets_port}/") as ws:
            assert ws.conn.deflate is not None  # negotiated with websockets
            for message in ("text", b"binary", "é" * 50000, b"\x00" * 1_000_000):
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(["frag", "ments"])
            assert await ws.recv() == "fragments"
            assert await ws.ping() >= 0
            await ws.send("close 4001")
            with pytest.raises(Exception) as info:
                await ws.recv()
            assert getattr(info.value, "code", None) == 4001

    run(test)


def test_tls_client_against_websockets(websockets_tls_port: int, client_ssl: ssl.SSLContext) -> None:
    async def test() -> None:
        async with wsfast.trio.connect(f"wss://localhost:{websockets_tls_port}/", ssl=client_ssl) as ws:
            await ws.send("over TLS")
            assert await ws.recv() == "over TLS"
        assert ws.close_code == 1000

    run(test)


def _websockets_client(uri: str, ssl_context: Optional[ssl.SSLContext] = None) -> list[Any]:
    """Talk to ``uri`` with websockets' threaded client; what it received."""
    got: list[Any] = []
    with websockets_sync_client.connect(uri, ssl=ssl_context, compression="deflate", open_timeout=5) as ws:
        for message in ("hello", b"\x01\x02", "x" * 200000):
            ws.send(message)
            got.append(ws.recv(timeout=5))
        ws.send(["a", "b"])
        got.append(ws.recv(timeout=5))
        ws.ping().wait(5)
    got.append(ws.close_code)
    return got


@pytest.mark.parametrize("tls", [False, True])
def test_server_against_websockets(tls: bool, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    closed: list[int] = []

    async def echo_and_watch(ws: wsfast.trio.WebSocket) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            closed.append(ws.conn.close_code)

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, echo_and_watch, ssl=server_ssl if tls else None)
            scheme = "wss" if tls else "ws"
            uri = f"{scheme}://localhost:{srv.port}/"
            got = await trio.to_thread.run_sync(_websockets_client, uri, client_ssl if tls else None)
            assert got == ["hello", b"\x01\x02", "x" * 200000, "ab", 1000]
            while srv.connections:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert closed == [1000]

    run(test)


def test_server_cancelled_closes_a_websockets_client_with_1001() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery)
            opened = threading.Event()

            def client() -> Any:
                with websockets_sync_client.connect(f"ws://127.0.0.1:{srv.port}/", open_timeout=5) as ws:
                    opened.set()
                    try:
                        ws.recv(timeout=5)
                    except Exception:
                        pass
                    return ws.close_code

            async with trio.open_nursery() as inner:
                codes: list[Any] = []

                async def run_client() -> None:
                    codes.append(await trio.to_thread.run_sync(client))

                inner.start_soon(run_client)
                while not opened.is_set() or not srv.connections:
                    await trio.sleep(0.01)
                srv.close()
            assert codes == [1001]

    run(test)


def test_async_for_stops_on_1000_from_websockets(websockets_port: int) -> None:
    async def test() -> None:
        async with wsfast.trio.connect(f"ws://127.0.0.1:{websockets_port}/") as ws:
            await ws.close()
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
            assert [m async for m in ws] == []

    run(test)
