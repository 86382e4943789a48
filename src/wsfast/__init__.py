"""wsfast: a fast, strict WebSocket library (RFC 6455, RFC 7692).

``wsfast.serve``, ``wsfast.connect`` and the rest of :mod:`wsfast.asyncio`
are importable from here, and ``wsfast.run`` (:mod:`wsfast.workers`: worker
processes on one port under a supervisor); they are loaded on first use, so
that importing the codec alone stays light.

Threads: :mod:`wsfast.sync` (``import wsfast.sync``, which does not load
asyncio) has a blocking ``connect`` and a ``serve`` that runs a handler in a
thread per connection, with the same options::

    with wsfast.sync.connect("ws://127.0.0.1:8765") as ws:
        ws.send("hello")
        reply = ws.recv(timeout=10)
"""

from __future__ import annotations

from typing import Any

from .codec import HAS_SPEEDUPS, IMPLEMENTATION
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    FrameError,
    InvalidHandshake,
    InvalidProxy,
    InvalidRedirect,
    InvalidState,
    InvalidURI,
    NegotiationError,
    ProxyError,
    WebSocketError,
)

__version__ = "0.1.0.dev0"

_ASYNCIO_NAMES = (
    "serve",
    "connect",
    "broadcast",
    "WebSocket",
    "Server",
    "create_server",
    "create_connection",
    "Listener",
    "WebSocketTransport",
)
_INTEGRATION_NAMES = ("accelerate", "unaccelerate")
_WORKER_NAMES = ("run",)

__all__ = [
    "__version__",
    "HAS_SPEEDUPS",
    "IMPLEMENTATION",
    "WebSocketError",
    "FrameError",
    "InvalidState",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "InvalidHandshake",
    "NegotiationError",
    "InvalidRedirect",
    "InvalidURI",
    "InvalidProxy",
    "ProxyError",
    *_ASYNCIO_NAMES,
    *_INTEGRATION_NAMES,
    *_WORKER_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _ASYNCIO_NAMES:
        from . import asyncio as _asyncio

        return getattr(_asyncio, name)
    if name in _INTEGRATION_NAMES:
        from .integrations import accelerate as _accelerate

        return getattr(_accelerate, name)
    if name in _WORKER_NAMES:
        from . import workers as _workers

        return getattr(_workers, name)
    raise AttributeError(f"module 'wsfast' has no attribute {name!r}")
