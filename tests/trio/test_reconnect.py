"""``async with connect(uri).reconnecting() as connections: async for ws in
connections``: reconnecting with backoff on Trio, over real sockets on
127.0.0.1. Delays are checked as computed (logged), never against the wall
clock; the backoff settings are small so that every test is quick."""

from __future__ import annotations

import logging
import ssl
from typing import Any, Awaitable, Callable, Optional

import pytest
import trio

import wsfast.trio
from wsfast.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from wsfast.http11 import Response

from ..asyncio.helpers import OP_CLOSE, OP_TEXT
from ..retry_logs import ceiling, logged, retries
from .helpers import RawPeer, raw_server, run, server

FAST: dict[str, Any] = {"backoff_initial_delay": 0.01, "backoff_factor": 2.0, "backoff_max_delay": 0.04}


async def accept_and_echo(peer: RawPeer) -> None:
    """Accept the upgrade, echo text frames, answer the close frame."""
    await peer.accept()
    while True:
        opcode, _, payload = await peer.recv()
        await peer.send(opcode, payload)
        if opcode == OP_CLOSE:
            return


async def echo_once(ws: wsfast.trio.WebSocket) -> Any:
    await ws.send("ping")
    return await ws.recv()


async def first_echo(on_connection: Callable[[RawPeer], Awaitable[None]]) -> None:
    """Reconnect to a raw server running ``on_connection`` until a connection echoes."""
    async with trio.open_nursery() as nursery:
        port = await raw_server(nursery, on_connection)
        async with wsfast.trio.connect(f"ws://127.0.0.1:{port}/", **FAST).reconnecting() as connections:
            async for ws in connections:
                assert await echo_once(ws) == "ping"
                break
        nursery.cancel_scope.cancel()


async def refusing_socket() -> trio.socket.SocketType:
    """A socket bound to a free port and not listening: connections to it
    are refused until ``listen()``."""
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    return sock


async def until(condition: Any) -> None:
    while not condition():
        await trio.sleep(0.005)


def test_server_down_then_up(caplog: pytest.LogCaptureFixture) -> None:
    async def test() -> None:
        sock = await refusing_socket()
        uri = f"ws://127.0.0.1:{sock.getsockname()[1]}/"

        async def come_up_after_failures() -> None:
            await until(lambda: len(retries(caplog)) >= 4)
            sock.listen()
            await trio.serve_listeners(handle, [trio.SocketListener(sock)])

        async def handle(stream: trio.SocketStream) -> None:
            await accept_and_echo(RawPeer(stream, False))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(come_up_after_failures)
            async with wsfast.trio.connect(uri, **FAST).reconnecting() as connections:
                async for ws in connections:
                    assert await echo_once(ws) == "ping"
                    break
            assert ws.close_code == 1000
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(test)
    logged = retries(caplog)
    assert len(logged) >= 4
    for number, (attempt, reason, delay) in enumerate(logged, 1):
        assert attempt == number
        assert "OSError: all attempts to connect to 127.0.0.1:" in reason
        assert 0 <= delay <= ceiling(attempt)


def test_503_then_101_and_retry_after_within_max_delay(caplog: pytest.LogCaptureFixture) -> None:
    requests: list[bytes] = []

    async def flaky(peer: RawPeer) -> None:
        if len(requests) == 2:
            requests.append(b"accepted")
            await accept_and_echo(peer)
            return
        requests.append(await peer.read_until(b"\r\n\r\n"))
        retry_after = "Retry-After: 30\r\n" if len(requests) == 2 else ""
        await peer.stream.send_all(
            f"HTTP/1.1 503 Service Unavailable\r\n{retry_after}Content-Length: 4\r\n\r\nbusy".encode()
        )

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(lambda: first_echo(flaky))
    assert len(requests) == 3
    (first, reason1, delay1), (second, reason2, delay2) = retries(caplog)
    assert (first, second) == (1, 2)
    assert "HTTP 503" in reason1 and "HTTP 503" in reason2
    assert 0 <= delay1 <= 0.01
    assert delay2 == 0.04  # Retry-After: 30, within backoff_max_delay


@pytest.mark.parametrize("status", [400, 401, 403, 404, 501])
def test_refusals_are_not_retried(caplog: pytest.LogCaptureFixture, status: int) -> None:
    attempts = []

    async def refuse(peer: RawPeer) -> None:
        attempts.append(await peer.read_until(b"\r\n\r\n"))
        await peer.stream.send_all(f"HTTP/1.1 {status} No\r\nContent-Length: 0\r\n\r\n".encode())

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, refuse)
            with pytest.raises(InvalidHandshake) as info:
                async with wsfast.trio.connect(f"ws://127.0.0.1:{port}/", **FAST).reconnecting() as connections:
                    async for _ in connections:
                        raise AssertionError("connected")
            response = info.value.response
            assert isinstance(response, Response) and response.status == status
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(test)
    assert len(attempts) == 1 and retries(caplog) == []


def test_invalid_uri_and_certificate_failure_are_not_retried(
    caplog: pytest.LogCaptureFixture, server_ssl: ssl.SSLContext
) -> None:
    async def test() -> None:
        with pytest.raises(InvalidURI):
            async with wsfast.trio.connect("http://127.0.0.1:1/", **FAST).reconnecting() as connections:
                async for _ in connections:
                    raise AssertionError("connected")
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, ssl=server_ssl)
            untrusting = ssl.create_default_context()  # does not trust the test CA
            uri = f"wss://127.0.0.1:{srv.port}/"
            with pytest.raises(ssl.SSLCertVerificationError):
                async with wsfast.trio.connect(uri, ssl=untrusting, **FAST).reconnecting() as connections:
                    async for _ in connections:
                        raise AssertionError("connected")
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(test)
    assert retries(caplog) == []


def test_eof_during_the_handshake_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    seen = []

    async def hang_up_first(peer: RawPeer) -> None:
        seen.append(1)
        if len(seen) == 1:
            await peer.read_until(b"\r\n\r\n")
            await peer.stream.send_all(b"HTTP/1.1 101 Switch")  # half a response, then EOF
        else:
            await accept_and_echo(peer)

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(lambda: first_echo(hang_up_first))
    ((attempt, reason, delay),) = retries(caplog)
    assert "connection closed during the opening handshake" in reason
    assert attempt == 1 and 0 <= delay <= 0.01


def test_timeouts_are_retried_up_to_max_attempts(caplog: pytest.LogCaptureFixture) -> None:
    async def silent(peer: RawPeer) -> None:
        await trio.sleep_forever()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, silent)
            uri = f"ws://127.0.0.1:{port}/"
            with pytest.raises(wsfast.trio.OpenTimeoutError):
                connecting = wsfast.trio.connect(uri, open_timeout=0.05, max_attempts=3, **FAST)
                async with connecting.reconnecting() as connections:
                    async for _ in connections:
                        raise AssertionError("connected")
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(test)
    logged = retries(caplog)
    assert [attempt for attempt, _, _ in logged] == [1, 2]
    assert all("OpenTimeoutError: timed out opening ws://127.0.0.1:" in reason for _, reason, _ in logged)
    assert all(0 <= delay <= ceiling(attempt) for attempt, _, delay in logged)
    (gave_up,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "attempt 3 failed (OpenTimeoutError: timed out" in gave_up.getMessage()
    assert gave_up.getMessage().endswith("giving up (max_attempts=3)")


def test_max_attempts_and_should_retry(caplog: pytest.LogCaptureFixture) -> None:
    async def test() -> None:
        with await refusing_socket() as sock:
            uri = f"ws://127.0.0.1:{sock.getsockname()[1]}/"
            with pytest.raises(OSError):
                async with wsfast.trio.connect(uri, max_attempts=4, **FAST).reconnecting() as connections:
                    async for _ in connections:
                        raise AssertionError("connected")
            assert [attempt for attempt, _, _ in retries(caplog)] == [1, 2, 3]
            caplog.clear()
            judged: list[Exception] = []

            def never(exc: Exception) -> bool:
                judged.append(exc)
                return False

            with pytest.raises(OSError):
                async with wsfast.trio.connect(uri, should_retry=never, **FAST).reconnecting() as connections:
                    async for _ in connections:
                        raise AssertionError("connected")
            assert len(judged) == 1 and retries(caplog) == []

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(test)


def test_dropped_connection_reconnects_and_backoff_resets(caplog: pytest.LogCaptureFixture) -> None:
    connections_seen = []

    async def drop_first(peer: RawPeer) -> None:
        connections_seen.append(peer)
        if len(connections_seen) == 1:
            await peer.accept()
            await peer.send(OP_TEXT, b"first")
            return  # the stream closes: dropped mid-session, no close frame
        await accept_and_echo(peer)

    async def test() -> list[Any]:
        received: list[Any] = []
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, drop_first)
            async with wsfast.trio.connect(f"ws://127.0.0.1:{port}/", **FAST).reconnecting() as connections:
                async for ws in connections:
                    try:
                        if not received:
                            received.append(await ws.recv())
                            await ws.recv()  # the connection drops here
                        received.append(await echo_once(ws))
                        break
                    except ConnectionClosed:
                        continue  # the documented pattern: go on with a new connection
            nursery.cancel_scope.cancel()
        assert received == ["first", "ping"]
        return received

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(test)
    assert len(connections_seen) == 2
    ((_, code, delay),) = logged(caplog, logging.INFO, "reconnecting in")
    assert code == 1006
    assert 0 <= delay <= 0.01  # the initial delay: reset
    assert retries(caplog) == []


@pytest.mark.parametrize("leave", ["break", "raise", "cancel"])
def test_leaving_the_block_closes_the_connection(leave: str) -> None:
    codes: list[Optional[int]] = []

    async def handler(ws: wsfast.trio.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)
        codes.append(ws.close_code)

    async def body(uri: str) -> wsfast.trio.WebSocket:
        with trio.CancelScope() as scope:
            async with wsfast.trio.connect(uri, **FAST).reconnecting() as connections:
                async for ws in connections:
                    await echo_once(ws)
                    if leave == "raise":
                        raise LookupError(ws)
                    if leave == "cancel":
                        scope.cancel()
                        await trio.sleep_forever()
                    break
        return ws

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, handler)
            try:
                ws = await body(f"ws://127.0.0.1:{srv.port}/")
            except LookupError as exc:
                ws = exc.args[0]
            await until(lambda: codes)
            expected = 1001 if leave == "cancel" else 1000
            assert (codes, ws.close_code) == ([expected], expected)
            nursery.cancel_scope.cancel()

    run(test)


def test_continue_closes_the_connection_and_opens_another(caplog: pytest.LogCaptureFixture) -> None:
    codes: list[Optional[int]] = []

    async def handler(ws: wsfast.trio.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)
        codes.append(ws.close_code)

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, handler)
            count = 0
            async with wsfast.trio.connect(f"ws://127.0.0.1:{srv.port}/", **FAST).reconnecting() as connections:
                async for ws in connections:
                    count += 1
                    await echo_once(ws)
                    if count == 3:
                        break
            await until(lambda: len(codes) == 3)
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(test)
    assert codes == [1000, 1000, 1000]
    assert [args[1] for args in logged(caplog, logging.INFO, "reconnecting in")] == [1000, 1000]


def test_misuse_fails_clearly() -> None:
    async def test() -> None:
        with pytest.raises(TypeError, match=r"async with connect\(uri\).reconnecting\(\) as connections"):
            async for _ in wsfast.trio.connect("ws://127.0.0.1:1/"):
                raise AssertionError("connected")
        async with trio.open_nursery() as nursery:
            with pytest.raises(TypeError, match="opens a nursery of its own"):
                async with wsfast.trio.connect("ws://127.0.0.1:1/", nursery=nursery).reconnecting():
                    raise AssertionError("entered")
        loop = wsfast.trio.connect("ws://127.0.0.1:1/").reconnecting()
        with pytest.raises(RuntimeError, match="iterate within async with"):
            await loop.__anext__()
        with pytest.raises(ValueError, match="factor must be 1 or more"):
            wsfast.trio.connect("ws://127.0.0.1:1/", backoff_factor=0.5)

    run(test)
