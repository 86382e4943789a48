"""wsfast on Trio: :func:`serve`, :func:`connect` and :class:`WebSocket`.

The same API shape as :mod:`wsfast.asyncio`'s awaitable API, in Trio's
structured style: background work (reading, keepalive pings) runs in a
nursery that the caller owns, and cancellation closes connections with 1001.

Native Trio, not anyio: measured on Trio, anyio's streams and primitives
cost about what Trio's own do (a raw 64 B echo 1.02x, lock and event within
noise: ``bench/trio_echo.py --layers``), so anyio would cost little here;
but it would buy nothing either: on asyncio, :mod:`wsfast.asyncio` runs on
its own compiled socket transport, which anyio's asyncio streams cannot
match, and it would add a dependency and a second layer of cancellation
semantics between wsfast and Trio's :class:`trio.SSLStream`,
:exc:`trio.TooSlowError` and ``nursery.start``. So this package uses Trio
directly, and asyncio users keep :mod:`wsfast.asyncio`.

Options (:class:`~wsfast.options.Options`) apply as in asyncio, except
``write_limit`` (a Trio stream has no write buffer: ``send`` returns once
the kernel took the bytes), ``own_transport`` (asyncio only) and
``stream_messages`` (refused, as by asyncio's awaitable API).
"""

import trio as _trio  # noqa: F401  (fails here, clearly, when Trio is missing)

from ..options import Options
from .client import connect
from .connection import WebSocket
from .server import Server, serve

__all__ = ["connect", "serve", "Server", "WebSocket", "Options"]
