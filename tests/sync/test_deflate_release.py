"""wsfast.sync frees an idle connection's permessage-deflate state at its
keepalive ticks (:meth:`Connection.release_idle_memory`), on both ends, and
the connection goes on compressing with context takeover."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

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


# ---------------------------------------------------------------- websockets over a socket


def _release(ws: WebSocket) -> None:
    """The keepalive's sweep, twice (the first call only clears the flag),
    under the connection's lock as the housekeeping thread calls it."""
    with ws._lock:
        ws.conn.release_idle_memory()
        ws.conn.release_idle_memory()
    assert released(ws)


def test_release_between_every_message_against_websockets_server() -> None:
    """A websockets server (its own permessage-deflate, context kept for the
    whole connection, 15-bit windows unless asked) echoes; the wsfast client
    frees its zlib state after every message sent and every message
    received, and every echo comes back intact."""
    ws_server = pytest.importorskip("websockets.sync.server")

    def echo(conn: Any) -> None:
        for message in conn:
            conn.send(message)

    server = ws_server.serve(echo, "127.0.0.1", 0, ping_interval=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with connect(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/", ping_interval=None) as ws:
            assert ws.conn.deflate is not None and not ws.conn.deflate.compress_reset
            for i in range(10):
                message = f'{{"i":{i},"noise":"{NOISE}"}}'
                ws.send(message)
                _release(ws)
                assert ws.recv(timeout=TIMEOUT) == message
                _release(ws)
    finally:
        server.shutdown()
        thread.join(TIMEOUT)


def test_release_between_every_message_against_websockets_client() -> None:
    ws_client = pytest.importorskip("websockets.sync.client")
    handlers: list[WebSocket] = []

    def echo(ws: WebSocket) -> None:
        handlers.append(ws)
        for message in ws:
            _release(ws)
            ws.send(message)
            _release(ws)

    with running(echo, ping_interval=None) as server:
        with ws_client.connect(uri(server), open_timeout=TIMEOUT, close_timeout=TIMEOUT) as client:
            for i in range(10):
                message = f'{{"i":{i},"noise":"{NOISE}"}}'
                client.send(message)
                assert client.recv(timeout=TIMEOUT) == message
        (peer,) = handlers
        assert peer.conn.deflate is not None and not peer.conn.deflate.decompress_reset
        assert peer.conn.failure is None
