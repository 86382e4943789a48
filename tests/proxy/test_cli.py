"""``wsfast connect --proxy URL`` and ``--no-proxy``."""

from __future__ import annotations

import pytest

from ..proxy_fixtures import EchoServers
from ..test_cli import assert_one_line_error, run_cli
from .servers import ProxyServer, free_port


def test_connect_through_proxy(echo_servers: EchoServers, tinyproxy_auth: ProxyServer) -> None:
    proxy = tinyproxy_auth.url("http", "alice:s3cret")
    result = run_cli("connect", echo_servers.uri(False), "--proxy", proxy, input="hello\n")
    assert result.returncode == 0, result.stderr
    assert "< hello" in result.stdout


def test_connect_proxy_refuses(echo_servers: EchoServers, tinyproxy_auth: ProxyServer) -> None:
    result = run_cli("connect", echo_servers.uri(False), "--proxy", tinyproxy_auth.url("http", "alice:nope"))
    line = assert_one_line_error(result)
    assert "refused the credentials" in line and "nope" not in line


def test_connect_proxy_unreachable(echo_servers: EchoServers) -> None:
    port = free_port()
    result = run_cli("connect", echo_servers.uri(False), "--proxy", f"http://127.0.0.1:{port}")
    line = assert_one_line_error(result)
    assert f"could not connect to the proxy http://127.0.0.1:{port}" in line


def test_connect_bad_proxy_url(echo_servers: EchoServers) -> None:
    result = run_cli("connect", echo_servers.uri(False), "--proxy", "ftp://proxy")
    assert result.returncode == 2
    assert "not a valid proxy URL" in assert_one_line_error(result)


def test_no_proxy_flag(monkeypatch: pytest.MonkeyPatch, echo_servers: EchoServers) -> None:
    monkeypatch.setenv("ws_proxy", f"http://127.0.0.1:{free_port()}")
    assert "could not connect to the proxy" in assert_one_line_error(run_cli("connect", echo_servers.uri(False)))
    result = run_cli("connect", echo_servers.uri(False), "--no-proxy", input="hi\n")
    assert result.returncode == 0 and "< hi" in result.stdout
