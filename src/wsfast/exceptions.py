"""Exceptions raised by wsfast.

Every exception that wsfast raises derives from :class:`WebSocketError`.
"""

from __future__ import annotations

__all__ = [
    "WebSocketError",
    "FrameError",
    "InvalidState",
    "ConnectionClosed",
    "InvalidHandshake",
    "NegotiationError",
]


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


class InvalidState(WebSocketError):
    """The operation is not allowed in the connection's current state.

    For example sending a message before the opening handshake, or starting
    a new message while a fragmented one is being sent.
    """


class ConnectionClosed(WebSocketError):
    """The connection is closed, or closing: nothing more can be sent.

    ``code`` and ``reason`` are the close code and reason received from the
    peer (1005 when its close frame had no code, 1006 when none arrived);
    ``sent`` holds the ``(code, reason)`` of the close frame we sent, if any.
    Raised again, the same way, by every later attempt to send.
    """

    def __init__(self, code: int, reason: str, sent: "tuple[int, str] | None" = None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.sent = sent

    def __str__(self) -> str:
        text = f"connection closed: received {self.code}"
        if self.reason:
            text += f" ({self.reason})"
        if self.sent is not None:
            text += f"; sent {self.sent[0]}"
            if self.sent[1]:
                text += f" ({self.sent[1]})"
        return text


class InvalidHandshake(WebSocketError):
    """The opening handshake failed.

    On a server, ``response`` is the HTTP response to send instead of the
    upgrade (400, 403, 426...). On a client, ``response`` is what the server
    answered, when it answered, with its status, headers and body.
    """

    def __init__(self, message: str, response: "object | None" = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response

    def __str__(self) -> str:
        return self.message


class NegotiationError(InvalidHandshake):
    """An extension or subprotocol could not be negotiated."""
