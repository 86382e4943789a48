"""wsfast on Trio: :func:`serve`, :func:`connect` and :class:`WebSocket`.

The same API shape as :mod:`wsfast.asyncio`'s awaitable API, in Trio's
structured style: background work (reading, keepalive pings) runs in a
nursery that the caller owns, and cancellation closes connections with 1001.
The client goes through proxies and follows redirects as asyncio's does;
``async with connect(uri).reconnecting() as connections: async for ws in
connections`` is its reconnecting loop (the context manager owns the
nursery the connections run in: see :func:`connect`).

Native Trio, not anyio, by measurement (``bench/trio_echo.py --layers``,
one connection, echo round trips): on Trio, anyio's streams and primitives
cost about what Trio's own do (a raw echo the same at 64 B, 0.9-1.5x
between runs at 1 MiB; a lock the same, an event 1.3x), so anyio would cost
little here. But it would buy nothing: on asyncio, the ceiling of an anyio-based
wsfast, a raw echo over anyio's streams with no WebSocket work at all, makes
0.4x the round trips of :mod:`wsfast.asyncio`'s whole WebSocket echo at
64 B (on its compiled socket transport), so asyncio users are better served by
:mod:`wsfast.asyncio` as it is, and an anyio layer would only add a
dependency between wsfast and Trio's own :class:`trio.SSLStream`,
:exc:`trio.TooSlowError` and ``nursery.start``. Against trio-websocket,
each with its own client and server: 2.1x its round trips at 64 B, 10-17x
at 1 MiB (between runs).

Options (:class:`~wsfast.options.Options`) apply as in asyncio, except
``write_limit`` (a Trio stream has no write buffer: ``send`` returns once
the kernel took the bytes), ``own_transport`` (asyncio only) and
``stream_messages`` (refused, as by asyncio's awaitable API).
"""

import trio as _trio  # noqa: F401  (fails here, clearly, when Trio is missing)

from ..options import Options
from .client import OpenTimeoutError, connect
from .connection import WebSocket
from .server import Server, serve

__all__ = ["connect", "serve", "Server", "WebSocket", "Options", "OpenTimeoutError"]
