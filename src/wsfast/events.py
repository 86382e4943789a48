"""Events: what :meth:`wsfast.protocol.Connection.receive_data` reports.

Small immutable objects with ``__slots__``, created per message, not per
frame. The handshake reports the peer's :class:`~wsfast.http11.Request` (on a
server) or :class:`~wsfast.http11.Response` (on a client) as events too.
"""

from __future__ import annotations

from typing import Any, Union

from .http11 import Request, Response

__all__ = [
    "Event",
    "TextMessage",
    "BinaryMessage",
    "Fragment",
    "Ping",
    "Pong",
    "CloseReceived",
    "HandshakeFailed",
    "Request",
    "Response",
]


class _Event:
    __slots__: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __hash__(self) -> int:
        return hash((type(self),) + tuple(getattr(self, name) for name in self.__slots__))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={_short(getattr(self, name))}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"...<{len(text)} chars>"


_set = object.__setattr__


class TextMessage(_Event):
    """A complete text message: ``str``, or validated UTF-8 ``bytes`` when
    the connection delivers text as bytes."""

    __slots__ = ("data",)
    data: Union[str, bytes]

    def __init__(self, data: Union[str, bytes]) -> None:
        _set(self, "data", data)


class BinaryMessage(_Event):
    """A complete binary message."""

    __slots__ = ("data",)
    data: bytes

    def __init__(self, data: bytes) -> None:
        _set(self, "data", data)


class Fragment(_Event):
    """A piece of a message, when the connection streams messages.

    ``text`` tells the message type; ``data`` is ``str`` (or validated
    ``bytes``) for text, ``bytes`` for binary; ``fin`` marks the last piece.
    """

    __slots__ = ("data", "text", "fin")
    data: Union[str, bytes]
    text: bool
    fin: bool

    def __init__(self, data: Union[str, bytes], text: bool, fin: bool) -> None:
        _set(self, "data", data)
        _set(self, "text", text)
        _set(self, "fin", fin)


class Ping(_Event):
    """A ping (already answered: the pong is in ``data_to_send()``)."""

    __slots__ = ("data",)
    data: bytes

    def __init__(self, data: bytes = b"") -> None:
        _set(self, "data", data)


class Pong(_Event):
    """A pong."""

    __slots__ = ("data",)
    data: bytes

    def __init__(self, data: bytes = b"") -> None:
        _set(self, "data", data)


class CloseReceived(_Event):
    """The peer's close frame: ``code`` (1005 when it carried none) and
    ``reason``. If the peer started the closing handshake, the reply is
    already in ``data_to_send()``."""

    __slots__ = ("code", "reason")
    code: int
    reason: str

    def __init__(self, code: int = 1005, reason: str = "") -> None:
        _set(self, "code", code)
        _set(self, "reason", reason)


class HandshakeFailed(_Event):
    """The opening handshake failed; ``error`` says why.

    On a server the error response is in ``data_to_send()``; on a client
    ``error.response`` holds the server's answer (status, headers, body).
    """

    __slots__ = ("error",)
    error: Exception

    def __init__(self, error: Exception) -> None:
        _set(self, "error", error)


Event = Union[TextMessage, BinaryMessage, Fragment, Ping, Pong, CloseReceived, HandshakeFailed, Request, Response]
