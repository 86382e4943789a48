"""The Trio client: :func:`connect`, for ``ws://`` and ``wss://`` URIs.

``async with connect(uri) as ws:`` opens the connection in a nursery of its
own, where the connection's background task (reader, keepalive) runs, and
closes it on exit; ``ws = await connect(uri, nursery=nursery)`` runs that
task in a nursery the caller owns (then close the connection yourself);
``async with connect(uri).reconnecting() as connections:`` owns a nursery
for a loop that reconnects (``async for ws in connections``). Proxies
(:mod:`wsfast.trio.proxy`) and redirects as in :mod:`wsfast.asyncio`.
"""

from __future__ import annotations

import logging
import math
import ssl as ssl_module
from types import TracebackType
from typing import Any, AsyncContextManager, AsyncIterator, Callable, Generator, NoReturn, Optional, Sequence

import trio

from ..events import HandshakeFailed
from ..exceptions import InvalidHandshake, InvalidURI
from ..http11 import Response
from ..options import USER_AGENT, Options, default_ssl_context
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
from ..uri import WebSocketURI, parse_uri
from .connection import READ_SIZE, WebSocket
from .proxy import open_tunnel
from .server import _options

__all__ = ["connect", "OpenTimeoutError"]

logger = logging.getLogger("wsfast")


class OpenTimeoutError(trio.TooSlowError, TimeoutError):
    """``open_timeout`` passed before the connection opened: a
    :exc:`trio.TooSlowError`, as :func:`trio.fail_after` raises, and a
    ``TimeoutError``, as asyncio's ``connect`` raises, which
    :func:`wsfast.retry.is_retryable` retries."""


async def _open(
    nursery: trio.Nursery,
    wsuri: WebSocketURI,
    headers: list[tuple[str, str]],
    *,
    ssl: Optional[ssl_module.SSLContext],
    server_hostname: Optional[str],
    path: Optional[str],
    origin: Optional[str],
    user_agent: Optional[str],
    proxy: ProxySetting,
    proxy_ssl: Optional[ssl_module.SSLContext],
    options: Options,
) -> WebSocket:
    """Connect (through the proxy, if any), run the opening handshake (all
    within ``open_timeout``), start the background task. A stream that
    breaks raises the ``OSError`` that broke it (``ssl.SSLError`` included)."""
    if wsuri.secure and ssl is None:
        ssl = default_ssl_context()
    conn = ClientConnection(
        wsuri.host_header,
        wsuri.target,
        origin=origin,
        extra_headers=headers,
        user_agent=user_agent,
        **options.connection_options(),
    )
    through = None if path is not None else select_proxy(wsuri, proxy)
    try:
        with trio.fail_after(math.inf if options.open_timeout is None else options.open_timeout):
            if path is not None:
                stream: trio.abc.Stream = await trio.open_unix_socket(path)
            elif through is not None:
                stream = await open_tunnel(through, wsuri, proxy_ssl=proxy_ssl, user_agent=user_agent)
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
    except trio.TooSlowError:
        raise OpenTimeoutError(f"timed out opening {wsuri} (open_timeout={options.open_timeout})") from None
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        while isinstance(cause, trio.BrokenResourceError):
            cause = cause.__cause__
        if not isinstance(cause, OSError):
            raise
        raise cause from None
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


async def _close_and_leave(
    manager: AsyncContextManager[trio.Nursery], ws: Optional[WebSocket], exc: Optional[BaseException]
) -> None:
    """Close ``ws`` with 1000, or with 1001 when the block is cancelled (the
    background task does, shielded, within ``close_timeout``), then leave
    the nursery; the block's own exception goes on as it is."""
    try:
        if ws is not None and not isinstance(exc, trio.Cancelled):
            await ws.close()
    finally:
        await manager.__aexit__(None, None, None)


class _Connecting(AsyncContextManager[WebSocket]):
    """What :func:`connect` returns: an async context manager, or with a
    nursery an awaitable; :meth:`reconnecting` for a loop that reconnects."""

    def __init__(
        self,
        uri: str,
        nursery: Optional[trio.Nursery],
        kwargs: dict[str, Any],
        *,
        max_redirects: int,
        backoff: Backoff,
        should_retry: Callable[[Exception], bool],
    ) -> None:
        self._uri = uri
        self._nursery = nursery
        self._kwargs = kwargs
        self._max_redirects = max_redirects
        self._backoff = backoff
        self._should_retry = should_retry
        self._manager: Optional[AsyncContextManager[trio.Nursery]] = None
        self._ws: Optional[WebSocket] = None

    async def _connect(self, nursery: trio.Nursery) -> WebSocket:
        """One connection attempt, following redirects."""
        kwargs = self._kwargs
        options: Options = kwargs["options"]
        redirects = Redirects(parse_uri(self._uri), options.extra_headers, self._max_redirects)
        while True:
            try:
                return await _open(nursery, redirects.uri, redirects.headers, **kwargs)
            except InvalidHandshake as exc:
                response = redirect_of(exc)
                if response is None:
                    raise
                redirects.follow(response, pinned=bool(kwargs["path"] or kwargs["server_hostname"]))

    def _own_nursery(self) -> AsyncContextManager[trio.Nursery]:
        if self._nursery is not None:
            raise TypeError("async with connect(...) opens a nursery of its own: leave out nursery=")
        return trio.open_nursery()

    def __await__(self) -> Generator[Any, None, WebSocket]:
        if self._nursery is None:
            raise TypeError("await connect(...) needs a nursery: connect(uri, nursery=nursery); or use async with")
        return self._connect(self._nursery).__await__()

    async def __aenter__(self) -> WebSocket:
        manager = self._own_nursery()
        nursery = await manager.__aenter__()
        try:
            self._ws = await self._connect(nursery)
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
        """Close with 1000, or with 1001 when the block is cancelled."""
        assert self._manager is not None
        await _close_and_leave(self._manager, self._ws, exc)

    def reconnecting(self) -> _Reconnecting:
        """The connections of a loop that reconnects: see :func:`connect`."""
        return _Reconnecting(self)

    def __aiter__(self) -> NoReturn:
        raise TypeError(
            "a reconnecting loop needs a nursery that outlives each connection: "
            "async with connect(uri).reconnecting() as connections: async for ws in connections: ..."
        )


class _Reconnecting(AsyncContextManager["_Reconnecting"], AsyncIterator[WebSocket]):
    """``async with connect(uri).reconnecting() as connections``: a nursery
    for the connections, and an async iterator over them (see :func:`connect`)."""

    def __init__(self, connecting: _Connecting) -> None:
        self._connecting = connecting
        self._backoff = connecting._backoff.fresh()  # each loop has a backoff of its own
        self._manager: Optional[AsyncContextManager[trio.Nursery]] = None
        self._nursery: Optional[trio.Nursery] = None
        self._ws: Optional[WebSocket] = None

    async def __aenter__(self) -> _Reconnecting:
        if self._manager is not None:
            raise RuntimeError("this loop was already entered: call reconnecting() again")
        self._manager = self._connecting._own_nursery()
        self._nursery = await self._manager.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Close the last connection with 1000, or with 1001 when the block is cancelled."""
        assert self._manager is not None
        self._nursery = None
        await _close_and_leave(self._manager, self._ws, exc)

    def __aiter__(self) -> _Reconnecting:
        return self

    async def __anext__(self) -> WebSocket:
        """Close the connection given last (if any) and wait a little, then
        connect, retrying with backoff; the new connection."""
        nursery = self._nursery
        if nursery is None:
            raise RuntimeError("iterate within async with connect(uri).reconnecting() as connections")
        uri = parse_uri(self._connecting._uri)
        backoff = self._backoff
        if self._ws is not None:
            ws, self._ws = self._ws, None
            await ws.close()
            await trio.sleep(reconnect_delay(backoff, uri, ws.close_code))
        while True:
            try:
                self._ws = await self._connecting._connect(nursery)
            except Exception as exc:
                delay = next_attempt(backoff, self._connecting._should_retry, uri, exc)
                if delay is None:
                    raise
                await trio.sleep(delay)
                continue
            backoff.opened()
            return self._ws


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
    proxy: ProxySetting = True,
    proxy_ssl: Optional[ssl_module.SSLContext] = None,
    max_redirects: int = MAX_REDIRECTS,
    backoff_initial_delay: float = BACKOFF_INITIAL_DELAY,
    backoff_factor: float = BACKOFF_FACTOR,
    backoff_max_delay: float = BACKOFF_MAX_DELAY,
    max_attempts: Optional[int] = None,
    should_retry: Callable[[Exception], bool] = is_retryable,
    **options: Any,
) -> _Connecting:
    """Connect to a WebSocket server.

    ``async with wsfast.trio.connect("ws://127.0.0.1:8765") as ws: ...``, or
    ``ws = await wsfast.trio.connect(uri, nursery=nursery)``. ``ssl``
    defaults to a verifying context for ``wss://``; ``path`` connects to a
    Unix socket (the URI still gives the Host header and target); a URI's
    user information (``ws://user:pass@host/``) is sent as Basic
    credentials. Other keyword arguments are
    :class:`~wsfast.options.Options` fields.

    ``proxy``: by default the environment's (:func:`wsfast.proxy.get_proxy`:
    ``no_proxy``, ``wss_proxy``/``ws_proxy``, SOCKS, ``https_proxy``,
    ``http_proxy``), ``None`` for none, or a proxy URL (``http://``,
    ``https://``, ``socks4://``, ``socks4a://``, ``socks5://``,
    ``socks5h://``, the latter through python-socks: ``pip install
    wsfast[socks]``); never with ``path``. ``proxy_ssl`` is the TLS context
    for an ``https://`` proxy (default: a verifying one). ``open_timeout``
    covers the proxy too.

    ``max_redirects``: redirects (301, 302, 303, 307, 308 with a
    ``Location``) followed at most, per attempt (:mod:`wsfast.redirects`:
    credentials are dropped when the origin changes, ``wss://`` is never
    downgraded); ``open_timeout`` bounds each request of the chain.

    Raises :class:`~wsfast.exceptions.InvalidHandshake` (with the server's
    response; :class:`~wsfast.exceptions.ProxyError` when a proxy refuses,
    :class:`~wsfast.exceptions.InvalidRedirect`),
    :class:`~wsfast.exceptions.InvalidURI`,
    :class:`~wsfast.exceptions.InvalidProxy`, ``OSError`` (``ssl.SSLError``
    for TLS), or :class:`OpenTimeoutError` (a :exc:`trio.TooSlowError` and a
    ``TimeoutError``) after ``open_timeout``.

    Reconnecting: a connection's background task runs in a nursery, and an
    async generator must not yield from inside a nursery, so ``async for``
    cannot own one. ``reconnecting()`` gives an async context manager that
    owns the nursery for the whole loop, and within it an async iterator
    that opens each connection in that nursery and returns it from
    ``__anext__`` (nothing is suspended inside a nursery or a cancel scope
    between iterations)::

        async with wsfast.trio.connect(uri).reconnecting() as connections:
            async for ws in connections:
                try:
                    async for message in ws:  # ends quietly on a normal close
                        ...
                except wsfast.ConnectionClosed:
                    continue  # lost: go on with a new connection

    Each connection is closed when the loop asks for the next one, or when
    the ``async with`` block ends (``break``, ``return``, an exception; with
    1001 when it is cancelled). As with asyncio's ``connect``: failed
    attempts that ``should_retry(exc)`` accepts
    (:func:`wsfast.retry.is_retryable`: network errors, timeouts (an
    :class:`OpenTimeoutError` is a ``TimeoutError``), 5xx and 429
    responses, the connection lost during the handshake) are retried after
    a delay drawn from ``[0, ceiling]``, the ceiling starting at
    ``backoff_initial_delay`` seconds and growing by ``backoff_factor``
    after each consecutive failure up to ``backoff_max_delay`` (at least the
    server's ``Retry-After``); after ``max_attempts`` consecutive failures
    (``None``: never) or an error not worth retrying, the loop raises it. A
    connection that opened starts the backoff over; the reconnection after
    it waits a delay drawn from ``[0, backoff_initial_delay]``. Each retry is
    logged on the ``wsfast.client`` logger with its reason and delay.
    """
    if not parse_uri(uri).secure and ssl is not None:  # errors here, not later in the nursery
        raise InvalidURI(uri, "an SSL context was given for a ws:// URI")
    if max_redirects < 0:
        raise ValueError(f"max_redirects must be 0 or more, not {max_redirects!r}")
    kwargs = dict(
        ssl=ssl,
        server_hostname=server_hostname,
        path=path,
        origin=origin,
        user_agent=user_agent,
        proxy=proxy,
        proxy_ssl=proxy_ssl,
        options=_options({"subprotocols": subprotocols, **options}),
    )
    backoff = Backoff(backoff_initial_delay, backoff_factor, backoff_max_delay, max_attempts)
    return _Connecting(uri, nursery, kwargs, max_redirects=max_redirects, backoff=backoff, should_retry=should_retry)
