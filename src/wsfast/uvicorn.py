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

from uvicorn.protocols.utils import ClientDisconnected, get_local_addr, get_remote_addr, is_ssl

from .events import BinaryMessage, CloseReceived, HandshakeFailed, Pong, TextMessage
from .exceptions import InvalidHandshake, InvalidState
from .extensions import DEFAULT_DEFLATE
from .handshake import check_request, error_response, offered_subprotocols
from .http11 import Headers, Request, Response
from .protocol import BY_REFERENCE, ServerConnection, State

__all__ = ["WSFastProtocol"]

logger = logging.getLogger("uvicorn.error")

#: Seconds to wait for the client's close frame after ours, then drop the connection.
CLOSE_TIMEOUT = 10.0
#: Bytes that may arrive after the upgrade request and before the application
#: accepts; reading pauses beyond this until it does.
EARLY_DATA_LIMIT = 65536

Message = dict[str, Any]


class WSFastProtocol(asyncio.Protocol):
    """One WebSocket connection under uvicorn (see the module docstring)."""

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
        self._read_paused = False
        self._write_paused = False
        self._drain: Optional[asyncio.Future[None]] = None
        self._early = 0
        self._timer: Optional[asyncio.TimerHandle] = None
        self._ping: Optional[bytes] = None

    # ------------------------------------------------------------ transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.client = get_remote_addr(self.transport)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if not self._accepted and conn.request is not None:
            self._early += len(data)  # frames before the application accepted
            if self._early > EARLY_DATA_LIMIT:
                self._pause_reading()
        events = conn.receive_data(data)
        if events:
            self._handle(events)
        else:
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
                    self._ping = None
                    self._arm_keepalive()
            elif isinstance(event, HandshakeFailed):
                self._log_status(event.error)
        self._flush()

    def eof_received(self) -> Optional[bool]:
        return None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._lost = True
        self.conn.receive_eof()
        self.connections.discard(self)
        self._cancel_timer()
        self._set_disconnect(self.conn.close_code, self.conn.close_reason)
        self._wake_drain()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 (Service Restart), or 500 if
        the handshake is not over."""
        if self._lost:
            return
        if self.conn.state is State.OPEN and self._accepted:
            self._set_disconnect(1012, "")
            self._send_close(1012, "")
        elif self.conn.state is State.CONNECTING:
            self._reject(error_response(500, "Internal Server Error"))
        else:
            self.transport.close()

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
        if len(queue) >= self.max_queue:
            self._pause_reading()
        self._wake()

    def _set_disconnect(self, code: int, reason: str) -> None:
        self._open = False
        if self._disconnect is None:
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
            if self._queue:
                message = self._queue.popleft()
                if self._read_paused and len(self._queue) < self.max_queue and self._accepted:
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
        """ASGI ``send``."""
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
            if self._write_paused:
                await self._drained()
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
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body', but got {kind!r}.")
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
            self._set_disconnect(code, message.get("reason") or "")
            self._send_close(code, message.get("reason") or "")
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
        if self._read_paused and len(self._queue) < self.max_queue:
            self._resume_reading()
        self._handle(self.conn.receive_data(b""))  # the frames that came before the accept

    def _reject(self, response: Response) -> None:
        if self.conn.state is not State.CONNECTING:
            self.transport.close()
            return
        for name, value in self.default_headers:
            if name.decode("latin-1") not in response.headers:
                response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
        logger.info('%s - "WebSocket %s" %d', self._client_text(), self._path_text(), response.status)
        self.transport.write(self.conn.reject(response))
        self._set_disconnect(1006, "")
        self.transport.close()

    def _send_close(self, code: int, reason: str) -> None:
        self._open = False
        try:
            self.transport.write(self.conn.send_close(code, reason))
        except InvalidState:  # already closing
            return
        self._resume_reading()  # read the reply even if the queue is full
        if self.conn.should_close_transport:
            self.transport.close()
        else:
            self._cancel_timer()
            self._timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.close)

    def _flush(self) -> None:
        """Write the automatic replies; close when the core says so."""
        conn = self.conn
        out = conn.data_to_send()
        if out and not self._lost:
            self.transport.write(out)
        if conn.failure is None and conn.state is not State.CLOSED:
            return
        if conn.failure is not None and conn.close_sent is not None:
            self._set_disconnect(*conn.close_sent)
        if conn.should_close_transport and not self._lost:
            self._cancel_timer()
            self.transport.close()

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
        self._cancel_timer()
        if self.ping_interval is not None and self.conn.state is State.OPEN:
            self._timer = self.loop.call_later(self.ping_interval, self._keepalive)

    def _keepalive(self) -> None:
        self._timer = None
        if self.conn.state is not State.OPEN or self._lost:
            return
        self._ping = os.urandom(4)
        self.transport.write(self.conn.send_ping(self._ping))
        if self.ping_timeout is not None:
            self._timer = self.loop.call_later(self.ping_timeout, self._keepalive_timeout)
        else:
            self._arm_keepalive()

    def _keepalive_timeout(self) -> None:
        self._timer = None
        if self.conn.state is State.OPEN and not self._lost:
            logger.info("%s - WebSocket keepalive ping timeout", self._client_text())
            self._set_disconnect(1011, "keepalive ping timeout")
            self._send_close(1011, "keepalive ping timeout")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------ the application

    async def _run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            logger.exception("Exception in ASGI application\n")
            self._app_ended(1011)
            return
        else:
            if self.conn.state is State.CONNECTING and not self._lost:
                logger.error("ASGI callable returned without completing handshake.")
            elif result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
        self._app_ended(1000)

    def _app_ended(self, code: int) -> None:
        """The application returned or raised: answer the handshake with a
        500 if it never did, else close the connection (``code``) if the
        application did not."""
        if self._lost:
            return
        if self.conn.state is State.CONNECTING:
            self._responding = None
            self._reject(error_response(500, "Internal Server Error"))
        elif self.conn.state is State.OPEN:
            self._set_disconnect(code, "")
            self._send_close(code, "")

    # ------------------------------------------------------------ logging

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


def _response_of(error: InvalidHandshake) -> Response:
    """The HTTP response a failed handshake check asks for (500 if none)."""
    response = error.response
    return response if isinstance(response, Response) else error_response(500, "Internal Server Error")
