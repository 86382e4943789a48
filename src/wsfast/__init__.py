"""wsfast: a fast, strict WebSocket library (RFC 6455, RFC 7692)."""

from __future__ import annotations

from .codec import HAS_SPEEDUPS, IMPLEMENTATION
from .exceptions import FrameError, WebSocketError

__version__ = "0.1.0.dev0"

__all__ = ["__version__", "HAS_SPEEDUPS", "IMPLEMENTATION", "FrameError", "WebSocketError"]
