"""WebSocket extensions: the ``Sec-WebSocket-Extensions`` header grammar
(RFC 6455 section 9.1) and permessage-deflate (RFC 7692), the one extension
in use on the web.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from ..exceptions import NegotiationError
from .permessage_deflate import DEFAULT_DEFLATE, Deflate, PerMessageDeflate, trim_freed_memory

__all__ = [
    "ExtensionParams",
    "parse_extensions",
    "serialize_extension",
    "PerMessageDeflate",
    "DEFAULT_DEFLATE",
    "Deflate",
    "trim_freed_memory",
]

ExtensionParams = list[tuple[str, Optional[str]]]
"""The parameters of one offered or accepted extension, in order."""

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"\s*({_TOKEN})\s*(?:=\s*({_TOKEN}|{_QUOTED})\s*)?")
_TOKEN_RE = re.compile(_TOKEN)


def parse_extensions(values: Iterable[str]) -> list[tuple[str, ExtensionParams]]:
    """Parse every ``Sec-WebSocket-Extensions`` value into (name, params).

    A quoted-string value is unquoted and must then be a token (RFC 6455
    section 9.1). Raises :class:`~wsfast.exceptions.NegotiationError` for a
    malformed header.
    """
    result: list[tuple[str, ExtensionParams]] = []
    for value in values:
        pos = 0
        n = len(value)
        while pos < n:
            # one extension: token *( ";" param )
            match = _PARAM.match(value, pos)
            if match is None or match.group(2) is not None:
                raise NegotiationError(f"invalid Sec-WebSocket-Extensions header: {value!r}")
            name = match.group(1).lower()
            pos = match.end()
            params: ExtensionParams = []
            while pos < n and value[pos] == ";":
                match = _PARAM.match(value, pos + 1)
                if match is None:
                    raise NegotiationError(f"invalid Sec-WebSocket-Extensions header: {value!r}")
                param_value = match.group(2)
                if param_value is not None and param_value.startswith('"'):
                    param_value = re.sub(r"\\(.)", r"\1", param_value[1:-1])
                    if not _TOKEN_RE.fullmatch(param_value):
                        raise NegotiationError(f"invalid quoted parameter value in Sec-WebSocket-Extensions: {value!r}")
                params.append((match.group(1).lower(), param_value))
                pos = match.end()
            result.append((name, params))
            if pos < n:
                if value[pos] != ",":
                    raise NegotiationError(f"invalid Sec-WebSocket-Extensions header: {value!r}")
                pos += 1
                while pos < n and value[pos] in " \t":
                    pos += 1
                if pos == n:
                    raise NegotiationError(f"invalid Sec-WebSocket-Extensions header: {value!r}")
    return result


def serialize_extension(name: str, params: ExtensionParams) -> str:
    """Format one extension with its parameters for the header."""
    parts = [name]
    for key, value in params:
        parts.append(key if value is None else f"{key}={value}")
    return "; ".join(parts)
