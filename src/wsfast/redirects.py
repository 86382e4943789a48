"""Following HTTP redirects of the opening handshake, without I/O: shared by
every client (asyncio, threads, Trio).

A server may answer the upgrade request with 301, 302, 303, 307 or 308 and
a ``Location``. :class:`Redirects` resolves it against the URI it answers
(a relative ``Location`` too; ``http://`` and ``https://`` map to ``ws://``
and ``wss://``), refuses what must not be followed (another scheme, a
``wss://`` to ``ws://`` downgrade, more than ``max_redirects`` hops), and
drops the credentials (``Authorization``, ``Cookie``,
``Proxy-Authorization``, the URI's user information) when the origin
(scheme, host, port) changes.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence
from urllib.parse import quote, urldefrag, urljoin, urlsplit

from .auth import with_uri_credentials
from .exceptions import InvalidHandshake, InvalidRedirect, InvalidURI, ProxyError
from .http11 import Response
from .uri import WebSocketURI, parse_uri

__all__ = ["MAX_REDIRECTS", "REDIRECT_STATUSES", "CREDENTIAL_HEADERS", "Redirects", "is_redirect", "redirect_of"]

logger = logging.getLogger("wsfast.client")

MAX_REDIRECTS = 10
"""Default limit of redirects followed by one connection attempt."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""Statuses followed when the response has a ``Location``."""

CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Headers (lower-case) that do not follow a redirect to another origin."""

_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}

_SAFE = "!$%&'()*+,/:;=?@[]~"


def is_redirect(response: object) -> bool:
    """Whether a response to the upgrade request is a redirect to follow."""
    return isinstance(response, Response) and response.status in REDIRECT_STATUSES and "Location" in response.headers


def redirect_of(exc: InvalidHandshake) -> Optional[Response]:
    """The redirect that a failed opening handshake answered, or ``None``:
    a proxy's 3xx (a captive portal, say) is no redirect of the server's."""
    response = exc.response
    if isinstance(exc, ProxyError) or not is_redirect(response):
        return None
    assert isinstance(response, Response)
    return response


class Redirects:
    """The redirects of one connection attempt, from ``uri`` on.

    :attr:`uri` and :attr:`headers` are where the next request goes and what
    it carries: connect to ``str(uri)`` (without credentials) with
    ``headers`` as the extra headers, which hold the URI's credentials as
    ``Authorization`` (see :func:`~wsfast.auth.with_uri_credentials`).
    :meth:`follow` takes a redirect response and moves them on.
    """

    __slots__ = ("uri", "headers", "max_redirects", "chain")

    def __init__(
        self, uri: WebSocketURI, headers: Sequence[tuple[str, str]] = (), max_redirects: int = MAX_REDIRECTS
    ) -> None:
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be 0 or more, not {max_redirects!r}")
        self.uri = uri
        self.headers = with_uri_credentials(uri, headers)
        self.max_redirects = max_redirects
        #: The URIs requested so far, without their credentials.
        self.chain = [str(uri)]

    def follow(self, response: Response, *, pinned: bool = False) -> WebSocketURI:
        """Move on to the target of a redirect (see :func:`is_redirect`),
        logged on the ``wsfast.client`` logger.

        Returns the new :attr:`uri`; :attr:`headers` lose the credentials if
        the origin changes (credentials in the ``Location`` itself are used).
        Raises :class:`InvalidRedirect` for a ``Location`` that is not a
        WebSocket or HTTP URI, a downgrade from ``wss://`` to ``ws://``, one
        redirect more than ``max_redirects``, or another origin when the
        client is ``pinned`` to the first one's address (``path=``,
        ``server_hostname=``).
        """
        location = response.headers.get_all("Location")
        if len(location) != 1:
            raise InvalidRedirect(f"HTTP {response.status} with {len(location)} Location headers", self.chain, response)
        target = location[0].strip()
        try:
            target = urldefrag(urljoin(str(self.uri), target)).url
            parts = urlsplit(target)
            scheme = _SCHEMES.get(parts.scheme)
            if scheme is None:
                shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no credentials
                raise InvalidRedirect(
                    f"refused a redirect to {shown!r}: only ws, wss, http and https URIs are followed",
                    self.chain,
                    response,
                )
            # Characters that cannot go in a request target (spaces, non-ASCII)
            # are percent-encoded, as browsers do; escapes already there stay.
            path, query = quote(parts.path, safe=_SAFE), quote(parts.query, safe=_SAFE)
            new = parse_uri(parts._replace(scheme=scheme, path=path, query=query).geturl())
        except (InvalidURI, ValueError) as exc:
            raise InvalidRedirect(f"HTTP {response.status} to an invalid URI: {exc}", self.chain, response) from None
        chain = [*self.chain, str(new)]
        if self.uri.secure and not new.secure:
            raise InvalidRedirect(f"refused a redirect from wss:// to ws:// ({new})", chain, response)
        if len(self.chain) > self.max_redirects:
            raise InvalidRedirect(f"more than {self.max_redirects} redirects", chain, response)
        if pinned and new.origin != self.uri.origin:
            raise InvalidRedirect(
                "cannot follow a redirect to another origin with path= or server_hostname=", chain, response
            )
        headers = self.headers
        if new.origin != self.uri.origin:
            headers = [(name, value) for name, value in headers if name.lower() not in CREDENTIAL_HEADERS]
        logger.info("HTTP %d: redirected from %s to %s", response.status, self.uri, new)
        self.headers = with_uri_credentials(new, headers)
        self.uri = new
        self.chain = chain
        return new
