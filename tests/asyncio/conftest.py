"""Fixtures of the asyncio tests: a test certificate authority for wss://."""

from __future__ import annotations

import ssl
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ca() -> Any:
    """A throwaway certificate authority (``trustme``)."""
    trustme = pytest.importorskip("trustme", reason="trustme is needed for the wss:// tests")
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl(ca: Any) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 and localhost, signed by ``ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_ssl(ca: Any) -> ssl.SSLContext:
    """A client context that verifies certificates and trusts ``ca``."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
