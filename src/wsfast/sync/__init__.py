"""wsfast on threads: a blocking client and server, without asyncio.

* :func:`connect` opens a client connection: ``with connect(uri) as ws:
  ws.send(...); ws.recv(timeout=...)``.
* :func:`serve` (and :func:`unix_serve`) runs ``handler(ws)`` in a thread per
  connection: ``with serve(handler, host, port) as server:
  server.serve_forever()``.
* :class:`WebSocket` is the connection in both roles.

See :mod:`wsfast.sync.connection` for the design (the calling thread reads;
a small housekeeping thread per connection answers pings and keeps time).
"""

from ..options import Options
from ..uri import parse_uri
from .client import connect
from .connection import PongWaiter, WebSocket
from .server import Server, serve, unix_serve

__all__ = ["connect", "serve", "unix_serve", "Server", "WebSocket", "PongWaiter", "Options", "parse_uri"]
