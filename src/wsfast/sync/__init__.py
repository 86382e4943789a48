"""wsfast on threads: a blocking client and server, without asyncio.

* :func:`connect` opens a client connection: ``with connect(uri) as ws:
  ws.send(...); ws.recv(timeout=...)``, through a proxy (``proxy=``; by
  default the environment's), following redirects.
* :func:`reconnecting` gives connections one after another, reconnecting
  with backoff: ``for ws in reconnecting(uri): ...``.
* :func:`serve` (and :func:`unix_serve`) runs ``handler(ws)`` in a thread per
  connection: ``with serve(handler, host, port) as server:
  server.serve_forever()``.
* :class:`WebSocket` is the connection in both roles.

See :mod:`wsfast.sync.connection` for the design (the calling thread reads;
a small housekeeping thread per connection answers pings and keeps time).
"""

from ..options import Options
from ..uri import parse_uri
from .client import connect, reconnecting
from .connection import PongWaiter, WebSocket
from .server import Server, serve, unix_serve

__all__ = [
    "connect",
    "reconnecting",
    "serve",
    "unix_serve",
    "Server",
    "WebSocket",
    "PongWaiter",
    "Options",
    "parse_uri",
]
