"""The Trio client: :func:`connect`, for ``ws://`` and ``wss://`` URIs.

``async with connect(uri) as ws:`` opens the connection in a nursery of its
own, where the connection's background task (reader, keepalive) runs, and
closes it on exit; ``ws = await connect(uri, nursery=nursery)`` runs that
task in a nursery the caller owns (then close the connection yourself).
"""

from __future__ import annotations

import logging
import math
import ssl as ssl_module
from types import TracebackType
from typing import Any, AsyncContextManager, Generator, Optional, Sequence

import trio

from .. import __version__
from ..auth import with_uri_credentials
from ..events import HandshakeFailed
from ..exceptions import InvalidHandshake, InvalidURI
from ..http11 import Response
from ..options import Options
from ..protocol import ClientConnection
from ..uri import parse_uri
from .connection import READ_SIZE, WebSocket
from .server import _options

__all__ = ["connect"]

logger = logging.getLogger("wsfast")

USER_AGENT = f"wsfast/{__version__}"

_default_ssl_context: Optional[ssl_module.SSLContext] = None


def _default_context() -> ssl_module.SSLContext:
    global _default_ssl_context
    if _default_ssl_context is None:
        _default_ssl_context = ssl_module.create_default_context()
    return _default_ssl_context


async def _open(
    nursery: trio.Nursery,
    uri: str,
    *,
    ssl: Optional[ssl_module.SSLContext],
    server_hostname: Optional[str],
    path: Optional[str],
    origin: Optional[str],
    user_agent: Optional[str],
    options: Options,
) -> WebSocket:
    """Connect, run the opening handshake (all within ``open_timeout``:
    :exc:`trio.TooSlowError` after it), start the background task."""
    wsuri = parse_uri(uri)
    if wsuri.secure and ssl is None:
        ssl = _default_context()
    conn = ClientConnection(
        wsuri.host_header,
        wsuri.target,
        origin=origin,
        extra_headers=with_uri_credentials(wsuri, options.extra_headers),
        user_agent=user_agent,
        **options.connection_options(),
    )
    with trio.fail_after(math.inf if options.open_timeout is None else options.open_timeout):
        if path is not None:
            stream: trio.abc.Stream = await trio.open_unix_socket(path)
        else:
            stream = await trio.open_tcp_stream(wsuri.host, wsuri.port)
        try:
            if ssl is not None:
                stream = trio.SSLStream(stream, ssl, server_hostname=server_hostname or wsuri.host)
                await stream.do_handshake()
            ws = WebSocket(stream, conn, options)
            await _handshake(ws)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            raise
    nursery.start_soon(ws._background)
    return ws


async def _handshake(ws: WebSocket) -> None:
    conn = ws.conn
    stream = ws.stream
    await stream.send_all(conn.data_to_send())
    while True:
        try:
            data = await stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        events = conn.receive_data(data) if data else conn.receive_eof()
        for event in events:
            if isinstance(event, HandshakeFailed):
                raise event.error
        if events and isinstance(events[0], Response):
            conn.sink = ws
            logger.info("connection #%d: open (client, peer %s)", ws.id, ws.remote_address)
            await ws._received(events[1:])  # frames that came with the response
            return
        if not data:
            raise InvalidHandshake("connection closed during the opening handshake")


class _Connecting(AsyncContextManager[WebSocket]):
    """What :func:`connect` returns: an async context manager, or with a
    nursery an awaitable."""

    def __init__(self, uri: str, nursery: Optional[trio.Nursery], kwargs: dict[str, Any]) -> None:
        self._uri = uri
        self._nursery = nursery
        self._kwargs = kwargs
        self._manager: Optional[AsyncContextManager[trio.Nursery]] = None
        self._ws: Optional[WebSocket] = None

    def __await__(self) -> Generator[Any, None, WebSocket]:
        if self._nursery is None:
            raise TypeError("await connect(...) needs a nursery: connect(uri, nursery=nursery); or use async with")
        return _open(self._nursery, self._uri, **self._kwargs).__await__()

    async def __aenter__(self) -> WebSocket:
        if self._nursery is not None:
            raise TypeError("async with connect(...) opens a nursery of its own: leave out nursery=")
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        try:
            self._ws = await _open(nursery, self._uri, **self._kwargs)
        except BaseException:
            await manager.__aexit__(None, None, None)  # empty: nothing started in it
            raise
        self._manager = manager
        return self._ws

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Close with 1000, or with 1001 when the block is cancelled (shielded,
        within ``close_timeout``); the block's own exception goes on as it is."""
        assert self._manager is not None and self._ws is not None
        try:
            if not isinstance(exc, trio.Cancelled):  # if it is, the background task closes with 1001
                await self._ws.close()
        finally:
            await self._manager.__aexit__(None, None, None)


def connect(
    uri: str,
    *,
    nursery: Optional[trio.Nursery] = None,
    subprotocols: Sequence[str] = (),
    ssl: Optional[ssl_module.SSLContext] = None,
    server_hostname: Optional[str] = None,
    path: Optional[str] = None,
    origin: Optional[str] = None,
    user_agent: Optional[str] = USER_AGENT,
    **options: Any,
) -> _Connecting:
    """Connect to a WebSocket server.

    ``async with wsfast.trio.connect("ws://127.0.0.1:8765") as ws: ...``, or
    ``ws = await wsfast.trio.connect(uri, nursery=nursery)``. ``ssl``
    defaults to a verifying context for ``wss://``; ``path`` connects to a
    Unix socket (the URI still gives the Host header and target); a URI's
    user information (``ws://user:pass@host/``) is sent as Basic
    credentials. Other keyword arguments are
    :class:`~wsfast.options.Options` fields. Raises
    :class:`~wsfast.exceptions.InvalidHandshake` (with the server's
    response), :class:`~wsfast.exceptions.InvalidURI`, ``OSError``, or
    :exc:`trio.TooSlowError` after ``open_timeout``.
    """
    if not parse_uri(uri).secure and ssl is not None:  # errors here, not later in the nursery
        raise InvalidURI(uri, "an SSL context was given for a ws:// URI")
    kwargs = dict(
        ssl=ssl,
        server_hostname=server_hostname,
        path=path,
        origin=origin,
        user_agent=user_agent,
        options=_options({"subprotocols": subprotocols, **options}),
    )
    return _Connecting(uri, nursery, kwargs)
