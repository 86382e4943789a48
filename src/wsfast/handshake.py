"""The opening handshake (RFC 6455 section 4), for both roles, without I/O.

Functions here build and check the HTTP upgrade request and response; the
connection classes in :mod:`wsfast.protocol` drive them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Callable, Optional, Sequence

from .exceptions import InvalidHandshake, NegotiationError
from .extensions import PerMessageDeflate, parse_extensions, serialize_extension
from .extensions.permessage_deflate import EXTENSION_NAME, Deflate
from .http11 import Headers, Request, Response, header_tokens

__all__ = [
    "GUID",
    "accept_key",
    "generate_key",
    "build_request",
    "check_response",
    "check_request",
    "select_subprotocol",
    "offered_subprotocols",
    "negotiate_deflate",
    "build_response",
    "error_response",
    "SubprotocolSelector",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

SubprotocolSelector = Callable[[Request, Sequence[str]], Optional[str]]
"""``select(request, offered) -> chosen or None``: a server's own choice."""


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_key() -> str:
    """A random ``Sec-WebSocket-Key``: 16 random bytes, base64-encoded."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _subprotocols(headers: Headers) -> list[str]:
    return [p.strip() for v in headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",") if p.strip()]


def offered_subprotocols(request: Request) -> list[str]:
    """The subprotocols a client offers, in its order."""
    return _subprotocols(request.headers)


# ---------------------------------------------------------------- client


def build_request(
    host: str,
    target: str = "/",
    *,
    key: Optional[str] = None,
    origin: Optional[str] = None,
    subprotocols: Sequence[str] = (),
    deflate: Optional[PerMessageDeflate] = None,
    extra_headers: Sequence[tuple[str, str]] = (),
    user_agent: Optional[str] = None,
) -> tuple[Request, str]:
    """The client's upgrade request and the key it carries.

    ``host`` is the ``Host`` header value (with the port when it is not the
    default). Returns ``(request, key)``; keep the key to check the response.
    """
    key = key or generate_key()
    headers = Headers()
    headers.add("Host", host)
    headers.add("Upgrade", "websocket")
    headers.add("Connection", "Upgrade")
    headers.add("Sec-WebSocket-Key", key)
    headers.add("Sec-WebSocket-Version", "13")
    if origin is not None:
        headers.add("Origin", origin)
    if subprotocols:
        headers.add("Sec-WebSocket-Protocol", ", ".join(subprotocols))
    if deflate is not None:
        headers.add("Sec-WebSocket-Extensions", serialize_extension(EXTENSION_NAME, deflate.offer()))
    if user_agent:
        headers.add("User-Agent", user_agent)
    for name, value in extra_headers:
        headers.add(name, value)
    return Request("GET", target, headers), key


def check_response(
    response: Response,
    key: str,
    subprotocols: Sequence[str] = (),
    deflate: Optional[PerMessageDeflate] = None,
) -> tuple[Optional[str], Optional[Deflate]]:
    """Verify the server's answer to :func:`build_request`.

    Returns the selected subprotocol and the permessage-deflate session (or
    ``None`` for each). Raises :class:`~wsfast.exceptions.InvalidHandshake`
    (with the response attached) for anything RFC 6455 does not allow.
    """
    if response.status != 101:
        raise InvalidHandshake(f"server rejected the WebSocket upgrade: HTTP {response.status}", response)
    headers = response.headers
    if "websocket" not in header_tokens(headers, "Upgrade"):
        raise InvalidHandshake("response has no 'Upgrade: websocket' header", response)
    if "upgrade" not in header_tokens(headers, "Connection"):
        raise InvalidHandshake("response has no 'Connection: Upgrade' header", response)
    accept = headers.get_all("Sec-WebSocket-Accept")
    if accept != [accept_key(key)]:
        raise InvalidHandshake(f"invalid Sec-WebSocket-Accept: {accept!r}", response)
    chosen = _subprotocols(headers)
    if len(chosen) > 1:
        raise NegotiationError(f"server selected several subprotocols: {chosen!r}", response)
    subprotocol = chosen[0] if chosen else None
    if subprotocol is not None and subprotocol not in subprotocols:
        raise NegotiationError(f"server selected a subprotocol that was not offered: {subprotocol!r}", response)
    session = None
    try:
        accepted = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
        for name, params in accepted:
            if name != EXTENSION_NAME or deflate is None:
                raise NegotiationError(f"server accepted an extension that was not offered: {name}")
            if session is not None:
                raise NegotiationError("server accepted permessage-deflate twice")
            session = deflate.confirm(params)
    except NegotiationError as exc:
        exc.response = response
        raise
    return subprotocol, session


# ---------------------------------------------------------------- server


def error_response(status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A plain-text HTTP error response that closes the connection."""
    response = Response(status, Headers(headers), (message + "\n").encode())
    response.headers.add("Content-Type", "text/plain; charset=utf-8")
    response.headers.add("Connection", "close")
    return response


def check_request(request: Request, origins: Optional[Sequence[Optional[str]]] = None) -> str:
    """Verify an upgrade request; return its ``Sec-WebSocket-Key``.

    ``origins``, when given, lists the allowed ``Origin`` values (``None`` in
    it admits requests without one). Raises
    :class:`~wsfast.exceptions.InvalidHandshake` whose ``response`` is the
    answer to send: 405, 400, 426 (with ``Sec-WebSocket-Version: 13`` when the
    version is wrong) or 403.
    """
    headers = request.headers
    if request.method != "GET":
        raise InvalidHandshake(
            f"method {request.method} is not allowed", error_response(405, "Method Not Allowed", [("Allow", "GET")])
        )
    if request.version < "HTTP/1.1":
        raise InvalidHandshake(f"{request.version} cannot upgrade", error_response(400, "HTTP/1.1 required"))
    if len(headers.get_all("Host")) != 1:
        raise InvalidHandshake("missing or repeated Host header", error_response(400, "Missing Host header"))
    upgrade_headers = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    if "websocket" not in header_tokens(headers, "Upgrade"):
        raise InvalidHandshake(
            "missing 'Upgrade: websocket' header",
            error_response(426, "This endpoint speaks WebSocket only", upgrade_headers),
        )
    if "upgrade" not in header_tokens(headers, "Connection"):
        raise InvalidHandshake(
            "missing 'Connection: Upgrade' header",
            error_response(426, "This endpoint speaks WebSocket only", upgrade_headers),
        )
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions != ["13"]:
        raise InvalidHandshake(
            f"unsupported Sec-WebSocket-Version: {versions!r}",
            error_response(426, "Unsupported WebSocket version", [("Sec-WebSocket-Version", "13")]),
        )
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise InvalidHandshake(
            "missing or repeated Sec-WebSocket-Key", error_response(400, "Invalid Sec-WebSocket-Key")
        )
    key = keys[0]
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise InvalidHandshake(f"invalid Sec-WebSocket-Key: {key!r}", error_response(400, "Invalid Sec-WebSocket-Key"))
    if origins is not None:
        origin_values = headers.get_all("Origin")
        origin = origin_values[0] if len(origin_values) == 1 else None
        if len(origin_values) > 1 or origin not in origins:
            raise InvalidHandshake(f"origin not allowed: {origin!r}", error_response(403, "Origin not allowed"))
    return key


def select_subprotocol(
    request: Request, available: Sequence[str], select: Optional[SubprotocolSelector] = None
) -> Optional[str]:
    """Choose a subprotocol among those the client offers.

    By default the first of ``available`` (the server's preference order)
    that the client offered; ``select`` replaces that rule. Returns ``None``
    when there is nothing in common.
    """
    offered = _subprotocols(request.headers)
    if select is not None:
        chosen = select(request, offered)
        if chosen is not None and chosen not in offered:
            raise NegotiationError(f"select_subprotocol chose {chosen!r}, which the client did not offer")
        return chosen
    for subprotocol in available:
        if subprotocol in offered:
            return subprotocol
    return None


def negotiate_deflate(
    request: Request, deflate: Optional[PerMessageDeflate]
) -> tuple[Optional[str], Optional[Deflate]]:
    """Accept the client's first acceptable permessage-deflate offer.

    Returns the ``Sec-WebSocket-Extensions`` response value and the session,
    or ``(None, None)``. A malformed header raises
    :class:`~wsfast.exceptions.NegotiationError` (answered with 400).
    """
    if deflate is None:
        return None, None
    try:
        offers = parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))
    except NegotiationError as exc:
        exc.response = error_response(400, "Invalid Sec-WebSocket-Extensions header")
        raise
    accepted = deflate.accept([params for name, params in offers if name == EXTENSION_NAME])
    if accepted is None:
        return None, None
    params, session = accepted
    return serialize_extension(EXTENSION_NAME, params), session


def build_response(
    key: str,
    subprotocol: Optional[str] = None,
    extensions: Optional[str] = None,
    extra_headers: Sequence[tuple[str, str]] = (),
    server: Optional[str] = None,
) -> Response:
    """The ``101 Switching Protocols`` response."""
    headers = Headers()
    headers.add("Upgrade", "websocket")
    headers.add("Connection", "Upgrade")
    headers.add("Sec-WebSocket-Accept", accept_key(key))
    if subprotocol is not None:
        headers.add("Sec-WebSocket-Protocol", subprotocol)
    if extensions is not None:
        headers.add("Sec-WebSocket-Extensions", extensions)
    if server:
        headers.add("Server", server)
    for name, value in extra_headers:
        headers.add(name, value)
    return Response(101, headers)
