"""Helpers of the wsfast.sync tests: servers in threads and raw peers, every
blocking call bounded."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from typing import Any, Callable, Iterator, Optional

from wsfast.handshake import GUID
from wsfast.sync import Server, WebSocket, serve

TIMEOUT = 10.0


def echo(ws: WebSocket) -> None:
    for message in ws:
        ws.send(message)


@contextlib.contextmanager
def running(handler: Any = echo, server: Optional[Server] = None, **kwargs: Any) -> Iterator[Server]:
    """A server (by default an echo on 127.0.0.1) serving in a thread; shut
    down and joined at the end."""
    kwargs.setdefault("close_timeout", 5)
    if server is None:
        server = serve(handler, "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def uri(server: Server, path: str = "/", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{server.port}{path}"


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``target`` in a thread; the list gets its result or exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` every 5 ms until it holds (AssertionError after ``TIMEOUT``)."""
    event = threading.Event()
    for _ in range(int(TIMEOUT / 0.005)):
        if condition():
            return
        event.wait(0.005)
    raise AssertionError("timed out waiting for a condition")


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """An unmasked frame, as a server sends it."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([length])
    elif length < 65536:
        head += bytes([126]) + struct.pack("!H", length)
    else:
        head += bytes([127]) + struct.pack("!Q", length)
    return head + payload


def read_head(sock: socket.socket) -> bytes:
    """The head of the HTTP request the client sent."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk
        head += chunk
    return head


def accept_upgrade(sock: socket.socket) -> bytes:
    """Read the upgrade request and answer 101; the request's head."""
    head = read_head(sock)
    lines = head.split(b"\r\n")
    key = next(line.split(b":", 1)[1].strip() for line in lines if line.lower().startswith(b"sec-websocket-key"))
    accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())
    sock.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    return head


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One masked frame from the client: ``(opcode, payload)``."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the client closed the connection"
            data += chunk
        return data

    b0, b1 = exactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", exactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", exactly(8))
    key = exactly(4)
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(exactly(length)))
    return b0 & 0x0F, payload


class RawServer:
    """A listening socket whose peer behaviour the test writes by hand."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.sock: Optional[socket.socket] = None

    def accept(self, upgrade: bool = True) -> socket.socket:
        """Accept one connection; answer its upgrade with 101 if ``upgrade``."""
        sock, _ = self.listener.accept()
        sock.settimeout(TIMEOUT)
        self.sock = sock
        if upgrade:
            accept_upgrade(sock)
        return sock

    def read_frame(self) -> tuple[int, bytes]:
        """One masked frame from the client: ``(opcode, payload)``."""
        assert self.sock is not None
        return read_frame(self.sock)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.listener.close()


def close_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0]) if payload else 1005
