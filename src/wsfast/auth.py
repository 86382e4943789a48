"""HTTP Basic authentication (RFC 7617) for WebSocket handshakes."""

from __future__ import annotations

import base64

__all__ = ["basic_auth_header"]


def basic_auth_header(user: str, password: str) -> str:
    """The ``Authorization`` header value for these credentials (UTF-8)."""
    if ":" in user:
        raise ValueError("a Basic auth user name cannot contain ':'")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"
