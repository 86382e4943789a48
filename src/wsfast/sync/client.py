"""The threading client: :func:`connect` and :func:`reconnecting`, for
``ws://`` and ``wss://`` URIs.

Opening a connection is two steps, each one function: :func:`open_socket`
(TCP, a Unix socket or a proxy's tunnel, then TLS) and :func:`handshake`
(the HTTP upgrade on a connected socket). :func:`connect` follows redirects
(:mod:`wsfast.redirects`); :func:`reconnecting` reconnects with backoff
(:mod:`wsfast.retry`): the same decisions as the asyncio and Trio clients.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
import time
from typing import Any, Callable, Iterator, Optional, Sequence, cast

from ..events import HandshakeFailed, Response
from ..exceptions import InvalidHandshake, InvalidRedirect, InvalidURI
from ..options import USER_AGENT, Options, default_ssl_context, split_options
from ..protocol import ClientConnection
from ..proxy import Proxy, ProxySetting, connect_via_proxy, select_proxy
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
from .connection import WebSocket

__all__ = ["connect", "reconnecting", "open_socket", "handshake"]


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
    proxy: Optional[Proxy] = None,
    proxy_ssl: Optional[ssl_module.SSLContext] = None,
    user_agent: Optional[str] = None,
    **kwargs: Any,
) -> socket.socket:
    """A socket connected to the server (TLS included), in blocking mode
    with a timeout until ``deadline`` (a :func:`time.monotonic` value).

    ``sock``: already connected; ``path``: a Unix socket; ``proxy``: a
    tunnel through it (:func:`wsfast.proxy.connect_via_proxy`, which also
    does the TLS with the server; a :class:`~wsfast.proxy.TLSTunnel` through
    an ``https://`` proxy); otherwise TCP to the URI's host and port
    (``kwargs`` go to :func:`socket.create_connection`, e.g.
    ``source_address``).
    """
    if proxy is not None:
        if kwargs:
            raise TypeError(f"unexpected arguments with a proxy: {', '.join(kwargs)}")
        tunnel = connect_via_proxy(
            proxy,
            wsuri,
            timeout=_remaining(deadline),
            ssl=ssl,
            server_hostname=server_hostname,
            proxy_ssl=proxy_ssl,
            user_agent=user_agent,
        )
        sock = cast(socket.socket, tunnel)  # a TLSTunnel offers what WebSocket uses of a socket
        ssl = None  # connect_via_proxy did the TLS with the server
    elif sock is None:
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


def _open(
    wsuri: WebSocketURI,
    headers: Sequence[tuple[str, str]],
    options: Options,
    *,
    ssl: Optional[ssl_module.SSLContext],
    server_hostname: Optional[str],
    path: Optional[str],
    sock: Optional[socket.socket],
    origin: Optional[str],
    user_agent: Optional[str],
    proxy: ProxySetting,
    proxy_ssl: Optional[ssl_module.SSLContext],
    socket_kwargs: dict[str, Any],
) -> WebSocket:
    """One request: connect (through the proxy, if any) and run the opening
    handshake, all within ``open_timeout``."""
    if wsuri.secure and ssl is None:
        ssl = default_ssl_context()
    elif not wsuri.secure and ssl is not None:
        raise InvalidURI(str(wsuri), "an SSL context was given for a ws:// URI")
    conn = ClientConnection(
        wsuri.host_header,
        wsuri.target,
        origin=origin,
        extra_headers=headers,
        user_agent=user_agent,
        **options.connection_options(),
    )
    through = None if path is not None or sock is not None else select_proxy(wsuri, proxy)
    deadline = None if options.open_timeout is None else time.monotonic() + options.open_timeout
    try:
        connected = open_socket(
            wsuri,
            path=path,
            sock=sock,
            ssl=ssl,
            server_hostname=server_hostname,
            deadline=deadline,
            proxy=through,
            proxy_ssl=proxy_ssl,
            user_agent=user_agent,
            **socket_kwargs,
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
    proxy: ProxySetting = True,
    proxy_ssl: Optional[ssl_module.SSLContext] = None,
    max_redirects: int = MAX_REDIRECTS,
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
    (``ws://user:pass@host/``) are sent as HTTP Basic auth.

    ``proxy``: by default the environment's (:func:`wsfast.proxy.get_proxy`:
    ``no_proxy``, ``wss_proxy``/``ws_proxy``, SOCKS, ``https_proxy``,
    ``http_proxy``), ``None`` for none, or a proxy URL (``http://``,
    ``https://``, ``socks4://``, ``socks4a://``, ``socks5://``,
    ``socks5h://``, the latter through python-socks: ``pip install
    wsfast[socks]``); never with ``path`` or ``sock``. ``proxy_ssl`` is the
    TLS context for an ``https://`` proxy (default: a verifying one).
    ``open_timeout`` covers the proxy too.

    ``max_redirects``: redirects (301, 302, 303, 307, 308 with a
    ``Location``) followed at most (:mod:`wsfast.redirects`: credentials are
    dropped when the origin changes, ``wss://`` is never downgraded, a
    proxy's 3xx is not followed); ``open_timeout`` bounds each request of
    the chain.

    Other keyword arguments are :class:`~wsfast.options.Options` fields
    (``write_limit`` and ``own_transport`` are accepted and ignored;
    ``stream_messages`` raises :exc:`ValueError`), or go to
    :func:`socket.create_connection`. Raises
    :class:`~wsfast.exceptions.InvalidHandshake` (with the server's
    response; :class:`~wsfast.exceptions.ProxyError` when a proxy refuses,
    :class:`~wsfast.exceptions.InvalidRedirect`),
    :class:`~wsfast.exceptions.InvalidURI`,
    :class:`~wsfast.exceptions.InvalidProxy`, :exc:`TimeoutError` (after
    ``open_timeout``) or :exc:`OSError` (naming the proxy when it cannot be
    reached).
    """
    kwargs["subprotocols"] = subprotocols
    options, socket_kwargs = split_options(kwargs, "wsfast.sync")
    redirects = Redirects(parse_uri(uri), options.extra_headers, max_redirects)
    while True:
        try:
            return _open(
                redirects.uri,
                redirects.headers,
                options,
                ssl=ssl,
                server_hostname=server_hostname,
                path=path,
                sock=sock,
                origin=origin,
                user_agent=user_agent,
                proxy=proxy,
                proxy_ssl=proxy_ssl,
                socket_kwargs=socket_kwargs,
            )
        except InvalidHandshake as exc:
            response = redirect_of(exc)
            if response is None:
                raise
            if sock is not None:
                raise InvalidRedirect("cannot follow a redirect with sock=", redirects.chain, response) from None
            redirects.follow(response, pinned=bool(path or server_hostname))


def reconnecting(
    uri: str,
    *,
    backoff_initial_delay: float = BACKOFF_INITIAL_DELAY,
    backoff_factor: float = BACKOFF_FACTOR,
    backoff_max_delay: float = BACKOFF_MAX_DELAY,
    max_attempts: Optional[int] = None,
    should_retry: Callable[[Exception], bool] = is_retryable,
    **kwargs: Any,
) -> Iterator[WebSocket]:
    """Connections to a WebSocket server, one after another, for a loop
    that reconnects (``kwargs``: those of :func:`connect`, but ``sock``)::

        for ws in wsfast.sync.reconnecting(uri):
            try:
                for message in ws:  # ends quietly on a normal close
                    ...
            except wsfast.ConnectionClosed:
                continue  # lost: go on with a new connection

    Each connection is closed when the loop body comes back to the loop
    (then a new one is opened) or leaves it (``break``, ``return``, an
    exception: the generator is closed, at once on CPython; elsewhere use
    ``contextlib.closing``). As with asyncio's ``async for ws in connect()``:
    failed attempts that ``should_retry(exc)`` accepts
    (:func:`wsfast.retry.is_retryable`: network errors, timeouts, 5xx and
    429 responses, the connection lost during the handshake) are retried
    after a delay drawn from ``[0, ceiling]``, the ceiling starting at
    ``backoff_initial_delay`` seconds and growing by ``backoff_factor``
    after each consecutive failure up to ``backoff_max_delay`` (at least the
    server's ``Retry-After``); after ``max_attempts`` consecutive failures
    (``None``: never) or an error not worth retrying, the loop raises it. A
    connection that opened starts the backoff over; the reconnection after
    it waits a delay drawn from ``[0, backoff_initial_delay]``. Each retry
    is logged on the ``wsfast.client`` logger with its reason and delay;
    the thread sleeps (:func:`time.sleep`) between attempts.
    """
    if kwargs.get("sock") is not None:
        raise ValueError("reconnecting() opens connections of its own: sock= cannot be used with it")
    wsuri = parse_uri(uri)
    split_options(dict(kwargs), "wsfast.sync")  # bad options fail here, not after retries
    backoff = Backoff(backoff_initial_delay, backoff_factor, backoff_max_delay, max_attempts)
    return _reconnect(uri, wsuri, kwargs, backoff, should_retry)


def _reconnect(
    uri: str,
    wsuri: WebSocketURI,
    kwargs: dict[str, Any],
    backoff: Backoff,
    should_retry: Callable[[Exception], bool],
) -> Iterator[WebSocket]:
    while True:
        try:
            ws = connect(uri, **kwargs)
        except Exception as exc:
            delay = next_attempt(backoff, should_retry, wsuri, exc)
            if delay is None:
                raise
            time.sleep(delay)
            continue
        backoff.opened()
        try:
            yield ws
        finally:
            ws.close()
        time.sleep(reconnect_delay(backoff, wsuri, ws.close_code))
