"""Worker processes on one port (wsfast.workers): real supervisors, real
workers and real sockets on 127.0.0.1.

Each test runs ``python -m tests.workers_app`` (``wsfast.run()`` with a
handler that answers every message with its worker's pid, logging on
stderr) or ``python -m wsfast serve --workers``, reads the port and the
worker pids from its output, talks to it with ``wsfast.connect``, and stops
it by its pid. Every wait is bounded; a test's processes are killed (by
their pids) if it fails halfway.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

import wsfast
from wsfast.asyncio import WebSocket, connect
from wsfast.exceptions import ConnectionClosed, InvalidHandshake
from wsfast.workers import Supervisor, usable_cores

from .asyncio.helpers import run
from .output_lines import OutputLines

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need os.fork")

ROOT = Path(__file__).resolve().parent.parent
# The directory holding the imported wsfast package (src/ or site-packages),
# so that the subprocesses run the code under test.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(wsfast.__file__)))
HAS_REUSEPORT = hasattr(socket, "SO_REUSEPORT")
CLOSE_TIMEOUT = 2.0  # tests/workers_app.py's --close-timeout default

needs_reuseport = pytest.mark.skipif(not HAS_REUSEPORT, reason="no SO_REUSEPORT on this platform")


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def wait_gone(pids: list[int], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running {timeout} s later: {[pid for pid in pids if alive(pid)]}")
        time.sleep(0.02)


class Supervised:
    """A supervisor subprocess, its output lines collected by threads so
    that a test can wait for a line with a timeout."""

    def __init__(self, *args: str, env: Optional[dict[str, str]] = None) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**subprocess_env(), **(env or {})},
        )
        self.output = OutputLines(self.popen, " ".join(args))
        self.seen = self.output.seen
        self.worker_pids: set[int] = set()  # every worker pid it ever reported, to clean up after a failure

    def expect(self, pattern: str, stream: str = "stderr", timeout: float = 10.0) -> re.Match[str]:
        """The next line of ``stream`` matching ``pattern`` (a regex)."""
        found: list[re.Match[str]] = []

        def matches(line: str) -> bool:
            for worker in re.finditer(r"worker (\d+) (?:listening|started)", line):
                self.worker_pids.add(int(worker.group(1)))
            match = re.search(pattern, line)
            if match:
                found.append(match)
            return match is not None

        self.output.next(matches, stream, timeout, f"line matching {pattern!r}")
        return found[0]

    def started(self) -> tuple[int, list[int]]:
        """Wait until all workers listen: the port and the worker pids."""
        port = int(self.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        pids = [int(pid) for pid in self.expect(r"\d+ workers serving: ([\d ]+)").group(1).split()]
        return port, pids

    def rest(self, stream: str = "stderr") -> list[str]:
        """All the lines of ``stream`` (after the process ended)."""
        return self.output.rest(stream)

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def cleanup(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(CLOSE_TIMEOUT + 6)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        for pid in self.worker_pids:  # a worker left behind: the test failed, kill it
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def supervise() -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def start(*args: str, env: Optional[dict[str, str]] = None) -> Supervised:
        proc = Supervised(*args, env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.cleanup()


def app(*args: str) -> tuple[str, ...]:
    """Arguments for Supervised: tests/workers_app.py on port 0."""
    return ("tests.workers_app", "0", *args)


async def ask(port: int, path: str = "/") -> tuple[WebSocket, int]:
    """Connect, and ask which worker answers: an open connection and its worker's pid."""
    ws = await connect(f"ws://127.0.0.1:{port}{path}", open_timeout=5)
    await ws.send("pid?")
    return ws, int(await asyncio.wait_for(ws.recv(), 5))


async def answers(port: int, count: int) -> list[int]:
    """The pids answering ``count`` concurrent connections (closed after)."""

    async def one() -> int:
        ws, pid = await ask(port)
        await ws.close()
        return pid

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def one_per_worker(port: int, pids: list[int]) -> dict[int, WebSocket]:
    """An open connection to each worker (connecting until each one answered)."""
    open_: dict[int, WebSocket] = {}
    for _ in range(200):
        ws, pid = await ask(port)
        if pid in open_:
            await ws.close()
        else:
            open_[pid] = ws
        if set(open_) == set(pids):
            return open_
    raise AssertionError(f"connections reached only {sorted(open_)} of {pids}")


async def closed_with(ws: WebSocket) -> Optional[int]:
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), CLOSE_TIMEOUT + 5)
    return ws.close_code


# ---------------------------------------------------------------- balancing, both APIs


@needs_reuseport
def test_reuse_port_workers_all_answer(supervise: Callable[..., Supervised]) -> None:
    """Two workers, each with its own SO_REUSEPORT socket on the port the
    supervisor resolved from port 0: the kernel gives both of them some of
    100 connections (all to one: a chance of 2**-99)."""
    proc = supervise(*app("--workers", "2"))
    port, pids = proc.started()
    assert len(set(pids)) == 2 and proc.popen.pid not in pids
    assert "(SO_REUSEPORT: a socket per worker)" in proc.seen["stderr"][0]
    got = run(answers(port, 100), timeout=30)
    assert len(got) == 100
    assert set(got) == set(pids)


def test_shared_socket_workers_answer(supervise: Callable[..., Supervised]) -> None:
    """reuse_port=False: the supervisor's listening socket, inherited by the
    workers (one accept queue: whichever worker wakes first accepts, so the
    test does not ask for both)."""
    proc = supervise(*app("--workers", "2", "--shared"))
    port, pids = proc.started()
    assert "(one socket shared by the workers)" in proc.seen["stderr"][0]
    got = run(answers(port, 100), timeout=30)
    assert len(got) == 100
    assert set(got) <= set(pids)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_callback_api_imported_in_the_workers(supervise: Callable[..., Supervised], loop: str) -> None:
    """api="callback": a listener factory, named "module:attribute" (imported
    by each worker after the fork), on asyncio and on uvloop."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    proc = supervise(*app("--workers", "2", "--api", "callback", "--import", "--loop", loop))
    port, pids = proc.started()
    got = run(answers(port, 40), timeout=30)
    assert len(got) == 40 and set(got) <= set(pids)


# ---------------------------------------------------------------- signals


@pytest.mark.parametrize("shared", [False, True], ids=["reuse_port", "shared"])
def test_sigterm_closes_connections_with_1001(supervise: Callable[..., Supervised], shared: bool) -> None:
    """SIGTERM: each worker closes its connections with 1001 and leaves its
    lifespan; the supervisor exits 0 within close_timeout (+ margin) and no
    worker is left."""
    if not shared and not HAS_REUSEPORT:
        pytest.skip("no SO_REUSEPORT on this platform")
    proc = supervise(*app("--workers", "2", "--lifespan", "logged", *(["--shared"] if shared else [])))
    port, pids = proc.started()

    async def main() -> None:
        if shared:  # which worker accepts is up to them: one connection, to whichever
            ws, pid = await ask(port)
            connections = {pid: ws}
        else:
            connections = await one_per_worker(port, pids)
        proc.signal(signal.SIGTERM)
        codes = await asyncio.gather(*(closed_with(ws) for ws in connections.values()))
        assert codes == [1001] * len(connections)
        assert {ws.close_reason for ws in connections.values()} == {"server shutting down"}

    run(main(), timeout=20)
    assert proc.wait(CLOSE_TIMEOUT + 5) == 0
    wait_gone(pids)
    log = proc.rest()
    for pid in pids:
        assert f"workers_app INFO lifespan entered in {pid}" in log
        assert f"workers_app INFO lifespan exited in {pid}" in log
        assert f"wsfast.workers INFO worker {pid} exited with status 0" in log
    assert not any("Traceback" in line for line in log)


@needs_reuseport
def test_killed_worker_is_restarted(supervise: Callable[..., Supervised]) -> None:
    """kill -9 of a worker: logged with its pid and the signal, a new worker
    takes its place (after restart_delay), the other worker's connections
    stay open throughout."""
    proc = supervise(*app("--workers", "2", "--restart-delay", "0.2"))
    port, pids = proc.started()
    victim, survivor = pids

    async def main() -> None:
        connections = await one_per_worker(port, pids)
        os.kill(victim, signal.SIGKILL)
        line = proc.expect(rf"WARNING worker {victim} was killed by SIGKILL after [\d.]+ s; restarting it in 0\.2 s")
        assert line
        new = int(proc.expect(r"INFO worker (\d+) forked \(a restart\)").group(1))
        proc.expect(rf"INFO worker {new} listening")
        assert new not in pids
        assert await closed_with(connections[victim]) == 1006
        # The survivor's connection was open all along, and still answers.
        await connections[survivor].send("still there?")
        assert int(await asyncio.wait_for(connections[survivor].recv(), 5)) == survivor
        seen: set[int] = set()
        for _ in range(200):  # the kernel hashes each connection to one of the two
            ws, pid = await ask(port)
            await ws.close()
            seen.add(pid)
            if new in seen:
                break
        assert new in seen and seen <= {new, survivor}
        # Dying again soon after: the delay doubles.
        os.kill(new, signal.SIGKILL)
        proc.expect(rf"WARNING worker {new} was killed by SIGKILL after [\d.]+ s; restarting it in 0\.4 s")
        newer = int(proc.expect(r"INFO worker (\d+) forked \(a restart\)").group(1))
        proc.expect(rf"INFO worker {newer} listening")
        await connections[survivor].send("and now?")
        assert int(await asyncio.wait_for(connections[survivor].recv(), 5)) == survivor
        await connections[survivor].close()

    run(main(), timeout=30)
    assert alive(survivor) and not alive(victim)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "reuse_port"])
def test_sighup_rolling_restart(supervise: Callable[..., Supervised], shared: bool) -> None:
    """SIGHUP replaces every worker, one at a time: the replacement listens
    before the old one is stopped, and the old one has exited before the
    next step. An open connection to an old worker is closed with 1001. A
    client connecting in a loop all along is never refused (the port is
    never unbound). A connection that a stopping worker had already
    accepted is closed like all its others (1001, or cut during its
    handshake): those are counted, not failed."""
    if not shared and not HAS_REUSEPORT:
        pytest.skip("no SO_REUSEPORT on this platform")
    proc = supervise(*app("--workers", "2", *(["--shared"] if shared else [])))
    port, old = proc.started()

    async def main() -> tuple[list[int], dict[str, int], set[int]]:
        connections: dict[int, WebSocket] = {}
        if shared:
            ws, pid = await ask(port)
            connections[pid] = ws
        else:
            connections = await one_per_worker(port, old)
        outcomes = {"answered": 0, "refused": 0, "cut": 0}
        answered_after: set[int] = set()  # pids answering connections made after the rolling restart
        rolled, done = asyncio.Event(), asyncio.Event()

        async def hammer() -> None:
            while not done.is_set():
                after = rolled.is_set()
                try:
                    ws, pid = await ask(port)
                    await ws.close()
                except ConnectionRefusedError:
                    outcomes["refused"] += 1
                except (OSError, InvalidHandshake, ConnectionClosed, asyncio.TimeoutError):
                    outcomes["cut"] += 1
                else:
                    outcomes["answered"] += 1
                    if after:
                        answered_after.add(pid)

        clients = [asyncio.ensure_future(hammer()) for _ in range(4)]
        await asyncio.sleep(0.1)
        proc.signal(signal.SIGHUP)
        done_line = await asyncio.get_running_loop().run_in_executor(
            None, lambda: proc.expect(r"rolling restart done: workers ([\d ]+)", timeout=20)
        )
        rolled.set()
        codes = await asyncio.gather(*(closed_with(ws) for ws in connections.values()))
        assert codes == [1001] * len(connections)
        await asyncio.sleep(0.3)  # some more connections, to the new workers only
        done.set()
        await asyncio.gather(*clients)
        return [int(pid) for pid in done_line.group(1).split()], outcomes, answered_after

    new, outcomes, answered_after = run(main(), timeout=40)
    assert len(new) == 2 and not set(new) & set(old)
    assert outcomes["refused"] == 0, outcomes
    assert outcomes["answered"] > 0 and answered_after and answered_after <= set(new), (outcomes, answered_after, new)
    wait_gone(old)
    # One step at a time: fork, the new worker listens, stop the old one, it exits; then the next.
    # (Lines that the workers log themselves, "worker N: SIGTERM: ...", interleave freely.)
    log = [line.split(" INFO ", 1)[1] for line in proc.seen["stderr"] if line.startswith("wsfast.workers INFO ")]
    log = [line for line in log if not re.match(r"worker \d+: ", line)]
    steps = log[log.index("SIGHUP: rolling restart of 2 workers") + 1 :]
    expected = []
    for before, after in zip(old, new):
        expected += [
            f"rolling restart: worker {after} forked to replace worker {before}",
            f"worker {after} listening",
            f"rolling restart: stopping worker {before}",
            f"worker {before} exited with status 0",
            f"rolling restart: worker {before} replaced by {after}",
        ]
    expected.append(f"rolling restart done: workers {new[0]} {new[1]}")
    assert steps == expected
    proc.signal(signal.SIGTERM)
    assert proc.wait(CLOSE_TIMEOUT + 5) == 0
    wait_gone(new)


def test_sighup_with_new_code_that_fails_keeps_the_old_workers(
    supervise: Callable[..., Supervised], tmp_path: Path
) -> None:
    """The handler is imported by name in each worker: when the replacement
    of a rolling restart cannot import it, the rolling restart stops and the
    old workers keep serving; once the code is fixed, SIGHUP goes through."""
    broken = tmp_path / "broken"
    proc = supervise(
        *app("--workers", "2", "--shared", "--import", "--handler", "answer_pid_until_broken"),
        env={"WORKERS_APP_BROKEN": str(broken)},
    )
    port, old = proc.started()
    broken.touch()
    proc.signal(signal.SIGHUP)
    failed = proc.expect(
        r"ERROR rolling restart stopped: the new worker (\d+) exited with status 1 before it was listening;"
        rf" worker {old[0]} and the others keep serving"
    )
    wait_gone([int(failed.group(1))])
    got = run(answers(port, 20), timeout=20)
    assert len(got) == 20 and set(got) <= set(old)
    assert all(alive(pid) for pid in old)
    broken.unlink()
    proc.signal(signal.SIGHUP)
    new = [int(pid) for pid in proc.expect(r"rolling restart done: workers ([\d ]+)").group(1).split()]
    assert not set(new) & set(old)
    wait_gone(old)


def test_workers_that_do_not_stop_are_killed(supervise: Callable[..., Supervised]) -> None:
    """A worker still alive close_timeout + 5 s after SIGTERM (here its
    lifespan blocks on the way out) is killed; the supervisor exits 0."""
    proc = supervise(*app("--workers", "2", "--lifespan", "hanging", "--close-timeout", "0.5"))
    _, pids = proc.started()
    proc.signal(signal.SIGTERM)
    for _ in pids:
        proc.expect(r"WARNING worker \d+ still running 5\.5 s after SIGTERM: SIGKILL", timeout=15)
    assert proc.wait(10) == 0
    wait_gone(pids)
    log = proc.rest()
    for pid in pids:
        assert f"workers_app INFO lifespan hanging in {pid}" in log
        assert f"wsfast.workers INFO worker {pid} was killed by SIGKILL" in log


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("shared", [False, True], ids=["reuse_port", "shared"])
def test_port_in_use_fails_before_any_fork(shared: bool) -> None:
    if not shared and not HAS_REUSEPORT:
        pytest.skip("no SO_REUSEPORT on this platform")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tests.workers_app", str(port), *(["--shared"] if shared else [])],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=20,
        )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"OSError: \[Errno \d+\] cannot listen on 127\.0\.0\.1:{port}: Address already in use", last)
    assert not re.search(r"worker \d+", result.stderr)  # nothing forked


def test_unresolvable_host_fails_before_any_fork() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.workers_app", "0", "--host", "no-such-host.invalid"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=30,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("socket.gaierror: [Errno ") and "cannot resolve 'no-such-host.invalid': " in last
    assert not re.search(r"worker \d+", result.stderr)


def test_worker_failing_at_start_stops_the_supervisor(supervise: Callable[..., Supervised]) -> None:
    """A handler that cannot be imported in the workers: the first worker's
    failure stops the others and run() raises, instead of restarting forever."""
    proc = supervise(*app("--workers", "2", "--import", "--api", "callback", "--handler", "no_such_handler"))
    assert proc.wait(CLOSE_TIMEOUT + 10) != 0
    log = proc.rest()
    assert any("AttributeError" in line and "no_such_handler" in line for line in log), log
    assert re.fullmatch(r"RuntimeError: worker \d+ exited with status 1 before it was listening .*", log[-1]), log
    wait_gone(list(proc.worker_pids) + [int(p) for p in re.findall(r"worker (\d+) exited", "\n".join(log))])


def test_supervisor_checks_before_forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors that would make every worker fail are raised by the supervisor
    itself, at once (nothing here binds or forks)."""

    async def handler(ws: Any) -> None:
        pass

    assert Supervisor(handler, workers=0).count == usable_cores() >= 1
    with pytest.raises(TypeError, match="unexpected keyword arguments for api='serve': clsoe_timeout"):
        Supervisor(handler, clsoe_timeout=1)
    with socket.socket() as sock, pytest.raises(TypeError, match=r"sock \(run\(\) binds the sockets itself\)"):
        Supervisor(handler, sock=sock)
    with pytest.raises(TypeError, match="process_request"):
        Supervisor(handler, api="callback", process_request=lambda ws, request: None)
    with pytest.raises(ValueError, match="'module:attribute'"):
        Supervisor("no_colon")
    with pytest.raises(ValueError, match="workers must be 0"):
        Supervisor(handler, workers=-1)
    monkeypatch.delattr(socket, "SO_REUSEPORT", raising=False)
    with pytest.raises(ValueError, match=rf"reuse_port=True needs socket\.SO_REUSEPORT.*\({sys.platform}\)"):
        wsfast.run(handler, reuse_port=True)
    assert Supervisor(handler).reuse_port is False  # the default follows the platform
    monkeypatch.delattr(os, "fork")
    with pytest.raises(RuntimeError, match=r"no os\.fork\(\).*load balancer"):
        wsfast.run(handler)


# ---------------------------------------------------------------- the command


def server_sockets_by_pid(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections on local ``port`` each process
    holds (Linux: /proc)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                established.add(fields[9])
    counts = {}
    for pid in pids:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with_target = os.readlink(f"/proc/{pid}/fd/{fd}") if os.path.exists(f"/proc/{pid}/fd/{fd}") else ""
            found = re.fullmatch(r"socket:\[(\d+)\]", with_target)
            if found:
                inodes.add(found.group(1))
        counts[pid] = len(inodes & established)
    return counts


def test_cli_serve_workers(supervise: Callable[..., Supervised]) -> None:
    """``wsfast serve --workers 2``: one line per worker, the address once;
    the echo endpoint is served by both workers; SIGINT stops it all."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = supervise("wsfast", "serve", "--workers", "2", "--port", str(port))
    pids = [int(proc.expect(r"^wsfast: worker (\d+) started$", "stdout").group(1)) for _ in range(2)]
    banner = proc.expect(r"serving on", "stdout").string
    assert f"serving on http://127.0.0.1:{port}/ with 2 workers" in banner
    assert banner.startswith(f"wsfast {wsfast.__version__} ({wsfast.IMPLEMENTATION} codec)")

    async def main() -> dict[int, int]:
        connections = []
        for i in range(40):
            ws = await connect(f"ws://127.0.0.1:{port}/echo", open_timeout=5)
            await ws.send(f"echo {i}")
            assert await asyncio.wait_for(ws.recv(), 5) == f"echo {i}"
            connections.append(ws)
        counts = server_sockets_by_pid(pids, port) if os.path.isdir("/proc/self/fd") else {}
        await asyncio.gather(*(ws.close() for ws in connections))
        return counts

    counts = run(main(), timeout=30)
    if counts:  # Linux: both workers hold some of the 40 connections
        assert sum(counts.values()) == 40 and all(counts.values()), counts
    proc.signal(signal.SIGINT)
    assert proc.wait(CLOSE_TIMEOUT + 10) == 0
    assert "wsfast: all workers stopped" in proc.rest("stdout")
    wait_gone(pids)
    assert not any("Traceback" in line for line in proc.rest("stderr"))


def test_cli_serve_workers_bad_values() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for args, status, message in [
            (["--workers", "-1"], 2, "wsfast: --workers must be 0 (one per core) or more"),
            (["--workers", "2", "--port", str(port)], 1, f"wsfast: cannot listen on 127.0.0.1:{port}: "),
        ]:
            result = subprocess.run(
                [sys.executable, "-m", "wsfast", "serve", *args],
                capture_output=True,
                text=True,
                env=subprocess_env(),
                timeout=20,
            )
            assert result.returncode == status
            assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1, result.stderr
