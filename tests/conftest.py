"""Fixtures giving the implementations of the frame codec under test.

``codec`` runs a test once per implementation: ``wsfast._fallback`` (pure
Python, always present) and ``wsfast._speedups`` (compiled, present only when
the extension was built). ``impls`` gives both at once, for differential tests.
``ca``, ``server_ssl`` and ``client_ssl`` give a test certificate authority
(trustme) and TLS contexts for ``wss://``.

When ``wsfast._speedups`` cannot be imported, the tests that need it are
skipped, unless the environment variable ``WSFAST_REQUIRE_SPEEDUPS`` is ``1``
(CI sets it): then they fail, so that a broken build cannot pass unnoticed as
a pure-Python run.
"""

from __future__ import annotations

import importlib
import os
import ssl
from types import ModuleType
from typing import Any, Optional

import pytest

from wsfast import _fallback

pytest.register_assert_rewrite("tests.codec_helpers")  # detailed assertion messages there too

from .codec_helpers import Impls  # noqa: E402

pytest_plugins = ["tests.proxy_fixtures"]  # proxy servers, for tests/proxy and tests/trio

SKIP_REASON = "wsfast._speedups is not compiled"
REQUIRE_SPEEDUPS = os.environ.get("WSFAST_REQUIRE_SPEEDUPS", "") == "1"


def _import_speedups() -> tuple[Optional[ModuleType], Optional[ImportError]]:
    try:
        return importlib.import_module("wsfast._speedups"), None
    except ImportError as exc:
        return None, exc


SPEEDUPS, SPEEDUPS_IMPORT_ERROR = _import_speedups()


def require_speedups() -> ModuleType:
    """Return ``wsfast._speedups``; skip, or fail when it is required, if missing."""
    if SPEEDUPS is not None:
        return SPEEDUPS
    if REQUIRE_SPEEDUPS:
        pytest.fail(
            "WSFAST_REQUIRE_SPEEDUPS=1 but wsfast._speedups cannot be imported: "
            f"{SPEEDUPS_IMPORT_ERROR!r}",
            pytrace=False,
        )
    pytest.skip(SKIP_REASON)


@pytest.fixture(scope="session")
def fallback() -> ModuleType:
    """The pure-Python codec, ``wsfast._fallback``."""
    return _fallback


@pytest.fixture(scope="session")
def speedups() -> ModuleType:
    """The compiled codec, ``wsfast._speedups`` (skipped or failed if missing)."""
    return require_speedups()


@pytest.fixture(scope="session", params=["fallback", "speedups"])
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """Each implementation of the codec in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def impls(fallback: ModuleType, speedups: ModuleType) -> Impls:
    """``(fallback, speedups)``: both implementations at once."""
    return Impls(fallback, speedups)


# ---------------------------------------------------------------- TLS (wss://)


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
