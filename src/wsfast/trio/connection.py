"""The Trio connection: :class:`WebSocket`, over any :class:`trio.abc.Stream`.

A :class:`WebSocket` drives a sans-I/O :class:`~wsfast.protocol.Connection`.
Its background work runs in one task (:meth:`WebSocket._background`) that
the caller starts in a nursery it owns (the ``connect`` context manager's,
or the server's per-connection nursery): the reader, which feeds what the
stream receives to the protocol and writes the automatic replies, and the
keepalive pings (at each of which a connection that has not compressed or
inflated a message since the previous one frees its permessage-deflate zlib
state: :meth:`~wsfast.protocol.Connection.release_idle_memory`). Received
messages wait in a queue bounded in bytes: above
``max_queue`` the reader stops reading until ``recv`` has taken them below a
quarter of it.

Frames are built and written while holding the send guard (a fair lock that
does not yield when it is free), so that they go out in the order the
protocol produced them, whatever the tasks that send. A send cancelled in the
middle of a frame leaves the stream unusable: the connection is then aborted.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections import deque
from typing import Any, AsyncIterable, AsyncIterator, Iterable, Optional, Union

import trio

from ..events import BinaryMessage, Pong, TextMessage
from ..exceptions import ConnectionClosed, ConnectionClosedOK, FrameError, InvalidState, connection_closed
from ..http11 import Request, Response
from ..options import Options
from ..protocol import BY_REFERENCE, Connection, Role, State

__all__ = ["WebSocket", "MESSAGE_OVERHEAD", "READ_SIZE"]

logger = logging.getLogger("wsfast")

MESSAGE_OVERHEAD = 64
"""Bytes each queued message counts toward ``max_queue`` on top of its
length, so that a flood of empty messages is bounded too."""

READ_SIZE = 262144
"""The most bytes one read asks the stream for (256 KiB)."""

_OPEN = State.OPEN
_CLOSE_HEAD = b"\x88"  # FIN + close
_ids = itertools.count(1)
_GOING_AWAY = {Role.SERVER: "server shutting down", Role.CLIENT: "going away"}

Message = Union[str, bytes]
Sendable = Union[Message, bytearray, memoryview, Iterable[Message], AsyncIterable[Message]]


class WebSocket:
    """One WebSocket connection on Trio.

    ``async for message in ws`` iterates until the connection closes
    normally; ``recv`` raises :class:`~wsfast.exceptions.ConnectionClosed`
    once the queue is empty and the connection closed.
    """

    def __init__(self, stream: trio.abc.Stream, conn: Connection, options: Options) -> None:
        #: A number that identifies the connection in logs.
        self.id = next(_ids)
        #: The sans-I/O protocol state machine.
        self.conn = conn
        self.options = options
        self._stream = stream
        self._queue: deque[Message] = deque()
        self._queued = 0
        self._high = options.max_queue
        self._low = options.max_queue // 4
        self._recv_task: Optional[trio.lowlevel.Task] = None  # waiting in recv()
        # The reader waits on this while the queue is full or a failure is held.
        self._reader_waiter: Optional[trio.Event] = None
        self._sending = False
        self._send_lot = trio.lowlevel.ParkingLot()
        self._pings: dict[bytes, tuple[float, Optional[_PongWaiter]]] = {}
        self._ping_count = 0
        #: Round-trip time of the last ping answered, in seconds.
        self.latency = 0.0
        # recv returned a message and was not called again since: the reader
        # may still be answering it (a failure's close frame waits).
        self._taken = False
        # (code, reason) of a failure whose close frame waits for the
        # application to answer the messages before it (_hold_failure).
        self._held: Optional[tuple[int, str]] = None
        self._close_requested = False  # close() was called
        # A close frame went out or came in: the reader reads on whatever the queue.
        self._closing = False
        # When the reader gives up waiting for the closing handshake.
        self._close_deadline = math.inf
        self._read_scope: Optional[trio.CancelScope] = None
        self._done = False  # the stream is closed
        self._closed = trio.Event()

    def __repr__(self) -> str:
        return f"<WebSocket #{self.id} {self.conn.role.value} {self.conn.state.name}>"

    # ------------------------------------------------------------ properties

    @property
    def stream(self) -> trio.abc.Stream:
        """The Trio stream underneath (a :class:`trio.SocketStream` or
        :class:`trio.SSLStream`)."""
        return self._stream

    @property
    def state(self) -> State:
        return self.conn.state

    @property
    def subprotocol(self) -> Optional[str]:
        return self.conn.subprotocol

    @property
    def request(self) -> Optional[Request]:
        """The upgrade request (sent by a client, received by a server)."""
        return getattr(self.conn, "request", None)

    @property
    def response(self) -> Optional[Response]:
        """The upgrade response (received by a client, sent by a server)."""
        return getattr(self.conn, "response", None)

    @property
    def remote_address(self) -> Any:
        """The peer's socket address, or ``None`` if unknown."""
        return self._sockname(remote=True)

    @property
    def local_address(self) -> Any:
        return self._sockname(remote=False)

    def _sockname(self, remote: bool) -> Any:
        stream: Any = self._stream
        while isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        sock = getattr(stream, "socket", None)
        if sock is None:
            return None
        try:
            return sock.getpeername() if remote else sock.getsockname()
        except OSError:
            return None

    @property
    def close_code(self) -> Optional[int]:
        """The close code received (1005: none in the frame, 1006: no frame),
        once the connection is closed; ``None`` before."""
        return self.conn.close_code if self._done else None

    @property
    def close_reason(self) -> Optional[str]:
        return self.conn.close_reason if self._done else None

    # ------------------------------------------------------------ receiving

    async def recv(self) -> Message:
        """The next message: ``str`` for text (``bytes`` with
        ``text_as_bytes``), ``bytes`` for binary."""
        await trio.lowlevel.checkpoint_if_cancelled()
        queue = self._queue
        if not queue:
            self._taken = False
            if self._held is not None:
                self._wake_reader()  # every message before the error answered: fail now
        while not queue:
            if self._done:
                conn = self.conn
                raise connection_closed(conn.close_code, conn.close_reason, conn.close_sent)
            if self._recv_task is not None:
                raise trio.BusyResourceError("another task is already waiting in recv()")
            self._recv_task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._recv_cancelled)
        data = queue.popleft()
        self._queued -= len(data) + MESSAGE_OVERHEAD
        self._taken = True
        if self._reader_waiter is not None and self._queued <= self._low:
            self._wake_reader()
        return data

    def _recv_cancelled(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        self._recv_task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _wake_recv(self) -> None:
        task = self._recv_task
        if task is not None:
            self._recv_task = None
            trio.lowlevel.reschedule(task)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedOK:
                return

    # Messages as the protocol delivers them (Connection.sink).

    def on_text(self, data: Union[str, bytes]) -> None:
        self._put(data)

    def on_binary(self, data: bytes) -> None:
        self._put(data)

    def on_fragment(self, data: Union[str, bytes], text: bool, fin: bool) -> None:  # pragma: no cover
        raise InvalidState("stream_messages is not supported by wsfast.trio")

    def _put(self, data: Message) -> None:
        self._queue.append(data)
        self._queued += len(data) + MESSAGE_OVERHEAD
        if self._recv_task is not None:
            self._wake_recv()

    def _pending(self) -> bool:
        return self._taken or bool(self._queue)

    # ------------------------------------------------------------ sending

    async def send(self, message: Sendable) -> None:
        """Send a message: ``str`` as text, bytes-like as binary; an
        (async) iterable of ``str`` or of bytes as a fragmented message.
        Returns once the kernel has taken the bytes."""
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            await self._acquire()
            try:
                conn = self.conn
                text = isinstance(message, str)
                if len(message) >= BY_REFERENCE:
                    for part in conn.send_parts(message, text=text):
                        await self._send_all(part)
                else:
                    frame = conn.send_text(message) if text else conn.send_binary(message)  # type: ignore[arg-type]
                    await self._send_all(frame)
            finally:
                self._release()
        elif isinstance(message, dict):
            raise TypeError("cannot send a dict: encode it first (json.dumps)")
        elif hasattr(message, "__aiter__"):
            await self._send_fragments(message.__aiter__())
        elif hasattr(message, "__iter__"):
            await self._send_fragments(_aiter(message))
        else:
            raise TypeError(f"cannot send {type(message).__name__}")

    async def _send_fragments(self, fragments: AsyncIterator[Message]) -> None:
        try:
            previous = await fragments.__anext__()
        except StopAsyncIteration:
            return
        text = isinstance(previous, str)
        first = True
        async for fragment in fragments:
            if isinstance(fragment, str) is not text:
                raise TypeError("all fragments of a message must be str, or all bytes")
            await self._send_fragment(previous, False, text if first else None)
            first = False
            previous = fragment
        await self._send_fragment(previous, True, text if first else None)

    async def _send_fragment(self, data: Message, fin: bool, text: Optional[bool]) -> None:
        await self._acquire()
        try:
            conn = self.conn
            if text is None:
                frame = conn.send_continuation(data, fin=fin)
            elif text:
                frame = conn.send_text(data, fin=fin)
            else:
                if isinstance(data, str):
                    raise TypeError("binary fragments must be bytes")
                frame = conn.send_binary(data, fin=fin)
            await self._send_all(frame)
        finally:
            self._release()

    async def ping(self, data: Optional[bytes] = None) -> float:
        """Send a ping and wait for its pong (or a later one's); return the
        round-trip time in seconds."""
        if data is None:
            self._ping_count += 1
            data = self._ping_count.to_bytes(4, "big") + os.urandom(4)
        waiter = _PongWaiter()
        await self._send_ping(bytes(data), waiter)
        await waiter.event.wait()
        if waiter.rtt is None:
            conn = self.conn
            raise connection_closed(conn.close_code, conn.close_reason, conn.close_sent)
        return waiter.rtt

    async def _send_ping(self, data: bytes, waiter: Optional[_PongWaiter]) -> None:
        if data in self._pings:
            raise ValueError("a ping with this payload is already waiting")
        await self._acquire()
        try:
            frame = self.conn.send_ping(data)
            self._pings[data] = (time.perf_counter(), waiter)
            await self._send_all(frame)
        finally:
            self._release()

    async def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong."""
        await self._acquire()
        try:
            await self._send_all(self.conn.send_pong(data))
        finally:
            self._release()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and wait until it is closed (at most
        ``close_timeout`` to write the close frame and as long again for the
        peer's, then the stream is closed without waiting). After the peer broke the protocol (a failure held
        for the application's replies), the failure's close frame goes
        instead."""
        self._close_requested = True
        if self._held is not None:
            self._wake_reader()
        elif self.conn.state is _OPEN and not self._done:
            # The close frame's write too: a peer that reads nothing never takes it.
            timeout = self.options.close_timeout
            with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
                await self._send_close(code, reason)
            if scope.cancelled_caught:
                logger.info("connection #%d: the close frame could not be written, aborting", self.id)
                self._abort()
        await self._closed.wait()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await self._closed.wait()

    async def _send_close(self, code: int, reason: str) -> None:
        """Send a close frame (if none went yet) and bound the closing
        handshake by ``close_timeout``."""
        await self._acquire()
        try:
            frame = self.conn.send_close(code, reason)
            if frame:
                self._close_sent()
                await self._send_all(frame)
        except ConnectionClosed:
            pass
        finally:
            self._release()

    def _close_sent(self) -> None:
        """A close frame went out or came in: the closing handshake may take
        ``close_timeout`` seconds; the reader reads on (even with a full
        queue) to see it end."""
        self._closing = True
        timeout = self.options.close_timeout
        if timeout is not None and self._close_deadline == math.inf:
            self._close_deadline = trio.current_time() + timeout
            if self._read_scope is not None:
                self._read_scope.deadline = self._close_deadline
        self._wake_reader()

    # The send guard: a fair lock that, unlike trio.Lock, does not yield
    # when it is free (sending yields anyway).

    async def _acquire(self) -> None:
        if self._sending:
            await self._send_lot.park()  # woken owning the guard
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._sending = True

    def _release(self) -> None:
        if self._send_lot:  # a task waits: the guard passes to it
            self._send_lot.unpark()
        else:
            self._sending = False

    async def _send_all(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Write, holding the send guard; a failed or cancelled write ends
        the connection (a frame may have gone out in part)."""
        conn = self.conn
        if self._done:
            raise connection_closed(conn.close_code, conn.close_reason, conn.close_sent)
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._abort()
            raise connection_closed(conn.close_code, conn.close_reason, conn.close_sent) from None
        except BaseException:
            self._abort()
            raise

    async def _flush(self) -> None:
        """Write the protocol's automatic replies (pongs, close frames)."""
        if self.conn._out:
            await self._acquire()
            try:
                out = self.conn.data_to_send()
                if out:
                    await self._send_all(out)
            except ConnectionClosed:
                pass  # the connection is being aborted
            finally:
                self._release()

    # ------------------------------------------------------------ background

    async def _background(self) -> None:
        """The connection's background work: the reader, and the keepalive
        pings next to it; returns once the connection is closed."""
        async with trio.open_nursery() as nursery:
            if self.options.ping_interval is not None:
                nursery.start_soon(self._keepalive)
            await self._run_reader()
            nursery.cancel_scope.cancel()

    async def _run_reader(self) -> None:
        """Read until the connection is closed, then close the stream.
        Cancelled, close with 1001 first (shielded, see :meth:`_shutdown`)."""
        try:
            await self._read()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self._shutdown(1001, _GOING_AWAY[self.conn.role])
            raise
        except Exception as exc:
            logger.error("connection #%d: unexpected error, closing", self.id, exc_info=exc)
        finally:
            with trio.CancelScope(shield=True):
                await self._end()

    async def _read(self) -> None:
        """Read until the connection is closed or the closing handshake's
        deadline passes; one cancel scope for the whole loop, whose deadline
        :meth:`_close_sent` sets."""
        with trio.CancelScope(deadline=self._close_deadline) as scope:
            self._read_scope = scope
            try:
                await self._read_loop()
            finally:
                self._read_scope = None
        if scope.cancelled_caught and self._close_deadline != -math.inf:  # not aborted
            logger.info("connection #%d: closing handshake timed out", self.id)

    async def _read_loop(self) -> None:
        conn = self.conn
        stream = self._stream
        while not self._done:
            if conn.state is not _OPEN:  # a close frame went out or came in
                if conn.should_close_transport:
                    return
                self._close_sent()
            if (self._held is not None or self._queued > self._high) and not self._closing:
                if self._held is not None:
                    with trio.move_on_after(self.options.fail_timeout or 0):
                        while self._pending() and not self._close_requested:
                            await self._reader_wait()
                    await self._release_failure()
                else:
                    await self._reader_wait()
                continue
            try:
                data = await stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                conn.receive_eof()
                return
            await self._received(conn.receive_data(data))

    async def _received(self, events: list[Any]) -> None:
        """Handle the events of a read, then write the automatic replies
        (unless a failure's close frame must wait: :meth:`_hold_failure`)."""
        if events:
            self._handle_events(events)
        conn = self.conn
        if conn.failure is not None and self._held is None and conn.state is not _OPEN:
            self._hold_failure()
        await self._flush()

    async def _reader_wait(self) -> None:
        waiter = self._reader_waiter = trio.Event()
        try:
            await waiter.wait()
        finally:
            self._reader_waiter = None

    def _wake_reader(self) -> None:
        if self._reader_waiter is not None:
            self._reader_waiter.set()

    def _handle_events(self, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:  # messages after a control frame
                self._put(event.data)
            elif kind is Pong:
                self._got_pong(event.data)

    def _got_pong(self, data: bytes) -> None:
        pings = self._pings
        if data not in pings:
            return
        now = time.perf_counter()
        # A pong answers its ping and every earlier one (RFC 6455 section 5.5.3).
        for payload in list(pings):
            sent_at, waiter = pings.pop(payload)
            if waiter is not None:
                waiter.rtt = now - sent_at
                waiter.event.set()
            if payload == data:
                self.latency = now - sent_at
                break

    def _hold_failure(self) -> None:
        """The peer broke the protocol in this read, and the application
        has not answered every message that came before the error: hold the
        close frame until it has (it comes back to ``recv`` with an empty
        queue, or closes), at most ``fail_timeout`` seconds, so that its
        replies go out first. Input stays ignored; sending stays allowed."""
        conn = self.conn
        failure = conn.failure
        out = conn._out
        if (
            not isinstance(failure, FrameError)
            or not self.options.fail_timeout
            or conn.close_received is not None
            or conn.close_sent != (failure.code, failure.reason)
            or not out
            or out[-1][:1] != _CLOSE_HEAD  # Connection._fail appends its close frame last
            or not self._pending()
        ):
            return
        out.pop()
        conn.close_sent = None
        conn.state = _OPEN  # for sending; input stays discarded
        self._held = (failure.code, failure.reason)

    async def _release_failure(self) -> None:
        """Send the held failure's close frame."""
        held = self._held
        self._held = None
        if held is None or self.conn.state is not _OPEN:
            return
        code, reason = held
        await self._acquire()
        try:
            try:
                frame = self.conn.send_close(code, reason)
            except ValueError:  # a reason too long for a close frame
                frame = self.conn.send_close(code, "")
            self._close_sent()
            await self._send_all(frame)
        except ConnectionClosed:
            pass
        finally:
            self._release()

    async def _keepalive(self) -> None:
        """A ping every ``ping_interval``; no pong within ``ping_timeout`` (a
        ping that cannot even be written counts too: a peer that reads
        nothing) closes with 1011, or aborts the connection if the close
        frame cannot be written within ``close_timeout`` either."""
        interval = self.options.ping_interval
        timeout = self.options.ping_timeout
        assert interval is not None
        while True:
            await trio.sleep(interval)
            if self.conn.state is not _OPEN or self._held is not None:
                return
            # Frees the zlib state of a connection that has not used it
            # since the previous tick.
            self.conn.release_idle_memory()
            waiter = _PongWaiter()
            with trio.move_on_after(math.inf if timeout is None else timeout):
                try:
                    await self._send_ping(b"keepalive" + os.urandom(4), waiter)
                except ConnectionClosed:
                    return
                await waiter.event.wait()
                continue
            logger.info("connection #%d: keepalive ping timed out, closing with 1011", self.id)
            close_timeout = self.options.close_timeout
            with trio.move_on_after(math.inf if close_timeout is None else close_timeout) as scope:
                await self._send_close(1011, "keepalive ping timeout")
            if scope.cancelled_caught:
                logger.info("connection #%d: the close frame could not be written, aborting", self.id)
                self._abort()
            return

    # ------------------------------------------------------------ ending

    def _abort(self) -> None:
        """Give up on the stream: the reader stops, the stream gets closed."""
        self._closing = True
        self._close_deadline = -math.inf
        if self._read_scope is not None:
            self._read_scope.cancel()
        self._wake_reader()

    async def _end(self) -> None:
        """Close the stream (TLS: without waiting for the peer's
        close_notify) and wake everything that waits on the connection.
        Call it shielded."""
        if self._done:
            return
        conn = self.conn
        if conn.state is not State.CLOSED:
            conn.receive_eof()
        self._done = True
        self._held = None
        for _, waiter in self._pings.values():
            if waiter is not None:
                waiter.event.set()
        self._pings.clear()
        self._wake_recv()
        await _close_stream(self._stream, graceful=self._close_deadline != -math.inf)
        logger.info("connection #%d: closed (code %d)", self.id, conn.close_code)
        self._closed.set()

    async def _shutdown(self, code: int, reason: str) -> None:
        """Close from a task being cancelled: the closing handshake inline,
        bounded by ``close_timeout`` (10 s if it is ``None``), then the
        stream. Call it shielded."""
        if self._done:
            return
        timeout = self.options.close_timeout
        try:
            if self.conn.state is _OPEN and self._close_deadline != -math.inf:  # not aborted
                self._held = None
                # The close frame's write too: a peer that reads nothing never takes it.
                with trio.move_on_after(10.0 if timeout is None else timeout):
                    await self._send_close(code, reason)
                    if self._close_deadline == math.inf:
                        self._close_deadline = trio.current_time() + 10.0
                    await self._read()
        except Exception as exc:
            logger.error("connection #%d: unexpected error while closing", self.id, exc_info=exc)
        finally:
            await self._end()


class _PongWaiter:
    """Who waits for a ping's pong: ``rtt`` is set when it comes, and stays
    ``None`` if the connection closes first."""

    __slots__ = ("event", "rtt")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.rtt: Optional[float] = None


async def _close_stream(stream: trio.abc.Stream, graceful: bool) -> None:
    """Close the stream; TLS: with a close_notify when it can go at once
    (never waiting for the peer's), unless the connection was aborted."""
    if graceful and isinstance(stream, trio.SSLStream):
        with trio.move_on_after(0.1):
            try:
                await stream.aclose()
                return
            except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError):
                pass
    await trio.aclose_forcefully(stream)


async def _aiter(items: Iterable[Message]) -> AsyncIterator[Message]:
    for item in items:
        yield item
