"""Options of a server or a client connection, with their defaults, and
the defaults every client shares (``User-Agent``, the TLS context).

One :class:`Options` object is shared by every connection of a server, so
options cost no memory per connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from . import __version__
from .extensions import DEFAULT_DEFLATE, PerMessageDeflate
from .handshake import SubprotocolSelector
from .http11 import MAX_HEAD_SIZE, MAX_HEADERS, MAX_LINE_LENGTH
from .protocol import MAX_MESSAGE_SIZE

__all__ = ["Options", "split_options", "USER_AGENT", "default_ssl_context"]

USER_AGENT = f"wsfast/{__version__}"
"""The ``User-Agent`` of wsfast's clients (and of their CONNECT requests to proxies)."""

_default_ssl_context: Optional[ssl.SSLContext] = None


@dataclass
class Options:
    """Everything a connection is configured with.

    Limits:
        max_message_size: largest message accepted, in bytes after
            decompression (``None``: no limit); larger closes with 1009.
        max_frame_size: largest frame accepted (default: ``max_message_size``).
        max_queue: bytes of received messages the awaitable API buffers
            before it stops reading from the socket (resumes below a
            quarter); each message counts 64 bytes more than its length.
        write_limit: high-water mark of the transport's write buffer, in
            bytes; above it :meth:`send` waits and listeners get
            ``pause_writing``, and of the automatic pongs only the one to the
            latest ping is kept (sent when writing resumes).
        max_line_length, max_headers, max_head_size: limits of the HTTP
            upgrade request or response (see :mod:`wsfast.http11`).
    Timeouts (seconds, ``None`` to disable):
        open_timeout: for the opening handshake.
        close_timeout: for the closing handshake, after which the TCP
            connection is aborted.
        fail_timeout: when the peer breaks the protocol, the awaitable
            API holds the close frame until the application has taken the
            messages received before the error (and sent its replies to
            them): until it calls ``recv`` with the queue empty, closes, or
            its handler returns; at most this long (``0`` or ``None``: the
            close frame goes at once, the messages before it stay readable).
        ping_interval, ping_timeout: a keepalive ping every
            ``ping_interval``; no pong within ``ping_timeout`` closes the
            connection with 1011. Each keepalive tick also frees the
            permessage-deflate zlib state (about 40 KB) of a connection that
            sent and received no compressed message since the previous tick
            (context takeover is kept: see ``Connection.release_idle_memory``);
            without keepalive (``None``) that state stays while the
            connection lives.
    Negotiation:
        subprotocols: offered (client) or supported in order of preference
            (server). select_subprotocol: a server's own rule.
        deflate: permessage-deflate configuration, ``None`` to disable.
        origins: allowed ``Origin`` values (server; ``None`` in the list
            admits requests without one).
        extra_headers: added to the request (client) or response (server).
    Delivery:
        text_as_bytes: text messages as validated UTF-8 ``bytes``.
        stream_messages: messages as fragments when they arrive.
    I/O:
        own_transport: run plain ``ws://`` connections on wsfast's compiled
            socket transport (:mod:`wsfast.asyncio.sockets`) on asyncio's
            standard event loop and on uvloop; ``False``: the loop's own.
            Ignored with TLS, on Windows, or with the pure-Python codec.
    """

    max_message_size: Optional[int] = MAX_MESSAGE_SIZE
    max_frame_size: Optional[int] = None
    max_queue: int = 4 * MAX_MESSAGE_SIZE
    write_limit: int = 65536
    max_line_length: int = MAX_LINE_LENGTH
    max_headers: int = MAX_HEADERS
    max_head_size: int = MAX_HEAD_SIZE
    open_timeout: Optional[float] = 10.0
    close_timeout: Optional[float] = 10.0
    fail_timeout: Optional[float] = 1.0
    ping_interval: Optional[float] = 20.0
    ping_timeout: Optional[float] = 20.0
    subprotocols: Sequence[str] = ()
    select_subprotocol: Optional[SubprotocolSelector] = None
    deflate: Optional[PerMessageDeflate] = DEFAULT_DEFLATE
    origins: Optional[Sequence[Optional[str]]] = None
    extra_headers: Sequence[tuple[str, str]] = ()
    text_as_bytes: bool = False
    stream_messages: bool = False
    own_transport: bool = True

    def connection_options(self) -> dict[str, Any]:
        """The keyword arguments that a server's and a client's
        :class:`~wsfast.protocol.Connection` both take from these options."""
        return {
            "subprotocols": self.subprotocols,
            "deflate": self.deflate,
            "max_line_length": self.max_line_length,
            "max_headers": self.max_headers,
            "max_head_size": self.max_head_size,
            "max_message_size": self.max_message_size,
            "max_frame_size": self.max_frame_size,
            "text_as_bytes": self.text_as_bytes,
            "stream_messages": self.stream_messages,
        }


def split_options(kwargs: dict[str, Any], api: Optional[str] = None) -> tuple[Options, dict[str, Any]]:
    """Take the :class:`Options` fields out of ``kwargs``; return them and
    what is left. ``api`` names an API without the callback API's
    ``stream_messages`` (refused there)."""
    fields = Options.__dataclass_fields__
    options = Options(**{k: kwargs.pop(k) for k in list(kwargs) if k in fields})
    if api is not None and options.stream_messages:
        raise ValueError(f"stream_messages is not supported by {api} (it is for asyncio's callback API)")
    return options, kwargs


def default_ssl_context() -> ssl.SSLContext:
    """The clients' default TLS context (to servers and to https:// proxies):
    verifies certificates; created once."""
    global _default_ssl_context
    if _default_ssl_context is None:
        _default_ssl_context = ssl.create_default_context()
    return _default_ssl_context
