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

Everywhere else (TLS, Windows, other event loops, the pure-Python codec, the
option ``own_transport=False``) the event loop's own transports are used.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
from typing import Any, Callable, Optional

from ..codec import SocketTransport

__all__ = ["usable", "wrap", "Acceptor", "connect_socket"]

logger = logging.getLogger("wsfast")

# Out of file descriptors or memory: stop accepting for a while (as asyncio does).
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_RETRY_DELAY = 1.0


def usable(loop: asyncio.AbstractEventLoop, ssl: Any, own_transport: bool) -> bool:
    """Whether connections on ``loop`` can run on wsfast's socket transport:
    asyncio's selector loops and uvloop, without TLS, with the extension."""
    return (
        own_transport
        and ssl is None
        and SocketTransport is not None
        and sys.platform != "win32"
        and (isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop) or type(loop).__module__ == "uvloop")
    )


def wrap(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    protocol: asyncio.BaseProtocol,
    extra: Optional[dict[str, Any]] = None,
) -> Any:
    """Run ``protocol`` over the connected ``sock`` on wsfast's transport
    (where :func:`usable` said so); ``connection_made`` follows on the loop."""
    assert SocketTransport is not None
    return SocketTransport(loop, sock, protocol, extra)


class Acceptor:
    """Accepts connections on a server's listening sockets (bound by the
    event loop's ``create_server(start_serving=False)``) onto
    :class:`~wsfast.codec.SocketTransport`.

    It listens on duplicates of the sockets' descriptors, which it owns and
    closes in :meth:`close`; the event loop's server still owns the sockets.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: Any,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        backlog: int = 100,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._backlog = backlog
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
                wrap(self._loop, sock, self._factory(), {"peername": address})
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
