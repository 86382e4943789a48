"""The asyncio transport: one :class:`WebSocketTransport` per connection.

An :class:`asyncio.BufferedProtocol` that drives a sans-I/O
:class:`~wsfast.protocol.Connection`: the event loop reads into a buffer
shared by every connection of the thread (so an idle connection holds no
read buffer), every frame of a read is parsed in one codec call, messages
go to the :class:`~wsfast.asyncio.listener.Listener` by direct calls, and
each send is one ``transport.write``. Keepalive deadlines of all the
connections of a loop share one timer (:class:`_KeepaliveWheel`), re-armed
once per ping interval, never per message.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import threading
import time
from typing import Any, Awaitable, Callable, Optional, Union, cast

from ..codec import get_buffer_path, read_path, send_binary_path, send_text_path
from ..events import BinaryMessage, CloseReceived, Fragment, HandshakeFailed, Ping, Pong, TextMessage
from ..exceptions import ConnectionClosed, FrameError, InvalidHandshake, connection_closed
from ..handshake import error_response
from ..http11 import Request, Response
from ..options import Options
from ..protocol import BY_REFERENCE, Connection, ServerConnection, State
from .listener import Listener

_OPEN = State.OPEN
_CLOSE_HEAD = b"\x88"  # FIN + close

__all__ = ["WebSocketTransport", "RequestHandler", "READ_BUFFER_SIZE"]

logger = logging.getLogger("wsfast")

READ_BUFFER_SIZE = 262144
"""Size of the read buffer shared by the connections of a thread (256 KiB)."""

_local = threading.local()
_ids = itertools.count(1)

RequestResult = Union[Listener, Response, None]
RequestHandler = Callable[["WebSocketTransport", Request], Union[RequestResult, Awaitable[RequestResult]]]
"""A server's answer to an upgrade request: a :class:`Listener` to accept,
a :class:`~wsfast.http11.Response` to reject, ``None`` for 404; or an
awaitable of one of those."""


class _KeepaliveWheel:
    """The keepalive deadlines of one event loop's connections, on one timer.

    A ``call_later`` handle per connection costs about 670 bytes (uvloop: a
    TimerHandle and a libuv timer) and a cancel and re-arm per pong; here a
    connection costs a set entry. Deadlines are rounded up to ``resolution``
    (at most 1 s, and at most an eighth of the delay that chose the wheel),
    so a ping or its timeout comes at most one resolution late. Connections
    are taken out when their deadline changes or they close: a wheel holds
    no connection past its deadline, and is dropped when empty.
    """

    __slots__ = ("loop", "resolution", "_key", "_buckets", "_handle", "_next")

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float, key: tuple[int, float]) -> None:
        self.loop = loop
        self.resolution = resolution
        self._key = key
        self._buckets: dict[int, set[WebSocketTransport]] = {}
        self._handle: Optional[asyncio.TimerHandle] = None
        self._next = 0

    @classmethod
    def add(cls, ws: WebSocketTransport, delay: float) -> None:
        """Call ``ws._wheel_fired()`` in about ``delay`` seconds (``ws`` in no wheel)."""
        resolution = 1.0
        while resolution > delay / 8 and resolution > 1 / 1024:
            resolution /= 2
        loop = ws._loop
        key = (id(loop), resolution)
        wheel = _wheels.get(key)
        if wheel is None or wheel.loop is not loop:  # (a closed loop's id, reused)
            wheel = _wheels[key] = cls(loop, resolution, key)
        tick = math.ceil((loop.time() + delay) / resolution)
        bucket = wheel._buckets.get(tick)
        if bucket is None:
            bucket = wheel._buckets[tick] = set()
        bucket.add(ws)
        ws._wheel = wheel
        ws._due = tick
        if wheel._handle is None or tick < wheel._next:
            wheel._schedule(tick)

    def discard(self, ws: WebSocketTransport) -> None:
        ws._wheel = None
        bucket = self._buckets.get(ws._due)
        if bucket is not None:
            bucket.discard(ws)
            if not bucket:
                del self._buckets[ws._due]
                if not self._buckets:
                    self._drop()

    def _schedule(self, tick: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._next = tick
        self._handle = self.loop.call_at(tick * self.resolution, self._fire)

    def _drop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if _wheels.get(self._key) is self:
            del _wheels[self._key]

    def _fire(self) -> None:
        self._handle = None
        buckets = self._buckets
        last = max(self._next, math.floor(self.loop.time() / self.resolution))
        for tick in sorted(t for t in buckets if t <= last):
            for ws in buckets.pop(tick, ()):  # (emptied meanwhile by connections that closed)
                if ws._wheel is not self or ws._due != tick:
                    continue  # taken out (closed) by an earlier callback of this pass
                ws._wheel = None
                try:
                    ws._wheel_fired()
                except Exception as exc:  # one connection's failure stops no other's keepalive
                    self.loop.call_exception_handler({"message": "keepalive failed", "exception": exc, "protocol": ws})
        if buckets:
            self._schedule(min(buckets))
        else:
            self._drop()


_wheels: dict[tuple[int, float], _KeepaliveWheel] = {}


def _read_buffer() -> memoryview:
    view: Optional[memoryview] = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(READ_BUFFER_SIZE))
    return view


class WebSocketTransport(asyncio.BufferedProtocol):
    """One WebSocket connection over an asyncio transport.

    Created by :func:`~wsfast.asyncio.server.create_server` and
    :func:`~wsfast.asyncio.client.create_connection`; the listener gets it in
    :meth:`Listener.on_open` and sends through it. ``send_*`` write
    synchronously; watch :meth:`Listener.pause_writing` for backpressure.
    """

    __slots__ = (
        "id",
        "conn",
        "listener",
        "options",
        "_loop",
        "_transport",
        "_on_request",
        "_view",
        "_timer",
        "_wheel",
        "_due",
        "_awaiting_pong",
        "_pings",
        "_ping_count",
        "latency",
        "_opened",
        "_open_done",
        "_open_error",
        "_closed",
        "_closed_done",
        "_writing_paused",
        "_drain_waiters",
        "remote_address",
        "_server",
        "_batch",
        "_closing",
        "_held",
        "_pong",
    )

    def __init__(
        self,
        conn: Connection,
        options: Options,
        *,
        on_request: Optional[RequestHandler] = None,
        listener: Optional[Listener] = None,
        server: Any = None,
    ) -> None:
        self.id = next(_ids)
        self.conn = conn
        self.options = options
        self.listener = listener
        self._on_request = on_request
        self._server = server
        if listener is not None:  # a client: messages go to the listener once open
            conn.sink = listener
        self._loop = asyncio.get_running_loop()
        self._transport: Optional[asyncio.Transport] = None
        self._view = _read_buffer()
        self._timer: Optional[asyncio.TimerHandle] = None  # the open, close or held-failure timer
        self._wheel: Optional[_KeepaliveWheel] = None  # the keepalive deadline's
        self._due = 0
        self._awaiting_pong = False  # the deadline is the keepalive ping's timeout
        self._pings: dict[bytes, tuple[float, Optional[asyncio.Future[float]]]] = {}
        self._ping_count = 0
        #: Round-trip time of the last ping answered, in seconds.
        self.latency = 0.0
        # The handshake's outcome and the transport's end; their futures are
        # made only for someone who waits before they come (144 bytes each).
        self._open_done = False
        self._open_error: Optional[BaseException] = None
        self._opened: Optional[asyncio.Future[None]] = None
        self._closed_done = False
        self._closed: Optional[list[asyncio.Future[None]]] = None  # one future per waiter
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.remote_address: Any = None
        # While buffer_updated runs, writes are collected here and go out in
        # one transport.write at its end (an echo of 100 frames: one send).
        self._batch: Optional[list[bytes]] = None
        self._closing = False  # the close timer is armed
        # (code, reason) of a failure whose close frame waits for the
        # application to answer the messages before it (_hold_failure).
        self._held: Optional[tuple[int, str]] = None
        # The pong to the latest ping, held while writing is paused (_hold_pongs).
        self._pong: Optional[bytes] = None

    def __repr__(self) -> str:
        return f"<WebSocketTransport #{self.id} {self.conn.role.value} {self.conn.state.name}>"

    # ------------------------------------------------------------ properties

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
    def close_code(self) -> int:
        return self.conn.close_code

    @property
    def close_reason(self) -> str:
        return self.conn.close_reason

    @property
    def transport(self) -> Optional[asyncio.Transport]:
        return self._transport

    def write_buffer_size(self) -> int:
        """Bytes queued in the transport, not yet handed to the kernel."""
        return self._transport.get_write_buffer_size() if self._transport else 0

    # ------------------------------------------------------------ sending

    # The common case of each, compiled with the extension (wsfast.codec).
    send_text = send_text_path
    send_binary = send_binary_path

    def _send_text(self, data: Union[str, bytes], compress: Optional[bool] = None) -> None:
        """Send a text message (``bytes`` must already be UTF-8), in general."""
        conn = self.conn
        if compress is None and len(data) >= BY_REFERENCE:
            self._write_parts(conn.send_parts(data, text=True))
            return
        frame = conn.send_text(data) if compress is None else conn.send_text(data, compress=compress)
        batch = self._batch
        if batch is None:
            self._write(frame)
        else:
            batch.append(frame)

    def _send_binary(self, data: Union[bytes, bytearray, memoryview], compress: Optional[bool] = None) -> None:
        """Send a binary message, in general."""
        conn = self.conn
        if compress is None and len(data) >= BY_REFERENCE:
            self._write_parts(conn.send_parts(data))
            return
        frame = conn.send_binary(data) if compress is None else conn.send_binary(data, compress=compress)
        batch = self._batch
        if batch is None:
            self._write(frame)
        else:
            batch.append(frame)

    def send(self, data: Union[str, bytes, bytearray, memoryview], compress: Optional[bool] = None) -> None:
        """Send ``str`` as text and bytes-like data as binary."""
        if isinstance(data, str):
            self.send_text(data, compress)
        else:
            self.send_binary(data, compress)

    def send_fragment(self, data: Union[str, bytes], fin: bool, *, text: Optional[bool] = None) -> None:
        """Send one fragment: the first one says ``text`` (True/False), the
        following ones leave it ``None``; ``fin`` ends the message."""
        conn = self.conn
        if text is None:
            self._write(conn.send_continuation(data, fin=fin))
        elif text:
            self._write(conn.send_text(data, fin=fin))
        else:
            if isinstance(data, str):
                raise TypeError("binary fragments must be bytes")
            self._write(conn.send_binary(data, fin=fin))

    def send_frame_bytes(self, frame: bytes) -> None:
        """Write an already framed message (see :func:`~wsfast.asyncio.broadcast`)."""
        if self.conn.state is not State.OPEN:
            raise connection_closed(self.close_code, self.close_reason, self.conn.close_sent)
        self._write(frame)

    def ping(self, data: Optional[bytes] = None) -> asyncio.Future[float]:
        """Send a ping; the future gives the round-trip time when its pong
        (or a later one) arrives."""
        if data is None:
            self._ping_count += 1
            data = self._ping_count.to_bytes(4, "big") + os.urandom(4)
        future: asyncio.Future[float] = self._loop.create_future()
        self._send_ping(bytes(data), future)
        return future

    def _send_ping(self, data: bytes, future: Optional[asyncio.Future[float]]) -> None:
        if data in self._pings:
            raise ValueError("a ping with this payload is already waiting")
        frame = self.conn.send_ping(data)
        self._write(frame)
        self._pings[data] = (time.perf_counter(), future)

    def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong."""
        self._write(self.conn.send_pong(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the transport closes when it ends
        (or after ``close_timeout``). Before the handshake: abort. After the
        peer broke the protocol (a failure held for the application's
        replies), the failure's close frame goes instead. On a connection
        already going away (aborted, lost), nothing to do."""
        conn = self.conn
        if conn.state is State.CONNECTING:
            self.abort()
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._held is not None:
            self._release_failure()
            return
        frame = conn.send_close(code, reason)
        if frame:
            self._write(frame)
            self._after_close_frame()

    def abort(self) -> None:
        """Close the transport at once, without a closing handshake."""
        if self._transport is not None:
            self._transport.abort()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self._writing_paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._closed_done and self.conn.state is State.CLOSED:
            raise connection_closed(self.close_code, self.close_reason, self.conn.close_sent)

    async def wait_opened(self) -> None:
        """Wait for the opening handshake; raises if it fails."""
        if not self._open_done:
            if self._opened is None:
                self._opened = self._loop.create_future()
            await asyncio.shield(self._opened)
        elif self._open_error is not None:
            raise self._open_error

    async def wait_closed(self) -> None:
        """Wait until the transport is closed."""
        if not self._closed_done:
            await self._closed_future()

    def _closed_future(self) -> asyncio.Future[None]:
        """A new future, resolved when the transport is closed: one per
        waiter, so that cancelling one cancels no other (and no shield and
        its second future are needed)."""
        future = self._loop.create_future()
        if self._closed_done:
            future.set_result(None)
            return future
        waiters = self._closed
        if waiters is None:
            self._closed = [future]
        else:
            if waiters[-1].done():  # cancelled waiters: keep the list bounded
                waiters[:] = [f for f in waiters if not f.done()]
            waiters.append(future)
        return future

    def _set_opened(self, error: Optional[BaseException] = None) -> None:
        """The handshake's outcome (the first one counts)."""
        if self._open_done:
            return
        self._open_done = True
        self._open_error = error
        future = self._opened
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
                future.exception()  # mark retrieved: its waiter may be gone

    def _write(self, data: bytes) -> None:
        if self._batch is not None:
            self._batch.append(data)
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            raise connection_closed(self.close_code, self.close_reason, self.conn.close_sent)
        transport.write(data)

    def _write_parts(self, parts: list[Any]) -> None:
        """Write a message framed by reference (``Connection.send_parts``):
        each part in turn, so a large payload is never copied into a frame.
        Inside a read, what was batched before it goes out first."""
        batching = self._batch is not None
        if batching:
            self._flush()
        for part in parts:
            self._write(part)
        if batching:
            self._batch = []

    def _flush(self) -> None:
        batch = self._batch
        self._batch = None
        if batch and self._transport is not None:
            self._transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    # ------------------------------------------------------------ asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: uvloop's transports are not asyncio.Transport subclasses.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if self._server is not None:
            self._server._register(self)
        self.remote_address = transport.get_extra_info("peername")
        options = self.options
        transport.set_write_buffer_limits(high=options.write_limit)
        if options.open_timeout is not None:
            self._timer = self._loop.call_later(options.open_timeout, self._open_timed_out)
        data = self.conn.data_to_send()  # the client's request
        if data:
            transport.write(data)

    # The hot path, compiled with the extension (wsfast.codec); read_path
    # hands what it does not handle itself to _read.
    get_buffer = get_buffer_path
    buffer_updated = read_path

    def _read(self, nbytes: int) -> None:
        """One read, in general: through ``Connection.receive_data``."""
        conn = self.conn
        self._batch = []
        try:
            events = conn.receive_data(self._view[:nbytes])
            if events:
                self._handle_events(events)
        except Exception as exc:  # a listener callback failed
            self._flush()
            self._internal_error(exc)
            return
        self._after_input()

    def _after_input(self) -> None:
        """Write the automatic replies and the batch; end the transport in
        time if a close frame went out or came in."""
        conn = self.conn
        if conn._out:
            if len(conn._out) > 1 or self._writing_paused:
                self._hold_pongs()
            if conn.failure is not None and self._held is None and conn.state is not _OPEN:
                self._hold_failure()
        out = conn.data_to_send()
        if out:
            if self._batch is None:
                self._batch = []
            self._batch.append(out)
        self._flush()
        state = conn.state
        if state is not _OPEN and state is not State.CONNECTING:
            self._after_close_frame()

    def eof_received(self) -> Optional[bool]:
        return None  # let the transport close; connection_lost follows

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        conn = self.conn
        opened = self._open_done and self._open_error is None
        events = conn.receive_eof()
        self._cancel_timer()
        for _, future in self._pings.values():
            if future is not None and not future.done():
                future.set_exception(connection_closed(conn.close_code, conn.close_reason, conn.close_sent))
                future.exception()  # retrieved: whoever awaits it still gets it
        self._pings.clear()
        self._held = None
        self._pong = None
        self._wake_drain()
        if not self._open_done:
            error = events[0].error if events and isinstance(events[0], HandshakeFailed) else None
            self._set_opened(
                error if error is not None else ConnectionClosed(1006, "connection lost during the opening handshake")
            )
        if opened:
            logger.info("connection #%d: closed (code %d)", self.id, conn.close_code)
        if opened and self.listener is not None:
            try:
                self.listener.on_close(conn.close_code, conn.close_reason)
            except Exception:
                logger.exception("connection #%d: error in on_close", self.id)
        if self._server is not None:
            self._server._forget(self)
        self._closed_done = True
        waiters = self._closed
        if waiters is not None:
            self._closed = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._transport = None

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self.listener is not None:
            self.listener.pause_writing()

    def resume_writing(self) -> None:
        self._writing_paused = False
        pong = self._pong
        if pong is not None:
            self._pong = None
            if self.conn.close_sent is None:  # never after a close frame
                try:
                    self._write(pong)
                except ConnectionClosed:
                    pass
        self._wake_drain()
        if self.listener is not None:
            self.listener.resume_writing()

    def _wake_drain(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ events

    def _handle_events(self, events: list[Any]) -> None:
        listener = self.listener
        for event in events:
            kind = type(event)
            if kind is BinaryMessage:  # one that came after a control frame
                if listener is not None:
                    listener.on_binary(event.data)
            elif kind is TextMessage:
                if listener is not None:
                    listener.on_text(event.data)
            elif kind is Fragment:
                if listener is not None:
                    listener.on_fragment(event.data, event.text, event.fin)
            elif kind is Ping:
                if listener is not None:
                    listener.on_ping(event.data)
            elif kind is Pong:
                self._got_pong(event.data)
                if listener is not None:
                    listener.on_pong(event.data)
            elif kind is CloseReceived:
                pass  # the reply is queued; on_close comes with connection_lost
            elif kind is Request:
                self._got_request(event)
            elif kind is Response:
                self._opened_ok()
                # Frames that came with the 101 response, now that the listener is open.
                more = self.conn.receive_data(b"")
                if more:
                    self._handle_events(more)
            elif kind is HandshakeFailed:
                self._handshake_failed(event.error)

    def _got_request(self, request: Request) -> None:
        assert self._on_request is not None
        try:
            result = self._on_request(self, request)
        except Exception as exc:
            logger.error("connection #%d: error while processing the request", self.id, exc_info=exc)
            result = error_response(500, "Internal Server Error")
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            assert self._transport is not None
            self._transport.pause_reading()
            task = asyncio.ensure_future(result)
            task.add_done_callback(self._request_decided)
        else:
            self._answer_request(result)  # type: ignore[arg-type]

    def _request_decided(self, task: asyncio.Future[RequestResult]) -> None:
        if self._transport is None:
            return
        if task.cancelled():
            self.abort()
            return
        exc = task.exception()
        if exc is not None:
            logger.error("connection #%d: error while processing the request", self.id, exc_info=exc)
            result: RequestResult = error_response(500, "Internal Server Error")
        else:
            result = task.result()
        self._transport.resume_reading()
        self._batch = []
        try:
            self._answer_request(result)
        except Exception as error:
            self._flush()
            self._internal_error(error)
            return
        self._after_input()

    def _answer_request(self, result: RequestResult) -> None:
        conn = self.conn
        assert isinstance(conn, ServerConnection) and self._transport is not None
        if result is None:
            result = error_response(404, "Not Found")
        if isinstance(result, Response):
            self._transport.write(conn.reject(result))
            self._transport.close()
            self._handshake_failed(InvalidHandshake(f"rejected with HTTP {result.status}", result))
            return
        try:
            response = conn.accept(extra_headers=self.options.extra_headers)
        except InvalidHandshake as exc:
            self._transport.write(conn.reject(exc.response))  # type: ignore[arg-type]
            self._transport.close()
            self._handshake_failed(exc)
            return
        except Exception as exc:  # a select_subprotocol callback failed
            logger.error("connection #%d: error while accepting the request", self.id, exc_info=exc)
            self._transport.write(conn.reject(error_response(500, "Internal Server Error")))
            self._transport.close()
            self._handshake_failed(InvalidHandshake("error while accepting the request"))
            return
        self._transport.write(response)
        self.listener = result
        self._opened_ok()
        # Frames that arrived with the request.
        events = conn.receive_data(b"")
        if events:
            self._handle_events(events)

    def _opened_ok(self) -> None:
        logger.info("connection #%d: open (%s, peer %s)", self.id, self.conn.role.value, self.remote_address)
        self._cancel_timer()
        if self.listener is not None:
            self.conn.sink = self.listener
        self._arm_keepalive()
        self._set_opened()
        if self.listener is not None:
            self.listener.on_open(self)

    def _handshake_failed(self, error: Exception) -> None:
        self._cancel_timer()
        self._set_opened(error)
        out = self.conn.data_to_send()
        if self._transport is not None:
            if out:
                self._transport.write(out)
            self._transport.close()

    def _internal_error(self, exc: BaseException) -> None:
        logger.error("connection #%d: unexpected error, closing with 1011", self.id, exc_info=exc)
        conn = self.conn
        if conn.state is State.OPEN:
            try:
                self._write(conn.send_close(1011, "internal error"))
            except ConnectionClosed:
                pass
            self._after_close_frame()
        else:
            self.abort()

    # ------------------------------------------------------------ abuse bounds

    def _hold_pongs(self) -> None:
        """Bound the automatic pongs (:meth:`Connection.bound_pongs`): while
        writing is paused (the peer does not read what we send), keep only
        the pong to the latest ping, written when writing resumes; when one
        read's pongs come to more than ``write_limit`` bytes, send only the
        latest. Reading goes on (pausing it while writing is backed up would
        deadlock two peers that both send more than the other reads at the
        moment)."""
        pong = self.conn.bound_pongs(self._writing_paused, self.options.write_limit)
        if pong is not None:
            self._pong = pong

    def _hold_failure(self) -> None:
        """The peer broke the protocol in this read, and the awaitable API's
        reader has not answered every message that came before the error:
        hold the close frame until it has (it comes back to ``recv`` with an
        empty queue, closes, or its handler returns), at most
        ``fail_timeout`` seconds, so that its replies go out first, as the
        callback API's do. Input stays ignored; sending stays allowed."""
        conn = self.conn
        failure = conn.failure
        out = conn._out
        listener = self.listener
        timeout = self.options.fail_timeout
        if (
            not isinstance(failure, FrameError)
            or listener is None
            or not timeout
            or conn.close_received is not None
            or conn.close_sent != (failure.code, failure.reason)
            or not out
            or out[-1][:1] != _CLOSE_HEAD  # Connection._fail appends its close frame last
            or not listener._pending()
        ):
            return
        out.pop()
        conn.close_sent = None
        conn.state = _OPEN  # for sending; input stays discarded (conn._discard)
        self._held = (failure.code, failure.reason)
        self._cancel_timer()  # keepalive
        self._timer = self._loop.call_later(timeout, self._release_failure)

    def _release_failure(self) -> None:
        """Send the held failure's close frame, then end as a failure does."""
        held = self._held
        if held is None:
            return
        self._held = None
        self._cancel_timer()
        conn = self.conn
        if self._transport is None or conn.state is not _OPEN:
            return
        code, reason = held
        try:
            frame = conn.send_close(code, reason)
        except ValueError:  # a reason too long for a close frame
            frame = conn.send_close(code, "")
        try:
            self._write(frame)
        except ConnectionClosed:
            return
        self._after_close_frame()

    # ------------------------------------------------------------ timers

    def _cancel_timer(self) -> None:
        """Cancel the pending timer and the keepalive deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._wheel is not None:
            self._wheel.discard(self)

    def _open_timed_out(self) -> None:
        self._timer = None
        logger.info("connection #%d: opening handshake timed out", self.id)
        self._handshake_failed(asyncio.TimeoutError("opening handshake timed out"))
        self.abort()

    def _after_close_frame(self) -> None:
        """A close frame went out or came in: end the transport in time."""
        conn = self.conn
        transport = self._transport
        if transport is None:
            return
        if conn.should_close_transport:
            self._cancel_timer()
            self._flush()  # the close frame may be in the batch
            transport.close()
        elif not self._closing:  # the close timer replaces the keepalive timer
            self._closing = True
            self._cancel_timer()
            if self.options.close_timeout is not None:
                self._timer = self._loop.call_later(self.options.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._timer = None
        logger.info("connection #%d: closing handshake timed out", self.id)
        self.abort()

    def _arm_keepalive(self) -> None:
        interval = self.options.ping_interval
        if interval is not None and not self._closing:
            self._awaiting_pong = False
            _KeepaliveWheel.add(self, interval)

    def _wheel_fired(self) -> None:
        if self._awaiting_pong:
            self._ping_timed_out()
        else:
            self._keepalive()

    def _keepalive(self) -> None:
        if self.conn.state is not State.OPEN:
            return
        # Silent since the previous tick: free its zlib state (context takeover kept).
        self.conn.release_idle_memory()
        try:
            self._send_ping(b"keepalive" + os.urandom(4), None)
        except ConnectionClosed:
            return
        timeout = self.options.ping_timeout
        if timeout is not None:
            self._awaiting_pong = True
            _KeepaliveWheel.add(self, timeout)
        else:
            self._arm_keepalive()

    def _ping_timed_out(self) -> None:
        logger.info("connection #%d: keepalive ping timed out, closing with 1011", self.id)
        try:
            self.close(1011, "keepalive ping timeout")
        except ConnectionClosed:
            self.abort()

    def _got_pong(self, data: bytes) -> None:
        pings = self._pings
        if data not in pings:
            return
        now = time.perf_counter()  # not loop.time(): uvloop counts whole milliseconds
        keepalive = False
        # A pong answers its ping and every earlier one (RFC 6455 section 5.5.3).
        for payload in list(pings):
            sent_at, future = pings.pop(payload)
            keepalive = keepalive or future is None
            if future is not None and not future.done():
                future.set_result(now - sent_at)
            if payload == data:
                self.latency = now - sent_at
                break
        if keepalive and self.conn.state is State.OPEN and not self._closing:
            self._cancel_timer()
            self._arm_keepalive()
