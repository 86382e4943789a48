"""The proxy tests' fixtures come from the plugin tests/proxy_fixtures.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_proxy(no_proxy_environment: None) -> None:
    """No proxy from the environment unless a test sets one."""
