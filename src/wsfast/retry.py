"""When and how soon a client reconnects, without I/O: shared by every client
(asyncio, threads, Trio).

:class:`Backoff` computes the delays: exponential, with full jitter (each
delay is drawn uniformly between 0 and a ceiling that grows by ``factor``
after each consecutive failure, up to ``max_delay``), so that many clients
cut off at once do not come back at once. :func:`is_retryable` tells the
errors worth retrying from those that would fail the same way again.
:func:`next_attempt` and :func:`reconnect_delay` are a reconnecting loop's
decisions, logged on the ``wsfast.client`` logger the same way by every
client.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from typing import Callable, Optional

from .exceptions import ConnectionClosed, InvalidHandshake, InvalidURI, NegotiationError
from .http11 import Response

__all__ = [
    "BACKOFF_INITIAL_DELAY",
    "BACKOFF_FACTOR",
    "BACKOFF_MAX_DELAY",
    "RETRYABLE_STATUSES",
    "Backoff",
    "is_retryable",
    "retry_after",
    "next_attempt",
    "reconnect_delay",
]

logger = logging.getLogger("wsfast.client")

BACKOFF_INITIAL_DELAY = 1.0
"""Default ceiling of the first delay, in seconds."""

BACKOFF_FACTOR = 2.0
"""Default growth of the ceiling after each consecutive failure."""

BACKOFF_MAX_DELAY = 60.0
"""Default largest ceiling, in seconds."""

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses answered to an upgrade request that are worth retrying:
server and gateway errors that pass (not 501 or 505, which would not), and
429 Too Many Requests, which asks the client to come back later."""

# Transient TLS errors: the connection broke during the TLS handshake. Other
# ssl.SSLError (a certificate that fails verification, no common protocol
# version or cipher, a plain-TCP port) would fail the same way again.
_TRANSIENT_TLS_ERRORS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


class Backoff:
    """The delays between a client's connection attempts.

    A loop calls :meth:`failed` after each failed attempt (it returns the
    delay to wait before the next one, or ``None`` once ``max_attempts``
    consecutive attempts have failed: give up), :meth:`opened` when a
    connection opens (the backoff starts over), and :meth:`reopen_delay` when
    that connection has ended, before reconnecting.

    The n-th consecutive failure waits a delay drawn uniformly from
    ``[0, min(max_delay, initial_delay * factor ** (n - 1))]`` ("full
    jitter"); so does the reconnection after a connection that opened (from
    ``[0, initial_delay]``: RFC 6455 section 7.2.3 asks for a random delay
    there, so that a server restart is not met by all its clients at once).
    A ``Retry-After`` given by the server raises the delay to at least that,
    within ``max_delay``. ``rng`` (``random.random`` by default) draws from
    ``[0, 1)``.
    """

    __slots__ = ("initial_delay", "factor", "max_delay", "max_attempts", "failures", "_ceiling", "_rng")

    def __init__(
        self,
        initial_delay: float = BACKOFF_INITIAL_DELAY,
        factor: float = BACKOFF_FACTOR,
        max_delay: float = BACKOFF_MAX_DELAY,
        max_attempts: Optional[int] = None,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not initial_delay >= 0:
            raise ValueError(f"initial_delay must be 0 or more, not {initial_delay!r}")
        if not factor >= 1:
            raise ValueError(f"factor must be 1 or more, not {factor!r}")
        if not max_delay >= initial_delay:
            raise ValueError(f"max_delay ({max_delay!r}) must be at least initial_delay ({initial_delay!r})")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be 1 or more (or None: no limit), not {max_attempts!r}")
        self.initial_delay = initial_delay
        self.factor = factor
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        #: Consecutive failed attempts since the start or the last connection that opened.
        self.failures = 0
        self._ceiling = initial_delay
        self._rng = rng

    def fresh(self) -> Backoff:
        """A new backoff with the same settings, for another reconnecting loop."""
        return Backoff(self.initial_delay, self.factor, self.max_delay, self.max_attempts, rng=self._rng)

    @property
    def ceiling(self) -> float:
        """The largest delay the next call to :meth:`failed` can return."""
        return self._ceiling

    def failed(self, retry_after: Optional[float] = None) -> Optional[float]:
        """Count a failed attempt; return how long to wait before the next
        one (at least ``retry_after``, within ``max_delay``), or ``None``
        when ``max_attempts`` is reached."""
        self.failures += 1
        if self.max_attempts is not None and self.failures >= self.max_attempts:
            return None
        delay = self._rng() * self._ceiling
        self._ceiling = min(self.max_delay, self._ceiling * self.factor)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_delay))
        return delay

    def opened(self) -> None:
        """A connection opened: start over."""
        self.failures = 0
        self._ceiling = self.initial_delay

    def reopen_delay(self) -> float:
        """The delay before reconnecting after a connection that opened has ended."""
        return self._rng() * self.initial_delay


def retry_after(exc: BaseException) -> Optional[float]:
    """The ``Retry-After`` of the server's response to a failed handshake,
    in seconds (the delay-seconds form; ``None`` without one)."""
    response = exc.response if isinstance(exc, InvalidHandshake) else None
    if not isinstance(response, Response):
        return None
    value = (response.headers.get("Retry-After") or "").strip()
    return float(value) if value.isdigit() else None


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed connection attempt is worth retrying as it was.

    Retried: network errors (``OSError``: refused, reset, unreachable, DNS;
    but not a TLS error other than the connection breaking during the TLS
    handshake: a certificate that fails verification is never retried),
    timeouts, the connection closed during the opening handshake, and the
    responses in :data:`RETRYABLE_STATUSES` (5xx server errors, 429). Not
    retried: any other HTTP response (4xx, a redirect that cannot be
    followed), a response that breaks RFC 6455 or refuses the negotiation
    (:class:`~wsfast.exceptions.NegotiationError`), an invalid URI, and every
    other exception.
    """
    if isinstance(exc, (InvalidURI, NegotiationError)):
        return False
    if isinstance(exc, ssl.SSLError):
        return isinstance(exc, _TRANSIENT_TLS_ERRORS)
    if isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionClosed)):
        return True
    if isinstance(exc, InvalidHandshake):
        if isinstance(exc.response, Response):
            return exc.response.status in RETRYABLE_STATUSES
        return isinstance(exc.__cause__, EOFError)  # the server closed the connection mid-handshake
    return False


def next_attempt(
    backoff: Backoff, should_retry: Callable[[Exception], bool], uri: object, exc: Exception
) -> Optional[float]:
    """After a failed attempt to connect to ``uri``: the delay before the
    next one (logged as a warning), or ``None`` when ``exc`` is not to be
    retried or ``max_attempts`` is reached (logged as an error): re-raise it."""
    if not should_retry(exc):
        return None
    delay = backoff.failed(retry_after(exc))
    if delay is None:
        logger.error(
            "%s: attempt %d failed (%s); giving up (max_attempts=%d)",
            uri,
            backoff.failures,
            _describe(exc),
            backoff.max_attempts,
        )
        return None
    logger.warning("%s: attempt %d failed (%s); retrying in %.3f s", uri, backoff.failures, _describe(exc), delay)
    return delay


def reconnect_delay(backoff: Backoff, uri: object, close_code: Optional[int]) -> float:
    """After a connection to ``uri`` that opened has ended: the delay before
    reconnecting (logged)."""
    delay = backoff.reopen_delay()
    logger.info("%s: connection closed (code %s); reconnecting in %.3f s", uri, close_code, delay)
    return delay


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
