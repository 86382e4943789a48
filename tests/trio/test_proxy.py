"""wsfast.trio.connect through real proxies (tests/proxy/servers.py, fixtures
from tests/proxy_fixtures.py), over ``ws://`` and ``wss://``."""

from __future__ import annotations

import ssl
import sys
from typing import Any, Optional

import pytest
import trio

import wsfast.trio
from wsfast.exceptions import InvalidHandshake, InvalidProxy, ProxyError

from ..proxy.servers import ProxyServer, free_port
from ..proxy_fixtures import CREDENTIALS, PROXIES, EchoServers
from .helpers import RawPeer, raw_server, run, server

pytestmark = pytest.mark.usefixtures("no_proxy_environment")


async def through(uri: str, client_ssl: ssl.SSLContext, **kwargs: Any) -> tuple[int, trio.abc.Stream]:
    """Connect, echo a message; the port the client's socket is connected
    to (the proxy's or the server's), and the client's stream."""
    if uri.startswith("wss:"):
        kwargs.setdefault("ssl", client_ssl)
    async with wsfast.trio.connect(uri, open_timeout=5, **kwargs) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        return ws.remote_address[1], ws.stream


def run_through(uri: str, client_ssl: ssl.SSLContext, **kwargs: Any) -> tuple[int, trio.abc.Stream]:
    result: list[tuple[int, trio.abc.Stream]] = []

    async def test() -> None:
        result.append(await through(uri, client_ssl, **kwargs))

    run(test)
    return result[0]


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
        pytest.importorskip("python_socks.async_.trio")
    proxy: ProxyServer = request.getfixturevalue(fixture)
    # socks5h passes the name to the proxy, which resolves it.
    host = "localhost" if scheme == "socks5h" else "127.0.0.1"
    url = proxy.url(scheme, credentials)
    port, stream = run_through(echo_servers.uri(secure, host), client_ssl, proxy=url, proxy_ssl=client_ssl)
    assert port == proxy.port
    layers = 0
    while isinstance(stream, trio.SSLStream):  # TLS in TLS: wss:// through an https:// proxy
        layers += 1
        stream = stream.transport_stream
    assert layers == secure + (scheme == "https")
    assert isinstance(stream, trio.SocketStream)


def test_direct_without_proxy(echo_servers: EchoServers, client_ssl: ssl.SSLContext) -> None:
    assert run_through(echo_servers.uri(False), client_ssl)[0] == echo_servers.ws_port


@pytest.mark.parametrize("credentials", [None, "alice:wrong"])
def test_http_bad_credentials(
    echo_servers: EchoServers, tinyproxy_auth: ProxyServer, credentials: Optional[str]
) -> None:
    async def test() -> None:
        with pytest.raises(ProxyError) as info:
            async with wsfast.trio.connect(
                echo_servers.uri(False), proxy=tinyproxy_auth.url("http", credentials), open_timeout=5
            ):
                pass
        exc = info.value
        assert isinstance(exc, InvalidHandshake)
        # 407 Proxy Authentication Required is the norm; tinyproxy answers CONNECT with 401.
        assert exc.status in (401, 407) and exc.status_line is not None and exc.status_line.startswith(str(exc.status))
        assert "refused the credentials" in str(exc) and f"127.0.0.1:{tinyproxy_auth.port}" in str(exc)
        assert "wrong" not in str(exc)

    run(test)


def test_socks_bad_credentials(echo_servers: EchoServers, microsocks_auth: ProxyServer) -> None:
    pytest.importorskip("python_socks.async_.trio")

    async def test() -> None:
        prefix = rf"proxy socks5h://alice@127.0.0.1:{microsocks_auth.port}: SOCKS request for localhost:\d+ failed"
        with pytest.raises(ProxyError, match=rf"{prefix}: Username and password authentication failure"):
            async with wsfast.trio.connect(
                echo_servers.uri(False, "localhost"), proxy=microsocks_auth.url("socks5h", "alice:wrong")
            ):
                pass
        with pytest.raises(ProxyError, match="No acceptable authentication methods"):
            async with wsfast.trio.connect(echo_servers.uri(False), proxy=microsocks_auth.url("socks5h")):
                pass

    run(test)


def test_connect_refused(echo_servers: EchoServers, tinyproxy_refusing: ProxyServer) -> None:
    async def test() -> None:
        with pytest.raises(ProxyError) as info:
            async with wsfast.trio.connect(echo_servers.uri(True), proxy=tinyproxy_refusing.url("http")):
                pass
        assert info.value.status == 403 and "refused CONNECT: 403" in str(info.value)

    run(test)


def test_a_proxy_redirect_is_not_followed(echo_servers: EchoServers) -> None:
    """A 3xx answered to CONNECT (a captive portal) is the proxy's refusal."""
    requests = []

    async def portal(peer: RawPeer) -> None:
        requests.append(await peer.read_until(b"\r\n\r\n"))
        await peer.stream.send_all(b"HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, portal)
            with pytest.raises(ProxyError, match="refused CONNECT: 302 Found"):
                async with wsfast.trio.connect(echo_servers.uri(False), proxy=f"http://127.0.0.1:{port}"):
                    pass
            nursery.cancel_scope.cancel()

    run(test)
    assert len(requests) == 1 and requests[0].startswith(b"CONNECT 127.0.0.1:")


@pytest.mark.parametrize("scheme", ["http", "https", "socks5h"])
def test_unreachable_proxy(echo_servers: EchoServers, scheme: str) -> None:
    if scheme.startswith("socks"):
        pytest.importorskip("python_socks.async_.trio")
    port = free_port()  # nothing listens there

    async def test() -> None:
        with pytest.raises(
            ConnectionRefusedError, match=f"could not connect to the proxy {scheme}://127.0.0.1:{port}: "
        ):
            async with wsfast.trio.connect(echo_servers.uri(False), proxy=f"{scheme}://127.0.0.1:{port}"):
                pass

    run(test)


def test_open_timeout_covers_the_proxy(echo_servers: EchoServers) -> None:
    async def silent(peer: RawPeer) -> None:
        await trio.sleep_forever()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, silent)
            with pytest.raises(wsfast.trio.OpenTimeoutError):
                async with wsfast.trio.connect(
                    echo_servers.uri(False), proxy=f"http://127.0.0.1:{port}", open_timeout=0.2
                ):
                    pass
            nursery.cancel_scope.cancel()

    run(test)


def test_https_proxy_certificate_verified(echo_servers: EchoServers, https_proxy: ProxyServer) -> None:
    async def test() -> None:
        with pytest.raises(ssl.SSLCertVerificationError):  # the default context does not trust the test CA
            async with wsfast.trio.connect(echo_servers.uri(False), proxy=https_proxy.url("https", CREDENTIALS)):
                pass

    run(test)


def test_proxy_from_environment(
    monkeypatch: pytest.MonkeyPatch, echo_servers: EchoServers, client_ssl: ssl.SSLContext, tinyproxy: ProxyServer
) -> None:
    monkeypatch.setenv("https_proxy", tinyproxy.url("http"))
    assert run_through(echo_servers.uri(True), client_ssl)[0] == tinyproxy.port
    assert run_through(echo_servers.uri(True), client_ssl, proxy=None)[0] == echo_servers.wss_port
    monkeypatch.setenv("ws_proxy", f"http://127.0.0.1:{free_port()}")  # ws_proxy comes first: it is unreachable
    with pytest.raises(OSError, match="could not connect to the proxy"):
        run_through(echo_servers.uri(False), client_ssl)
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    assert run_through(echo_servers.uri(False), client_ssl)[0] == echo_servers.ws_port
    assert run_through(echo_servers.uri(True), client_ssl)[0] == echo_servers.wss_port


def test_socks_without_python_socks(monkeypatch: pytest.MonkeyPatch, echo_servers: EchoServers) -> None:
    monkeypatch.setitem(sys.modules, "python_socks", None)

    async def test() -> None:
        with pytest.raises(
            ImportError, match=r"the SOCKS proxy socks5h://127.0.0.1:1 needs python-socks: pip install wsfast\[socks\]"
        ):
            async with wsfast.trio.connect(echo_servers.uri(False), proxy="socks5h://127.0.0.1:1"):
                pass

    run(test)


def test_no_proxy_with_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("ws_proxy", f"http://127.0.0.1:{free_port()}")  # unreachable: must not be used
    path = str(tmp_path / "ws.sock")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            await server(nursery, path=path)
            async with wsfast.trio.connect("ws://localhost/", path=path) as ws:
                await ws.send("over a Unix socket")
                assert await ws.recv() == "over a Unix socket"
            nursery.cancel_scope.cancel()

    run(test)


def test_invalid_proxy_url() -> None:
    async def test() -> None:
        with pytest.raises(InvalidProxy, match="the scheme must be one of"):
            async with wsfast.trio.connect("ws://127.0.0.1:1/", proxy="ftp://127.0.0.1:21"):
                pass

    run(test)
