"""The echo listener both Autobahn peers use (imported once the codec is
chosen: ``WSFAST_PURE_PYTHON`` must be set before wsfast is imported)."""

from __future__ import annotations

from typing import Any, Optional

from wsfast.asyncio import Listener, WebSocketTransport
from wsfast.exceptions import ConnectionClosed


class Echo(Listener):
    """Sends every text message back as text, every binary one as binary."""

    __slots__ = ("ws",)

    def __init__(self) -> None:
        self.ws: Optional[WebSocketTransport] = None

    def on_open(self, ws: WebSocketTransport) -> None:
        self.ws = ws

    def on_text(self, data: Any) -> None:
        try:
            self.ws.send_text(data)  # type: ignore[union-attr]
        except ConnectionClosed:
            pass

    def on_binary(self, data: bytes) -> None:
        try:
            self.ws.send_binary(data)  # type: ignore[union-attr]
        except ConnectionClosed:
            pass
