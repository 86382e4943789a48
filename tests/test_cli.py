"""The wsfast command, end to end: ``python -m wsfast serve / connect / bench``
run as subprocesses (each bounded by a timeout and stopped through its own
Popen handle)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

import wsfast

from .output_lines import OutputLines

# The directory holding the imported wsfast package: the source tree's src/
# or site-packages, so the subprocesses run the code under test.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(wsfast.__file__)))


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A ``python -m wsfast`` subprocess whose output lines are collected by
    threads, so that tests can wait for a line with a timeout."""

    def __init__(self, args: list[str], stdin: bool = False) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "wsfast", *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=cli_env(),
        )
        self.output = OutputLines(self.popen, str(args))
        self.seen = self.output.seen

    def expect(self, predicate: Callable[[str], bool], stream: str = "stdout", timeout: float = 10.0) -> str:
        """The next line of ``stream`` that satisfies ``predicate``."""
        return self.output.next(predicate, stream, timeout)

    def send_line(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()

    def wait(self, timeout: float = 10.0) -> int:
        return self.popen.wait(timeout)

    def rest(self, stream: str) -> list[str]:
        """Every line of ``stream`` (after the process ended)."""
        return self.output.rest(stream)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(*args: str, stdin: bool = False) -> Proc:
        proc = Proc(list(args), stdin=stdin)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def run_cli(*args: str, input: Optional[str] = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsfast", *args],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=cli_env(),
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wsfast: ")
    return lines[0]


@pytest.fixture
def server(spawn: Callable[..., Proc]) -> tuple[Proc, int]:
    port = free_port()
    proc = spawn("serve", "--port", str(port))
    proc.expect(lambda line: "serving on" in line)
    return proc, port


# ---------------------------------------------------------------- tests


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"wsfast {wsfast.__version__} ({wsfast.IMPLEMENTATION})"


def test_serve_banner_page_and_sigint(spawn: Callable[..., Proc]) -> None:
    port = free_port()
    proc = spawn("serve", "--port", str(port))
    banner = proc.expect(lambda line: "serving on" in line)
    assert banner.startswith(f"wsfast {wsfast.__version__} ({wsfast.IMPLEMENTATION} codec)")
    assert f"http://127.0.0.1:{port}/" in banner
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        page = response.read().decode()
    assert "WebSocket" in page and "<html" in page
    proc.popen.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert "wsfast: shutting down" in proc.rest("stdout")
    assert not any("Traceback" in line for line in proc.rest("stderr"))


def test_connect_echo_interactive(server: tuple[Proc, int], spawn: Callable[..., Proc]) -> None:
    _, port = server
    client = spawn("connect", f"ws://127.0.0.1:{port}/echo", stdin=True)
    client.expect(lambda line: line.startswith("Connected to"), "stderr")
    for text in ("hello", "héllo wörld ☃", "third line"):
        client.send_line(text)
        assert client.expect(lambda line: line.startswith("<")) == f"< {text}"
    client.close_stdin()  # EOF: close and exit 0
    assert client.wait(10) == 0
    assert client.expect(lambda line: line.startswith("Connection closed"), "stderr") == "Connection closed: 1000"


def test_connect_echo_piped_input(server: tuple[Proc, int]) -> None:
    """``seq 50 | wsfast connect .../echo``: the echoes
    are printed before the client exits (0) at the end of its input.

    _connect closes the connection as soon as stdin ends; the server receives
    the last messages and the close frame together, answers the close at
    once, and its handler's echoes then fail with ConnectionClosedOK: most of
    the time the last echoes (often all) are not printed."""
    _, port = server
    lines = [f"line {i}" for i in range(50)]
    result = run_cli("connect", f"ws://127.0.0.1:{port}/echo", input="".join(f"{line}\n" for line in lines))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"< {line}" for line in lines]
    assert "Traceback" not in result.stderr


def test_chat_relays_between_clients(server: tuple[Proc, int], spawn: Callable[..., Proc]) -> None:
    _, port = server
    alice = spawn("connect", f"ws://127.0.0.1:{port}/", stdin=True)
    alice.expect(lambda line: line.startswith("Connected to"), "stderr")
    bob = spawn("connect", f"ws://127.0.0.1:{port}/", stdin=True)
    bob.expect(lambda line: line.startswith("Connected to"), "stderr")
    bob.send_line("hello from bob")
    said = alice.expect(lambda line: "hello from bob" in line)
    bob_name = re.fullmatch(r"< (guest-\d+): hello from bob", said).group(1)  # type: ignore[union-attr]
    assert f"< * {bob_name} joined" in alice.seen["stdout"]
    assert bob.expect(lambda line: "hello from bob" in line) == said  # to everyone, sender included
    alice.send_line("hi bob")
    line = bob.expect(lambda line: "hi bob" in line)
    assert re.fullmatch(r"< guest-\d+: hi bob", line)
    bob.close_stdin()
    assert bob.wait(10) == 0
    assert alice.expect(lambda line: line.endswith(" left")) == f"< * {bob_name} left"
    alice.close_stdin()
    assert alice.wait(10) == 0


def test_serve_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port))
    line = assert_one_line_error(result)
    assert f"127.0.0.1:{port}" in line


def test_server_shutdown_ends_clients(spawn: Callable[..., Proc]) -> None:
    """Ctrl-C on ``wsfast serve -v`` closes its connections with 1001: the
    connected ``wsfast connect`` prints why and exits 0 by itself."""
    port = free_port()
    proc = spawn("serve", "-v", "--port", str(port))
    proc.expect(lambda line: "serving on" in line)
    client = spawn("connect", f"ws://127.0.0.1:{port}/echo", stdin=True)
    client.expect(lambda line: line.startswith("Connected to"), "stderr")
    proc.expect(lambda line: "wsfast INFO connection #" in line and "open (server" in line, "stderr")
    proc.popen.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    line = client.expect(lambda line: line.startswith("Connection closed"), "stderr")
    assert line == "Connection closed: 1001 server shutting down"
    assert client.wait(10) == 0
    assert any("closed (code 1001)" in line for line in proc.rest("stderr"))


@pytest.mark.parametrize(
    "args, status",
    [(["--keyfile", "key.pem"], 2), (["--certfile", "/nonexistent/cert.pem"], 1)],
)
def test_serve_bad_tls_options(args: list[str], status: int) -> None:
    result = run_cli("serve", "--port", str(free_port()), *args)
    assert result.returncode == status
    assert_one_line_error(result)


def test_connect_refused() -> None:
    port = free_port()
    result = run_cli("connect", f"ws://127.0.0.1:{port}/")
    line = assert_one_line_error(result)
    assert "refused" in line


@pytest.mark.parametrize("uri", ["http://127.0.0.1/", "ws://", "not a uri"])
def test_connect_bad_uri(uri: str) -> None:
    result = run_cli("connect", uri)
    assert result.returncode == 2
    assert_one_line_error(result)


def test_connect_rejected_handshake(server: tuple[Proc, int]) -> None:
    _, port = server
    result = run_cli("connect", f"ws://127.0.0.1:{port}/nowhere")
    line = assert_one_line_error(result)
    assert "404" in line


def test_tls_serve_and_connect(tmp_path: Any, spawn: Callable[..., Proc]) -> None:
    trustme = pytest.importorskip("trustme", reason="trustme is needed for the TLS tests")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile = tmp_path / "server.pem"
    cafile = tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    ca.cert_pem.write_to_path(str(cafile))
    port = free_port()
    proc = spawn("serve", "--port", str(port), "--certfile", str(certfile))
    assert f"https://127.0.0.1:{port}/" in proc.expect(lambda line: "serving on" in line)
    uri = f"wss://127.0.0.1:{port}/echo"
    # Untrusted: one line, non-zero, no traceback.
    line = assert_one_line_error(run_cli("connect", uri))
    assert "TLS" in line or "certificate" in line.lower()
    # Trusted with --cafile; --insecure skips verification.
    for flags in (["--cafile", str(cafile)], ["--insecure"]):
        client = spawn("connect", uri, *flags, stdin=True)
        client.expect(lambda line: line.startswith("Connected to"), "stderr")
        client.send_line("secure")
        assert client.expect(lambda line: line.startswith("<")) == "< secure"
        client.close_stdin()
        assert client.wait(10) == 0


def test_bench_runs_from_the_command_line(tmp_path: Path) -> None:
    """The command end to end (the suite itself: tests/test_benchmark.py)."""
    out = tmp_path / "bench"
    result = run_cli(
        "bench", "--peers", "wsfast", "--sizes", "64", "--scenarios", "server-1", "--runs", "1",
        "--duration", "0.05", "--loop", "asyncio", "--out", str(out), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# wsfast bench")
    assert "| wsfast (callback API) |" in result.stdout and "raw TCP echo (ceiling)" in result.stdout
    assert (out / "results.md").read_text().startswith(result.stdout.rstrip("\n"))
    points = json.loads((out / "results.json").read_text())["points"]
    assert {(p["impl"], p["scenario"], p["size"], p["status"]) for p in points} >= {
        ("raw", "server-1", 64, "ok"),
        ("wsfast", "server-1", 64, "ok"),
    }
    assert all(run["msgs_per_s"] > 0 for p in points for run in p["runs"])
