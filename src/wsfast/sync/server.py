"""The threading server: :func:`serve` (and :func:`unix_serve`), a thread per
connection running ``handler(ws)``.

``serve`` binds at once and returns a :class:`Server`; call
:meth:`Server.serve_forever` (in this thread or another) and
:meth:`Server.shutdown` (from another thread, or a handler), or use it as a
context manager. The TLS handshake and the HTTP upgrade run in the
connection's thread, bounded by ``open_timeout``, never in the accept loop.

Limits, as in :mod:`wsfast.asyncio`: ``max_connections`` answers 503 (with
``Retry-After: 1``) above that many connections, counted from their upgrade
request on, so that sockets that connect and stay silent cannot shut
clients out; those are bounded by ``max_handshakes`` (connections still in
their opening handshake, TLS included, at most: above it the oldest is
dropped) and by ``open_timeout``.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl as ssl_module
import threading
import time
from typing import Any, Callable, Mapping, Optional, Union

from .. import __version__
from ..events import HandshakeFailed
from ..exceptions import ConnectionClosed, InvalidHandshake
from ..handshake import error_response
from ..http11 import Request, Response
from ..options import Options, split_options
from ..protocol import ServerConnection
from .connection import WebSocket

__all__ = ["Server", "serve", "unix_serve", "Handler", "ProcessRequest"]

logger = logging.getLogger("wsfast")

Handler = Callable[[WebSocket], Any]
"""A function run in its own thread for each connection of :func:`serve`."""

ProcessRequest = Callable[[WebSocket, Request], Optional[Response]]
"""Called with the connection (not open yet: its ``request`` and
``remote_address`` are set) and the upgrade request: return a
:class:`~wsfast.http11.Response` to answer it instead (authentication,
health checks), or ``None`` to go on with the upgrade. The same signature as
the asyncio ``serve``'s hook (which gets the transport), so a hook that only
looks at the request and the remote address works with both."""

SERVER_HEADER = f"wsfast/{__version__}"


class Server:
    """A WebSocket server on threads; see :func:`serve`.

    ``connections`` holds the open connections.
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: Union[Handler, Mapping[str, Handler]],
        options: Options,
        *,
        ssl: Optional[ssl_module.SSLContext] = None,
        process_request: Optional[ProcessRequest] = None,
        server_header: Optional[str] = SERVER_HEADER,
        max_connections: Optional[int] = None,
        max_handshakes: Optional[int] = None,
    ) -> None:
        self.socket = sock
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.options = options
        self.ssl = ssl
        self.process_request = process_request
        self.server_header = server_header
        self.connections: set[WebSocket] = set()
        self._routes: Mapping[str, Handler] = handler if isinstance(handler, Mapping) else {}
        self._handler: Optional[Handler] = None if isinstance(handler, Mapping) else handler
        # Sockets still in their opening handshake, oldest first.
        self._handshaking: dict[socket.socket, None] = {}
        # Connections between their upgrade request and the end of their
        # handshake, admitted under max_connections.
        self._admitting = 0
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closing = False
        self._stopped = threading.Event()  # set while serve_forever is not running
        self._stopped.set()
        self._wake_r, self._wake_w = socket.socketpair()

    def __repr__(self) -> str:
        return f"<wsfast.sync.Server {self.socket.getsockname()!r}>"

    @property
    def port(self) -> int:
        """The TCP port listened on (handy with port 0)."""
        return int(self.socket.getsockname()[1])

    # ------------------------------------------------------------ accepting

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown`; each runs in a thread."""
        listener = self.socket
        self._stopped.clear()
        try:
            while not self._closing:
                ready, _, _ = select.select([listener, self._wake_r], [], [])
                if self._closing:
                    break
                if listener not in ready:
                    continue
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if self._closing:
                        break
                    logger.warning("accept failed: %s", exc)
                    time.sleep(0.05)  # EMFILE and the like: do not spin
                    continue
                thread = threading.Thread(target=self._connection, args=(sock,), name="wsfast-connection", daemon=True)
                with self._lock:
                    if self._closing:
                        sock.close()
                        break
                    self._threads.add(thread)
                    self._register(sock)
                thread.start()
        finally:
            self._stopped.set()

    def _register(self, sock: socket.socket) -> None:
        """Count a socket in its opening handshake (under the lock, in the
        order of accept); above ``max_handshakes``, drop the oldest."""
        handshaking = self._handshaking
        handshaking[sock] = None
        if self.max_handshakes is not None and len(handshaking) > self.max_handshakes:
            oldest = next(iter(handshaking))
            del handshaking[oldest]
            logger.info(
                "connection from %s: dropped: more than %d handshakes in progress", _peer(oldest), self.max_handshakes
            )
            _shut(oldest)  # its thread wakes and closes it

    def _connection(self, sock: socket.socket) -> None:
        try:
            opened = self._open(sock)
            if opened is not None:
                self._run(*opened)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _open(self, sock: socket.socket) -> Optional[tuple[WebSocket, Handler]]:
        """The TLS and opening handshakes; the open connection and its
        handler, or ``None``."""
        options = self.options
        deadline = None if options.open_timeout is None else time.monotonic() + options.open_timeout
        try:
            sock.setblocking(True)
            sock.settimeout(options.open_timeout)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl is not None:
                with self._lock:  # no I/O yet: the wrapper takes the socket's place
                    if sock not in self._handshaking:  # dropped by max_handshakes
                        raise ConnectionAbortedError("dropped: too many handshakes in progress")
                    del self._handshaking[sock]
                    sock = self.ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                    self._handshaking[sock] = None
                sock.do_handshake()
            conn = ServerConnection(
                select_subprotocol=options.select_subprotocol,
                origins=options.origins,
                server_header=self.server_header,
                **options.connection_options(),
            )
            ws = WebSocket(sock, conn, options)
            handler = self._upgrade(ws, conn, deadline)
            if handler is None:
                sock.close()
                return None
        except (OSError, ssl_module.SSLError, TimeoutError) as exc:
            logger.info("connection from %s: opening handshake failed: %s", _peer(sock), exc)
            sock.close()
            return None
        finally:
            with self._lock:
                self._handshaking.pop(sock, None)
        try:
            ws._flush(True)  # the 101 response
        except ConnectionClosed:
            with self._lock:
                self.connections.discard(ws)
            sock.close()
            return None
        if self._closing:
            ws._start_close(1001, "server shutting down")
        ws._start()
        return ws, handler

    def _upgrade(self, ws: WebSocket, conn: ServerConnection, deadline: Optional[float]) -> Optional[Handler]:
        """Read the request, decide, answer: the handler once the connection
        is open, ``None`` if it was answered otherwise."""
        sock = ws.socket
        request: Optional[Request] = None
        while request is None:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("opening handshake timed out")
                sock.settimeout(remaining)
            data = sock.recv(65536)
            if not data:
                return None
            for event in conn.receive_data(data):
                if isinstance(event, Request):
                    request = event
                elif isinstance(event, HandshakeFailed):
                    sock.sendall(conn.data_to_send())
                    return None
        with self._lock:
            self._handshaking.pop(sock, None)  # the request arrived
            limit = self.max_connections
            admitted = limit is None or len(self.connections) + self._admitting < limit
            if admitted:
                self._admitting += 1
        if not admitted:
            sock.sendall(conn.reject(error_response(503, "Too many connections", [("Retry-After", "1")])))
            return None
        try:
            answer = self._decide(ws, request)
            if isinstance(answer, Response):
                sock.sendall(conn.reject(answer))
                return None
            try:
                response = conn.accept(extra_headers=self.options.extra_headers)
            except InvalidHandshake as exc:
                assert isinstance(exc.response, Response)
                sock.sendall(conn.reject(exc.response))
                return None
            except Exception:  # a select_subprotocol callback failed
                logger.exception("connection from %s: error while accepting the request", ws.remote_address)
                sock.sendall(conn.reject(error_response(500, "Internal Server Error")))
                return None
            # Registered before the 101 is written, and written through the
            # connection's queue: a shutdown from now on closes it with 1001,
            # its close frame behind the 101.
            sock.settimeout(None)
            ws._out.append(response)
            with self._lock:
                self.connections.add(ws)
            return answer
        finally:
            with self._lock:
                self._admitting -= 1

    def _decide(self, ws: WebSocket, request: Request) -> Union[Handler, Response]:
        """The handler for this request, or the response that answers it."""
        if self._closing:
            return error_response(503, "Server shutting down")
        if self.process_request is not None:
            try:
                answer = self.process_request(ws, request)
            except Exception:
                logger.exception("connection from %s: error in process_request", ws.remote_address)
                return error_response(500, "Internal Server Error")
            if answer is not None:
                return answer
        handler = self._handler if self._handler is not None else self._routes.get(request.path)
        return handler if handler is not None else error_response(404, "Not Found")

    def _run(self, ws: WebSocket, handler: Handler) -> None:
        """Run the handler; close with 1000 when it returns, 1011 if it raises."""
        try:
            handler(ws)
        except ConnectionClosed:
            ws.close()
        except Exception:
            logger.exception("connection from %s: error in the connection handler", ws.remote_address)
            ws.close(1011, "internal error")
        else:
            ws.close(1000)
        finally:
            with self._lock:
                self.connections.discard(ws)

    # ------------------------------------------------------------ stopping

    def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting, close every connection with ``code`` and wait for
        them (at most ``close_timeout``: the rest are aborted) and for the
        handlers (briefly: a handler that ignores the closed connection is
        left running, as a daemon thread)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            handshaking = list(self._handshaking)
            connections = list(self.connections)
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        for sock in handshaking:
            _shut(sock)
        for ws in connections:
            try:
                ws._start_close(code, reason)
            except ConnectionClosed:
                pass
        timeout = self.options.close_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        for ws in connections:
            ws._wait(lambda ws=ws: ws._done, None if deadline is None else max(deadline - time.monotonic(), 0.0))  # type: ignore[misc]
            if not ws._done:
                ws._abort()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():  # shutdown() from a handler
                thread.join(0.5)
        self._stopped.wait(1.0)
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _peer(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return None


def serve(
    handler: Union[Handler, Mapping[str, Handler]],
    host: Optional[str] = None,
    port: Optional[int] = None,
    *,
    path: Optional[str] = None,
    sock: Optional[socket.socket] = None,
    ssl: Optional[ssl_module.SSLContext] = None,
    process_request: Optional[ProcessRequest] = None,
    server_header: Optional[str] = SERVER_HEADER,
    max_connections: Optional[int] = None,
    max_handshakes: Optional[int] = None,
    backlog: int = 100,
    reuse_port: bool = False,
    **kwargs: Any,
) -> Server:
    """Listen for WebSocket connections; run ``handler(ws)`` in a thread for each::

        with wsfast.sync.serve(handler, "127.0.0.1", 8765) as server:
            server.serve_forever()

    ``handler`` is a function, or a mapping from request path to function
    (routing; an unknown path gets 404). When it returns the connection is
    closed with 1000; if it raises, with 1011 (and the error is logged).
    ``process_request(ws, request)`` may answer the request with a plain
    HTTP response instead. ``path`` listens on a Unix socket, ``sock`` on a
    bound socket; ``ssl`` serves ``wss://``. ``max_connections`` answers 503
    above that many connections (counted from their upgrade request on);
    ``max_handshakes`` bounds the connections still in their opening
    handshake (the oldest is dropped). Other keyword arguments are
    :class:`~wsfast.options.Options` fields (``write_limit`` and
    ``own_transport`` are accepted and ignored; ``stream_messages`` raises
    :exc:`ValueError`).
    """
    options, rest = split_options(kwargs, "wsfast.sync")
    if rest:
        raise TypeError(f"serve() got unexpected keyword arguments: {', '.join(rest)}")
    if sock is None:
        if path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
            except BaseException:
                sock.close()
                raise
        else:
            family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                if os.name != "nt":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host or "", port or 0))
            except BaseException:
                sock.close()
                raise
        sock.listen(backlog)
    return Server(
        sock,
        handler,
        options,
        ssl=ssl,
        process_request=process_request,
        server_header=server_header,
        max_connections=max_connections,
        max_handshakes=max_handshakes,
    )


def unix_serve(handler: Union[Handler, Mapping[str, Handler]], path: str, **kwargs: Any) -> Server:
    """:func:`serve` on the Unix socket ``path``."""
    return serve(handler, path=path, **kwargs)
