"""wsfast.trio.connect: TLS both roles, timeouts, the nursery form, cancellation."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trio

import wsfast.trio
from wsfast.exceptions import ConnectionClosedOK, InvalidURI

from .helpers import RawPeer, raw_server, run, server


def test_tls_both_roles(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, ssl=server_ssl)
            async with wsfast.trio.connect(f"wss://localhost:{srv.port}/", ssl=client_ssl) as ws:
                assert isinstance(ws.stream, trio.SSLStream)
                await ws.send("secret")
                assert await ws.recv() == "secret"
                big = b"z" * 1_000_000
                await ws.send(big)
                assert await ws.recv() == big
                assert ws.remote_address[1] == srv.port
            assert ws.close_code == 1000
            # a client that does not trust the certificate: the TLS error, not trio.BrokenResourceError
            with pytest.raises(ssl.SSLCertVerificationError):
                async with wsfast.trio.connect(f"wss://localhost:{srv.port}/", open_timeout=5):
                    pass
            with pytest.raises(InvalidURI):
                wsfast.trio.connect(f"ws://localhost:{srv.port}/", ssl=client_ssl)
            nursery.cancel_scope.cancel()

    run(test)


def test_tls_server_cancelled_closes_1001(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, ssl=server_ssl)
            async with wsfast.trio.connect(f"wss://127.0.0.1:{srv.port}/", ssl=client_ssl) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                srv.close()
                with pytest.raises(ConnectionClosedOK) as info:
                    await ws.recv()
                assert info.value.code == 1001

    run(test)


def test_open_timeout_against_a_server_that_never_answers() -> None:
    async def silent(peer: RawPeer) -> None:
        await trio.sleep_forever()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, silent)
            with pytest.raises(trio.TooSlowError) as info:
                async with wsfast.trio.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.1):
                    pass
            assert isinstance(info.value, TimeoutError)  # wsfast.trio.OpenTimeoutError: retryable
            nursery.cancel_scope.cancel()

    run(test)


def test_connection_refused_and_bad_uri() -> None:
    async def test() -> None:
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()  # nobody listens there now
        with pytest.raises(OSError):
            async with wsfast.trio.connect(f"ws://127.0.0.1:{port}/"):
                pass
        with pytest.raises(InvalidURI):
            wsfast.trio.connect("http://127.0.0.1/")

    run(test)


def test_nursery_form() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery)
            ws = await wsfast.trio.connect(f"ws://127.0.0.1:{srv.port}/", nursery=nursery)
            await ws.send("owned by the caller's nursery")
            assert await ws.recv() == "owned by the caller's nursery"
            await ws.close()
            assert ws.close_code == 1000
            with pytest.raises(TypeError, match="nursery"):
                await wsfast.trio.connect(f"ws://127.0.0.1:{srv.port}/")
            nursery.cancel_scope.cancel()

    run(test)


def test_client_cancelled_closes_1001_and_the_tcp_connection() -> None:
    seen: list[Any] = []

    async def watch(ws: wsfast.trio.WebSocket) -> None:
        try:
            await ws.recv()
        except ConnectionClosedOK as exc:
            seen.append(exc.code)
            seen.append(exc.reason)

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, watch)
            with trio.CancelScope() as scope:
                async with wsfast.trio.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
                    scope.cancel()
                    await trio.sleep_forever()
            assert ws.close_code == 1001  # the server echoed it
            assert ws.stream is not None
            with pytest.raises(trio.ClosedResourceError):
                await ws.stream.send_all(b"x")
            while srv.connections:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert seen == [1001, "going away"]

    run(test)


def test_exception_in_the_block_goes_on_unchanged_and_closes_1000() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery)
            with pytest.raises(KeyError):
                async with wsfast.trio.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
                    raise KeyError("mine")
            assert ws.close_code == 1000
            nursery.cancel_scope.cancel()

    run(test)


def test_frames_right_after_the_handshake() -> None:
    """A server that sends a message in the same write as its 101 response."""

    async def eager(peer: RawPeer) -> None:
        head = await peer.read_until(b"\r\n\r\n")
        key = next(line.split(":", 1)[1].strip() for line in head.decode().split("\r\n") if "Key" in line)
        from ..asyncio.helpers import accept_key, frame

        await peer.stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
            + frame(1, b"early", mask=False)
            + frame(8, b"\x03\xe8", mask=False)
        )
        await peer.at_eof()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, eager)
            async with wsfast.trio.connect(f"ws://127.0.0.1:{port}/", close_timeout=1) as ws:
                assert await ws.recv() == "early"
                with pytest.raises(ConnectionClosedOK):
                    await ws.recv()
            nursery.cancel_scope.cancel()

    run(test)
