"""Helpers shared by the tests of wsfast.asyncio.

Everything runs on 127.0.0.1 with port 0; every wait is bounded.

* :func:`run` runs a coroutine in a fresh event loop with an overall timeout.
* :func:`echo` is a ``serve`` handler that sends every message back.
* :class:`RawClient` and :func:`raw_server` are WebSocket peers written by
  hand on asyncio streams, with their own frame parser (independent of the
  codec under test), so that a test controls exactly what the peer does:
  stop answering pings, never answer a close, never send the handshake...
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import struct
from typing import Any, Awaitable, Callable, Optional, TypeVar

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

T = TypeVar("T")

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def run(coro: Awaitable[T], timeout: float = 10.0, loop_factory: Optional[Callable[[], Any]] = None) -> T:
    """Run ``coro`` in a new event loop; fail if it takes more than ``timeout``.

    Hard-bounded, unlike ``asyncio.run(asyncio.wait_for(...))``: a coroutine
    whose cleanup blocks after the cancellation (a server that never finishes
    closing, say) is abandoned after one more second, and the failure shows
    where it was stuck.
    """
    loop = (loop_factory or asyncio.new_event_loop)()
    asyncio.set_event_loop(loop)
    try:
        task = loop.create_task(coro)  # type: ignore[arg-type]
        loop.run_until_complete(asyncio.wait({task}, timeout=timeout))
        if not task.done():
            stack = io.StringIO()
            task.print_stack(file=stack)
            task.cancel()
            loop.run_until_complete(asyncio.wait({task}, timeout=1.0))
            raise AssertionError(
                f"timed out after {timeout} s"
                + ("" if task.done() else ", and did not finish within 1 s of its cancellation")
                + f"; it was at:\n{stack.getvalue()}"
            )
        return task.result()
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()


async def eventually(predicate: Callable[[], Any], timeout: float = 2.0, step: float = 0.005) -> None:
    """Wait until ``predicate()`` is true, at most ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        await asyncio.sleep(step)


async def echo(ws: Any) -> None:
    """A ``serve`` handler that sends every message back."""
    async for message in ws:
        await ws.send(message)


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(opcode: int, payload: bytes = b"", fin: bool = True, mask: bool = True) -> bytes:
    """Build a frame by hand (masked, as a client sends, unless ``mask=False``)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Read one frame: ``(opcode, fin, payload)`` (unmasked if it was masked)."""
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if b1 & 0x80 else None
    payload = await reader.readexactly(length)
    if key is not None:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, bool(b0 & 0x80), payload


def parse_close(payload: bytes) -> tuple[int, str]:
    if not payload:
        return 1005, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def upgrade_request(path: str = "/", host: str = "127.0.0.1", extra: str = "") -> tuple[bytes, str]:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    return request.encode(), key


class RawClient:
    """A hand-written WebSocket client (no compression), fully under the test's control."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.head = head

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    @classmethod
    async def connect(cls, port: int, path: str = "/", extra: str = "", rcvbuf: Optional[int] = None) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request, key = upgrade_request(path, extra=extra)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        client = cls(reader, writer, head)
        if client.status == 101:
            assert accept_key(key).encode() in head
        return client

    def send(self, opcode: int, payload: bytes = b"", fin: bool = True) -> None:
        self.writer.write(frame(opcode, payload, fin))

    async def recv(self, timeout: float = 2.0) -> tuple[int, bool, bytes]:
        return await asyncio.wait_for(read_frame(self.reader), timeout)

    async def recv_until(self, opcode: int, timeout: float = 2.0) -> tuple[int, bool, bytes]:
        """Skip frames until one with ``opcode``."""
        while True:
            frame_ = await self.recv(timeout)
            if frame_[0] == opcode:
                return frame_

    async def at_eof(self, timeout: float = 2.0) -> bool:
        """Read and drop everything until EOF (True) or ``timeout`` (False)."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


async def raw_server(
    on_connection: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.AbstractServer:
    """A TCP server on 127.0.0.1 running ``on_connection(reader, writer)``."""
    return await asyncio.start_server(on_connection, "127.0.0.1", 0)


async def raw_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, extra: bytes = b"") -> bytes:
    """Read an upgrade request and accept it (no extension); return the request head.
    ``extra`` is written right after the 101 response, in the same write."""
    head = await reader.readuntil(b"\r\n\r\n")
    key = ""
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n" + extra
    )
    return head


def port_of(server: asyncio.AbstractServer) -> int:
    return int(server.sockets[0].getsockname()[1])


async def small_buffer_socket(port: int, size: int = 8192) -> Any:
    """A TCP socket connected to 127.0.0.1:port with small kernel buffers
    (no autotuning), so that backpressure shows after a few kilobytes."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


def shrink_send_buffer(transport: Any, size: int = 8192) -> None:
    """Shrink the kernel send buffer of an asyncio transport's socket (not the
    receive buffer: shrinking it on an established connection stalls TCP)."""
    import socket

    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
