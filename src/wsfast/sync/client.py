"""The threading client: :func:`connect`, for ``ws://`` and ``wss://`` URIs.

Opening a connection is two steps, each one function, so that proxies and
redirects can extend them: :func:`open_socket` (TCP or Unix socket, then
TLS) and :func:`handshake` (the HTTP upgrade on a connected socket).
"""

from __future__ import annotations

import socket
import ssl as ssl_module
import time
from typing import Any, Optional, Sequence

from .. import __version__
from ..auth import with_uri_credentials
from ..events import HandshakeFailed, Response
from ..exceptions import InvalidURI
from ..options import Options
from ..protocol import ClientConnection
from ..uri import WebSocketURI, parse_uri
from .connection import WebSocket

__all__ = ["connect", "open_socket", "handshake", "split_options"]

USER_AGENT = f"wsfast/{__version__}"

_default_ssl_context: Optional[ssl_module.SSLContext] = None


def default_ssl_context() -> ssl_module.SSLContext:
    """The client's default TLS context: verifies certificates; created once."""
    global _default_ssl_context
    if _default_ssl_context is None:
        _default_ssl_context = ssl_module.create_default_context()
    return _default_ssl_context


def split_options(kwargs: dict[str, Any]) -> tuple[Options, dict[str, Any]]:
    """Separate :class:`~wsfast.options.Options` fields from the other
    keyword arguments; reject the options that threads cannot honour."""
    fields = Options.__dataclass_fields__
    options = Options(**{k: kwargs.pop(k) for k in list(kwargs) if k in fields})
    if options.stream_messages:
        raise ValueError("stream_messages is not supported by wsfast.sync (it is for asyncio's callback API)")
    return options, kwargs


def _remaining(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("opening handshake timed out")
    return remaining


def open_socket(
    wsuri: WebSocketURI,
    *,
    path: Optional[str] = None,
    sock: Optional[socket.socket] = None,
    ssl: Optional[ssl_module.SSLContext] = None,
    server_hostname: Optional[str] = None,
    deadline: Optional[float] = None,
    **kwargs: Any,
) -> socket.socket:
    """A socket connected to the server (TLS included), in blocking mode
    with a timeout until ``deadline`` (a :func:`time.monotonic` value).

    ``sock``: already connected; ``path``: a Unix socket; otherwise TCP to
    the URI's host and port (``kwargs`` go to :func:`socket.create_connection`,
    e.g. ``source_address``).
    """
    if sock is None:
        if path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(_remaining(deadline))
                sock.connect(path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((wsuri.host, wsuri.port), _remaining(deadline), **kwargs)
    elif kwargs:
        raise TypeError(f"unexpected arguments with sock=: {', '.join(kwargs)}")
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(_remaining(deadline))
        if ssl is not None:
            sock = ssl.wrap_socket(sock, server_hostname=server_hostname or wsuri.host)
    except BaseException:
        sock.close()
        raise
    return sock


def handshake(sock: socket.socket, conn: ClientConnection, deadline: Optional[float] = None) -> Response:
    """Send the upgrade request and read the response; return it.

    Raises :class:`~wsfast.exceptions.InvalidHandshake` (with the server's
    response) or :exc:`TimeoutError` after ``deadline``.
    """
    sock.sendall(conn.data_to_send())
    while True:
        sock.settimeout(_remaining(deadline))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("opening handshake timed out") from None
        events = conn.receive_data(data) if data else conn.receive_eof()
        for event in events:
            if isinstance(event, Response):
                return event
            if isinstance(event, HandshakeFailed):
                raise event.error


def connect(
    uri: str,
    *,
    ssl: Optional[ssl_module.SSLContext] = None,
    server_hostname: Optional[str] = None,
    path: Optional[str] = None,
    sock: Optional[socket.socket] = None,
    origin: Optional[str] = None,
    subprotocols: Sequence[str] = (),
    user_agent: Optional[str] = USER_AGENT,
    **kwargs: Any,
) -> WebSocket:
    """Connect to a WebSocket server; return the open :class:`WebSocket`
    (also a context manager that closes it)::

        with wsfast.sync.connect("ws://127.0.0.1:8765") as ws:
            ws.send("hello")
            print(ws.recv(timeout=10))

    ``ssl`` defaults to a verifying context for ``wss://``; ``path``
    connects to a Unix socket and ``sock`` uses a connected socket (the URI
    still gives the ``Host`` header and target). Credentials in the URI
    (``ws://user:pass@host/``) are sent as HTTP Basic auth. Other keyword
    arguments are :class:`~wsfast.options.Options` fields (``write_limit``
    and ``own_transport`` are accepted and ignored; ``stream_messages``
    raises :exc:`ValueError`), or go to :func:`socket.create_connection`.
    Raises :class:`~wsfast.exceptions.InvalidHandshake`,
    :class:`~wsfast.exceptions.InvalidURI`, :exc:`TimeoutError` (after
    ``open_timeout``) or :exc:`OSError`.
    """
    wsuri = parse_uri(uri)
    kwargs["subprotocols"] = subprotocols
    options, socket_kwargs = split_options(kwargs)
    if wsuri.secure and ssl is None:
        ssl = default_ssl_context()
    elif not wsuri.secure and ssl is not None:
        raise InvalidURI(uri, "an SSL context was given for a ws:// URI")
    conn = ClientConnection(
        wsuri.host_header,
        wsuri.target,
        origin=origin,
        extra_headers=with_uri_credentials(wsuri, options.extra_headers),
        user_agent=user_agent,
        **options.connection_options(),
    )
    deadline = None if options.open_timeout is None else time.monotonic() + options.open_timeout
    try:
        connected = open_socket(
            wsuri, path=path, sock=sock, ssl=ssl, server_hostname=server_hostname, deadline=deadline, **socket_kwargs
        )
    except socket.timeout:
        raise TimeoutError("opening handshake timed out") from None
    try:
        ws = WebSocket(connected, conn, options)
        handshake(connected, conn, deadline)
        connected.settimeout(None)
    except BaseException:
        connected.close()
        raise
    ws._start()
    return ws
