"""``wsfast connect --reconnect``: the interactive client reconnects to a
server that goes away and comes back (real processes and sockets)."""

from __future__ import annotations

import re
from typing import Callable, Iterator

import pytest

from .test_cli import Proc, assert_one_line_error, free_port, run_cli

FAST = ["--backoff-initial", "0.05", "--backoff-factor", "2", "--backoff-max", "0.2"]


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    """Start ``python -m wsfast ...`` processes, stopped after the test."""
    procs: list[Proc] = []

    def start(*args: str, stdin: bool = False) -> Proc:
        procs.append(Proc(list(args), stdin=stdin))
        return procs[-1]

    yield start
    for proc in procs:
        proc.stop()


RETRY = re.compile(
    r"wsfast\.client WARNING ws://127\.0\.0\.1:\d+/echo: attempt (\d+) failed \((.*)\); retrying in ([\d.]+) s"
)


def test_reconnects_until_the_input_ends(spawn: Callable[..., Proc]) -> None:
    port = free_port()
    client = spawn("connect", "--reconnect", *FAST, f"ws://127.0.0.1:{port}/echo", stdin=True)
    # Nobody listens yet: retries are logged with their reason and delay.
    for attempt in (1, 2):
        match = RETRY.search(client.expect(lambda line: "retrying in" in line, "stderr"))
        assert match is not None
        assert int(match.group(1)) == attempt and "ConnectionRefusedError" in match.group(2)
        assert 0 <= float(match.group(3)) <= min(0.2, 0.05 * 2 ** (attempt - 1))
    server = spawn("serve", "--port", str(port))
    server.expect(lambda line: "serving on" in line)
    client.expect(lambda line: line.startswith("Connected to"), "stderr")
    client.send_line("one")
    assert client.expect(lambda line: line.startswith("<")) == "< one"
    server.stop()  # closes the connection with 1001
    assert client.expect(lambda line: line.startswith("Connection closed"), "stderr") == (
        "Connection closed: 1001 server shutting down"
    )
    client.expect(lambda line: line == "Reconnecting...", "stderr")
    client.expect(lambda line: "retrying in" in line, "stderr")
    client.send_line("two")  # typed while disconnected: sent once connected again
    server = spawn("serve", "--port", str(port))
    server.expect(lambda line: "serving on" in line)
    client.expect(lambda line: line.startswith("Connected to"), "stderr")
    assert client.expect(lambda line: line.startswith("<")) == "< two"
    client.close_stdin()
    assert client.wait(10) == 0
    assert not any("Traceback" in line for line in client.rest("stderr"))


def test_gives_up_after_max_attempts() -> None:
    port = free_port()
    result = run_cli("connect", "--reconnect", *FAST, "--max-attempts", "3", f"ws://127.0.0.1:{port}/echo")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert [int(RETRY.search(line).group(1)) for line in lines[:2]] == [1, 2]  # type: ignore[union-attr]
    assert "attempt 3 failed (ConnectionRefusedError" in lines[2] and "giving up (max_attempts=3)" in lines[2]
    assert lines[3] == f"wsfast: connection to ws://127.0.0.1:{port}/echo refused"
    assert "Traceback" not in result.stderr


def test_404_is_not_retried(spawn: Callable[..., Proc]) -> None:
    port = free_port()
    spawn("serve", "--port", str(port)).expect(lambda line: "serving on" in line)
    result = run_cli("connect", "--reconnect", *FAST, f"ws://127.0.0.1:{port}/nowhere")
    assert "HTTP 404" in assert_one_line_error(result)  # no retry logged


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backoff-factor", "3"], "need --reconnect"),
        (["--max-attempts", "2"], "need --reconnect"),
        (["--reconnect", "--backoff-factor", "0.5"], "--reconnect: factor must be 1 or more"),
        (["--reconnect", "--max-attempts", "0"], "--reconnect: max_attempts must be 1 or more"),
        (["--reconnect", "--backoff-initial", "5", "--backoff-max", "1"], "must be at least initial_delay"),
    ],
)
def test_bad_settings(args: list[str], message: str) -> None:
    result = run_cli("connect", *args, "ws://127.0.0.1:1/")
    assert result.returncode == 2
    assert message in assert_one_line_error(result)
