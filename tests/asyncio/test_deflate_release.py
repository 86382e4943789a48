"""wsfast.asyncio frees an idle connection's permessage-deflate state at its
keepalive ticks (:meth:`Connection.release_idle_memory`), on both ends
(``serve`` and ``connect``), and the connection goes on compressing with
context takeover."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from wsfast.asyncio import WebSocket, connect, serve

from .helpers import eventually, run

NOISE = random.Random(15).randbytes(1000).hex()


def released(ws: WebSocket) -> bool:
    deflate = ws.transport.conn.deflate
    assert deflate is not None
    return deflate._compressor is None and deflate._decompressor is None


def test_idle_connections_release_their_zlib_state_at_the_keepalive_tick() -> None:
    handlers: list[WebSocket] = []

    async def echo(ws: WebSocket) -> None:
        handlers.append(ws)
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        options: dict[str, Any] = {"ping_interval": 0.02, "ping_timeout": 5}
        async with serve(echo, "127.0.0.1", 0, **options) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/", **options) as ws:
                for i in range(3):
                    message = f'{{"i":{i},"noise":"{NOISE}"}}'
                    await ws.send(message)
                    assert await asyncio.wait_for(ws.recv(), 5) == message
                    (peer,) = handlers
                    # Two ticks without a message: both ends free their zlib objects.
                    await eventually(lambda: released(ws) and released(handlers[0]), timeout=5)
                    deflate = ws.transport.conn.deflate
                    assert deflate is not None and len(deflate._chistory or b"") > len(NOISE)
                # The next message refers back across the release, both ways.
                await ws.send(f'{{"i":3,"noise":"{NOISE}"}}')
                assert await asyncio.wait_for(ws.recv(), 5) == f'{{"i":3,"noise":"{NOISE}"}}'
                assert ws.transport.conn.failure is None and peer.transport.conn.failure is None

    run(main())


def test_without_keepalive_nothing_is_released() -> None:
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws:
                message = f'{{"noise":"{NOISE}"}}'
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), 5) == message
                await asyncio.sleep(0.1)  # several would-be ticks of the other test: nothing sweeps
                assert not released(ws)

    run(main())
