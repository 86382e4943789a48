"""Opening a tunnel through a proxy on asyncio, for :func:`create_connection`.

An ``http://`` or SOCKS proxy gives a connected non-blocking socket: the
connection then goes on as with ``sock=`` (on wsfast's socket transport for
``ws://``). An ``https://`` proxy gives the loop's TLS transport to the
proxy, over which the client runs, or starts TLS with the server
(``loop.start_tls``: TLS in TLS, Python 3.11+).
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from typing import Optional, Union, cast

from ..options import default_ssl_context
from ..proxy import ConnectHandshake, Proxy, proxy_unreachable, socks_arguments, socks_refused
from ..uri import WebSocketURI
from .sockets import connect_socket

__all__ = ["open_tunnel"]


class _Connect(asyncio.Protocol):
    """Runs a :class:`ConnectHandshake` over a transport."""

    def __init__(self, handshake: ConnectHandshake) -> None:
        self.handshake = handshake
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes.
        cast(asyncio.Transport, transport).write(self.handshake.request)

    def data_received(self, data: bytes) -> None:
        if self.opened.done():
            return
        try:
            if self.handshake.receive_data(data):
                self.opened.set_result(None)
        except Exception as exc:
            self.opened.set_exception(exc)

    def eof_received(self) -> None:
        self.data_received(b"")

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.data_received(b"")


async def _connect_socket(loop: asyncio.AbstractEventLoop, proxy: Proxy) -> socket.socket:
    try:
        return await connect_socket(loop, proxy.host, proxy.port)
    except OSError as exc:
        raise proxy_unreachable(proxy, exc) from exc


async def open_tunnel(
    loop: asyncio.AbstractEventLoop,
    proxy: Proxy,
    uri: WebSocketURI,
    *,
    proxy_ssl: Optional[ssl_module.SSLContext] = None,
    user_agent: Optional[str] = None,
) -> Union[socket.socket, asyncio.Transport]:
    """A tunnel to ``uri``'s server through ``proxy``: a connected
    non-blocking socket, or for an ``https://`` proxy a TLS transport to the
    proxy whose protocol is to be replaced (not necessarily an instance of
    :class:`asyncio.Transport`: uvloop's are not). The caller owns it; on failure
    nothing is left open.

    Raises :class:`~wsfast.exceptions.ProxyError` when the proxy refuses,
    ``OSError`` naming the proxy when it cannot be reached.
    """
    if proxy.is_socks:
        arguments = socks_arguments(proxy)
        from python_socks import ProxyConnectionError
        from python_socks import ProxyError as SocksError
        from python_socks.async_.asyncio import Proxy as SocksProxy

        try:
            # The caller's open_timeout bounds this (python-socks': 60 s).
            return await SocksProxy(**arguments, loop=loop).connect(uri.host, uri.port)
        except ProxyConnectionError as exc:
            raise proxy_unreachable(proxy, exc) from exc
        except SocksError as exc:
            raise socks_refused(proxy, uri, exc) from exc

    handshake = ConnectHandshake(proxy, uri, user_agent)
    sock = await _connect_socket(loop, proxy)
    if proxy.scheme == "http":
        try:
            await loop.sock_sendall(sock, handshake.request)
            while not handshake.receive_data(await loop.sock_recv(sock, 4096)):
                pass
        except BaseException:
            sock.close()
            raise
        return sock

    connect = _Connect(handshake)
    try:
        transport, _ = await loop.create_connection(
            lambda: connect,
            sock=sock,
            ssl=proxy_ssl or default_ssl_context(),
            server_hostname=proxy.host,
        )
    except BaseException:
        sock.close()
        raise
    try:
        await connect.opened
    except BaseException:
        transport.abort()
        raise
    return transport
