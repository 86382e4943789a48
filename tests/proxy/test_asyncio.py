"""The asyncio client through real proxies (tests/proxy/servers.py), over
``ws://`` and ``wss://``."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from typing import Any, Optional

import pytest

import wsfast
from wsfast.asyncio import connect
from wsfast.exceptions import InvalidHandshake, ProxyError

from ..asyncio.helpers import run
from ..proxy_fixtures import CREDENTIALS, PROXIES, EchoServers
from .servers import ProxyServer, free_port


async def through(uri: str, client_ssl: ssl.SSLContext, **kwargs: Any) -> tuple[int, Any]:
    """Connect, echo a message; the port the client's socket is connected
    to (the proxy's or the server's), and the client's transport."""
    if uri.startswith("wss:"):
        kwargs.setdefault("ssl", client_ssl)
    async with connect(uri, open_timeout=5, **kwargs) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        transport = ws.transport.transport
        assert transport is not None
        return transport.get_extra_info("peername")[1], transport


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("fixture, scheme, credentials", PROXIES)
def test_through_proxy(
    request: pytest.FixtureRequest,
    echo_servers: EchoServers,
    client_ssl: ssl.SSLContext,
    fixture: str,
    scheme: str,
    credentials: Optional[str],
    secure: bool,
) -> None:
    if scheme.startswith("socks"):
        pytest.importorskip("python_socks")
    proxy: ProxyServer = request.getfixturevalue(fixture)
    # socks5h and socks4a pass the name to the proxy, which resolves it.
    host = "localhost" if scheme == "socks5h" else "127.0.0.1"
    port, transport = run(
        through(echo_servers.uri(secure, host), client_ssl, proxy=proxy.url(scheme, credentials), proxy_ssl=client_ssl)
    )
    assert port == proxy.port
    if not secure and wsfast.HAS_SPEEDUPS and scheme != "https":
        # The tunnel's socket runs on wsfast's own transport.
        assert type(transport).__name__ == "SocketTransport"


def test_direct_without_proxy(echo_servers: EchoServers, client_ssl: ssl.SSLContext) -> None:
    assert run(through(echo_servers.uri(False), client_ssl))[0] == echo_servers.ws_port


@pytest.mark.parametrize("credentials", [None, "alice:wrong"])
def test_http_bad_credentials(
    echo_servers: EchoServers, tinyproxy_auth: ProxyServer, credentials: Optional[str]
) -> None:
    async def main() -> None:
        with pytest.raises(ProxyError) as info:
            await connect(echo_servers.uri(False), proxy=tinyproxy_auth.url("http", credentials), open_timeout=5)
        exc = info.value
        assert isinstance(exc, InvalidHandshake)
        # 407 Proxy Authentication Required is the norm; tinyproxy answers CONNECT with 401.
        assert exc.status in (401, 407) and exc.status_line is not None and exc.status_line.startswith(str(exc.status))
        assert "refused the credentials" in str(exc) and f"127.0.0.1:{tinyproxy_auth.port}" in str(exc)
        assert "wrong" not in str(exc)

    run(main())


def test_socks_bad_credentials(echo_servers: EchoServers, microsocks_auth: ProxyServer) -> None:
    pytest.importorskip("python_socks")

    async def main() -> None:
        prefix = rf"proxy socks5h://alice@127.0.0.1:{microsocks_auth.port}: SOCKS request for localhost:\d+ failed"
        with pytest.raises(ProxyError, match=rf"{prefix}: Username and password authentication failure"):
            await connect(
                echo_servers.uri(False, "localhost"),
                proxy=microsocks_auth.url("socks5h", "alice:wrong"),
                open_timeout=5,
            )
        with pytest.raises(ProxyError, match="No acceptable authentication methods"):
            await connect(echo_servers.uri(False), proxy=microsocks_auth.url("socks5h"), open_timeout=5)

    run(main())


def test_connect_refused(echo_servers: EchoServers, tinyproxy_refusing: ProxyServer) -> None:
    async def main() -> None:
        with pytest.raises(ProxyError) as info:
            await connect(echo_servers.uri(True), proxy=tinyproxy_refusing.url("http"), open_timeout=5)
        assert info.value.status == 403 and "refused CONNECT: 403" in str(info.value)

    run(main())


@pytest.mark.parametrize("scheme", ["http", "https", "socks5h"])
def test_unreachable_proxy(echo_servers: EchoServers, scheme: str) -> None:
    if scheme.startswith("socks"):
        pytest.importorskip("python_socks")
    port = free_port()  # nothing listens there

    async def main() -> None:
        with pytest.raises(
            ConnectionRefusedError, match=f"could not connect to the proxy {scheme}://127.0.0.1:{port}: "
        ):
            await connect(echo_servers.uri(False), proxy=f"{scheme}://127.0.0.1:{port}", open_timeout=5)

    run(main())


def test_open_timeout_covers_the_proxy(echo_servers: EchoServers) -> None:
    with socket.socket() as silent:  # accepts (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)

        async def main() -> None:
            proxy = f"http://127.0.0.1:{silent.getsockname()[1]}"
            with pytest.raises(asyncio.TimeoutError):
                await connect(echo_servers.uri(False), proxy=proxy, open_timeout=0.3)

        run(main())


def test_https_proxy_certificate_verified(echo_servers: EchoServers, https_proxy: ProxyServer) -> None:
    async def main() -> None:
        with pytest.raises(ssl.SSLCertVerificationError):  # the default context does not trust the test CA
            await connect(echo_servers.uri(False), proxy=https_proxy.url("https", CREDENTIALS), open_timeout=5)

    run(main())


def test_proxy_from_environment(
    monkeypatch: pytest.MonkeyPatch, echo_servers: EchoServers, client_ssl: ssl.SSLContext, tinyproxy: ProxyServer
) -> None:
    monkeypatch.setenv("https_proxy", tinyproxy.url("http"))
    assert run(through(echo_servers.uri(True), client_ssl))[0] == tinyproxy.port
    assert run(through(echo_servers.uri(True), client_ssl, proxy=None))[0] == echo_servers.wss_port
    monkeypatch.setenv("ws_proxy", f"http://127.0.0.1:{free_port()}")  # ws_proxy comes first: it is unreachable
    with pytest.raises(OSError, match="could not connect to the proxy"):
        run(through(echo_servers.uri(False), client_ssl))
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    assert run(through(echo_servers.uri(False), client_ssl))[0] == echo_servers.ws_port
    assert run(through(echo_servers.uri(True), client_ssl))[0] == echo_servers.wss_port


def test_socks_without_python_socks(monkeypatch: pytest.MonkeyPatch, echo_servers: EchoServers) -> None:
    monkeypatch.setitem(sys.modules, "python_socks", None)

    async def main() -> None:
        with pytest.raises(ImportError, match=r"the SOCKS proxy socks5h://127.0.0.1:1 needs python-socks: pip install"):
            await connect(echo_servers.uri(False), proxy="socks5h://127.0.0.1:1", open_timeout=5)

    run(main())


def test_no_proxy_with_sock_or_path(
    monkeypatch: pytest.MonkeyPatch, echo_servers: EchoServers, client_ssl: ssl.SSLContext
) -> None:
    monkeypatch.setenv("ws_proxy", f"http://127.0.0.1:{free_port()}")  # unreachable: must not be used

    async def main() -> None:
        sock = socket.create_connection(("127.0.0.1", echo_servers.ws_port))
        sock.setblocking(False)
        async with connect(echo_servers.uri(False), sock=sock, open_timeout=5) as ws:
            await ws.send("peer")
            assert int(await ws.recv()) == sock.getsockname()[1]

    run(main())


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize(
    "fixture, scheme", [("tinyproxy_auth", "http"), ("https_proxy", "https"), ("microsocks_auth", "socks5h")]
)
def test_through_proxy_on_uvloop(
    request: pytest.FixtureRequest,
    echo_servers: EchoServers,
    client_ssl: ssl.SSLContext,
    fixture: str,
    scheme: str,
    secure: bool,
) -> None:
    uvloop = pytest.importorskip("uvloop")
    if scheme.startswith("socks"):
        pytest.importorskip("python_socks")
    proxy: ProxyServer = request.getfixturevalue(fixture)
    url = proxy.url(scheme, CREDENTIALS)
    coro = through(echo_servers.uri(secure), client_ssl, proxy=url, proxy_ssl=client_ssl)
    assert run(coro, loop_factory=uvloop.new_event_loop)[0] == proxy.port
