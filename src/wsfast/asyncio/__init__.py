"""wsfast on asyncio: servers and clients at two levels.

* The awaitable API: :func:`serve`, :func:`connect`, :class:`WebSocket`
  (``await ws.recv()``, ``await ws.send(...)``), :func:`broadcast`.
* The callback API, the fastest path: :func:`create_server`,
  :func:`create_connection`, a :class:`Listener` per connection and its
  :class:`WebSocketTransport`.
"""

from ..options import Options
from ..uri import parse_uri
from .client import connect, create_connection
from .connection import WebSocket, broadcast
from .listener import Listener
from .server import Server, create_server, serve
from .transport import WebSocketTransport

__all__ = [
    "serve",
    "connect",
    "WebSocket",
    "broadcast",
    "Server",
    "create_server",
    "create_connection",
    "Listener",
    "WebSocketTransport",
    "Options",
    "parse_uri",
]
