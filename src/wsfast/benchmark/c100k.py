"""The ``c100k`` scenario: many connections, server side.

One server process per implementation and figure (the servers of
:mod:`.servers`, each with its library's defaults, keepalive included),
driven by *loader* processes (``python -m wsfast.benchmark.worker SPEC`` with
role ``c100k-loader``) that open raw connections, each loader bound to its
own loopback source address (127.0.1.2, 127.0.1.3...: bind before connect,
so that ephemeral ports do not run out) and under the open-file cap. A
loader parses every frame it receives (it answers pings, checks every
message) and counts every byte; a missing or unexpected message fails the
run. Figures, for ``counts`` connections of one process (10,000 and 19,000
by default):

* memory: server RSS growth per connection for a plain connection, a
  connection with permessage-deflate negotiated, and a TLS connection
  (trustme certificates), each after one message each way (64 B; with
  deflate 512 B of JSON-like text, compressed both ways: zlib allocates on
  the first compressed message, so an idle never-used connection flatters);
* handshakes: ``handshakes`` new connections (``concurrency`` in flight per
  loader) against a server holding ``idle``: per second, latency p50/p99
  from the connect call to the 101 response;
* echo: ``active`` connections among ``idle``, each sending a 64 B message
  every ``interval`` for ``rounds`` rounds: round-trip p50/p99;
* broadcast: one 64 B message from one connection to every connection
  (the broadcast servers of :mod:`.servers`): time from the send to the
  last connection having it, every delivery counted.

And ``total`` connections (100,000) across worker processes on one port
(``SO_REUSEPORT``) through the hub on Redis: the :mod:`.fanout` run, with its
checks, at that scale (server RSS growth per connection summed over the
workers, handshakes per second while opening, publish-to-last-delivery).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import resource
import ssl
import statistics
import time
import zlib
from typing import TYPE_CHECKING, Any, Optional

from . import fanout
from ._common import (
    frame,
    loop_factory,
    parse_frame,
    payload,
    percentile,
    proc_cpu_seconds,
    proc_rss_bytes,
    raise_fd_limit,
    read_101,
    upgrade_request,
)

if TYPE_CHECKING:
    from .runner import Suite, Worker

__all__ = ["C100kError", "FANOUT_IMPLS", "main_role", "markdown", "run_scenario", "summarize_point"]

MESSAGE = b"c100k:" + b"." * 58  # 64 B
CLIENT_FRAME = frame(MESSAGE, masked=True)
DEFLATE_MESSAGE = payload(512, compressible=True)
"""The first message of a deflate connection: above wsfast's compression
threshold (128 B), so that both directions compress (zlib allocates then)."""
RAW_FRAME = len(CLIENT_FRAME)  # the raw echo returns the client's bytes
WARMUP = 50  # connections opened before the baseline RSS is read
FD_MARGIN = 64  # open files a process needs besides its connections
VARIANTS = ("plain", "deflate", "tls", "tls-asyncio")
"""``tls-asyncio``: TLS with the server on asyncio's standard loop whatever
the run's loop (there asyncio's SSL transport keeps a 256 KiB buffer per
connection: the raw echo on it is the reference of the TLS target)."""
COLUMNS = {
    "plain": "plain",
    "deflate": "deflate",
    "deflate-idle": "deflate, idle {wait:g} s",
    "tls": "tls",
    "tls-asyncio": "tls (asyncio loop)",
}
FANOUT_IMPLS = ("raw-redis", "wsfast-redis", "websockets-redis")
NO_DEFLATE = ("picows", "raw")  # the raw echo's floor is its plain figure


class C100kError(RuntimeError):
    pass


def _deflated(message: bytes) -> bytes:
    """``message`` as the first permessage-deflate payload of a connection (RFC 7692 7.2.1)."""
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


# ================================================================ in the loader processes

_HANDSHAKE, _FIRST, _OPEN, _DONE = range(4)


class _Conn(asyncio.Protocol):
    """One connection: the handshake, one message each way, then every
    frame parsed (pings answered) and every message counted."""

    def __init__(self, owner: _Loader) -> None:
        self.owner = owner
        self.transport: Any = None
        self.state = _HANDSHAKE
        self.acc = bytearray()
        self.count = 0  # messages received after the first echo
        self.want = 0
        self.arrived = 0  # monotonic ns of message number ``want``
        self.started = time.monotonic_ns()
        self.shook = 0
        self.waiter: Optional[asyncio.Future[None]] = None  # an echo's
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.owner.request:
            transport.write(self.owner.request)
        elif not self.owner.greeting:  # the raw echo: no handshake
            self._handshake_done()

    def _handshake_done(self) -> None:
        self.shook = time.monotonic_ns()
        if self.owner.first_message:
            self.state = _FIRST
            self.transport.write(self.owner.first_frame)
        else:
            self._ready()

    def _ready(self) -> None:
        self.state = _OPEN
        if not self.ready.done():
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.owner.received += len(data)
        if self.state == _OPEN and not self.acc and data == self.owner.expected:  # the common case, cheaply
            self._message()
            return
        self.acc += data
        try:
            self._parse()
        except Exception as exc:
            self.owner.fail(f"{type(exc).__name__}: {exc}")
            if not self.ready.done():
                self.ready.set_exception(exc)

    def _parse(self) -> None:
        acc, owner = self.acc, self.owner
        if self.state == _HANDSHAKE:
            if owner.greeting:
                if len(acc) < len(owner.greeting):
                    return
                if not acc.startswith(owner.greeting):
                    raise ConnectionError("unexpected greeting")
                del acc[: len(owner.greeting)]
            else:
                head = read_101(acc)
                if head is None:
                    return
                if owner.deflate and "permessage-deflate" not in head:
                    raise ConnectionError("permessage-deflate was not negotiated")
            self._handshake_done()
        if owner.raw:  # the raw servers send back the client's masked frames
            while len(acc) >= RAW_FRAME:
                if acc[:RAW_FRAME] != CLIENT_FRAME:
                    raise AssertionError("the raw server sent other bytes")
                del acc[:RAW_FRAME]
                self._message()
            return
        while self.state != _HANDSHAKE:
            parsed = parse_frame(acc)
            if parsed is None:
                return
            opcode, rsv1, data, n = parsed
            del acc[:n]
            if opcode == 0x9:
                self.transport.write(frame(data, opcode=0xA, masked=True))
                continue
            if opcode != 0x2:
                raise AssertionError(f"unexpected frame (opcode {opcode})")
            if rsv1:  # the first message of a deflate connection: a fresh context
                data = zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")
            if data != (owner.first_payload if self.state == _FIRST else MESSAGE):
                raise AssertionError("a message is not the one sent")
            self._message()

    def _message(self) -> None:
        if self.state == _FIRST:
            self._ready()
            return
        if self.state != _OPEN:
            raise AssertionError("a message before the handshake")
        self.count += 1
        if self.count == self.want:
            self.arrived = time.monotonic_ns()
            if self.waiter is None:
                self.owner.arrive()
            elif not self.waiter.done():
                self.waiter.set_result(None)
        elif self.count > self.want:
            raise AssertionError("more messages than sent")

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.state != _DONE:
            self.owner.fail("a connection was closed by the server")
            if not self.ready.done():
                self.ready.set_exception(ConnectionError("connection closed before it was ready"))
        self.state = _DONE


class _Loader:
    """The connections of one loader process."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.source: str = spec["source"]
        self.port: int = spec["port"]
        self.raw: bool = spec["raw"]
        self.deflate: bool = spec.get("deflate", False)
        self.greeting = b"hi" if self.raw and spec["app"] == "broadcast" else b""
        self.request = b""
        if not self.raw:
            offer = "permessage-deflate; client_max_window_bits" if self.deflate else None
            self.request = upgrade_request("127.0.0.1", self.port, "/", offer)
        self.first_message = spec["app"] == "echo"  # a broadcast server would send it to everyone
        self.first_payload = DEFLATE_MESSAGE if self.deflate else MESSAGE
        self.first_frame = frame(_deflated(DEFLATE_MESSAGE), masked=True, rsv1=True) if self.deflate else CLIENT_FRAME
        self.expected = CLIENT_FRAME if self.raw else frame(MESSAGE)  # a message as the server sends it
        self.tls: Optional[ssl.SSLContext] = None
        if spec.get("cafile"):
            self.tls = ssl.create_default_context(cafile=spec["cafile"])
        self.conns: list[_Conn] = []
        self.received = 0
        self.waiting = 0
        self.all_arrived: Optional[asyncio.Future[None]] = None
        self.error: Optional[str] = None

    def fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        if self.all_arrived is not None and not self.all_arrived.done():
            self.all_arrived.set_result(None)

    def arrive(self) -> None:
        self.waiting -= 1
        if self.waiting == 0 and self.all_arrived is not None and not self.all_arrived.done():
            self.all_arrived.set_result(None)

    def check(self) -> None:
        if self.error is not None:
            raise C100kError(self.error)

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        extra: dict[str, Any] = {"ssl": self.tls, "server_hostname": "127.0.0.1"} if self.tls else {}
        conn = _Conn(self)
        await loop.create_connection(lambda: conn, "127.0.0.1", self.port, local_addr=(self.source, 0), **extra)
        await conn.ready
        return conn

    async def open(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``count`` more connections, ``concurrency`` at a time; their handshake latencies."""
        count, timeout = cmd["count"], cmd.get("timeout", 120.0)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if len(self.conns) + count + FD_MARGIN > soft:
            raise C100kError(
                f"{len(self.conns) + count} connections need {len(self.conns) + count + FD_MARGIN} open files;"
                f" this process may open {soft} (RLIMIT_NOFILE)"
            )
        started = time.monotonic()
        made: list[_Conn] = []
        pending = iter(range(count))

        async def opener() -> None:
            for _ in pending:
                made.append(await self._connect())

        await asyncio.wait_for(asyncio.gather(*(opener() for _ in range(cmd.get("concurrency", 100)))), timeout)
        seconds = time.monotonic() - started
        self.check()
        self.conns.extend(made)
        latencies = sorted((c.shook - c.started) // 1000 for c in made)
        return {"opened": len(made), "held": len(self.conns), "seconds": seconds, "latencies_us": latencies}

    async def close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Close the last ``count`` connections (all without ``count``)."""
        count = cmd.get("count", len(self.conns))
        closing, self.conns = self.conns[len(self.conns) - count :], self.conns[: len(self.conns) - count]
        for conn in closing:
            conn.state = _DONE
            conn.transport.close()
        await asyncio.sleep(0.1)
        for conn in closing:
            if not conn.transport.is_closing():
                conn.transport.abort()
        return {"held": len(self.conns)}

    async def _wait(self, conns: list[_Conn], timeout: float) -> None:
        """Until every connection of ``conns`` has its ``want`` messages."""
        self.all_arrived = asyncio.get_running_loop().create_future()
        self.waiting = sum(1 for c in conns if c.count < c.want)
        if self.waiting:
            try:
                await asyncio.wait_for(self.all_arrived, timeout)
            except asyncio.TimeoutError:
                self.check()
                missing = sum(c.want - c.count for c in conns)
                raise C100kError(f"{missing} message(s) missing after {timeout:.0f} s") from None
        self.check()

    async def echo(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """The first ``active`` connections send a message every ``interval``
        seconds (staggered), ``rounds`` times; the round trips."""
        active = self.conns[: cmd["active"]]
        rounds, interval = cmd["rounds"], cmd["interval"]
        latencies: list[int] = []

        async def pinger(conn: _Conn, delay: float) -> None:
            await asyncio.sleep(delay)
            for _ in range(rounds):
                conn.want = conn.count + 1
                conn.waiter = asyncio.get_running_loop().create_future()
                sent = time.monotonic_ns()
                conn.transport.write(CLIENT_FRAME)
                try:
                    await asyncio.wait_for(conn.waiter, cmd.get("timeout", 30.0))
                except asyncio.TimeoutError:
                    raise C100kError(self.error or "an echo did not come back in time") from None
                latencies.append((conn.arrived - sent) // 1000)
                await asyncio.sleep(max(0.0, interval - (time.monotonic_ns() - sent) / 1e9))

        step = interval / max(1, len(active))
        try:
            await asyncio.gather(*(pinger(c, i * step) for i, c in enumerate(active)))
        finally:
            for conn in active:
                conn.waiter = None
        self.check()
        latencies.sort()
        return {"latencies_us": latencies, "received": self.received}

    async def arm(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Before a broadcast round: every connection waits for one more message."""
        self.check()
        for conn in self.conns:
            conn.want = conn.count + 1
        return {}

    async def broadcast(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """A broadcast round, once every loader is armed: with ``send``, the
        first connection sends the message; until every connection has it."""
        sent = 0
        if cmd.get("send"):
            sent = time.monotonic_ns()
            self.conns[0].transport.write(CLIENT_FRAME)
        await self._wait(self.conns, cmd.get("timeout", 30.0))
        return {"sent": sent, "last": max(c.arrived for c in self.conns), "received": self.received}


async def _loader_setup(spec: dict[str, Any]) -> tuple[dict[str, Any], fanout.Handlers]:
    loader = _Loader(spec)
    handlers: fanout.Handlers = {
        "open": loader.open,
        "close": loader.close,
        "echo": loader.echo,
        "arm": loader.arm,
        "broadcast": loader.broadcast,
    }
    return {"source": loader.source}, handlers


def main_role(spec: dict[str, Any]) -> int:
    """The body of a ``c100k-loader`` process (commands on standard input)."""
    loop = loop_factory(spec["loop"])()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(fanout._command_loop(_loader_setup, spec))
    finally:
        loop.close()
    return 0


# ================================================================ in the runner


class _Addresses:
    """Loopback source addresses, a fresh one per loader of the scenario
    (127.0.1.2 on; the fanout run uses 127.0.0.2 on): closed connections
    leave their ports in TIME_WAIT for a minute."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> str:
        n, self.next = self.next, self.next + 1
        return f"127.0.{1 + n // 250}.{2 + n % 250}"


def _split(count: int, parts: int) -> list[int]:
    base, extra = divmod(count, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class _Run:
    """One server process under test and its loaders."""

    def __init__(self, suite: Suite, addresses: _Addresses, loop: str, impl: str, app: str, variant: str) -> None:
        config = suite.config
        self.suite = suite
        spec: dict[str, Any] = {
            "role": "server",
            "impl": impl,
            "loop": "asyncio" if variant == "tls-asyncio" else loop,
            "app": app,
            "keepalive": True,
            "deflate": variant == "deflate",
        }
        loader: dict[str, Any] = {
            "role": "c100k-loader",
            "loop": suite.counterpart_loop,
            "raw": impl == "raw",
            "app": app,
            "deflate": variant == "deflate",
        }
        if variant.startswith("tls"):
            tls = suite.tls()
            assert tls is not None
            spec.update(certfile=tls[1], keyfile=tls[2])
            loader["cafile"] = tls[0]
        self.server = suite.spawn(spec, True)
        self.loaders: list[Worker] = []
        error = self.server.start()
        if error:
            self.stop()
            raise C100kError(f"the server did not start: {error}")
        suite.remember(f"c100k {impl}" + ("" if variant == "plain" else f" ({variant})"), self.server)
        loader["port"] = self.server.info["port"]
        most = max(max(config.c100k_counts), config.c100k_idle + config.c100k_handshakes)
        for _ in range(math.ceil(most / config.c100k_per_process)):
            self.loaders.append(suite.spawn(dict(loader, source=addresses.take()), False))
        for worker in self.loaders:
            error = worker.start()
            if error:
                self.stop()
                raise C100kError(f"a loader did not start: {error}")
        self.held = 0

    def ask(self, cmds: list[dict[str, Any]], timeout: float, what: str) -> list[dict[str, Any]]:
        return fanout._ask_all(self.loaders[: len(cmds)], cmds, timeout, what)

    def open(self, count: int, concurrency: int = 100) -> list[dict[str, Any]]:
        """``count`` more connections over the loaders."""
        parts = _split(count, len(self.loaders))
        answers = self.ask(
            [{"op": "open", "count": n, "concurrency": concurrency} for n in parts], 120 + count / 100, "opening"
        )
        self.held += count
        return answers

    def close(self, count: int) -> None:
        self.ask([{"op": "close", "count": n} for n in _split(count, len(self.loaders))], 60, "closing")
        self.held -= count

    def rss(self) -> int:
        time.sleep(0.3)
        rss = proc_rss_bytes(self.server.pid)
        if rss is None:
            raise C100kError("no /proc/PID/statm: cannot read the server's memory")
        return rss

    def stop(self) -> None:
        for worker in self.loaders:
            if worker.popen.poll() is None:
                worker.request({"op": "close"}, 30)
            worker.stop()
        self.server.stop()


def _latencies(answers: list[dict[str, Any]]) -> list[int]:
    return sorted(t for a in answers for t in a["latencies_us"])


def _memory(suite: Suite, addresses: _Addresses, loop: str, impl: str, variant: str) -> dict[str, Any]:
    """RSS growth per connection at each count; on the plain server, the
    handshake and echo figures too."""
    config = suite.config
    figures: dict[str, Any] = {}
    run = _Run(suite, addresses, loop, impl, "echo", variant)
    try:
        run.open(WARMUP)
        before = run.rss()
        counts = config.c100k_counts if not variant.startswith("tls") else config.c100k_counts[:1]
        for count in counts:
            run.open(count - run.held)
            figures[f"memory.{variant}.{count}"] = (run.rss() - before) / (count - WARMUP)
        if variant == "deflate" and config.c100k_idle_wait:
            # Idle at the library's defaults: wsfast frees a connection's zlib
            # state at the second keepalive tick (ping_interval 20 s) without a message.
            time.sleep(config.c100k_idle_wait)
            figures[f"memory.deflate-idle.{run.held}"] = (run.rss() - before) / (run.held - WARMUP)
        if variant != "plain":
            return figures
        run.close(run.held - config.c100k_idle) if run.held > config.c100k_idle else run.open(
            config.c100k_idle - run.held
        )
        started = time.monotonic()
        answers = run.open(config.c100k_handshakes, config.c100k_concurrency)
        seconds = time.monotonic() - started
        shook = _latencies(answers)
        figures["handshake.per_s"] = config.c100k_handshakes / max(a["seconds"] for a in answers)
        figures["handshake.p50_us"] = percentile(shook, 0.5)
        figures["handshake.p99_us"] = percentile(shook, 0.99)
        figures["handshake.seconds"] = seconds
        run.close(config.c100k_handshakes)
        rounds, interval = config.c100k_echo_rounds, config.c100k_echo_interval
        parts = _split(config.c100k_active, len(run.loaders))
        cmds = [{"op": "echo", "active": n, "rounds": rounds, "interval": interval} for n in parts]
        echoed = _latencies(run.ask(cmds, 60 + rounds * interval, "echo"))
        if len(echoed) != config.c100k_active * rounds:
            raise C100kError(f"{len(echoed)} round trips counted, {config.c100k_active * rounds} sent")
        figures["echo.p50_us"] = percentile(echoed, 0.5)
        figures["echo.p99_us"] = percentile(echoed, 0.99)
        figures["echo.round_trips"] = len(echoed)
        return figures
    finally:
        run.stop()


def _broadcast(suite: Suite, addresses: _Addresses, loop: str, impl: str) -> dict[str, Any]:
    """Milliseconds from the send to the last connection having the message, per count (median of the rounds)."""
    config = suite.config
    figures: dict[str, Any] = {}
    run = _Run(suite, addresses, loop, impl, "broadcast", "plain")
    try:
        for count in config.c100k_counts:
            run.open(count - run.held)
            time.sleep(0.2)  # a server may register a connection just after its 101
            times, cpu = [], 0.0
            for _ in range(config.c100k_broadcast_rounds + 1):  # the first round warms up
                cpu_before = proc_cpu_seconds(run.server.pid) or 0.0
                run.ask([{"op": "arm"}] * len(run.loaders), 30, "arming")
                for worker in run.loaders[1:]:
                    fanout._send(worker, {"op": "broadcast", "timeout": 30.0})
                fanout._send(run.loaders[0], {"op": "broadcast", "send": True, "timeout": 30.0})
                answers = []
                for worker in run.loaders:
                    answer = worker.read(60)
                    if "error" in answer:
                        raise C100kError(f"broadcast to {count:,}: {answer['error']}")
                    answers.append(answer)
                times.append((max(a["last"] for a in answers) - answers[0]["sent"]) / 1e6)
                if len(times) > 1:
                    cpu += (proc_cpu_seconds(run.server.pid) or 0.0) - cpu_before
            figures[f"broadcast.{count}"] = statistics.median(times[1:])
            figures[f"broadcast.{count}.max"] = max(times[1:])
            figures[f"broadcast.{count}.server_cpu_ms"] = cpu * 1000 / config.c100k_broadcast_rounds
        return figures
    finally:
        run.stop()


def check_fd_limit(config: Any) -> int:
    """The open-file cap (raised to its hard limit); :class:`C100kError`
    when a process of the run would need more."""
    hard = raise_fd_limit()
    server = max(max(config.c100k_counts), config.c100k_idle + config.c100k_handshakes) + FD_MARGIN
    if server > hard:
        raise C100kError(
            f"a server process would hold {server - FD_MARGIN:,} connections but may open {hard:,} files"
            f" (RLIMIT_NOFILE, hard limit): ask for fewer (at most {hard - FD_MARGIN:,} per process)"
        )
    if config.c100k_per_process + FD_MARGIN > hard:
        raise C100kError(f"a loader process may open {hard:,} files: c100k_per_process must be below that")
    fanout.check_fd_limit(_fanout_config(config), list(FANOUT_IMPLS))
    return hard


def _fanout_config(config: Any) -> Any:
    """The fanout settings for ``total`` connections across workers."""
    total = config.c100k_total
    return dataclasses.replace(
        config,
        fanout_workers=config.c100k_workers,
        fanout_clients=total,
        fanout_clients_per_process=config.c100k_per_process,
        fanout_deliveries_per_s=round(config.c100k_messages_per_s * total),
        fanout_rate_seconds=config.c100k_rate_seconds,
        fanout_saturation_seconds=config.c100k_rate_seconds / 2,
        fanout_window=4,  # a message to 100,000 can take a second: 4 in flight drain within the phase's timeout
    )


def across(config: Any) -> list[str]:
    """The implementations of the run across workers (none without ``c100k_total``)."""
    if not config.c100k_total:
        return []
    return [i for i in FANOUT_IMPLS if fanout.LIBRARY[i] in config.peers and not fanout.missing(i)]


def run_scenario(suite: Suite, loop: str, impls: list[str]) -> None:
    """Every figure of every implementation: one process, then across workers."""
    config = suite.config
    started = time.monotonic()
    try:
        hard = check_fd_limit(config)
    except (C100kError, fanout.FanoutError) as exc:
        for impl in impls:
            suite.fail("c100k", loop, 0, impl, str(exc))
        return
    suite.say(f"  c100k: open files capped at {hard:,} per process (RLIMIT_NOFILE, hard limit)")
    addresses = _Addresses()
    for impl in impls:
        point = suite.point("c100k", loop, 0, impl)
        figures: dict[str, Any] = {}
        errors: dict[str, str] = {}
        steps: list[tuple[str, Any]] = [
            (variant, functools.partial(_memory, suite, addresses, loop, impl, variant))
            for variant in VARIANTS
            if not (variant == "deflate" and impl in NO_DEFLATE)
            and not (variant == "tls-asyncio" and loop == "asyncio")  # the same as "tls" there
        ]
        steps.append(("broadcast", functools.partial(_broadcast, suite, addresses, loop, impl)))
        for name, step in steps:
            began = time.monotonic()
            try:
                figures.update(step())
            except (C100kError, fanout.FanoutError) as exc:
                errors[name] = str(exc)
                suite.say(f"  c100k {impl} {name}: FAILED: {exc}")
            figures[f"seconds.{name}"] = time.monotonic() - began
        suite.step += 1
        suite.say(f"[{suite.step}/{suite.total}] c100k {loop} {impl}: {len(figures)} figures, {len(errors)} failed")
        point["runs"].append({"figures": figures, "errors": errors, "fd_limit": hard})
    fanout_config = _fanout_config(config)
    for impl in across(config):
        began = time.monotonic()
        suite.point("c100k", loop, config.c100k_total, impl)
        result = fanout.one_run(suite, impl, loop, fanout_config)
        if "error" not in result:
            result["seconds"] = time.monotonic() - began
        suite.record("c100k", loop, config.c100k_total, impl, 0, result)
    suite.say(f"  c100k: {time.monotonic() - started:.0f} s in all")
    suite.descriptions["c100k cost"] = f"{time.monotonic() - started:.0f} s for the whole scenario"


# ---------------------------------------------------------------- summary and report


def summarize_point(point: dict[str, Any]) -> dict[str, Any]:
    """One run per point: its figures (single process) or the fanout summary (across workers)."""
    if point["size"]:
        fanout.summarize_point(point)
        seconds = [r["seconds"] for r in point["runs"] if "seconds" in r]
        if seconds and point["status"] == "ok":
            point["summary"]["seconds"] = {"median": seconds[0]}
        return point
    good = [r for r in point["runs"] if "figures" in r]
    errors = [r["error"] for r in point["runs"] if "error" in r]
    if not good:
        point["status"] = "failed"
        point["note"] = errors[0] if errors else "no run"
        return point
    run = good[0]
    point["status"] = "ok"
    point["note"] = "; ".join(f"{name}: {error}" for name, error in run["errors"].items())
    point["summary"] = {key: {"median": value} for key, value in run["figures"].items()}
    return point


def _get(point: Optional[dict[str, Any]], key: str) -> Optional[float]:
    if point is None or point["status"] != "ok" or key not in point["summary"]:
        return None
    return float(point["summary"][key]["median"])


def _kb(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 1000:.1f} KB"


def _ratio(mine: Optional[float], base: Optional[float], higher_better: bool = False) -> str:
    if mine is None or base is None or not base or not mine:
        return ""
    return f" ({(mine / base if higher_better else mine / base):.2f}x)"


def markdown(points: list[dict[str, Any]], config: dict[str, Any], title: str, order: list[str]) -> list[str]:
    """The scenario's section of results.md: one table per figure."""
    from .runner import LABELS

    single = {p["impl"]: p for p in points if not p["size"]}
    across = {p["impl"]: p for p in points if p["size"]}
    impls = sorted(single, key=order.index)
    counts = list(config.get("c100k_counts", ()))
    floor, ours = single.get("raw"), single.get("wsfast")
    lines = [f"## {title}", ""]
    fd = next((r.get("fd_limit") for p in single.values() for r in p["runs"] if "fd_limit" in r), None)
    if fd:
        lines += [
            f"Open files are capped at {fd:,} per process on this machine (RLIMIT_NOFILE, hard limit; the bench"
            " raises the soft limit to it in every process): one server process holds at most"
            f" {fd - FD_MARGIN:,} connections, more need worker processes. Servers keep their libraries'"
            " defaults (keepalive pings included: the loaders answer them); every connection sends one 64 B"
            " message (with deflate: 512 B of JSON-like text, compressed both ways) and gets it back before it"
            " is counted as open; loaders parse every frame they receive and"
            " fail the run on a missing, extra or altered message.",
            "",
        ]
    wait = config.get("c100k_idle_wait", 0)
    columns = [
        (v, c)
        for v in ("plain", "deflate", "deflate-idle", "tls", "tls-asyncio")
        for c in (counts[:1] if v.startswith("tls") else counts[-1:] if v == "deflate-idle" else counts)
    ]
    keys = [f"memory.{v}.{c}" for v, c in columns]
    present = [i for i, k in enumerate(keys) if any(_get(p, k) is not None for p in single.values())]
    header = ["implementation"] + [f"{COLUMNS[columns[i][0]].format(wait=wait)} @ {columns[i][1]:,}" for i in present]
    keys = [keys[i] for i in present]
    lines += [
        "Server RSS growth per connection (in brackets: x the raw TCP echo, the floor; TLS: the raw echo on"
        " the same loop's SSL transport"
        + (f"; deflate, idle: after {wait:g} s without a message, at each library's defaults" if wait else "")
        + "; tls (asyncio loop): the server on asyncio's standard loop, where asyncio's SSL transport keeps a"
        " 256 KiB buffer per connection):",
        "",
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * len(keys),
    ]
    for impl in impls:
        cells = [_kb(_get(single[impl], k)) + _ratio(_get(single[impl], k), _get(floor, k)) for k in keys]
        lines.append(f"| {LABELS[impl]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Handshakes: {config.get('c100k_handshakes', 0):,} new connections,"
        f" {config.get('c100k_concurrency')} in flight per loader, against a server holding"
        f" {config.get('c100k_idle', 0):,} (latency: from the connect call to the 101 response; in brackets: x"
        " wsfast's callback API). Echo: round trips of one 64 B message every"
        f" {config.get('c100k_echo_interval', 0) * 1000:.0f} ms on each of {config.get('c100k_active', 0):,}"
        f" active connections among the {config.get('c100k_idle', 0):,}:",
        "",
        "| implementation | handshakes/s | handshake p50 / p99 | echo p50 / p99 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for impl in impls:
        p = single[impl]
        rate = _get(p, "handshake.per_s")
        shake = (_get(p, "handshake.p50_us"), _get(p, "handshake.p99_us"))
        echo = (_get(p, "echo.p50_us"), _get(p, "echo.p99_us"))
        lines.append(
            f"| {LABELS[impl]} | {'-' if rate is None else f'{rate:,.0f}'}{_ratio(rate, _get(ours, 'handshake.per_s'))}"
            f" | {_ms_pair(*shake)} | {_ms_pair(*echo)} |"
        )
    lines += [
        "",
        "Broadcast of one 64 B message from one connection to every connection of one process: time from the"
        f" send to the last connection having it (median of {config.get('c100k_broadcast_rounds')} rounds, the"
        " worst in brackets; every delivery counted), and the server's CPU time per round (/proc, 10 ms ticks):"
        " the loaders share the machine's two cores with the server, so the raw TCP echo's time is the floor"
        " of what this machine can show:",
        "",
        "| implementation | " + " | ".join(f"{c:,} connections" for c in counts) + " |",
        "| --- |" + " ---: |" * len(counts),
    ]
    for impl in impls:
        p = single[impl]
        cells = []
        for c in counts:
            ms, worst = _get(p, f"broadcast.{c}"), _get(p, f"broadcast.{c}.max")
            cpu = _get(p, f"broadcast.{c}.server_cpu_ms") or 0.0
            cells.append(
                "-"
                if ms is None
                else f"{ms:.1f} ms ({worst:.1f})" + _ratio(ms, _get(ours, f"broadcast.{c}")) + f", CPU {cpu:.0f} ms"
            )
        lines.append(f"| {LABELS[impl]} | " + " | ".join(cells) + " |")
    if across:
        total = config.get("c100k_total", 0)
        lines += [
            "",
            f"{total:,} connections across {config.get('c100k_workers')} server worker processes on one port"
            " (SO_REUSEPORT), through Redis Pub/Sub (the fanout run at this scale; client processes of"
            f" {config.get('c100k_per_process', 0):,} connections, each from its own loopback address): server RSS"
            " growth per subscribed connection summed over the workers, handshakes per second while opening them"
            " all, and publish-to-last-delivery of messages at"
            f" {config.get('c100k_messages_per_s', 2.0):g} per second:",
            "",
            "| implementation | RSS growth per connection | in all | handshakes/s | to last client p50 / p99 |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for impl in sorted(across, key=lambda i: FANOUT_IMPLS.index(i) if i in FANOUT_IMPLS else 99):
            p = across[impl]
            if p["status"] != "ok":
                lines.append(f"| {LABELS.get(impl, impl)} | failed: {p['note']} | | | |")
                continue
            per = _get(p, "bytes_per_connection") or 0.0
            clients = _get(p, "clients") or 1.0
            connect = _get(p, "connect_s") or 0.0
            lines.append(
                f"| {LABELS.get(impl, impl)} | {per / 1000:.1f} KB | {per * clients / 1e6:.0f} MB"
                f" | {clients / connect if connect else 0:,.0f} | {_get(p, 'rate.last_p50_ms'):.1f} ms /"
                f" {_get(p, 'rate.last_p99_ms'):.1f} ms |"
            )
    lines += ["", "Against the targets of issue 15:", ""] + _targets(single, across, counts)
    cost = [f"{LABELS.get(i, i)} {_seconds(p):.0f} s" for i, p in {**single, **across}.items() if p["status"] == "ok"]
    if cost:
        lines += ["", "- Time per implementation: " + ", ".join(cost) + "."]
    for p in points:
        if p["note"]:
            lines.append(f"- {LABELS.get(p['impl'], p['impl'])}: {p['note']}")
    return lines


def _seconds(point: dict[str, Any]) -> float:
    """Wall-clock seconds an implementation took (every step of its run)."""
    return sum(float(v["median"]) for k, v in point["summary"].items() if k.startswith("seconds"))


def _ms_pair(p50: Optional[float], p99: Optional[float]) -> str:
    if p50 is None or p99 is None:
        return "-"
    return f"{p50 / 1000:.2f} / {p99 / 1000:.2f} ms"


def _targets(single: dict[str, Any], across: dict[str, Any], counts: list[int]) -> list[str]:
    """The issue's targets against the measurements (never asserted)."""
    from .runner import LABELS

    lines = []
    top = counts[-1] if counts else 0
    floor = single.get("raw")

    def verdict(ok: bool) -> str:
        return "met" if ok else "not met"

    for impl in ("wsfast", "wsfast-serve"):
        p = single.get(impl)
        if p is None:
            continue
        plain, deflate = _get(p, f"memory.plain.{top}"), _get(p, f"memory.deflate.{top}")
        if plain is not None:
            lines.append(
                f"- {LABELS[impl]}: plain {_kb(plain)} per connection at {top:,}"
                f" (floor {_kb(_get(floor, f'memory.plain.{top}'))}); target at most 6 KB: {verdict(plain <= 6000)}"
            )
        if deflate is not None:
            lines.append(
                f"- {LABELS[impl]}: deflate negotiated and used {_kb(deflate)} per connection; target at most 32 KB:"
                f" {verdict(deflate <= 32000)}"
            )
        idle = _get(p, f"memory.deflate-idle.{top}")
        if idle is not None:
            lines.append(
                f"- {LABELS[impl]}: deflate negotiated, used, then idle {_kb(idle)} per connection; target at most"
                f" 32 KB: {verdict(idle <= 32000)}"
            )
        tls_key = f"memory.tls-asyncio.{counts[0]}" if counts else ""
        tls, base = _get(p, tls_key), _get(floor, tls_key)
        if tls is None or base is None:  # a run on asyncio's loop
            tls_key = f"memory.tls.{counts[0]}" if counts else ""
            tls, base = _get(p, tls_key), _get(floor, tls_key)
        if tls is not None and base is not None:
            lines.append(
                f"- {LABELS[impl]}: TLS on asyncio's loop {_kb(tls)} per connection against {_kb(base)} for the raw"
                f" echo on asyncio's SSL transport ({tls / base:.2f}x); target at most 0.5x: {verdict(tls <= base / 2)}"
            )
        rate = _get(p, "handshake.per_s")
        peers = {i: _get(single.get(i), "handshake.per_s") for i in ("websockets", "picows")}
        if rate is not None:
            parts = []
            if peers["websockets"]:
                parts.append(
                    f"{rate / peers['websockets']:.2f}x websockets'"
                    f" (target 2x: {verdict(rate >= 2 * peers['websockets'])})"
                )
            if peers["picows"]:
                parts.append(f"{rate / peers['picows']:.2f}x picows' (target 1x: {verdict(rate >= peers['picows'])})")
            lines.append(f"- {LABELS[impl]}: {rate:,.0f} handshakes/s, " + ", ".join(parts))
        ms = _get(p, f"broadcast.{top}")
        if ms is not None:
            lines.append(
                f"- {LABELS[impl]}: broadcast to {top:,} in {ms:.1f} ms;"
                f" target under 30 ms (at 19,000): {verdict(ms < 30)}"
            )
    p = across.get("wsfast-redis")
    if p is not None and p["status"] == "ok":
        p99 = _get(p, "rate.last_p99_ms") or 0.0
        lines.append(
            f"- wsfast across workers: broadcast to {int(_get(p, 'clients') or 0):,} p99 {p99:.1f} ms; target under"
            f" 150 ms: {verdict(p99 < 150)}; RSS growth {(_get(p, 'bytes_per_connection') or 0) / 1000:.1f} KB per"
            f" connection, target 6 KB (600 MB per 100,000): {verdict((_get(p, 'bytes_per_connection') or 0) <= 6000)}"
        )
    return lines
