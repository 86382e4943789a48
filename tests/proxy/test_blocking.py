"""wsfast.proxy.connect_via_proxy, the blocking connection for threads,
through real proxies; websockets' threading client runs over the socket it
returns (``sock=``), TLS in TLS (:class:`~wsfast.proxy.TLSTunnel`) included."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Optional

import pytest

from wsfast.exceptions import ProxyError
from wsfast.proxy import TLSTunnel, connect_via_proxy, parse_proxy
from wsfast.uri import parse_uri

from ..proxy_fixtures import CREDENTIALS, EchoServers
from .servers import ProxyServer, free_port

sync_client = pytest.importorskip("websockets.sync.client")

PROXIES = [
    ("tinyproxy", "http", None),
    ("tinyproxy_auth", "http", CREDENTIALS),
    ("https_proxy", "https", CREDENTIALS),
    ("microsocks_auth", "socks5h", CREDENTIALS),
    ("dante", "socks4", None),
]


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("fixture, scheme, credentials", PROXIES)
def test_connect_via_proxy(
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
    host = "localhost" if scheme == "socks5h" else "127.0.0.1"
    uri = parse_uri(echo_servers.uri(secure, host))
    sock = connect_via_proxy(
        parse_proxy(proxy.url(scheme, credentials)),
        uri,
        timeout=5,
        ssl=client_ssl if secure else None,
        proxy_ssl=client_ssl,
        user_agent="test",
    )
    assert sock.gettimeout() is None
    if secure:
        assert isinstance(sock, TLSTunnel if scheme == "https" else ssl.SSLSocket)
        assert sock.version() is not None and sock.getpeercert() is not None
    assert sock.getpeername()[1] == proxy.port
    # The TLS is done: websockets speaks plain WebSocket over the object.
    with sync_client.connect(f"ws://{uri.host_header}/", sock=sock, open_timeout=5, close_timeout=2) as ws:
        big = b"x" * 1_000_000  # many TLS records each way, received while sending
        ws.send(big)
        assert ws.recv(5) == big


def test_bad_credentials(echo_servers: EchoServers, tinyproxy_auth: ProxyServer, microsocks_auth: ProxyServer) -> None:
    pytest.importorskip("python_socks")
    uri = parse_uri(echo_servers.uri(False))
    with pytest.raises(ProxyError, match="refused the credentials") as info:
        connect_via_proxy(parse_proxy(tinyproxy_auth.url("http", "alice:nope")), uri, timeout=5)
    assert info.value.status in (401, 407) and "nope" not in str(info.value)
    with pytest.raises(ProxyError, match="SOCKS request for 127.0.0.1:.* failed: Username and password"):
        connect_via_proxy(parse_proxy(microsocks_auth.url("socks5", "alice:nope")), uri, timeout=5)


def test_refused(echo_servers: EchoServers, tinyproxy_refusing: ProxyServer) -> None:
    with pytest.raises(ProxyError, match="refused CONNECT: 403") as info:
        connect_via_proxy(parse_proxy(tinyproxy_refusing.url("http")), parse_uri(echo_servers.uri(False)), timeout=5)
    assert info.value.status == 403


@pytest.mark.parametrize("scheme", ["http", "https", "socks5h", "socks4"])
def test_unreachable(scheme: str) -> None:
    if scheme.startswith("socks"):
        pytest.importorskip("python_socks")
    port = free_port()
    with pytest.raises(ConnectionRefusedError, match=f"could not connect to the proxy {scheme}://127.0.0.1:{port}: "):
        connect_via_proxy(parse_proxy(f"{scheme}://127.0.0.1:{port}"), parse_uri("ws://127.0.0.1:1/"), timeout=5)


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_timeout(scheme: str) -> None:
    if scheme.startswith("socks"):
        pytest.importorskip("python_socks")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            connect_via_proxy(
                parse_proxy(f"{scheme}://127.0.0.1:{silent.getsockname()[1]}"),
                parse_uri("ws://127.0.0.1:1/"),
                timeout=0.3,
            )
        assert time.monotonic() - start < 3


def test_tls_tunnel_by_hand(echo_servers: EchoServers, client_ssl: ssl.SSLContext, https_proxy: ProxyServer) -> None:
    """TLSTunnel as a socket: a raw upgrade request out, the 101 response in
    through recv_into, then end of stream once closed by the server."""
    uri = parse_uri(echo_servers.uri(True))
    proxy = parse_proxy(https_proxy.url("https", CREDENTIALS))
    with connect_via_proxy(proxy, uri, timeout=5, ssl=client_ssl, proxy_ssl=client_ssl) as sock:
        assert isinstance(sock, TLSTunnel) and sock.server_hostname == "127.0.0.1"
        sock.settimeout(5)
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: " + uri.host_header.encode() + b"\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = bytearray()
        buffer = bytearray(7)  # small reads: records are taken apart across calls
        while b"\r\n\r\n" not in head:
            count = sock.recv_into(buffer)
            assert count > 0
            head += buffer[:count]
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455's example key and accept value
        sock.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # a masked close frame, 1000
        data = b""
        while True:
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"\x88\x02\x03\xe8")  # the server's close frame, then the end of the stream
