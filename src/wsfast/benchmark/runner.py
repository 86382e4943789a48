"""The orchestration: which processes run, in which order, and the results.

Every server under test runs in its own process, pinned to one core; the
fixed client that drives them runs in another, pinned to another core (and
the other way round for clients). For each point (scenario, event loop,
size, implementation) the runs of all implementations are interleaved, so a
burst of load on the machine spreads over all of them rather than hitting
one; each point is the median of its runs, with the spread.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

from .. import HAS_SPEEDUPS, IMPLEMENTATION, __version__
from . import c100k, fanout, sync
from ._common import PEER_MODULES, import_optional, proc_rss_bytes, raise_fd_limit, summarize

__all__ = ["Config", "run_suite", "summarize_points", "SCENARIOS", "LIBRARIES", "SCHEMA", "Scenario"]

SCHEMA = "wsfast-bench/1"
KiB = 1024
MiB = 1024 * 1024
DEFAULT_SIZES = (64, KiB, 64 * KiB, MiB)

LIBRARIES = ("wsfast", "websockets", "picows", "aiohttp", "broadcaster")
"""What ``--peers`` selects from (wsfast covers both of its APIs; broadcaster
runs in the fanout scenario only)."""


@dataclass(frozen=True)
class Scenario:
    """One table of the report."""

    name: str
    role: str  # server, client, broadcast, memory, fanout, sync or c100k
    title: str
    connections: int
    variant: str = "plain"  # for servers: plain, deflate, tls or pure


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("server-1", "server", "Servers, 1 connection, request-response", 1),
        Scenario("server-100", "server", "Servers, 100 concurrent connections, request-response", 100),
        Scenario("deflate-100", "server", "Servers with permessage-deflate, 100 connections", 100, "deflate"),
        Scenario("tls-100", "server", "Servers over TLS (wss://), 100 connections", 100, "tls"),
        Scenario("pure-100", "server", "wsfast's pure-Python codec, 100 connections", 100, "pure"),
        Scenario("client-1", "client", "Clients, 1 connection, request-response", 1),
        Scenario("client-100", "client", "Clients, 100 concurrent connections, request-response", 100),
        Scenario("broadcast-1000", "broadcast", "Broadcast of one 64 B message to every connection", 1000),
        Scenario("memory-2000", "memory", "Memory per idle server connection", 2000),
        Scenario("fanout", "fanout", "Fan-out: publish/subscribe across worker processes", 10000),
        Scenario("sync", "sync", "Threads: wsfast.sync against websockets.sync, 1 connection", 1),
        Scenario("c100k", "c100k", "Many connections: memory, handshakes, echo, broadcast", 19000),
    )
}

SERVER_IMPLS = ("raw", "wsfast", "wsfast-serve", "websockets", "picows", "aiohttp")
CLIENT_IMPLS = ("raw", "wsfast", "wsfast-connect", "websockets", "picows", "aiohttp")
LABELS = {
    "raw": "raw TCP echo (ceiling)",
    "wsfast": "wsfast (callback API)",
    "wsfast-serve": "wsfast (serve, awaitable API)",
    "wsfast-connect": "wsfast (connect, awaitable API)",
    "websockets": "websockets",
    "picows": "picows",
    "aiohttp": "aiohttp",
    **fanout.LABELS,
    **sync.LABELS,
}
_LIBRARY = {"wsfast-serve": "wsfast", "wsfast-connect": "wsfast", **fanout.LIBRARY, **sync.LIBRARY}
_NO_DEFLATE = {"picows": "picows has no permessage-deflate"}
BROADCAST_SIZE = 64
MEMORY_WARMUP = 50  # connections opened before the baseline is read


def library(impl: str) -> Optional[str]:
    """The optional package an implementation needs (``None``: none)."""
    name = _LIBRARY.get(impl, impl)
    return name if name in PEER_MODULES else None


def installed(name: str) -> bool:
    """Whether the optional package ``name`` can be imported."""
    try:
        return importlib.util.find_spec(PEER_MODULES[name]) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Config:
    """What to run; :meth:`quick` is the one-minute version."""

    sizes: Sequence[int] = DEFAULT_SIZES
    loops: Sequence[str] = ("asyncio", "uvloop")
    peers: Sequence[str] = LIBRARIES
    scenarios: Sequence[str] = tuple(SCENARIOS)
    runs: int = 5
    duration: float = 0.5  # seconds counted per run
    warmup: float = 0.1  # seconds before counting, per run
    max_messages: int = 1_000_000  # per run
    broadcast_connections: int = 1000
    memory_connections: int = 2000
    memory_runs: int = 3
    # fanout: W workers x C clients on one channel (the memory hub: 1 worker)
    fanout_workers: int = 2
    fanout_clients: int = 10000
    fanout_clients_per_process: int = 2500
    fanout_deliveries_per_s: int = 10000  # the fixed rate, in deliveries (messages/s x clients)
    fanout_rate_seconds: float = 20.0
    fanout_saturation_seconds: float = 8.0
    fanout_window: int = 32  # messages in flight at saturation (a publisher ahead of the deliveries)
    fanout_runs: int = 2
    fanout_impls: Sequence[str] = fanout.IMPLS
    # c100k (see its module): connections of one server process, then ``c100k_total`` across workers
    c100k_counts: Sequence[int] = (10000, 19000)
    c100k_idle: int = 18000
    c100k_handshakes: int = 1000
    c100k_concurrency: int = 100  # handshakes in flight per loader
    c100k_active: int = 1000
    c100k_echo_rounds: int = 20
    c100k_echo_interval: float = 0.1
    c100k_broadcast_rounds: int = 5
    # Connections per loader process: a loader holding ~9,500 opens new ones
    # at ~1,000/s whatever the server (the raw echo too: 1,057/s against
    # 18,000 held); at 5,000 the raw echo takes 25,900 handshakes/s.
    c100k_per_process: int = 5000
    c100k_total: int = 100000
    c100k_workers: int = 6
    c100k_rate_seconds: float = 20.0
    # across workers: a message to 100,000 takes this machine >= 0.56 s (about
    # 178,000 deliveries/s at saturation), so 2/s would measure a queue
    c100k_messages_per_s: float = 0.5
    c100k_idle_wait: float = 45.0  # deflate: RSS again after this long without a message (0: not measured)
    quick: bool = False
    command: str = ""
    progress: Callable[[str], None] = field(default=lambda line: None, repr=False)

    @classmethod
    def quick_config(cls, **overrides: Any) -> Config:
        """About a minute: fewer, shorter runs, one event loop, fewer extras."""
        values: dict[str, Any] = {
            "runs": 3,
            "duration": 0.2,
            "warmup": 0.05,
            "loops": ("uvloop",) if installed("uvloop") else ("asyncio",),
            "scenarios": ("server-100", "memory-2000"),
            "memory_runs": 1,
            "fanout_clients": 1000,
            "fanout_rate_seconds": 3.0,
            "fanout_saturation_seconds": 2.0,
            "fanout_runs": 1,
            "c100k_counts": (1000, 2000),
            "c100k_idle": 1800,
            "c100k_handshakes": 200,
            "c100k_active": 100,
            "c100k_echo_rounds": 10,
            "c100k_broadcast_rounds": 3,
            "c100k_per_process": 1000,
            "c100k_total": 4000,
            "c100k_workers": 2,
            "c100k_rate_seconds": 2.0,
            "c100k_messages_per_s": 2.0,
            "c100k_idle_wait": 0.0,
            "quick": True,
        }
        values.update(overrides)
        return cls(**values)


# ---------------------------------------------------------------- processes


def _package_root() -> str:
    import wsfast

    return os.path.dirname(os.path.dirname(os.path.abspath(wsfast.__file__)))


class Worker:
    """A benchmark process speaking JSON lines (see :mod:`.worker`)."""

    def __init__(self, spec: dict[str, Any], core: Optional[int], env: Optional[dict[str, str]] = None) -> None:
        environ = dict(os.environ)
        root = _package_root()
        environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, environ.get("PYTHONPATH")) if p)
        environ.pop("PYTHONASYNCIODEBUG", None)
        environ.update(env or {})
        self.spec = spec
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "wsfast.benchmark.worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environ,
            text=True,
        )
        if core is not None:
            try:
                os.sched_setaffinity(self.popen.pid, {core})
            except OSError:
                pass
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.errors: deque[str] = deque(maxlen=20)
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        self.info: dict[str, Any] = {}

    def _pump_stdout(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.errors.append(line.rstrip())

    def read(self, timeout: float) -> dict[str, Any]:
        """The next reply; an ``error`` reply if none comes in time."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            return {"error": f"no answer within {timeout:.0f} s (process killed)"}
        if line is None:
            tail = " | ".join(list(self.errors)[-3:])
            return {"error": f"the process exited ({self.popen.wait()}): {tail}"}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def start(self, timeout: float = 30.0) -> Optional[str]:
        """Wait until ready; the error, if any."""
        self.info = self.read(timeout)
        return self.info.get("error")

    @property
    def pid(self) -> int:
        return self.popen.pid

    def request(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.popen.poll() is not None:
            return {"error": f"the process is gone ({self.popen.returncode})"}
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(json.dumps(cmd) + "\n")
            self.popen.stdin.flush()
        except OSError as exc:
            return {"error": f"cannot write to the process: {exc}"}
        return self.read(timeout)

    def stop(self) -> None:
        """Close its standard input (it exits), then make sure it did."""
        if self.popen.stdin is not None:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


# ---------------------------------------------------------------- the suite


class Suite:
    """One run of the benchmark suite: collects the points as they come."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.points: dict[tuple[str, str, int, str], dict[str, Any]] = {}
        self.skipped: list[dict[str, str]] = []
        self.descriptions: dict[str, str] = {}
        self.step = 0
        self.total = 0
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(cores) >= 2:
            self.cores: tuple[Optional[int], Optional[int]] = (cores[0], cores[1])
            self.pinning = f"under test on core {cores[0]}, fixed counterpart on core {cores[1]}"
        else:
            self.cores = (None, None)
            self.pinning = f"not pinned: {len(cores) or 'unknown number of'} core(s) available"
        self.counterpart_loop = "uvloop" if installed("uvloop") else "asyncio"
        self.tmp = tempfile.TemporaryDirectory(prefix="wsfast-bench-")
        self.tls_files: Optional[tuple[str, str, str]] = None

    # ------------------------------------------------------------ helpers

    def say(self, line: str) -> None:
        self.config.progress(line)

    def skip(self, what: str, reason: str) -> None:
        if not any(s["what"] == what and s["reason"] == reason for s in self.skipped):
            self.skipped.append({"what": what, "reason": reason})
            self.say(f"skipped: {what}: {reason}")

    def point(self, scenario: str, loop: str, size: int, impl: str) -> dict[str, Any]:
        key = (scenario, loop, size, impl)
        if key not in self.points:
            self.points[key] = {
                "scenario": scenario,
                "loop": loop,
                "size": size,
                "impl": impl,
                "label": LABELS[impl],
                "connections": self.connections(SCENARIOS[scenario]),
                "runs": [],
                "status": "ok",
                "note": "",
            }
        return self.points[key]

    def connections(self, scenario: Scenario) -> int:
        """Connections open at once in a scenario (broadcast and memory: as configured)."""
        if scenario.role == "broadcast":
            return self.config.broadcast_connections
        if scenario.role == "memory":
            return self.config.memory_connections
        if scenario.role == "fanout":
            return self.config.fanout_clients
        if scenario.role == "c100k":
            return max(self.config.c100k_counts)
        return scenario.connections

    def fail(self, scenario: str, loop: str, size: int, impl: str, error: str) -> None:
        point = self.point(scenario, loop, size, impl)
        point["runs"].append({"error": error})
        self.say(f"  {scenario} {loop} {size_label(size)} {impl}: FAILED: {error}")

    def select(self, scenario: Scenario) -> tuple[list[str], list[tuple[str, str]]]:
        """The implementations to run in a scenario, and those left out for a
        reason (a missing package, a missing feature)."""
        candidates = CLIENT_IMPLS if scenario.role == "client" else SERVER_IMPLS
        chosen: list[str] = []
        left_out: list[tuple[str, str]] = []
        if scenario.role == "fanout":
            for impl in fanout.IMPLS:
                if _LIBRARY[impl] not in self.config.peers or impl not in self.config.fanout_impls:
                    continue
                reason = fanout.missing(impl)
                if reason is None:
                    chosen.append(impl)
                else:
                    left_out.append((f"{impl} in fanout", reason))
            return chosen, left_out
        if scenario.role == "sync":
            for impl in sync.IMPLS:
                if sync.LIBRARY[impl] not in self.config.peers:
                    continue
                reason = sync.missing(impl)
                if reason is None:
                    chosen.append(impl)
                else:
                    left_out.append((f"{impl} in sync", reason))
            return chosen, left_out
        for impl in candidates:
            lib = _LIBRARY.get(impl, impl)
            if impl != "raw" and lib not in self.config.peers:
                continue
            if scenario.variant == "pure" and lib != "wsfast" and impl != "raw":
                continue
            needed = library(impl)
            if needed is not None and not installed(needed):
                left_out.append((impl, f"{needed} not installed"))
            elif scenario.variant == "deflate" and impl in _NO_DEFLATE:
                left_out.append((f"{impl} in {scenario.name}", _NO_DEFLATE[impl]))
            else:
                chosen.append(impl)
        return chosen, left_out

    def impls(self, scenario: Scenario) -> list[str]:
        """:meth:`select`, noting what is skipped."""
        chosen, left_out = self.select(scenario)
        for what, reason in left_out:
            self.skip(what, reason)
        return chosen

    def spawn(self, spec: dict[str, Any], under_test: bool, env: Optional[dict[str, str]] = None) -> Worker:
        return Worker(spec, self.cores[0] if under_test else self.cores[1], env)

    def remember(self, key: str, worker: Worker) -> None:
        description = worker.info.get("description")
        if description:
            self.descriptions.setdefault(key, description)

    def tls(self) -> Optional[tuple[str, str, str]]:
        """(cafile, certfile, keyfile) of a throwaway CA made with trustme."""
        if self.tls_files is None:
            ca = import_optional("trustme").CA()
            cert = ca.issue_cert("127.0.0.1")
            base = self.tmp.name
            cafile, certfile = os.path.join(base, "ca.pem"), os.path.join(base, "server.pem")
            ca.cert_pem.write_to_path(cafile)
            cert.private_key_and_cert_chain_pem.write_to_path(certfile)
            self.tls_files = (cafile, certfile, certfile)
        return self.tls_files

    def run_cmd(self, base: dict[str, Any], connections: int, size: int) -> dict[str, Any]:
        """A request-response command (see :class:`._common.Window`)."""
        config = self.config
        return dict(
            base,
            op="rr",
            connections=connections,
            size=size,
            warmup=config.warmup,
            duration=config.duration,
            min_messages=max(connections, 20),
            max_messages=config.max_messages,
            max_seconds=max(5.0, 10 * config.duration),
            grace=10.0 + connections * size / 20e6,  # the last round trips, at 20 MB/s at worst
        )

    @staticmethod
    def timeout(run: dict[str, Any]) -> float:
        """How long the runner waits for a request-response command."""
        return float(run["warmup"] + run["max_seconds"] + 2 * run["grace"] + 30)

    def record(self, scenario: str, loop: str, size: int, impl: str, rep: int, result: dict[str, Any]) -> None:
        if "error" in result:
            self.fail(scenario, loop, size, impl, result["error"])
            return
        result.pop("ok", None)
        self.point(scenario, loop, size, impl)["runs"].append(result)
        self.step += 1
        if "msgs_per_s" in result:
            server_cpu = result.get("server_cpu")
            server = f", server CPU {server_cpu:.0%}" if server_cpu is not None else ""
            self.say(
                f"[{self.step}/{self.total}] {scenario} {loop} {size_label(size)} {impl} run {rep + 1}:"
                f" {result['msgs_per_s']:,.0f} msg/s, p50 {result['p50_us']:.0f} µs,"
                f" p99 {result['p99_us']:.0f} µs, client CPU {result['client_cpu']:.0%}{server}"
            )
        elif "saturation" in result:
            rate, top = result["rate"], result["saturation"]
            self.say(
                f"[{self.step}/{self.total}] {scenario} {impl} run {rep + 1} ({result['workers']} worker(s) x"
                f" {result['clients']:,} clients): fixed rate {rate['deliveries_per_s']:,.0f} deliveries/s, to the"
                f" last client p50 {rate['last_p50_ms']:.1f} ms p99 {rate['last_p99_ms']:.1f} ms; saturation"
                f" {top['deliveries_per_s']:,.0f} deliveries/s, server CPU {top['server_us_per_delivery']:.2f} µs"
                f" + Redis {top['redis_us_per_delivery']:.2f} µs per delivery;"
                f" {result['bytes_per_connection'] / 1000:.1f} KB per connection"
            )
        elif "ms_to_last" in result:
            times = ", ".join(f"{t:.1f}" for t in result["ms_to_last"])
            self.say(f"[{self.step}/{self.total}] {scenario} {loop} {impl}: {times} ms to the last client")
        else:
            self.say(
                f"[{self.step}/{self.total}] {scenario} {loop} {impl} run {rep + 1}:"
                f" {result['bytes_per_connection'] / 1000:.1f} KB per connection"
            )

    # ------------------------------------------------------------ scenarios

    def run_servers(self, driver: Worker, loop: str, variant: str, scenarios: list[Scenario]) -> None:
        env: dict[str, str] = {}
        spec: dict[str, Any] = {"role": "server", "loop": loop, "app": "echo"}
        cmd: dict[str, Any] = {}
        if variant == "deflate":
            spec["deflate"] = cmd["deflate"] = True
        elif variant == "tls":
            if not installed("trustme"):
                for s in scenarios:
                    self.skip(s.name, "trustme not installed (it makes the throwaway certificate)")
                return
            files = self.tls()
            assert files is not None
            cmd["cafile"], spec["certfile"], spec["keyfile"] = files
        elif variant == "pure":
            env["WSFAST_PURE_PYTHON"] = "1"
        impls = self.impls(scenarios[0])
        servers: dict[str, Worker] = {}
        try:
            for impl in impls:
                worker = self.spawn(dict(spec, impl=impl), True, env if impl != "raw" else None)
                error = worker.start()
                if error:
                    for s in scenarios:
                        for size in self.config.sizes:
                            self.fail(s.name, loop, size, impl, error)
                    worker.kill()
                    continue
                servers[impl] = worker
                self.remember(f"server {impl} {variant}", worker)
            for s in scenarios:
                for size in self.config.sizes:
                    for rep in range(self.config.runs):
                        for impl, worker in servers.items():
                            base = dict(cmd, port=worker.info["port"], raw=impl == "raw", peer_pid=worker.pid)
                            run = self.run_cmd(base, s.connections, size)
                            result = driver.request(run, self.timeout(run))
                            self.record(s.name, loop, size, impl, rep, result)
        finally:
            for worker in servers.values():
                worker.stop()

    def run_clients(self, fixed: Worker, loop: str, scenarios: list[Scenario]) -> None:
        impls = self.impls(scenarios[0])
        clients: dict[str, Worker] = {}
        try:
            for impl in impls:
                worker = self.spawn({"role": "client", "impl": impl, "loop": loop}, True)
                error = worker.start()
                if error:
                    for s in scenarios:
                        for size in self.config.sizes:
                            self.fail(s.name, loop, size, impl, error)
                    worker.kill()
                    continue
                clients[impl] = worker
                self.remember(f"client {impl}", worker)
            for s in scenarios:
                for size in self.config.sizes:
                    for rep in range(self.config.runs):
                        for impl, worker in clients.items():
                            base = {"port": fixed.info["port"], "peer_pid": fixed.pid}
                            run = self.run_cmd(base, s.connections, size)
                            result = worker.request(run, self.timeout(run))
                            self.record(s.name, loop, size, impl, rep, result)
        finally:
            for worker in clients.values():
                worker.stop()

    def run_broadcast(self, driver: Worker, loop: str, scenario: Scenario) -> None:
        for impl in self.impls(scenario):
            worker = self.spawn({"role": "server", "impl": impl, "loop": loop, "app": "broadcast"}, True)
            try:
                error = worker.start()
                if error:
                    self.fail(scenario.name, loop, BROADCAST_SIZE, impl, error)
                    continue
                cmd = {
                    "op": "broadcast",
                    "port": worker.info["port"],
                    "raw": impl == "raw",
                    "connections": self.config.broadcast_connections,
                    "size": BROADCAST_SIZE,
                    "rounds": self.config.runs + 1,
                    "timeout": 30.0,
                }
                result = driver.request(cmd, 60 + 30 * cmd["rounds"])
                if "error" not in result:
                    result["ms_to_last"] = result["ms_to_last"][1:]  # the first round warms up
                self.record(scenario.name, loop, BROADCAST_SIZE, impl, 0, result)
            finally:
                worker.stop()

    def run_memory(self, driver: Worker, loop: str, scenario: Scenario) -> None:
        count = self.config.memory_connections
        for rep in range(self.config.memory_runs):
            for impl in self.impls(scenario):
                spec = {"role": "server", "impl": impl, "loop": loop, "app": "echo", "keepalive": True}
                worker = self.spawn(spec, True)
                try:
                    error = worker.start()
                    if error:
                        self.fail(scenario.name, loop, 0, impl, error)
                        continue
                    port = worker.info["port"]
                    hold = {"op": "hold", "port": port, "raw": impl == "raw"}
                    result = driver.request(dict(hold, connections=MEMORY_WARMUP), 60)
                    time.sleep(0.2)
                    before = proc_rss_bytes(worker.pid)
                    if "error" not in result:
                        result = driver.request(dict(hold, connections=count), 120)
                    time.sleep(0.3)
                    after = proc_rss_bytes(worker.pid)
                    released = driver.request({"op": "release", "raw": impl == "raw"}, 60)
                    if "error" not in result and "error" in released:
                        result = released
                    if "error" not in result and (before is None or after is None):
                        result = {"error": "no /proc/PID/statm: cannot read the server's memory"}
                    if "error" not in result:
                        assert before is not None and after is not None
                        result = {
                            "bytes_per_connection": (after - before) / count,
                            "rss_before": before,
                            "rss_after": after,
                            "connections": count,
                        }
                    self.record(scenario.name, loop, 0, impl, rep, result)
                finally:
                    worker.stop()

    def run_fanout(self, loop: str, scenario: Scenario) -> None:
        fanout.run_scenario(self, loop, self.impls(scenario))

    # ------------------------------------------------------------ all

    def plan_size(self, loops: list[str], chosen: list[Scenario]) -> int:
        """How many runs the progress lines count to."""
        total = 0
        once = 0  # fanout runs on one event loop only (see run)
        for s in chosen:
            n = len(self.select(s)[0])
            if s.role in ("server", "client"):
                total += n * len(self.config.sizes) * self.config.runs
            elif s.role == "broadcast":
                total += n
            elif s.role == "fanout":
                once += n * self.config.fanout_runs
            elif s.role == "sync":
                once += n * len(self.config.sizes) * self.config.runs * len(sync.PLACEMENTS)
            elif s.role == "c100k":
                once += n + len(c100k.across(self.config))
            else:
                total += n * self.config.memory_runs
        return total * len(loops) + once

    def run(self) -> dict[str, Any]:
        config = self.config
        started = time.time()
        load_before = _loadavg()
        raise_fd_limit()
        loops = []
        for loop in config.loops:
            if loop == "uvloop" and not installed("uvloop"):
                self.skip("uvloop", "uvloop not installed")
            else:
                loops.append(loop)
        fanout_chosen = "fanout" in config.scenarios
        for lib in config.peers:
            if lib == "broadcaster" and not fanout_chosen:
                continue
            if lib != "wsfast" and not installed(lib):
                self.skip(lib, f"{lib} not installed")
        chosen = [SCENARIOS[name] for name in config.scenarios]
        self.total = self.plan_size(loops, chosen)
        self.say(f"wsfast bench: {self.total} runs; {self.pinning}; load average {load_before}")
        driver = self.spawn({"role": "driver", "loop": self.counterpart_loop}, False)
        fixed: Optional[Worker] = None
        try:
            error = driver.start()
            if error:
                raise RuntimeError(f"the benchmark client does not start: {error}")
            for loop in loops:
                by_variant: dict[str, list[Scenario]] = {}
                for s in chosen:
                    if s.role == "server":
                        by_variant.setdefault(s.variant, []).append(s)
                for variant, group in by_variant.items():
                    self.run_servers(driver, loop, variant, group)
                clients = [s for s in chosen if s.role == "client"]
                if clients:
                    if fixed is None:
                        fixed = self.spawn({"role": "fixed-server", "loop": self.counterpart_loop}, False)
                        error = fixed.start()
                        if error:
                            raise RuntimeError(f"the fixed server does not start: {error}")
                    self.run_clients(fixed, loop, clients)
                for s in chosen:
                    if s.role == "broadcast":
                        self.run_broadcast(driver, loop, s)
                    elif s.role == "memory":
                        self.run_memory(driver, loop, s)
            fanout_scenarios = [s for s in chosen if s.role == "fanout"]
            if fanout_scenarios and loops:
                # one event loop: uvloop when selected (the fastest for every implementation), else the first
                loop = "uvloop" if "uvloop" in loops else loops[0]
                self.run_fanout(loop, fanout_scenarios[0])
            if "c100k" in config.scenarios and loops:  # one event loop, as fanout
                loop = "uvloop" if "uvloop" in loops else loops[0]
                c100k.run_scenario(self, loop, self.impls(SCENARIOS["c100k"]))
            sync_scenarios = [s for s in chosen if s.role == "sync"]
            if sync_scenarios:  # threads: no event loop; recorded per placement of the processes
                sync.run_scenario(self, self.impls(sync_scenarios[0]))
        finally:
            driver.stop()
            if fixed is not None:
                fixed.stop()
            self.tmp.cleanup()
        return self.results(started, load_before, loops)

    def results(self, started: float, load_before: str, loops: list[str]) -> dict[str, Any]:
        config = self.config
        points = summarize_points(list(self.points.values()))
        versions = {}
        for name in ("websockets", "picows", "aiohttp", "uvloop", "matplotlib", "trustme", "broadcaster", "redis"):
            if installed(name):
                try:
                    import importlib.metadata as metadata

                    versions[name] = metadata.version(PEER_MODULES[name])
                except Exception:
                    versions[name] = "installed"
        settings = asdict(config)
        settings.pop("progress", None)
        return {
            "schema": SCHEMA,
            "created": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(time.time() - started, 1),
            "command": config.command,
            "config": dict(settings, loops=loops),
            "environment": {
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "load_average_start": load_before,
                "load_average_end": _loadavg(),
                "pinning": self.pinning,
                "counterpart_loop": self.counterpart_loop,
                "wsfast": {"version": __version__, "codec": IMPLEMENTATION, "speedups": HAS_SPEEDUPS},
                "versions": versions,
                "descriptions": self.descriptions,
            },
            "skipped": self.skipped,
            "points": points,
        }

    @staticmethod
    def summarize_point(point: dict[str, Any]) -> dict[str, Any]:
        if point["scenario"] == "fanout":
            return fanout.summarize_point(point)
        if point["scenario"] == "sync":
            return sync.summarize_point(point)
        if point["scenario"] == "c100k":
            return c100k.summarize_point(point)
        good = [r for r in point["runs"] if "error" not in r]
        errors = [r["error"] for r in point["runs"] if "error" in r]
        if not good:
            point["status"] = "failed"
            point["note"] = errors[0] if errors else "no run"
            return point
        if errors:
            point["note"] = f"{len(errors)} run(s) failed: {errors[0]}"
        summary: dict[str, dict[str, float]] = {}
        if "ms_to_last" in good[0]:
            summary["ms_to_last"] = summarize([t for r in good for t in r["ms_to_last"]])
        else:
            for metric in ("msgs_per_s", "p50_us", "p99_us", "bytes_per_connection", "client_cpu", "server_cpu"):
                values = [r[metric] for r in good if r.get(metric) is not None]
                if values:
                    summary[metric] = summarize(values)
            # CPU time of the side under test per round trip: unlike msgs/s, other jobs on the machine do
            # not inflate it (the share is over the warm-up too: a slight overestimate, the same for all).
            share = "client_cpu" if SCENARIOS[point["scenario"]].role == "client" else "server_cpu"
            values = [r[share] * r["seconds"] / r["messages"] * 1e6 for r in good if r.get(share) and r.get("messages")]
            if values:
                summary["cpu_us_per_msg"] = summarize(values)
        point["summary"] = summary
        return point


def summarize_points(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summaries and ratios of every point, from its runs (idempotent)."""
    done = [Suite.summarize_point(p) for p in points]
    _add_ratios(done)
    return done


def _add_ratios(points: list[dict[str, Any]]) -> None:
    """Each point's ratio to the raw ceiling of the same scenario, loop and
    size: throughput over the ceiling's (broadcast: the ceiling's time over
    the point's; memory has none)."""
    ceilings = {(p["scenario"], p["loop"], p["size"]): p for p in points if p["impl"] == "raw"}
    for p in points:
        p["ratio_to_ceiling"] = None
        ceiling = ceilings.get((p["scenario"], p["loop"], p["size"]))
        if ceiling is None or p["status"] != "ok" or ceiling["status"] != "ok":
            continue
        mine, top = p["summary"], ceiling["summary"]
        if "msgs_per_s" in mine and "msgs_per_s" in top and top["msgs_per_s"]["median"] > 0:
            p["ratio_to_ceiling"] = mine["msgs_per_s"]["median"] / top["msgs_per_s"]["median"]
        elif "ms_to_last" in mine and "ms_to_last" in top and mine["ms_to_last"]["median"] > 0:
            p["ratio_to_ceiling"] = top["ms_to_last"]["median"] / mine["ms_to_last"]["median"]


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def size_label(size: int) -> str:
    """``64 B``, ``1 KiB``, ``1 MiB``."""
    if size >= MiB and size % MiB == 0:
        return f"{size // MiB} MiB"
    if size >= KiB and size % KiB == 0:
        return f"{size // KiB} KiB"
    return f"{size} B"


def run_suite(config: Config) -> dict[str, Any]:
    """Run the benchmark suite; the results as a JSON-ready dict."""
    return Suite(config).run()
