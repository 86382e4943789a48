"""wsfast's own socket transport on asyncio's selector event loops and uvloop.

On the standard asyncio event loop (a selector loop) and on uvloop, plain
``ws://`` connections run on the compiled
:class:`~wsfast.codec.SocketTransport` rather than the loop's own transport:
a read goes from ``recv`` to the compiled read path with no Python call in
between, reads that fill the buffer are repeated at once, and large writes
are sent by reference (Python 3.11's asyncio copies what a write leaves
unsent). It needs only the loop's ``add_reader``/``add_writer``. This module
decides where it applies, accepts a server's connections onto it, and
connects a client's socket for it.

``wss://`` connections (an :class:`ssl.SSLContext`) run on wsfast's
:class:`~wsfast.asyncio.tls.TLSTransport` on asyncio's selector loops, with
either codec (it is written in Python; the plain socket transport needs the
extension). Everywhere else (uvloop's TLS, Windows, other event loops, the
pure-Python codec without TLS, the option ``own_transport=False``, TLS in TLS
through an ``https://`` proxy) the event loop's own transports are used.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl as ssl_module
import sys
from typing import Any, Callable, Optional

from ..codec import SocketTransport
from .tls import TLSTransport

__all__ = ["usable", "wrap", "Acceptor", "connect_socket", "start_tls", "TLS_OPTIONS"]

TLS_OPTIONS = frozenset({"ssl_handshake_timeout", "ssl_shutdown_timeout"})
"""The loop's TLS keyword arguments that wsfast's TLS transport honours too."""

logger = logging.getLogger("wsfast")

# Out of file descriptors or memory: stop accepting for a while (as asyncio does).
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_RETRY_DELAY = 1.0


def usable(loop: asyncio.AbstractEventLoop, ssl: Any, own_transport: bool) -> bool:
    """Whether connections on ``loop`` can run on wsfast's transports: without
    TLS, asyncio's selector loops and uvloop, with the extension
    (:class:`~wsfast.codec.SocketTransport`); with an :class:`ssl.SSLContext`,
    asyncio's selector loops, with either codec
    (:class:`~wsfast.asyncio.tls.TLSTransport`: 12x less memory than asyncio's
    SSL transport there). uvloop keeps its own SSL transport: compiled, as
    light on memory (within 15 %) and cheaper for large messages (measured:
    1 MiB echoes cost 1.5x more CPU on the Python TLS transport)."""
    if not own_transport or sys.platform == "win32":
        return False
    selector = isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
    if ssl is None:
        return SocketTransport is not None and (selector or type(loop).__module__ == "uvloop")
    return selector and isinstance(ssl, ssl_module.SSLContext)


def wrap(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    protocol: asyncio.BaseProtocol,
    extra: Optional[dict[str, Any]] = None,
    *,
    ssl: Optional[ssl_module.SSLContext] = None,
    server_side: bool = True,
    server_hostname: Optional[str] = None,
    waiter: Optional[asyncio.Future[None]] = None,
    ssl_handshake_timeout: Optional[float] = None,
    ssl_shutdown_timeout: Optional[float] = None,
) -> Any:
    """Run ``protocol`` over the connected ``sock`` on wsfast's transport
    (where :func:`usable` said so); ``connection_made`` follows on the loop
    (after the TLS handshake with ``ssl``)."""
    if ssl is not None:
        return TLSTransport(
            loop,
            sock,
            protocol,
            ssl,
            server_side=server_side,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            extra=extra,
            waiter=waiter,
        )
    assert SocketTransport is not None
    return SocketTransport(loop, sock, protocol, extra)


async def start_tls(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    protocol: asyncio.BaseProtocol,
    ssl: ssl_module.SSLContext,
    *,
    server_hostname: Optional[str] = None,
    ssl_handshake_timeout: Optional[float] = None,
    ssl_shutdown_timeout: Optional[float] = None,
) -> TLSTransport:
    """A client's TLS connection over the connected ``sock``, on wsfast's TLS
    transport, once its handshake succeeded (``protocol.connection_made``
    has run); raises the handshake's error (the socket is then closed)."""
    waiter: asyncio.Future[None] = loop.create_future()
    transport = wrap(
        loop,
        sock,
        protocol,
        ssl=ssl,
        server_side=False,
        server_hostname=server_hostname,
        waiter=waiter,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    try:
        await waiter
    except BaseException:
        transport.abort()
        raise
    return transport  # type: ignore[no-any-return]


class Acceptor:
    """Accepts connections on a server's listening sockets (bound by the
    event loop's ``create_server(start_serving=False)``) onto
    :class:`~wsfast.codec.SocketTransport`, or with ``ssl`` onto
    :class:`~wsfast.asyncio.tls.TLSTransport` (the handshake starts at once).

    It listens on duplicates of the sockets' descriptors, which it owns and
    closes in :meth:`close`; the event loop's server still owns the sockets.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: Any,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        backlog: int = 100,
        *,
        ssl: Optional[ssl_module.SSLContext] = None,
        ssl_handshake_timeout: Optional[float] = None,
        ssl_shutdown_timeout: Optional[float] = None,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._backlog = backlog
        self._tls: dict[str, Any] = {}
        if ssl is not None:
            self._tls = {
                "ssl": ssl,
                "ssl_handshake_timeout": ssl_handshake_timeout,
                "ssl_shutdown_timeout": ssl_shutdown_timeout,
            }
        self._listening = [socket.socket(s.family, s.type, s.proto, fileno=os.dup(s.fileno())) for s in sockets]
        for listening in self._listening:
            listening.setblocking(False)
            listening.listen(backlog)  # the loop listens only when it serves
            loop.add_reader(listening.fileno(), self._accept, listening)

    def close(self) -> None:
        """Stop accepting; the connections accepted so far go on."""
        for listening in self._listening:
            self._loop.remove_reader(listening.fileno())
            listening.close()
        self._listening = []

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(self._backlog):
            try:
                sock, address = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
                self._loop.call_exception_handler(
                    {"message": "socket.accept() out of system resource", "exception": exc, "socket": listening}
                )
                self._loop.remove_reader(listening.fileno())
                self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume, listening)
                return
            try:
                wrap(self._loop, sock, self._factory(), {"peername": address}, **self._tls)
            except Exception:
                sock.close()
                logger.exception("could not set up an accepted connection")

    def _resume(self, listening: socket.socket) -> None:
        if listening in self._listening:
            self._loop.add_reader(listening.fileno(), self._accept, listening)


async def connect_socket(
    loop: asyncio.AbstractEventLoop,
    host: Optional[str],
    port: Optional[int],
    *,
    path: Optional[str] = None,
    family: int = 0,
) -> socket.socket:
    """A connected, non-blocking socket to ``host:port`` (each address in
    turn until one answers) or to the Unix socket ``path``."""
    if path is not None:
        addresses: list[tuple[int, Any]] = [(socket.AF_UNIX, path)]
    else:
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned no address")
        addresses = [(info[0], info[4]) for info in infos]
    errors: list[OSError] = []
    for address_family, address in addresses:
        sock = socket.socket(address_family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"Multiple exceptions: {', '.join(str(exc) for exc in errors)}")
