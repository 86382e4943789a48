"""The awaitable API is as strict as the callback API when the peer breaks
the protocol: the messages received before the error reach the reader, the
replies it sends to them go out before the close frame, and the close frame
still goes promptly when the reader does not read (``fail_timeout``).

These are the Autobahn cases 3.2-3.4, 4.1.3-5, 4.2.3-5 and 5.15 in small: a
valid message, then a frame that fails the connection, in one TCP segment.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from wsfast.asyncio import WebSocket, connect, serve
from wsfast.exceptions import ConnectionClosed, ConnectionClosedError

from .helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    RawClient,
    echo,
    eventually,
    frame,
    parse_close,
    port_of,
    raw_accept,
    raw_server,
    read_frame,
    run,
)


def bad_frames(mask: bool = True) -> dict[str, tuple[bytes, int]]:
    """Frames that fail the connection, with the close code each must give."""
    rsv1 = bytearray(frame(OP_TEXT, b"x", mask=mask))
    rsv1[0] |= 0x40  # RSV1 without an extension
    opcode = bytearray(frame(OP_BINARY, b"", mask=mask))
    opcode[0] = (opcode[0] & 0xF0) | 0x3  # a reserved opcode
    return {
        "rsv1": (bytes(rsv1), 1002),
        "reserved-opcode": (bytes(opcode), 1002),
        "invalid-utf8": (frame(OP_TEXT, b"\xff\xfe", mask=mask), 1007),
        "orphan-continuation": (frame(0, b"y", mask=mask), 1002),
    }


async def frames_until_close(client: RawClient) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    while True:
        opcode, _, payload = await client.recv(5)
        frames.append((opcode, payload))
        if opcode == OP_CLOSE:
            return frames


@pytest.mark.parametrize("bad", list(bad_frames()))
def test_server_echoes_messages_before_a_protocol_error(bad: str) -> None:
    """Two messages and a bad frame in one write: both echoes, then the close
    frame with the failure's code (today the close frame went first)."""
    data, code = bad_frames()[bad]

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, deflate=None, ping_interval=None) as server:
            client = await RawClient.connect(server.port)
            client.writer.write(frame(OP_TEXT, b"hello") + frame(OP_BINARY, b"\x00\x01") + data)
            frames = await frames_until_close(client)
            assert frames[:2] == [(OP_TEXT, b"hello"), (OP_BINARY, b"\x00\x01")]
            assert len(frames) == 3 and parse_close(frames[2][1])[0] == code
            assert await client.at_eof(), "the server did not close the TCP connection"
            client.close()

    run(main())


def test_client_echoes_messages_before_a_protocol_error() -> None:
    """The same through connect: the client's echo goes before its close frame."""
    data, code = bad_frames(mask=False)["rsv1"]
    received: list[tuple[int, bytes]] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_accept(reader, writer, extra=frame(OP_TEXT, b"hi", mask=False) + data)
        try:
            while True:
                opcode, _, payload = await asyncio.wait_for(read_frame(reader), 5)
                received.append((opcode, payload))
                if opcode == OP_CLOSE:
                    break
        finally:
            writer.close()

    async def main() -> None:
        server = await raw_server(on_connection)
        async with server:
            async with connect(f"ws://127.0.0.1:{port_of(server)}", deflate=None, ping_interval=None) as ws:
                with pytest.raises(ConnectionClosedError):
                    async for message in ws:
                        await ws.send(message)
            assert received[0] == (OP_TEXT, b"hi")
            assert received[1][0] == OP_CLOSE and parse_close(received[1][1])[0] == code

    run(main())


def test_failure_is_prompt_when_the_handler_does_not_read() -> None:
    """A handler that never reads: the close frame goes after fail_timeout,
    not later, and the messages before the error are still readable."""
    state: dict[str, Any] = {}
    data, code = bad_frames()["rsv1"]

    async def handler(ws: WebSocket) -> None:
        state["ws"] = ws
        await ws.wait_closed()  # never reads

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, deflate=None, fail_timeout=0.3) as server:
            client = await RawClient.connect(server.port)
            client.writer.write(frame(OP_TEXT, b"unread") + data)
            started = time.monotonic()
            frames = await frames_until_close(client)
            elapsed = time.monotonic() - started
            assert frames == [(OP_CLOSE, frames[0][1])] and parse_close(frames[0][1])[0] == code
            assert 0.2 < elapsed < 2.0, elapsed
            assert await client.at_eof()
            client.close()
            ws: WebSocket = state["ws"]
            assert await ws.recv() == "unread"
            with pytest.raises(ConnectionClosedError):
                await ws.recv()

    run(main())


def test_handler_that_took_a_message_and_returns() -> None:
    """The handler takes the message, answers, and returns instead of coming
    back to recv: its return releases the failure's close frame (with the
    failure's code, not 1000)."""

    async def handler(ws: WebSocket) -> None:
        message = await ws.recv()
        await asyncio.sleep(0.05)  # busy with it: the error arrives meanwhile
        await ws.send(f"done {message}")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, deflate=None, fail_timeout=5) as server:
            client = await RawClient.connect(server.port)
            client.writer.write(frame(OP_TEXT, b"job"))
            await asyncio.sleep(0.01)
            client.writer.write(bad_frames()["rsv1"][0])
            started = time.monotonic()
            frames = await frames_until_close(client)
            assert frames[0] == (OP_TEXT, b"done job")
            assert parse_close(frames[1][1])[0] == 1002
            assert time.monotonic() - started < 2
            client.close()

    run(main())


def test_fail_timeout_zero_closes_at_once() -> None:
    """fail_timeout=0: the close frame goes with the read that failed; the
    message before the error is still delivered to recv."""
    state: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        await asyncio.sleep(0.1)
        state["message"] = await ws.recv()
        try:
            await ws.send("too late")
        except ConnectionClosed as exc:
            state["error"] = exc

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, deflate=None, fail_timeout=0) as server:
            client = await RawClient.connect(server.port)
            client.writer.write(frame(OP_TEXT, b"first") + bad_frames()["rsv1"][0])
            frames = await frames_until_close(client)
            assert len(frames) == 1
            client.close()
            await eventually(lambda: "error" in state)
            assert state["message"] == "first"
            assert isinstance(state["error"], ConnectionClosed)

    run(main())


def test_close_during_a_held_failure_sends_the_failure_code() -> None:
    """ws.close() while a failure is held sends the failure's close frame."""
    state: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        state["message"] = await ws.recv()
        await ws.send("reply")
        await ws.close(1000)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, deflate=None, fail_timeout=5) as server:
            client = await RawClient.connect(server.port)
            client.writer.write(frame(OP_TEXT, b"a") + bad_frames()["invalid-utf8"][0])
            frames = await frames_until_close(client)
            assert frames[0] == (OP_TEXT, b"reply")
            assert parse_close(frames[1][1])[0] == 1007
            client.close()

    run(main())
