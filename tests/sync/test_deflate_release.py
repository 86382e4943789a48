"""wsfast.sync frees an idle connection's permessage-deflate state at its
keepalive ticks (:meth:`Connection.release_idle_memory`), on both ends, and
the connection goes on compressing with context takeover."""

from __future__ import annotations

import random
import threading
from typing import Any

from wsfast.sync import WebSocket, connect

from .helpers import TIMEOUT, running, uri, wait_until

NOISE = random.Random(15).randbytes(1000).hex()


def released(ws: WebSocket) -> bool:
    deflate = ws.conn.deflate
    assert deflate is not None
    return deflate._compressor is None and deflate._decompressor is None


def test_idle_connections_release_their_zlib_state_at_the_keepalive_tick() -> None:
    handlers: list[WebSocket] = []
    ready = threading.Event()

    def echo(ws: WebSocket) -> None:
        handlers.append(ws)
        ready.set()
        for message in ws:
            ws.send(message)

    options: dict[str, Any] = {"ping_interval": 0.02, "ping_timeout": TIMEOUT}
    with running(echo, **options) as server:
        with connect(uri(server), **options) as ws:
            for i in range(3):
                message = f'{{"i":{i},"noise":"{NOISE}"}}'
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
                assert ready.wait(TIMEOUT)
                (peer,) = handlers
                # Two ticks without a message: both ends free their zlib objects.
                wait_until(lambda peer=peer: released(ws) and released(peer))  # type: ignore[misc]
                assert ws.conn.deflate is not None and len(ws.conn.deflate._chistory or b"") > len(NOISE)
            # The next message refers back across the release, both ways.
            ws.send(f'{{"i":3,"noise":"{NOISE}"}}')
            assert ws.recv(timeout=TIMEOUT) == f'{{"i":3,"noise":"{NOISE}"}}'
            assert ws.conn.failure is None and peer.conn.failure is None


def test_without_keepalive_nothing_is_released() -> None:
    with running(ping_interval=None) as server:
        with connect(uri(server), ping_interval=None) as ws:
            message = f'{{"noise":"{NOISE}"}}'
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
            # Several would-be ticks of the other test: nothing sweeps.
            threading.Event().wait(0.1)
            assert not released(ws)
