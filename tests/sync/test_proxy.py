"""wsfast.sync.connect through real proxies (tests/proxy/servers.py, fixtures
from tests/proxy_fixtures.py), over ``ws://`` and ``wss://``."""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any, Optional

import pytest

from wsfast.exceptions import InvalidHandshake, InvalidProxy, ProxyError
from wsfast.proxy import TLSTunnel
from wsfast.sync import connect, unix_serve

from ..proxy.servers import ProxyServer, free_port
from ..proxy_fixtures import CREDENTIALS, PROXIES, EchoServers
from .helpers import TIMEOUT, RawServer, running

pytestmark = pytest.mark.usefixtures("no_proxy_environment")


def through(uri: str, client_ssl: ssl.SSLContext, **kwargs: Any) -> tuple[int, socket.socket]:
    """Connect, echo a message; the port the client's socket is connected
    to (the proxy's or the server's), and the client's socket."""
    if uri.startswith("wss:"):
        kwargs.setdefault("ssl", client_ssl)
    with connect(uri, open_timeout=5, **kwargs) as ws:
        ws.send("hello")
        assert ws.recv(TIMEOUT) == "hello"
        big = b"x" * 1_000_000  # many TLS records each way
        ws.send(big)
        assert ws.recv(TIMEOUT) == big
        return ws.socket.getpeername()[1], ws.socket


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
        pytest.importorskip("python_socks.sync")
    proxy: ProxyServer = request.getfixturevalue(fixture)
    host = "localhost" if scheme == "socks5h" else "127.0.0.1"  # socks5h: the proxy resolves the name
    port, sock = through(
        echo_servers.uri(secure, host), client_ssl, proxy=proxy.url(scheme, credentials), proxy_ssl=client_ssl
    )
    assert port == proxy.port
    if secure:  # TLS in TLS through an https:// proxy
        assert isinstance(sock, TLSTunnel if scheme == "https" else ssl.SSLSocket)
    else:
        assert isinstance(sock, ssl.SSLSocket) == (scheme == "https")


def test_direct_without_proxy(echo_servers: EchoServers, client_ssl: ssl.SSLContext) -> None:
    assert through(echo_servers.uri(False), client_ssl)[0] == echo_servers.ws_port


@pytest.mark.parametrize("credentials", [None, "alice:wrong"])
def test_http_bad_credentials(
    echo_servers: EchoServers, tinyproxy_auth: ProxyServer, credentials: Optional[str]
) -> None:
    with pytest.raises(ProxyError) as info:
        connect(echo_servers.uri(False), proxy=tinyproxy_auth.url("http", credentials), open_timeout=5)
    exc = info.value
    assert isinstance(exc, InvalidHandshake)
    # 407 Proxy Authentication Required is the norm; tinyproxy answers CONNECT with 401.
    assert exc.status in (401, 407)
    assert "refused the credentials" in str(exc) and f"127.0.0.1:{tinyproxy_auth.port}" in str(exc)
    assert "wrong" not in str(exc)


def test_socks_bad_credentials(echo_servers: EchoServers, microsocks_auth: ProxyServer) -> None:
    pytest.importorskip("python_socks.sync")
    with pytest.raises(ProxyError, match="Username and password authentication failure"):
        connect(echo_servers.uri(False, "localhost"), proxy=microsocks_auth.url("socks5h", "alice:wrong"))


def test_connect_refused(echo_servers: EchoServers, tinyproxy_refusing: ProxyServer) -> None:
    with pytest.raises(ProxyError) as info:
        connect(echo_servers.uri(True), proxy=tinyproxy_refusing.url("http"))
    assert info.value.status == 403 and "refused CONNECT: 403" in str(info.value)


def test_a_proxy_redirect_is_not_followed(echo_servers: EchoServers) -> None:
    """A 3xx answered to CONNECT (a captive portal) is the proxy's refusal."""
    portal = RawServer()
    requests: list[bytes] = []

    def answer() -> None:
        sock = portal.accept(upgrade=False)
        requests.append(sock.recv(4096))
        sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(ProxyError, match="refused CONNECT: 302 Found"):
            connect(echo_servers.uri(False), proxy=f"http://127.0.0.1:{portal.port}", open_timeout=5)
        thread.join(TIMEOUT)
    finally:
        portal.close()
    assert len(requests) == 1 and requests[0].startswith(b"CONNECT 127.0.0.1:")


@pytest.mark.parametrize("scheme", ["http", "https", "socks5h"])
def test_unreachable_proxy(echo_servers: EchoServers, scheme: str) -> None:
    if scheme.startswith("socks"):
        pytest.importorskip("python_socks.sync")
    port = free_port()  # nothing listens there
    with pytest.raises(ConnectionRefusedError, match=f"could not connect to the proxy {scheme}://127.0.0.1:{port}: "):
        connect(echo_servers.uri(False), proxy=f"{scheme}://127.0.0.1:{port}")


def test_open_timeout_covers_the_proxy(echo_servers: EchoServers) -> None:
    silent = RawServer()  # accepts (backlog), never answers
    try:
        with pytest.raises(TimeoutError):
            connect(echo_servers.uri(False), proxy=f"http://127.0.0.1:{silent.port}", open_timeout=0.2)
    finally:
        silent.close()


def test_https_proxy_certificate_verified(echo_servers: EchoServers, https_proxy: ProxyServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):  # the default context does not trust the test CA
        connect(echo_servers.uri(False), proxy=https_proxy.url("https", CREDENTIALS))


def test_proxy_from_environment(
    monkeypatch: pytest.MonkeyPatch, echo_servers: EchoServers, client_ssl: ssl.SSLContext, tinyproxy: ProxyServer
) -> None:
    monkeypatch.setenv("https_proxy", tinyproxy.url("http"))
    assert through(echo_servers.uri(True), client_ssl)[0] == tinyproxy.port
    assert through(echo_servers.uri(True), client_ssl, proxy=None)[0] == echo_servers.wss_port
    monkeypatch.setenv("ws_proxy", f"http://127.0.0.1:{free_port()}")  # ws_proxy comes first: it is unreachable
    with pytest.raises(OSError, match="could not connect to the proxy"):
        through(echo_servers.uri(False), client_ssl)
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    assert through(echo_servers.uri(False), client_ssl)[0] == echo_servers.ws_port
    assert through(echo_servers.uri(True), client_ssl)[0] == echo_servers.wss_port


def test_no_proxy_with_path_or_sock(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("ws_proxy", f"http://127.0.0.1:{free_port()}")  # unreachable: must not be used
    path = str(tmp_path / "ws.sock")
    with running(server=unix_serve(lambda ws: ws.send(ws.recv(TIMEOUT)), path, close_timeout=5)):
        with connect("ws://localhost/", path=path) as ws:
            ws.send("over a Unix socket")
            assert ws.recv(TIMEOUT) == "over a Unix socket"
    with running() as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        with connect("ws://localhost/", sock=sock) as ws:
            ws.send("over a given socket")
            assert ws.recv(TIMEOUT) == "over a given socket"


def test_invalid_proxy_url() -> None:
    with pytest.raises(InvalidProxy, match="the scheme must be one of"):
        connect("ws://127.0.0.1:1/", proxy="ftp://127.0.0.1:21")
