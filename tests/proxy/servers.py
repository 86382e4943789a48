"""Real proxy servers for the proxy tests, each on a free loopback port with
a configuration generated in a temporary directory, stopped by PID.

* HTTP CONNECT: ``tinyproxy`` (Basic credentials with ``BasicAuth``; a
  ``ConnectPort`` that is not the server's makes it answer 403).
* HTTPS proxy: ``stunnel4`` terminating TLS (a trustme certificate) in front
  of a tinyproxy.
* SOCKS5 with or without user/password: ``microsocks``.
* SOCKS4 (and SOCKS5): Dante's ``danted`` (Dante has no SOCKS4a).

A missing binary skips the tests that need it, except under ``CI`` (set by
``.ci/run``, which installs them all), where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import pytest

STARTUP_TIMEOUT = 10.0


def require(binary: str, package: str) -> str:
    """The path of ``binary``; skip without it, or fail on CI."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        message = f"{binary} is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs it", pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProxyServer:
    """A proxy process listening on ``127.0.0.1:port``."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.process.returncode}:\n{log.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"{name} did not listen on port {port}:\n{log.read_text(errors='replace')}"
                    ) from None
                time.sleep(0.05)

    def url(self, scheme: str, credentials: Optional[str] = None) -> str:
        user = f"{credentials}@" if credentials else ""
        return f"{scheme}://{user}127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def tinyproxy(
    directory: Path, *, auth: Optional[tuple[str, str]] = None, connect_port: Optional[int] = None
) -> ProxyServer:
    """tinyproxy in the foreground; ``auth`` requires Basic credentials,
    ``connect_port`` allows CONNECT to that port only (403 for others)."""
    binary = require("tinyproxy", "tinyproxy")
    port = free_port()
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 64", "LogLevel Info"]
    if auth is not None:
        lines.append(f"BasicAuth {auth[0]} {auth[1]}")
    if connect_port is not None:
        lines.append(f"ConnectPort {connect_port}")
    config = directory / f"tinyproxy-{port}.conf"
    config.write_text("\n".join(lines) + "\n")
    return ProxyServer("tinyproxy", [binary, "-d", "-c", str(config)], port, directory / f"tinyproxy-{port}.log")


def stunnel(directory: Path, target_port: int, ca: Any) -> ProxyServer:
    """stunnel4 accepting TLS (a certificate for 127.0.0.1 from ``ca``) and
    forwarding to ``127.0.0.1:target_port``."""
    binary = require("stunnel4", "stunnel4")
    port = free_port()
    cert = directory / f"stunnel-{port}.pem"
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(cert))
    config = directory / f"stunnel-{port}.conf"
    config.write_text(
        "\n".join(
            [
                "foreground = yes",
                "debug = notice",
                f"pid = {directory / f'stunnel-{port}.pid'}",
                "[proxy]",
                f"accept = 127.0.0.1:{port}",
                f"connect = 127.0.0.1:{target_port}",
                f"cert = {cert}",
            ]
        )
        + "\n"
    )
    return ProxyServer("stunnel4", [binary, str(config)], port, directory / f"stunnel-{port}.log")


def microsocks(directory: Path, *, auth: Optional[tuple[str, str]] = None) -> ProxyServer:
    """microsocks (SOCKS5); ``auth`` requires user/password authentication."""
    binary = require("microsocks", "microsocks")
    port = free_port()
    argv = [binary, "-i", "127.0.0.1", "-p", str(port)]
    if auth is not None:
        argv += ["-u", auth[0], "-P", auth[1]]
    return ProxyServer("microsocks", argv, port, directory / f"microsocks-{port}.log")


def dante(directory: Path) -> ProxyServer:
    """Dante's danted (SOCKS4 and SOCKS5, no authentication), loopback only."""
    binary = require("danted", "dante-server")
    port = free_port()
    config = directory / f"danted-{port}.conf"
    config.write_text(
        f"""logoutput: stderr
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.unprivileged: nobody
client pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
}}
socks pass {{
  from: 127.0.0.0/8 to: 127.0.0.0/8
  command: connect
}}
"""
    )
    argv = [binary, "-f", str(config), "-N", "1", "-p", str(directory / f"danted-{port}.pid")]
    return ProxyServer("danted", argv, port, directory / f"danted-{port}.log")
