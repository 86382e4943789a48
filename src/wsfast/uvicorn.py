"""A WebSocket protocol for uvicorn, on wsfast's sans-I/O core and codec.

    uvicorn app:app --ws wsfast.uvicorn:WSFastProtocol

or ``uvicorn.Config(app, ws="wsfast.uvicorn:WSFastProtocol")`` (the class
itself works too). It follows uvicorn's contract for WebSocket protocol
classes: built as ``WSFastProtocol(config, server_state, app_state)``, handed
the transport with ``connection_made`` and the upgrade request with the first
``data_received``; it registers in ``server_state.connections`` and
``server_state.tasks`` and closes with 1012 on ``shutdown()``. The
application speaks ASGI ``websocket`` (spec 2.4), including the
``websocket.http.response`` extension to deny with any HTTP response.

uvicorn's settings map onto wsfast's limits:

* ``ws_max_size``: ``max_message_size`` (bytes after decompression; larger
  messages close the connection with 1009);
* ``ws_max_queue``: messages received and not yet taken by the application;
  reading pauses while that many wait (backpressure on the client);
* ``ws_ping_interval`` / ``ws_ping_timeout``: keepalive pings; a ping
  unanswered after ``ws_ping_timeout`` closes with 1011;
* ``ws_per_message_deflate``: negotiate permessage-deflate (wsfast's default
  settings: 15-bit windows, context takeover, inflation bounded by
  ``ws_max_size``).

Unlike uvicorn's own implementations, reading is not paused after every
message (only when the queue is full), received messages are handed over
without a frame object or an ``asyncio.Queue``, and sending a message is one
``transport.write`` without a coroutine switch unless the transport asked to
pause writing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from typing import Any, Optional, Union
from urllib.parse import unquote

from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import ClientDisconnected, get_local_addr, get_remote_addr, is_ssl

from .events import BinaryMessage, CloseReceived, HandshakeFailed, Pong, TextMessage
from .exceptions import InvalidHandshake, InvalidState
from .extensions import DEFAULT_DEFLATE
from .handshake import check_request, error_response, offered_subprotocols
from .http11 import Headers, Request, Response
from .protocol import BY_REFERENCE, ServerConnection, State

__all__ = ["WSFastProtocol"]

_CLOSED = State.CLOSED

logger = logging.getLogger("uvicorn.error")

#: Seconds to wait for the client's close frame after ours, then drop the
#: connection (the default of :attr:`WSFastProtocol.close_timeout`).
CLOSE_TIMEOUT = 10.0
#: Bytes that may arrive after the upgrade request and before the application
#: accepts; reading pauses beyond this until it does.
EARLY_DATA_LIMIT = 65536
#: Bytes of automatic pongs one read may queue before only the latest is kept.
PONG_LIMIT = 65536

Message = dict[str, Any]


class WSFastProtocol(asyncio.Protocol):
    """One WebSocket connection under uvicorn (see the module docstring).

    The attributes uvicorn's own protocol classes have keep their meaning:
    ``close_timeout`` (seconds to wait for the client's close frame after
    ours; settable per connection) and ``close_timer`` (the pending wait, or
    ``None``), ``ping_interval``, ``ping_timeout``, ``ping_timer`` (the next
    keepalive ping), ``pong_timer`` (the deadline of the ping in flight),
    ``ping_sent_at`` and ``last_ping_rtt``.
    """

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logger
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers
        self.conn = ServerConnection(
            max_message_size=config.ws_max_size,
            deflate=DEFAULT_DEFLATE if config.ws_per_message_deflate else None,
        )
        self.conn.sink = self
        self.max_queue: int = max(1, config.ws_max_queue or 1)
        self.ping_interval: Optional[float] = config.ws_ping_interval or None
        self.ping_timeout: Optional[float] = config.ws_ping_timeout or None
        self.ping_timer: Optional[asyncio.TimerHandle] = None
        self.pong_timer: Optional[asyncio.TimerHandle] = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0
        self.close_timeout: float = CLOSE_TIMEOUT
        self.close_timer: Optional[asyncio.TimerHandle] = None
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.scope: dict[str, Any] = {}
        self.client: Optional[tuple[str, int]] = None
        # The ASGI side: received events, and the application's single waiter.
        self._queue: collections.deque[Message] = collections.deque()
        self._waiter: Optional[asyncio.Future[None]] = None
        self._disconnect: Optional[Message] = None  # queued once, then repeated
        self._accepted = False  # the 101 is out
        self._open = False  # accepted, and no disconnect yet: the application may send messages
        self._responding: Optional[Response] = None  # a websocket.http.response in progress
        self._lost = False
        self._closing = False  # transport.close() called
        self._read_paused = False
        self._write_paused = False
        self._pong: Optional[bytes] = None  # the pong to the latest ping, held while writing is paused
        self._drain: Optional[asyncio.Future[None]] = None
        self._early = 0
        self._ping: Optional[bytes] = None

    # ------------------------------------------------------------ transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.client = get_remote_addr(self.transport)
        if logger.isEnabledFor(TRACE_LOG_LEVEL):
            logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection made", self._prefix())

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if not self._accepted and conn.request is not None:
            self._early += len(data)  # frames before the application accepted
            if self._early > EARLY_DATA_LIMIT:
                self._pause_reading()
        events = conn.receive_data(data)
        if events:
            self._handle(events)
        elif conn.failure is not None or conn.state is _CLOSED:
            # Without events, the core has something to send only when the
            # connection failed (automatic replies come with their events).
            self._flush()

    def _handle(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, BinaryMessage):  # one that came after a control frame
                self.on_binary(event.data)
            elif isinstance(event, TextMessage):
                self.on_text(event.data)
            elif isinstance(event, Request):
                self._handle_request(event)
            elif isinstance(event, CloseReceived):
                self._set_disconnect(event.code, event.reason)
            elif isinstance(event, Pong):
                if self._ping is not None and event.data == self._ping:
                    self._pong_received()
            elif isinstance(event, HandshakeFailed):
                self._log_status(event.error)
        self._flush()

    def eof_received(self) -> Optional[bool]:
        return None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._lost = True
        self.conn.receive_eof()
        self.connections.discard(self)
        self._stop_keepalive()
        self._cancel_close_timer()
        self._set_disconnect(1006)
        self._wake_drain()
        if logger.isEnabledFor(TRACE_LOG_LEVEL):
            logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection lost", self._prefix())

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        pong, self._pong = self._pong, None
        if pong is not None and self.conn.close_sent is None and not self._lost and not self._closing:
            self.transport.write(pong)  # the answer to the latest ping, held while the peer did not read
        self._wake_drain()

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 (Service Restart), or answer
        500 if the handshake is not over; then close the transport."""
        if self._lost:
            return
        self._stop_keepalive()
        conn = self.conn
        if conn.state is State.OPEN and self._accepted:
            self._set_disconnect(1012)
            self._open = False
            self.transport.write(conn.send_close(1012))
        elif conn.state is State.CONNECTING:
            self._responding = None  # nothing of it is out yet
            self._reject(_internal_error())
        self._cancel_close_timer()
        self._close_transport()

    # ------------------------------------------------------------ incoming

    def _handle_request(self, request: Request) -> None:
        try:
            check_request(request)
        except InvalidHandshake as exc:  # not a valid upgrade: answered without the application
            self._reject(_response_of(exc))
            return
        target = request.target
        raw_path, _, query = target.partition("?")
        root_path: str = self.config.root_path
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(self.transport) else "ws",
            "server": get_local_addr(self.transport),
            "client": self.client,
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query.encode("ascii"),
            "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers],
            "subprotocols": offered_subprotocols(request),
            "state": self.app_state.copy(),
            # "wsfast.protocol": how wsfast.hub finds this connection behind the
            # application's send (wrapped by middleware) to write frames directly.
            "extensions": {"websocket.http.response": {}, "wsfast.protocol": {"protocol": self}},
        }
        self._queue.append({"type": "websocket.connect"})
        task = self.loop.create_task(self._run_asgi())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_text(self, data: Union[str, bytes]) -> None:
        self._put({"type": "websocket.receive", "text": data})

    def on_binary(self, data: bytes) -> None:
        self._put({"type": "websocket.receive", "bytes": data})

    def on_fragment(self, data: Union[str, bytes], text: bool, fin: bool) -> None:  # pragma: no cover
        raise AssertionError("messages are not streamed")

    def _put(self, message: Message) -> None:
        if self.conn.close_sent is not None:  # the application closed: drop, keep reading for the reply
            return
        queue = self._queue
        queue.append(message)
        waiter = self._waiter
        if waiter is None:
            # The application is busy elsewhere, not in receive(): stop
            # reading until it has taken what waits (while it waits in
            # receive(), as an echo loop does, reading never pauses).
            self._pause_reading()
        else:
            if len(queue) >= self.max_queue:
                self._pause_reading()
            if not waiter.done():
                waiter.set_result(None)

    def _set_disconnect(self, code: int, reason: Optional[str] = None) -> None:
        """The ``websocket.disconnect`` event: with the close frame's
        ``reason`` when there was one, else ``code`` alone (1006: the
        connection was lost or the handshake never completed; 1012: uvicorn
        shuts down)."""
        self._open = False
        if self._disconnect is None:
            if reason is None:
                self._disconnect = {"type": "websocket.disconnect", "code": code}
            else:
                self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> Message:
        """ASGI ``receive``: the next event; ``websocket.disconnect`` once
        the connection is over (and again on every later call)."""
        while True:
            queue = self._queue
            if queue:
                message = queue.popleft()
                if self._read_paused and not queue and self._accepted:
                    self._resume_reading()
                return message
            if self._disconnect is not None:
                return self._disconnect
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    # ------------------------------------------------------------ outgoing

    async def send(self, message: Message) -> None:
        """ASGI ``send``. Waits first while the transport asked to pause
        writing: nothing, not even a close, overtakes data still in flight."""
        if self._write_paused:
            await self._drained()
        kind = message["type"]
        if kind == "websocket.send" and self._open:
            data: Any = message.get("bytes")
            conn = self.conn
            is_text = data is None
            if is_text:
                data = message.get("text")
                if data is None:
                    raise RuntimeError("websocket.send needs 'bytes' or 'text'.")
            if len(data) >= BY_REFERENCE:  # header, then the payload itself: no copy of it
                for part in conn.send_parts(data, text=is_text):
                    self.transport.write(part)
            else:
                self.transport.write(conn.send_text(data) if is_text else conn.send_binary(data))
            return
        self._send_other(kind, message)

    def _send_other(self, kind: str, message: Message) -> None:
        """Everything but a message on an open connection: the handshake's
        answers, the close, and what is not allowed."""
        conn = self.conn
        if self._lost:
            raise ClientDisconnected()
        if self._responding is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got {kind!r}.")
            response = self._responding
            response.body += message.get("body", b"")
            if not message.get("more_body", False):
                self._responding = None
                self._reject(response)
        elif conn.state is State.CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._reject(error_response(403, "Forbidden"))
            elif kind == "websocket.http.response.start":
                status = message["status"]
                if not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code {status!r} in response.")
                headers = Headers(
                    (name.decode("latin-1"), value.decode("latin-1")) for name, value in message.get("headers", ())
                )
                if "connection" not in headers:
                    headers.add("Connection", "close")
                self._responding = Response(status, headers)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start', but got {kind!r}."
                )
        elif not self._open:
            raise ClientDisconnected()
        elif kind == "websocket.close":
            code = message.get("code") or 1000
            reason = message.get("reason") or ""
            self._set_disconnect(code, reason)
            self._send_close(code, reason)
        else:
            raise RuntimeError(f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {kind!r}.")

    def _accept(self, message: Message) -> None:
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self.default_headers + list(message.get("headers", ()))
        ]
        try:
            response = self.conn.accept(subprotocol=message.get("subprotocol"), extra_headers=headers)
        except InvalidHandshake as exc:
            self._reject(_response_of(exc))
            raise RuntimeError(f"websocket.accept failed: {exc}") from exc
        self._accepted = self._open = True
        self._early = 0
        logger.info('%s - "WebSocket %s" [accepted]', self._client_text(), self._path_text())
        self.transport.write(response)
        self._arm_keepalive()
        self._resume_reading()
        self._handle(self.conn.receive_data(b""))  # the frames that came before the accept

    def _reject(self, response: Response) -> None:
        if self.conn.state is not State.CONNECTING:
            self._close_transport()
            return
        for name, value in self.default_headers:
            if name.decode("latin-1") not in response.headers:
                response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
        logger.info('%s - "WebSocket %s" %d', self._client_text(), self._path_text(), response.status)
        self.transport.write(self.conn.reject(response))
        self._set_disconnect(1006)
        self._close_transport()

    def _send_close(self, code: int, reason: str) -> None:
        """Start the closing handshake: our close frame, then read until the
        client's (``close_timeout`` at most)."""
        self._open = False
        try:
            self.transport.write(self.conn.send_close(code, reason))
        except InvalidState:  # already closing
            return
        self._stop_keepalive()
        self._resume_reading()  # read the reply even if the queue is full
        if self.conn.should_close_transport:
            self._close_transport()
        else:
            self._cancel_close_timer()
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self.close_timer = None
        self._close_transport()

    def _flush(self) -> None:
        """Write the automatic replies (pongs bounded against a peer that
        pings and does not read: :meth:`Connection.bound_pongs`); close when
        the core says so."""
        conn = self.conn
        if len(conn._out) > 1 or (conn._out and self._write_paused):
            pong = conn.bound_pongs(self._write_paused, PONG_LIMIT)
            if pong is not None:
                self._pong = pong
        out = conn.data_to_send()
        if out and not self._lost and not self._closing:
            self.transport.write(out)
        if conn.failure is None and conn.state is not State.CLOSED:
            return
        if conn.failure is not None and conn.close_sent is not None:
            self._set_disconnect(*conn.close_sent)
        if conn.should_close_transport:
            self._cancel_close_timer()
            self._close_transport()

    def _close_transport(self) -> None:
        if not self._closing and not self._lost:
            self._closing = True
            self._stop_keepalive()
            self.transport.close()

    def _cancel_close_timer(self) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None

    async def _drained(self) -> None:
        if self._drain is None:
            self._drain = self.loop.create_future()
        await self._drain
        if self._lost:
            raise ClientDisconnected()

    def _wake_drain(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _pause_reading(self) -> None:
        if not self._read_paused and not self._lost:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and not self._lost:
            self._read_paused = False
            self.transport.resume_reading()

    # ------------------------------------------------------------ keepalive

    def _arm_keepalive(self) -> None:
        if self.ping_interval is not None and self.conn.state is State.OPEN and not self._closing:
            delay = max(0.0, self.ping_interval - self.last_ping_rtt)
            self.ping_timer = self.loop.call_later(delay, self._keepalive)

    def _keepalive(self) -> None:
        self.ping_timer = None
        if self.conn.state is not State.OPEN or self._lost or self._closing:
            return
        self.conn.release_idle_memory()  # silent since the previous tick: free its zlib state
        self._ping = os.urandom(4)
        self.ping_sent_at = self.loop.time()
        self.transport.write(self.conn.send_ping(self._ping))
        if self.ping_timeout is not None:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self._keepalive_timeout)
        else:
            self._arm_keepalive()

    def _pong_received(self) -> None:
        self._ping = None
        self.last_ping_rtt = self.loop.time() - self.ping_sent_at
        if self.pong_timer is not None:  # else the next ping is already scheduled
            self.pong_timer.cancel()
            self.pong_timer = None
            self._arm_keepalive()

    def _keepalive_timeout(self) -> None:
        """No pong in ``ping_timeout``: fail the connection (1011), at once
        (a client that does not answer pings will not answer a close)."""
        self.pong_timer = None
        self._ping = None
        if self.conn.state is not State.OPEN or self._lost or self._closing:
            return
        if logger.isEnabledFor(TRACE_LOG_LEVEL):
            logger.log(TRACE_LOG_LEVEL, "%sWebSocket keepalive ping timeout", self._prefix())
        self._set_disconnect(1011, "keepalive ping timeout")
        self._open = False
        self.transport.write(self.conn.send_close(1011, "keepalive ping timeout"))
        self._close_transport()

    def _stop_keepalive(self) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        self._ping = None

    # ------------------------------------------------------------ the application

    async def _run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            logger.exception("Exception in ASGI application\n")
        else:
            if self.conn.state is State.CONNECTING and self._responding is None and not self._lost:
                logger.error("ASGI callable returned without completing handshake.")
            elif result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
        self._app_ended()

    def _app_ended(self) -> None:
        """The application returned or raised. As uvicorn's own protocols
        do: a denial response in progress goes out as it is; no answer at
        all is a 500; an open connection the application did not close is
        dropped (the client sees 1006); a close waits for the client's."""
        if self._lost:
            return
        if self.conn.state is State.CONNECTING:
            response, self._responding = self._responding, None
            self._reject(response if response is not None else _internal_error())
        elif self.close_timer is None:
            self._close_transport()

    # ------------------------------------------------------------ logging

    def _prefix(self) -> str:
        return "%s:%d - " % self.client if self.client else ""

    def _client_text(self) -> str:
        return "%s:%d" % self.client if self.client else ""

    def _path_text(self) -> str:
        query = self.scope.get("query_string", b"")
        path = self.scope.get("path", "")
        return f"{path}?{query.decode('ascii')}" if query else path

    def _log_status(self, error: Exception) -> None:
        response = getattr(error, "response", None)
        if response is not None:
            logger.info('%s - "WebSocket" %d', self._client_text(), response.status)


def _internal_error() -> Response:
    """The 500 uvicorn's protocols answer with."""
    return Response(
        500,
        Headers([("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]),
        b"Internal Server Error",
    )


def _response_of(error: InvalidHandshake) -> Response:
    """The HTTP response a failed handshake check asks for (500 if none)."""
    response = error.response
    return response if isinstance(response, Response) else error_response(500, "Internal Server Error")
