"""The WebSocket work per message of wsfast's server path, with the socket
taken away.

A :class:`~wsfast.asyncio.transport.WebSocketTransport` of an open server
connection gets a fake asyncio transport whose ``write`` only counts; each
round feeds one masked client frame to ``buffer_updated`` (as the event loop
does after a read) and the echo listener answers it. What a server pays per
message on top of the raw TCP echo is exactly this (plus the event loop's
dispatch to a Python callback, which the raw echo pays too). Layers, each
timed alone over the same frames:

* ``FrameReader.feed``: the codec: parse, unmask, payload ``bytes``.
* ``build_frame``: the codec: the reply frame.
* ``Connection.receive_data`` + ``send_binary``: the sans-I/O protocol.
* ``buffer_updated``: the whole asyncio path, listener call and write.

Run: ``PYTHONPATH=src python bench/server_path.py [--size 64] [--rounds 200000]``
(``WSFAST_PURE_PYTHON=1`` for the fallback codec).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from typing import Any, Callable, cast

import wsfast
from wsfast.asyncio import Listener, create_server
from wsfast.asyncio.transport import WebSocketTransport
from wsfast.benchmark._common import frame, payload, upgrade_request
from wsfast.codec import OP_BINARY, FrameReader, build_frame
from wsfast.events import BinaryMessage
from wsfast.protocol import ServerConnection


class _FakeTransport:
    """Just enough of an asyncio transport: writes are counted, not sent."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high: int = 0, low: int = 0) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _Echo(Listener):
    __slots__ = ("ws",)

    def on_open(self, ws: WebSocketTransport) -> None:
        self.ws = ws

    def on_binary(self, data: bytes) -> None:
        self.ws.send_binary(data)


def _time(label: str, rounds: int, step: Callable[[], object]) -> float:
    for _ in range(min(rounds, 1000)):
        step()
    gc.collect()
    best = float("inf")
    for _ in range(5):
        start = time.process_time_ns()  # CPU time: a shared machine's other jobs do not count
        for _ in range(rounds):
            step()
        best = min(best, (time.process_time_ns() - start) / rounds)
    print(f"{best:8.0f} ns  {label}")
    return best


async def _main(size: int, rounds: int) -> None:
    message = payload(size)
    request_frame = frame(message, masked=True)
    print(f"wsfast {wsfast.__version__}, {wsfast.IMPLEMENTATION} codec, {size} B binary echo, best of 5 x {rounds:,}")

    reader = FrameReader(None, True)
    _time("FrameReader.feed (codec: parse + unmask)", rounds, lambda: reader.feed(request_frame))
    _time("build_frame (codec: the reply)", rounds, lambda: build_frame(OP_BINARY, message, True, 0, None))

    server = await create_server(lambda ws, request: _Echo(), "127.0.0.1", 0, deflate=None, ping_interval=None)
    ws = server._protocol()
    transport = _FakeTransport()
    ws.connection_made(transport)  # type: ignore[arg-type]
    head = upgrade_request("127.0.0.1", 1)
    ws._view[: len(head)] = head
    ws.buffer_updated(len(head))
    assert isinstance(ws.listener, _Echo), "the handshake did not complete"
    conn = ws.conn
    assert isinstance(conn, ServerConnection)
    conn.sink = None  # events instead of listener calls, for the protocol layer alone

    def protocol_layer() -> None:
        for event in conn.receive_data(request_frame):
            conn.send_binary(cast(BinaryMessage, event).data)

    _time("Connection.receive_data + send_binary (sans-I/O)", rounds, protocol_layer)
    conn.sink = ws.listener
    view = ws._view
    before = transport.written
    if len(request_frame) <= len(view):
        n = len(request_frame)
        view[:n] = request_frame
        _time("WebSocketTransport.buffer_updated (listener echo + write)", rounds, lambda: ws.buffer_updated(n))
    else:  # as the event loop does: one read per buffer-full, each copied into the shared buffer

        def reads() -> None:
            for start in range(0, len(request_frame), len(view)):
                chunk = request_frame[start : start + len(view)]
                view[: len(chunk)] = chunk
                ws.buffer_updated(len(chunk))

        chunk_view = memoryview(request_frame)[: len(view)]
        _time(
            "copying the frame into the read buffer (the test's own cost)",
            rounds,
            lambda: view.__setitem__(slice(0, len(view)), chunk_view),
        )
        _time(f"buffer_updated x {-(-len(request_frame) // len(view))} reads (listener echo + write)", rounds, reads)
    assert transport.written > before
    ws._cancel_timer()
    server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(_main(args.size, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
