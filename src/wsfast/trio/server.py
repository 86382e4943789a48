"""The Trio server: :func:`serve`.

``await serve(handler, host, port)`` listens and runs ``handler(ws)`` for each
connection until it is cancelled; ``await nursery.start(serve, handler,
host, port)`` returns the :class:`Server` once it listens. Each connection
runs in the server's nursery: its opening handshake (bounded by
``open_timeout``), then its background task (reader, keepalive) next to the
handler. When the handler returns the connection closes with 1000, when it
raises with 1011; when the server is cancelled, every open connection closes
with 1001 (each closing handshake bounded by ``close_timeout``, shielded from
the cancellation) before ``serve`` ends.
"""

from __future__ import annotations

import errno
import inspect
import logging
import math
import os
import socket as stdlib_socket
import ssl as ssl_module
from typing import Any, Awaitable, Callable, Mapping, Optional, Union

import trio

from .. import __version__
from ..events import HandshakeFailed
from ..exceptions import ConnectionClosed, InvalidHandshake
from ..handshake import error_response
from ..http11 import Request, Response
from ..options import Options, split_options
from ..protocol import ServerConnection, State
from .connection import READ_SIZE, WebSocket

__all__ = ["serve", "Server", "Handler", "ProcessRequest"]

logger = logging.getLogger("wsfast")

Handler = Callable[[WebSocket], Awaitable[Any]]
"""An async function run for each connection of :func:`serve`."""

ProcessRequest = Callable[[WebSocket, Request], Union[Optional[Response], Awaitable[Optional[Response]]]]
"""Called with each request before the upgrade (plain or async): return a
:class:`~wsfast.http11.Response` to answer it (authentication, health
checks), or ``None`` to go on with the WebSocket upgrade."""

SERVER_HEADER = f"wsfast/{__version__}"

# accept() errors that mean "out of resources, try again soon" (as trio.serve_listeners)
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class Server:
    """A running server, as ``nursery.start(serve, ...)`` returns it.

    ``connections`` holds the connections from the TCP (and TLS)
    connection on; :meth:`close` stops the server as cancelling
    :func:`serve` does (open connections close with 1001).
    """

    def __init__(
        self,
        handler: Union[Handler, Mapping[str, Handler]],
        options: Options,
        *,
        process_request: Optional[ProcessRequest],
        max_connections: Optional[int],
        server_header: Optional[str],
    ) -> None:
        self.options = options
        self.max_connections = max_connections
        self.server_header = server_header
        #: The listeners (:class:`trio.SocketListener`, or :class:`trio.SSLListener` with TLS).
        self.listeners: list[trio.abc.Listener[Any]] = []
        self.connections: set[WebSocket] = set()
        self._routes: Mapping[str, Handler] = handler if isinstance(handler, Mapping) else {}
        self._single: Optional[Handler] = None if isinstance(handler, Mapping) else handler
        self._process_request = process_request
        self._upgrading = 0  # connections past their upgrade request
        self._scope: Optional[trio.CancelScope] = None

    @property
    def sockets(self) -> list[trio.socket.SocketType]:
        """The listening sockets."""
        sockets = []
        for listener in self.listeners:
            inner: Any = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
            sockets.append(inner.socket)
        return sockets

    @property
    def port(self) -> int:
        """The TCP port of the first listening socket (handy with port 0)."""
        return int(self.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop serving: :func:`serve` closes every connection with 1001 and returns."""
        if self._scope is not None:
            self._scope.cancel()

    # ------------------------------------------------------------ connections

    async def _accept(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                logger.error("accept() failed (%s): retrying in 0.1 s", os.strerror(exc.errno))
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.abc.Stream) -> None:
        options = self.options
        conn = ServerConnection(
            select_subprotocol=options.select_subprotocol,
            origins=options.origins,
            server_header=self.server_header,
            **options.connection_options(),
        )
        ws = WebSocket(stream, conn, options)
        self.connections.add(ws)
        upgrading = False
        try:
            with trio.move_on_after(math.inf if options.open_timeout is None else options.open_timeout) as scope:
                handler, upgrading = await self._handshake(ws)
            if scope.cancelled_caught:
                logger.info("connection #%d: opening handshake timed out", ws.id)
            if handler is None or scope.cancelled_caught:
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws._background)
                await self._run_handler(ws, handler)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.info("connection #%d: lost during the opening handshake: %s", ws.id, exc.__cause__ or exc)
        except Exception as exc:
            logger.error("connection #%d: unexpected error", ws.id, exc_info=exc)
        finally:
            self.connections.discard(ws)
            if upgrading:
                self._upgrading -= 1
            with trio.CancelScope(shield=True):
                await ws._shutdown(1001, "server shutting down")

    async def _handshake(self, ws: WebSocket) -> tuple[Optional[Handler], bool]:
        """Read and answer the upgrade request: the handler to run (``None``
        if the request was rejected), and whether it counts toward
        ``max_connections``."""
        conn = ws.conn
        assert isinstance(conn, ServerConnection)
        stream = ws.stream
        if isinstance(stream, trio.SSLStream):
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:
                logger.info("connection #%d: TLS handshake failed: %s", ws.id, exc.__cause__ or exc)
                return None, False
        request: Optional[Request] = None
        while request is None:
            try:
                data = await stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                return None, False
            for event in conn.receive_data(data):
                if isinstance(event, Request):
                    request = event
                elif isinstance(event, HandshakeFailed):
                    await self._reject(ws, None)
                    return None, False
        self._upgrading += 1
        max_connections = self.max_connections
        if max_connections is not None and self._upgrading > max_connections:
            await self._reject(ws, error_response(503, "Too many connections", [("Retry-After", "1")]))
            return None, True
        try:
            answer = self._process_request(ws, request) if self._process_request is not None else None
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            logger.error("connection #%d: error in process_request", ws.id, exc_info=exc)
            answer = error_response(500, "Internal Server Error")
        if answer is not None:
            await self._reject(ws, answer)
            return None, True
        handler = self._single if self._single is not None else self._routes.get(request.path)
        if handler is None:
            await self._reject(ws, error_response(404, "Not Found"))
            return None, True
        try:
            response = conn.accept(extra_headers=self.options.extra_headers)
        except InvalidHandshake as exc:
            assert isinstance(exc.response, Response)
            await self._reject(ws, exc.response)
            return None, True
        except Exception as exc:  # a select_subprotocol callback failed
            logger.error("connection #%d: error while accepting the request", ws.id, exc_info=exc)
            await self._reject(ws, error_response(500, "Internal Server Error"))
            return None, True
        conn.sink = ws
        await stream.send_all(response)
        logger.info("connection #%d: open (server, peer %s)", ws.id, ws.remote_address)
        await ws._received(conn.receive_data(b""))  # frames that came with the request
        return handler, True

    async def _reject(self, ws: WebSocket, response: Optional[Response]) -> None:
        """Answer with an HTTP error instead of upgrading; close the stream."""
        conn = ws.conn
        assert isinstance(conn, ServerConnection)
        data = conn.reject(response) if response is not None else conn.data_to_send()
        try:
            await ws.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        status = conn.response.status if conn.response is not None else "?"
        logger.info("connection #%d: upgrade request answered with HTTP %s", ws.id, status)
        await ws._end()

    async def _run_handler(self, ws: WebSocket, handler: Handler) -> None:
        try:
            await handler(ws)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("connection #%d: error in the connection handler", ws.id)
            if ws.state is State.OPEN:
                await ws.close(1011, "internal error")
        await ws.close(1000)


async def serve(
    handler: Union[Handler, Mapping[str, Handler]],
    host: Optional[str] = None,
    port: int = 0,
    *,
    process_request: Optional[ProcessRequest] = None,
    ssl: Optional[ssl_module.SSLContext] = None,
    path: Optional[str] = None,
    max_connections: Optional[int] = None,
    server_header: Optional[str] = SERVER_HEADER,
    backlog: Optional[int] = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve WebSocket connections until cancelled.

    ``handler(websocket)`` runs for each connection: an async function, or a
    mapping from request path to one (routing; an unknown path gets 404).
    ``process_request(websocket, request)`` may answer a request with a
    plain HTTP response instead (plain or async). ``ssl`` serves ``wss://``
    (through :class:`trio.SSLStream`); ``path`` serves on a Unix socket
    instead of ``host``/``port`` (``host`` ``None``: every interface;
    ``port`` 0: any free port). ``max_connections`` answers 503 above that
    many connections (counted from their upgrade request on). Other keyword
    arguments are :class:`~wsfast.options.Options` fields. Use as::

        async with trio.open_nursery() as nursery:
            server = await nursery.start(wsfast.trio.serve, handler, "127.0.0.1", 8765)
    """
    server = Server(
        handler,
        _options(options),
        process_request=process_request,
        max_connections=max_connections,
        server_header=server_header,
    )
    if path is not None:
        listeners: list[trio.abc.Listener[Any]] = [await _unix_listener(path, backlog)]
    else:
        listeners = list(await trio.open_tcp_listeners(port, host=host, backlog=backlog))
    if ssl is not None:
        listeners = [trio.SSLListener(listener, ssl) for listener in listeners]
    server.listeners = listeners
    try:
        with trio.CancelScope() as scope:
            server._scope = scope
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(server._accept, listener, nursery)
                task_status.started(server)
    finally:
        with trio.CancelScope(shield=True):
            for listener in listeners:
                await trio.aclose_forcefully(listener)


async def _unix_listener(path: str, backlog: Optional[int]) -> trio.SocketListener:
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(backlog if backlog is not None else 128)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def _options(kwargs: dict[str, Any]) -> Options:
    """:class:`Options` from keyword arguments, with a clear error for the others."""
    options, unknown = split_options(dict(kwargs), "wsfast.trio")
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
    return options
