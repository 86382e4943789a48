"""asyncio servers: :func:`serve` (awaitable API) and :func:`create_server`
(callback API).

Both accept ``ws://`` and, with an :class:`ssl.SSLContext`, ``wss://``
connections on TCP or a Unix socket, check and answer the opening
handshake, and track their connections for a graceful shutdown:
:meth:`Server.close` closes every connection with 1001 and waits for the
handlers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
import sys
from typing import Any, Awaitable, Callable, Generator, Mapping, Optional, Union

from .. import __version__
from ..exceptions import ConnectionClosed
from ..handshake import error_response
from ..http11 import Request, Response
from ..options import Options, split_options
from ..protocol import ServerConnection, State
from .connection import WebSocket
from .sockets import TLS_OPTIONS, Acceptor, usable
from .transport import RequestResult, WebSocketTransport

__all__ = ["Server", "serve", "create_server", "Handler", "ProcessRequest"]

logger = logging.getLogger("wsfast")

Handler = Callable[[WebSocket], Awaitable[Any]]
"""A coroutine function run for each connection of :func:`serve`."""

ProcessRequest = Callable[[WebSocketTransport, Request], Union[Optional[Response], Awaitable[Optional[Response]]]]
"""Called with each request before the upgrade: return a
:class:`~wsfast.http11.Response` to answer it (authentication, health
checks, plain HTTP pages), or ``None`` to go on with the WebSocket upgrade."""

ListenerFactory = Callable[[WebSocketTransport, Request], Union[RequestResult, Awaitable[RequestResult]]]

SERVER_HEADER = f"wsfast/{__version__}"


class Server:
    """A running WebSocket server.

    ``connections`` holds the connections' transports, from the TCP (and
    TLS) connection on. Use it as an async context manager, or call
    :meth:`close` and :meth:`wait_closed`.

    ``max_connections`` counts the connections whose upgrade request has
    arrived (above it: 503), not those still waiting for one, so that
    sockets that connect and stay silent cannot shut legitimate clients
    out; those are bounded by ``max_handshakes`` instead (above it the
    oldest is dropped) and by ``open_timeout``.
    """

    def __init__(
        self,
        factory: ListenerFactory,
        options: Options,
        *,
        max_connections: Optional[int] = None,
        max_handshakes: Optional[int] = None,
        server_header: Optional[str] = SERVER_HEADER,
    ) -> None:
        self.options = options
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.server_header = server_header
        self.connections: set[WebSocketTransport] = set()
        # Connections whose upgrade request has not arrived yet, oldest first.
        self._handshaking: dict[WebSocketTransport, None] = {}
        self._factory = factory
        self._server: Optional[asyncio.Server] = None
        # Accepts onto wsfast's socket transport (see wsfast.asyncio.sockets),
        # or None: the event loop's server accepts.
        self._acceptor: Optional[Acceptor] = None
        self._forever: Optional[asyncio.Future[None]] = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._closing = False

    def _protocol(self) -> WebSocketTransport:
        options = self.options
        conn = ServerConnection(
            select_subprotocol=options.select_subprotocol,
            origins=options.origins,
            server_header=self.server_header,
            **options.connection_options(),
        )
        return WebSocketTransport(conn, options, on_request=self._on_request, server=self)

    def _register(self, ws: WebSocketTransport) -> None:
        """A connection was made (after the TLS handshake, if any)."""
        self.connections.add(ws)
        handshaking = self._handshaking
        handshaking[ws] = None
        if self.max_handshakes is not None and len(handshaking) > self.max_handshakes:
            oldest = next(iter(handshaking))
            del handshaking[oldest]
            logger.info("connection #%d: dropped: more than %d handshakes in progress", oldest.id, self.max_handshakes)
            oldest.abort()

    def _on_request(self, ws: WebSocketTransport, request: Request) -> Any:
        self._handshaking.pop(ws, None)
        if self._closing:
            return error_response(503, "Server shutting down")
        if self.max_connections is not None and len(self.connections) - len(self._handshaking) > self.max_connections:
            return error_response(503, "Too many connections", [("Retry-After", "1")])
        return self._factory(ws, request)

    def _forget(self, ws: WebSocketTransport) -> None:
        self.connections.discard(ws)
        self._handshaking.pop(ws, None)

    # ------------------------------------------------------------ public

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def port(self) -> int:
        """The TCP port of the first listening socket (handy with port 0)."""
        return int(self.sockets[0].getsockname()[1])

    def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting connections and close the open ones with ``code``."""
        self._closing = True
        self._stop_listening()
        for ws in list(self.connections):
            if ws.conn.state is State.OPEN:
                try:
                    ws.close(code, reason)
                except ConnectionClosed:
                    pass
            elif ws.conn.state is State.CONNECTING:
                ws.abort()

    async def wait_closed(self) -> None:
        """Wait until the listening sockets, connections and handlers are done."""
        if self._server is not None:
            await self._server.wait_closed()
        while self.connections or self._tasks:
            pending = [ws.wait_closed() for ws in list(self.connections)] + list(self._tasks)
            await asyncio.gather(*pending, return_exceptions=True)

    async def serve_forever(self) -> None:
        """Serve until cancelled (or closed: then it raises CancelledError)."""
        assert self._server is not None
        if self._acceptor is None:
            await self._server.serve_forever()
            return
        if self._forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        self._forever = asyncio.get_running_loop().create_future()
        try:
            await self._forever
        finally:
            self._forever = None
            self._stop_listening()

    def _stop_listening(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        if self._server is not None:
            self._server.close()
        if self._forever is not None:
            self._forever.cancel()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()

    async def _start(
        self,
        host: Optional[str],
        port: Optional[int],
        *,
        path: Optional[str],
        sock: Optional[socket.socket],
        ssl: Optional[ssl_module.SSLContext],
        **kwargs: Any,
    ) -> Server:
        loop = asyncio.get_running_loop()
        own_transport = usable(loop, ssl, self.options.own_transport)
        if own_transport:
            kwargs["start_serving"] = False
        if path is not None or (sock is not None and sock.family == getattr(socket, "AF_UNIX", None)):
            self._server = await loop.create_unix_server(self._protocol, path, sock=sock, ssl=ssl, **kwargs)
        elif sock is not None:
            self._server = await loop.create_server(self._protocol, sock=sock, ssl=ssl, **kwargs)
        else:
            self._server = await loop.create_server(self._protocol, host, port, ssl=ssl, **kwargs)
        if own_transport:
            tls = {name: kwargs.get(name) for name in TLS_OPTIONS} if ssl is not None else {}
            self._acceptor = Acceptor(
                loop, self._server.sockets, self._protocol, kwargs.get("backlog", 100), ssl=ssl, **tls
            )
        return self


class _Starting:
    """What :func:`serve` and :func:`create_server` return: await it, or use
    it as an async context manager."""

    def __init__(self, server: Server, start: Callable[[], Awaitable[Server]]) -> None:
        self._server = server
        self._start = start

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._server.__aexit__(*exc_info)


def create_server(
    factory: ListenerFactory,
    host: Optional[str] = None,
    port: Optional[int] = None,
    *,
    path: Optional[str] = None,
    sock: Optional[socket.socket] = None,
    ssl: Optional[ssl_module.SSLContext] = None,
    max_connections: Optional[int] = None,
    max_handshakes: Optional[int] = None,
    server_header: Optional[str] = SERVER_HEADER,
    **kwargs: Any,
) -> _Starting:
    """Start a callback-level server.

    ``factory(transport, request)`` decides each upgrade request: it returns
    a :class:`~wsfast.asyncio.listener.Listener` (accept), a
    :class:`~wsfast.http11.Response` (reject), ``None`` (404), or an awaitable
    of one of them. ``path`` serves on a Unix socket. Other keyword arguments
    are :class:`~wsfast.options.Options` fields, or go to
    :meth:`asyncio.loop.create_server` (``backlog``, ``reuse_port``...).
    ``max_connections`` answers 503 above that many connections (counted
    from their upgrade request on); ``max_handshakes`` bounds the
    connections still waiting for their upgrade request (above it, the
    oldest of them is dropped; ``None``: only ``open_timeout`` bounds them).

    ``reuse_port=True`` sets ``SO_REUSEPORT``: several servers (processes)
    bind the same port and the kernel spreads the connections among them
    (see :mod:`wsfast.workers`). Where the OS has no ``SO_REUSEPORT`` it
    raises :exc:`ValueError`.
    """
    if kwargs.get("reuse_port") and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError(f"reuse_port=True needs socket.SO_REUSEPORT, which this platform ({sys.platform}) lacks")
    options, loop_kwargs = split_options(kwargs)
    server = Server(
        factory, options, max_connections=max_connections, max_handshakes=max_handshakes, server_header=server_header
    )
    return _Starting(server, lambda: server._start(host, port, path=path, sock=sock, ssl=ssl, **loop_kwargs))


def serve(
    handler: Union[Handler, Mapping[str, Handler]],
    host: Optional[str] = None,
    port: Optional[int] = None,
    *,
    process_request: Optional[ProcessRequest] = None,
    **kwargs: Any,
) -> _Starting:
    """Start a server that runs ``handler(websocket)`` for each connection.

    ``handler`` is a coroutine function, or a mapping from request path to
    coroutine function (routing; an unknown path gets 404). When it returns
    the connection is closed with 1000; if it raises, with 1011.
    ``process_request(transport, request)`` may answer a request with a
    plain HTTP response instead (it may be a coroutine function). Every
    other keyword argument is as for :func:`create_server`. Use as::

        async with wsfast.serve(handler, "127.0.0.1", 8765) as server:
            await server.serve_forever()
    """
    routes: Mapping[str, Handler] = handler if isinstance(handler, Mapping) else {}
    single: Optional[Handler] = None if isinstance(handler, Mapping) else handler
    server_ref: list[Server] = []

    def factory(ws: WebSocketTransport, request: Request) -> Any:
        if process_request is None:
            return _route(ws, request)
        answer = process_request(ws, request)
        if asyncio.iscoroutine(answer) or isinstance(answer, asyncio.Future):
            return _decide_later(ws, request, answer)
        return answer if answer is not None else _route(ws, request)

    async def _decide_later(ws: WebSocketTransport, request: Request, answer: Awaitable[Optional[Response]]) -> Any:
        response = await answer
        return response if response is not None else _route(ws, request)

    def _route(ws: WebSocketTransport, request: Request) -> Union[WebSocket, Response]:
        target = single if single is not None else routes.get(request.path)
        if target is None:
            return error_response(404, "Not Found")
        return _HandledWebSocket(ws.options.max_queue, target, server_ref[0])

    starting = create_server(factory, host, port, **kwargs)
    if starting._server.options.stream_messages:
        raise ValueError("stream_messages is for the callback API (create_server)")
    server_ref.append(starting._server)
    return starting


class _HandledWebSocket(WebSocket):
    """A :class:`WebSocket` that runs the server's handler once open."""

    __slots__ = ("_handler", "_server")

    def __init__(self, max_queue: int, handler: Handler, server: Server) -> None:
        super().__init__(max_queue)
        self._handler = handler
        self._server = server

    def on_open(self, ws: WebSocketTransport) -> None:
        super().on_open(ws)
        # The handler's own coroutine is the task (no wrapper coroutine: 456
        # bytes per connection); what follows its end is a done callback.
        try:
            task = asyncio.ensure_future(self._handler(self))
        except Exception:  # a handler that is not a coroutine function and raised
            logger.exception("connection #%d: error in the connection handler", ws.id)
            ws.close(1011, "internal error")
            return
        self._server._tasks.add(task)
        task.add_done_callback(self._handler_done)  # one callback: it untracks the task too

    def _handler_done(self, task: asyncio.Future[Any]) -> None:
        self._server._tasks.discard(task)
        ws = self.transport
        if task.cancelled():
            if ws.conn.state is State.OPEN:
                ws.close(1001, "handler cancelled")
            return
        error = task.exception()
        if error is None:
            if ws.conn.state is State.OPEN:
                ws.close(1000)
        elif not isinstance(error, ConnectionClosed):
            logger.error("connection #%d: error in the connection handler", ws.id, exc_info=error)
            if ws.conn.state is State.OPEN:
                ws.close(1011, "internal error")
