"""Helpers shared by the tests of wsfast.trio.

Everything runs on 127.0.0.1 with port 0, and every test is bounded with
:func:`trio.fail_after` (:func:`run`). :class:`RawPeer` is a WebSocket peer
written by hand on a Trio stream, with its own frame parser (independent of
the codec under test), so that a test controls exactly what the peer does.
"""

from __future__ import annotations

import struct
from functools import partial
from typing import Any, Awaitable, Callable, Optional

import trio

import wsfast.trio

from ..asyncio.helpers import accept_key, frame, upgrade_request

__all__ = ["run", "echo", "server", "RawPeer", "raw_server"]


def run(test: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> None:
    """Run ``test()`` under Trio; fail if it takes more than ``timeout`` seconds."""

    async def bounded() -> None:
        with trio.fail_after(timeout):
            await test()

    trio.run(bounded)


async def echo(ws: wsfast.trio.WebSocket) -> None:
    """A ``serve`` handler that sends every message back."""
    async for message in ws:
        await ws.send(message)


async def server(nursery: trio.Nursery, handler: Any = echo, **kwargs: Any) -> wsfast.trio.Server:
    """Start ``wsfast.trio.serve`` on 127.0.0.1 in ``nursery``."""
    started: wsfast.trio.Server = await nursery.start(_serve, handler, kwargs)
    return started


async def _serve(handler: Any, kwargs: dict[str, Any], task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    await wsfast.trio.serve(handler, "127.0.0.1", 0, task_status=task_status, **kwargs)


class RawPeer:
    """A hand-written WebSocket peer on a Trio stream (no compression)."""

    def __init__(self, stream: trio.abc.Stream, mask: bool) -> None:
        self.stream = stream
        self.mask = mask
        self.buffer = bytearray()
        self.head = b""

    @classmethod
    async def connect(cls, port: int, path: str = "/", extra: str = "") -> RawPeer:
        """A client: connect and send the upgrade request; read the response head."""
        peer = cls(await trio.open_tcp_stream("127.0.0.1", port), mask=True)
        request, key = upgrade_request(path, extra=extra)
        await peer.stream.send_all(request)
        peer.head = await peer.read_until(b"\r\n\r\n")
        if peer.status == 101:
            assert accept_key(key).encode() in peer.head
        return peer

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    async def accept(self) -> bytes:
        """A server: read the upgrade request and accept it; return its head."""
        head = await self.read_until(b"\r\n\r\n")
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.decode("latin-1").split("\r\n")
            if line.lower().startswith("sec-websocket-key:")
        )
        await self.stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
        )
        return head

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not await self._fill():
                raise EOFError("connection closed")
        end = self.buffer.index(marker) + len(marker)
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        return head

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not await self._fill():
                raise EOFError("connection closed")
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def send(self, opcode: int, payload: bytes = b"", fin: bool = True) -> None:
        await self.stream.send_all(frame(opcode, payload, fin, mask=self.mask))

    async def recv(self) -> tuple[int, bool, bytes]:
        """One frame: ``(opcode, fin, payload)``, unmasked."""
        b0, b1 = await self.read_exactly(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.read_exactly(8))
        key = await self.read_exactly(4) if b1 & 0x80 else None
        payload = await self.read_exactly(length)
        if key is not None:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, bool(b0 & 0x80), payload

    async def recv_until(self, opcode: int) -> tuple[int, bool, bytes]:
        """Skip frames until one with ``opcode``."""
        while True:
            got = await self.recv()
            if got[0] == opcode:
                return got

    async def at_eof(self) -> bool:
        """Read and drop everything until EOF."""
        try:
            while await self.stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True


async def raw_server(
    nursery: trio.Nursery, on_connection: Callable[[RawPeer], Awaitable[None]], mask: bool = False
) -> int:
    """A TCP server on 127.0.0.1 running ``on_connection(peer)``; its port."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await on_connection(RawPeer(stream, mask))

    listeners: Optional[list[trio.SocketListener]] = await nursery.start(
        partial(trio.serve_tcp, host="127.0.0.1"), handle, 0
    )
    assert listeners is not None
    return int(listeners[0].socket.getsockname()[1])
