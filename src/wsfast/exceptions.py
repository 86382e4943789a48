"""Exceptions raised by wsfast.

Every exception that wsfast raises derives from :class:`WebSocketError`.
"""

from __future__ import annotations

__all__ = ["WebSocketError", "FrameError"]


class WebSocketError(Exception):
    """Base class of every wsfast exception."""


class FrameError(WebSocketError):
    """The peer sent a frame that RFC 6455 forbids.

    ``code`` is the close code the connection must be closed with (1002 for a
    protocol violation, 1009 for a frame over the size limit) and ``reason`` a
    short explanation, suitable as the close reason. ``frames`` holds the
    frames that a :class:`~wsfast.codec.FrameReader` completed in the same
    ``feed`` call before it met the bad frame, so that none are lost.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.frames: list[tuple[int, bool, int, bytes]] = []

    def __str__(self) -> str:
        return f"{self.reason} (close code {self.code})"
