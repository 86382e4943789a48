"""HTTP Basic authentication (RFC 7617) for WebSocket handshakes.

Servers: :func:`basic_auth` returns a ``process_request`` hook that answers
401 to requests without valid credentials and records the user name of the
others in ``request.user``. Clients: :func:`basic_auth_header` and
:func:`with_uri_credentials` (a URI's ``user:password@``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import os
from typing import Any, Awaitable, Callable, Iterable, Mapping, Optional, Sequence, Union

from .handshake import error_response
from .http11 import Request, Response
from .uri import WebSocketURI

__all__ = [
    "basic_auth_header",
    "with_uri_credentials",
    "parse_basic_auth",
    "unauthorized",
    "basic_auth",
    "BasicAuth",
    "CheckCredentials",
    "Credentials",
]

CheckCredentials = Callable[[str, str], Union[bool, Awaitable[bool]]]
"""``check(user, password)``: true to let the request in; may be a
coroutine function (asyncio servers only)."""

Credentials = Union[tuple[str, str], Iterable[tuple[str, str]], Mapping[str, str]]
"""One ``(user, password)`` pair, pairs, or a mapping from user to password."""


def basic_auth_header(user: str, password: str) -> str:
    """The ``Authorization`` header value for these credentials (UTF-8)."""
    if ":" in user:
        raise ValueError("a Basic auth user name cannot contain ':'")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def with_uri_credentials(uri: WebSocketURI, headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """A client's extra headers plus the URI's credentials as Basic
    ``Authorization``, unless the headers have an ``Authorization`` already
    (an explicit header wins)."""
    out = list(headers)
    if uri.user is not None and not any(name.lower() == "authorization" for name, _ in out):
        out.append(("Authorization", basic_auth_header(uri.user, uri.password or "")))
    return out


def parse_basic_auth(value: str) -> tuple[str, str]:
    """The ``(user, password)`` of a Basic ``Authorization`` header value.

    Raises :class:`ValueError` saying what is wrong: another scheme, bad
    base64, no colon, or not UTF-8.
    """
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        raise ValueError("not Basic credentials")
    try:
        decoded = base64.b64decode(token.strip().encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError):
        raise ValueError("malformed Basic credentials") from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise ValueError("malformed Basic credentials: no colon")
    return user, password


def unauthorized(realm: str, message: str = "Unauthorized") -> Response:
    """A 401 response asking for Basic credentials in ``realm`` (UTF-8)."""
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return error_response(401, message, [("WWW-Authenticate", f'Basic realm="{quoted}", charset="UTF-8"')])


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode("utf-8")).digest()


class BasicAuth:
    """A ``process_request`` hook for HTTP Basic authentication; see :func:`basic_auth`."""

    __slots__ = ("realm", "_check", "_table", "_decoy")

    def __init__(
        self,
        realm: str = "",
        *,
        credentials: Optional[Credentials] = None,
        check_credentials: Optional[CheckCredentials] = None,
    ) -> None:
        if (credentials is None) == (check_credentials is None):
            raise ValueError("basic_auth needs credentials or check_credentials (one of them)")
        if "\r" in realm or "\n" in realm:
            raise ValueError("the realm cannot contain CR or LF")
        self.realm = realm
        # Passwords are kept as SHA-256 digests: compared in constant time
        # whatever their lengths, and not kept in clear.
        self._table: dict[str, bytes] = {}
        self._decoy = _digest(os.urandom(16).hex())  # compared against for unknown users
        self._check: CheckCredentials
        if check_credentials is not None:
            self._check = check_credentials
            return
        if isinstance(credentials, Mapping):
            pairs: Iterable[Any] = credentials.items()
        elif isinstance(credentials, tuple) and len(credentials) == 2 and all(isinstance(c, str) for c in credentials):
            pairs = [credentials]
        else:
            pairs = credentials  # type: ignore[assignment]
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(c, str) for c in pair)):
                raise TypeError(f"credentials must be (user, password) pairs of str, not {pair!r}")
            user, password = pair
            if ":" in user:
                raise ValueError(f"a Basic auth user name cannot contain ':': {user!r}")
            self._table[user] = _digest(password)
        self._check = self.check_table

    def check_table(self, user: str, password: str) -> bool:
        """Whether the pair is one of the credentials given: the same work
        whether the user exists or not, and the password compared in
        constant time."""
        expected = self._table.get(user)
        match = hmac.compare_digest(_digest(password), self._decoy if expected is None else expected)
        return match and expected is not None

    def __call__(self, ws: Any, request: Request) -> Union[Optional[Response], Awaitable[Optional[Response]]]:
        """Answer 401 without valid credentials; else set ``request.user``
        and return ``None`` (the upgrade goes on). Returns an awaitable only
        when ``check_credentials`` did."""
        values = request.headers.get_all("Authorization")
        if not values:
            return unauthorized(self.realm, "Missing credentials")
        if len(values) > 1:
            return unauthorized(self.realm, "Malformed credentials")
        try:
            user, password = parse_basic_auth(values[0])
        except ValueError:
            return unauthorized(self.realm, "Malformed credentials")
        verdict = self._check(user, password)
        if inspect.isawaitable(verdict):
            return self._decide_later(request, user, verdict)
        return self._decide(request, user, bool(verdict))

    async def _decide_later(self, request: Request, user: str, verdict: Awaitable[bool]) -> Optional[Response]:
        return self._decide(request, user, bool(await verdict))

    def _decide(self, request: Request, user: str, ok: bool) -> Optional[Response]:
        if not ok:
            return unauthorized(self.realm, "Invalid credentials")
        request.user = user
        return None


def basic_auth(
    realm: str = "",
    *,
    credentials: Optional[Credentials] = None,
    check_credentials: Optional[CheckCredentials] = None,
) -> BasicAuth:
    """A ``process_request`` hook that requires HTTP Basic credentials.

    ``credentials`` is a ``(user, password)`` pair, an iterable of pairs or a
    mapping from user to password (read once, here: for users that change,
    use ``check_credentials``); or ``check_credentials(user, password)``
    decides (a plain function for any server, threads included; a coroutine
    function too on asyncio). Requests without an ``Authorization: Basic`` header, with a
    malformed one (another scheme, bad base64, no colon, not UTF-8) or with
    credentials refused get 401 with ``WWW-Authenticate: Basic
    realm="...", charset="UTF-8"``. Accepted, the user name is in
    ``request.user`` (``ws.request.user`` in the handler)::

        wsfast.serve(handler, host, port, process_request=basic_auth("chat", credentials=("alice", "s3cret")))
    """
    return BasicAuth(realm, credentials=credentials, check_credentials=check_credentials)
