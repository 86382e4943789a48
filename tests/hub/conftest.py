"""Fixtures for the hub's tests: real ``redis-server`` instances.

``redis_server`` is a factory: ``redis_server()`` starts a ``redis-server`` of
its own on a free port of 127.0.0.1 without persistence, and
``redis_server(persistent=True)`` one with ``appendonly yes`` and
``appendfsync always`` (every acknowledged write is on disk before the reply).
Each returns a :class:`RedisServer` with ``url``, ``port``, ``pid``,
``kill()`` (SIGKILL) and ``restart()`` (same port, same directory, so a
persistent one reloads its data); every server is stopped by its PID at
teardown. Never the machine's own Redis service.

Without ``redis-server`` on the PATH the tests that use it are skipped, except
under ``CI`` (set by ``.ci/run``), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int, timeout: float) -> bool:
    """Whether a Redis on ``port`` answers PING with PONG (not LOADING...)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process of a test (see the module's docstring)."""

    def __init__(self, directory: Path, persistent: bool) -> None:
        self.directory = directory
        self.persistent = persistent
        self.port = 0
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _argv(self) -> list[str]:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--dir", str(self.directory), "--logfile", "redis.log", "--daemonize", "no"]
        if self.persistent:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        return argv

    def start(self, timeout: float = 10.0) -> None:
        """Start on a free port and wait until it answers (another port if
        that one was taken meanwhile)."""
        for _ in range(3):
            self.port = _free_port()
            self.process = subprocess.Popen(self._argv(), cwd=self.directory, stdin=subprocess.DEVNULL)
            if self._wait_ready(timeout):
                return
            self.stop()
        log = self.directory / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} within {timeout} s:\n{tail}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # exited: the port was taken, say
            if _ping(self.port, 0.5):
                return True
            time.sleep(0.02)
        return False

    def kill(self) -> None:
        """``kill -9``: no shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self, timeout: float = 10.0) -> None:
        """Start again on the same port and directory (after :meth:`kill`)."""
        self.kill()
        self.process = subprocess.Popen(self._argv(), cwd=self.directory, stdin=subprocess.DEVNULL)
        if not self._wait_ready(timeout):
            self.stop()
            raise RuntimeError(f"redis-server did not come back on port {self.port} within {timeout} s")

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """``redis_server(persistent=False) -> RedisServer``, stopped at teardown."""
    if shutil.which("redis-server") is None:
        if CI:
            pytest.fail("redis-server is not installed, and CI is set: .ci/run installs Debian's redis-server")
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    servers: list[RedisServer] = []

    def start(persistent: bool = False) -> RedisServer:
        directory = tmp_path / f"redis{len(servers)}"
        directory.mkdir()
        server = RedisServer(directory, persistent)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
