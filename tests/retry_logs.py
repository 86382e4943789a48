"""What the reconnecting loops of every client (asyncio, threads, Trio) log
on ``wsfast.client`` (:mod:`wsfast.retry`), as the tests read it back."""

from __future__ import annotations

import logging
from typing import Any

import pytest


def logged(caplog: pytest.LogCaptureFixture, level: int, text: str = "") -> list[tuple[Any, ...]]:
    """The arguments of the records logged on wsfast.client at ``level``
    whose message contains ``text``."""
    return [
        tuple(r.args or ())
        for r in caplog.records
        if r.name == "wsfast.client" and r.levelno == level and text in r.getMessage()
    ]


def retries(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, float]]:
    """``(attempt, reason, delay)`` of each retry logged on wsfast.client."""
    return [(args[1], args[2], args[3]) for args in logged(caplog, logging.WARNING)]


def ceiling(attempt: int, initial: float = 0.01, factor: float = 2.0, maximum: float = 0.04) -> float:
    """The largest delay of a retry with the tests' backoff settings."""
    return min(maximum, initial * factor ** (attempt - 1))
