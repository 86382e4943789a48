"""Exceptions raised by wsfast.

Every exception that wsfast raises derives from :class:`WebSocketError`.
"""

from __future__ import annotations

from typing import Sequence

__all__ = [
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


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally (close code 1000 or 1001 both ways)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed abnormally: an error code, or no close frame."""


def connection_closed(code: int, reason: str, sent: "tuple[int, str] | None") -> ConnectionClosed:
    """The right :class:`ConnectionClosed` subclass for a closed connection."""
    ok = code in (1000, 1001) and (sent is None or sent[0] in (1000, 1001))
    return (ConnectionClosedOK if ok else ConnectionClosedError)(code, reason, sent)


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


class InvalidRedirect(InvalidHandshake):
    """A redirect that a client refuses to follow.

    ``chain`` lists the URIs requested, the first one first (without their
    credentials), then the one refused, when it could be resolved;
    ``response`` is the redirect.
    """

    def __init__(self, message: str, chain: Sequence[str], response: "object | None" = None) -> None:
        super().__init__(f"{message} (redirects: {' -> '.join(chain)})", response)
        self.chain = list(chain)


class NegotiationError(InvalidHandshake):
    """An extension or subprotocol could not be negotiated."""


class InvalidURI(WebSocketError, ValueError):
    """A URI that is not a valid ``ws://`` or ``wss://`` URI."""

    def __init__(self, uri: str, message: str) -> None:
        super().__init__(f"{uri!r} is not a valid WebSocket URI: {message}")
        self.uri = uri


class InvalidProxy(WebSocketError, ValueError):
    """A proxy URL that wsfast cannot use (scheme, host, port, a path...)."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url!r} is not a valid proxy URL: {message}")
        self.url = url


class ProxyError(InvalidHandshake):
    """The proxy did not open the tunnel to the server.

    Raised when an HTTP proxy answers CONNECT with anything but 2xx (``status``
    and ``status_line`` hold its answer, ``response`` the whole
    :class:`~wsfast.http11.Response`; 407 means the credentials were missing
    or refused), sends something that is not an HTTP response, or closes the
    connection; and when a SOCKS proxy refuses the request or the
    credentials. ``proxy`` is the proxy URL without its credentials.

    It is an :class:`InvalidHandshake`: the proxy took part in the opening
    handshake and said no. A proxy that cannot be reached at all raises
    ``OSError`` (naming the proxy), and a slow one ``TimeoutError``, as a
    server would.
    """

    def __init__(
        self,
        proxy: str,
        message: str,
        status: "int | None" = None,
        status_line: "str | None" = None,
        response: "object | None" = None,
    ) -> None:
        super().__init__(f"proxy {proxy}: {message}", response)
        self.proxy = proxy
        self.status = status
        self.status_line = status_line
