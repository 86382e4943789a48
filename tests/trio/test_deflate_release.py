"""wsfast.trio frees an idle connection's permessage-deflate state at its
keepalive ticks (:meth:`Connection.release_idle_memory`), on both ends, and
the connection goes on compressing with context takeover."""

from __future__ import annotations

import random

import trio

import wsfast.trio

from .helpers import run, server

NOISE = random.Random(15).randbytes(1000).hex()


def released(ws: wsfast.trio.WebSocket) -> bool:
    deflate = ws.conn.deflate
    assert deflate is not None
    return deflate._compressor is None and deflate._decompressor is None


def test_idle_connections_release_their_zlib_state_at_the_keepalive_tick() -> None:
    async def test() -> None:
        handlers: list[wsfast.trio.WebSocket] = []

        async def echo(ws: wsfast.trio.WebSocket) -> None:
            handlers.append(ws)
            async for message in ws:
                await ws.send(message)

        async with trio.open_nursery() as nursery:
            srv = await server(nursery, echo, ping_interval=0.02, ping_timeout=5)
            async with wsfast.trio.connect(f"ws://127.0.0.1:{srv.port}/", ping_interval=0.02, ping_timeout=5) as ws:
                for i in range(4):
                    message = f'{{"i":{i},"noise":"{NOISE}"}}'
                    await ws.send(message)
                    assert await ws.recv() == message
                    (peer,) = handlers
                    # Two ticks without a message: both ends free their zlib
                    # objects (run() bounds the wait); the next message refers
                    # back across the release, both ways.
                    while not (released(ws) and released(peer)):
                        await trio.sleep(0.005)
                    assert ws.conn.deflate is not None and len(ws.conn.deflate._chistory or b"") > len(NOISE)
                assert ws.conn.failure is None and peer.conn.failure is None
            nursery.cancel_scope.cancel()

    run(test)
