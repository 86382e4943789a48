"""asyncio clients: :func:`connect` (awaitable API) and
:func:`create_connection` (callback API), for ``ws://`` and ``wss://`` URIs.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from typing import Any, Generator, Optional, Sequence, Union

from .. import __version__
from ..auth import basic_auth_header
from ..exceptions import InvalidURI
from ..options import Options
from ..protocol import ClientConnection
from ..proxy import ProxySetting, select_proxy
from ..uri import parse_uri
from .connection import WebSocket
from .listener import Listener
from .proxy import open_tunnel
from .server import _split
from .sockets import connect_socket, usable, wrap
from .transport import WebSocketTransport

__all__ = ["connect", "create_connection"]

USER_AGENT = f"wsfast/{__version__}"

_default_ssl_context: Optional[ssl_module.SSLContext] = None


def default_ssl_context() -> ssl_module.SSLContext:
    """The client's default TLS context: verifies certificates; created once."""
    global _default_ssl_context
    if _default_ssl_context is None:
        _default_ssl_context = ssl_module.create_default_context()
    return _default_ssl_context


async def create_connection(
    listener: Listener,
    uri: str,
    *,
    ssl: Optional[ssl_module.SSLContext] = None,
    server_hostname: Optional[str] = None,
    path: Optional[str] = None,
    sock: Optional[socket.socket] = None,
    origin: Optional[str] = None,
    user_agent: Optional[str] = USER_AGENT,
    proxy: ProxySetting = True,
    proxy_ssl: Optional[ssl_module.SSLContext] = None,
    **kwargs: Any,
) -> WebSocketTransport:
    """Open a callback-level client connection; return its transport once
    the opening handshake succeeded (``listener.on_open`` has run).

    ``ssl`` defaults to a verifying context for ``wss://``; ``path`` connects
    to a Unix socket (the URI still gives the Host header and target).
    ``proxy``: by default the environment's (:func:`wsfast.proxy.get_proxy`:
    ``no_proxy``, ``wss_proxy``/``ws_proxy``, SOCKS, ``https_proxy``,
    ``http_proxy``), ``None`` for none, or a proxy URL (``http://``,
    ``https://``, ``socks4://``, ``socks4a://``, ``socks5://``,
    ``socks5h://``; credentials as ``user:password@``); never with ``path``
    or ``sock``. ``proxy_ssl`` is the TLS context for an ``https://`` proxy
    (default: a verifying one). ``open_timeout`` covers the proxy too.
    Other keyword arguments are :class:`~wsfast.options.Options`
    fields, or go to :meth:`asyncio.loop.create_connection`. Raises
    :class:`~wsfast.exceptions.InvalidHandshake` (with the server's response;
    :class:`~wsfast.exceptions.ProxyError` when a proxy refuses),
    :class:`~wsfast.exceptions.InvalidURI` or
    :class:`~wsfast.exceptions.InvalidProxy`, or ``OSError`` and
    ``asyncio.TimeoutError`` for the network.
    """
    wsuri = parse_uri(uri)
    options, loop_kwargs = _split(kwargs)
    if wsuri.secure and ssl is None:
        ssl = default_ssl_context()
    elif not wsuri.secure and ssl is not None:
        raise InvalidURI(uri, "an SSL context was given for a ws:// URI")
    headers = list(options.extra_headers)
    if wsuri.user is not None and not any(name.lower() == "authorization" for name, _ in headers):
        headers.append(("Authorization", basic_auth_header(wsuri.user, wsuri.password or "")))
    conn = ClientConnection(
        wsuri.host_header,
        wsuri.target,
        origin=origin,
        extra_headers=headers,
        user_agent=user_agent,
        **options.connection_options(),
    )
    ws = WebSocketTransport(conn, options, listener=listener)
    loop = asyncio.get_running_loop()
    through = None if path is not None or sock is not None else select_proxy(wsuri, proxy)
    if through is not None:
        loop_kwargs.pop("family", None)  # the proxy resolves the server's name
    # wsfast's socket transport where it applies and no option asks for the
    # loop's own connection logic (local_addr, happy eyeballs...).
    own_transport = usable(loop, ssl, options.own_transport) and set(loop_kwargs) <= {"family"}
    transports: list[Any] = []
    tunnels: list[Union[socket.socket, asyncio.Transport]] = []

    async def open_and_handshake() -> None:
        if ssl is not None:
            loop_kwargs["server_hostname"] = server_hostname or wsuri.host
        connected_sock = sock
        if through is not None:
            tunnel = await open_tunnel(loop, through, wsuri, proxy_ssl=proxy_ssl, user_agent=user_agent)
            tunnels.append(tunnel)
            if isinstance(tunnel, asyncio.Transport):  # TLS to an https:// proxy
                if ssl is None:
                    tunnel.set_protocol(ws)
                    ws.connection_made(tunnel)
                else:
                    inner = await loop.start_tls(tunnel, ws, ssl, **loop_kwargs)
                    assert inner is not None
                    ws.connection_made(inner)
                await ws.wait_opened()
                return
            connected_sock = tunnel
        if own_transport:
            if connected_sock is None:
                connected = await connect_socket(loop, wsuri.host, wsuri.port, path=path, **loop_kwargs)
            else:
                connected = connected_sock
            transports.append(wrap(loop, connected, ws))
        elif path is not None:
            await loop.create_unix_connection(lambda: ws, path, sock=sock, ssl=ssl, **loop_kwargs)
        elif connected_sock is not None:
            await loop.create_connection(lambda: ws, sock=connected_sock, ssl=ssl, **loop_kwargs)
        else:
            await loop.create_connection(lambda: ws, wsuri.host, wsuri.port, ssl=ssl, **loop_kwargs)
        await ws.wait_opened()

    try:
        if options.open_timeout is None:
            await open_and_handshake()
        else:
            await asyncio.wait_for(open_and_handshake(), options.open_timeout)
    except BaseException:
        ws.abort()
        for transport in transports:  # before connection_made: ws has no transport
            transport.abort()
        for tunnel in tunnels:
            if isinstance(tunnel, socket.socket):
                tunnel.close()  # a no-op once a transport closed it
            else:
                tunnel.abort()
        raise
    return ws


class _Connecting:
    """What :func:`connect` returns: await it, or use it as an async context
    manager (which closes the connection on exit)."""

    def __init__(self, uri: str, kwargs: dict[str, Any]) -> None:
        self._uri = uri
        self._kwargs = kwargs
        self._websocket: Optional[WebSocket] = None

    async def _connect(self) -> WebSocket:
        max_queue = self._kwargs.get("max_queue", Options.max_queue)
        if self._kwargs.get("stream_messages"):
            raise ValueError("stream_messages is for the callback API (create_connection)")
        websocket = WebSocket(max_queue)
        await create_connection(websocket, self._uri, **self._kwargs)
        self._websocket = websocket
        return websocket

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._connect().__await__()

    async def __aenter__(self) -> WebSocket:
        return await self._connect()

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._websocket is not None:
            await self._websocket.close()


def connect(uri: str, *, subprotocols: Sequence[str] = (), **kwargs: Any) -> _Connecting:
    """Connect to a WebSocket server; the awaitable API.

    ``async with wsfast.connect("ws://127.0.0.1:8765") as ws: ...`` or
    ``ws = await wsfast.connect(...)``. Keyword arguments are those of
    :func:`create_connection` (``ssl``, ``origin``, ``extra_headers``,
    ``open_timeout``, ``max_message_size``...).
    """
    kwargs["subprotocols"] = subprotocols
    return _Connecting(uri, kwargs)
