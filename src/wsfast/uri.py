"""WebSocket URIs (RFC 6455 section 3): ``ws://`` and ``wss://``, parsed once
for every client (asyncio, threads, Trio)."""

from __future__ import annotations

from typing import Optional
from urllib.parse import unquote, urlsplit

from .exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]


class WebSocketURI:
    """A parsed ``ws://`` or ``wss://`` URI.

    ``user`` and ``password`` come from the URI's user information
    (``ws://user:pass@host/``, percent-decoded), ``None`` without it; the
    clients send them as HTTP Basic credentials.
    """

    __slots__ = ("secure", "host", "port", "target", "user", "password")

    def __init__(
        self,
        secure: bool,
        host: str,
        port: int,
        target: str,
        user: Optional[str] = None,
        password: Optional[str] = None,
    ) -> None:
        self.secure = secure
        self.host = host
        self.port = port
        self.target = target
        self.user = user
        self.password = password

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        """Scheme, host and port: what must stay the same for credentials to
        follow a redirect."""
        return ("wss" if self.secure else "ws", self.host, self.port)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WebSocketURI):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        """The URI, without its credentials."""
        return f"{'wss' if self.secure else 'ws'}://{self.host_header}{self.target}"

    def __repr__(self) -> str:
        return f"WebSocketURI({self})"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse a WebSocket URI; :class:`~wsfast.exceptions.InvalidURI` if it is not one."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "the scheme must be ws or wss")
    if not parts.hostname:
        raise InvalidURI(uri, "there is no host")
    if parts.fragment:
        raise InvalidURI(uri, "a WebSocket URI cannot have a fragment")
    user = password = None
    if parts.username is not None:
        if parts.password is None:
            raise InvalidURI(uri, "user information needs a password (ws://user:password@host/)")
        user, password = unquote(parts.username), unquote(parts.password)
    secure = parts.scheme == "wss"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return WebSocketURI(secure, parts.hostname, port or (443 if secure else 80), target, user, password)
