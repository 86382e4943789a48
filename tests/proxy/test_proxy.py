"""wsfast.proxy without I/O: proxy URLs, the environment's proxy, the CONNECT
request and the proxy's answer."""

from __future__ import annotations

import base64
import sys
from typing import Optional

import pytest

from wsfast.exceptions import InvalidHandshake, InvalidProxy, ProxyError
from wsfast.proxy import ConnectHandshake, Proxy, get_proxy, parse_proxy, select_proxy, socks_arguments
from wsfast.uri import parse_uri

WS = parse_uri("ws://example.com:8080/chat")
WSS = parse_uri("wss://example.com/")


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://proxy:3128", Proxy("http", "proxy", 3128)),
        ("http://Proxy.Example.COM", Proxy("http", "proxy.example.com", 80)),
        ("https://proxy/", Proxy("https", "proxy", 443)),
        ("proxy:3128", Proxy("http", "proxy", 3128)),
        ("socks5h://proxy", Proxy("socks5h", "proxy", 1080)),
        ("SOCKS5://proxy:1081", Proxy("socks5", "proxy", 1081)),
        ("socks4://127.0.0.1:9050", Proxy("socks4", "127.0.0.1", 9050)),
        ("socks4a://[::1]:9050", Proxy("socks4a", "::1", 9050)),
        ("http://us%40r:p%3Ass@proxy:8080", Proxy("http", "proxy", 8080, "us@r", "p:ss")),
        ("http://user@proxy", Proxy("http", "proxy", 80, "user", "")),
        ("http://bücher.example:1", Proxy("http", "xn--bcher-kva.example", 1)),
    ],
)
def test_parse_proxy(url: str, expected: Proxy) -> None:
    proxy = parse_proxy(url)
    assert proxy == expected
    assert proxy.is_socks == proxy.scheme.startswith("socks")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://proxy",
        "http://",
        "http://proxy/path",
        "http://proxy?x",
        "http://proxy#f",
        "http://proxy:99999",
        "http://[::1",
    ],
)
def test_parse_proxy_rejects(url: str) -> None:
    with pytest.raises(InvalidProxy) as info:
        parse_proxy(url)
    assert isinstance(info.value, ValueError) and url in str(info.value)


def test_proxy_hides_password() -> None:
    proxy = parse_proxy("http://alice:s3cret@[::1]:3128")
    assert str(proxy) == "http://alice@[::1]:3128"
    assert "s3cret" not in repr(proxy)
    with pytest.raises(AttributeError):
        proxy.port = 1  # type: ignore[misc]


# ---------------------------------------------------------------- the environment


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    if sys.platform in ("darwin", "win32"):
        pytest.skip("the OS's proxy settings take part there")
    return monkeypatch


ALL = {
    "wss_proxy": "http://wss:1",
    "ws_proxy": "http://ws:1",
    "socks_proxy": "socks5://socks:1",
    "https_proxy": "http://https:1",
    "http_proxy": "http://http:1",
}


@pytest.mark.parametrize(
    "present, ws, wss",
    [
        (ALL, "http://ws:1", "http://wss:1"),
        ({k: v for k, v in ALL.items() if k not in ("ws_proxy", "wss_proxy")}, "socks5://socks:1", "socks5://socks:1"),
        ({"https_proxy": "http://https:1", "http_proxy": "http://http:1"}, "http://https:1", "http://https:1"),
        ({"http_proxy": "http://http:1"}, "http://http:1", None),
        ({"socks_proxy": "socks:1"}, "socks5h://socks:1", "socks5h://socks:1"),
        ({"socks_proxy": "http://socks:1"}, "socks5h://socks:1", "socks5h://socks:1"),
        ({}, None, None),
    ],
)
def test_get_proxy_order(
    env: pytest.MonkeyPatch, present: dict[str, str], ws: Optional[str], wss: Optional[str]
) -> None:
    for name, value in present.items():
        env.setenv(name, value)
    assert get_proxy(WS) == ws
    assert get_proxy(WSS) == wss


def test_get_proxy_upper_case(env: pytest.MonkeyPatch) -> None:
    env.setenv("HTTPS_PROXY", "http://upper:1")
    assert get_proxy(WS) == "http://upper:1"
    env.setenv("https_proxy", "http://lower:1")
    assert get_proxy(WS) == "http://lower:1"


@pytest.mark.parametrize(
    "no_proxy, bypassed",
    [
        ("example.com", True),
        (".example.com", True),
        ("other.org,example.com", True),
        ("*", True),
        ("example.com:8080", True),
        ("ample.com", False),
        ("other.org", False),
        ("", False),
    ],
)
def test_no_proxy(env: pytest.MonkeyPatch, no_proxy: str, bypassed: bool) -> None:
    env.setenv("https_proxy", "http://proxy:1")
    env.setenv("NO_PROXY", no_proxy)
    assert get_proxy(WS) == (None if bypassed else "http://proxy:1")
    assert get_proxy(parse_uri("ws://sub.example.com/")) == (
        None if bypassed and no_proxy not in ("example.com:8080",) else "http://proxy:1"
    )


def test_select_proxy(env: pytest.MonkeyPatch) -> None:
    env.setenv("http_proxy", "http://envproxy:3128")
    assert select_proxy(WS, True) == Proxy("http", "envproxy", 3128)
    assert select_proxy(WS, None) is None
    assert select_proxy(WS, "socks5h://other") == Proxy("socks5h", "other", 1080)
    assert select_proxy(WSS, True) is None


# ---------------------------------------------------------------- CONNECT


def test_connect_request() -> None:
    handshake = ConnectHandshake(parse_proxy("http://proxy:3128"), WS, "wsfast/test")
    assert handshake.request == (
        b"CONNECT example.com:8080 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: wsfast/test\r\n\r\n"
    )
    handshake = ConnectHandshake(parse_proxy("http://al%20ice:p%C3%A4ss@proxy"), parse_uri("wss://[::1]/"), None)
    token = base64.b64encode("al ice:päss".encode()).decode()
    assert handshake.request == (
        f"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic {token}\r\n\r\n".encode()
    )


def handshake(url: str = "http://proxy:3128", **kwargs: int) -> ConnectHandshake:
    return ConnectHandshake(parse_proxy(url), WS, None, **kwargs)


@pytest.mark.parametrize("chunk", [1, 2, 7, 1000])
def test_connect_established(chunk: int) -> None:
    answer = b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n"
    h = handshake()
    pieces = [answer[i : i + chunk] for i in range(0, len(answer), chunk)]
    assert [h.receive_data(piece) for piece in pieces] == [False] * (len(pieces) - 1) + [True]
    assert h.response is not None and h.response.status == 200


def refusal(answer: bytes, url: str = "http://proxy:3128") -> ProxyError:
    with pytest.raises(ProxyError) as info:
        h = handshake(url, max_head_size=1024)
        for i in range(len(answer)):  # byte by byte: the verdict cannot depend on the chunking
            h.receive_data(answer[i : i + 1])
        h.receive_data(b"")
    return info.value


def test_connect_refused() -> None:
    exc = refusal(b"HTTP/1.1 403 Access violation\r\nContent-Length: 5\r\n\r\nnope!")
    assert isinstance(exc, InvalidHandshake)
    assert (exc.status, exc.status_line, exc.proxy) == (403, "403 Access violation", "http://proxy:3128")
    assert str(exc) == "proxy http://proxy:3128: refused CONNECT: 403 Access violation"
    assert exc.response is not None


def test_connect_bad_credentials() -> None:
    answer = b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\n\r\n'
    exc = refusal(answer, "http://alice:wrong@proxy:3128")
    assert exc.status == 407 and "refused the credentials" in str(exc) and "sent with credentials" in str(exc)
    assert "wrong" not in str(exc) and "alice@" in str(exc)
    assert "sent without credentials" in str(refusal(answer))
    exc = refusal(b"HTTP/1.0 401 Unauthorized\r\n\r\n", "http://alice:wrong@proxy:3128")  # tinyproxy's answer
    assert exc.status == 401 and "refused the credentials (401 Unauthorized; sent with credentials)" in str(exc)


@pytest.mark.parametrize(
    "answer, message",
    [
        (b"", "closed the connection before answering CONNECT"),
        (b"HTTP/1.1 200 OK\r\n", "closed the connection before answering CONNECT"),
        (b"\x05\x00", "did not answer CONNECT with HTTP"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "did not answer CONNECT with HTTP"),
        (b"HTTP/1.1 2OO OK\r\n\r\n", "invalid response"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "invalid response"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200, "response head over the limit"),
        (b"HTTP/1.1 200 " + b"O" * 2000, "status line over the limit"),
        (b"HTTP/1.1 200 OK\r\n\r\nearly", "sent data after its answer to CONNECT"),
        (b"HTTP/1.1 101 Switching\r\n\r\n", "refused CONNECT: 101 Switching"),
    ],
)
def test_connect_garbage(answer: bytes, message: str) -> None:
    assert message in str(refusal(answer))


# ---------------------------------------------------------------- SOCKS


@pytest.mark.parametrize(
    "url, version, rdns",
    [("socks4://p", 4, False), ("socks4a://p", 4, True), ("socks5://p", 5, False), ("socks5h://u:pw@p", 5, True)],
)
def test_socks_arguments(url: str, version: int, rdns: bool) -> None:
    python_socks = pytest.importorskip("python_socks")
    arguments = socks_arguments(parse_proxy(url))
    assert arguments["proxy_type"] == (python_socks.ProxyType.SOCKS4 if version == 4 else python_socks.ProxyType.SOCKS5)
    assert arguments["rdns"] is rdns and arguments["port"] == 1080
    if "u:pw" in url:
        assert (arguments["username"], arguments["password"]) == ("u", "pw")


def test_socks_without_python_socks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "python_socks", None)
    with pytest.raises(ImportError, match=r"pip install wsfast\[socks\]"):
        socks_arguments(parse_proxy("socks5h://p"))
