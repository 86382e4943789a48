"""asyncio clients: :func:`connect` (awaitable API) and
:func:`create_connection` (callback API), for ``ws://`` and ``wss://`` URIs.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from typing import Any, AsyncIterator, Callable, Generator, Optional, Sequence, Union

from ..auth import basic_auth_header
from ..exceptions import InvalidHandshake, InvalidRedirect, InvalidURI
from ..options import USER_AGENT, Options, default_ssl_context, split_options
from ..protocol import ClientConnection
from ..proxy import ProxySetting, select_proxy
from ..redirects import MAX_REDIRECTS, Redirects, redirect_of
from ..retry import (
    BACKOFF_FACTOR,
    BACKOFF_INITIAL_DELAY,
    BACKOFF_MAX_DELAY,
    Backoff,
    is_retryable,
    next_attempt,
    reconnect_delay,
)
from ..uri import parse_uri
from .connection import WebSocket
from .listener import Listener
from .proxy import open_tunnel
from .sockets import TLS_OPTIONS, connect_socket, start_tls, usable, wrap
from .transport import WebSocketTransport

__all__ = ["connect", "create_connection"]


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
    options, loop_kwargs = split_options(kwargs)
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
    own_transport = usable(loop, ssl, options.own_transport) and set(loop_kwargs) <= {"family", *TLS_OPTIONS}
    transports: list[Any] = []
    tunnels: list[Union[socket.socket, asyncio.Transport]] = []

    async def open_and_handshake() -> None:
        if ssl is not None:
            loop_kwargs["server_hostname"] = server_hostname or wsuri.host
        connected_sock = sock
        if through is not None:
            tunnel = await open_tunnel(loop, through, wsuri, proxy_ssl=proxy_ssl, user_agent=user_agent)
            tunnels.append(tunnel)
            if not isinstance(tunnel, socket.socket):  # a TLS transport to an https:// proxy
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
            family = loop_kwargs.pop("family", 0)
            if connected_sock is None:
                connected = await connect_socket(loop, wsuri.host, wsuri.port, path=path, family=family)
            else:
                connected = connected_sock
            if ssl is None:
                transports.append(wrap(loop, connected, ws))
            else:  # returns once the TLS handshake succeeded (or closes the socket)
                await start_tls(loop, connected, ws, ssl, **loop_kwargs)
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
    """What :func:`connect` returns: await it, use it as an async context
    manager (which closes the connection on exit), or iterate over it
    (``async for``) to reconnect whenever the connection ends."""

    def __init__(
        self,
        uri: str,
        kwargs: dict[str, Any],
        *,
        max_redirects: int,
        backoff: Backoff,
        should_retry: Callable[[Exception], bool],
    ) -> None:
        self._uri = uri
        self._kwargs = kwargs
        self._max_redirects = max_redirects
        self._backoff = backoff
        self._should_retry = should_retry
        self._websocket: Optional[WebSocket] = None

    async def _connect(self) -> WebSocket:
        """One connection attempt, following redirects."""
        kwargs = self._kwargs
        if kwargs.get("stream_messages"):
            raise ValueError("stream_messages is for the callback API (create_connection)")
        max_queue = kwargs.get("max_queue", Options.max_queue)
        redirects = Redirects(parse_uri(self._uri), kwargs.get("extra_headers", ()), self._max_redirects)
        while True:
            websocket = WebSocket(max_queue)
            try:
                await create_connection(websocket, str(redirects.uri), **{**kwargs, "extra_headers": redirects.headers})
            except InvalidHandshake as exc:
                response = redirect_of(exc)
                if response is None:
                    raise
                if kwargs.get("sock") is not None:
                    raise InvalidRedirect("cannot follow a redirect with sock=", redirects.chain, response) from None
                redirects.follow(response, pinned=bool(kwargs.get("path") or kwargs.get("server_hostname")))
                continue
            self._websocket = websocket
            return websocket

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._connect().__await__()

    async def __aenter__(self) -> WebSocket:
        return await self._connect()

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._websocket is not None:
            await self._websocket.close()

    async def __aiter__(self) -> AsyncIterator[WebSocket]:
        """Connect, yield the connection, close it when the loop body is done
        with it (it comes back to the loop, or leaves it), and reconnect."""
        if self._kwargs.get("sock") is not None:
            raise ValueError("async for reconnects, opening connections of its own: sock= cannot be used with it")
        uri = parse_uri(self._uri)
        backoff = self._backoff.fresh()  # each loop has a backoff of its own
        while True:
            try:
                websocket = await self._connect()
            except Exception as exc:
                delay = next_attempt(backoff, self._should_retry, uri, exc)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            backoff.opened()
            try:
                yield websocket
            finally:
                await websocket.close()
            await asyncio.sleep(reconnect_delay(backoff, uri, websocket.close_code))


def connect(
    uri: str,
    *,
    subprotocols: Sequence[str] = (),
    max_redirects: int = MAX_REDIRECTS,
    backoff_initial_delay: float = BACKOFF_INITIAL_DELAY,
    backoff_factor: float = BACKOFF_FACTOR,
    backoff_max_delay: float = BACKOFF_MAX_DELAY,
    max_attempts: Optional[int] = None,
    should_retry: Callable[[Exception], bool] = is_retryable,
    **kwargs: Any,
) -> _Connecting:
    """Connect to a WebSocket server; the awaitable API.

    ``async with wsfast.connect("ws://127.0.0.1:8765") as ws: ...`` or
    ``ws = await wsfast.connect(...)``. Keyword arguments are those of
    :func:`create_connection` (``ssl``, ``origin``, ``extra_headers``,
    ``open_timeout``, ``max_message_size``...), and:

    ``max_redirects``: redirects (301, 302, 303, 307, 308 with a
    ``Location``) followed at most, per attempt (see :mod:`wsfast.redirects`:
    credentials are dropped when the origin changes, ``wss://`` is never
    downgraded; :class:`~wsfast.redirects.InvalidRedirect` otherwise);
    ``open_timeout`` bounds each request of the chain.

    ``async for ws in wsfast.connect(uri):`` reconnects: each connection is
    closed when the loop body comes back to the loop or leaves it (``break``,
    ``return``, an exception), then a new one is opened::

        async for ws in wsfast.connect(uri):
            try:
                async for message in ws:  # ends quietly on a normal close
                    ...
            except wsfast.ConnectionClosed:
                continue  # lost: go on with a new connection

    Failed attempts that ``should_retry(exc)`` accepts
    (:func:`wsfast.retry.is_retryable`: network errors, timeouts, 5xx and
    429 responses, the connection lost during the handshake) are retried
    after a delay drawn from ``[0, ceiling]``, the ceiling starting at
    ``backoff_initial_delay`` seconds and growing by ``backoff_factor`` after
    each consecutive failure up to ``backoff_max_delay`` (at least the
    server's ``Retry-After``); after ``max_attempts`` consecutive failures
    (``None``: never) or an error not worth retrying, the loop raises it.
    A connection that opened starts the backoff over; the reconnection after
    it waits a delay drawn from ``[0, backoff_initial_delay]``. Each retry is
    logged on the ``wsfast.client`` logger with its reason and delay.
    """
    if max_redirects < 0:
        raise ValueError(f"max_redirects must be 0 or more, not {max_redirects!r}")
    kwargs["subprotocols"] = subprotocols
    backoff = Backoff(backoff_initial_delay, backoff_factor, backoff_max_delay, max_attempts)
    return _Connecting(uri, kwargs, max_redirects=max_redirects, backoff=backoff, should_retry=should_retry)
