"""wsfast.retry: the backoff delays and which failures are retried, without I/O."""

from __future__ import annotations

import asyncio
import random
import ssl
from typing import Optional

import pytest

from wsfast.events import HandshakeFailed
from wsfast.exceptions import ConnectionClosed, InvalidHandshake, InvalidRedirect, InvalidURI, NegotiationError
from wsfast.handshake import error_response
from wsfast.http11 import Headers, Response
from wsfast.protocol import ClientConnection
from wsfast.retry import RETRYABLE_STATUSES, Backoff, is_retryable, retry_after


def test_ceilings_grow_by_factor_up_to_max_delay() -> None:
    backoff = Backoff(0.5, 3.0, 10.0, rng=lambda: 1.0)  # the top of each range
    assert [backoff.failed() for _ in range(6)] == [0.5, 1.5, 4.5, 10.0, 10.0, 10.0]
    assert backoff.failures == 6


def test_delays_are_drawn_within_the_jittered_bounds() -> None:
    rng = random.Random(1234)
    backoff = Backoff(0.1, 2.0, 1.0, rng=rng.random)
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    delays = []
    for ceiling in ceilings:
        assert backoff.ceiling == pytest.approx(ceiling)
        delay = backoff.failed()
        assert delay is not None and 0.0 <= delay <= ceiling
        delays.append(delay)
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule


def test_opened_starts_over_and_reopen_delay_is_within_the_initial_delay() -> None:
    draws = iter([0.5, 0.5, 0.25, 0.5])
    backoff = Backoff(2.0, 2.0, 100.0, max_attempts=3, rng=lambda: next(draws))
    assert backoff.failed() == 1.0
    assert backoff.failed() == 2.0
    backoff.opened()
    assert (backoff.failures, backoff.ceiling) == (0, 2.0)
    assert backoff.reopen_delay() == 0.5  # 0.25 x initial_delay
    assert backoff.failed() == 1.0  # the first ceiling again, and two more attempts allowed
    assert backoff.failures == 1


@pytest.mark.parametrize("max_attempts, delays", [(1, 0), (2, 1), (4, 3)])
def test_max_attempts_counts_consecutive_failures(max_attempts: int, delays: int) -> None:
    backoff = Backoff(0.1, max_attempts=max_attempts)
    results = [backoff.failed() for _ in range(max_attempts)]
    assert all(r is not None for r in results[:delays])
    assert results[delays:] == [None]


def test_no_attempt_limit_and_no_overflow() -> None:
    backoff = Backoff(0.001, 10.0, 5.0, rng=lambda: 1.0)
    delays = [backoff.failed() for _ in range(5000)]  # 10.0 ** 5000 would overflow a float
    assert delays[:5] == pytest.approx([0.001, 0.01, 0.1, 1.0, 5.0])
    assert set(delays[4:]) == {5.0}


def test_retry_after_raises_the_delay_within_max_delay() -> None:
    backoff = Backoff(1.0, 2.0, 30.0, rng=lambda: 0.0)
    assert backoff.failed(retry_after=7) == 7
    assert backoff.failed(retry_after=3600) == 30.0
    assert backoff.failed() == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"initial_delay": -1}, "initial_delay must be 0 or more"),
        ({"factor": 0.5}, "factor must be 1 or more"),
        ({"initial_delay": 5, "max_delay": 1}, "max_delay (1) must be at least initial_delay (5)"),
        ({"max_attempts": 0}, "max_attempts must be 1 or more"),
        ({"initial_delay": float("nan")}, "initial_delay must be 0 or more"),
    ],
)
def test_invalid_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Backoff(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def rejected(status: int, headers: Optional[list[tuple[str, str]]] = None) -> InvalidHandshake:
    response = error_response(status, "no", headers or [])
    return InvalidHandshake(f"server rejected the WebSocket upgrade: HTTP {status}", response)


def eof_in_handshake() -> BaseException:
    conn = ClientConnection("example.com", "/")
    conn.data_to_send()
    conn.receive_data(b"HTTP/1.1 101 Switching")  # part of a response, then EOF
    (event,) = conn.receive_eof()
    assert isinstance(event, HandshakeFailed)
    return event.error


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        OSError(101, "Network is unreachable"),
        asyncio.TimeoutError(),
        TimeoutError(),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        ConnectionClosed(1006, "connection lost during the opening handshake"),
        eof_in_handshake(),
        *[rejected(status) for status in sorted(RETRYABLE_STATUSES)],
    ],
    ids=repr,
)
def test_retryable(exc: BaseException) -> None:
    assert is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        *[rejected(status) for status in (400, 401, 403, 404, 426, 501, 505)],
        rejected(200),
        InvalidHandshake("invalid Sec-WebSocket-Accept: []", Response(101)),
        InvalidHandshake("invalid HTTP response: invalid status line"),
        NegotiationError("server selected a subprotocol that was not offered: 'x'", Response(101)),
        InvalidURI("ftp://x/", "the scheme must be ws or wss"),
        InvalidRedirect("refused a redirect from wss:// to ws://", ["wss://a/", "ws://a/"], Response(301)),
        ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate"),
        ssl.SSLError(1, "wrong version number"),
        ValueError("bad option"),
        RuntimeError(),
    ],
    ids=repr,
)
def test_not_retryable(exc: BaseException) -> None:
    assert not is_retryable(exc)


def test_retry_after_reads_delay_seconds() -> None:
    assert retry_after(rejected(503, [("Retry-After", "12")])) == 12.0
    assert retry_after(rejected(503, [("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")])) is None
    assert retry_after(rejected(503)) is None
    assert retry_after(InvalidHandshake("no response")) is None
    assert retry_after(OSError()) is None
    assert retry_after(InvalidHandshake("x", Response(429, Headers([("Retry-After", " 3 ")])))) == 3.0
