"""A pytest plugin (``pytest_plugins`` in tests/conftest.py) with the fixtures
of the proxy tests (tests/proxy, tests/trio): real proxy servers
(:mod:`tests.proxy.servers`), started once per session, and WebSocket echo
servers (``ws://`` and ``wss://``) running in a background thread, so that
asyncio, Trio and blocking clients alike can reach them; and
``no_proxy_environment``, which the proxy tests use.

The echo servers answer ``"peer"`` with the port they see the client
connect from.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import wsfast

from .proxy import servers

AUTH = ("alice", "s3cret")
CREDENTIALS = "alice:s3cret"

# (proxy fixture, URL scheme, credentials): every kind of proxy the clients go through
PROXIES = [
    ("tinyproxy", "http", None),
    ("tinyproxy_auth", "http", CREDENTIALS),
    ("https_proxy", "https", CREDENTIALS),
    ("microsocks", "socks5", None),
    ("microsocks", "socks5h", None),
    ("microsocks_auth", "socks5h", CREDENTIALS),
    ("dante", "socks4", None),
    ("dante", "socks5", None),
]


async def peer_echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(str(ws.remote_address[1]) if message == "peer" else message)


class EchoServers:
    """A ``ws://`` and a ``wss://`` echo server in a thread of their own."""

    def __init__(self, server_ssl: ssl.SSLContext) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self._stop: asyncio.Future[None]

        async def main() -> None:
            self._stop = self.loop.create_future()
            async with (
                wsfast.serve(peer_echo, "127.0.0.1", 0) as plain,
                wsfast.serve(peer_echo, "127.0.0.1", 0, ssl=server_ssl) as secure,
            ):
                self.ws_port, self.wss_port = plain.port, secure.port
                started.set()
                await self._stop

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        if not started.wait(10):
            raise RuntimeError("the echo servers did not start")

    def uri(self, secure: bool, host: str = "127.0.0.1") -> str:
        return f"wss://{host}:{self.wss_port}/" if secure else f"ws://{host}:{self.ws_port}/"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set_result, None)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def echo_servers(server_ssl: ssl.SSLContext) -> Iterator[EchoServers]:
    echo = EchoServers(server_ssl)
    yield echo
    echo.stop()


@pytest.fixture(scope="session")
def proxy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxies")


def _started(start: Callable[[], servers.ProxyServer]) -> Iterator[servers.ProxyServer]:
    server = start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tinyproxy(proxy_dir: Path) -> Iterator[servers.ProxyServer]:
    """HTTP CONNECT without credentials."""
    yield from _started(lambda: servers.tinyproxy(proxy_dir))


@pytest.fixture(scope="session")
def tinyproxy_auth(proxy_dir: Path) -> Iterator[servers.ProxyServer]:
    """HTTP CONNECT requiring Basic credentials ``alice:s3cret``."""
    yield from _started(lambda: servers.tinyproxy(proxy_dir, auth=AUTH))


@pytest.fixture(scope="session")
def tinyproxy_refusing(proxy_dir: Path) -> Iterator[servers.ProxyServer]:
    """HTTP CONNECT to port 1 only: 403 for the echo servers."""
    yield from _started(lambda: servers.tinyproxy(proxy_dir, connect_port=1))


@pytest.fixture(scope="session")
def https_proxy(proxy_dir: Path, ca: Any, tinyproxy_auth: servers.ProxyServer) -> Iterator[servers.ProxyServer]:
    """TLS (stunnel4, a certificate from ``ca``) in front of ``tinyproxy_auth``."""
    yield from _started(lambda: servers.stunnel(proxy_dir, tinyproxy_auth.port, ca))


@pytest.fixture(scope="session")
def microsocks(proxy_dir: Path) -> Iterator[servers.ProxyServer]:
    """SOCKS5 without authentication."""
    yield from _started(lambda: servers.microsocks(proxy_dir))


@pytest.fixture(scope="session")
def microsocks_auth(proxy_dir: Path) -> Iterator[servers.ProxyServer]:
    """SOCKS5 requiring user/password ``alice:s3cret``."""
    yield from _started(lambda: servers.microsocks(proxy_dir, auth=AUTH))


@pytest.fixture(scope="session")
def dante(proxy_dir: Path) -> Iterator[servers.ProxyServer]:
    """SOCKS4 and SOCKS5 without authentication."""
    yield from _started(lambda: servers.dante(proxy_dir))


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the environment unless a test sets one."""
    for name in ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "socks_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
