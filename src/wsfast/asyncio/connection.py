"""The awaitable API: :class:`WebSocket`, familiar to users of ``websockets``.

Built on the callback level: a :class:`WebSocket` is the
:class:`~wsfast.asyncio.listener.Listener` of its transport. Received
messages wait in a queue bounded in bytes (reading from the socket pauses
above ``max_queue``; each message counts :data:`MESSAGE_OVERHEAD` bytes on
top of its length, so that a flood of empty messages is bounded too);
``recv`` creates a waiter only when the queue is empty.

As strict as the callback API: when the peer breaks the protocol, the
messages that arrived before the error are still delivered, and the close
frame waits (at most ``fail_timeout``) until the reader has taken them and
comes back to ``recv`` (or closes, or its handler returns), so the replies
it sends to them go out before the close frame. See
:meth:`WebSocketTransport._hold_failure`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, AsyncIterable, AsyncIterator, Iterable, Optional, Union

from ..codec import OP_BINARY, OP_TEXT, build_frame
from ..exceptions import ConnectionClosed, ConnectionClosedOK, InvalidState, connection_closed
from ..http11 import Request, Response
from ..protocol import State
from .listener import Listener
from .transport import WebSocketTransport

_OPEN = State.OPEN

__all__ = ["WebSocket", "broadcast", "MESSAGE_OVERHEAD"]

MESSAGE_OVERHEAD = 64
"""Bytes each queued message counts toward ``max_queue`` on top of its
length: about what a small ``str``/``bytes`` object and its queue slot cost
(a one-byte message takes about 58 bytes), so that reading pauses at a
bounded memory however small the messages."""

Message = Union[str, bytes]


class WebSocket(Listener):
    """One WebSocket connection, with coroutines to send and receive.

    ``async for message in ws`` iterates until the connection closes
    normally; ``recv`` raises :class:`~wsfast.exceptions.ConnectionClosed`
    once the queue is empty and the connection closed.
    """

    __slots__ = ("_ws", "_next", "_queue", "_queued", "_waiter", "_high", "_low", "_paused", "_closed", "_taken")

    def __init__(self, max_queue: int) -> None:
        self._ws: Optional[WebSocketTransport] = None
        # The received messages not taken yet: the oldest in _next, the others
        # in a deque made only while two or more wait (an empty deque costs
        # 760 bytes, more than the rest of this object).
        self._next: Optional[Message] = None
        self._queue: Optional[deque[Message]] = None
        self._queued = 0
        self._waiter: Optional[asyncio.Future[None]] = None
        self._high = max_queue
        self._low = max_queue // 4
        self._paused = False
        self._closed = False
        # recv returned a message and was not called again since: the reader
        # may still be answering it (see _pending).
        self._taken = False

    def __repr__(self) -> str:
        return f"<WebSocket {self._ws!r}>"

    # ------------------------------------------------------------ Listener

    def on_open(self, ws: WebSocketTransport) -> None:
        self._ws = ws

    def _put(self, data: Message) -> None:
        if self._next is None:
            self._next = data
        else:
            queue = self._queue
            if queue is None:
                queue = self._queue = deque()
            queue.append(data)
        self._queued += len(data) + MESSAGE_OVERHEAD
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._queued > self._high and not self._paused:
            transport = self.transport.transport
            if transport is not None:
                transport.pause_reading()
                self._paused = True

    # A message goes to the queue straight from the compiled read path (no
    # wrapper call): a text message is a str here (text_as_bytes is off).
    on_text = _put
    on_binary = _put

    def _pending(self) -> bool:
        """Messages not taken yet, or one taken whose reader has not come
        back to ``recv``: hold a failure's close frame for the replies."""
        return self._taken or self._next is not None

    def on_close(self, code: int, reason: str) -> None:
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ properties

    @property
    def transport(self) -> WebSocketTransport:
        """The callback-level transport underneath."""
        if self._ws is None:
            raise InvalidState("the connection is not open yet")
        return self._ws

    @property
    def id(self) -> int:
        """A number that identifies the connection in logs."""
        return self.transport.id

    @property
    def state(self) -> State:
        return self.transport.state

    @property
    def subprotocol(self) -> Optional[str]:
        return self.transport.subprotocol

    @property
    def request(self) -> Optional[Request]:
        return self.transport.request

    @property
    def response(self) -> Optional[Response]:
        return self.transport.response

    @property
    def remote_address(self) -> Any:
        return self.transport.remote_address

    @property
    def close_code(self) -> Optional[int]:
        """The close code received (1006 if none), once the connection closed."""
        return self.transport.close_code if self._closed else None

    @property
    def close_reason(self) -> Optional[str]:
        return self.transport.close_reason if self._closed else None

    @property
    def latency(self) -> float:
        """Round-trip time of the last ping answered, in seconds."""
        return self.transport.latency

    # ------------------------------------------------------------ receiving

    async def recv(self) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary."""
        while self._next is None:
            waiter = self._waiter_for_next()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._take()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        # recv() inlined: an idle connection's handler waits in one coroutine
        # frame, not in an async generator awaiting recv()'s.
        while self._next is None:
            try:
                waiter = self._waiter_for_next()
            except ConnectionClosedOK:
                raise StopAsyncIteration from None
            try:
                await waiter
            finally:
                self._waiter = None
        data = self._next
        if self._queue is None and not self._paused:  # _take(), inline: one call less per message
            self._next = None
            self._queued -= len(data) + MESSAGE_OVERHEAD
            self._taken = True
            return data
        return self._take()

    def _waiter_for_next(self) -> asyncio.Future[None]:
        """No message is queued: the future to wait on, or the reason why not."""
        self._taken = False
        ws = self._ws
        if ws is not None and ws._held is not None:
            ws._release_failure()  # every message before the error answered: fail now
        if self._closed:
            ws = self.transport
            raise connection_closed(ws.close_code, ws.close_reason, ws.conn.close_sent)
        if self._waiter is not None:
            raise RuntimeError("another coroutine is already waiting in recv()")
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    def _take(self) -> Message:
        data = self._next
        assert data is not None
        queue = self._queue
        if queue:
            self._next = queue.popleft()
            if not queue:
                self._queue = None
        else:
            self._next = None
        self._queued -= len(data) + MESSAGE_OVERHEAD
        self._taken = True
        if self._paused and self._queued <= self._low:
            self._paused = False
            transport = self.transport.transport
            if transport is not None:
                transport.resume_reading()
        return data

    # ------------------------------------------------------------ sending

    async def send(
        self, message: Union[Message, bytearray, memoryview, Iterable[Message], AsyncIterable[Message]]
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary; an
        (async) iterable of ``str`` or of bytes as a fragmented message.
        Waits while the transport's write buffer is above ``write_limit``."""
        ws = self._ws
        if ws is None:
            ws = self.transport  # raises InvalidState
        if isinstance(message, str):
            ws.send_text(message)
        elif isinstance(message, (bytes, bytearray, memoryview)):
            ws.send_binary(message)
        elif isinstance(message, dict):
            raise TypeError("cannot send a dict: encode it first (json.dumps)")
        elif hasattr(message, "__aiter__"):
            await self._send_fragments(message.__aiter__())
            return
        elif hasattr(message, "__iter__"):
            await self._send_fragments(_aiter(message))
            return
        else:
            raise TypeError(f"cannot send {type(message).__name__}")
        if ws._writing_paused:
            await ws.drain()

    async def _send_fragments(self, fragments: AsyncIterator[Message]) -> None:
        ws = self.transport
        try:
            previous = await fragments.__anext__()
        except StopAsyncIteration:
            return
        text = isinstance(previous, str)
        first = True
        async for fragment in fragments:
            if isinstance(fragment, str) is not text:
                raise TypeError("all fragments of a message must be str, or all bytes")
            ws.send_fragment(previous, False, text=text if first else None)
            first = False
            previous = fragment
            if ws._writing_paused:
                await ws.drain()
        ws.send_fragment(previous, True, text=text if first else None)

    async def ping(self, data: Optional[bytes] = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time."""
        return await self.transport.ping(data)

    async def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong."""
        self.transport.pong(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and wait until it is closed (at most
        ``close_timeout``, then the TCP connection is aborted)."""
        ws = self.transport
        try:
            ws.close(code, reason)
        except ConnectionClosed:
            pass
        await ws.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await self.transport._closed_future()  # one coroutine frame while it waits


async def _aiter(items: Iterable[Message]) -> AsyncIterator[Message]:
    for item in items:
        yield item


def broadcast(
    connections: Iterable[Union[WebSocket, WebSocketTransport]],
    message: Union[str, bytes],
) -> list[Union[WebSocket, WebSocketTransport]]:
    """Send ``message`` to every open connection; return those skipped.

    The frame is built once and written to every connection uncompressed
    (RFC 7692 allows any message to be sent uncompressed). A connection is
    skipped, not buffered without bound, when it is not open, is in the
    middle of a fragmented message, or its write buffer is already above its
    ``write_limit`` (a slow consumer).
    """
    if isinstance(message, str):
        opcode, payload = OP_TEXT, message.encode()
    else:
        opcode, payload = OP_BINARY, bytes(message)
    frame: Optional[bytes] = None
    skipped: list[Union[WebSocket, WebSocketTransport]] = []
    for connection in connections:
        ws = connection.transport if isinstance(connection, WebSocket) else connection
        conn = ws.conn
        transport = ws._transport
        if (
            conn.state is not _OPEN
            or conn._send_opcode
            or transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > ws.options.write_limit
        ):
            skipped.append(connection)
            continue
        if conn._mask:  # a client connection: each frame needs its own key
            out = build_frame(opcode, payload, True, 0, True)
        else:
            if frame is None:
                frame = build_frame(opcode, payload, True, 0, None)
            out = frame
        ws._write(out)  # inside the sender's own read: into its batch, after its earlier replies
    return skipped
