"""``async for ws in connect(...)``: reconnecting with backoff, over real
sockets on 127.0.0.1. Delays are checked as computed (logged), never against
the wall clock; the backoff settings are small so that every test is quick."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any, Optional

import pytest

from wsfast.asyncio import WebSocket, connect, serve
from wsfast.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI, NegotiationError

from ..retry_logs import ceiling, retries
from .helpers import OP_CLOSE, accept_key, eventually, frame, port_of, raw_accept, raw_server, read_frame, run

FAST = {"backoff_initial_delay": 0.01, "backoff_factor": 2.0, "backoff_max_delay": 0.04}


def reserved_port() -> socket.socket:
    """A socket bound to a free port and not listening: connections to it are
    refused until ``listen()``, then it can be given to ``serve(sock=...)``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def accept_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept the upgrade, then answer the client's close frame."""
    await raw_accept(reader, writer)
    opcode, _, payload = await read_frame(reader)
    assert opcode == OP_CLOSE
    writer.write(frame(OP_CLOSE, payload, mask=False))
    await writer.drain()


async def echo_once(ws: WebSocket) -> Any:
    await ws.send("ping")
    return await ws.recv()


def test_server_down_then_up(caplog: pytest.LogCaptureFixture) -> None:
    sock = reserved_port()
    uri = f"ws://127.0.0.1:{sock.getsockname()[1]}/"

    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> Any:
        async def come_up_after_failures() -> Any:
            await eventually(lambda: len(retries(caplog)) >= 4, timeout=5)
            sock.listen()
            return await serve(echo, sock=sock)

        starting = asyncio.ensure_future(come_up_after_failures())
        async for ws in connect(uri, **FAST):  # type: ignore[arg-type]
            reply = await echo_once(ws)
            break
        server = await starting
        server.close()
        await server.wait_closed()
        return reply

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        assert run(main()) == "ping"
    logged = retries(caplog)
    assert len(logged) >= 4
    for number, (attempt, reason, delay) in enumerate(logged, 1):
        assert attempt == number
        assert "ConnectionRefusedError" in reason
        assert 0 <= delay <= ceiling(attempt)
    assert logged[-1][0] == len(logged)


def test_503_then_101_and_retry_after_within_max_delay(caplog: pytest.LogCaptureFixture) -> None:
    requests = []

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n") if len(requests) < 2 else None)
        if len(requests) == 1:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
        elif len(requests) == 2:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n")
        else:
            await accept_and_close(reader, writer)
        await writer.drain()
        writer.close()

    async def main() -> Optional[int]:
        server = await raw_server(flaky)
        async for ws in connect(f"ws://127.0.0.1:{port_of(server)}/", **FAST):  # type: ignore[arg-type]
            await ws.close()
            break
        server.close()
        return ws.close_code

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(main())
    assert len(requests) == 3
    (first, reason1, delay1), (second, reason2, delay2) = retries(caplog)
    assert (first, second) == (1, 2)
    assert "HTTP 503" in reason1 and "HTTP 503" in reason2
    assert 0 <= delay1 <= 0.01
    assert delay2 == 0.04  # Retry-After: 30, within backoff_max_delay


@pytest.mark.parametrize("status", [400, 401, 403, 404, 501])
def test_refusals_are_not_retried(caplog: pytest.LogCaptureFixture, status: int) -> None:
    attempts = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(f"HTTP/1.1 {status} No\r\nContent-Length: 0\r\n\r\n".encode())
        writer.close()

    async def main() -> InvalidHandshake:
        server = await raw_server(refuse)
        try:
            with pytest.raises(InvalidHandshake) as info:
                async for _ in connect(f"ws://127.0.0.1:{port_of(server)}/", **FAST):  # type: ignore[arg-type]
                    raise AssertionError("connected")
            return info.value
        finally:
            server.close()

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        error = run(main())
    assert error.response.status == status  # type: ignore[attr-defined]
    assert len(attempts) == 1 and retries(caplog) == []


def test_404_from_a_wsfast_server_is_not_retried() -> None:
    async def main() -> None:
        async with serve({"/here": echo_once}, "127.0.0.1", 0) as server:
            with pytest.raises(InvalidHandshake, match="HTTP 404"):
                async for _ in connect(f"ws://127.0.0.1:{server.port}/elsewhere", **FAST):  # type: ignore[arg-type]
                    raise AssertionError("connected")

    run(main())


def test_negotiation_refusal_is_not_retried() -> None:
    attempts = []

    async def wrong_subprotocol(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.append(1)
        head = await reader.readuntil(b"\r\n\r\n")
        (key,) = [line[18:].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:")]
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key.decode()).encode() + b"\r\n"
            b"Sec-WebSocket-Protocol: never-offered\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await raw_server(wrong_subprotocol)
        with pytest.raises(NegotiationError, match="never-offered"):
            async for _ in connect(f"ws://127.0.0.1:{port_of(server)}/", subprotocols=["chat"], **FAST):  # type: ignore[arg-type]
                raise AssertionError("connected")
        server.close()

    run(main())
    assert attempts == [1]


def test_invalid_uri_is_not_retried() -> None:
    async def main() -> None:
        with pytest.raises(InvalidURI):
            async for _ in connect("http://127.0.0.1:1/", **FAST):  # type: ignore[arg-type]
                raise AssertionError("connected")

    run(main())


def test_certificate_verification_failure_is_not_retried(
    caplog: pytest.LogCaptureFixture, server_ssl: ssl.SSLContext
) -> None:
    async def main() -> None:
        async with serve(echo_once, "127.0.0.1", 0, ssl=server_ssl) as server:
            untrusting = ssl.create_default_context()  # does not trust the test CA
            with pytest.raises(ssl.SSLCertVerificationError):
                async for _ in connect(f"wss://127.0.0.1:{server.port}/", ssl=untrusting, **FAST):  # type: ignore[arg-type]
                    raise AssertionError("connected")

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(main())
    assert retries(caplog) == []


def test_eof_during_the_handshake_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    seen = []

    async def hang_up_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        if len(seen) == 1:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 101 Switch")  # half a response, then EOF
        else:
            await accept_and_close(reader, writer)
        writer.close()

    async def main() -> None:
        server = await raw_server(hang_up_first)
        async for ws in connect(f"ws://127.0.0.1:{port_of(server)}/", **FAST):  # type: ignore[arg-type]
            await ws.close()
            break
        server.close()

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(main())
    ((attempt, reason, delay),) = retries(caplog)
    assert "connection closed during the opening handshake" in reason
    assert attempt == 1 and 0 <= delay <= 0.01


def test_timeouts_are_retried_up_to_max_attempts(caplog: pytest.LogCaptureFixture) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def main() -> None:
        server = await raw_server(silent)
        try:
            with pytest.raises(asyncio.TimeoutError):
                uri = f"ws://127.0.0.1:{port_of(server)}/"
                async for _ in connect(uri, open_timeout=0.05, max_attempts=3, **FAST):  # type: ignore[arg-type]
                    raise AssertionError("connected")
        finally:
            server.close()

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(main())
    logged = retries(caplog)
    assert [attempt for attempt, _, _ in logged] == [1, 2]
    assert all("TimeoutError" in reason for _, reason, _ in logged)
    assert all(0 <= delay <= ceiling(attempt) for attempt, _, delay in logged)
    (gave_up,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "attempt 3 failed (TimeoutError); giving up (max_attempts=3)" in gave_up.getMessage()


def test_max_attempts_on_refused_connections(caplog: pytest.LogCaptureFixture) -> None:
    sock = reserved_port()

    async def main() -> None:
        with pytest.raises(ConnectionRefusedError):
            uri = f"ws://127.0.0.1:{sock.getsockname()[1]}/"
            async for _ in connect(uri, max_attempts=4, **FAST):  # type: ignore[arg-type]
                raise AssertionError("connected")

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        run(main())
    sock.close()
    assert [attempt for attempt, _, _ in retries(caplog)] == [1, 2, 3]


def test_dropped_connection_reconnects_and_backoff_resets(caplog: pytest.LogCaptureFixture) -> None:
    connections = []

    async def handler(ws: WebSocket) -> None:
        connections.append(ws)
        if len(connections) == 1:
            await ws.send("first")
            ws.transport.abort()  # dropped mid-session: no close frame
            await ws.wait_closed()
            return
        async for message in ws:
            await ws.send(message)

    async def main() -> list[str]:
        received = []
        async with serve(handler, "127.0.0.1", 0) as server:
            async for ws in connect(f"ws://127.0.0.1:{server.port}/", **FAST):  # type: ignore[arg-type]
                try:
                    if not received:
                        received.append(await ws.recv())
                        await ws.recv()  # the connection drops here
                    received.append(await echo_once(ws))
                    break
                except ConnectionClosed:
                    continue  # the documented pattern: go on with a new connection
        return received

    with caplog.at_level(logging.INFO, logger="wsfast.client"):
        assert run(main()) == ["first", "ping"]
    assert len(connections) == 2
    (reopened,) = [r for r in caplog.records if r.name == "wsfast.client" and "reconnecting in" in r.getMessage()]
    assert reopened.args[1] == 1006  # type: ignore[index]
    assert 0 <= reopened.args[2] <= 0.01  # type: ignore[index]  # the initial delay: reset
    assert retries(caplog) == []


@pytest.mark.parametrize("leave", ["break", "return", "raise"])
def test_leaving_the_loop_closes_the_connection(leave: str) -> None:
    closed: asyncio.Queue[Optional[int]] = asyncio.Queue()

    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)
        closed.put_nowait(ws.close_code)

    async def body(uri: str) -> WebSocket:
        async for ws in connect(uri, **FAST):  # type: ignore[arg-type]
            await echo_once(ws)
            if leave == "return":
                return ws
            if leave == "raise":
                raise LookupError(ws)
            break
        return ws

    async def main() -> tuple[Optional[int], Optional[int]]:
        async with serve(handler, "127.0.0.1", 0) as server:
            try:
                ws = await body(f"ws://127.0.0.1:{server.port}/")
            except LookupError as exc:
                ws = exc.args[0]
            server_code = await asyncio.wait_for(closed.get(), 5)
            await asyncio.wait_for(ws.wait_closed(), 5)
            return server_code, ws.close_code

    assert run(main()) == (1000, 1000)


def test_continue_closes_the_connection_and_opens_another() -> None:
    opened = []
    codes: list[Optional[int]] = []

    async def handler(ws: WebSocket) -> None:
        opened.append(ws)
        async for message in ws:
            await ws.send(message)
        codes.append(ws.close_code)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            count = 0
            async for ws in connect(f"ws://127.0.0.1:{server.port}/", **FAST):  # type: ignore[arg-type]
                count += 1
                await echo_once(ws)
                if count == 3:
                    break
            await eventually(lambda: len(codes) == 3)

    run(main())
    assert len(opened) == 3 and codes == [1000, 1000, 1000]


def test_sock_cannot_reconnect() -> None:
    async def main() -> None:
        with socket.socket() as sock:
            with pytest.raises(ValueError, match="sock= cannot be used"):
                async for _ in connect("ws://127.0.0.1:1/", sock=sock):
                    raise AssertionError("connected")

    run(main())


def test_invalid_backoff_settings_fail_at_once() -> None:
    with pytest.raises(ValueError, match="factor must be 1 or more"):
        connect("ws://127.0.0.1:1/", backoff_factor=0.5)
