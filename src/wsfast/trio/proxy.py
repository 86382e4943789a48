"""Opening a tunnel through a proxy on Trio, for :func:`wsfast.trio.connect`.

An ``http://`` proxy gives the TCP stream to the proxy once CONNECT
succeeded; an ``https://`` proxy the :class:`trio.SSLStream` to the proxy, in
which the client runs (a ``wss://`` connection wraps it in another
:class:`trio.SSLStream`: TLS in TLS); a SOCKS proxy (python-socks'
``python_socks.async_.trio``) the TCP stream it connected.
"""

from __future__ import annotations

import math
import ssl as ssl_module
from typing import Optional

import trio

from ..options import default_ssl_context
from ..proxy import ConnectHandshake, Proxy, proxy_unreachable, socks_arguments, socks_refused
from ..uri import WebSocketURI

__all__ = ["open_tunnel"]


async def open_tunnel(
    proxy: Proxy,
    uri: WebSocketURI,
    *,
    proxy_ssl: Optional[ssl_module.SSLContext] = None,
    user_agent: Optional[str] = None,
) -> trio.abc.Stream:
    """A stream to ``uri``'s server through ``proxy``; the caller owns it
    and bounds the time this takes. On failure nothing is left open.

    Raises :class:`~wsfast.exceptions.ProxyError` when the proxy refuses,
    ``OSError`` naming the proxy when it cannot be reached, ImportError for
    a SOCKS proxy without python-socks.
    """
    if proxy.is_socks:
        arguments = socks_arguments(proxy)
        from python_socks import ProxyConnectionError
        from python_socks import ProxyError as SocksError
        from python_socks.async_.trio import Proxy as SocksProxy

        try:
            # The caller's open_timeout bounds this, not python-socks' 60 s.
            sock = await SocksProxy(**arguments).connect(uri.host, uri.port, timeout=math.inf)
        except ProxyConnectionError as exc:
            raise proxy_unreachable(proxy, exc) from exc
        except SocksError as exc:
            raise socks_refused(proxy, uri, exc) from exc
        return trio.SocketStream(sock)

    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(proxy.host, proxy.port)
    except OSError as exc:
        raise proxy_unreachable(proxy, exc) from exc
    try:
        if proxy.scheme == "https":
            context = proxy_ssl or default_ssl_context()
            stream = trio.SSLStream(stream, context, server_hostname=proxy.host)
        handshake = ConnectHandshake(proxy, uri, user_agent)
        await stream.send_all(handshake.request)
        while not handshake.receive_data(bytes(await stream.receive_some(4096))):
            pass
        return stream
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
        raise
